//! `vecdrop run`: the long-lived service.
//!
//! ```text
//!  drop-folder scanner ─┐                    ┌─► worker ─► upsert_file ─┐
//!                       ├─► bounded queue ──►┤   (≤ max_parallel_files,  ├─► group flush ─► finish ─► after_import
//!  cron schedules ──────┘                    └─► worker ─► …  ≤ max_mib_in_flight; one model queue)
//!  status server: /metrics /status /healthz          systemd: READY=1, WATCHDOG=1, STOPPING=1
//! ```
//! A worker is busy while its file is read, embedded and upserted; it is free again once the rows
//! are committed, and the file then waits for its collection's shared flush without holding one,
//! so many small files keep the model and Milvus busy instead of waiting for flushes in turn.
//! Shutdown (SIGTERM/SIGINT): discovery stops, queued files are left for the next start, imports
//! in flight stop reading and commit what they read ([`crate::pipeline::ImportError::Interrupted`]),
//! and the process exits 0 — after `daemon.shutdown_timeout` at the latest (the ledger is always
//! consistent, so an import cut off there simply resumes on the next start).
//!
//! A file whose import stopped is handled by whose fault it was ([`Fault`]): only the file's own
//! fault sends it to `.failed/`. A transient fault (Milvus away, a full disk) or a configuration
//! fault keeps the file where it is and puts its pipeline in backoff ([`gate`]): the file is queued
//! again when the wait is over and resumes from its committed position; the pipeline's other files
//! wait too. A bug stops the pipeline until restart. Other pipelines go on either way.

pub mod after_import;
mod gate;
pub mod http;
mod systemd;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use self::gate::{Gates, Verdict};
use crate::dead_letter;
use crate::discover::watch::{DropFolder, ScanTiming};
use crate::discover::{claims, entry, schedule, watch, FileResult, Origin, ReadyFile};
use crate::fault::{Classify, Fault};
use crate::format::Source;
use crate::pipeline::{upsert_file, FileOutcome, ImportContext, ImportError};
use crate::settings::PipelineSettings;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The status endpoint cannot listen.
    #[error("status.listen {address}: {source}")]
    Listen {
        /// The configured address.
        address: String,
        source: std::io::Error,
    },
    /// `status.token_file` cannot be used, or the address needs a token and has none.
    #[error("status: {0}")]
    StatusAccess(String),
    /// A drop folder cannot be created or watched.
    #[error("drop folders: {0}")]
    Watch(std::io::Error),
    /// A drop folder's `.done/` or `.failed/` is not the daemon's own directory.
    #[error(transparent)]
    DropFolder(after_import::PrepareError),
    /// The scheduler refused a schedule.
    #[error(transparent)]
    Schedule(#[from] schedule::ScheduleError),
}

