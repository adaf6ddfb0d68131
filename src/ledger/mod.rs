//! **commit**: per-file progress in sled, applied only after Milvus acknowledged a batch.
//!
//! A file is identified by `(pipeline, BLAKE3 of its content)`. Its entry moves
//! `importing{position} → imported | failed{reason}`; the position is a [`Checkpoint`]. A batch
//! covers the delta `(from, to]`; [`Ledger::commit`] applies it only when `from` equals the stored
//! position (anything else is a bug and stops the file loudly, as in Quickwit's checkpoints) and
//! flushes to disk before returning.
//!
//! Only one process can open a ledger (sled locks it); a second `vecdrop` on the same `state.dir`
//! gets [`LedgerError::Busy`].

mod mirror;
mod schedules;

use std::path::{Path, PathBuf};

pub use schedules::ScheduleEntry;
use serde::{Deserialize, Serialize};

use crate::dead_letter::now_rfc3339;
use crate::format::Checkpoint;

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process holds the ledger.
    #[error("ledger {path} is in use by another vecdrop process")]
    Busy {
        /// The ledger directory.
        path: PathBuf,
    },
    /// sled failed (disk full, corruption).
    #[error("ledger {path}: {message}")]
    Storage {
        /// The ledger directory.
        path: PathBuf,
        /// What sled said.
        message: String,
    },
    /// A batch's delta does not start where the file's committed position is: a bug.
    #[error("ledger: batch delta starts at {from:?} but the committed position of {file} is {stored:?}; refusing to jump")]
    IncompatibleDelta {
        /// The file.
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

/// Where a file is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileState {
    /// Rows are being imported; `position` says how far they are committed.
    Importing,
    /// Every row is committed and the collection flushed.
    Imported,
    /// Stopped with an error; importing it again resumes from `position`.
    Failed {
        /// Why.
        reason: String,
    },
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
    /// State.
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
}

impl BatchCounts {
    /// Counts with only `imported` and `rejected` set.
    pub fn new(imported: u64, rejected: u64) -> Self {
        Self { imported, rejected, unchanged: 0 }
    }
}

/// What [`Ledger::begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Same content already imported by this pipeline: nothing to do (unless forced).
    AlreadyImported(FileEntry),
    /// Import from this position (`Start` for a new file).
    From(Checkpoint),
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
            other => LedgerError::Storage { path: path.clone(), message: other.to_string() },
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(|error| LedgerError::Storage { path: path.clone(), message: error.to_string() });
        let (files, mirror_keys, sources, schedules) = (tree("files")?, tree("mirror_keys")?, tree("sources")?, tree("schedules")?);
        Ok(Self { path, files, mirror_keys, sources, schedules, db })
    }

    /// Registers an import of `hash` (seen at `path`) by `pipeline` and says where to start.
    /// A new file starts at `Start`; an interrupted or failed one resumes at its committed
    /// position; an imported one is reported as such unless `force` (then it starts over).
    pub fn begin(&self, pipeline: &str, hash: &str, size: u64, path: &str, force: bool) -> Result<Begin, LedgerError> {
        let now = now_rfc3339();
        let entry = match self.get(pipeline, hash)? {
            Some(entry) if entry.state == FileState::Imported && !force => return Ok(Begin::AlreadyImported(entry)),
            Some(mut entry) => {
                if entry.state == FileState::Imported {
                    entry.position = Checkpoint::Start;
                    entry.rows_imported = 0;
                    entry.rows_rejected = 0;
                    entry.rows_unchanged = 0;
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
                started_at: now.clone(),
                updated_at: now,
            },
        };
        let position = entry.position.clone();
        self.put(&entry)?;
        Ok(Begin::From(position))
    }

    /// Applies a batch's delta `(from, to]` with its counts, after Milvus acknowledged it, and
    /// flushes it to disk. Refuses a delta that does not start at the committed position.
    pub fn commit(&self, pipeline: &str, hash: &str, from: &Checkpoint, to: &Checkpoint, counts: BatchCounts) -> Result<(), LedgerError> {
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
        entry.updated_at = now_rfc3339();
        crate::failpoint::hit("ledger_before_write");
        self.put(&entry)?;
        crate::failpoint::hit("ledger_before_flush");
        self.flush()
    }

    /// Marks the file imported (after the last commit and the collection flush).
    pub fn finish(&self, pipeline: &str, hash: &str) -> Result<FileEntry, LedgerError> {
        self.set_state(pipeline, hash, FileState::Imported)
    }

    /// Marks the file failed with `reason`; its position stays, so a retry resumes.
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
        serde_json::from_slice(bytes)
            .map_err(|error| LedgerError::Storage { path: self.path.clone(), message: format!("undecodable entry: {error}") })
    }

    fn storage(&self, error: sled::Error) -> LedgerError {
        self.storage_message(error.to_string())
    }

    fn storage_message(&self, message: String) -> LedgerError {
        LedgerError::Storage { path: self.path.clone(), message }
    }
}

