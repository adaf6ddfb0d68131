//! Cron schedules (tokio-cron-scheduler, seconds field first): each run expands the pipeline's
//! `paths` globs and queues the files it finds, then waits for their imports.
//!
//! A run that is still busy when the next one fires is not started twice: the new firing is
//! skipped with a log line. Each run's start, outcome and the next planned run are kept in the
//! ledger ([`ScheduleEntry`]) for `/status` and `vecdrop status`. A run interrupted by a shutdown
//! (outcome still `running`) is repeated once at the next start.
//!
//! A file whose [`Fingerprint`] (size, mtime, ctime) is what it was when the previous run imported
//! it is not queued again: a recurring export that did not change costs a `stat`, not a full
//! content hash. The memory lives in the process; after a restart the first run hashes once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobBuilder, JobScheduler, JobSchedulerError};
use uuid::Uuid;

use super::{FileResult, Fingerprint, Origin, ReadyFile};
use crate::ledger::{Ledger, ScheduleEntry};
use crate::settings::{LinkPolicy, Schedule, Settings};
use crate::telemetry::Telemetry;
use crate::timestamp::now_rfc3339;

/// Outcome recorded while a run is in progress.
const RUNNING: &str = "running";

/// The scheduler could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("schedule of pipeline {pipeline}: {message}")]
pub struct ScheduleError {
    pub pipeline: String,
    /// What went wrong.
    pub message: String,
}

/// One pipeline's schedule: what a run needs.
struct Recurring {
    pipeline: String,
    expression: String,
    /// Absolute globs.
    patterns: Vec<String>,
    /// Whether the globs follow symbolic links below their fixed part.
    links: LinkPolicy,
    queue: mpsc::Sender<ReadyFile>,
    ledger: Ledger,
    /// Told when a run ends without a failed file.
    telemetry: Arc<Telemetry>,
    busy: AtomicBool,
    /// Files the last runs imported (or found imported), as they were then.
    settled: Mutex<HashMap<PathBuf, Fingerprint>>,
}

/// Starts one cron job per pipeline with a `schedule`. Runs interrupted by the last shutdown are
/// started at once; a run that ends without a failed file is timed in `telemetry`. Shut the
/// returned scheduler down to stop firing.
pub async fn start(
    settings: &Settings,
    queue: mpsc::Sender<ReadyFile>,
    ledger: Ledger,
    telemetry: Arc<Telemetry>,
) -> Result<JobScheduler, ScheduleError> {
    let failed = |pipeline: &str, error: JobSchedulerError| ScheduleError { pipeline: pipeline.to_owned(), message: error.to_string() };
    let scheduler = JobScheduler::new().await.map_err(|error| failed("*", error))?;
    for pipeline in &settings.pipelines {
        let Some(schedule) = &pipeline.schedule else { continue };
        let recurring = Arc::new(Recurring::of(&pipeline.name, schedule, queue.clone(), ledger.clone(), Arc::clone(&telemetry)));
        let job = cron_job(schedule, Arc::clone(&recurring)).map_err(|error| failed(&pipeline.name, error))?;
        let id = scheduler.add(job).await.map_err(|error| failed(&pipeline.name, error))?;
        let next = next_run(&scheduler, id).await;
        tracing::info!(pipeline = %pipeline.name, schedule = %recurring.expression, next_run = next.as_deref().unwrap_or("?"), "schedule armed");
        if recurring.was_interrupted() {
            tracing::info!(pipeline = %pipeline.name, "the last scheduled run was interrupted by a shutdown; running it now");
            tokio::spawn(async move { recurring.run(next).await });
        } else {
            recurring.record(|entry| entry.next_run = next);
        }
    }
    scheduler.start().await.map_err(|error| failed("*", error))?;
    Ok(scheduler)
}

