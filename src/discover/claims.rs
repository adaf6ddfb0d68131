//! Several daemons, one drop folder: a file is imported by the instance that claimed it.
//!
//! With `daemon.shared_drop_folders`, a daemon takes a ready file by renaming it into
//! `<dir>/.claimed/<instance>/` (`renameat2` with `RENAME_NOREPLACE`, atomic on one file system,
//! NFS included): of several instances that try, exactly one succeeds, the others find the name
//! gone and leave it. The claimed file is imported from there and moved on to `.done/` or
//! `.failed/` as usual. Each instance touches `.claimed/<instance>/.alive` on every rescan; the
//! files of an instance whose `.alive` is older than `daemon.claim_stale_after` (it stopped, or its
//! host died) are renamed back into the folder, where any instance claims them again. A restarted
//! instance finds its own claims and resumes them. Keys are deterministic, so a file imported twice
//! after a claim was returned too early is still exact.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{Mode, OFlags, RenameFlags};

use crate::dirs::{move_into, open_dir, open_subdir, subfolder};

/// The folder of all claims, inside a drop folder.
pub const CLAIMS_DIR: &str = ".claimed";

/// The heartbeat file inside an instance's claim folder.
const ALIVE: &str = ".alive";

/// One instance's claims on shared drop folders.
#[derive(Debug, Clone)]
pub struct Claims {
    instance: String,
    stale_after: Duration,
}

impl Claims {
    /// Claims made as `instance` (a name unique among the daemons sharing the folders); the
    /// claims of others are returned once their heartbeat is older than `stale_after`.
    pub fn new(instance: &str, stale_after: Duration) -> Self {
        Self { instance: instance.to_owned(), stale_after }
    }

    /// `<dir>/.claimed/<instance>`.
    pub fn own_dir(&self, dir: &Path) -> PathBuf {
        dir.join(CLAIMS_DIR).join(&self.instance)
    }

    /// Takes `name` of drop folder `dir` for this instance: `Some(new path)` when the rename
    /// succeeded, `None` when the name is gone (another instance took it first).
    pub fn claim(&self, dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
        let folder = open_dir(dir)?;
        let own = self.open_own(&folder)?;
        match rustix::fs::renameat_with(&folder, name, &own, name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(Some(self.own_dir(dir).join(name))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::EXIST) => {
                Err(io::Error::other(format!("{name} is already among this instance's claims; it is imported from there")))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// This instance's claimed files in `dir` (a restart resumes them), and a fresh heartbeat.
    pub fn own_files(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let folder = open_dir(dir)?;
        let own = self.open_own(&folder)?;
        touch_alive(&own)?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.own_dir(dir))?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.file_name().is_some_and(|name| name != ALIVE))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Renames the files of every other instance whose heartbeat is older than `stale_after`
    /// (at `now`) back into `dir`; returns their new paths.
    pub fn return_stale(&self, dir: &Path, now: SystemTime) -> io::Result<Vec<PathBuf>> {
        let folder = open_dir(dir)?;
        let claims = subfolder(&folder, CLAIMS_DIR)?;
        let mut returned = Vec::new();
        for entry in std::fs::read_dir(dir.join(CLAIMS_DIR))?.flatten() {
            let instance = entry.file_name().to_string_lossy().into_owned();
            if instance == self.instance || !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let alive = std::fs::symlink_metadata(entry.path().join(ALIVE)).and_then(|metadata| metadata.modified());
            let age = alive.map(|at| now.duration_since(at).unwrap_or_default()).unwrap_or(Duration::MAX);
            if age < self.stale_after {
                continue;
            }
            let theirs = open_subdir(&claims, &instance)?;
            for file in std::fs::read_dir(entry.path())?.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                if name == ALIVE {
                    continue;
                }
                match move_into(&theirs, &name, &folder) {
                    Ok(back) => {
                        tracing::warn!(instance = %instance, file = %dir.join(&back).display(), "returned the claim of a stopped instance");
                        returned.push(dir.join(back));
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {} // its owner came back and moved it
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(returned)
    }

    fn open_own(&self, folder: &OwnedFd) -> io::Result<OwnedFd> {
        let claims = subfolder(folder, CLAIMS_DIR)?;
        subfolder(&claims, &self.instance)
    }
}

fn touch_alive(own: &OwnedFd) -> io::Result<()> {
    let fd = rustix::fs::openat(
        own,
        ALIVE,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, crate::timestamp::now_rfc3339().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_instances_one_claims_a_file_and_the_other_finds_it_gone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "x").unwrap();
        let (first, second) = (Claims::new("host-a", Duration::from_secs(60)), Claims::new("host-b", Duration::from_secs(60)));
        let claimed = first.claim(dir.path(), "a.csv").unwrap().unwrap();
        assert_eq!(claimed, dir.path().join(".claimed/host-a/a.csv"));
        assert_eq!(std::fs::read_to_string(&claimed).unwrap(), "x");
        assert_eq!(second.claim(dir.path(), "a.csv").unwrap(), None);
        assert_eq!(first.own_files(dir.path()).unwrap(), [claimed]);
        assert!(second.own_files(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn claims_of_a_stopped_instance_are_returned_and_a_live_one_s_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "a").unwrap();
        std::fs::write(dir.path().join("b.csv"), "b").unwrap();
        let (gone, alive, me) = (
            Claims::new("gone", Duration::from_secs(300)),
            Claims::new("alive", Duration::from_secs(300)),
            Claims::new("me", Duration::from_secs(300)),
        );
        gone.claim(dir.path(), "a.csv").unwrap().unwrap();
        alive.claim(dir.path(), "b.csv").unwrap().unwrap();
        gone.own_files(dir.path()).unwrap();
        alive.own_files(dir.path()).unwrap();
        // `a.csv` is dropped again meanwhile: the returned one takes the next free name.
        std::fs::write(dir.path().join("a.csv"), "new a").unwrap();
        let later = SystemTime::now() + Duration::from_secs(200);
        assert!(me.return_stale(dir.path(), later).unwrap().is_empty(), "both heartbeats are recent");
        // Only `alive` keeps beating.
        filetime_back(&dir.path().join(".claimed/gone/.alive"), Duration::from_secs(600));
        let returned = me.return_stale(dir.path(), SystemTime::now()).unwrap();
        assert_eq!(returned, [dir.path().join("a.1.csv")]);
        assert_eq!(std::fs::read_to_string(dir.path().join("a.1.csv")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(dir.path().join("a.csv")).unwrap(), "new a");
        assert!(dir.path().join(".claimed/alive/b.csv").is_file(), "a live instance keeps its claims");
    }

    /// Sets `path`'s modification time `age` into the past.
    fn filetime_back(path: &Path, age: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }
}
