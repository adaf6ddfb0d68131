//! **bulk**: rows staged as Parquet for Milvus's bulk import, the engine for big files and
//! migrations (Milvus's data nodes write the segments instead of row-by-row upserts).
//!
//! [`StagingWriter`] writes mapped and embedded rows in the layout pymilvus's `BulkWriter`
//! produces: one column per field of the collection (primary key, text, row hash, the kept
//! scalars, the vector as `list<float32>`), files of at most [`MAX_FILE_BYTES`] with row groups
//! of about [`ROW_GROUP_BYTES`], named `part-NNNNN.parquet` in a job folder. The folder must be on
//! Milvus's storage: on a standalone server with local storage any absolute path of its machine
//! (Milvus 2.3 reads absolute local paths; `scripts/bulk-import-smoke.py`).
//!
//! Where the staged files go ([`store`]) and how a pipeline uses them ([`crate::pipeline`]'s bulk
//! path: new keys staged, the job recorded, tasks submitted and followed through
//! [`crate::sink::MilvusSink::submit_import`] and [`crate::sink::MilvusSink::import_state`]) are
//! described there. `vecdrop bench` times it against upserts of the same rows (phases
//! `bulk_baseline_upsert` and `bulk_import`).

pub mod store;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::mapping::{Row, ScalarValue};
use crate::settings::{KeyType, ScalarType, ROW_HASH_FIELD};
use crate::sink::CollectionSpec;

/// A staged file is closed once it holds about this many bytes (Milvus's advice: ≤ 1 GB per file).
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Mode of a job folder: Milvus reads it as another user of the folder's group (a staging folder
/// with the group of Milvus's user and the setgid bit hands that group down).
const STAGING_DIR_MODE: u32 = 0o750;

/// Mode of a staged file (set after creation: the service's `UMask=0077` would take the group's
/// read bit away).
const STAGING_FILE_MODE: u32 = 0o640;

/// Sets `path`'s mode to `mode`, whatever the process's umask made of it.
fn readable_by_group(path: &Path, mode: u32) -> Result<(), StagingError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|source| StagingError::Io { path: path.to_owned(), source })
}

/// Keys sampled per staged file ([`StagedFiles::samples`]).
const SAMPLE_KEYS: usize = 32;

/// Rows per row group are chosen for about this many bytes.
pub const ROW_GROUP_BYTES: u64 = 32 << 20;

/// Why rows could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The job folder or a file in it cannot be written.
    #[error("staging {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        source: std::io::Error,
    },
    /// Arrow or Parquet refused the rows (a bug: the schema is built from the same spec).
    #[error("staging {path}: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What the encoder said.
        message: String,
    },
    /// An INT64 key that is not an integer (mapping dead-letters those: a bug).
    #[error("primary key {0:?} is not an integer (INT64 key)")]
    Key(String),
}

/// The files of one staged job, in order, and how many rows they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFiles {
    /// The job folder.
    pub dir: PathBuf,
    /// Absolute paths of the Parquet files.
    pub files: Vec<PathBuf>,
    /// Per file, a sample of its keys (the first of every write, at most [`SAMPLE_KEYS`], and
    /// the last): queried after the import to tell when its rows became visible.
    pub samples: Vec<Vec<String>>,
    /// Rows written.
    pub rows: u64,
}

/// Writes rows of one collection as Parquet files in a job folder (see the module doc).
pub struct StagingWriter {
    dir: PathBuf,
    schema: Arc<Schema>,
    spec: CollectionSpec,
    key_type: KeyType,
    current: Option<(PathBuf, ArrowWriter<File>, u64)>,
    files: Vec<PathBuf>,
    samples: Vec<Vec<String>>,
    current_samples: Vec<String>,
    last_key: Option<String>,
    rows: u64,
}

impl StagingWriter {
    /// A writer for `spec`'s collection (primary key of type `key_type`) into the job folder
    /// `dir` (created; absolute). The job folder and its parent (the pipeline's folder, which
    /// vecdrop creates too) get [`STAGING_DIR_MODE`]: Milvus reads them as another user.
    pub fn create(dir: &Path, spec: &CollectionSpec, key_type: KeyType) -> Result<Self, StagingError> {
        std::fs::create_dir_all(dir).map_err(|source| StagingError::Io { path: dir.to_owned(), source })?;
        if let Some(pipeline_dir) = dir.parent() {
            readable_by_group(pipeline_dir, STAGING_DIR_MODE)?;
        }
        readable_by_group(dir, STAGING_DIR_MODE)?;
        let dir = std::path::absolute(dir).map_err(|source| StagingError::Io { path: dir.to_owned(), source })?;
        let schema = Arc::new(arrow_schema(spec, key_type));
        Ok(Self {
            dir,
            schema,
            spec: spec.clone(),
            key_type,
            current: None,
            files: Vec::new(),
            samples: Vec::new(),
            current_samples: Vec::new(),
            last_key: None,
            rows: 0,
        })
    }

