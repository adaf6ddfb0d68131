//! Embedded Milvus Lite: a local path as `milvus.uri` starts `milvus-lite server` as a child process
//! on a free loopback port, with its data in that directory; it is stopped when vecdrop exits.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::SinkError;

/// Whether `uri` names a local directory (embedded Milvus Lite) rather than a server.
pub fn is_local_path(uri: &str) -> bool {
    !uri.contains("://") && !uri.is_empty()
}

/// File in the data directory naming the URI of the Milvus Lite that serves it, so that a second
/// vecdrop process (e.g. `vecdrop search` while the daemon runs) shares it instead of starting
/// another server on the same data (which Milvus Lite refuses).
const ENDPOINT_FILE: &str = "vecdrop-lite.endpoint";

/// A Milvus Lite serving a data directory: a child process this vecdrop started (dropping it stops
/// the process group), or one another vecdrop process started and shares.
pub struct EmbeddedMilvus {
    child: Option<Child>,
    uri: String,
    port: u16,
    endpoint_path: PathBuf,
}

impl EmbeddedMilvus {
    /// Starts Milvus Lite on `data_dir` and waits up to `timeout` until it accepts connections.
    /// `command` is the `milvus-lite` executable; `None` looks in the project's `.venv/bin` (see
    /// [`crate::settings::venv_roots`]), then on `PATH`.
    pub fn start(data_dir: &Path, command: Option<&Path>, base_dir: &Path, timeout: Duration) -> Result<Self, SinkError> {
        let endpoint_path = data_dir.join(ENDPOINT_FILE);
        if let Some(shared) = Self::running(data_dir, &endpoint_path) {
            return Ok(shared);
        }
        let executable = find_command(command, base_dir)?;
        std::fs::create_dir_all(data_dir).map_err(|source| SinkError::Lite(format!("cannot create {}: {source}", data_dir.display())))?;
        let log_path = data_dir.join("milvus-lite.log");
        // The free port is found by binding port 0 and releasing it; another process can take it
        // before Milvus Lite binds it, so an early exit is retried on a fresh port.
        let mut attempt = 1;
        let embedded = loop {
            let mut embedded = Self::spawn(&executable, data_dir, &log_path, &endpoint_path)?;
            match embedded.wait_until_listening(timeout) {
                Ok(()) => break embedded,
                Err(StartFailure::Exited(reason)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(attempt, %reason, "milvus lite exited at start-up; retrying on another port");
                    attempt += 1;
                }
                Err(StartFailure::Exited(reason) | StartFailure::Timeout(reason)) => {
                    return Err(SinkError::Lite(format!("{reason}; see {}{}", log_path.display(), log_tail(&log_path))));
                }
            }
        };
        std::fs::write(&embedded.endpoint_path, &embedded.uri)
            .map_err(|source| SinkError::Lite(format!("cannot write {}: {source}", embedded.endpoint_path.display())))?;
        tracing::info!(uri = %embedded.uri, data_dir = %data_dir.display(), "embedded milvus lite started");
        Ok(embedded)
    }

    fn spawn(executable: &Path, data_dir: &Path, log_path: &Path, endpoint_path: &Path) -> Result<Self, SinkError> {
        let port = free_port().map_err(|source| SinkError::Lite(format!("no free loopback port: {source}")))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|source| SinkError::Lite(format!("cannot open {}: {source}", log_path.display())))?;
        let log_err = log.try_clone().map_err(|source| SinkError::Lite(source.to_string()))?;
        let child = Command::new(executable)
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|source| SinkError::Lite(format!("cannot start {}: {source}", executable.display())))?;
        Ok(Self { child: Some(child), uri: format!("http://127.0.0.1:{port}"), port, endpoint_path: endpoint_path.to_owned() })
    }

    /// The Milvus Lite another vecdrop process runs on `data_dir`, if its endpoint answers.
    fn running(data_dir: &Path, endpoint_path: &Path) -> Option<Self> {
        let uri = std::fs::read_to_string(endpoint_path).ok()?.trim().to_owned();
        let address = uri.strip_prefix("http://")?;
        let address: std::net::SocketAddr = address.parse().ok()?;
        std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
        tracing::info!(%uri, data_dir = %data_dir.display(), "using the milvus lite another vecdrop process runs");
        Some(Self { child: None, uri, port: address.port(), endpoint_path: endpoint_path.to_owned() })
    }

    /// `http://127.0.0.1:<port>` of the running server.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn wait_until_listening(&mut self, timeout: Duration) -> Result<(), StartFailure> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(StartFailure::Exited(format!("milvus-lite exited with {status} at start-up")));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Timeout(format!(
                    "milvus-lite did not listen on port {} within {}s",
                    self.port,
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How many times start-up is tried before giving up (see [`EmbeddedMilvus::start`]).
const START_ATTEMPTS: u32 = 3;

enum StartFailure {
    Exited(String),
    Timeout(String),
}

/// The last lines of the Milvus Lite log, formatted to follow an error message.
fn log_tail(log_path: &Path) -> String {
    let Ok(log) = std::fs::read_to_string(log_path) else { return String::new() };
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n  ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its log ends with:\n  {tail}")
    }
}

impl Drop for EmbeddedMilvus {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else { return };
        let _ = std::fs::remove_file(&self.endpoint_path);
        let group = child.id() as libc::pid_t;
        // SAFETY: signalling a process group we created; no memory is shared.
        unsafe {
            libc::killpg(group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
        let _ = child.wait();
    }
}

fn find_command(configured: Option<&Path>, base_dir: &Path) -> Result<PathBuf, SinkError> {
    if let Some(command) = configured {
        if command.is_file() {
            return Ok(command.to_owned());
        }
        return Err(SinkError::Lite(format!("milvus.lite_command {} does not exist", command.display())));
    }
    let mut candidates: Vec<PathBuf> =
        crate::settings::venv_roots(base_dir).into_iter().map(|root| root.join(".venv/bin/milvus-lite")).collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("milvus-lite")));
    }
    candidates.into_iter().find(|candidate| candidate.is_file()).ok_or_else(|| {
        SinkError::Lite(
            "milvus.uri is a local path, which needs Milvus Lite, but `milvus-lite` was not found in .venv/bin or on PATH; run `make setup` (pip install milvus-lite), set milvus.lite_command, or point milvus.uri at a server (http://host:19530)".to_owned(),
        )
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_uris_are_told_apart() {
        assert!(is_local_path("data/milvus.db"));
        assert!(is_local_path("/var/lib/vecdrop/milvus"));
        assert!(!is_local_path("http://127.0.0.1:19530"));
        assert!(!is_local_path("https://in01.example.cloud"));
    }

    #[test]
    fn missing_lite_command_says_how_to_get_it() {
        let error = find_command(Some(Path::new("/nonexistent/milvus-lite")), Path::new("/")).unwrap_err();
        assert!(error.to_string().contains("lite_command"), "{error}");
    }
}
