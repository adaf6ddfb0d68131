//! Test-only failure points, in the style of Meilisearch's `maybe_fail`: crash tests abort the
//! process at an exact step instead of relying on timing.
//!
//! Compiled in only with the `failpoints` feature (`make test` enables it); without it [`hit`] is
//! an empty inline function. With the feature, `VECDROP_FAILPOINT` arms one point:
//! - `NAME` aborts the process the first time `hit("NAME")` runs, `NAME@N` the N-th time;
//! - `NAME:TEXT` aborts every time point `NAME` is hit for a file whose path contains `TEXT`
//!   ([`hit_for`]): a file that kills the process at every start.
//!
//! With `VECDROP_FAILPOINT_PAUSE=DIR` as well, the point pauses instead of aborting: it creates
//! `DIR/reached` and waits until `DIR/resume` exists, so that a test can change the world (say,
//! append to the file being imported) at an exact step, whatever the machine's speed.
//!
//! `VECDROP_MODEL_PACE` changes the model's speed, to show that no test depends on it:
//! `slow:MS` sleeps MS milliseconds after every model batch; `instant` skips the model after its
//! load-time probe and returns deterministic unit vectors derived from the token ids (tests that
//! compare vector values cannot pass in that mode; everything else must).
//!
//! Names: `after_upsert` (Milvus acknowledged, ledger not yet written), `ledger_before_write`,
//! `ledger_before_flush`, `after_commit` (a batch committed), `before_finish` (last commit done,
//! file not yet marked imported), `group_flush` (a collection's flush is due; its group of files
//! still takes members).

/// Aborts the process if the `VECDROP_FAILPOINT` environment variable names this point.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    hit_for(name, "");
}

/// Like [`hit`], for a point reached while importing the file at `path`: also matches
/// `NAME:TEXT` when `path` contains `TEXT`.
#[cfg(feature = "failpoints")]
pub fn hit_for(name: &str, path: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    enum Spec {
        Nth(String, u64),
        ForFile(String, String),
    }
    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let spec = SPEC.get_or_init(|| {
        let value = std::env::var("VECDROP_FAILPOINT").ok()?;
        if let Some((point, text)) = value.split_once(':') {
            return Some(Spec::ForFile(point.to_owned(), text.to_owned()));
        }
        match value.split_once('@') {
            Some((point, count)) => Some(Spec::Nth(point.to_owned(), count.parse().unwrap_or(1))),
            None => Some(Spec::Nth(value, 1)),
        }
    });
    let fire = match spec {
        Some(Spec::Nth(point, count)) => point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *count,
        Some(Spec::ForFile(point, text)) => point == name && !path.is_empty() && path.contains(text.as_str()),
        None => false,
    };
    if !fire {
        return;
    }
    if let Some(dir) = std::env::var_os("VECDROP_FAILPOINT_PAUSE").map(std::path::PathBuf::from) {
        eprintln!("failpoint {name} hit ({path}): pausing until {} exists", dir.join("resume").display());
        std::fs::write(dir.join("reached"), name).expect("failpoint pause directory is writable");
        while !dir.join("resume").exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        return;
    }
    eprintln!("failpoint {name} hit ({path}): aborting");
    std::process::abort();
}

/// How the model's speed is changed for a test run (`VECDROP_MODEL_PACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelPace {
    /// The model runs as it is.
    Natural,
    /// Each model batch takes this much longer.
    Slowed(std::time::Duration),
    /// The model is not run; vectors are derived from the token ids.
    Instant,
}

/// The pace `VECDROP_MODEL_PACE` asks for (read once); [`ModelPace::Natural`] without the feature.
pub fn model_pace() -> ModelPace {
    #[cfg(feature = "failpoints")]
    {
        static PACE: std::sync::OnceLock<ModelPace> = std::sync::OnceLock::new();
        *PACE.get_or_init(|| match std::env::var("VECDROP_MODEL_PACE").ok().as_deref() {
            None | Some("") => ModelPace::Natural,
            Some("instant") => ModelPace::Instant,
            Some(other) => match other.strip_prefix("slow:").and_then(|millis| millis.parse().ok()) {
                Some(millis) => ModelPace::Slowed(std::time::Duration::from_millis(millis)),
                None => panic!("VECDROP_MODEL_PACE={other}: expected `slow:MILLISECONDS` or `instant`"),
            },
        })
    }
    #[cfg(not(feature = "failpoints"))]
    ModelPace::Natural
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit_for(_name: &str, _path: &str) {}

/// Whether failure points are compiled in.
pub fn enabled() -> bool {
    cfg!(feature = "failpoints")
}
