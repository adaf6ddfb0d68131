//! **read**: file formats → [`Record`]s with resumable positions.
//!
//! Every reader streams: memory does not grow with the file. A reader yields, in file order, either
//! a [`Record`] or a [`RejectedRecord`] (a record that is malformed but does not stop the file);
//! a [`ReadError`] means the rest of the file cannot be read.

mod csv;
mod json;
mod json_scan;
mod parquet;
mod parquet_guard;
mod parquet_values;
pub mod plugin;
mod source;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::csv::CsvReader;
pub use self::json::{validate_json_document, JsonReader, JsonlReader};
pub use self::json_scan::{parse_json_pointer, JsonPointer};
pub use self::parquet::ParquetReader;
pub use self::plugin::{PluginFormat, PluginReader, PluginRegistry};
pub use self::source::{describe_kind, open_regular, open_text, Compression, Source};

/// Records longer than this are rejected instead of being buffered (bounded memory, no bombs).
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Raw record text kept in a dead letter is cut to this many bytes.
pub const RAW_EXCERPT_BYTES: usize = 4096;

/// The UTF-8 byte order mark some writers put before text (CSV and JSON readers skip it).
pub const UTF8_BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The closed set of formats vecdrop reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// JSON Lines / NDJSON: one JSON object per line.
    Jsonl,
    /// A JSON array of objects, at the top level or at [`ReadOptions::json_pointer`].
    Json,
    /// Apache Parquet (`.parquet`), read row group by row group.
    Parquet,
    /// A format of a WASM plugin (`[[plugins]]`).
    Plugin(PluginFormat),
}

impl Format {
    /// The built-in formats by the name `format = "…"` gives them, which is also the extension
    /// `auto` maps to them. The one place their names are spelled.
    const BUILT_IN: [(&'static str, Format); 6] = [
        ("csv", Format::Csv),
        ("tsv", Format::Tsv),
        ("json", Format::Json),
        ("jsonl", Format::Jsonl),
        ("ndjson", Format::Jsonl),
        ("parquet", Format::Parquet),
    ];

    /// The built-in format called `name` (lowercase), if any.
    pub fn built_in(name: &str) -> Option<Format> {
        Self::BUILT_IN.iter().find(|(candidate, _)| *candidate == name).map(|(_, format)| format.clone())
    }

    /// Names plugins cannot take for their formats: the built-in ones and `auto`.
    pub fn reserved_names() -> Vec<&'static str> {
        std::iter::once("auto").chain(Self::BUILT_IN.iter().map(|(name, _)| *name)).collect()
    }

    /// The format `configured` for `path`: for `auto` chosen by `path`'s extension (a `.gz` /
    /// `.zst` suffix is looked through).
    pub fn resolve(configured: &ConfiguredFormat, path: &Path) -> Result<Format, ReadError> {
        Self::resolve_with(configured, path, &PluginRegistry::default())
    }

    /// As [`Format::resolve`], with the formats of `plugins` too (by name, or for `auto` by the
    /// extensions they claim; built-in extensions win).
    pub fn resolve_with(configured: &ConfiguredFormat, path: &Path, plugins: &PluginRegistry) -> Result<Format, ReadError> {
        let unknown = |format: &str| ReadError::UnknownFormat { path: path.display().to_string(), format: format.to_owned() };
        match configured {
            ConfiguredFormat::Auto => {
                let inner = Compression::of(path).strip(path);
                let extension = inner.extension().and_then(|extension| extension.to_str()).unwrap_or_default().to_ascii_lowercase();
                Self::built_in(&extension)
                    .or_else(|| plugins.by_extension(&extension).map(Format::Plugin))
                    .ok_or_else(|| unknown(&extension))
            }
            ConfiguredFormat::BuiltIn(format) => Ok(format.clone()),
            ConfiguredFormat::Plugin(name) => plugins.by_name(name).map(Format::Plugin).ok_or_else(|| unknown(name)),
        }
    }
}

/// A pipeline's `format` key, parsed: `auto`, a built-in format, or a plugin format's name (known
/// to exist only once the plugins are loaded).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfiguredFormat {
    /// By each file's extension.
    Auto,
    /// One of [`Format`]'s own (never [`Format::Plugin`]).
    BuiltIn(Format),
    /// A format some `[[plugins]]` entry is expected to declare.
    Plugin(String),
}

impl std::str::FromStr for ConfiguredFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        if name == "auto" {
            return Ok(ConfiguredFormat::Auto);
        }
        if let Some(format) = Format::built_in(name) {
            return Ok(ConfiguredFormat::BuiltIn(format));
        }
        if plugin::is_format_name(name) {
            return Ok(ConfiguredFormat::Plugin(name.to_owned()));
        }
        Err(format!("expected one of {:?} or a plugin's format (letters, digits, '-' or '_'), got {name:?}", Format::reserved_names()))
    }
}

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordPosition {
    /// 0-based index of the record among the file's data records (header excluded).
    pub ordinal: u64,
    /// 1-based line where the record starts, for line-oriented formats.
    pub line: Option<u64>,
    /// Byte offset where the record starts.
    pub byte_offset: u64,
}

