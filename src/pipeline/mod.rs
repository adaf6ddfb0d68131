//! One file through the stages: **read → map → (skip unchanged) → embed → upsert → commit**.
//!
//! ```text
//!  read + map ──batches──► skip unchanged ──batches──► embed ──batches──► upsert → commit
//!  (blocking)   bounded    (id_field only:  bounded   (blocking bounded   Milvus    ledger
//!       │                   Milvus hashes)             pool)
//!       └─ rejected records travel with their batch ────────────────────────────► dead-letter file
//! ```
//! The stages are built last to first and joined by bounded channels, so a slow stage holds back
//! the ones before it and memory stays bounded. Each batch carries its checkpoint delta
//! `(from, to]`; the commit stage applies it to the ledger only after Milvus acknowledged the
//! batch's rows (invariant 1). A crash anywhere replays at most the uncommitted batches, with the
//! same keys (invariant 2).

mod incremental;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::read::{open_reader, ReadEnd, ReadJob, RowBatch};
use crate::dead_letter::DeadLetterWriter;
use crate::embed::{EmbedError, Embedder};
use crate::format::{Checkpoint, Format, PluginRegistry, ReadError, ReadOptions};
use crate::ledger::{BatchCounts, Begin, FileEntry, Ledger, LedgerError};
use crate::mapping::{Row, RowSchema};
use crate::progress::{ImportSummary, Progress};
use crate::settings::{PipelineSettings, Settings};
use crate::sink::{CollectionSpec, MilvusSink, SinkError};
use crate::telemetry::{InFlight, Telemetry};

/// Batches in flight between two stages.
const CHANNEL_DEPTH: usize = 2;

/// Why a file's import stopped. Rows committed before the error stay in Milvus and the ledger
/// keeps their position, so importing the file again resumes.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read (further).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file's columns do not fit the pipeline (every record would fail).
    #[error("{path}: {message}")]
    Schema {
        /// The file.
        path: String,
        /// Which columns are missing.
        message: String,
    },
    /// The file changed while it was being imported.
    #[error("{path}: the file changed while it was being imported (size or modification time); its rows so far are kept, drop the new version as a new file")]
    Changed {
        /// The file.
        path: String,
    },
    /// The model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Milvus failed (after retries).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The ledger failed or refused a commit.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The dead-letter file cannot be written: stop rather than lose records.
    #[error("dead-letter file {path}: {source}")]
    DeadLetter {
        /// The dead-letter file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Shutdown was requested: the batches read so far were committed, the rest waits for the next
    /// start (the ledger keeps the file `importing` at its committed position).
    #[error("{path}: import interrupted by shutdown; it resumes from its committed position on the next start")]
    Interrupted {
        /// The file.
        path: String,
    },
    /// A stage ended without saying why (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What an import needs that outlives one file: the model, Milvus, the ledger, the config.
#[derive(Clone)]
pub struct ImportContext {
    /// The loaded configuration.
    pub settings: Arc<Settings>,
    /// The shared model.
    pub embedder: Embedder,
    /// Milvus.
    pub sink: Arc<MilvusSink>,
    /// Committed positions.
    pub ledger: Ledger,
    /// Show a progress bar when on a terminal.
    pub interactive: bool,
    /// Metrics and files in flight.
    pub telemetry: Arc<Telemetry>,
    /// Cancelled on shutdown: imports stop reading, commit what they read, and return
    /// [`ImportError::Interrupted`].
    pub cancel: CancellationToken,
    /// The loaded `[[plugins]]` and their formats.
    pub plugins: PluginRegistry,
}

/// How a file's import ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// Rows were imported (possibly resuming an earlier, interrupted import).
    Imported(ImportSummary),
    /// The same content was imported before by this pipeline; nothing was done.
    AlreadyImported(FileEntry),
}

/// A file's content identity and the metadata that tells whether it changed since.
struct FileIdentity {
    hash: String,
    size: u64,
    modified: Option<SystemTime>,
}

/// A batch with one vector per row.
struct EmbeddedBatch {
    batch: RowBatch,
    vectors: Vec<Vec<f32>>,
}

/// Where [`import_file`]'s stages run for one file.
struct FileJob<'a> {
    context: &'a ImportContext,
    pipeline: &'a PipelineSettings,
    path: &'a Path,
    identity: &'a FileIdentity,
    force: bool,
}

/// Imports `path` with `pipeline`: creates or validates the collection, resumes from the ledger's
/// committed position (or reports the content as already imported unless `force`), streams the
/// file through the stages, flushes the collection and marks the file imported.
pub async fn import_file(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    path: &Path,
    force: bool,
) -> Result<FileOutcome, ImportError> {
    let span = tracing::info_span!("import", pipeline = %pipeline.name, file = %path.display(), collection = %pipeline.collection);
    import_file_in_span(context, pipeline, path, force).instrument(span).await
}

