//! Unit tests of the conversion from the file to [`Settings`].

use super::*;
use crate::format::Format;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vecdrop.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const MINIMAL: &str = r#"
[[pipelines]]
name = "docs"
collection = "documents"
[pipelines.fields]
category = { type = "varchar", max_length = 100 }
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_file(&write(dir.path(), MINIMAL)).unwrap();
    assert_eq!(settings.embedding.max_tokens, 256);
    assert_eq!(settings.pipelines[0].collection.text_field, "text");
    assert_eq!(settings.pipelines[0].collection.primary_key, "id");
    assert_eq!(settings.pipelines[0].collection.index.metric, Metric::Cosine);
    assert_eq!(settings.pipelines[0].collection.index.index_type, IndexType::AutoIndex);
    assert_eq!(settings.pipelines[0].format, ConfiguredFormat::Auto);
    assert_eq!(settings.milvus.connect_timeout, Duration::from_secs(60));
    assert_eq!(settings.state.dir, dir.path().join("state"));
    assert_eq!(settings.embedding.model_dir, dir.path().join("models/all-MiniLM-L6-v2"));
    assert_eq!(settings.base_dir, dir.path());
}

#[test]
fn batch_budgets_scale_with_the_device_unless_configured() {
    let cpu = EmbeddingSettings::default();
    assert_eq!(cpu.batch_budget(), (8192, 128));
    let cuda = EmbeddingSettings { device: Device::Cuda, ..EmbeddingSettings::default() };
    assert_eq!(cuda.batch_budget(), (65_536, 1024));
    let configured = EmbeddingSettings { device: Device::Cuda, batch_tokens: 4096, max_batch_texts: 64, ..EmbeddingSettings::default() };
    assert_eq!(configured.batch_budget(), (4096, 64));
}

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = Settings::from_file(&write(dir.path(), "[milvus]\nurl = \"x\"\n")).unwrap_err();
    assert!(error.to_string().contains("url"), "{error}");
}

#[test]
fn varchar_without_max_length_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace(", max_length = 100", "");
    let error = Settings::from_file(&write(dir.path(), &text)).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].fields.category.max_length"), "{error}");
}

#[test]
fn field_clashing_with_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL.replace("category", "text");
    let error = Settings::from_file(&write(dir.path(), &text)).unwrap_err();
    assert!(error.to_string().contains("fields.text"), "{error}");
}

#[test]
fn ndjson_format_and_json_pointer_syntax_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &str| MINIMAL.replace("collection = \"documents\"", &format!("collection = \"documents\"\n{extra}"));
    Settings::from_file(&write(dir.path(), &with("format = \"ndjson\"\njson_pointer = \"/data/a~1b\""))).unwrap();
    let error = Settings::from_file(&write(dir.path(), &with("format = \"json\"\njson_pointer = \"records\""))).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].json_pointer"), "{error}");
}

#[test]
fn plugin_entries_get_documented_limits_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{MINIMAL}\n[[plugins]]\npath = \"p.wasm\"\n[plugins.config]\nfields = [\"a\", \"b\"]\n");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    let limits = &settings.plugins[0].limits;
    assert_eq!((limits.memory_bytes, limits.chunk_bytes, limits.max_output_bytes), (64 << 20, 64 << 10, 16 << 20));
    assert_eq!(limits.call_time_budget, std::time::Duration::from_secs(2));
    assert_eq!(settings.plugins[0].config_json, r#"{"fields":["a","b"]}"#);
    assert_eq!(*limits, PluginLimits::default());
    assert_eq!(settings.plugins[0].path, dir.path().join("p.wasm"));
    let error =
        Settings::from_file(&write(dir.path(), &text.replace("path = \"p.wasm\"", "path = \"p.wasm\"\nmemory_mib = 0"))).unwrap_err();
    assert!(error.to_string().contains("plugins[0].memory_mib: expected 1..=4096"), "{error}");
}

#[test]
fn every_example_config_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut parsed = 0;
    for dir in ["examples", "etc"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "toml") {
                Settings::from_file(&path).unwrap_or_else(|error| panic!("{error}"));
                parsed += 1;
            }
        }
    }
    assert!(parsed >= 1, "expected example configs under examples/ or etc/");
}

