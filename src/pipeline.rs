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
use crate::format::{Checkpoint, Format, ReadError, ReadItem, ReadOptions, RecordReader};
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

/// Rows of consecutive records and the checkpoint delta `(from, to]` they cover.
struct RowBatch {
    rows: Vec<Row>,
    rejected: u64,
    from: Checkpoint,
    to: Checkpoint,
}

/// A batch with one vector per row.
struct EmbeddedBatch {
    rows: Vec<Row>,
    vectors: Vec<Vec<f32>>,
    rejected: u64,
    from: Checkpoint,
    to: Checkpoint,
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
    let resume = Checkpoint::Start;
    let reader = open_reader(format, path, pipeline, &resume, &RowSchema::of(pipeline, spec.dimension)).await?;
    let total_units = reader.total_units();

    let (embedded_sender, mut embedded_receiver) = mpsc::channel::<EmbeddedBatch>(CHANNEL_DEPTH);
    let (row_sender, row_receiver) = mpsc::channel::<RowBatch>(CHANNEL_DEPTH);
    let embed_stage = tokio::spawn(embed_stage(context.embedder.clone(), row_receiver, embedded_sender));
    let read_stage = spawn_read_stage(context, pipeline, reader, resume, spec.dimension, path, file_hash, row_sender);

    let mut progress = Progress::start(&path.display().to_string(), total_units, context.interactive);
    while let Some(batch) = embedded_receiver.recv().await {
        let imported = context.sink.upsert(&spec, &batch.rows, &batch.vectors).await?;
        progress.advance(imported, batch.rejected, batch.to.units());
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
    while let Some(mut batch) = batches.recv().await {
        let vectors = vectors_for(&embedder, &mut batch.rows).await?;
        let embedded = EmbeddedBatch { rows: batch.rows, vectors, rejected: batch.rejected, from: batch.from, to: batch.to };
        if output.send(embedded).await.is_err() {
            break; // the upsert stage stopped; its error is reported there
        }
    }
    Ok(())
}

/// Vectors for `rows`, in order: the ones rows carry (taken out of them), the model's for the rest.
async fn vectors_for(embedder: &Embedder, rows: &mut [Row]) -> Result<Vec<Vec<f32>>, ImportError> {
    let texts: Vec<String> = rows.iter().filter(|row| row.vector.is_none()).map(|row| row.text.clone()).collect();
    let mut embedded = embedder.embed(texts).await?.into_iter();
    let vectors = rows
        .iter_mut()
        .map(|row| {
            row.vector.take().or_else(|| embedded.next()).ok_or_else(|| ImportError::Internal("embedder returned too few vectors".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vectors)
}

/// Opens the reader on a blocking thread and checks its columns against the schema.
async fn open_reader(
    format: Format,
    path: &Path,
    pipeline: &PipelineSettings,
    resume: &Checkpoint,
    schema: &RowSchema,
) -> Result<RecordReader, ImportError> {
    let options = ReadOptions { json_pointer: pipeline.json_pointer.clone() };
    let (path, resume, schema) = (path.to_owned(), resume.clone(), schema.clone());
    tokio::task::spawn_blocking(move || {
        let reader = RecordReader::open(format, &path, &options, &resume)?;
        check_columns(&reader, &schema, &path)?;
        Ok(reader)
    })
    .await
    .map_err(|error| ImportError::Internal(format!("opening the reader: {error}")))?
}

#[allow(clippy::too_many_arguments)]
fn spawn_read_stage(
    context: &ImportContext,
    pipeline: &PipelineSettings,
    mut reader: RecordReader,
    resume: Checkpoint,
    dimension: usize,
    path: &Path,
    file_hash: String,
    output: mpsc::Sender<RowBatch>,
) -> tokio::task::JoinHandle<Result<(), ImportError>> {
    let schema = RowSchema::of(pipeline, dimension);
    let batch_rows = pipeline.batch_rows;
    let mut dead_letters = DeadLetterWriter::new(&context.settings.resolve(&context.settings.state.dir), &pipeline.name);
    let pipeline_name = pipeline.name.clone();
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut letters = LetterContext { writer: &mut dead_letters, pipeline: &pipeline_name, path: &path, file_hash: &file_hash };
        let mut batch = RowBatch { rows: Vec::with_capacity(batch_rows), rejected: 0, from: resume.clone(), to: resume };
        while let Some(item) = reader.next_item()? {
            batch.to = item.next().clone();
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
                let next = RowBatch { rows: Vec::with_capacity(batch_rows), rejected: 0, from: batch.to.clone(), to: batch.to.clone() };
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

fn raw_of(record: &crate::format::Record) -> String {
    crate::format::raw_excerpt(record.to_json().to_string().as_bytes())
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
