//! Configuration: raw TOML (+ environment overrides) → validated [`Settings`].
//!
//! The raw structs mirror the file exactly (`deny_unknown_fields`, a doc comment and a default per
//! key); [`Settings::load`] finds the file, applies `VECDROP__SECTION__KEY` overrides, and then
//! [`Settings::validate`] checks what serde cannot (names, references between keys) with errors
//! that name the offending key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be loaded. Always the user's to fix (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No file was given and none of the default locations has one.
    #[error("no config file found: pass --config FILE, set VECDROP_CONFIG, or create ./vecdrop.toml or /etc/vecdrop/vecdrop.toml")]
    NotFound,
    /// The file exists but cannot be parsed or does not match the schema.
    #[error("config {path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole configuration, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where rows go.
    #[serde(default)]
    pub milvus: MilvusSettings,
    /// The embedding model.
    #[serde(default)]
    pub embedding: EmbeddingSettings,
    /// Ledger and dead letters.
    #[serde(default)]
    pub state: StateSettings,
    /// The status endpoint of the daemon.
    #[serde(default)]
    pub status: StatusSettings,
    /// How the daemon finds and schedules files.
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// The one-off `vecdrop import`.
    #[serde(default)]
    pub import: ImportSettings,
    /// One entry per kind of data: where it comes from and which collection it feeds.
    #[serde(default)]
    pub pipelines: Vec<PipelineSettings>,
    /// WASM format plugins.
    #[serde(default)]
    pub plugins: Vec<PluginSettings>,
    /// The directory of the config file; relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The config file itself.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[milvus]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilvusSettings {
    /// `http://host:port` of a Milvus server, or a local path (e.g. `data/milvus.db`) that starts
    /// embedded Milvus Lite with its data in that directory.
    #[serde(default = "default_milvus_uri")]
    pub uri: String,
    /// `user:password` or an API key; empty for none.
    #[serde(default)]
    pub token: String,
    /// Command that starts Milvus Lite for a local `uri`; default: `.venv/bin/milvus-lite` next to the
    /// config or the working directory, else `milvus-lite` on `PATH`.
    #[serde(default)]
    pub lite_command: Option<PathBuf>,
    /// Seconds to wait for Milvus to answer at start-up.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// How long one Milvus operation retries transient errors (unreachable, not ready, rate
    /// limited) before its file's import stops as transient: the daemon then keeps the file and
    /// backs off, `vecdrop import` retries until `import.retry_deadline`. E.g. `"60s"`.
    #[serde(default = "default_retry_deadline", with = "humantime_duration")]
    pub retry_deadline: Duration,
    /// Replaced by `retry_deadline` (one retry layer); still accepted, ignored with a warning.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// `[import]`: the one-off `vecdrop import`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSettings {
    /// How long `vecdrop import` keeps retrying a file after transient faults (Milvus away) before
    /// it exits 1; the committed position is kept, so running it again resumes. E.g. `"10m"`.
    #[serde(default = "default_import_retry_deadline", with = "humantime_duration")]
    pub retry_deadline: Duration,
}

/// `[embedding]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSettings {
    /// Directory holding `model.onnx` and `tokenizer.json` (HF layout).
    #[serde(default = "default_model_dir")]
    pub model_dir: PathBuf,
    /// Texts longer than this many word pieces are truncated (sentence-transformers uses 256).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Path of the ONNX Runtime shared library; default `$ORT_DYLIB_PATH`, else the one in the
    /// project's `.venv` (PyPI `onnxruntime`).
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// `cpu` or `cuda`.
    #[serde(default)]
    pub device: Device,
    /// `fp32` (default, `model.onnx`) or `int8` (`model.int8.onnx`).
    #[serde(default)]
    pub precision: Precision,
    /// Upper bound on `batch size × longest sequence` of one inference call; 0 = by device
    /// ([`EmbeddingSettings::batch_budget`]: 8192 on the CPU, 8 × that on CUDA).
    #[serde(default)]
    pub batch_tokens: usize,
    /// Upper bound on texts in one inference call; 0 = by device (128 on the CPU, 1024 on CUDA).
    #[serde(default)]
    pub max_batch_texts: usize,
    /// ONNX Runtime intra-op threads; 0 = one per core.
    #[serde(default)]
    pub threads: usize,
    /// Whether ONNX Runtime's intra-op threads spin (busy-wait) between parallel sections instead
    /// of sleeping. Spinning wins a little when inference is alone on the machine and loses when
    /// the other stages (reading, upserts, Milvus itself) need the same cores; see ARCHITECTURE.md.
    #[serde(default = "default_intra_op_spinning")]
    pub intra_op_spinning: bool,
}

