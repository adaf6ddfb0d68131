//! Configuration: TOML (+ environment overrides) → [`raw::RawSettings`] → validated [`Settings`].
//!
//! [`Settings::load`] finds the file, applies `VECDROP__SECTION__KEY` overrides and deserialises the
//! raw layer (defaults live there, once). One conversion, [`Settings::from_raw`], then checks what
//! serde cannot (names, ranges, references between keys) and turns strings into what the rest of
//! the program uses: index types and metrics into enums, `format` into a [`ConfiguredFormat`],
//! schedules into a parsed [`croner::Cron`] with its [`chrono_tz::Tz`], plugin sizes into
//! [`PluginLimits`], durations into [`Duration`]s and relative paths into absolute ones. Nothing
//! downstream parses a configuration string again. Errors name the key
//! (`pipelines[0].index.metric: expected one of …`).

mod pipeline;
pub mod raw;
mod secrets;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::pipeline::{
    parse_schedule, BucketSettings, BulkImportSettings, CollectionSettings, IndexSettings, IndexType, Metric, PipelineSettings, Schedule,
    StagingLocation,
};
pub use self::raw::{
    AfterImport, DaemonSettings, Device, EmbeddingSettings, FieldSpec, ImportSettings, KeyType, LinkPolicy, Precision, ScalarType,
    StateSettings, StatusSettings,
};
use self::raw::{RawMilvus, RawPlugin, RawSettings};
use self::secrets::token_of;
pub use self::secrets::{Secret, TOKEN_CREDENTIAL};
use crate::format::plugin::PluginLimits;
pub use crate::format::ConfiguredFormat;

/// Why a configuration could not be loaded. Always the user's to fix (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No file was given and none of the default locations has one.
    #[error("no config file found: pass --config FILE, set VECDROP_CONFIG, or create ./vecdrop.toml or /etc/vecdrop/vecdrop.toml")]
    NotFound,
    /// The file exists but cannot be parsed or does not match the schema.
    #[error("config {path}: {message}")]
    Invalid {
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The whole configuration, validated; every path in it is absolute.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where rows go.
    pub milvus: MilvusSettings,
    /// The embedding model.
    pub embedding: EmbeddingSettings,
    /// Ledger and dead letters.
    pub state: StateSettings,
    /// The status endpoint of the daemon.
    pub status: StatusSettings,
    /// How the daemon finds and schedules files.
    pub daemon: DaemonSettings,
    /// The one-off `vecdrop import`.
    pub import: ImportSettings,
    /// One entry per kind of data: where it comes from and which collection it feeds.
    pub pipelines: Vec<PipelineSettings>,
    /// WASM format plugins.
    pub plugins: Vec<PluginSettings>,
    /// The directory of the config file: relative paths were resolved against it; `.venv` lookups
    /// (ONNX Runtime, Milvus Lite) still start there.
    pub base_dir: PathBuf,
    /// The config file itself.
    pub path: PathBuf,
}

/// `[milvus.tls]`, validated: paths absolute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// TLS is on (a key below was given, or the uri is `https://`).
    pub enabled: bool,
    /// CA certificate (PEM); `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must carry.
    pub server_name: Option<String>,
}

/// `[milvus]`, validated.
#[derive(Debug, Clone)]
pub struct MilvusSettings {
    /// `http://host:port` of a Milvus server, or the absolute data directory of embedded Milvus Lite.
    pub uri: String,
    /// `user:password` or an API key; empty for none. From `token_file`, `token` (or
    /// `VECDROP__MILVUS__TOKEN`), or the systemd credential [`TOKEN_CREDENTIAL`], in that order.
    pub token: Secret,
    /// How the connection is encrypted.
    pub tls: TlsSettings,
    /// Command that starts Milvus Lite (absolute); `None` looks in `.venv/bin`, then on `PATH`.
    pub lite_command: Option<PathBuf>,
    /// How long start-up waits for Milvus (or Milvus Lite) to answer.
    pub connect_timeout: Duration,
    /// How long one Milvus operation retries transient errors before its file's import stops as
    /// transient.
    pub retry_deadline: Duration,
    /// A collection is flushed at most once per window; files that finished meanwhile share it.
    pub flush_window: Duration,
    /// The server's bounded-consistency staleness (`common.gracefulTime`); zero: strong lookups.
    pub graceful_time: Duration,
}

