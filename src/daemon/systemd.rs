//! systemd integration (`Type=notify`): `READY=1` once the daemon serves, `WATCHDOG=1` at half
//! the `WatchdogSec` interval while the async runtime is responsive, `STOPPING=1` on shutdown.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use sd_notify::NotifyState;

/// Tells systemd that start-up is complete.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("importing")]);
}

/// Tells systemd that the daemon is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping: committing imports in flight")]);
}

/// Pings the watchdog at half its interval when systemd asked for one (`WATCHDOG_USEC`).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    tracing::info!(interval_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    }))
}

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