async fn import_file_in_span(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    path: &Path,
    force: bool,
) -> Result<FileOutcome, ImportError> {
    let format = Format::resolve_with(&pipeline.format, path, &context.plugins)?;
    let identity = FileIdentity::of(path).await?;
    let ledger = context.ledger.clone();
    let (name, hash, size, display) = (pipeline.name.clone(), identity.hash.clone(), identity.size, path.display().to_string());
    let resume = match blocking(move || ledger.begin(&name, &hash, size, &display, force)).await? {
        Begin::AlreadyImported(entry) => {
            if pipeline.mirror {
                // A crash may have come between `finish` and the end of the mirror deletions.
                incremental::mirror_deletions(&FileJob { context, pipeline, path, identity: &identity, force }).await?;
            }
            return Ok(FileOutcome::AlreadyImported(entry));
        }
        Begin::From(checkpoint) => checkpoint,
    };
    if resume != Checkpoint::Start {
        tracing::info!(ordinal = resume.ordinal(), "resuming after the last committed record");
    }
    let job = FileJob { context, pipeline, path, identity: &identity, force };
    let result = run_stages(&job, format, resume).await;
    let ledger = context.ledger.clone();
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    match result {
        Ok(summary) => {
            crate::failpoint::hit("before_finish");
            blocking(move || ledger.finish(&name, &hash)).await?;
            let mut summary = summary;
            if pipeline.mirror {
                summary.rows_deleted = incremental::mirror_deletions(&job).await?;
            }
            Ok(FileOutcome::Imported(summary))
        }
        Err(error @ ImportError::Interrupted { .. }) => Err(error),
        Err(error) => {
            let reason = error.to_string();
            if let Err(ledger_error) = blocking(move || ledger.fail(&name, &hash, &reason)).await {
                tracing::error!(%ledger_error, "cannot record the failure in the ledger");
            }
            Err(error)
        }
    }
}

