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
//!
//! A file is imported in two steps. [`upsert_file`] runs the stages until every row is upserted
//! and committed; [`Upserted::finish`] then waits for the collection's shared flush
//! ([`GroupFlusher`]), checks that the file did not change, and marks it imported. The daemon frees
//! the file's worker between the two, so files waiting for a flush do not hold back the next ones;
//! [`import_file`] runs both.
//!
//! An import that stops says whose fault it was ([`ImportError`] is [`Classify`]): only a
//! [`Fault::File`] marks the file failed in the ledger; any other fault leaves it `importing` at
//! its committed position, for the caller to retry (the daemon backs off, `vecdrop import` retries
//! until its deadline). Two imports of the same content never run at once in one process.

mod bulk;
mod incremental;
mod read;

pub use self::bulk::CollectionLocks;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::read::{open_reader, ReadEnd, ReadJob, RowBatch};
use crate::dead_letter::{DeadLetterError, DeadLetters, RejectCause};
use crate::embed::{EmbedError, EmbedQueue, Embedder};
use crate::fault::{Classify, Fault};
use crate::format::{open_regular, Checkpoint, Format, PluginRegistry, ReadError, ReadOptions, Source};
use crate::ledger::{crash_reason, BatchCounts, Begin, BeginOptions, FileEntry, Ledger, LedgerError};
use crate::mapping::{Row, RowSchema};
use crate::progress::{ImportSummary, Progress};
use crate::settings::{PipelineSettings, Settings};
use crate::sink::{CollectionSpec, GroupFlusher, MilvusSink, SinkError};
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
        path: String,
        /// Which columns are missing.
        message: String,
    },
    /// The file changed while it was being imported.
    #[error("{path}: the file changed while it was being imported (size or modification time); its rows so far are kept, drop the new version as a new file")]
    Changed { path: String },
    /// The model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Milvus failed (after retries).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The flush this file shared with others failed (after retries).
    #[error("{0}")]
    Flush(Arc<SinkError>),
    /// The ledger failed or refused a commit.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The dead-letter file cannot be written: stop rather than lose records.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// Earlier imports of this file kept killing the process; it is set aside.
    #[error("{path}: {}", crash_reason(*crashes))]
    Crashed {
        path: String,
        /// Attempts in a row that died.
        crashes: u32,
    },
    /// Shutdown was requested: the batches read so far were committed, the rest waits for the next
    /// start (the ledger keeps the file `importing` at its committed position).
    #[error("{path}: import interrupted by shutdown; it resumes from its committed position on the next start")]
    Interrupted { path: String },
    /// The bulk path could not write its staging folder.
    #[error("{path}: bulk import staging: {message}")]
    Staging {
        path: String,
        /// What failed, naming the staged file, folder or object.
        message: String,
        /// Whose fault: the disk or the bucket for now (transient), its settings (config), or
        /// vecdrop's encoder (bug).
        fault: Fault,
    },
    /// Milvus's bulk import of the file's staged rows failed as often as `max_submissions` allows.
    #[error("{path}: Milvus's bulk import failed: {reason} (the staged files are kept in {staging})")]
    BulkImport {
        path: String,
        /// Milvus's reason.
        reason: String,
        /// The job folder, kept with a FAILED.txt.
        staging: String,
    },
    /// Milvus completed the file's import tasks but their rows did not become visible to queries
    /// in time; the job stays recorded and the next attempt waits again.
    #[error("{path}: Milvus's bulk import completed but the rows are not visible to queries after {waited:?} (is the collection loaded?); the job stays recorded and is checked again")]
    NotVisible {
        path: String,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// Another file's bulk-import job into the same collection is open (recorded, not finished):
    /// this file waits, since a row it writes meanwhile could be inserted a second time by that job.
    #[error("{path}: waits for the bulk import of {other} into collection {collection} to finish")]
    CollectionBusy {
        path: String,
        collection: String,
        /// The file whose job is open.
        other: String,
    },
    /// A stage ended without saying why (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Classify for ImportError {
    fn fault(&self) -> Fault {
        match self {
            ImportError::Read(error) => error.fault(),
            ImportError::Schema { .. } | ImportError::Changed { .. } | ImportError::Crashed { .. } | ImportError::BulkImport { .. } => {
                Fault::File
            }
            // An unwritable staging folder (full disk, permissions) is the environment's.
            ImportError::Staging { fault, .. } => *fault,
            ImportError::NotVisible { .. } | ImportError::CollectionBusy { .. } => Fault::Transient,
            ImportError::Embed(error) => error.fault(),
            ImportError::Sink(error) => error.fault(),
            ImportError::Flush(error) => error.fault(),
            ImportError::Ledger(error) => error.fault(),
            ImportError::DeadLetter(error) => error.fault(),
            // Not a fault: the caller resumes the file at the next start.
            ImportError::Interrupted { .. } => Fault::Transient,
            ImportError::Internal(_) => Fault::Bug,
        }
    }
}

