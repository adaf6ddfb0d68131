//! Compiled components cached on disk, so that a restart does not compile every plugin again.
//!
//! An entry is named by the BLAKE3 of the `.wasm` and a hash of the engine's compatibility
//! (wasmtime version, compiler settings, CPU features): a changed plugin or a new vecdrop binary
//! simply misses. Next to each entry `<name>.cwasm` lies `<name>.cwasm.blake3`, the BLAKE3 and the
//! length of the serialised artifact as vecdrop wrote it.
//!
//! Loading an entry is `unsafe` in wasmtime: it is machine code that runs as vecdrop. So an entry
//! is used only when all of this holds, and otherwise compiled again and replaced (with a warning
//! naming the file and why):
//! - the cache directory is a directory (not a symlink) owned by vecdrop's effective user and not
//!   writable by group or others (vecdrop creates it with mode 0700);
//! - the entry and its record are opened relative to that directory's descriptor with
//!   `O_NOFOLLOW`, and `fstat` of the opened descriptors shows regular files owned by the
//!   effective user and not writable by group or others;
//! - the bytes read from the entry's descriptor hash to the recorded BLAKE3.
//!
//! The component is then deserialised from exactly those bytes (never from the path again), so
//! nothing can be swapped in between the checks and the use. Entries are written to a temporary
//! file (mode 0600, fsynced) and renamed into place, the record after its entry, then the
//! directory is fsynced.

use std::ffi::CString;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::PluginError;

/// Largest compiled entry vecdrop reads back (a compiled plugin is a few MiB).
const MAX_ENTRY_BYTES: u64 = 512 << 20;
/// Largest record (`<64 hex> <length>\n`) vecdrop reads back.
const MAX_RECORD_BYTES: u64 = 256;
/// Extension of an entry's record, appended to the entry's name.
const RECORD_SUFFIX: &str = ".blake3";

/// Compiles `wasm` (the bytes of the file at `path`), or loads it from `cache_dir` when a
/// compatible compiled copy is there and passes every check of the module documentation (and
/// stores one when not). A cache that cannot be used only costs a compilation: it never fails
/// the load.
pub fn compile(engine: &Engine, wasm: &[u8], path: &Path, cache_dir: Option<&Path>) -> Result<Component, PluginError> {
    let Some(cache_dir) = cache_dir else { return compile_fresh(engine, wasm, path) };
    let directory = match CacheDir::open(cache_dir) {
        Ok(directory) => directory,
        Err(reason) => {
            tracing::warn!(directory = %cache_dir.display(), %reason, "plugin cache directory not used; compiling the plugin without it");
            return compile_fresh(engine, wasm, path);
        }
    };
    let name = entry_name(engine, wasm);
    match directory.load(engine, &name) {
        Ok(Some(component)) => return Ok(component),
        Ok(None) => {}
        Err(reason) => {
            tracing::warn!(entry = %cache_dir.join(&name).display(), %reason, "cached compiled plugin not used; compiling it again")
        }
    }
    let component = compile_fresh(engine, wasm, path)?;
    if let Err(error) = directory.store(&component, &name) {
        tracing::warn!(entry = %cache_dir.join(&name).display(), %error, "cannot cache the compiled plugin");
    }
    Ok(component)
}

fn compile_fresh(engine: &Engine, wasm: &[u8], path: &Path) -> Result<Component, PluginError> {
    Component::new(engine, wasm).map_err(|error| PluginError::Compile { path: path.to_owned(), message: format!("{error:#}") })
}

/// `<first 32 hex of the .wasm's BLAKE3>-<engine compatibility hash>.cwasm`.
fn entry_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let content = blake3::hash(wasm).to_hex();
    format!("{}-{:016x}.cwasm", &content[..32], hasher.finish())
}

