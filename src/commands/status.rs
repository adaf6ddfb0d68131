//! `vecdrop status`: per-file state from the ledger.

use super::{CommandError, EXIT_OK};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::ledger::{FileState, Ledger, LedgerError};
use crate::settings::Settings;

/// Prints every file the ledger knows: state, position, counts, error; `json` prints one JSON
/// array for scripts. Reads the ledger only (needs neither Milvus nor the model). While a daemon
/// holds the ledger, asks the daemon's status endpoint instead and prints its `/status` JSON.
pub fn status(settings: &Settings, json: bool) -> Result<u8, CommandError> {
    let ledger = match Ledger::open(&settings.state.dir) {
        Ok(ledger) => ledger,
        Err(LedgerError::Busy { path }) => return daemon_status(settings, &path),
        Err(error) => return Err(CommandError::Other(error.to_string())),
    };
    let entries = ledger.entries().map_err(|error| CommandError::Other(error.to_string()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).expect("entries serialise"));
        return Ok(EXIT_OK);
    }
    if entries.is_empty() {
        println!("no files imported yet");
    }
    for entry in entries {
        let state = match &entry.state {
            FileState::Importing => format!("importing (next record {})", entry.position.ordinal()),
            FileState::Imported => "imported".to_owned(),
            FileState::Failed { reason } => format!("failed at record {}: {reason}", entry.position.ordinal()),
        };
        println!(
            "{:<12} {:<40} {:>9} rows {:>6} rejected  {}  ({}…, updated {})",
            entry.pipeline,
            entry.paths.last().map(String::as_str).unwrap_or("?"),
            entry.rows_imported,
            entry.rows_rejected,
            state,
            &entry.hash[..12.min(entry.hash.len())],
            entry.updated_at
        );
    }
    for schedule in ledger.schedules().map_err(|error| CommandError::Other(error.to_string()))? {
        println!(
            "schedule {:<12} {:<20} last run {} ({}), next {}",
            schedule.pipeline,
            schedule.schedule,
            schedule.last_run.as_deref().unwrap_or("never"),
            schedule.last_outcome.as_deref().unwrap_or("-"),
            schedule.next_run.as_deref().unwrap_or("-")
        );
    }
    Ok(EXIT_OK)
}

/// The running daemon's `/status`, printed as JSON.
fn daemon_status(settings: &Settings, ledger: &Path) -> Result<u8, CommandError> {
    let address = &settings.status.listen;
    let unreachable = |why: String| {
        CommandError::Other(format!(
            "ledger {} is in use by another vecdrop process, and its status endpoint {address} does not answer ({why})",
            ledger.display()
        ))
    };
    let token = match &settings.status.token_file {
        Some(file) => Some(
            std::fs::read_to_string(settings.base_dir.join(file))
                .map_err(|error| CommandError::Other(format!("status.token_file {}: {error}", file.display())))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let body = match http_get(address, "/status", token.as_deref()) {
        Ok((200, body)) => body,
        Ok((status, _)) => return Err(unreachable(format!("answered {status}"))),
        Err(error) => return Err(unreachable(error.to_string())),
    };
    let report: serde_json::Value = serde_json::from_str(&body).map_err(|error| unreachable(format!("not JSON: {error}")))?;
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON values serialise"));
    Ok(EXIT_OK)
}

/// A minimal HTTP/1.0 GET of `path` from `address` (the status endpoint), with `bearer` as its
/// `Authorization` token if given: the answer's status code and body, whatever the status; `Err`
/// when nothing answers or the answer is not HTTP.
pub fn http_get(address: &str, path: &str, bearer: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization = bearer.map(|token| format!("Authorization: Bearer {token}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let malformed = || std::io::Error::other("malformed HTTP answer");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status =
        head.lines().next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok()).ok_or_else(malformed)?;
    Ok((status, body.to_owned()))
}
