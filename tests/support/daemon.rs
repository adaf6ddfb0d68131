//! A real `vecdrop run` process and what the tests read from it: the status endpoint, its log,
//! the drop folder's `.done/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::TestConfig;

/// A running `vecdrop run`; killed when dropped, so a failing test leaves no daemon behind.
pub struct Daemon {
    pub child: Child,
    status: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its status endpoint answers; fails if the process exits
    /// first.
    pub fn start(config: &TestConfig, status: &str) -> Self {
        let mut daemon = Self::start_with_env(config, status, &[]);
        assert!(daemon.is_running(), "the daemon exited at start-up; log:\n{}", daemon.log());
        daemon
    }

    /// Starts the daemon with `envs` set (e.g. `VECDROP_FAILPOINT`) and returns once the status
    /// endpoint answers or the process has exited, whichever comes first: an armed failure point
    /// may abort the process before the endpoint is up.
    ///
    /// Any HTTP status counts as an answer: `/healthz` says 503 while a pipeline waits for Milvus,
    /// and the daemon must still start then.
    pub fn start_with_env(config: &TestConfig, status: &str, envs: &[(&str, &str)]) -> Self {
        let log = config.dir.path().join(format!("daemon-{}.log", rand::random::<u64>()));
        let child = Command::new(env!("CARGO_BIN_EXE_vecdrop"))
            .args(["run", "--config"])
            .arg(&config.path)
            .current_dir(config.dir.path())
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("vecdrop run starts");
        let mut daemon = Self { child, status: status.to_owned(), log };
        let deadline = Instant::now() + Duration::from_secs(120);
        // Port 0: the daemon binds a free port itself (no race with other processes) and logs it.
        while daemon.status.ends_with(":0") && daemon.is_running() {
            if let Some(address) = listening_address(&daemon.log()) {
                daemon.status = address;
                break;
            }
            assert!(Instant::now() < deadline, "the status endpoint was not bound within 120 s; log:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        while daemon.get_any("/healthz").is_none() && daemon.is_running() {
            assert!(Instant::now() < deadline, "the status endpoint did not answer within 120 s; log:\n{}", daemon.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    /// The status endpoint's address (`host:port`).
    pub fn status_address(&self) -> &str {
        &self.status
    }

    /// GET `path` from the status endpoint: the body of a 200 answer; `None` for any other status
    /// or no answer.
    pub fn get(&self, path: &str) -> Option<String> {
        self.get_any(path).and_then(|(status, body)| (status == 200).then_some(body))
    }

    /// GET `path` from the status endpoint: HTTP status and body, whatever the status; `None` when
    /// nothing answers.
    pub fn get_any(&self, path: &str) -> Option<(u16, String)> {
        vecdrop::commands::http_get(&self.status, path, None).ok()
    }

    /// `/status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").expect("/status answers")).expect("/status is JSON")
    }

    /// The value of the Prometheus series selected by `selector` (e.g.
    /// `vecdrop_rows_imported_total{pipeline="test"}`), summed over every series of that name
    /// whose labels include the selector's, as PromQL selects them (so a counter that also carries
    /// e.g. a `cause` label still counts); 0 when none is listed, as counters that were never
    /// touched may not be.
    pub fn metric(&self, selector: &str) -> f64 {
        self.metric_opt(selector).unwrap_or(0.0)
    }

    /// Like [`Self::metric`], but `None` when no series matches: for gauges, where 0 means
    /// something.
    pub fn metric_opt(&self, selector: &str) -> Option<f64> {
        let metrics = self.get("/metrics").expect("/metrics answers");
        let (name, wanted) = parse_series(selector).unwrap_or_else(|| panic!("bad metric selector {selector}"));
        let values: Vec<f64> = metrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (series_name, labels) = parse_series(series)?;
                (series_name == name && wanted.iter().all(|label| labels.contains(label))).then(|| value.trim().parse().ok())?
            })
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `done` until it holds; fails after `timeout` with the [`Self::diagnosis`].
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; {}", self.diagnosis());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What a failed wait shows: `/healthz`, the non-histogram metrics and the log.
    pub fn diagnosis(&self) -> String {
        let metrics: Vec<String> = self
            .get("/metrics")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("vecdrop_") && !line.contains("_bucket"))
            .map(str::to_owned)
            .collect();
        format!("/healthz: {:?}\n/metrics:\n{}\ndaemon log:\n{}", self.get_any("/healthz"), metrics.join("\n"), self.log())
    }

    /// Polls `probe` until it returns a value and returns that value: for asserting several
    /// fields of one snapshot (e.g. `/status`) of a state that comes and goes.
    pub fn wait_for_value<T>(&self, what: &str, timeout: Duration, probe: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; {}", self.diagnosis());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself (e.g. at an armed failure point) and returns how it
    /// ended; fails after `timeout` with the log.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit within {timeout:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (within `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> ExitStatus {
        self.signal_terminate();
        self.wait_exit(timeout)
    }

    /// Sends SIGTERM without waiting for the exit.
    pub fn signal_terminate(&self) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name{a="x",b="y"}` (or a bare `name`) → the name and its label pairs.
fn parse_series(series: &str) -> Option<(String, Vec<(String, String)>)> {
    let Some((name, rest)) = series.split_once('{') else { return Some((series.trim().to_owned(), Vec::new())) };
    let mut labels = Vec::new();
    let mut rest = rest.trim_end().strip_suffix('}')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        // A value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (index, character) in after.char_indices() {
            match character {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(index);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        labels.push((key.trim().to_owned(), after[..end].to_owned()));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name.to_owned(), labels))
}

/// The status address tests configure: loopback port 0, so that the daemon binds a free port
/// itself ([`Daemon::start`] reads which one from its log) and no other process can take it first.
pub fn free_address() -> String {
    "127.0.0.1:0".to_owned()
}

/// A concrete loopback address free right now, for the one test whose other process (`vecdrop
/// status`) must find the daemon from the config alone; elsewhere [`free_address`] avoids the race.
pub fn concrete_free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The address in the daemon's "status endpoint listening" log line, if it was logged yet.
fn listening_address(log: &str) -> Option<String> {
    let line = log.lines().find(|line| line.contains("status endpoint listening"))?;
    let plain = strip_ansi(line);
    let address = plain.split("address=").nth(1)?.split_whitespace().next()?;
    Some(address.to_owned())
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            characters.by_ref().find(|&end| end == 'm');
        } else {
            plain.push(character);
        }
    }
    plain
}

/// `[status]` and `[daemon]` tables with quick settle and rescans; `extra` goes into `[daemon]`.
pub fn daemon_sections(status: &str, extra: &str) -> String {
    daemon_sections_settling(status, "500ms", extra)
}

/// Like [`daemon_sections`], with `settle` (a duration such as `"3s"`).
pub fn daemon_sections_settling(status: &str, settle: &str, extra: &str) -> String {
    format!(
        "[status]\nlisten = \"{status}\"\n[daemon]\nsettle = \"{settle}\"\nrescan_interval = \"1s\"\nshutdown_timeout = \"60s\"\n{extra}"
    )
}

/// Names of the files moved to `<drop>/.done/<date>/`, any date.
pub fn done_files(drop: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for day in std::fs::read_dir(drop.join(".done")).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(day.path()).into_iter().flatten().flatten() {
            names.insert(file.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

/// Names of the files in `<drop>/.failed/`, error reports included.
pub fn failed_files(drop: &Path) -> BTreeSet<String> {
    std::fs::read_dir(drop.join(".failed"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|file| file.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Today's date as `.done/` names its folders (UTC, `YYYY-MM-DD`).
pub fn today() -> String {
    vecdrop::timestamp::today()
}
