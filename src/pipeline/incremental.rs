//! Incremental re-import: only changed rows cost work.
//!
//! With an `id_field`, a new version of a source reuses the primary keys of the old one. Before a
//! batch is embedded, this stage fetches the stored `_vecdrop_hash` of its keys from Milvus and
//! drops the rows whose content hash is unchanged: they are neither embedded nor written, only
//! counted (`rows_unchanged`). `--force` keeps every row.
//!
//! The lookup pays for itself when it saves the model. A batch whose rows all carry their vectors
//! would save only an upsert — idempotent, and about as costly to Milvus as the lookup — so such
//! batches are looked up while lookups keep finding stored keys, and after one finds none only
//! every [`REPROBE_EVERY`]th batch looks again ([`LookupPolicy`]). A first import of vectors thus
//! costs a few lookups, not one per batch; an unchanged row that is not looked up is written
//! again, harmlessly, and counted as imported.
//!
//! With `mirror = true` the stage also records every key of the file in the ledger (before the
//! batch is committed), and [`mirror_deletions`] deletes, once the file is imported, the rows whose
//! keys the source's previously mirrored version had and this one lacks — unless they are more
//! than `mirror_max_delete_share` of that version's rows: such a pass (a truncated upload, most
//! likely) is held back and reported, and the previous version stays the baseline. A source going
//! back to content it held before (A → B → A) is imported again ([`mirrored_elsewhere`]).

use tokio::sync::mpsc;
use tracing::Instrument;

use super::read::RowBatch;
use super::{blocking, FileJob, ImportError};
use crate::progress::MirrorHold;
use crate::sink::CollectionSpec;

/// After a lookup of vector-carrying rows found none stored, one batch in this many looks again.
const REPROBE_EVERY: usize = 16;

/// Decides, batch by batch, whether fetching stored hashes is worth a Milvus query (module doc).
#[derive(Debug)]
struct LookupPolicy {
    last_found_some: bool,
    skipped_since_lookup: usize,
}

impl Default for LookupPolicy {
    fn default() -> Self {
        Self { last_found_some: true, skipped_since_lookup: 0 }
    }
}

impl LookupPolicy {
    /// Whether to look up a batch of `rows` rows, `needing_model` of which have no vector.
    fn should_look_up(&mut self, rows: usize, needing_model: usize) -> bool {
        if rows == 0 {
            return false;
        }
        if needing_model > 0 || self.last_found_some || self.skipped_since_lookup + 1 >= REPROBE_EVERY {
            return true;
        }
        self.skipped_since_lookup += 1;
        false
    }

    /// Records what a lookup found.
    fn looked_up(&mut self, found: usize) {
        self.last_found_some = found > 0;
        self.skipped_since_lookup = 0;
    }
}

/// Keys deleted per round of [`mirror_deletions`].
const DELETE_PAGE: usize = 1024;

/// Which batches the stage looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookups {
    /// As the [`LookupPolicy`] decides (the upsert path: lookups that save the model).
    Policy,
    /// Every batch, with its stored keys attached ([`RowBatch::stored_keys`]): the bulk path
    /// must know which keys exist.
    All,
    /// The bulk path with keys new by construction (derived keys, a file never seen): the first
    /// batch is looked up to make sure, and if it finds stored keys (another pipeline wrote the
    /// same content, or the ledger was lost) every batch after it too.
    ProbeFirst,
}

/// Runs the stage until the input ends or the next stage hangs up.
pub(super) fn spawn(
    job: &FileJob<'_>,
    spec: CollectionSpec,
    lookups: Lookups,
    mut input: mpsc::Receiver<RowBatch>,
    output: mpsc::Sender<RowBatch>,
) -> tokio::task::JoinHandle<Result<(), ImportError>> {
    let (sink, ledger, telemetry) = (job.context.sink.clone(), job.context.ledger.clone(), job.context.telemetry.clone());
    let (pipeline, file_hash) = (job.pipeline.name.clone(), job.identity.hash.clone());
    let (mirror, skip_unchanged) = (job.pipeline.mirror, !job.force);
    let stage = async move {
        let mut policy = LookupPolicy::default();
        let mut look_up_all = lookups == Lookups::All;
        let mut probing = lookups == Lookups::ProbeFirst;
        while let Some(mut batch) = input.recv().await {
            let keys: Vec<String> = batch.rows.iter().map(|row| row.primary_key.clone()).collect();
            if mirror {
                let (ledger, pipeline, file_hash, keys) = (ledger.clone(), pipeline.clone(), file_hash.clone(), keys.clone());
                blocking(move || ledger.record_keys(&pipeline, &file_hash, keys.iter().map(String::as_str))).await?;
            }
            let needing_model = batch.rows.iter().filter(|row| row.vector.is_none()).count();
            let look_up = match lookups {
                Lookups::Policy => skip_unchanged && policy.should_look_up(keys.len(), needing_model),
                Lookups::All | Lookups::ProbeFirst => (look_up_all || probing) && !keys.is_empty(),
            };
            if look_up {
                let (stored, read) = sink.stored_hashes(&spec, &keys).await?;
                telemetry.looked_up(&pipeline, read.as_str());
                policy.looked_up(stored.len());
                if skip_unchanged {
                    let before = batch.rows.len();
                    batch.rows.retain(|row| stored.get(&row.primary_key) != Some(&row.row_hash));
                    batch.unchanged += (before - batch.rows.len()) as u64;
                }
                if lookups != Lookups::Policy {
                    if probing {
                        probing = false;
                        look_up_all = !stored.is_empty();
                        if look_up_all {
                            tracing::warn!(
                                stored = stored.len(),
                                "bulk import: keys derived from this file are already in the collection; looking up every batch"
                            );
                        }
                    }
                    batch.stored_keys = Some(stored.into_keys().collect());
                }
            }
            if output.send(batch).await.is_err() {
                break; // a later stage stopped; its error is reported there
            }
        }
        Ok(())
    };
    tokio::spawn(stage.in_current_span())
}

