//! **upsert**: rows + vectors → Milvus, through milvus-sdk-rust's `v2` API.
//!
//! Contract of [`MilvusSink::upsert`]: `Ok(n)` means Milvus acknowledged all `n` rows (only then may
//! the caller commit their position); `Err` means some may or may not have landed — replaying
//! the batch is harmless because keys are deterministic and writes are upserts. Requests are
//! column-based and cut so that each stays far below the 64 MB gRPC limit. Every call goes through
//! the one retry layer ([`retry::RetryPolicy`]): transient failures are retried with backoff and
//! jitter until `milvus.retry_deadline`; rate-limit answers also halve the request. Errors say
//! whose fault they are ([`Classify`]).
//!
//! Milvus 2.3.5 lacks expression templates, so key filters are written out (`pk in ["a","b"]`),
//! and its search results lack the primary-key field name, so hits are read column-wise.
//!
//! Flushes are shared: [`GroupFlusher`] gives the files that finished their upserts into one
//! collection one flush.

mod collection;
mod columns;
pub mod flusher;
mod grpc;
pub mod import;
mod lite;
pub mod recent;
mod retry;
mod schema;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use self::flusher::GroupFlusher;
use milvus::v2::error::Error as MilvusError;
use milvus::v2::prelude::{
    ClientV2, ConnectConfig, ConsistencyLevel, DeleteRequest, FieldData, Ids, InsertRequest, QueryRequest, RetryConfig, SearchRequest,
    SearchVectors, TelemetryConfig, UpsertRequest,
};
use milvus::v2::response::dql::QueryResponse;

use self::columns::{columns, json_at, key_of};
pub use self::columns::{key_filter, request_ranges};
pub use grpc::ImportProgress;
pub use import::{ImportApi, ListedImport};
pub use lite::{is_local_path, EmbeddedMilvus};
use retry::Attempt;
pub use retry::{backoff_delay, classify, is_rate_limited, jittered, ErrorClass, RetryPolicy};
pub use schema::{mismatches, resolved_key_type, ActualField, CollectionSpec, ExpectedField};
use tokio::sync::OnceCell;

use self::recent::{ReadPlan, RecentWrites};
use crate::fault::{Classify, Fault};
use crate::mapping::Row;
use crate::settings::{KeyType, MilvusSettings, ROW_HASH_FIELD};

/// Upper bound on the estimated size of one upsert request.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Keys per `pk in [...]` query or delete: keeps expressions and answers small.
const KEYS_PER_REQUEST: usize = 1024;

/// Whether a token sent to `uri` would cross the network unencrypted: plain `http://` (or no
/// scheme) to a host other than a loopback name or address.
pub fn plain_text_beyond_loopback(uri: &str, tls: bool) -> bool {
    if tls || uri.starts_with("https://") {
        return false;
    }
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.is_loopback());
    !loopback
}