fn key(pipeline: &str, hash: &str) -> String {
    format!("{pipeline}/{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(byte_offset: u64, ordinal: u64) -> Checkpoint {
        Checkpoint::Text { byte_offset, line: ordinal + 2, ordinal }
    }

    #[test]
    fn commits_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ledger = Ledger::open(dir.path()).unwrap();
            assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", false).unwrap(), Begin::From(Checkpoint::Start));
            ledger.commit("docs", "h1", &Checkpoint::Start, &text(50, 5), BatchCounts::new(4, 1)).unwrap();
            ledger.commit("docs", "h1", &text(50, 5), &text(100, 9), BatchCounts::new(4, 0)).unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.begin("docs", "h1", 100, "b.csv", false).unwrap(), Begin::From(text(100, 9)));
        let entry = ledger.get("docs", "h1").unwrap().unwrap();
        assert_eq!((entry.rows_imported, entry.rows_rejected), (8, 1));
        assert_eq!(entry.paths, vec!["a.csv", "b.csv"]);
    }

    #[test]
    fn a_delta_that_does_not_start_at_the_committed_position_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", false).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(50, 5), BatchCounts::new(5, 0)).unwrap();
        let error = ledger.commit("docs", "h1", &text(40, 4), &text(100, 9), BatchCounts::new(5, 0)).unwrap_err();
        assert!(matches!(error, LedgerError::IncompatibleDelta { .. }), "{error}");
        assert!(matches!(
            ledger.commit("docs", "h2", &Checkpoint::Start, &text(1, 1), BatchCounts::new(1, 0)),
            Err(LedgerError::Missing(_))
        ));
    }

    #[test]
    fn imported_files_are_recognised_and_force_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", false).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(100, 9), BatchCounts::new(9, 0)).unwrap();
        ledger.finish("docs", "h1").unwrap();
        assert!(matches!(ledger.begin("docs", "h1", 100, "copy.csv", false).unwrap(), Begin::AlreadyImported(_)));
        // Another pipeline imports the same content independently.
        assert_eq!(ledger.begin("other", "h1", 100, "a.csv", false).unwrap(), Begin::From(Checkpoint::Start));
        assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", true).unwrap(), Begin::From(Checkpoint::Start));
        assert_eq!(ledger.get("docs", "h1").unwrap().unwrap().rows_imported, 0);
    }

    #[test]
    fn failed_files_resume_from_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h1", 100, "a.csv", false).unwrap();
        ledger.commit("docs", "h1", &Checkpoint::Start, &text(30, 3), BatchCounts::new(3, 0)).unwrap();
        let failed = ledger.fail("docs", "h1", "milvus unavailable").unwrap();
        assert_eq!(failed.state, FileState::Failed { reason: "milvus unavailable".into() });
        assert_eq!(ledger.begin("docs", "h1", 100, "a.csv", false).unwrap(), Begin::From(text(30, 3)));
    }
}
