//! Every built-in format imports end to end into real Milvus: JSONL (also gzip-compressed), JSON
//! arrays (top level or under a pointer), and Parquet (with and without a vector column).
//! Bad records are dead-lettered with their position; good ones land.

mod support;

use std::io::Write;

use support::{connect_sink, milvus_uri, unique_collection, write_file, TestConfig};

const FIELDS: &str = "id_field = \"id\"\n[pipelines.fields]\nrating = { type = \"double\" }\ntags = { type = \"json\", optional = true }\n";

fn jsonl_lines() -> String {
    [
        r#"{"id": "j1", "text": "first line about the sea", "rating": 4.5, "tags": {"colour": "blue", "list": [1, 2]}}"#,
        r#"{"id": 2, "text": "an integer id becomes text", "rating": 3}"#,
        r#"not json at all"#,
        "",
        r#"{"id": "j3", "text": "rating has the wrong type", "rating": "high"}"#,
        r#"{"id": "j5", "text": "tags must be an object", "rating": 2, "tags": ["a"]}"#,
        r#"{"id": "j4", "text": "last line, no newline at the end", "rating": 1.25}"#,
    ]
    .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn jsonl_plain_and_gzip_import_with_dead_letters() {
    let config = TestConfig::new(&unique_collection("jsonl"), FIELDS);
    let plain = write_file(config.dir.path(), "rows.jsonl", &jsonl_lines());
    let output = config.run("import", &[plain.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 rows imported, 3 rejected"));
    let stored = support::texts_in_milvus(&config, &["j1", "2", "j3", "j4", "j5"]).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored["2"], "an integer id becomes text");

    let letters: Vec<serde_json::Value> = std::fs::read_to_string(config.state_dir().join("dead-letters/test.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["line"], 3);
    assert_eq!(letters[1]["line"], 5);
    assert_eq!(letters[1]["field"], "rating");
    assert_eq!(letters[2]["line"], 6);
    assert_eq!(letters[2]["reason"], "expected a JSON object, found a JSON array");

    // The same rows gzip-compressed: a different file (other content hash), same keys, same count.
    let gzip_path = config.dir.path().join("rows.jsonl.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&gzip_path).unwrap(), flate2::Compression::default());
    encoder.write_all(jsonl_lines().as_bytes()).unwrap();
    encoder.finish().unwrap();
    assert_eq!(config.run("import", &[gzip_path.to_str().unwrap()]).status.code(), Some(3));
    assert_eq!(support::texts_in_milvus(&config, &["j1", "2", "j3", "j4", "j5"]).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_array_under_a_pointer_imports_every_object() {
    let config = TestConfig::new(&unique_collection("json"), &format!("json_pointer = \"/data/records\"\n{FIELDS}"));
    let document = serde_json::json!({
        "meta": {"note": "skipped [with] {brackets} and \"quotes\""},
        "data": {"records": [
            {"id": "a", "text": "apples are red", "rating": 5},
            {"id": "b", "text": "bananas are yellow", "rating": 4.5, "tags": {"k": 1}},
            "not an object",
            {"id": "c", "text": "cherries are small", "rating": 3}
        ]},
        "after": true
    });
    let path = write_file(config.dir.path(), "doc.json", &serde_json::to_string_pretty(&document).unwrap());
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 rows imported, 1 rejected"));
    let stored = support::texts_in_milvus(&config, &["a", "b", "c"]).await;
    assert_eq!(stored["c"], "cherries are small");
}

/// A Parquet file: `id`, `text`, `rating`, and an `embedding` list<float32> column that holds a
/// 384-d vector on even rows, null on odd rows (those are embedded by the model), and a wrong
/// dimension on row 5 (dead-lettered).
fn write_parquet(path: &std::path::Path, rows: usize) -> Vec<Vec<f32>> {
    use std::sync::Arc;

    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let mut vectors = Vec::new();
    let mut embedding = ListBuilder::new(Float32Builder::new());
    for row in 0..rows {
        let mut vector: Vec<f32> = (0..384).map(|dimension| ((row * 31 + dimension * 7) % 97) as f32 / 97.0 + 0.01).collect();
        let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|value| *value /= norm);
        match row {
            5 => embedding.append_value([Some(1.0f32), Some(2.0)]),
            row if row % 2 == 0 => embedding.append_value(vector.iter().copied().map(Some)),
            _ => embedding.append_null(),
        }
        vectors.push(vector);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from_iter_values((0..rows).map(|row| format!("p{row}"))))),
        ("text", Arc::new(StringArray::from_iter_values((0..rows).map(|row| format!("parquet row {row} about gardens"))))),
        ("rating", Arc::new(Float64Array::from_iter_values((0..rows).map(|row| row as f64 / 2.0)))),
        ("embedding", Arc::new(embedding.finish())),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let properties =
        WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).set_max_row_group_row_count(Some(16)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    vectors
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_rows_with_vectors_skip_the_model_and_keep_their_vectors() {
    let config = TestConfig::new(&unique_collection("parquet"), "id_field = \"id\"\n[pipelines.fields]\nrating = { type = \"double\" }\n");
    let path = config.dir.path().join("rows.parquet");
    let vectors = write_parquet(&path, 40);
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("39 rows imported, 1 rejected"));
    let letters = std::fs::read_to_string(config.state_dir().join("dead-letters/test.jsonl")).unwrap();
    assert!(letters.contains("expected a vector of dimension 384 (the model's), found 2"), "{letters}");

    let spec = support::collection_spec(&config);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), 39);
    // A row that carried its vector is found by that exact vector (the model did not replace it).
    for row in [0usize, 12, 38] {
        let hits = sink.search(&spec, vectors[row].clone(), 1).await.unwrap();
        assert_eq!(hits[0].id, format!("p{row}"));
        assert!(hits[0].score > 0.9999, "{:?}", hits[0]);
    }
    // Rows without a vector were embedded from their text.
    let stored = support::texts_in_milvus(&config, &["p1", "p3"]).await;
    assert_eq!(stored["p3"], "parquet row 3 about gardens");
}
