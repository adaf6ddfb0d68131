//! vecdrop gets data into Milvus and keeps it there.
//!
//! # Data flow
//! ```text
//!  discover ──► read ──► map ──► embed ──► upsert ──► commit ──► finish
//!  watch dirs   format    record   ONNX      Milvus     ledger     move / delete / keep
//!  cron paths   readers   → row    batches   (acked)    offsets
//!  CLI import
//! ```
//! # Invariants
//! 1. A committed position never runs ahead of what Milvus acknowledged.
//! 2. Replaying any batch is harmless: same primary keys, same values, upsert.
//! 3. A file's identity is its content hash (BLAKE3), not its path.
//! 4. A bad record never stops a file and never vanishes: it is dead-lettered with file, position,
//!    field and reason. Only the file's own fault sends a file to `.failed/`: every error says
//!    whose fault it is ([`fault::Fault`]), and the daemon acts on that, never on the text.
//! 5. Nothing blocks the async runtime for long: parsing and inference run on blocking threads,
//!    joined by bounded channels.
//!
//! # Layout
//! - [`settings`]: config file → validated [`settings::Settings`].
//! - [`discover`]: **discover** — drop folders (notify + rescans) and cron schedules → ready files.
//! - [`format`]: **read** — streaming readers with resumable positions, and WASM format plugins
//!   run in a sandbox ([`format::plugin`]).
//! - [`mapping`]: **map** — record → typed row with a deterministic primary key.
//! - [`embed`]: **embed** — tokenizer + ONNX Runtime, batched by a token budget.
//! - [`sink`]: **upsert** — Milvus collections, column-based upserts with retries; embedded Milvus
//!   Lite for a local `milvus.uri`.
//! - [`ledger`]: **commit** — per-file positions in sled, applied after Milvus acknowledged.
//! - [`pipeline`]: one file through all the stages (with incremental re-import and mirroring).
//! - [`daemon`]: **finish** and the service — worker pool, after-import moves, status endpoint,
//!   systemd notifications, graceful shutdown.
//! - [`telemetry`]: Prometheus metrics and files in flight.
//! - [`fault`]: whose fault an error is (record, file, transient, config, bug), which decides
//!   what the daemon does about it.
//! - [`failpoint`]: test-only crash points.
//! - [`dead_letter`], [`progress`]: what an import reports besides rows.
//! - [`timestamp`]: wall-clock times as vecdrop writes them.
//! - [`commands`]: the CLI verbs.
//! - [`bench`]: `vecdrop bench`, throughput of the model, the imports and a bare SDK loop.

pub mod bench;
pub mod bulk;
pub mod commands;
pub mod daemon;
pub mod dead_letter;
mod dirs;
pub mod discover;
pub mod embed;
pub mod failpoint;
pub mod fault;
pub mod format;
pub mod ledger;
pub mod mapping;
pub mod pipeline;
pub mod progress;
pub mod settings;
pub mod sink;
pub mod telemetry;
pub mod timestamp;
