//! **map**: a [`Record`] → a [`Row`] of the collection's schema, with a deterministic primary key.
//!
//! Keys: the record's `id_field` when the pipeline has one, else `<file hash prefix>-<ordinal>`, so
//! replaying any record of the same file content produces the same key (invariant 2).

use crate::format::{FieldValue, Record, RecordPosition};
use crate::settings::{FieldSpec, KeyType, PipelineSettings, ScalarType};

/// Longest primary key accepted, in bytes (the collection's VarChar key length).
pub const MAX_PRIMARY_KEY_BYTES: usize = 512;
/// Hex digits of the file hash used in derived keys.
const DERIVED_KEY_HASH_DIGITS: usize = 16;

/// A typed scalar, ready for its Milvus column.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ScalarValue {
    /// Milvus Bool.
    Bool(bool),
    /// Milvus Int32.
    Int32(i32),
    /// Milvus Int64.
    Int64(i64),
    /// Milvus Float.
    Float(f32),
    /// Milvus Double.
    Double(f64),
    /// Milvus VarChar.
    Varchar(String),
    /// Milvus JSON.
    Json(serde_json::Value),
}

/// One row for the collection, before embedding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Deterministic primary key.
    pub primary_key: String,
    /// The text that is stored and embedded.
    pub text: String,
    /// Values of the pipeline's `fields`, in [`RowSchema::scalar_fields`] order.
    pub scalars: Vec<ScalarValue>,
    /// Hash of text + scalars: tells a changed row from an unchanged one on re-import.
    pub row_hash: i64,
    /// Where the record came from.
    pub position: RecordPosition,
    /// A vector the record already carries (e.g. a Parquet `list<float>` column named as the
    /// pipeline's `vector_field`); such rows skip the model.
    pub vector: Option<Vec<f32>>,
}

/// Why a record does not fit the schema. The record is dead-lettered; the file goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field {field:?}: {reason}")]
pub struct MappingError {
    /// The field at fault.
    pub field: String,
    /// What was expected and what was found.
    pub reason: String,
}

/// The parts of a pipeline's config that decide how records become rows.
#[derive(Debug, Clone)]
pub struct RowSchema {
    /// Source column of the natural key, if any.
    pub id_field: Option<String>,
    /// The collection's key type: with INT64 a natural key must be an integer.
    pub key_type: KeyType,
    /// Source column of the text.
    pub text_field: String,
    /// Longest accepted text in bytes.
    pub text_max_length: usize,
    /// Kept scalar fields, in a fixed order.
    pub scalar_fields: Vec<(String, FieldSpec)>,
    /// Source column of precomputed vectors.
    pub vector_field: String,
    /// The model's dimension: a precomputed vector must have it.
    pub dimension: usize,
}

impl RowSchema {
    /// The schema of `pipeline` for a model of `dimension`.
    pub fn of(pipeline: &PipelineSettings, dimension: usize) -> Self {
        Self {
            id_field: pipeline.id_field.clone(),
            key_type: pipeline.collection.key_type.unwrap_or(KeyType::Varchar),
            text_field: pipeline.collection.text_field.clone(),
            text_max_length: pipeline.collection.text_max_length as usize,
            scalar_fields: pipeline.collection.scalar_fields.clone(),
            vector_field: pipeline.collection.vector_field.clone(),
            dimension,
        }
    }

    /// The same schema for a collection whose key is of type `key_type` (as found in Milvus).
    pub fn with_key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Columns every record must have (optional fields excluded).
    pub fn required_columns(&self) -> Vec<&str> {
        let mut columns = vec![self.text_field.as_str()];
        columns.extend(self.id_field.as_deref());
        columns.extend(self.scalar_fields.iter().filter(|(_, spec)| !spec.optional).map(|(name, _)| name.as_str()));
        columns
    }

    /// Maps one record. `file_hash` is the file's BLAKE3 hex digest, used for derived keys.
    pub fn map(&self, record: &Record, file_hash: &str) -> Result<Row, MappingError> {
        let primary_key = match &self.id_field {
            Some(id_field) => natural_key(id_field, record.get(id_field), self.key_type)?,
            None => derived_key(file_hash, record.position.ordinal),
        };
        let text = self.text(record)?;
        let scalars = self.scalar_fields.iter().map(|(name, spec)| convert(name, spec, record.get(name))).collect::<Result<Vec<_>, _>>()?;
        let vector = self.vector(record)?;
        let row_hash = row_hash(&text, &scalars, vector.as_deref());
        Ok(Row { primary_key, text, scalars, row_hash, position: record.position, vector })
    }