async fn next_run(scheduler: &JobScheduler, id: Uuid) -> Option<String> {
    let mut scheduler = scheduler.clone();
    scheduler.next_tick_for_job(id).await.ok().flatten().map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The job firing `recurring` on `schedule`: the cron expression and zone parsed with the config
/// are handed over as they are (the builder's fields are public), not parsed a second time.
fn cron_job(schedule: &Schedule, recurring: Arc<Recurring>) -> Result<Job, JobSchedulerError> {
    let builder = JobBuilder::new().with_timezone(schedule.timezone).with_cron_job_type().with_run_async(Box::new(move |id, scheduler| {
        let recurring = Arc::clone(&recurring);
        Box::pin(async move { recurring.fire(id, scheduler).await })
    }));
    JobBuilder { schedule: Some(schedule.cron.clone()), ..builder }.build()
}

impl Recurring {
    fn of(pipeline: &str, schedule: &Schedule, queue: mpsc::Sender<ReadyFile>, ledger: Ledger, telemetry: Arc<Telemetry>) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            expression: schedule.cron.to_string(),
            patterns: schedule.paths.clone(),
            links: schedule.links,
            queue,
            ledger,
            telemetry,
            busy: AtomicBool::new(false),
            settled: Mutex::default(),
        }
    }

    async fn fire(&self, id: Uuid, scheduler: JobScheduler) {
        let next = next_run(&scheduler, id).await;
        if self.busy.load(Ordering::SeqCst) {
            tracing::warn!(pipeline = %self.pipeline, "schedule fired while its previous run is still busy; skipping this run");
            self.record(|entry| entry.next_run = next);
            return;
        }
        self.run(next).await;
    }

    /// One run: queue every matching file, wait for all of them, record the outcome.
    async fn run(&self, next: Option<String>) {
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        self.record(|entry| {
            entry.last_run = Some(now_rfc3339());
            entry.last_outcome = Some(RUNNING.to_owned());
            entry.next_run = next;
        });
        let files = expand(&self.patterns, self.links);
        tracing::info!(pipeline = %self.pipeline, files = files.len(), "scheduled run started");
        let mut waiting = Vec::with_capacity(files.len());
        let mut results = Vec::with_capacity(files.len());
        for path in files {
            let fingerprint = Fingerprint::of(&path);
            if fingerprint.is_some() && self.settled_fingerprint(&path) == fingerprint {
                results.push((path, FileResult::AlreadyImported));
                continue;
            }
            let (done, result) = oneshot::channel();
            let file = ReadyFile {
                pipeline: self.pipeline.clone(),
                path: path.clone(),
                origin: Origin::Schedule,
                settled: None,
                done: Some(done),
            };
            if self.queue.send(file).await.is_err() {
                self.busy.store(false, Ordering::SeqCst);
                return; // shutting down: the run stays `running` and is repeated at the next start
            }
            waiting.push((path, fingerprint, result));
        }
        for (path, fingerprint, result) in waiting {
            match result.await {
                Ok(FileResult::Interrupted) | Err(_) => {
                    self.busy.store(false, Ordering::SeqCst);
                    return; // shutting down, as above
                }
                Ok(result) => {
                    self.remember(&path, fingerprint, &result);
                    results.push((path, result));
                }
            }
        }
        let outcome = summarise(&results);
        tracing::info!(pipeline = %self.pipeline, %outcome, "scheduled run finished");
        if results.iter().all(|(_, result)| !matches!(result, FileResult::Failed(_))) {
            self.telemetry.schedule_succeeded(&self.pipeline);
        }
        self.record(|entry| entry.last_outcome = Some(outcome));
        self.busy.store(false, Ordering::SeqCst);
    }

    fn settled_fingerprint(&self, path: &Path) -> Option<Fingerprint> {
        self.settled.lock().ok()?.get(path).copied()
    }

    /// Remembers `path` as it was before its import when the import succeeded; forgets it
    /// otherwise, so a failed file is tried again in full.
    fn remember(&self, path: &Path, fingerprint: Option<Fingerprint>, result: &FileResult) {
        let Ok(mut settled) = self.settled.lock() else { return };
        match (fingerprint, result) {
            (Some(fingerprint), FileResult::Imported { .. } | FileResult::AlreadyImported) => {
                settled.insert(path.to_owned(), fingerprint);
            }
            _ => {
                settled.remove(path);
            }
        }
    }

    fn was_interrupted(&self) -> bool {
        matches!(self.ledger.schedule(&self.pipeline), Ok(Some(entry)) if entry.last_outcome.as_deref() == Some(RUNNING))
    }

    /// Updates the stored entry; a ledger failure is logged (the schedule itself goes on).
    fn record(&self, change: impl FnOnce(&mut ScheduleEntry)) {
        let mut entry = match self.ledger.schedule(&self.pipeline) {
            Ok(Some(entry)) => entry,
            _ => ScheduleEntry { pipeline: self.pipeline.clone(), ..ScheduleEntry::default() },
        };
        entry.schedule = self.expression.clone();
        change(&mut entry);
        if let Err(error) = self.ledger.put_schedule(&entry) {
            tracing::error!(pipeline = %self.pipeline, %error, "cannot record the schedule's state");
        }
    }
}

