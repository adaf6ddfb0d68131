//! Drop-folder entries as the daemon accepts them: regular files with one name, opened once.
//!
//! A drop folder is usually writable by others than the daemon (an SFTP landing directory, an
//! export job), so nothing in it is trusted by name. [`classify`] looks at an entry without
//! following links (`lstat`) and refuses symbolic links (unless `daemon.drop_folder_links =
//! "inside"` and the link leads to a regular file directly in the same folder), FIFOs, sockets,
//! devices, directories and files with more than one hard link. [`open`] opens the accepted entry
//! with `O_NOFOLLOW | O_NONBLOCK`, checks with `fstat` that it is still the regular file that
//! settled (device, inode, size, modification and change time) and pins it: hashing, parsing and
//! the identity checks after the import all use that descriptor. A refused entry is never read,
//! moved or deleted.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Fingerprint;
use crate::format::{describe_kind, open_regular, Source};
use crate::settings::LinkPolicy;

/// Why a drop-folder entry is left alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A symbolic link, and links are not followed.
    #[error("a symbolic link: drop folders do not follow links (daemon.drop_folder_links = \"inside\" allows links to files in the same folder)")]
    Link,
    /// A symbolic link that leads out of the folder (or to nothing).
    #[error("a symbolic link to {target}, which is not a file directly in the drop folder")]
    LinkOutside {
        /// Where it leads, as far as it could be resolved.
        target: String,
    },
    /// A FIFO, socket, device or directory.
    #[error("not a regular file ({kind})")]
    NotRegular {
        /// What it is.
        kind: &'static str,
    },
    /// A regular file with more names than this one: what it really is lives elsewhere.
    #[error("a file with {links} hard links: copy or move files into a drop folder instead of linking them")]
    HardLinked {
        /// Its link count.
        links: u64,
    },
}

impl Refusal {
    /// The metric label of the refusal: `symlink`, `special_file` or `hard_link`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Link | Refusal::LinkOutside { .. } => "symlink",
            Refusal::NotRegular { .. } => "special_file",
            Refusal::HardLinked { .. } => "hard_link",
        }
    }
}

/// How a look at an entry ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// A regular file the daemon may import, with its fingerprint (of the link's target for an
    /// accepted link).
    Accepted(Fingerprint),
    /// Never to be read; `seen` is the entry's own fingerprint (`lstat`), so that a refusal is
    /// reported once per version of the entry.
    Refused { refusal: Refusal, seen: Fingerprint },
    /// Gone (or unreadable metadata): nothing to do.
    Gone,
}

/// Looks at `path`, an entry directly in drop folder `dir` (canonical), without following links
/// unless `links` allows it.
pub fn classify(path: &Path, dir: &Path, links: LinkPolicy) -> Look {
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return Look::Gone };
    let seen = Fingerprint::from_metadata(&metadata);
    let refused = |refusal| Look::Refused { refusal, seen };
    if metadata.is_symlink() {
        if links == LinkPolicy::Refuse {
            return refused(Refusal::Link);
        }
        let target = match link_target_inside(path, dir) {
            Ok(target) => target,
            Err(refusal) => return refused(refusal),
        };
        let Ok(target_metadata) = std::fs::symlink_metadata(&target) else { return Look::Gone };
        return regular(&target_metadata).map_or_else(refused, Look::Accepted);
    }
    regular(&metadata).map_or_else(refused, Look::Accepted)
}

/// The fingerprint of a regular file with one name, or why not.
fn regular(metadata: &std::fs::Metadata) -> Result<Fingerprint, Refusal> {
    if !metadata.is_file() {
        return Err(Refusal::NotRegular { kind: describe_kind(&metadata.file_type()) });
    }
    if metadata.nlink() > 1 {
        return Err(Refusal::HardLinked { links: metadata.nlink() });
    }
    Ok(Fingerprint::from_metadata(metadata))
}

/// Where the link `path` leads, when that is an entry directly in `dir` (itself not a link).
fn link_target_inside(path: &Path, dir: &Path) -> Result<PathBuf, Refusal> {
    let target = std::fs::canonicalize(path).map_err(|_| Refusal::LinkOutside {
        target: std::fs::read_link(path).map(|target| target.display().to_string()).unwrap_or_default(),
    })?;
    if target.parent() != Some(dir) {
        return Err(Refusal::LinkOutside { target: target.display().to_string() });
    }
    Ok(target)
}

/// Why a ready entry could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It is (now) something the daemon does not read.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// It is not the file that settled: replaced or written since.
    #[error("it changed between settling and opening (replaced or written to); it is looked at again")]
    Changed,
    /// It could not be opened.
    #[error("cannot open it: {0}")]
    Io(#[source] io::Error),
}

