//! The sandbox a plugin runs in: one process-wide wasmtime [`Engine`] (epoch interruption, a
//! stack limit), and per file a fresh [`Store`] with one memory budget shared by all its linear
//! memories, a table budget, small instance / memory / table counts, a time budget per call and a
//! WASI context that has no files, no network, no environment, no arguments and no way to wait;
//! the plugin's stdout and stderr go to a bounded [`CapturedOutput`].
//!
//! Every call into the plugin goes through [`Sandbox::call`], which arms the deadline and turns
//! whatever went wrong (trap, timeout, a budget or count exceeded, stack overflow, a refused WASI
//! call) into a [`PluginError`] that names the cause and carries the tail of the plugin's stderr.
//!
//! **Why the deadline holds**: epoch interruption stops WASM code, not a plugin blocked inside a
//! host call. So no host call may block: `wasi:clocks/monotonic-clock`'s `subscribe-duration` and
//! `subscribe-instant` (what `sleep` is made of) trap, and `wasi:io/poll`'s `poll` and
//! `pollable.block` trap instead of waiting on anything that is not ready at once. The only
//! pollables a plugin can get otherwise are its stdout/stderr (always writable) and an empty,
//! closed stdin; sockets, DNS and files are denied or absent.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasData, Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{PluginError, PluginLimits};

wasmtime::component::bindgen!({
    world: "format-plugin",
    path: "plugins/wit",
});

pub use self::exports::vecdrop::format::parser as wit;

/// Stack available to WASM code (deep recursion traps with a stack overflow past it).
pub const MAX_WASM_STACK_BYTES: usize = 512 * 1024;
/// Core instances one plugin may create in its store. A `wasm32-wasip2` component as rustc and
/// wasm-component-ld build it instantiates 3 (the program and two canonical-ABI shims: measured
/// with the xml, logline and hostile plugins); 8 leaves room for a WASI preview 1 adapter and
/// other toolchains, and is still far too few to multiply the memory budget's bookkeeping.
pub const MAX_INSTANCES: usize = 8;
/// Linear memories one plugin may create: the bundled plugins have 1. Whatever their number, all
/// memories share the one budget (`memory_mib`).
pub const MAX_MEMORIES: usize = 4;
/// Tables one plugin may create: the bundled plugins have 2 (the program's indirect function
/// table and a shim's).
pub const MAX_TABLES: usize = 8;
/// Elements of all of a plugin's tables together (the host spends a pointer on each, so this is
/// at most 128 KiB). The bundled plugins use 47 to 655 (logline, with regex and serde).
pub const MAX_TABLE_ELEMENTS: usize = 16_384;
/// Host resources (streams, pollables) a plugin may hold at once; it needs a handful.
const MAX_HOST_RESOURCES: usize = 1_024;
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

/// A linker with WASI preview 2 (sync), as restricted by each store's [`WasiCtx`], with the
/// monotonic clock's timers and poll's waiting replaced by versions that refuse to wait.
pub fn linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let engine_error = |error: wasmtime::Error| PluginError::Engine(format!("{error:#}"));
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<HostState, NoTimers>(&mut linker, |state| NoTimersView {
        started: state.started,
        refused: &mut state.budget.refused,
    })
    .map_err(engine_error)?;
    sync_poll::add_to_linker::<HostState, NoWaiting>(&mut linker, |state| NoWaitingView {
        table: &mut state.table,
        refused: &mut state.budget.refused,
    })
    .map_err(engine_error)?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// What a store holds besides the plugin's instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    budget: Budget,
    /// The origin of the plugin's monotonic clock.
    started: Instant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// What the sandbox refused a plugin (the first refusal is the cause of the failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Memory growth past the budget: bytes all memories hold, bytes asked for on top.
    Memory { in_use: usize, asked: usize },
    /// Table growth past the budget: elements all tables hold, elements asked for on top.
    Table { in_use: usize, asked: usize },
    /// A WASI call that would wait (named).
    Wait(&'static str),
}

