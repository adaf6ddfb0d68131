//! Batch shapes by measurement: which inference batch gives the most texts per second on this
//! host.
//!
//! The best batch depends on the host more than on the model: a small batch pays ONNX Runtime's
//! fixed cost per run too often, a big one spills the activations out of the CPU's caches. Hosts
//! differ (a Zen 4 with AVX-512 and a large cache won with 8,192-token batches; a Zen 3 with AVX2
//! loses 5–10 % there), so the budget is measured, not assumed:
//!
//! - [`measure`] runs batches of growing size (a ladder, [`ladder`]) of synthetic sequences whose
//!   lengths vary like a sorted window of real texts ([`batch_lengths`]: bigger batches pad more),
//!   two timed runs per rung, and stops when the next rung would take the calibration over its
//!   model-time budget or throughput has clearly passed its peak. Rates count real word pieces;
//!   a rung's padded tokens per run is the budget it stands for.
//! - [`choose`] takes the largest rung within 1 % of the most tokens per second (a measurement
//!   on a quiet host; during an import other work interrupts the model, and fewer, bigger runs
//!   lose less to that); its tokens are the token budget and its texts the batch size.
//! - [`ShapeCache`] keeps the result in the state directory under a [`CalibrationKey`] (CPU model,
//!   threads, device, runtime library, model identity): a daemon restart costs nothing, a new host
//!   or model measures again.
//!
//! Configured `embedding.batch_tokens` / `max_batch_texts` always win over a measurement.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Device;

/// Word pieces per synthetic calibration sequence on average (a short sentence); rungs are named
/// by `texts × CALIBRATION_TOKENS`.
pub const CALIBRATION_TOKENS: usize = 32;
/// The calibration window: this many synthetic lengths, drawn evenly from
/// [`SHORTEST_SEQUENCE`, `LONGEST_SEQUENCE`] and sorted as `plan_batches` sorts a window of real
/// texts. A rung of N texts runs the N lengths in the middle of the window, so a bigger batch spans
/// more lengths and pads more, as it does on real texts (uniform sequences hid that: a 64-text
/// batch within 3 % of the best on them was 5–7 % behind on the bench corpus in four runs).
const WINDOW_TEXTS: usize = 512;
/// Shortest synthetic sequence, in word pieces.
const SHORTEST_SEQUENCE: usize = 16;
/// Longest synthetic sequence, in word pieces.
pub const LONGEST_SEQUENCE: usize = 64;

/// The lengths (word pieces, longest first) of a calibration run of `texts` sequences: the middle
/// of the sorted window.
pub fn batch_lengths(texts: usize) -> Vec<usize> {
    let span = LONGEST_SEQUENCE - SHORTEST_SEQUENCE;
    // Evenly spread, longest first (a fixed pattern: every host measures the same runs).
    let window: Vec<usize> = (0..WINDOW_TEXTS).map(|index| LONGEST_SEQUENCE - index * span / (WINDOW_TEXTS - 1)).collect();
    let texts = texts.clamp(1, WINDOW_TEXTS);
    let start = (WINDOW_TEXTS - texts) / 2;
    window[start..start + texts].to_vec()
}
/// The calibration stops before a rung that would take its model time past this.
pub const CALIBRATION_BUDGET: Duration = Duration::from_millis(700);
/// Rungs this close to the fastest count as equally fast; the largest of them is chosen (fewer,
/// bigger runs lose less when reading, upserts and Milvus interrupt the model's threads). Tight:
/// real texts vary in length, so a bigger batch pads more than the synthetic sequences show
/// (measured on a Zen 5 host: 64-text batches 3 % behind the best synthetic rung were 5–7 % behind
/// on real texts).
pub const EQUALLY_FAST: f64 = 0.99;
/// Timed runs per rung; the fastest counts (one run is at the mercy of whatever else the host
/// did in that moment).
pub const RUNS_PER_RUNG: usize = 2;
/// Rungs measured whatever the budget (the smallest shapes cost milliseconds).
const MIN_RUNGS: usize = 3;
/// A rung this far below the best so far is past the peak…
const PAST_PEAK: f64 = 0.90;
/// …and two such rungs in a row end the ladder.
const PAST_PEAK_RUNGS: usize = 2;

/// A batch budget for the model: `batch × longest ≤ batch_tokens`, `batch ≤ max_batch_texts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShape {
    /// Upper bound on `batch size × longest sequence` of one run.
    pub batch_tokens: usize,
    /// Upper bound on texts in one run.
    pub max_batch_texts: usize,
}

/// Where the shape in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeSource {
    /// `embedding.batch_tokens` and `max_batch_texts` were both set.
    Configured,
    /// Measured at this load.
    Calibrated,
    /// Measured earlier on this host for this model, read from the state directory.
    Cached,
    /// The device's fixed default (no calibration asked for).
    DeviceDefault,
}

