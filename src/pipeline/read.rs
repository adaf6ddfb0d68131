//! The **read + map** stage: records → rows in batches, rejected records → dead letters carried
//! with the batch (written when the batch is committed, so a replay after a crash does not write
//! them twice).

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ImportError;
use crate::dead_letter::{now_rfc3339, DeadLetter};
use crate::format::{raw_excerpt, Checkpoint, Format, ReadItem, ReadOptions, Record, RecordPosition, RecordReader};
use crate::mapping::{Row, RowSchema};

/// Rows of consecutive records and the checkpoint delta `(from, to]` they cover.
pub struct RowBatch {
    /// Rows to embed and upsert.
    pub rows: Vec<Row>,
    /// Records of the delta that could not become rows.
    pub dead_letters: Vec<DeadLetter>,
    /// Rows of the delta dropped because Milvus already holds them unchanged.
    pub unchanged: u64,
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
    /// The file.
    pub path: PathBuf,
    /// Its content hash (keys, dead letters).
    pub file_hash: String,
    /// Shutdown: stop after the current batch.
    pub cancel: CancellationToken,
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
    path: &Path,
    options: ReadOptions,
    resume: &Checkpoint,
    schema: &RowSchema,
) -> Result<RecordReader, ImportError> {
    let (path, resume, schema) = (path.to_owned(), resume.clone(), schema.clone());
    tokio::task::spawn_blocking(move || {
        let reader = RecordReader::open(format, &path, &options, &resume)?;
        check_columns(&reader, &schema, &path)?;
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
        let mut batch = job.empty_batch(job.resume.clone());
        loop {
            let item = match job.reader.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(error) => {
                    // Records read before the damage still count: hand them on, then fail.
                    let _ = output.blocking_send(batch);
                    return Err(error.into());
                }
            };
            batch.to = item.next().clone();
            match item {
                ReadItem::Record(record) => match job.schema.map(&record, &job.file_hash) {
                    Ok(row) => batch.rows.push(row),
                    Err(error) => batch.dead_letters.push(job.letter(record.position, Some(error.field), error.reason, raw_of(&record))),
                },
                ReadItem::Rejected(rejected) => {
                    batch.dead_letters.push(job.letter(rejected.position, rejected.field, rejected.reason, rejected.raw))
                }
            }
            if batch.rows.len() >= job.batch_rows {
                let next = job.empty_batch(batch.to.clone());
                if output.blocking_send(std::mem::replace(&mut batch, next)).is_err() {
                    return Ok(ReadEnd::Complete); // a later stage stopped; its error is reported there
                }
                if job.cancel.is_cancelled() {
                    return Ok(ReadEnd::Interrupted);
                }
            }
        }
        if !batch.rows.is_empty() || !batch.dead_letters.is_empty() || batch.from != batch.to {
            let _ = output.blocking_send(batch);
        }
        Ok(ReadEnd::Complete)
    })
}

impl ReadJob {
    fn empty_batch(&self, at: Checkpoint) -> RowBatch {
        RowBatch { rows: Vec::with_capacity(self.batch_rows), dead_letters: Vec::new(), unchanged: 0, from: at.clone(), to: at }
    }

    fn letter(&self, position: RecordPosition, field: Option<String>, reason: String, raw: String) -> DeadLetter {
        tracing::warn!(line = ?position.line, ordinal = position.ordinal, field = ?field, reason = %reason, "record rejected");
        DeadLetter {
            time: now_rfc3339(),
            pipeline: self.pipeline.clone(),
            file: self.path.display().to_string(),
            file_hash: self.file_hash.clone(),
            position,
            field,
            reason,
            raw,
        }
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
