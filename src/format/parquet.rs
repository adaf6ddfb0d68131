//! Parquet: any file arrow-rs reads (all physical types and encodings; uncompressed, snappy, gzip,
//! brotli, lz4, lz4 raw and zstd pages), streamed one row group at a time in batches of
//! [`BATCH_ROWS`] rows, so memory depends on the row group and the batch, not on the file.
//!
//! A record is one row; its values are the file's top-level columns, converted as described in
//! [`super::parquet_values`]. Positions are `(row group, row within it)`: a
//! [`Checkpoint::Parquet`] names the next row, and a reader opened there skips the rows before it
//! in that row group without converting them.
//!
//! Damaged input never panics the process: the footer is checked before it is trusted, reads are
//! kept inside the file, and a panic inside the decoder is caught and reported as
//! [`ReadError::Corrupt`] at the row group's offset.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

use super::parquet_guard::{check_footer, check_page_sizes};
use super::parquet_values::field_value;
use super::source::Source;
use super::{raw_excerpt, Checkpoint, ReadError, ReadItem, Record, RecordPosition, RejectedRecord};

/// Rows decoded at a time: bounds the memory of one batch.
pub const BATCH_ROWS: usize = 1024;
/// Pages that declare more bytes than this once decompressed are refused before they are
/// decompressed (a few kilobytes of brotli can hold gigabytes).
pub const MAX_PAGE_BYTES: u64 = 128 * 1024 * 1024;
/// Footers (file metadata) larger than this are refused before they are read.
pub const MAX_FOOTER_BYTES: u64 = 64 * 1024 * 1024;
/// Schemas nested deeper than this are refused before the footer is decoded (the decoder recurses
/// once per level; a hostile footer could otherwise overflow the stack).
pub const MAX_SCHEMA_DEPTH: usize = 128;
/// Every Parquet file starts and ends with these bytes.
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// Encrypted footers end with these bytes instead.
const ENCRYPTED_MAGIC: &[u8; 4] = b"PARE";

/// Streaming Parquet reader (see the module doc).
pub struct ParquetReader {
    path: String,
    file: BoundedFile,
    metadata: ArrowReaderMetadata,
    /// Top-level column names, in schema order.
    columns: Vec<String>,
    /// Rows of each row group, from the footer.
    group_rows: Vec<u64>,
    /// Byte offset of each row group, from the footer (0 when the footer has none).
    group_offsets: Vec<u64>,
    /// Rows in the file, from the footer.
    total_rows: u64,
    /// Row group of the next record.
    row_group: usize,
    /// Row (within `row_group`) of the next record.
    row: u64,
    /// Ordinal of the next record.
    ordinal: u64,
    /// Rows decoded at a time.
    batch_rows: usize,
    /// Decoder of `row_group`, once opened.
    batches: Option<ParquetRecordBatchReader>,
    /// The batch being yielded and the index of its next row.
    batch: Option<(RecordBatch, usize)>,
    /// Set after an error: the reader yields nothing more.
    failed: bool,
}

impl ParquetReader {
    /// Opens `path` at its first row.
    pub fn open(path: impl Into<Source>) -> Result<Self, ReadError> {
        Self::open_at(path, &Checkpoint::Start)
    }

    /// Opens `path` at `resume` (a [`Checkpoint::Parquet`] produced by this reader, or `Start`).
    /// Fails with [`ReadError::Corrupt`] when the file is not Parquet, its footer is damaged, or
    /// the checkpoint lies beyond the file.
    pub fn open_at(path: impl Into<Source>, resume: &Checkpoint) -> Result<Self, ReadError> {
        Self::open_with_batch_rows(path, resume, BATCH_ROWS)
    }

