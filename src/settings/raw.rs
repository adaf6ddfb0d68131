//! The file as written: serde structs that mirror the TOML exactly (`deny_unknown_fields`), with
//! every default stated once, in the `Default` impl of its section (`#[serde(default)]` on each
//! struct takes missing keys from there).
//!
//! Nothing here is checked beyond what serde checks; [`super::Settings`] is built from a
//! [`RawSettings`] by one conversion that validates, parses and resolves. Sections whose keys need
//! no conversion ([`DaemonSettings`], [`ImportSettings`], [`StatusSettings`], [`EmbeddingSettings`],
//! [`StateSettings`]) are used by both layers; the conversion only checks them (and makes their
//! paths absolute).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSettings {
    /// `[milvus]`.
    pub milvus: RawMilvus,
    /// `[embedding]`.
    pub embedding: EmbeddingSettings,
    /// `[state]`.
    pub state: StateSettings,
    /// `[status]`.
    pub status: StatusSettings,
    /// `[daemon]`.
    pub daemon: DaemonSettings,
    /// `[import]`.
    pub import: ImportSettings,
    /// `[[pipelines]]`.
    pub pipelines: Vec<RawPipeline>,
    /// `[[plugins]]`.
    pub plugins: Vec<RawPlugin>,
}

/// `[milvus]`: where rows go.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMilvus {
    /// `http://host:port` of a Milvus server, or a local path (e.g. `data/milvus.db`) that starts
    /// embedded Milvus Lite with its data in that directory.
    pub uri: String,
    /// `user:password` or an API key; empty for none. Prefer `token_file` (or the environment
    /// variable `VECDROP__MILVUS__TOKEN`, or systemd's `LoadCredential=milvus-token:…`): a token
    /// written here sits in a file that is often readable by more people than the daemon.
    pub token: String,
    /// A file holding the token (trailing newline ignored); must not be readable by others. Relative
    /// to the config's folder.
    pub token_file: Option<PathBuf>,
    /// TLS to the Milvus server (an `https://` uri turns it on with the system's roots).
    pub tls: RawTls,
    /// Command that starts Milvus Lite for a local `uri`; default: `.venv/bin/milvus-lite` next to the
    /// config or the working directory, else `milvus-lite` on `PATH`.
    pub lite_command: Option<PathBuf>,
    /// How long to wait for Milvus to answer at start-up, e.g. `"60s"`; default
    /// [`DEFAULT_CONNECT_TIMEOUT`]. Optional here only so that a file giving both it and
    /// `connect_timeout_secs` can be refused.
    #[serde(with = "duration::optional")]
    pub connect_timeout: Option<Duration>,
    /// Replaced by `connect_timeout` (one convention for durations); still accepted with a warning.
    pub connect_timeout_secs: Option<u64>,
    /// How long one Milvus operation retries transient errors (unreachable, not ready, rate
    /// limited) before its file's import stops as transient: the daemon then keeps the file and
    /// backs off, `vecdrop import` retries until `import.retry_deadline`. E.g. `"60s"`.
    #[serde(with = "duration")]
    pub retry_deadline: Duration,
    /// Replaced by `retry_deadline` (one retry layer); still accepted, ignored with a warning.
    pub max_attempts: Option<u32>,
    /// Files that finished their upserts into one collection share one flush (the barrier before
    /// a source is moved or deleted): a collection is flushed at most once per window, e.g. `"1s"`.
    /// The first flush after a quiet spell starts at once.
    #[serde(with = "duration")]
    pub flush_window: Duration,
    /// How stale Milvus's bounded-consistency reads may be: the server's `common.gracefulTime`
    /// (5 s by default). Unchanged-row lookups read with bounded staleness and lay this process's
    /// own recent writes over the answer, instead of waiting for a strongly consistent read
    /// (~200 ms each on Milvus 2.3). Set it to the server's value if that was changed; `"0s"`
    /// makes every lookup strongly consistent.
    #[serde(with = "duration")]
    pub graceful_time: Duration,
}