impl EmbeddingSettings {
    /// `(batch_tokens, max_batch_texts)` with 0s replaced by the device's budget: a GPU wants
    /// batches 8 times larger than the CPU to be kept busy (more parallel work per kernel launch).
    pub fn batch_budget(&self) -> (usize, usize) {
        let (tokens, texts) = match self.device {
            Device::Cpu => (8192, 128),
            Device::Cuda => (65_536, 1024),
        };
        let pick = |configured: usize, by_device: usize| if configured == 0 { by_device } else { configured };
        (pick(self.batch_tokens, tokens).max(self.max_tokens), pick(self.max_batch_texts, texts))
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

/// `[state]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Ledger and dead-letter files live here.
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

/// `[status]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSettings {
    /// Address of `/metrics`, `/status`, `/healthz`.
    #[serde(default = "default_status_listen")]
    pub listen: String,
}

/// `[daemon]`: how `vecdrop run` finds ready files and how many it imports at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Files imported at the same time (they share one model).
    #[serde(default = "default_max_parallel_files")]
    pub max_parallel_files: usize,
    /// Ready files waiting for a worker; beyond it, discovery waits for the next rescan.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Full rescan of the drop folders (file events are only hints), e.g. `"30s"`.
    #[serde(default = "default_rescan_interval", with = "humantime_duration")]
    pub rescan_interval: Duration,
    /// A file whose size and modification time held still this long is ready, e.g. `"2s"`.
    #[serde(default = "default_settle", with = "humantime_duration")]
    pub settle: Duration,
    /// On SIGTERM/SIGINT, how long imports in flight get to commit their batches before exit.
    #[serde(default = "default_shutdown_timeout", with = "humantime_duration")]
    pub shutdown_timeout: Duration,
    /// First wait of a pipeline after a transient fault (Milvus away); doubles per retry, with
    /// jitter, up to `retry_backoff_max`. Configuration faults wait `retry_backoff_max`.
    #[serde(default = "default_retry_backoff", with = "humantime_duration")]
    pub retry_backoff: Duration,
    /// Longest wait between two retries of a waiting pipeline.
    #[serde(default = "default_retry_backoff_max", with = "humantime_duration")]
    pub retry_backoff_max: Duration,
    /// A file whose import started this many times in a row and each time ended with the process
    /// dying before any progress (a crash, an OOM kill) is quarantined instead of tried again.
    #[serde(default = "default_max_crashes")]
    pub max_crashes: u32,
}

/// One `[[pipelines]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSettings {
    /// Unique name, used in logs, status and `--pipeline`.
    pub name: String,
    /// Milvus collection; created from this section when missing, else validated against it.
    pub collection: String,
    /// `auto` (by extension) or a format name.
    #[serde(default = "default_format")]
    pub format: String,
    /// For JSON files whose records sit in an array inside a top-level object: a JSON pointer to
    /// it, e.g. `/records`.
    #[serde(default)]
    pub json_pointer: Option<String>,
    /// Field holding each record's natural primary key; without it keys are derived from the file's
    /// content hash and the record ordinal.
    #[serde(default)]
    pub id_field: Option<String>,
    /// Field whose text is embedded (and stored).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// Float-vector field of the collection.
    #[serde(default = "default_vector_field")]
    pub vector_field: String,
    /// Longest text stored, in bytes (Milvus VarChar max_length).
    #[serde(default = "default_text_max_length")]
    pub text_max_length: u32,
    /// Drop directories.
    #[serde(default)]
    pub watch: Vec<PathBuf>,
    /// Globs imported on `schedule`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Cron expression, seconds field first.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `move` (to `.done/`), `delete` or `keep`.
    #[serde(default)]
    pub after_import: AfterImport,
    /// Time zone of `schedule` (IANA name such as `"Europe/Berlin"`); default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Delete rows whose keys disappeared from a new version of the same source (requires `id_field`).
    #[serde(default)]
    pub mirror: bool,
    /// A mirror pass that would delete more than this share of the rows the source's previous
    /// version held is held back and reported instead (a truncated upload must not wipe a
    /// collection); 1.0 never holds back.
    #[serde(default = "default_mirror_max_delete_share")]
    pub mirror_max_delete_share: f64,
    /// Rows per upsert request (also capped by bytes).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Index built on the vector field when the collection is created.
    #[serde(default)]
    pub index: IndexSettings,
    /// Scalar fields kept from each record, with their Milvus types.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
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

