//! Pipeline settings: `[[pipelines]]` entries validated into what an import of one of their files
//! needs — the collection, the index, the schedule, bulk import and its staging location.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{self, RawIndex, RawPipeline};
use super::secrets::{credential, secret_file, Secret, S3_SECRET_CREDENTIAL};
use super::{
    is_identifier, is_milvus_name, resolve, AfterImport, ConfiguredFormat, FieldSpec, KeyType, LinkPolicy, ScalarType, ROW_HASH_FIELD,
};
use crate::format::JsonPointer;

/// One `[[pipelines]]` entry, validated: everything an import of one of its files needs to know.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Unique name, used in logs, status and `--pipeline`.
    pub name: String,
    /// The collection the rows go to, all of it but what the model decides (dimension, identity).
    pub collection: CollectionSettings,
    /// How its files are read. A plugin format's name is checked once the plugins are loaded
    /// (`commands::load_plugins`).
    pub format: ConfiguredFormat,
    /// For JSON files whose records sit in an array inside a top-level object: a JSON pointer to
    /// it, parsed at load.
    pub json_pointer: Option<JsonPointer>,
    /// Field holding each record's natural primary key; `None` derives keys from the file's content
    /// hash and the record ordinal (and rules out `mirror`).
    pub id_field: Option<String>,
    /// Rows per upsert request (also capped by bytes).
    pub batch_rows: usize,
    /// Drop directories (absolute).
    pub watch: Vec<PathBuf>,
    /// What happens to a file after its rows are committed.
    pub after_import: AfterImport,
    /// Recurring imports of globbed paths.
    pub schedule: Option<Schedule>,
    /// Delete rows whose keys disappeared from a new version of the same source.
    pub mirror: bool,
    /// Largest share of a source's previous rows one mirror pass may delete (0.0..=1.0).
    pub mirror_max_delete_share: f64,
    /// Big files through Milvus's bulk import ([`crate::bulk`]); `None`: every file is upserted.
    pub bulk_import: Option<BulkImportSettings>,
}

/// Where a pipeline's bulk-import jobs are staged: on Milvus's storage either way.
#[derive(Debug, Clone, PartialEq)]
pub enum StagingLocation {
    /// A folder (absolute) that Milvus reads under the same path: a standalone server with local
    /// storage on this machine.
    Folder(PathBuf),
    /// Objects in a bucket (`s3://` — the bucket Milvus reads imports from — or `file://`, a
    /// folder reached through the same object-store code, which Milvus then reads by absolute
    /// path); files are written to a local spool first and uploaded.
    Bucket(BucketSettings),
}

/// An object-store staging location and its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSettings {
    /// The URL as configured (`s3://bucket/prefix`, `file:///root/prefix`), for messages.
    pub url: String,
    /// `s3` or `file`.
    pub scheme: String,
    /// The bucket (`s3`), or the root folder (`file`).
    pub bucket: String,
    /// Key prefix inside it, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// S3 endpoint other than AWS's (MinIO).
    pub endpoint: Option<String>,
    /// The bucket's region.
    pub region: String,
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key (redacted in `Debug`).
    pub secret_access_key: Secret,
}

/// `[pipelines.bulk_import]`, validated: when a file takes the bulk path and where its rows are
/// staged.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkImportSettings {
    /// Files with at least this many records (estimated: Parquet's row count, else lines) take
    /// the bulk path.
    pub min_rows: u64,
    /// Where job folders are staged.
    pub staging: StagingLocation,
    /// How often running import tasks are polled.
    pub poll_interval: Duration,
    /// Submissions of a failing staged file before the file fails (at least 1).
    pub max_submissions: u32,
}

/// The part of a pipeline's collection the config decides; [`crate::sink::CollectionSpec`] adds
/// the model's dimension and identity, [`crate::mapping::RowSchema`] the dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSettings {
    /// Collection name.
    pub name: String,
    /// Primary key field: `id_field`, or `id`.
    pub primary_key: String,
    /// Its type as configured (`id_type`); `None`: an existing collection's, VARCHAR for a new one.
    pub key_type: Option<KeyType>,
    /// VarChar text field.
    pub text_field: String,
    /// Longest text in bytes.
    pub text_max_length: u32,
    /// FloatVector field.
    pub vector_field: String,
    /// Kept scalar fields, in row order (by name).
    pub scalar_fields: Vec<(String, FieldSpec)>,
    /// Index built on the vector field at creation.
    pub index: IndexSettings,
}

