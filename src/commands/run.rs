//! `vecdrop run`: the daemon. For now it imports the files already present in each pipeline's
//! drop directories at start-up, then stays up until SIGINT/SIGTERM. Watching and schedules are
//! the daemon issue's work.

use std::path::PathBuf;

use super::{open_context, CommandError, EXIT_DEAD_LETTERS, EXIT_OK};
use crate::pipeline::{import_file, FileOutcome};
use crate::settings::Settings;

/// Runs until `shutdown` resolves.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<u8, CommandError> {
    let context = open_context(settings, false).await?;
    let mut rejected = 0;
    for pipeline in &context.settings.pipelines {
        for file in files_in_drop_dirs(&context.settings, &pipeline.watch) {
            match import_file(&context, pipeline, &file, false).await {
                Ok(FileOutcome::AlreadyImported(_)) => {
                    tracing::info!(pipeline = %pipeline.name, file = %file.display(), "already imported")
                }
                Ok(FileOutcome::Imported(summary)) => {
                    rejected += summary.rows_rejected;
                    tracing::info!(
                        pipeline = %pipeline.name,
                        file = %file.display(),
                        rows = summary.rows_imported,
                        rejected = summary.rows_rejected,
                        rows_per_second = format!("{:.0}", summary.rows_per_second()),
                        "file imported"
                    );
                }
                Err(error) => tracing::error!(pipeline = %pipeline.name, file = %file.display(), %error, "file failed"),
            }
        }
    }
    if let Some(first) = context.settings.pipelines.first() {
        tracing::info!("try: vecdrop search --config {} --pipeline {} \"your question\"", context.settings.path.display(), first.name);
    }
    tracing::info!("start-up imports done; watching and schedules are not built yet: waiting for SIGINT/SIGTERM");
    shutdown.await;
    tracing::info!("shutting down");
    Ok(if rejected > 0 { EXIT_DEAD_LETTERS } else { EXIT_OK })
}

/// Regular, non-hidden files directly in `dirs` (relative to the config), sorted by name.
fn files_in_drop_dirs(settings: &Settings, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        let dir = settings.resolve(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            tracing::warn!(dir = %dir.display(), "drop directory cannot be read");
            continue;
        };
        files.extend(entries.flatten().map(|entry| entry.path()).filter(|path| {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or(".");
            path.is_file() && !name.starts_with('.') && ![".tmp", ".part", ".crdownload"].iter().any(|suffix| name.ends_with(suffix))
        }));
    }
    files.sort();
    files
}