/// Opens `path`, an entry of drop folder `dir`, for import: without following links (or, for an
/// accepted link, its target, itself opened without following), without blocking, and only when
/// the opened file is a regular file with one name whose fingerprint is `settled`. The source is
/// named `path`: the entry is what gets moved afterwards.
pub fn open(path: &Path, dir: &Path, links: LinkPolicy, settled: &Fingerprint) -> Result<Source, OpenError> {
    let metadata = std::fs::symlink_metadata(path).map_err(OpenError::Io)?;
    let target = if metadata.is_symlink() {
        if links == LinkPolicy::Refuse {
            return Err(Refusal::Link.into());
        }
        link_target_inside(path, dir)?
    } else {
        path.to_owned()
    };
    let file = open_regular(&target, false).map_err(|error| match error.kind() {
        io::ErrorKind::InvalidInput => match std::fs::symlink_metadata(&target) {
            Ok(metadata) if metadata.is_symlink() => OpenError::Changed,
            Ok(metadata) => OpenError::Refused(Refusal::NotRegular { kind: describe_kind(&metadata.file_type()) }),
            Err(_) => OpenError::Changed,
        },
        io::ErrorKind::NotFound => OpenError::Changed,
        _ => OpenError::Io(error),
    })?;
    let opened = file.metadata().map_err(OpenError::Io)?;
    let fingerprint = regular(&opened)?;
    if fingerprint != *settled {
        return Err(OpenError::Changed);
    }
    Ok(Source::pinned(path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        (dir, canonical)
    }

    fn accepted(look: Look) -> Fingerprint {
        match look {
            Look::Accepted(fingerprint) => fingerprint,
            other => panic!("expected an accepted file, got {other:?}"),
        }
    }

    fn refusal(look: Look) -> Refusal {
        match look {
            Look::Refused { refusal, .. } => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn links_fifos_devices_and_hard_links_are_refused() {
        let (_keep, dir) = folder();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, "secret").unwrap();
        let good = dir.join("good.csv");
        std::fs::write(&good, "id,text\n1,a\n").unwrap();
        accepted(classify(&good, &dir, LinkPolicy::Refuse));
        std::os::unix::fs::symlink(&secret, dir.join("link.csv")).unwrap();
        assert_eq!(refusal(classify(&dir.join("link.csv"), &dir, LinkPolicy::Refuse)), Refusal::Link);
        assert!(matches!(refusal(classify(&dir.join("link.csv"), &dir, LinkPolicy::Inside)), Refusal::LinkOutside { .. }));
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.csv")).unwrap();
        assert!(matches!(refusal(classify(&dir.join("zero.csv"), &dir, LinkPolicy::Inside)), Refusal::LinkOutside { .. }));
        std::fs::create_dir(dir.join("sub.csv")).unwrap();
        assert_eq!(refusal(classify(&dir.join("sub.csv"), &dir, LinkPolicy::Refuse)), Refusal::NotRegular { kind: "directory" });
        let linked = outside.path().join("linked.csv");
        std::fs::write(&linked, "x").unwrap();
        std::fs::hard_link(&linked, dir.join("hard.csv")).unwrap();
        assert_eq!(refusal(classify(&dir.join("hard.csv"), &dir, LinkPolicy::Refuse)), Refusal::HardLinked { links: 2 });
        assert_eq!(classify(&dir.join("missing.csv"), &dir, LinkPolicy::Refuse), Look::Gone);
    }

    #[test]
    fn a_link_to_a_file_in_the_same_folder_is_followed_only_when_allowed() {
        let (_keep, dir) = folder();
        let target = dir.join("real.csv");
        std::fs::write(&target, "id,text\n1,a\n").unwrap();
        let link = dir.join("alias.csv");
        std::os::unix::fs::symlink("real.csv", &link).unwrap();
        assert_eq!(refusal(classify(&link, &dir, LinkPolicy::Refuse)), Refusal::Link);
        let fingerprint = accepted(classify(&link, &dir, LinkPolicy::Inside));
        let source = open(&link, &dir, LinkPolicy::Inside, &fingerprint).unwrap();
        assert_eq!(source.name(), link);
        assert!(matches!(open(&link, &dir, LinkPolicy::Refuse, &fingerprint), Err(OpenError::Refused(Refusal::Link))));
    }

    #[test]
    fn a_file_replaced_between_settling_and_opening_is_not_opened() {
        let (_keep, dir) = folder();
        let path = dir.join("data.csv");
        std::fs::write(&path, "id,text\n1,a\n").unwrap();
        let settled = accepted(classify(&path, &dir, LinkPolicy::Refuse));
        let replacement = dir.join("other.tmp");
        std::fs::write(&replacement, "id,text\n2,b\n").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        assert!(matches!(open(&path, &dir, LinkPolicy::Refuse, &settled), Err(OpenError::Changed)));
        let outside = tempfile::tempdir().unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(outside.path(), &path).unwrap();
        assert!(matches!(open(&path, &dir, LinkPolicy::Refuse, &settled), Err(OpenError::Refused(Refusal::Link))));
        assert!(matches!(open(&dir.join("missing"), &dir, LinkPolicy::Refuse, &settled), Err(OpenError::Io(_))));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let (_keep, dir) = folder();
        let fifo = dir.join("pipe.csv");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let look = classify(&fifo, &dir, LinkPolicy::Refuse);
        assert_eq!(refusal(look), Refusal::NotRegular { kind: "FIFO" });
        let seen = Fingerprint::from_metadata(&std::fs::symlink_metadata(&fifo).unwrap());
        // Even asked to open it (swapped in after a settle), it is refused, not read.
        assert!(matches!(open(&fifo, &dir, LinkPolicy::Refuse, &seen), Err(OpenError::Refused(Refusal::NotRegular { kind: "FIFO" }))));
    }
}
