//! Milvus's bulk import, whichever API the server offers: the calls [`crate::bulk`] makes to
//! submit staged files and follow their tasks.
//!
//! The API is chosen once per sink by the server's version (`GetVersion`):
//! - **Milvus 2.2–2.3**: gRPC `Import` / `GetImportState` / `ListImportTasks` (one task per file;
//!   the calls are in [`super::grpc`], the SDK does not wrap them);
//! - **Milvus ≥ 2.4**: the REST import jobs (`/v2/vectordb/jobs/import/…`) through the SDK's
//!   `milvus::v2::BulkImport`, on the server's own address (one job per file);
//! - **Milvus Lite** (`milvus_lite-…`) has no import: [`ImportApi::Unsupported`], and pipelines
//!   with `bulk_import` fall back to upserts.
//!
//! Task ids are strings (gRPC's are integers, REST's job ids text) so that the ledger records
//! either.

use milvus::v2::error::Error as MilvusError;
use milvus::v2::{BulkImport, BulkImportConfig, BulkImportRequest, GetImportProgressRequest, ListImportJobsRequest};
use serde_json::Value;

use super::grpc::ImportProgress;
use super::{MilvusSink, SinkError};
use crate::settings::MilvusSettings;

/// Which import API a server offers.
#[derive(Debug, Clone)]
pub enum ImportApi {
    /// None (Milvus Lite); the server's version string.
    Unsupported {
        /// What `GetVersion` said.
        version: String,
    },
    /// gRPC `Import` (Milvus 2.2–2.3).
    Grpc,
    /// REST import jobs (Milvus ≥ 2.4).
    Rest(BulkImport),
}

impl ImportApi {
    /// `grpc`, `rest` or `none`: the label shown in logs and by `vecdrop check`.
    pub fn label(&self) -> &'static str {
        match self {
            ImportApi::Unsupported { .. } => "none",
            ImportApi::Grpc => "grpc",
            ImportApi::Rest(_) => "rest",
        }
    }
}

/// An import task (or REST job) Milvus lists for a collection, with its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImport {
    /// Its id, as [`MilvusSink::submit_import`] returns them.
    pub id: String,
    /// The files it imports.
    pub files: Vec<String>,
}

/// Which API a server of `version` offers: `None` for Milvus Lite, `Some(true)` for REST
/// (≥ 2.4), `Some(false)` for gRPC (2.2–2.3, and versions that do not parse).
fn rest_for_version(version: &str) -> Option<bool> {
    if version.contains("milvus_lite") {
        return None;
    }
    let numbers = version.trim_start_matches('v');
    let mut parts = numbers.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Some(major > 2 || (major == 2 && minor >= 4)),
        _ => Some(false),
    }
}

/// The REST client for the server at `uri` (its HTTP address is the gRPC one), with the same token
/// and TLS files as the gRPC clients.
// The SDK's error type, as its REST client returns it.
#[allow(clippy::result_large_err)]
fn rest_client(uri: &str, settings: &MilvusSettings) -> Result<BulkImport, MilvusError> {
    let url = super::grpc::server_address(uri, settings.tls.enabled);
    let mut config = BulkImportConfig::new().url(url).api_key(settings.token.expose()).timeout(super::RPC_TIMEOUT);
    if let Some(file) = &settings.tls.ca_file {
        config = config.ca_certificate_path(file);
    }
    if let (Some(cert), Some(key)) = (&settings.tls.client_cert, &settings.tls.client_key) {
        config = config.client_certificate_path(cert).client_private_key_path(key);
    }
    BulkImport::new(&config)
}

/// A REST job's `describe` answer as [`ImportProgress`].
fn rest_progress(data: &Value) -> ImportProgress {
    let rows = data.get("importedRows").and_then(Value::as_u64).unwrap_or(0);
    match data.get("state").and_then(Value::as_str).unwrap_or_default() {
        "Completed" => ImportProgress::Done { rows },
        "Failed" => ImportProgress::Failed {
            reason: data
                .get("reason")
                .and_then(Value::as_str)
                .filter(|reason| !reason.is_empty())
                .unwrap_or("the import job failed (Milvus gave no reason)")
                .to_owned(),
        },
        _ => ImportProgress::Running { rows },
    }
}

