//! **read** through WASM format plugins: formats vecdrop does not know, parsed by a WebAssembly
//! component (`vecdrop:format@0.1.0`, `plugins/wit/format.wit`) in a sandbox that can be trusted
//! with files from anywhere.
//!
//! ```text
//!  [[plugins]] path ──► PluginRegistry::load ──► LoadedPlugin (compiled once, cached on disk)
//!                          version check, info()            │ per file: fresh Store
//!  file ──► PluginReader ── chunk ──► feed() in Sandbox ──► batch checked ──► ReadItems
//! ```
//! - [`sandbox`]: engine, store limits (one memory budget for all memories, table elements,
//!   instance / memory / table counts, time per call, stack), WASI without files, network,
//!   environment or waiting, captured stderr; failures become [`PluginError`]s.
//! - [`cache`]: compiled components on disk, keyed by content hash and engine compatibility,
//!   loaded only after their BLAKE3, owner and mode are checked.
//! - [`validate`]: every batch's offsets, sizes and checkpoint are checked before use.
//! - [`values`]: plugin values → [`FieldValue`](crate::format::FieldValue).
//! - [`reader`]: the [`PluginReader`] and its exact resume positions.
//!
//! A plugin that traps, times out, runs out of memory or breaks the contract fails its file with
//! a reason (and the tail of its stderr); the process and other files are not affected.

mod cache;
mod reader;
mod sandbox;
mod validate;
mod values;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use self::reader::{PluginReader, MAX_ROWS_PER_FEED};
pub use self::sandbox::MAX_WASM_STACK_BYTES;
use self::sandbox::{wit, FormatPluginPre, HostState, Sandbox};

/// Largest checkpoint `state` a plugin may return; a bigger one fails the file. Checkpoints are
/// stored in the ledger and carried (shared, not copied) by every record after them.
pub const MAX_CHECKPOINT_STATE_BYTES: usize = 64 * 1024;

/// The interface version this vecdrop speaks (the WIT package version).
pub const INTERFACE_VERSION: &str = "0.1.0";
/// The WIT package, without version.
pub const INTERFACE_PACKAGE: &str = "vecdrop:format";

