//! Where staged files live for Milvus to read them: a folder of Milvus's machine, or objects of
//! the bucket Milvus reads imports from.
//!
//! - [`StagingLocation::Folder`]: the writer writes straight into
//!   `<folder>/<pipeline>/<job>/`; Milvus is sent those absolute paths.
//! - [`StagingLocation::Bucket`]: the writer writes into a local spool
//!   (`<state.dir>/bulk-spool/<pipeline>/<job>/`), then each file is uploaded (multipart, streamed)
//!   to `<prefix>/<pipeline>/<job>/part-NNNNN.parquet` through `object_store`, and the spool is
//!   removed. Milvus is sent the object key (Milvus 2.3 resolves import paths inside its own
//!   bucket; a ≥ 2.4 REST job the same). `file://` URLs go through the same code to a local folder
//!   (the key then sent as an absolute path), which is how the tests exercise it against a
//!   standalone server with local storage.
//!
//! The secret access key is handed to the S3 client only; it is never logged (`Secret`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::settings::{BucketSettings, StagingLocation};

/// Bytes read from a spooled file per uploaded chunk.
const UPLOAD_CHUNK: usize = 8 << 20;

/// Why the staging location failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket settings do not make a client.
    #[error("staging {url}: {message}")]
    Config {
        /// The configured URL.
        url: String,
        /// What the client builder said.
        message: String,
    },
    /// An upload, listing or deletion failed.
    #[error("staging {location}: {message}")]
    Object {
        /// The object or prefix.
        location: String,
        /// What the store said.
        message: String,
    },
    /// A spooled file could not be read.
    #[error("staging {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A pipeline's staging location, opened.
pub enum StagingStore {
    /// A folder Milvus reads under the same absolute path.
    Folder(PathBuf),
    /// A bucket (or, for `file://`, a folder through the object-store code).
    Bucket {
        /// Its settings (URL, prefix, credentials).
        settings: BucketSettings,
        /// The client.
        store: Arc<dyn ObjectStore>,
    },
}

impl StagingStore {
    /// Opens `location` (no network traffic: the S3 client connects on first use).
    pub fn open(location: &StagingLocation) -> Result<Self, StoreError> {
        match location {
            StagingLocation::Folder(folder) => Ok(Self::Folder(folder.clone())),
            StagingLocation::Bucket(settings) => {
                let config = |error: object_store::Error| StoreError::Config { url: settings.url.clone(), message: error.to_string() };
                let store: Arc<dyn ObjectStore> = match settings.scheme.as_str() {
                    "file" => Arc::new(object_store::local::LocalFileSystem::new()),
                    _ => {
                        let mut builder = object_store::aws::AmazonS3Builder::new()
                            .with_bucket_name(&settings.bucket)
                            .with_region(&settings.region)
                            // A few quick retries; beyond them the file's import stops as transient
                            // and the daemon's backoff takes over (no second long retry layer).
                            .with_retry(object_store::RetryConfig {
                                max_retries: 3,
                                retry_timeout: std::time::Duration::from_secs(60),
                                ..Default::default()
                            });
                        if let Some(endpoint) = &settings.endpoint {
                            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                        }
                        if !settings.access_key_id.is_empty() {
                            builder = builder
                                .with_access_key_id(&settings.access_key_id)
                                .with_secret_access_key(settings.secret_access_key.expose());
                        }
                        Arc::new(builder.build().map_err(config)?)
                    }
                };
                Ok(Self::Bucket { settings: settings.clone(), store })
            }
        }
    }

    /// The local folder the writer writes job `job` of `pipeline` into: the staging folder itself,
    /// or the spool under `state_dir` for a bucket.
    pub fn writer_dir(&self, state_dir: &Path, pipeline: &str, job: &str) -> PathBuf {
        match self {
            Self::Folder(folder) => folder.join(pipeline).join(job),
            Self::Bucket { .. } => state_dir.join("bulk-spool").join(pipeline).join(job),
        }
    }

    /// The object prefix of job `job` of `pipeline` (`None` for a folder).
    pub fn job_prefix(&self, pipeline: &str, job: &str) -> Option<String> {
        match self {
            Self::Folder(_) => None,
            Self::Bucket { settings, .. } => Some(
                [settings.prefix.as_str(), pipeline, job].iter().filter(|part| !part.is_empty()).copied().collect::<Vec<_>>().join("/"),
            ),
        }
    }