/// What an import needs that outlives one file: the model, Milvus, the ledger, the config.
#[derive(Clone)]
pub struct ImportContext {
    /// The loaded configuration.
    pub settings: Arc<Settings>,
    /// The shared model.
    pub embedder: Embedder,
    /// The queue in front of the model that mixes the texts of all files in flight.
    pub embed_queue: EmbedQueue,
    pub sink: Arc<MilvusSink>,
    /// Flushes shared by the files of one collection.
    pub flusher: GroupFlusher,
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
    /// One dead-letter writer per pipeline, shared by its files in flight.
    pub dead_letters: DeadLetters,
    /// Content being imported now, so that two copies of one file wait for each other.
    pub active: ActiveImports,
    /// Per collection: bulk jobs write alone, upserting files together ([`CollectionLocks`]).
    pub collection_locks: CollectionLocks,
    /// Pipelines whose fall-back from bulk import to upserts was logged (once each).
    pub bulk_fallbacks: Arc<Mutex<HashSet<String>>>,
}

impl ImportContext {
    /// A context for `settings` with fresh telemetry, dead-letter writers and cancel token.
    pub fn new(
        settings: Settings,
        embedder: Embedder,
        sink: MilvusSink,
        ledger: Ledger,
        plugins: PluginRegistry,
        interactive: bool,
    ) -> Self {
        let dead_letters = DeadLetters::new(&settings.state.dir, ledger.clone());
        let (sink, telemetry) = (Arc::new(sink), Arc::new(Telemetry::default()));
        let flusher = GroupFlusher::new(Arc::clone(&sink), Arc::clone(&telemetry), settings.milvus.flush_window);
        Self {
            settings: Arc::new(settings),
            embed_queue: EmbedQueue::start(embedder.clone()),
            embedder,
            sink,
            flusher,
            ledger,
            interactive,
            telemetry,
            cancel: CancellationToken::new(),
            plugins,
            dead_letters,
            active: ActiveImports::default(),
            collection_locks: CollectionLocks::default(),
            bulk_fallbacks: Arc::default(),
        }
    }
}

/// Ledger keys (`pipeline/hash`) being imported in this process, each behind its own lock.
#[derive(Clone, Default)]
pub struct ActiveImports {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl ActiveImports {
    /// Waits until no other import of `pipeline`'s content `hash` runs, and holds it until the
    /// guard is dropped.
    async fn hold(&self, pipeline: &str, hash: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(self.locks.lock().expect("active imports lock").entry(format!("{pipeline}/{hash}")).or_default());
        let guard = lock.lock_owned().await;
        // Entries of finished imports are dropped when nobody else waits for them.
        self.locks.lock().expect("active imports lock").retain(|_, lock| Arc::strong_count(lock) > 1);
        guard
    }
}

/// How a file's import ended.
#[derive(Debug, Clone, PartialEq)]
// One per file, matched at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum FileOutcome {
    /// Rows were imported (possibly resuming an earlier, interrupted import).
    Imported(ImportSummary),
    /// The same content was imported before by this pipeline; nothing was done.
    AlreadyImported(FileEntry),
}

