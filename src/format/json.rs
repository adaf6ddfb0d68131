//! JSON Lines (`.jsonl`, `.ndjson`) and JSON arrays (`.json`): one record per JSON object.
//!
//! # JSON Lines
//! One object per line, LF or CRLF; a UTF-8 byte order mark before the first line is skipped.
//! Lines holding only JSON whitespace are skipped (they count for line numbers, not as records);
//! the last line may lack its line end. A line that is not a JSON object is rejected and the file
//! goes on. A line longer than [`MAX_RECORD_BYTES`] is read past in bounded chunks (never buffered
//! whole) and rejected. After a line, reading resumes at the start of the next one.
//!
//! # JSON arrays
//! `[ {…}, {…} ]` at the top level, or, with [`ReadOptions::json_pointer`], inside nested objects
//! (keys only, RFC 6901 escapes `~0` `~1`; the first of repeated keys is followed). The file is never
//! loaded whole: [`super::json_scan`] finds each element's bytes and `serde_json` parses them one at
//! a time. An element that is not an object, or not valid JSON although its end can be found, is
//! rejected and the file goes on; an element longer than [`MAX_RECORD_BYTES`] is scanned past in
//! bounded memory and rejected. Anything that hides where the next element starts (a missing comma,
//! unmatched brackets, a truncated file, content after the document, no array at the top level or at
//! the pointer) is a [`ReadError::Corrupt`] at its byte offset; the records before it stay valid.
//! After an element, reading resumes just past its last byte (before the `,` or `]` that follows),
//! with no rescan from the start of the file.
//!
//! # Values
//! The members of a record's object become `(key, value)` pairs in file order: null → `Null`,
//! `true`/`false` → `Bool`, integers that fit `i64` → `Int`, other numbers (fractions, exponents,
//! integers beyond `i64`) → `Float`, strings → `Text`, non-empty arrays of numbers only → `Vector`
//! (as `f32`), other arrays and objects → `Json`. Objects nested inside a `Json` value keep
//! `serde_json`'s key order (sorted, as its `preserve_order` feature is off).
//!
//! A record whose object repeats a key is **rejected**, naming the key: neither value would be
//! right to keep silently.
//!
//! Rejection reasons place JSON errors at "line L, column C": L is a line of the file; on the
//! record's first line, C counts from the record's first byte.

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, Read};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json_scan::{describe_byte, is_json_whitespace, ByteCursor, Capture, ElementScanner, ScanError};
use super::source::{open_text, Compression, Source};
use super::{
    raw_excerpt, Checkpoint, FieldValue, ReadError, ReadItem, ReadOptions, Record, RecordPosition, RejectedRecord, MAX_RECORD_BYTES,
    UTF8_BOM,
};

/// Streaming JSON Lines reader (see the module doc).
pub struct JsonlReader {
    path: String,
    input: Box<dyn BufRead + Send>,
    /// Offset of the first byte of the next line.
    next_offset: u64,
    /// 1-based number of the next line.
    next_line: u64,
    /// Ordinal of the next record (blank lines are not records).
    next_ordinal: u64,
    /// One line, reused; never longer than the cap plus a CRLF.
    line_buffer: Vec<u8>,
    /// Lines longer than this are rejected ([`MAX_RECORD_BYTES`], lower in tests).
    record_byte_cap: usize,
    /// File size for uncompressed files, 0 otherwise.
    total_bytes: u64,
}

impl JsonlReader {
    /// Opens `path` at its first line.
    pub fn open(path: impl Into<Source>) -> Result<Self, ReadError> {
        Self::open_at(path, &Checkpoint::Start)
    }

    /// Opens `path` at `resume` (a [`Checkpoint::Text`] produced by this reader, or `Start`).
    pub fn open_at(path: impl Into<Source>, resume: &Checkpoint) -> Result<Self, ReadError> {
        Self::open_capped(path, resume, MAX_RECORD_BYTES)
    }

