//! The bulk path of one file: rows staged as Parquet and inserted by Milvus's bulk import,
//! exactly once although import only inserts.
//!
//! ```text
//!  read + map ─► look up keys ─► embed ─► split ─┬─ key stored in Milvus ──► upsert now
//!                (every batch)                   ├─ key new ──────────────► staged Parquet ─► import task(s)
//!                                                ├─ key staged earlier ───► stash: upsert after the job
//!                                                └─ dead letters ─────────► stash: written with the job's commit
//! ```
//! Rows are read, mapped and embedded as on the upsert path; only rows whose keys are new to the
//! collection are staged (with no `id_field` on a file never seen before, keys are new by
//! construction and nothing is looked up). Nothing is committed per batch: the job is recorded
//! in the ledger before its first submission ([`crate::ledger::BulkJob`]), every task id as soon
//! as Milvus returns it, and one commit moves the file from where staging began to its end after
//! the tasks completed, the deferred rows were upserted and the rows are visible to queries.
//!
//! After a crash the recorded job is followed, never staged or submitted again; a submission cut
//! off by the crash is found among Milvus's tasks by its file. A failed task (none of its rows
//! visible) is submitted again up to `bulk_import.max_submissions` times, then the file fails
//! with Milvus's reason and the staged files are kept with a `FAILED.txt` saying why. A crash or
//! shutdown while staging throws the staging away; the next attempt stages again (the upserts it
//! made are idempotent).
//!
//! While a file is on the bulk path no other import writes to its collection in this process
//! ([`CollectionLocks`]): a row upserted by another file meanwhile could be inserted a second
//! time by the job.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{blocking, EmbeddedBatch, FileJob, ImportError};
use crate::bulk::store::StagingStore;
use crate::bulk::StagingWriter;
use crate::dead_letter::DeadLetter;
use crate::fault::Fault;
use crate::format::Checkpoint;
use crate::ledger::{BatchCounts, BulkCounts, BulkJob, StagedTask, StashKind};
use crate::mapping::Row;
use crate::progress::{BulkTimes, Progress};
use crate::settings::BulkImportSettings;
use crate::sink::{CollectionSpec, ImportApi, ImportProgress, MilvusSink};
use crate::telemetry::{BulkProgress, InFlight};

/// How long completed tasks' rows may take to become visible before the attempt stops as
/// transient (the job stays recorded; the next attempt waits again). Milvus 2.3.5 took 11–19 s in
/// five `vecdrop bench` runs.
const VISIBILITY_LIMIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Stash entries read or written per round.
const STASH_PAGE: usize = 1024;

/// Per collection, a lock that bulk jobs hold exclusively and upserting files share (module doc).
#[derive(Clone, Default)]
pub struct CollectionLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>>,
}

/// A held [`CollectionLocks`] lock.
pub(super) enum CollectionGuard {
    /// An upserting file's.
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    /// A bulk job's.
    Exclusive(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

impl CollectionLocks {
    fn lock_of(&self, collection: &str) -> Arc<tokio::sync::RwLock<()>> {
        Arc::clone(self.locks.lock().expect("collection locks").entry(collection.to_owned()).or_default())
    }

    /// Shares `collection` with other upserting files (waits while a bulk job holds it).
    pub(super) async fn shared(&self, collection: &str) -> CollectionGuard {
        CollectionGuard::Shared(self.lock_of(collection).read_owned().await)
    }

    /// Holds `collection` alone (waits for the files writing to it).
    pub(super) async fn exclusive(&self, collection: &str) -> CollectionGuard {
        CollectionGuard::Exclusive(self.lock_of(collection).write_owned().await)
    }
}

/// Whether the file at hand takes the bulk path: the pipeline asks for it, the file is big enough
/// (`estimated_rows`) and the server has an import API. Milvus Lite has none: the pipeline then
/// upserts, and says so once.
pub(super) async fn chosen<'a>(job: &FileJob<'a>, estimated_rows: u64) -> Result<Option<&'a BulkImportSettings>, ImportError> {
    let Some(bulk) = job.pipeline.bulk_import.as_ref() else { return Ok(None) };
    if estimated_rows < bulk.min_rows {
        return Ok(None);
    }
    if let ImportApi::Unsupported { version } = job.context.sink.import_api().await? {
        let first = job.context.bulk_fallbacks.lock().expect("bulk fallbacks").insert(job.pipeline.name.clone());
        if first {
            tracing::warn!(
                pipeline = %job.pipeline.name,
                server = %version,
                "bulk_import: this Milvus has no bulk import (Milvus Lite); the pipeline's big files are upserted instead"
            );
        }
        return Ok(None);
    }
    Ok(Some(bulk))
}