/// `[milvus.tls]`: how the connection to Milvus is encrypted and whom it trusts. Any key set turns
/// TLS on. Paths are relative to the config's folder.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of the CA that signed the server's certificate; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the uri's host.
    pub server_name: Option<String>,
}

/// `milvus.connect_timeout` when neither it nor `connect_timeout_secs` is given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for RawMilvus {
    fn default() -> Self {
        Self {
            uri: "http://127.0.0.1:19530".to_owned(),
            token: String::new(),
            token_file: None,
            tls: RawTls::default(),
            lite_command: None,
            connect_timeout: None,
            connect_timeout_secs: None,
            retry_deadline: Duration::from_secs(60),
            max_attempts: None,
            flush_window: Duration::from_secs(1),
            graceful_time: Duration::from_secs(5),
        }
    }
}

/// `[import]`: the one-off `vecdrop import`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSettings {
    /// How long `vecdrop import` keeps retrying a file after transient faults (Milvus away) before
    /// it exits 1; the committed position is kept, so running it again resumes. E.g. `"10m"`.
    #[serde(with = "duration")]
    pub retry_deadline: Duration,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self { retry_deadline: Duration::from_secs(600) }
    }
}

/// `[embedding]`: the model. Relative paths are made absolute when the config is loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// Directory holding `model.onnx` and `tokenizer.json` (HF layout).
    pub model_dir: PathBuf,
    /// Texts longer than this many word pieces are truncated (sentence-transformers uses 256).
    pub max_tokens: usize,
    /// Path of the ONNX Runtime shared library; default `$ORT_DYLIB_PATH`, else the one in the
    /// project's `.venv` (PyPI `onnxruntime`).
    pub ort_library: Option<PathBuf>,
    /// `cpu` or `cuda`.
    pub device: Device,
    /// `fp32` (default, `model.onnx`) or `int8` (`model.int8.onnx`).
    pub precision: Precision,
    /// Upper bound on `batch size × longest sequence` of one inference call; 0 = measured on this
    /// host at the first start and kept in the state directory ([`crate::embed::calibrate`]), or
    /// the device's fixed budget where nothing is measured ([`EmbeddingSettings::batch_budget`]).
    pub batch_tokens: usize,
    /// Upper bound on texts in one inference call; 0 = measured with `batch_tokens`.
    pub max_batch_texts: usize,
    /// ONNX Runtime intra-op threads; 0 = one per core.
    pub threads: usize,
    /// Whether ONNX Runtime's intra-op threads spin (busy-wait) between parallel sections instead
    /// of sleeping. Spinning wins a little when inference is alone on the machine and loses when
    /// the other stages (reading, upserts, Milvus itself) need the same cores; see ARCHITECTURE.md.
    pub intra_op_spinning: bool,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("models/all-MiniLM-L6-v2"),
            max_tokens: 256,
            ort_library: None,
            device: Device::default(),
            precision: Precision::default(),
            batch_tokens: 0,
            max_batch_texts: 0,
            threads: 0,
            intra_op_spinning: false,
        }
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (fails at start-up when unavailable).
    Cuda,
}

/// Which weights are loaded.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Full precision `model.onnx`.
    #[default]
    Fp32,
    /// Dynamically quantised `model.int8.onnx`.
    Int8,
}

/// `[state]`. The directory is made absolute when the config is loaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateSettings {
    /// Ledger and dead-letter files live here.
    pub dir: PathBuf,
}

impl Default for StateSettings {
    fn default() -> Self {
        Self { dir: PathBuf::from("state") }
    }
}

/// `[status]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSettings {
    /// Address of `/metrics`, `/status`, `/healthz`.
    pub listen: String,
    /// A file holding the bearer token that every path but `/healthz` and `/metrics` then needs
    /// (`Authorization: Bearer …`); surrounding whitespace ignored; must not be readable by others.
    /// Relative to the config's folder. Required when `listen` is beyond loopback.
    pub token_file: Option<PathBuf>,
    /// Host names (the `Host` header, any port) served besides `localhost`, loopback and the
    /// connection's own addresses and `listen`'s host: e.g. the name Prometheus scrapes this host by.
    pub allowed_hosts: Vec<String>,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".to_owned(), token_file: None, allowed_hosts: Vec::new() }
    }
}