    fn open_capped(source: impl Into<Source>, resume: &Checkpoint, record_byte_cap: usize) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        let display = source.name().display().to_string();
        let (next_offset, next_line, next_ordinal) = text_position(&display, resume)?.unwrap_or((0, 1, 0));
        let input = open_text(path, next_offset).map_err(|source| ReadError::Io { path: display.clone(), source })?;
        Ok(Self {
            path: display,
            input,
            next_offset,
            next_line,
            next_ordinal,
            line_buffer: Vec::new(),
            record_byte_cap,
            total_bytes: uncompressed_size(path),
        })
    }

    /// File size in bytes (0 when compressed).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// See [`super::RecordReader::next_item`].
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        loop {
            let (start_offset, start_line) = (self.next_offset, self.next_line);
            let Some(line_length) = self.read_line()? else {
                return Ok(None);
            };
            let content = line_content(&self.line_buffer, start_offset == 0);
            // Checked before blankness: a long run of spaces may hide a record after the cap.
            let too_long = line_length > self.line_buffer.len() as u64 || content.len() > self.record_byte_cap;
            if !too_long && content.iter().all(|byte| is_json_whitespace(*byte)) {
                continue;
            }
            let position = RecordPosition { ordinal: self.next_ordinal, line: Some(start_line), byte_offset: start_offset };
            self.next_ordinal += 1;
            let next = Checkpoint::Text { byte_offset: self.next_offset, line: self.next_line, ordinal: self.next_ordinal };
            if too_long {
                return Ok(Some(too_long_item(position, next, content, line_length, self.record_byte_cap)));
            }
            return Ok(Some(item_from_bytes(position, next, content)));
        }
    }

    /// Reads the next line into `line_buffer` (at most the cap plus a CRLF; the rest of a longer
    /// line is skipped unread) and returns its whole length with the line end; `None` at the end.
    fn read_line(&mut self) -> Result<Option<u64>, ReadError> {
        let io_error = |source| ReadError::Io { path: self.path.clone(), source };
        self.line_buffer.clear();
        let limit = self.record_byte_cap as u64 + 2;
        let read = self.input.by_ref().take(limit).read_until(b'\n', &mut self.line_buffer).map_err(io_error)?;
        if read == 0 {
            return Ok(None);
        }
        let mut line_length = read as u64;
        if read as u64 == limit && self.line_buffer.last() != Some(&b'\n') {
            line_length += self.input.skip_until(b'\n').map_err(io_error)? as u64;
        }
        self.next_offset += line_length;
        self.next_line += 1;
        Ok(Some(line_length))
    }
}

/// A line without its line end (LF or CRLF) and, on the first line of the file, its BOM.
fn line_content(line: &[u8], first_line_of_file: bool) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if first_line_of_file {
        line.strip_prefix(&UTF8_BOM).unwrap_or(line)
    } else {
        line
    }
}

/// Streaming reader of an array of JSON objects (see the module doc).
pub struct JsonReader {
    path: String,
    scanner: ElementScanner<Box<dyn BufRead + Send>>,
    /// Ordinal of the next element.
    next_ordinal: u64,
    /// Elements longer than this are rejected ([`MAX_RECORD_BYTES`], lower in tests).
    record_byte_cap: usize,
    /// File size for uncompressed files, 0 otherwise.
    total_bytes: u64,
}

impl JsonReader {
    /// Opens `path` at its first record.
    pub fn open(path: impl Into<Source>, options: &ReadOptions) -> Result<Self, ReadError> {
        Self::open_at(path, options, &Checkpoint::Start)
    }

    /// Opens `path` at `resume` (a [`Checkpoint::Text`] produced by this reader with the same
    /// `options`, or `Start`).
    pub fn open_at(path: impl Into<Source>, options: &ReadOptions, resume: &Checkpoint) -> Result<Self, ReadError> {
        Self::open_capped(path, options, resume, MAX_RECORD_BYTES)
    }

    fn open_capped(
        source: impl Into<Source>,
        options: &ReadOptions,
        resume: &Checkpoint,
        record_byte_cap: usize,
    ) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        let display = source.name().display().to_string();
        let pointer = options.json_pointer.as_ref().map(|pointer| pointer.tokens().to_vec()).unwrap_or_default();
        let position = text_position(&display, resume)?;
        let input = open_text(path, position.map_or(0, |(offset, _, _)| offset))
            .map_err(|source| ReadError::Io { path: display.clone(), source })?;
        let (scanner, next_ordinal) = match position {
            None => (ElementScanner::at_start(input, pointer, record_byte_cap), 0),
            Some((offset, line, ordinal)) => (ElementScanner::after_element(input, offset, line, pointer, record_byte_cap), ordinal),
        };
        Ok(Self { path: display, scanner, next_ordinal, record_byte_cap, total_bytes: uncompressed_size(path) })
    }

    /// File size in bytes (0 when compressed).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// See [`super::RecordReader::next_item`].
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        let element = match self.scanner.next_element() {
            Ok(Some(element)) => element,
            Ok(None) => return Ok(None),
            Err(ScanError::Io(source)) => return Err(ReadError::Io { path: self.path.clone(), source }),
            Err(ScanError::Syntax { byte_offset, message }) => {
                return Err(ReadError::Corrupt { path: self.path.clone(), byte_offset, message })
            }
        };
        let position = RecordPosition { ordinal: self.next_ordinal, line: Some(element.start_line), byte_offset: element.start_offset };
        self.next_ordinal += 1;
        let next = Checkpoint::Text { byte_offset: element.end_offset, line: element.end_line, ordinal: self.next_ordinal };
        if !element.capture.is_complete() {
            return Ok(Some(too_long_item(position, next, &element.capture.bytes, element.capture.length, self.record_byte_cap)));
        }
        Ok(Some(item_from_bytes(position, next, &element.capture.bytes)))
    }
}

