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

use std::time::Duration;

use milvus::proto::common::Status;
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use milvus::proto::milvus::{FlushRequest, GetFlushStateRequest};
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
        let mut address = if uri.contains("://") { uri.to_owned() } else { format!("http://{uri}") };
        if tls.enabled {
            if let Some(rest) = address.strip_prefix("http://") {
                address = format!("https://{rest}");
            }
        }
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
