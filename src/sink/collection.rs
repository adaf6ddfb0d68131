//! The collection a pipeline writes, as the sink handles it: created when missing (schema, vector
//! index, load), validated field by field when it exists, once per process and spec; the key type
//! it was created or found with ([`MilvusSink::key_type`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use milvus::v2::prelude::{
    ConsistencyLevel, CreateCollectionRequest, CreateIndexRequest, DataType, DescribeCollectionRequest, HasCollectionRequest, IndexParam,
    IndexType, LoadCollectionRequest, MetricType,
};

use super::schema::{mismatches, resolved_key_type, ActualField, CollectionSpec};
use super::{MilvusSink, SinkError};
use crate::fault::{Classify, Fault};
use crate::settings::{self, KeyType};

impl MilvusSink {
    /// Creates the collection (schema, vector index, load) when missing; otherwise checks that it
    /// fits `spec` field by field and holds vectors of the same model, and loads it. Once per
    /// process and spec: later calls return at once, concurrent ones wait for the first; another
    /// process (or pipeline) creating it at the same moment is success when the schema fits.
    pub async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<(), SinkError> {
        let gate = self.collection_gate(&spec.collection.name);
        let mut checked = gate.lock().await;
        let fingerprint = format!("{spec:?}");
        if checked.contains(&fingerprint) {
            return Ok(());
        }
        if self.has_collection(&spec.collection.name).await? {
            self.validate_collection(spec).await?;
        } else if let Err(error) = self.create_collection(spec).await {
            // Someone else (another vecdrop, Lite's "File exists") created it meanwhile: fine if it fits.
            if error.fault() == Fault::Transient || !self.has_collection(&spec.collection.name).await? {
                return Err(error);
            }
            tracing::info!(collection = %spec.collection.name, "collection was created concurrently; checking it fits");
            self.validate_collection(spec).await?;
        }
        self.load(spec).await?;
        checked.insert(fingerprint);
        Ok(())
    }

    /// The type of `spec`'s primary key: as configured (`id_type`), else as this process found or
    /// created the collection, else VARCHAR.
    pub fn key_type(&self, spec: &CollectionSpec) -> KeyType {
        spec.collection.key_type.unwrap_or_else(|| {
            self.key_types.lock().expect("key types lock").get(&spec.collection.name).copied().unwrap_or(KeyType::Varchar)
        })
    }

    pub(super) fn remember_key_type(&self, collection: &str, key: KeyType) {
        self.key_types.lock().expect("key types lock").insert(collection.to_owned(), key);
    }

    /// Forgets that `collection` was checked, so that the next file checks (or creates) it again:
    /// called after an import failed, since the collection may have been dropped or changed.
    pub fn forget_collection(&self, collection: &str) {
        self.collections.lock().expect("collections lock").remove(collection);
    }

    pub(super) fn collection_gate(&self, collection: &str) -> Arc<tokio::sync::Mutex<HashSet<String>>> {
        Arc::clone(self.collections.lock().expect("collections lock").entry(collection.to_owned()).or_default())
    }

    /// Looks at `spec`'s collection without creating or loading anything: `Ok(false)` when it
    /// does not exist yet, `Ok(true)` when it exists and fits `spec` (fields and model), an error
    /// naming each mismatch otherwise. For `vecdrop check`.
    pub async fn inspect_collection(&self, spec: &CollectionSpec) -> Result<bool, SinkError> {
        if !self.has_collection(&spec.collection.name).await? {
            return Ok(false);
        }
        self.validate_collection(spec).await?;
        Ok(true)
    }

    /// Validates and loads an existing collection (for reading); a missing one is an error.
    pub async fn open_collection(&self, spec: &CollectionSpec) -> Result<(), SinkError> {
        if !self.has_collection(&spec.collection.name).await? {
            return Err(SinkError::Response {
                operation: "search",
                message: format!("collection {} does not exist yet: import a file first", spec.collection.name),
            });
        }
        self.validate_collection(spec).await?;
        self.load(spec).await
    }

    /// Whether `collection` exists (also a cheap "does Milvus serve requests" probe).
    pub async fn has_collection(&self, collection: &str) -> Result<bool, SinkError> {
        self.retrying("has_collection", collection, || async {
            let request = HasCollectionRequest::builder().collection_name(collection.to_owned()).build()?;
            Ok(self.client().await?.has_collection(request).await?.exists())
        })
        .await
    }