/// Where reading resumes: just before the first record not yet committed. Stored in the ledger;
/// a reader opened at a checkpoint yields exactly the records from there on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Checkpoint {
    /// Before the first record of the file.
    Start,
    /// Text formats (CSV, TSV, JSONL, JSON array): the next record starts at `byte_offset` of the
    /// (decompressed) content, on `line` (1-based), and has ordinal `ordinal`. (In a JSON array,
    /// `byte_offset` is just past the previous element, before the `,` or `]` that follows it.)
    Text {
        /// Byte offset of the next record.
        byte_offset: u64,
        /// Its 1-based line.
        line: u64,
        /// Its ordinal.
        ordinal: u64,
    },
    /// Parquet: the next record is row `row` of row group `row_group`.
    Parquet {
        /// Row group index.
        row_group: u64,
        /// Row within the group.
        row: u64,
        /// Ordinal of the record.
        ordinal: u64,
    },
    /// A plugin format: the next record is the `skip_rows`-th record after the plugin's checkpoint
    /// at `byte_offset` (with the plugin's opaque `state`), and has ordinal `ordinal`. See
    /// [`PluginReader`].
    Plugin {
        /// Byte offset of the plugin's last checkpoint (feeding resumes here).
        byte_offset: u64,
        /// Ordinal of the next record.
        ordinal: u64,
        /// The plugin's state at the checkpoint (base64 in the ledger; at most
        /// [`plugin::MAX_CHECKPOINT_STATE_BYTES`]), shared by every record after it.
        #[serde(with = "base64_bytes")]
        state: std::sync::Arc<[u8]>,
        /// Records between the checkpoint and the next record (dropped on resume).
        skip_rows: u64,
    },
}

/// Bytes (`Arc<[u8]>`) as a base64 string in serde formats.
mod base64_bytes {
    use std::sync::Arc;

    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<[u8]>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text).map(Arc::from).map_err(serde::de::Error::custom)
    }
}

impl Checkpoint {
    /// Ordinal of the next record (number of records before this point).
    pub fn ordinal(&self) -> u64 {
        match self {
            Checkpoint::Start => 0,
            Checkpoint::Text { ordinal, .. } | Checkpoint::Parquet { ordinal, .. } | Checkpoint::Plugin { ordinal, .. } => *ordinal,
        }
    }

    /// The kind of checkpoint, for messages: `start`, `text`, `Parquet`, `plugin`.
    pub fn kind(&self) -> &'static str {
        match self {
            Checkpoint::Start => "start",
            Checkpoint::Text { .. } => "text",
            Checkpoint::Parquet { .. } => "Parquet",
            Checkpoint::Plugin { .. } => "plugin",
        }
    }

    /// How far into the file this is, in the unit of [`RecordReader::total_units`] (bytes for text
    /// formats, rows for Parquet).
    pub fn units(&self) -> u64 {
        match self {
            Checkpoint::Start => 0,
            Checkpoint::Text { byte_offset, .. } | Checkpoint::Plugin { byte_offset, .. } => *byte_offset,
            Checkpoint::Parquet { ordinal, .. } => *ordinal,
        }
    }
}

/// A value as read from a file, before it is checked against the collection's field types.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Absent or null.
    Null,
    /// A boolean (JSON, Parquet).
    Bool(bool),
    /// An integer (JSON, Parquet).
    Int(i64),
    /// A floating-point number (JSON, Parquet).
    Float(f64),
    /// Text (CSV cells are always text).
    Text(String),
    /// A list of numbers that can be a vector (Parquet `list<float>`, JSON arrays of numbers).
    Vector(Vec<f32>),
    /// Any other JSON value (objects, mixed arrays).
    Json(serde_json::Value),
}

impl FieldValue {
    /// The value as JSON (for dead letters and JSON fields).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            FieldValue::Null => serde_json::Value::Null,
            FieldValue::Bool(value) => serde_json::Value::Bool(*value),
            FieldValue::Int(value) => serde_json::Value::from(*value),
            FieldValue::Float(value) => serde_json::Value::from(*value),
            FieldValue::Text(value) => serde_json::Value::String(value.clone()),
            FieldValue::Vector(values) => values.iter().map(|value| serde_json::Value::from(*value)).collect(),
            FieldValue::Json(value) => value.clone(),
        }
    }

    /// A short name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            FieldValue::Null => "null",
            FieldValue::Bool(_) => "a bool",
            FieldValue::Int(_) => "an integer",
            FieldValue::Float(_) => "a float",
            FieldValue::Text(_) => "text",
            FieldValue::Vector(_) => "a list of numbers",
            FieldValue::Json(serde_json::Value::Array(_)) => "a JSON array",
            FieldValue::Json(serde_json::Value::Object(_)) => "a JSON object",
            FieldValue::Json(_) => "a JSON value",
        }
    }
}

/// One well-formed record: named values in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where it starts.
    pub position: RecordPosition,
    /// Where reading resumes after this record.
    pub next: Checkpoint,
    /// `(column, value)` pairs.
    pub values: Vec<(String, FieldValue)>,
}

