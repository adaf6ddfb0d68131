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

pub mod raw;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::raw::{
    AfterImport, DaemonSettings, Device, EmbeddingSettings, FieldSpec, ImportSettings, KeyType, LinkPolicy, Precision, ScalarType,
    StateSettings, StatusSettings,
};
use self::raw::{RawIndex, RawMilvus, RawPipeline, RawPlugin, RawSettings};
use crate::format::plugin::PluginLimits;
pub use crate::format::ConfiguredFormat;
use crate::format::JsonPointer;

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

/// A secret (the Milvus token): `Debug` shows `[redacted]`, so it appears in no log, `check`
/// output or `/status`. [`Secret::expose`] is the one way to read it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// No secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_empty() { "\"\"" } else { "[redacted]" })
    }
}

/// The systemd credential (`LoadCredential=milvus-token:…`) read as the token when the config
/// gives none.
pub const TOKEN_CREDENTIAL: &str = "milvus-token";

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

/// One `[[pipelines]]` entry, validated: everything an import of one of its files needs to know.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Unique name, used in logs, status and `--pipeline`.
    pub name: String,
    /// The collection the rows go to, all of it but what the model decides (dimension, identity).
    pub collection: CollectionSettings,
    /// How its files are read. A plugin format's name is checked once the plugins are loaded
    /// (`commands::load_plugins`).
    pub format: ConfiguredFormat,
    /// For JSON files whose records sit in an array inside a top-level object: a JSON pointer to
    /// it, parsed at load.
    pub json_pointer: Option<JsonPointer>,
    /// Field holding each record's natural primary key; `None` derives keys from the file's content
    /// hash and the record ordinal (and rules out `mirror`).
    pub id_field: Option<String>,
    /// Rows per upsert request (also capped by bytes).
    pub batch_rows: usize,
    /// Drop directories (absolute).
    pub watch: Vec<PathBuf>,
    /// What happens to a file after its rows are committed.
    pub after_import: AfterImport,
    /// Recurring imports of globbed paths.
    pub schedule: Option<Schedule>,
    /// Delete rows whose keys disappeared from a new version of the same source.
    pub mirror: bool,
    /// Largest share of a source's previous rows one mirror pass may delete (0.0..=1.0).
    pub mirror_max_delete_share: f64,
    /// Big files through Milvus's bulk import ([`crate::bulk`]); `None`: every file is upserted.
    pub bulk_import: Option<BulkImportSettings>,
}

/// Where a pipeline's bulk-import jobs are staged: on Milvus's storage either way.
#[derive(Debug, Clone, PartialEq)]
pub enum StagingLocation {
    /// A folder (absolute) that Milvus reads under the same path: a standalone server with local
    /// storage on this machine.
    Folder(PathBuf),
    /// Objects in a bucket (`s3://` — the bucket Milvus reads imports from — or `file://`, a
    /// folder reached through the same object-store code, which Milvus then reads by absolute
    /// path); files are written to a local spool first and uploaded.
    Bucket(BucketSettings),
}

/// An object-store staging location and its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSettings {
    /// The URL as configured (`s3://bucket/prefix`, `file:///root/prefix`), for messages.
    pub url: String,
    /// `s3` or `file`.
    pub scheme: String,
    /// The bucket (`s3`), or the root folder (`file`).
    pub bucket: String,
    /// Key prefix inside it, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// S3 endpoint other than AWS's (MinIO).
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key (redacted in `Debug`).
    pub secret_access_key: Secret,
}

/// The systemd credential (`LoadCredential=s3-secret-key:…`) read as the S3 secret access key when
/// neither the config nor the environment gives one.
pub const S3_SECRET_CREDENTIAL: &str = "s3-secret-key";

/// `[pipelines.bulk_import]`, validated: when a file takes the bulk path and where its rows are
/// staged.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkImportSettings {
    /// Files with at least this many records (estimated: Parquet's row count, else lines) take
    /// the bulk path.
    pub min_rows: u64,
    /// Where job folders are staged.
    pub staging: StagingLocation,
    /// How often running import tasks are polled.
    pub poll_interval: Duration,
    /// Submissions of a failing staged file before the file fails (at least 1).
    pub max_submissions: u32,
}