    pub(super) async fn load(&self, spec: &CollectionSpec) -> Result<(), SinkError> {
        self.retrying("load_collection", &spec.collection.name, || async {
            let request =
                LoadCollectionRequest::builder().collection_name(spec.collection.name.clone()).sync(true).timeout_ms(300_000).build()?;
            self.client().await?.load_collection(request).await?;
            Ok(())
        })
        .await
    }

    pub(super) async fn create_collection(&self, spec: &CollectionSpec) -> Result<(), SinkError> {
        self.retrying("create_collection", &spec.collection.name, || async {
            let request = CreateCollectionRequest::builder()
                .collection_name(spec.collection.name.clone())
                .description(spec.description())
                .schema(spec.schema())
                .num_shards(1)
                .consistency_level(ConsistencyLevel::Strong)
                .build()?;
            self.client().await?.create_collection(request).await?;
            Ok(())
        })
        .await?;
        self.remember_key_type(&spec.collection.name, spec.new_key_type());
        let params: HashMap<String, String> = spec
            .collection
            .index
            .params
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_owned)))
            .collect();
        self.retrying("create_index", &spec.collection.name, || async {
            let index = IndexParam::new()
                .field_name(spec.collection.vector_field.clone())
                .index_name(format!("{}_index", spec.collection.vector_field))
                .index_type(sdk_index_type(spec.collection.index.index_type))
                .metric_type(sdk_metric(spec.collection.index.metric))
                .extra_params(params.clone());
            let request = CreateIndexRequest::builder()
                .collection_name(spec.collection.name.clone())
                .index_params(vec![index])
                // Waiting uses AllocTimestamp, which Milvus Lite lacks; the collection is empty, so
                // the index is ready at once and loading (below) waits for what remains.
                .sync(false)
                .build()?;
            self.client().await?.create_index(request).await?;
            Ok(())
        })
        .await?;
        tracing::info!(collection = %spec.collection.name, index = %spec.collection.index.index_type, metric = %spec.collection.index.metric, "collection created");
        Ok(())
    }

    pub(super) async fn validate_collection(&self, spec: &CollectionSpec) -> Result<(), SinkError> {
        let response = self
            .retrying("describe_collection", &spec.collection.name, || async {
                let request = DescribeCollectionRequest::builder().collection_name(spec.collection.name.clone()).build()?;
                self.client().await?.describe_collection(request).await
            })
            .await?;
        let description = response.description();
        let actual: Vec<ActualField> = description
            .get_schema()
            .get_fields()
            .iter()
            .map(|field| {
                let data_type = field.get_data_type();
                let size = match data_type {
                    DataType::VarChar => field.get_max_length(),
                    DataType::FloatVector => field.get_dimension(),
                    _ => 0,
                };
                ActualField { name: field.get_name().to_owned(), data_type, size, primary: field.is_primary_key() }
            })
            .collect();
        let key = resolved_key_type(spec.collection.key_type, &actual);
        let problems = mismatches(&spec.expected_fields_keyed(key), &actual);
        if !problems.is_empty() {
            return Err(SinkError::SchemaMismatch { collection: spec.collection.name.clone(), problems });
        }
        self.remember_key_type(&spec.collection.name, key);
        if let Some(found) = description.get_description().split("model=").nth(1) {
            let found = found.trim();
            if found != spec.model_identity {
                return Err(SinkError::ModelMismatch {
                    collection: spec.collection.name.clone(),
                    found: found.to_owned(),
                    expected: spec.model_identity.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The SDK's index type: the one place the validated names meet the SDK's.
fn sdk_index_type(index_type: settings::IndexType) -> IndexType {
    match index_type {
        settings::IndexType::AutoIndex => IndexType::AutoIndex,
        settings::IndexType::Flat => IndexType::Flat,
        settings::IndexType::IvfFlat => IndexType::IvfFlat,
        settings::IndexType::IvfSq8 => IndexType::IvfSq8,
        settings::IndexType::IvfPq => IndexType::IvfPq,
        settings::IndexType::Hnsw => IndexType::Hnsw,
        settings::IndexType::DiskAnn => IndexType::DiskAnn,
        settings::IndexType::Scann => IndexType::Scann,
    }
}

/// The SDK's metric.
fn sdk_metric(metric: settings::Metric) -> MetricType {
    match metric {
        settings::Metric::Cosine => MetricType::Cosine,
        settings::Metric::Ip => MetricType::Ip,
        settings::Metric::L2 => MetricType::L2,
    }
}