    /// Makes the written `files` readable by Milvus and returns the paths to send it, in order: a
    /// folder's files as they are; a bucket's uploaded under `job_prefix` (then the spool is
    /// removed).
    pub async fn publish(&self, files: &[PathBuf], job_prefix: Option<&str>) -> Result<Vec<String>, StoreError> {
        let (Self::Bucket { settings, store }, Some(prefix)) = (self, job_prefix) else {
            return Ok(files.iter().map(|file| file.display().to_string()).collect());
        };
        let mut paths = Vec::with_capacity(files.len());
        for file in files {
            let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            let key = format!("{prefix}/{name}");
            upload(store.as_ref(), file, &ObjectPath::from(key.as_str())).await?;
            paths.push(milvus_path(settings, &key));
        }
        if let Some(spool) = files.first().and_then(|file| file.parent()) {
            let _ = std::fs::remove_dir_all(spool);
        }
        Ok(paths)
    }

    /// Removes a job's staging: its folder (a folder location, or a bucket job's spool) and, for a
    /// bucket, every object under its prefix. Harmless when already gone.
    pub async fn remove(&self, dir: &Path, job_prefix: Option<&str>) -> Result<(), StoreError> {
        if let Err(source) = std::fs::remove_dir_all(dir) {
            if source.kind() != std::io::ErrorKind::NotFound {
                return Err(StoreError::Io { path: dir.to_owned(), source });
            }
        }
        let (Self::Bucket { settings, store }, Some(prefix)) = (self, job_prefix) else { return Ok(()) };
        let location = ObjectPath::from(prefix);
        let failed = |error: object_store::Error| StoreError::Object { location: location.to_string(), message: error.to_string() };
        let objects: Vec<_> = store.list(Some(&location)).try_collect().await.map_err(failed)?;
        let locations: Vec<ObjectPath> = objects.into_iter().map(|object| object.location).collect();
        delete_all(store.as_ref(), &locations).await.map_err(failed)?;
        if settings.scheme == "file" {
            // Objects of a local store leave their folders behind.
            let _ = std::fs::remove_dir_all(Path::new("/").join(location.as_ref()));
        }
        Ok(())
    }

    /// Removes what earlier stagings of the same content left behind — job folders (or spools,
    /// and a bucket's objects) of `pipeline` whose names start with `job_stem` — except failed
    /// jobs kept with their `FAILED.txt`. A crash while staging leaves such remains; a new
    /// staging never reuses a job name. Returns how many jobs were removed.
    pub async fn remove_stale(&self, state_dir: &Path, pipeline: &str, job_stem: &str) -> Result<usize, StoreError> {
        let mut removed = 0;
        let parent = self.writer_dir(state_dir, pipeline, job_stem);
        let parent = parent.parent().unwrap_or(Path::new("/"));
        for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(job_stem) && path.is_dir() && !path.join("FAILED.txt").exists() {
                std::fs::remove_dir_all(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
                removed += 1;
            }
        }
        let Self::Bucket { settings, store } = self else { return Ok(removed) };
        let Some(pipeline_prefix) = self.job_prefix(pipeline, "") else { return Ok(removed) };
        let location = ObjectPath::from(pipeline_prefix.trim_end_matches('/'));
        let failed = |error: object_store::Error| StoreError::Object { location: location.to_string(), message: error.to_string() };
        let objects: Vec<_> = store.list(Some(&location)).try_collect().await.map_err(failed)?;
        let job_of = |key: &str| {
            key.strip_prefix(location.as_ref()).unwrap_or(key).trim_start_matches('/').split('/').next().unwrap_or("").to_owned()
        };
        let kept: std::collections::HashSet<String> = objects
            .iter()
            .filter(|object| object.location.as_ref().ends_with("/FAILED.txt"))
            .map(|object| job_of(object.location.as_ref()))
            .collect();
        let stale: Vec<ObjectPath> = objects
            .into_iter()
            .map(|object| object.location)
            .filter(|location| {
                let job = job_of(location.as_ref());
                job.starts_with(job_stem) && !kept.contains(&job)
            })
            .collect();
        delete_all(store.as_ref(), &stale).await.map_err(failed)?;
        let jobs: std::collections::HashSet<String> = stale.iter().map(|location| job_of(location.as_ref())).collect();
        if settings.scheme == "file" {
            // Objects of a local store leave their folders behind.
            for job in &jobs {
                let _ = std::fs::remove_dir_all(Path::new("/").join(location.as_ref()).join(job));
            }
        }
        Ok(removed + jobs.len())
    }