/// Why a cache entry (or the cache directory) is not trusted.
#[derive(Debug, thiserror::Error)]
enum Distrust {
    /// A symlink, directory, FIFO or device where a regular file belongs (or the reverse).
    #[error("it is {found}, not {expected}")]
    WrongKind { found: &'static str, expected: &'static str },
    /// Someone else owns it.
    #[error("it is owned by uid {owner}, not by vecdrop's effective uid {euid}")]
    Owner { owner: u32, euid: u32 },
    /// Group or others may write it.
    #[error("it is writable by group or others (mode {mode:o})")]
    Writable { mode: u32 },
    /// The entry is there but its record is not.
    #[error("its recorded BLAKE3 ({RECORD_SUFFIX}) is missing")]
    NoRecord,
    /// The record cannot be parsed.
    #[error("its recorded BLAKE3 ({RECORD_SUFFIX}) is malformed")]
    BadRecord,
    /// The record is not to be trusted.
    #[error("its record {RECORD_SUFFIX}: {0}")]
    Record(Box<Distrust>),
    /// The bytes are not the ones vecdrop wrote.
    #[error("its bytes do not hash to the recorded BLAKE3 (changed or replaced since vecdrop wrote it)")]
    HashMismatch,
    /// Larger than any compiled plugin.
    #[error("it is larger than {MAX_ENTRY_BYTES} bytes")]
    TooLarge,
    /// wasmtime refused the bytes (another engine, or damaged in a way the hash did not catch).
    #[error("wasmtime cannot load it: {0}")]
    Deserialize(String),
    /// It cannot be opened or read.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
}

/// What a file is, as `fstat` of an open descriptor tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Directory,
    Other,
}

impl Kind {
    fn of(metadata: &std::fs::Metadata) -> Self {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            Kind::Regular
        } else if file_type.is_dir() {
            Kind::Directory
        } else {
            Kind::Other
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Other => "a special file (FIFO, socket or device)",
        }
    }
}

/// Refuses anything but a `expected` owned by `euid` and not writable by group or others.
fn check_trusted(kind: Kind, owner: u32, mode: u32, expected: Kind, euid: u32) -> Result<(), Distrust> {
    if kind != expected {
        return Err(Distrust::WrongKind { found: kind.describe(), expected: expected.describe() });
    }
    if owner != euid {
        return Err(Distrust::Owner { owner, euid });
    }
    if mode & 0o022 != 0 {
        return Err(Distrust::Writable { mode: mode & 0o7777 });
    }
    Ok(())
}

fn check_descriptor(file: &File, expected: Kind) -> Result<(), Distrust> {
    let metadata = file.metadata()?;
    check_trusted(Kind::of(&metadata), metadata.uid(), metadata.mode(), expected, effective_uid())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The cache directory, opened (`O_NOFOLLOW`) and checked; entries are opened relative to it.
struct CacheDir {
    directory: File,
}

/// Makes temporary names unique within the process.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl CacheDir {
    /// Creates `path` (mode 0700, parents too) unless it exists, opens it without following a
    /// symlink and refuses it unless it is a directory of the effective user closed to others.
    fn open(path: &Path) -> Result<Self, Distrust> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        let directory = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|error| match error.raw_os_error() {
                // With O_DIRECTORY, Linux answers a symlink with ENOTDIR rather than ELOOP.
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    let is_link = std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink());
                    Distrust::WrongKind {
                        found: if is_link { "a symbolic link" } else { "something else" },
                        expected: Kind::Directory.describe(),
                    }
                }
                _ => Distrust::Io(error),
            })?;
        check_descriptor(&directory, Kind::Directory)?;
        Ok(Self { directory })
    }

    /// The component cached as `name`: `Ok(None)` when there is no entry, an error saying why
    /// when there is one that must not be used.
    fn load(&self, engine: &Engine, name: &str) -> Result<Option<Component>, Distrust> {
        let mut entry = match self.open_for_reading(name) {
            Ok(entry) => entry,
            Err(Distrust::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(distrust) => return Err(distrust),
        };
        check_descriptor(&entry, Kind::Regular)?;
        let (recorded_hash, recorded_length) = self.record(name)?;
        if entry.metadata()?.len() != recorded_length {
            return Err(Distrust::HashMismatch);
        }
        let bytes = read_bounded(&mut entry, MAX_ENTRY_BYTES).map_err(|error| match error {
            Some(error) => Distrust::Io(error),
            None => Distrust::TooLarge,
        })?;
        if blake3::hash(&bytes) != recorded_hash {
            return Err(Distrust::HashMismatch);
        }
        // SAFETY: these bytes are the ones `Component::serialize` of an engine with this
        // configuration wrote (their name carries the compatibility hash, their BLAKE3 is the one
        // recorded at that time), read from a regular file and directory that only vecdrop's user
        // can write; they are not read again from the path.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Ok(Some(component)),
            Err(error) => Err(Distrust::Deserialize(format!("{error:#}"))),
        }
    }

    /// The BLAKE3 and length recorded for entry `name`.
    fn record(&self, name: &str) -> Result<(blake3::Hash, u64), Distrust> {
        let mut record = match self.open_for_reading(&format!("{name}{RECORD_SUFFIX}")) {
            Ok(record) => record,
            Err(Distrust::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => return Err(Distrust::NoRecord),
            Err(distrust) => return Err(Distrust::Record(Box::new(distrust))),
        };
        check_descriptor(&record, Kind::Regular).map_err(|distrust| Distrust::Record(Box::new(distrust)))?;
        let bytes = read_bounded(&mut record, MAX_RECORD_BYTES).map_err(|error| match error {
            Some(error) => Distrust::Io(error),
            None => Distrust::BadRecord,
        })?;
        parse_record(&bytes).ok_or(Distrust::BadRecord)
    }

    /// Opens `name` in the directory for reading: no symlink followed, no wait on a FIFO.
    fn open_for_reading(&self, name: &str) -> Result<File, Distrust> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        open_at(&self.directory, name, flags, 0).map_err(symlink_as_distrust)
    }

    /// Writes `component`'s artifact as `name` and then its record, each atomically.
    fn store(&self, component: &Component, name: &str) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(|error| std::io::Error::other(format!("{error:#}")))?;
        self.write_atomically(name, &bytes)?;
        self.write_atomically(&format!("{name}{RECORD_SUFFIX}"), format_record(&bytes).as_bytes())?;
        self.directory.sync_all()
    }

    /// Writes `bytes` to a new temporary file (mode 0600), fsyncs it and renames it to `name`.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let temporary = format!(".{name}.{}-{}.tmp", std::process::id(), TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed));
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let written = open_at(&self.directory, &temporary, flags, 0o600).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()?;
            rename_at(&self.directory, &temporary, name)
        });
        if written.is_err() {
            let _ = unlink_at(&self.directory, &temporary);
        }
        written
    }
}