/// Why a plugin could not be loaded or failed a call.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The `.wasm` cannot be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The WASM engine could not be set up.
    #[error("the WASM engine cannot start: {0}")]
    Engine(String),
    /// The file is not a valid component.
    #[error("{path}: not a WASM component vecdrop can compile: {message}")]
    Compile {
        path: PathBuf,
        /// What the compiler said.
        message: String,
    },
    /// The component does not export `vecdrop:format/parser`.
    #[error("{path}: exports no {INTERFACE_PACKAGE} interface (found {exports:?}); is it a vecdrop format plugin?")]
    NotAPlugin {
        path: PathBuf,
        /// What it exports.
        exports: Vec<String>,
    },
    /// The plugin was built for another, incompatible interface version.
    #[error("{path}: plugin was built for {INTERFACE_PACKAGE}@{plugin_version}, but this vecdrop speaks {INTERFACE_PACKAGE}@{INTERFACE_VERSION}; rebuild the plugin against plugins/wit/format.wit of this version")]
    IncompatibleVersion {
        path: PathBuf,
        /// The version it was built for.
        plugin_version: String,
    },
    /// The component needs imports vecdrop does not give, or cannot be instantiated.
    #[error("cannot instantiate the plugin (it may import something other than WASI preview 2): {0}")]
    Instantiate(String),
    /// `info()` returned something unusable, or formats clash.
    #[error("{path}: {message}")]
    BadInfo {
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A call ran past its time budget.
    #[error("{call}: the plugin ran longer than its time budget of {budget:?} (an endless loop?){}", stderr_suffix(stderr))]
    Timeout {
        call: String,
        budget: Duration,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin's memories together asked for more than its memory budget.
    #[error("{call}: the plugin exceeded its memory limit of {} MiB, shared by all its memories ({} KiB in use, it asked for {} KiB more){}", limit_bytes >> 20, in_use >> 10, asked >> 10, stderr_suffix(stderr))]
    MemoryLimit {
        call: String,
        /// The budget (`plugins[].memory_mib`).
        limit_bytes: usize,
        /// Bytes all its memories held.
        in_use: usize,
        /// Bytes it asked for on top.
        asked: usize,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin's tables together asked for more elements than the sandbox allows.
    #[error("{call}: the plugin exceeded its limit of {limit_elements} table elements, shared by all its tables ({in_use} in use, it asked for {asked} more){}", stderr_suffix(stderr))]
    TableLimit {
        call: String,
        /// The budget.
        limit_elements: usize,
        /// Elements all its tables held.
        in_use: usize,
        /// Elements it asked for on top.
        asked: usize,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin needs more core instances, memories or tables than the sandbox allows.
    #[error(
        "{call}: the plugin needs more than the sandbox allows (at most {} core instances, {} memories, {} tables): {message}{}",
        sandbox::MAX_INSTANCES,
        sandbox::MAX_MEMORIES,
        sandbox::MAX_TABLES,
        stderr_suffix(stderr)
    )]
    CountLimit {
        call: String,
        /// What wasmtime said.
        message: String,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin called something the sandbox refuses (waiting: a timer, a poll that would block).
    #[error("{call}: the plugin called {what}, which plugins cannot use (they must not sleep or wait){}", stderr_suffix(stderr))]
    Forbidden {
        call: String,
        /// The WASI function.
        what: String,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin overflowed its stack.
    #[error("{call}: the plugin overflowed its {} KiB stack (unbounded recursion?){}", stack_bytes >> 10, stderr_suffix(stderr))]
    StackOverflow {
        call: String,
        /// The stack limit.
        stack_bytes: usize,
        /// The tail of the plugin's stderr.
        stderr: String,
    },
    /// The plugin trapped (a panic, an unreachable, a bad memory access).
    #[error("{call}: the plugin crashed: {message}{}", stderr_suffix(stderr))]
    Trap {
        call: String,
        /// The trap.
        message: String,
        /// The tail of the plugin's stderr (a Rust panic message lands here).
        stderr: String,
    },
    /// The plugin returned something that breaks the interface contract (offsets, sizes, kinds).
    #[error("the plugin broke the interface contract: {message}")]
    Contract {
        /// What it did.
        message: String,
    },
    /// Loading the plugin at `path` failed in its sandbox (instantiation or `info()`).
    #[error("{path}: {source}")]
    Load {
        path: PathBuf,
        /// What went wrong.
        source: Box<PluginError>,
    },
    /// The plugin reported that the rest of the file cannot be parsed.
    #[error("at byte {offset}: {message}")]
    Parse {
        /// Where (absolute byte offset).
        offset: u64,
        /// The plugin's message.
        message: String,
    },
}

impl crate::fault::Classify for PluginError {
    /// What a plugin does with a file (traps, limits, contract breaches, its own parse errors) is
    /// that file's fault: other files go on. Only an engine that cannot start is the host's.
    fn fault(&self) -> crate::fault::Fault {
        match self {
            PluginError::Engine(_) => crate::fault::Fault::Config,
            PluginError::Load { source, .. } => source.fault(),
            _ => crate::fault::Fault::File,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; plugin stderr: {stderr}")
    }
}

/// Limits of one plugin's sandbox (from its `[[plugins]]` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLimits {
    /// Memory budget of one plugin instance (one per file): the sum of all its linear memories.
    pub memory_bytes: usize,
    /// Time budget of one call (one chunk fed).
    pub call_time_budget: Duration,
    /// Bytes per chunk fed.
    pub chunk_bytes: usize,
    /// Cap on the bytes of values one call returns.
    pub max_output_bytes: usize,
}

impl Default for PluginLimits {
    /// The limits of a `[[plugins]]` entry that sets none.
    fn default() -> Self {
        crate::settings::raw::RawPlugin::default().limits("plugins[]").expect("the default limits are in range")
    }
}

/// A format a plugin declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFormatInfo {
    /// Its name (`format = "…"`).
    pub name: String,
    /// Extensions `format = "auto"` maps to it.
    pub extensions: Vec<String>,
}

/// A plugin compiled and checked, ready to parse files.
pub struct LoadedPlugin {
    path: PathBuf,
    name: String,
    version: String,
    formats: Vec<PluginFormatInfo>,
    config_json: String,
    limits: PluginLimits,
    pre: FormatPluginPre<HostState>,
}

impl LoadedPlugin {
    /// Loads the component at `path` (compiled through the cache in `cache_dir`, when given),
    /// refuses it unless it speaks a compatible interface version, and asks it for its info.
    pub fn load(path: &Path, config_json: &str, limits: PluginLimits, cache_dir: Option<&Path>) -> Result<Self, PluginError> {
        let wasm = std::fs::read(path).map_err(|source| PluginError::Io { path: path.to_owned(), source })?;
        let engine = sandbox::engine()?;
        let component = cache::compile(engine, &wasm, path, cache_dir)?;
        check_interface_version(path, component.component_type().exports(engine).map(|(name, _)| name.to_owned()).collect())?;
        let in_load = |source: PluginError| PluginError::Load { path: path.to_owned(), source: Box::new(source) };
        let pre = sandbox::pre_instantiate(engine, &component).map_err(in_load)?;
        let mut sandbox = Sandbox::new(&pre, &path.display().to_string(), &limits).map_err(in_load)?;
        let info = sandbox.call("info", |guest, store| guest.call_info(store)).map_err(in_load)?;
        let formats =
            info.formats.into_iter().map(|format| PluginFormatInfo { name: format.name, extensions: format.extensions }).collect();
        let plugin = Self {
            path: path.to_owned(),
            name: info.name,
            version: info.version,
            formats,
            config_json: config_json.to_owned(),
            limits,
            pre,
        };
        plugin.check_info()?;
        Ok(plugin)
    }

    /// The plugin's name (from `info()`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's version (from `info()`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The formats it reads.
    pub fn formats(&self) -> &[PluginFormatInfo] {
        &self.formats
    }

    /// The `.wasm` it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its sandbox limits.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Its config as JSON text (handed to `open`).
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// The columns of `format`, from a parser opened with the plugin's config (and no file).
    pub fn schema(&self, format: &str) -> Result<Vec<(String, String)>, PluginError> {
        let mut sandbox = self.sandbox()?;
        let opened = sandbox.call("open", |guest, store| guest.parser().call_open(store, format, &self.config_json, None))?;
        let parser = opened.map_err(|error| PluginError::Parse { offset: error.offset, message: error.message })?;
        let columns = sandbox.call("schema", |guest, store| guest.parser().call_schema(store, parser))?;
        Ok(columns.into_iter().map(|column| (column.name, kind_name(column.kind).to_owned())).collect())
    }

    fn sandbox(&self) -> Result<Sandbox, PluginError> {
        Sandbox::new(&self.pre, &self.name, &self.limits)
    }

    fn check_info(&self) -> Result<(), PluginError> {
        let bad = |message: String| Err(PluginError::BadInfo { path: self.path.clone(), message });
        if self.formats.is_empty() {
            return bad("the plugin declares no format".to_owned());
        }
        for format in &self.formats {
            if !is_format_name(&format.name) {
                return bad(format!("format name {:?}: expected letters, digits, '-' or '_'", format.name));
            }
            if crate::format::Format::reserved_names().contains(&format.name.as_str()) {
                return bad(format!("format name {:?} is built into vecdrop", format.name));
            }
            if let Some(extension) = format.extensions.iter().find(|extension| !is_format_name(extension)) {
                return bad(format!(
                    "format {:?}: extension {extension:?} should be letters, digits, '-' or '_' without a dot",
                    format.name
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("LoadedPlugin").field("name", &self.name).field("version", &self.version).field("path", &self.path).finish()
    }
}

/// Refuses a component that does not export `vecdrop:format/parser` in a version compatible with
/// [`INTERFACE_VERSION`] (same major, and for 0.x the same minor).
fn check_interface_version(path: &Path, exports: Vec<String>) -> Result<(), PluginError> {
    let prefix = format!("{INTERFACE_PACKAGE}/");
    let Some(export) = exports.iter().find(|name| name.starts_with(&prefix)) else {
        return Err(PluginError::NotAPlugin { path: path.to_owned(), exports });
    };
    let plugin_version = export.split_once('@').map(|(_, version)| version).unwrap_or("(unversioned)");
    if !semver_compatible(plugin_version, INTERFACE_VERSION) {
        return Err(PluginError::IncompatibleVersion { path: path.to_owned(), plugin_version: plugin_version.to_owned() });
    }
    Ok(())
}

fn semver_compatible(plugin: &str, host: &str) -> bool {
    let parts = |version: &str| version.split('.').map(|part| part.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
    match (parts(plugin).as_deref(), parts(host).as_deref()) {
        (Some([0, plugin_minor, _]), Some([0, host_minor, _])) => plugin_minor == host_minor,
        (Some([plugin_major, ..]), Some([host_major, ..])) => plugin_major == host_major && *plugin_major != 0,
        _ => false,
    }
}

/// A column kind as written in `format.wit`.
pub(crate) fn kind_name(kind: wit::ColumnKind) -> &'static str {
    match kind {
        wit::ColumnKind::Any => "any",
        wit::ColumnKind::Boolean => "boolean",
        wit::ColumnKind::Integer => "integer",
        wit::ColumnKind::Float => "float",
        wit::ColumnKind::Text => "text",
        wit::ColumnKind::Bytes => "bytes",
        wit::ColumnKind::Timestamp => "timestamp",
        wit::ColumnKind::Json => "json",
        wit::ColumnKind::Vector => "vector",
    }
}

/// Whether `name` can name a plugin format (or an extension): letters, digits, `-`, `_`.
pub(crate) fn is_format_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One format of one loaded plugin: what [`crate::format::Format::Plugin`] holds.
#[derive(Clone)]
pub struct PluginFormat {
    /// The plugin.
    pub plugin: Arc<LoadedPlugin>,
    /// The format's name.
    pub name: String,
}

impl PartialEq for PluginFormat {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.plugin, &other.plugin) && self.name == other.name
    }
}

impl fmt::Debug for PluginFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PluginFormat({} from {})", self.name, self.plugin.name)
    }
}

/// The plugins of a configuration, by format name and extension. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct PluginRegistry {
    plugins: Vec<Arc<LoadedPlugin>>,
}

/// One `[[plugins]]` entry to load.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The `.wasm` (resolved).
    pub path: PathBuf,
    /// Config handed to `open`, as JSON text.
    pub config_json: String,
    /// Its limits.
    pub limits: PluginLimits,
}