/// Runs the daemon with `context` until `shutdown` resolves, then stops as described in the
/// module doc.
pub async fn run(context: ImportContext, shutdown: impl std::future::Future<Output = ()>) -> Result<(), DaemonError> {
    let settings = Arc::clone(&context.settings);
    let daemon = &settings.daemon;
    let (queue, mut ready) = mpsc::channel::<ReadyFile>(daemon.queue_capacity);
    context.telemetry.declare_pipelines(settings.pipelines.iter().map(|pipeline| pipeline.name.as_str()));
    let state = Arc::new(http::DaemonState::new(context.clone()));
    let server = http::serve(&settings.status.listen, Arc::clone(&state)).await?;

    let folders: Vec<DropFolder> = settings
        .pipelines
        .iter()
        .flat_map(|pipeline| pipeline.watch.iter().map(|dir| DropFolder { pipeline: pipeline.name.clone(), dir: dir.clone() }))
        .collect();
    let discovery = context.cancel.child_token();
    for folder in &folders {
        after_import::prepare(&folder.dir).map_err(DaemonError::DropFolder)?;
    }
    let claims = daemon.shared_drop_folders.then(|| {
        let instance = if daemon.instance.is_empty() { host_name() } else { daemon.instance.clone() };
        tracing::info!(%instance, "drop folders are shared: files are claimed into .claimed/<instance>/");
        claims::Claims::new(&instance, daemon.claim_stale_after)
    });
    let timing = ScanTiming { settle: daemon.settle, rescan_interval: daemon.rescan_interval, links: daemon.drop_folder_links, claims };
    let telemetry = Arc::clone(&context.telemetry);
    let on_refusal: watch::RefusalSink = Box::new(move |pipeline, path, refusal| {
        tracing::warn!(pipeline, file = %path.display(), reason = %refusal, "drop-folder entry refused: not read, moved or deleted");
        telemetry.refused_entry(pipeline, refusal.label());
    });
    let scanner = watch::spawn(folders, timing, queue.clone(), on_refusal, discovery.clone()).map_err(DaemonError::Watch)?;
    let mut scheduler = schedule::start(&settings, queue.clone(), context.ledger.clone(), Arc::clone(&context.telemetry)).await?;
    // Files whose pipeline backs off come back through the queue; so the queue never closes by
    // itself, and the loop below ends on shutdown.
    let workers_context = Workers { context: context.clone(), gates: Gates::new(daemon), requeue: queue, discovery: discovery.clone() };

    systemd::ready();
    let watchdog = systemd::spawn_watchdog();
    if let Some(first) = settings.pipelines.first() {
        tracing::info!(
            "vecdrop is running; status at http://{}/status; try: vecdrop search --config {} --pipeline {} \"your question\"",
            server.address,
            settings.path.display(),
            first.name
        );
    }

    let workers = Arc::new(Semaphore::new(daemon.max_parallel_files));
    let budget = Arc::new(Semaphore::new(mib_permits(daemon.max_mib_in_flight)));
    let mut in_flight = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        context.telemetry.set_queue_depth(ready.len());
        // Cancel-safe: the shutdown future is pinned and polled again; `join_next` and
        // `acquire_owned` lose nothing when another branch wins (a permit not yet granted stays
        // with the semaphore).
        tokio::select! {
            _ = &mut shutdown => break,
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => log_panic(finished),
            permit = Arc::clone(&workers).acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                // Cancel-safe: `recv` takes a file only when it returns one; on shutdown the
                // permit is dropped and queued files stay for the next start.
                tokio::select! {
                    _ = &mut shutdown => break,
                    file = ready.recv() => {
                        let Some(file) = file else { break };
                        let (workers, budget) = (workers_context.clone(), Arc::clone(&budget));
                        let max_mib = daemon.max_mib_in_flight;
                        in_flight.spawn(async move {
                            // Cancel-safe enough: a budget permit not yet granted stays with the semaphore.
                            let bytes = budget.acquire_many_owned(file_permits(&file.path, max_mib)).await.expect("the semaphore is never closed");
                            workers.process(file, (permit, bytes)).await;
                        });
                    }
                }
            }
        }
    }

    tracing::info!(in_flight = in_flight.len(), "shutting down: no new files; imports in flight commit what they read");
    systemd::stopping();
    discovery.cancel();
    context.cancel.cancel();
    let _ = scheduler.shutdown().await;
    ready.close();
    let deadline = tokio::time::sleep(daemon.shutdown_timeout);
    tokio::pin!(deadline);
    while !in_flight.is_empty() {
        // Cancel-safe: the deadline is pinned; `join_next` loses no finished task.
        tokio::select! {
            _ = &mut deadline => {
                tracing::warn!(in_flight = in_flight.len(), "shutdown timeout: leaving the rest of the imports to the next start");
                in_flight.abort_all();
                break;
            }
            Some(finished) = in_flight.join_next() => log_panic(finished),
        }
    }
    let _ = scanner.await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    server.stop().await;
    tracing::info!("stopped");
    Ok(())
}

fn log_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(%error, "an import task panicked");
    }
}

/// What every worker shares: the import context, the pipelines' backoff, and the way back into
/// the queue for files that wait.
#[derive(Clone)]
struct Workers {
    context: ImportContext,
    gates: Gates,
    requeue: mpsc::Sender<ReadyFile>,
    discovery: tokio_util::sync::CancellationToken,
}

/// Semaphore permits for `mib` MiB (one per KiB, within the semaphore's limit).
fn mib_permits(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1024)).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS)
}

/// The permits `path` takes from a budget of `max_mib`: its size in KiB, at least one, at most the
/// whole budget (a larger file runs alone).
fn file_permits(path: &Path, max_mib: u64) -> u32 {
    let kib = std::fs::metadata(path).map_or(0, |metadata| metadata.len().div_ceil(1024));
    let all = mib_permits(max_mib).min(u32::MAX as usize) as u64;
    kib.clamp(1, all) as u32
}

