//! Drop folders: notify events are hints, the periodic rescan is the truth.
//!
//! The scanner keeps *candidates*: files seen in a drop folder, with the size and modification
//! time of their last look and since when those held still. Events (and rescans) add candidates;
//! a short poll re-examines them, and a candidate becomes ready when it was renamed into the
//! folder, or its size and modification time held still for `settle`. A ready file is offered to
//! the queue; once accepted it is *handled* until its size or modification time change (a file
//! kept in place with `after_import = "keep"` is not offered again and again). An event-channel
//! overflow or a watcher error triggers a full rescan. Only regular files with one name directly in
//! the folder count ([`super::entry`]): subfolders (`.done/`, `.failed/`) and [`super::is_ignored`]
//! names are skipped silently; symbolic links, FIFOs, sockets, devices and hard-linked files are
//! refused — logged and counted once per version of the entry, never read, moved or deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::claims::Claims;
use super::entry::{classify, Look, Refusal};
use super::{is_ignored, Fingerprint, Origin, ReadyFile};
use crate::settings::LinkPolicy;

/// File events buffered between notify's thread and the scanner; beyond it, a rescan catches up.
const EVENT_BUFFER: usize = 4096;

/// A drop folder and the pipeline it feeds.
#[derive(Debug, Clone)]
pub struct DropFolder {
    /// The pipeline's name.
    pub pipeline: String,
    /// The folder (absolute or relative to the working directory).
    pub dir: PathBuf,
}

/// How the scanner times its work.
#[derive(Debug, Clone)]
pub struct ScanTiming {
    /// Size and modification time must hold still this long.
    pub settle: Duration,
    /// Full rescan interval.
    pub rescan_interval: Duration,
    /// Whether symbolic links to files in the same folder are followed.
    pub links: LinkPolicy,
    /// Shared drop folders: ready files are claimed before they are offered ([`super::claims`]).
    pub claims: Option<Claims>,
}

/// Told about every refused entry, once per version of it: `(pipeline, path, why)`.
pub type RefusalSink = Box<dyn Fn(&str, &Path, &Refusal) + Send + Sync>;

/// What the scanner knows about one file.
#[derive(Debug, Clone)]
struct Candidate {
    folder: usize,
    fingerprint: Fingerprint,
    still_since: Instant,
    renamed_in: bool,
}

/// The scanner's state, separate from its I/O loop so that the readiness rules are testable.
struct Scanner {
    folders: Vec<DropFolder>,
    timing: ScanTiming,
    candidates: HashMap<PathBuf, Candidate>,
    handled: HashMap<PathBuf, Fingerprint>,
    /// Entries refused, with the version (`lstat` fingerprint) that was reported.
    refused: HashMap<PathBuf, Fingerprint>,
    on_refusal: RefusalSink,
}

/// Creates the drop folders (canonicalised), watches them and offers ready files to `queue` until `cancel`.
/// Files already present are found by the first scan.
pub fn spawn(
    folders: Vec<DropFolder>,
    timing: ScanTiming,
    queue: mpsc::Sender<ReadyFile>,
    on_refusal: RefusalSink,
    cancel: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut folders = folders;
    for folder in &mut folders {
        std::fs::create_dir_all(&folder.dir)?;
        // Watched in canonical form, so that event paths compare equal to it.
        folder.dir = std::fs::canonicalize(&folder.dir)?;
    }
    let (events_sender, events) = mpsc::channel::<notify::Result<Event>>(EVENT_BUFFER);
    let overflow_sender = events_sender.clone();
    let mut watcher = notify::recommended_watcher(move |event| {
        if let Err(TrySendError::Full(_)) = events_sender.try_send(event) {
            // The scanner is behind: make sure it rescans.
            let _ = overflow_sender.try_send(Err(notify::Error::generic("event buffer overflow")));
        }
    })
    .map_err(std::io::Error::other)?;
    for folder in &folders {
        watcher.watch(&folder.dir, RecursiveMode::NonRecursive).map_err(std::io::Error::other)?;
    }
    let scanner = Scanner { folders, timing, candidates: HashMap::new(), handled: HashMap::new(), refused: HashMap::new(), on_refusal };
    Ok(tokio::spawn(scanner.run(watcher, events, queue, cancel)))
}

