//! WASM format plugins, with the components `scripts/build-plugins.sh` builds (`make setup`):
//! the example plugins import real files end to end into real Milvus, their output does not depend
//! on the chunk size, files resume exactly after SIGKILL and at every record, and hostile plugins
//! (endless loop, memory bomb, deep recursion, panic, huge output, bad offsets, file and socket
//! access, sleeping, oversized checkpoint state, memories beyond the shared budget or the count,
//! wrong interface version) fail their own file with a clear reason while the same process goes
//! on importing. A tampered compiled-plugin cache is compiled again, never run.
//!
//! Needs the `failpoints` feature for the crash test (`make test` enables it).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use support::{
    assert_exactly_once, connect_sink, import_through_failpoint, import_through_sigkills, milvus_uri, plugin_wasm, unique_collection,
    write_file, TestConfig,
};
use vecdrop::format::plugin::{LoadedPlugin, PluginError, PluginLimits};
use vecdrop::format::{Checkpoint, FieldValue, Format, PluginFormat, ReadItem, ReadOptions, RecordReader};
use vecdrop::pipeline::import_file;

const XML_CONFIG: &str = r#"{"fields": ["id", "text", "category"]}"#;
const LOG_PATTERN: &str = r"^(?P<level>[A-Z]+) (?P<text>.*)$";

/// A `[[plugins]]` table for the XML example (`fields` id, text, category) plus `extra` keys.
fn xml_plugin_entry(extra: &str) -> String {
    format!(
        "\n[[plugins]]\npath = \"{}\"\n{extra}\n[plugins.config]\nfields = [\"id\", \"text\", \"category\"]\n",
        plugin_wasm("xml").display()
    )
}

/// A `[[plugins]]` table for the log-line example with [`LOG_PATTERN`].
fn logline_plugin_entry() -> String {
    format!("\n[[plugins]]\npath = \"{}\"\n[plugins.config]\npattern = '{LOG_PATTERN}'\n", plugin_wasm("logline").display())
}

fn xml_document(records: usize) -> String {
    let mut text = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- exported for vecdrop's tests -->\n<records>\n");
    for index in 0..records {
        match index % 4 {
            0 => text.push_str(&format!("  <record id=\"x{index}\"><text>Rivers &amp; lakes number {index}</text><category>nature</category></record>\n")),
            1 => text.push_str(&format!(
                "  <record id=\"x{index}\">\n    <text><![CDATA[Compilers turn <code> into machines, {index}]]></text>\n    <category>computing</category>\n  </record>\n"
            )),
            2 => text.push_str(&format!("  <record id=\"x{index}\"><text>broken <b>nested</b> markup {index}</text></record>\n")),
            _ => text.push_str(&format!("  <record id=\"x{index}\"><category>music</category><text>Violins have four strings, {index}</text></record>\n")),
        }
    }
    text.push_str("</records>\n");
    text
}