/// `[pipelines.index]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSettings {
    /// Milvus index type, e.g. `AUTOINDEX`, `HNSW`, `IVF_FLAT`.
    #[serde(default = "default_index_type")]
    pub index_type: String,
    /// `COSINE`, `IP` or `L2`.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Extra build parameters, e.g. `{ M = 16, efConstruction = 200 }`.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
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

/// `[[plugins]]`: a WASM format plugin; its formats come from the plugin itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The component (`.wasm`), relative to the config file.
    pub path: PathBuf,
    /// Handed to the plugin's `open` as JSON text (e.g. the XML plugin's `fields`).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Linear memory cap of the plugin, per file, in MiB.
    #[serde(default = "default_plugin_memory_mib")]
    pub memory_mib: u64,
    /// Time budget of one call into the plugin (one chunk), in milliseconds.
    #[serde(default = "default_plugin_chunk_time_ms")]
    pub chunk_time_ms: u64,
    /// Bytes fed per call, in KiB.
    #[serde(default = "default_plugin_chunk_kib")]
    pub chunk_kib: u64,
    /// Cap on the values one call returns, in MiB.
    #[serde(default = "default_plugin_max_output_mib")]
    pub max_output_mib: u64,
}

fn default_milvus_uri() -> String {
    "http://127.0.0.1:19530".to_owned()
}
const fn default_connect_timeout_secs() -> u64 {
    60
}
const fn default_retry_deadline() -> Duration {
    Duration::from_secs(60)
}
const fn default_import_retry_deadline() -> Duration {
    Duration::from_secs(600)
}
const fn default_retry_backoff() -> Duration {
    Duration::from_secs(1)
}
const fn default_retry_backoff_max() -> Duration {
    Duration::from_secs(300)
}
const fn default_max_crashes() -> u32 {
    3
}
const fn default_mirror_max_delete_share() -> f64 {
    0.5
}
fn default_model_dir() -> PathBuf {
    PathBuf::from("models/all-MiniLM-L6-v2")
}
const fn default_max_tokens() -> usize {
    256
}
const fn default_intra_op_spinning() -> bool {
    false
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_status_listen() -> String {
    "127.0.0.1:9464".to_owned()
}
const fn default_max_parallel_files() -> usize {
    2
}
const fn default_queue_capacity() -> usize {
    64
}
const fn default_rescan_interval() -> Duration {
    Duration::from_secs(30)
}
const fn default_settle() -> Duration {
    Duration::from_secs(2)
}
const fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_format() -> String {
    "auto".to_owned()
}
fn default_text_field() -> String {
    "text".to_owned()
}
fn default_vector_field() -> String {
    "embedding".to_owned()
}
const fn default_text_max_length() -> u32 {
    65_535
}
const fn default_batch_rows() -> usize {
    512
}
const fn default_plugin_memory_mib() -> u64 {
    64
}
const fn default_plugin_chunk_time_ms() -> u64 {
    2000
}
const fn default_plugin_chunk_kib() -> u64 {
    64
}
const fn default_plugin_max_output_mib() -> u64 {
    16
}
fn default_index_type() -> String {
    "AUTOINDEX".to_owned()
}
fn default_metric() -> String {
    "COSINE".to_owned()
}

impl Default for MilvusSettings {
    fn default() -> Self {
        Self {
            uri: default_milvus_uri(),
            token: String::new(),
            lite_command: None,
            connect_timeout_secs: default_connect_timeout_secs(),
            retry_deadline: default_retry_deadline(),
            max_attempts: None,
        }
    }
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self { retry_deadline: default_import_retry_deadline() }
    }
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            max_tokens: default_max_tokens(),
            ort_library: None,
            device: Device::default(),
            precision: Precision::default(),
            batch_tokens: 0,
            max_batch_texts: 0,
            threads: 0,
            intra_op_spinning: default_intra_op_spinning(),
        }
    }
}