/// Fails with [`ImportError::CollectionBusy`] while another file's bulk job into `collection` is
/// recorded in the ledger and not finished (after a restart, or while that file waits for a retry):
/// the in-process lock only covers jobs being followed right now.
pub(super) async fn check_no_other_job(job: &FileJob<'_>, collection: &str) -> Result<(), ImportError> {
    let (ledger, owned) = (job.context.ledger.clone(), collection.to_owned());
    let open = blocking(move || ledger.bulk_jobs_into(&owned)).await?;
    let other = open.iter().find(|open| !(open.pipeline == job.pipeline.name && open.hash == job.identity.hash));
    match other {
        Some(other) => Err(ImportError::CollectionBusy {
            path: job.path.display().to_string(),
            collection: collection.to_owned(),
            other: format!("{} (pipeline {}, staging {})", &other.hash[..16.min(other.hash.len())], other.pipeline, other.dir.display()),
        }),
        None => Ok(()),
    }
}

/// Whether the bulk path must look up which keys the collection holds: always with an
/// `id_field` or `--force`; with derived keys only when the file was seen before (an earlier
/// attempt may have written some of its rows).
pub(super) fn needs_lookups(job: &FileJob<'_>, seen_before: bool) -> bool {
    job.pipeline.id_field.is_some() || job.force || seen_before
}

/// The staging of one file, batch by batch (module doc).
pub(super) struct BulkStage<'a> {
    settings: &'a BulkImportSettings,
    spec: CollectionSpec,
    writer: Option<StagingWriter>,
    store: StagingStore,
    /// Where the writer writes (the staging folder, or a bucket job's local spool).
    dir: PathBuf,
    /// The job's object prefix in a bucket.
    object_prefix: Option<String>,
    /// Hashes of the keys staged so far, when keys can repeat (`id_field`): a second row with a
    /// staged key waits for the job. A hash collision only sends a row that way too (still exact).
    staged_keys: Option<HashSet<u64>>,
    hasher: std::hash::RandomState,
    counts: BulkCounts,
    next_deferred: u64,
    next_letter: u64,
    from: Checkpoint,
    to: Checkpoint,
    _exclusive: CollectionGuard,
}