/// One measured rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapePoint {
    /// Texts in the run.
    pub texts: usize,
    /// Word pieces in the run (`texts × CALIBRATION_TOKENS`).
    pub tokens: usize,
    /// Seconds the run took.
    pub seconds: f64,
    /// `tokens / seconds`.
    pub tokens_per_second: f64,
}

/// What identifies a host and model for which a measurement holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalibrationKey {
    /// `model name` of `/proc/cpuinfo` (or `unknown`).
    pub cpu: String,
    /// ONNX Runtime intra-op threads in use.
    pub threads: usize,
    /// `cpu` or `cuda`.
    pub device: String,
    /// The ONNX Runtime library loaded.
    pub runtime: PathBuf,
    /// The model identity (`dir:precision:max_tokens`).
    pub model: String,
}

impl CalibrationKey {
    /// The key for this host (CPU model read from `/proc/cpuinfo`).
    pub fn for_this_host(threads: usize, device: Device, runtime: &Path, model: &str) -> Self {
        Self {
            cpu: cpu_model(),
            threads,
            device: match device {
                Device::Cpu => "cpu",
                Device::Cuda => "cuda",
            }
            .to_owned(),
            runtime: runtime.to_owned(),
            model: model.to_owned(),
        }
    }
}

/// A finished measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Host and model it holds for.
    pub key: CalibrationKey,
    /// Every rung measured, smallest first.
    pub points: Vec<ShapePoint>,
    /// The shape chosen from them.
    pub shape: BatchShape,
    /// Model seconds the measurement took.
    pub model_seconds: f64,
    /// When it was measured (RFC 3339).
    pub measured_at: String,
}

/// The shape in force and how it was chosen: shown by `vecdrop check`, `/status` and the bench.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeChoice {
    /// `batch_tokens` / `max_batch_texts` in force.
    pub shape: BatchShape,
    /// Where it came from.
    pub source: ShapeSource,
    /// The measurement behind it (calibrated or cached).
    pub calibration: Option<Calibration>,
}

impl ShapeChoice {
    /// One line for logs and `vecdrop check`, e.g. `2048 tokens / 64 texts per run (calibrated:
    /// 6104 tokens/s, 0.42 s of model time)`.
    pub fn describe(&self) -> String {
        let source = match self.source {
            ShapeSource::Configured => "configured".to_owned(),
            ShapeSource::DeviceDefault => "device default".to_owned(),
            ShapeSource::Calibrated | ShapeSource::Cached => {
                let calibration = self.calibration.as_ref();
                let best = calibration.and_then(|calibration| best_point(&calibration.points));
                format!(
                    "{} {}: {:.0} tokens/s at the best of {} shapes, {:.2} s of model time",
                    if self.source == ShapeSource::Cached { "cached, measured" } else { "calibrated" },
                    calibration.map_or("", |calibration| calibration.measured_at.as_str()),
                    best.map_or(0.0, |point| point.tokens_per_second),
                    calibration.map_or(0, |calibration| calibration.points.len()),
                    calibration.map_or(0.0, |calibration| calibration.model_seconds),
                )
            }
        };
        format!("{} tokens / {} texts per run ({source})", self.shape.batch_tokens, self.shape.max_batch_texts)
    }
}

/// Tokens per run of each rung for `device`, smallest first: powers of two from 8 sequences up
/// to the device's largest useful batch.
pub fn ladder(device: Device) -> Vec<usize> {
    let (smallest, largest) = match device {
        Device::Cpu => (8 * CALIBRATION_TOKENS, 8192),
        Device::Cuda => (32 * CALIBRATION_TOKENS, 65_536),
    };
    std::iter::successors(Some(smallest), |tokens| Some(tokens * 2)).take_while(|&tokens| tokens <= largest).collect()
}