impl PluginRegistry {
    /// Loads every plugin (blocking: compiles WASM); refuses two plugins that claim the same
    /// format name or extension.
    pub fn load(sources: &[PluginSource], cache_dir: Option<&Path>) -> Result<Self, PluginError> {
        let mut registry = Self::default();
        for source in sources {
            let plugin = LoadedPlugin::load(&source.path, &source.config_json, source.limits.clone(), cache_dir)?;
            registry.add(plugin)?;
        }
        Ok(registry)
    }

    /// Adds a loaded plugin; refuses one whose formats or extensions clash with those already there.
    pub fn add(&mut self, plugin: LoadedPlugin) -> Result<(), PluginError> {
        for format in &plugin.formats {
            if let Some(existing) = self.find(|candidate| candidate.name == format.name) {
                return Err(clash(&plugin, format!("format {:?} is also declared by {}", format.name, existing.plugin.path.display())));
            }
            for extension in &format.extensions {
                if let Some(existing) = self.by_extension(extension) {
                    return Err(clash(&plugin, format!("extension .{extension} is also claimed by {}", existing.plugin.path.display())));
                }
            }
        }
        tracing::info!(plugin = %plugin.name, version = %plugin.version, path = %plugin.path.display(), formats = ?plugin.formats.iter().map(|format| &format.name).collect::<Vec<_>>(), "plugin loaded");
        self.plugins.push(Arc::new(plugin));
        Ok(())
    }

