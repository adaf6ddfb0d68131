//! Compiled components cached on disk, so that a restart does not compile every plugin again.
//!
//! An entry is named by the BLAKE3 of the `.wasm` and a hash of the engine's compatibility
//! (wasmtime version, compiler settings, CPU features): a changed plugin or a new vecdrop binary
//! simply misses. Entries are written to a temporary file and renamed into place. Loading an entry
//! is `unsafe` in wasmtime (it is machine code): the cache directory belongs to vecdrop (under
//! `state.dir`) and is trusted like the binary itself. An entry that does not load is compiled
//! again and replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::PluginError;

/// Compiles `wasm` (the bytes of the file at `path`), or loads it from `cache_dir` when a
/// compatible compiled copy is there (and stores one when not).
pub fn compile(engine: &Engine, wasm: &[u8], path: &Path, cache_dir: Option<&Path>) -> Result<Component, PluginError> {
    let Some(cache_dir) = cache_dir else { return compile_fresh(engine, wasm, path) };
    let entry = entry_path(engine, wasm, cache_dir);
    if entry.is_file() {
        // SAFETY: the entry was written by `Component::serialize` of this engine configuration (its
        // name carries the compatibility hash) into vecdrop's own state directory.
        match unsafe { Component::deserialize_file(engine, &entry) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::warn!(entry = %entry.display(), error = %format!("{error:#}"), "cached plugin unusable; compiling again")
            }
        }
    }
    let component = compile_fresh(engine, wasm, path)?;
    if let Err(error) = store(&component, &entry) {
        tracing::warn!(entry = %entry.display(), %error, "cannot cache the compiled plugin");
    }
    Ok(component)
}

fn compile_fresh(engine: &Engine, wasm: &[u8], path: &Path) -> Result<Component, PluginError> {
    Component::new(engine, wasm).map_err(|error| PluginError::Compile { path: path.to_owned(), message: format!("{error:#}") })
}

fn entry_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let content = blake3::hash(wasm).to_hex();
    cache_dir.join(format!("{}-{:016x}.cwasm", &content[..32], hasher.finish()))
}

fn store(component: &Component, entry: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(|error| std::io::Error::other(format!("{error:#}")))?;
    let directory = entry.parent().expect("entries live in the cache directory");
    std::fs::create_dir_all(directory)?;
    let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_compiled_component_is_cached_once_and_loaded_from_the_cache() {
        let engine = super::super::sandbox::engine().unwrap();
        let dir = tempfile::tempdir().unwrap();
        compile(engine, EMPTY_COMPONENT, Path::new("empty.wasm"), Some(dir.path())).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|entry| entry.path()).collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert!(entries[0].to_string_lossy().ends_with(".cwasm"));
        let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();
        compile(engine, EMPTY_COMPONENT, Path::new("empty.wasm"), Some(dir.path())).unwrap();
        assert_eq!(std::fs::metadata(&entries[0]).unwrap().modified().unwrap(), modified, "second load reads the cache");
    }

    #[test]
    fn a_corrupt_cache_entry_is_compiled_again() {
        let engine = super::super::sandbox::engine().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let entry = entry_path(engine, EMPTY_COMPONENT, dir.path());
        std::fs::write(&entry, b"not machine code").unwrap();
        compile(engine, EMPTY_COMPONENT, Path::new("empty.wasm"), Some(dir.path())).unwrap();
        assert_ne!(std::fs::read(&entry).unwrap(), b"not machine code");
    }

    #[test]
    fn a_core_module_is_refused_as_not_a_component() {
        let engine = super::super::sandbox::engine().unwrap();
        let error = compile(engine, b"\0asm\x01\0\0\0", Path::new("module.wasm"), None).unwrap_err();
        assert!(matches!(error, PluginError::Compile { .. }), "{error}");
    }
}
