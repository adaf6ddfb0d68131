//! CSV / TSV: RFC 4180 quoting (embedded delimiters, quotes and newlines), a header row, optional
//! UTF-8 BOM, LF or CRLF line ends. Built on the `csv` crate; this module adds byte positions that
//! survive a resume, per-record rejection and a cap on record size.

use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::source::{open_text, Compression, Source};
use super::{raw_excerpt, Checkpoint, FieldValue, ReadError, ReadItem, Record, RecordPosition, RejectedRecord, MAX_RECORD_BYTES, UTF8_BOM};

/// Streaming CSV reader (see the module doc).
pub struct CsvReader {
    path: String,
    headers: Vec<String>,
    reader: csv::Reader<GuardedRead<Box<dyn BufRead + Send>>>,
    /// Byte offset in the content of the reader's byte 0.
    base_offset: u64,
    /// Ordinal of the first record this reader yields.
    base_ordinal: u64,
    /// Line of the reader's byte 0.
    base_line: u64,
    /// Offset (relative to `base_offset`) just past the last record yielded; the guard measures
    /// record length from here.
    record_start: Arc<AtomicU64>,
    record: csv::ByteRecord,
    delimiter: u8,
    /// File size for uncompressed files, 0 otherwise.
    total_bytes: u64,
}

impl CsvReader {
    /// Opens `path` at its first data record.
    pub fn open(path: impl Into<Source>, delimiter: u8) -> Result<Self, ReadError> {
        Self::open_at(path, delimiter, &Checkpoint::Start)
    }

    /// Opens `path` at `resume` (a [`Checkpoint::Text`] produced by this reader, or `Start`).
    pub fn open_at(source: impl Into<Source>, delimiter: u8, resume: &Checkpoint) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        let display = source.name().display().to_string();
        let io_error = |source| ReadError::Io { path: display.clone(), source };
        let (headers, first_record) = read_headers(path, &display, delimiter)?;
        let (byte_offset, line, ordinal) = match resume {
            Checkpoint::Start => first_record,
            Checkpoint::Text { byte_offset, line, ordinal } => (*byte_offset, *line, *ordinal),
            other @ (Checkpoint::Parquet { .. } | Checkpoint::Plugin { .. }) => {
                return Err(ReadError::Corrupt {
                    path: display,
                    byte_offset: 0,
                    message: format!("a {} checkpoint cannot resume a CSV file", other.kind()),
                })
            }
        };
        let input = open_text(path, byte_offset).map_err(io_error)?;
        let record_start = Arc::new(AtomicU64::new(0));
        let guarded = GuardedRead { inner: input, consumed: 0, record_start: Arc::clone(&record_start) };
        let total_bytes = match Compression::of(source.name()) {
            Compression::None => source.metadata().map(|metadata| metadata.len()).unwrap_or(0),
            _ => 0,
        };
        Ok(Self {
            path: display,
            headers,
            reader: csv_reader(guarded, delimiter),
            base_offset: byte_offset,
            base_ordinal: ordinal,
            base_line: line,
            record_start,
            record: csv::ByteRecord::new(),
            delimiter,
            total_bytes,
        })
    }

    /// File size in bytes (0 when compressed).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Column names from the header row.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// See [`super::RecordReader::next_item`].
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        loop {
            let more = self.reader.read_byte_record(&mut self.record).map_err(|error| {
                let at = self.base_offset + self.record_start.load(Ordering::Relaxed);
                corrupt(&self.path, at, &error)
            })?;
            if !more {
                return Ok(None);
            }
            if !is_blank(&self.record) {
                break;
            }
            self.record_start.store(self.reader.position().byte(), Ordering::Relaxed);
        }
        let start = self.record.position().expect("csv records carry a position");
        let end = self.reader.position();
        self.record_start.store(end.byte(), Ordering::Relaxed);
        let position = RecordPosition {
            ordinal: self.base_ordinal + start.record(),
            line: Some(self.base_line + start.line() - 1),
            byte_offset: self.base_offset + start.byte(),
        };
        let next = Checkpoint::Text {
            byte_offset: self.base_offset + end.byte(),
            line: self.base_line + end.line() - 1,
            ordinal: self.base_ordinal + end.record(),
        };
        Ok(Some(self.decode(position, next)))
    }

    fn decode(&self, position: RecordPosition, next: Checkpoint) -> ReadItem {
        let reject = |field: Option<String>, reason: String| {
            let raw = fields(&self.record).collect::<Vec<_>>().join(&[self.delimiter][..]);
            ReadItem::Rejected(RejectedRecord { position, next: next.clone(), field, reason, raw: raw_excerpt(&raw) })
        };
        if self.record.len() != self.headers.len() {
            return reject(None, format!("expected {} columns (as in the header), found {}", self.headers.len(), self.record.len()));
        }
        let mut values = Vec::with_capacity(self.headers.len());
        for (column, bytes) in self.headers.iter().zip(fields(&self.record)) {
            match std::str::from_utf8(bytes) {
                Ok(text) => values.push((column.clone(), FieldValue::Text(text.to_owned()))),
                Err(error) => {
                    return reject(
                        Some(column.clone()),
                        format!("expected UTF-8 text, found an invalid byte at byte {} of the value", error.valid_up_to()),
                    )
                }
            }
        }
        ReadItem::Record(Record { position, next, values })
    }
}