impl Default for MilvusSettings {
    /// The documented defaults of `[milvus]` (a server on localhost).
    fn default() -> Self {
        Self::from_raw(RawMilvus::default(), Path::new("")).expect("the defaults are valid")
    }
}

/// One `[[plugins]]` entry, validated.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The component (`.wasm`), absolute.
    pub path: PathBuf,
    /// `config` as the JSON text handed to the plugin's `open`.
    pub config_json: String,
    /// The sandbox limits this entry asks for.
    pub limits: PluginLimits,
}

/// The field vecdrop adds to every collection: a hash of each row's content (re-import skips rows
/// whose hash did not change).
pub const ROW_HASH_FIELD: &str = "_vecdrop_hash";

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
        let raw: RawSettings = raw.try_deserialize().map_err(|error| invalid(error.to_string()))?;
        let absolute = std::path::absolute(path).map_err(|error| invalid(error.to_string()))?;
        let base_dir = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_raw(raw, &base_dir, path).map_err(invalid)
    }

    /// The one conversion from the file's shape: checks what the types cannot (unique names, field
    /// references, ranges), parses names, schedules and durations, and resolves relative paths
    /// against `base_dir`. The error names the key.
    pub fn from_raw(raw: RawSettings, base_dir: &Path, path: &Path) -> Result<Self, String> {
        check_embedding(&raw.embedding)?;
        check_daemon(&raw.daemon)?;
        check_status(&raw.status)?;
        let mut names = HashSet::new();
        let mut pipelines = Vec::with_capacity(raw.pipelines.len());
        for (index, pipeline) in raw.pipelines.into_iter().enumerate() {
            let key = format!("pipelines[{index}]");
            let pipeline = PipelineSettings::from_raw(pipeline, base_dir).map_err(|message| format!("{key}.{message}"))?;
            if !names.insert(pipeline.name.clone()) {
                return Err(format!("{key}.name: duplicate pipeline name {:?}", pipeline.name));
            }
            pipelines.push(pipeline);
        }
        let plugins = raw
            .plugins
            .iter()
            .enumerate()
            .map(|(index, plugin)| PluginSettings::from_raw(plugin, &format!("plugins[{index}]"), base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        let mut embedding = raw.embedding;
        embedding.model_dir = resolve(base_dir, &embedding.model_dir);
        embedding.ort_library = embedding.ort_library.map(|library| resolve(base_dir, &library));
        Ok(Self {
            milvus: MilvusSettings::from_raw(raw.milvus, base_dir)?,
            embedding,
            state: StateSettings { dir: resolve(base_dir, &raw.state.dir) },
            status: raw.status,
            daemon: raw.daemon,
            import: raw.import,
            pipelines,
            plugins,
            base_dir: base_dir.to_owned(),
            path: path.to_owned(),
        })
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

impl EmbeddingSettings {
    /// `(batch_tokens, max_batch_texts)` with 0s replaced by the device's fixed budget — what a
    /// model loaded without calibration uses ([`crate::embed::ShapePolicy::DeviceDefault`]): a GPU
    /// wants batches 8 times larger than the CPU to be kept busy.
    pub fn batch_budget(&self) -> (usize, usize) {
        let (tokens, texts) = match self.device {
            Device::Cpu => (8192, 128),
            Device::Cuda => (65_536, 1024),
        };
        let pick = |configured: usize, by_device: usize| if configured == 0 { by_device } else { configured };
        (pick(self.batch_tokens, tokens).max(self.max_tokens), pick(self.max_batch_texts, texts))
    }
}

fn check_embedding(embedding: &EmbeddingSettings) -> Result<(), String> {
    if embedding.max_tokens == 0 || embedding.max_tokens > 512 {
        return Err("embedding.max_tokens: expected 1..=512 (the model has 512 positions)".to_owned());
    }
    if embedding.batch_tokens != 0 && embedding.batch_tokens < embedding.max_tokens {
        return Err(format!(
            "embedding.batch_tokens: expected 0 (by device) or at least embedding.max_tokens ({}), got {}",
            embedding.max_tokens, embedding.batch_tokens
        ));
    }
    Ok(())
}

/// `status.listen` is `HOST:PORT` (a name or an address; `[v6]:PORT`), resolved when bound.
fn check_status(status: &StatusSettings) -> Result<(), String> {
    let port = status.listen.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, port)| port.parse::<u16>());
    match port {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!("status.listen: expected HOST:PORT (e.g. \"127.0.0.1:9464\"), got {:?}", status.listen)),
    }
}