    fn vector(&self, record: &Record) -> Result<Option<Vec<f32>>, MappingError> {
        let field = &self.vector_field;
        let values = match record.get(field) {
            None | Some(FieldValue::Null) => return Ok(None),
            Some(FieldValue::Text(text)) if text.trim().is_empty() => return Ok(None),
            Some(FieldValue::Vector(values)) => values.clone(),
            // Text formats carry vectors as JSON arrays: "[0.1, -0.2, …]".
            Some(FieldValue::Text(text)) => serde_json::from_str(text).map_err(|parse_error| {
                error(field, format!("expected a JSON array of {} floats, found {:?} ({parse_error})", self.dimension, excerpt(text)))
            })?,
            Some(other) => return Err(error(field, format!("expected a list of {} floats, found {}", self.dimension, other.kind()))),
        };
        if values.len() != self.dimension {
            return Err(error(field, format!("expected a vector of dimension {} (the model's), found {}", self.dimension, values.len())));
        }
        if !values.iter().all(|value| value.is_finite()) {
            return Err(error(field, "expected finite numbers, found NaN or infinity"));
        }
        Ok(Some(values))
    }

    fn text(&self, record: &Record) -> Result<String, MappingError> {
        let field = &self.text_field;
        let text = match record.get(field) {
            Some(FieldValue::Text(text)) if !text.trim().is_empty() => text,
            Some(FieldValue::Text(_)) => return Err(error(field, "expected text to embed, found an empty value")),
            Some(other) => return Err(error(field, format!("expected text to embed, found {}", other.kind()))),
            None => return Err(error(field, "expected text to embed, the record has no such field")),
        };
        if text.len() > self.text_max_length {
            return Err(error(field, format!("expected at most {} bytes (text_max_length), found {}", self.text_max_length, text.len())));
        }
        Ok(text.clone())
    }
}

/// The key derived from the file's content and the record's ordinal.
pub fn derived_key(file_hash: &str, ordinal: u64) -> String {
    let prefix = &file_hash[..file_hash.len().min(DERIVED_KEY_HASH_DIGITS)];
    format!("{prefix}-{ordinal}")
}

fn natural_key(field: &str, value: Option<&FieldValue>, key_type: KeyType) -> Result<String, MappingError> {
    let key = text_key(field, value)?;
    match key_type {
        KeyType::Varchar => Ok(key),
        // Canonical decimal ("007" → "7"), as Milvus returns the key: lookups match it.
        KeyType::Int64 => key.parse::<i64>().map(|number| number.to_string()).map_err(|_| {
            error(field, format!("expected an integer key (the collection's primary key is INT64), found {:?}", excerpt(&key)))
        }),
    }
}

fn text_key(field: &str, value: Option<&FieldValue>) -> Result<String, MappingError> {
    let integer;
    let key = match value {
        Some(FieldValue::Text(text)) => text.trim(),
        Some(FieldValue::Int(number)) => {
            integer = number.to_string();
            integer.as_str()
        }
        Some(FieldValue::Null) | None => return Err(error(field, "expected a primary key (id_field), found none")),
        Some(other) => return Err(error(field, format!("expected a primary key (text or integer), found {}", other.kind()))),
    };
    if key.is_empty() {
        return Err(error(field, "expected a primary key (id_field), found an empty value"));
    }
    if key.len() > MAX_PRIMARY_KEY_BYTES {
        return Err(error(field, format!("expected a key of at most {MAX_PRIMARY_KEY_BYTES} bytes, found {}", key.len())));
    }
    Ok(key.to_owned())
}

