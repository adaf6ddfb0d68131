//! **discover**: which files to import, and when.
//!
//! Two sources feed the daemon's bounded queue of [`ReadyFile`]s:
//! - [`watch`]: the pipelines' drop folders. File-system events (notify) are hints; a periodic full
//!   rescan is the truth. A file is ready when it was renamed in, or its size and modification time
//!   held still for `daemon.settle`.
//! - [`schedule`]: cron schedules (seconds field first) that expand each pipeline's `paths` globs.
//!
//! A full queue is back-pressure: the drop-folder scanner keeps the file pending and offers it
//! again on its next tick; a schedule run waits for room.

pub mod claims;
pub mod entry;
pub mod schedule;
pub mod watch;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::oneshot;

/// Where a ready file was found; decides what happens to it after the import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Dropped into this drop folder: moved to `.done/` or `.failed/` afterwards (per `after_import`).
    DropFolder {
        /// The drop folder.
        dir: PathBuf,
    },
    /// Matched by a schedule's `paths`: left where it is.
    Schedule,
}

/// How the import of a [`ReadyFile`] ended, as reported to whoever waits for it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileResult {
    /// Rows were imported; `rows_unchanged` of the file's rows were already in Milvus.
    Imported {
        /// Rows written.
        rows_imported: u64,
        /// Rows skipped as unchanged.
        rows_unchanged: u64,
    },
    /// The same content was imported before.
    AlreadyImported,
    /// The import failed with this reason.
    Failed(String),
    /// Not imported now, and not the file's failure: a drop-folder entry refused when opened, or
    /// one that changed after it settled (the scanner looks at it again).
    Skipped(String),
    /// Shutdown interrupted the import; it resumes on the next start.
    Interrupted,
}

/// Device and inode, size, modification time and inode change time of a file: when they hold
/// still, its writer is done; when they are what they were, it is the same file with the same
/// content. The change time cannot be set by tools that restore modification times (`cp -p`,
/// `rsync -t`), so a rewrite of the same size with the old mtime still shows; the inode shows a
/// file replaced by another under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    inode: (u64, u64),
    size: u64,
    modified: Option<SystemTime>,
    changed: (i64, i64),
}

impl Fingerprint {
    /// The fingerprint of the file `path` leads to (links followed), or `None` when it is gone or
    /// not a regular file.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file)?;
        Some(Self::from_metadata(&metadata))
    }

    /// The fingerprint in `metadata`.
    pub(crate) fn from_metadata(metadata: &std::fs::Metadata) -> Self {
        Self {
            inode: (metadata.dev(), metadata.ino()),
            size: metadata.len(),
            modified: metadata.modified().ok(),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

/// A file ready to be imported by a pipeline.
#[derive(Debug)]
pub struct ReadyFile {
    /// The pipeline's name.
    pub pipeline: String,
    pub path: PathBuf,
    /// Where it was found.
    pub origin: Origin,
    /// What the file looked like when it was found ready (drop folders): the import opens it
    /// only if it still is that file.
    pub settled: Option<Fingerprint>,
    /// Told how the import ended (schedules wait for their files).
    pub done: Option<oneshot::Sender<FileResult>>,
}

/// Names the scanner never imports: dotfiles and files still being written by common tools.
pub fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || [".tmp", ".part", ".crdownload"].iter().any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_hidden_files_are_ignored() {
        for name in [".hidden.csv", "a.csv.tmp", "b.parquet.part", "c.json.crdownload", ".done"] {
            assert!(is_ignored(name), "{name}");
        }
        for name in ["a.csv", "report.tmp.csv", "data.jsonl.gz"] {
            assert!(!is_ignored(name), "{name}");
        }
    }
}
