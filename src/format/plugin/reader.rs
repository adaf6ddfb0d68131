//! [`PluginReader`]: a file fed chunk by chunk to a plugin in its sandbox, the rows it returns
//! checked and turned into [`ReadItem`]s with exact resume positions.
//!
//! A plugin checkpoints only at some rows (the end of a batch), but every record needs a position
//! to resume after it. So a record's [`Checkpoint::Plugin`] is the plugin's last checkpoint plus
//! `skip_rows`, the number of records after it that were already read: resuming opens the plugin at
//! that checkpoint, feeds from its offset and drops the first `skip_rows` records. Nothing is read
//! twice into Milvus and nothing is lost, whatever the plugin's checkpoint rhythm.

use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::sync::Arc;

use wasmtime::component::ResourceAny;

use super::sandbox::{wit, Sandbox};
use super::validate::{check_batch, FeedBounds};
use super::values::{convert, ValueError};
use super::{LoadedPlugin, PluginError};
use crate::format::source::{open_text, Compression, Source};
use crate::format::{raw_excerpt, Checkpoint, ReadError, ReadItem, Record, RecordPosition, RejectedRecord, RAW_EXCERPT_BYTES};

/// Rows asked for per `feed` call.
pub const MAX_ROWS_PER_FEED: u32 = 256;

/// Streaming reader over one file, through a plugin.
pub struct PluginReader {
    path: String,
    plugin_name: String,
    sandbox: Sandbox,
    parser: ResourceAny,
    columns: Vec<String>,
    kinds: Vec<wit::ColumnKind>,
    input: Box<dyn BufRead + Send>,
    chunk_bytes: usize,
    max_output_bytes: usize,
    /// Absolute offset just past the bytes fed so far.
    fed_until: u64,
    eof_fed: bool,
    wants_input: bool,
    /// End of the last row returned (or where feeding started).
    last_row_end: u64,
    /// The plugin's last checkpoint and how many records were read since.
    resume_base: ResumeBase,
    /// Records still to drop after a resume (they were committed before).
    records_to_skip: u64,
    next_ordinal: u64,
    recent: RecentBytes,
    pending: VecDeque<ReadItem>,
    total_bytes: u64,
}

/// The last checkpoint a plugin gave, and the records read after it. The state is shared by
/// the positions of all those records (a reference count each, not a copy).
#[derive(Debug, Clone)]
struct ResumeBase {
    byte_offset: u64,
    state: Arc<[u8]>,
    records_after: u64,
}

