//! Bulk-import staging in an S3 bucket (`staging = "s3://BUCKET/PREFIX"`), against an S3 endpoint
//! (moto's server from `make setup`): a staged file is uploaded from the local spool in parts,
//! Milvus would be sent its key inside the bucket, a failed job leaves a `FAILED.txt` object next
//! to it, and a finished job's objects are all deleted. (No Milvus cluster reading that bucket
//! runs here; the end-to-end import through the same code is `tests/bulk_import.rs` with a
//! `file://` URL.)

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vecdrop::bulk::store::StagingStore;
use vecdrop::settings::{BucketSettings, Secret, StagingLocation};

/// `moto_server` on a free loopback port; killed when dropped.
struct S3Endpoint {
    child: Child,
    url: String,
}

impl S3Endpoint {
    fn start() -> Self {
        let server = support::root().join(".venv/bin/moto_server");
        assert!(server.is_file(), "{} missing: run `make setup` (scripts/requirements.txt installs moto[server])", server.display());
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, url }
    }

    /// Creates `bucket` (moto answers unsigned requests).
    fn create_bucket(&self, bucket: &str) {
        let status = Command::new(support::root().join(".venv/bin/python"))
            .args(["-c", &format!("import urllib.request as u; u.urlopen(u.Request('{}/{bucket}', method='PUT'))", self.url)])
            .status()
            .unwrap();
        assert!(status.success(), "bucket {bucket} created");
    }

    /// The object keys under `prefix`, listed through the S3 API by boto3.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='id', aws_secret_access_key='secret', region_name='us-east-1')\nfor item in s3.list_objects_v2(Bucket='{bucket}', Prefix='{prefix}').get('Contents', []): print(item['Key'], item['Size'])",
            self.url
        );
        let output = Command::new(support::root().join(".venv/bin/python")).args(["-c", &script]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
    }
}

impl Drop for S3Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bucket_settings(endpoint: &str) -> BucketSettings {
    BucketSettings {
        url: "s3://milvus-bucket/vecdrop-staging".into(),
        scheme: "s3".into(),
        bucket: "milvus-bucket".into(),
        prefix: "vecdrop-staging".into(),
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        access_key_id: "test-key-id".into(),
        secret_access_key: Secret::new("test-secret-key"),
    }
}

fn spool_file(dir: &Path, name: &str, bytes: usize) -> (std::path::PathBuf, Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    let content: Vec<u8> = (0..bytes).map(|index| (index % 251) as u8).collect();
    let path = dir.join(name);
    std::fs::write(&path, &content).unwrap();
    (path, content)
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_files_are_uploaded_to_the_bucket_kept_with_a_reason_and_deleted() {
    let s3 = S3Endpoint::start();
    s3.create_bucket("milvus-bucket");
    let state = tempfile::tempdir().unwrap();
    let store = StagingStore::open(&StagingLocation::Bucket(bucket_settings(&s3.url))).unwrap();
    let spool = store.writer_dir(state.path(), "catalog", "0123abcd-1");
    assert!(spool.starts_with(state.path().join("bulk-spool")), "a bucket job is written to a local spool first");
    // 20 MB: uploaded in several parts of the multipart upload.
    let (first, content) = spool_file(&spool, "part-00000.parquet", 20 << 20);
    let (second, _) = spool_file(&spool, "part-00001.parquet", 1000);
    let prefix = store.job_prefix("catalog", "0123abcd-1").unwrap();
    assert_eq!(prefix, "vecdrop-staging/catalog/0123abcd-1");

    let paths = store.publish(&[first, second], Some(&prefix)).await.unwrap();
    assert_eq!(
        paths,
        ["vecdrop-staging/catalog/0123abcd-1/part-00000.parquet", "vecdrop-staging/catalog/0123abcd-1/part-00001.parquet"],
        "Milvus is sent the keys inside its bucket"
    );
    assert!(!spool.exists(), "the spool is removed once uploaded");
    let keys = s3.keys("milvus-bucket", "vecdrop-staging/");
    assert_eq!(
        keys,
        [
            format!("vecdrop-staging/catalog/0123abcd-1/part-00000.parquet {}", content.len()),
            "vecdrop-staging/catalog/0123abcd-1/part-00001.parquet 1000".to_owned()
        ]
    );

    store.keep_with_reason(&spool, Some(&prefix), "Milvus's bulk import failed: why").await.unwrap();
    assert!(s3.keys("milvus-bucket", &prefix).iter().any(|key| key.starts_with(&format!("{prefix}/FAILED.txt"))));
    assert_eq!(store.describe(&spool, Some(&prefix)), "s3://milvus-bucket/vecdrop-staging/catalog/0123abcd-1");

    store.remove(&spool, Some(&prefix)).await.unwrap();
    assert!(s3.keys("milvus-bucket", "vecdrop-staging/").is_empty(), "every object of the job is deleted");
    store.remove(&spool, Some(&prefix)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_bucket_is_an_error_that_names_the_object() {
    let store = StagingStore::open(&StagingLocation::Bucket(bucket_settings("http://127.0.0.1:9"))).unwrap();
    let state = tempfile::tempdir().unwrap();
    let spool = store.writer_dir(state.path(), "catalog", "job");
    let (file, _) = spool_file(&spool, "part-00000.parquet", 100);
    let error = store.publish(&[file], Some("vecdrop-staging/catalog/job")).await.unwrap_err().to_string();
    assert!(error.contains("vecdrop-staging/catalog/job/part-00000.parquet"), "{error}");
    assert!(!error.contains("test-secret-key"), "the secret never appears: {error}");
    assert!(spool.join("part-00000.parquet").is_file(), "the spool stays for the next attempt");
}