/// Regular files matching `patterns` (absolute: [`Schedule::paths`]), sorted, without duplicates.
/// A pattern without wildcards is the operator's path and followed wherever it leads; a match of
/// a wildcard that passes a symbolic link below the pattern's fixed part is kept only as `links`
/// allows (skipped with a warning otherwise).
pub fn expand(patterns: &[String], links: LinkPolicy) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for pattern in patterns {
        let Ok(matches) = glob::glob(pattern) else {
            tracing::warn!(%pattern, "not a valid glob");
            continue;
        };
        let base = fixed_part(pattern);
        for path in matches.flatten().filter(|path| path.is_file()) {
            match link_allowed(&base, &path, links) {
                Ok(()) => files.push(path),
                Err(link) => tracing::warn!(
                    %pattern,
                    file = %path.display(),
                    link = %link.display(),
                    "skipped: the glob reaches it through a symbolic link (set glob_links = \"inside\" or \"follow\" to allow)"
                ),
            }
        }
    }
    files.sort();
    files.dedup();
    files
}

/// The directories of `pattern` before its first wildcard (`/srv/exports` of
/// `/srv/exports/*/x.csv`); the whole pattern when it has none.
fn fixed_part(pattern: &str) -> PathBuf {
    let mut fixed = PathBuf::new();
    let components: Vec<_> = Path::new(pattern).components().collect();
    for (index, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[']) {
            return fixed;
        }
        if index + 1 == components.len() {
            return Path::new(pattern).to_owned(); // no wildcard at all
        }
        fixed.push(component);
    }
    fixed
}

/// `Ok` when `path` (a match below `base`) passes no symbolic link below `base`, or `links`
/// allows the ones it passes; `Err` names the first link in the way.
fn link_allowed(base: &Path, path: &Path, links: LinkPolicy) -> Result<(), PathBuf> {
    if links == LinkPolicy::Follow || path == base {
        return Ok(());
    }
    let Ok(below) = path.strip_prefix(base) else { return Ok(()) };
    let mut current = base.to_owned();
    for component in below.components() {
        current.push(component);
        if std::fs::symlink_metadata(&current).is_ok_and(|metadata| metadata.is_symlink()) {
            let inside = links == LinkPolicy::Inside
                && matches!((std::fs::canonicalize(path), std::fs::canonicalize(base)), (Ok(target), Ok(base)) if target.starts_with(&base));
            return if inside { Ok(()) } else { Err(current) };
        }
    }
    Ok(())
}

