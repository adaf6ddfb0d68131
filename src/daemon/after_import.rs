//! **finish** for drop folders: what happens to a file once its import ended.
//!
//! Imported (or already imported) files are moved to `<dir>/.done/YYYY-MM-DD/` (name kept, a
//! numbered suffix on collision), deleted, or kept, per `after_import` — and this runs only after
//! the rows are committed and flushed (the pipeline returned). A file that failed goes to
//! `<dir>/.failed/` with `<name>.error.txt` saying why and what to do. Files found by schedules are
//! never moved: they are re-read on the next run.
//!
//! `.done/` and `.failed/` are the daemon's: [`prepare`] creates them at start (mode 0700, or 2750
//! in a setgid drop folder so that its group can read them) and refuses to start when one is a
//! link or not a directory. Every move and write goes through directory descriptors opened
//! without following links (`openat` with `O_NOFOLLOW`, `renameat2` with `RENAME_NOREPLACE`,
//! error files with `O_EXCL`): a link planted in a drop folder is never followed and a name
//! collision never overwrites.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::dirs::{candidates, move_into, open_dir, open_subdir, subfolder, subfolder_mode, write_new};

use crate::settings::AfterImport;

/// The daemon's subfolders of a drop folder.
const SUBFOLDERS: [&str; 2] = [".done", ".failed"];

/// A drop folder whose `.done/` or `.failed/` cannot be the daemon's.
#[derive(Debug, thiserror::Error)]
#[error("drop folder {dir}: {subfolder} {problem}; remove it (vecdrop creates its own) and start again")]
pub struct PrepareError {
    /// The drop folder.
    pub dir: PathBuf,
    /// `.done` or `.failed`.
    pub subfolder: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Creates the drop folder (if missing) and its `.done/` and `.failed/`, and checks that they are
/// directories owned by the daemon's user (not links, not writable by others; a group- or
/// world-writable one is tightened).
pub fn prepare(dir: &Path) -> Result<(), PrepareError> {
    let failed = |subfolder, problem: String| PrepareError { dir: dir.to_owned(), subfolder, problem };
    std::fs::create_dir_all(dir).map_err(|error| failed("the folder itself", error.to_string()))?;
    let folder = open_dir(dir).map_err(|error| failed("the folder itself", error.to_string()))?;
    let mode = subfolder_mode(&folder).map_err(|error| failed("the folder itself", error.to_string()))?;
    for subfolder in SUBFOLDERS {
        let created = match rustix::fs::mkdirat(&folder, subfolder, mode) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(error) => return Err(failed(subfolder, format!("cannot be created: {error}"))),
        };
        let opened = open_subdir(&folder, subfolder).map_err(|error| failed(subfolder, error.to_string()))?;
        if created {
            // The mode exactly, whatever the umask took away (a setgid folder's group keeps write).
            rustix::fs::fchmod(&opened, mode).map_err(|error| failed(subfolder, error.to_string()))?;
        }
        check_owned(&opened, mode).map_err(|problem| failed(subfolder, problem))?;
    }
    Ok(())
}

/// Owned by the daemon's user and writable by nobody else; a group-writable one in a folder that
/// is not setgid is tightened to `mode`.
fn check_owned(dir: &OwnedFd, mode: Mode) -> Result<(), String> {
    let stat = rustix::fs::fstat(dir).map_err(|error| error.to_string())?;
    // SAFETY: geteuid has no preconditions.
    let user = unsafe { libc::geteuid() };
    if stat.st_uid != user {
        return Err(format!("belongs to user {} instead of the daemon's ({user})", stat.st_uid));
    }
    let writable_by_others = stat.st_mode & 0o002 != 0 || (stat.st_mode & 0o020 != 0 && mode.as_raw_mode() & 0o020 == 0);
    if writable_by_others {
        rustix::fs::fchmod(dir, mode).map_err(|error| format!("is writable by others and cannot be tightened: {error}"))?;
        tracing::warn!(mode = format!("{:o}", mode.as_raw_mode()), "a drop folder's subfolder was writable by others: tightened");
    }
    Ok(())
}

/// Applies `after_import` to `path`, a file of drop folder `dir` whose rows are all committed.
/// Returns where the file went (`None` when deleted or kept).
pub fn after_success(path: &Path, dir: &Path, action: AfterImport, today: &str) -> io::Result<Option<PathBuf>> {
    match action {
        AfterImport::Move => {
            let folder = open_dir(dir)?;
            let done = subfolder(&folder, ".done")?;
            let day = subfolder(&done, today)?;
            let name = file_name(path)?;
            let moved = move_into(&parent_of(&folder, dir, path)?, &name, &day)?;
            Ok(Some(dir.join(".done").join(today).join(moved)))
        }
        AfterImport::Delete => {
            let folder = open_dir(dir)?;
            rustix::fs::unlinkat(&parent_of(&folder, dir, path)?, file_name(path)?.as_str(), rustix::fs::AtFlags::empty())?;
            Ok(None)
        }
        AfterImport::Keep => Ok(None),
    }
}