impl Default for StateSettings {
    fn default() -> Self {
        Self { dir: default_state_dir() }
    }
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self { listen: default_status_listen() }
    }
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            max_parallel_files: default_max_parallel_files(),
            queue_capacity: default_queue_capacity(),
            rescan_interval: default_rescan_interval(),
            settle: default_settle(),
            shutdown_timeout: default_shutdown_timeout(),
            retry_backoff: default_retry_backoff(),
            retry_backoff_max: default_retry_backoff_max(),
            max_crashes: default_max_crashes(),
        }
    }
}

/// Durations written like `"30s"`, `"1m 30s"`, `"500ms"` (humantime).
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|error| serde::de::Error::custom(format!("expected a duration such as \"30s\": {error}")))
    }
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self { index_type: default_index_type(), metric: default_metric(), params: BTreeMap::new() }
    }
}

/// The field vecdrop adds to every collection: a hash of each row's content (re-import skips rows
/// whose hash did not change).
pub const ROW_HASH_FIELD: &str = "_vecdrop_hash";
/// Index types accepted in `[pipelines.index] index_type`.
pub const INDEX_TYPES: [&str; 8] = ["AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN", "SCANN"];
/// Metrics accepted in `[pipelines.index] metric`.
pub const METRICS: [&str; 3] = ["COSINE", "IP", "L2"];

impl Settings {
    /// Finds the config file (`explicit`, `$VECDROP_CONFIG`, `./vecdrop.toml`,
    /// `/etc/vecdrop/vecdrop.toml`), applies `VECDROP__…` environment overrides, validates it and
    /// resolves relative paths against the file's directory.
    pub fn load(explicit: Option<&Path>) -> Result<Self, SettingsError> {
        let path = locate(explicit)?;
        Self::from_file(&path)
    }