/// The part of a pipeline's collection the config decides; [`crate::sink::CollectionSpec`] adds
/// the model's dimension and identity, [`crate::mapping::RowSchema`] the dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSettings {
    /// Collection name.
    pub name: String,
    /// Primary key field: `id_field`, or `id`.
    pub primary_key: String,
    /// Its type as configured (`id_type`); `None`: an existing collection's, VARCHAR for a new one.
    pub key_type: Option<KeyType>,
    /// VarChar text field.
    pub text_field: String,
    /// Longest text in bytes.
    pub text_max_length: u32,
    /// FloatVector field.
    pub vector_field: String,
    /// Kept scalar fields, in row order (by name).
    pub scalar_fields: Vec<(String, FieldSpec)>,
    /// Index built on the vector field at creation.
    pub index: IndexSettings,
}

/// `[pipelines.index]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSettings {
    /// The index built on the vector field.
    pub index_type: IndexType,
    /// The distance it is built for (and searches use).
    pub metric: Metric,
    /// Extra build parameters, handed to Milvus as they are.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A vector index type Milvus builds; [`crate::sink`] maps it to the SDK's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    /// Milvus chooses.
    AutoIndex,
    /// Brute force: nothing to build.
    Flat,
    /// Inverted file over clusters, raw vectors.
    IvfFlat,
    /// Inverted file, 8-bit scalar quantisation.
    IvfSq8,
    /// Inverted file, product quantisation.
    IvfPq,
    /// Hierarchical navigable small-world graph.
    Hnsw,
    /// On-disk graph index.
    DiskAnn,
    /// Google's ScaNN.
    Scann,
}

impl IndexType {
    /// Every index type, in the order error messages list them.
    pub const ALL: [IndexType; 8] = [
        IndexType::AutoIndex,
        IndexType::Flat,
        IndexType::IvfFlat,
        IndexType::IvfSq8,
        IndexType::IvfPq,
        IndexType::Hnsw,
        IndexType::DiskAnn,
        IndexType::Scann,
    ];

    /// The name `index_type` gives it, as Milvus spells it.
    pub fn name(self) -> &'static str {
        match self {
            IndexType::AutoIndex => "AUTOINDEX",
            IndexType::Flat => "FLAT",
            IndexType::IvfFlat => "IVF_FLAT",
            IndexType::IvfSq8 => "IVF_SQ8",
            IndexType::IvfPq => "IVF_PQ",
            IndexType::Hnsw => "HNSW",
            IndexType::DiskAnn => "DISKANN",
            IndexType::Scann => "SCANN",
        }
    }
}

/// A vector distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity.
    Cosine,
    /// Inner product.
    Ip,
    /// Euclidean distance.
    L2,
}

impl Metric {
    /// Every metric, in the order error messages list them.
    pub const ALL: [Metric; 3] = [Metric::Cosine, Metric::Ip, Metric::L2];

    /// The name `metric` gives it, as Milvus spells it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "COSINE",
            Metric::Ip => "IP",
            Metric::L2 => "L2",
        }
    }
}

/// The one of `all` whose `name` is `text`, or an error listing the names accepted.
fn parse_named<T: Copy>(all: &[T], name: fn(T) -> &'static str, text: &str) -> Result<T, String> {
    all.iter().copied().find(|value| name(*value) == text).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|value| name(*value)).collect();
        format!("expected one of {names:?}, got {text:?}")
    })
}

