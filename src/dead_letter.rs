//! Dead letters: records that could not become rows, kept with everything needed to fix and
//! replay them. One JSON object per line in `<state.dir>/dead-letters/<pipeline>.jsonl`, each
//! written once even when its batch is replayed after a crash ([`DeadLetterWriter`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::fault::{Classify, Fault};
use crate::format::RecordPosition;
use crate::ledger::{DeadLetterMark, Ledger, LedgerError};

/// Why a record was rejected, in broad strokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCause {
    /// The record itself cannot be parsed (a broken CSV row, invalid JSON).
    Malformed,
    /// The record parses, but a field's value does not fit the pipeline (wrong type, too long,
    /// missing).
    InvalidValue,
}

impl RejectCause {
    /// The label in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCause::Malformed => "malformed",
            RejectCause::InvalidValue => "invalid_value",
        }
    }
}

/// One rejected record.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// RFC 3339 time it was written.
    pub time: String,
    /// Pipeline that read it.
    pub pipeline: String,
    /// The file it came from.
    pub file: String,
    /// BLAKE3 of the file's content.
    pub file_hash: String,
    /// Ordinal, line and byte offset of the record.
    #[serde(flatten)]
    pub position: RecordPosition,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What kind of problem it is (counted by cause in the log and the metrics).
    pub cause: RejectCause,
    /// What was expected and what was found.
    pub reason: String,
    /// The raw record, at most 4 KiB.
    pub raw: String,
}

/// The dead-letter file of `pipeline` under `state_dir`.
pub fn path_for(state_dir: &Path, pipeline: &str) -> PathBuf {
    state_dir.join("dead-letters").join(format!("{pipeline}.jsonl"))
}

/// Why letters could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The file cannot be written (a full disk, permissions): stop rather than lose records.
    #[error("dead-letter file {path}: {source}")]
    Io {
        /// The dead-letter file.
        path: PathBuf,
        source: std::io::Error,
    },
    /// Its committed length cannot be read or recorded (boxed: a ledger error is large).
    #[error(transparent)]
    Ledger(Box<LedgerError>),
}

impl From<LedgerError> for DeadLetterError {
    fn from(error: LedgerError) -> Self {
        DeadLetterError::Ledger(Box::new(error))
    }
}

impl Classify for DeadLetterError {
    fn fault(&self) -> Fault {
        match self {
            DeadLetterError::Io { .. } => Fault::Transient,
            DeadLetterError::Ledger(error) => error.fault(),
        }
    }
}

/// The dead-letter writers of a process, one per pipeline, shared by every file the pipeline
/// imports at the same time (their letters and commits take turns).
#[derive(Clone)]
pub struct DeadLetters {
    state_dir: PathBuf,
    ledger: Ledger,
    writers: Arc<Mutex<HashMap<String, Arc<Mutex<DeadLetterWriter>>>>>,
}

impl DeadLetters {
    /// Writers under `state_dir`, whose committed lengths live in `ledger`.
    pub fn new(state_dir: &Path, ledger: Ledger) -> Self {
        Self { state_dir: state_dir.to_owned(), ledger, writers: Arc::default() }
    }

    /// The writer of `pipeline`. Hold its lock from the append to the ledger commit that records
    /// the returned mark, so that no other batch's letters come in between.
    pub fn writer(&self, pipeline: &str) -> Arc<Mutex<DeadLetterWriter>> {
        let mut writers = self.writers.lock().expect("dead-letter writers lock");
        let writer = writers.entry(pipeline.to_owned()).or_insert_with(|| {
            Arc::new(Mutex::new(DeadLetterWriter {
                path: path_for(&self.state_dir, pipeline),
                pipeline: pipeline.to_owned(),
                ledger: self.ledger.clone(),
                file: None,
            }))
        });
        Arc::clone(writer)
    }
}

/// Appends dead letters of one pipeline, durably, exactly once per committed batch (module doc of
/// [`crate::ledger`]): the file is created on the first letter; the first append of a process
/// first cuts off letters a crashed process wrote for a batch it never committed.
pub struct DeadLetterWriter {
    path: PathBuf,
    pipeline: String,
    ledger: Ledger,
    file: Option<File>,
}

impl DeadLetterWriter {
    /// Where the letters go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `letters`, syncs them to disk and returns the file's new committed length, to be
    /// committed with their batch ([`Ledger::commit`]).
    pub fn append(&mut self, letters: &[DeadLetter]) -> Result<DeadLetterMark, DeadLetterError> {
        let appended = self.append_synced(letters);
        if appended.is_err() {
            // Part of the letters may be in the file: the next append cuts them off first.
            self.uncommitted();
        }
        appended
    }

    fn append_synced(&mut self, letters: &[DeadLetter]) -> Result<DeadLetterMark, DeadLetterError> {
        if self.file.is_none() {
            self.file = Some(self.open_recovered()?);
        }
        let io_error = |source| DeadLetterError::Io { path: self.path.clone(), source };
        let file = self.file.as_ref().expect("opened above");
        let mut writer = BufWriter::new(file);
        for letter in letters {
            serde_json::to_writer(&mut writer, letter).map_err(|error| io_error(error.into()))?;
            writer.write_all(b"\n").map_err(io_error)?;
        }
        writer.flush().map_err(io_error)?;
        drop(writer);
        file.sync_data().map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        Ok(DeadLetterMark { inode: metadata.ino(), length: metadata.len() })
    }