/// A file's content identity and the metadata that tells whether it changed since: the inode
/// (device, number) its name must still lead to, and the size, modification and change times its
/// content must still have.
struct FileIdentity {
    hash: String,
    /// Newline bytes in the content: the bulk path's estimate of a text file's records for
    /// `min_rows` (one record per line in CSV and JSON Lines; a JSON array on one line counts 0).
    lines: u64,
    size: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
    inode: (u64, u64),
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
    source: &'a Source,
    identity: &'a FileIdentity,
    force: bool,
}

/// A file whose rows are all upserted and committed, waiting for its collection's flush before
/// it is marked imported. Holds the file's content lock: no other import of the same content runs
/// until it is finished or dropped.
pub struct Upserted {
    context: ImportContext,
    pipeline: PipelineSettings,
    path: PathBuf,
    source: Source,
    identity: FileIdentity,
    progress: Progress,
    /// Whether rows were upserted (bulk-imported segments need no flush).
    needs_flush: bool,
    span: tracing::Span,
    _only_import_of_this_content: tokio::sync::OwnedMutexGuard<()>,
}

/// How [`upsert_file`] left a file.
// One per file, matched at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Staged {
    /// Every row is in Milvus and committed; [`Upserted::finish`] completes the import.
    Upserted(Upserted),
    /// The same content was imported before by this pipeline; nothing was done.
    AlreadyImported(FileEntry),
}

/// Imports `source` with `pipeline` in one go: [`upsert_file`], then [`Upserted::finish`].
pub async fn import_file(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    source: impl Into<Source>,
    force: bool,
) -> Result<FileOutcome, ImportError> {
    upsert_file(context, pipeline, source, force).await?.finish().await
}

impl Staged {
    /// Completes the import: [`Upserted::finish`] for upserted rows; content imported before
    /// needs nothing more.
    pub async fn finish(self) -> Result<FileOutcome, ImportError> {
        match self {
            Staged::Upserted(upserted) => upserted.finish().await,
            Staged::AlreadyImported(entry) => Ok(FileOutcome::AlreadyImported(entry)),
        }
    }
}

/// Creates or validates the collection, resumes from the ledger's committed position (or reports
/// the content as already imported unless `force`) and streams the file through the stages until
/// every row is upserted and committed. An unpinned `source` (a path) is opened here, following
/// links but refusing anything that is not a regular file; every read of the import goes through
/// that one descriptor.
pub async fn upsert_file(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    source: impl Into<Source>,
    force: bool,
) -> Result<Staged, ImportError> {
    let source = source.into();
    let span =
        tracing::info_span!("import", pipeline = %pipeline.name, file = %source.name().display(), collection = %pipeline.collection.name);
    upsert_file_in_span(context, pipeline, source, force, span.clone()).instrument(span).await
}

/// `source`, pinned to a descriptor if it is not yet.
fn pin(source: Source) -> Result<Source, ReadError> {
    if source.is_pinned() {
        return Ok(source);
    }
    let file =
        open_regular(source.name(), true).map_err(|error| ReadError::Io { path: source.name().display().to_string(), source: error })?;
    Ok(Source::pinned(source.name(), file))
}