impl std::fmt::Display for IndexType {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A pipeline's recurring import, parsed once and handed to the scheduler as it is.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When it fires (seconds field first); its `Display` is the expression as written.
    pub cron: croner::Cron,
    /// The zone `cron` is read in (UTC unless `timezone` says otherwise).
    pub timezone: chrono_tz::Tz,
    /// Globs imported on each run, absolute (the config's directory escaped).
    pub paths: Vec<String>,
    /// Whether globs follow symbolic links below their fixed part.
    pub links: LinkPolicy,
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

/// The token: read from `token_file` (which must not be readable by others), else `token` as
/// written (or set through `VECDROP__MILVUS__TOKEN`), else the systemd credential
/// `$CREDENTIALS_DIRECTORY/milvus-token`, else none. Both `token` and `token_file` is refused.
fn token_of(token: &str, token_file: Option<&Path>) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    match (token.is_empty(), token_file) {
        (false, Some(_)) => Err("milvus.token_file: give either token or token_file, not both".to_owned()),
        (_, Some(file)) => {
            let metadata = std::fs::metadata(file).map_err(|error| format!("milvus.token_file {}: {error}", file.display()))?;
            if metadata.permissions().mode() & 0o004 != 0 {
                return Err(format!("milvus.token_file {}: readable by every user; chmod o-r it (e.g. 0600 or 0640)", file.display()));
            }
            read_token(file).map_err(|error| format!("milvus.token_file {}: {error}", file.display()))
        }
        (false, None) => Ok(Secret::new(token)),
        (true, None) => match std::env::var_os("CREDENTIALS_DIRECTORY").map(|dir| PathBuf::from(dir).join(TOKEN_CREDENTIAL)) {
            Some(file) if file.is_file() => read_token(&file).map_err(|error| format!("systemd credential {}: {error}", file.display())),
            _ => Ok(Secret::default()),
        },
    }
}