/// The file names of a REST job's `describe` answer.
fn rest_files(data: &Value) -> Vec<String> {
    let details = data.get("details").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    details
        .iter()
        .filter_map(|detail| detail.get("fileName").and_then(Value::as_str))
        .flat_map(|name| {
            // Milvus's datacoord formats a task's paths as a Go slice: "[a b]".
            name.trim_matches(|c| c == '[' || c == ']')
                .split([' ', ','])
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

impl MilvusSink {
    /// Uses `api` instead of asking the server's version (tests of an API the test server does not
    /// speak).
    #[cfg(test)]
    fn with_import_api(self, api: ImportApi) -> Self {
        let _ = self.import_api.set(api);
        self
    }

    /// The import API of the server (asked once, then remembered).
    pub async fn import_api(&self) -> Result<&ImportApi, SinkError> {
        self.import_api
            .get_or_try_init(|| async {
                let version = self.retrying("get_version", "", || self.raw.server_version()).await?;
                Ok(match rest_for_version(&version) {
                    None => ImportApi::Unsupported { version },
                    Some(false) => ImportApi::Grpc,
                    Some(true) => ImportApi::Rest(rest_client(&self.uri, &self.settings).map_err(|source| SinkError::Operation {
                        operation: "import",
                        collection: String::new(),
                        source: Box::new(source),
                    })?),
                })
            })
            .await
    }

    /// Submits the bulk import of one staged `file` (absolute path on Milvus's storage) into
    /// `collection`; returns the task's id. Bulk import only inserts: the rows' keys must be new.
    ///
    /// Sent **once, never retried**: when the answer is lost (a timeout, a dropped connection)
    /// Milvus may have created the task anyway, and a second submission would import the file
    /// twice. The caller finds out from [`MilvusSink::listed_imports`] instead.
    pub async fn submit_import(&self, collection: &str, file: &str) -> Result<String, SinkError> {
        let failed = |source| SinkError::Operation { operation: "import", collection: collection.to_owned(), source: Box::new(source) };
        match self.import_api().await? {
            ImportApi::Unsupported { version } => {
                Err(SinkError::Response { operation: "import", message: format!("the server ({version}) has no bulk import") })
            }
            ImportApi::Grpc => {
                let task = self.raw.import_file(collection, file).await.map_err(failed)?;
                task.map(|id| id.to_string())
                    .ok_or_else(|| SinkError::Response { operation: "import", message: "no task id returned".to_owned() })
            }
            ImportApi::Rest(client) => {
                let request = BulkImportRequest::builder().collection_name(collection).file(file).build().map_err(failed)?;
                let response = client.bulk_import(request).await.map_err(failed)?;
                response
                    .job_id()
                    .map(str::to_owned)
                    .ok_or_else(|| SinkError::Response { operation: "import", message: "no job id returned".to_owned() })
            }
        }
    }

    /// Whether `error` from [`MilvusSink::submit_import`] is Milvus refusing the file (so no task
    /// exists), as opposed to an answer that may have been lost.
    pub fn is_refusal(error: &SinkError) -> bool {
        matches!(error, SinkError::Operation { source, .. } if super::classify(source) == super::ErrorClass::Permanent)
    }

    /// Where import task `task` of `collection` stands.
    pub async fn import_state(&self, collection: &str, task: &str) -> Result<ImportProgress, SinkError> {
        match self.import_api().await? {
            ImportApi::Unsupported { version } => {
                Err(SinkError::Response { operation: "import_state", message: format!("the server ({version}) has no bulk import") })
            }
            ImportApi::Grpc => {
                let id: i64 = task.parse().map_err(|_| SinkError::Response {
                    operation: "import_state",
                    message: format!("task id {task:?} is not a gRPC task id (was the job submitted to another Milvus version?)"),
                })?;
                self.retrying("import_state", collection, || self.raw.import_progress(id)).await
            }
            ImportApi::Rest(client) => {
                let response = self
                    .retrying("import_state", collection, || async {
                        client.get_import_progress(GetImportProgressRequest::builder().job_id(task).build()?).await
                    })
                    .await?;
                Ok(rest_progress(response.data()))
            }
        }
    }

    /// The import tasks Milvus lists for `collection`, with their files: how a submission cut off
    /// by a crash is found again.
    pub async fn listed_imports(&self, collection: &str) -> Result<Vec<ListedImport>, SinkError> {
        match self.import_api().await? {
            ImportApi::Unsupported { .. } => Ok(Vec::new()),
            ImportApi::Grpc => {
                let tasks = self.retrying("list_imports", collection, || self.raw.import_tasks(collection)).await?;
                Ok(tasks.into_iter().map(|(id, files)| ListedImport { id: id.to_string(), files }).collect())
            }
            ImportApi::Rest(client) => {
                // REST lists jobs without their files: each is described.
                let mut listed = Vec::new();
                for id in self.rest_job_ids(client, collection).await? {
                    let described = self
                        .retrying("import_state", collection, || async {
                            client.get_import_progress(GetImportProgressRequest::builder().job_id(&id).build()?).await
                        })
                        .await?;
                    listed.push(ListedImport { files: rest_files(described.data()), id });
                }
                Ok(listed)
            }
        }
    }

    /// The ids of the import tasks Milvus lists for `collection` (what existed before a
    /// submission; on REST without describing each job).
    pub async fn listed_import_ids(&self, collection: &str) -> Result<Vec<String>, SinkError> {
        match self.import_api().await? {
            ImportApi::Rest(client) => self.rest_job_ids(client, collection).await,
            _ => Ok(self.listed_imports(collection).await?.into_iter().map(|listed| listed.id).collect()),
        }
    }

    async fn rest_job_ids(&self, client: &BulkImport, collection: &str) -> Result<Vec<String>, SinkError> {
        let response = self
            .retrying("list_imports", collection, || async {
                client.list_import_jobs(ListImportJobsRequest::builder().collection_name(collection).build()?).await
            })
            .await?;
        let records = response.get_data_field("records").and_then(Value::as_array);
        Ok(records.into_iter().flatten().filter_map(|record| record.get("jobId").and_then(Value::as_str)).map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_follows_the_server_version() {
        assert_eq!(rest_for_version("milvus_lite-3.2.2"), None, "Milvus Lite has no import");
        assert_eq!(rest_for_version("v2.3.5-lite"), Some(false), "the PyPI standalone server is 2.3: gRPC");
        assert_eq!(rest_for_version("v2.2.16"), Some(false));
        assert_eq!(rest_for_version("v2.4.0"), Some(true));
        assert_eq!(rest_for_version("2.5.4"), Some(true));
        assert_eq!(rest_for_version("v3.0.0-beta"), Some(true));
        assert_eq!(rest_for_version("unknown"), Some(false), "unparsable: the older API");
    }

    #[test]
    fn rest_job_answers_map_to_progress_and_keep_milvus_s_reason() {
        let running = serde_json::json!({"jobId": "1", "state": "Importing", "importedRows": 5});
        assert_eq!(rest_progress(&running), ImportProgress::Running { rows: 5 });
        let done = serde_json::json!({"state": "Completed", "importedRows": 20, "details": [{"fileName": "/s/a.parquet"}]});
        assert_eq!(rest_progress(&done), ImportProgress::Done { rows: 20 });
        assert_eq!(rest_files(&done), vec!["/s/a.parquet".to_owned()]);
        let formatted = serde_json::json!({"state": "Importing", "details": [{"fileName": "[imports/p/j/part-00000.parquet]"}]});
        assert_eq!(rest_files(&formatted), vec!["imports/p/j/part-00000.parquet".to_owned()], "Go-formatted paths");
        let failed = serde_json::json!({"state": "Failed", "reason": "dim mismatch"});
        assert_eq!(rest_progress(&failed), ImportProgress::Failed { reason: "dim mismatch".into() });
        assert!(rest_files(&failed).is_empty());
    }

    /// A stand-in for Milvus ≥ 2.4's REST import endpoints: answers each request with the next
    /// canned JSON and records `(path, authorization, body)`.
    async fn rest_stand_in(answers: Vec<serde_json::Value>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = std::sync::Arc::clone(&seen);
        tokio::spawn(async move {
            for answer in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let (head, body) = loop {
                    let read = stream.read(&mut buffer).await.unwrap();
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|value| value.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            break (head.to_owned(), body.to_owned());
                        }
                    }
                };
                let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let authorization = head
                    .lines()
                    .find_map(|line| line.strip_prefix("authorization: ").or_else(|| line.strip_prefix("Authorization: ")))
                    .unwrap_or_default()
                    .to_owned();
                recorded.lock().unwrap().push((path, authorization, serde_json::from_str(&body).unwrap_or(Value::Null)));
                let body = answer.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
        });
        (address, seen)
    }

    #[tokio::test]
    async fn on_milvus_2_4_jobs_are_submitted_followed_and_listed_over_rest_with_the_token() {
        let answers = vec![
            serde_json::json!({"code": 0, "data": {"jobId": "448707763884413158"}}),
            serde_json::json!({"code": 0, "data": {"jobId": "448707763884413158", "state": "Importing", "importedRows": 1200}}),
            serde_json::json!({"code": 0, "data": {"records": [{"jobId": "448707763884413158", "state": "Completed"}]}}),
            serde_json::json!({"code": 0, "data": {"jobId": "448707763884413158", "state": "Completed", "importedRows": 2000,
                "details": [{"fileName": "imports/p/j/part-00000.parquet", "state": "Completed"}]}}),
            serde_json::json!({"code": 0, "data": {"jobId": "448707763884413158", "state": "Failed", "reason": "the file's vector field has the wrong dimension"}}),
        ];
        let (address, seen) = rest_stand_in(answers).await;
        let mut settings = MilvusSettings { uri: address.clone(), ..MilvusSettings::default() };
        settings.token = crate::settings::Secret::new("root:Milvus");
        let client = rest_client(&address, &settings).unwrap();
        let sink = MilvusSink::open(&settings, std::path::Path::new(".")).await.unwrap().with_import_api(ImportApi::Rest(client));

        let job = sink.submit_import("books", "imports/p/j/part-00000.parquet").await.unwrap();
        assert_eq!(job, "448707763884413158");
        assert_eq!(sink.import_state("books", &job).await.unwrap(), ImportProgress::Running { rows: 1200 });
        let listed = sink.listed_imports("books").await.unwrap();
        assert_eq!(listed, vec![ListedImport { id: job.clone(), files: vec!["imports/p/j/part-00000.parquet".into()] }]);
        let ImportProgress::Failed { reason } = sink.import_state("books", &job).await.unwrap() else { panic!("a failed job") };
        assert!(reason.contains("wrong dimension"), "{reason}");

        let seen = seen.lock().unwrap().clone();
        let paths: Vec<&str> = seen.iter().map(|(path, _, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v2/vectordb/jobs/import/create",
                "/v2/vectordb/jobs/import/describe",
                "/v2/vectordb/jobs/import/list",
                "/v2/vectordb/jobs/import/describe",
                "/v2/vectordb/jobs/import/describe"
            ]
        );
        assert!(seen.iter().all(|(_, authorization, _)| authorization == "Bearer root:Milvus"), "{seen:?}");
        assert_eq!(seen[0].2["collectionName"], "books");
        assert_eq!(seen[0].2["files"], serde_json::json!([["imports/p/j/part-00000.parquet"]]), "one file per job");
        assert_eq!(seen[1].2["jobId"], "448707763884413158");
        assert_eq!(seen[2].2["collectionName"], "books");
    }
}
