//! Group flush: the files that finished their upserts into one collection share one flush.
//!
//! A flush is the barrier before a source file is moved or deleted, and on Milvus 2.3 it takes
//! seconds whatever its size: Milvus completes it only once the segment assignments of the last
//! writes expire (`dataCoord.segment.assignmentExpiration`, 2 s by default; measured 2.5–3.0 s
//! right after a write and 0.5–1.0 s when the last write was 3 s earlier, `scripts/milvus-costs.py`),
//! so paying it per file makes many small files crawl. Here the first file to ask opens a *group* for its collection;
//! every file that asks before the group's flush starts joins it; one flush then answers them all.
//! Per collection, one flush runs at a time, and flushes start at most once per
//! `milvus.flush_window`: the first after a quiet spell starts at once (one big file pays no
//! window); under a steady stream of files the next flush starts when the running one returned
//! and gathers every file that finished meanwhile. Each flush costs Milvus about half a second of
//! CPU whatever its size (it seals segments, writes their binlogs and loads them; Milvus 2.3.5,
//! `scripts/milvus-costs.py`), CPU that a two-core host takes from the model.
//!
//! The invariant holds for every member: a file joins only after Milvus acknowledged all its
//! upserts, the group closes before its flush request is sent, so the flush covers every member's
//! rows, and a member hears "flushed" only after the flush returned. A failed flush fails the whole
//! group with the same (shared) error; each member's import then stops as that error's fault says.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{MilvusSink, SinkError};
use crate::telemetry::Telemetry;

/// How a group's flush ended, as its members see it.
pub type FlushResult = Result<(), Arc<SinkError>>;

/// What a group flush runs: Milvus's flush of one collection (a fake in unit tests).
pub trait FlushCollection: Send + Sync + 'static {
    /// Flushes `collection`: rows acknowledged before the call are durable when it returns.
    fn flush_collection(&self, collection: &str) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl FlushCollection for MilvusSink {
    fn flush_collection(&self, collection: &str) -> impl Future<Output = Result<(), SinkError>> + Send {
        self.flush(collection)
    }
}

/// Shares flushes among the files of each collection. Cheap to clone.
pub struct GroupFlusher<F: FlushCollection = MilvusSink> {
    sink: Arc<F>,
    telemetry: Arc<Telemetry>,
    window: Duration,
    collections: Arc<Mutex<HashMap<String, Arc<CollectionFlushes>>>>,
}

/// One collection's flushes.
#[derive(Default)]
struct CollectionFlushes {
    /// The group that will be flushed next, while it still takes members.
    open: Mutex<Option<Group>>,
    /// When the next flush may start (a window after the last one started); held by the leader
    /// that waits for it and while its flush runs, so leaders take their turns in order and one
    /// flush of the collection runs at a time.
    next_start: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// The files waiting for one flush.
struct Group {
    members: usize,
    result: watch::Sender<Option<FlushResult>>,
}

impl<F: FlushCollection> Clone for GroupFlusher<F> {
    fn clone(&self) -> Self {
        Self {
            sink: Arc::clone(&self.sink),
            telemetry: Arc::clone(&self.telemetry),
            window: self.window,
            collections: Arc::clone(&self.collections),
        }
    }
}

impl<F: FlushCollection> GroupFlusher<F> {
    /// A flusher for `sink` that flushes each collection at most once per `window`.
    pub fn new(sink: Arc<F>, telemetry: Arc<Telemetry>, window: Duration) -> Self {
        Self { sink, telemetry, window, collections: Arc::default() }
    }

    /// Returns once a flush of `collection` that started after this call returned: every row
    /// Milvus acknowledged before the call is then flushed. Call it only after the caller's
    /// upserts were acknowledged.
    pub async fn flush(&self, collection: &str) -> FlushResult {
        let flushes = Arc::clone(self.collections.lock().expect("flusher lock").entry(collection.to_owned()).or_default());
        let (mut result, lead) = {
            let mut open = flushes.open.lock().expect("flush group lock");
            match open.as_mut() {
                Some(group) => {
                    group.members += 1;
                    (group.result.subscribe(), false)
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    *open = Some(Group { members: 1, result: sender });
                    (receiver, true)
                }
            }
        };
        if lead {
            // A task of its own: the group is flushed even if this caller is cancelled.
            tokio::spawn(self.clone().lead(collection.to_owned(), flushes));
        }
        let _awaiting = Awaiting::new(&self.telemetry);
        let outcome = result.wait_for(Option::is_some).await.map(|result| result.clone().expect("waited for Some"));
        outcome.unwrap_or_else(|_| {
            Err(Arc::new(SinkError::Response { operation: "flush", message: "the flush task ended without an answer".to_owned() }))
        })
    }

    /// Waits until the collection's previous flush returned and its window passed, closes the
    /// open group and flushes it.
    async fn lead(self, collection: String, flushes: Arc<CollectionFlushes>) {
        let mut next_start = flushes.next_start.lock().await;
        if let Some(when) = *next_start {
            tokio::time::sleep_until(when).await;
        }
        if crate::failpoint::enabled() {
            // A pause here keeps the group open (files keep joining) and blocks its own thread,
            // not one of the runtime's.
            let _ = tokio::task::spawn_blocking(|| crate::failpoint::hit("group_flush")).await;
        }
        *next_start = Some(tokio::time::Instant::now() + self.window);
        let group = flushes.open.lock().expect("flush group lock").take().expect("the leader's group is open until it takes it");
        let started = tokio::time::Instant::now();
        let result = self.sink.flush_collection(&collection).await.map_err(Arc::new);
        drop(next_start);
        match &result {
            Ok(()) => {
                tracing::info!(
                    collection,
                    files = group.members,
                    seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
                    "collection flushed"
                );
                self.telemetry.flushed(&collection, group.members);
            }
            Err(error) => tracing::warn!(collection, files = group.members, %error, "collection flush failed"),
        }
        let _ = group.result.send(Some(result));
    }
}

/// Counts a file as waiting for a flush for as long as it lives (also when the wait is dropped).
struct Awaiting<'a>(&'a Telemetry);

