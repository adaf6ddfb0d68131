//! Fast, still exact, unchanged-row lookups: a bounded-staleness query plus what this process
//! wrote since.
//!
//! Before a batch is embedded, the stored row hashes of its keys are looked up (an unchanged row
//! is neither embedded nor written). A strongly consistent query waits until Milvus has caught up
//! with "now" — on Milvus 2.3 a time tick, 200–300 ms, and ~17 ms of its CPU per query
//! (`scripts/milvus-costs.py`) — which made every ten-row file wait that long for its lookup. A
//! bounded-staleness query is answered at once (~3.5 ms, ~3 ms of CPU) but may miss writes of the last
//! `gracefulTime` (Milvus's `common.gracefulTime`, 5 s by default, `milvus.graceful_time` here).
//!
//! What it may miss is known: writes this process made in that time. [`RecentWrites`] keeps the
//! row hashes this process wrote, per collection, for [`RecentWrites::window`] (twice the staleness
//! plus a second) and lays them over the bounded answer. Strong queries are used instead when the
//! overlay cannot be trusted:
//! - right after start (writes of an earlier process may still be invisible);
//! - after a write whose outcome is unknown (a failed upsert may have landed) or a delete, for one
//!   window;
//! - while a collection's overlay is full ([`MAX_RECENT_KEYS`]).
//!
//! Writes by *other* processes to the same keys within the staleness are not seen; such writes
//! race with this process anyway (two importers of one key have no order). A row that looks
//! changed when it is not is merely embedded and written again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered per collection; past this the collection's lookups are strong for a window.
pub const MAX_RECENT_KEYS: usize = 200_000;

/// How a lookup must query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPlan {
    /// Strong consistency; the overlay is not needed.
    Strong,
    /// Bounded staleness, then [`RecentWrites::overlay`].
    Bounded,
}

impl ReadPlan {
    /// `strong` or `bounded` (metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPlan::Strong => "strong",
            ReadPlan::Bounded => "bounded",
        }
    }
}

/// Row hashes this process wrote recently, per collection (module doc).
#[derive(Debug)]
pub struct RecentWrites {
    window: Duration,
    /// Before this, every lookup is strong (writes of an earlier process may still be invisible).
    strong_until: Instant,
    collections: Mutex<HashMap<String, CollectionWrites>>,
}

#[derive(Debug, Default)]
struct CollectionWrites {
    /// Key → (row hash, when written).
    hashes: HashMap<String, (i64, Instant)>,
    /// Keys in the order written, for expiry.
    order: VecDeque<(Instant, String)>,
    /// Lookups are strong until then (unknown outcome, delete, full overlay).
    strong_until: Option<Instant>,
}

impl RecentWrites {
    /// For a server whose bounded staleness is `graceful_time`, created at `now` (the process's
    /// first writes). A `graceful_time` of zero makes every lookup strong.
    pub fn new(graceful_time: Duration, now: Instant) -> Self {
        let window = if graceful_time.is_zero() { Duration::MAX } else { graceful_time * 2 + Duration::from_secs(1) };
        Self { window, strong_until: after(now, window), collections: Mutex::default() }
    }

    /// Moves the start `by` into the past, ending the start-up window of strong lookups early
    /// (tests of the bounded path).
    #[doc(hidden)]
    pub fn backdate(&mut self, by: Duration) {
        self.strong_until = self.strong_until.checked_sub(by).unwrap_or(self.strong_until);
    }

    /// How long a write is remembered (and how long lookups stay strong after start or after an
    /// unknown outcome).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How a lookup of `collection` at `now` must query.
    pub fn plan(&self, collection: &str, now: Instant) -> ReadPlan {
        if now < self.strong_until {
            return ReadPlan::Strong;
        }
        let mut collections = self.collections.lock().expect("recent writes lock");
        let Some(writes) = collections.get_mut(collection) else { return ReadPlan::Bounded };
        writes.expire(now, self.window);
        match writes.strong_until {
            Some(until) if now < until => ReadPlan::Strong,
            _ => ReadPlan::Bounded,
        }
    }

    /// Notes rows Milvus acknowledged at `now`: `(primary key, row hash)`.
    pub fn wrote<'a>(&self, collection: &str, rows: impl IntoIterator<Item = (&'a str, i64)>, now: Instant) {
        let mut collections = self.collections.lock().expect("recent writes lock");
        let writes = collections.entry(collection.to_owned()).or_default();
        writes.expire(now, self.window);
        for (key, hash) in rows {
            if writes.hashes.len() >= MAX_RECENT_KEYS && !writes.hashes.contains_key(key) {
                writes.strong_until = Some(later(writes.strong_until, after(now, self.window)));
                continue;
            }
            writes.hashes.insert(key.to_owned(), (hash, now));
            writes.order.push_back((now, key.to_owned()));
        }
    }

    /// Notes a write to `collection` whose effect is not known row by row (a failed upsert that
    /// may have landed, a delete): its lookups are strong for a window from `now`.
    pub fn wrote_unknown(&self, collection: &str, now: Instant) {
        let mut collections = self.collections.lock().expect("recent writes lock");
        let writes = collections.entry(collection.to_owned()).or_default();
        writes.strong_until = Some(later(writes.strong_until, after(now, self.window)));
    }

    /// Lays the hashes this process wrote for `keys` over a bounded-staleness answer.
    pub fn overlay(&self, collection: &str, keys: &[String], stored: &mut HashMap<String, i64>) {
        let collections = self.collections.lock().expect("recent writes lock");
        let Some(writes) = collections.get(collection) else { return };
        for key in keys {
            if let Some(&(hash, _)) = writes.hashes.get(key) {
                stored.insert(key.clone(), hash);
            }
        }
    }
}

