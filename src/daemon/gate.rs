//! Per-pipeline backoff: what the daemon does when an import stops for a reason that is not the
//! file's.
//!
//! | fault | pipeline state | next try |
//! |---|---|---|
//! | transient | `waiting` | `retry_backoff × 2^(n-1)`, jittered, capped at `retry_backoff_max` |
//! | config | `paused` | `retry_backoff_max` (someone has to fix the named key or collection) |
//! | bug | `stopped` | never, until restart |
//!
//! While a pipeline waits, its files are held back until the wait is over, then tried again;
//! the first import that succeeds makes the pipeline healthy again. The state is what `/status`
//! and `/healthz` show ([`PipelineHealth`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};

use crate::fault::Fault;
use crate::settings::DaemonSettings;
use crate::sink::jittered;
use crate::telemetry::{HealthState, PipelineHealth, Telemetry};
use crate::timestamp::now_rfc3339;

/// Whether a file of a pipeline may be imported now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Yes.
    Go,
    /// Not before this instant: the pipeline backs off.
    WaitUntil(Instant),
    /// Never (until restart): a bug stopped the pipeline; the reason.
    Stopped(String),
}

/// The backoff state of every pipeline (cheap to clone, shared by the workers).
#[derive(Clone)]
pub struct Gates {
    backoff: Duration,
    backoff_max: Duration,
    pipelines: Arc<Mutex<HashMap<String, Gate>>>,
}

/// One pipeline's fault since its last success.
#[derive(Debug, Clone)]
struct Gate {
    retries: u32,
    not_before: Instant,
    stopped: Option<String>,
}

impl Gates {
    /// Gates with the daemon's `retry_backoff` and `retry_backoff_max`.
    pub fn new(settings: &DaemonSettings) -> Self {
        Self { backoff: settings.retry_backoff, backoff_max: settings.retry_backoff_max, pipelines: Arc::default() }
    }

    /// Whether a file of `pipeline` may start now.
    pub fn admit(&self, pipeline: &str) -> Verdict {
        let pipelines = self.pipelines.lock().expect("gates lock");
        match pipelines.get(pipeline) {
            None => Verdict::Go,
            Some(Gate { stopped: Some(reason), .. }) => Verdict::Stopped(reason.clone()),
            Some(gate) if gate.not_before > Instant::now() => Verdict::WaitUntil(gate.not_before),
            Some(_) => Verdict::Go,
        }
    }

    /// Records that an import of `pipeline` failed with `fault` (not the file's) and says when to
    /// try again — `None` for a bug, which stops the pipeline. Updates the pipeline's health.
    pub fn failed(&self, pipeline: &str, fault: Fault, reason: &str, telemetry: &Telemetry) -> Option<Instant> {
        let mut pipelines = self.pipelines.lock().expect("gates lock");
        let first = !pipelines.contains_key(pipeline);
        let gate = pipelines.entry(pipeline.to_owned()).or_insert(Gate { retries: 0, not_before: Instant::now(), stopped: None });
        gate.retries += 1;
        let (state, wait) = match fault {
            Fault::Bug => (HealthState::Stopped, None),
            Fault::Config => (HealthState::Paused, Some(self.backoff_max)),
            _ => (HealthState::Waiting, Some(jittered(self.backoff, self.backoff_max, gate.retries))),
        };
        match wait {
            Some(wait) => gate.not_before = gate.not_before.max(Instant::now() + wait),
            None => gate.stopped = Some(reason.to_owned()),
        }
        let previous = telemetry.health(pipeline);
        let since = if first || previous.state != state { now_rfc3339() } else { previous.since };
        let next_attempt = wait.map(|_| now_rfc3339_after(gate.not_before.saturating_duration_since(Instant::now())));
        telemetry.set_health(
            pipeline,
            PipelineHealth {
                state,
                fault: Some(fault),
                reason: Some(reason.to_owned()),
                since,
                retries: u64::from(gate.retries),
                next_attempt,
            },
        );
        wait.map(|_| gate.not_before)
    }

    /// Records that an import of `pipeline` succeeded: the pipeline is healthy again.
    pub fn succeeded(&self, pipeline: &str, telemetry: &Telemetry) {
        if self.pipelines.lock().expect("gates lock").remove(pipeline).is_some() {
            tracing::info!(pipeline, "pipeline healthy again");
            telemetry.set_health(pipeline, PipelineHealth::ok());
        }
    }
}

fn now_rfc3339_after(wait: Duration) -> String {
    crate::timestamp::rfc3339(std::time::SystemTime::now() + wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates() -> Gates {
        let settings = DaemonSettings {
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
            ..DaemonSettings::default()
        };
        Gates::new(&settings)
    }

    #[tokio::test]
    async fn a_transient_fault_makes_the_pipeline_wait_and_a_success_clears_it() {
        let (gates, telemetry) = (gates(), Telemetry::default());
        assert_eq!(gates.admit("docs"), Verdict::Go);
        let when = gates.failed("docs", Fault::Transient, "milvus away", &telemetry).expect("a retry time");
        assert!(when > Instant::now());
        assert_eq!(gates.admit("docs"), Verdict::WaitUntil(when));
        assert_eq!(gates.admit("other"), Verdict::Go, "other pipelines go on");
        let health = telemetry.health("docs");
        assert_eq!((health.state, health.fault, health.retries), (HealthState::Waiting, Some(Fault::Transient), 1));
        assert!(health.next_attempt.is_some());
        gates.succeeded("docs", &telemetry);
        assert_eq!(gates.admit("docs"), Verdict::Go);
        assert_eq!(telemetry.health("docs").state, HealthState::Ok);
    }

    #[tokio::test]
    async fn waits_grow_with_retries_up_to_the_cap() {
        let (gates, telemetry) = (gates(), Telemetry::default());
        let mut waits = Vec::new();
        for _ in 0..10 {
            let when = gates.failed("docs", Fault::Transient, "away", &telemetry).unwrap();
            waits.push(when.saturating_duration_since(Instant::now()));
        }
        assert!(waits.iter().all(|wait| *wait <= Duration::from_secs(60)), "{waits:?}");
        assert!(*waits.last().unwrap() >= Duration::from_secs(30), "the cap is reached: {waits:?}");
        assert_eq!(telemetry.health("docs").retries, 10);
    }

    #[tokio::test]
    async fn a_config_fault_pauses_for_the_longest_wait_and_a_bug_stops_the_pipeline() {
        let (gates, telemetry) = (gates(), Telemetry::default());
        let when = gates.failed("docs", Fault::Config, "schema mismatch", &telemetry).unwrap();
        assert!(when.saturating_duration_since(Instant::now()) > Duration::from_secs(50));
        assert_eq!(telemetry.health("docs").state, HealthState::Paused);
        assert_eq!(gates.failed("broken", Fault::Bug, "delta does not chain", &telemetry), None);
        assert_eq!(gates.admit("broken"), Verdict::Stopped("delta does not chain".into()));
        assert_eq!(telemetry.health("broken").state, HealthState::Stopped);
    }
}
