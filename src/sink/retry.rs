//! Which Milvus errors are worth retrying, and how long to wait.
//!
//! Transient: transport failures (unavailable, deadline, cancelled, aborted, resource exhausted),
//! server "not ready / rate limited / quota" codes, client timeouts. Everything else (validation,
//! schema, bad expression, collection not found) is permanent: retrying cannot help.

use std::time::Duration;

use milvus::v2::error::Error;
use rand::Rng;

/// First retry delay.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// Longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Whether retrying the same request may succeed.
pub fn is_transient(error: &Error) -> bool {
    match error {
        // gRPC codes: 1 Cancelled, 4 DeadlineExceeded, 8 ResourceExhausted, 10 Aborted, 14 Unavailable.
        Error::Grpc(status) => matches!(status.code() as i32, 1 | 4 | 8 | 10 | 14),
        Error::Server(status) => {
            // legacy: 49 RateLimit, 53/54 memory/disk quota, 55 time tick delay, 56/57 not ready.
            // current: 1/2 not ready/unavailable, 3 memory limit, 4 request limit, 8 rate limit,
            // 11 time tick delay, 103 not fully loaded, 106 recovering.
            matches!(status.legacy_code(), 49 | 53 | 54 | 55 | 56 | 57) || matches!(status.code(), 1 | 2 | 3 | 4 | 8 | 11 | 103 | 106)
        }
        Error::Timeout(_) | Error::Cancelled(_) => true,
        Error::RetryExhausted { source, .. } => is_transient(source),
        _ => false,
    }
}

/// Whether Milvus asked us to send less (a smaller request helps).
pub fn is_rate_limited(error: &Error) -> bool {
    match error {
        Error::Grpc(status) => status.code() as i32 == 8,
        Error::Server(status) => status.legacy_code() == 49 || matches!(status.code(), 4 | 8),
        Error::RetryExhausted { source, .. } => is_rate_limited(source),
        _ => false,
    }
}

/// Delay before retry number `attempt` (1-based): exponential from 200 ms, capped at 10 s, with
/// "equal jitter" (between half and all of it) so that many clients do not retry in step.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exponential = BASE_DELAY.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(MAX_DELAY);
    let half = exponential / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        for attempt in 1..40 {
            let delay = backoff_delay(attempt);
            let ceiling = BASE_DELAY.saturating_mul(1u32 << (attempt - 1).min(16)).min(MAX_DELAY);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "attempt {attempt}: {delay:?} vs {ceiling:?}");
        }
        assert!(backoff_delay(30) <= MAX_DELAY);
    }

    #[test]
    fn timeouts_are_transient_and_validation_is_not() {
        assert!(is_transient(&Error::Timeout("connecting".into())));
        assert!(!is_transient(&Error::Unexpected("x".into())));
    }
}