/// Checks that `document` is one JSON text (RFC 8259), with the machinery of [`JsonReader`]: a
/// document whose first byte (after an optional UTF-8 BOM and whitespace) is `[` goes through the
/// reader's element scanner, every element being parsed by `serde_json` as the reader parses a
/// record; any other document is one value found by the same scanner, parsed by `serde_json`, and
/// followed by nothing but whitespace. `Err` says what is wrong and where.
pub fn validate_json_document(document: &[u8]) -> Result<(), String> {
    let without_bom = document.strip_prefix(&UTF8_BOM).unwrap_or(document);
    let first_byte = without_bom.iter().copied().find(|byte| !is_json_whitespace(*byte));
    let describe = |error: ScanError| match error {
        ScanError::Syntax { byte_offset, message } => format!("at byte {byte_offset}: {message}"),
        ScanError::Io(error) => error.to_string(),
    };
    let parse = |bytes: &[u8], offset: u64| {
        serde_json::from_slice::<serde_json::Value>(bytes).map(drop).map_err(|error| format!("value at byte {offset}: {error}"))
    };
    if first_byte == Some(b'[') {
        let mut scanner = ElementScanner::at_start(document, Vec::new(), usize::MAX);
        while let Some(element) = scanner.next_element().map_err(describe)? {
            parse(&element.capture.bytes, element.start_offset)?;
        }
        return Ok(());
    }
    let mut cursor = ByteCursor::new(document, 0, 1);
    let mut capture = Capture::keeping(usize::MAX);
    cursor.skip_byte_order_mark().map_err(describe)?;
    cursor.skip_whitespace().map_err(|error| error.to_string())?;
    let start = cursor.offset();
    cursor.scan_value(&mut capture).map_err(describe)?;
    cursor.skip_whitespace().map_err(|error| error.to_string())?;
    if let Some(byte) = cursor.peek().map_err(|error| error.to_string())? {
        return Err(format!(
            "at byte {}: expected the end of the content after the JSON document, found {}",
            cursor.offset(),
            describe_byte(Some(byte))
        ));
    }
    parse(&capture.bytes, start)
}

/// `(byte_offset, line, ordinal)` of a text checkpoint; `None` for `Start`.
fn text_position(path: &str, resume: &Checkpoint) -> Result<Option<(u64, u64, u64)>, ReadError> {
    match resume {
        Checkpoint::Start => Ok(None),
        Checkpoint::Text { byte_offset, line, ordinal } => Ok(Some((*byte_offset, *line, *ordinal))),
        other @ (Checkpoint::Parquet { .. } | Checkpoint::Plugin { .. }) => Err(ReadError::Corrupt {
            path: path.to_owned(),
            byte_offset: 0,
            message: format!("a {} checkpoint cannot resume a JSON file", other.kind()),
        }),
    }
}

fn uncompressed_size(source: &Source) -> u64 {
    match Compression::of(source.name()) {
        Compression::None => source.metadata().map(|metadata| metadata.len()).unwrap_or(0),
        Compression::Gzip | Compression::Zstd => 0,
    }
}

/// The record in `bytes`, or its rejection.
fn item_from_bytes(position: RecordPosition, next: Checkpoint, bytes: &[u8]) -> ReadItem {
    match decode_object(bytes) {
        Ok(values) => ReadItem::Record(Record { position, next, values }),
        Err(failure) => ReadItem::Rejected(RejectedRecord {
            position,
            next,
            field: failure.field(),
            reason: failure.reason(position.line.unwrap_or(1)),
            raw: raw_excerpt(bytes),
        }),
    }
}

