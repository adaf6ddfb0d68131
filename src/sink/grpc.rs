//! Milvus calls that the SDK's v2 client does not make the way vecdrop needs them, through the
//! SDK's generated gRPC client (`milvus::proto`). Kept in this one module so that what bypasses
//! the SDK is in one place.
//!
//! - **Flush without the SDK's waits.** `ClientV2::flush` polls `GetFlushState` once a second
//!   and then sleeps a further second "for visibility": a flush that Milvus 2.3.5 completes in
//!   ~2.5 s costs 4 s. [`RawMilvus::flush`] sends the `Flush` request and returns what to poll;
//!   [`RawMilvus::flushed`] asks `GetFlushState` once. The sink polls it every
//!   [`FLUSH_POLL_INTERVAL`]. vecdrop reads with `count(*)` and queries, which see growing
//!   segments, so it needs no visibility pause after the flush.
//! - **Bulk import on Milvus 2.2–2.3** (`Import` / `GetImportState`, one file per task), which
//!   the v2 client does not wrap (it offers the ≥ 2.4 REST import jobs). Milvus resolves the
//!   files on its own storage: on a standalone server with local storage, absolute paths of its
//!   file system (`scripts/bulk-import-smoke.py`).

use std::time::Duration;

use milvus::proto::common::{ImportState, KeyValuePair, Status};
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use milvus::proto::milvus::{
    FlushRequest, GetFlushStateRequest, GetImportStateRequest, GetVersionRequest, ImportRequest, ListImportTasksRequest,
};
use milvus::v2::error::Error as MilvusError;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::settings::TlsSettings;

/// How often a flush's state is asked for.
pub const FLUSH_POLL_INTERVAL: Duration = Duration::from_millis(100);

type Service = MilvusServiceClient<InterceptedService<Channel, Authorization>>;