impl Record {
    /// The record as one JSON object (for dead letters).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.values.iter().map(|(name, value)| (name.clone(), value.to_json())).collect())
    }

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
    /// Where reading resumes after this record.
    pub next: Checkpoint,
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
    /// Where reading resumes after this item.
    pub fn next(&self) -> &Checkpoint {
        match self {
            ReadItem::Record(record) => &record.next,
            ReadItem::Rejected(rejected) => &rejected.next,
        }
    }
}

/// Per-pipeline reading options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// For JSON: a JSON pointer (e.g. `/records`) to the array of records inside a top-level
    /// object; `None` when the top level is the array.
    pub json_pointer: Option<JsonPointer>,
}

/// Why the rest of a file cannot be read. Records yielded before it stay valid.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The pipeline's `format` (or the file's extension) names no known format.
    #[error("{path}: unknown format {format:?}; expected csv, tsv, json, jsonl, ndjson or parquet (or a plugin's format)")]
    UnknownFormat {
        path: String,
        /// The format asked for.
        format: String,
    },
    /// The file is damaged at `byte_offset` in a way that makes the rest unreadable.
    #[error("{path}: at byte {byte_offset}: {message}")]
    Corrupt {
        path: String,
        /// Where reading stopped.
        byte_offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A format plugin failed on the file (trap, limit, contract, or its own parse error).
    #[error("{path}: plugin {plugin}: {source}")]
    Plugin {
        path: String,
        /// The plugin's name.
        plugin: String,
        /// What went wrong (boxed: it is large and rare).
        source: Box<plugin::PluginError>,
    },
}

impl crate::fault::Classify for ReadError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            ReadError::Io { source, .. } => crate::fault::io_fault_of_source(source),
            ReadError::UnknownFormat { .. } | ReadError::Corrupt { .. } => Fault::File,
            ReadError::Plugin { source, .. } => source.fault(),
        }
    }
}

/// A streaming reader over one file, whatever its format.
pub enum RecordReader {
    /// CSV or TSV.
    Csv(CsvReader),
    /// JSON Lines.
    Jsonl(JsonlReader),
    /// A JSON array of objects.
    Json(JsonReader),
    /// Parquet.
    Parquet(ParquetReader),
    /// A WASM plugin's format.
    Plugin(Box<PluginReader>),
}

impl RecordReader {
    /// Opens `path` as `format`, positioned at `resume` (the first record for [`Checkpoint::Start`]).
    pub fn open(format: Format, source: impl Into<Source>, options: &ReadOptions, resume: &Checkpoint) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        match format {
            Format::Csv => Ok(RecordReader::Csv(CsvReader::open_at(path, b',', resume)?)),
            Format::Tsv => Ok(RecordReader::Csv(CsvReader::open_at(path, b'\t', resume)?)),
            Format::Jsonl => Ok(RecordReader::Jsonl(JsonlReader::open_at(path, resume)?)),
            Format::Json => Ok(RecordReader::Json(JsonReader::open_at(path, options, resume)?)),
            Format::Parquet => Ok(RecordReader::Parquet(ParquetReader::open_at(path, resume)?)),
            Format::Plugin(format) => {
                Ok(RecordReader::Plugin(Box::new(PluginReader::open_at(&format.plugin, &format.name, path, resume)?)))
            }
        }
    }

    /// The size of the file in the unit of [`Checkpoint::units`], for progress: bytes for text
    /// formats (0 when unknown: compressed input), rows for Parquet (from its footer).
    pub fn total_units(&self) -> u64 {
        match self {
            RecordReader::Csv(reader) => reader.total_bytes(),
            RecordReader::Jsonl(reader) => reader.total_bytes(),
            RecordReader::Json(reader) => reader.total_bytes(),
            RecordReader::Parquet(reader) => reader.total_rows(),
            RecordReader::Plugin(reader) => reader.total_bytes(),
        }
    }

    /// Column names, when the format declares them up front (CSV header, Parquet schema).
    pub fn columns(&self) -> Option<&[String]> {
        match self {
            RecordReader::Csv(reader) => Some(reader.headers()),
            RecordReader::Jsonl(_) | RecordReader::Json(_) => None,
            RecordReader::Parquet(reader) => Some(reader.columns()),
            RecordReader::Plugin(reader) => Some(reader.columns()),
        }
    }

    /// The next item in file order; `Ok(None)` at the end of the file; `Err` when the rest of the
    /// file cannot be read (the reader must not be used after that).
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        match self {
            RecordReader::Csv(reader) => reader.next_item(),
            RecordReader::Jsonl(reader) => reader.next_item(),
            RecordReader::Json(reader) => reader.next_item(),
            RecordReader::Parquet(reader) => reader.next_item(),
            RecordReader::Plugin(reader) => reader.next_item(),
        }
    }
}

/// Cuts `bytes` to at most [`RAW_EXCERPT_BYTES`] and makes it text (lossy).
pub fn raw_excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(RAW_EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}