/// The first line of `file`, without its line ending; an empty file is an error.
fn read_token(file: &Path) -> Result<Secret, String> {
    let content = std::fs::read_to_string(file).map_err(|error| error.to_string())?;
    let token = content.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(Secret::new(token))
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

impl PipelineSettings {
    /// Converts one entry; the error names the key below the entry (`index.metric: …`).
    pub fn from_raw(raw: RawPipeline, base_dir: &Path) -> Result<Self, String> {
        let name = raw.name.clone().ok_or("name: required")?;
        if !is_identifier(&name) {
            return Err(format!("name: expected letters, digits, '_' or '-', got {name:?}"));
        }
        if let Some(id_field) = &raw.id_field {
            if !is_milvus_name(id_field) {
                return Err(format!("id_field: expected a Milvus name, got {id_field:?}"));
            }
        }
        if raw.batch_rows == 0 {
            return Err("batch_rows: expected at least 1".to_owned());
        }
        if raw.id_type == Some(KeyType::Int64) && raw.id_field.is_none() {
            return Err("id_type: \"int64\" needs id_field (keys derived from the file's hash are text)".to_owned());
        }
        if raw.mirror && raw.id_field.is_none() {
            return Err("mirror: needs id_field (rows are matched across versions of a source by their natural key)".to_owned());
        }
        if !(0.0..=1.0).contains(&raw.mirror_max_delete_share) {
            return Err(format!("mirror_max_delete_share: expected 0.0..=1.0, got {}", raw.mirror_max_delete_share));
        }
        Ok(Self {
            format: raw.format.parse().map_err(|message| format!("format: {message}"))?,
            collection: collection_of(&raw)?,
            schedule: schedule_of(&raw, base_dir)?,
            watch: raw.watch.iter().map(|dir| resolve(base_dir, dir)).collect(),
            name,
            json_pointer: raw
                .json_pointer
                .as_deref()
                .map(JsonPointer::parse)
                .transpose()
                .map_err(|message| format!("json_pointer: {message}"))?,
            id_field: raw.id_field,
            after_import: raw.after_import,
            mirror: raw.mirror,
            mirror_max_delete_share: raw.mirror_max_delete_share,
            batch_rows: raw.batch_rows,
            bulk_import: raw.bulk_import.map(|bulk| bulk_import_of(bulk, base_dir)).transpose()?,
        })
    }
}

fn bulk_import_of(raw: raw::RawBulkImport, base_dir: &Path) -> Result<BulkImportSettings, String> {
    let staging = raw.staging.clone().ok_or(
        "bulk_import.staging: required (a folder on Milvus's storage, e.g. \"/var/lib/milvus/vecdrop-staging\", or s3://BUCKET/PREFIX)",
    )?;
    if raw.max_submissions == 0 {
        return Err("bulk_import.max_submissions: expected at least 1".to_owned());
    }
    if raw.poll_interval.is_zero() {
        return Err("bulk_import.poll_interval: expected more than 0s".to_owned());
    }
    let staging = match staging.split_once("://") {
        None => {
            if raw.endpoint.is_some() || raw.access_key_id.is_some() || raw.secret_access_key_file.is_some() {
                return Err("bulk_import: endpoint and credentials are for s3:// staging; a folder needs none".to_owned());
            }
            StagingLocation::Folder(resolve(base_dir, Path::new(&staging)))
        }
        Some((scheme, rest)) => StagingLocation::Bucket(bucket_of(&raw, scheme, rest, base_dir)?),
    };
    Ok(BulkImportSettings { min_rows: raw.min_rows, staging, poll_interval: raw.poll_interval, max_submissions: raw.max_submissions })
}

/// An `s3://` or `file://` staging URL with its credentials (`file://` takes none).
fn bucket_of(raw: &raw::RawBulkImport, scheme: &str, rest: &str, base_dir: &Path) -> Result<BucketSettings, String> {
    let url = format!("{scheme}://{rest}");
    let (bucket, prefix) = match scheme {
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("bulk_import.staging: {url}: expected s3://BUCKET/PREFIX"));
            }
            (bucket.to_owned(), prefix.trim_matches('/').to_owned())
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(format!("bulk_import.staging: {url}: expected file:///ABSOLUTE/PATH"));
            }
            ("/".to_owned(), rest.trim_matches('/').to_owned())
        }
        other => return Err(format!("bulk_import.staging: {url}: unsupported scheme {other:?} (s3:// or a folder)")),
    };
    let (access_key_id, secret_access_key) = if scheme == "s3" {
        let id = raw.access_key_id.clone().or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok()).unwrap_or_default();
        let file = raw.secret_access_key_file.as_deref().map(|file| resolve(base_dir, file));
        let secret = match file {
            Some(file) => {
                secret_file(&file).map_err(|message| format!("bulk_import.secret_access_key_file {}: {message}", file.display()))?
            }
            None => match std::env::var("AWS_SECRET_ACCESS_KEY") {
                Ok(secret) => Secret::new(secret),
                Err(_) => match std::env::var_os("CREDENTIALS_DIRECTORY").map(|dir| PathBuf::from(dir).join(S3_SECRET_CREDENTIAL)) {
                    Some(file) if file.is_file() => {
                        read_token(&file).map_err(|error| format!("systemd credential {}: {error}", file.display()))?
                    }
                    _ => Secret::default(),
                },
            },
        };
        (id, secret)
    } else {
        (String::new(), Secret::default())
    };
    Ok(BucketSettings {
        url,
        scheme: scheme.to_owned(),
        bucket,
        prefix,
        endpoint: raw.endpoint.clone(),
        region: raw.region.clone(),
        access_key_id,
        secret_access_key,
    })
}

/// The secret in `file`, which must not be readable by every user.
fn secret_file(file: &Path) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(file).map_err(|error| error.to_string())?;
    if metadata.permissions().mode() & 0o004 != 0 {
        return Err("readable by every user; chmod o-r it (e.g. 0600 or 0640)".to_owned());
    }
    read_token(file)
}

