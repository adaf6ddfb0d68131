//! The **read + map** stage: records → rows in batches, rejected records → dead letters carried
//! with the batch (written when the batch is committed, so a replay after a crash does not write
//! them twice).
//!
//! A batch is cut at `batch_rows` rows, at [`MAX_LETTER_BYTES`] of rejected records, or when it
//! has been open for [`MAX_BATCH_AGE`]: a file of nothing but bad records streams through in the
//! same memory as a good one, and its position keeps being committed. Within a batch, a key that
//! comes again replaces the earlier row (the last version wins, as the order of commits gives
//! across batches; Milvus 2.3 kept the first of a batch, 2.6 refuses such a batch). The first
//! [`LOGGED_REJECTIONS`] rejections of a file are logged, then one summary line by cause.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ImportError;
use crate::dead_letter::{DeadLetter, RejectCause};
use crate::format::{raw_excerpt, Checkpoint, Format, ReadItem, ReadOptions, Record, RecordPosition, RecordReader, Source};
use crate::mapping::{Row, RowSchema};
use crate::timestamp::now_rfc3339;

/// Bytes of rejected records (raw excerpts and reasons) after which a batch is cut.
pub const MAX_LETTER_BYTES: usize = 1024 * 1024;
/// Age after which a batch that holds anything is cut, so that commits keep coming on slow input.
pub const MAX_BATCH_AGE: Duration = Duration::from_secs(1);
/// Rejections logged one by one per file; the rest are summed up in one line.
pub const LOGGED_REJECTIONS: u64 = 5;

/// Rows of consecutive records and the checkpoint delta `(from, to]` they cover.
pub struct RowBatch {
    /// Rows to embed and upsert, one per primary key.
    pub rows: Vec<Row>,
    /// Records of the delta that could not become rows.
    pub dead_letters: Vec<DeadLetter>,
    /// Rows of the delta dropped because Milvus already holds them unchanged.
    pub unchanged: u64,
    /// Rows of the delta replaced by a later record with the same key.
    pub superseded: u64,
    /// Keys of `rows` the collection already holds, when the incremental stage looked them up
    /// (the bulk path imports only the others).
    pub stored_keys: Option<std::collections::HashSet<String>>,
    /// Committed position before the batch.
    pub from: Checkpoint,
    /// Position after the batch's last record.
    pub to: Checkpoint,
}

/// What the read stage needs to know about the file.
pub struct ReadJob {
    /// The opened reader, at `resume`.
    pub reader: RecordReader,
    /// Where the reader starts.
    pub resume: Checkpoint,
    /// Record → row.
    pub schema: RowSchema,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Pipeline name (dead letters).
    pub pipeline: String,
    pub path: PathBuf,
    /// Its content hash (keys, dead letters).
    pub file_hash: String,
    /// Shutdown: stop after the current batch.
    pub cancel: CancellationToken,
    /// Rejections so far in this run, by cause (for the log's summary line).
    pub rejections: BTreeMap<RejectCause, u64>,
}

/// Why the read stage stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The file was read to its end (or a later stage hung up, which reports its own error).
    Complete,
    /// Shutdown was requested; every record read was handed on in a batch.
    Interrupted,
}

/// Opens the reader on a blocking thread and checks its columns against the schema.
pub async fn open_reader(
    format: Format,
    source: &Source,
    options: ReadOptions,
    resume: &Checkpoint,
    schema: &RowSchema,
) -> Result<RecordReader, ImportError> {
    let (source, resume, schema) = (source.clone(), resume.clone(), schema.clone());
    tokio::task::spawn_blocking(move || {
        let reader = RecordReader::open(format, &source, &options, &resume)?;
        check_columns(&reader, &schema, source.name())?;
        Ok(reader)
    })
    .await
    .map_err(|error| ImportError::Internal(format!("opening the reader: {error}")))?
}

/// Runs the stage on a blocking thread until the file ends, the reader fails, the next stage
/// hangs up, or shutdown is requested (checked between batches, so batches end at record
/// boundaries either way).
pub fn spawn(mut job: ReadJob, output: mpsc::Sender<RowBatch>) -> tokio::task::JoinHandle<Result<ReadEnd, ImportError>> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let result = job.run(&output);
        job.log_rejection_summary();
        result
    })
}

