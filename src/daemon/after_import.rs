//! **finish** for drop folders: what happens to a file once its import ended.
//!
//! Imported (or already imported) files are moved to `<dir>/.done/YYYY-MM-DD/` (name kept, a
//! numbered suffix on collision), deleted, or kept, per `after_import` — and this runs only after
//! the rows are committed and flushed (the pipeline returned). A file that failed goes to
//! `<dir>/.failed/` with `<name>.error.txt` saying why and what to do. Files found by schedules are
//! never moved: they are re-read on the next run.

use std::io;
use std::path::{Path, PathBuf};

use crate::settings::AfterImport;

/// Applies `after_import` to `path`, a file of drop folder `dir` whose rows are all committed.
/// Returns where the file went (`None` when deleted or kept).
pub fn after_success(path: &Path, dir: &Path, action: AfterImport, today: &str) -> io::Result<Option<PathBuf>> {
    match action {
        AfterImport::Move => move_into(path, &dir.join(".done").join(today)).map(Some),
        AfterImport::Delete => std::fs::remove_file(path).map(|()| None),
        AfterImport::Keep => Ok(None),
    }
}

/// Moves `path` to `<dir>/.failed/` and writes `<name>.error.txt` next to it with `reason` and
/// what to do. Returns the new path of the file.
pub fn quarantine(path: &Path, dir: &Path, pipeline: &str, reason: &str, dead_letters: &Path) -> io::Result<PathBuf> {
    let failed_dir = dir.join(".failed");
    let moved = move_into(path, &failed_dir)?;
    let name = moved.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let explanation = format!(
        "vecdrop could not import {original}\n\
         pipeline: {pipeline}\n\
         time: {time}\n\
         \n\
         why:\n  {reason}\n\
         \n\
         what to do:\n  \
         Rows committed before the error are in Milvus; rejected records (if any) are in {dead_letters}.\n  \
         Fix the file (or the pipeline's config) and drop it into {dir} again: rows already imported\n  \
         are recognised by their keys and content and are not written twice.\n",
        original = path.display(),
        time = crate::timestamp::now_rfc3339(),
        dead_letters = dead_letters.display(),
        dir = dir.display(),
    );
    std::fs::write(failed_dir.join(format!("{name}.error.txt")), explanation)?;
    Ok(moved)
}

/// Moves `path` into `target_dir` (created), keeping its name or adding `.1`, `.2`… before the
/// extension when the name is taken. Falls back to copy + remove across file systems.
fn move_into(path: &Path, target_dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(target_dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let target = free_name(target_dir, &name.to_string_lossy());
    if let Err(error) = std::fs::rename(path, &target) {
        if error.raw_os_error() != Some(libc::EXDEV) {
            return Err(error);
        }
        std::fs::copy(path, &target)?;
        std::fs::remove_file(path)?;
    }
    Ok(target)
}

/// `dir/name`, or `dir/stem.N.ext` with the smallest free N.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let (stem, extension) = match name.split_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    (1..).map(|n| dir.join(format!("{stem}.{n}{extension}"))).find(|candidate| !candidate.exists()).expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_files_keep_their_name_and_get_a_suffix_on_collision() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..3 {
            let path = dir.path().join("data.csv.gz");
            std::fs::write(&path, format!("round {round}")).unwrap();
            after_success(&path, dir.path(), AfterImport::Move, "2026-11-28").unwrap();
            assert!(!path.exists());
        }
        let done = dir.path().join(".done/2026-11-28");
        for name in ["data.csv.gz", "data.1.csv.gz", "data.2.csv.gz"] {
            assert!(done.join(name).is_file(), "{name}");
        }
        assert_eq!(std::fs::read_to_string(done.join("data.2.csv.gz")).unwrap(), "round 2");
    }

    #[test]
    fn delete_removes_and_keep_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "x").unwrap();
        assert_eq!(after_success(&path, dir.path(), AfterImport::Keep, "d").unwrap(), None);
        assert!(path.exists());
        after_success(&path, dir.path(), AfterImport::Delete, "d").unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn quarantined_files_get_an_error_file_that_says_why_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, "not parquet").unwrap();
        let moved =
            quarantine(&path, dir.path(), "docs", "bad.parquet: truncated footer", Path::new("state/dead-letters/docs.jsonl")).unwrap();
        assert_eq!(moved, dir.path().join(".failed/bad.parquet"));
        let error = std::fs::read_to_string(dir.path().join(".failed/bad.parquet.error.txt")).unwrap();
        assert!(error.contains("truncated footer"), "{error}");
        assert!(error.contains("what to do"), "{error}");
        assert!(error.contains("docs.jsonl"), "{error}");
    }
}