/// `O_NOFOLLOW` on a symlink fails with `ELOOP`: report it as the wrong kind of file.
fn symlink_as_distrust(error: std::io::Error) -> Distrust {
    match error.raw_os_error() {
        Some(libc::ELOOP) => Distrust::WrongKind { found: "a symbolic link", expected: Kind::Regular.describe() },
        _ => Distrust::Io(error),
    }
}

/// Reads all of `file`; `Err(None)` when it holds more than `limit` bytes.
fn read_bounded(file: &mut File, limit: u64) -> Result<Vec<u8>, Option<std::io::Error>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(Some)?;
    if bytes.len() as u64 > limit {
        return Err(None);
    }
    Ok(bytes)
}

/// The record of an artifact: `<BLAKE3 hex> <length>\n`.
fn format_record(artifact: &[u8]) -> String {
    format!("{} {}\n", blake3::hash(artifact).to_hex(), artifact.len())
}

fn parse_record(bytes: &[u8]) -> Option<(blake3::Hash, u64)> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?;
    let (hash, length) = text.split_once(' ')?;
    Some((blake3::Hash::from_hex(hash).ok()?, length.parse().ok()?))
}

fn c_name(name: &str) -> std::io::Result<CString> {
    if name.contains('/') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "a cache entry name has no '/'"));
    }
    CString::new(name).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a cache entry name has no NUL"))
}

