//! **commit**: per-file progress in sled, applied only after Milvus acknowledged a batch.
//!
//! A file is identified by `(pipeline, BLAKE3 of its content)`. Its entry moves
//! `importing{position} → imported | failed{reason}`; the position is a [`Checkpoint`]. A batch
//! covers the delta `(from, to]`; [`Ledger::commit`] applies it only when `from` equals the stored
//! position (anything else is a bug and stops the file loudly, as in Quickwit's checkpoints) and
//! flushes to disk before returning.
//!
//! Only one process can open a ledger (sled locks it); a second `vecdrop` on the same `state.dir`
//! gets [`LedgerError::Busy`] — after [`Ledger::open_waiting`] gave a process that just died (a
//! `kill -9` followed by an immediate restart) a few seconds to let go of the lock.
//!
//! Each import *attempt* is recorded when it begins and cleared when it ends in an orderly way
//! (imported, failed, interrupted, transient fault). An attempt still open at the next
//! [`Ledger::begin`] means the process died during it; when it died [`BeginOptions::max_crashes`]
//! times in a row without committing anything, `begin` answers [`Begin::Crashed`] and the file is
//! set aside instead of killing the process again.
//!
//! The dead-letter file of each pipeline has a committed length ([`DeadLetterMark`]), written in
//! the same sled transaction as the batch whose letters it covers, so letters of a batch that is
//! replayed after a crash are cut off before they are written again.

mod bulk;
mod mirror;
mod schedules;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use bulk::{BulkCounts, BulkJob, StagedTask, StashKind};
pub use schedules::ScheduleEntry;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::fault::{Classify, Fault};
use crate::format::Checkpoint;
use crate::timestamp::now_rfc3339;

/// How long [`Ledger::open_waiting`] waits for another process to let go of the ledger.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process holds the ledger.
    #[error("ledger {path} is in use by another vecdrop process")]
    Busy { path: PathBuf },
    /// sled failed (disk full, I/O error, corruption).
    #[error("ledger {path}: {message}")]
    Storage {
        path: PathBuf,
        /// What sled said.
        message: String,
        /// Whether the data itself is damaged (a bug or a broken disk) rather than the disk being
        /// full or failing for now.
        corrupt: bool,
    },
    /// A batch's delta does not start where the file's committed position is: a bug.
    #[error("ledger: batch delta starts at {from:?} but the committed position of {file} is {stored:?}; refusing to jump")]
    IncompatibleDelta {
        file: String,
        /// Committed position.
        stored: Checkpoint,
        /// Where the batch starts.
        from: Checkpoint,
    },
    /// No entry for the file (commit before begin): a bug.
    #[error("ledger: no entry for {0}")]
    Missing(String),
}

impl Classify for LedgerError {
    fn fault(&self) -> Fault {
        match self {
            // Another process holds it: it may go away (a restart racing its predecessor).
            LedgerError::Busy { .. } => Fault::Transient,
            LedgerError::Storage { corrupt: false, .. } => Fault::Transient,
            LedgerError::Storage { corrupt: true, .. } | LedgerError::IncompatibleDelta { .. } | LedgerError::Missing(_) => Fault::Bug,
        }
    }
}

/// Where a file is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    /// Rows are being imported; `position` says how far they are committed.
    Importing,
    /// Every row is committed and the collection flushed.
    Imported,
    /// Stopped with an error; importing it again resumes from `position`.
    Failed { reason: String },
}

/// Everything the ledger knows about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Pipeline that imports it.
    pub pipeline: String,
    /// BLAKE3 of the content.
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Paths this content was seen at, most recent last.
    pub paths: Vec<String>,
    #[serde(flatten)]
    pub state: FileState,
    /// Committed position: every record before it is in Milvus or dead-lettered.
    pub position: Checkpoint,
    /// Rows committed.
    pub rows_imported: u64,
    /// Records dead-lettered (committed).
    pub rows_rejected: u64,
    /// Rows skipped because Milvus already held them with the same content (incremental re-import).
    #[serde(default)]
    pub rows_unchanged: u64,
    /// Rows not written because a later record of the same batch had the same key (last one wins).
    #[serde(default)]
    pub rows_superseded: u64,
    /// Where the attempt under way began; `Some` while an attempt is open. Still open at the next
    /// `begin` means the process died during it.
    #[serde(default)]
    pub attempt_from: Option<Checkpoint>,
    /// Attempts in a row that ended with the process dying before they committed anything.
    #[serde(default)]
    pub crashes: u32,
    /// When the first import started (RFC 3339).
    pub started_at: String,
    /// Last change.
    pub updated_at: String,
}