impl<'a> BulkStage<'a> {
    /// Starts staging `job`'s file from `resume` into a fresh job folder; anything stashed by an
    /// earlier staging of it that never got submitted is dropped first.
    pub(super) async fn start(
        job: &FileJob<'_>,
        settings: &'a BulkImportSettings,
        spec: CollectionSpec,
        resume: Checkpoint,
        exclusive: CollectionGuard,
    ) -> Result<Self, ImportError> {
        let FileJob { context, pipeline, identity, .. } = *job;
        clear_job(job).await?;
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let job_name = format!("{}-{stamp}", &identity.hash[..16]);
        let store = open_store(job, settings)?;
        match store.remove_stale(&context.settings.state.dir, &pipeline.name, &identity.hash[..16]).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "bulk import: removed the remains of earlier stagings of this file"),
            Err(error) => tracing::warn!(%error, "bulk import: cannot remove the remains of earlier stagings of this file"),
        }
        let dir = store.writer_dir(&context.settings.state.dir, &pipeline.name, &job_name);
        let object_prefix = store.job_prefix(&pipeline.name, &job_name);
        let key_type = context.sink.key_type(&spec);
        let writer = StagingWriter::create(&dir, &spec, key_type).map_err(|error| staging_failed(job, error))?;
        tracing::info!(staging = %store.describe(&dir, object_prefix.as_deref()), "bulk import: staging the file's new rows");
        Ok(Self {
            settings,
            staged_keys: pipeline.id_field.is_some().then(HashSet::new),
            hasher: std::hash::RandomState::new(),
            spec,
            writer: Some(writer),
            store,
            dir,
            object_prefix,
            counts: BulkCounts::default(),
            next_deferred: 0,
            next_letter: 0,
            from: resume.clone(),
            to: resume,
            _exclusive: exclusive,
        })
    }

    /// Takes one embedded batch: rows with stored keys are upserted now, new ones staged, repeated
    /// ones and dead letters stashed for the job's commit.
    pub(super) async fn take(
        &mut self,
        job: &FileJob<'_>,
        embedded: EmbeddedBatch,
        progress: &mut Progress,
        tracked: &InFlight,
    ) -> Result<(), ImportError> {
        let FileJob { context, pipeline, .. } = *job;
        let EmbeddedBatch { mut batch, vectors } = embedded;
        let stored = batch.stored_keys.take().unwrap_or_default();
        let (mut upsert, mut stage, mut defer) = (Split::default(), Split::default(), Split::default());
        for (row, vector) in batch.rows.into_iter().zip(vectors) {
            if stored.contains(&row.primary_key) {
                upsert.push(row, vector);
            } else if let Some(staged) = &mut self.staged_keys {
                if staged.insert(self.hasher.hash_one(&row.primary_key)) {
                    stage.push(row, vector);
                } else {
                    defer.push(row, vector);
                }
            } else {
                stage.push(row, vector);
            }
        }
        if !upsert.rows.is_empty() {
            self.counts.upserted += context.sink.upsert(&self.spec, &upsert.rows, &upsert.vectors).await?;
        }
        if !stage.rows.is_empty() {
            let writer = self.writer.as_mut().expect("staging until finish");
            writer.write(&stage.rows, &stage.vectors).map_err(|error| staging_failed(job, error))?;
            self.counts.staged += stage.rows.len() as u64;
        }
        if !defer.rows.is_empty() {
            let items: Vec<Vec<u8>> = defer
                .rows
                .into_iter()
                .zip(defer.vectors)
                .map(|(row, vector)| serde_json::to_vec(&DeferredRow { row, vector }).expect("rows serialise"))
                .collect();
            self.stash(job, StashKind::Deferred, items).await?;
        }
        let causes: Vec<_> = batch.dead_letters.iter().map(|letter| letter.cause).collect();
        if !batch.dead_letters.is_empty() {
            let items: Vec<Vec<u8>> =
                batch.dead_letters.iter().map(|letter| serde_json::to_vec(letter).expect("letters serialise")).collect();
            self.stash(job, StashKind::Letter, items).await?;
        }
        self.counts.rejected += causes.len() as u64;
        self.counts.unchanged += batch.unchanged;
        self.counts.superseded += batch.superseded;
        self.to = batch.to.clone();
        context.telemetry.rejected(&pipeline.name, causes);
        progress.skip_to(batch.to.units());
        progress.bulk_phase(&format!("staging: {} rows staged, {} upserted", self.counts.staged, self.counts.upserted));
        tracked.committed(BatchCounts::default(), batch.to.units());
        tracked.bulk(BulkProgress { phase: "staging".into(), rows_staged: self.counts.staged, rows_read_by_milvus: 0, tasks: Vec::new() });
        Ok(())
    }

    async fn stash(&mut self, job: &FileJob<'_>, kind: StashKind, items: Vec<Vec<u8>>) -> Result<(), ImportError> {
        let next = match kind {
            StashKind::Deferred => &mut self.next_deferred,
            StashKind::Letter => &mut self.next_letter,
        };
        let first = *next;
        *next += items.len() as u64;
        if kind == StashKind::Deferred {
            self.counts.deferred += items.len() as u64;
        }
        let (ledger, name, hash) = (job.context.ledger.clone(), job.pipeline.name.clone(), job.identity.hash.clone());
        blocking(move || ledger.stash(&name, &hash, kind, first, &items)).await
    }

    /// Staging is over (every record read): records the job, submits its files, follows the
    /// tasks and commits the file (see [`follow`]).
    pub(super) async fn finish(
        mut self,
        job: &FileJob<'_>,
        progress: &mut Progress,
        tracked: &InFlight,
    ) -> Result<BulkCounts, ImportError> {
        let record = match self.job_record(job).await {
            Ok(record) => record,
            Err(error) => {
                self.abandon(job).await;
                return Err(error);
            }
        };
        progress.bulk_times(BulkTimes { staged_at: progress.elapsed_seconds(), ..BulkTimes::default() });
        crate::failpoint::hit_for("bulk_staged", &job.path.display().to_string());
        save(job, &record).await?;
        follow(job, self.settings, &self.store, &self.spec, record, progress, tracked).await
    }

    /// Closes the staged files, publishes them where Milvus reads them and builds the job's
    /// record (not yet written).
    async fn job_record(&mut self, job: &FileJob<'_>) -> Result<BulkJob, ImportError> {
        let writer = self.writer.take().expect("staging until finish");
        let staged = writer.finish().map_err(|error| staging_failed(job, error))?;
        let paths = self.store.publish(&staged.files, self.object_prefix.as_deref()).await.map_err(|error| store_failed(job, error))?;
        Ok(BulkJob {
            pipeline: job.pipeline.name.clone(),
            hash: job.identity.hash.clone(),
            dir: self.dir.clone(),
            object_prefix: self.object_prefix.clone(),
            collection: self.spec.collection.name.clone(),
            tasks: tasks_of(&paths, &staged.samples),
            from: self.from.clone(),
            to: self.to.clone(),
            counts: self.counts,
        })
    }

    /// Staging stopped before its end (shutdown, an error): the staged files and stash go; the next
    /// attempt stages again.
    pub(super) async fn abandon(mut self, job: &FileJob<'_>) {
        drop(self.writer.take());
        if let Err(error) = clear_job(job).await {
            tracing::error!(%error, "cannot clear an abandoned staging from the ledger");
        }
        remove_staging(&self.store, &self.dir, self.object_prefix.as_deref()).await;
    }
}

