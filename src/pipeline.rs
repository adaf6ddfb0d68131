//! One file through the stages: **read → map → embed → upsert → commit**.
//!
//! ```text
//!  read + map (blocking thread) ──batches──► embed (blocking pool) ──batches──► upsert + commit
//!       │                        bounded              │            bounded            │
//!       └─ rejected records → dead-letter file        └─ one shared Embedder          └─ progress
//! ```
//! The stages are built last to first and joined by bounded channels, so a slow stage holds back
//! the ones before it and memory stays bounded. A batch carries the file position just past its
//! last record; positions are committed only after Milvus acknowledged the batch (invariant 1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::dead_letter::{now_rfc3339, DeadLetter, DeadLetterWriter};
use crate::embed::{EmbedError, Embedder};
use crate::format::{Format, ReadError, ReadItem, RecordReader};
use crate::mapping::{Row, RowSchema};
use crate::progress::{ImportSummary, Progress};
use crate::settings::{PipelineSettings, Settings};
use crate::sink::{CollectionSpec, MilvusSink, SinkError};

/// Batches in flight between two stages.
const CHANNEL_DEPTH: usize = 2;

/// Why a file's import stopped. Rows committed before the error stay in Milvus.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read (further).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file's columns do not fit the pipeline (every record would fail).
    #[error("{path}: {message}")]
    Schema {
        /// The file.
        path: String,
        /// Which columns are missing.
        message: String,
    },
    /// The model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Milvus failed (after retries).
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The dead-letter file cannot be written: stop rather than lose records.
    #[error("dead-letter file {path}: {source}")]
    DeadLetter {
        /// The dead-letter file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stage ended without saying why (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What an import needs that outlives one file: the model, Milvus, the config.
#[derive(Clone)]
pub struct ImportContext {
    /// The loaded configuration.
    pub settings: Arc<Settings>,
    /// The shared model.
    pub embedder: Embedder,
    /// Milvus.
    pub sink: Arc<MilvusSink>,
    /// Show a progress bar when on a terminal.
    pub interactive: bool,
}

/// Rows of consecutive records, with where the file is read up to.
struct RowBatch {
    rows: Vec<Row>,
    rejected: u64,
    end_offset: u64,
}

/// A batch with one vector per row.
struct EmbeddedBatch {
    rows: Vec<Row>,
    vectors: Vec<Vec<f32>>,
    rejected: u64,
    end_offset: u64,
}

/// Imports `path` with `pipeline`: creates or validates the collection, streams the file through
/// the stages and flushes the collection at the end.
pub async fn import_file(context: &ImportContext, pipeline: &PipelineSettings, path: &Path) -> Result<ImportSummary, ImportError> {
    let span = tracing::info_span!("import", pipeline = %pipeline.name, file = %path.display(), collection = %pipeline.collection);
    let _entered = span.enter();
    let spec = CollectionSpec::of(pipeline, context.embedder.dimension(), context.embedder.identity());
    context.sink.ensure_collection(&spec).await?;
    let format = Format::resolve(&pipeline.format, path)?;
    let file_hash = hash_file(path).await?;
    let total_bytes = std::fs::metadata(path).map(|metadata| metadata.len()).unwrap_or(0);

    let (embedded_sender, mut embedded_receiver) = mpsc::channel::<EmbeddedBatch>(CHANNEL_DEPTH);
    let (row_sender, row_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
    let embed_stage = tokio::spawn(embed_stage(context.embedder.clone(), row_receiver, embedded_sender));
    let read_stage = spawn_read_stage(context, pipeline, path, format, file_hash, row_sender);

    let mut progress = Progress::start(&path.display().to_string(), total_bytes, context.interactive);
    while let Some(batch) = embedded_receiver.recv().await {
        let imported = context.sink.upsert(&spec, &batch.rows, &batch.vectors).await?;
        progress.advance(imported, batch.rejected, batch.end_offset);
    }
    let embed_result = embed_stage.await.map_err(|error| ImportError::Internal(format!("embed stage: {error}")))?;
    let read_result = read_stage.await.map_err(|error| ImportError::Internal(format!("read stage: {error}")))?;
    read_result?;
    embed_result?;
    context.sink.flush(&spec.name).await?;
    Ok(progress.finish())
}

async fn embed_stage(
    embedder: Embedder,
    mut batches: mpsc::Receiver<RowBatch>,
    output: mpsc::Sender<EmbeddedBatch>,
) -> Result<(), ImportError> {
    while let Some(batch) = batches.recv().await {
        let texts = batch.rows.iter().map(|row| row.text.clone()).collect();
        let vectors = embedder.embed(texts).await?;
        let embedded = EmbeddedBatch { rows: batch.rows, vectors, rejected: batch.rejected, end_offset: batch.end_offset };
        if output.send(embedded).await.is_err() {
            break; // the upsert stage stopped; its error is reported there
        }
    }
    Ok(())
}

fn spawn_read_stage(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    path: &Path,
    format: Format,
    file_hash: String,
    output: mpsc::Sender<RowBatch>,
) -> tokio::task::JoinHandle<Result<(), ImportError>> {
    let schema = RowSchema::of(pipeline);
    let batch_rows = pipeline.batch_rows;
    let mut dead_letters = DeadLetterWriter::new(&context.settings.resolve(&context.settings.state.dir), &pipeline.name);
    let pipeline_name = pipeline.name.clone();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut reader = RecordReader::open(format, &path)?;
        check_columns(&reader, &schema, &path)?;
        let mut letters = LetterContext { writer: &mut dead_letters, pipeline: &pipeline_name, path: &path, file_hash: &file_hash };
        let mut batch = RowBatch { rows: Vec::with_capacity(batch_rows), rejected: 0, end_offset: 0 };
        while let Some(item) = reader.next_item()? {
            batch.end_offset = item.end_offset();
            match item {
                ReadItem::Record(record) => match schema.map(&record, &file_hash) {
                    Ok(row) => batch.rows.push(row),
                    Err(error) => {
                        letters.write(record.position, Some(error.field), error.reason, raw_of(&record))?;
                        batch.rejected += 1;
                    }
                },
                ReadItem::Rejected(rejected) => {
                    letters.write(rejected.position, rejected.field, rejected.reason, rejected.raw)?;
                    batch.rejected += 1;
                }
            }
            if batch.rows.len() >= batch_rows {
                letters.flush()?;
                let next = RowBatch { rows: Vec::with_capacity(batch_rows), rejected: 0, end_offset: batch.end_offset };
                if output.blocking_send(std::mem::replace(&mut batch, next)).is_err() {
                    return Ok(()); // a later stage stopped; its error is reported there
                }
            }
        }
        letters.flush()?;
        if !batch.rows.is_empty() || batch.rejected > 0 {
            let _ = output.blocking_send(batch);
        }
        Ok(())
    })
}