/// Row counts of one committed batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Rows Milvus acknowledged.
    pub imported: u64,
    /// Records dead-lettered.
    pub rejected: u64,
    /// Rows skipped because Milvus already held them unchanged.
    pub unchanged: u64,
    /// Rows dropped because a later record of the batch had the same key.
    pub superseded: u64,
}

impl BatchCounts {
    /// Counts with only `imported` and `rejected` set.
    pub fn new(imported: u64, rejected: u64) -> Self {
        Self { imported, rejected, ..Self::default() }
    }
}

/// How [`Ledger::begin`] treats the file's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginOptions {
    /// Start over even when the content was imported before (`--force`, or a mirrored source
    /// going back to a version it held earlier).
    pub restart: bool,
    /// Crashed attempts in a row after which the file is set aside ([`Begin::Crashed`]).
    pub max_crashes: u32,
}

/// The committed length of a pipeline's dead-letter file: letters past it belong to a batch
/// whose commit did not land, and are cut off before that batch is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterMark {
    /// The file's inode: a file rotated away by an operator is never cut.
    pub inode: u64,
    /// Bytes committed.
    pub length: u64,
}

/// What [`Ledger::begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
// Returned once per file import and matched at once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Begin {
    /// Same content already imported by this pipeline: nothing to do (unless forced).
    AlreadyImported(FileEntry),
    /// Import from this position (`Start` for a new file).
    From(Checkpoint),
    /// The last `crashes` attempts each ended with the process dying before any progress: set
    /// the file aside. The entry is marked failed with that reason.
    Crashed {
        /// Attempts in a row that died.
        crashes: u32,
        /// The entry, now failed.
        entry: Box<FileEntry>,
    },
}

/// The sled-backed ledger.
#[derive(Clone)]
pub struct Ledger {
    path: PathBuf,
    files: sled::Tree,
    /// `pipeline \0 file hash \0 primary key` of every row of files imported with `mirror`.
    mirror_keys: sled::Tree,
    /// `pipeline \0 source path` → hash of the source's last mirrored version.
    sources: sled::Tree,
    /// pipeline → [`ScheduleEntry`] (JSON).
    schedules: sled::Tree,
    /// pipeline → [`DeadLetterMark`] (JSON).
    dead_letters: sled::Tree,
    /// `pipeline/file hash` → [`BulkJob`] (JSON), while a file's bulk import is open.
    bulk_jobs: sled::Tree,
    /// Rows and dead letters waiting for a bulk job's commit ([`StashKind`]).
    bulk_stash: sled::Tree,
    db: sled::Db,
}

impl Ledger {
    /// Opens (or creates) the ledger under `state_dir/ledger`.
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        let path = state_dir.join("ledger");
        let db = sled::Config::new().path(&path).open().map_err(|error| match error {
            sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                LedgerError::Busy { path: path.clone() }
            }
            other => storage_error(&path, other),
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(|error| storage_error(&path, error));
        let (files, mirror_keys, sources) = (tree("files")?, tree("mirror_keys")?, tree("sources")?);
        let (schedules, dead_letters) = (tree("schedules")?, tree("dead_letters")?);
        let (bulk_jobs, bulk_stash) = (tree("bulk_jobs")?, tree("bulk_stash")?);
        Ok(Self { path, files, mirror_keys, sources, schedules, dead_letters, bulk_jobs, bulk_stash, db })
    }

    /// Like [`Ledger::open`], but waits up to `wait` while another process holds the ledger: a
    /// process killed a moment ago may not have let go of its lock yet.
    pub fn open_waiting(state_dir: &Path, wait: Duration) -> Result<Self, LedgerError> {
        let deadline = Instant::now() + wait;
        loop {
            match Self::open(state_dir) {
                Err(LedgerError::Busy { .. }) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                other => return other,
            }
        }
    }