    /// Loads and validates one file (with environment overrides).
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let invalid = |message: String| SettingsError::Invalid { path: path.to_owned(), message };
        if !path.is_file() {
            return Err(invalid("file does not exist".to_owned()));
        }
        let raw = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(config::Environment::with_prefix("VECDROP").prefix_separator("__").separator("__").try_parsing(true))
            .build()
            .map_err(|error| invalid(error.to_string()))?;
        let mut settings: Settings = raw.try_deserialize().map_err(|error| invalid(error.to_string()))?;
        settings.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        settings.path = path.to_owned();
        settings.validate().map_err(invalid)?;
        if settings.milvus.max_attempts.is_some() {
            tracing::warn!(config = %path.display(), "milvus.max_attempts is no longer used: transient errors are retried for milvus.retry_deadline");
        }
        Ok(settings)
    }

    /// Checks what the types cannot: unique names, field references, sizes. The error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.embedding.max_tokens == 0 || self.embedding.max_tokens > 512 {
            return Err("embedding.max_tokens: expected 1..=512 (the model has 512 positions)".to_owned());
        }
        if self.embedding.batch_tokens != 0 && self.embedding.batch_tokens < self.embedding.max_tokens {
            return Err(format!(
                "embedding.batch_tokens: expected 0 (by device) or at least embedding.max_tokens ({}), got {}",
                self.embedding.max_tokens, self.embedding.batch_tokens
            ));
        }
        if self.daemon.max_parallel_files == 0 {
            return Err("daemon.max_parallel_files: expected at least 1".to_owned());
        }
        if self.daemon.queue_capacity == 0 {
            return Err("daemon.queue_capacity: expected at least 1".to_owned());
        }
        if self.daemon.rescan_interval < Duration::from_millis(100) {
            return Err("daemon.rescan_interval: expected at least 100ms".to_owned());
        }
        if self.daemon.retry_backoff.is_zero() || self.daemon.retry_backoff > self.daemon.retry_backoff_max {
            return Err("daemon.retry_backoff: expected more than 0 and at most daemon.retry_backoff_max".to_owned());
        }
        if self.daemon.max_crashes == 0 {
            return Err("daemon.max_crashes: expected at least 1".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for (index, pipeline) in self.pipelines.iter().enumerate() {
            let key = format!("pipelines[{index}]");
            if !seen.insert(pipeline.name.as_str()) {
                return Err(format!("{key}.name: duplicate pipeline name {:?}", pipeline.name));
            }
            pipeline.validate().map_err(|message| format!("{key}.{message}"))?;
        }
        for (index, plugin) in self.plugins.iter().enumerate() {
            plugin.validate().map_err(|message| format!("plugins[{index}].{message}"))?;
        }
        Ok(())
    }

    /// Resolves a path from the config file against the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The pipeline named `name`, or the only one when `name` is `None`.
    pub fn pipeline(&self, name: Option<&str>) -> Result<&PipelineSettings, String> {
        match name {
            Some(name) => self
                .pipelines
                .iter()
                .find(|pipeline| pipeline.name == name)
                .ok_or_else(|| format!("no pipeline named {name:?} in the config")),
            None => match self.pipelines.as_slice() {
                [only] => Ok(only),
                [] => Err("the config has no [[pipelines]]".to_owned()),
                _ => Err("the config has several pipelines: choose one with --pipeline".to_owned()),
            },
        }
    }
}

impl PipelineSettings {
    fn validate(&self) -> Result<(), String> {
        if !is_identifier(&self.name) {
            return Err(format!("name: expected letters, digits, '_' or '-', got {:?}", self.name));
        }
        for (key, value) in [("collection", &self.collection), ("text_field", &self.text_field), ("vector_field", &self.vector_field)] {
            if !is_milvus_name(value) {
                return Err(format!("{key}: expected a Milvus name (letter or '_', then letters, digits, '_'), got {value:?}"));
            }
        }
        if let Some(id_field) = &self.id_field {
            if !is_milvus_name(id_field) {
                return Err(format!("id_field: expected a Milvus name, got {id_field:?}"));
            }
        }
        if self.batch_rows == 0 {
            return Err("batch_rows: expected at least 1".to_owned());
        }
        self.validate_discovery()?;
        if self.text_max_length == 0 || self.text_max_length > 65_535 {
            return Err("text_max_length: expected 1..=65535".to_owned());
        }
        // Plugin formats are only known once the plugins are loaded (see `commands::load_plugins`).
        if !is_identifier(&self.format) {
            return Err(format!(
                "format: expected auto, csv, tsv, json, jsonl, ndjson, parquet or a plugin's format, got {:?}",
                self.format
            ));
        }
        if let Some(pointer) = &self.json_pointer {
            crate::format::parse_json_pointer(pointer).map_err(|message| format!("json_pointer: {message}"))?;
        }
        if !INDEX_TYPES.contains(&self.index.index_type.as_str()) {
            return Err(format!("index.index_type: expected one of {INDEX_TYPES:?}, got {:?}", self.index.index_type));
        }
        if !METRICS.contains(&self.index.metric.as_str()) {
            return Err(format!("index.metric: expected one of {METRICS:?}, got {:?}", self.index.metric));
        }
        let reserved = [self.text_field.as_str(), self.vector_field.as_str(), self.primary_key_field(), ROW_HASH_FIELD];
        for (name, spec) in &self.fields {
            if !is_milvus_name(name) {
                return Err(format!("fields.{name}: expected a Milvus name"));
            }
            if reserved.contains(&name.as_str()) {
                return Err(format!("fields.{name}: this name is already used for the key, text, vector or row hash"));
            }
            match (spec.field_type, spec.max_length) {
                (ScalarType::Varchar, None) => return Err(format!("fields.{name}.max_length: required for varchar")),
                (ScalarType::Varchar, Some(0)) | (ScalarType::Varchar, Some(65_536..)) => {
                    return Err(format!("fields.{name}.max_length: expected 1..=65535"))
                }
                (ScalarType::Varchar, Some(_)) => {}
                (_, Some(_)) => return Err(format!("fields.{name}.max_length: only for varchar")),
                (_, None) => {}
            }
        }
        Ok(())
    }