/// `[pipelines.index]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSettings {
    /// The index built on the vector field.
    pub index_type: IndexType,
    /// The distance it is built for (and searches use).
    pub metric: Metric,
    /// Extra build parameters, handed to Milvus as they are.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// A vector index type Milvus builds; [`crate::sink`] maps it to the SDK's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexType {
    /// Milvus chooses.
    AutoIndex,
    /// Brute force: nothing to build.
    Flat,
    /// Inverted file over clusters, raw vectors.
    IvfFlat,
    /// Inverted file, 8-bit scalar quantisation.
    IvfSq8,
    /// Inverted file, product quantisation.
    IvfPq,
    /// Hierarchical navigable small-world graph.
    Hnsw,
    /// On-disk graph index.
    DiskAnn,
    /// Google's ScaNN.
    Scann,
}

impl IndexType {
    /// Every index type, in the order error messages list them.
    pub const ALL: [IndexType; 8] = [
        IndexType::AutoIndex,
        IndexType::Flat,
        IndexType::IvfFlat,
        IndexType::IvfSq8,
        IndexType::IvfPq,
        IndexType::Hnsw,
        IndexType::DiskAnn,
        IndexType::Scann,
    ];

    /// The name `index_type` gives it, as Milvus spells it.
    pub fn name(self) -> &'static str {
        match self {
            IndexType::AutoIndex => "AUTOINDEX",
            IndexType::Flat => "FLAT",
            IndexType::IvfFlat => "IVF_FLAT",
            IndexType::IvfSq8 => "IVF_SQ8",
            IndexType::IvfPq => "IVF_PQ",
            IndexType::Hnsw => "HNSW",
            IndexType::DiskAnn => "DISKANN",
            IndexType::Scann => "SCANN",
        }
    }
}

/// A vector distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity.
    Cosine,
    /// Inner product.
    Ip,
    /// Euclidean distance.
    L2,
}

impl Metric {
    /// Every metric, in the order error messages list them.
    pub const ALL: [Metric; 3] = [Metric::Cosine, Metric::Ip, Metric::L2];

    /// The name `metric` gives it, as Milvus spells it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "COSINE",
            Metric::Ip => "IP",
            Metric::L2 => "L2",
        }
    }
}

/// The one of `all` whose `name` is `text`, or an error listing the names accepted.
fn parse_named<T: Copy>(all: &[T], name: fn(T) -> &'static str, text: &str) -> Result<T, String> {
    all.iter().copied().find(|value| name(*value) == text).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|value| name(*value)).collect();
        format!("expected one of {names:?}, got {text:?}")
    })
}

impl std::fmt::Display for IndexType {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A pipeline's recurring import, parsed once and handed to the scheduler as it is.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// When it fires (seconds field first); its `Display` is the expression as written.
    pub cron: croner::Cron,
    /// The zone `cron` is read in (UTC unless `timezone` says otherwise).
    pub timezone: chrono_tz::Tz,
    /// Globs imported on each run, absolute (the config's directory escaped).
    pub paths: Vec<String>,
    /// Whether globs follow symbolic links below their fixed part.
    pub links: LinkPolicy,
}

impl PipelineSettings {
    /// Converts one entry; the error names the key below the entry (`index.metric: …`).
    pub fn from_raw(raw: RawPipeline, base_dir: &Path) -> Result<Self, String> {
        let name = raw.name.clone().ok_or("name: required")?;
        if !is_identifier(&name) {
            return Err(format!("name: expected letters, digits, '_' or '-', got {name:?}"));
        }
        if let Some(id_field) = &raw.id_field {
            if !is_milvus_name(id_field) {
                return Err(format!("id_field: expected a Milvus name, got {id_field:?}"));
            }
        }
        if raw.batch_rows == 0 {
            return Err("batch_rows: expected at least 1".to_owned());
        }
        if raw.id_type == Some(KeyType::Int64) && raw.id_field.is_none() {
            return Err("id_type: \"int64\" needs id_field (keys derived from the file's hash are text)".to_owned());
        }
        if raw.mirror && raw.id_field.is_none() {
            return Err("mirror: needs id_field (rows are matched across versions of a source by their natural key)".to_owned());
        }
        if !(0.0..=1.0).contains(&raw.mirror_max_delete_share) {
            return Err(format!("mirror_max_delete_share: expected 0.0..=1.0, got {}", raw.mirror_max_delete_share));
        }
        Ok(Self {
            format: raw.format.parse().map_err(|message| format!("format: {message}"))?,
            collection: collection_of(&raw)?,
            schedule: schedule_of(&raw, base_dir)?,
            watch: raw.watch.iter().map(|dir| resolve(base_dir, dir)).collect(),
            name,
            json_pointer: raw
                .json_pointer
                .as_deref()
                .map(JsonPointer::parse)
                .transpose()
                .map_err(|message| format!("json_pointer: {message}"))?,
            id_field: raw.id_field,
            after_import: raw.after_import,
            mirror: raw.mirror,
            mirror_max_delete_share: raw.mirror_max_delete_share,
            batch_rows: raw.batch_rows,
            bulk_import: raw.bulk_import.map(|bulk| bulk_import_of(bulk, base_dir)).transpose()?,
        })
    }
}

