//! The one retry layer between vecdrop and Milvus.
//!
//! milvus-sdk-rust's own retries are switched off (one attempt per call); every Milvus operation
//! vecdrop makes goes through [`RetryPolicy::run`], which retries what [`classify`] calls
//! transient with capped exponential backoff and jitter until the operation's deadline
//! (`milvus.retry_deadline`) has passed, then hands the last error up. The caller's error then
//! classifies itself as [`Fault::Transient`](crate::fault::Fault), so the daemon keeps the file and
//! backs off at the pipeline level instead: one policy per layer, no loops nested inside loops.
//!
//! Rate-limit answers (Milvus code 8, legacy 49, gRPC `RESOURCE_EXHAUSTED`) slow the writer down:
//! the upsert path halves its request ([`MilvusSink::upsert`](super::MilvusSink::upsert)) and
//! every path waits before trying again.
//!
//! Every failed attempt is counted by operation and class (`vecdrop_milvus_errors_total`) and every
//! repeated one by operation (`vecdrop_milvus_retries_total`), in process-wide counters
//! ([`crate::telemetry::milvus_call_failed`]).

use std::future::Future;
use std::time::{Duration, Instant};

use milvus::v2::error::{BulkImportError, Error};
use rand::Rng;

/// First retry delay.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// Longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// gRPC status codes, as the transport reports them.
mod grpc {
    pub const CANCELLED: i32 = 1;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Milvus's legacy `common.ErrorCode`s (2.2/2.3 servers still fill them).
mod legacy {
    pub const CONNECT_FAILED: i32 = 2;
    pub const PERMISSION_DENIED: i32 = 3;
    pub const COLLECTION_NOT_EXISTS: i32 = 4;
    pub const RATE_LIMIT: i32 = 49;
    pub const MEMORY_QUOTA_EXHAUSTED: i32 = 53;
    pub const DISK_QUOTA_EXHAUSTED: i32 = 54;
    pub const TIME_TICK_LONG_DELAY: i32 = 55;
    pub const NOT_READY_SERVE: i32 = 56;
    pub const NOT_READY_COORD_ACTIVATING: i32 = 57;
}

/// Milvus's current error codes (`merr`, 2.3+).
mod code {
    pub const SERVICE_NOT_READY: i32 = 1;
    pub const SERVICE_UNAVAILABLE: i32 = 2;
    pub const MEMORY_LIMIT: i32 = 3;
    pub const REQUEST_LIMIT: i32 = 4;
    pub const RATE_LIMIT: i32 = 8;
    pub const TIME_TICK_DELAY: i32 = 11;
    pub const COLLECTION_NOT_FOUND: i32 = 100;
    pub const COLLECTION_NOT_LOADED: i32 = 101;
    pub const COLLECTION_NOT_FULLY_LOADED: i32 = 103;
    pub const COLLECTION_RECOVERING: i32 = 106;
    pub const PRIVILEGE_NOT_PERMITTED: i32 = 1400;
    pub const PRIVILEGE_NOT_AUTHENTICATED: i32 = 1402;
}

/// What one failed Milvus call means for the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Milvus (or the way to it) is away or busy for now: the same call may succeed later.
    /// `reachable` says whether Milvus itself answered (busy) or could not be reached at all.
    Transient {
        /// Milvus answered (not ready, quota, collection not loaded) rather than the transport failing.
        reachable: bool,
    },
    /// Milvus asked for less: a smaller request, later, helps.
    RateLimited,
    /// The credentials are refused: only the configuration can fix it.
    Unauthorized,
    /// Retrying the same request cannot help (validation, schema, bad expression).
    Permanent,
}

