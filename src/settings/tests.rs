//! Unit tests of the conversion from the file to [`Settings`].

use super::pipeline::absolute_glob;
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

/// [`MINIMAL`] with `extra` keys in its pipeline.
fn pipeline_with(extra: &str) -> String {
    MINIMAL.replace("collection = \"documents\"", &format!("collection = \"documents\"\n{extra}"))
}

/// [`MINIMAL`] with `[milvus]` keys and one plugin with `plugin` keys.
fn with_milvus_and_plugin(milvus: &str, plugin: &str) -> String {
    format!("[milvus]\n{milvus}\n{MINIMAL}\n[[plugins]]\npath = \"p.wasm\"\n{plugin}\n")
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_file(&write(dir.path(), MINIMAL)).unwrap();
    assert_eq!(settings.embedding.max_tokens, 256);
    let pipeline = &settings.pipelines[0];
    assert_eq!((pipeline.collection.text_field.as_str(), pipeline.collection.primary_key.as_str()), ("text", "id"));
    assert_eq!((pipeline.collection.index.index_type, pipeline.collection.index.metric), (IndexType::AutoIndex, Metric::Cosine));
    assert_eq!(pipeline.format, ConfiguredFormat::Auto);
    assert_eq!(settings.milvus.connect_timeout, Duration::from_secs(60));
    assert_eq!(settings.milvus.flush_window, Duration::from_secs(1));
    assert_eq!((settings.daemon.max_parallel_files, settings.daemon.max_mib_in_flight), (8, 64));
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
fn errors_name_the_key() {
    let index = |keys: &str| format!("{}[pipelines.index]\n{keys}\n", pipeline_with(""));
    let cases = [
        ("[milvus]\nurl = \"x\"\n".to_owned(), "url"),
        (MINIMAL.replace(", max_length = 100", ""), "pipelines[0].fields.category.max_length: required for varchar"),
        (MINIMAL.replace("category", "text"), "pipelines[0].fields.text: this name is already used"),
        (pipeline_with("format = \"json\"\njson_pointer = \"records\""), "pipelines[0].json_pointer"),
        (pipeline_with("format = \"x m l\""), "pipelines[0].format: expected one of [\"auto\", \"csv\""),
        (index("metric = \"cosine\""), r#"pipelines[0].index.metric: expected one of ["COSINE", "IP", "L2"], got "cosine""#),
        (index("index_type = \"BTREE\""), "pipelines[0].index.index_type: expected one of [\"AUTOINDEX\""),
        (pipeline_with("paths = [\"a\"]\nschedule = \"*/5 * * * *\""), "pipelines[0].schedule: expected a cron expression"),
        (pipeline_with("paths = [\"a\"]\nschedule = \"0 * * * * *\"\ntimezone = \"Mars/Olympus\""), "pipelines[0].timezone"),
        (pipeline_with("paths = [\"a\"]"), "pipelines[0].schedule: paths are imported on a schedule"),
        ("[[pipelines]]\nname = \"docs\"\n".to_owned(), "pipelines[0].collection: required"),
        (format!("{MINIMAL}\n[[plugins]]\nmemory_mib = 8\n"), "plugins[0].path: required"),
        (with_milvus_and_plugin("", "memory_mib = 0"), "plugins[0].memory_mib: expected 1..=4096"),
        (with_milvus_and_plugin("", "chunk_time_ms = 5"), "plugins[0].chunk_time: expected 10ms..=1h, got 5ms"),
        (
            with_milvus_and_plugin("", "chunk_time_ms = 300\nchunk_time = \"1s\""),
            "plugins[0].chunk_time_ms: replaced by plugins[0].chunk_time",
        ),
        (
            with_milvus_and_plugin("connect_timeout_secs = 7\nconnect_timeout = \"7s\"", ""),
            "milvus.connect_timeout_secs: replaced by milvus.connect_timeout",
        ),
        (format!("[status]\nlisten = \"9464\"\n{MINIMAL}"), "status.listen: expected HOST:PORT"),
        (format!("[status]\nlisten = \"localhost:http\"\n{MINIMAL}"), "status.listen: expected HOST:PORT"),
        (format!("[daemon]\nmax_mib_in_flight = 0\n{MINIMAL}"), "daemon.max_mib_in_flight: expected at least 1"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in cases {
        let error = Settings::from_file(&write(dir.path(), &text)).unwrap_err().to_string();
        assert!(error.contains(expected), "expected {expected:?} in {error:?} for\n{text}");
    }
}

#[test]
fn plugin_entries_get_documented_limits() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{MINIMAL}\n[[plugins]]\npath = \"p.wasm\"\n[plugins.config]\nfields = [\"a\", \"b\"]\n");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    let plugin = &settings.plugins[0];
    let limits = &plugin.limits;
    assert_eq!((limits.memory_bytes, limits.chunk_bytes, limits.max_output_bytes), (64 << 20, 64 << 10, 16 << 20));
    assert_eq!(limits.call_time_budget, Duration::from_secs(2));
    assert_eq!(*limits, PluginLimits::default());
    assert_eq!(plugin.config_json, r#"{"fields":["a","b"]}"#);
    assert_eq!(plugin.path, dir.path().join("p.wasm"));
}

#[test]
fn index_type_metric_and_format_become_enums() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}[pipelines.index]\nindex_type = \"HNSW\"\nmetric = \"IP\"\n", pipeline_with("format = \"ndjson\""));
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    let index = &settings.pipelines[0].collection.index;
    assert_eq!((index.index_type, index.metric), (IndexType::Hnsw, Metric::Ip));
    assert_eq!((index.index_type.to_string(), index.metric.to_string()), ("HNSW".to_owned(), "IP".to_owned()));
    assert_eq!(settings.pipelines[0].format, ConfiguredFormat::BuiltIn(Format::Jsonl));
    assert_eq!("parquet".parse(), Ok(ConfiguredFormat::BuiltIn(Format::Parquet)));
    assert_eq!("xml".parse(), Ok(ConfiguredFormat::Plugin("xml".to_owned())));
}