fn bulk_import_of(raw: raw::RawBulkImport, base_dir: &Path) -> Result<BulkImportSettings, String> {
    let staging = raw.staging.clone().ok_or(
        "bulk_import.staging: required (a folder on Milvus's storage, e.g. \"/var/lib/milvus/vecdrop-staging\", or s3://BUCKET/PREFIX)",
    )?;
    if raw.max_submissions == 0 {
        return Err("bulk_import.max_submissions: expected at least 1".to_owned());
    }
    if raw.poll_interval.is_zero() {
        return Err("bulk_import.poll_interval: expected more than 0s".to_owned());
    }
    let staging = match staging.split_once("://") {
        None => {
            if raw.endpoint.is_some() || raw.access_key_id.is_some() || raw.secret_access_key_file.is_some() {
                return Err("bulk_import: endpoint and credentials are for s3:// staging; a folder needs none".to_owned());
            }
            StagingLocation::Folder(resolve(base_dir, Path::new(&staging)))
        }
        Some((scheme, rest)) => StagingLocation::Bucket(bucket_of(&raw, scheme, rest, base_dir)?),
    };
    Ok(BulkImportSettings { min_rows: raw.min_rows, staging, poll_interval: raw.poll_interval, max_submissions: raw.max_submissions })
}

/// An `s3://` or `file://` staging URL with its credentials (`file://` takes none).
fn bucket_of(raw: &raw::RawBulkImport, scheme: &str, rest: &str, base_dir: &Path) -> Result<BucketSettings, String> {
    let url = format!("{scheme}://{rest}");
    let (bucket, prefix) = match scheme {
        "s3" => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("bulk_import.staging: {url}: expected s3://BUCKET/PREFIX"));
            }
            (bucket.to_owned(), prefix.trim_matches('/').to_owned())
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(format!("bulk_import.staging: {url}: expected file:///ABSOLUTE/PATH"));
            }
            ("/".to_owned(), rest.trim_matches('/').to_owned())
        }
        other => return Err(format!("bulk_import.staging: {url}: unsupported scheme {other:?} (s3:// or a folder)")),
    };
    let (access_key_id, secret_access_key) = if scheme == "s3" {
        let id = raw.access_key_id.clone().or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok()).unwrap_or_default();
        let file = raw.secret_access_key_file.as_deref().map(|file| resolve(base_dir, file));
        let secret = match file {
            Some(file) => {
                secret_file(&file).map_err(|message| format!("bulk_import.secret_access_key_file {}: {message}", file.display()))?
            }
            None => match std::env::var("AWS_SECRET_ACCESS_KEY") {
                Ok(secret) => Secret::new(secret),
                Err(_) => credential(S3_SECRET_CREDENTIAL)?.unwrap_or_default(),
            },
        };
        (id, secret)
    } else {
        (String::new(), Secret::default())
    };
    Ok(BucketSettings {
        url,
        scheme: scheme.to_owned(),
        bucket,
        prefix,
        endpoint: raw.endpoint.clone(),
        region: raw.region.clone(),
        access_key_id,
        secret_access_key,
    })
}