/// `[daemon]`: how `vecdrop run` finds ready files and how many it imports at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonSettings {
    /// Files imported at the same time. They share one model, whose batches mix rows of every
    /// file in flight, so small files need not wait for each other's Milvus round trips.
    pub max_parallel_files: usize,
    /// Files in flight may together be at most this large, in MiB (a larger file runs alone): many
    /// small files run side by side, big ones do not pile up.
    pub max_mib_in_flight: u64,
    /// Ready files waiting for a worker; beyond it, discovery waits for the next rescan.
    pub queue_capacity: usize,
    /// Full rescan of the drop folders (file events are only hints), e.g. `"30s"`.
    #[serde(with = "duration")]
    pub rescan_interval: Duration,
    /// A file whose size and modification time held still this long is ready, e.g. `"2s"`.
    #[serde(with = "duration")]
    pub settle: Duration,
    /// On SIGTERM/SIGINT, how long imports in flight get to commit their batches before exit.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// First wait of a pipeline after a transient fault (Milvus away); doubles per retry, with
    /// jitter, up to `retry_backoff_max`. Configuration faults wait `retry_backoff_max`.
    #[serde(with = "duration")]
    pub retry_backoff: Duration,
    /// Longest wait between two retries of a waiting pipeline.
    #[serde(with = "duration")]
    pub retry_backoff_max: Duration,
    /// A file whose import started this many times in a row and each time ended with the process
    /// dying before any progress (a crash, an OOM kill) is quarantined instead of tried again.
    pub max_crashes: u32,
    /// Symbolic links in drop folders: `"refuse"` (default: never read, moved or deleted; logged
    /// and counted) or `"inside"` (followed when the link resolves to a regular file inside the
    /// same drop folder; the link itself is what gets moved).
    pub drop_folder_links: LinkPolicy,
    /// Several daemons (one per host, each with its own ledger) share the drop folders: a daemon
    /// claims a ready file by renaming it into `<dir>/.claimed/<instance>/` before reading it.
    pub shared_drop_folders: bool,
    /// This daemon's name among those sharing the drop folders; default: the host name.
    pub instance: String,
    /// Claims of an instance whose heartbeat (renewed on every rescan) is older than this are
    /// returned to the folder, e.g. `"5m"`.
    #[serde(with = "duration")]
    pub claim_stale_after: Duration,
}

/// The Milvus type of a collection's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// VARCHAR (up to 512 bytes): any id, integers as their decimal text.
    Varchar,
    /// INT64: integer ids, as most Milvus schemas and pymilvus scripts have them.
    Int64,
}

/// What to do with a symbolic link found where files are picked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPolicy {
    /// Never follow.
    #[default]
    Refuse,
    /// Follow when the target lies inside the folder being watched (drop folders) or below the
    /// glob's fixed base directory (schedules).
    Inside,
    /// Always follow (schedules only: the operator wrote the globs).
    Follow,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            max_parallel_files: 8,
            max_mib_in_flight: 64,
            queue_capacity: 64,
            rescan_interval: Duration::from_secs(30),
            settle: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(300),
            max_crashes: 3,
            drop_folder_links: LinkPolicy::Refuse,
            shared_drop_folders: false,
            instance: String::new(),
            claim_stale_after: Duration::from_secs(300),
        }
    }
}

