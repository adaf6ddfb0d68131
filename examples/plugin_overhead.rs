//! Overhead of a WASM format plugin against the built-in parser, on the same CSV-like data:
//! the log-line example plugin (a regex per line, in its sandbox) vs the built-in CSV reader,
//! rows per second through `RecordReader::next_item` (no Milvus, no model).
//!
//! `bash scripts/bench-plugin.sh [ROWS]` (builds the plugins, then runs this with `--release`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vecdrop::format::plugin::{LoadedPlugin, PluginLimits};
use vecdrop::format::{Checkpoint, Format, PluginFormat, ReadItem, ReadOptions, RecordReader};

fn main() {
    let rows: usize = std::env::args().nth(1).map(|rows| rows.parse().expect("ROWS is a number")).unwrap_or(500_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rows.csv");
    write_rows(&path, rows);
    let megabytes = std::fs::metadata(&path).expect("written").len() as f64 / 1e6;
    println!("{rows} rows, {megabytes:.1} MB of CSV-like text");

    let built_in = measure("built-in CSV reader", Format::Csv, &path);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wasm = root.join("plugins/target/logline.wasm");
    assert!(wasm.is_file(), "{} is missing: run `bash scripts/build-plugins.sh`", wasm.display());
    let config = serde_json::json!({ "pattern": "^(?P<id>[^,]*),(?P<text>[^,]*),(?P<category>.*)$" }).to_string();
    let plugin = LoadedPlugin::load(&wasm, &config, PluginLimits::default(), None).expect("the plugin loads");
    let format = Format::Plugin(PluginFormat { plugin: Arc::new(plugin), name: "logline".to_owned() });
    let plugin = measure("log-line plugin (WASM)", format, &path);
    println!("plugin / built-in: {:.2}", plugin / built_in);
}

fn write_rows(path: &Path, rows: usize) {
    let mut content = String::from("id,text,category\n");
    for index in 0..rows {
        content.push_str(&format!("r{index},row {index} talks about rivers and mountains and coffee,c{}\n", index % 7));
    }
    std::fs::write(path, content).expect("the file is written");
}

/// Reads the whole file three times; prints and returns the best rows per second.
fn measure(label: &str, format: Format, path: &Path) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let started = Instant::now();
        let mut reader = RecordReader::open(format.clone(), path, &ReadOptions::default(), &Checkpoint::Start).expect("opens");
        let mut records = 0u64;
        while let Some(item) = reader.next_item().expect("reads") {
            if let ReadItem::Record(_) = item {
                records += 1;
            }
        }
        best = best.max(records as f64 / started.elapsed().as_secs_f64());
    }
    println!("{label}: {best:.0} rows/s");
    best
}