impl Workers {
    /// Imports one ready file — unless its pipeline waits or stopped — and acts on how it ended.
    /// `slot` (a worker and the file's share of the bytes in flight) is given back once the
    /// file's rows are committed, before it waits for its flush.
    async fn process<S>(&self, file: ReadyFile, slot: S) {
        let context = &self.context;
        let Some(pipeline) = context.settings.pipelines.iter().find(|candidate| candidate.name == file.pipeline) else {
            let reason = format!("no pipeline named {:?}", file.pipeline);
            return report(context, file, FileResult::Failed(reason));
        };
        match self.gates.admit(&pipeline.name) {
            Verdict::Go => {}
            Verdict::WaitUntil(when) => return self.requeue_at(file, when),
            Verdict::Stopped(reason) => {
                tracing::error!(pipeline = %pipeline.name, file = %file.path.display(), "pipeline stopped by a bug; the file is left where it is");
                return report(context, file, FileResult::Failed(reason));
            }
        }
        let source = match open_ready(context, &file) {
            Ok(source) => source,
            Err(outcome) => {
                drop(slot);
                return report(context, file, outcome);
            }
        };
        let staged = upsert_file(context, pipeline, source, false).await;
        drop(slot);
        let result = match staged {
            Ok(staged) => staged.finish().await,
            Err(error) => Err(error),
        };
        match result {
            Err(error) if error.fault() != Fault::File && !matches!(error, ImportError::Interrupted { .. }) => {
                self.not_the_files_fault(pipeline, file, &error)
            }
            result => {
                if result.is_ok() {
                    self.gates.succeeded(&pipeline.name, &context.telemetry);
                }
                let outcome = finish(context, pipeline, &file.path, &file.origin, result);
                report(context, file, outcome);
            }
        }
    }

    /// A transient or configuration fault: the pipeline backs off and the file comes back after
    /// the wait; a bug: the pipeline stops. The file stays where it is either way.
    fn not_the_files_fault(&self, pipeline: &PipelineSettings, file: ReadyFile, error: &ImportError) {
        let (context, fault) = (&self.context, error.fault());
        match self.gates.failed(&pipeline.name, fault, &error.to_string(), &context.telemetry) {
            Some(when) => {
                tracing::warn!(
                    pipeline = %pipeline.name,
                    file = %file.path.display(),
                    fault = %fault,
                    %error,
                    retry_in_ms = when.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64,
                    "not the file's fault: it stays where it is and is tried again"
                );
                context.telemetry.retried(&pipeline.name, fault);
                self.requeue_at(file, when);
            }
            None => {
                tracing::error!(pipeline = %pipeline.name, file = %file.path.display(), %error, "a bug stopped the pipeline; fix and restart vecdrop (its files stay where they are)");
                report(context, file, FileResult::Failed(error.to_string()));
            }
        }
    }

    /// Puts `file` back into the queue at `when` (or drops it on shutdown: discovery and the
    /// ledger bring it back at the next start).
    fn requeue_at(&self, file: ReadyFile, when: tokio::time::Instant) {
        let (requeue, discovery) = (self.requeue.clone(), self.discovery.clone());
        tokio::spawn(async move {
            // Cancel-safe: either branch drops the other; the file is only moved by `send`.
            tokio::select! {
                _ = discovery.cancelled() => {}
                _ = tokio::time::sleep_until(when) => {
                    tokio::select! {
                        _ = discovery.cancelled() => {}
                        _ = requeue.send(file) => {}
                    }
                }
            }
        });
    }
}

/// Opens a ready file for its import: a drop-folder entry through [`entry::open`] (no links
/// followed, regular files only, and only the version that settled), a scheduled file by name.
/// A refused or changed entry is left where it is: a changed one is looked at again by the scanner.
fn open_ready(context: &ImportContext, file: &ReadyFile) -> Result<Source, FileResult> {
    let (Origin::DropFolder { dir }, Some(settled)) = (&file.origin, &file.settled) else {
        return Ok(Source::from(&file.path));
    };
    entry::open(&file.path, dir, context.settings.daemon.drop_folder_links, settled).map_err(|error| {
        match &error {
            entry::OpenError::Refused(refusal) => {
                tracing::warn!(pipeline = %file.pipeline, file = %file.path.display(), reason = %refusal, "drop-folder entry refused: not read, moved or deleted");
                context.telemetry.refused_entry(&file.pipeline, refusal.label());
            }
            entry::OpenError::Changed | entry::OpenError::Io(_) => {
                tracing::info!(pipeline = %file.pipeline, file = %file.path.display(), %error, "not imported now");
            }
        }
        FileResult::Skipped(format!("{}: {error}", file.path.display()))
    })
}