/// Rows and vectors going one way.
#[derive(Default)]
struct Split {
    rows: Vec<Row>,
    vectors: Vec<Vec<f32>>,
}

impl Split {
    fn push(&mut self, row: Row, vector: Vec<f32>) {
        self.rows.push(row);
        self.vectors.push(vector);
    }
}

/// A row stashed until its job completes.
#[derive(serde::Serialize, serde::Deserialize)]
struct DeferredRow {
    row: Row,
    vector: Vec<f32>,
}

/// One task per staged file (`paths` as Milvus reads them), each with its sampled keys.
fn tasks_of(paths: &[String], samples: &[Vec<String>]) -> Vec<StagedTask> {
    let samples_of = |index: usize| samples.get(index).cloned().unwrap_or_default();
    paths
        .iter()
        .enumerate()
        .map(|(index, file)| StagedTask {
            file: file.clone(),
            rows: 0,
            task: None,
            submissions: 0,
            submitting: false,
            done: false,
            samples: samples_of(index),
            failed_tasks: Vec::new(),
            known_before: Vec::new(),
        })
        .collect()
}

fn staging_failed(job: &FileJob<'_>, error: crate::bulk::StagingError) -> ImportError {
    let fault = match error {
        crate::bulk::StagingError::Io { .. } => Fault::Transient,
        crate::bulk::StagingError::Encode { .. } | crate::bulk::StagingError::Key(_) => Fault::Bug,
    };
    ImportError::Staging { path: job.path.display().to_string(), message: error.to_string(), fault }
}

fn store_failed(job: &FileJob<'_>, error: crate::bulk::store::StoreError) -> ImportError {
    let fault = match error {
        crate::bulk::store::StoreError::Config { .. } => Fault::Config,
        crate::bulk::store::StoreError::Object { .. } | crate::bulk::store::StoreError::Io { .. } => Fault::Transient,
    };
    ImportError::Staging { path: job.path.display().to_string(), message: error.to_string(), fault }
}

fn open_store(job: &FileJob<'_>, settings: &BulkImportSettings) -> Result<StagingStore, ImportError> {
    StagingStore::open(&settings.staging).map_err(|error| store_failed(job, error))
}

/// Removes a job's staging (folder, spool, objects); a failure is logged, not fatal: the rows are
/// committed or the staging is abandoned either way.
async fn remove_staging(store: &StagingStore, dir: &Path, object_prefix: Option<&str>) {
    if let Err(error) = store.remove(dir, object_prefix).await {
        tracing::warn!(staging = %store.describe(dir, object_prefix), %error, "cannot remove the staging");
    }
}