    /// [`Self::open_at`] decoding `batch_rows` rows at a time (tests use small batches to cross
    /// batch boundaries often).
    fn open_with_batch_rows(source: impl Into<Source>, resume: &Checkpoint, batch_rows: usize) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        let display = source.name().display().to_string();
        let corrupt = |message: String| ReadError::Corrupt { path: display.clone(), byte_offset: 0, message };
        let file = BoundedFile::open(path).map_err(|source| ReadError::Io { path: display.clone(), source })?;
        check_trailer_and_footer(&file).map_err(corrupt)?;
        let metadata = guarded(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()))
            .map_err(|message| corrupt(format!("not a readable Parquet file: {message}")))?;
        let footer = metadata.metadata();
        let mut group_rows = Vec::with_capacity(footer.num_row_groups());
        let mut group_offsets = Vec::with_capacity(footer.num_row_groups());
        for (index, group) in footer.row_groups().iter().enumerate() {
            let rows = u64::try_from(group.num_rows()).map_err(|_| corrupt(format!("row group {index} has a negative row count")))?;
            group_rows.push(rows);
            group_offsets.push(group_offset(group));
        }
        let total_rows = u64::try_from(footer.file_metadata().num_rows()).unwrap_or(0);
        let columns = metadata.schema().fields().iter().map(|field| field.name().clone()).collect();
        let (row_group, row, ordinal) = resume_position(resume, &group_rows).map_err(corrupt)?;
        Ok(Self {
            path: display,
            file,
            metadata,
            columns,
            group_rows,
            group_offsets,
            total_rows,
            row_group,
            row,
            ordinal,
            batch_rows,
            batches: None,
            batch: None,
            failed: false,
        })
    }

    /// Rows in the file according to its footer.
    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    /// Top-level column names from the schema.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// See [`super::RecordReader::next_item`]. After an `Err` the reader yields `Ok(None)`.
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.advance();
        if result.is_err() {
            self.failed = true;
            self.batch = None;
            self.batches = None;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<ReadItem>, ReadError> {
        loop {
            if let Some((batch, index)) = &mut self.batch {
                if *index < batch.num_rows() {
                    let row_in_batch = *index;
                    *index += 1;
                    return self.yield_row(row_in_batch).map(Some);
                }
                self.batch = None;
            }
            if let Some(batches) = &mut self.batches {
                match guarded(|| batches.next().transpose()) {
                    Ok(Some(batch)) => self.batch = Some((batch, 0)),
                    Ok(None) => {
                        self.batches = None;
                        self.row_group += 1;
                        self.row = 0;
                    }
                    Err(message) => return Err(self.corrupt_in_group(format!("cannot decode the data: {message}"))),
                }
                continue;
            }
            if self.row_group >= self.group_rows.len() {
                return Ok(None);
            }
            self.batches = Some(self.open_group()?);
        }
    }

    /// A decoder for `row_group` that starts at `row` (the rows before it are skipped by the
    /// Parquet reader's row selection, not converted).
    fn open_group(&self) -> Result<ParquetRecordBatchReader, ReadError> {
        let skip = usize::try_from(self.row).map_err(|_| self.corrupt_in_group("the checkpoint's row is out of range".to_owned()))?;
        self.check_group_pages()?;
        let file = self.file.clone();
        let metadata = self.metadata.clone();
        let row_group = self.row_group;
        let batch_rows = self.batch_rows;
        guarded(move || {
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
                .with_row_groups(vec![row_group])
                .with_batch_size(batch_rows);
            if skip > 0 {
                builder.with_offset(skip).build()
            } else {
                builder.build()
            }
        })
        .map_err(|message| self.corrupt_in_group(format!("cannot open the row group: {message}")))
    }

    /// Refuses the row group when one of its pages would decompress to more than [`MAX_PAGE_BYTES`].
    fn check_group_pages(&self) -> Result<(), ReadError> {
        let read_window = |offset, count| self.file.read_window(offset, count);
        for column in self.metadata.metadata().row_group(self.row_group).columns() {
            let (start, length) = column.byte_range();
            check_page_sizes(&read_window, start, length, MAX_PAGE_BYTES)
                .map_err(|message| self.corrupt_in_group(format!("column {:?}: {message}", column.column_path().string())))?;
        }
        Ok(())
    }

    fn yield_row(&mut self, row_in_batch: usize) -> Result<ReadItem, ReadError> {
        let position = RecordPosition { ordinal: self.ordinal, line: None, byte_offset: self.group_offsets[self.row_group] };
        self.ordinal += 1;
        self.row += 1;
        let next = if self.row >= self.group_rows[self.row_group] {
            Checkpoint::Parquet { row_group: self.row_group as u64 + 1, row: 0, ordinal: self.ordinal }
        } else {
            Checkpoint::Parquet { row_group: self.row_group as u64, row: self.row, ordinal: self.ordinal }
        };
        let Some((batch, _)) = &self.batch else { unreachable!("yield_row is called with a batch") };
        let columns = &self.columns;
        let converted = guarded(|| Ok::<_, String>(convert_row(columns, batch, row_in_batch)))
            .map_err(|message| self.corrupt_in_group(format!("cannot convert row {}: {message}", self.row - 1)))?;
        Ok(match converted {
            Ok(values) => ReadItem::Record(Record { position, next, values }),
            Err((column, reason, partial)) => ReadItem::Rejected(RejectedRecord {
                position,
                next,
                field: Some(column),
                reason,
                raw: raw_excerpt(partial.to_string().as_bytes()),
            }),
        })
    }

    fn corrupt_in_group(&self, message: String) -> ReadError {
        let byte_offset = self.group_offsets.get(self.row_group).copied().unwrap_or(0);
        ReadError::Corrupt { path: self.path.clone(), byte_offset, message: format!("row group {}: {message}", self.row_group) }
    }
}

