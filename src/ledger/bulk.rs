//! Bulk-import jobs in the ledger: what a file staged for Milvus's bulk import, the tasks Milvus
//! runs for it, and what must happen once they complete.
//!
//! A job is recorded (and flushed) *before* its first task is submitted, and every task id as soon
//! as Milvus returns it. After a crash the import finds the record and follows the recorded tasks
//! instead of staging and submitting again (bulk import only inserts: a second submission would
//! duplicate rows); a file whose submission was under way when the process died is looked up
//! among Milvus's tasks by its path. The rows that must wait for the job (a key met again later in
//! the same file, upserted after the job) and the file's dead letters are stashed next to the
//! record, so the job's single commit can write them after Milvus finished.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{key, Ledger, LedgerError};
use crate::format::Checkpoint;

/// One staged file of a job and the task importing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedTask {
    /// The file as Milvus reads it (absolute path on its storage).
    pub file: String,
    /// Rows it holds.
    pub rows: u64,
    /// Milvus's task (or job) id, once submitted.
    pub task: Option<String>,
    /// Submissions so far (a failed task is submitted again up to the pipeline's limit).
    pub submissions: u32,
    /// Set while a submission is under way: a crash then leaves it unknown whether Milvus created
    /// the task, and recovery looks for it among Milvus's tasks.
    #[serde(default)]
    pub submitting: bool,
    /// Whether Milvus reported the task completed.
    #[serde(default)]
    pub done: bool,
    /// Keys sampled from the file: its rows are visible once queries find them all.
    #[serde(default)]
    pub samples: Vec<String>,
    /// Tasks of this file that failed (never adopted after a crash).
    #[serde(default)]
    pub failed_tasks: Vec<String>,
    /// The collection's tasks Milvus listed just before the latest submission: after a crash,
    /// any task not among them is a candidate for that submission.
    #[serde(default)]
    pub known_before: Vec<String>,
}

/// Row counts of a whole bulk job (the single commit that ends it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCounts {
    /// Rows staged for Milvus's bulk import (keys new to the collection).
    pub staged: u64,
    /// Rows upserted while staging (keys the collection already held).
    pub upserted: u64,
    /// Rows held until the job completes (a key met again in the file), then upserted.
    pub deferred: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Rows skipped because Milvus held them unchanged.
    pub unchanged: u64,
    /// Rows dropped for a later record of the same batch with the same key.
    pub superseded: u64,
}

impl BulkCounts {
    /// Rows written by upserts (at once or deferred): the job's file needs a flush (imported
    /// segments do not).
    pub fn upserted_rows(&self) -> u64 {
        self.upserted + self.deferred
    }
}

/// A file's bulk-import job, as recorded before its first submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJob {
    /// Pipeline importing the file.
    pub pipeline: String,
    /// The file's content hash.
    pub hash: String,
    /// The job folder holding the staged files (a bucket job's local spool).
    pub dir: PathBuf,
    /// The job's object prefix, when it is staged in a bucket.
    #[serde(default)]
    pub object_prefix: Option<String>,
    /// The collection the job imports into (no other file of the process writes to it while the
    /// job is open).
    #[serde(default)]
    pub collection: String,
    /// The staged files and their tasks, in order.
    pub tasks: Vec<StagedTask>,
    /// Committed position the staging started at.
    pub from: Checkpoint,
    /// Position after the file's last record: the job's commit moves the file there.
    pub to: Checkpoint,
    /// What the job's commit adds to the file's counts.
    pub counts: BulkCounts,
}

/// What a stash entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StashKind {
    /// A row (with its vector) to upsert once the job completed.
    Deferred,
    /// A dead letter to append with the job's commit.
    Letter,
}

impl StashKind {
    fn tag(self) -> u8 {
        match self {
            StashKind::Deferred => b'd',
            StashKind::Letter => b'l',
        }
    }
}

fn stash_prefix(pipeline: &str, hash: &str, kind: StashKind) -> Vec<u8> {
    let mut prefix = key(pipeline, hash).into_bytes();
    prefix.push(0);
    prefix.push(kind.tag());
    prefix
}

fn stash_key(pipeline: &str, hash: &str, kind: StashKind, sequence: u64) -> Vec<u8> {
    let mut stash_key = stash_prefix(pipeline, hash, kind);
    stash_key.extend_from_slice(&sequence.to_be_bytes());
    stash_key
}

impl Ledger {
    /// The recorded bulk job of `hash` for `pipeline`, if one is open.
    pub fn bulk_job(&self, pipeline: &str, hash: &str) -> Result<Option<BulkJob>, LedgerError> {
        let value = self.bulk_jobs.get(key(pipeline, hash)).map_err(|error| self.storage(error))?;
        value.map(|bytes| serde_json::from_slice(&bytes).map_err(|error| self.undecodable(error))).transpose()
    }

    /// Whether a bulk job of `hash` by `pipeline` is open (without decoding it).
    pub(super) fn bulk_job_open(&self, pipeline: &str, hash: &str) -> Result<bool, LedgerError> {
        self.bulk_jobs.contains_key(key(pipeline, hash)).map_err(|error| self.storage(error))
    }