fn expected_xml_text(index: usize) -> Option<String> {
    match index % 4 {
        0 => Some(format!("Rivers & lakes number {index}")),
        1 => Some(format!("Compilers turn <code> into machines, {index}")),
        2 => None,
        _ => Some(format!("Violins have four strings, {index}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_plugin_imports_records_end_to_end_with_dead_letters() {
    let fields = "id_field = \"id\"\n[pipelines.fields]\ncategory = { type = \"varchar\", max_length = 20, optional = true }\n";
    let config = TestConfig::new(&unique_collection("xml"), &format!("{fields}{}", xml_plugin_entry("")));
    let document = xml_document(8);
    let path = write_file(config.dir.path(), "export.xml", &document);
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3), "two records have nested markup");
    assert!(String::from_utf8_lossy(&output.stdout).contains("6 rows imported, 2 rejected"));
    let keys: Vec<String> = (0..8).map(|index| format!("x{index}")).collect();
    let stored = support::texts_in_milvus(&config, &keys).await;
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(stored.get(key), expected_xml_text(index).as_ref(), "{key}");
    }
    let letters = std::fs::read_to_string(config.state_dir().join("dead-letters/test.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert_eq!(first["reason"], "a field holds a nested element");
    assert_eq!(first["byte_offset"], document.find("<record id=\"x2\"").unwrap() as u64);
    assert!(first["raw"].as_str().unwrap().starts_with("<record id=\"x2\"><text>broken"), "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn xml_import_is_the_same_with_one_kib_chunks_as_with_the_default() {
    let document = xml_document(400);
    let keys: Vec<String> = (0..400).map(|index| format!("x{index}")).collect();
    let mut results = Vec::new();
    for chunk in ["chunk_kib = 1", ""] {
        let config = TestConfig::new(&unique_collection("xml_chunks"), &format!("id_field = \"id\"\n{}", xml_plugin_entry(chunk)));
        let path = write_file(config.dir.path(), "big.xml", &document);
        let output = config.run("import", &[path.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&output.stdout).contains("300 rows imported, 100 rejected"), "{chunk}");
        results.push(support::texts_in_milvus(&config, &keys).await);
    }
    assert_eq!(results[0].len(), 300);
    assert_eq!(results[0], results[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logline_plugin_imports_typed_lines_and_rejects_lines_that_do_not_match() {
    let fields = "[pipelines.fields]\nlevel = { type = \"varchar\", max_length = 8 }\n";
    let config = TestConfig::new(&unique_collection("logline"), &format!("{fields}{}", logline_plugin_entry()));
    let path = write_file(
        config.dir.path(),
        "app.log",
        "INFO service started\n\nWARN disk almost full\r\nnot a log line\nERROR no newline at the end",
    );
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 rows imported, 1 rejected"));
    let hash = blake3::hash(&std::fs::read(&path).unwrap()).to_hex().to_string();
    let keys: Vec<String> = (0..4).map(|ordinal| vecdrop::mapping::derived_key(&hash, ordinal)).collect();
    let stored = support::texts_in_milvus(&config, &keys).await;
    assert_eq!(stored[&keys[0]], "service started");
    assert_eq!(stored[&keys[1]], "disk almost full");
    assert!(!stored.contains_key(&keys[2]), "the line that does not match is dead-lettered");
    assert_eq!(stored[&keys[3]], "no newline at the end");
    let letters = std::fs::read_to_string(config.state_dir().join("dead-letters/test.jsonl")).unwrap();
    assert!(letters.contains("the line does not match the pattern") && letters.contains("not a log line"), "{letters}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_vectors_skip_the_model_and_are_stored_as_given() {
    let entry = format!(
        "\n[[plugins]]\npath = \"{}\"\n[plugins.config]\nfields = [\"id\", \"text\", \"embedding\"]\nvectors = [\"embedding\"]\n",
        plugin_wasm("xml").display()
    );
    let config = TestConfig::new(&unique_collection("xml_vectors"), &format!("id_field = \"id\"\n{entry}"));
    let vector: Vec<f32> = (0..384).map(|dimension| ((dimension * 13) % 29) as f32 / 29.0 + 0.01).collect();
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    let vector: Vec<f32> = vector.iter().map(|value| value / norm).collect();
    let written: Vec<String> = vector.iter().map(f32::to_string).collect();
    let document = format!(
        "<records><record id=\"given\"><text>a text the model never sees</text><embedding>[{}]</embedding></record><record id=\"embedded\"><text>embedded by the model</text></record></records>",
        written.join(", ")
    );
    let path = write_file(config.dir.path(), "vectors.xml", &document);
    assert_eq!(config.run("import", &[path.to_str().unwrap()]).status.code(), Some(0));
    let spec = support::collection_spec(&config);
    let hits = connect_sink(&milvus_uri()).await.unwrap().search(&spec, vector, 1).await.unwrap();
    assert_eq!(hits[0].id, "given");
    assert!(hits[0].score > 0.999, "the stored vector is the one the plugin gave: {}", hits[0].score);
}

/// What a reader yields, without the resume positions (those depend on how the plugin batched).
fn read_items(format: &PluginFormat, path: &Path, resume: &Checkpoint) -> Vec<ReadItem> {
    let mut reader = RecordReader::open(Format::Plugin(format.clone()), path, &ReadOptions::default(), resume).unwrap();
    std::iter::from_fn(|| reader.next_item().unwrap()).collect()
}

/// `(ordinal, byte offset, values or rejection reason)` of an item.
type ItemSummary = (u64, u64, Result<Vec<(String, FieldValue)>, String>);

fn without_positions(items: &[ReadItem]) -> Vec<ItemSummary> {
    items
        .iter()
        .map(|item| match item {
            ReadItem::Record(record) => (record.position.ordinal, record.position.byte_offset, Ok(record.values.clone())),
            ReadItem::Rejected(rejected) => (rejected.position.ordinal, rejected.position.byte_offset, Err(rejected.reason.clone())),
        })
        .collect()
}

fn plugin_format(name: &str, config_json: &str, chunk_bytes: usize, format: &str) -> PluginFormat {
    let limits = PluginLimits { chunk_bytes, ..PluginLimits::default() };
    let plugin = LoadedPlugin::load(&plugin_wasm(name), config_json, limits, None).unwrap();
    PluginFormat { plugin: Arc::new(plugin), name: format.to_owned() }
}

#[test]
fn plugin_output_is_identical_whatever_the_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let xml = write_file(dir.path(), "rows.xml", &xml_document(60));
    let log_config = serde_json::json!({ "pattern": LOG_PATTERN }).to_string();
    let log_lines: String =
        (0..300).map(|index| if index % 9 == 4 { format!("garbage {index}\n") } else { format!("INFO line {index}\r\n") }).collect();
    let log = write_file(dir.path(), "rows.log", &log_lines);
    for (plugin, config, format, path, expected_items) in
        [("xml", XML_CONFIG, "xml", &xml, 60), ("logline", log_config.as_str(), "logline", &log, 300)]
    {
        let reference = without_positions(&read_items(&plugin_format(plugin, config, 64 << 10, format), path, &Checkpoint::Start));
        assert_eq!(reference.len(), expected_items, "{plugin}");
        for chunk_bytes in [1, 2, 7, 100, 4096] {
            let items = read_items(&plugin_format(plugin, config, chunk_bytes, format), path, &Checkpoint::Start);
            assert_eq!(without_positions(&items), reference, "{plugin} with {chunk_bytes}-byte chunks");
        }
    }
}

#[test]
fn a_plugin_file_resumed_at_any_record_yields_exactly_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let xml = write_file(dir.path(), "rows.xml", &xml_document(700));
    let format = plugin_format("xml", XML_CONFIG, 1000, "xml");
    let all = read_items(&format, &xml, &Checkpoint::Start);
    assert_eq!(all.len(), 700);
    for index in (0..all.len()).step_by(37).chain([255, 256, 257, 511, 512, 699]) {
        let resume = all[index].next().clone();
        let ledger_round_trip: Checkpoint = serde_json::from_str(&serde_json::to_string(&resume).unwrap()).unwrap();
        assert_eq!(ledger_round_trip, resume);
        let rest = read_items(&format, &xml, &ledger_round_trip);
        assert_eq!(without_positions(&rest), without_positions(&all[index + 1..]), "resumed after record {index} at {resume:?}");
    }
}

/// A log file of `rows` lines (derived keys); returns the texts.
fn write_log(path: &Path, rows: usize, seed: u64) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words = ["river", "database", "orange", "mountain", "violin", "engine", "garden", "planet", "coffee", "harbour"];
    let texts: Vec<String> = (0..rows)
        .map(|index| {
            let picked: Vec<&str> = (0..6).map(|_| words[rng.random_range(0..words.len())]).collect();
            format!("line {index}: the {} near the {}", picked[..3].join(" "), picked[3..].join(" "))
        })
        .collect();
    let content: String = texts.iter().map(|text| format!("INFO {text}\n")).collect();
    std::fs::write(path, content).unwrap();
    texts
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_file_with_a_plugin_format_resumes_exactly() {
    let config = TestConfig::new(&unique_collection("plugin_crash"), &format!("batch_rows = 256\n{}", logline_plugin_entry()));
    let file = config.dir.path().join("big.log");
    let texts = write_log(&file, 20_000, 42);
    let kills = import_through_sigkills(&config, &file);
    assert!(kills >= 3, "the file should take long enough to be killed several times");
    assert_exactly_once(&config, &file, &texts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_milvus_and_the_ledger_with_a_plugin_format_resumes_exactly() {
    assert!(vecdrop::failpoint::enabled(), "this test needs failure points: run `cargo test --features failpoints` (make test does)");
    let config = TestConfig::new(&unique_collection("plugin_failpoint"), &format!("batch_rows = 100\n{}", logline_plugin_entry()));
    let file = config.dir.path().join("rows.log");
    let texts = write_log(&file, 700, 7);
    import_through_failpoint(&config, &file, "after_upsert@3");
    assert_exactly_once(&config, &file, &texts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_plugins_fail_only_their_own_file_with_a_clear_reason() {
    let entry = format!("\n[[plugins]]\npath = \"{}\"\nchunk_time = \"300ms\"\nmemory_mib = 32\n", plugin_wasm("hostile").display());
    let config = TestConfig::new(&unique_collection("hostile"), &entry);
    let settings = config.settings();
    let pipeline = settings.pipelines[0].clone();
    let context = vecdrop::commands::open_context(settings, false).await.unwrap();
    let cases = [
        ("hostile-loop", "ran longer than its time budget of 300ms"),
        ("hostile-memory", "exceeded its memory limit of 32 MiB"),
        ("hostile-recursion", "overflowed its 512 KiB stack"),
        ("hostile-panic", "hostile plugin panics on purpose"),
        ("hostile-output", "more than the cap of 16777216 bytes"),
        ("hostile-rows", "more than max-rows 256"),
        ("hostile-offsets", "past the 21 bytes fed so far"),
        ("hostile-file", "cannot open /etc/passwd"),
        ("hostile-socket", "cannot connect to 127.0.0.1:9"),
        ("hostile-sleep", "which plugins cannot use (they must not sleep or wait)"),
        ("hostile-state", "checkpoint state of 102400 bytes, more than the cap of 65536 bytes (64 KiB)"),
    ];
    for (format, expected) in cases {
        let started = Instant::now();
        let bad = write_file(config.dir.path(), &format!("input.{format}"), &format!("{:<20}\n", format));
        let error = import_file(&context, &pipeline, &bad, false).await.expect_err(format).to_string();
        eprintln!("{format}: {error}");
        assert!(error.contains(expected), "{format}: expected {expected:?} in {error:?}");
        assert!(error.contains("plugin hostile"), "{format}: the error names the plugin: {error}");
        assert!(started.elapsed() < Duration::from_secs(30), "{format} took {:?}", started.elapsed());
        let good = write_file(config.dir.path(), &format!("after-{format}.csv"), &format!("text\nstill importing after {format}\n"));
        let outcome = import_file(&context, &pipeline, &good, false).await;
        assert!(matches!(outcome, Ok(vecdrop::pipeline::FileOutcome::Imported(ref summary)) if summary.rows_imported == 1), "{outcome:?}");
    }
}

/// The error reading `format` of the hostile plugin (one 21-byte file) ends with, and how long
/// the read took.
fn hostile_read_error(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), &format!("input.{format}"), &format!("{format:<20}\n"));
    let plugin = plugin_format("hostile", "{}", 64 << 10, format);
    let mut reader = RecordReader::open(Format::Plugin(plugin), path.as_path(), &ReadOptions::default(), &Checkpoint::Start).unwrap();
    let error = loop {
        match reader.next_item() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{format}: the file was read to the end"),
            Err(error) => break error.to_string(),
        }
    };
    eprintln!("{format}: {error}");
    assert!(error.contains("plugin hostile") && error.contains(&format!("input.{format}")), "{format}: names plugin and file: {error}");
    error
}

#[test]
fn a_sleeping_plugin_is_refused_the_wait_not_timed_out() {
    // The default time budget is 2 s and the plugin sleeps for an hour: only a refusal of the
    // WASI call (not the deadline, which cannot interrupt a host call) makes this a failure
    // that names the call.
    let error = hostile_read_error("hostile-sleep");
    assert!(error.contains("the plugin called wasi:"), "{error}");
    assert!(error.contains("which plugins cannot use (they must not sleep or wait)"), "{error}");
    assert!(!error.contains("time budget"), "refused, not timed out: {error}");
}

#[test]
fn a_checkpoint_state_over_64_kib_fails_the_file_naming_the_cap() {
    let error = hostile_read_error("hostile-state");
    assert!(error.contains("checkpoint state of 102400 bytes, more than the cap of 65536 bytes (64 KiB)"), "{error}");
}

/// `component` plus one more core module, instantiated at the component's top level, that defines
/// `count` memories of `pages` 64 KiB pages: what any toolchain could add to a plugin.
fn with_extra_memories(component: &[u8], count: u32, pages: u32) -> Vec<u8> {
    use wasm_encoder::{ComponentSection, Encode};
    // Core modules are numbered in order of their sections at the component's top level.
    let (mut modules, mut depth) = (0u32, 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.unwrap() {
            wasmparser::Payload::ModuleSection { .. } => {
                modules += u32::from(depth == 0);
                depth += 1;
            }
            wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let mut memories = wasm_encoder::MemorySection::new();
    for _ in 0..count {
        memories.memory(wasm_encoder::MemoryType {
            minimum: u64::from(pages),
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
    }
    let mut module = wasm_encoder::Module::new();
    module.section(&memories);
    let mut instances = wasm_encoder::InstanceSection::new();
    instances.instantiate(modules, std::iter::empty::<(&str, wasm_encoder::ModuleArg)>());
    let mut extended = component.to_vec();
    let module_section = wasm_encoder::ModuleSection(&module);
    extended.push(module_section.id());
    module_section.encode(&mut extended);
    extended.push(instances.id());
    instances.encode(&mut extended);
    extended
}

#[test]
fn memories_beyond_the_shared_budget_or_the_count_fail_the_plugin_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = std::fs::read(plugin_wasm("hostile")).unwrap();
    let limits = PluginLimits { memory_bytes: 64 << 20, ..PluginLimits::default() };
    let load = |name: &str, wasm: Vec<u8>| {
        let path = dir.path().join(name);
        std::fs::write(&path, wasm).unwrap();
        LoadedPlugin::load(&path, "{}", limits.clone(), None)
    };
    // Two extra memories of 20 MiB fit next to the program's own; three of 30 MiB do not.
    load("two-memories.wasm", with_extra_memories(&hostile, 2, 320)).unwrap();
    let error = load("budget.wasm", with_extra_memories(&hostile, 3, 480)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("budget.wasm") && message.contains("exceeded its memory limit of 64 MiB, shared by all its memories"),
        "{message}"
    );
    assert!(
        matches!(&error, PluginError::Load { source, .. } if matches!(**source, PluginError::MemoryLimit { asked, .. } if asked == 30 << 20))
    );

    // Twenty memories of 10 MiB: refused by the memory count before any is made.
    let message = load("twenty.wasm", with_extra_memories(&hostile, 20, 160)).unwrap_err().to_string();
    assert!(message.contains("twenty.wasm") && message.contains("memory count too high") && message.contains("4 memories"), "{message}");
}

/// The cache entry of plugin `name` in `cache`, and its record.
fn cache_entry(cache: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let prefix = blake3::hash(&std::fs::read(plugin_wasm(name)).unwrap()).to_hex()[..32].to_owned();
    let entry = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let file = path.file_name().unwrap().to_string_lossy();
            file.starts_with(&prefix) && file.ends_with(".cwasm")
        })
        .unwrap_or_else(|| panic!("no cache entry for {name}"));
    let record = std::path::PathBuf::from(format!("{}.blake3", entry.display()));
    (entry, record)
}

#[test]
fn a_tampered_plugin_cache_is_compiled_again_and_never_run() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let load = |name: &str| LoadedPlugin::load(&plugin_wasm(name), "{}", PluginLimits::default(), Some(cache.path())).unwrap();
    let xml_name = load("xml").name().to_owned();
    let logline_name = load("logline").name().to_owned();
    assert_ne!(xml_name, logline_name);
    let (xml_entry, xml_record) = cache_entry(cache.path(), "xml");
    let (logline_entry, logline_record) = cache_entry(cache.path(), "logline");
    let logline_artifact = std::fs::read(&logline_entry).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&xml_entry), mode(&xml_record)), (0o600, 0o600));

    // Garbage in place of the entry.
    std::fs::write(&xml_entry, b"garbage, not machine code").unwrap();
    assert_eq!(load("xml").name(), xml_name);
    assert_ne!(std::fs::read(&xml_entry).unwrap(), b"garbage, not machine code", "recompiled and replaced");

    // Another plugin's valid artifact under xml's name: its hash is not the one recorded.
    std::fs::write(&xml_entry, &logline_artifact).unwrap();
    assert_eq!(load("xml").name(), xml_name, "the planted code did not run");
    assert_ne!(std::fs::read(&xml_entry).unwrap(), logline_artifact);

    // The same with the record rewritten to match, but the entry writable by others.
    std::fs::write(&xml_entry, &logline_artifact).unwrap();
    std::fs::copy(&logline_record, &xml_record).unwrap();
    std::fs::set_permissions(&xml_entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(load("xml").name(), xml_name, "the planted code did not run");
    assert_ne!(std::fs::read(&xml_entry).unwrap(), logline_artifact);
    assert_eq!(mode(&xml_entry), 0o600, "the replacement is closed to others");

    // Control: an entry and record that vecdrop's own user wrote, closed to others, are trusted
    // (the cache does not defend against its own user): this is what the cases above refused.
    std::fs::write(&xml_entry, &logline_artifact).unwrap();
    std::fs::copy(&logline_record, &xml_record).unwrap();
    std::fs::set_permissions(&xml_entry, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&xml_record, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load("xml").name(), logline_name, "a trusted entry is loaded as is");
}

#[test]
fn plugin_check_prints_what_a_plugin_declares_and_refuses_another_interface_version() {
    let config = serde_json::json!({ "pattern": "^(?P<level>[A-Z]+) (?P<code>\\d+) (?P<text>.*)$", "kinds": { "code": "integer" } });
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["plugin", "check"])
        .arg(plugin_wasm("logline"))
        .args(["--plugin-config", &config.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for expected in
        ["plugin: log-lines 0.1.0", "interface: vecdrop:format@0.1.0", "logline (.log)", "level: text", "code: integer", "text: text"]
    {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["plugin", "check"])
        .arg(plugin_wasm("hostile-version"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("built for vecdrop:format@0.2.0, but this vecdrop speaks vecdrop:format@0.1.0"), "{stderr}");
}

#[test]
fn a_plugin_of_another_interface_version_is_refused_when_the_config_loads() {
    let config = TestConfig::new("unused", &format!("\n[[plugins]]\npath = \"{}\"\n", plugin_wasm("hostile-version").display()));
    let path = write_file(config.dir.path(), "any.csv", "text\nx\n");
    let output = config.run("import", &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("vecdrop:format@0.2.0"));
}