    fn validate_discovery(&self) -> Result<(), String> {
        match (&self.schedule, self.paths.is_empty()) {
            (Some(schedule), false) => {
                parse_schedule(schedule).map_err(|message| format!("schedule: {message}"))?;
            }
            (Some(_), true) => return Err("paths: a schedule needs paths (globs) to import".to_owned()),
            (None, false) => return Err("schedule: paths are imported on a schedule; add one such as \"0 */10 * * * *\"".to_owned()),
            (None, true) => {}
        }
        for pattern in &self.paths {
            glob::Pattern::new(pattern).map_err(|error| format!("paths: {pattern:?} is not a glob: {error}"))?;
        }
        if let Some(timezone) = &self.timezone {
            timezone
                .parse::<chrono_tz::Tz>()
                .map_err(|_| format!("timezone: expected an IANA time zone such as \"Europe/Berlin\", got {timezone:?}"))?;
        }
        if self.mirror && self.id_field.is_none() {
            return Err("mirror: needs id_field (rows are matched across versions of a source by their natural key)".to_owned());
        }
        if !(0.0..=1.0).contains(&self.mirror_max_delete_share) {
            return Err(format!("mirror_max_delete_share: expected 0.0..=1.0, got {}", self.mirror_max_delete_share));
        }
        Ok(())
    }

    /// Name of the primary-key field in the collection: `id_field`, or `id`.
    pub fn primary_key_field(&self) -> &str {
        self.id_field.as_deref().unwrap_or("id")
    }
}

/// Parses a cron expression with a seconds field first (`sec min hour day month weekday`), as
/// the scheduler does.
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(expression)
        .map_err(|error| format!("expected a cron expression with seconds first, e.g. \"0 */5 * * * *\", got {expression:?}: {error}"))
}

impl PluginSettings {
    fn validate(&self) -> Result<(), String> {
        let ranges = [
            ("memory_mib", self.memory_mib, 1, 4096),
            ("chunk_time_ms", self.chunk_time_ms, 10, 3_600_000),
            ("chunk_kib", self.chunk_kib, 1, 16 * 1024),
            ("max_output_mib", self.max_output_mib, 1, 1024),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!("{key}: expected {low}..={high}, got {value}"));
            }
        }
        Ok(())
    }

    /// The sandbox limits this entry asks for.
    pub fn limits(&self) -> crate::format::plugin::PluginLimits {
        crate::format::plugin::PluginLimits {
            memory_bytes: (self.memory_mib as usize) << 20,
            call_time_budget: std::time::Duration::from_millis(self.chunk_time_ms),
            chunk_bytes: (self.chunk_kib as usize) << 10,
            max_output_bytes: (self.max_output_mib as usize) << 20,
        }
    }

    /// `config` as the JSON text handed to the plugin.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a map of JSON values serialises")
    }
}

/// Folders that may hold the project's `.venv` (ONNX Runtime, Milvus Lite): the config's folder,
/// the working directory, and the checkout a `target/{debug,release}/vecdrop` binary was built in.
pub fn venv_roots(base_dir: &Path) -> Vec<PathBuf> {
    let mut roots = vec![base_dir.to_owned(), PathBuf::from(".")];
    if let Some(checkout) = std::env::current_exe().ok().and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_path_buf)) {
        roots.push(checkout);
    }
    roots
}

