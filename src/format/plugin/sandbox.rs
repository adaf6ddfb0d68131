//! The sandbox a plugin runs in: one process-wide wasmtime [`Engine`] (epoch interruption, a
//! stack limit), and per file a fresh [`Store`] with a memory cap, a time budget per call and a
//! WASI context that has no files, no network, no environment and no arguments; the plugin's
//! stdout and stderr go to a bounded [`CapturedOutput`].
//!
//! Every call into the plugin goes through [`Sandbox::call`], which arms the deadline and turns
//! whatever went wrong (trap, timeout, memory cap, stack overflow) into a [`PluginError`] that
//! names the cause and carries the tail of the plugin's stderr.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{PluginError, PluginLimits};

wasmtime::component::bindgen!({
    world: "format-plugin",
    path: "plugins/wit",
});

pub use self::exports::vecdrop::format::parser as wit;

/// Stack available to WASM code (deep recursion traps with a stack overflow past it).
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;
/// How often the epoch advances; time budgets are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of the plugin's stderr kept for error messages, and logged per call at most.
const CAPTURED_OUTPUT_BYTES: usize = 8 * 1024;

/// The process-wide engine (compiled code is tied to its configuration), with a thread that
/// advances its epoch every [`EPOCH_TICK`].
pub fn engine() -> Result<&'static Engine, PluginError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true).max_wasm_stack(MAX_WASM_STACK_BYTES);
        let engine = Engine::new(&config).map_err(|error| format!("{error:#}"))?;
        let ticking = engine.clone();
        std::thread::Builder::new()
            .name("vecdrop-plugin-epoch".to_owned())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            })
            .map_err(|error| format!("cannot start the epoch thread: {error}"))?;
        Ok(engine)
    });
    engine.as_ref().map_err(|message| PluginError::Engine(message.clone()))
}

/// A linker with WASI preview 2 (sync), as restricted by each store's [`WasiCtx`].
pub fn linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|error| PluginError::Engine(format!("{error:#}")))?;
    Ok(linker)
}