fn check_daemon(daemon: &DaemonSettings) -> Result<(), String> {
    if daemon.max_parallel_files == 0 {
        return Err("daemon.max_parallel_files: expected at least 1".to_owned());
    }
    if daemon.max_mib_in_flight == 0 {
        return Err("daemon.max_mib_in_flight: expected at least 1".to_owned());
    }
    if daemon.queue_capacity == 0 {
        return Err("daemon.queue_capacity: expected at least 1".to_owned());
    }
    if daemon.rescan_interval < Duration::from_millis(100) {
        return Err("daemon.rescan_interval: expected at least 100ms".to_owned());
    }
    if daemon.retry_backoff.is_zero() || daemon.retry_backoff > daemon.retry_backoff_max {
        return Err("daemon.retry_backoff: expected more than 0 and at most daemon.retry_backoff_max".to_owned());
    }
    if daemon.max_crashes == 0 {
        return Err("daemon.max_crashes: expected at least 1".to_owned());
    }
    if !daemon.instance.is_empty() && !is_identifier(&daemon.instance) {
        return Err(format!("daemon.instance: expected letters, digits, '_' or '-', got {:?}", daemon.instance));
    }
    if daemon.shared_drop_folders && daemon.claim_stale_after <= daemon.rescan_interval * 2 {
        return Err("daemon.claim_stale_after: expected more than twice daemon.rescan_interval (the heartbeat's period)".to_owned());
    }
    Ok(())
}

impl MilvusSettings {
    fn from_raw(raw: RawMilvus, base_dir: &Path) -> Result<Self, String> {
        if raw.max_attempts.is_some() {
            tracing::warn!("milvus.max_attempts is no longer used: transient errors are retried for milvus.retry_deadline");
        }
        let connect_timeout = renamed_duration(
            ("milvus.connect_timeout", raw.connect_timeout),
            ("milvus.connect_timeout_secs", raw.connect_timeout_secs.map(Duration::from_secs)),
            raw::DEFAULT_CONNECT_TIMEOUT,
        )?;
        let uri = if crate::sink::is_local_path(&raw.uri) { resolve(base_dir, Path::new(&raw.uri)).display().to_string() } else { raw.uri };
        let token = token_of(&raw.token, raw.token_file.as_deref().map(|file| resolve(base_dir, file)).as_deref())?;
        let tls = TlsSettings {
            enabled: uri.starts_with("https://")
                || raw.tls.ca_file.is_some()
                || raw.tls.client_cert.is_some()
                || raw.tls.client_key.is_some()
                || raw.tls.server_name.is_some(),
            ca_file: raw.tls.ca_file.map(|file| resolve(base_dir, &file)),
            client_cert: raw.tls.client_cert.map(|file| resolve(base_dir, &file)),
            client_key: raw.tls.client_key.map(|file| resolve(base_dir, &file)),
            server_name: raw.tls.server_name,
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            return Err("milvus.tls: client_cert and client_key go together".to_owned());
        }
        Ok(Self {
            uri,
            token,
            tls,
            lite_command: raw.lite_command.map(|command| resolve(base_dir, &command)),
            connect_timeout,
            retry_deadline: raw.retry_deadline,
            flush_window: raw.flush_window,
            graceful_time: raw.graceful_time,
        })
    }
}