    /// Appends `rows` with their `vectors` (one per row, in order).
    pub fn write(&mut self, rows: &[Row], vectors: &[Vec<f32>]) -> Result<(), StagingError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = self.record_batch(rows, vectors)?;
        let bytes = batch.get_array_memory_size() as u64;
        if self.current.is_none() {
            self.current = Some(self.open_next()?);
        }
        let Some((path, writer, written)) = &mut self.current else { return Ok(()) };
        writer.write(&batch).map_err(|error| StagingError::Encode { path: path.clone(), message: error.to_string() })?;
        *written += bytes;
        self.rows += rows.len() as u64;
        if self.current_samples.len() < SAMPLE_KEYS {
            self.current_samples.push(rows[0].primary_key.clone());
        }
        self.last_key = rows.last().map(|row| row.primary_key.clone());
        if *written >= MAX_FILE_BYTES {
            self.close_current()?;
        }
        Ok(())
    }

    /// Closes the last file; returns what was staged.
    pub fn finish(mut self) -> Result<StagedFiles, StagingError> {
        self.close_current()?;
        Ok(StagedFiles { dir: self.dir, files: self.files, samples: self.samples, rows: self.rows })
    }

    fn open_next(&mut self) -> Result<(PathBuf, ArrowWriter<File>, u64), StagingError> {
        let path = self.dir.join(format!("part-{:05}.parquet", self.files.len()));
        let file = File::create(&path).map_err(|source| StagingError::Io { path: path.clone(), source })?;
        readable_by_group(&path, STAGING_FILE_MODE)?;
        let properties = WriterProperties::builder().set_max_row_group_bytes(Some(ROW_GROUP_BYTES as usize)).build();
        let writer = ArrowWriter::try_new(file, Arc::clone(&self.schema), Some(properties))
            .map_err(|error| StagingError::Encode { path: path.clone(), message: error.to_string() })?;
        Ok((path, writer, 0))
    }

    fn close_current(&mut self) -> Result<(), StagingError> {
        if let Some((path, writer, _)) = self.current.take() {
            let file = writer.into_inner().map_err(|error| StagingError::Encode { path: path.clone(), message: error.to_string() })?;
            file.sync_all().map_err(|source| StagingError::Io { path: path.clone(), source })?;
            self.files.push(path);
            let mut samples = std::mem::take(&mut self.current_samples);
            samples.extend(self.last_key.take().filter(|last| samples.last() != Some(last)));
            self.samples.push(samples);
        }
        Ok(())
    }

    fn record_batch(&self, rows: &[Row], vectors: &[Vec<f32>]) -> Result<RecordBatch, StagingError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        columns.push(key_column(rows, self.key_type)?);
        let mut texts = StringBuilder::new();
        rows.iter().for_each(|row| texts.append_value(&row.text));
        columns.push(Arc::new(texts.finish()));
        let mut hashes = Int64Builder::new();
        rows.iter().for_each(|row| hashes.append_value(row.row_hash));
        columns.push(Arc::new(hashes.finish()));
        for (index, (_, spec)) in self.spec.collection.scalar_fields.iter().enumerate() {
            columns.push(scalar_column(spec.field_type, rows.iter().map(|row| &row.scalars[index])));
        }
        let mut vector_column =
            ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new("element", DataType::Float32, false)));
        for vector in vectors {
            vector_column.values().append_slice(vector);
            vector_column.append(true);
        }
        columns.push(Arc::new(vector_column.finish()));
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|error| StagingError::Encode { path: self.dir.clone(), message: error.to_string() })
    }
}

/// The Parquet schema of `spec`'s collection: its fields in schema order, by name.
fn arrow_schema(spec: &CollectionSpec, key_type: KeyType) -> Schema {
    let key = match key_type {
        KeyType::Varchar => DataType::Utf8,
        KeyType::Int64 => DataType::Int64,
    };
    let mut fields = vec![
        Field::new(&spec.collection.primary_key, key, false),
        Field::new(&spec.collection.text_field, DataType::Utf8, false),
        Field::new(ROW_HASH_FIELD, DataType::Int64, false),
    ];
    for (name, field_spec) in &spec.collection.scalar_fields {
        fields.push(Field::new(name, arrow_type(field_spec.field_type), false));
    }
    let element = Arc::new(Field::new("element", DataType::Float32, false));
    fields.push(Field::new(&spec.collection.vector_field, DataType::List(element), false));
    Schema::new(fields)
}

/// The Arrow type Milvus's Parquet import reads into a field of type `scalar` (JSON as text).
fn arrow_type(scalar: ScalarType) -> DataType {
    match scalar {
        ScalarType::Bool => DataType::Boolean,
        ScalarType::Int32 => DataType::Int32,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::Float => DataType::Float32,
        ScalarType::Double => DataType::Float64,
        ScalarType::Varchar | ScalarType::Json => DataType::Utf8,
    }
}