impl<'a> Awaiting<'a> {
    fn new(telemetry: &'a Telemetry) -> Self {
        telemetry.awaiting_flush(true);
        Self(telemetry)
    }
}

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.0.awaiting_flush(false);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;
    use tokio::time::Instant;

    use super::*;

    /// Records which collection each flush was for and when it started; each flush waits for a
    /// permit of `gate`.
    struct FakeMilvus {
        started: Mutex<Vec<(String, Instant)>>,
        gate: Semaphore,
        fail: bool,
    }

    impl FakeMilvus {
        fn new(open: bool, fail: bool) -> Arc<Self> {
            let gate = Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 });
            Arc::new(Self { started: Mutex::new(Vec::new()), gate, fail })
        }

        fn flushes(&self) -> Vec<(String, Instant)> {
            self.started.lock().unwrap().clone()
        }

        fn flushes_of(&self, collection: &str) -> Vec<Instant> {
            self.flushes().into_iter().filter(|(name, _)| name == collection).map(|(_, when)| when).collect()
        }
    }

    impl FlushCollection for FakeMilvus {
        async fn flush_collection(&self, collection: &str) -> Result<(), SinkError> {
            self.started.lock().unwrap().push((collection.to_owned(), Instant::now()));
            self.gate.acquire().await.unwrap().forget();
            if self.fail {
                return Err(SinkError::Response { operation: "flush", message: "refused".to_owned() });
            }
            Ok(())
        }
    }

    const WINDOW: Duration = Duration::from_secs(1);

    fn flusher(milvus: &Arc<FakeMilvus>) -> GroupFlusher<FakeMilvus> {
        GroupFlusher::new(Arc::clone(milvus), Arc::new(Telemetry::new()), WINDOW)
    }

    /// Lets the spawned tasks run, a millisecond of the paused clock at a time, until `flushes`
    /// flushes started.
    async fn until_started(milvus: &FakeMilvus, flushes: usize) {
        for _ in 0..1_000_000 {
            if milvus.flushes().len() >= flushes {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{flushes} flushes never started");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_file_is_flushed_at_once() {
        let milvus = FakeMilvus::new(true, false);
        let start = Instant::now();
        let flusher = flusher(&milvus);
        flusher.flush("docs").await.unwrap();
        assert_eq!(milvus.flushes_of("docs"), [start], "no window is waited before the first flush");
        // The flush returned at once; the next still waits out the window.
        flusher.flush("docs").await.unwrap();
        assert_eq!(milvus.flushes_of("docs"), [start, start + WINDOW]);
    }

    #[tokio::test(start_paused = true)]
    async fn files_finishing_during_a_flush_share_the_next_one_once_it_returned_and_a_window_passed() {
        let milvus = FakeMilvus::new(false, false);
        let flusher = flusher(&milvus);
        let first = tokio::spawn({
            let flusher = flusher.clone();
            async move { flusher.flush("docs").await }
        });
        until_started(&milvus, 1).await;
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let flusher = flusher.clone();
                tokio::spawn(async move { flusher.flush("docs").await })
            })
            .collect();
        let other_collection = tokio::spawn({
            let flusher = flusher.clone();
            async move { flusher.flush("other").await }
        });
        // Another collection's flush starts at once; this one's next flush waits for the running
        // one to return, however many windows pass.
        until_started(&milvus, 2).await;
        tokio::time::sleep(WINDOW * 5).await;
        assert_eq!(milvus.flushes_of("other").len(), 1, "another collection does not wait for this one");
        assert_eq!(milvus.flushes_of("docs").len(), 1, "one flush of a collection at a time");
        assert!(!first.is_finished(), "a file hears nothing before its flush returned");
        let returned = Instant::now();
        milvus.gate.add_permits(Semaphore::MAX_PERMITS >> 4);
        first.await.unwrap().unwrap();
        until_started(&milvus, 3).await;
        let docs = milvus.flushes_of("docs");
        assert_eq!(docs.len(), 2, "the five later files share one flush: {docs:?}");
        assert!(docs[1] >= returned, "it started once the first returned");
        other_collection.await.unwrap().unwrap();
        for member in waiting {
            member.await.unwrap().unwrap();
        }
        assert_eq!(milvus.flushes().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flush_fails_every_member_and_the_next_group_tries_again() {
        let milvus = FakeMilvus::new(true, true);
        let flusher = flusher(&milvus);
        let members: Vec<_> = (0..3)
            .map(|_| {
                let flusher = flusher.clone();
                tokio::spawn(async move { flusher.flush("docs").await })
            })
            .collect();
        for member in members {
            let error = member.await.unwrap().unwrap_err();
            assert!(error.to_string().contains("refused"), "{error}");
        }
        assert!(flusher.flush("docs").await.is_err());
        assert_eq!(milvus.flushes().len(), 2, "one failed flush for the group, one for the next");
    }
}
