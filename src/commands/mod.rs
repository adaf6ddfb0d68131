//! The CLI verbs. Each takes validated settings and returns an [`ExitCode`]-worthy outcome.

mod bench;
mod check;
mod import;
mod plugin;
mod run;
mod search;
mod status;

use std::path::Path;

pub use bench::{bench, BenchArgs};
pub use check::check;
pub use import::import;
pub use plugin::plugin_check;
pub use run::run;
pub use search::search;
pub use status::{http_get, status};

use crate::embed::{EmbedError, Embedder};
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
    let state_dir = settings.state.dir.clone();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open_waiting(&state_dir, LOCK_WAIT))
        .await
        .map_err(|error| CommandError::Other(format!("opening the ledger: {error}")))?
        .map_err(|error| CommandError::Other(error.to_string()))?;
    let plugins = load_plugins(&settings).await?;
    let embedder = load_embedder(&settings).await?;
    let sink = MilvusSink::open(&settings.milvus, &settings.base_dir).await?;
    Ok(ImportContext::new(settings, embedder, sink, ledger, plugins, interactive))
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

/// Loads the configured model on a blocking thread.
pub async fn load_embedder(settings: &Settings) -> Result<Embedder, CommandError> {
    let embedding = settings.embedding.clone();
    let base_dir = settings.base_dir.clone();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load(&embedding, &base_dir))
        .await
        .map_err(|error| CommandError::Other(format!("model loading panicked: {error}")))??;
    tracing::info!(model = embedder.identity(), dimension = embedder.dimension(), "model loaded");
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
