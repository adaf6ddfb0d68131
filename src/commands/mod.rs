//! The CLI verbs. Each takes validated settings and returns an [`ExitCode`]-worthy outcome.

mod bench;
mod import;
mod run;
mod search;
mod status;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use bench::{bench, BenchArgs};
pub use import::import;
pub use run::run;
pub use search::search;
pub use status::status;

use crate::embed::{EmbedError, Embedder};
use crate::ledger::Ledger;
use crate::pipeline::{ImportContext, ImportError};
use crate::settings::{Settings, SettingsError};
use crate::sink::{MilvusSink, SinkError};
use crate::telemetry::Telemetry;
use tokio_util::sync::CancellationToken;

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
    /// Anything else (IO on our own files, signals).
    #[error("{0}")]
    Other(String),
}

impl CommandError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Settings(_) | CommandError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FATAL,
        }
    }
}

/// Loads the model and connects to Milvus (starting Milvus Lite for a local `milvus.uri`).
pub async fn open_context(settings: Settings, interactive: bool) -> Result<ImportContext, CommandError> {
    let ledger = Ledger::open(&settings.resolve(&settings.state.dir)).map_err(|error| CommandError::Other(error.to_string()))?;
    let embedder = load_embedder(&settings).await?;
    let sink = connect_milvus(&settings).await?;
    Ok(ImportContext {
        settings: Arc::new(settings),
        embedder,
        sink: Arc::new(sink),
        ledger,
        interactive,
        telemetry: Arc::new(Telemetry::default()),
        cancel: CancellationToken::new(),
    })
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
    let timeout = Duration::from_secs(settings.milvus.connect_timeout_secs);
    Ok(MilvusSink::connect(&settings.milvus, &settings.base_dir, timeout).await?)
}

/// Whether `path` exists as a file; the error names it.
fn require_file(path: &Path) -> Result<(), CommandError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(CommandError::Usage(format!("{}: no such file", path.display())))
    }
}