    /// The format named `name`.
    pub fn by_name(&self, name: &str) -> Option<PluginFormat> {
        self.find(|format| format.name == name)
    }

    /// The format that claims `extension` (case-insensitive).
    pub fn by_extension(&self, extension: &str) -> Option<PluginFormat> {
        self.find(|format| format.extensions.iter().any(|claimed| claimed.eq_ignore_ascii_case(extension)))
    }

    /// Every format name, for messages.
    pub fn format_names(&self) -> Vec<String> {
        self.plugins.iter().flat_map(|plugin| plugin.formats.iter().map(|format| format.name.clone())).collect()
    }

    fn find(&self, matches: impl Fn(&PluginFormatInfo) -> bool) -> Option<PluginFormat> {
        self.plugins.iter().find_map(|plugin| {
            let format = plugin.formats.iter().find(|format| matches(format))?;
            Some(PluginFormat { plugin: Arc::clone(plugin), name: format.name.clone() })
        })
    }
}

fn clash(plugin: &LoadedPlugin, message: String) -> PluginError {
    PluginError::BadInfo { path: plugin.path.clone(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compatible_within_a_0_minor_or_a_major() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
        assert!(!semver_compatible("(unversioned)", "0.1.0"));
    }

    #[test]
    fn an_incompatible_export_names_both_versions() {
        let error = check_interface_version(Path::new("p.wasm"), vec!["vecdrop:format/parser@0.2.0".to_owned()]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("vecdrop:format@0.2.0") && message.contains("vecdrop:format@0.1.0"), "{message}");
        let error = check_interface_version(Path::new("p.wasm"), vec!["wasi:cli/run@0.2.0".to_owned()]).unwrap_err();
        assert!(matches!(error, PluginError::NotAPlugin { .. }), "{error}");
        check_interface_version(Path::new("p.wasm"), vec!["vecdrop:format/parser@0.1.0".to_owned()]).unwrap();
    }
}