/// Moves `path` to `<dir>/.failed/` and writes `<name>.error.txt` next to it with `reason` and
/// what to do (created exclusively: an entry planted under that name is neither followed nor
/// overwritten; the text then goes to the next free `<stem>.N.<extensions>.error.txt`). Returns the new path of the file
/// and the explanation written.
pub fn quarantine(path: &Path, dir: &Path, pipeline: &str, reason: &str, dead_letters: &Path) -> io::Result<(PathBuf, String)> {
    let folder = open_dir(dir)?;
    let failed = subfolder(&folder, ".failed")?;
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
    let moved = move_into(&parent_of(&folder, dir, path)?, &file_name(path)?, &failed)?;
    let mut written = false;
    for candidate in candidates(&format!("{moved}.error.txt")).take(10_000) {
        match write_new(&failed, &candidate, &explanation) {
            Ok(()) => {
                written = true;
                break;
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    if !written {
        return Err(io::Error::other(format!("no free name for {moved}.error.txt")));
    }
    Ok((dir.join(".failed").join(moved), explanation))
}

/// The folder holding `path`: drop folder `dir` itself (`folder`), or a folder below it (a claim
/// folder, `.claimed/<instance>`), opened from `folder` one component at a time without
/// following links.
fn parent_of(folder: &OwnedFd, dir: &Path, path: &Path) -> io::Result<OwnedFd> {
    let parent = path.parent().ok_or_else(|| io::Error::other(format!("{} has no folder", path.display())))?;
    let below = parent.strip_prefix(dir).map_err(|_| io::Error::other(format!("{} is not in {}", path.display(), dir.display())))?;
    let mut current = rustix::fs::openat(folder, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    for component in below.components() {
        current = open_subdir(&current, &component.as_os_str().to_string_lossy())?;
    }
    Ok(current)
}

/// The last component of `path`, as UTF-8 or lossily.
fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))
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
        let (moved, explanation) =
            quarantine(&path, dir.path(), "docs", "bad.parquet: truncated footer", Path::new("state/dead-letters/docs.jsonl")).unwrap();
        assert_eq!(moved, dir.path().join(".failed/bad.parquet"));
        assert!(explanation.contains("truncated footer"));
        let error = std::fs::read_to_string(dir.path().join(".failed/bad.parquet.error.txt")).unwrap();
        assert!(error.contains("truncated footer"), "{error}");
        assert!(error.contains("what to do"), "{error}");
        assert!(error.contains("docs.jsonl"), "{error}");
    }

    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn prepare_makes_private_subfolders_and_refuses_planted_links() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        assert_eq!(mode_of(&dir.path().join(".done")), 0o700);
        assert_eq!(mode_of(&dir.path().join(".failed")), 0o700);

        let planted = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), planted.path().join(".failed")).unwrap();
        let error = prepare(planted.path()).unwrap_err().to_string();
        assert!(error.contains(".failed") && error.contains("link"), "{error}");
        assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "nothing was written through the link");
        let not_a_directory = tempfile::tempdir().unwrap();
        std::fs::write(not_a_directory.path().join(".done"), "a file").unwrap();
        let error = prepare(not_a_directory.path()).unwrap_err().to_string();
        assert!(error.contains(".done") && error.contains("not a directory"), "{error}");
    }

    #[test]
    fn a_setgid_drop_folder_shares_its_subfolders_with_its_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        prepare(dir.path()).unwrap();
        assert_eq!(mode_of(&dir.path().join(".failed")), 0o2750);
        std::fs::write(dir.path().join("x.csv"), "x").unwrap();
        after_success(&dir.path().join("x.csv"), dir.path(), AfterImport::Move, "d").unwrap();
        assert_eq!(mode_of(&dir.path().join(".done/d")), 0o2750, "the day's folder too");
    }

    #[test]
    fn moves_and_error_files_never_follow_or_overwrite_planted_entries() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("ledger.db");
        std::fs::write(&victim, "precious").unwrap();
        prepare(dir.path()).unwrap();
        // A planted error file that is a link to something precious, and a planted file under
        // the name the quarantined file would take.
        std::os::unix::fs::symlink(&victim, dir.path().join(".failed/x.error.txt")).unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, "junk").unwrap();
        let (moved, _) = quarantine(&path, dir.path(), "docs", "bad", Path::new("dead.jsonl")).unwrap();
        assert_eq!(moved, dir.path().join(".failed/x"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "the link was not followed");
        assert!(std::fs::read_to_string(dir.path().join(".failed/x.1.error.txt")).unwrap().contains("bad"));

        std::fs::write(dir.path().join("y.csv"), "new").unwrap();
        std::fs::create_dir_all(dir.path().join(".done/d")).unwrap();
        std::fs::write(dir.path().join(".done/d/y.csv"), "older").unwrap();
        let moved = after_success(&dir.path().join("y.csv"), dir.path(), AfterImport::Move, "d").unwrap().unwrap();
        assert_eq!(moved, dir.path().join(".done/d/y.1.csv"));
        assert_eq!(std::fs::read_to_string(dir.path().join(".done/d/y.csv")).unwrap(), "older");

        // `.done` swapped for a link at run time: the move fails, nothing lands outside.
        std::fs::rename(dir.path().join(".done"), dir.path().join("old-done")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".done")).unwrap();
        std::fs::write(dir.path().join("z.csv"), "z").unwrap();
        assert!(after_success(&dir.path().join("z.csv"), dir.path(), AfterImport::Move, "d").is_err());
        assert!(dir.path().join("z.csv").is_file(), "the file stays where it was");
        assert!(!outside.path().join("d").exists());
    }
}