/// What a store holds besides the plugin's instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: MemoryCap,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Refuses memory growth past the cap, remembering that it did (for the error message).
struct MemoryCap {
    limit_bytes: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.refused = Some(desired);
            wasmtime::bail!("memory limit reached");
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// One instantiated plugin in its own store; dropped (with everything the plugin allocated) when
/// the file is done or failed.
pub struct Sandbox {
    /// The store; unusable after a call failed.
    pub store: Store<HostState>,
    /// The plugin's exports.
    pub bindings: FormatPlugin,
    plugin_name: String,
    limits: PluginLimits,
    output: CapturedOutput,
}

impl Sandbox {
    /// Instantiates `pre` in a fresh store limited by `limits`.
    pub fn new(pre: &FormatPluginPre<HostState>, plugin_name: &str, limits: &PluginLimits) -> Result<Self, PluginError> {
        let output = CapturedOutput::default();
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let memory_cap = MemoryCap { limit_bytes: limits.memory_bytes, refused: None };
        let mut store = Store::new(pre.engine(), HostState { wasi, table: ResourceTable::new(), memory_cap });
        store.limiter(|state| &mut state.memory_cap);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.call_time_budget));
        let bindings = pre.instantiate(&mut store).map_err(|error| PluginError::Instantiate(format!("{error:#}")))?;
        Ok(Self { store, bindings, plugin_name: plugin_name.to_owned(), limits: limits.clone(), output })
    }

    /// Runs `call` with the time budget armed; maps traps and limit breaches to [`PluginError`]s
    /// and logs what the plugin wrote to stderr meanwhile.
    pub fn call<T>(
        &mut self,
        what: &str,
        call: impl FnOnce(&wit::Guest, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        self.store.set_epoch_deadline(ticks(self.limits.call_time_budget));
        let result = call(self.bindings.vecdrop_format_parser(), &mut self.store);
        let fresh = self.output.take_fresh();
        if !fresh.is_empty() {
            tracing::info!(plugin = %self.plugin_name, call = what, output = %fresh.trim_end(), "plugin wrote to stderr");
        }
        result.map_err(|error| self.classify(what, error))
    }

    fn classify(&mut self, what: &str, error: wasmtime::Error) -> PluginError {
        let stderr = self.output.tail();
        if let Some(desired) = self.store.data().memory_cap.refused {
            return PluginError::MemoryLimit { call: what.to_owned(), limit_bytes: self.limits.memory_bytes, desired, stderr };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout { call: what.to_owned(), budget: self.limits.call_time_budget, stderr },
            Some(Trap::StackOverflow) => PluginError::StackOverflow { call: what.to_owned(), stack_bytes: MAX_WASM_STACK_BYTES, stderr },
            _ => PluginError::Trap { call: what.to_owned(), message: format!("{error:#}"), stderr },
        }
    }
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Loads `component` and checks that it can be linked (its imports are WASI ones).
pub fn pre_instantiate(engine: &Engine, component: &Component) -> Result<FormatPluginPre<HostState>, PluginError> {
    let pre = linker(engine)?.instantiate_pre(component).map_err(|error| PluginError::Instantiate(format!("{error:#}")))?;
    FormatPluginPre::new(pre).map_err(|error| PluginError::Instantiate(format!("{error:#}")))
}

/// A plugin's stdout and stderr: the last [`CAPTURED_OUTPUT_BYTES`] for error messages, and what
/// was written since the last [`CapturedOutput::take_fresh`] (also bounded) for the log. Writes
/// never fail, so a chatty plugin is cut short, not broken.
#[derive(Clone, Default)]
struct CapturedOutput {
    buffers: Arc<Mutex<OutputBuffers>>,
}

#[derive(Default)]
struct OutputBuffers {
    tail: VecDeque<u8>,
    fresh: Vec<u8>,
    fresh_dropped: usize,
}

impl CapturedOutput {
    fn append(&self, bytes: &[u8]) {
        let mut buffers = self.buffers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = &bytes[bytes.len().saturating_sub(CAPTURED_OUTPUT_BYTES)..];
        buffers.tail.extend(kept);
        let excess = buffers.tail.len().saturating_sub(CAPTURED_OUTPUT_BYTES);
        buffers.tail.drain(..excess);
        let room = CAPTURED_OUTPUT_BYTES.saturating_sub(buffers.fresh.len());
        let taken = bytes.len().min(room);
        buffers.fresh.extend_from_slice(&bytes[..taken]);
        buffers.fresh_dropped += bytes.len() - taken;
    }

    fn take_fresh(&self) -> String {
        let mut buffers = self.buffers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut text = String::from_utf8_lossy(&std::mem::take(&mut buffers.fresh)).into_owned();
        if buffers.fresh_dropped > 0 {
            text.push_str(&format!(" … ({} more bytes not logged)", std::mem::take(&mut buffers.fresh_dropped)));
        }
        text
    }

    fn tail(&self) -> String {
        let buffers = self.buffers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes: Vec<u8> = buffers.tail.iter().copied().collect();
        String::from_utf8_lossy(&bytes).trim_end().to_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _context: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_keeps_a_bounded_tail_and_logs_fresh_bytes_once() {
        let output = CapturedOutput::default();
        output.append(b"first\n");
        assert_eq!(output.take_fresh(), "first\n");
        assert_eq!(output.take_fresh(), "");
        output.append(&vec![b'x'; 3 * CAPTURED_OUTPUT_BYTES]);
        output.append(b"last words");
        assert!(output.tail().ends_with("last words"));
        assert_eq!(output.tail().len(), CAPTURED_OUTPUT_BYTES);
        assert!(output.take_fresh().ends_with(&format!("({} more bytes not logged)", 2 * CAPTURED_OUTPUT_BYTES + 10)));
    }

    #[test]
    fn time_budgets_are_whole_ticks_plus_one() {
        assert_eq!(ticks(Duration::from_millis(1)), 2);
        assert_eq!(ticks(Duration::from_secs(2)), 201);
    }
}
