//! The bulk path against the real Milvus 2.3.5 server with local storage: a pipeline with
//! `bulk_import` stages a file's new rows as Parquet in a folder of this machine, Milvus imports
//! them by absolute path, and the file is committed once, exactly — through a `kill -9` after the
//! submission, a crash between submission and recording the task, a changed re-import, and a task
//! that fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use vecdrop::bulk::StagingWriter;
use vecdrop::format::RecordPosition;
use vecdrop::mapping::{Row, ScalarValue};
use vecdrop::settings::KeyType;
use vecdrop::sink::MilvusSink;

use support::daemon::{concrete_free_address, daemon_sections, failed_files, Daemon};
use support::{collection_spec, connect_sink, kill_import_at, ledger_entry, logged, milvus_uri, unique_collection, TestConfig};

/// One record of a test file: key, text, category; its vector is derived from `seed`.
struct Record {
    id: String,
    text: String,
    seed: u64,
}

fn records(range: std::ops::Range<usize>, version: &str) -> Vec<Record> {
    range.map(|index| Record { id: format!("k{index}"), text: format!("row {index} of {version}"), seed: index as u64 }).collect()
}

/// A pseudo-random unit-ish direction per seed (xorshift): rows stay far apart, so each is its
/// own nearest neighbour even through an approximate index.
fn vector(seed: u64) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (seed + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (0..384)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Writes `records` as a Parquet file with columns `id`, `text`, `category` and `embedding`
/// (`list<float32>`, 384 values): rows that carry their vectors, like a migration's.
fn write_parquet(path: &Path, records: &[Record]) {
    let element = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("embedding", DataType::List(element), false),
    ]));
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), None).unwrap();
    for chunk in records.chunks(4_096) {
        let (mut ids, mut texts, mut categories) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut vectors = ListBuilder::new(Float32Builder::new());
        for record in chunk {
            ids.append_value(&record.id);
            texts.append_value(&record.text);
            categories.append_value(format!("c{}", record.seed % 7));
            vectors.values().append_slice(&vector(record.seed));
            vectors.append(true);
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(ids.finish()), Arc::new(texts.finish()), Arc::new(categories.finish()), Arc::new(vectors.finish())];
        writer.write(&RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// A pipeline on the bulk path for files of ≥ 1,000 rows, staging under the test's folder.
fn bulk_config(collection: &str, extra: &str, sections: &str) -> TestConfig {
    let pipeline = format!(
        "id_field = \"id\"\nbatch_rows = 512\n{extra}\nbulk_import = {{ min_rows = 1000, staging = \"staging\", poll_interval = \"200ms\" }}\n[pipelines.index]\n# Exact search: the vector check asks for each row's own vector, which a graph index may miss.\nindex_type = \"FLAT\"\n[pipelines.fields]\ncategory = {{ type = \"varchar\", max_length = 16 }}"
    );
    TestConfig::with_sections(collection, &pipeline, sections)
}

fn staging_jobs(config: &TestConfig) -> Vec<PathBuf> {
    let dir = config.dir.path().join("staging/test");
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|entry| entry.path()).collect()
}

/// The import tasks Milvus lists for `collection`: one per staged file submitted.
async fn tasks(sink: &MilvusSink, collection: &str) -> usize {
    sink.listed_imports(collection).await.unwrap().len()
}

/// Every record is stored once under its key with its text and vector; `count(*)` equals their
/// number (no key twice).
async fn assert_stored_exactly(config: &TestConfig, expected: &[Record]) {
    let spec = collection_spec(config);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), expected.len() as u64, "count(*): each key once");
    for chunk in expected.chunks(1_000) {
        let keys: Vec<String> = chunk.iter().map(|record| record.id.clone()).collect();
        let stored = sink.texts_by_key(&spec, &keys).await.unwrap();
        for record in chunk {
            assert_eq!(stored.get(&record.id), Some(&record.text), "text of {}", record.id);
        }
    }
    for record in expected.iter().step_by(2_999) {
        let hits = sink.search(&spec, vector(record.seed), 1).await.unwrap();
        assert_eq!(hits[0].id, record.id, "the stored vector is the file's");
        assert!(hits[0].score > 0.999, "{:?}", hits[0]);
    }
}