async fn upsert_file_in_span(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    source: Source,
    force: bool,
    span: tracing::Span,
) -> Result<Staged, ImportError> {
    let path = source.name().to_owned();
    let path = path.as_path();
    let format = Format::resolve_with(&pipeline.format, path, &context.plugins)?;
    let source = pin(source)?;
    let identity = FileIdentity::of(&source).await?;
    let only_import_of_this_content = context.active.hold(&pipeline.name, &identity.hash).await;
    let job = FileJob { context, pipeline, path, source: &source, identity: &identity, force };
    // A mirrored source going back to content it held before (A → B → A) is imported again.
    let source_moved_on = pipeline.mirror && incremental::mirrored_elsewhere(&job).await?;
    let options = BeginOptions { restart: force || source_moved_on, max_crashes: context.settings.daemon.max_crashes };
    let ledger = context.ledger.clone();
    let (name, hash, size, display) = (pipeline.name.clone(), identity.hash.clone(), identity.size, path.display().to_string());
    let resume = match blocking(move || {
        let seen_before = ledger.get(&name, &hash)?.is_some();
        Ok((seen_before, ledger.begin(&name, &hash, size, &display, options)?))
    })
    .await?
    {
        (_, Begin::AlreadyImported(entry)) => {
            if pipeline.mirror {
                // A crash may have come between `finish` and the end of the mirror deletions.
                incremental::mirror_deletions(&job).await?;
            }
            return Ok(Staged::AlreadyImported(entry));
        }
        (_, Begin::Crashed { crashes, .. }) => return Err(ImportError::Crashed { path: path.display().to_string(), crashes }),
        (seen_before, Begin::From(checkpoint)) => (seen_before, checkpoint),
    };
    let (seen_before, resume) = resume;
    if resume != Checkpoint::Start {
        tracing::info!(ordinal = resume.ordinal(), "resuming after the last committed record");
    }
    match run_stages(&job, format, resume, seen_before).await {
        Ok((progress, needs_flush)) => Ok(Staged::Upserted(Upserted {
            needs_flush,
            context: context.clone(),
            pipeline: pipeline.clone(),
            path: path.to_owned(),
            source: source.clone(),
            identity,
            progress,
            span,
            _only_import_of_this_content: only_import_of_this_content,
        })),
        Err(error) => {
            record_failure(&job, &error).await;
            Err(error)
        }
    }
}

impl Upserted {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for a flush of the collection (shared with the other files that finished meanwhile),
    /// checks that the file did not change, marks it imported and applies mirror deletions.
    pub async fn finish(self) -> Result<FileOutcome, ImportError> {
        let span = self.span.clone();
        self.finish_in_span().instrument(span).await
    }

