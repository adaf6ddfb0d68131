//! File operations relative to directory descriptors, for folders that others can write into
//! (drop folders): nothing is followed through a symbolic link (`O_NOFOLLOW`), nothing existing is
//! replaced (`RENAME_NOREPLACE`, `O_EXCL`). Used by the daemon's `.done/`/`.failed/` moves and
//! by the claims of shared drop folders.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, RenameFlags};

/// 0700, or 2750 when the drop folder is setgid (its group may look, not change anything).
pub(crate) fn subfolder_mode(folder: &OwnedFd) -> io::Result<Mode> {
    let stat = rustix::fs::fstat(folder)?;
    Ok(if stat.st_mode & libc::S_ISGID != 0 { Mode::from_raw_mode(0o2750) } else { Mode::from_raw_mode(0o700) })
}

/// `path` as a directory descriptor (the configured folder may itself be a link: the operator's).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// `name` inside `parent`, only if it is a directory and not a link.
pub(crate) fn open_subdir(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    rustix::fs::openat(parent, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(
        |error| match error {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                io::Error::new(io::ErrorKind::InvalidInput, "is a link or not a directory (never followed)")
            }
            error => io::Error::from(error),
        },
    )
}

/// `name` inside `parent`, created when missing (mode as [`subfolder_mode`] says for `parent`),
/// opened only if it is a directory and not a link.
pub(crate) fn subfolder(parent: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    let mode = subfolder_mode(parent)?;
    let created = match rustix::fs::mkdirat(parent, name, mode) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(error) => return Err(error.into()),
    };
    let opened = open_subdir(parent, name)?;
    if created {
        rustix::fs::fchmod(&opened, mode)?;
    }
    Ok(opened)
}

/// Creates `name` in `dir` (never following or replacing an existing entry) with `content`.
pub(crate) fn write_new(dir: &OwnedFd, name: &str, content: &str) -> io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(content.as_bytes())?;
    file.sync_all()
}

/// Renames `name` of `from` into `to`, keeping the name or adding `.1`, `.2`… before the extension
/// when it is taken (`RENAME_NOREPLACE`: never over an existing entry). Returns the name taken.
pub(crate) fn move_into(from: &OwnedFd, name: &str, to: &OwnedFd) -> io::Result<String> {
    for candidate in candidates(name).take(10_000) {
        match rustix::fs::renameat_with(from, name, to, candidate.as_str(), RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(candidate),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(io::Error::other(format!("no free name for {name}")))
}

/// `name`, then `stem.1.ext`, `stem.2.ext`…
pub(crate) fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, extension) = match name.split_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    std::iter::once(name.to_owned()).chain((1..).map(move |n| format!("{stem}.{n}{extension}")))
}