/// The limit of one Milvus call (the transport's own timeout).
const RPC_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a flush may take before it is reported as a (transient) failure.
pub const FLUSH_WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Why a Milvus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Milvus could not be reached within the connect timeout.
    #[error("cannot reach Milvus at {uri}: {message}")]
    Connect {
        uri: String,
        /// What the client said.
        message: String,
    },
    /// The embedded Milvus Lite could not be started.
    #[error("embedded milvus lite: {0}")]
    Lite(String),
    /// The existing collection does not fit the pipeline.
    #[error("collection {collection} does not fit the pipeline:\n  {}", problems.join("\n  "))]
    SchemaMismatch {
        collection: String,
        /// One line per field.
        problems: Vec<String>,
    },
    /// The collection holds vectors of another model.
    #[error("collection {collection} was filled by model {found}, this config loads {expected}; vectors of different models cannot be mixed (use another collection)")]
    ModelMismatch {
        collection: String,
        /// Recorded model.
        found: String,
        /// Our model.
        expected: String,
    },
    /// Milvus refused or failed an operation (after retries for transient errors).
    #[error("milvus {operation} on {collection}: {source}")]
    Operation { operation: &'static str, collection: String, source: Box<MilvusError> },
    /// A response did not have the expected shape.
    #[error("milvus {operation}: unexpected response: {message}")]
    Response {
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl Classify for SinkError {
    fn fault(&self) -> Fault {
        match self {
            SinkError::Connect { .. } | SinkError::Lite(_) => Fault::Transient,
            SinkError::SchemaMismatch { .. } | SinkError::ModelMismatch { .. } => Fault::Config,
            SinkError::Operation { operation, source, .. } => match classify(source) {
                ErrorClass::Transient { .. } | ErrorClass::RateLimited => Fault::Transient,
                ErrorClass::Unauthorized => Fault::Config,
                // A refusal of rows (or of keys taken from them) is about the file's data; a
                // refusal of anything else (create, describe, load, flush) about the config.
                ErrorClass::Permanent if DATA_OPERATIONS.contains(operation) => Fault::File,
                ErrorClass::Permanent => Fault::Config,
            },
            SinkError::Response { .. } => Fault::Bug,
        }
    }
}

/// Operations whose requests are built from a file's rows.
const DATA_OPERATIONS: [&str; 3] = ["upsert", "query", "delete"];

/// One search hit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub id: String,
    /// Similarity (COSINE: 1 is identical).
    pub score: f32,
    pub text: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Whether Milvus answered the last call, and since when that has been so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reachability {
    /// Milvus answered the last call (a refusal counts as an answer).
    pub reachable: bool,
    /// When `reachable` last changed (or the sink was opened).
    pub since: SystemTime,
}

/// A connection to Milvus (and the embedded server behind it, if any). The connection is made on
/// first use and re-made by the transport after an outage, so a sink can be opened while Milvus
/// is away ([`MilvusSink::open`]).
pub struct MilvusSink {
    uri: String,
    config: ConnectConfig,
    client: OnceCell<ClientV2>,
    /// The same server through the generated gRPC client, for the calls in [`grpc`].
    raw: grpc::RawMilvus,
    policy: RetryPolicy,
    reachability: Mutex<Reachability>,
    /// Per collection: fingerprints of the specs already checked (or created) by this process, so
    /// that files after the first skip the checks and concurrent files create a collection once.
    collections: Mutex<HashMap<String, Arc<tokio::sync::Mutex<HashSet<String>>>>>,
    /// Per collection: the primary key's type, as created or found ([`MilvusSink::key_type`]).
    key_types: Mutex<HashMap<String, KeyType>>,
    /// Row hashes this process wrote lately: lets unchanged-row lookups read with bounded
    /// staleness ([`recent`]).
    recent: RecentWrites,
    /// The settings it was opened with (the REST import client is made from them).
    settings: MilvusSettings,
    /// The server's import API, asked for on first use ([`import`]).
    import_api: OnceCell<ImportApi>,
    /// Kept so that Milvus Lite lives as long as the sink; dropped (stopped) with it.
    _embedded: Option<EmbeddedMilvus>,
}

impl MilvusSink {
    /// Opens a sink on `settings.uri` without waiting for Milvus (the first operation connects;
    /// until Milvus answers, operations fail as transient). A local path starts embedded Milvus
    /// Lite first, which must come up within `settings.connect_timeout`; `base_dir` is where the
    /// search for its `.venv` starts.
    pub async fn open(settings: &MilvusSettings, base_dir: &Path) -> Result<Self, SinkError> {
        let mut embedded = None;
        let timeout = settings.connect_timeout;
        let uri = if is_local_path(&settings.uri) {
            let data_dir = PathBuf::from(&settings.uri);
            let command = settings.lite_command.clone();
            let base = base_dir.to_owned();
            let started = tokio::task::spawn_blocking(move || EmbeddedMilvus::start(&data_dir, command.as_deref(), &base, timeout))
                .await
                .map_err(|error| SinkError::Lite(error.to_string()))??;
            let uri = started.uri().to_owned();
            embedded = Some(started);
            uri
        } else {
            settings.uri.clone()
        };
        let mut config = ConnectConfig::new()
            .uri(uri.clone())
            .connect_timeout(timeout)
            .rpc_timeout(RPC_TIMEOUT)
            // One attempt per SDK call: vecdrop's RetryPolicy is the only retry layer.
            .retry(RetryConfig::new().max_attempts(1))
            .telemetry(TelemetryConfig::new().enabled(false));
        if !settings.token.is_empty() {
            config = config.token(settings.token.expose());
            if plain_text_beyond_loopback(&uri, settings.tls.enabled) {
                tracing::warn!(%uri, "the Milvus token is sent unencrypted to a host that is not this machine: use https:// or [milvus.tls]");
            }
        }
        let tls = &settings.tls;
        if tls.enabled {
            config = config.secure(true);
            if let Some(file) = &tls.ca_file {
                config = config.ca_certificate(file.display().to_string());
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
                config = config.client_certificate(cert.display().to_string()).client_key(key.display().to_string());
            }
            if let Some(name) = &tls.server_name {
                config = config.tls_server_name(name.clone());
            }
        }
        let raw = grpc::RawMilvus::connect_lazy(&uri, settings.token.expose(), tls, timeout, RPC_TIMEOUT)
            .map_err(|message| SinkError::Connect { uri: uri.clone(), message })?;
        Ok(Self {
            uri,
            config,
            client: OnceCell::new(),
            raw,
            policy: RetryPolicy { deadline: settings.retry_deadline },
            reachability: Mutex::new(Reachability { reachable: true, since: SystemTime::now() }),
            collections: Mutex::new(HashMap::new()),
            key_types: Mutex::new(HashMap::new()),
            recent: RecentWrites::new(settings.graceful_time, std::time::Instant::now()),
            settings: settings.clone(),
            import_api: OnceCell::new(),
            _embedded: embedded,
        })
    }

    /// Opens a sink and connects at once: `Err` when Milvus does not answer within
    /// `settings.connect_timeout`.
    pub async fn connect(settings: &MilvusSettings, base_dir: &Path) -> Result<Self, SinkError> {
        let sink = Self::open(settings, base_dir).await?;
        sink.client().await.map_err(|error| SinkError::Connect { uri: sink.uri().to_owned(), message: error.to_string() })?;
        Ok(sink)
    }

    /// The server's address (Milvus Lite's loopback address for a local path).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether Milvus answered the last call, and since when.
    pub fn reachability(&self) -> Reachability {
        *self.reachability.lock().expect("reachability lock")
    }

    fn observe(&self, attempt: Attempt) {
        let reachable = attempt == Attempt::Answered;
        let mut state = self.reachability.lock().expect("reachability lock");
        if state.reachable != reachable {
            *state = Reachability { reachable, since: SystemTime::now() };
            if reachable {
                tracing::info!(uri = %self.uri, "milvus answers again");
            } else {
                tracing::warn!(uri = %self.uri, "milvus cannot be reached");
            }
        }
    }

    async fn client(&self) -> Result<&ClientV2, MilvusError> {
        self.client.get_or_try_init(|| ClientV2::new(&self.config)).await
    }

    /// Runs one Milvus operation under the retry policy; the error names the operation.
    async fn retrying<T, Call, Fut>(&self, operation: &'static str, collection: &str, call: Call) -> Result<T, SinkError>
    where
        Call: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, MilvusError>>,
    {
        self.policy.run(operation, collection, |attempt| self.observe(attempt), call).await.map_err(|source| SinkError::Operation {
            operation,
            collection: collection.to_owned(),
            source: Box::new(source),
        })
    }

    /// Upserts `rows` with their `vectors` (same length, same order). See the module doc for the
    /// contract. Returns the number of rows Milvus acknowledged. Each request gets the retry
    /// policy's deadline; a rate-limited request is halved and sent again after a pause.
    pub async fn upsert(&self, spec: &CollectionSpec, rows: &[Row], vectors: &[Vec<f32>]) -> Result<u64, SinkError> {
        assert_eq!(rows.len(), vectors.len(), "one vector per row");
        let mut pending: Vec<(usize, usize)> = request_ranges(rows, spec.dimension, MAX_REQUEST_BYTES).into_iter().rev().collect();
        let mut acknowledged = 0u64;
        let mut halvings = 0;
        while let Some((start, end)) = pending.pop() {
            let splittable = end - start > 1;
            let result = self
                .policy
                .run_until(
                    "upsert",
                    &spec.collection.name,
                    |attempt| self.observe(attempt),
                    |class| class == ErrorClass::RateLimited && splittable,
                    || self.upsert_once(spec, &rows[start..end], &vectors[start..end]),
                )
                .await;
            match result {
                Ok(count) => {
                    let written = rows[start..end].iter().map(|row| (row.primary_key.as_str(), row.row_hash));
                    self.recent.wrote(&spec.collection.name, written, std::time::Instant::now());
                    acknowledged += count;
                }
                Err(error) if splittable && is_rate_limited(&error) => {
                    halvings += 1;
                    let middle = start + (end - start) / 2;
                    let pause = backoff_delay(halvings);
                    tracing::warn!(collection = %spec.collection.name, rows = end - start, pause_ms = pause.as_millis() as u64, "milvus rate-limited the upsert; halving the request");
                    tokio::time::sleep(pause).await;
                    crate::telemetry::milvus_call_retried("upsert");
                    pending.push((middle, end));
                    pending.push((start, middle));
                }
                Err(source) => {
                    // It may have landed: lookups of this collection are strong for a while.
                    self.recent.wrote_unknown(&spec.collection.name, std::time::Instant::now());
                    return Err(SinkError::Operation {
                        operation: "upsert",
                        collection: spec.collection.name.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(acknowledged)
    }

    async fn upsert_once(&self, spec: &CollectionSpec, rows: &[Row], vectors: &[Vec<f32>]) -> Result<u64, MilvusError> {
        let insert = InsertRequest::builder()
            .collection_name(spec.collection.name.clone())
            .columns(columns(spec, self.key_type(spec), rows, vectors)?)
            .build()?;
        let request = UpsertRequest::builder().insert(insert).build()?;
        Ok(self.client().await?.upsert(request).await?.upsert_count() as u64)
    }

    /// Seals the collection's growing segments and waits until Milvus has persisted them (the
    /// barrier before a source file is moved or deleted). The flush request and each poll of its
    /// state run under the retry policy; the wait ends with a transient error after
    /// [`FLUSH_WAIT_LIMIT`].
    pub async fn flush(&self, collection: &str) -> Result<(), SinkError> {
        let ticket = self.retrying("flush", collection, || self.raw.flush(collection)).await?;
        let deadline = std::time::Instant::now() + FLUSH_WAIT_LIMIT;
        while !ticket.is_done() {
            tokio::time::sleep(grpc::FLUSH_POLL_INTERVAL).await;
            if self.retrying("flush", collection, || self.raw.flushed(&ticket)).await? {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(SinkError::Operation {
                    operation: "flush",
                    collection: collection.to_owned(),
                    source: Box::new(MilvusError::Timeout(format!("flush not complete after {FLUSH_WAIT_LIMIT:?}"))),
                });
            }
        }
        Ok(())
    }

    /// `count(*)` with strong consistency.
    pub async fn count(&self, collection: &str) -> Result<u64, SinkError> {
        let response = self.query("count", collection, "", &["count(*)".to_owned()]).await?;
        let failed = |source| SinkError::Operation { operation: "count", collection: collection.to_owned(), source: Box::new(source) };
        let mut rows = response.results().rows().map_err(failed)?;
        let row = rows.next().ok_or_else(|| SinkError::Response { operation: "count", message: "no row".to_owned() })?;
        Ok(row.get_i64("count(*)").map_err(failed)? as u64)
    }

    /// Primary key → text of the rows whose keys are in `keys` (missing keys are absent).
    pub async fn texts_by_key(&self, spec: &CollectionSpec, keys: &[String]) -> Result<HashMap<String, String>, SinkError> {
        let key = self.key_type(spec);
        let filter = key_filter(&spec.collection.primary_key, keys, key);
        let response = self
            .query("query", &spec.collection.name, &filter, &[spec.collection.primary_key.clone(), spec.collection.text_field.clone()])
            .await?;
        let failed =
            |source| SinkError::Operation { operation: "query", collection: spec.collection.name.clone(), source: Box::new(source) };
        let mut texts = HashMap::new();
        for row in response.results().rows().map_err(failed)? {
            texts.insert(
                key_of(&row, &spec.collection.primary_key, key).map_err(failed)?,
                row.get_str(&spec.collection.text_field).map_err(failed)?.to_owned(),
            );
        }
        Ok(texts)
    }

    /// Primary key → stored row hash (`_vecdrop_hash`) of the rows whose keys are in `keys`
    /// (missing keys are absent), as of every write acknowledged to this process and every write
    /// older than `milvus.graceful_time` ([`recent`]). Used to skip rows whose content did not
    /// change. Also says how Milvus was read.
    pub async fn stored_hashes(&self, spec: &CollectionSpec, keys: &[String]) -> Result<(HashMap<String, i64>, ReadPlan), SinkError> {
        let collection = &spec.collection.name;
        let plan = self.recent.plan(collection, std::time::Instant::now());
        let consistency = match plan {
            ReadPlan::Strong => ConsistencyLevel::Strong,
            ReadPlan::Bounded => ConsistencyLevel::Bounded,
        };
        let mut hashes = HashMap::with_capacity(keys.len());
        let key = self.key_type(spec);
        for chunk in keys.chunks(KEYS_PER_REQUEST) {
            let filter = key_filter(&spec.collection.primary_key, chunk, key);
            let output_fields = [spec.collection.primary_key.clone(), ROW_HASH_FIELD.to_owned()];
            let response = self.query_with("query", collection, &filter, &output_fields, consistency).await?;
            let failed =
                |source| SinkError::Operation { operation: "query", collection: spec.collection.name.clone(), source: Box::new(source) };
            for row in response.results().rows().map_err(failed)? {
                hashes
                    .insert(key_of(&row, &spec.collection.primary_key, key).map_err(failed)?, row.get_i64(ROW_HASH_FIELD).map_err(failed)?);
            }
        }
        if plan == ReadPlan::Bounded {
            self.recent.overlay(collection, keys, &mut hashes);
        }
        Ok((hashes, plan))
    }

    /// Ends the start-up window of strong lookups now (tests of the bounded path, see
    /// [`recent`]).
    #[doc(hidden)]
    pub fn skip_strong_lookup_window(&mut self) {
        let window = self.recent.window();
        self.recent.backdate(window);
    }

    /// A strongly consistent query of `collection` under the retry policy.
    async fn query(
        &self,
        operation: &'static str,
        collection: &str,
        filter: &str,
        output_fields: &[String],
    ) -> Result<QueryResponse, SinkError> {
        self.query_with(operation, collection, filter, output_fields, ConsistencyLevel::Strong).await
    }

    /// A query of `collection` at `consistency` under the retry policy.
    async fn query_with(
        &self,
        operation: &'static str,
        collection: &str,
        filter: &str,
        output_fields: &[String],
        consistency: ConsistencyLevel,
    ) -> Result<QueryResponse, SinkError> {
        self.retrying(operation, collection, || async {
            let request = QueryRequest::builder()
                .collection_name(collection.to_owned())
                .filter(filter.to_owned())
                .output_fields(output_fields.to_vec())
                .consistency_level(consistency)
                .build()?;
            self.client().await?.query(request).await
        })
        .await
    }

    /// Deletes the rows whose primary keys are in `keys` (absent keys are ignored, so repeating a
    /// delete is harmless).
    pub async fn delete_keys(&self, spec: &CollectionSpec, keys: &[String]) -> Result<(), SinkError> {
        // Deleted keys are not remembered one by one: lookups of this collection are strong for a
        // window after the delete instead (deletes are rare: mirror passes).
        let collection = &spec.collection.name;
        self.recent.wrote_unknown(collection, std::time::Instant::now());
        let key = self.key_type(spec);
        let outcome = async {
            for chunk in keys.chunks(KEYS_PER_REQUEST) {
                let filter = key_filter(&spec.collection.primary_key, chunk, key);
                self.retrying("delete", collection, || async {
                    let request = DeleteRequest::builder().collection_name(collection.clone()).filter(filter.clone()).build()?;
                    self.client().await?.delete(request).await
                })
                .await?;
            }
            Ok(())
        }
        .await;
        self.recent.wrote_unknown(collection, std::time::Instant::now());
        outcome
    }

    /// The `k` rows nearest to `vector`.
    pub async fn search(&self, spec: &CollectionSpec, vector: Vec<f32>, k: usize) -> Result<Vec<Hit>, SinkError> {
        let mut output_fields = vec![spec.collection.text_field.clone()];
        output_fields.extend(spec.collection.scalar_fields.iter().map(|(name, _)| name.clone()));
        let response = self
            .retrying("search", &spec.collection.name, || async {
                let request = SearchRequest::builder()
                    .collection_name(spec.collection.name.clone())
                    .vector_field(spec.collection.vector_field.clone())
                    .vectors(SearchVectors::Float(vec![vector.clone()]))
                    .limit(k as i64)
                    .output_fields(output_fields.clone())
                    .consistency_level(ConsistencyLevel::Strong)
                    .build()?;
                self.client().await?.search(request).await
            })
            .await?;
        let Some(result) = response.results().iter().next() else { return Ok(Vec::new()) };
        let ids: Vec<String> = match result.get_ids() {
            Ids::VarChar(ids) => ids.clone(),
            Ids::Int64(ids) => ids.iter().map(i64::to_string).collect(),
            _ => return Err(SinkError::Response { operation: "search", message: "expected VarChar or Int64 primary keys".to_owned() }),
        };
        let scores = result.get_scores();
        let texts = result.get_output_field(&spec.collection.text_field).and_then(FieldData::as_varchar).unwrap_or(&[]);
        let hits = (0..ids.len())
            .map(|index| Hit {
                id: ids[index].clone(),
                score: scores.get(index).copied().unwrap_or(f32::NAN),
                text: texts.get(index).cloned().unwrap_or_default(),
                fields: spec
                    .collection
                    .scalar_fields
                    .iter()
                    .filter_map(|(name, _)| result.get_output_field(name).map(|column| (name.clone(), json_at(column, index))))
                    .collect(),
            })
            .collect();
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_over_plain_http_to_another_host_is_flagged() {
        for uri in ["http://milvus.internal:19530", "10.0.0.5:19530", "http://[2001:db8::1]:19530"] {
            assert!(plain_text_beyond_loopback(uri, false), "{uri}");
        }
        for uri in ["http://127.0.0.1:19530", "http://localhost:19530", "http://[::1]:19530", "127.0.0.2:19530"] {
            assert!(!plain_text_beyond_loopback(uri, false), "{uri}");
        }
        assert!(!plain_text_beyond_loopback("https://milvus.internal:19530", false));
        assert!(!plain_text_beyond_loopback("http://milvus.internal:19530", true), "TLS configured");
    }

    #[test]
    fn sink_errors_say_whose_fault_they_are() {
        let operation = |operation, source| SinkError::Operation { operation, collection: "c".into(), source: Box::new(source) };
        assert_eq!(SinkError::Connect { uri: "u".into(), message: "refused".into() }.fault(), Fault::Transient);
        assert_eq!(SinkError::SchemaMismatch { collection: "c".into(), problems: vec![] }.fault(), Fault::Config);
        assert_eq!(SinkError::ModelMismatch { collection: "c".into(), found: "a".into(), expected: "b".into() }.fault(), Fault::Config);
        assert_eq!(operation("upsert", MilvusError::Timeout("down".into())).fault(), Fault::Transient);
        assert_eq!(operation("flush", MilvusError::Timeout("down".into())).fault(), Fault::Transient);
        assert_eq!(operation("upsert", MilvusError::Unexpected("row refused".into())).fault(), Fault::File);
        assert_eq!(operation("create_collection", MilvusError::Unexpected("refused".into())).fault(), Fault::Config);
        assert_eq!(SinkError::Response { operation: "count", message: "no row".into() }.fault(), Fault::Bug);
    }
}
