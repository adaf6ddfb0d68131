//! `vecdrop import` of CSV files against a real Milvus: exactly-once counts, dead letters, schema
//! checks, and search that finds the right rows.

mod support;

use std::collections::HashMap;
use std::io::Write;

use support::{connect_sink, milvus_uri, unique_collection, write_file, TestConfig};

const SEED_FIELDS: &str = r#"
id_field = "id"
[pipelines.fields]
category = { type = "varchar", max_length = 64 }
year = { type = "int64" }
"#;

fn read_csv(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader.records().map(|record| headers.iter().map(str::to_owned).zip(record.unwrap().iter().map(str::to_owned)).collect()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_csv_is_imported_exactly_once_and_a_rerun_changes_nothing() {
    let config = TestConfig::new(&unique_collection("seed"), SEED_FIELDS);
    let seed = support::root().join("examples/data/seed.csv");
    let rows = read_csv(&seed);

    let first = config.run("import", &[seed.to_str().unwrap()]);
    assert_eq!(first.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&first.stdout).contains(&format!("{} rows imported, 0 rejected", rows.len())));

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let spec = support::collection_spec(&config);
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), rows.len() as u64);

    let second = config.run("import", &[seed.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stdout).contains("already imported"), "same content is recognised");
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), rows.len() as u64, "re-import must not add rows");

    // The same content under another name is recognised too; --force imports it again, in place.
    let copy = config.dir.path().join("copy-of-seed.csv");
    std::fs::copy(&seed, &copy).unwrap();
    assert!(String::from_utf8_lossy(&config.run("import", &[copy.to_str().unwrap()]).stdout).contains("already imported"));
    let forced = config.run("import", &["--force", copy.to_str().unwrap()]);
    assert_eq!(forced.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&forced.stdout).contains(&format!("{} rows imported", rows.len())));
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), rows.len() as u64, "forced re-import upserts the same keys");

    // Every key is there once, with the file's text.
    for chunk in rows.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|row| row["id"].clone()).collect();
        let stored = sink.texts_by_key(&spec, &keys).await.unwrap();
        assert_eq!(stored.len(), keys.len());
        for row in chunk {
            assert_eq!(stored[&row["id"]], row["text"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_are_dead_lettered_with_their_line_and_good_rows_land() {
    let config = TestConfig::new(&unique_collection("dead"), SEED_FIELDS);
    let mut content = String::from("id,text,category,year\n");
    content.push_str("g1,A good first row about databases,databases,2001\n"); // line 2
    content.push_str("g2,\"A quoted row, with a comma\nand a newline\",cooking,2002\n"); // lines 3-4
    content.push_str("b1,too,many,columns,here\n"); // line 5
    content.push_str("b2,A row with a bad year,sports,nineteen\n"); // line 6
    content.push_str("b3,,travel,2003\n"); // line 7: text missing
    content.push_str("g3,The last good row,finance,2004\n"); // line 8
    let mut bytes = content.into_bytes();
    bytes.extend_from_slice(b"b4,invalid utf-8 \xff here,music,2005\n"); // line 9
    bytes.extend_from_slice(b"g4,After the broken one,music,2006\n"); // line 10
    let path = config.dir.path().join("mixed.csv");
    std::fs::write(&path, bytes).unwrap();

    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "exit code 3 when records were dead-lettered");
    assert!(String::from_utf8_lossy(&output.stdout).contains("4 rows imported, 4 rejected"));

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    let spec = support::collection_spec(&config);
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), 4);
    let keys: Vec<String> = ["g1", "g2", "g3", "g4", "b1", "b2", "b3", "b4"].iter().map(|key| key.to_string()).collect();
    let stored = sink.texts_by_key(&spec, &keys).await.unwrap();
    let mut stored_keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    stored_keys.sort();
    assert_eq!(stored_keys, ["g1", "g2", "g3", "g4"]);
    assert_eq!(stored["g2"], "A quoted row, with a comma\nand a newline");

    let letters_path = config.state_dir().join("dead-letters/test.jsonl");
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(&letters_path).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let summary: Vec<(u64, Option<&str>)> =
        letters.iter().map(|letter| (letter["line"].as_u64().unwrap(), letter["field"].as_str())).collect();
    assert_eq!(summary, vec![(5, None), (6, Some("year")), (7, Some("text")), (9, Some("text"))]);
    for letter in &letters {
        assert_eq!(letter["file"].as_str().unwrap(), path.to_str().unwrap());
        assert!(letter["byte_offset"].as_u64().is_some());
        assert!(!letter["reason"].as_str().unwrap().is_empty());
    }
    assert!(letters[0]["reason"].as_str().unwrap().contains("expected 4 columns"));
    assert!(letters[1]["reason"].as_str().unwrap().contains("expected an int64, found \"nineteen\""));
    assert!(letters[1]["raw"].as_str().unwrap().contains("nineteen"));
}

