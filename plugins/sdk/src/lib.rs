//! Write a vecdrop format plugin as one trait impl.
//!
//! A plugin implements [`Plugin`]: it is handed the bytes of the file not yet parsed and says,
//! one [`Step`] at a time, how many of them form the next record (with its values), how many hold
//! no record, or that it needs more input. The SDK does the rest of the interface
//! (`vecdrop:format@0.1.0`, see `plugins/wit/format.wit`): buffering the chunks the host feeds,
//! absolute `[start, end)` offsets of every row, the `max-rows` cap, checkpoints, errors with their
//! offset. Because a plugin only sees "the bytes from here on", its output cannot depend on how
//! the host cuts the file into chunks.
//!
//! ```ignore
//! struct Lines;
//! impl vecdrop_plugin_sdk::Plugin for Lines {
//!     fn info() -> PluginInfo { … }
//!     fn open(_format: &str, _config: &str, _state: Option<&[u8]>) -> Result<Self, String> { Ok(Lines) }
//!     fn schema(&self) -> Vec<Column> { vec![Column { name: "text".into(), kind: ColumnKind::Text }] }
//!     fn step(&mut self, input: &[u8], eof: bool) -> Result<Step, String> { … }
//! }
//! vecdrop_plugin_sdk::export_plugin!(Lines);
//! ```

use std::cell::RefCell;

/// The generated bindings, for plugins that need the raw interface (vecdrop's own sandbox tests).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "format-plugin",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "vecdrop_plugin_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

use bindings::exports::vecdrop::format::parser as wit;
pub use wit::{Checkpoint, Column, ColumnKind, FormatInfo, PluginInfo, Value};

/// What the next bytes of the input are, as decided by [`Plugin::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The input does not hold a whole record yet: call again with more bytes (or with `eof`).
    NeedInput,
    /// The first `n` bytes (n ≥ 1) hold no record: whitespace, a header, a comment.
    Skip(usize),
    /// The first `len` bytes (len ≥ 1) are one record, with one value per schema column, or the
    /// reason it is malformed (it is dead-lettered, the file goes on).
    Record {
        /// Its length in bytes.
        len: usize,
        /// Its values in schema order, or why it is malformed.
        fields: Result<Vec<Value>, String>,
    },
}

/// A format parser. One value parses one file, start to end (or from a checkpoint).
pub trait Plugin: Sized + 'static {
    /// Name, version and formats (called once, when vecdrop loads the plugin).
    fn info() -> PluginInfo;

    /// A parser for `format` (one of [`Plugin::info`]'s formats), configured by `config` (the
    /// `[[plugins]] config` table as JSON text, `{}` when absent). `state` is what
    /// [`Plugin::state`] returned at the checkpoint the file resumes from, `None` at the start.
    /// An `Err` fails the file with that message.
    fn open(format: &str, config: &str, state: Option<&[u8]>) -> Result<Self, String>;

    /// The columns of every record.
    fn schema(&self) -> Vec<Column>;

    /// Looks at `input`, the bytes not yet consumed (never empty), and says what comes first.
    /// With `eof` no more bytes follow `input`, so [`Step::NeedInput`] is an error then. An `Err`
    /// means the rest of the file cannot be parsed.
    fn step(&mut self, input: &[u8], eof: bool) -> Result<Step, String>;

    /// The state needed to resume right after the record just returned, or `None` when the parser
    /// cannot resume there. The default (stateless parsers) resumes anywhere with no state. The
    /// host refuses (and fails the file) a state over 64 KiB.
    fn state(&self) -> Option<Vec<u8>> {
        Some(Vec::new())
    }
}

/// Adapts a [`Plugin`] to the interface's `parser` resource: buffers chunks, tracks offsets.
#[doc(hidden)]
pub struct Driver<P> {
    inner: RefCell<DriverState<P>>,
}

struct DriverState<P> {
    plugin: P,
    /// Bytes fed but not consumed yet are `buffer[consumed..]`.
    buffer: Vec<u8>,
    consumed: usize,
    /// Absolute offset of `buffer[0]`.
    base: u64,
}

impl<P: Plugin> wit::GuestParser for Driver<P> {
    fn open(format: String, config: String, resume: Option<Checkpoint>) -> Result<wit::Parser, wit::ParseError> {
        let base = resume.as_ref().map_or(0, |checkpoint| checkpoint.offset);
        let plugin = P::open(&format, &config, resume.as_ref().map(|checkpoint| checkpoint.state.as_slice()))
            .map_err(|message| wit::ParseError { offset: base, message })?;
        let state = DriverState { plugin, buffer: Vec::new(), consumed: 0, base };
        Ok(wit::Parser::new(Driver { inner: RefCell::new(state) }))
    }

    fn schema(&self) -> Vec<Column> {
        self.inner.borrow().plugin.schema()
    }

    fn feed(&self, chunk: Vec<u8>, eof: bool, max_rows: u32) -> Result<wit::Batch, wit::ParseError> {
        self.inner.borrow_mut().feed(&chunk, eof, max_rows as usize)
    }
}

impl<P: Plugin> DriverState<P> {
    fn feed(&mut self, chunk: &[u8], eof: bool, max_rows: usize) -> Result<wit::Batch, wit::ParseError> {
        self.buffer.drain(..self.consumed);
        self.base += self.consumed as u64;
        self.consumed = 0;
        self.buffer.extend_from_slice(chunk);
        let mut batch = wit::Batch { rows: Vec::new(), checkpoint: None, wants_input: true };
        while batch.rows.len() < max_rows {
            let input = &self.buffer[self.consumed..];
            if input.is_empty() {
                return Ok(batch);
            }
            let offset = self.base + self.consumed as u64;
            let error = |message: String| wit::ParseError { offset, message };
            match self.plugin.step(input, eof).map_err(error)? {
                Step::NeedInput if eof => return Err(error("the file ends inside a record".to_owned())),
                Step::NeedInput => return Ok(batch),
                Step::Skip(length) => self.consumed += checked_length(length, input.len()).map_err(error)?,
                Step::Record { len, fields } => {
                    self.consumed += checked_length(len, input.len()).map_err(error)?;
                    let end = self.base + self.consumed as u64;
                    batch.rows.push(wit::Row { start: offset, end, fields });
                    batch.checkpoint = self.plugin.state().map(|state| Checkpoint { offset: end, state });
                }
            }
        }
        batch.wants_input = false;
        Ok(batch)
    }
}

fn checked_length(length: usize, available: usize) -> Result<usize, String> {
    if length == 0 || length > available {
        return Err(format!("plugin bug: a step of {length} bytes with {available} bytes of input"));
    }
    Ok(length)
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as the component's `parser` interface.
/// Only on `wasm32` targets, so that a plugin crate's own tests run natively (`cargo test`).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        struct VecdropPluginExport;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::vecdrop::format::parser::Guest for VecdropPluginExport {
            type Parser = $crate::Driver<$plugin>;

            fn info() -> $crate::PluginInfo {
                <$plugin as $crate::Plugin>::info()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(VecdropPluginExport with_types_in $crate::bindings);
    };
}