fn too_long_item(position: RecordPosition, next: Checkpoint, excerpt: &[u8], length: u64, cap: usize) -> ReadItem {
    ReadItem::Rejected(RejectedRecord {
        position,
        next,
        field: None,
        reason: format!("expected a record of at most {cap} bytes (the record size cap), found {length} bytes; it was skipped unread"),
        raw: raw_excerpt(excerpt),
    })
}

/// Why a record's bytes are not a usable JSON object.
#[derive(Debug, PartialEq)]
enum DecodeFailure {
    NotUtf8 { byte_index: usize },
    InvalidJson { message: String, line: usize, column: usize },
    NotAnObject { found: &'static str },
    DuplicateKey { key: String },
}

impl DecodeFailure {
    fn field(&self) -> Option<String> {
        match self {
            DecodeFailure::DuplicateKey { key } => Some(key.clone()),
            _ => None,
        }
    }

    /// The reason, with JSON error positions made file lines (the record starts on `first_line`).
    fn reason(&self, first_line: u64) -> String {
        match self {
            DecodeFailure::NotUtf8 { byte_index } => {
                format!("expected UTF-8 text, found an invalid byte at byte {byte_index} of the record")
            }
            DecodeFailure::InvalidJson { message, line, column } => {
                let file_line = first_line + (*line as u64).saturating_sub(1);
                format!("expected a JSON object, found invalid JSON: {message} at line {file_line}, column {column}")
            }
            DecodeFailure::NotAnObject { found } => format!("expected a JSON object, found {found}"),
            DecodeFailure::DuplicateKey { key } => format!("the object has the key {key:?} more than once (duplicate keys are rejected)"),
        }
    }
}

fn invalid_json(error: serde_json::Error) -> DecodeFailure {
    let full = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = full.strip_suffix(&position).unwrap_or(&full).to_owned();
    DecodeFailure::InvalidJson { message, line: error.line(), column: error.column() }
}

/// One JSON object's members as `(key, value)` pairs in file order.
fn decode_object(bytes: &[u8]) -> Result<Vec<(String, FieldValue)>, DecodeFailure> {
    let text = std::str::from_utf8(bytes).map_err(|error| DecodeFailure::NotUtf8 { byte_index: error.valid_up_to() })?;
    let first_byte = text.bytes().find(|byte| !is_json_whitespace(*byte));
    if first_byte != Some(b'{') {
        serde_json::from_str::<IgnoredAny>(text).map_err(invalid_json)?;
        return Err(DecodeFailure::NotAnObject { found: kind_of_value_starting_with(first_byte) });
    }
    let ObjectMembers(members) = serde_json::from_str(text).map_err(invalid_json)?;
    let mut seen_keys = HashSet::with_capacity(members.len());
    if let Some((key, _)) = members.iter().find(|(key, _)| !seen_keys.insert(key.as_str())) {
        return Err(DecodeFailure::DuplicateKey { key: key.clone() });
    }
    Ok(members.into_iter().map(|(key, value)| (key, field_value(value))).collect())
}

/// The kind of a valid JSON value, from its first byte.
fn kind_of_value_starting_with(first_byte: Option<u8>) -> &'static str {
    match first_byte {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// See the module doc, "Values".
fn field_value(value: serde_json::Value) -> FieldValue {
    use serde_json::Value;
    match value {
        Value::Null => FieldValue::Null,
        Value::Bool(boolean) => FieldValue::Bool(boolean),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => FieldValue::Int(integer),
            (None, Some(float)) => FieldValue::Float(float),
            (None, None) => FieldValue::Json(Value::Number(number)),
        },
        Value::String(text) => FieldValue::Text(text),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
            FieldValue::Vector(items.iter().filter_map(Value::as_f64).map(|number| number as f32).collect())
        }
        other => FieldValue::Json(other),
    }
}

/// A JSON object deserialized as its members in order, repeated keys included.
struct ObjectMembers(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for ObjectMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectMembersVisitor)
    }
}

struct ObjectMembersVisitor;

impl<'de> Visitor<'de> for ObjectMembersVisitor {
    type Value = ObjectMembers;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectMembers, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(256));
        while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
            members.push(member);
        }
        Ok(ObjectMembers(members))
    }
}

#[cfg(test)]
mod tests;