fn convert(field: &str, spec: &FieldSpec, value: Option<&FieldValue>) -> Result<ScalarValue, MappingError> {
    let missing = |found: &str| {
        if spec.optional {
            Ok(zero_value(spec.field_type))
        } else {
            Err(error(field, format!("expected {}, found {found}", describe(spec))))
        }
    };
    let mismatch = |value: &FieldValue| error(field, format!("expected {}, found {}", describe(spec), value.kind()));
    let value = match value {
        None => return missing("no such field in the record"),
        Some(FieldValue::Null) => return missing("null"),
        Some(FieldValue::Text(text)) if text.is_empty() && spec.field_type != ScalarType::Varchar => return missing("an empty value"),
        Some(value) => value,
    };
    match (spec.field_type, value) {
        (_, FieldValue::Text(text)) => parse_text(field, spec, text),
        (ScalarType::Json, FieldValue::Json(object @ serde_json::Value::Object(_))) => Ok(ScalarValue::Json(object.clone())),
        (ScalarType::Bool, FieldValue::Bool(flag)) => Ok(ScalarValue::Bool(*flag)),
        (ScalarType::Int64, FieldValue::Int(number)) => Ok(ScalarValue::Int64(*number)),
        (ScalarType::Int32, FieldValue::Int(number)) => i32::try_from(*number)
            .map(ScalarValue::Int32)
            .map_err(|_| error(field, format!("expected an int32, found {number} (out of range)"))),
        (ScalarType::Float, FieldValue::Int(number)) => Ok(ScalarValue::Float(*number as f32)),
        (ScalarType::Double, FieldValue::Int(number)) => Ok(ScalarValue::Double(*number as f64)),
        // A finite double beyond f32's range would become infinity: refused like any misfit.
        (ScalarType::Float, FieldValue::Float(number)) if number.is_finite() && (*number as f32).is_finite() => {
            Ok(ScalarValue::Float(*number as f32))
        }
        (ScalarType::Double, FieldValue::Float(number)) if number.is_finite() => Ok(ScalarValue::Double(*number)),
        (ScalarType::Int64, FieldValue::Float(number)) if number.fract() == 0.0 && number.abs() < 9.0e15 => {
            Ok(ScalarValue::Int64(*number as i64))
        }
        (ScalarType::Int32, FieldValue::Float(number)) if number.fract() == 0.0 && number.abs() <= f64::from(i32::MAX) => {
            Ok(ScalarValue::Int32(*number as i32))
        }
        (_, value) => Err(mismatch(value)),
    }
}

fn parse_text(field: &str, spec: &FieldSpec, text: &str) -> Result<ScalarValue, MappingError> {
    let mismatch = || error(field, format!("expected {}, found {:?}", describe(spec), excerpt(text)));
    let trimmed = text.trim();
    match spec.field_type {
        ScalarType::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(ScalarValue::Bool(true)),
            "false" | "0" | "no" => Ok(ScalarValue::Bool(false)),
            _ => Err(mismatch()),
        },
        ScalarType::Int32 => trimmed.parse().map(ScalarValue::Int32).map_err(|_| mismatch()),
        ScalarType::Int64 => trimmed.parse().map(ScalarValue::Int64).map_err(|_| mismatch()),
        ScalarType::Float => match trimmed.parse::<f32>() {
            Ok(value) if value.is_finite() => Ok(ScalarValue::Float(value)),
            _ => Err(mismatch()),
        },
        ScalarType::Double => match trimmed.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(ScalarValue::Double(value)),
            _ => Err(mismatch()),
        },
        ScalarType::Varchar => {
            let max_length = spec.max_length.unwrap_or(u32::MAX) as usize;
            if text.len() > max_length {
                return Err(error(field, format!("expected at most {max_length} bytes, found {}", text.len())));
            }
            Ok(ScalarValue::Varchar(text.to_owned()))
        }
        ScalarType::Json => match serde_json::from_str(text) {
            Ok(object @ serde_json::Value::Object(_)) => Ok(ScalarValue::Json(object)),
            Ok(_) => Err(mismatch()),
            Err(parse_error) => Err(error(field, format!("expected a JSON object, found {:?} ({parse_error})", excerpt(text)))),
        },
    }
}

fn zero_value(field_type: ScalarType) -> ScalarValue {
    match field_type {
        ScalarType::Bool => ScalarValue::Bool(false),
        ScalarType::Int32 => ScalarValue::Int32(0),
        ScalarType::Int64 => ScalarValue::Int64(0),
        ScalarType::Float => ScalarValue::Float(0.0),
        ScalarType::Double => ScalarValue::Double(0.0),
        ScalarType::Varchar => ScalarValue::Varchar(String::new()),
        ScalarType::Json => ScalarValue::Json(serde_json::Value::Object(serde_json::Map::new())),
    }
}