impl PluginReader {
    /// Opens `path` for `format` of `plugin` at `resume` (`Start` or a [`Checkpoint::Plugin`]).
    pub fn open_at(plugin: &LoadedPlugin, format: &str, source: impl Into<Source>, resume: &Checkpoint) -> Result<Self, ReadError> {
        let source = source.into();
        let path = &source;
        let display = source.name().display().to_string();
        let plugin_error =
            |source: PluginError| ReadError::Plugin { path: display.clone(), plugin: plugin.name().to_owned(), source: Box::new(source) };
        let (base, ordinal) = match resume {
            Checkpoint::Start => (ResumeBase { byte_offset: 0, state: Arc::from([]), records_after: 0 }, 0),
            Checkpoint::Plugin { byte_offset, ordinal, state, skip_rows } => {
                let base = ResumeBase { byte_offset: *byte_offset, state: Arc::clone(state), records_after: 0 };
                (base, ordinal.checked_sub(*skip_rows).ok_or_else(|| corrupt_checkpoint(&display, resume))?)
            }
            other => return Err(corrupt_checkpoint(&display, other)),
        };
        let wit_resume = match resume {
            Checkpoint::Start => None,
            _ => Some(wit::Checkpoint { offset: base.byte_offset, state: base.state.to_vec() }),
        };
        let mut sandbox = plugin.sandbox().map_err(plugin_error)?;
        let config = plugin.config_json();
        let opened = sandbox
            .call("open", |guest, store| guest.parser().call_open(store, format, config, wit_resume.as_ref()))
            .map_err(plugin_error)?;
        let parser = opened.map_err(|error| plugin_error(PluginError::Parse { offset: error.offset, message: error.message }))?;
        let schema = sandbox.call("schema", |guest, store| guest.parser().call_schema(store, parser)).map_err(plugin_error)?;
        let input = open_text(path, base.byte_offset).map_err(|source| ReadError::Io { path: display.clone(), source })?;
        let total_bytes = match Compression::of(source.name()) {
            Compression::None => source.metadata().map(|metadata| metadata.len()).unwrap_or(0),
            _ => 0,
        };
        let skip_rows = match resume {
            Checkpoint::Plugin { skip_rows, .. } => *skip_rows,
            _ => 0,
        };
        Ok(Self {
            path: display,
            plugin_name: plugin.name().to_owned(),
            sandbox,
            parser,
            columns: schema.iter().map(|column| column.name.clone()).collect(),
            kinds: schema.iter().map(|column| column.kind).collect(),
            input,
            chunk_bytes: plugin.limits().chunk_bytes,
            max_output_bytes: plugin.limits().max_output_bytes,
            fed_until: base.byte_offset,
            eof_fed: false,
            wants_input: true,
            last_row_end: base.byte_offset,
            records_to_skip: skip_rows,
            resume_base: base,
            next_ordinal: ordinal,
            recent: RecentBytes::default(),
            pending: VecDeque::new(),
            total_bytes,
        })
    }

    /// File size in bytes (0 when compressed).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Column names from the plugin's schema.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// See [`crate::format::RecordReader::next_item`].
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ReadError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(item));
            }
            if self.wants_input && self.eof_fed {
                return Ok(None);
            }
            self.feed_once()?;
        }
    }

    /// One `feed` call: the next chunk (or an empty one when the plugin has rows left), the
    /// batch checked, its rows queued.
    fn feed_once(&mut self) -> Result<(), ReadError> {
        let chunk = if self.wants_input { self.read_chunk()? } else { Vec::new() };
        let (eof, parser) = (self.eof_fed, self.parser);
        let fed = self
            .sandbox
            .call("feed", |guest, store| guest.parser().call_feed(store, parser, &chunk, eof, MAX_ROWS_PER_FEED))
            .map_err(|source| self.plugin_error(source))?;
        let batch = fed.map_err(|error| self.plugin_error(PluginError::Parse { offset: error.offset, message: error.message }))?;
        let bounds = FeedBounds {
            fed_until: self.fed_until,
            previous_end: self.last_row_end,
            max_rows: MAX_ROWS_PER_FEED,
            max_output_bytes: self.max_output_bytes,
            columns: self.columns.len(),
        };
        check_batch(&batch, &bounds).map_err(|message| self.plugin_error(PluginError::Contract { message }))?;
        self.wants_input = batch.wants_input;
        self.queue(batch)
    }

    fn read_chunk(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut chunk = Vec::with_capacity(self.chunk_bytes);
        let read = (&mut self.input)
            .take(self.chunk_bytes as u64)
            .read_to_end(&mut chunk)
            .map_err(|source| ReadError::Io { path: self.path.clone(), source })?;
        self.eof_fed = read < self.chunk_bytes;
        self.recent.push(self.fed_until, &chunk);
        self.fed_until += read as u64;
        Ok(chunk)
    }

    fn queue(&mut self, batch: wit::Batch) -> Result<(), ReadError> {
        let row_count = batch.rows.len();
        let mut checkpoint = batch.checkpoint.map(|checkpoint| ResumeBase {
            byte_offset: checkpoint.offset,
            state: checkpoint.state.into(),
            records_after: 0,
        });
        for (index, row) in batch.rows.into_iter().enumerate() {
            self.last_row_end = row.end;
            let ordinal = self.next_ordinal;
            self.next_ordinal += 1;
            self.resume_base.records_after += 1;
            if index + 1 == row_count {
                if let Some(checkpoint) = checkpoint.take() {
                    self.resume_base = checkpoint;
                }
            }
            if self.records_to_skip > 0 {
                self.records_to_skip -= 1;
                continue;
            }
            let item = self.item(row, ordinal)?;
            self.pending.push_back(item);
        }
        if let Some(checkpoint) = checkpoint {
            self.resume_base = checkpoint;
        }
        Ok(())
    }

    fn item(&self, row: wit::Row, ordinal: u64) -> Result<ReadItem, ReadError> {
        let position = RecordPosition { ordinal, line: None, byte_offset: row.start };
        let next = Checkpoint::Plugin {
            byte_offset: self.resume_base.byte_offset,
            ordinal: self.next_ordinal,
            state: Arc::clone(&self.resume_base.state),
            skip_rows: self.resume_base.records_after,
        };
        let reject = |reason: String| {
            let raw = raw_excerpt(&self.recent.excerpt(row.start, row.end));
            ReadItem::Rejected(RejectedRecord { position, next: next.clone(), field: None, reason, raw })
        };
        let values = match row.fields {
            Ok(values) => values,
            Err(reason) => return Ok(reject(reason)),
        };
        let mut fields = Vec::with_capacity(values.len());
        for ((value, column), kind) in values.into_iter().zip(&self.columns).zip(&self.kinds) {
            match convert(value, column, *kind) {
                Ok(field) => fields.push((column.clone(), field)),
                Err(ValueError::Invalid(reason)) => return Ok(reject(reason)),
                Err(ValueError::KindMismatch(message)) => return Err(self.plugin_error(PluginError::Contract { message })),
            }
        }
        Ok(ReadItem::Record(Record { position, next, values: fields }))
    }

    fn plugin_error(&self, source: PluginError) -> ReadError {
        ReadError::Plugin { path: self.path.clone(), plugin: self.plugin_name.clone(), source: Box::new(source) }
    }
}