/// Measures the rungs of `ladder` (nominal tokens per run, `texts × CALIBRATION_TOKENS`) with
/// `run`, which runs one batch of synthetic sequences of the given lengths ([`batch_lengths`],
/// padded to the longest by the model) and returns how long it took; each rung is run
/// [`RUNS_PER_RUNG`] times and its fastest run counts. A point's `tokens` is the padded size of its
/// batch (what `batch_tokens` bounds) and its rate counts real word pieces only. Stops before a rung whose projected time
/// (at the last rung's rate, if slower than the best) would take the total past `budget` (after
/// [`MIN_RUNGS`]), and after two rungs in a row well below the best. Returns the points and the
/// model time spent.
pub fn measure<E>(
    ladder: &[usize],
    budget: Duration,
    mut run: impl FnMut(&[usize]) -> Result<Duration, E>,
) -> Result<(Vec<ShapePoint>, f64), E> {
    let mut points: Vec<ShapePoint> = Vec::new();
    let mut spent = 0.0;
    let mut below_peak = 0;
    for &tokens in ladder {
        let best = best_point(&points).map_or(0.0, |point| point.tokens_per_second);
        // Projected at the slower of the best and the last rate: bigger rungs tend to run slower.
        let rate = points.last().map_or(best, |last| last.tokens_per_second.min(best));
        let lengths = batch_lengths((tokens / CALIBRATION_TOKENS).max(1));
        let real: usize = lengths.iter().sum();
        if points.len() >= MIN_RUNGS && rate > 0.0 && spent + (RUNS_PER_RUNG * real) as f64 / rate > budget.as_secs_f64() {
            break;
        }
        let mut seconds = f64::INFINITY;
        for _ in 0..RUNS_PER_RUNG {
            let took = run(&lengths)?.as_secs_f64().max(1e-9);
            spent += took;
            seconds = seconds.min(took);
        }
        let padded = lengths.len() * lengths.first().copied().unwrap_or(0);
        let point = ShapePoint { texts: lengths.len(), tokens: padded, seconds, tokens_per_second: real as f64 / seconds };
        below_peak = if best > 0.0 && point.tokens_per_second < best * PAST_PEAK { below_peak + 1 } else { 0 };
        points.push(point);
        if below_peak >= PAST_PEAK_RUNGS {
            break;
        }
    }
    Ok((points, spent))
}

/// The shape of the largest rung within [`EQUALLY_FAST`] of the fastest; a run of `max_tokens`
/// (one longest text) always fits.
pub fn choose(points: &[ShapePoint], max_tokens: usize) -> Option<BatchShape> {
    let fastest = best_point(points)?.tokens_per_second;
    let chosen = points.iter().filter(|point| point.tokens_per_second >= fastest * EQUALLY_FAST).max_by_key(|point| point.tokens)?;
    Some(BatchShape { batch_tokens: chosen.tokens.max(max_tokens), max_batch_texts: chosen.texts.max(1) })
}

fn best_point(points: &[ShapePoint]) -> Option<&ShapePoint> {
    points.iter().max_by(|left, right| left.tokens_per_second.total_cmp(&right.tokens_per_second))
}

/// Measurements kept in a JSON file of the state directory, one per [`CalibrationKey`].
#[derive(Debug, Clone)]
pub struct ShapeCache {
    path: PathBuf,
}

/// At most this many measurements are kept (hosts × models × precisions an installation sees).
const CACHED_CALIBRATIONS: usize = 16;

impl ShapeCache {
    /// The cache file `embedding-shapes.json` in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self { path: state_dir.join("embedding-shapes.json") }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The measurement for `key`, if one was kept. An unreadable or foreign file counts as empty
    /// (it is a cache: the worst case is one more calibration).
    pub fn get(&self, key: &CalibrationKey) -> Option<Calibration> {
        self.read().into_iter().find(|calibration| &calibration.key == key)
    }

    /// Keeps `calibration`, replacing one of the same key; written atomically (temporary file and
    /// rename), so a crash leaves the old file or the new one.
    pub fn put(&self, calibration: &Calibration) -> std::io::Result<()> {
        let mut kept = self.read();
        kept.retain(|existing| existing.key != calibration.key);
        kept.insert(0, calibration.clone());
        kept.truncate(CACHED_CALIBRATIONS);
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = self.path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec_pretty(&kept).expect("calibrations serialise"))?;
        std::fs::rename(&temporary, &self.path)
    }

    fn read(&self) -> Vec<Calibration> {
        std::fs::read(&self.path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }
}

