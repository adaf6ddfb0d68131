//! Incremental re-import: only changed rows cost work.
//!
//! With an `id_field`, a new version of a source reuses the primary keys of the old one. Before a
//! batch is embedded, this stage fetches the stored `_vecdrop_hash` of its keys from Milvus and
//! drops the rows whose content hash is unchanged: they are neither embedded nor written, only
//! counted (`rows_unchanged`). `--force` keeps every row.
//!
//! With `mirror = true` the stage also records every key of the file in the ledger (before the
//! batch is committed), and [`mirror_deletions`] deletes, once the file is imported, the rows whose
//! keys the source's previously mirrored version had and this one lacks.

use tokio::sync::mpsc;
use tracing::Instrument;

use super::read::RowBatch;
use super::{blocking, FileJob, ImportError};
use crate::sink::CollectionSpec;

/// Keys deleted per round of [`mirror_deletions`].
const DELETE_PAGE: usize = 1024;

/// Runs the stage until the input ends or the next stage hangs up.
pub(super) fn spawn(
    job: &FileJob<'_>,
    spec: CollectionSpec,
    mut input: mpsc::Receiver<RowBatch>,
    output: mpsc::Sender<RowBatch>,
) -> tokio::task::JoinHandle<Result<(), ImportError>> {
    let (sink, ledger) = (job.context.sink.clone(), job.context.ledger.clone());
    let (pipeline, file_hash) = (job.pipeline.name.clone(), job.identity.hash.clone());
    let (mirror, skip_unchanged) = (job.pipeline.mirror, !job.force);
    tokio::spawn(
        async move {
            while let Some(mut batch) = input.recv().await {
                let keys: Vec<String> = batch.rows.iter().map(|row| row.primary_key.clone()).collect();
                if mirror {
                    let (ledger, pipeline, file_hash, keys) = (ledger.clone(), pipeline.clone(), file_hash.clone(), keys.clone());
                    blocking(move || ledger.record_keys(&pipeline, &file_hash, keys.iter().map(String::as_str))).await?;
                }
                if skip_unchanged && !keys.is_empty() {
                    let stored = sink.stored_hashes(&spec, &keys).await?;
                    let before = batch.rows.len();
                    batch.rows.retain(|row| stored.get(&row.primary_key) != Some(&row.row_hash));
                    batch.unchanged += (before - batch.rows.len()) as u64;
                }
                if output.send(batch).await.is_err() {
                    break; // a later stage stopped; its error is reported there
                }
            }
            Ok(())
        }
        .in_current_span(),
    )
}

/// After `job`'s file is imported: deletes from Milvus the rows whose keys the previously
/// mirrored version of the same source (the file's path) had and this version lacks, then makes
/// this version the source's baseline. Repeating it after a crash is harmless.
pub(super) async fn mirror_deletions(job: &FileJob<'_>) -> Result<u64, ImportError> {
    let FileJob { context, pipeline, path, identity, .. } = *job;
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()).display().to_string();
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    let ledger = context.ledger.clone();
    let previous = {
        let (ledger, name, source) = (ledger.clone(), name.clone(), source.clone());
        blocking(move || ledger.mirrored_version(&name, &source)).await?
    };
    let mut deleted = 0u64;
    if let Some(previous) = previous.as_ref().filter(|previous| **previous != hash) {
        let spec = CollectionSpec::of(pipeline, context.embedder.dimension(), context.embedder.identity());
        let mut after: Option<String> = None;
        loop {
            let page = {
                let (ledger, name, previous, hash, after) = (ledger.clone(), name.clone(), previous.clone(), hash.clone(), after.clone());
                blocking(move || ledger.keys_gone(&name, &previous, &hash, after.as_deref(), DELETE_PAGE)).await?
            };
            if page.is_empty() {
                break;
            }
            context.sink.delete_keys(&spec, &page).await?;
            deleted += page.len() as u64;
            after = page.last().cloned();
        }
        if deleted > 0 {
            context.sink.flush(&spec.name).await?;
            context.telemetry.deleted(&pipeline.name, deleted);
            tracing::info!(rows = deleted, %source, "mirror: deleted rows whose keys left the source");
        }
    }
    blocking(move || ledger.complete_mirror(&name, &source, &hash, previous.as_deref())).await?;
    Ok(deleted)
}