/// The store's [`ResourceLimiter`]: one memory budget for the sum of all linear memories (their
/// initial sizes and every growth), one element budget for all tables, and small counts of
/// instances, memories and tables. Memories and tables never shrink or go away while the store
/// lives, so the running sums are exact (a growth wasmtime fails after the budget allowed it stays
/// counted: that only errs on the safe side).
struct Budget {
    memory_limit: usize,
    memory_in_use: usize,
    table_elements: usize,
    refused: Option<Refusal>,
}

impl Budget {
    fn new(memory_limit: usize) -> Self {
        Self { memory_limit, memory_in_use: 0, table_elements: 0, refused: None }
    }
}

/// Records `refusal` in `refused` unless an earlier one is there (that one is the cause), and
/// returns the error that traps the plugin ([`classify`] turns the record into the message).
fn refuse(refused: &mut Option<Refusal>, refusal: Refusal) -> wasmtime::Error {
    refused.get_or_insert(refusal);
    wasmtime::format_err!("the sandbox refused the plugin: {refusal:?}")
}

impl ResourceLimiter for Budget {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let asked = desired.saturating_sub(current);
        match self.memory_in_use.checked_add(asked).filter(|total| *total <= self.memory_limit) {
            Some(total) => {
                self.memory_in_use = total;
                Ok(true)
            }
            None => Err(refuse(&mut self.refused, Refusal::Memory { in_use: self.memory_in_use, asked })),
        }
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let asked = desired.saturating_sub(current);
        match self.table_elements.checked_add(asked).filter(|total| *total <= MAX_TABLE_ELEMENTS) {
            Some(total) => {
                self.table_elements = total;
                Ok(true)
            }
            None => Err(refuse(&mut self.refused, Refusal::Table { in_use: self.table_elements, asked })),
        }
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// `wasi:clocks/monotonic-clock` without timers: the clock can be read, but subscribing to it
/// (what `sleep` is made of) traps.
struct NoTimers;

impl HasData for NoTimers {
    type Data<'a> = NoTimersView<'a>;
}

struct NoTimersView<'a> {
    started: Instant,
    refused: &'a mut Option<Refusal>,
}

impl monotonic_clock::Host for NoTimersView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, _when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        Err(refuse(self.refused, Refusal::Wait("wasi:clocks/monotonic-clock.subscribe-instant")))
    }

    fn subscribe_duration(&mut self, _when: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        Err(refuse(self.refused, Refusal::Wait("wasi:clocks/monotonic-clock.subscribe-duration")))
    }
}

/// `wasi:io/poll` that never waits: `poll` and `block` answer at once when something is ready
/// and trap otherwise.
struct NoWaiting;

impl HasData for NoWaiting {
    type Data<'a> = NoWaitingView<'a>;
}

struct NoWaitingView<'a> {
    table: &'a mut ResourceTable,
    refused: &'a mut Option<Refusal>,
}

impl sync_poll::Host for NoWaitingView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        match ready_now(async_poll::Host::poll(self.table, pollables)) {
            Some(ready) => ready,
            None => Err(refuse(self.refused, Refusal::Wait("wasi:io/poll.poll"))),
        }
    }
}

impl sync_poll::HostPollable for NoWaitingView<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        ready_now(async_poll::HostPollable::ready(self.table, pollable)).unwrap_or(Ok(false))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        match ready_now(async_poll::HostPollable::block(self.table, pollable)) {
            Some(done) => done,
            None => Err(refuse(self.refused, Refusal::Wait("wasi:io/poll.pollable.block"))),
        }
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