impl ReadJob {
    fn run(&mut self, output: &mpsc::Sender<RowBatch>) -> Result<ReadEnd, ImportError> {
        let mut batch = OpenBatch::new(self.empty_batch(self.resume.clone()));
        loop {
            let item = match self.reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(error) => {
                    // Records read before the damage still count: hand them on, then fail.
                    let _ = output.blocking_send(batch.batch);
                    return Err(error.into());
                }
            };
            batch.batch.to = item.next().clone();
            match item {
                ReadItem::Record(record) => match self.schema.map(&record, &self.file_hash) {
                    Ok(row) => batch.push_row(row),
                    Err(error) => {
                        let letter =
                            self.letter(record.position, Some(error.field), error.reason, raw_of(&record), RejectCause::InvalidValue);
                        batch.push_letter(letter);
                    }
                },
                ReadItem::Rejected(rejected) => {
                    let letter = self.letter(rejected.position, rejected.field, rejected.reason, rejected.raw, RejectCause::Malformed);
                    batch.push_letter(letter);
                }
            }
            if batch.is_full(self.batch_rows) {
                let next = OpenBatch::new(self.empty_batch(batch.batch.to.clone()));
                if output.blocking_send(std::mem::replace(&mut batch, next).batch).is_err() {
                    return Ok(ReadEnd::Complete); // a later stage stopped; its error is reported there
                }
                // Its age counts from now: waiting for a slow stage must not cut the next batch short.
                batch.opened = Instant::now();
                if self.cancel.is_cancelled() {
                    return Ok(ReadEnd::Interrupted);
                }
            }
        }
        let batch = batch.batch;
        if !batch.rows.is_empty() || !batch.dead_letters.is_empty() || batch.from != batch.to {
            let _ = output.blocking_send(batch);
        }
        Ok(ReadEnd::Complete)
    }

    fn empty_batch(&self, at: Checkpoint) -> RowBatch {
        RowBatch {
            rows: Vec::with_capacity(self.batch_rows),
            dead_letters: Vec::new(),
            unchanged: 0,
            superseded: 0,
            stored_keys: None,
            from: at.clone(),
            to: at,
        }
    }

    fn letter(&mut self, position: RecordPosition, field: Option<String>, reason: String, raw: String, cause: RejectCause) -> DeadLetter {
        *self.rejections.entry(cause).or_default() += 1;
        let rejected_so_far: u64 = self.rejections.values().sum();
        if rejected_so_far <= LOGGED_REJECTIONS {
            tracing::warn!(line = ?position.line, ordinal = position.ordinal, field = ?field, reason = %reason, "record rejected");
            if rejected_so_far == LOGGED_REJECTIONS {
                tracing::warn!("further rejections of this file are only counted; a summary follows at its end");
            }
        }
        DeadLetter {
            time: now_rfc3339(),
            pipeline: self.pipeline.clone(),
            file: self.path.display().to_string(),
            file_hash: self.file_hash.clone(),
            position,
            field,
            cause,
            reason,
            raw,
        }
    }

    fn log_rejection_summary(&self) {
        let total: u64 = self.rejections.values().sum();
        if total > LOGGED_REJECTIONS {
            let by_cause: Vec<String> = self.rejections.iter().map(|(cause, count)| format!("{}: {count}", cause.as_str())).collect();
            tracing::warn!(rejected = total, by_cause = %by_cause.join(", "), "records rejected (all are in the dead-letter file)");
        }
    }
}

/// A batch being filled: rows by key (so that a later record with the same key replaces the
/// earlier one), and what decides when it is cut.
struct OpenBatch {
    batch: RowBatch,
    index_by_key: HashMap<String, usize>,
    letter_bytes: usize,
    opened: Instant,
}

impl OpenBatch {
    fn new(batch: RowBatch) -> Self {
        Self { batch, index_by_key: HashMap::new(), letter_bytes: 0, opened: Instant::now() }
    }