/// Counts the file's outcome (and times a success) and tells whoever waits for it (schedules).
fn report(context: &ImportContext, file: ReadyFile, result: FileResult) {
    let outcome = match &result {
        FileResult::Imported { .. } => "imported",
        FileResult::AlreadyImported => "already_imported",
        FileResult::Failed(_) => "failed",
        FileResult::Skipped(_) => "skipped",
        FileResult::Interrupted => "interrupted",
    };
    context.telemetry.file_done(&file.pipeline, outcome);
    if matches!(result, FileResult::Imported { .. } | FileResult::AlreadyImported) {
        context.telemetry.pipeline_succeeded(&file.pipeline);
    }
    if let Some(done) = file.done {
        let _ = done.send(result);
    }
}

/// Logs how an import ended (imported, already imported, the file's fault, interrupted) and
/// applies `after_import` or the quarantine to a drop-folder file.
fn finish(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    path: &Path,
    origin: &Origin,
    result: Result<FileOutcome, ImportError>,
) -> FileResult {
    let result = match result {
        Ok(FileOutcome::Imported(summary)) => {
            tracing::info!(
                pipeline = %pipeline.name,
                file = %path.display(),
                rows = summary.rows_imported,
                unchanged = summary.rows_unchanged,
                superseded = summary.rows_superseded,
                rejected = summary.rows_rejected,
                deleted = summary.rows_deleted,
                seconds = format!("{:.1}", summary.seconds),
                rows_per_second = format!("{:.0}", summary.rows_per_second()),
                "file imported"
            );
            FileResult::Imported { rows_imported: summary.rows_imported, rows_unchanged: summary.rows_unchanged }
        }
        Ok(FileOutcome::AlreadyImported(_)) => {
            tracing::info!(pipeline = %pipeline.name, file = %path.display(), "same content already imported");
            FileResult::AlreadyImported
        }
        Err(ImportError::Interrupted { .. }) => {
            tracing::info!(pipeline = %pipeline.name, file = %path.display(), "import interrupted by shutdown; resumes on the next start");
            return FileResult::Interrupted;
        }
        Err(error) => {
            tracing::error!(pipeline = %pipeline.name, file = %path.display(), %error, "the file is at fault; quarantining it");
            FileResult::Failed(error.to_string())
        }
    };
    let Origin::DropFolder { dir } = origin else { return result };
    let moved = match &result {
        FileResult::Failed(reason) => {
            let dead_letters = dead_letter::path_for(&context.settings.state.dir, &pipeline.name);
            after_import::quarantine(path, dir, &pipeline.name, reason, &dead_letters).map(|(moved, explanation)| {
                keep_explanation(&context.settings.state.dir, &pipeline.name, &moved, &explanation);
                Some(moved)
            })
        }
        _ => after_import::after_success(path, dir, pipeline.after_import, &crate::timestamp::today()),
    };
    match moved {
        Ok(Some(target)) => tracing::info!(file = %path.display(), to = %target.display(), "file moved"),
        Ok(None) => {}
        Err(error) => tracing::error!(file = %path.display(), %error, "cannot apply after_import to the file"),
    }
    result
}

/// This host's name (`daemon.instance` when unset), as the kernel has it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect())
        .filter(|name: &String| !name.is_empty())
        .unwrap_or_else(|| "vecdrop".to_owned())
}

/// Keeps a copy of a quarantined file's explanation in the state directory
/// (`failed/<pipeline>/<name>.error.txt`), where no dropper can plant or alter it.
fn keep_explanation(state_dir: &Path, pipeline: &str, moved: &Path, explanation: &str) {
    let folder = state_dir.join("failed").join(pipeline);
    let name = moved.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let written = std::fs::create_dir_all(&folder).and_then(|()| std::fs::write(folder.join(format!("{name}.error.txt")), explanation));
    if let Err(error) = written {
        tracing::warn!(folder = %folder.display(), %error, "cannot keep the failure's explanation in the state directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_takes_its_size_in_kib_of_the_budget_and_a_larger_file_takes_all_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let sized = |name: &str, bytes: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![b'x'; bytes]).unwrap();
            path
        };
        assert_eq!(mib_permits(1), 1024);
        assert_eq!(file_permits(&sized("tiny", 10), 1), 1, "every file takes at least one");
        assert_eq!(file_permits(&sized("small", 3000), 1), 3);
        assert_eq!(file_permits(&sized("large", 2 << 20), 1), 1024, "a file over the budget takes all of it and runs alone");
        assert_eq!(file_permits(&dir.path().join("gone"), 1), 1, "a vanished file still takes its turn (and fails in the import)");
    }
}
