//! `vecdrop import PATH...`: one-shot import with a progress bar and a summary. A path is a file,
//! a directory (its files) or a glob pattern (the files it matches): [`expand_inputs`].
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

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{open_context_timed, process_start, require_file, CommandError, StartupTimes, EXIT_DEAD_LETTERS, EXIT_OK};
use crate::discover::is_ignored;
use crate::fault::{Classify, Fault};
use crate::pipeline::{import_file, upsert_file, FileOutcome, ImportContext, ImportError, Staged};
use crate::progress::ImportSummary;
use crate::settings::Settings;
use crate::sink::jittered;

/// Imports the files `inputs` name ([`expand_inputs`]: files, directories, glob patterns) with
/// the pipeline named `pipeline` (or the only one), resuming interrupted files and skipping
/// content imported before unless `force`. Prints one line per file and a total. Returns
/// [`EXIT_DEAD_LETTERS`] when any record was dead-lettered; a usage error (exit 2) before
/// anything is opened when a path names no file.
pub async fn import(settings: Settings, pipeline: Option<&str>, force: bool, inputs: &[PathBuf]) -> Result<u8, CommandError> {
    let pipeline = settings.pipeline(pipeline).map_err(CommandError::Usage)?.clone();
    let files = expand_inputs(inputs)?;
    for file in &files {
        require_file(file)?;
    }
    let files = files.as_slice();
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

/// The files to import for the command line's `inputs`, in order, each once:
///
/// - a path that exists is taken as it is; a directory stands for the regular files in it (links
///   to regular files count, as for a name given explicitly), sorted by name, without descending
///   into subdirectories and without the names the drop folders skip too ([`is_ignored`]:
///   dotfiles, `.part`, `.tmp`, `.crdownload`);
/// - a path that does not exist and contains `*`, `?` or `[` is a glob pattern (`glob` syntax,
///   `**` included): the regular files it matches, sorted, the same names skipped, and `*` not
///   matching a leading dot (as in a shell);
/// - any other path is passed on, for the import to report as missing.
///
/// A directory without a file to import or a pattern matching none is a usage error naming it.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut files = Vec::new();
    for input in inputs {
        let expanded = if input.is_dir() {
            directory_files(input)?
        } else if !input.exists() && is_pattern(input) {
            pattern_files(input)?
        } else {
            vec![input.clone()]
        };
        files.extend(expanded);
    }
    let mut seen = HashSet::new();
    files.retain(|file| seen.insert(file.clone()));
    Ok(files)
}

/// Whether `path` holds glob metacharacters.
fn is_pattern(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// Whether `path` is worth importing from a directory or a pattern: a regular file (through a
/// link too) whose name the drop folders would not skip.
fn importable(path: &Path) -> bool {
    let named = path.file_name().and_then(|name| name.to_str()).is_some_and(|name| !is_ignored(name));
    named && path.is_file()
}

/// The importable files directly in `dir`, sorted by name.
fn directory_files(dir: &Path) -> Result<Vec<PathBuf>, CommandError> {
    let unreadable = |error: std::io::Error| CommandError::Other(format!("{}: {error}", dir.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if importable(&path) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CommandError::Usage(format!(
            "{}: no file to import in this directory (subdirectories, dotfiles and .part/.tmp/.crdownload files are skipped)",
            dir.display()
        )));
    }
    files.sort();
    Ok(files)
}

/// The importable files `pattern` matches, sorted.
fn pattern_files(pattern: &Path) -> Result<Vec<PathBuf>, CommandError> {
    let text = pattern.to_string_lossy();
    let options = glob::MatchOptions { require_literal_leading_dot: true, ..glob::MatchOptions::new() };
    let matches = glob::glob_with(&text, options).map_err(|error| CommandError::Usage(format!("{text}: not a valid pattern: {error}")))?;
    let mut files = Vec::new();
    for matched in matches {
        let path = matched.map_err(|error| CommandError::Other(format!("{text}: {error}")))?;
        if importable(&path) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(CommandError::Usage(format!("{text}: no file matches this pattern")));
    }
    files.sort();
    Ok(files)
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
    if summary.flush_seconds > 0.0 {
        // Milvus 2.3 completes a flush only once its segment assignments expire, ~2 s after the
        // last write: a fixed cost per file (shared by the files of a daemon's group flush).
        println!("{}: of which the closing Milvus flush {:.2} s", file.display(), summary.flush_seconds);
    }
    if let Some(bulk) = summary.bulk {
        println!(
            "{}: through Milvus's bulk import: staged at {:.1} s, import tasks completed at {:.1} s, rows visible at {:.1} s",
            file.display(),
            bulk.staged_at,
            bulk.tasks_completed_at,
            bulk.visible_at
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for name in names {
            std::fs::write(dir.join(name), "id,text\n").unwrap();
        }
    }

    fn usage_message(result: Result<Vec<PathBuf>, CommandError>) -> String {
        match result {
            Err(CommandError::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn a_directory_stands_for_its_importable_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["b.csv", "a.jsonl", ".hidden.csv", "c.csv.part", "d.csv.tmp", "e.csv.crdownload"]);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        touch(&dir.path().join("sub"), &["nested.csv"]);
        let files = expand_inputs(&[dir.path().to_owned()]).unwrap();
        assert_eq!(files, vec![dir.path().join("a.jsonl"), dir.path().join("b.csv")]);
    }

    #[test]
    fn a_pattern_stands_for_the_files_it_matches() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["2.csv", "1.csv", "x.json", ".dot.csv", "y.csv.part"]);
        std::fs::create_dir(dir.path().join("dir.csv")).unwrap();
        let files = expand_inputs(&[dir.path().join("*.csv")]).unwrap();
        assert_eq!(files, vec![dir.path().join("1.csv"), dir.path().join("2.csv")]);
    }

    #[test]
    fn explicit_files_keep_their_order_and_repeats_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["a.csv", "b.csv", ".explicit.tmp"]);
        let (a, b, explicit) = (dir.path().join("a.csv"), dir.path().join("b.csv"), dir.path().join(".explicit.tmp"));
        let files = expand_inputs(&[b.clone(), explicit.clone(), dir.path().join("*.csv"), dir.path().to_owned()]).unwrap();
        assert_eq!(files, vec![b, explicit, a], "named files are taken as they are, whatever their name");
    }

    #[test]
    fn a_missing_name_is_passed_on_and_a_pattern_matching_nothing_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.csv");
        assert_eq!(expand_inputs(std::slice::from_ref(&missing)).unwrap(), vec![missing]);
        let pattern = dir.path().join("*.parquet");
        let message = usage_message(expand_inputs(std::slice::from_ref(&pattern)));
        assert!(message.contains(&*pattern.to_string_lossy()) && message.contains("no file matches"), "{message}");
        let message = usage_message(expand_inputs(&[dir.path().join("[")]));
        assert!(message.contains("not a valid pattern"), "{message}");
        let message = usage_message(expand_inputs(&[dir.path().to_owned()]));
        assert!(message.contains("no file to import"), "{message}");
    }
}
