//! Shared by the end-to-end tests: the real Milvus server, the model, configs, the binary.
//!
//! Milvus: `MILVUS_URI` when set (`make test` starts one server for the whole run), else one
//! `milvus-server` per test binary, started by `scripts/milvus-test-server.sh` on a free loopback
//! port and stopped by a watchdog when the test process exits. Nothing is ever mocked or skipped:
//! a missing dependency fails the test with the command that provides it.
#![allow(dead_code)]

pub mod daemon;
pub mod forwarder;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vecdrop::mapping::derived_key;
use vecdrop::settings::Settings;
use vecdrop::sink::{CollectionSpec, MilvusSink};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The converted model; fails with the command that makes it.
pub fn model_dir() -> PathBuf {
    let dir = root().join("models/all-MiniLM-L6-v2");
    assert!(dir.join("model.onnx").is_file(), "{} is missing: run `make setup` (or `bash scripts/setup.sh`)", dir.display());
    dir
}

/// URI of a healthy Milvus for this test binary.
pub fn milvus_uri() -> String {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| {
        let uri = match std::env::var("MILVUS_URI") {
            Ok(uri) if !uri.is_empty() => uri,
            _ => start_server(),
        };
        wait_healthy(&uri);
        uri
    })
    .clone()
}

fn start_server() -> String {
    let script = root().join("scripts/milvus-test-server.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(["start", "--watch", &std::process::id().to_string()])
        .env("VECDROP_MILVUS_RUN_DIR", root().join(format!("target/milvus-test/{}", std::process::id())))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "cannot start milvus-server (run `make setup`, or set MILVUS_URI): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Waits until Milvus accepts a client and says it is healthy (fresh servers need ~10 s).
fn wait_healthy(uri: &str) {
    let uri = uri.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                match connect_sink(&uri).await {
                    // An answer about a collection is a proper answer: the server serves requests.
                    // (Not `count` of a missing collection: that is retried as not loaded yet, for
                    // the whole retry deadline, a minute per test binary.)
                    Ok(sink) => match sink.has_collection("vecdrop_health_probe").await {
                        Ok(_) => return,
                        Err(error) => assert!(Instant::now() < deadline, "milvus at {uri} not healthy: {error}"),
                    },
                    Err(error) => assert!(Instant::now() < deadline, "milvus at {uri} not reachable: {error}"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    })
    .join()
    .expect("milvus health check");
}

/// A sink on `uri` (no embedded server).
pub async fn connect_sink(uri: &str) -> Result<MilvusSink, vecdrop::sink::SinkError> {
    let settings =
        vecdrop::settings::MilvusSettings { uri: uri.to_owned(), connect_timeout: Duration::from_secs(10), ..Default::default() };
    MilvusSink::connect(&settings, Path::new(".")).await
}

/// A collection name no other test uses.
pub fn unique_collection(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A temporary directory with a `vecdrop.toml` for one pipeline named `test` feeding
/// `collection`; `pipeline_extra` is appended inside the `[[pipelines]]` table.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestConfig {
    pub fn new(collection: &str, pipeline_extra: &str) -> Self {
        Self::with_sections(collection, pipeline_extra, "")
    }

    /// Like [`TestConfig::new`], with `sections` (e.g. `[daemon]` tables) before the pipeline.
    pub fn with_sections(collection: &str, pipeline_extra: &str, sections: &str) -> Self {
        Self::with_milvus(&format!("[milvus]\nuri = \"{}\"\n", milvus_uri()), sections, collection, pipeline_extra)
    }

    /// The whole config: `sections` (e.g. `[daemon]`, `[import]`), then `milvus` (a `[milvus]`
    /// table: the test server, a forwarder in front of it, or Milvus Lite), then one pipeline
    /// named `test` feeding `collection` with `pipeline_extra` inside it.
    pub fn with_milvus(milvus: &str, sections: &str, collection: &str, pipeline_extra: &str) -> Self {
        Self::from_toml(&format!(
            r#"
{sections}

{milvus}

[embedding]
model_dir = "{model}"

[state]
dir = "state"

[[pipelines]]
name = "test"
collection = "{collection}"
{pipeline_extra}
"#,
            model = model_dir().display(),
        ))
    }

    /// A config whose whole text is `toml`.
    pub fn from_toml(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vecdrop.toml");
        std::fs::write(&path, toml).unwrap();
        Self { dir, path }
    }

    pub fn settings(&self) -> Settings {
        Settings::from_file(&self.path).unwrap()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs the `vecdrop` binary with `--config` inserted after the verb.
    pub fn run(&self, verb: &str, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_vecdrop"))
            .arg(verb)
            .arg("--config")
            .arg(&self.path)
            .args(args)
            .current_dir(root())
            .output()
            .expect("vecdrop runs");
        logged(&format!("vecdrop {verb} {args:?}"), output)
    }
}

/// `output`, after printing it under `what` (shown when a test fails).
pub fn logged(what: &str, output: Output) -> Output {
    eprintln!(
        "{what} → {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes `content` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Starts `vecdrop import FILE` (output discarded), with the failure point `failpoint` armed.
fn spawn_import(config: &TestConfig, file: &Path, failpoint: Option<&str>) -> Child {
    import_command(config, file, failpoint).spawn().unwrap()
}

fn import_command(config: &TestConfig, file: &Path, failpoint: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vecdrop"));
    command.args(["import", "--config"]).arg(&config.path).arg(file).stdout(Stdio::null()).stderr(Stdio::null());
    // A kill in several runs before their first commit is this test's doing, not a file that
    // crashes the process (`daemon.max_crashes`).
    command.env("VECDROP__DAEMON__MAX_CRASHES", "1000");
    if let Some(failpoint) = failpoint {
        command.env("VECDROP_FAILPOINT", failpoint);
    }
    command
}

/// Where a SIGKILL can land relative to a batch: after Milvus acknowledged it, inside the ledger
/// commit before its write or its flush, or after the commit.
const KILL_POINTS: [&str; 4] = ["after_upsert", "ledger_before_write", "ledger_before_flush", "after_commit"];

/// Imports `file` through six SIGKILLs, then once more to the end, which must succeed. Each kill
/// lands at a random step of a random one of the run's first three batches (the schedule's seed is
/// printed): the run pauses there at a failure point and is killed while paused, so where the
/// kill lands never depends on the machine's speed. Returns how many runs were killed.
pub fn import_through_sigkills(config: &TestConfig, file: &Path) -> usize {
    use rand::{Rng, SeedableRng};
    assert!(
        vecdrop::failpoint::enabled(),
        "the kill schedule uses failure points: run `cargo test --features failpoints` (make test does)"
    );
    let seed: u64 = rand::rng().random();
    eprintln!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut kills, started) = (0, Instant::now());
    for round in 0..6 {
        let point = format!("{}@{}", KILL_POINTS[rng.random_range(0..KILL_POINTS.len())], rng.random_range(1..=3));
        let pause = config.dir.path().join(format!("pause-{round}"));
        std::fs::create_dir_all(&pause).unwrap();
        let mut child = spawn_import_paused(config, file, &point, &pause);
        let deadline = Instant::now() + Duration::from_secs(600);
        while !pause.join("reached").exists() {
            if child.try_wait().unwrap().is_some() {
                eprintln!("round {round}: finished before {point}");
                return finish_import(config, file, kills, started);
            }
            assert!(Instant::now() < deadline, "round {round}: {point} never reached");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL, while paused at the point
        child.wait().unwrap();
        kills += 1;
        eprintln!("round {round}: killed at {point}");
    }
    finish_import(config, file, kills, started)
}

fn finish_import(config: &TestConfig, file: &Path, kills: usize, started: Instant) -> usize {
    let finish = spawn_import(config, file, None).wait_with_output().unwrap();
    assert_eq!(finish.status.code(), Some(0), "the last run completes");
    eprintln!("{kills} SIGKILL rounds, {:.0} s in all", started.elapsed().as_secs_f64());
    kills
}

/// Starts `vecdrop import FILE` that pauses at `failpoint` (see `vecdrop::failpoint`).
fn spawn_import_paused(config: &TestConfig, file: &Path, failpoint: &str, pause: &Path) -> Child {
    let mut command = import_command(config, file, Some(failpoint));
    command.env("VECDROP_FAILPOINT_PAUSE", pause);
    command.spawn().unwrap()
}

/// Runs `vecdrop import FILE` until it pauses at `failpoint`, and SIGKILLs it there.
pub fn kill_import_at(config: &TestConfig, file: &Path, failpoint: &str) {
    assert!(vecdrop::failpoint::enabled(), "this test uses failure points: run `cargo test --features failpoints` (make test does)");
    let pause = config.dir.path().join(format!("pause-{failpoint}"));
    std::fs::create_dir_all(&pause).unwrap();
    let mut child = spawn_import_paused(config, file, failpoint, &pause);
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pause.join("reached").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the import ended before {failpoint}");
        assert!(Instant::now() < deadline, "{failpoint} never reached");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, while paused at the point
    child.wait().unwrap();
}

/// Imports `file` with `failpoint` armed (the process must abort there), then again to the end.
pub fn import_through_failpoint(config: &TestConfig, file: &Path, failpoint: &str) {
    import_through_failpoint_exiting(config, file, failpoint, 0);
}

/// Like [`import_through_failpoint`], for files whose complete import exits `code` (3 when
/// records are dead-lettered).
pub fn import_through_failpoint_exiting(config: &TestConfig, file: &Path, failpoint: &str, code: i32) {
    let crashed = spawn_import(config, file, Some(failpoint)).wait_with_output().unwrap();
    assert_eq!(crashed.status.code(), None, "{failpoint}: the process must abort");
    let finish = spawn_import(config, file, None).wait_with_output().unwrap();
    assert_eq!(finish.status.code(), Some(code), "{failpoint}: the restart completes");
}

/// The ledger's entry for `file`'s content, as `vecdrop status --json` prints it.
pub fn ledger_entry(config: &TestConfig, file: &Path) -> serde_json::Value {
    let hash = blake3::hash(&std::fs::read(file).unwrap()).to_hex().to_string();
    let status = config.run("status", &["--json"]);
    let entries: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    entries.as_array().unwrap().iter().find(|entry| entry["hash"] == hash.as_str()).expect("ledger entry").clone()
}

/// Every derived key of the file is in Milvus exactly once, with its text; the ledger agrees.
pub async fn assert_exactly_once(config: &TestConfig, file: &Path, texts: &[String]) {
    let spec = collection_spec(config);
    let sink = connect_sink(&milvus_uri()).await.unwrap();
    assert_eq!(sink.count(&spec.collection.name).await.unwrap(), texts.len() as u64, "count(*) must equal the file's rows");
    let hash = blake3::hash(&std::fs::read(file).unwrap()).to_hex().to_string();
    let keys: Vec<String> = (0..texts.len() as u64).map(|ordinal| derived_key(&hash, ordinal)).collect();
    for (chunk_index, chunk) in keys.chunks(1000).enumerate() {
        let stored = sink.texts_by_key(&spec, chunk).await.unwrap();
        assert_eq!(stored.len(), chunk.len(), "every key present once");
        for (offset, key) in chunk.iter().enumerate() {
            assert_eq!(stored[key], texts[chunk_index * 1000 + offset], "stored text of {key}");
        }
    }
    let entry = ledger_entry(config, file);
    assert_eq!(entry["state"], "imported");
    assert_eq!(entry["rows_imported"], texts.len() as u64, "each batch committed exactly once");
    assert_eq!(entry["rows_rejected"], 0);
}

/// A plugin component built by `scripts/build-plugins.sh` (`plugins/target/NAME.wasm`); fails with
/// the command that builds it.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = root().join("plugins/target").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/build-plugins.sh` (make setup does; it needs `rustup target add wasm32-wasip2`)",
        path.display()
    );
    path
}

/// The collection spec of `config`'s pipeline named `test`, as the binary builds it with the
/// default fp32 model; for reading rows back with [`MilvusSink::texts_by_key`].
pub fn collection_spec(config: &TestConfig) -> CollectionSpec {
    let settings = config.settings();
    let pipeline = settings.pipelines.iter().find(|pipeline| pipeline.name == "test").expect("a pipeline named test").clone();
    CollectionSpec::of(&pipeline, 384, MODEL_IDENTITY)
}

/// The identity of the default model as collections record it.
pub const MODEL_IDENTITY: &str = "all-MiniLM-L6-v2:fp32:256";

/// The stored text of each of `keys` in `config`'s collection (absent keys are absent).
pub async fn texts_in_milvus(config: &TestConfig, keys: &[impl AsRef<str>]) -> HashMap<String, String> {
    let keys: Vec<String> = keys.iter().map(|key| key.as_ref().to_owned()).collect();
    stored_texts(&connect_sink(&milvus_uri()).await.unwrap(), &collection_spec(config), &keys).await
}

/// Writes `columns` as one Parquet row group (arrow-rs defaults).
pub fn write_parquet(path: &Path, columns: Vec<(&str, arrow_array::ArrayRef)>) {
    let batch = arrow_array::RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// The stored text of each of `keys` that is in the collection, read back in pages by key.
pub async fn stored_texts(sink: &MilvusSink, spec: &CollectionSpec, keys: &[String]) -> HashMap<String, String> {
    let mut texts = HashMap::new();
    for chunk in keys.chunks(500) {
        texts.extend(sink.texts_by_key(spec, chunk).await.unwrap());
    }
    texts
}

/// A CSV with `rows` rows, keys `{prefix}-{n}`, each with a precomputed unit vector (so that the
/// model is skipped and the test is about the daemon, not inference speed).
pub fn csv_with_vectors(prefix: &str, rows: usize) -> (String, Vec<String>) {
    let rows: Vec<(String, String)> = (0..rows).map(|row| (format!("{prefix}-{row}"), format!("row {row} of {prefix}"))).collect();
    let keys = rows.iter().map(|(key, _)| key.clone()).collect();
    (csv_rows_with_vectors(&rows), keys)
}

/// A CSV (`id,text,embedding`) of the given `(key, text)` rows, each with a precomputed unit vector
/// chosen by its position (texts must not need CSV quoting).
pub fn csv_rows_with_vectors(rows: &[(String, String)]) -> String {
    let mut content = String::from("id,text,embedding\n");
    for (index, (key, text)) in rows.iter().enumerate() {
        let mut vector = vec![0.0f32; 384];
        vector[index % 384] = 1.0;
        let cells: Vec<String> = vector.iter().map(|value| format!("{value}")).collect();
        content.push_str(&format!("{key},{text},\"[{}]\"\n", cells.join(",")));
    }
    content
}

/// The `milvus-lite` executable `make setup` installs; fails with that command when missing.
pub fn lite_command() -> PathBuf {
    let command = root().join(".venv/bin/milvus-lite");
    assert!(command.is_file(), "milvus-lite missing: run `make setup`");
    command
}

/// Stops, on drop, every process whose command line names `data_dir`: a Milvus Lite outlives a
/// vecdrop that aborted at a failure point (it runs in its own process group, and a later vecdrop
/// shares it through the endpoint file), and must not outlive the test.
pub struct LiteReaper {
    pub data_dir: PathBuf,
}

impl Drop for LiteReaper {
    fn drop(&mut self) {
        let Ok(found) = Command::new("pgrep").arg("-f").arg(self.data_dir.as_os_str()).output() else { return };
        for pid in String::from_utf8_lossy(&found.stdout).split_whitespace().filter_map(|pid| pid.parse::<i32>().ok()) {
            // SAFETY: signalling a process this test's vecdrop started for its own temporary data
            // directory (found by that unique path).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}