impl ErrorClass {
    /// The class as `vecdrop_milvus_errors_total` labels it: `unreachable`, `busy`,
    /// `rate_limited`, `unauthorized`, `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient { reachable: false } => "unreachable",
            ErrorClass::Transient { reachable: true } => "busy",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// What a Milvus error means; see [`ErrorClass`].
pub fn classify(error: &Error) -> ErrorClass {
    match error {
        Error::Grpc(status) => match status.code() as i32 {
            grpc::RESOURCE_EXHAUSTED => ErrorClass::RateLimited,
            grpc::CANCELLED | grpc::DEADLINE_EXCEEDED | grpc::ABORTED | grpc::UNAVAILABLE => ErrorClass::Transient { reachable: false },
            grpc::UNAUTHENTICATED | grpc::PERMISSION_DENIED => ErrorClass::Unauthorized,
            _ => ErrorClass::Permanent,
        },
        Error::Server(status) => classify_server(status.code(), status.legacy_code()),
        Error::Timeout(_) | Error::Cancelled(_) => ErrorClass::Transient { reachable: false },
        Error::RetryExhausted { source, .. } => classify(source),
        Error::BulkImport(rest) => classify_rest(rest),
        _ => ErrorClass::Permanent,
    }
}

/// What an error of Milvus's REST import endpoints (≥ 2.4) means: a connection that failed or a
/// 5xx is transient (the job may exist: it is looked up, never resent), 429 is rate limiting,
/// 401/403 a refused token, other statuses a refusal; an error envelope is classified by its code
/// like a gRPC status.
fn classify_rest(error: &BulkImportError) -> ErrorClass {
    match error {
        BulkImportError::Transport(_) => ErrorClass::Transient { reachable: false },
        BulkImportError::HttpStatus { status: 429, .. } => ErrorClass::RateLimited,
        BulkImportError::HttpStatus { status: 401 | 403, .. } => ErrorClass::Unauthorized,
        BulkImportError::HttpStatus { status, .. } if *status >= 500 => ErrorClass::Transient { reachable: true },
        BulkImportError::Server { code, .. } => classify_server(i32::try_from(*code).unwrap_or(i32::MAX), 0),
        _ => ErrorClass::Permanent,
    }
}

fn classify_server(current: i32, legacy_code: i32) -> ErrorClass {
    if current == code::RATE_LIMIT || current == code::REQUEST_LIMIT || legacy_code == legacy::RATE_LIMIT {
        return ErrorClass::RateLimited;
    }
    if matches!(current, code::PRIVILEGE_NOT_PERMITTED | code::PRIVILEGE_NOT_AUTHENTICATED) || legacy_code == legacy::PERMISSION_DENIED {
        return ErrorClass::Unauthorized;
    }
    let busy = matches!(
        current,
        code::SERVICE_NOT_READY
            | code::SERVICE_UNAVAILABLE
            | code::MEMORY_LIMIT
            | code::TIME_TICK_DELAY
            | code::COLLECTION_NOT_LOADED
            | code::COLLECTION_NOT_FULLY_LOADED
            | code::COLLECTION_RECOVERING
    ) || matches!(
        legacy_code,
        legacy::CONNECT_FAILED
            | legacy::MEMORY_QUOTA_EXHAUSTED
            | legacy::DISK_QUOTA_EXHAUSTED
            | legacy::TIME_TICK_LONG_DELAY
            | legacy::NOT_READY_SERVE
            | legacy::NOT_READY_COORD_ACTIVATING
    );
    // A collection dropped under a running import: the file's next attempt creates it again.
    let collection_gone = current == code::COLLECTION_NOT_FOUND || legacy_code == legacy::COLLECTION_NOT_EXISTS;
    if busy || collection_gone {
        ErrorClass::Transient { reachable: true }
    } else {
        ErrorClass::Permanent
    }
}

/// Whether Milvus asked us to send less (a smaller request helps).
pub fn is_rate_limited(error: &Error) -> bool {
    classify(error) == ErrorClass::RateLimited
}

/// Delay before retry number `attempt` (1-based): exponential from 200 ms, capped at 10 s, with
/// "equal jitter" (between half and all of it) so that many clients do not retry in step.
pub fn backoff_delay(attempt: u32) -> Duration {
    jittered(BASE_DELAY, MAX_DELAY, attempt)
}

/// `base × 2^(attempt-1)`, capped at `max`, with equal jitter: the daemon's per-pipeline backoff
/// uses the same curve with its own bounds.
pub fn jittered(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max);
    let half = exponential / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// How long one Milvus operation keeps retrying transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries stop once this much time has passed since the operation's first attempt.
    pub deadline: Duration,
}

