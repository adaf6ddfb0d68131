//! CPU time of a bench phase: this process's, and the local Milvus server's when one runs on this
//! machine (found by its process name `milvus`). On two cores every CPU-second Milvus or our own
//! non-model work spends is a second the model does not get: this is the profile of the gap
//! between an import and the raw model.

use std::path::Path;

/// CPU seconds consumed so far, read at a phase's start.
pub struct CpuClock {
    own_start: f64,
    milvus: Option<(u32, f64)>,
}

/// CPU seconds one phase consumed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CpuUse {
    /// This process (all threads: reading, tokenising, inference, upserts).
    pub own_seconds: f64,
    /// The local Milvus server, if one was found.
    pub milvus_seconds: Option<f64>,
}

impl CpuUse {
    /// The CPU of two stretches of one phase together (Milvus's only when both stretches have it).
    pub fn plus(self, other: CpuUse) -> CpuUse {
        CpuUse {
            own_seconds: self.own_seconds + other.own_seconds,
            milvus_seconds: super::report::both(self.milvus_seconds, other.milvus_seconds),
        }
    }
}

impl CpuClock {
    /// Starts counting.
    pub fn start() -> Self {
        let milvus = find_process("milvus").and_then(|pid| Some((pid, process_cpu_seconds(format!("/proc/{pid}/stat"))?)));
        Self { own_start: process_cpu_seconds(Path::new("/proc/self/stat")).unwrap_or(0.0), milvus }
    }

    /// CPU seconds since [`CpuClock::start`].
    pub fn elapsed(&self) -> CpuUse {
        let own_now = process_cpu_seconds(Path::new("/proc/self/stat")).unwrap_or(self.own_start);
        let milvus_seconds = self
            .milvus
            .and_then(|(pid, start)| Some(process_cpu_seconds(format!("/proc/{pid}/stat"))? - start).filter(|used| *used >= 0.0));
        CpuUse { own_seconds: own_now - self.own_start, milvus_seconds }
    }
}

/// Waits until the local Milvus server has settled: less than `quiet_share` of a core used over
/// one second, for at most `limit`. Rows that landed keep Milvus busy after the last call returns
/// (segment sync, compaction of the delete logs every upsert leaves); without this the next phase
/// would pay for the previous one's writes. Returns whether Milvus settled (`true` at once when
/// no local `milvus` process is found: nothing of it shares our cores).
pub async fn wait_for_quiet_milvus(quiet_share: f64, limit: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    let Some(pid) = find_process("milvus") else { return true };
    let stat = format!("/proc/{pid}/stat");
    while started.elapsed() < limit {
        let Some(before) = process_cpu_seconds(&stat) else { break };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(after) = process_cpu_seconds(&stat) else { break };
        if after - before < quiet_share {
            return true;
        }
    }
    tracing::warn!(seconds = started.elapsed().as_secs_f64(), "milvus still busy; going on");
    false
}

/// `utime + stime` of a `/proc/<pid>/stat` file, in seconds.
fn process_cpu_seconds(stat_path: impl AsRef<Path>) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    let ticks = cpu_ticks(&stat)?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks_per_second > 0).then(|| ticks as f64 / ticks_per_second as f64)
}

/// Fields 14 and 15 (utime, stime) of a stat line; the command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14 → index 11.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The lowest pid whose `comm` is exactly `name`.
fn find_process(name: &str) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
        .collect();
    pids.sort_unstable();
    pids.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_ticks() {
        let stat = "4242 (milvus (run) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1500 250 0 0 20 0 40 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(1750));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        // Work until the clock moves (one tick of /proc's 10 ms resolution), however fast or slow
        // the machine: the assertion is that work shows, not how much per wall-clock second.
        let clock = CpuClock::start();
        let mut sum = 0u64;
        let mut rounds = 0u64;
        while clock.elapsed().own_seconds <= 0.0 {
            for _ in 0..1_000_000 {
                sum = sum.wrapping_add(std::hint::black_box(sum ^ 0x5bd1e995));
            }
            rounds += 1;
            assert!(rounds < 1_000_000, "a trillion operations and no CPU time recorded");
        }
        std::hint::black_box(sum);
        assert!(clock.elapsed().own_seconds > 0.0, "{:?}", clock.elapsed());
    }
}
