//! Whose fault an error is, which decides what vecdrop does about it.
//!
//! Every error that can stop a file's import classifies itself ([`Classify`]); the daemon and the
//! CLI act on the class, never on an error's text:
//!
//! | [`Fault`] | example | what happens |
//! |---|---|---|
//! | `Record` | a value that does not fit its field | dead-lettered; the file goes on |
//! | `File` | a truncated Parquet footer, a missing column | the file goes to `.failed/` |
//! | `Transient` | Milvus unreachable, rate limited, disk full | the file stays; the pipeline backs off and resumes |
//! | `Config` | the collection's schema or model does not fit, bad credentials | the pipeline pauses; the key is named |
//! | `Bug` | a ledger delta that does not chain, a stage that vanished | the pipeline stops loudly |
//!
//! Records never reach the daemon as errors (the pipeline dead-letters them), so `Record` is
//! there for completeness of the vocabulary and for the metrics.

use std::fmt;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// One record is bad: dead-letter it and go on.
    Record,
    /// The file itself is bad: quarantine it.
    File,
    /// The environment failed for now (Milvus or network away, rate limits, disk full, memory):
    /// keep the file, back off, retry from the committed position.
    Transient,
    /// The configuration does not fit what it meets (collection schema, model, credentials):
    /// pause the pipeline until it is fixed.
    Config,
    /// vecdrop broke one of its own invariants: stop the pipeline loudly.
    Bug,
}

impl Fault {
    /// The label used in logs, metrics and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Record => "record",
            Fault::File => "file",
            Fault::Transient => "transient",
            Fault::Config => "config",
            Fault::Bug => "bug",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An error that knows whose fault it is.
pub trait Classify {
    /// The fault class; decides quarantine, backoff, pause or stop.
    fn fault(&self) -> Fault;
}

/// The class of an OS error met while reading a *source* file: resources running out or an
/// interrupted read pass; a file that cannot be read (gone, not permitted, a directory) is the
/// file's problem.
pub fn io_fault_of_source(error: &std::io::Error) -> Fault {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::OutOfMemory | ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::StorageFull => {
            Fault::Transient
        }
        _ if matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EIO)) => Fault::Transient,
        _ => Fault::File,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_resources_while_reading_a_source_is_transient_and_a_missing_file_is_the_files() {
        assert_eq!(io_fault_of_source(&std::io::Error::from_raw_os_error(libc::EMFILE)), Fault::Transient);
        assert_eq!(io_fault_of_source(&std::io::Error::from(std::io::ErrorKind::OutOfMemory)), Fault::Transient);
        assert_eq!(io_fault_of_source(&std::io::Error::from(std::io::ErrorKind::NotFound)), Fault::File);
        assert_eq!(io_fault_of_source(&std::io::Error::from(std::io::ErrorKind::InvalidData)), Fault::File);
    }

    #[test]
    fn labels_are_stable() {
        let labels: Vec<&str> =
            [Fault::Record, Fault::File, Fault::Transient, Fault::Config, Fault::Bug].iter().map(|f| f.as_str()).collect();
        assert_eq!(labels, ["record", "file", "transient", "config", "bug"]);
    }
}