/// `(byte offset, line, ordinal)` of the first data record.
type FirstRecord = (u64, u64, u64);

/// Reads the header row; returns the column names and `(byte offset, line, ordinal)` of the first
/// data record.
fn read_headers(path: &Source, display: &str, delimiter: u8) -> Result<(Vec<String>, FirstRecord), ReadError> {
    let io_error = |source| ReadError::Io { path: display.to_owned(), source };
    let mut input = open_text(path, 0).map_err(io_error)?;
    let bom_length = if input.fill_buf().map_err(io_error)?.starts_with(&UTF8_BOM) { 3 } else { 0 };
    input.consume(bom_length);
    let bom_length = bom_length as u64;
    let guarded = GuardedRead { inner: input, consumed: 0, record_start: Arc::new(AtomicU64::new(0)) };
    let mut reader = csv_reader(guarded, delimiter);
    let mut header = csv::ByteRecord::new();
    let found = reader.read_byte_record(&mut header).map_err(|error| corrupt(display, bom_length, &error))?;
    if !found || header.is_empty() {
        return Err(ReadError::Corrupt {
            path: display.to_owned(),
            byte_offset: 0,
            message: "expected a header row, the file is empty".to_owned(),
        });
    }
    let mut names = Vec::with_capacity(header.len());
    for (index, bytes) in fields(&header).enumerate() {
        let name = std::str::from_utf8(bytes).map_err(|_| ReadError::Corrupt {
            path: display.to_owned(),
            byte_offset: bom_length,
            message: format!("header column {} is not UTF-8", index + 1),
        })?;
        let name = name.trim();
        if names.iter().any(|existing| existing == name) {
            return Err(ReadError::Corrupt {
                path: display.to_owned(),
                byte_offset: bom_length,
                message: format!("header names column {name:?} twice"),
            });
        }
        names.push(name.to_owned());
    }
    let after = reader.position();
    Ok((names, (bom_length + after.byte(), after.line(), 0)))
}

/// Records end at LF only, so that a record's position is where its line really starts (with
/// CRLF as terminator the `csv` crate counts the LF as the start of the next record); the CR of a
/// CRLF is then removed from the last field by [`fields`].
fn csv_reader<R: Read>(input: R, delimiter: u8) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(input)
}

/// The record's fields with the CR of a CRLF line end removed from the last one.
fn fields(record: &csv::ByteRecord) -> impl Iterator<Item = &[u8]> {
    let last = record.len().saturating_sub(1);
    record.iter().enumerate().map(move |(index, field)| match field {
        [rest @ .., b'\r'] if index == last => rest,
        _ => field,
    })
}

/// A line holding nothing but a line end.
fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && fields(record).all(<[u8]>::is_empty)
}

fn corrupt(path: &str, byte_offset: u64, error: &csv::Error) -> ReadError {
    let message = match error.kind() {
        csv::ErrorKind::Io(io_error) if io_error.kind() == io::ErrorKind::InvalidData => io_error.to_string(),
        _ => error.to_string(),
    };
    ReadError::Corrupt { path: path.to_owned(), byte_offset, message }
}

/// A reader that refuses to read further once the record being parsed exceeds
/// [`MAX_RECORD_BYTES`] (an unbalanced quote would otherwise buffer the rest of the file).
struct GuardedRead<R> {
    inner: R,
    consumed: u64,
    record_start: Arc<AtomicU64>,
}