fn collection_of(raw: &RawPipeline) -> Result<CollectionSettings, String> {
    let name = raw.collection.clone().ok_or("collection: required")?;
    for (key, value) in [("collection", &name), ("text_field", &raw.text_field), ("vector_field", &raw.vector_field)] {
        if !is_milvus_name(value) {
            return Err(format!("{key}: expected a Milvus name (letter or '_', then letters, digits, '_'), got {value:?}"));
        }
    }
    if raw.text_max_length == 0 || raw.text_max_length > 65_535 {
        return Err("text_max_length: expected 1..=65535".to_owned());
    }
    let primary_key = raw.id_field.clone().unwrap_or_else(|| "id".to_owned());
    let reserved = [raw.text_field.as_str(), raw.vector_field.as_str(), primary_key.as_str(), ROW_HASH_FIELD];
    for (field, spec) in &raw.fields {
        check_field(field, spec, &reserved).map_err(|message| format!("fields.{field}{message}"))?;
    }
    Ok(CollectionSettings {
        name,
        primary_key,
        key_type: raw.id_type,
        text_field: raw.text_field.clone(),
        text_max_length: raw.text_max_length,
        vector_field: raw.vector_field.clone(),
        scalar_fields: raw.fields.iter().map(|(field, spec)| (field.clone(), spec.clone())).collect(),
        index: index_of(&raw.index)?,
    })
}

/// Checks one kept field; the message continues its key (`.max_length: …` or `: …`).
fn check_field(name: &str, spec: &FieldSpec, reserved: &[&str]) -> Result<(), String> {
    if !is_milvus_name(name) {
        return Err(": expected a Milvus name".to_owned());
    }
    if reserved.contains(&name) {
        return Err(": this name is already used for the key, text, vector or row hash".to_owned());
    }
    match (spec.field_type, spec.max_length) {
        (ScalarType::Varchar, None) => Err(".max_length: required for varchar".to_owned()),
        (ScalarType::Varchar, Some(0)) | (ScalarType::Varchar, Some(65_536..)) => Err(".max_length: expected 1..=65535".to_owned()),
        (ScalarType::Varchar, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(".max_length: only for varchar".to_owned()),
    }
}

fn index_of(raw: &RawIndex) -> Result<IndexSettings, String> {
    Ok(IndexSettings {
        index_type: parse_named(&IndexType::ALL, IndexType::name, &raw.index_type)
            .map_err(|message| format!("index.index_type: {message}"))?,
        metric: parse_named(&Metric::ALL, Metric::name, &raw.metric).map_err(|message| format!("index.metric: {message}"))?,
        params: raw.params.clone(),
    })
}

/// The entry's schedule: `schedule` and `paths` come together; globs and the time zone are checked.
fn schedule_of(raw: &RawPipeline, base_dir: &Path) -> Result<Option<Schedule>, String> {
    let timezone = match &raw.timezone {
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| format!("timezone: expected an IANA time zone such as \"Europe/Berlin\", got {name:?}"))?,
        None => chrono_tz::UTC,
    };
    let expression = match (&raw.schedule, raw.paths.is_empty()) {
        (Some(expression), false) => expression,
        (Some(_), true) => return Err("paths: a schedule needs paths (globs) to import".to_owned()),
        (None, false) => return Err("schedule: paths are imported on a schedule; add one such as \"0 */10 * * * *\"".to_owned()),
        (None, true) => return Ok(None),
    };
    let cron = parse_schedule(expression).map_err(|message| format!("schedule: {message}"))?;
    let paths = raw.paths.iter().map(|pattern| absolute_glob(base_dir, pattern)).collect::<Result<_, _>>()?;
    Ok(Some(Schedule { cron, timezone, paths, links: raw.glob_links }))
}

/// `pattern` made absolute against `base_dir` (whose own glob characters are escaped), checked.
fn absolute_glob(base_dir: &Path, pattern: &str) -> Result<String, String> {
    glob::Pattern::new(pattern).map_err(|error| format!("paths: {pattern:?} is not a glob: {error}"))?;
    if Path::new(pattern).is_absolute() {
        return Ok(pattern.to_owned());
    }
    let base = glob::Pattern::escape(&base_dir.to_string_lossy());
    Ok(Path::new(&base).join(pattern).to_string_lossy().into_owned())
}

/// Parses a cron expression with a seconds field first (`sec min hour day month weekday`) exactly
/// as tokio-cron-scheduler reads it (a day-of-month and a weekday must both match).
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|error| format!("expected a cron expression with seconds first, e.g. \"0 */5 * * * *\", got {expression:?}: {error}"))
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
