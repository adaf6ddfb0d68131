//! `vecdrop import FILE...`: one-shot import with a progress bar and a summary.

use std::path::PathBuf;

use super::{open_context, require_file, CommandError, EXIT_DEAD_LETTERS, EXIT_OK};
use crate::pipeline::{import_file, FileOutcome};
use crate::progress::ImportSummary;
use crate::settings::Settings;

/// Imports `files` with the pipeline named `pipeline` (or the only one), resuming interrupted
/// files and skipping content imported before unless `force`. Prints one line per file and a
/// total. Returns [`EXIT_DEAD_LETTERS`] when any record was dead-lettered.
pub async fn import(settings: Settings, pipeline: Option<&str>, force: bool, files: &[PathBuf]) -> Result<u8, CommandError> {
    let pipeline = settings.pipeline(pipeline).map_err(CommandError::Usage)?.clone();
    for file in files {
        require_file(file)?;
    }
    let context = open_context(settings, true).await?;
    let mut total = ImportSummary::default();
    for file in files {
        match import_file(&context, &pipeline, file, force).await? {
            FileOutcome::Imported(summary) => {
                println!(
                    "{}: {} rows imported, {} rejected, {:.1} s, {:.0} rows/s",
                    file.display(),
                    summary.rows_imported,
                    summary.rows_rejected,
                    summary.seconds,
                    summary.rows_per_second()
                );
                total.rows_imported += summary.rows_imported;
                total.rows_rejected += summary.rows_rejected;
                total.seconds += summary.seconds;
            }
            FileOutcome::AlreadyImported(entry) => println!(
                "{}: already imported ({} rows, same content as {}); use --force to import it again",
                file.display(),
                entry.rows_imported,
                entry.paths.first().map(String::as_str).unwrap_or("an earlier file")
            ),
        }
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
        let letters = crate::dead_letter::path_for(&context.settings.resolve(&context.settings.state.dir), &pipeline.name);
        eprintln!("{} record(s) were rejected; see {}", total.rows_rejected, letters.display());
        return Ok(EXIT_DEAD_LETTERS);
    }
    Ok(EXIT_OK)
}