async fn run_stages(job: &FileJob<'_>, format: Format, resume: Checkpoint) -> Result<ImportSummary, ImportError> {
    let FileJob { context, pipeline, path, identity, .. } = *job;
    let spec = CollectionSpec::of(pipeline, context.embedder.dimension(), context.embedder.identity());
    context.sink.ensure_collection(&spec).await?;
    let schema = RowSchema::of(pipeline, spec.dimension);
    let options = ReadOptions { json_pointer: pipeline.json_pointer.clone() };
    let reader = open_reader(format, path, options, &resume, &schema).await?;
    let total_units = reader.total_units();
    let read_job = ReadJob {
        reader,
        resume: resume.clone(),
        schema,
        batch_rows: pipeline.batch_rows,
        pipeline: pipeline.name.clone(),
        path: path.to_owned(),
        file_hash: identity.hash.clone(),
        cancel: context.cancel.clone(),
    };

    let (embedded_sender, mut embedded_receiver) = mpsc::channel::<EmbeddedBatch>(CHANNEL_DEPTH);
    let (row_sender, row_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
    let embed_stage = tokio::spawn(
        embed_stage(context.embedder.clone(), Arc::clone(&context.telemetry), pipeline.name.clone(), row_receiver, embedded_sender)
            .in_current_span(),
    );
    let read_stage = if pipeline.id_field.is_some() {
        let (read_sender, read_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
        let stage = incremental::spawn(job, spec.clone(), read_receiver, row_sender);
        (read::spawn(read_job, read_sender), Some(stage))
    } else {
        (read::spawn(read_job, row_sender), None)
    };

    let mut progress = Progress::start(&path.display().to_string(), total_units, context.interactive);
    progress.skip_to(resume.units());
    let tracked = context.telemetry.track(&pipeline.name, &path.display().to_string(), total_units, resume.units());
    let mut dead_letters = DeadLetterWriter::new(&context.settings.resolve(&context.settings.state.dir), &pipeline.name);
    let mut commit_result = Ok(());
    while let Some(embedded) = embedded_receiver.recv().await {
        commit_result = commit_batch(job, &spec, &mut dead_letters, embedded, &mut progress, &tracked).await;
        if commit_result.is_err() {
            break;
        }
    }
    drop(embedded_receiver); // stops the earlier stages if the commit stage gave up
    let embed_result = embed_stage.await.map_err(|error| ImportError::Internal(format!("embed stage: {error}")))?;
    let (read_stage, incremental_stage) = read_stage;
    let incremental_result = match incremental_stage {
        Some(stage) => stage.await.map_err(|error| ImportError::Internal(format!("incremental stage: {error}")))?,
        None => Ok(()),
    };
    let read_end = read_stage.await.map_err(|error| ImportError::Internal(format!("read stage: {error}")))?;
    commit_result?;
    let read_end = read_end?;
    incremental_result?;
    embed_result?;
    if read_end == ReadEnd::Interrupted {
        return Err(ImportError::Interrupted { path: path.display().to_string() });
    }
    let flush_started = std::time::Instant::now();
    context.sink.flush(&spec.name).await?;
    progress.flushed(flush_started.elapsed());
    identity.check_unchanged(path)?;
    Ok(progress.finish())
}

/// Upserts one batch, then (Milvus acknowledged) writes its dead letters and commits its delta.
async fn commit_batch(
    job: &FileJob<'_>,
    spec: &CollectionSpec,
    dead_letters: &mut DeadLetterWriter,
    embedded: EmbeddedBatch,
    progress: &mut Progress,
    tracked: &InFlight,
) -> Result<(), ImportError> {
    let FileJob { context, pipeline, path, identity, .. } = *job;
    let EmbeddedBatch { batch, vectors } = embedded;
    let started = std::time::Instant::now();
    let imported = if batch.rows.is_empty() { 0 } else { context.sink.upsert(spec, &batch.rows, &vectors).await? };
    if !batch.rows.is_empty() {
        context.telemetry.upserted(&pipeline.name, started.elapsed());
    }
    crate::failpoint::hit("after_upsert");
    identity.check_unchanged(path)?;
    if let Err(source) = dead_letters.append(&batch.dead_letters) {
        return Err(ImportError::DeadLetter { path: dead_letters.path().to_owned(), source });
    }
    let counts = BatchCounts { imported, rejected: batch.dead_letters.len() as u64, unchanged: batch.unchanged };
    let ledger = context.ledger.clone();
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    let (from, to) = (batch.from, batch.to.clone());
    blocking(move || ledger.commit(&name, &hash, &from, &to, counts)).await?;
    progress.advance(counts, batch.to.units());
    tracked.committed(counts, batch.to.units());
    Ok(())
}

async fn embed_stage(
    embedder: Embedder,
    telemetry: Arc<Telemetry>,
    pipeline: String,
    mut batches: mpsc::Receiver<RowBatch>,
    output: mpsc::Sender<EmbeddedBatch>,
) -> Result<(), ImportError> {
    while let Some(mut batch) = batches.recv().await {
        let started = std::time::Instant::now();
        let texts = batch.rows.iter().filter(|row| row.vector.is_none()).count();
        let vectors = vectors_for(&embedder, &mut batch.rows).await?;
        if texts > 0 {
            telemetry.embedded(&pipeline, texts, started.elapsed());
        }
        if output.send(EmbeddedBatch { batch, vectors }).await.is_err() {
            break; // the commit stage stopped; its error is reported there
        }
    }
    Ok(())
}

/// Vectors for `rows`, in order: the ones rows carry (taken out of them), the model's for the rest.
async fn vectors_for(embedder: &Embedder, rows: &mut [Row]) -> Result<Vec<Vec<f32>>, ImportError> {
    let texts: Vec<String> = rows.iter().filter(|row| row.vector.is_none()).map(|row| row.text.clone()).collect();
    let mut embedded = if texts.is_empty() { Vec::new() } else { embedder.embed(texts).await? }.into_iter();
    rows.iter_mut()
        .map(|row| {
            row.vector.take().or_else(|| embedded.next()).ok_or_else(|| ImportError::Internal("embedder returned too few vectors".into()))
        })
        .collect()
}

/// Runs blocking ledger work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, LedgerError> + Send + 'static) -> Result<T, ImportError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ImportError::Internal(format!("ledger task: {error}")))?
        .map_err(ImportError::from)
}

impl FileIdentity {
    /// Hashes the file (streamed, on a blocking thread) and notes its size and modification time.
    async fn of(path: &Path) -> Result<Self, ReadError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let io_error = |source| ReadError::Io { path: path.display().to_string(), source };
            let metadata = std::fs::metadata(&path).map_err(io_error)?;
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(std::fs::File::open(&path).map_err(io_error)?).map_err(io_error)?;
            let identity = Self { hash: hasher.finalize().to_hex().to_string(), size: metadata.len(), modified: metadata.modified().ok() };
            identity.check_unchanged(&path).map_err(|_| ReadError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other("the file changed while it was being hashed"),
            })?;
            Ok(identity)
        })
        .await
        .map_err(|error| ReadError::Io { path: String::new(), source: std::io::Error::other(error.to_string()) })?
    }

    /// Fails when the file's size or modification time differ from when it was hashed.
    fn check_unchanged(&self, path: &Path) -> Result<(), ImportError> {
        let changed = || ImportError::Changed { path: path.display().to_string() };
        let metadata = std::fs::metadata(path).map_err(|_| changed())?;
        if metadata.len() != self.size || metadata.modified().ok() != self.modified {
            return Err(changed());
        }
        Ok(())
    }
}