/// One `[[pipelines]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPipeline {
    /// Unique name, used in logs, status and `--pipeline`. Required (optional here so that the
    /// error can name the entry).
    pub name: Option<String>,
    /// Milvus collection; created from this section when missing, else validated against it.
    /// Required, like `name`.
    pub collection: Option<String>,
    /// `auto` (by extension), a built-in format name or a plugin's.
    pub format: String,
    /// For JSON files whose records sit in an array inside a top-level object: a JSON pointer to
    /// it, e.g. `/records`.
    pub json_pointer: Option<String>,
    /// Field holding each record's natural primary key; without it keys are derived from the file's
    /// content hash and the record ordinal.
    pub id_field: Option<String>,
    /// Milvus type of the primary key: `"varchar"` (text or integer ids, as text) or `"int64"`
    /// (integer ids only; a record whose id is not an integer is dead-lettered; needs `id_field`).
    /// Unset: an existing collection's key type, VARCHAR for a new collection.
    pub id_type: Option<KeyType>,
    /// Field whose text is embedded (and stored).
    pub text_field: String,
    /// Float-vector field of the collection.
    pub vector_field: String,
    /// Longest text stored, in bytes (Milvus VarChar max_length).
    pub text_max_length: u32,
    /// Scalar fields kept from each record, with their Milvus types.
    pub fields: BTreeMap<String, FieldSpec>,
    /// Index built on the vector field when the collection is created.
    pub index: RawIndex,
    /// Rows per upsert request (also capped by bytes).
    pub batch_rows: usize,
    /// Drop directories.
    pub watch: Vec<PathBuf>,
    /// `move` (to `.done/`), `delete` or `keep`.
    pub after_import: AfterImport,
    /// Globs imported on `schedule`.
    pub paths: Vec<String>,
    /// Symbolic links met below a glob's fixed part (`/srv/exports/` of `/srv/exports/*/x.csv`):
    /// `"refuse"` (default: skipped with a warning), `"inside"` (followed when they stay below the
    /// fixed part) or `"follow"`. Paths without wildcards are the operator's and always followed.
    pub glob_links: LinkPolicy,
    /// Cron expression, seconds field first.
    pub schedule: Option<String>,
    /// Time zone of `schedule` (IANA name such as `"Europe/Berlin"`); default UTC.
    pub timezone: Option<String>,
    /// Delete rows whose keys disappeared from a new version of the same source (requires `id_field`).
    pub mirror: bool,
    /// A mirror pass that would delete more than this share of the rows the source's previous
    /// version held is held back and reported instead (a truncated upload must not wipe a
    /// collection); 1.0 never holds back.
    pub mirror_max_delete_share: f64,
    /// Big files through Milvus's bulk import instead of upserts (`[pipelines.bulk_import]`);
    /// unset: every file is upserted.
    pub bulk_import: Option<RawBulkImport>,
}

/// `[pipelines.bulk_import]` as written: when a file takes the bulk path and where its rows are
/// staged.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBulkImport {
    /// Files with at least this many records take the bulk path (Parquet: the footer's row count;
    /// CSV, JSON Lines and JSON: the number of lines, an upper bound).
    pub min_rows: u64,
    /// Where the staged Parquet files go, on Milvus's storage (required): a folder Milvus reads
    /// under the same absolute path (a standalone server with local storage on this machine), or
    /// `s3://BUCKET/PREFIX` — the bucket Milvus reads imports from (its `minio.bucketName`).
    pub staging: Option<String>,
    /// S3 endpoint for a bucket that is not AWS's, e.g. `"http://minio:9000"`.
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// Access key id; default: `$AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// File holding the secret access key (not readable by others); default:
    /// `$AWS_SECRET_ACCESS_KEY`, else the systemd credential `s3-secret-key`.
    pub secret_access_key_file: Option<PathBuf>,
    /// How often a running import is polled, e.g. `"500ms"`.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Submissions of a staged file whose import task failed before the file is failed with
    /// Milvus's reason (a task failure leaves none of its rows visible).
    pub max_submissions: u32,
}

impl Default for RawBulkImport {
    fn default() -> Self {
        Self {
            min_rows: 100_000,
            staging: None,
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key_file: None,
            poll_interval: Duration::from_millis(500),
            max_submissions: 2,
        }
    }
}