/// `openat(2)` relative to `directory`.
fn open_at(directory: &File, name: &str, flags: libc::c_int, mode: libc::mode_t) -> std::io::Result<File> {
    let name = c_name(name)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the descriptor is open.
    let fd = unsafe { libc::openat(directory.as_raw_fd(), name.as_ptr(), flags, libc::c_uint::from(mode)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `renameat(2)` within `directory`.
fn rename_at(directory: &File, from: &str, to: &str) -> std::io::Result<()> {
    let (from, to) = (c_name(from)?, c_name(to)?);
    // SAFETY: both names are NUL-terminated strings that outlive the call; the descriptor is open.
    if unsafe { libc::renameat(directory.as_raw_fd(), from.as_ptr(), directory.as_raw_fd(), to.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `unlinkat(2)` within `directory`.
fn unlink_at(directory: &File, name: &str) -> std::io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the descriptor is open.
    if unsafe { libc::unlinkat(directory.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where the entry of `wasm` lives in `cache_dir` (for tests that tamper with it).
#[cfg(test)]
fn entry_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    cache_dir.join(entry_name(engine, wasm))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// A component holding one core module with one memory of one page, instantiated: compiles to
    /// a different (valid) artifact than [`EMPTY_COMPONENT`].
    const MEMORY_COMPONENT: &[u8] = &[
        0, b'a', b's', b'm', 0x0d, 0, 0x01, 0, // component preamble
        0x01, 0x0d, // core module section, 13 bytes
        0, b'a', b's', b'm', 0x01, 0, 0, 0, // core module preamble
        0x05, 0x03, 0x01, 0x00, 0x01, // memory section: one memory, min 1 page
        0x02, 0x04, 0x01, 0x00, 0x00, 0x00, // core instance section: instantiate module 0, no args
    ];

    fn engine() -> &'static Engine {
        super::super::sandbox::engine().unwrap()
    }

    fn artifact(wasm: &[u8]) -> Vec<u8> {
        compile_fresh(engine(), wasm, Path::new("any.wasm")).unwrap().serialize().unwrap()
    }

    fn record_path(entry: &Path) -> PathBuf {
        PathBuf::from(format!("{}{RECORD_SUFFIX}", entry.display()))
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Loads `EMPTY_COMPONENT` through the cache and checks that what came back is its own
    /// artifact and that the entry now holds it (mode 0600, record matching).
    fn assert_loads_the_right_component(dir: &Path) {
        let component = compile(engine(), EMPTY_COMPONENT, Path::new("empty.wasm"), Some(dir)).unwrap();
        let expected = artifact(EMPTY_COMPONENT);
        assert_eq!(component.serialize().unwrap(), expected, "the component is the one compiled from the .wasm");
        let entry = entry_path(engine(), EMPTY_COMPONENT, dir);
        assert_eq!(std::fs::read(&entry).unwrap(), expected, "the entry was replaced by a fresh compilation");
        assert!(!std::fs::symlink_metadata(&entry).unwrap().file_type().is_symlink());
        assert_eq!(mode(&entry), 0o600);
        assert_eq!(std::fs::read_to_string(record_path(&entry)).unwrap(), format_record(&expected));
    }

    #[test]
    fn compilation_is_deterministic_and_the_two_test_components_differ() {
        assert_eq!(artifact(EMPTY_COMPONENT), artifact(EMPTY_COMPONENT));
        assert_ne!(artifact(EMPTY_COMPONENT), artifact(MEMORY_COMPONENT));
    }

    #[test]
    fn a_compiled_component_is_cached_once_and_loaded_from_the_cache() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("plugin-cache");
        compile(engine(), EMPTY_COMPONENT, Path::new("empty.wasm"), Some(&dir)).unwrap();
        assert_eq!(mode(&dir), 0o700, "the cache directory is created closed to others");
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|entry| entry.path()).collect();
        entries.sort();
        assert_eq!(entries.len(), 2, "the entry and its record: {entries:?}");
        assert!(entries[0].to_string_lossy().ends_with(".cwasm"));
        assert_eq!(entries[1], record_path(&entries[0]));
        assert_eq!((mode(&entries[0]), mode(&entries[1])), (0o600, 0o600));
        let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();
        compile(engine(), EMPTY_COMPONENT, Path::new("empty.wasm"), Some(&dir)).unwrap();
        assert_eq!(std::fs::metadata(&entries[0]).unwrap().modified().unwrap(), modified, "second load reads the cache");
        assert_loads_the_right_component(&dir);
    }

    #[test]
    fn garbage_in_the_cache_is_compiled_again_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let entry = entry_path(engine(), EMPTY_COMPONENT, dir.path());
        std::fs::write(&entry, b"not machine code").unwrap();
        assert_loads_the_right_component(dir.path());

        // Garbage whose record matches it: the hash passes, wasmtime refuses the bytes.
        std::fs::write(&entry, b"not machine code either").unwrap();
        std::fs::write(record_path(&entry), format_record(b"not machine code either")).unwrap();
        assert_loads_the_right_component(dir.path());
    }

    #[test]
    fn a_valid_artifact_of_another_component_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        compile(engine(), EMPTY_COMPONENT, Path::new("empty.wasm"), Some(dir.path())).unwrap();
        let entry = entry_path(engine(), EMPTY_COMPONENT, dir.path());
        std::fs::write(&entry, artifact(MEMORY_COMPONENT)).unwrap();
        assert_loads_the_right_component(dir.path());
    }

    #[test]
    fn an_entry_writable_by_others_is_not_loaded_even_when_its_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let entry = entry_path(engine(), EMPTY_COMPONENT, dir.path());
        let planted = artifact(MEMORY_COMPONENT);
        std::fs::write(&entry, &planted).unwrap();
        std::fs::write(record_path(&entry), format_record(&planted)).unwrap();
        std::fs::set_permissions(record_path(&entry), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_loads_the_right_component(dir.path());

        // The same with the record writable by others instead.
        std::fs::write(&entry, &planted).unwrap();
        std::fs::write(record_path(&entry), format_record(&planted)).unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(record_path(&entry), std::fs::Permissions::from_mode(0o622)).unwrap();
        assert_loads_the_right_component(dir.path());
    }

    #[test]
    fn a_symlink_or_a_fifo_in_place_of_an_entry_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let planted = elsewhere.path().join("planted.cwasm");
        let bytes = artifact(MEMORY_COMPONENT);
        std::fs::write(&planted, &bytes).unwrap();
        let entry = entry_path(engine(), EMPTY_COMPONENT, dir.path());
        std::os::unix::fs::symlink(&planted, &entry).unwrap();
        std::fs::write(record_path(&entry), format_record(&bytes)).unwrap();
        std::fs::set_permissions(record_path(&entry), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_loads_the_right_component(dir.path());
        assert_eq!(std::fs::read(&planted).unwrap(), bytes, "the symlink's target is left alone");

        std::fs::remove_file(&entry).unwrap();
        let fifo = CString::new(entry.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_loads_the_right_component(dir.path());
    }

    #[test]
    fn a_cache_directory_open_to_others_or_behind_a_symlink_is_not_used() {
        let parent = tempfile::tempdir().unwrap();
        let open = parent.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        compile(engine(), EMPTY_COMPONENT, Path::new("empty.wasm"), Some(&open)).unwrap();
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "nothing written to a directory others can write");
        assert!(matches!(CacheDir::open(&open), Err(Distrust::Writable { mode: 0o777 })));

        let target = tempfile::tempdir().unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(target.path(), &link).unwrap();
        assert!(matches!(CacheDir::open(&link), Err(Distrust::WrongKind { found: "a symbolic link", .. })));
    }

    #[test]
    fn only_files_of_the_effective_user_closed_to_others_are_trusted() {
        assert!(check_trusted(Kind::Regular, 1000, 0o100600, Kind::Regular, 1000).is_ok());
        assert!(check_trusted(Kind::Regular, 1000, 0o100644, Kind::Regular, 1000).is_ok());
        assert!(matches!(check_trusted(Kind::Regular, 0, 0o100600, Kind::Regular, 1000), Err(Distrust::Owner { owner: 0, euid: 1000 })));
        assert!(matches!(check_trusted(Kind::Regular, 1000, 0o100620, Kind::Regular, 1000), Err(Distrust::Writable { mode: 0o620 })));
        assert!(matches!(check_trusted(Kind::Regular, 1000, 0o100602, Kind::Regular, 1000), Err(Distrust::Writable { .. })));
        assert!(matches!(check_trusted(Kind::Other, 1000, 0o010600, Kind::Regular, 1000), Err(Distrust::WrongKind { .. })));
        assert!(matches!(check_trusted(Kind::Regular, 1000, 0o100700, Kind::Directory, 1000), Err(Distrust::WrongKind { .. })));
    }

    #[test]
    fn records_round_trip_and_refuse_anything_else() {
        let record = format_record(b"artifact");
        assert_eq!(parse_record(record.as_bytes()), Some((blake3::hash(b"artifact"), 8)));
        assert_eq!(parse_record(b"abc 8\n"), None);
        assert_eq!(parse_record(record.trim_end().as_bytes()), None);
    }

    #[test]
    fn a_core_module_is_refused_as_not_a_component() {
        let error = compile(engine(), b"\0asm\x01\0\0\0", Path::new("module.wasm"), None).unwrap_err();
        assert!(matches!(error, PluginError::Compile { .. }), "{error}");
    }
}