    /// Writes `text` as `FAILED.txt` next to a failed job's staged files.
    pub async fn keep_with_reason(&self, dir: &Path, job_prefix: Option<&str>, text: &str) -> Result<(), StoreError> {
        match (self, job_prefix) {
            (Self::Bucket { store, .. }, Some(prefix)) => {
                let location = ObjectPath::from(format!("{prefix}/FAILED.txt"));
                store
                    .put(&location, PutPayload::from(text.as_bytes().to_vec()))
                    .await
                    .map(drop)
                    .map_err(|error| StoreError::Object { location: location.to_string(), message: error.to_string() })
            }
            _ => std::fs::write(dir.join("FAILED.txt"), text).map_err(|source| StoreError::Io { path: dir.join("FAILED.txt"), source }),
        }
    }

    /// Checks that staging can work without writing anything: a folder (or its nearest existing
    /// parent, where it will be created) must be a writable directory; a bucket must answer a
    /// listing of the prefix with these credentials. Returns what was checked.
    pub async fn probe(&self) -> Result<String, StoreError> {
        match self {
            Self::Folder(folder) => {
                let existing = folder.ancestors().find(|ancestor| ancestor.exists()).unwrap_or(Path::new("/"));
                let metadata = std::fs::metadata(existing).map_err(|source| StoreError::Io { path: existing.to_owned(), source })?;
                let writable = rustix::fs::access(existing, rustix::fs::Access::WRITE_OK).is_ok();
                if !metadata.is_dir() || !writable {
                    let source = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "not a writable directory");
                    return Err(StoreError::Io { path: existing.to_owned(), source });
                }
                let created = if existing == folder { "" } else { " (created by the first bulk job)" };
                Ok(format!("{}{created}; Milvus must read it under the same path", folder.display()))
            }
            Self::Bucket { settings, store } => {
                let prefix = ObjectPath::from(settings.prefix.as_str());
                let mut listing = store.list(Some(&prefix));
                match listing.try_next().await {
                    Ok(_) => Ok(format!("{} answers a listing", settings.url)),
                    Err(error) => Err(StoreError::Object { location: settings.url.clone(), message: error.to_string() }),
                }
            }
        }
    }

    /// Where a job's staging is, for messages: its folder or its bucket URL.
    pub fn describe(&self, dir: &Path, job_prefix: Option<&str>) -> String {
        match (self, job_prefix) {
            (Self::Bucket { settings, .. }, Some(prefix)) if settings.scheme == "s3" => format!("s3://{}/{prefix}", settings.bucket),
            (Self::Bucket { .. }, Some(prefix)) => format!("/{prefix}"),
            _ => dir.display().to_string(),
        }
    }
}

/// The path Milvus is sent for `key`: the key inside its bucket, or the absolute path for `file://`.
fn milvus_path(settings: &BucketSettings, key: &str) -> String {
    if settings.scheme == "file" {
        format!("/{key}")
    } else {
        key.to_owned()
    }
}

/// Streams `file` to `location` as a multipart upload.
async fn upload(store: &dyn ObjectStore, file: &Path, location: &ObjectPath) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: file.to_owned(), source };
    let failed = |error: object_store::Error| StoreError::Object { location: location.to_string(), message: error.to_string() };
    let mut reader = tokio::fs::File::open(file).await.map_err(io)?;
    let mut upload = WriteMultipart::new(store.put_multipart(location).await.map_err(failed)?);
    let mut buffer = vec![0u8; UPLOAD_CHUNK];
    loop {
        let read = reader.read(&mut buffer).await.map_err(io)?;
        if read == 0 {
            break;
        }
        upload.wait_for_capacity(4).await.map_err(failed)?;
        upload.write(&buffer[..read]);
    }
    upload.finish().await.map_err(failed)?;
    Ok(())
}