#[test]
fn schedules_are_parsed_once_with_their_zone_and_absolute_globs() {
    let dir = tempfile::tempdir().unwrap();
    let text = pipeline_with("paths = [\"exports/*.csv\", \"/srv/a.csv\"]\nschedule = \"0 */10 * * * *\"\ntimezone = \"Europe/Berlin\"");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    let schedule = settings.pipelines[0].schedule.as_ref().unwrap();
    assert_eq!(schedule.cron.to_string(), "0 */10 * * * *");
    assert_eq!(schedule.timezone, chrono_tz::Europe::Berlin);
    assert_eq!(schedule.paths, [format!("{}/exports/*.csv", dir.path().display()), "/srv/a.csv".to_owned()]);
    assert_eq!(absolute_glob(Path::new("/srv/[x]"), "*.csv").unwrap(), "/srv/[[]x[]]/*.csv");
}

#[test]
fn relative_paths_are_resolved_once_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let milvus = "uri = \"data/milvus\"\nlite_command = \"bin/milvus-lite\"\n[embedding]\nort_library = \"/opt/ort.so\"";
    let text = with_milvus_and_plugin(milvus, "")
        .replace("collection = \"documents\"", "collection = \"documents\"\nwatch = [\"drop\", \"/abs/drop\"]");
    let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
    assert_eq!(settings.milvus.uri, dir.path().join("data/milvus").display().to_string());
    assert_eq!(settings.milvus.lite_command.as_deref(), Some(dir.path().join("bin/milvus-lite").as_path()));
    assert_eq!(settings.embedding.ort_library.as_deref(), Some(Path::new("/opt/ort.so")));
    assert_eq!(settings.pipelines[0].watch, [dir.path().join("drop"), PathBuf::from("/abs/drop")]);
}

