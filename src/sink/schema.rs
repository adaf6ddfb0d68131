//! The collection a pipeline writes: built from its config, created when missing, validated field by
//! field when it exists.

use milvus::v2::prelude::{CollectionSchema, DataType, FieldSchema};

use crate::mapping::MAX_PRIMARY_KEY_BYTES;
use crate::settings::{CollectionSettings, KeyType, PipelineSettings, ScalarType, ROW_HASH_FIELD};

/// Everything vecdrop needs to know about a pipeline's collection: what the config says, and what
/// the model adds.
#[derive(Debug, Clone)]
pub struct CollectionSpec {
    /// Name, fields and index, from the pipeline's config.
    pub collection: CollectionSettings,
    /// Vector dimension (the model's).
    pub dimension: usize,
    /// Model identity, recorded in the collection's description.
    pub model_identity: String,
}

impl CollectionSpec {
    /// The collection of `pipeline` for a model of `dimension` named `model_identity`.
    pub fn of(pipeline: &PipelineSettings, dimension: usize, model_identity: &str) -> Self {
        Self { collection: pipeline.collection.clone(), dimension, model_identity: model_identity.to_owned() }
    }

    /// The description written at creation: says who made it and with which model.
    pub fn description(&self) -> String {
        format!("created by vecdrop; model={}", self.model_identity)
    }

    /// The key type of a new collection: the configured one, VARCHAR when unset.
    pub fn new_key_type(&self) -> KeyType {
        self.collection.key_type.unwrap_or(KeyType::Varchar)
    }

    /// Every field a new collection gets, with its type and size, in schema order.
    pub fn expected_fields(&self) -> Vec<ExpectedField> {
        self.expected_fields_keyed(self.new_key_type())
    }

    /// Every field the collection must have when its primary key is of type `key`.
    pub fn expected_fields_keyed(&self, key: KeyType) -> Vec<ExpectedField> {
        let key_field = match key {
            KeyType::Varchar => ExpectedField {
                name: self.collection.primary_key.clone(),
                data_type: DataType::VarChar,
                size: MAX_PRIMARY_KEY_BYTES as u32,
                primary: true,
            },
            KeyType::Int64 => {
                ExpectedField { name: self.collection.primary_key.clone(), data_type: DataType::Int64, size: 0, primary: true }
            }
        };
        let mut fields = vec![
            key_field,
            ExpectedField {
                name: self.collection.text_field.clone(),
                data_type: DataType::VarChar,
                size: self.collection.text_max_length,
                primary: false,
            },
            ExpectedField { name: ROW_HASH_FIELD.to_owned(), data_type: DataType::Int64, size: 0, primary: false },
        ];
        for (name, spec) in &self.collection.scalar_fields {
            fields.push(ExpectedField {
                name: name.clone(),
                data_type: data_type_of(spec.field_type),
                size: spec.max_length.unwrap_or(0),
                primary: false,
            });
        }
        fields.push(ExpectedField {
            name: self.collection.vector_field.clone(),
            data_type: DataType::FloatVector,
            size: self.dimension as u32,
            primary: false,
        });
        fields
    }

    /// The collection a first import creates, in one line: each field with its type (size) and
    /// role, then the vector index, e.g. `id VARCHAR(512) primary key, text VARCHAR(65535), …;
    /// index AUTOINDEX / COSINE`.
    pub fn describe_new(&self) -> String {
        let fields: Vec<String> = self
            .expected_fields()
            .iter()
            .map(|field| {
                let kind = match field.data_type {
                    DataType::VarChar => format!("VARCHAR({})", field.size),
                    DataType::FloatVector => format!("FLOAT_VECTOR({})", field.size),
                    other => format!("{other:?}").to_uppercase(),
                };
                let role = if field.primary { " primary key" } else { "" };
                format!("{} {kind}{role}", field.name)
            })
            .collect();
        format!("{}; index {} / {}", fields.join(", "), self.collection.index.index_type, self.collection.index.metric)
    }

    /// The Milvus schema to create.
    pub fn schema(&self) -> CollectionSchema {
        self.expected_fields()
            .into_iter()
            .fold(CollectionSchema::new().description(self.description()).enable_dynamic_field(false), |schema, field| {
                schema.add_field(field.to_schema())
            })
    }
}

/// One field as vecdrop expects it. `size` is `max_length` for VarChar, the dimension for vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedField {
    /// Field name.
    pub name: String,
    /// Milvus type.
    pub data_type: DataType,
    /// VarChar max_length or vector dimension; 0 otherwise.
    pub size: u32,
    /// Whether it is the primary key.
    pub primary: bool,
}

impl ExpectedField {
    fn to_schema(&self) -> FieldSchema {
        let field = FieldSchema::new().name(self.name.clone()).data_type(self.data_type);
        match self.data_type {
            DataType::VarChar if self.primary => field.max_length(self.size).primary_key(true).auto_id(false),
            DataType::Int64 if self.primary => field.primary_key(true).auto_id(false),
            DataType::VarChar => field.max_length(self.size),
            DataType::FloatVector => field.dimension(self.size),
            _ => field,
        }
    }
}

/// A field of an existing collection, as Milvus describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActualField {
    /// Field name.
    pub name: String,
    /// Milvus type.
    pub data_type: DataType,
    /// VarChar max_length or vector dimension; 0 otherwise.
    pub size: u32,
    /// Whether it is the primary key.
    pub primary: bool,
}

