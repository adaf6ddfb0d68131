//! Milvus's bulk import against the real 2.3.5 server with local storage: rows staged as Parquet
//! by `bulk::StagingWriter` in a folder of this machine, imported by absolute path, followed to
//! completion; a task with a wrong vector dimension fails with Milvus's reason.

mod support;

use std::time::Duration;

use vecdrop::bulk::StagingWriter;
use vecdrop::format::RecordPosition;
use vecdrop::mapping::{Row, ScalarValue};
use vecdrop::settings::KeyType;
use vecdrop::sink::{CollectionSpec, ImportProgress, MilvusSink};

use support::{connect_sink, milvus_uri, unique_collection, TestConfig};

fn rows(count: usize) -> (Vec<Row>, Vec<Vec<f32>>) {
    let rows = (0..count)
        .map(|index| Row {
            primary_key: format!("bulk-{index}"),
            text: format!("row {index} staged for a bulk import"),
            scalars: vec![ScalarValue::Varchar(format!("c{}", index % 7))],
            row_hash: index as i64,
            position: RecordPosition { ordinal: index as u64, line: None, byte_offset: 0 },
            vector: None,
        })
        .collect();
    // Pseudo-random directions (xorshift per row): well apart, so each row is its own nearest
    // neighbour even through an approximate index.
    let vectors = (0..count)
        .map(|index| {
            let mut state = 0x9E37_79B9_7F4A_7C15_u64 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (0..384)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect();
    (rows, vectors)
}

/// Follows `tasks` until each is done or failed (Milvus's own pace: no time limit asserted, only
/// a generous cap so that a stuck server fails the test instead of hanging it).
async fn follow(sink: &MilvusSink, collection: &str, tasks: &[i64]) -> Vec<ImportProgress> {
    let mut outcomes = Vec::new();
    for task in tasks {
        let mut waited = Duration::ZERO;
        loop {
            match sink.import_progress(collection, *task).await.unwrap() {
                ImportProgress::Running { .. } if waited < Duration::from_secs(600) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    waited += Duration::from_millis(200);
                }
                other => {
                    outcomes.push(other);
                    break;
                }
            }
        }
    }
    outcomes
}

/// The collection's row count once it reaches `expected` (the query nodes load imported segments
/// on their next check, ~20 s after the task completed) — or what it is after a generous cap.
async fn visible_count(sink: &MilvusSink, collection: &str, expected: u64) -> u64 {
    let mut waited = Duration::ZERO;
    loop {
        let count = sink.count(collection).await.unwrap();
        if count >= expected || waited >= Duration::from_secs(600) {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        waited += Duration::from_millis(500);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_staged_rows_are_imported_exactly_with_their_vectors() {
    let collection = unique_collection("bulk");
    let config = TestConfig::new(&collection, "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 16 }");
    let spec: CollectionSpec = support::collection_spec(&config);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    sink.ensure_collection(&spec).await.unwrap();

    let (rows, vectors) = rows(20_000);
    let mut writer = StagingWriter::create(&config.dir.path().join("staging/job-1"), &spec, KeyType::Varchar).unwrap();
    for (chunk, chunk_vectors) in rows.chunks(2_000).zip(vectors.chunks(2_000)) {
        writer.write(chunk, chunk_vectors).unwrap();
    }
    let staged = writer.finish().unwrap();
    assert_eq!(staged.rows, 20_000);
    let files: Vec<String> = staged.files.iter().map(|file| file.display().to_string()).collect();
    let tasks = sink.bulk_import(&spec, &files).await.unwrap();
    assert_eq!(tasks.len(), files.len(), "one task per file");
    for outcome in follow(&sink, &collection, &tasks).await {
        assert!(matches!(outcome, ImportProgress::Done { .. }), "{outcome:?}");
    }
    assert_eq!(visible_count(&sink, &collection, 20_000).await, 20_000);
    let keys: Vec<String> = (0..20_000).step_by(997).map(|index| format!("bulk-{index}")).collect();
    let texts = sink.texts_by_key(&spec, &keys).await.unwrap();
    assert_eq!(texts.len(), keys.len());
    assert_eq!(texts["bulk-997"], "row 997 staged for a bulk import");
    // The vectors are the staged ones: each row is its own nearest neighbour.
    let hits = sink.search(&spec, vectors[4_321].clone(), 1).await.unwrap();
    assert_eq!(hits[0].id, "bulk-4321");
    assert!(hits[0].score > 0.999, "{:?}", hits[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_with_the_wrong_vector_dimension_fails_with_milvus_s_reason() {
    let collection = unique_collection("bulk_bad");
    let config = TestConfig::new(&collection, "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 16 }");
    let spec = support::collection_spec(&config);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    sink.ensure_collection(&spec).await.unwrap();
    let mut wrong = spec.clone();
    wrong.dimension = 8;
    let (rows, _) = rows(100);
    let vectors = vec![vec![0.5_f32; 8]; 100];
    let mut writer = StagingWriter::create(&config.dir.path().join("staging/bad"), &wrong, KeyType::Varchar).unwrap();
    writer.write(&rows, &vectors).unwrap();
    let staged = writer.finish().unwrap();
    let files: Vec<String> = staged.files.iter().map(|file| file.display().to_string()).collect();
    let tasks = sink.bulk_import(&spec, &files).await.unwrap();
    let outcomes = follow(&sink, &collection, &tasks).await;
    let ImportProgress::Failed { reason } = &outcomes[0] else { panic!("expected a failed task, got {outcomes:?}") };
    assert!(reason.contains("vector"), "Milvus's reason names the vector: {reason}");
    assert_eq!(sink.count(&collection).await.unwrap(), 0, "nothing of a failed task is visible");
}