/// What a mirror pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct MirrorPass {
    /// Rows deleted because their keys left the source.
    pub deleted: u64,
    /// Set when the pass was held back instead.
    pub held_back: Option<MirrorHold>,
}

/// The source a mirrored file stands for: its canonical path.
fn source_of(path: &std::path::Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()).display().to_string()
}

/// Whether `job`'s source currently mirrors other content than this file's: then this content is
/// imported again even if it was imported before (the collection holds another version now).
pub(super) async fn mirrored_elsewhere(job: &FileJob<'_>) -> Result<bool, ImportError> {
    let (ledger, name, source) = (job.context.ledger.clone(), job.pipeline.name.clone(), source_of(job.path));
    let mirrored = blocking(move || ledger.mirrored_version(&name, &source)).await?;
    Ok(mirrored.is_some_and(|version| version != job.identity.hash))
}

/// After `job`'s file is imported: deletes from Milvus the rows whose keys the previously
/// mirrored version of the same source (the file's path) had and this version lacks, then makes
/// this version the source's baseline — or, when that would delete more than the pipeline's
/// `mirror_max_delete_share`, holds the pass back (nothing deleted, baseline unchanged). Repeating
/// it after a crash is harmless.
pub(super) async fn mirror_deletions(job: &FileJob<'_>) -> Result<MirrorPass, ImportError> {
    let FileJob { context, pipeline, path, identity, .. } = *job;
    let source = source_of(path);
    let (name, hash) = (pipeline.name.clone(), identity.hash.clone());
    let ledger = context.ledger.clone();
    let previous = {
        let (ledger, name, source) = (ledger.clone(), name.clone(), source.clone());
        blocking(move || ledger.mirrored_version(&name, &source)).await?
    };
    let mut pass = MirrorPass::default();
    if let Some(previous) = previous.as_ref().filter(|previous| **previous != hash) {
        let hold = {
            let (ledger, name, previous, hash) = (ledger.clone(), name.clone(), previous.clone(), hash.clone());
            blocking(move || {
                let previous_rows = ledger.count_keys(&name, &previous)?;
                let keys_gone = ledger.count_keys_gone(&name, &previous, &hash)?;
                Ok(MirrorHold { keys_gone, previous_rows })
            })
            .await?
        };
        if hold.keys_gone > 0 && hold.keys_gone as f64 > pipeline.mirror_max_delete_share * hold.previous_rows as f64 {
            tracing::warn!(
                %source,
                keys_gone = hold.keys_gone,
                previous_rows = hold.previous_rows,
                max_share = pipeline.mirror_max_delete_share,
                "mirror held back: this version lacks more of the source's rows than mirror_max_delete_share allows (a truncated upload?); nothing was deleted. Drop a complete version, or raise mirror_max_delete_share if the deletion is meant"
            );
            context.telemetry.mirror_held_back(&pipeline.name);
            pass.held_back = Some(hold);
            return Ok(pass);
        }
        pass.deleted = delete_gone_keys(job, previous).await?;
    }
    blocking(move || ledger.complete_mirror(&name, &source, &hash, previous.as_deref())).await?;
    Ok(pass)
}

/// Deletes, page by page, the keys of version `previous` that `job`'s version lacks.
async fn delete_gone_keys(job: &FileJob<'_>, previous: &str) -> Result<u64, ImportError> {
    let FileJob { context, pipeline, identity, .. } = *job;
    let spec = CollectionSpec::of(pipeline, context.embedder.dimension(), context.embedder.identity());
    let mut deleted = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = {
            let (ledger, name, previous, hash) =
                (context.ledger.clone(), pipeline.name.clone(), previous.to_owned(), identity.hash.clone());
            let after = after.clone();
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
        context.sink.flush(&spec.collection.name).await?;
        context.telemetry.deleted(&pipeline.name, deleted);
        tracing::info!(rows = deleted, "mirror: deleted rows whose keys left the source");
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_needing_the_model_are_always_looked_up() {
        let mut policy = LookupPolicy::default();
        for _ in 0..40 {
            assert!(policy.should_look_up(10, 1));
            policy.looked_up(0);
        }
        assert!(!policy.should_look_up(0, 0), "an empty batch has nothing to look up");
    }

    #[test]
    fn vector_batches_are_looked_up_while_lookups_find_rows_then_reprobed() {
        let mut policy = LookupPolicy::default();
        assert!(policy.should_look_up(10, 0), "the first batch looks");
        policy.looked_up(3);
        assert!(policy.should_look_up(10, 0), "found rows last time: look again");
        policy.looked_up(0);
        let looks: Vec<bool> = (0..2 * REPROBE_EVERY)
            .map(|_| {
                let look = policy.should_look_up(10, 0);
                if look {
                    policy.looked_up(0);
                }
                look
            })
            .collect();
        let expected: Vec<bool> = (1..=2 * REPROBE_EVERY).map(|index| index % REPROBE_EVERY == 0).collect();
        assert_eq!(looks, expected, "one batch in {REPROBE_EVERY} probes again");
        policy.looked_up(5);
        assert!(policy.should_look_up(10, 0), "a probe that finds rows turns lookups back on");
    }
}