#[test]
fn old_numeric_duration_keys_are_still_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let old = with_milvus_and_plugin("connect_timeout_secs = 7\nmax_attempts = 3", "chunk_time_ms = 300");
    let new = with_milvus_and_plugin("connect_timeout = \"7s\"", "chunk_time = \"300ms\"");
    for text in [old, new] {
        let settings = Settings::from_file(&write(dir.path(), &text)).unwrap();
        assert_eq!(settings.milvus.connect_timeout, Duration::from_secs(7));
        assert_eq!(settings.plugins[0].limits.call_time_budget, Duration::from_millis(300));
    }
}

#[test]
fn the_shipped_configs_say_what_they_document() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let etc = Settings::from_file(&root.join("etc/vecdrop.toml")).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(etc.milvus.uri, "http://127.0.0.1:19530");
    assert_eq!((etc.milvus.connect_timeout, etc.milvus.retry_deadline), (Duration::from_secs(60), Duration::from_secs(60)));
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
    assert_eq!((articles.after_import, &articles.format), (AfterImport::Keep, &ConfiguredFormat::Auto));
    assert_eq!(articles.watch, [examples.join("drop")]);
    let schedule = faq.schedule.as_ref().unwrap();
    assert_eq!((schedule.cron.to_string(), schedule.timezone), ("*/30 * * * * *".to_owned(), chrono_tz::UTC));
    assert_eq!(schedule.paths, [format!("{}/exports/faq.csv", examples.display())]);
    assert!(faq.mirror);
    assert_eq!(example.plugins[0].path, examples.join("../plugins/target/xml.wasm"));
    assert_eq!(example.plugins[0].limits, PluginLimits::default());
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
fn the_token_comes_from_a_private_file_and_never_shows_in_debug_output() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("milvus-token");
    std::fs::write(&token_file, "root:S3cret-from-file\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let settings = Settings::from_file(&write(dir.path(), &with_milvus_and_plugin("token_file = \"milvus-token\"", ""))).unwrap();
    assert_eq!(settings.milvus.token.expose(), "root:S3cret-from-file");
    let shown = format!("{settings:?}");
    assert!(!shown.contains("S3cret"), "the token leaked into Debug output");
    assert!(shown.contains("[redacted]"));

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Settings::from_file(&write(dir.path(), &with_milvus_and_plugin("token_file = \"milvus-token\"", ""))).unwrap_err();
    assert!(error.to_string().contains("readable by every user"), "{error}");

    let both = with_milvus_and_plugin("token = \"a:b\"\ntoken_file = \"milvus-token\"", "");
    assert!(Settings::from_file(&write(dir.path(), &both)).unwrap_err().to_string().contains("not both"));
}

#[test]
fn tls_keys_turn_tls_on_and_client_certificates_need_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_file(&write(
        dir.path(),
        &with_milvus_and_plugin("uri = \"http://milvus.internal:19530\"\n[milvus.tls]\nca_file = \"ca.pem\"\nserver_name = \"milvus\"", ""),
    ))
    .unwrap();
    assert!(settings.milvus.tls.enabled);
    assert_eq!(settings.milvus.tls.ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(settings.milvus.tls.server_name.as_deref(), Some("milvus"));
    assert!(!MilvusSettings::default().tls.enabled);
    let half = with_milvus_and_plugin("[milvus.tls]\nclient_cert = \"c.pem\"", "");
    assert!(Settings::from_file(&write(dir.path(), &half)).unwrap_err().to_string().contains("go together"));
}

#[test]
fn the_venv_is_looked_for_beside_the_config_and_the_binary_never_in_the_working_directory() {
    assert_eq!(install_root(Path::new("/src/vecdrop/target/release/vecdrop")), Some(PathBuf::from("/src/vecdrop")));
    assert_eq!(install_root(Path::new("/src/vecdrop/target/debug/deps/daemon-1234")), Some(PathBuf::from("/src/vecdrop")));
    assert_eq!(install_root(Path::new("/opt/vecdrop/bin/vecdrop")), Some(PathBuf::from("/opt/vecdrop")));
    assert_eq!(install_root(Path::new("/somewhere/vecdrop")), None);
    let roots = venv_roots(Path::new("/etc/vecdrop"));
    assert_eq!(roots[0], Path::new("/etc/vecdrop"));
    assert!(roots.iter().all(|root| root.is_absolute()), "{roots:?}");
    assert!(!roots.contains(&PathBuf::from(".")), "{roots:?}");
}