/// A duration under its `current` key, or under the numeric `old` key it replaced (accepted with
/// a warning that names the new key), or `default`. Both at once is refused: which one would win
/// is not obvious.
fn renamed_duration(current: (&str, Option<Duration>), old: (&str, Option<Duration>), default: Duration) -> Result<Duration, String> {
    match (current.1, old.1) {
        (Some(_), Some(_)) => Err(format!("{}: replaced by {}; give only {}", old.0, current.0, current.0)),
        (Some(value), None) => Ok(value),
        (None, Some(value)) => {
            tracing::warn!(
                "{} is deprecated: write {} = \"{}\" instead (durations are written like \"30s\")",
                old.0,
                current.0,
                humantime::format_duration(value)
            );
            Ok(value)
        }
        (None, None) => Ok(default),
    }
}

impl PluginSettings {
    fn from_raw(raw: &RawPlugin, key: &str, base_dir: &Path) -> Result<Self, String> {
        let path = raw.path.as_deref().ok_or_else(|| format!("{key}.path: required"))?;
        Ok(Self {
            path: resolve(base_dir, path),
            config_json: serde_json::to_string(&raw.config).expect("a map of JSON values serialises"),
            limits: raw.limits(key)?,
        })
    }
}

impl RawPlugin {
    /// The sandbox limits this entry asks for, checked; errors and warnings name keys under `key`.
    pub fn limits(&self, key: &str) -> Result<PluginLimits, String> {
        let ranges = [
            ("memory_mib", self.memory_mib, 1, 4096),
            ("chunk_kib", self.chunk_kib, 1, 16 * 1024),
            ("max_output_mib", self.max_output_mib, 1, 1024),
        ];
        for (name, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!("{key}.{name}: expected {low}..={high}, got {value}"));
            }
        }
        let chunk_time = renamed_duration(
            (&format!("{key}.chunk_time"), self.chunk_time),
            (&format!("{key}.chunk_time_ms"), self.chunk_time_ms.map(Duration::from_millis)),
            raw::DEFAULT_CHUNK_TIME,
        )?;
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&chunk_time) {
            return Err(format!("{key}.chunk_time: expected 10ms..=1h, got {}", humantime::format_duration(chunk_time)));
        }
        Ok(PluginLimits {
            memory_bytes: (self.memory_mib as usize) << 20,
            call_time_budget: chunk_time,
            chunk_bytes: (self.chunk_kib as usize) << 10,
            max_output_bytes: (self.max_output_mib as usize) << 20,
        })
    }
}

/// `path` against `base_dir` unless it is absolute already.
fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

/// Folders that may hold the project's `.venv` (ONNX Runtime, Milvus Lite): the config's folder
/// and the install or checkout the binary belongs to (`<prefix>/bin/vecdrop` → `<prefix>`,
/// `<checkout>/target/{debug,release}/vecdrop` → `<checkout>`). Never the working directory: run
/// from a folder others can write to, vecdrop would load a library planted there.
pub fn venv_roots(base_dir: &Path) -> Vec<PathBuf> {
    let mut roots = vec![base_dir.to_owned()];
    if let Some(root) = std::env::current_exe().ok().and_then(|exe| install_root(&exe)) {
        if root != base_dir {
            roots.push(root);
        }
    }
    roots
}

/// The install prefix or checkout of the binary `exe`: `<checkout>` for
/// `<checkout>/target/<profile>/vecdrop` (and its `deps/` and `examples/` binaries), `<prefix>`
/// for `<prefix>/bin/vecdrop`.
fn install_root(exe: &Path) -> Option<PathBuf> {
    let name = |path: Option<&Path>| path.and_then(Path::file_name).and_then(|name| name.to_str()).map(str::to_owned);
    let mut dir = exe.parent()?;
    if matches!(name(Some(dir)).as_deref(), Some("deps" | "examples")) {
        dir = dir.parent()?;
    }
    if name(dir.parent()).as_deref() == Some("target") {
        return dir.parent()?.parent().map(Path::to_path_buf);
    }
    if name(Some(dir)).as_deref() == Some("bin") {
        return dir.parent().map(Path::to_path_buf);
    }
    None
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
