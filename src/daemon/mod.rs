//! `vecdrop run`: the long-lived service.
//!
//! ```text
//!  drop-folder scanner ─┐                    ┌─► worker ─► import_file ─► after_import
//!                       ├─► bounded queue ──►┤   (at most max_parallel_files, one shared model)
//!  cron schedules ──────┘                    └─► worker ─► …
//!  status server: /metrics /status /healthz          systemd: READY=1, WATCHDOG=1, STOPPING=1
//! ```
//! Shutdown (SIGTERM/SIGINT): discovery stops, queued files are left for the next start, imports
//! in flight stop reading and commit what they read ([`crate::pipeline::ImportError::Interrupted`]),
//! and the process exits 0 — after `daemon.shutdown_timeout` at the latest (the ledger is always
//! consistent, so an import cut off there simply resumes on the next start).

pub mod after_import;
pub mod http;
mod systemd;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::dead_letter;
use crate::discover::watch::{DropFolder, ScanTiming};
use crate::discover::{schedule, watch, FileResult, Origin, ReadyFile};
use crate::pipeline::{import_file, FileOutcome, ImportContext, ImportError};
use crate::settings::PipelineSettings;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The status endpoint cannot listen.
    #[error("status.listen {address}: {source}")]
    Listen {
        /// The configured address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A drop folder cannot be created or watched.
    #[error("drop folders: {0}")]
    Watch(std::io::Error),
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
    let state = Arc::new(http::DaemonState::new(context.clone()));
    let server = http::serve(&settings.status.listen, Arc::clone(&state)).await?;

    let folders: Vec<DropFolder> = settings
        .pipelines
        .iter()
        .flat_map(|pipeline| pipeline.watch.iter().map(|dir| DropFolder { pipeline: pipeline.name.clone(), dir: settings.resolve(dir) }))
        .collect();
    let discovery = context.cancel.child_token();
    let timing = ScanTiming { settle: daemon.settle, rescan_interval: daemon.rescan_interval };
    let scanner = watch::spawn(folders, timing, queue.clone(), discovery.clone()).map_err(DaemonError::Watch)?;
    let mut scheduler = schedule::start(&settings, queue.clone(), context.ledger.clone()).await?;
    drop(queue); // the scanner and the schedules hold the remaining senders

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
    let mut in_flight = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        context.telemetry.set_queue_depth(ready.len());
        tokio::select! {
            _ = &mut shutdown => break,
            Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => log_panic(finished),
            permit = Arc::clone(&workers).acquire_owned() => {
                let permit = permit.expect("the semaphore is never closed");
                tokio::select! {
                    _ = &mut shutdown => break,
                    file = ready.recv() => {
                        let Some(file) = file else { break };
                        let context = context.clone();
                        in_flight.spawn(async move {
                            process(&context, file).await;
                            drop(permit);
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

/// Imports one ready file, applies `after_import` or quarantines it, and reports the result.
async fn process(context: &ImportContext, file: ReadyFile) {
    let ReadyFile { pipeline, path, origin, done } = file;
    let result = match context.settings.pipelines.iter().find(|candidate| candidate.name == pipeline) {
        Some(settings) => import_and_finish(context, settings, &path, &origin).await,
        None => FileResult::Failed(format!("no pipeline named {pipeline:?}")),
    };
    let outcome = match &result {
        FileResult::Imported { .. } => "imported",
        FileResult::AlreadyImported => "already_imported",
        FileResult::Failed(_) => "failed",
        FileResult::Interrupted => "interrupted",
    };
    context.telemetry.file_done(&pipeline, outcome);
    if let Some(done) = done {
        let _ = done.send(result);
    }
}

async fn import_and_finish(context: &ImportContext, pipeline: &PipelineSettings, path: &Path, origin: &Origin) -> FileResult {
    let result = match import_file(context, pipeline, path, false).await {
        Ok(FileOutcome::Imported(summary)) => {
            tracing::info!(
                pipeline = %pipeline.name,
                file = %path.display(),
                rows = summary.rows_imported,
                unchanged = summary.rows_unchanged,
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
            tracing::error!(pipeline = %pipeline.name, file = %path.display(), %error, "file failed");
            FileResult::Failed(error.to_string())
        }
    };
    let Origin::DropFolder { dir } = origin else { return result };
    let moved = match &result {
        FileResult::Failed(reason) => {
            let dead_letters = dead_letter::path_for(&context.settings.resolve(&context.settings.state.dir), &pipeline.name);
            after_import::quarantine(path, dir, &pipeline.name, reason, &dead_letters).map(Some)
        }
        _ => after_import::after_success(path, dir, pipeline.after_import, &today()),
    };
    match moved {
        Ok(Some(target)) => tracing::info!(file = %path.display(), to = %target.display(), "file moved"),
        Ok(None) => {}
        Err(error) => tracing::error!(file = %path.display(), %error, "cannot apply after_import to the file"),
    }
    result
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    dead_letter::now_rfc3339().chars().take(10).collect()
}