/// A file whose header lacks a required column is refused as a whole.
fn check_columns(reader: &RecordReader, schema: &RowSchema, path: &Path) -> Result<(), ImportError> {
    let RecordReader::Csv(csv) = reader;
    let missing: Vec<&str> =
        schema.required_columns().into_iter().filter(|column| !csv.headers().iter().any(|header| header == column)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImportError::Schema {
        path: path.display().to_string(),
        message: format!("the header lacks column(s) {missing:?} required by the pipeline; found {:?}", csv.headers()),
    })
}

fn raw_of(record: &crate::format::Record) -> String {
    let values: serde_json::Map<String, serde_json::Value> = record
        .values
        .iter()
        .map(|(name, value)| {
            let json = match value {
                crate::format::FieldValue::Null => serde_json::Value::Null,
                crate::format::FieldValue::Text(text) => serde_json::Value::String(text.clone()),
            };
            (name.clone(), json)
        })
        .collect();
    crate::format::raw_excerpt(serde_json::Value::Object(values).to_string().as_bytes())
}

struct LetterContext<'a> {
    writer: &'a mut DeadLetterWriter,
    pipeline: &'a str,
    path: &'a Path,
    file_hash: &'a str,
}

impl LetterContext<'_> {
    fn write(
        &mut self,
        position: crate::format::RecordPosition,
        field: Option<String>,
        reason: String,
        raw: String,
    ) -> Result<(), ImportError> {
        let letter = DeadLetter {
            time: now_rfc3339(),
            pipeline: self.pipeline.to_owned(),
            file: self.path.display().to_string(),
            file_hash: self.file_hash.to_owned(),
            position,
            field,
            reason,
            raw,
        };
        tracing::warn!(line = ?letter.position.line, field = ?letter.field, reason = %letter.reason, "record dead-lettered");
        self.writer.write(&letter).map_err(|source| ImportError::DeadLetter { path: self.writer.path().to_owned(), source })
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        self.writer.flush().map_err(|source| ImportError::DeadLetter { path: self.writer.path().to_owned(), source })
    }
}

/// BLAKE3 of the file's content (streamed, on a blocking thread).
pub async fn hash_file(path: &Path) -> Result<String, ReadError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let io_error = |source| ReadError::Io { path: path.display().to_string(), source };
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&path).map_err(io_error)?).map_err(io_error)?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await
    .expect("hashing does not panic")
}