fn corrupt_checkpoint(path: &str, checkpoint: &Checkpoint) -> ReadError {
    ReadError::Corrupt { path: path.to_owned(), byte_offset: 0, message: format!("a plugin file cannot resume from {checkpoint:?}") }
}

/// The last bytes fed, for the raw excerpt of rejected records.
#[derive(Default)]
struct RecentBytes {
    start: u64,
    bytes: Vec<u8>,
}

impl RecentBytes {
    /// Keeps at most this many bytes: the current chunk and the excerpt of a row before it.
    const KEEP: usize = RAW_EXCERPT_BYTES;

    fn push(&mut self, offset: u64, chunk: &[u8]) {
        let keep_from = self.bytes.len().saturating_sub(Self::KEEP);
        self.bytes.drain(..keep_from);
        self.start = offset - self.bytes.len() as u64;
        self.bytes.extend_from_slice(chunk);
    }

    fn excerpt(&self, start: u64, end: u64) -> Vec<u8> {
        let from = start.max(self.start).saturating_sub(self.start) as usize;
        let to = (end.saturating_sub(self.start) as usize).min(self.bytes.len());
        self.bytes.get(from..to).map(<[u8]>::to_vec).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_bytes_cover_the_current_chunk_and_the_tail_of_the_previous_ones() {
        let mut recent = RecentBytes::default();
        recent.push(0, &[b'a'; 10_000]);
        recent.push(10_000, b"bcdef");
        assert_eq!(recent.excerpt(10_001, 10_003), b"cd");
        assert_eq!(recent.excerpt(9_998, 10_001), b"aab");
        assert_eq!(recent.excerpt(0, 10), b"", "bytes older than the kept tail are gone");
        assert_eq!(recent.excerpt(10_004, 20_000), b"f");
    }
}
