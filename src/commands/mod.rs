//! The CLI verbs. Each takes validated settings and returns an [`ExitCode`]-worthy outcome.

mod bench;
mod check;
mod import;
mod plugin;
mod run;
mod search;
mod status;

use std::path::Path;
use std::time::{Duration, Instant};

pub use bench::{bench, BenchArgs};
pub use check::check;
pub use import::import;
pub use plugin::plugin_check;
pub use run::run;
pub use search::search;
pub use status::{http_get, status};

use crate::embed::calibrate::ShapeCache;
use crate::embed::{EmbedError, Embedder, ShapePolicy};
use crate::format::plugin::{PluginError, PluginSource};
use crate::format::PluginRegistry;
use crate::ledger::{Ledger, LOCK_WAIT};
use crate::pipeline::{ImportContext, ImportError};
use crate::settings::{ConfiguredFormat, Settings, SettingsError};
use crate::sink::{MilvusSink, SinkError};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a fatal error.
pub const EXIT_FATAL: u8 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: finished, but some records were dead-lettered.
pub const EXIT_DEAD_LETTERS: u8 = 3;

/// Why a command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The config file is missing or invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The command line asks for something the config cannot do.
    #[error("{0}")]
    Usage(String),
    /// The model could not be loaded.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Milvus could not be reached or refused.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An import stopped.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A format plugin cannot be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Anything else (IO on our own files, signals).
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Settings(_) | CommandError::Usage(_) | CommandError::Plugin(_) => EXIT_USAGE,
            _ => EXIT_FATAL,
        }
    }
}

/// Loads the model and opens Milvus (starting Milvus Lite for a local `milvus.uri`) for `import`
/// and `run`. Milvus itself need not answer yet: imports retry until it does (transient faults).
/// The ledger is waited for briefly when a process that just died still holds it.
pub async fn open_context(settings: Settings, interactive: bool) -> Result<ImportContext, CommandError> {
    Ok(open_context_timed(settings, interactive).await?.0)
}

/// How long each part of opening an [`ImportContext`] took. The parts run at once, so `total`
/// is about the slowest of them, not their sum.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartupTimes {
    /// Loading the model (and measuring its batch shape when no measurement is kept).
    pub model: Duration,
    /// Connecting to Milvus (starting Milvus Lite for a local path).
    pub milvus: Duration,
    /// Opening the ledger.
    pub ledger: Duration,
    /// Loading plugins.
    pub plugins: Duration,
    /// All of it, from the first part's start to the last part's end.
    pub total: Duration,
}

/// [`open_context`], and how long its parts took. Model, Milvus, ledger and plugins are opened
/// at the same time: the model's load (CPU) overlaps Milvus's handshake or Milvus Lite's start.
pub async fn open_context_timed(settings: Settings, interactive: bool) -> Result<(ImportContext, StartupTimes), CommandError> {
    let started = Instant::now();
    let state_dir = settings.state.dir.clone();
    let ledger = async move {
        tokio::task::spawn_blocking(move || Ledger::open_waiting(&state_dir, LOCK_WAIT))
            .await
            .map_err(|error| CommandError::Other(format!("opening the ledger: {error}")))?
            .map_err(|error| CommandError::Other(error.to_string()))
    };
    let ((ledger, ledger_time), (plugins, plugins_time), (embedder, model_time), (sink, milvus_time)) = tokio::join!(
        timed(ledger),
        timed(load_plugins(&settings)),
        timed(load_embedder(&settings)),
        timed(async { Ok::<_, CommandError>(MilvusSink::open(&settings.milvus, &settings.base_dir).await?) }),
    );
    let times =
        StartupTimes { model: model_time, milvus: milvus_time, ledger: ledger_time, plugins: plugins_time, total: started.elapsed() };
    let (ledger, plugins, embedder, sink) = (ledger?, plugins?, embedder?, sink?);
    Ok((ImportContext::new(settings, embedder, sink, ledger, plugins, interactive), times))
}

/// When `main` began (set by [`mark_process_start`]); start-up times are counted from it.
static PROCESS_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Notes that the process starts now: call first thing in `main`.
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// When the process started ([`mark_process_start`]), or the first time this is asked.
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}

/// `future`'s outcome and how long it took.
async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let outcome = future.await;
    (outcome, started.elapsed())
}

/// Loads the `[[plugins]]` on a blocking thread (compiled components are cached under
/// `<state.dir>/plugin-cache`) and checks that every pipeline's `format` is known.
pub async fn load_plugins(settings: &Settings) -> Result<PluginRegistry, CommandError> {
    let sources: Vec<PluginSource> = settings
        .plugins
        .iter()
        .map(|plugin| PluginSource { path: plugin.path.clone(), config_json: plugin.config_json.clone(), limits: plugin.limits.clone() })
        .collect();
    let cache_dir = settings.state.dir.join("plugin-cache");
    let registry = tokio::task::spawn_blocking(move || PluginRegistry::load(&sources, Some(&cache_dir)))
        .await
        .map_err(|error| CommandError::Other(format!("plugin loading panicked: {error}")))??;
    for (index, pipeline) in settings.pipelines.iter().enumerate() {
        let ConfiguredFormat::Plugin(name) = &pipeline.format else { continue };
        if registry.by_name(name).is_none() {
            return Err(CommandError::Usage(format!(
                "config {}: pipelines[{index}].format: {name:?} is neither built in nor declared by a plugin (plugin formats: {:?})",
                settings.path.display(),
                registry.format_names()
            )));
        }
    }
    Ok(registry)
}

/// Loads the configured model on a blocking thread; unconfigured batch limits are measured on
/// this host, or read from the measurement kept in the state directory.
pub async fn load_embedder(settings: &Settings) -> Result<Embedder, CommandError> {
    let embedding = settings.embedding.clone();
    let base_dir = settings.base_dir.clone();
    let policy = ShapePolicy::Calibrate(Some(ShapeCache::in_state_dir(&settings.state.dir)));
    let embedder = tokio::task::spawn_blocking(move || Embedder::load_with(&embedding, &base_dir, &policy))
        .await
        .map_err(|error| CommandError::Other(format!("model loading panicked: {error}")))??;
    tracing::info!(
        model = embedder.identity(),
        dimension = embedder.dimension(),
        batch = %embedder.shape_choice().describe(),
        "model loaded"
    );
    Ok(embedder)
}

/// Connects to the configured Milvus (starting Milvus Lite for a local path).
pub async fn connect_milvus(settings: &Settings) -> Result<MilvusSink, CommandError> {
    Ok(MilvusSink::connect(&settings.milvus, &settings.base_dir).await?)
}

/// Whether `path` exists as a file; the error names it.
fn require_file(path: &Path) -> Result<(), CommandError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(CommandError::Usage(format!("{}: no such file", path.display())))
    }
}