#[tokio::test(flavor = "multi_thread")]
async fn search_puts_the_semantically_right_rows_first() {
    let config = TestConfig::new(
        &unique_collection("search"),
        "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 64 }\n",
    );
    let articles = support::root().join("examples/drop/articles.csv");
    assert_eq!(config.run("import", &[articles.to_str().unwrap()]).status.code(), Some(0));
    let cases = [
        ("how do I bake bread with a starter", "a05"),
        ("which animal has three hearts", "a36"),
        ("a database that lives in one file", "a03"),
        ("the tower built for a world fair in Paris", "a21"),
        ("memory safety without a garbage collector", "a17"),
        ("earning interest on interest", "a27"),
    ];
    for (query, expected) in cases {
        let output = config.run("search", &["--json", "-k", "3", query]);
        assert_eq!(output.status.code(), Some(0));
        let hits: Vec<serde_json::Value> =
            String::from_utf8(output.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0]["id"], expected, "query {query:?}: {hits:?}");
        assert!(hits[0]["score"].as_f64().unwrap() > hits[2]["score"].as_f64().unwrap());
        assert!(hits[0]["fields"]["category"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_collection_that_does_not_fit_is_refused_by_field_name() {
    let collection = unique_collection("mismatch");
    let first = TestConfig::new(&collection, SEED_FIELDS);
    let checked = |config: &TestConfig, code: i32| {
        let output = config.run("check", &[]);
        assert_eq!(output.status.code(), Some(code));
        String::from_utf8(output.stdout).unwrap()
    };
    for shape_source in ["calibrated", "cached"] {
        // `check` looks and never creates: the second look still finds no collection.
        let report = checked(&first, 0);
        assert!(report.contains(&format!("collection {collection} does not exist yet")), "{report}");
        assert!(report.contains("schema it would create: id VARCHAR(512) primary key, text VARCHAR("), "{report}");
        assert!(report.contains("ok    model: ") && report.contains("384-d, embeds"), "{report}");
        // The batch shape is measured on the first start and kept in the state directory.
        assert!(report.contains("ok    model batch: ") && report.contains(&format!("per run ({shape_source}")), "{report}");
    }
    let small = write_file(first.dir.path(), "small.csv", "id,text,category,year\nx1,hello,cat,2000\n");
    let imported = first.run("import", &[small.to_str().unwrap()]);
    assert_eq!(imported.status.code(), Some(0));
    let summary = String::from_utf8(imported.stdout).unwrap();
    assert!(summary.contains("start-up: ") && summary.contains("from start to the first model batch"), "{summary}");
    let report = checked(&first, 0);
    assert!(report.contains(&format!("collection {collection} exists and fits")), "{report}");

    let second = TestConfig::new(&collection, "id_field = \"id\"\n[pipelines.fields]\nrating = { type = \"double\" }\n");
    let report = checked(&second, 1);
    assert!(report.contains("FAIL  pipeline test: ") && report.contains("field \"rating\": missing"), "{report}");
    assert!(report.contains("1 of ") && report.contains(" checks failed"), "{report}");
    let other = write_file(second.dir.path(), "other.csv", "id,text,rating\nx2,hello,4.5\n");
    let output = second.run("import", &[other.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("field \"rating\": missing"), "{stderr}");
    assert!(stderr.contains("field \"category\": in the collection but not in the pipeline"), "{stderr}");
}

#[test]
fn a_file_without_a_required_column_fails_with_a_clear_error() {
    let config = TestConfig::new(&unique_collection("columns"), SEED_FIELDS);
    let path = write_file(config.dir.path(), "nocat.csv", "id,text,year\n1,hello,2000\n");
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nocat.csv") && stderr.contains("\"category\""), "{stderr}");
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let config = TestConfig::new("whatever", "batch_rows = 0\n");
    let output = config.run("import", &["Cargo.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("pipelines[0].batch_rows"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_file_keeps_the_rows_before_the_damage_and_is_marked_failed() {
    let config = TestConfig::new(&unique_collection("damaged"), "batch_rows = 100\n");
    let mut content = String::from("text\n");
    for index in 0..250 {
        content.push_str(&format!("good row number {index}\n"));
    }
    let damage_at = content.len();
    content.push_str("\"an unbalanced quote swallows the rest");
    content.push_str(&"x".repeat(17 * 1024 * 1024));
    let path = write_file(config.dir.path(), "damaged.csv", &content);

    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("at byte {damage_at}")) && stderr.contains("longer than 16 MiB"), "{stderr}");

    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&support::collection_spec(&config).collection.name).await.unwrap(), 250, "rows before the damage are kept");
    let status: serde_json::Value = serde_json::from_slice(&config.run("status", &["--json"]).stdout).unwrap();
    assert_eq!(status[0]["state"], "failed");
    assert!(status[0]["reason"].as_str().unwrap().contains("longer than 16 MiB"));
    assert_eq!(status[0]["rows_imported"], 250);
}

