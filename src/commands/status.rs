//! `vecdrop status`: per-file state from the ledger.

use super::{CommandError, EXIT_OK};
use crate::ledger::{FileState, Ledger};
use crate::settings::Settings;

/// Prints every file the ledger knows: state, position, counts, error; `json` prints one JSON
/// array for scripts. Reads the ledger only (needs neither Milvus nor the model).
pub fn status(settings: &Settings, json: bool) -> Result<u8, CommandError> {
    let ledger = Ledger::open(&settings.resolve(&settings.state.dir)).map_err(|error| CommandError::Other(error.to_string()))?;
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
    Ok(EXIT_OK)
}