    /// The open bulk jobs importing into `collection`.
    pub fn bulk_jobs_into(&self, collection: &str) -> Result<Vec<BulkJob>, LedgerError> {
        let mut jobs = Vec::new();
        for item in self.bulk_jobs.iter() {
            let (_, value) = item.map_err(|error| self.storage(error))?;
            let job: BulkJob = serde_json::from_slice(&value).map_err(|error| self.undecodable(error))?;
            if job.collection == collection {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Records `job` (replacing an earlier record of the same file) and flushes the ledger, the
    /// stashed rows and letters with it: once this returns, a crash finds the job.
    pub fn put_bulk_job(&self, job: &BulkJob) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(job).expect("bulk jobs serialise");
        self.bulk_jobs.insert(key(&job.pipeline, &job.hash), bytes).map_err(|error| self.storage(error))?;
        self.flush()
    }

    /// Stashes `items` (already serialised) of `kind` for the job of `hash`, numbered from
    /// `first`. Not flushed: [`Ledger::put_bulk_job`] flushes them with the record.
    pub fn stash(&self, pipeline: &str, hash: &str, kind: StashKind, first: u64, items: &[Vec<u8>]) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for (offset, item) in items.iter().enumerate() {
            batch.insert(stash_key(pipeline, hash, kind, first + offset as u64), item.as_slice());
        }
        self.bulk_stash.apply_batch(batch).map_err(|error| self.storage(error))
    }

    /// Up to `limit` stashed items of `kind` numbered from `from` on, with their numbers.
    pub fn stashed(
        &self,
        pipeline: &str,
        hash: &str,
        kind: StashKind,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
        let prefix = stash_prefix(pipeline, hash, kind);
        let mut items = Vec::new();
        for item in self.bulk_stash.range(stash_key(pipeline, hash, kind, from)..).take(limit) {
            let (stored_key, value) = item.map_err(|error| self.storage(error))?;
            if !stored_key.starts_with(&prefix) || stored_key.len() != prefix.len() + 8 {
                break;
            }
            let sequence = u64::from_be_bytes(stored_key[prefix.len()..].try_into().expect("8 bytes"));
            items.push((sequence, value.to_vec()));
        }
        Ok(items)
    }

    /// Removes the bulk job of `hash` and everything stashed for it, then flushes. Harmless when
    /// there is none.
    pub fn clear_bulk_job(&self, pipeline: &str, hash: &str) -> Result<(), LedgerError> {
        self.bulk_jobs.remove(key(pipeline, hash)).map_err(|error| self.storage(error))?;
        for kind in [StashKind::Deferred, StashKind::Letter] {
            let prefix = stash_prefix(pipeline, hash, kind);
            let mut batch = sled::Batch::default();
            for item in self.bulk_stash.scan_prefix(&prefix) {
                let (stored_key, _) = item.map_err(|error| self.storage(error))?;
                batch.remove(stored_key);
            }
            self.bulk_stash.apply_batch(batch).map_err(|error| self.storage(error))?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ledger_hash: &str) -> BulkJob {
        BulkJob {
            pipeline: "p".into(),
            hash: ledger_hash.into(),
            dir: "/staging/p/job".into(),
            object_prefix: None,
            collection: "c".into(),
            tasks: vec![StagedTask {
                file: "/staging/p/job/part-00000.parquet".into(),
                rows: 10,
                task: None,
                submissions: 0,
                submitting: true,
                done: false,
                samples: vec!["k".into()],
                failed_tasks: Vec::new(),
                known_before: Vec::new(),
            }],
            from: Checkpoint::Start,
            to: Checkpoint::Start,
            counts: BulkCounts { staged: 10, ..BulkCounts::default() },
        }
    }

    #[test]
    fn a_recorded_job_and_its_stash_survive_a_reopen_and_are_cleared_together() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = Ledger::open(dir.path()).unwrap();
            ledger.stash("p", "h", StashKind::Letter, 0, &[b"a".to_vec(), b"b".to_vec()]).unwrap();
            ledger.stash("p", "h", StashKind::Deferred, 0, &[b"row".to_vec()]).unwrap();
            ledger.stash("p", "h2", StashKind::Letter, 0, &[b"other".to_vec()]).unwrap();
            ledger.put_bulk_job(&job("h")).unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.bulk_job("p", "h").unwrap(), Some(job("h")));
        assert_eq!(ledger.stashed("p", "h", StashKind::Letter, 0, 10).unwrap(), vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        assert_eq!(ledger.stashed("p", "h", StashKind::Letter, 1, 10).unwrap(), vec![(1, b"b".to_vec())], "paging from a number");
        assert_eq!(ledger.stashed("p", "h", StashKind::Deferred, 0, 10).unwrap(), vec![(0, b"row".to_vec())]);
        ledger.clear_bulk_job("p", "h").unwrap();
        assert_eq!(ledger.bulk_job("p", "h").unwrap(), None);
        assert!(ledger.stashed("p", "h", StashKind::Letter, 0, 10).unwrap().is_empty());
        assert!(ledger.stashed("p", "h", StashKind::Deferred, 0, 10).unwrap().is_empty());
        assert_eq!(ledger.stashed("p", "h2", StashKind::Letter, 0, 10).unwrap().len(), 1, "another file's stash stays");
    }

    #[test]
    fn a_restart_while_a_bulk_job_is_recorded_is_not_counted_as_a_crash() {
        use crate::ledger::{Begin, BeginOptions};
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let options = BeginOptions { restart: false, max_crashes: 1 };
        assert!(matches!(ledger.begin("p", "h", 10, "/f", options).unwrap(), Begin::From(_)));
        ledger.put_bulk_job(&job("h")).unwrap();
        // The process died while following the tasks (the attempt is still open).
        assert!(matches!(ledger.begin("p", "h", 10, "/f", options).unwrap(), Begin::From(_)), "following Milvus's tasks is progress");
        ledger.clear_bulk_job("p", "h").unwrap();
        assert!(matches!(ledger.begin("p", "h", 10, "/f", options).unwrap(), Begin::Crashed { .. }), "without a job it is a crash");
    }
}