#[test]
fn a_file_that_changes_during_its_import_is_failed_not_mixed() {
    assert!(
        vecdrop::failpoint::enabled(),
        "this test pauses the import at a failure point: run `cargo test --features failpoints` (make test does)"
    );
    let config = TestConfig::new(&unique_collection("changing"), "batch_rows = 64\n");
    let mut content = String::from("text\n");
    for index in 0..300 {
        content.push_str(&format!("a line of text number {index}\n"));
    }
    let path = write_file(config.dir.path(), "growing.csv", &content);
    // The import pauses right after Milvus acknowledged its first batch; the file changes then.
    let pause = config.dir.path().join("pause");
    std::fs::create_dir(&pause).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["import", "--config"])
        .arg(&config.path)
        .arg(&path)
        .env("VECDROP_FAILPOINT", "after_upsert@1")
        .env("VECDROP_FAILPOINT_PAUSE", &pause)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !pause.join("reached").exists() {
        assert!(std::time::Instant::now() < deadline, "the import never reached its first upsert");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"appended while importing\n").unwrap();
    std::fs::write(pause.join("resume"), "").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("changed while it was being imported"), "{stderr}");
    let status: serde_json::Value = serde_json::from_slice(&config.run("status", &["--json"]).stdout).unwrap();
    assert_eq!(status[0]["state"], "failed");
    assert_eq!(status[0]["rows_imported"], 0, "the changed file's batch was not committed");
}

/// The export `make run` imports on a schedule is clean: no row of it is dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn the_bundled_faq_export_imports_without_a_rejected_row() {
    let collection = unique_collection("faq");
    let config =
        TestConfig::new(&collection, "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 64 }\n");
    let faq = support::root().join("examples/exports/faq.csv");
    let output = config.run("import", &[faq.to_str().unwrap()]);
    let summary = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{summary}");
    assert!(summary.contains(" 0 rejected"), "{summary}");
}