/// Polls `future` once, never waiting (with a tokio runtime at hand, as WASI's futures expect):
/// its output if it is ready.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| wasmtime_wasi::runtime::poll_noop(future.as_mut()))
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
    /// Instantiates `pre` in a fresh store limited by `limits` (and the counts above); a plugin
    /// that needs more than that to start fails here with the limit named.
    pub fn new(pre: &FormatPluginPre<HostState>, plugin_name: &str, limits: &PluginLimits) -> Result<Self, PluginError> {
        let output = CapturedOutput::default();
        let mut store = new_store(pre.engine(), limits, &output);
        let bindings = match pre.instantiate(&mut store) {
            Ok(bindings) => bindings,
            Err(error) => return Err(classify("instantiate", error, store.data().budget.refused, limits, &output)),
        };
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
        result.map_err(|error| classify(what, error, self.store.data().budget.refused, &self.limits, &self.output))
    }
}

/// A fresh store for one plugin instance: WASI without files, network, environment, arguments
/// or stdin, output captured in `output`, the [`Budget`] as its limiter, the deadline armed.
fn new_store(engine: &Engine, limits: &PluginLimits, output: &CapturedOutput) -> Store<HostState> {
    let wasi = WasiCtxBuilder::new()
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HOST_RESOURCES);
    let state = HostState { wasi, table, budget: Budget::new(limits.memory_bytes), started: Instant::now() };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.budget);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(ticks(limits.call_time_budget));
    store
}