/// Resumes the recorded job of `job`'s file after a restart, if there is one that starts at
/// `resume`: its counts once it is committed. A record that starts elsewhere is left over from a
/// job whose commit landed: it is cleared.
pub(super) async fn resume_recorded(
    job: &FileJob<'_>,
    resume: &Checkpoint,
    spec: &CollectionSpec,
    progress: &mut Progress,
    tracked: &InFlight,
) -> Result<Option<BulkCounts>, ImportError> {
    let (ledger, name, hash) = (job.context.ledger.clone(), job.pipeline.name.clone(), job.identity.hash.clone());
    let Some(record) = blocking(move || ledger.bulk_job(&name, &hash)).await? else { return Ok(None) };
    if &record.from != resume {
        clear_job(job).await?;
        match job.pipeline.bulk_import.as_ref().map(|settings| open_store(job, settings)) {
            Some(Ok(store)) => remove_staging(&store, &record.dir, record.object_prefix.as_deref()).await,
            _ => {
                let _ = std::fs::remove_dir_all(&record.dir);
            }
        }
        return Ok(None);
    }
    let Some(settings) = job.pipeline.bulk_import.as_ref() else {
        return Err(ImportError::Schema {
            path: job.path.display().to_string(),
            message: format!(
                "a bulk import of this file is recorded ({}) but the pipeline no longer has bulk_import: restore it so the job can finish",
                record.dir.display()
            ),
        });
    };
    tracing::info!(staging = %record.dir.display(), tasks = record.tasks.len(), "bulk import: following the job recorded before the restart");
    let _exclusive = job.context.collection_locks.exclusive(&spec.collection.name).await;
    let store = open_store(job, settings)?;
    follow(job, settings, &store, spec, record, progress, tracked).await.map(Some)
}

/// Submits what is not submitted, polls the tasks until all completed (submitting failed ones
/// again), waits until their rows are visible, then completes the job ([`complete`]). A task that
/// fails `max_submissions` times fails the file — but only once every other task of the job is
/// over and the rows of the completed ones are visible, so that nothing of the job is still
/// landing when the file is tried again.
async fn follow(
    job: &FileJob<'_>,
    settings: &BulkImportSettings,
    store: &StagingStore,
    spec: &CollectionSpec,
    mut record: BulkJob,
    progress: &mut Progress,
    tracked: &InFlight,
) -> Result<BulkCounts, ImportError> {
    let path = job.path.display().to_string();
    let collection = spec.collection.name.as_str();
    let mut gave_up: Option<String> = None;
    loop {
        for index in 0..record.tasks.len() {
            if record.tasks[index].task.is_none() && !record.tasks[index].done && gave_up.is_none() {
                if let Err(refusal) = submit(job, collection, &mut record, index).await? {
                    gave_up = note_failure(job, settings, &mut record, index, None, refusal).await?;
                }
            }
        }
        let mut running = false;
        let mut read_by_milvus = 0;
        for index in 0..record.tasks.len() {
            let Some(task) = record.tasks[index].task.clone().filter(|_| !record.tasks[index].done) else { continue };
            match task_state(job, spec, &record.tasks[index], &task).await? {
                ImportProgress::Running { rows } => {
                    running = true;
                    read_by_milvus += rows;
                }
                ImportProgress::Done { rows } => {
                    record.tasks[index].done = true;
                    record.tasks[index].rows = rows;
                    save(job, &record).await?;
                }
                ImportProgress::Failed { reason } => {
                    if let Some(reason) = note_failure(job, settings, &mut record, index, Some(task), reason).await? {
                        gave_up.get_or_insert(reason);
                    } else {
                        running = true;
                    }
                }
            }
        }
        let tasks: Vec<String> = record.tasks.iter().filter_map(|task| task.task.clone()).collect();
        let staged = record.counts.staged;
        tracked.bulk(BulkProgress { phase: "importing".into(), rows_staged: staged, rows_read_by_milvus: read_by_milvus, tasks });
        progress.bulk_phase(&format!("importing: {} of {staged} rows read by Milvus", read_by_milvus + done_rows(&record)));
        if !running {
            break;
        }
        if job.context.cancel.is_cancelled() {
            return Err(ImportError::Interrupted { path });
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = job.context.cancel.cancelled() => return Err(ImportError::Interrupted { path }),
        }
    }
    let tasks_completed_at = progress.elapsed_seconds();
    if let Some(reason) = gave_up {
        // The completed tasks' rows are in: let them become visible before the file fails, so a
        // new attempt's lookups find them instead of staging them again.
        wait_until_visible(job, settings, spec, &record, true).await?;
        return Err(failed(job, store, &record, &reason).await);
    }
    tracing::info!(
        seconds = format!("{tasks_completed_at:.1}"),
        "bulk import: tasks completed; waiting for the rows to be visible to queries"
    );
    wait_until_visible(job, settings, spec, &record, false).await?;
    let visible_at = progress.elapsed_seconds();
    progress.bulk_completed(tasks_completed_at, visible_at);
    complete(job, store, spec, record, progress, tracked).await
}