/// A row that cannot be converted: the column at fault, why, and the columns converted so far.
type RowRejection = (String, String, serde_json::Value);

/// The row's `(column, value)` pairs, or the first column that cannot be converted.
fn convert_row(columns: &[String], batch: &RecordBatch, row: usize) -> Result<Vec<(String, super::FieldValue)>, RowRejection> {
    let mut values = Vec::with_capacity(columns.len());
    for (name, column) in columns.iter().zip(batch.columns()) {
        match field_value(column.as_ref(), row) {
            Ok(value) => values.push((name.clone(), value)),
            Err(reason) => {
                let partial = values.iter().map(|(name, value): &(String, super::FieldValue)| (name.clone(), value.to_json())).collect();
                return Err((name.clone(), reason, serde_json::Value::Object(partial)));
            }
        }
    }
    Ok(values)
}

/// `(row group, row, ordinal)` of `resume`, checked against the footer's row groups.
fn resume_position(resume: &Checkpoint, group_rows: &[u64]) -> Result<(usize, u64, u64), String> {
    let (row_group, row, ordinal) = match resume {
        Checkpoint::Start => return Ok((0, 0, 0)),
        Checkpoint::Parquet { row_group, row, ordinal } => (*row_group, *row, *ordinal),
        other @ (Checkpoint::Text { .. } | Checkpoint::Plugin { .. }) => {
            return Err(format!("a {} checkpoint cannot resume a Parquet file", other.kind()))
        }
    };
    let beyond = || format!("the checkpoint (row group {row_group}, row {row}) lies beyond the file's {} row groups", group_rows.len());
    let group = usize::try_from(row_group).map_err(|_| beyond())?;
    match group_rows.get(group) {
        Some(rows) if row <= *rows => Ok((group, row, ordinal)),
        None if group == group_rows.len() && row == 0 => Ok((group, 0, ordinal)),
        _ => Err(beyond()),
    }
}

/// Where a row group starts in the file: its declared offset, else its first column chunk's.
fn group_offset(group: &parquet::file::metadata::RowGroupMetaData) -> u64 {
    let declared = group.file_offset().and_then(|offset| u64::try_from(offset).ok());
    declared.or_else(|| group.columns().first().map(|column| column.byte_range().0)).unwrap_or(0)
}