impl CollectionWrites {
    /// Forgets writes older than `window` (Milvus's bounded reads see them by then).
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((written, _)) = self.order.front() {
            if now.saturating_duration_since(*written) < window {
                break;
            }
            let (written, key) = self.order.pop_front().expect("front exists");
            // A later write of the same key keeps its entry.
            if self.hashes.get(&key).is_some_and(|&(_, at)| at == written) {
                self.hashes.remove(&key);
            }
        }
    }
}

/// `now + window`, or a century ahead for an unbounded window.
fn after(now: Instant, window: Duration) -> Instant {
    now.checked_add(window).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

fn later(current: Option<Instant>, candidate: Instant) -> Instant {
    current.map_or(candidate, |current| current.max(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn lookups_are_strong_until_earlier_processes_writes_are_visible() {
        let start = Instant::now();
        let recent = RecentWrites::new(GRACE, start);
        assert_eq!(recent.window(), Duration::from_secs(11));
        assert_eq!(recent.plan("c", start), ReadPlan::Strong);
        assert_eq!(recent.plan("c", start + Duration::from_secs(10)), ReadPlan::Strong);
        assert_eq!(recent.plan("c", start + Duration::from_secs(11)), ReadPlan::Bounded);
    }

    #[test]
    fn own_writes_overlay_a_stale_answer_until_they_expire() {
        let start = Instant::now();
        let recent = RecentWrites::new(GRACE, start);
        let written = start + Duration::from_secs(20);
        recent.wrote("c", [("a", 2), ("b", 3)], written);
        // A stale answer still shows the old hash of `a` and nothing for `b`.
        let mut stored = HashMap::from([("a".to_owned(), 1), ("z".to_owned(), 9)]);
        recent.overlay("c", &keys(&["a", "b", "z"]), &mut stored);
        assert_eq!(stored, HashMap::from([("a".to_owned(), 2), ("b".to_owned(), 3), ("z".to_owned(), 9)]));
        // Another collection's lookups are not touched.
        let mut other = HashMap::new();
        recent.overlay("d", &keys(&["a"]), &mut other);
        assert!(other.is_empty());
        // After the window Milvus shows them itself; the overlay forgets them.
        assert_eq!(recent.plan("c", written + Duration::from_secs(11)), ReadPlan::Bounded);
        let mut late = HashMap::new();
        recent.overlay("c", &keys(&["a", "b"]), &mut late);
        assert!(late.is_empty(), "{late:?}");
    }

    #[test]
    fn a_rewrite_keeps_the_newer_entry_when_the_older_expires() {
        let start = Instant::now();
        let recent = RecentWrites::new(GRACE, start);
        let first = start + Duration::from_secs(20);
        recent.wrote("c", [("a", 1)], first);
        recent.wrote("c", [("a", 2)], first + Duration::from_secs(6));
        recent.plan("c", first + Duration::from_secs(12)); // expires the first write only
        let mut stored = HashMap::new();
        recent.overlay("c", &keys(&["a"]), &mut stored);
        assert_eq!(stored.get("a"), Some(&2));
    }

    #[test]
    fn an_unknown_outcome_or_delete_makes_lookups_strong_for_a_window() {
        let start = Instant::now();
        let recent = RecentWrites::new(GRACE, start);
        let failed = start + Duration::from_secs(30);
        recent.wrote_unknown("c", failed);
        assert_eq!(recent.plan("c", failed + Duration::from_secs(5)), ReadPlan::Strong);
        assert_eq!(recent.plan("other", failed + Duration::from_secs(5)), ReadPlan::Bounded);
        assert_eq!(recent.plan("c", failed + Duration::from_secs(11)), ReadPlan::Bounded);
    }

    #[test]
    fn zero_staleness_means_every_lookup_is_strong() {
        let start = Instant::now();
        let recent = RecentWrites::new(Duration::ZERO, start);
        assert_eq!(recent.plan("c", start + Duration::from_secs(86_400 * 365)), ReadPlan::Strong);
    }

    #[test]
    fn a_full_overlay_falls_back_to_strong_lookups() {
        let start = Instant::now();
        let recent = RecentWrites::new(GRACE, start);
        let now = start + Duration::from_secs(20);
        let names: Vec<String> = (0..=MAX_RECENT_KEYS).map(|number| number.to_string()).collect();
        recent.wrote("c", names.iter().map(|name| (name.as_str(), 1)), now);
        assert_eq!(recent.plan("c", now), ReadPlan::Strong);
        assert_eq!(recent.plan("c", now + Duration::from_secs(11)), ReadPlan::Bounded, "strong until the overlay drained");
    }
}
