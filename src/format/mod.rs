//! **read**: file formats → [`Record`]s with resumable positions.
//!
//! Every reader streams: memory does not grow with the file. A reader yields, in file order, either
//! a [`Record`] or a [`RejectedRecord`] (a record that is malformed but does not stop the file);
//! a [`ReadError`] means the rest of the file cannot be read.

mod csv;

use std::path::Path;

pub use self::csv::CsvReader;

/// Records longer than this are rejected instead of being buffered (bounded memory, no bombs).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Raw record text kept in a dead letter is cut to this many bytes.
pub const RAW_EXCERPT_BYTES: usize = 4096;

/// The closed set of formats vecdrop reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
}

impl Format {
    /// The format named in a pipeline's `format` key, or chosen by `path`'s extension for `auto`.
    pub fn resolve(configured: &str, path: &Path) -> Result<Format, ReadError> {
        let name = if configured == "auto" {
            path.extension().and_then(|extension| extension.to_str()).unwrap_or_default().to_ascii_lowercase()
        } else {
            configured.to_owned()
        };
        match name.as_str() {
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            _ => Err(ReadError::UnknownFormat { path: path.display().to_string(), format: name }),
        }
    }
}

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecordPosition {
    /// 0-based index of the record among the file's data records (header excluded).
    pub ordinal: u64,
    /// 1-based line where the record starts, for line-oriented formats.
    pub line: Option<u64>,
    /// Byte offset where the record starts.
    pub byte_offset: u64,
}

/// A value as read from a file, before it is checked against the collection's field types.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Absent or null.
    Null,
    /// Text as written (CSV cells are always text).
    Text(String),
}

/// One well-formed record: named values in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where it starts.
    pub position: RecordPosition,
    /// Byte offset just past the record: reading resumes here.
    pub end_offset: u64,
    /// `(column, value)` pairs.
    pub values: Vec<(String, FieldValue)>,
}

impl Record {
    /// The value of `column`, if the record has that column.
    pub fn get(&self, column: &str) -> Option<&FieldValue> {
        self.values.iter().find(|(name, _)| name == column).map(|(_, value)| value)
    }
}

/// A record that cannot be read as a whole (wrong column count, bad encoding, too long).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRecord {
    /// Where it starts.
    pub position: RecordPosition,
    /// Byte offset just past the record.
    pub end_offset: u64,
    /// The column at fault, when one is.
    pub field: Option<String>,
    /// What was expected and what was found.
    pub reason: String,
    /// The raw record, cut to [`RAW_EXCERPT_BYTES`].
    pub raw: String,
}

/// One item of a reader's output.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadItem {
    /// A well-formed record.
    Record(Record),
    /// A malformed record; the file goes on.
    Rejected(RejectedRecord),
}

impl ReadItem {
    /// Byte offset just past this item.
    pub fn end_offset(&self) -> u64 {
        match self {
            ReadItem::Record(record) => record.end_offset,
            ReadItem::Rejected(rejected) => rejected.end_offset,
        }
    }
}

/// Why the rest of a file cannot be read. Records yielded before it stay valid.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The pipeline's `format` (or the file's extension) names no known format.
    #[error("{path}: unknown format {format:?}; expected csv or tsv (or a plugin's format)")]
    UnknownFormat {
        /// The file.
        path: String,
        /// The format asked for.
        format: String,
    },
    /// The file is damaged at `byte_offset` in a way that makes the rest unreadable.
    #[error("{path}: at byte {byte_offset}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where reading stopped.
        byte_offset: u64,
        /// What is wrong.
        message: String,
    },
}

/// A streaming reader over one file, whatever its format.
pub enum RecordReader {
    /// CSV or TSV.
    Csv(CsvReader),
}

impl RecordReader {
    /// Opens `path` as `format`, positioned at the first record.
    pub fn open(format: Format, path: &Path) -> Result<Self, ReadError> {
        match format {
            Format::Csv => Ok(RecordReader::Csv(CsvReader::open(path, b',')?)),
            Format::Tsv => Ok(RecordReader::Csv(CsvReader::open(path, b'\t')?)),
        }
    }

    /// The next item in file order; `Ok(None)` at the end of the file; `Err` when the rest of the
    /// file cannot be read (the reader must not be used after that).
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        match self {
            RecordReader::Csv(reader) => reader.next_item(),
        }
    }
}

/// Cuts `bytes` to at most [`RAW_EXCERPT_BYTES`] and makes it text (lossy).
pub fn raw_excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(RAW_EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}