fn is_identifier(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_milvus_name(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && value.len() <= 255
}

fn locate(explicit: Option<&Path>) -> Result<PathBuf, SettingsError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("VECDROP_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    ["vecdrop.toml", "/etc/vecdrop/vecdrop.toml"]
        .into_iter()
        .map(PathBuf::from)
        .find(|candidate| candidate.is_file())
        .ok_or(SettingsError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("vecdrop.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str = r#"
[[pipelines]]
name = "docs"
collection = "documents"
[pipelines.fields]
category = { type = "varchar", max_length = 100 }
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_file(&write(dir.path(), MINIMAL)).unwrap();
        assert_eq!(settings.embedding.max_tokens, 256);
        assert_eq!(settings.pipelines[0].text_field, "text");
        assert_eq!(settings.pipelines[0].primary_key_field(), "id");
        assert_eq!(settings.pipelines[0].index.metric, "COSINE");
        assert_eq!(settings.base_dir, dir.path());
    }

    #[test]
    fn batch_budgets_scale_with_the_device_unless_configured() {
        let cpu = EmbeddingSettings::default();
        assert_eq!(cpu.batch_budget(), (8192, 128));
        let cuda = EmbeddingSettings { device: Device::Cuda, ..EmbeddingSettings::default() };
        assert_eq!(cuda.batch_budget(), (65_536, 1024));
        let configured =
            EmbeddingSettings { device: Device::Cuda, batch_tokens: 4096, max_batch_texts: 64, ..EmbeddingSettings::default() };
        assert_eq!(configured.batch_budget(), (4096, 64));
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = Settings::from_file(&write(dir.path(), "[milvus]\nurl = \"x\"\n")).unwrap_err();
        assert!(error.to_string().contains("url"), "{error}");
    }

    #[test]
    fn varchar_without_max_length_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL.replace(", max_length = 100", "");
        let error = Settings::from_file(&write(dir.path(), &text)).unwrap_err();
        assert!(error.to_string().contains("pipelines[0].fields.category.max_length"), "{error}");
    }

    #[test]
    fn field_clashing_with_text_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL.replace("category", "text");
        let error = Settings::from_file(&write(dir.path(), &text)).unwrap_err();
        assert!(error.to_string().contains("fields.text"), "{error}");
    }

    #[test]
    fn ndjson_format_and_json_pointer_syntax_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let with = |extra: &str| MINIMAL.replace("collection = \"documents\"", &format!("collection = \"documents\"\n{extra}"));
        Settings::from_file(&write(dir.path(), &with("format = \"ndjson\"\njson_pointer = \"/data/a~1b\""))).unwrap();
        let error = Settings::from_file(&write(dir.path(), &with("format = \"json\"\njson_pointer = \"records\""))).unwrap_err();
        assert!(error.to_string().contains("pipelines[0].json_pointer"), "{error}");
    }

    #[test]
    fn plugin_entries_get_documented_limits_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{MINIMAL}\n[[plugins]]\npath = \"p.wasm\"\n[plugins.config]\nfields = [\"a\", \"b\"]\n");
        let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
        let limits = settings.plugins[0].limits();
        assert_eq!((limits.memory_bytes, limits.chunk_bytes, limits.max_output_bytes), (64 << 20, 64 << 10, 16 << 20));
        assert_eq!(limits.call_time_budget, std::time::Duration::from_secs(2));
        assert_eq!(settings.plugins[0].config_json(), r#"{"fields":["a","b"]}"#);
        let error =
            Settings::from_file(&write(dir.path(), &text.replace("path = \"p.wasm\"", "path = \"p.wasm\"\nmemory_mib = 0"))).unwrap_err();
        assert!(error.to_string().contains("plugins[0].memory_mib: expected 1..=4096"), "{error}");
    }

    #[test]
    fn every_example_config_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut parsed = 0;
        for dir in ["examples", "etc"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|extension| extension == "toml") {
                    Settings::from_file(&path).unwrap_or_else(|error| panic!("{error}"));
                    parsed += 1;
                }
            }
        }
        assert!(parsed >= 1, "expected example configs under examples/ or etc/");
    }
}