impl<R: Read> Read for GuardedRead<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.consumed.saturating_sub(self.record_start.load(Ordering::Relaxed)) > MAX_RECORD_BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a record is longer than {} MiB (an unbalanced quote?); the rest of the file cannot be read",
                    MAX_RECORD_BYTES >> 20
                ),
            ));
        }
        let read = self.inner.read(buffer)?;
        self.consumed += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut CsvReader) -> Vec<ReadItem> {
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    fn text(item: &ReadItem, column: &str) -> String {
        match item {
            ReadItem::Record(record) => match record.get(column) {
                Some(FieldValue::Text(text)) => text.clone(),
                other => panic!("{column}: {other:?}"),
            },
            ReadItem::Rejected(rejected) => panic!("rejected: {rejected:?}"),
        }
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn quoting_bom_and_crlf() {
        let file = file_with(b"\xEF\xBB\xBFid,text\r\n1,\"a, \"\"quoted\"\"\r\nline\"\r\n2,plain\r\n");
        let mut reader = CsvReader::open(file.path(), b',').unwrap();
        assert_eq!(reader.headers(), ["id", "text"]);
        let items = read_all(&mut reader);
        assert_eq!(items.len(), 2);
        assert_eq!(text(&items[0], "text"), "a, \"quoted\"\r\nline");
        assert_eq!(text(&items[1], "id"), "2");
        let ReadItem::Record(second) = &items[1] else { unreachable!() };
        assert_eq!(second.position.line, Some(4));
        assert_eq!(second.position.ordinal, 1);
    }

    #[test]
    fn wrong_column_count_is_rejected_with_its_line_and_the_file_goes_on() {
        let file = file_with(b"id,text\n1,a\n2,b,extra\n3,c\n");
        let items = read_all(&mut CsvReader::open(file.path(), b',').unwrap());
        let ReadItem::Rejected(rejected) = &items[1] else { panic!("{:?}", items[1]) };
        assert_eq!(rejected.position.line, Some(3));
        assert!(rejected.reason.contains("expected 2 columns"), "{}", rejected.reason);
        assert_eq!(text(&items[2], "text"), "c");
    }

    #[test]
    fn invalid_utf8_names_the_column() {
        let file = file_with(b"id,text\n1,ok\n2,bad\xFF\n");
        let items = read_all(&mut CsvReader::open(file.path(), b',').unwrap());
        let ReadItem::Rejected(rejected) = &items[1] else { panic!() };
        assert_eq!(rejected.field.as_deref(), Some("text"));
    }

    #[test]
    fn resuming_at_any_record_yields_exactly_the_rest() {
        // BOM, CRLF and LF, quoted newlines, blank lines and malformed records mixed in.
        let mut bytes = b"\xEF\xBB\xBFid,text\r\n".to_vec();
        for index in 0..60 {
            let line = match index % 5 {
                0 => format!("{index},\"row {index}\nsecond line\"\r\n"),
                1 => format!("{index},plain {index}\n"),
                2 => format!("{index},too,many\n"),
                3 => format!("\r\n{index},after a blank line\r\n"),
                _ => format!("{index},\"quoted, with \"\"quotes\"\"\"\n"),
            };
            bytes.extend_from_slice(line.as_bytes());
        }
        let file = file_with(&bytes);
        let all = read_all(&mut CsvReader::open(file.path(), b',').unwrap());
        assert_eq!(all.len(), 60);
        for cut in 1..=all.len() {
            let resume = all[cut - 1].next().clone();
            let rest = read_all(&mut CsvReader::open_at(file.path(), b',', &resume).unwrap());
            assert_eq!(rest, all[cut..], "resumed after record {cut}");
        }
    }

    #[test]
    fn gzip_files_read_and_resume_like_plain_ones() {
        use std::io::Write;
        let content = b"id,text\n1,a\n2,b\n3,c\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv.gz");
        let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        encoder.write_all(content).unwrap();
        encoder.finish().unwrap();
        let all = read_all(&mut CsvReader::open(&path, b',').unwrap());
        assert_eq!(all.len(), 3);
        let rest = read_all(&mut CsvReader::open_at(&path, b',', all[0].next()).unwrap());
        assert_eq!(rest, all[1..]);
    }

    #[test]
    fn unbalanced_quote_stops_with_an_offset_instead_of_buffering_the_file() {
        let mut bytes = b"id,text\n1,ok\n2,\"never closed\n".to_vec();
        bytes.resize(bytes.len() + MAX_RECORD_BYTES + 100_000, b'x');
        let file = file_with(&bytes);
        let mut reader = CsvReader::open(file.path(), b',').unwrap();
        assert!(matches!(reader.next_item(), Ok(Some(ReadItem::Record(_)))));
        match reader.next_item() {
            Err(ReadError::Corrupt { byte_offset, message, .. }) => {
                assert_eq!(byte_offset, 13);
                assert!(message.contains("longer than"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_file_is_a_clear_error() {
        let file = file_with(b"");
        assert!(matches!(CsvReader::open(file.path(), b','), Err(ReadError::Corrupt { .. })));
    }
}