/// Task `index` failed (`task`) or its submission was refused: clears it for another submission
/// and returns `None`, or — `max_submissions` used up — returns the reason the file fails with.
async fn note_failure(
    job: &FileJob<'_>,
    settings: &BulkImportSettings,
    record: &mut BulkJob,
    index: usize,
    task: Option<String>,
    reason: String,
) -> Result<Option<String>, ImportError> {
    let staged = &mut record.tasks[index];
    staged.failed_tasks.extend(task.clone());
    staged.task = None;
    staged.submitting = false;
    let give_up = staged.submissions >= settings.max_submissions;
    if give_up {
        tracing::warn!(file = %staged.file, %reason, "bulk import: the file's import failed as often as max_submissions allows");
    } else {
        tracing::warn!(task = task.as_deref().unwrap_or("(refused)"), file = %staged.file, %reason, "bulk import: a task failed (none of its rows are visible); submitting the file again");
        job.context.telemetry.bulk_job(&job.pipeline.name, "resubmitted", 0);
    }
    save(job, record).await?;
    Ok(give_up.then_some(reason))
}

/// Where a recorded task stands. Milvus forgets finished tasks after its task retention time: a
/// task it refuses to describe is judged by its rows — all
/// sampled keys visible: done; otherwise failed (submitted again).
async fn task_state(job: &FileJob<'_>, spec: &CollectionSpec, staged: &StagedTask, task: &str) -> Result<ImportProgress, ImportError> {
    match job.context.sink.import_state(&spec.collection.name, task).await {
        Ok(progress) => Ok(progress),
        Err(error) if MilvusSink::is_refusal(&error) => {
            let found = job.context.sink.texts_by_key(spec, &staged.samples).await?;
            let wanted = staged.samples.iter().collect::<HashSet<_>>().len();
            tracing::warn!(%task, %error, visible = found.len(), sampled = wanted, "bulk import: Milvus no longer describes the task; judging it by its rows");
            Ok(if found.len() >= wanted {
                ImportProgress::Done { rows: 0 }
            } else {
                ImportProgress::Failed { reason: format!("Milvus no longer knows task {task} ({error}) and its rows are not visible") }
            })
        }
        Err(error) => Err(error.into()),
    }
}

fn done_rows(record: &BulkJob) -> u64 {
    record.tasks.iter().filter(|task| task.done).map(|task| task.rows).sum()
}

/// Forgets the file's bulk job in the ledger (the job ended, or its staging is thrown away).
async fn clear_job(job: &FileJob<'_>) -> Result<(), ImportError> {
    let (ledger, name, hash) = (job.context.ledger.clone(), job.pipeline.name.clone(), job.identity.hash.clone());
    blocking(move || ledger.clear_bulk_job(&name, &hash)).await
}

async fn save(job: &FileJob<'_>, record: &BulkJob) -> Result<(), ImportError> {
    let (ledger, record) = (job.context.ledger.clone(), record.clone());
    blocking(move || ledger.put_bulk_job(&record)).await
}