    /// Registers an attempt to import `hash` (seen at `path`) by `pipeline` and says where to
    /// start. A new file starts at `Start`; an interrupted or failed one resumes at its committed
    /// position; an imported one is reported as such unless `options.restart` (then it starts
    /// over); one whose attempts keep killing the process is set aside (module doc).
    pub fn begin(&self, pipeline: &str, hash: &str, size: u64, path: &str, options: BeginOptions) -> Result<Begin, LedgerError> {
        let now = now_rfc3339();
        let mut entry = match self.get(pipeline, hash)? {
            Some(entry) if entry.state == FileState::Imported && !options.restart => return Ok(Begin::AlreadyImported(entry)),
            Some(mut entry) => {
                match &entry.state {
                    FileState::Imported => {
                        entry.position = Checkpoint::Start;
                        entry.rows_imported = 0;
                        entry.rows_rejected = 0;
                        entry.rows_unchanged = 0;
                        entry.rows_superseded = 0;
                        entry.crashes = 0;
                    }
                    // Dropped again after it failed: it gets its tries afresh.
                    FileState::Failed { .. } => entry.crashes = 0,
                    FileState::Importing => {}
                }
                if let Some(from) = entry.attempt_from.take() {
                    // A recorded bulk job is progress the position does not show: the process died
                    // while following Milvus's tasks, not because of the file.
                    let stalled = from == entry.position && !self.bulk_job_open(pipeline, hash)?;
                    entry.crashes = if stalled { entry.crashes + 1 } else { 0 };
                }
                entry.state = FileState::Importing;
                entry.paths.retain(|seen| seen != path);
                entry.paths.push(path.to_owned());
                entry.updated_at = now;
                entry
            }
            None => FileEntry {
                pipeline: pipeline.to_owned(),
                hash: hash.to_owned(),
                size,
                paths: vec![path.to_owned()],
                state: FileState::Importing,
                position: Checkpoint::Start,
                rows_imported: 0,
                rows_rejected: 0,
                rows_unchanged: 0,
                rows_superseded: 0,
                attempt_from: None,
                crashes: 0,
                started_at: now.clone(),
                updated_at: now,
            },
        };
        if entry.crashes >= options.max_crashes {
            let crashes = entry.crashes;
            entry.state = FileState::Failed { reason: crash_reason(crashes) };
            self.put(&entry)?;
            self.flush()?;
            return Ok(Begin::Crashed { crashes, entry: Box::new(entry) });
        }
        entry.attempt_from = Some(entry.position.clone());
        let position = entry.position.clone();
        self.put(&entry)?;
        self.flush()?;
        Ok(Begin::From(position))
    }

    /// Closes the open attempt of a file without changing its state: the import stopped in an
    /// orderly way (shutdown, a transient fault), so it does not count as a crash.
    pub fn end_attempt(&self, pipeline: &str, hash: &str) -> Result<(), LedgerError> {
        let mut entry = self.get(pipeline, hash)?.ok_or_else(|| LedgerError::Missing(key(pipeline, hash)))?;
        entry.attempt_from = None;
        self.put(&entry)?;
        self.flush()
    }

    /// The committed length of `pipeline`'s dead-letter file, if one was recorded.
    pub fn dead_letter_mark(&self, pipeline: &str) -> Result<Option<DeadLetterMark>, LedgerError> {
        let value = self.dead_letters.get(pipeline).map_err(|error| self.storage(error))?;
        value.map(|bytes| serde_json::from_slice(&bytes).map_err(|error| self.undecodable(error))).transpose()
    }

    /// Records `mark` as the committed length of `pipeline`'s dead-letter file (before a
    /// process's first letters, so that they can be cut off if their batch does not commit).
    pub fn set_dead_letter_mark(&self, pipeline: &str, mark: DeadLetterMark) -> Result<(), LedgerError> {
        self.dead_letters.insert(pipeline, serde_json::to_vec(&mark).expect("marks serialise")).map_err(|error| self.storage(error))?;
        self.flush()
    }