impl Scanner {
    async fn run(
        mut self,
        _watcher: notify::RecommendedWatcher, // kept alive for as long as the loop runs
        mut events: mpsc::Receiver<notify::Result<Event>>,
        queue: mpsc::Sender<ReadyFile>,
        cancel: CancellationToken,
    ) {
        let mut rescan = tokio::time::interval(self.timing.rescan_interval);
        let mut poll = tokio::time::interval(poll_interval(self.timing.settle));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Cancel-safe: interval ticks and `recv` lose nothing when another branch wins; the
            // scanner's state lives in `self`, not in the futures.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = rescan.tick() => self.rescan(Instant::now()),
                _ = poll.tick() => {
                    if !self.offer_ready(&queue, Instant::now()) {
                        return; // the daemon stopped taking files
                    }
                }
                event = events.recv() => match event {
                    Some(Ok(event)) => self.note_event(&event, Instant::now()),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "drop-folder watcher: rescanning");
                        self.rescan(Instant::now());
                    }
                    None => return,
                },
            }
        }
    }

    /// Lists every folder: new files become candidates, vanished ones are forgotten.
    fn rescan(&mut self, now: Instant) {
        let mut present = Vec::new();
        let mut claimed = Vec::new();
        for (index, folder) in self.folders.iter().enumerate() {
            if let Some(claims) = &self.timing.claims {
                // Stale claims of stopped instances come back first, so this listing sees them;
                // this instance's own claims (a restart) are ready at once.
                if let Err(error) = claims.return_stale(&folder.dir, std::time::SystemTime::now()) {
                    tracing::warn!(dir = %folder.dir.display(), %error, "cannot return stale claims");
                }
                match claims.own_files(&folder.dir) {
                    Ok(files) => claimed.extend(files.into_iter().map(|path| (index, path))),
                    Err(error) => tracing::warn!(dir = %folder.dir.display(), %error, "cannot read this instance's claims"),
                }
            }
            let entries = match std::fs::read_dir(&folder.dir) {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::warn!(dir = %folder.dir.display(), %error, "drop folder cannot be read");
                    continue;
                }
            };
            present.extend(entries.flatten().map(|entry| (index, entry.path())));
        }
        let seen: std::collections::HashSet<&PathBuf> = present.iter().chain(&claimed).map(|(_, path)| path).collect();
        self.handled.retain(|path, _| seen.contains(path));
        self.candidates.retain(|path, _| seen.contains(path));
        self.refused.retain(|path, _| seen.contains(path));
        for (index, path) in present {
            self.consider(index, path, false, now);
        }
        for (index, path) in claimed {
            self.consider(index, path, true, now);
        }
    }

    /// Adds the paths an event names as candidates; a rename into the folder makes them ready
    /// without waiting for `settle`.
    fn note_event(&mut self, event: &Event, now: Instant) {
        if event.need_rescan() {
            self.rescan(now);
            return;
        }
        let renamed_in = matches!(event.kind, EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)));
        let paths: &[PathBuf] = match event.kind {
            // `Both` carries [from, to]: only the destination is in a watched folder.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1..).unwrap_or(&[]),
            EventKind::Create(_) | EventKind::Modify(_) => &event.paths,
            _ => &[],
        };
        for path in paths {
            if let Some(index) = self.folder_of(path) {
                self.consider(index, path.clone(), renamed_in, now);
            }
        }
    }

    fn folder_of(&self, path: &Path) -> Option<usize> {
        let parent = path.parent()?;
        self.folders.iter().position(|folder| folder.dir == parent)
    }

    fn consider(&mut self, folder: usize, path: PathBuf, renamed_in: bool, now: Instant) {
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else { return };
        if is_ignored(name) {
            return;
        }
        let fingerprint = match classify(&path, &self.folders[folder].dir, self.timing.links) {
            Look::Accepted(fingerprint) => fingerprint,
            Look::Refused { refusal, seen } => return self.refuse(folder, path, &refusal, seen),
            Look::Gone => return,
        };
        if self.handled.get(&path) == Some(&fingerprint) {
            return;
        }
        match self.candidates.get_mut(&path) {
            Some(candidate) if candidate.fingerprint == fingerprint => candidate.renamed_in |= renamed_in,
            // New, or a new version: its wait starts now, and only its own arrival counts.
            _ => {
                self.candidates.insert(path, Candidate { folder, fingerprint, still_since: now, renamed_in });
            }
        }
    }

    /// The ready file `path` as this instance holds it: unchanged without shared folders or when
    /// claimed already; else claimed (renamed into this instance's claims, with its fingerprint
    /// after the rename). `None` when another instance took it first or the claim failed; the
    /// candidate is dropped either way.
    fn claimed(&mut self, path: &Path, candidate: &Candidate) -> Option<(PathBuf, Fingerprint)> {
        let Some(claims) = &self.timing.claims else { return Some((path.to_owned(), candidate.fingerprint)) };
        let dir = &self.folders[candidate.folder].dir;
        if path.parent() == Some(claims.own_dir(dir).as_path()) {
            return Some((path.to_owned(), candidate.fingerprint));
        }
        self.candidates.remove(path);
        let name = path.file_name()?.to_str()?;
        let claimed = match claims.claim(dir, name) {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return None, // another instance holds it
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "cannot claim the file");
                return None;
            }
        };
        match classify(&claimed, dir, self.timing.links) {
            Look::Accepted(fingerprint) => Some((claimed, fingerprint)),
            _ => None,
        }
    }

    /// Reports a refused entry unless this version of it was reported already.
    fn refuse(&mut self, folder: usize, path: PathBuf, refusal: &Refusal, seen: Fingerprint) {
        self.candidates.remove(&path);
        if self.refused.get(&path) == Some(&seen) {
            return;
        }
        (self.on_refusal)(&self.folders[folder].pipeline, &path, refusal);
        self.refused.insert(path, seen);
    }

    /// Re-examines the candidates and offers the ready ones; `false` once the queue is closed.
    /// `now` is passed in (the clock is the caller's), so tests step time instead of sleeping.
    fn offer_ready(&mut self, queue: &mpsc::Sender<ReadyFile>, now: Instant) -> bool {
        let mut ready = Vec::new();
        let mut refused = Vec::new();
        let (folders, links) = (&self.folders, self.timing.links);
        self.candidates.retain(|path, candidate| match classify(path, &folders[candidate.folder].dir, links) {
            Look::Gone => false,
            Look::Refused { refusal, seen } => {
                refused.push((candidate.folder, path.clone(), refusal, seen));
                false
            }
            Look::Accepted(fingerprint) if fingerprint != candidate.fingerprint => {
                // Changed since the last look (written after a rename, say): wait for it to settle.
                candidate.fingerprint = fingerprint;
                candidate.still_since = now;
                candidate.renamed_in = false;
                true
            }
            Look::Accepted(_) => {
                if candidate.renamed_in || now.duration_since(candidate.still_since) >= self.timing.settle {
                    ready.push(path.clone());
                }
                true
            }
        });
        for (folder, path, refusal, seen) in refused {
            self.refuse(folder, path, &refusal, seen);
        }
        ready.sort();
        for path in ready {
            let mut candidate = self.candidates[&path].clone();
            let Some((path, fingerprint)) = self.claimed(&path, &candidate) else { continue };
            candidate.fingerprint = fingerprint;
            let folder = &self.folders[candidate.folder];
            let file = ReadyFile {
                pipeline: folder.pipeline.clone(),
                path: path.clone(),
                origin: Origin::DropFolder { dir: folder.dir.clone() },
                settled: Some(candidate.fingerprint),
                done: None,
            };
            match queue.try_send(file) {
                Ok(()) => {
                    tracing::info!(pipeline = %folder.pipeline, file = %path.display(), "file ready");
                    self.candidates.remove(&path);
                    self.handled.insert(path, candidate.fingerprint);
                }
                Err(TrySendError::Full(_)) => {
                    // Back-pressure: offered again on the next tick (under its claimed name, if claimed).
                    self.candidates.insert(path, Candidate { renamed_in: true, ..candidate });
                    break;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// How often candidates are re-examined: a fraction of `settle`, between 50 ms and 1 s.
fn poll_interval(settle: Duration) -> Duration {
    (settle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(dir: &Path, settle: Duration) -> Scanner {
        scanner_reporting(dir, settle, Box::new(|_: &str, _: &Path, _: &Refusal| {}))
    }

    fn scanner_reporting(dir: &Path, settle: Duration, on_refusal: RefusalSink) -> Scanner {
        Scanner {
            folders: vec![DropFolder { pipeline: "docs".into(), dir: std::fs::canonicalize(dir).unwrap() }],
            timing: ScanTiming { settle, rescan_interval: Duration::from_secs(30), links: LinkPolicy::Refuse, claims: None },
            candidates: HashMap::new(),
            handled: HashMap::new(),
            refused: HashMap::new(),
            on_refusal,
        }
    }

    #[test]
    fn links_and_special_files_are_refused_once_per_version_and_never_offered() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(dir.path().join("good.csv"), "id,text\n1,a\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link.csv")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.csv")).unwrap();
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&reports);
        let mut scanner = scanner_reporting(
            dir.path(),
            Duration::ZERO,
            Box::new(move |pipeline: &str, path: &Path, refusal: &Refusal| {
                sink.lock().unwrap().push(format!("{pipeline} {} {}", path.file_name().unwrap().to_string_lossy(), refusal.label()));
            }),
        );
        let (sender, mut receiver) = mpsc::channel(8);
        let start = Instant::now();
        for round in 0..3 {
            scanner.rescan(start);
            assert!(scanner.offer_ready(&sender, start + Duration::from_secs(round)));
        }
        assert_eq!(drain(&mut receiver), ["good.csv"]);
        let mut reported = reports.lock().unwrap().clone();
        reported.sort();
        assert_eq!(reported, ["docs link.csv symlink", "docs zero.csv symlink"], "each refusal is reported once");
        assert_eq!(std::fs::read_to_string(outside.path().join("secret")).unwrap(), "s");
    }

    fn drain(receiver: &mut mpsc::Receiver<ReadyFile>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(file) = receiver.try_recv() {
            names.push(file.path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names
    }

    #[test]
    fn a_file_is_ready_once_it_held_still_for_settle_and_is_offered_once() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, mut receiver) = mpsc::channel(8);
        let mut scanner = scanner(dir.path(), Duration::from_millis(300));
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        std::fs::write(dir.path().join("a.csv"), "id,text\n").unwrap();
        std::fs::write(dir.path().join("a.csv.part"), "partial").unwrap();
        std::fs::create_dir(dir.path().join(".done")).unwrap();
        scanner.rescan(at(0));
        assert!(scanner.offer_ready(&queue, at(0)));
        assert!(scanner.offer_ready(&queue, at(299)));
        assert!(drain(&mut receiver).is_empty(), "not settled yet");
        assert!(scanner.offer_ready(&queue, at(300)));
        assert_eq!(drain(&mut receiver), ["a.csv"]);
        scanner.rescan(at(400));
        assert!(scanner.offer_ready(&queue, at(800)));
        assert!(drain(&mut receiver).is_empty(), "an unchanged handled file is not offered again");
    }

    #[test]
    fn a_growing_file_waits_and_a_changed_handled_file_is_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        let (queue, mut receiver) = mpsc::channel(8);
        let mut scanner = scanner(dir.path(), Duration::from_millis(300));
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        std::fs::write(&path, "id,text\n").unwrap();
        scanner.rescan(at(0));
        // Written every 200 ms: each change (a new size) restarts the settle wait.
        for row in 0..4u64 {
            std::fs::write(&path, format!("id,text\n{}", "1,x\n".repeat(row as usize + 1))).unwrap();
            assert!(scanner.offer_ready(&queue, at(200 * (row + 1))));
        }
        assert!(drain(&mut receiver).is_empty(), "still being written");
        scanner.offer_ready(&queue, at(800 + 299));
        assert!(drain(&mut receiver).is_empty(), "held still for less than settle");
        scanner.offer_ready(&queue, at(800 + 300));
        assert_eq!(drain(&mut receiver), ["a.csv"]);
        std::fs::write(&path, "id,text\n9,new version\n").unwrap();
        scanner.rescan(at(2000));
        scanner.offer_ready(&queue, at(2300));
        assert_eq!(drain(&mut receiver), ["a.csv"], "a new version is offered");
    }

    #[test]
    fn a_renamed_in_file_is_ready_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, mut receiver) = mpsc::channel(8);
        let mut scanner = scanner(dir.path(), Duration::from_secs(60));
        let path = dir.path().join("b.jsonl");
        std::fs::write(&path, "{}\n").unwrap();
        let event = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To))).add_path(path);
        scanner.note_event(&event, Instant::now());
        scanner.offer_ready(&queue, Instant::now());
        assert_eq!(drain(&mut receiver), ["b.jsonl"]);
    }

    #[test]
    fn a_full_queue_keeps_files_pending_until_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, mut receiver) = mpsc::channel(1);
        let mut scanner = scanner(dir.path(), Duration::from_millis(0));
        for name in ["a.csv", "b.csv", "c.csv"] {
            std::fs::write(dir.path().join(name), "id,text\n").unwrap();
        }
        let now = Instant::now();
        scanner.rescan(now);
        scanner.offer_ready(&queue, now);
        assert_eq!(drain(&mut receiver), ["a.csv"]);
        scanner.offer_ready(&queue, now);
        assert_eq!(drain(&mut receiver), ["b.csv"]);
        scanner.offer_ready(&queue, now);
        assert_eq!(drain(&mut receiver), ["c.csv"]);
        drop(receiver);
        std::fs::write(dir.path().join("d.csv"), "id,text\n").unwrap();
        scanner.rescan(now);
        assert!(!scanner.offer_ready(&queue, now), "a closed queue stops the scanner");
    }

    /// Model-based test (after Vector's file-source tests): random sequences of writes, renames
    /// into the folder, deletions, lost or delivered events, rescans, clock steps and offers to a
    /// queue with or without room, checked against what a drop folder promises:
    /// - safety: a file is offered only while it exists, under a name that is not ignored, and
    ///   only once its current version held still for `settle` (or arrived by a rename the
    ///   scanner saw); no version is offered twice;
    /// - liveness: once writers stop, a rescan and `settle` later every file's current version
    ///   has been offered exactly once.
    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{HashMap, HashSet};

        const SETTLE_MS: u64 = 300;
        const NAMES: [&str; 4] = ["a.csv", "b.jsonl", "c.parquet", "d.csv.part"];

        #[derive(Debug, Clone)]
        enum Step {
            /// Writes a new version in place (a new length every time, so it always differs).
            Write {
                file: usize,
                event: bool,
            },
            /// Writes a new version elsewhere and renames it into the folder.
            RenameIn {
                file: usize,
                event: bool,
            },
            Delete {
                file: usize,
            },
            Advance {
                millis: u64,
            },
            Rescan,
            Offer {
                room: bool,
            },
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                3 => (0..NAMES.len(), any::<bool>()).prop_map(|(file, event)| Step::Write { file, event }),
                2 => (0..NAMES.len(), any::<bool>()).prop_map(|(file, event)| Step::RenameIn { file, event }),
                1 => (0..NAMES.len()).prop_map(|file| Step::Delete { file }),
                3 => (0..2 * SETTLE_MS).prop_map(|millis| Step::Advance { millis }),
                1 => Just(Step::Rescan),
                4 => any::<bool>().prop_map(|room| Step::Offer { room }),
            ]
        }

        /// What the test knows about a file's current version.
        #[derive(Debug, Clone, Copy)]
        struct Version {
            id: u64,
            written_at: u64,
            /// Renamed in, and the scanner was told.
            announced_rename: bool,
        }

        struct World {
            dir: tempfile::TempDir,
            staging: tempfile::TempDir,
            start: Instant,
            clock: u64,
            next_id: u64,
            versions: HashMap<usize, Version>,
            offered: HashSet<u64>,
        }

        impl World {
            fn path(&self, file: usize) -> PathBuf {
                self.dir.path().join(NAMES[file])
            }

            fn new_version(&mut self, file: usize, announced_rename: bool) -> (u64, String) {
                self.next_id += 1;
                let id = self.next_id;
                self.versions.insert(file, Version { id, written_at: self.clock, announced_rename });
                (id, "x".repeat(id as usize))
            }

            /// Takes what the scanner offered and checks each offer against the model.
            fn check_offers(&mut self, receiver: &mut mpsc::Receiver<ReadyFile>) -> Result<(), TestCaseError> {
                while let Ok(file) = receiver.try_recv() {
                    let name = file.path.file_name().unwrap().to_str().unwrap();
                    prop_assert!(!is_ignored(name), "ignored name offered: {name}");
                    let index = NAMES.iter().position(|candidate| *candidate == name).unwrap();
                    let version = self.versions.get(&index).copied();
                    prop_assert!(version.is_some(), "{name} offered after it was deleted");
                    let version = version.unwrap();
                    let size = std::fs::metadata(&file.path).unwrap().len();
                    prop_assert_eq!(size, version.id, "{} offered, but not its current version", name);
                    prop_assert!(
                        version.announced_rename || self.clock - version.written_at >= SETTLE_MS,
                        "{} offered {} ms after it was written",
                        name,
                        self.clock - version.written_at
                    );
                    prop_assert!(self.offered.insert(version.id), "{} version {} offered twice", name, version.id);
                }
                Ok(())
            }
        }

        fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
            let dir = tempfile::tempdir().unwrap();
            let mut scanner = scanner(dir.path(), Duration::from_millis(SETTLE_MS));
            let mut world = World {
                dir,
                staging: tempfile::tempdir().unwrap(),
                start: Instant::now(),
                clock: 0,
                next_id: 0,
                versions: HashMap::new(),
                offered: HashSet::new(),
            };
            let (queue, mut receiver) = mpsc::channel(64);
            let (full_queue, _full_receiver) = mpsc::channel(1);
            full_queue
                .try_send(ReadyFile { pipeline: "x".into(), path: "x".into(), origin: Origin::Schedule, settled: None, done: None })
                .unwrap();
            for step in steps {
                let now = world.start + Duration::from_millis(world.clock);
                match step {
                    Step::Write { file, event } => {
                        let (_, content) = world.new_version(file, false);
                        std::fs::write(world.path(file), content).unwrap();
                        if event {
                            let kind = EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Content));
                            scanner.note_event(&Event::new(kind).add_path(world.path(file)), now);
                        }
                    }
                    Step::RenameIn { file, event } => {
                        let (id, content) = world.new_version(file, event);
                        let staged = world.staging.path().join(id.to_string());
                        std::fs::write(&staged, content).unwrap();
                        std::fs::rename(&staged, world.path(file)).unwrap();
                        if event {
                            let kind = EventKind::Modify(ModifyKind::Name(RenameMode::To));
                            scanner.note_event(&Event::new(kind).add_path(world.path(file)), now);
                        }
                    }
                    Step::Delete { file } => {
                        if world.versions.remove(&file).is_some() {
                            std::fs::remove_file(world.path(file)).unwrap();
                        }
                    }
                    Step::Advance { millis } => world.clock += millis,
                    Step::Rescan => scanner.rescan(now),
                    Step::Offer { room: true } => prop_assert!(scanner.offer_ready(&queue, now)),
                    Step::Offer { room: false } => prop_assert!(scanner.offer_ready(&full_queue, now)),
                }
                world.check_offers(&mut receiver)?;
            }
            // Writers stop: a rescan finds everything, and `settle` later all is offered.
            for advance in [0, SETTLE_MS] {
                world.clock += advance;
                let now = world.start + Duration::from_millis(world.clock);
                scanner.rescan(now);
                prop_assert!(scanner.offer_ready(&queue, now));
                world.check_offers(&mut receiver)?;
            }
            for (&file, version) in &world.versions {
                if !is_ignored(NAMES[file]) {
                    prop_assert!(world.offered.contains(&version.id), "{} (version {}) was never offered", NAMES[file], version.id);
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            #[test]
            fn the_scanner_keeps_the_drop_folder_promises(steps in proptest::collection::vec(step(), 1..40)) {
                run(steps)?;
            }
        }
    }
}