/// The `authorization` metadata Milvus expects: base64 of the token (`user:password` or an API key).
#[derive(Clone)]
pub struct Authorization(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Authorization {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// What a flush returned: the sealed segments to wait for and the flush's timestamp. Empty when
/// the collection had nothing to seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushTicket {
    segment_ids: Vec<i64>,
    flush_ts: u64,
}

impl FlushTicket {
    /// Nothing was sealed: the flush is complete already.
    pub fn is_done(&self) -> bool {
        self.segment_ids.is_empty()
    }
}

/// A gRPC connection to Milvus made with the same address and token as the SDK's client. The
/// channel connects on first use and reconnects after an outage.
#[derive(Clone)]
pub struct RawMilvus {
    service: Service,
}

impl RawMilvus {
    /// A lazily connecting client for `uri` (`http://…`, `https://…` or `host:port`); `token`
    /// empty means no authentication; `tls` as for the SDK's client (the system's roots unless a
    /// CA file is given).
    pub fn connect_lazy(
        uri: &str,
        token: &str,
        tls: &TlsSettings,
        connect_timeout: Duration,
        rpc_timeout: Duration,
    ) -> Result<Self, String> {
        let address = server_address(uri, tls.enabled);
        let invalid = |reason: String| format!("milvus uri {address:?}: {reason}");
        let mut endpoint = Endpoint::from_shared(address.clone())
            .map_err(|error| invalid(error.to_string()))?
            .connect_timeout(connect_timeout)
            .timeout(rpc_timeout);
        if tls.enabled {
            endpoint = endpoint.tls_config(tls_config(tls).map_err(invalid)?).map_err(|error| invalid(error.to_string()))?;
        }
        let authorization = if token.is_empty() {
            None
        } else {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(token);
            Some(encoded.parse().map_err(|_| invalid("the token is not valid request metadata".to_owned()))?)
        };
        let service = MilvusServiceClient::with_interceptor(endpoint.connect_lazy(), Authorization(authorization));
        Ok(Self { service })
    }

    /// Sends `Flush` for `collection` without waiting for it to complete.
    pub async fn flush(&self, collection: &str) -> Result<FlushTicket, MilvusError> {
        let request = FlushRequest { collection_names: vec![collection.to_owned()], ..Default::default() };
        let response = self.service.clone().flush(request).await?.into_inner();
        succeeded(response.status)?;
        let segment_ids = response.coll_seg_i_ds.get(collection).map(|ids| ids.data.clone()).unwrap_or_default();
        let flush_ts = response.coll_flush_ts.get(collection).copied();
        match flush_ts {
            None if !segment_ids.is_empty() => {
                Err(MilvusError::MalformedResponse(format!("flush of {collection:?} sealed segments but returned no flush timestamp")))
            }
            flush_ts => Ok(FlushTicket { segment_ids, flush_ts: flush_ts.unwrap_or_default() }),
        }
    }

    /// Whether the flush behind `ticket` has completed (its segments are persisted and the
    /// collection's channels are past its timestamp).
    pub async fn flushed(&self, ticket: &FlushTicket) -> Result<bool, MilvusError> {
        if ticket.is_done() {
            return Ok(true);
        }
        let request = GetFlushStateRequest { segment_i_ds: ticket.segment_ids.clone(), flush_ts: ticket.flush_ts, ..Default::default() };
        let response = self.service.clone().get_flush_state(request).await?.into_inner();
        succeeded(response.status)?;
        Ok(response.flushed)
    }
}

/// The server's address for `uri` (`host:port` gets `http://`), on `https://` when TLS is on:
/// the gRPC and the REST clients' address alike.
pub fn server_address(uri: &str, tls_enabled: bool) -> String {
    let address = if uri.contains("://") { uri.to_owned() } else { format!("http://{uri}") };
    match address.strip_prefix("http://") {
        Some(rest) if tls_enabled => format!("https://{rest}"),
        _ => address,
    }
}

/// The transport's TLS settings from `[milvus.tls]`.
fn tls_config(tls: &TlsSettings) -> Result<ClientTlsConfig, String> {
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()));
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca_file {
        Some(file) => config.ca_certificate(Certificate::from_pem(read(file)?)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// Where a bulk-import task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportProgress {
    /// Queued, being read, or persisted but not yet searchable (`ImportPersisted`,
    /// `ImportFlushed`: rows written, segments not yet indexed and loaded); `rows` so far.
    Running {
        /// Rows the task has read.
        rows: u64,
    },
    /// `ImportCompleted`: the rows are in and indexed. Queries see them once the query nodes load
    /// the new segments, on their next check (on 2.3.5, 11–19 s after `ImportCompleted` in five `vecdrop bench` runs).
    Done {
        /// Rows imported.
        rows: u64,
    },
    /// The task failed; Milvus's reason. Rows of a failed task are not visible.
    Failed {
        /// Why, as Milvus says it.
        reason: String,
    },
}

impl RawMilvus {
    /// Submits a bulk import of `file` (a path on Milvus's storage; Parquet with one column per
    /// field, or row-based JSON) into `collection`; returns its task id (`None`: Milvus answered
    /// without one).
    pub async fn import_file(&self, collection: &str, file: &str) -> Result<Option<i64>, MilvusError> {
        let request = ImportRequest {
            collection_name: collection.to_owned(),
            row_based: file.ends_with(".json"),
            files: vec![file.to_owned()],
            ..Default::default()
        };
        let response = self.service.clone().import(request).await?.into_inner();
        succeeded(response.status)?;
        Ok(response.tasks.first().copied())
    }

    /// Where bulk-import `task` stands.
    pub async fn import_progress(&self, task: i64) -> Result<ImportProgress, MilvusError> {
        let response = self.service.clone().get_import_state(GetImportStateRequest { task }).await?.into_inner();
        succeeded(response.status)?;
        Ok(progress_of(response.state, response.row_count, &response.infos))
    }
}

impl RawMilvus {
    /// The server's version string (`v2.3.5`, `v2.3.5-lite` for the PyPI server,
    /// `milvus_lite-3.2.2` for Milvus Lite).
    pub async fn server_version(&self) -> Result<String, MilvusError> {
        let response = self.service.clone().get_version(GetVersionRequest {}).await?.into_inner();
        succeeded(response.status)?;
        Ok(response.version)
    }

    /// The import tasks of `collection` Milvus still lists (recent ones first or last, as Milvus
    /// keeps them): each task's id and files.
    pub async fn import_tasks(&self, collection: &str) -> Result<Vec<(i64, Vec<String>)>, MilvusError> {
        let request = ListImportTasksRequest { collection_name: collection.to_owned(), limit: 0, ..Default::default() };
        let response = self.service.clone().list_import_tasks(request).await?.into_inner();
        succeeded(response.status)?;
        Ok(response
            .tasks
            .into_iter()
            .map(|task| {
                let files = task
                    .infos
                    .iter()
                    .find(|info| info.key == "files")
                    .map(|info| info.value.split(',').filter(|file| !file.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default();
                (task.id, files)
            })
            .collect())
    }
}

/// An import task's state as [`ImportProgress`]; the failure reason comes from the `failed_reason`
/// entry of `infos`.
fn progress_of(state: i32, row_count: i64, infos: &[KeyValuePair]) -> ImportProgress {
    let rows = u64::try_from(row_count).unwrap_or(0);
    match ImportState::try_from(state) {
        Ok(ImportState::ImportCompleted) => ImportProgress::Done { rows },
        Ok(ImportState::ImportFailed | ImportState::ImportFailedAndCleaned) => ImportProgress::Failed {
            reason: infos
                .iter()
                .find(|info| info.key == "failed_reason")
                .map(|info| info.value.clone())
                .filter(|reason| !reason.is_empty())
                .unwrap_or_else(|| "the import task failed (Milvus gave no reason)".to_owned()),
        },
        Ok(ImportState::ImportPending | ImportState::ImportStarted | ImportState::ImportPersisted | ImportState::ImportFlushed) => {
            ImportProgress::Running { rows }
        }
        // A state this build does not know (a newer server): keep following it — calling it
        // failed would submit the file again while it may still be importing.
        Err(_) => ImportProgress::Running { rows },
    }
}

/// `Err` unless Milvus's status says success.
// The SDK's error type, as every Milvus call returns it (the retry policy classifies it).
#[allow(deprecated, clippy::result_large_err)]
fn succeeded(status: Option<Status>) -> Result<(), MilvusError> {
    let status = status.ok_or_else(|| MilvusError::MalformedResponse("response carries no status".to_owned()))?;
    if status.code == 0 && status.error_code == 0 {
        Ok(())
    } else {
        Err(MilvusError::from(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn a_refusal_keeps_milvus_s_reason() {
        let status = Status { code: 65535, reason: "collection not found".to_owned(), ..Default::default() };
        let error = succeeded(Some(status)).unwrap_err();
        assert!(error.to_string().contains("collection not found"), "{error}");
        assert!(succeeded(Some(Status::default())).is_ok());
        assert!(matches!(succeeded(None), Err(MilvusError::MalformedResponse(_))));
    }

    #[test]
    fn import_states_map_to_progress_and_failures_keep_milvus_s_reason() {
        let reason = [KeyValuePair { key: "failed_reason".into(), value: "dimension mismatch".into() }];
        assert_eq!(progress_of(ImportState::ImportStarted as i32, 10, &[]), ImportProgress::Running { rows: 10 });
        assert_eq!(progress_of(ImportState::ImportPersisted as i32, 20, &[]), ImportProgress::Running { rows: 20 }, "not yet searchable");
        assert_eq!(progress_of(ImportState::ImportCompleted as i32, 20, &[]), ImportProgress::Done { rows: 20 });
        assert_eq!(
            progress_of(ImportState::ImportFailed as i32, 0, &reason),
            ImportProgress::Failed { reason: "dimension mismatch".into() }
        );
        assert!(matches!(progress_of(ImportState::ImportFailedAndCleaned as i32, 0, &[]), ImportProgress::Failed { .. }));
        assert_eq!(progress_of(99, 0, &[]), ImportProgress::Running { rows: 0 }, "an unknown state is followed, not resubmitted");
    }

    #[test]
    fn a_ticket_without_segments_is_complete() {
        assert!(FlushTicket { segment_ids: vec![], flush_ts: 0 }.is_done());
        assert!(!FlushTicket { segment_ids: vec![7], flush_ts: 1 }.is_done());
    }

    #[tokio::test]
    async fn addresses_without_a_scheme_are_plain_http() {
        let plain = TlsSettings::default();
        let raw = RawMilvus::connect_lazy("127.0.0.1:19530", "root:Milvus", &plain, Duration::from_secs(1), Duration::from_secs(1));
        assert!(raw.is_ok());
        assert!(RawMilvus::connect_lazy("http://bad host", "", &plain, Duration::from_secs(1), Duration::from_secs(1)).is_err());
        let missing_ca = TlsSettings { enabled: true, ca_file: Some("/nonexistent/ca.pem".into()), ..TlsSettings::default() };
        let error = RawMilvus::connect_lazy("milvus:19530", "", &missing_ca, Duration::from_secs(1), Duration::from_secs(1)).err().unwrap();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
