//! Test-only failure points, in the style of Meilisearch's `maybe_fail`: crash tests abort the
//! process at an exact step instead of relying on timing.
//!
//! Compiled in only with the `failpoints` feature (`make test` enables it); without it [`hit`] is
//! an empty inline function. With the feature, `VECDROP_FAILPOINT=NAME` aborts the process the
//! first time `hit("NAME")` runs, `NAME@N` the N-th time. Names: `after_upsert` (Milvus
//! acknowledged, ledger not yet written), `ledger_before_write`, `ledger_before_flush`,
//! `before_finish` (last commit done, file not yet marked imported).

/// Aborts the process if the `VECDROP_FAILPOINT` environment variable names this point.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let spec = SPEC.get_or_init(|| {
        let value = std::env::var("VECDROP_FAILPOINT").ok()?;
        match value.split_once('@') {
            Some((point, count)) => Some((point.to_owned(), count.parse().unwrap_or(1))),
            None => Some((value, 1)),
        }
    });
    if let Some((point, count)) = spec {
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *count {
            eprintln!("failpoint {name}@{count} hit: aborting");
            std::process::abort();
        }
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Whether failure points are compiled in.
pub fn enabled() -> bool {
    cfg!(feature = "failpoints")
}
