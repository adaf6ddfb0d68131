//! Peak resident memory of one bench phase, from the kernel's high-water mark.
//!
//! All phases run in this one process (they share the loaded model, as an import does), so the
//! peak of a phase is taken by resetting the process's `VmHWM` before it (writing `5` to
//! `/proc/self/clear_refs`, Linux ≥ 4.0) and reading `VmHWM` from `/proc/self/status` after it.
//! The figure is the whole process's peak during the phase: memory kept from earlier phases (the
//! model, allocator caches) is included, as it would be in a daemon.

/// Where a phase's peak is measured from.
pub struct PeakRss {
    reset: bool,
}

impl PeakRss {
    /// Resets the high-water mark to the current resident size. When the kernel refuses (not
    /// Linux, no permission) the peak reported later is the process's peak since it started.
    pub fn start() -> Self {
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        if !reset {
            tracing::warn!("cannot reset VmHWM through /proc/self/clear_refs; phase peaks are peaks since the process started");
        }
        Self { reset }
    }

    /// Peak resident bytes since [`PeakRss::start`] (0 when `/proc/self/status` is unreadable).
    pub fn peak_bytes(&self) -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status_kib(&status, "VmHWM:").or_else(|| status_kib(&status, "VmRSS:")).unwrap_or(0) * 1024
    }

    /// Whether the mark was reset (the peak covers this phase only).
    pub fn is_per_phase(&self) -> bool {
        self.reset
    }
}

/// The value in KiB of a `/proc/<pid>/status` line such as `VmHWM:   123456 kB`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_parsed_in_kib() {
        let status = "Name:\tvecdrop\nVmHWM:\t  175312 kB\nVmRSS:\t   99000 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(175_312));
        assert_eq!(status_kib(status, "VmRSS:"), Some(99_000));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn the_peak_covers_memory_touched_during_the_phase() {
        let peak = PeakRss::start();
        let before = peak.peak_bytes();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak.peak_bytes();
        assert!(after >= before + (60 << 20), "peak {before} → {after} after touching 64 MiB");
    }
}