fn collection_of(raw: &RawPipeline) -> Result<CollectionSettings, String> {
    let name = raw.collection.clone().ok_or("collection: required")?;
    for (key, value) in [("collection", &name), ("text_field", &raw.text_field), ("vector_field", &raw.vector_field)] {
        if !is_milvus_name(value) {
            return Err(format!("{key}: expected a Milvus name (letter or '_', then letters, digits, '_'), got {value:?}"));
        }
    }
    if raw.text_max_length == 0 || raw.text_max_length > 65_535 {
        return Err("text_max_length: expected 1..=65535".to_owned());
    }
    let primary_key = raw.id_field.clone().unwrap_or_else(|| "id".to_owned());
    let reserved = [raw.text_field.as_str(), raw.vector_field.as_str(), primary_key.as_str(), ROW_HASH_FIELD];
    for (field, spec) in &raw.fields {
        check_field(field, spec, &reserved).map_err(|message| format!("fields.{field}{message}"))?;
    }
    Ok(CollectionSettings {
        name,
        primary_key,
        key_type: raw.id_type,
        text_field: raw.text_field.clone(),
        text_max_length: raw.text_max_length,
        vector_field: raw.vector_field.clone(),
        scalar_fields: raw.fields.iter().map(|(field, spec)| (field.clone(), spec.clone())).collect(),
        index: index_of(&raw.index)?,
    })
}

/// Checks one kept field; the message continues its key (`.max_length: …` or `: …`).
fn check_field(name: &str, spec: &FieldSpec, reserved: &[&str]) -> Result<(), String> {
    if !is_milvus_name(name) {
        return Err(": expected a Milvus name".to_owned());
    }
    if reserved.contains(&name) {
        return Err(": this name is already used for the key, text, vector or row hash".to_owned());
    }
    match (spec.field_type, spec.max_length) {
        (ScalarType::Varchar, None) => Err(".max_length: required for varchar".to_owned()),
        (ScalarType::Varchar, Some(0)) | (ScalarType::Varchar, Some(65_536..)) => Err(".max_length: expected 1..=65535".to_owned()),
        (ScalarType::Varchar, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(".max_length: only for varchar".to_owned()),
    }
}

fn index_of(raw: &RawIndex) -> Result<IndexSettings, String> {
    Ok(IndexSettings {
        index_type: parse_named(&IndexType::ALL, IndexType::name, &raw.index_type)
            .map_err(|message| format!("index.index_type: {message}"))?,
        metric: parse_named(&Metric::ALL, Metric::name, &raw.metric).map_err(|message| format!("index.metric: {message}"))?,
        params: raw.params.clone(),
    })
}

/// The entry's schedule: `schedule` and `paths` come together; globs and the time zone are checked.
fn schedule_of(raw: &RawPipeline, base_dir: &Path) -> Result<Option<Schedule>, String> {
    let timezone = match &raw.timezone {
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| format!("timezone: expected an IANA time zone such as \"Europe/Berlin\", got {name:?}"))?,
        None => chrono_tz::UTC,
    };
    let expression = match (&raw.schedule, raw.paths.is_empty()) {
        (Some(expression), false) => expression,
        (Some(_), true) => return Err("paths: a schedule needs paths (globs) to import".to_owned()),
        (None, false) => return Err("schedule: paths are imported on a schedule; add one such as \"0 */10 * * * *\"".to_owned()),
        (None, true) => return Ok(None),
    };
    let cron = parse_schedule(expression).map_err(|message| format!("schedule: {message}"))?;
    let paths = raw.paths.iter().map(|pattern| absolute_glob(base_dir, pattern)).collect::<Result<_, _>>()?;
    Ok(Some(Schedule { cron, timezone, paths, links: raw.glob_links }))
}

/// `pattern` made absolute against `base_dir` (whose own glob characters are escaped), checked.
pub(super) fn absolute_glob(base_dir: &Path, pattern: &str) -> Result<String, String> {
    glob::Pattern::new(pattern).map_err(|error| format!("paths: {pattern:?} is not a glob: {error}"))?;
    if Path::new(pattern).is_absolute() {
        return Ok(pattern.to_owned());
    }
    let base = glob::Pattern::escape(&base_dir.to_string_lossy());
    Ok(Path::new(&base).join(pattern).to_string_lossy().into_owned())
}

/// Parses a cron expression with a seconds field first (`sec min hour day month weekday`) exactly
/// as tokio-cron-scheduler reads it (a day-of-month and a weekday must both match).
pub fn parse_schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|error| format!("expected a cron expression with seconds first, e.g. \"0 */5 * * * *\", got {expression:?}: {error}"))
}
