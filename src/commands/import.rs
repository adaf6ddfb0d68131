//! `vecdrop import FILE...`: one-shot import with a progress bar and a summary.
//!
//! Files are upserted one after the other and then finished together: they share one flush of
//! the collection (a flush costs seconds on Milvus 2.3 whatever its size), so importing a hundred
//! small files pays it about once, not a hundred times. A file is reported imported only after
//! that flush; a command killed before it leaves its files committed up to their last row, and
//! running it again only flushes and finishes them.
//!
//! A fault that is not the file's (Milvus away, a full disk) is retried with backoff until
//! `import.retry_deadline`; after that the command exits 1 and the committed position stays in the
//! ledger, so running it again resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{open_context_timed, process_start, require_file, CommandError, StartupTimes, EXIT_DEAD_LETTERS, EXIT_OK};
use crate::fault::{Classify, Fault};
use crate::pipeline::{import_file, upsert_file, FileOutcome, ImportContext, ImportError, Staged};
use crate::progress::ImportSummary;
use crate::settings::Settings;
use crate::sink::jittered;

/// Imports `files` with the pipeline named `pipeline` (or the only one), resuming interrupted
/// files and skipping content imported before unless `force`. Prints one line per file and a
/// total. Returns [`EXIT_DEAD_LETTERS`] when any record was dead-lettered.
pub async fn import(settings: Settings, pipeline: Option<&str>, force: bool, files: &[PathBuf]) -> Result<u8, CommandError> {
    let pipeline = settings.pipeline(pipeline).map_err(CommandError::Usage)?.clone();
    for file in files {
        require_file(file)?;
    }
    let (context, startup) = open_context_timed(settings, true).await?;
    let ready = process_start().elapsed();
    let started = Instant::now();
    let mut finishing = Vec::new();
    let mut stopped = None;
    for file in files {
        match retrying(&context, file, || upsert_file(&context, &pipeline, file, force)).await {
            Ok(Staged::Upserted(upserted)) => finishing.push((file, tokio::spawn(upserted.finish()))),
            Ok(Staged::AlreadyImported(entry)) => print_already_imported(file, &entry),
            Err(error) => {
                // The files upserted so far are still finished (and reported) before it stops.
                stopped = Some(error);
                break;
            }
        }
    }
    let mut total = ImportSummary::default();
    for (file, finished) in finishing {
        let finished = finished.await.map_err(|error| ImportError::Internal(format!("finishing task: {error}")));
        let outcome = match finished.and_then(|result| result) {
            Ok(outcome) => outcome,
            // Its rows are committed: importing it again resumes at its end, flushes and finishes.
            Err(error) if is_retryable(&error) => retrying(&context, file, || import_file(&context, &pipeline, file, false)).await?,
            Err(error) => return Err(error.into()),
        };
        match outcome {
            FileOutcome::Imported(summary) => {
                print_summary(file, &summary);
                total.rows_imported += summary.rows_imported;
                total.rows_rejected += summary.rows_rejected;
            }
            FileOutcome::AlreadyImported(entry) => print_already_imported(file, &entry),
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    print_startup(&startup, ready, context.embed_queue.first_batch_at());
    if let Some(error) = stopped {
        return Err(error);
    }
    if files.len() > 1 {
        println!(
            "total: {} rows imported, {} rejected, {:.1} s, {:.0} rows/s",
            total.rows_imported,
            total.rows_rejected,
            total.seconds,
            total.rows_per_second()
        );
    }
    if total.rows_rejected > 0 {
        let letters = crate::dead_letter::path_for(&context.settings.state.dir, &pipeline.name);
        eprintln!("{} record(s) were rejected; see {}", total.rows_rejected, letters.display());
        return Ok(EXIT_DEAD_LETTERS);
    }
    Ok(EXIT_OK)
}

/// Runs `attempt` for `file`, retrying transient faults with backoff until `import.retry_deadline`.
async fn retrying<T, F, A>(context: &ImportContext, file: &Path, mut attempt: A) -> Result<T, CommandError>
where
    A: FnMut() -> F,
    F: std::future::Future<Output = Result<T, ImportError>>,
{
    let settings = &context.settings;
    let deadline = Instant::now() + settings.import.retry_deadline;
    let mut retries = 0;
    loop {
        let error = match attempt().await {
            Ok(outcome) => return Ok(outcome),
            Err(error) => error,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let retryable = is_retryable(&error);
        if !retryable || remaining.is_zero() {
            if retryable {
                eprintln!(
                    "{}: gave up after import.retry_deadline ({}); the rows committed so far are kept, run the same command again to resume",
                    file.display(),
                    humantime::format_duration(settings.import.retry_deadline)
                );
            }
            return Err(error.into());
        }
        retries += 1;
        let delay = jittered(settings.daemon.retry_backoff, settings.daemon.retry_backoff_max, retries).min(remaining);
        tracing::warn!(file = %file.display(), %error, retry = retries, delay_ms = delay.as_millis() as u64, "not the file's fault; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// A transient fault (not a shutdown): worth another attempt.
fn is_retryable(error: &ImportError) -> bool {
    error.fault() == Fault::Transient && !matches!(error, ImportError::Interrupted { .. })
}

/// The start-up line of the summary: process start to the first model batch, and its parts.
fn print_startup(startup: &StartupTimes, ready: std::time::Duration, first_batch: Option<Instant>) {
    let seconds = |duration: std::time::Duration| duration.as_secs_f64();
    let until = match first_batch {
        Some(first) => format!("{:.2} s from start to the first model batch", seconds(first.duration_since(process_start()))),
        None => format!("{:.2} s from start to ready (no text needed the model)", seconds(ready)),
    };
    println!(
        "start-up: {until}; opened at once in {:.2} s: model {:.2} s, Milvus {:.2} s, ledger {:.2} s, plugins {:.2} s",
        seconds(startup.total),
        seconds(startup.model),
        seconds(startup.milvus),
        seconds(startup.ledger),
        seconds(startup.plugins),
    );
}

fn print_already_imported(file: &Path, entry: &crate::ledger::FileEntry) {
    println!(
        "{}: already imported ({} rows, same content as {}); use --force to import it again",
        file.display(),
        entry.rows_imported,
        entry.paths.first().map(String::as_str).unwrap_or("an earlier file")
    );
}

fn print_summary(file: &Path, summary: &ImportSummary) {
    println!(
        "{}: {} rows imported, {} rejected, {:.1} s, {:.0} rows/s",
        file.display(),
        summary.rows_imported,
        summary.rows_rejected,
        summary.seconds,
        summary.rows_per_second()
    );
    if summary.rows_superseded > 0 {
        println!("{}: {} rows superseded by a later record with the same key", file.display(), summary.rows_superseded);
    }
    if summary.rows_deleted > 0 {
        println!("{}: mirror deleted {} rows whose keys left the source", file.display(), summary.rows_deleted);
    }
    if let Some(hold) = summary.mirror_held_back {
        println!(
            "{}: mirror held back: this version lacks {} of the {} rows its source held before (more than mirror_max_delete_share); nothing was deleted",
            file.display(),
            hold.keys_gone,
            hold.previous_rows
        );
    }
}