    /// Applies a batch's delta `(from, to]` with its counts, after Milvus acknowledged it, and
    /// flushes it to disk. Refuses a delta that does not start at the committed position. With
    /// `letters`, the pipeline's dead-letter file's new committed length is written in the same
    /// transaction.
    pub fn commit(
        &self,
        pipeline: &str,
        hash: &str,
        from: &Checkpoint,
        to: &Checkpoint,
        counts: BatchCounts,
        letters: Option<DeadLetterMark>,
    ) -> Result<(), LedgerError> {
        let mut entry = self.get(pipeline, hash)?.ok_or_else(|| LedgerError::Missing(key(pipeline, hash)))?;
        if &entry.position != from {
            return Err(LedgerError::IncompatibleDelta {
                file: entry.paths.last().cloned().unwrap_or_default(),
                stored: entry.position,
                from: from.clone(),
            });
        }
        entry.position = to.clone();
        entry.rows_imported += counts.imported;
        entry.rows_rejected += counts.rejected;
        entry.rows_unchanged += counts.unchanged;
        entry.rows_superseded += counts.superseded;
        entry.updated_at = now_rfc3339();
        crate::failpoint::hit("ledger_before_write");
        let entry_bytes = serde_json::to_vec(&entry).expect("entries serialise");
        let mark_bytes = letters.map(|mark| serde_json::to_vec(&mark).expect("marks serialise"));
        let file_key = key(pipeline, hash);
        (&self.files, &self.dead_letters)
            .transaction(|(files, dead_letters)| {
                files.insert(file_key.as_bytes(), entry_bytes.as_slice())?;
                if let Some(mark) = &mark_bytes {
                    dead_letters.insert(pipeline.as_bytes(), mark.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|error| match error {
                sled::transaction::TransactionError::Storage(error) => self.storage(error),
                sled::transaction::TransactionError::Abort(()) => self.storage_message("commit transaction aborted".to_owned()),
            })?;
        crate::failpoint::hit("ledger_before_flush");
        self.flush()
    }

    /// Marks the file imported (after the last commit and the collection flush) and closes its
    /// attempt.
    pub fn finish(&self, pipeline: &str, hash: &str) -> Result<FileEntry, LedgerError> {
        self.set_state(pipeline, hash, FileState::Imported)
    }

    /// Marks the file failed with `reason` and closes its attempt; its position stays, so a
    /// retry resumes.
    pub fn fail(&self, pipeline: &str, hash: &str, reason: &str) -> Result<FileEntry, LedgerError> {
        self.set_state(pipeline, hash, FileState::Failed { reason: reason.to_owned() })
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> Result<Vec<FileEntry>, LedgerError> {
        let mut entries = Vec::new();
        for item in self.files.iter() {
            let (_, value) = item.map_err(|error| self.storage(error))?;
            entries.push(self.decode(&value)?);
        }
        entries.sort_by(|left, right| left.started_at.cmp(&right.started_at));
        Ok(entries)
    }

    /// The entry of `hash` for `pipeline`.
    pub fn get(&self, pipeline: &str, hash: &str) -> Result<Option<FileEntry>, LedgerError> {
        let value = self.files.get(key(pipeline, hash)).map_err(|error| self.storage(error))?;
        value.map(|bytes| self.decode(&bytes)).transpose()
    }

    fn set_state(&self, pipeline: &str, hash: &str, state: FileState) -> Result<FileEntry, LedgerError> {
        let mut entry = self.get(pipeline, hash)?.ok_or_else(|| LedgerError::Missing(key(pipeline, hash)))?;
        entry.state = state;
        entry.attempt_from = None;
        if entry.state == FileState::Imported {
            entry.crashes = 0;
        }
        entry.updated_at = now_rfc3339();
        self.put(&entry)?;
        self.flush()?;
        Ok(entry)
    }

    fn put(&self, entry: &FileEntry) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(entry).expect("entries serialise");
        self.files.insert(key(&entry.pipeline, &entry.hash), bytes).map_err(|error| self.storage(error))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush().map_err(|error| self.storage(error))?;
        Ok(())
    }

    fn decode(&self, bytes: &[u8]) -> Result<FileEntry, LedgerError> {
        serde_json::from_slice(bytes).map_err(|error| self.undecodable(error))
    }

    fn undecodable(&self, error: serde_json::Error) -> LedgerError {
        LedgerError::Storage { path: self.path.clone(), message: format!("undecodable entry: {error}"), corrupt: true }
    }

    fn storage(&self, error: sled::Error) -> LedgerError {
        storage_error(&self.path, error)
    }

    fn storage_message(&self, message: String) -> LedgerError {
        LedgerError::Storage { path: self.path.clone(), message, corrupt: false }
    }
}

/// sled's error as a [`LedgerError::Storage`]: I/O (a full disk, a failing device) passes or is
/// the environment's; corruption and misuse are not.
fn storage_error(path: &Path, error: sled::Error) -> LedgerError {
    let corrupt = !matches!(error, sled::Error::Io(_));
    LedgerError::Storage { path: path.to_owned(), message: error.to_string(), corrupt }
}

/// The reason recorded for a file set aside after `crashes` crashed attempts.
pub fn crash_reason(crashes: u32) -> String {
    format!(
        "the import stopped the process {crashes} times in a row before committing anything (a crash or an out-of-memory kill while reading this file); it was set aside so that other files go on"
    )
}

fn key(pipeline: &str, hash: &str) -> String {
    format!("{pipeline}/{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: BeginOptions = BeginOptions { restart: false, max_crashes: 3 };
    const RESTART: BeginOptions = BeginOptions { restart: true, max_crashes: 3 };

    fn text(byte_offset: u64, ordinal: u64) -> Checkpoint {
        Checkpoint::Text { byte_offset, line: ordinal + 2, ordinal }
    }

    #[test]
    fn commits_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = Ledger::open(dir.path()).unwrap();
            assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(Checkpoint::Start));
            ledger.commit("docs", "h1", &Checkpoint::Start, &text(50, 5), BatchCounts::new(4, 1), None).unwrap();
            ledger.commit("docs", "h1", &text(50, 5), &text(100, 9), BatchCounts::new(4, 0), None).unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.begin("docs", "h1", 100, "b.csv", OPTIONS).unwrap(), Begin::From(text(100, 9)));
        let entry = ledger.get("docs", "h1").unwrap().unwrap();
        assert_eq!((entry.rows_imported, entry.rows_rejected), (8, 1));
        assert_eq!(entry.paths, vec!["a.csv", "b.csv"]);
    }

    #[test]
    fn a_delta_that_does_not_start_at_the_committed_position_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(50, 5), BatchCounts::new(5, 0), None).unwrap();
        let error = ledger.commit("docs", "h1", &text(40, 4), &text(100, 9), BatchCounts::new(5, 0), None).unwrap_err();
        assert!(matches!(error, LedgerError::IncompatibleDelta { .. }), "{error}");
        assert!(matches!(
            ledger.commit("docs", "h2", &Checkpoint::Start, &text(1, 1), BatchCounts::new(1, 0), None),
            Err(LedgerError::Missing(_))
        ));
    }

    #[test]
    fn imported_files_are_recognised_and_force_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(100, 9), BatchCounts::new(9, 0), None).unwrap();
        ledger.finish("docs", "h1").unwrap();
        assert!(matches!(ledger.begin("docs", "h1", 100, "copy.csv", OPTIONS).unwrap(), Begin::AlreadyImported(_)));
        // Another pipeline imports the same content independently.
        assert_eq!(ledger.begin("other", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(Checkpoint::Start));
        assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", RESTART).unwrap(), Begin::From(Checkpoint::Start));
        assert_eq!(ledger.get("docs", "h1").unwrap().unwrap().rows_imported, 0);
    }

    #[test]
    fn failed_files_resume_from_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(30, 3), BatchCounts::new(3, 0), None).unwrap();
        let failed = ledger.fail("docs", "h1", "milvus unavailable").unwrap();
        assert_eq!(failed.state, FileState::Failed { reason: "milvus unavailable".into() });
        assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(text(30, 3)));
    }

    #[test]
    fn attempts_that_die_without_progress_are_counted_and_set_the_file_aside() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        // Three starts, each "killed" (no end_attempt) before committing anything.
        for _ in 0..3 {
            assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(Checkpoint::Start));
        }
        match ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap() {
            Begin::Crashed { crashes, entry } => {
                assert_eq!(crashes, 3);
                assert!(matches!(&entry.state, FileState::Failed { reason } if reason.contains("stopped the process 3 times")));
            }
            other => panic!("expected Crashed, got {other:?}"),
        }
        // Dropped again after being set aside, it gets its tries afresh.
        assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(Checkpoint::Start));
    }

    #[test]
    fn progress_or_an_orderly_end_between_attempts_is_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let mut position = Checkpoint::Start;
        for round in 1..=5u64 {
            // Each attempt commits a batch and then dies: progress, so never set aside.
            assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(position.clone()));
            ledger.commit("docs", "h1", &position, &text(round * 10, round), BatchCounts::new(1, 0), None).unwrap();
            position = text(round * 10, round);
        }
        for _ in 0..5 {
            // Orderly ends (Milvus away, shutdown) do not count either.
            assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap(), Begin::From(position.clone()));
            ledger.end_attempt("docs", "h1").unwrap();
        }
        assert_eq!(ledger.get("docs", "h1").unwrap().unwrap().crashes, 0);
    }

    #[test]
    fn dead_letter_marks_commit_with_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.dead_letter_mark("docs").unwrap(), None);
        ledger.set_dead_letter_mark("docs", DeadLetterMark { inode: 7, length: 0 }).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", OPTIONS).unwrap();
        let mark = DeadLetterMark { inode: 7, length: 420 };
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(30, 3), BatchCounts::new(2, 1), Some(mark)).unwrap();
        drop(ledger);
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.dead_letter_mark("docs").unwrap(), Some(mark));
        assert_eq!(ledger.dead_letter_mark("other").unwrap(), None);
    }

    #[test]
    fn a_held_ledger_is_waited_for_then_reported_busy() {
        let dir = tempfile::tempdir().unwrap();
        let held = Ledger::open(dir.path()).unwrap();
        let error = Ledger::open_waiting(dir.path(), Duration::from_millis(300)).err().expect("busy");
        assert!(matches!(error, LedgerError::Busy { .. }), "{error}");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        Ledger::open_waiting(dir.path(), Duration::from_secs(30)).expect("opened once released");
        releaser.join().unwrap();
    }
}