    async fn finish_in_span(self) -> Result<FileOutcome, ImportError> {
        let Self { context, pipeline, path, source, identity, mut progress, needs_flush, .. } = self;
        let job = FileJob { context: &context, pipeline: &pipeline, path: &path, source: &source, identity: &identity, force: false };
        let flush_started = std::time::Instant::now();
        let flushed = if needs_flush { context.flusher.flush(&pipeline.collection.name).await.map_err(ImportError::Flush) } else { Ok(()) };
        let result = match flushed.and_then(|()| identity.check_unchanged(&source)) {
            Ok(()) => {
                progress.flushed(flush_started.elapsed());
                finish(&job, progress.finish()).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = &result {
            record_failure(&job, error).await;
        }
        result
    }
}

/// Marks the file imported (its rows are committed and flushed) and applies mirror deletions.
async fn finish(job: &FileJob<'_>, mut summary: ImportSummary) -> Result<FileOutcome, ImportError> {
    let FileJob { context, pipeline, path, identity, .. } = *job;
    crate::failpoint::hit_for("before_finish", &path.display().to_string());
    let ledger = context.ledger.clone();
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    blocking(move || ledger.finish(&name, &hash)).await?;
    if pipeline.mirror {
        let pass = incremental::mirror_deletions(job).await?;
        summary.rows_deleted = pass.deleted;
        summary.mirror_held_back = pass.held_back;
    }
    Ok(FileOutcome::Imported(summary))
}

/// Records in the ledger how an import stopped: a file fault fails the file; anything else only
/// closes the attempt (the file stays `importing` at its committed position).
async fn record_failure(job: &FileJob<'_>, error: &ImportError) {
    let FileJob { context, pipeline, identity, .. } = *job;
    if matches!(error, ImportError::Sink(_) | ImportError::Flush(_)) {
        context.sink.forget_collection(&pipeline.collection.name);
    }
    if matches!(error, ImportError::Crashed { .. }) {
        return; // `begin` recorded it
    }
    let ledger = context.ledger.clone();
    let (name, hash, reason, fault) = (pipeline.name.clone(), identity.hash.clone(), error.to_string(), error.fault());
    let recorded = blocking(move || match fault {
        Fault::File => ledger.fail(&name, &hash, &reason).map(drop),
        _ => ledger.end_attempt(&name, &hash),
    })
    .await;
    if let Err(ledger_error) = recorded {
        tracing::error!(%ledger_error, "cannot record how the import ended in the ledger");
    }
}

/// Streams the file through the stages; returns its progress once every row is committed. A
/// file that qualifies for the pipeline's `bulk_import` goes the bulk path ([`bulk`]); a bulk job
/// recorded before a restart is followed instead of reading the file again.
async fn run_stages(job: &FileJob<'_>, format: Format, resume: Checkpoint, seen_before: bool) -> Result<(Progress, bool), ImportError> {
    let FileJob { context, pipeline, path, source, identity, .. } = *job;
    let spec = CollectionSpec::of(pipeline, context.embedder.dimension(), context.embedder.identity());
    context.sink.ensure_collection(&spec).await?;
    let schema = RowSchema::of(pipeline, spec.dimension).with_key_type(context.sink.key_type(&spec));
    let options = ReadOptions { json_pointer: pipeline.json_pointer.clone() };
    let is_parquet = matches!(format, Format::Parquet);
    let reader = open_reader(format, source, options, &resume, &schema).await?;
    let total_units = reader.total_units();
    let mut progress = Progress::start(&path.display().to_string(), total_units, context.interactive);
    progress.skip_to(resume.units());
    let tracked = context.telemetry.track(&pipeline.name, &path.display().to_string(), total_units, resume.units());
    if let Some(counts) = bulk::resume_recorded(job, &resume, &spec, &mut progress, &tracked).await? {
        identity.check_unchanged(source)?;
        progress.committed_all();
        return Ok((progress, counts.upserted_rows() > 0));
    }
    let estimated_rows = if is_parquet { total_units } else { identity.lines };
    // The lock first, then the ledger: a job that stopped with an error leaves the lock free but
    // stays recorded until it is finished.
    let mut consumer = match bulk::chosen(job, estimated_rows).await? {
        Some(settings) => {
            let exclusive = context.collection_locks.exclusive(&spec.collection.name).await;
            bulk::check_no_other_job(job, &spec.collection.name).await?;
            Consumer::Bulk(Box::new(bulk::BulkStage::start(job, settings, spec.clone(), resume.clone(), exclusive).await?))
        }
        None => {
            let shared = context.collection_locks.shared(&spec.collection.name).await;
            bulk::check_no_other_job(job, &spec.collection.name).await?;
            Consumer::Upsert(shared)
        }
    };
    let lookups = match &consumer {
        Consumer::Bulk(_) if bulk::needs_lookups(job, seen_before) => incremental::Lookups::All,
        Consumer::Bulk(_) => incremental::Lookups::ProbeFirst,
        Consumer::Upsert(_) => incremental::Lookups::Policy,
    };
    let read_job = ReadJob {
        reader,
        resume: resume.clone(),
        schema,
        batch_rows: pipeline.batch_rows,
        pipeline: pipeline.name.clone(),
        path: path.to_owned(),
        file_hash: identity.hash.clone(),
        cancel: context.cancel.clone(),
        rejections: Default::default(),
    };

    let (embedded_sender, mut embedded_receiver) = mpsc::channel::<EmbeddedBatch>(CHANNEL_DEPTH);
    let (row_sender, row_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
    let embed_stage = tokio::spawn(
        embed_stage(context.embed_queue.clone(), Arc::clone(&context.telemetry), pipeline.name.clone(), row_receiver, embedded_sender)
            .in_current_span(),
    );
    let read_stage = if pipeline.id_field.is_some() || lookups != incremental::Lookups::Policy {
        let (read_sender, read_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
        let stage = incremental::spawn(job, spec.clone(), lookups, read_receiver, row_sender);
        (read::spawn(read_job, read_sender), Some(stage))
    } else {
        (read::spawn(read_job, row_sender), None)
    };

    let mut commit_result = Ok(());
    while let Some(embedded) = embedded_receiver.recv().await {
        commit_result = match &mut consumer {
            Consumer::Upsert(_) => commit_batch(job, &spec, embedded, &mut progress, &tracked).await,
            Consumer::Bulk(stage) => stage.take(job, embedded, &mut progress, &tracked).await,
        };
        if commit_result.is_err() {
            break;
        }
    }
    drop(embedded_receiver); // stops the earlier stages if the commit stage gave up
    let ended = join_stages(embed_stage, read_stage, commit_result).await.and_then(|read_end| {
        if read_end == ReadEnd::Interrupted {
            return Err(ImportError::Interrupted { path: path.display().to_string() });
        }
        identity.check_unchanged(source)
    });
    match (consumer, ended) {
        (Consumer::Bulk(stage), Err(error)) => {
            stage.abandon(job).await;
            return Err(error);
        }
        (_, Err(error)) => return Err(error),
        (Consumer::Bulk(stage), Ok(())) => {
            let counts = stage.finish(job, &mut progress, &tracked).await?;
            progress.committed_all();
            return Ok((progress, counts.upserted_rows() > 0));
        }
        (Consumer::Upsert(_), Ok(())) => {}
    }
    progress.committed_all();
    Ok((progress, true))
}

/// Where the embedded batches of a file go.
enum Consumer<'a> {
    /// Upserted and committed batch by batch, sharing the collection with other such files.
    Upsert(#[allow(dead_code)] bulk::CollectionGuard),
    /// Staged for Milvus's bulk import.
    Bulk(Box<bulk::BulkStage<'a>>),
}

/// The read stage and, when keys are looked up, the incremental stage after it.
type ReadStages = (tokio::task::JoinHandle<Result<ReadEnd, ImportError>>, Option<tokio::task::JoinHandle<Result<(), ImportError>>>);

/// Waits for the stages before the commit stage and returns how reading ended; the first error
/// in data-flow order wins (the commit stage's, then reading's, lookups', embedding's).
async fn join_stages(
    embed_stage: tokio::task::JoinHandle<Result<(), ImportError>>,
    read_stage: ReadStages,
    commit_result: Result<(), ImportError>,
) -> Result<ReadEnd, ImportError> {
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
    Ok(read_end)
}

/// Upserts one batch, then (Milvus acknowledged) writes its dead letters and commits its delta
/// with the letters' committed length, holding the pipeline's dead-letter writer in between.
async fn commit_batch(
    job: &FileJob<'_>,
    spec: &CollectionSpec,
    embedded: EmbeddedBatch,
    progress: &mut Progress,
    tracked: &InFlight,
) -> Result<(), ImportError> {
    let FileJob { context, pipeline, path, source, identity, .. } = *job;
    let EmbeddedBatch { batch, vectors } = embedded;
    let started = std::time::Instant::now();
    let imported = if batch.rows.is_empty() { 0 } else { context.sink.upsert(spec, &batch.rows, &vectors).await? };
    if !batch.rows.is_empty() {
        context.telemetry.upserted(&pipeline.name, started.elapsed());
    }
    crate::failpoint::hit_for("after_upsert", &path.display().to_string());
    identity.check_unchanged(source)?;
    let counts =
        BatchCounts { imported, rejected: batch.dead_letters.len() as u64, unchanged: batch.unchanged, superseded: batch.superseded };
    let causes: Vec<RejectCause> = batch.dead_letters.iter().map(|letter| letter.cause).collect();
    let (ledger, writer) = (context.ledger.clone(), context.dead_letters.writer(&pipeline.name));
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    let (from, to, letters) = (batch.from, batch.to.clone(), batch.dead_letters);
    tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
        if letters.is_empty() {
            return Ok(ledger.commit(&name, &hash, &from, &to, counts, None)?);
        }
        let mut writer = writer.lock().expect("dead-letter writer lock");
        let mark = writer.append(&letters)?;
        let committed = ledger.commit(&name, &hash, &from, &to, counts, Some(mark));
        if committed.is_err() {
            writer.uncommitted();
        }
        Ok(committed?)
    })
    .await
    .map_err(|error| ImportError::Internal(format!("commit task: {error}")))??;
    crate::failpoint::hit_for("after_commit", &path.display().to_string());
    context.telemetry.rejected(&pipeline.name, causes);
    progress.advance(counts, batch.to.units());
    tracked.committed(counts, batch.to.units());
    Ok(())
}

async fn embed_stage(
    queue: EmbedQueue,
    telemetry: Arc<Telemetry>,
    pipeline: String,
    mut batches: mpsc::Receiver<RowBatch>,
    output: mpsc::Sender<EmbeddedBatch>,
) -> Result<(), ImportError> {
    while let Some(mut batch) = batches.recv().await {
        let started = std::time::Instant::now();
        let texts = batch.rows.iter().filter(|row| row.vector.is_none()).count();
        let vectors = vectors_for(&queue, &mut batch.rows).await?;
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
async fn vectors_for(queue: &EmbedQueue, rows: &mut [Row]) -> Result<Vec<Vec<f32>>, ImportError> {
    let texts: Vec<String> = rows.iter().filter(|row| row.vector.is_none()).map(|row| row.text.clone()).collect();
    let mut embedded = if texts.is_empty() { Vec::new() } else { queue.embed(texts).await? }.into_iter();
    rows.iter_mut()
        .map(|row| {
            row.vector.take().or_else(|| embedded.next()).ok_or_else(|| ImportError::Internal("embedder returned too few vectors".into()))
        })
        .collect()
}

/// BLAKE3 of everything `reader` yields, and its number of newline bytes.
fn hash_and_count_lines(reader: impl std::io::Read) -> std::io::Result<(String, u64)> {
    let mut counted = NewlineCounter { inner: reader, lines: 0 };
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(&mut counted)?;
    Ok((hasher.finalize().to_hex().to_string(), counted.lines))
}

/// A reader that counts the newline bytes passing through it.
struct NewlineCounter<R> {
    inner: R,
    lines: u64,
}

impl<R: std::io::Read> std::io::Read for NewlineCounter<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.lines += buffer[..read].iter().filter(|&&byte| byte == b'\n').count() as u64;
        Ok(read)
    }
}

/// Runs blocking ledger work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, LedgerError> + Send + 'static) -> Result<T, ImportError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ImportError::Internal(format!("ledger task: {error}")))?
        .map_err(ImportError::from)
}

impl FileIdentity {
    /// Hashes the file (streamed through its descriptor, on a blocking thread) and notes its
    /// inode, size, modification and change times.
    async fn of(source: &Source) -> Result<Self, ReadError> {
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let display = source.name().display().to_string();
            let io_error = |error| ReadError::Io { path: display.clone(), source: error };
            let metadata = source.metadata().map_err(io_error)?;
            let (hash, lines) = hash_and_count_lines(source.open().map_err(io_error)?).map_err(io_error)?;
            let identity = Self {
                hash,
                lines,
                size: metadata.len(),
                modified: metadata.modified().ok(),
                changed: (metadata.ctime(), metadata.ctime_nsec()),
                inode: (metadata.dev(), metadata.ino()),
            };
            identity.check_unchanged(&source).map_err(|_| ReadError::Io {
                path: display.clone(),
                source: std::io::Error::other("the file changed while it was being hashed"),
            })?;
            Ok(identity)
        })
        .await
        .map_err(|error| ReadError::Io { path: String::new(), source: std::io::Error::other(error.to_string()) })?
    }