/// The [`PluginError`] for `error` of call `what`: a refusal the sandbox recorded first (it is
/// the cause, whatever trap followed), then the kind of trap.
fn classify(what: &str, error: wasmtime::Error, refused: Option<Refusal>, limits: &PluginLimits, output: &CapturedOutput) -> PluginError {
    let (call, stderr) = (what.to_owned(), output.tail());
    match refused {
        Some(Refusal::Memory { in_use, asked }) => {
            return PluginError::MemoryLimit { call, limit_bytes: limits.memory_bytes, in_use, asked, stderr }
        }
        Some(Refusal::Table { in_use, asked }) => {
            return PluginError::TableLimit { call, limit_elements: MAX_TABLE_ELEMENTS, in_use, asked, stderr }
        }
        Some(Refusal::Wait(refused_call)) => return PluginError::Forbidden { call, what: refused_call.to_owned(), stderr },
        None => {}
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout { call, budget: limits.call_time_budget, stderr },
        Some(Trap::StackOverflow) => PluginError::StackOverflow { call, stack_bytes: MAX_WASM_STACK_BYTES, stderr },
        _ => {
            let message = format!("{error:#}");
            // wasmtime's words when a count of `ResourceLimiter::{instances, memories, tables}` is exceeded.
            if message.contains("resource limit exceeded") {
                PluginError::CountLimit { call, message, stderr }
            } else {
                PluginError::Trap { call, message, stderr }
            }
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

    const MIB: usize = 1 << 20;

    #[test]
    fn all_memories_share_one_budget() {
        let mut budget = Budget::new(64 * MIB);
        let created = (0..20).map(|_| budget.memory_growing(0, 10 * MIB, None).is_ok()).take_while(|ok| *ok).count();
        assert_eq!(created, 6, "six memories of 10 MiB fit in 64 MiB, the seventh does not");
        assert_eq!(budget.refused, Some(Refusal::Memory { in_use: 60 * MIB, asked: 10 * MIB }));

        let mut budget = Budget::new(64 * MIB);
        assert!(budget.memory_growing(0, 30 * MIB, None).unwrap());
        assert!(budget.memory_growing(0, 30 * MIB, None).unwrap());
        assert!(budget.memory_growing(30 * MIB, 34 * MIB, None).unwrap(), "growing one memory counts its growth only");
        let error = budget.memory_growing(30 * MIB, 31 * MIB, None).unwrap_err();
        assert!(error.to_string().contains("the sandbox refused the plugin"), "{error}");
        assert_eq!(budget.refused, Some(Refusal::Memory { in_use: 64 * MIB, asked: MIB }));
    }

    #[test]
    fn growth_past_a_declared_maximum_is_denied_without_being_counted() {
        let mut budget = Budget::new(64 * MIB);
        assert!(!budget.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
        assert!(!budget.table_growing(0, 20, Some(10)).unwrap());
        assert_eq!((budget.memory_in_use, budget.table_elements, budget.refused), (0, 0, None));
    }

    #[test]
    fn all_tables_share_one_element_budget() {
        let mut budget = Budget::new(64 * MIB);
        assert!(budget.table_growing(0, MAX_TABLE_ELEMENTS - 10, None).unwrap());
        assert!(budget.table_growing(0, 10, None).unwrap());
        assert!(budget.table_growing(10, 11, None).is_err());
        assert_eq!(budget.refused, Some(Refusal::Table { in_use: MAX_TABLE_ELEMENTS, asked: 1 }));
    }

    /// A component instantiating one core module that defines `count` memories of `pages` 64 KiB
    /// pages each (no imports, no exports).
    fn component_with_memories(count: u32, pages: u32) -> Vec<u8> {
        let mut memories = wasm_encoder::MemorySection::new();
        for _ in 0..count {
            memories.memory(wasm_encoder::MemoryType {
                minimum: u64::from(pages),
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut module = wasm_encoder::Module::new();
        module.section(&memories);
        let mut instances = wasm_encoder::InstanceSection::new();
        instances.instantiate(0, std::iter::empty::<(&str, wasm_encoder::ModuleArg)>());
        let mut component = wasm_encoder::Component::new();
        component.section(&wasm_encoder::ModuleSection(&module));
        component.section(&instances);
        component.finish()
    }

    /// Instantiates `wasm` in a plugin's store (as [`Sandbox::new`] does) under `memory_mib`.
    fn instantiate(wasm: &[u8], memory_mib: usize) -> Result<(), PluginError> {
        let engine = engine().unwrap();
        let component = Component::new(engine, wasm).unwrap();
        let limits = PluginLimits { memory_bytes: memory_mib * MIB, ..PluginLimits::default() };
        let output = CapturedOutput::default();
        let mut store = new_store(engine, &limits, &output);
        match linker(engine).unwrap().instantiate(&mut store, &component) {
            Ok(_) => Ok(()),
            Err(error) => Err(classify("instantiate", error, store.data().budget.refused, &limits, &output)),
        }
    }

    #[test]
    fn memories_that_together_exceed_the_budget_fail_instantiation_cleanly() {
        instantiate(&component_with_memories(3, 160), 64).unwrap();
        let error = instantiate(&component_with_memories(3, 480), 64).unwrap_err();
        assert!(matches!(error, PluginError::MemoryLimit { in_use, asked, .. } if in_use == 60 * MIB && asked == 30 * MIB), "{error}");
        assert!(error.to_string().contains("exceeded its memory limit of 64 MiB, shared by all its memories"), "{error}");
    }

    #[test]
    fn more_memories_than_the_count_allows_fail_instantiation_cleanly() {
        let error = instantiate(&component_with_memories(20, 160), 64).unwrap_err();
        assert!(matches!(error, PluginError::CountLimit { .. }), "{error}");
        assert!(error.to_string().contains("memory count too high") && error.to_string().contains("4 memories"), "{error}");
    }

    #[test]
    fn timers_cannot_be_subscribed_to() {
        let mut refused = None;
        let mut clock = NoTimersView { started: Instant::now(), refused: &mut refused };
        assert!(monotonic_clock::Host::now(&mut clock).is_ok());
        assert!(monotonic_clock::Host::subscribe_duration(&mut clock, 1_000_000_000).is_err());
        assert!(monotonic_clock::Host::subscribe_instant(&mut clock, u64::MAX).is_err());
        assert_eq!(refused, Some(Refusal::Wait("wasi:clocks/monotonic-clock.subscribe-duration")), "the first refusal is kept");
    }

    #[test]
    fn waiting_is_answered_at_once_or_not_at_all() {
        assert_eq!(ready_now(async { 5 }), Some(5));
        assert_eq!(ready_now(std::future::pending::<()>()), None);
    }

    #[test]
    fn time_budgets_are_whole_ticks_plus_one() {
        assert_eq!(ticks(Duration::from_millis(1)), 2);
        assert_eq!(ticks(Duration::from_secs(2)), 201);
    }
}
