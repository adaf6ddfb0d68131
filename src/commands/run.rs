//! `vecdrop run`: loads the model, connects to Milvus and hands over to [`crate::daemon`].

use super::{open_context, CommandError, EXIT_OK};
use crate::settings::Settings;

/// Runs the daemon until `shutdown` resolves; exits 0 after a clean shutdown.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()>) -> Result<u8, CommandError> {
    let context = open_context(settings, false).await?;
    crate::daemon::run(context, shutdown).await.map_err(|error| match error {
        // The operator's to fix (a planted link, a folder owned by someone else): exit 2.
        crate::daemon::DaemonError::DropFolder(_) | crate::daemon::DaemonError::StatusAccess(_) => CommandError::Usage(error.to_string()),
        error => CommandError::Other(error.to_string()),
    })?;
    Ok(EXIT_OK)
}