    /// Fails when the content's size, modification or change time differ from when it was hashed
    /// (written in place), or when its name no longer leads to the same inode (replaced, removed):
    /// a file moved or deleted afterwards must be the one imported.
    fn check_unchanged(&self, source: &Source) -> Result<(), ImportError> {
        let changed = || ImportError::Changed { path: source.name().display().to_string() };
        let metadata = source.metadata().map_err(|_| changed())?;
        if metadata.len() != self.size
            || metadata.modified().ok() != self.modified
            || (metadata.ctime(), metadata.ctime_nsec()) != self.changed
        {
            return Err(changed());
        }
        let named = std::fs::symlink_metadata(source.name())
            .and_then(|metadata| if metadata.is_symlink() { std::fs::metadata(source.name()) } else { Ok(metadata) })
            .map_err(|_| changed())?;
        if (named.dev(), named.ino()) != self.inode {
            return Err(changed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_hash_is_blake3_of_the_content_and_newlines_are_counted_on_the_way() {
        let content = b"id,text\n1,a\n2,b\n3,c".repeat(100_000);
        let (hash, lines) = hash_and_count_lines(&content[..]).unwrap();
        assert_eq!(hash, blake3::hash(&content).to_hex().to_string());
        assert_eq!(lines, 300_000);
    }
}