    fn push_row(&mut self, row: Row) {
        match self.index_by_key.get(&row.primary_key) {
            Some(&index) => {
                self.batch.rows[index] = row;
                self.batch.superseded += 1;
            }
            None => {
                self.index_by_key.insert(row.primary_key.clone(), self.batch.rows.len());
                self.batch.rows.push(row);
            }
        }
    }

    fn push_letter(&mut self, letter: DeadLetter) {
        self.letter_bytes += letter.raw.len() + letter.reason.len() + letter.file.len() + 128;
        self.batch.dead_letters.push(letter);
    }

    fn is_full(&self, batch_rows: usize) -> bool {
        let holds_anything = !self.batch.rows.is_empty() || !self.batch.dead_letters.is_empty();
        self.batch.rows.len() >= batch_rows
            || self.letter_bytes >= MAX_LETTER_BYTES
            || (holds_anything && self.opened.elapsed() >= MAX_BATCH_AGE)
    }
}

/// A file whose declared columns (CSV header, Parquet schema) lack a required one is refused as a
/// whole: every record would fail.
fn check_columns(reader: &RecordReader, schema: &RowSchema, path: &Path) -> Result<(), ImportError> {
    let Some(columns) = reader.columns() else { return Ok(()) };
    let missing: Vec<&str> = schema.required_columns().into_iter().filter(|column| !columns.iter().any(|name| name == column)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImportError::Schema {
        path: path.display().to_string(),
        message: format!("the file lacks column(s) {missing:?} required by the pipeline; found {columns:?}"),
    })
}

fn raw_of(record: &Record) -> String {
    raw_excerpt(record.to_json().to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> OpenBatch {
        let empty = RowBatch {
            rows: Vec::new(),
            dead_letters: Vec::new(),
            unchanged: 0,
            superseded: 0,
            stored_keys: None,
            from: Checkpoint::Start,
            to: Checkpoint::Start,
        };
        OpenBatch::new(empty)
    }

    fn row(key: &str, text: &str) -> Row {
        Row {
            primary_key: key.into(),
            text: text.into(),
            scalars: vec![],
            row_hash: 0,
            position: RecordPosition { ordinal: 0, line: None, byte_offset: 0 },
            vector: None,
        }
    }

    fn letter(raw_bytes: usize) -> DeadLetter {
        DeadLetter {
            time: String::new(),
            pipeline: "docs".into(),
            file: "a.jsonl".into(),
            file_hash: "h".into(),
            position: RecordPosition { ordinal: 0, line: Some(1), byte_offset: 0 },
            field: Some("count".into()),
            cause: RejectCause::InvalidValue,
            reason: "expected an int64".into(),
            raw: "x".repeat(raw_bytes),
        }
    }

    #[test]
    fn a_key_that_comes_again_replaces_the_earlier_row_in_place() {
        let mut open = batch();
        for (key, text) in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("a", "a3"), ("b", "b2")] {
            open.push_row(row(key, text));
        }
        let texts: Vec<(&str, &str)> = open.batch.rows.iter().map(|row| (row.primary_key.as_str(), row.text.as_str())).collect();
        assert_eq!(texts, [("a", "a3"), ("b", "b2"), ("c", "c1")], "one row per key, the last version");
        assert_eq!(open.batch.superseded, 3);
        assert!(!open.is_full(3 + 1), "superseded rows do not fill the batch");
    }

    #[test]
    fn rejected_records_cut_the_batch_by_bytes_without_any_good_row() {
        let mut open = batch();
        let mut letters = 0;
        while !open.is_full(512) {
            open.push_letter(letter(4096));
            letters += 1;
            assert!(letters < 10_000, "the batch is never cut");
        }
        assert!(open.batch.rows.is_empty());
        assert!(letters * 4096 >= MAX_LETTER_BYTES / 2 && letters * 4096 <= MAX_LETTER_BYTES + 4096, "{letters} letters");
    }

    #[test]
    fn an_empty_batch_is_never_cut_by_age() {
        let mut open = batch();
        open.opened = Instant::now() - 2 * MAX_BATCH_AGE;
        assert!(!open.is_full(512), "nothing to commit yet");
        open.push_row(row("a", "a"));
        assert!(open.is_full(512), "an old batch with a row goes out");
    }
}
