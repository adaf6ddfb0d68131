//! Wall-clock times as vecdrop writes them (ledger entries, dead letters, `/status`, `.done/`
//! folders): RFC 3339, UTC, whole seconds.

use std::time::SystemTime;

/// The current time, e.g. `2026-11-30T18:59:49Z`.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `time` as RFC 3339 (UTC, seconds).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    now_rfc3339().chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_seconds_and_days_are_their_prefix() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_529_189_500);
        assert_eq!(rfc3339(time), "2025-11-30T18:59:49Z");
        assert_eq!(today().len(), 10);
        assert!(now_rfc3339().starts_with(&today()));
    }
}