fn describe(spec: &FieldSpec) -> String {
    match spec.field_type {
        ScalarType::Bool => "a bool (true/false/1/0/yes/no)".to_owned(),
        ScalarType::Int32 => "an int32".to_owned(),
        ScalarType::Int64 => "an int64".to_owned(),
        ScalarType::Float => "a finite float".to_owned(),
        ScalarType::Double => "a finite double".to_owned(),
        ScalarType::Varchar => format!("text of at most {} bytes", spec.max_length.unwrap_or(0)),
        // Milvus JSON fields hold objects (2.3 refuses arrays and scalars at the top level).
        ScalarType::Json => "a JSON object".to_owned(),
    }
}

fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX_CHARS).collect();
    format!("{cut}…")
}

fn error(field: &str, reason: impl Into<String>) -> MappingError {
    MappingError { field: field.to_owned(), reason: reason.into() }
}

/// A stable 63-bit hash of the row's content (text, scalars, and the vector when the record
/// carries one), independent of its key. Incremental re-imports skip rows whose hash Milvus holds.
pub fn row_hash(text: &str, scalars: &[ScalarValue], vector: Option<&[f32]>) -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
    for scalar in scalars {
        let canonical = format!("{scalar:?}");
        hasher.update(&(canonical.len() as u64).to_le_bytes());
        hasher.update(canonical.as_bytes());
    }
    if let Some(vector) = vector {
        hasher.update(b"vector");
        for component in vector {
            hasher.update(&component.to_le_bytes());
        }
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> RowSchema {
        RowSchema {
            key_type: KeyType::Varchar,
            vector_field: "embedding".to_owned(),
            dimension: 3,
            id_field: None,
            text_field: "text".to_owned(),
            text_max_length: 100,
            scalar_fields: vec![
                ("count".to_owned(), FieldSpec { field_type: ScalarType::Int64, max_length: None, optional: false }),
                ("tag".to_owned(), FieldSpec { field_type: ScalarType::Varchar, max_length: Some(5), optional: true }),
            ],
        }
    }

    fn record(values: &[(&str, &str)]) -> Record {
        Record {
            position: RecordPosition { ordinal: 7, line: Some(9), byte_offset: 100 },
            next: crate::format::Checkpoint::Start,
            values: values.iter().map(|(name, value)| (name.to_string(), FieldValue::Text(value.to_string()))).collect(),
        }
    }

    #[test]
    fn derived_keys_are_deterministic() {
        let row = schema().map(&record(&[("text", "hi"), ("count", " 3 ")]), "abcdef0123456789ffff").unwrap();
        assert_eq!(row.primary_key, "abcdef0123456789-7");
        assert_eq!(row.scalars, vec![ScalarValue::Int64(3), ScalarValue::Varchar(String::new())]);
        let again = schema().map(&record(&[("text", "hi"), ("count", "3")]), "abcdef0123456789ffff").unwrap();
        assert_eq!(row, again);
    }

    #[test]
    fn wrong_type_names_field_and_expectation() {
        let error = schema().map(&record(&[("text", "hi"), ("count", "three")]), "00").unwrap_err();
        assert_eq!(error.field, "count");
        assert!(error.reason.contains("expected an int64, found \"three\""), "{}", error.reason);
    }

    #[test]
    fn missing_text_is_rejected() {
        let error = schema().map(&record(&[("text", "  "), ("count", "1")]), "00").unwrap_err();
        assert_eq!(error.field, "text");
    }

    #[test]
    fn too_long_varchar_is_rejected() {
        let error = schema().map(&record(&[("text", "a"), ("count", "1"), ("tag", "toolong")]), "00").unwrap_err();
        assert_eq!(error.field, "tag");
        assert!(error.reason.contains("at most 5 bytes"));
    }

    #[test]
    fn an_int64_key_takes_integers_in_canonical_form_and_rejects_the_rest() {
        let mut schema = schema().with_key_type(KeyType::Int64);
        schema.id_field = Some("id".to_owned());
        let row = schema.map(&record(&[("id", "007"), ("text", "a"), ("count", "1")]), "00").unwrap();
        assert_eq!(row.primary_key, "7", "as Milvus returns it");
        let error = schema.map(&record(&[("id", "doc-1"), ("text", "a"), ("count", "1")]), "00").unwrap_err();
        assert_eq!(error.field, "id");
        assert!(error.reason.contains("expected an integer key (the collection's primary key is INT64)"), "{}", error.reason);
        let error = schema.map(&record(&[("id", "99999999999999999999"), ("text", "a"), ("count", "1")]), "00").unwrap_err();
        assert!(error.reason.contains("INT64"), "{}", error.reason);
    }

    #[test]
    fn natural_key_is_used_and_required() {
        let mut schema = schema();
        schema.id_field = Some("id".to_owned());
        let row = schema.map(&record(&[("id", "doc-1"), ("text", "a"), ("count", "1")]), "00").unwrap();
        assert_eq!(row.primary_key, "doc-1");
        assert_eq!(schema.map(&record(&[("id", ""), ("text", "a"), ("count", "1")]), "00").unwrap_err().field, "id");
    }

    #[test]
    fn typed_values_convert_or_name_the_mismatch() {
        let spec = |field_type| FieldSpec { field_type, max_length: Some(10), optional: false };
        assert_eq!(convert("n", &spec(ScalarType::Double), Some(&FieldValue::Int(3))).unwrap(), ScalarValue::Double(3.0));
        assert_eq!(convert("n", &spec(ScalarType::Int64), Some(&FieldValue::Float(4.0))).unwrap(), ScalarValue::Int64(4));
        assert!(convert("n", &spec(ScalarType::Int64), Some(&FieldValue::Float(4.5))).is_err());
        assert!(convert("n", &spec(ScalarType::Float), Some(&FieldValue::Float(1e300))).is_err(), "beyond f32: not infinity");
        assert!(convert("n", &spec(ScalarType::Int32), Some(&FieldValue::Int(1 << 40))).unwrap_err().reason.contains("out of range"));
        let error = convert("flag", &spec(ScalarType::Bool), Some(&FieldValue::Int(1))).unwrap_err();
        assert_eq!(error.reason, "expected a bool (true/false/1/0/yes/no), found an integer");
        let object = FieldValue::Json(serde_json::json!({"k": [1, 2]}));
        assert_eq!(convert("j", &spec(ScalarType::Json), Some(&object)).unwrap(), ScalarValue::Json(serde_json::json!({"k": [1, 2]})));
        let array = convert("j", &spec(ScalarType::Json), Some(&FieldValue::Vector(vec![1.0, 2.0]))).unwrap_err();
        assert_eq!(array.reason, "expected a JSON object, found a list of numbers");
        assert!(convert("j", &spec(ScalarType::Json), Some(&FieldValue::Text("[1]".into()))).is_err());
    }

    #[test]
    fn precomputed_vectors_are_taken_when_their_dimension_fits() {
        let mut with_vector = record(&[("text", "hi"), ("count", "1")]);
        with_vector.values.push(("embedding".into(), FieldValue::Vector(vec![0.1, 0.2, 0.3])));
        assert_eq!(schema().map(&with_vector, "00").unwrap().vector, Some(vec![0.1, 0.2, 0.3]));
        with_vector.values.last_mut().unwrap().1 = FieldValue::Vector(vec![0.1]);
        let error = schema().map(&with_vector, "00").unwrap_err();
        assert_eq!(error.field, "embedding");
        assert!(error.reason.contains("dimension 3"), "{}", error.reason);
        assert_eq!(schema().map(&record(&[("text", "hi"), ("count", "1")]), "00").unwrap().vector, None);
        let from_text = schema().map(&record(&[("text", "hi"), ("count", "1"), ("embedding", "[1, 0.5, -2]")]), "00").unwrap();
        assert_eq!(from_text.vector, Some(vec![1.0, 0.5, -2.0]));
        let bad = schema().map(&record(&[("text", "hi"), ("count", "1"), ("embedding", "[1, x]")]), "00").unwrap_err();
        assert!(bad.reason.contains("expected a JSON array of 3 floats"), "{}", bad.reason);
    }

    #[test]
    fn row_hash_changes_with_content_only() {
        let first = row_hash("a", &[ScalarValue::Int64(1)], None);
        assert_eq!(first, row_hash("a", &[ScalarValue::Int64(1)], None));
        assert_ne!(first, row_hash("a", &[ScalarValue::Int64(2)], None));
        assert_ne!(first, row_hash("b", &[ScalarValue::Int64(1)], None));
        assert_ne!(first, row_hash("a", &[ScalarValue::Int64(1)], Some(&[0.5])));
        assert_ne!(row_hash("a", &[], Some(&[0.5])), row_hash("a", &[], Some(&[0.25])));
        assert!(first >= 0);
    }
}