#[test]
fn index_type_and_metric_become_enums_and_bad_names_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let with_index = |index: &str| {
        format!("{MINIMAL}[pipelines.index]\n{index}\n")
            .replace("[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 100 }\n", "")
    };
    let settings = Settings::from_file(&write(dir.path(), &with_index("index_type = \"HNSW\"\nmetric = \"IP\""))).unwrap();
    let index = &settings.pipelines[0].collection.index;
    assert_eq!((index.index_type, index.metric), (IndexType::Hnsw, Metric::Ip));
    assert_eq!((index.index_type.to_string(), index.metric.to_string()), ("HNSW".to_owned(), "IP".to_owned()));
    let error = Settings::from_file(&write(dir.path(), &with_index("metric = \"cosine\""))).unwrap_err();
    assert!(error.to_string().contains(r#"pipelines[0].index.metric: expected one of ["COSINE", "IP", "L2"], got "cosine""#), "{error}");
    let error = Settings::from_file(&write(dir.path(), &with_index("index_type = \"BTREE\""))).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].index.index_type: expected one of [\"AUTOINDEX\""), "{error}");
}

#[test]
fn formats_are_parsed_once_built_in_or_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let with = |format: &str| MINIMAL.replace("collection = \"documents\"", &format!("collection = \"documents\"\nformat = \"{format}\""));
    let format_of =
        |format: &str| Settings::from_file(&write(dir.path(), &with(format))).map(|settings| settings.pipelines[0].format.clone());
    assert_eq!(format_of("ndjson").unwrap(), ConfiguredFormat::BuiltIn(Format::Jsonl));
    assert_eq!(format_of("parquet").unwrap(), ConfiguredFormat::BuiltIn(Format::Parquet));
    assert_eq!(format_of("xml").unwrap(), ConfiguredFormat::Plugin("xml".to_owned()));
    let error = format_of("x m l").unwrap_err();
    assert!(error.to_string().contains("pipelines[0].format: expected one of [\"auto\", \"csv\""), "{error}");
}

#[test]
fn schedules_are_parsed_once_with_their_zone_and_absolute_globs() {
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &str| MINIMAL.replace("collection = \"documents\"", &format!("collection = \"documents\"\n{extra}"));
    let text = with("paths = [\"exports/*.csv\", \"/srv/a.csv\"]\nschedule = \"0 */10 * * * *\"\ntimezone = \"Europe/Berlin\"");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    let schedule = settings.pipelines[0].schedule.as_ref().unwrap();
    assert_eq!(schedule.cron.to_string(), "0 */10 * * * *");
    assert_eq!(schedule.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(schedule.paths, [format!("{}/exports/*.csv", dir.path().display()), "/srv/a.csv".to_owned()]);
    let error = Settings::from_file(&write(dir.path(), &with("paths = [\"a\"]\nschedule = \"*/5 * * * *\""))).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].schedule: expected a cron expression"), "{error}");
    let error = Settings::from_file(&write(dir.path(), &with("paths = [\"a\"]\nschedule = \"0 * * * * *\"\ntimezone = \"Mars/Olympus\"")))
        .unwrap_err();
    assert!(error.to_string().contains("pipelines[0].timezone"), "{error}");
    let error = Settings::from_file(&write(dir.path(), &with("paths = [\"a\"]"))).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].schedule: paths are imported on a schedule"), "{error}");
}

#[test]
fn glob_characters_in_the_config_directory_are_escaped() {
    assert_eq!(absolute_glob(Path::new("/srv/[x]"), "*.csv").unwrap(), "/srv/[[]x[]]/*.csv");
}

#[test]
fn relative_paths_are_resolved_once_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[milvus]\nuri = \"data/milvus\"\nlite_command = \"bin/milvus-lite\"\n[embedding]\nort_library = \"/opt/ort.so\"\n{MINIMAL}watch = [\"drop\", \"/abs/drop\"]\n");
    let text = text.replace("[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 100 }\nwatch", "watch");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    assert_eq!(settings.milvus.uri, dir.path().join("data/milvus").display().to_string());
    assert_eq!(settings.milvus.lite_command.as_deref(), Some(dir.path().join("bin/milvus-lite").as_path()));
    assert_eq!(settings.embedding.ort_library.as_deref(), Some(Path::new("/opt/ort.so")));
    assert_eq!(settings.pipelines[0].watch, [dir.path().join("drop"), PathBuf::from("/abs/drop")]);
}