impl Default for RawPipeline {
    fn default() -> Self {
        Self {
            name: None,
            collection: None,
            format: "auto".to_owned(),
            json_pointer: None,
            id_field: None,
            id_type: None,
            text_field: "text".to_owned(),
            vector_field: "embedding".to_owned(),
            text_max_length: 65_535,
            watch: Vec::new(),
            paths: Vec::new(),
            glob_links: LinkPolicy::Refuse,
            schedule: None,
            after_import: AfterImport::default(),
            timezone: None,
            mirror: false,
            mirror_max_delete_share: 0.5,
            bulk_import: None,
            batch_rows: 512,
            index: RawIndex::default(),
            fields: BTreeMap::new(),
        }
    }
}

/// What happens to a file after its rows are committed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AfterImport {
    /// Move to `<dir>/.done/YYYY-MM-DD/`.
    #[default]
    Move,
    /// Delete the file.
    Delete,
    /// Leave it where it is.
    Keep,
}

/// `[pipelines.index]` as written; the names are checked by the conversion, which names the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIndex {
    /// Milvus index type, e.g. `AUTOINDEX`, `HNSW`, `IVF_FLAT`.
    pub index_type: String,
    /// `COSINE`, `IP` or `L2`.
    pub metric: String,
    /// Extra build parameters, e.g. `{ M = 16, efConstruction = 200 }`.
    pub params: BTreeMap<String, serde_json::Value>,
}

impl Default for RawIndex {
    fn default() -> Self {
        Self { index_type: "AUTOINDEX".to_owned(), metric: "COSINE".to_owned(), params: BTreeMap::new() }
    }
}

/// The Milvus type of a kept scalar field.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The type.
    #[serde(rename = "type")]
    pub field_type: ScalarType,
    /// For `varchar`: the longest value in bytes.
    #[serde(default)]
    pub max_length: Option<u32>,
    /// Whether a missing or empty value is accepted (stored as the type's zero value).
    #[serde(default)]
    pub optional: bool,
}

/// Scalar field types a pipeline can keep.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    /// `true`/`false` (also `1/0`, `yes/no` in text formats).
    Bool,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float.
    Float,
    /// 64-bit float.
    Double,
    /// UTF-8 text up to `max_length` bytes.
    Varchar,
    /// Any JSON value.
    Json,
}

/// `[[plugins]]` as written: a WASM format plugin; its formats come from the plugin itself. These
/// defaults are also the sandbox's ([`crate::format::plugin::PluginLimits::default`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPlugin {
    /// The component (`.wasm`), relative to the config file. Required (optional here so that the
    /// error can name the entry).
    pub path: Option<PathBuf>,
    /// Handed to the plugin's `open` as JSON text (e.g. the XML plugin's `fields`).
    pub config: BTreeMap<String, serde_json::Value>,
    /// Memory budget of the plugin, per file, in MiB, shared by all its linear memories.
    pub memory_mib: u64,
    /// Time budget of one call into the plugin (one chunk), e.g. `"2s"`; default
    /// [`DEFAULT_CHUNK_TIME`]. Optional here only so that a file giving both it and
    /// `chunk_time_ms` can be refused.
    #[serde(with = "duration::optional")]
    pub chunk_time: Option<Duration>,
    /// Replaced by `chunk_time` (one convention for durations); still accepted with a warning.
    pub chunk_time_ms: Option<u64>,
    /// Bytes fed per call, in KiB.
    pub chunk_kib: u64,
    /// Cap on the values one call returns, in MiB.
    pub max_output_mib: u64,
}

/// `plugins[].chunk_time` when neither it nor `chunk_time_ms` is given.
pub const DEFAULT_CHUNK_TIME: Duration = Duration::from_secs(2);

impl Default for RawPlugin {
    fn default() -> Self {
        Self {
            path: None,
            config: BTreeMap::new(),
            memory_mib: 64,
            chunk_time: None,
            chunk_time_ms: None,
            chunk_kib: 64,
            max_output_mib: 16,
        }
    }
}

/// Durations written like `"30s"`, `"1m 30s"`, `"500ms"` (humantime): the one convention for
/// durations in the file.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| serde::de::Error::custom(format!("expected a duration such as \"30s\": {error}")))
    }

    /// The same for a key that may be absent.
    pub mod optional {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}