/// Runs a decoder call, turning its error or its panic into a message. The parquet crate may
/// panic on malformed data; the process must not.
fn guarded<T, E: std::fmt::Display>(call: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(panic) => {
            let detail = panic.downcast_ref::<&str>().map(|text| (*text).to_owned()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(format!("the decoder failed on malformed data ({})", detail.unwrap_or_else(|| "no detail".to_owned())))
        }
    }
}

/// Checks the 8-byte trailer (footer length + magic) and the schema's nesting before the footer is
/// handed to the decoder.
fn check_trailer_and_footer(file: &BoundedFile) -> Result<(), String> {
    if file.length < 12 {
        return Err(format!("not a Parquet file: {} bytes is too short to hold a footer", file.length));
    }
    let mut trailer = [0u8; 8];
    file.read_exact_at(file.length - 8, &mut trailer).map_err(|error| format!("cannot read the footer: {error}"))?;
    let footer_length = u64::from(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]));
    match &trailer[4..] {
        magic if magic == PARQUET_MAGIC => {}
        magic if magic == ENCRYPTED_MAGIC => return Err("the file is encrypted (encrypted footer); vecdrop cannot decrypt it".to_owned()),
        _ => return Err("not a Parquet file: it does not end with the PAR1 magic bytes (truncated or another format)".to_owned()),
    }
    if footer_length > MAX_FOOTER_BYTES || footer_length + 8 > file.length {
        return Err(format!("the footer length ({footer_length} bytes) is larger than the file or than {MAX_FOOTER_BYTES} bytes"));
    }
    let mut footer = vec![0u8; footer_length as usize];
    file.read_exact_at(file.length - 8 - footer_length, &mut footer).map_err(|error| format!("cannot read the footer: {error}"))?;
    check_footer(&footer, MAX_SCHEMA_DEPTH)
}

/// The file as the parquet crate reads it, with every read kept inside the file (a footer or page
/// header that claims more bytes than the file has fails instead of allocating for them) and done
/// at an explicit offset (no file cursor shared between the crate's readers).
#[derive(Clone)]
struct BoundedFile {
    file: Arc<File>,
    length: u64,
}

impl BoundedFile {
    fn open(source: &Source) -> io::Result<Self> {
        let file = source.open()?;
        let length = file.metadata()?.len();
        Ok(Self { file: Arc::new(file), length })
    }

    /// Up to `count` bytes from `offset` (fewer at the end of the file).
    fn read_window(&self, offset: u64, count: u64) -> io::Result<Vec<u8>> {
        if offset >= self.length {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("offset {offset} lies beyond the file's end")));
        }
        let mut buffer = vec![0u8; count.min(self.length - offset) as usize];
        self.read_exact_at(offset, &mut buffer)?;
        Ok(buffer)
    }

    fn read_exact_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buffer, offset)
    }
}

impl Length for BoundedFile {
    fn len(&self) -> u64 {
        self.length
    }
}

impl ChunkReader for BoundedFile {
    type T = BufReader<ReadFrom>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(BufReader::new(ReadFrom { file: Arc::clone(&self.file), offset: start }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let inside = start.checked_add(length as u64).is_some_and(|end| end <= self.length);
        if !inside {
            return Err(ParquetError::EOF(format!(
                "the file claims {length} bytes at offset {start}, but it has only {} bytes",
                self.length
            )));
        }
        let mut buffer = vec![0u8; length];
        self.read_exact_at(start, &mut buffer)?;
        Ok(Bytes::from(buffer))
    }
}

/// A stream over the file from `offset`, reading at explicit offsets.
struct ReadFrom {
    file: Arc<File>,
    offset: u64,
}

impl Read for ReadFrom {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buffer, self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}
#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{
        ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, Int8Array, IntervalYearMonthArray, StringArray,
        TimestampMillisecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    use super::super::{ConfiguredFormat, FieldValue};
    use super::*;

