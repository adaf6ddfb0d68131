//! Misbehaving plugins for vecdrop's sandbox tests (`tests/plugins.rs`). One component, one format
//! per misdeed; `format = "auto"` picks it by the test file's extension. Each misdeed happens in
//! the first `feed` call. Written against the raw interface, since the SDK would not let a plugin
//! return bad offsets.

use std::hint::black_box;
use std::time::Duration;

use vecdrop_plugin_sdk::bindings::exports::vecdrop::format::parser::{
    Batch, Checkpoint, Column, ColumnKind, FormatInfo, Guest, GuestParser, ParseError, Parser, PluginInfo, Row, Value,
};

/// `(format name = file extension, what the plugin does)`.
const MISDEEDS: [(&str, &str); 11] = [
    ("hostile-loop", "loops forever"),
    ("hostile-memory", "allocates without bound"),
    ("hostile-recursion", "recurses without bound"),
    ("hostile-panic", "panics"),
    ("hostile-output", "returns a 20 MiB value"),
    ("hostile-rows", "returns more rows than max-rows"),
    ("hostile-offsets", "returns a row that ends past the bytes it was fed"),
    ("hostile-file", "opens /etc/passwd"),
    ("hostile-socket", "connects to 127.0.0.1:9"),
    ("hostile-sleep", "sleeps for an hour (wasi:clocks subscribe + wasi:io/poll)"),
    ("hostile-state", "returns a checkpoint with 100 KiB of state"),
];

/// Bytes of checkpoint state `hostile-state` returns (the host's cap is 64 KiB).
const HOSTILE_STATE_BYTES: usize = 100 << 10;

struct Hostile;

impl Guest for Hostile {
    type Parser = Misdeed;

    fn info() -> PluginInfo {
        let formats = MISDEEDS.iter().map(|(name, _)| FormatInfo { name: (*name).to_owned(), extensions: vec![(*name).to_owned()] });
        PluginInfo { name: "hostile".to_owned(), version: "0.1.0".to_owned(), formats: formats.collect() }
    }
}

/// The parser: remembers which misdeed its format stands for.
pub struct Misdeed {
    format: String,
}

impl GuestParser for Misdeed {
    fn open(format: String, _config: String, _resume: Option<Checkpoint>) -> Result<Parser, ParseError> {
        Ok(Parser::new(Misdeed { format }))
    }

    fn schema(&self) -> Vec<Column> {
        vec![Column { name: "text".to_owned(), kind: ColumnKind::Text }]
    }

    fn feed(&self, chunk: Vec<u8>, _eof: bool, max_rows: u32) -> Result<Batch, ParseError> {
        let fed = chunk.len() as u64;
        let row = |start: u64, end: u64, text: String| Row { start, end, fields: Ok(vec![Value::Text(text)]) };
        let rows = match self.format.as_str() {
            "hostile-loop" => loop {
                black_box(&chunk);
            },
            "hostile-memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "hostile-recursion" => vec![row(0, fed, recurse(0, &chunk).to_string())],
            "hostile-panic" => panic!("hostile plugin panics on purpose"),
            "hostile-output" => vec![row(0, fed, "x".repeat(20 << 20))],
            "hostile-rows" => (0..max_rows as u64 + 10).map(|index| row(0, index.min(fed), String::new())).collect(),
            "hostile-offsets" => vec![row(0, fed + 1000, "past the end".to_owned())],
            "hostile-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => vec![row(0, fed, text)],
                Err(error) => return Err(ParseError { offset: 0, message: format!("cannot open /etc/passwd: {error}") }),
            },
            "hostile-socket" => match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => vec![row(0, fed, "connected".to_owned())],
                Err(error) => return Err(ParseError { offset: 0, message: format!("cannot connect to 127.0.0.1:9: {error}") }),
            },
            "hostile-sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                vec![row(0, fed, "woke up after an hour".to_owned())]
            }
            "hostile-state" => {
                let checkpoint = Checkpoint { offset: fed, state: vec![7; HOSTILE_STATE_BYTES] };
                return Ok(Batch { rows: vec![row(0, fed, "huge state".to_owned())], checkpoint: Some(checkpoint), wants_input: true });
            }
            other => return Err(ParseError { offset: 0, message: format!("unknown format {other}") }),
        };
        Ok(Batch { rows, checkpoint: None, wants_input: true })
    }
}

/// Recurses forever (the result is never produced). Nothing lives in the shadow stack in linear
/// memory, so it is the WASM stack (vecdrop's `max_wasm_stack`) that overflows.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64, data: &[u8]) -> u64 {
    let deeper = recurse(depth + 1, data);
    deeper.wrapping_mul(31).wrapping_add(u64::from(data[depth as usize % data.len().max(1)]))
}

vecdrop_plugin_sdk::bindings::export!(Hostile with_types_in vecdrop_plugin_sdk::bindings);