/// Submits task `index` of `record` — once, never retried — or, when an earlier submission's
/// outcome is unknown (a crash, a lost answer), adopts the task Milvus created for its file.
/// `Ok(Err(reason))`: Milvus refused the file (no task exists). A submission whose answer is lost
/// returns the error with the task still marked `submitting`: the next attempt looks first.
async fn submit(job: &FileJob<'_>, collection: &str, record: &mut BulkJob, index: usize) -> Result<Result<(), String>, ImportError> {
    let file = record.tasks[index].file.clone();
    if record.tasks[index].submitting {
        if let Some(found) = adoptable(job, collection, &record.tasks[index]).await? {
            tracing::info!(task = %found, %file, "bulk import: found the task submitted before the restart");
            record.tasks[index].task = Some(found);
            record.tasks[index].submitting = false;
            save(job, record).await?;
            return Ok(Ok(()));
        }
    }
    // The tasks Milvus knows now: after a crash, any other task of this collection is a
    // candidate for this submission (its file may not be described yet).
    record.tasks[index].known_before = job.context.sink.listed_import_ids(collection).await?;
    record.tasks[index].submitting = true;
    record.tasks[index].submissions += 1;
    save(job, record).await?;
    crate::failpoint::hit_for("bulk_submitting", &job.path.display().to_string());
    let task = match job.context.sink.submit_import(collection, &file).await {
        Ok(task) => task,
        Err(error) if MilvusSink::is_refusal(&error) => {
            record.tasks[index].submitting = false;
            return Ok(Err(format!("Milvus refused the import: {error}")));
        }
        Err(error) => return Err(error.into()),
    };
    crate::failpoint::hit_for("bulk_before_task_recorded", &job.path.display().to_string());
    tracing::info!(%task, %file, rows_staged = record.counts.staged, "bulk import: submitted");
    record.tasks[index].task = Some(task);
    record.tasks[index].submitting = false;
    save(job, record).await?;
    crate::failpoint::hit_for("bulk_submitted", &job.path.display().to_string());
    Ok(Ok(()))
}

/// The task an unknown-outcome submission of `staged` created, if Milvus lists one: the newest
/// task naming its file, else the newest task that was not there before the submission and names
/// no file yet (a REST job describes its files only once it runs); never a task of this file
/// that failed before.
async fn adoptable(job: &FileJob<'_>, collection: &str, staged: &StagedTask) -> Result<Option<String>, ImportError> {
    let listed = job.context.sink.listed_imports(collection).await?;
    let newest = |candidates: Vec<&crate::sink::ListedImport>| {
        candidates
            .into_iter()
            .max_by(|left, right| (left.id.len(), &left.id).cmp(&(right.id.len(), &right.id)))
            .map(|listed| listed.id.clone())
    };
    let fresh = |listed: &&crate::sink::ListedImport| !staged.failed_tasks.contains(&listed.id);
    let naming_it = newest(listed.iter().filter(fresh).filter(|listed| listed.files.contains(&staged.file)).collect());
    if naming_it.is_some() {
        return Ok(naming_it);
    }
    Ok(newest(listed.iter().filter(fresh).filter(|listed| listed.files.is_empty() && !staged.known_before.contains(&listed.id)).collect()))
}