/// The key type an existing collection with `actual` fields is written with: the configured one
/// (`configured`), or — unset — the collection's own when it is INT64, else VARCHAR.
pub fn resolved_key_type(configured: Option<KeyType>, actual: &[ActualField]) -> KeyType {
    configured.unwrap_or_else(|| match actual.iter().find(|field| field.primary) {
        Some(field) if field.data_type == DataType::Int64 => KeyType::Int64,
        _ => KeyType::Varchar,
    })
}

/// Compares an existing collection's fields with what the pipeline needs; returns one message per
/// mismatch, each naming the field (empty when the collection fits).
pub fn mismatches(expected: &[ExpectedField], actual: &[ActualField]) -> Vec<String> {
    let mut problems = Vec::new();
    for want in expected {
        let Some(have) = actual.iter().find(|field| field.name == want.name) else {
            problems.push(format!("field {:?}: missing (expected {:?})", want.name, want.data_type));
            continue;
        };
        if have.data_type != want.data_type {
            problems.push(format!("field {:?}: expected {:?}, the collection has {:?}", want.name, want.data_type, have.data_type));
            continue;
        }
        if have.primary != want.primary {
            let role = if want.primary { "the primary key" } else { "not the primary key" };
            problems.push(format!("field {:?}: expected to be {role}", want.name));
        }
        match want.data_type {
            DataType::FloatVector if have.size != want.size => problems
                .push(format!("field {:?}: expected dimension {} (the model's), the collection has {}", want.name, want.size, have.size)),
            DataType::VarChar if have.size < want.size => {
                problems.push(format!("field {:?}: expected max_length ≥ {}, the collection has {}", want.name, want.size, have.size))
            }
            _ => {}
        }
    }
    for have in actual {
        if !expected.iter().any(|field| field.name == have.name) {
            problems.push(format!("field {:?}: in the collection but not in the pipeline (add it to [pipelines.fields])", have.name));
        }
    }
    problems
}

fn data_type_of(scalar: ScalarType) -> DataType {
    match scalar {
        ScalarType::Bool => DataType::Bool,
        ScalarType::Int32 => DataType::Int32,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::Float => DataType::Float,
        ScalarType::Double => DataType::Double,
        ScalarType::Varchar => DataType::VarChar,
        ScalarType::Json => DataType::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{FieldSpec, IndexSettings, IndexType, Metric};

    fn spec() -> CollectionSpec {
        let collection = CollectionSettings {
            name: "documents".into(),
            primary_key: "id".into(),
            key_type: None,
            text_field: "text".into(),
            text_max_length: 1000,
            vector_field: "embedding".into(),
            scalar_fields: vec![("category".into(), FieldSpec { field_type: ScalarType::Varchar, max_length: Some(100), optional: false })],
            index: IndexSettings { index_type: IndexType::AutoIndex, metric: Metric::Cosine, params: Default::default() },
        };
        CollectionSpec { collection, dimension: 384, model_identity: "m:fp32:256".into() }
    }

    fn as_actual(expected: &[ExpectedField]) -> Vec<ActualField> {
        expected
            .iter()
            .map(|field| ActualField { name: field.name.clone(), data_type: field.data_type, size: field.size, primary: field.primary })
            .collect()
    }

    #[test]
    fn a_collection_made_from_the_spec_fits_it() {
        let expected = spec().expected_fields();
        assert!(mismatches(&expected, &as_actual(&expected)).is_empty());
    }

    #[test]
    fn an_existing_int64_key_is_respected_unless_the_config_says_otherwise() {
        let int64 = spec().expected_fields_keyed(KeyType::Int64);
        let actual = as_actual(&int64);
        assert_eq!(resolved_key_type(None, &actual), KeyType::Int64);
        assert!(mismatches(&spec().expected_fields_keyed(resolved_key_type(None, &actual)), &actual).is_empty());
        let configured = resolved_key_type(Some(KeyType::Varchar), &actual);
        let problems = mismatches(&spec().expected_fields_keyed(configured), &actual).join("\n");
        assert!(problems.contains("\"id\": expected VarChar, the collection has Int64"), "{problems}");
        assert_eq!(resolved_key_type(None, &as_actual(&spec().expected_fields())), KeyType::Varchar);
        let schema = spec().expected_fields_keyed(KeyType::Int64)[0].to_schema();
        assert!(schema.is_primary_key());
    }

    #[test]
    fn the_schema_to_create_is_described_field_by_field() {
        let described = spec().describe_new();
        assert!(
            described.starts_with("id VARCHAR(512) primary key, text VARCHAR(1000), _vecdrop_hash INT64, category VARCHAR(100)"),
            "{described}"
        );
        assert!(described.contains("embedding FLOAT_VECTOR(384); index "), "{described}");
        let mut int64 = spec();
        int64.collection.key_type = Some(KeyType::Int64);
        assert!(int64.describe_new().starts_with("id INT64 primary key"), "{}", int64.describe_new());
    }

    #[test]
    fn mismatches_name_the_field() {
        let expected = spec().expected_fields();
        let mut actual = as_actual(&expected);
        actual.retain(|field| field.name != "category");
        actual.iter_mut().find(|field| field.name == "embedding").unwrap().size = 768;
        actual.push(ActualField { name: "extra".into(), data_type: DataType::Int64, size: 0, primary: false });
        let problems = mismatches(&expected, &actual).join("\n");
        assert!(problems.contains("\"category\": missing"), "{problems}");
        assert!(problems.contains("\"embedding\": expected dimension 384"), "{problems}");
        assert!(problems.contains("\"extra\": in the collection but not in the pipeline"), "{problems}");
    }
}