fn import(config: &TestConfig, file: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["import", "--config"])
        .arg(&config.path)
        .arg(file)
        .envs(envs.iter().copied())
        .env("VECDROP__DAEMON__MAX_CRASHES", "1000")
        .output()
        .unwrap();
    logged("vecdrop import", output)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_parquet_file_with_vectors_is_bulk_imported_exactly() {
    let collection = unique_collection("bulk_file");
    let config = bulk_config(&collection, "", "");
    let file = config.dir.path().join("migration.parquet");
    let rows = records(0..20_000, "v1");
    write_parquet(&file, &rows);

    let output = import(&config, &file, &[]);
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("bulk import: submitted"), "the file took the bulk path");
    assert!(String::from_utf8_lossy(&output.stdout).contains("through Milvus's bulk import: staged at"), "the summary says so");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(tasks(&sink, &collection).await, 1, "one staged file, one import task");
    // Marked imported only once the rows are visible: no waiting here.
    assert_stored_exactly(&config, &rows).await;
    let entry = ledger_entry(&config, &file);
    assert_eq!(entry["state"], "imported");
    assert_eq!(entry["rows_imported"], 20_000);
    assert!(staging_jobs(&config).is_empty(), "the staging is removed after success: {:?}", staging_jobs(&config));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_after_submission_follows_the_recorded_task_instead_of_submitting_again() {
    let collection = unique_collection("bulk_kill");
    let config = bulk_config(&collection, "", "");
    let file = config.dir.path().join("migration.parquet");
    let rows = records(0..20_000, "v1");
    write_parquet(&file, &rows);

    kill_import_at(&config, &file, "bulk_submitted");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(tasks(&sink, &collection).await, 1, "submitted before the kill");
    // While the job is open, no other file writes to the collection: a row upserted now could be
    // inserted a second time by the job.
    let other = support::write_file(config.dir.path(), "other.csv", "id,text,category\nk5,an upsert racing the import,c1\n");
    let blocked = import(&config, &other, &[("VECDROP__IMPORT__RETRY_DEADLINE", "1s")]);
    assert_ne!(blocked.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&blocked.stderr).contains("waits for the bulk import"), "the other file waits");
    let output = import(&config, &file, &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("following the job recorded before the restart"));
    assert_eq!(tasks(&sink, &collection).await, 1, "the restarted import did not submit again");
    assert_stored_exactly(&config, &rows).await;
    assert_eq!(ledger_entry(&config, &file)["rows_imported"], 20_000);
    assert_eq!(import(&config, &other, &[]).status.code(), Some(0), "the job is over: the other file goes in");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_before_the_task_id_is_recorded_finds_the_task_milvus_created() {
    let collection = unique_collection("bulk_lost_id");
    let config = bulk_config(&collection, "", "");
    let file = config.dir.path().join("migration.parquet");
    let rows = records(0..5_000, "v1");
    write_parquet(&file, &rows);

    kill_import_at(&config, &file, "bulk_before_task_recorded");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(tasks(&sink, &collection).await, 1, "Milvus created the task before the kill");
    let output = import(&config, &file, &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("found the task submitted before the restart"));
    assert_eq!(tasks(&sink, &collection).await, 1, "adopted, not submitted again");
    assert_stored_exactly(&config, &rows).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_version_bulk_imports_new_keys_and_upserts_existing_ones() {
    let collection = unique_collection("bulk_version");
    let config = bulk_config(&collection, "", "");
    let first = config.dir.path().join("export-1.parquet");
    write_parquet(&first, &records(0..20_000, "v1"));
    assert_eq!(import(&config, &first, &[]).status.code(), Some(0));

    // Version 2: 5,000 rows changed, 15,000 unchanged, 5,000 new keys — and one new key twice, the
    // later record (in another batch) winning, as upserts would have it.
    let mut second_rows = records(0..5_000, "v2");
    second_rows.extend(records(5_000..20_000, "v1"));
    second_rows.extend(records(20_000..25_000, "v2"));
    second_rows.push(Record { id: "k20000".into(), text: "row 20000 of v2, corrected later in the file".into(), seed: 20_000 });
    let second = config.dir.path().join("export-2.parquet");
    write_parquet(&second, &second_rows);
    let output = import(&config, &second, &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bulk import: submitted"));

    let mut expected = records(0..5_000, "v2");
    expected.extend(records(5_000..20_000, "v1"));
    expected.extend(records(20_000..25_000, "v2"));
    expected[20_000].text = "row 20000 of v2, corrected later in the file".into();
    assert_stored_exactly(&config, &expected).await;
    let entry = ledger_entry(&config, &second);
    assert_eq!(entry["rows_unchanged"], 15_000, "unchanged rows are skipped");
    assert_eq!(entry["rows_imported"], 10_001, "5,000 upserted, 5,000 imported, 1 upserted after the job");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(tasks(&sink, &collection).await, 2, "one task per version");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_is_submitted_again_then_fails_the_file_with_milvus_s_reason() {
    let collection = unique_collection("bulk_fail");
    let status = concrete_free_address();
    let config = bulk_config(&collection, "watch = [\"drop\"]\nafter_import = \"move\"", &daemon_sections(&status, ""));
    let drop = config.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    let outside = config.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    write_parquet(&outside.join("broken.parquet"), &records(0..2_000, "v1"));
    let pause = config.dir.path().join("pause");
    std::fs::create_dir_all(&pause).unwrap();
    let pause_text = pause.display().to_string();
    let daemon =
        Daemon::start_with_env(&config, &status, &[("VECDROP_FAILPOINT", "bulk_staged"), ("VECDROP_FAILPOINT_PAUSE", &pause_text)]);
    std::fs::rename(outside.join("broken.parquet"), drop.join("broken.parquet")).unwrap();
    daemon.wait_for("staging to end", Duration::from_secs(300), |_| pause.join("reached").exists());
    let in_flight = &daemon.status()["in_flight"][0];
    assert_eq!(in_flight["bulk"]["phase"], "staging", "/status shows the bulk phase: {in_flight}");
    assert_eq!(in_flight["bulk"]["rows_staged"], 2_000);

    // The staged file is damaged on Milvus's storage: its vectors have 8 dimensions, not 384.
    let job = staging_jobs(&config).pop().expect("a job folder");
    let part = job.join("part-00000.parquet");
    assert!(part.is_file());
    let mut wrong = collection_spec(&config);
    wrong.dimension = 8;
    let scratch = config.dir.path().join("scratch");
    let mut writer = StagingWriter::create(&scratch, &wrong, KeyType::Varchar).unwrap();
    let row = |index: usize| Row {
        primary_key: format!("k{index}"),
        text: format!("row {index}"),
        scalars: vec![ScalarValue::Varchar("c".into())],
        row_hash: index as i64,
        position: RecordPosition { ordinal: index as u64, line: None, byte_offset: 0 },
        vector: None,
    };
    let rows: Vec<Row> = (0..100).map(row).collect();
    writer.write(&rows, &vec![vec![0.5_f32; 8]; 100]).unwrap();
    let staged = writer.finish().unwrap();
    std::fs::copy(&staged.files[0], &part).unwrap();
    std::fs::write(pause.join("resume"), "").unwrap();

    daemon.wait_for("the file to fail", Duration::from_secs(300), |_| drop.join(".failed/broken.parquet").is_file());
    let error = std::fs::read_to_string(drop.join(".failed/broken.parquet.error.txt")).unwrap();
    assert!(error.contains("bulk import failed") && error.contains("vector"), "Milvus's reason is in the error file: {error}");
    assert!(failed_files(&drop).contains("broken.parquet.error.txt"));
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(tasks(&sink, &collection).await, 2, "submitted twice (bulk_import.max_submissions = 2)");
    assert_eq!(sink.count(&collection).await.unwrap(), 0, "nothing of a failed task is visible");
    let kept = std::fs::read_to_string(job.join("FAILED.txt")).unwrap();
    assert!(kept.contains("vector"), "the staging is kept with the reason: {kept}");
    assert_eq!(daemon.metric("vecdrop_bulk_jobs_total{pipeline=\"test\",outcome=\"failed\"}"), 1.0);
    assert_eq!(daemon.metric("vecdrop_bulk_jobs_total{pipeline=\"test\",outcome=\"resubmitted\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_through_the_object_store_uploads_imports_and_cleans_up() {
    // `file://` goes through the same object-store code as `s3://` (spool, multipart upload, key
    // listing and deletion); the standalone server reads the uploaded objects by absolute path.
    let collection = unique_collection("bulk_store");
    let bucket = tempfile::tempdir().unwrap();
    let config = TestConfig::with_sections(
        &collection,
        &format!(
            "id_field = \"id\"\nbulk_import = {{ min_rows = 1000, staging = \"file://{}/imports\", poll_interval = \"200ms\" }}\n[pipelines.index]\nindex_type = \"FLAT\"\n[pipelines.fields]\ncategory = {{ type = \"varchar\", max_length = 16 }}",
            bucket.path().display()
        ),
        "",
    );
    let file = config.dir.path().join("export.parquet");
    let rows = records(0..3_000, "v1");
    write_parquet(&file, &rows);
    let output = import(&config, &file, &[]);
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("bulk import: submitted") && log.contains(&format!("{}/imports/test/", bucket.path().display())), "{log}");
    assert_stored_exactly(&config, &rows).await;
    let left: Vec<_> = walk(bucket.path()).into_iter().filter(|path| path.is_file()).collect();
    assert!(left.is_empty(), "the job's objects are deleted after success: {left:?}");
    assert!(walk(&config.state_dir().join("bulk-spool")).iter().all(|path| !path.is_file()), "the local spool is gone");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn check_reports_the_import_api_and_the_staging_location() {
    let collection = unique_collection("bulk_check");
    let config = bulk_config(&collection, "", "");
    let output = config.run("check", &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("pipeline test bulk import") && text.contains("grpc import API"), "{text}");
    assert!(text.contains("pipeline test bulk staging") && text.contains("created by the first bulk job"), "{text}");
    assert!(!config.dir.path().join("staging").exists(), "check creates nothing");

    let unwritable = bulk_config(&collection, "", "").dir;
    let blocked = TestConfig::with_sections(
        &collection,
        &format!("id_field = \"id\"\nbulk_import = {{ staging = \"{}/file-not-folder/staging\" }}", unwritable.path().display()),
        "",
    );
    std::fs::write(unwritable.path().join("file-not-folder"), "").unwrap();
    let output = blocked.run("check", &[]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_ne!(output.status.code(), Some(0));
    assert!(text.contains("bulk staging") && text.contains("not a writable directory"), "{text}");
}