/// Milvus's query nodes load imported segments on their next check (11–19 s after the task
/// completed on 2.3.5): waits until queries find every sampled key, so that the file is marked
/// imported only when its rows are searchable and a later version's lookups see them.
async fn wait_until_visible(
    job: &FileJob<'_>,
    settings: &BulkImportSettings,
    spec: &CollectionSpec,
    record: &BulkJob,
    only_done: bool,
) -> Result<(), ImportError> {
    let samples: Vec<String> = record
        .tasks
        .iter()
        .filter(|task| task.done || !only_done)
        .flat_map(|task| task.samples.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if samples.is_empty() {
        return Ok(());
    }
    let path = job.path.display().to_string();
    let started = std::time::Instant::now();
    loop {
        let found = job.context.sink.texts_by_key(spec, &samples).await?;
        if found.len() >= samples.len() {
            return Ok(());
        }
        if started.elapsed() >= VISIBILITY_LIMIT {
            return Err(ImportError::NotVisible { path, waited: VISIBILITY_LIMIT });
        }
        tokio::select! {
            () = tokio::time::sleep(settings.poll_interval) => {}
            () = job.context.cancel.cancelled() => return Err(ImportError::Interrupted { path }),
        }
    }
}

/// The tasks completed and their rows are visible: upserts the deferred rows, writes the stashed
/// dead letters and commits the file to the job's end in one ledger commit, then clears the job
/// and removes its staging.
async fn complete(
    job: &FileJob<'_>,
    store: &StagingStore,
    spec: &CollectionSpec,
    record: BulkJob,
    progress: &mut Progress,
    tracked: &InFlight,
) -> Result<BulkCounts, ImportError> {
    let FileJob { context, pipeline, identity, path, .. } = *job;
    tracked.bulk(BulkProgress {
        phase: "completing".into(),
        rows_staged: record.counts.staged,
        rows_read_by_milvus: done_rows(&record),
        tasks: record.tasks.iter().filter_map(|task| task.task.clone()).collect(),
    });
    let mut from = 0;
    loop {
        let (ledger, name, hash) = (context.ledger.clone(), pipeline.name.clone(), identity.hash.clone());
        let page = blocking(move || ledger.stashed(&name, &hash, StashKind::Deferred, from, STASH_PAGE)).await?;
        let Some((last, _)) = page.last() else { break };
        from = last + 1;
        let mut rows = Split::default();
        for (_, bytes) in page {
            let deferred: DeferredRow =
                serde_json::from_slice(&bytes).map_err(|error| ImportError::Internal(format!("a stashed row does not decode: {error}")))?;
            rows.push(deferred.row, deferred.vector);
        }
        for start in (0..rows.rows.len()).step_by(pipeline.batch_rows) {
            let end = (start + pipeline.batch_rows).min(rows.rows.len());
            context.sink.upsert(spec, &rows.rows[start..end], &rows.vectors[start..end]).await?;
        }
    }
    let counts = record.counts;
    let imported = counts.staged + counts.upserted_rows();
    let batch_counts = BatchCounts { imported, rejected: counts.rejected, unchanged: counts.unchanged, superseded: counts.superseded };
    let (ledger, writer) = (context.ledger.clone(), context.dead_letters.writer(&pipeline.name));
    let (name, hash, from_position, to_position) = (pipeline.name.clone(), identity.hash.clone(), record.from.clone(), record.to.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
        let mut mark = None;
        let mut writer_guard = None;
        let mut next = 0;
        loop {
            let page = ledger.stashed(&name, &hash, StashKind::Letter, next, STASH_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            next = last + 1;
            let letters: Vec<DeadLetter> = page
                .iter()
                .map(|(_, bytes)| serde_json::from_slice(bytes))
                .collect::<Result<_, _>>()
                .map_err(|error| ImportError::Internal(format!("a stashed dead letter does not decode: {error}")))?;
            let guard = writer_guard.get_or_insert_with(|| writer.lock().expect("dead-letter writer lock"));
            mark = Some(guard.append(&letters)?);
        }
        let committed = ledger.commit(&name, &hash, &from_position, &to_position, batch_counts, mark);
        if let (Err(_), Some(guard)) = (&committed, writer_guard.as_mut()) {
            guard.uncommitted();
        }
        committed?;
        drop(writer_guard);
        ledger.clear_bulk_job(&name, &hash)?;
        Ok(())
    })
    .await
    .map_err(|error| ImportError::Internal(format!("bulk commit task: {error}")))??;
    crate::failpoint::hit_for("bulk_committed", &path.display().to_string());
    remove_staging(store, &record.dir, record.object_prefix.as_deref()).await;
    context.telemetry.bulk_job(&pipeline.name, "completed", counts.staged);
    tracing::info!(
        rows_staged = counts.staged,
        rows_upserted = counts.upserted_rows(),
        rejected = counts.rejected,
        "bulk import: completed"
    );
    progress.advance(batch_counts, record.to.units());
    tracked.committed(batch_counts, record.to.units());
    Ok(counts)
}

/// A task failed `max_submissions` times: keeps the staged files with a `FAILED.txt` saying why,
/// clears the job (the file's position stays where staging began) and returns the file's error.
async fn failed(job: &FileJob<'_>, store: &StagingStore, record: &BulkJob, reason: &str) -> ImportError {
    let path = job.path.display().to_string();
    let note = format!(
        "Milvus's bulk import of {path} failed: {reason}\nThe staged files are kept for inspection; delete this folder when done.\n"
    );
    let prefix = record.object_prefix.as_deref();
    let staging = store.describe(&record.dir, prefix);
    if let Err(error) = store.keep_with_reason(&record.dir, prefix, &note).await {
        tracing::warn!(%staging, %error, "cannot write FAILED.txt next to the staged files");
    }
    if let Err(error) = clear_job(job).await {
        return error;
    }
    job.context.telemetry.bulk_job(&job.pipeline.name, "failed", 0);
    ImportError::BulkImport { path, reason: reason.to_owned(), staging }
}