/// `ok: 3 files (1 imported, 2 already imported; 40 rows written, 960 unchanged)` or
/// `failed: 1 of 3 files; first: <reason>`.
fn summarise(results: &[(PathBuf, FileResult)]) -> String {
    let (mut imported, mut already, mut rows, mut unchanged) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for (path, result) in results {
        match result {
            FileResult::Imported { rows_imported, rows_unchanged } => {
                imported += 1;
                rows += rows_imported;
                unchanged += rows_unchanged;
            }
            FileResult::AlreadyImported => already += 1,
            FileResult::Failed(reason) | FileResult::Skipped(reason) => failures.push(format!("{}: {reason}", path.display())),
            FileResult::Interrupted => {}
        }
    }
    let total = results.len();
    match failures.first() {
        Some(first) => format!("failed: {} of {total} files; first: {first}", failures.len()),
        None => format!("ok: {total} files ({imported} imported, {already} already imported; {rows} rows written, {unchanged} unchanged)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_do_not_escape_through_links_unless_allowed_and_plain_paths_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.csv"), "x").unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir_all(exports.join("real")).unwrap();
        std::fs::write(exports.join("real/a.csv"), "x").unwrap();
        std::fs::write(exports.join("real/inner.csv"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), exports.join("escape")).unwrap();
        std::os::unix::fs::symlink(exports.join("real/inner.csv"), exports.join("real/alias.csv")).unwrap();
        let glob = vec![format!("{}/*/*.csv", exports.display())];
        let names =
            |files: Vec<PathBuf>| files.iter().map(|file| file.strip_prefix(&exports).unwrap().display().to_string()).collect::<Vec<_>>();
        assert_eq!(names(expand(&glob, LinkPolicy::Refuse)), ["real/a.csv", "real/inner.csv"]);
        assert_eq!(names(expand(&glob, LinkPolicy::Inside)), ["real/a.csv", "real/alias.csv", "real/inner.csv"]);
        assert_eq!(names(expand(&glob, LinkPolicy::Follow)), ["escape/secret.csv", "real/a.csv", "real/alias.csv", "real/inner.csv"]);
        let plain = vec![format!("{}/escape/secret.csv", exports.display())];
        assert_eq!(names(expand(&plain, LinkPolicy::Refuse)), ["escape/secret.csv"], "the operator's own path is followed");
    }

    #[test]
    fn globs_expand_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("exports")).unwrap();
        for name in ["b.csv", "a.csv", "c.json"] {
            std::fs::write(dir.path().join("exports").join(name), "x").unwrap();
        }
        let exports = dir.path().join("exports");
        let files = expand(&[format!("{}/*.csv", exports.display()), format!("{}/a.*", exports.display())], LinkPolicy::Refuse);
        let names: Vec<_> = files.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.csv", "b.csv"]);
    }

    #[tokio::test]
    async fn a_run_skips_files_unchanged_since_the_last_successful_import() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        let (queue, mut queued) = mpsc::channel(8);
        std::fs::write(dir.path().join("a.csv"), "text\nalpha\n").unwrap();
        std::fs::write(dir.path().join("b.csv"), "text\nbravo\n").unwrap();
        let recurring = Arc::new(Recurring {
            pipeline: "p".into(),
            expression: "*/5 * * * * *".into(),
            patterns: vec![format!("{}/*.csv", dir.path().display())],
            links: LinkPolicy::Refuse,
            queue,
            ledger: ledger.clone(),
            telemetry: Arc::new(Telemetry::new()),
            busy: AtomicBool::new(false),
            settled: Mutex::default(),
        });
        // A stand-in for the daemon: answers every queued file, failing b.csv the first time.
        let worker = tokio::spawn(async move {
            let mut names = Vec::new();
            while let Some(file) = queued.recv().await {
                let name = file.path.file_name().unwrap().to_string_lossy().into_owned();
                let result = if name == "b.csv" && !names.contains(&name) {
                    FileResult::Failed("broken".into())
                } else {
                    FileResult::Imported { rows_imported: 1, rows_unchanged: 0 }
                };
                names.push(name);
                file.done.unwrap().send(result).unwrap();
            }
            names
        });
        let timed = |recurring: &Recurring| recurring.telemetry.encode_metrics().contains("schedule_last_success_timestamp_seconds{");
        recurring.run(None).await;
        assert!(!timed(&recurring), "a run with a failed file is no success");
        recurring.run(None).await; // a.csv settled; b.csv failed, so it is tried again
        assert!(timed(&recurring), "a run without failures is timed");
        std::fs::write(dir.path().join("a.csv"), "text\nALPHA\n").unwrap(); // same size, new content
        recurring.run(None).await;
        recurring.run(None).await; // nothing changed since
        let outcome = ledger.schedule("p").unwrap().unwrap().last_outcome.unwrap();
        assert_eq!(outcome, "ok: 2 files (0 imported, 2 already imported; 0 rows written, 0 unchanged)");
        drop(recurring);
        assert_eq!(worker.await.unwrap(), ["a.csv", "b.csv", "b.csv", "a.csv"]);
    }

    #[test]
    fn outcomes_summarise_counts_and_the_first_failure() {
        let ok = [
            (PathBuf::from("a"), FileResult::Imported { rows_imported: 40, rows_unchanged: 960 }),
            (PathBuf::from("b"), FileResult::AlreadyImported),
        ];
        assert_eq!(summarise(&ok), "ok: 2 files (1 imported, 1 already imported; 40 rows written, 960 unchanged)");
        let failed = [(PathBuf::from("a"), FileResult::Failed("bad footer".into())), (PathBuf::from("b"), FileResult::AlreadyImported)];
        assert_eq!(summarise(&failed), "failed: 1 of 2 files; first: a: bad footer");
    }
}