#[test]
fn old_numeric_duration_keys_are_accepted_but_not_next_to_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old =
        format!("[milvus]\nconnect_timeout_secs = 7\nmax_attempts = 3\n{MINIMAL}\n[[plugins]]\npath = \"p.wasm\"\nchunk_time_ms = 300\n");
    let settings = Settings::from_file(&write(dir.path(), &old)).unwrap();
    assert_eq!(settings.milvus.connect_timeout, Duration::from_secs(7));
    assert_eq!(settings.plugins[0].limits.call_time_budget, Duration::from_millis(300));
    let new = old.replace("connect_timeout_secs = 7", "connect_timeout = \"7s\"").replace("chunk_time_ms = 300", "chunk_time = \"300ms\"");
    let settings = Settings::from_file(&write(dir.path(), &new)).unwrap();
    assert_eq!(settings.milvus.connect_timeout, Duration::from_secs(7));
    assert_eq!(settings.plugins[0].limits.call_time_budget, Duration::from_millis(300));
    let both = old.replace("connect_timeout_secs = 7", "connect_timeout_secs = 7\nconnect_timeout = \"7s\"");
    let error = Settings::from_file(&write(dir.path(), &both)).unwrap_err();
    assert!(error.to_string().contains("milvus.connect_timeout_secs: replaced by milvus.connect_timeout"), "{error}");
    let both = old.replace("chunk_time_ms = 300", "chunk_time_ms = 300\nchunk_time = \"1s\"");
    let error = Settings::from_file(&write(dir.path(), &both)).unwrap_err();
    assert!(error.to_string().contains("plugins[0].chunk_time_ms: replaced by plugins[0].chunk_time"), "{error}");
    let error = Settings::from_file(&write(dir.path(), &old.replace("chunk_time_ms = 300", "chunk_time_ms = 5"))).unwrap_err();
    assert!(error.to_string().contains("plugins[0].chunk_time: expected 10ms..=1h, got 5ms"), "{error}");
}

#[test]
fn missing_required_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let error = Settings::from_file(&write(dir.path(), "[[pipelines]]\nname = \"docs\"\n")).unwrap_err();
    assert!(error.to_string().contains("pipelines[0].collection: required"), "{error}");
    let error = Settings::from_file(&write(dir.path(), &format!("{MINIMAL}\n[[plugins]]\nmemory_mib = 8\n"))).unwrap_err();
    assert!(error.to_string().contains("plugins[0].path: required"), "{error}");
}

#[test]
fn the_shipped_configs_say_what_they_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let etc = Settings::from_file(&root.join("etc/vecdrop.toml")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(etc.milvus.uri, "http://127.0.0.1:19530");
    assert_eq!(etc.milvus.connect_timeout, Duration::from_secs(60));
    assert_eq!(etc.milvus.retry_deadline, Duration::from_secs(60));
    assert_eq!(etc.import.retry_deadline, Duration::from_secs(600));
    assert_eq!(etc.embedding.model_dir, Path::new("/var/lib/vecdrop/models/all-MiniLM-L6-v2"));
    assert_eq!(etc.state.dir, Path::new("/var/lib/vecdrop/state"));
    assert_eq!(etc.daemon.retry_backoff_max, Duration::from_secs(300));
    let docs = &etc.pipelines[0];
    assert_eq!((docs.name.as_str(), docs.collection.name.as_str(), docs.collection.primary_key.as_str()), ("docs", "documents", "id"));
    assert_eq!((docs.collection.index.index_type, docs.collection.index.metric), (IndexType::AutoIndex, Metric::Cosine));
    assert_eq!(docs.watch, [PathBuf::from("/var/lib/vecdrop/drop/docs")]);
    assert!(docs.schedule.is_none() && etc.plugins.is_empty());

    let examples = root.join("examples");
    let example = Settings::from_file(&examples.join("vecdrop.toml")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(example.milvus.uri, examples.join("../data/milvus").display().to_string());
    assert_eq!(example.state.dir, examples.join("../state"));
    let [articles, faq] = example.pipelines.as_slice() else { panic!("expected two pipelines") };
    assert_eq!((articles.after_import, articles.format.clone()), (AfterImport::Keep, ConfiguredFormat::Auto));
    assert_eq!(articles.watch, [examples.join("drop")]);
    let schedule = faq.schedule.as_ref().unwrap();
    assert_eq!((schedule.cron.to_string(), schedule.timezone), ("*/30 * * * * *".to_owned(), chrono_tz::UTC));
    assert_eq!(schedule.paths, [format!("{}/exports/faq.csv", examples.display())]);
    assert!(faq.mirror);
    assert_eq!(example.plugins[0].path, examples.join("../plugins/target/xml.wasm"));
    assert_eq!(example.plugins[0].limits, PluginLimits::default());
}
