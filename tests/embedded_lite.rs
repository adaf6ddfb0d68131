//! A local path as `milvus.uri` starts embedded Milvus Lite (what `make run` uses): rows land, can
//! be searched from a second process, and the child server is gone when vecdrop exits. A
//! pipeline's `bulk_import` falls back to upserts there (Milvus Lite has no import), with one log
//! line.

mod support;

use std::process::Command;

#[test]
fn local_uri_starts_milvus_lite_imports_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("milvus-data");
    let config = dir.path().join("vecdrop.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[milvus]
uri = "milvus-data"
lite_command = "{lite}"
[embedding]
model_dir = "{model}"
[[pipelines]]
name = "articles"
collection = "articles"
id_field = "id"
# Milvus Lite has no bulk import: big files fall back to upserts, said once.
bulk_import = {{ min_rows = 1, staging = "staging" }}
[pipelines.fields]
category = {{ type = "varchar", max_length = 64 }}
"#,
            lite = support::root().join(".venv/bin/milvus-lite").display(),
            model = support::model_dir().display()
        ),
    )
    .unwrap();
    assert!(support::root().join(".venv/bin/milvus-lite").is_file(), "milvus-lite missing: run `make setup`");
    let articles = support::root().join("examples/drop/articles.csv");
    let vecdrop = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_vecdrop")).args(args).output().unwrap();
        eprintln!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        output
    };

    let import = vecdrop(&["import", "--config", config.to_str().unwrap(), articles.to_str().unwrap()]);
    assert_eq!(import.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&import.stdout).contains("36 rows imported"));
    let log = String::from_utf8_lossy(&import.stderr);
    assert_eq!(log.matches("has no bulk import").count(), 1, "the fall-back to upserts is logged once: {log}");
    assert!(!dir.path().join("staging").exists(), "nothing was staged");
    assert!(data_dir.join("milvus-lite.log").is_file());

    let search = vecdrop(&["search", "--config", config.to_str().unwrap(), "--json", "-k", "1", "bees dancing to show where flowers are"]);
    assert_eq!(search.status.code(), Some(0));
    let hit: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&search.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(hit["id"], "a35");

    // No milvus-lite process serving this data directory outlives vecdrop.
    let survivors = Command::new("pgrep").args(["-f", data_dir.to_str().unwrap()]).output().unwrap();
    assert!(survivors.stdout.is_empty(), "milvus-lite still running: {}", String::from_utf8_lossy(&survivors.stdout));
}
