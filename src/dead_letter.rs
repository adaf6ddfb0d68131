//! Dead letters: records that could not become rows, kept with everything needed to fix and
//! replay them. One JSON object per line in `<state.dir>/dead-letters/<pipeline>.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::RecordPosition;

/// One rejected record.
#[derive(Debug, Clone, Serialize)]
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
    /// What was expected and what was found.
    pub reason: String,
    /// The raw record, at most 4 KiB.
    pub raw: String,
}

/// The dead-letter file of `pipeline` under `state_dir`.
pub fn path_for(state_dir: &Path, pipeline: &str) -> PathBuf {
    state_dir.join("dead-letters").join(format!("{pipeline}.jsonl"))
}

/// Appends dead letters of one pipeline; the file is created on the first letter.
pub struct DeadLetterWriter {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl DeadLetterWriter {
    /// A writer for `pipeline` under `state_dir`; nothing is created until a letter is written.
    pub fn new(state_dir: &Path, pipeline: &str) -> Self {
        Self { path: path_for(state_dir, pipeline), writer: None }
    }

    /// Where the letters go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one letter (buffered; see [`Self::flush`]).
    pub fn write(&mut self, letter: &DeadLetter) -> std::io::Result<()> {
        if self.writer.is_none() {
            if let Some(parent) = self.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.writer = Some(BufWriter::new(file));
        }
        let writer = self.writer.as_mut().expect("opened above");
        serde_json::to_writer(&mut *writer, letter)?;
        writer.write_all(b"\n")?;
        Ok(())
    }

    /// Appends `letters` and writes them through to the file.
    pub fn append(&mut self, letters: &[DeadLetter]) -> std::io::Result<()> {
        for letter in letters {
            self.write(letter)?;
        }
        self.flush()
    }

    /// Writes buffered letters through to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_json_lines_with_position_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = DeadLetterWriter::new(dir.path(), "docs");
        let letter = DeadLetter {
            time: now_rfc3339(),
            pipeline: "docs".into(),
            file: "a.csv".into(),
            file_hash: "ab".into(),
            position: RecordPosition { ordinal: 3, line: Some(5), byte_offset: 40 },
            field: Some("count".into()),
            reason: "expected an int64".into(),
            raw: "x,y".into(),
        };
        writer.write(&letter).unwrap();
        writer.write(&letter).unwrap();
        writer.flush().unwrap();
        let text = std::fs::read_to_string(writer.path()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["line"], 5);
        assert_eq!(lines[0]["byte_offset"], 40);
        assert_eq!(lines[0]["field"], "count");
    }
}