/// Deletes the objects at `locations`; one already gone is no failure.
async fn delete_all(store: &dyn ObjectStore, locations: &[ObjectPath]) -> Result<(), object_store::Error> {
    for location in locations {
        match store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;

    fn file_bucket(root: &Path) -> BucketSettings {
        BucketSettings {
            url: format!("file://{}", root.display()),
            scheme: "file".into(),
            bucket: "/".into(),
            prefix: root.display().to_string().trim_matches('/').to_owned(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
        }
    }

    #[tokio::test]
    async fn a_bucket_job_is_uploaded_from_the_spool_kept_with_its_reason_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket-root");
        std::fs::create_dir_all(&root).unwrap();
        let store = StagingStore::open(&StagingLocation::Bucket(file_bucket(&root))).unwrap();
        let spool = store.writer_dir(&dir.path().join("state"), "p", "job-1");
        assert!(spool.starts_with(dir.path().join("state/bulk-spool")));
        std::fs::create_dir_all(&spool).unwrap();
        let content: Vec<u8> = (0..20_000_000u32).map(|byte| byte as u8).collect();
        std::fs::write(spool.join("part-00000.parquet"), &content).unwrap();
        let prefix = store.job_prefix("p", "job-1").unwrap();
        assert!(prefix.ends_with("bucket-root/p/job-1"), "{prefix}");

        let paths = store.publish(&[spool.join("part-00000.parquet")], Some(&prefix)).await.unwrap();
        assert_eq!(paths, vec![root.join("p/job-1/part-00000.parquet").display().to_string()], "file:// sends absolute paths");
        assert_eq!(std::fs::read(&paths[0]).unwrap(), content, "uploaded in chunks, byte for byte");
        assert!(!spool.exists(), "the spool is removed after the upload");

        store.keep_with_reason(&spool, Some(&prefix), "task failed: why").await.unwrap();
        assert_eq!(std::fs::read_to_string(root.join("p/job-1/FAILED.txt")).unwrap(), "task failed: why");
        store.remove(&spool, Some(&prefix)).await.unwrap();
        assert!(!root.join("p/job-1").exists(), "every object of the job is gone");

        // Remains of stagings a crash cut short are swept; failed jobs kept with their reason stay.
        for (job, failed) in [("abc-1", false), ("abc-2", true), ("xyz-1", false)] {
            let job_prefix = store.job_prefix("p", job).unwrap();
            std::fs::create_dir_all(store.writer_dir(&dir.path().join("state"), "p", job)).unwrap();
            let file = dir.path().join("part.parquet");
            std::fs::write(&file, b"x").unwrap();
            std::fs::create_dir_all(dir.path().join("spool-copy")).unwrap();
            let copy = dir.path().join("spool-copy/part-00000.parquet");
            std::fs::copy(&file, &copy).unwrap();
            store.publish(&[copy], Some(&job_prefix)).await.unwrap();
            if failed {
                store.keep_with_reason(Path::new("/nonexistent"), Some(&job_prefix), "why").await.unwrap();
            }
        }
        std::fs::create_dir_all(store.writer_dir(&dir.path().join("state"), "p", "abc-3")).unwrap();
        let removed = store.remove_stale(&dir.path().join("state"), "p", "abc").await.unwrap();
        assert_eq!(removed, 4, "the spools of abc-1, abc-2 and abc-3, and bucket job abc-1");
        assert!(!root.join("p/abc-1").exists());
        assert!(root.join("p/abc-2/FAILED.txt").is_file(), "a failed job is kept");
        assert!(root.join("p/xyz-1/part-00000.parquet").is_file(), "another file's job is not touched");
        store.remove(&spool, Some(&prefix)).await.unwrap();
    }

    #[test]
    fn s3_jobs_are_keys_inside_the_bucket() {
        let settings = BucketSettings {
            url: "s3://milvus-bucket/imports".into(),
            scheme: "s3".into(),
            bucket: "milvus-bucket".into(),
            prefix: "imports".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key_id: "id".into(),
            secret_access_key: Secret::new("secret"),
        };
        assert_eq!(milvus_path(&settings, "imports/p/j/part-00000.parquet"), "imports/p/j/part-00000.parquet");
        let store = StagingStore::open(&StagingLocation::Bucket(settings)).unwrap();
        assert_eq!(store.job_prefix("p", "j").as_deref(), Some("imports/p/j"));
        assert_eq!(store.describe(Path::new("/spool"), Some("imports/p/j")), "s3://milvus-bucket/imports/p/j");
    }
}