/// How one attempt went, for [`RetryPolicy::run`]'s observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Milvus answered (success, or a refusal that shows it is there).
    Answered,
    /// Milvus could not be reached.
    Unreachable,
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails with a non-retryable error, or the deadline passes;
    /// `observe` hears after every attempt whether Milvus answered. Returns the last error.
    pub async fn run<T, Call, Fut>(
        &self,
        operation: &'static str,
        collection: &str,
        observe: impl Fn(Attempt),
        call: Call,
    ) -> Result<T, Error>
    where
        Call: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.run_until(operation, collection, observe, |_| false, call).await
    }

    /// Like [`Self::run`], but an error whose class `give_up` accepts is returned at once (the
    /// upsert path gives up on rate limits to halve its request instead of repeating it).
    pub async fn run_until<T, Call, Fut>(
        &self,
        operation: &'static str,
        collection: &str,
        observe: impl Fn(Attempt),
        give_up: impl Fn(ErrorClass) -> bool,
        mut call: Call,
    ) -> Result<T, Error>
    where
        Call: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match call().await {
                Ok(value) => {
                    observe(Attempt::Answered);
                    return Ok(value);
                }
                Err(error) => error,
            };
            let class = classify(&error);
            crate::telemetry::milvus_call_failed(operation, class.as_str());
            let answered = !matches!(class, ErrorClass::Transient { reachable: false });
            observe(if answered { Attempt::Answered } else { Attempt::Unreachable });
            let retryable = matches!(class, ErrorClass::Transient { .. } | ErrorClass::RateLimited) && !give_up(class);
            let remaining = self.deadline.saturating_sub(started.elapsed());
            if !retryable || remaining.is_zero() {
                return Err(error);
            }
            let delay = backoff_delay(attempt).min(remaining);
            tracing::warn!(collection, operation, attempt, delay_ms = delay.as_millis() as u64, %error, "milvus call failed; retrying");
            tokio::time::sleep(delay).await;
            crate::telemetry::milvus_call_retried(operation);
        }
    }
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
        assert_eq!(classify(&Error::Timeout("connecting".into())), ErrorClass::Transient { reachable: false });
        assert_eq!(classify(&Error::Unexpected("x".into())), ErrorClass::Permanent);
        let rest = |error: BulkImportError| classify(&Error::BulkImport(error));
        let status = |status: u16| BulkImportError::HttpStatus { status, body: String::new() };
        assert_eq!(rest(BulkImportError::Transport("connection reset".into())), ErrorClass::Transient { reachable: false });
        assert_eq!(rest(status(503)), ErrorClass::Transient { reachable: true });
        assert_eq!(rest(status(429)), ErrorClass::RateLimited);
        assert_eq!(rest(status(401)), ErrorClass::Unauthorized);
        assert_eq!(rest(status(400)), ErrorClass::Permanent, "a refusal: no job exists");
        assert_eq!(rest(BulkImportError::Server { code: code::RATE_LIMIT.into(), message: String::new() }), ErrorClass::RateLimited);
    }

    #[test]
    fn server_codes_are_named_by_class() {
        assert_eq!(classify_server(code::RATE_LIMIT, 0), ErrorClass::RateLimited);
        assert_eq!(classify_server(0, legacy::RATE_LIMIT), ErrorClass::RateLimited);
        assert_eq!(classify_server(code::SERVICE_NOT_READY, 0), ErrorClass::Transient { reachable: true });
        assert_eq!(classify_server(0, legacy::DISK_QUOTA_EXHAUSTED), ErrorClass::Transient { reachable: true });
        assert_eq!(classify_server(code::COLLECTION_NOT_FOUND, 0), ErrorClass::Transient { reachable: true });
        assert_eq!(classify_server(0, legacy::PERMISSION_DENIED), ErrorClass::Unauthorized);
        assert_eq!(classify_server(1100, 5), ErrorClass::Permanent, "parameter invalid");
        assert_eq!(ErrorClass::Transient { reachable: false }.as_str(), "unreachable");
        assert_eq!(ErrorClass::RateLimited.as_str(), "rate_limited");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_deadline_and_permanent_ones_are_not() {
        // However fast or slow the machine, a failure before the deadline is followed by another try.
        let policy = RetryPolicy { deadline: Duration::from_millis(300) };
        let attempts = std::cell::Cell::new(0);
        let unreachable = std::cell::Cell::new(0);
        let result: Result<(), Error> = policy
            .run(
                "upsert",
                "c",
                |attempt| {
                    if attempt == Attempt::Unreachable {
                        unreachable.set(unreachable.get() + 1)
                    }
                },
                || {
                    attempts.set(attempts.get() + 1);
                    async { Err(Error::Timeout("down".into())) }
                },
            )
            .await;
        assert!(result.is_err());
        assert!(attempts.get() >= 2, "retried ({} attempts)", attempts.get());
        assert_eq!(unreachable.get(), attempts.get());

        attempts.set(0);
        let result: Result<(), Error> = policy
            .run(
                "upsert",
                "c",
                |_| {},
                || {
                    attempts.set(attempts.get() + 1);
                    async { Err(Error::Unexpected("bad request".into())) }
                },
            )
            .await;
        assert!(result.is_err());
        assert_eq!(attempts.get(), 1, "a permanent error is not retried");
    }
}