    /// `rows` rows of every kind of column the reader converts; every 5th row has nulls, every
    /// 7th an interval (an unsupported type, so that row is rejected).
    fn batch(rows: usize) -> RecordBatch {
        let mut embedding = ListBuilder::new(Float32Builder::new());
        let mut fixed = FixedSizeListBuilder::new(Float32Builder::new(), 3);
        for row in 0..rows {
            embedding.append_value([Some(row as f32), Some(0.5)]);
            fixed.values().append_slice(&[row as f32, 1.0, 2.0]);
            fixed.append(true);
        }
        let category: DictionaryArray<Int32Type> =
            (0..rows).map(|row| if row % 5 == 0 { None } else { Some(["a", "b"][row % 2]) }).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..rows as i64))),
            ("text", Arc::new(StringArray::from_iter((0..rows).map(|row| (row % 5 != 0).then(|| format!("row {row}")))))),
            ("category", Arc::new(category)),
            ("embedding", Arc::new(embedding.finish())),
            ("fixed", Arc::new(fixed.finish())),
            ("flag", Arc::new(BooleanArray::from_iter((0..rows).map(|row| Some(row % 2 == 0))))),
            ("score", Arc::new(Float64Array::from_iter_values((0..rows).map(|row| row as f64 / 4.0)))),
            ("small", Arc::new(Int8Array::from_iter_values((0..rows).map(|row| (row % 100) as i8)))),
            ("seen", Arc::new(TimestampMillisecondArray::from_iter_values((0..rows).map(|row| row as i64 * 1000)).with_timezone("UTC"))),
            ("span", Arc::new(IntervalYearMonthArray::from_iter((0..rows).map(|row| (row % 7 == 6).then_some(1))))),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn write(path: &Path, rows: usize, row_group_rows: usize, compression: Compression) {
        let properties = WriterProperties::builder().set_compression(compression).set_max_row_group_row_count(Some(row_group_rows)).build();
        let data = batch(rows);
        let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), data.schema(), Some(properties)).unwrap();
        writer.write(&data).unwrap();
        writer.close().unwrap();
    }

    fn read_all(reader: &mut ParquetReader) -> Vec<ReadItem> {
        let mut items = Vec::new();
        while let Some(item) = reader.next_item().unwrap() {
            items.push(item);
        }
        items
    }

    fn record(item: &ReadItem) -> &Record {
        match item {
            ReadItem::Record(record) => record,
            ReadItem::Rejected(rejected) => panic!("rejected: {rejected:?}"),
        }
    }

    #[test]
    fn parquet_is_chosen_by_extension_or_by_name() {
        use super::super::Format;
        assert_eq!(Format::resolve(&ConfiguredFormat::Auto, Path::new("in/rows.PARQUET")).unwrap(), Format::Parquet);
        assert_eq!(Format::resolve(&"parquet".parse().unwrap(), Path::new("in/rows.bin")).unwrap(), Format::Parquet);
    }

    #[test]
    fn reads_every_column_kind_across_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 20, 8, Compression::SNAPPY);
        let mut reader = ParquetReader::open(&path).unwrap();
        assert_eq!(reader.total_rows(), 20);
        assert_eq!(reader.columns(), ["id", "text", "category", "embedding", "fixed", "flag", "score", "small", "seen", "span"]);
        let items = read_all(&mut reader);
        assert_eq!(items.len(), 20);
        let third = record(&items[3]);
        assert_eq!(third.get("id"), Some(&FieldValue::Int(3)));
        assert_eq!(third.get("text"), Some(&FieldValue::Text("row 3".to_owned())));
        assert_eq!(third.get("category"), Some(&FieldValue::Text("b".to_owned())));
        assert_eq!(third.get("embedding"), Some(&FieldValue::Vector(vec![3.0, 0.5])));
        assert_eq!(third.get("fixed"), Some(&FieldValue::Vector(vec![3.0, 1.0, 2.0])));
        assert_eq!(third.get("flag"), Some(&FieldValue::Bool(false)));
        assert_eq!(third.get("score"), Some(&FieldValue::Float(0.75)));
        assert_eq!(third.get("small"), Some(&FieldValue::Int(3)));
        assert_eq!(third.get("seen"), Some(&FieldValue::Text("1970-01-01T00:00:03Z".to_owned())));
        assert_eq!(third.get("span"), Some(&FieldValue::Null));
        let fifth = record(&items[5]);
        assert_eq!((fifth.get("text"), fifth.get("category")), (Some(&FieldValue::Null), Some(&FieldValue::Null)));
        let ReadItem::Rejected(rejected) = &items[6] else { panic!("{:?}", items[6]) };
        assert_eq!(rejected.field.as_deref(), Some("span"));
        assert!(rejected.reason.contains("Interval"), "{}", rejected.reason);
        assert!(rejected.raw.contains("\"row 6\""), "{}", rejected.raw);
    }

    #[test]
    fn positions_name_the_row_group_and_the_next_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 20, 8, Compression::UNCOMPRESSED);
        let items = read_all(&mut ParquetReader::open(&path).unwrap());
        let position = |index: usize| match &items[index] {
            ReadItem::Record(record) => record.position,
            ReadItem::Rejected(rejected) => rejected.position,
        };
        assert_eq!(position(9).ordinal, 9);
        assert_eq!(position(9).line, None);
        assert_eq!(position(0).byte_offset, 4, "the first row group starts after the magic bytes");
        assert_eq!(position(7).byte_offset, position(0).byte_offset);
        assert!(position(8).byte_offset > position(7).byte_offset);
        assert_eq!(items[2].next(), &Checkpoint::Parquet { row_group: 0, row: 3, ordinal: 3 });
        assert_eq!(items[7].next(), &Checkpoint::Parquet { row_group: 1, row: 0, ordinal: 8 });
        assert_eq!(items[19].next(), &Checkpoint::Parquet { row_group: 3, row: 0, ordinal: 20 });
        assert_eq!(items[19].next().units(), 20);
    }

    #[test]
    fn every_compression_reads_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut reads = Vec::new();
        for compression in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::GZIP(GzipLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
            Compression::LZ4_RAW,
        ] {
            let path = dir.path().join(format!("{compression:?}.parquet"));
            write(&path, 30, 11, compression);
            // Row group offsets differ with the compression; the rows and checkpoints must not.
            let without_offsets = read_all(&mut ParquetReader::open(&path).unwrap()).into_iter().map(|mut item| {
                match &mut item {
                    ReadItem::Record(record) => record.position.byte_offset = 0,
                    ReadItem::Rejected(rejected) => rejected.position.byte_offset = 0,
                }
                item
            });
            reads.push(without_offsets.collect::<Vec<_>>());
        }
        assert_eq!(reads[0].len(), 30);
        for read in &reads[1..] {
            assert_eq!(read, &reads[0]);
        }
    }

    #[test]
    fn resuming_at_any_record_yields_exactly_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 60, 7, Compression::ZSTD(ZstdLevel::default()));
        let all = read_all(&mut ParquetReader::open_with_batch_rows(&path, &Checkpoint::Start, 3).unwrap());
        assert_eq!(all.len(), 60);
        assert!(all.iter().any(|item| matches!(item, ReadItem::Rejected(_))));
        for cut in 1..=all.len() {
            let resume = all[cut - 1].next().clone();
            let rest = read_all(&mut ParquetReader::open_with_batch_rows(&path, &resume, 3).unwrap());
            assert_eq!(rest, all[cut..], "resumed after record {cut} at {resume:?}");
        }
    }

    #[test]
    fn resuming_across_full_size_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 2500, 1100, Compression::SNAPPY);
        let all = read_all(&mut ParquetReader::open(&path).unwrap());
        assert_eq!(all.len(), 2500);
        for cut in [1, 1023, 1024, 1025, 1099, 1100, 1101, 2200, 2499, 2500] {
            let rest = read_all(&mut ParquetReader::open_at(&path, all[cut - 1].next()).unwrap());
            assert_eq!(rest, all[cut..], "resumed after record {cut}");
        }
    }

    #[test]
    fn checkpoints_that_do_not_fit_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 10, 4, Compression::SNAPPY);
        for resume in [
            Checkpoint::Parquet { row_group: 9, row: 0, ordinal: 0 },
            Checkpoint::Parquet { row_group: 0, row: 5, ordinal: 5 },
            Checkpoint::Text { byte_offset: 0, line: 1, ordinal: 0 },
        ] {
            assert!(matches!(ParquetReader::open_at(&path, &resume), Err(ReadError::Corrupt { .. })), "{resume:?}");
        }
        let at_end = ParquetReader::open_at(&path, &Checkpoint::Parquet { row_group: 3, row: 0, ordinal: 10 });
        assert!(read_all(&mut at_end.unwrap()).is_empty());
    }

    #[test]
    fn truncated_files_and_other_formats_are_corrupt_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 20, 8, Compression::SNAPPY);
        let whole = std::fs::read(&path).unwrap();
        let cut_path = dir.path().join("cut.parquet");
        for length in (0..whole.len()).step_by(7) {
            std::fs::write(&cut_path, &whole[..length]).unwrap();
            match ParquetReader::open(&cut_path) {
                Err(ReadError::Corrupt { message, .. }) => assert!(!message.is_empty()),
                other => panic!("cut at {length}: {:?}", other.map(|_| "opened")),
            }
        }
        std::fs::write(&cut_path, b"id,text\n1,hello\n").unwrap();
        let Err(ReadError::Corrupt { message, .. }) = ParquetReader::open(&cut_path) else { panic!("csv opened as parquet") };
        assert!(message.contains("not a Parquet file"), "{message}");
    }

    #[test]
    fn damaged_data_pages_end_in_errors_or_values_never_panics() {
        // Some of these damages make arrow-rs panic (e.g. "offset + len out of bounds" in
        // arrow-buffer); the reader turns those panics into errors.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write(&path, 10, 5, Compression::SNAPPY);
        let whole = std::fs::read(&path).unwrap();
        let footer_length = u32::from_le_bytes(whole[whole.len() - 8..whole.len() - 4].try_into().unwrap()) as usize;
        let data_end = whole.len() - 8 - footer_length;
        let damaged_path = dir.path().join("damaged.parquet");
        for offset in (4..data_end).step_by(2) {
            let mut damaged = whole.clone();
            damaged[offset] ^= 0xA5;
            std::fs::write(&damaged_path, &damaged).unwrap();
            let mut reader = ParquetReader::open(&damaged_path).unwrap();
            let mut steps = 0;
            loop {
                match reader.next_item() {
                    Ok(Some(_)) => steps += 1,
                    Ok(None) => break,
                    Err(error) => {
                        assert!(matches!(error, ReadError::Corrupt { .. }), "{error}");
                        assert!(matches!(reader.next_item(), Ok(None)), "a failed reader yields nothing more");
                        break;
                    }
                }
                assert!(steps <= 10, "more rows than the file has at offset {offset}");
            }
        }
    }

    #[test]
    fn a_deeply_nested_footer_is_refused_instead_of_overflowing_the_stack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.parquet");
        let footer = super::super::parquet_guard::nested_footer(100_000);
        let mut bytes = PARQUET_MAGIC.to_vec();
        bytes.extend_from_slice(&footer);
        bytes.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        bytes.extend_from_slice(PARQUET_MAGIC);
        std::fs::write(&path, bytes).unwrap();
        let Err(ReadError::Corrupt { message, .. }) = ParquetReader::open(&path) else { panic!("opened") };
        assert!(message.contains("nests more than"), "{message}");
    }
}