fn key_column(rows: &[Row], key_type: KeyType) -> Result<ArrayRef, StagingError> {
    Ok(match key_type {
        KeyType::Varchar => {
            let mut keys = StringBuilder::new();
            rows.iter().for_each(|row| keys.append_value(&row.primary_key));
            Arc::new(keys.finish())
        }
        KeyType::Int64 => {
            let mut keys = Int64Builder::new();
            for row in rows {
                keys.append_value(row.primary_key.parse().map_err(|_| StagingError::Key(row.primary_key.clone()))?);
            }
            Arc::new(keys.finish())
        }
    })
}

/// One column of scalars of type `scalar` (mapping gives each field values of its own type; a value
/// of another type is written as the type's zero value, which cannot happen).
fn scalar_column<'a>(scalar: ScalarType, values: impl Iterator<Item = &'a ScalarValue>) -> ArrayRef {
    macro_rules! column {
        ($builder:ident, $variant:ident, $zero:expr) => {{
            let mut column = $builder::new();
            values.for_each(|value| column.append_value(if let ScalarValue::$variant(inner) = value { *inner } else { $zero }));
            Arc::new(column.finish())
        }};
    }
    match scalar {
        ScalarType::Bool => column!(BooleanBuilder, Bool, false),
        ScalarType::Int32 => column!(Int32Builder, Int32, 0),
        ScalarType::Int64 => column!(Int64Builder, Int64, 0),
        ScalarType::Float => column!(Float32Builder, Float, 0.0),
        ScalarType::Double => column!(Float64Builder, Double, 0.0),
        ScalarType::Varchar | ScalarType::Json => {
            let mut column = StringBuilder::new();
            values.for_each(|value| match value {
                ScalarValue::Varchar(text) => column.append_value(text),
                ScalarValue::Json(json) => column.append_value(json.to_string()),
                _ => column.append_value(""),
            });
            Arc::new(column.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RecordPosition;
    use crate::settings::{CollectionSettings, FieldSpec, IndexSettings, IndexType, Metric};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn spec() -> CollectionSpec {
        let collection = CollectionSettings {
            name: "docs".into(),
            primary_key: "id".into(),
            key_type: None,
            text_field: "text".into(),
            text_max_length: 100,
            vector_field: "embedding".into(),
            scalar_fields: vec![("year".into(), FieldSpec { field_type: ScalarType::Int64, max_length: None, optional: false })],
            index: IndexSettings { index_type: IndexType::AutoIndex, metric: Metric::Cosine, params: Default::default() },
        };
        CollectionSpec { collection, dimension: 3, model_identity: "m".into() }
    }

    fn row(key: &str, year: i64) -> Row {
        Row {
            primary_key: key.into(),
            text: format!("text {key}"),
            scalars: vec![ScalarValue::Int64(year)],
            row_hash: year * 10,
            position: RecordPosition { ordinal: 0, line: None, byte_offset: 0 },
            vector: None,
        }
    }

    #[test]
    fn rows_are_staged_one_column_per_field_with_list_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = StagingWriter::create(&dir.path().join("job"), &spec(), KeyType::Int64).unwrap();
        writer.write(&[row("1", 2001), row("2", 2002)], &[vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]]).unwrap();
        writer.write(&[row("3", 2003)], &[vec![0.7, 0.8, 0.9]]).unwrap();
        assert!(matches!(writer.write(&[row("x", 1)], &[vec![0.0; 3]]), Err(StagingError::Key(key)) if key == "x"));
        let staged = writer.finish().unwrap();
        assert_eq!(staged.rows, 3);
        assert_eq!(staged.files, [dir.path().join("job/part-00000.parquet")]);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&staged.files[0]).unwrap()).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
        assert_eq!(names, ["id", "text", ROW_HASH_FIELD, "year", "embedding"]);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(matches!(schema.field(4).data_type(), DataType::List(element) if element.data_type() == &DataType::Float32));
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_eq!(staged.samples, [vec!["1".to_owned(), "3".to_owned()]], "the first key of each write, and the last");
    }

    #[test]
    fn staged_files_get_their_modes_set_not_left_to_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        // Set after creation (`set_permissions` ignores the umask), so the service's UMask=0077
        // cannot take the group's read bit away; the process umask is not changed here (other
        // tests run in this process).
        let dir = tempfile::tempdir().unwrap();
        let pipeline_dir = dir.path().join("pipeline");
        std::fs::create_dir(&pipeline_dir).unwrap();
        std::fs::set_permissions(&pipeline_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut writer = StagingWriter::create(&pipeline_dir.join("job"), &spec(), KeyType::Int64).unwrap();
        writer.write(&[row("1", 2001)], &[vec![0.1, 0.2, 0.3]]).unwrap();
        let staged = writer.finish().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pipeline_dir), STAGING_DIR_MODE, "a pipeline folder made under UMask=0077 is opened to the group");
        assert_eq!(mode(&staged.dir), STAGING_DIR_MODE);
        assert_eq!(mode(&staged.files[0]), STAGING_FILE_MODE);
    }
}