    /// Forgets the open file after appended letters could not be committed: the next append
    /// reopens it and cuts it back to the ledger's committed length, so a retried batch does not
    /// write its letters twice.
    pub fn uncommitted(&mut self) {
        self.file = None;
    }

    /// Opens the file for appending; cuts it back to the ledger's committed length when a crashed
    /// batch left letters past it, and records a mark when none fits this file.
    fn open_recovered(&self) -> Result<File, DeadLetterError> {
        let io_error = |source| DeadLetterError::Io { path: self.path.clone(), source };
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        let current = DeadLetterMark { inode: metadata.ino(), length: metadata.len() };
        match self.ledger.dead_letter_mark(&self.pipeline)? {
            Some(mark) if mark.inode == current.inode && mark.length < current.length => {
                file.set_len(mark.length).map_err(io_error)?;
                file.sync_data().map_err(io_error)?;
                tracing::info!(
                    file = %self.path.display(),
                    bytes = current.length - mark.length,
                    "dropped dead letters of a batch that never committed; it is replayed"
                );
            }
            Some(mark) if mark == current => {}
            // New, rotated away or truncated by an operator: what is there now is the baseline.
            _ => self.ledger.set_dead_letter_mark(&self.pipeline, current)?,
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Checkpoint;
    use crate::ledger::{BatchCounts, BeginOptions};

    fn letter(ordinal: u64) -> DeadLetter {
        DeadLetter {
            time: crate::timestamp::now_rfc3339(),
            pipeline: "docs".into(),
            file: "a.csv".into(),
            file_hash: "ab".into(),
            position: RecordPosition { ordinal, line: Some(ordinal + 2), byte_offset: 40 * ordinal },
            field: Some("count".into()),
            cause: RejectCause::InvalidValue,
            reason: "expected an int64".into(),
            raw: "x,y".into(),
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    #[test]
    fn letters_are_json_lines_with_position_fields() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let writer = DeadLetters::new(dir.path(), ledger).writer("docs");
        let mut writer = writer.lock().unwrap();
        writer.append(&[letter(3), letter(4)]).unwrap();
        let lines = lines(writer.path());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["line"], 5);
        assert_eq!(lines[0]["byte_offset"], 120);
        assert_eq!(lines[0]["field"], "count");
    }

    #[test]
    fn letters_of_a_batch_that_never_committed_are_cut_off_before_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let options = BeginOptions { restart: false, max_crashes: 3 };
        let at = |ordinal| Checkpoint::Text { byte_offset: ordinal * 10, line: ordinal + 2, ordinal };
        {
            let ledger = Ledger::open(dir.path()).unwrap();
            ledger.begin("docs", "h", 1, "a.csv", options).unwrap();
            let writer = DeadLetters::new(dir.path(), ledger.clone()).writer("docs");
            let mut writer = writer.lock().unwrap();
            let mark = writer.append(&[letter(1)]).unwrap();
            ledger.commit("docs", "h", &Checkpoint::Start, &at(2), BatchCounts::new(1, 1), Some(mark)).unwrap();
            // The next batch's letters are written, then the process dies before its commit.
            writer.append(&[letter(3), letter(4)]).unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        let writer = DeadLetters::new(dir.path(), ledger).writer("docs");
        let mut writer = writer.lock().unwrap();
        writer.append(&[letter(3), letter(4)]).unwrap(); // the replay
        let ordinals: Vec<u64> = lines(writer.path()).iter().map(|line| line["ordinal"].as_u64().unwrap()).collect();
        assert_eq!(ordinals, [1, 3, 4], "each letter once");
    }

    #[test]
    fn letters_whose_commit_failed_are_cut_off_before_the_same_process_retries() {
        let dir = tempfile::tempdir().unwrap();
        let options = BeginOptions { restart: false, max_crashes: 3 };
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.begin("docs", "h", 1, "a.csv", options).unwrap();
        let writer = DeadLetters::new(dir.path(), ledger.clone()).writer("docs");
        let mut writer = writer.lock().unwrap();
        let mark = writer.append(&[letter(1)]).unwrap();
        ledger.commit("docs", "h", &Checkpoint::Start, &Checkpoint::Start, BatchCounts::new(0, 1), Some(mark)).unwrap();
        writer.append(&[letter(2), letter(3)]).unwrap();
        // The commit of that batch failed: the writer forgets its file, the retry cuts it back.
        writer.uncommitted();
        writer.append(&[letter(2), letter(3)]).unwrap();
        let ordinals: Vec<u64> = lines(writer.path()).iter().map(|line| line["ordinal"].as_u64().unwrap()).collect();
        assert_eq!(ordinals, [1, 2, 3], "each letter once");
    }
}