#[test]
fn bulk_import_needs_a_staging_folder_and_resolves_it_next_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        Settings::from_file(&write(dir.path(), &pipeline_with("bulk_import = { min_rows = 5000, staging = \"staging\" }"))).unwrap();
    let bulk = settings.pipelines[0].bulk_import.clone().expect("bulk_import set");
    assert_eq!(bulk.min_rows, 5000);
    assert_eq!(bulk.staging, StagingLocation::Folder(dir.path().join("staging")));
    assert_eq!((bulk.poll_interval, bulk.max_submissions), (Duration::from_millis(500), 2), "documented defaults");
    assert_eq!(Settings::from_file(&write(dir.path(), MINIMAL)).unwrap().pipelines[0].bulk_import, None, "off unless asked for");

    for (extra, expected) in [
        ("bulk_import = { min_rows = 10 }", "bulk_import.staging: required"),
        ("bulk_import = { staging = \"gs://bucket/prefix\" }", "unsupported scheme"),
        ("bulk_import = { staging = \"s3:///prefix\" }", "expected s3://BUCKET/PREFIX"),
        ("bulk_import = { staging = \"file://relative\" }", "expected file:///ABSOLUTE/PATH"),
        ("bulk_import = { staging = \"/s\", endpoint = \"http://minio:9000\" }", "a folder needs none"),
        ("bulk_import = { staging = \"/s\", max_submissions = 0 }", "bulk_import.max_submissions"),
        ("bulk_import = { staging = \"/s\", poll_interval = \"0s\" }", "bulk_import.poll_interval"),
        ("bulk_import = { staging = \"/s\", min_row = 1 }", "min_row"),
    ] {
        let error = Settings::from_file(&write(dir.path(), &pipeline_with(extra))).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra}: {error}");
    }
}

#[test]
fn s3_staging_reads_its_secret_from_a_private_file_and_never_shows_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "very-secret-key\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = "bulk_import = { staging = \"s3://milvus-bucket/imports/vecdrop/\", endpoint = \"http://minio:9000\", access_key_id = \"minioadmin\", secret_access_key_file = \"s3-secret\" }";
    let settings = Settings::from_file(&write(dir.path(), &pipeline_with(extra))).unwrap();
    let Some(BulkImportSettings { staging: StagingLocation::Bucket(bucket), .. }) = settings.pipelines[0].bulk_import.clone() else {
        panic!("a bucket location")
    };
    assert_eq!((bucket.scheme.as_str(), bucket.bucket.as_str(), bucket.prefix.as_str()), ("s3", "milvus-bucket", "imports/vecdrop"));
    assert_eq!(bucket.endpoint.as_deref(), Some("http://minio:9000"));
    assert_eq!((bucket.access_key_id.as_str(), bucket.secret_access_key.expose()), ("minioadmin", "very-secret-key"));
    assert!(!format!("{settings:?}").contains("very-secret-key"), "the secret is redacted");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = Settings::from_file(&write(dir.path(), &pipeline_with(extra))).unwrap_err().to_string();
    assert!(error.contains("secret_access_key_file") && error.contains("readable by every user"), "{error}");

    let local = "bulk_import = { staging = \"file:///srv/milvus/staging\" }";
    let settings = Settings::from_file(&write(dir.path(), &pipeline_with(local))).unwrap();
    let Some(BulkImportSettings { staging: StagingLocation::Bucket(bucket), .. }) = settings.pipelines[0].bulk_import.clone() else {
        panic!("a bucket location")
    };
    assert_eq!((bucket.scheme.as_str(), bucket.bucket.as_str(), bucket.prefix.as_str()), ("file", "/", "srv/milvus/staging"));
}