/// The CPU's `model name` from `/proc/cpuinfo`, or `unknown`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose run costs `overhead` per run plus a per-token cost that grows past `cache`
    /// tokens per run (a host whose caches hold that much).
    fn host(overhead: f64, cache: usize) -> impl FnMut(&[usize]) -> Result<Duration, ()> {
        move |lengths| {
            let tokens = lengths.len() * lengths[0];
            let per_token = if tokens > cache { 1.5e-4 } else { 1e-4 };
            Ok(Duration::from_secs_f64(overhead + tokens as f64 * per_token))
        }
    }

    #[test]
    fn the_ladder_doubles_from_eight_sequences_to_the_device_limit() {
        assert_eq!(ladder(Device::Cpu), vec![256, 512, 1024, 2048, 4096, 8192]);
        let cuda = ladder(Device::Cuda);
        assert_eq!((cuda[0], *cuda.last().unwrap()), (1024, 65_536));
    }

    #[test]
    fn the_fastest_rung_wins_between_overhead_and_cache_spill() {
        let (points, _) = measure(&ladder(Device::Cpu), Duration::from_secs(60), host(0.01, 1400)).unwrap();
        let shape = choose(&points, 256).unwrap();
        assert_eq!(shape, BatchShape { batch_tokens: 32 * batch_lengths(32)[0], max_batch_texts: 32 }, "{points:?}");
        // Past the peak twice in a row (the 64- and 128-text rungs): the 256-text rung is not run.
        assert_eq!(points.last().unwrap().texts, 128, "{points:?}");
    }

    #[test]
    fn the_budget_stops_the_ladder_but_not_before_three_rungs() {
        // Each padded token costs 1 ms: the first three rungs alone take over 2 s.
        let cost = |lengths: &[usize]| (lengths.len() * lengths[0]) as f64 * 1e-3;
        let slow = |lengths: &[usize]| Ok::<_, ()>(Duration::from_secs_f64(cost(lengths)));
        let (points, spent) = measure(&ladder(Device::Cpu), CALIBRATION_BUDGET, slow).unwrap();
        assert_eq!(points.len(), MIN_RUNGS);
        let expected: f64 = [8, 16, 32].iter().map(|&texts| cost(&batch_lengths(texts))).sum::<f64>() * RUNS_PER_RUNG as f64;
        assert!((spent - expected).abs() < 1e-9, "every timed run counts: {spent} vs {expected}");
        // A fast host measures every rung within the budget.
        let fast = |lengths: &[usize]| Ok::<_, ()>(Duration::from_secs_f64((lengths.len() * lengths[0]) as f64 * 1e-6));
        assert_eq!(measure(&ladder(Device::Cpu), CALIBRATION_BUDGET, fast).unwrap().0.len(), 6);
    }

    #[test]
    fn a_chosen_budget_always_fits_one_longest_text() {
        let points = [ShapePoint { texts: 4, tokens: 128, seconds: 0.01, tokens_per_second: 12_800.0 }];
        assert_eq!(choose(&points, 256), Some(BatchShape { batch_tokens: 256, max_batch_texts: 4 }));
        assert_eq!(choose(&[], 256), None);
    }

    #[test]
    fn of_equally_fast_rungs_the_largest_is_chosen() {
        let point = |texts: usize, tokens_per_second: f64| ShapePoint {
            texts,
            tokens: texts * CALIBRATION_TOKENS,
            seconds: (texts * CALIBRATION_TOKENS) as f64 / tokens_per_second,
            tokens_per_second,
        };
        let points = [point(8, 5000.0), point(16, 6000.0), point(32, 5950.0), point(64, 5850.0)];
        assert_eq!(
            choose(&points, 256),
            Some(BatchShape { batch_tokens: 1024, max_batch_texts: 32 }),
            "5950 is within 1 % of 6000, 5850 is not"
        );
    }

    #[test]
    fn the_cache_keeps_one_measurement_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ShapeCache::in_state_dir(&dir.path().join("state"));
        let key = CalibrationKey::for_this_host(2, Device::Cpu, Path::new("/lib/libonnxruntime.so"), "m:fp32:256");
        let calibration = |tokens: usize| Calibration {
            key: key.clone(),
            points: vec![],
            shape: BatchShape { batch_tokens: tokens, max_batch_texts: tokens / 32 },
            model_seconds: 0.5,
            measured_at: "2026-12-01T00:00:00Z".to_owned(),
        };
        assert_eq!(cache.get(&key), None);
        cache.put(&calibration(1024)).unwrap();
        cache.put(&calibration(2048)).unwrap();
        assert_eq!(cache.get(&key).unwrap().shape.batch_tokens, 2048);
        let other_host = CalibrationKey { threads: 4, ..key.clone() };
        assert_eq!(cache.get(&other_host), None);
        let other_model = CalibrationKey { model: "m:int8:256".to_owned(), ..key.clone() };
        assert_eq!(cache.get(&other_model), None);
        std::fs::write(cache.path(), "not json").unwrap();
        assert_eq!(cache.get(&key), None, "a damaged cache is an empty one");
    }

    #[test]
    fn bigger_calibration_batches_span_more_lengths_like_sorted_real_texts() {
        let spread = |texts: usize| {
            let lengths = batch_lengths(texts);
            assert_eq!(lengths.len(), texts);
            assert!(lengths.windows(2).all(|pair| pair[0] >= pair[1]), "longest first");
            lengths[0] - lengths[texts - 1]
        };
        assert!(spread(16) < spread(64) && spread(64) < spread(256), "{} {} {}", spread(16), spread(64), spread(256));
        let middle = batch_lengths(8);
        assert!(middle.iter().all(|&length| (36..=44).contains(&length)), "the middle of 16..64: {middle:?}");
        assert_eq!(batch_lengths(10_000).len(), WINDOW_TEXTS, "at most the window");
    }
}
