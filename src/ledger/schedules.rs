//! Schedule runs: last start, last outcome and next planned run per pipeline, so that `/status`
//! and `vecdrop status` can say what the recurring imports did.

use serde::{Deserialize, Serialize};

use super::{Ledger, LedgerError};

/// What a pipeline's schedule did last and will do next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    pub pipeline: String,
    /// The cron expression.
    pub schedule: String,
    /// When the last run started (RFC 3339).
    pub last_run: Option<String>,
    /// How it ended: `running`, `ok: …` or `failed: …`.
    pub last_outcome: Option<String>,
    /// When the next run is due (RFC 3339), as far as the scheduler knows.
    pub next_run: Option<String>,
}

impl Ledger {
    /// Stores `entry` (flushed).
    pub fn put_schedule(&self, entry: &ScheduleEntry) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(entry).expect("schedule entries serialise");
        self.schedules.insert(entry.pipeline.as_bytes(), bytes).map_err(|error| self.storage(error))?;
        self.flush()
    }

    /// The stored entry of `pipeline`'s schedule.
    pub fn schedule(&self, pipeline: &str) -> Result<Option<ScheduleEntry>, LedgerError> {
        let value = self.schedules.get(pipeline.as_bytes()).map_err(|error| self.storage(error))?;
        value
            .map(|bytes| serde_json::from_slice(&bytes).map_err(|error| self.storage_message(format!("undecodable schedule: {error}"))))
            .transpose()
    }

    /// Every stored schedule entry, by pipeline name.
    pub fn schedules(&self) -> Result<Vec<ScheduleEntry>, LedgerError> {
        let mut entries = Vec::new();
        for item in self.schedules.iter() {
            let (_, bytes) = item.map_err(|error| self.storage(error))?;
            entries.push(serde_json::from_slice(&bytes).map_err(|error| self.storage_message(format!("undecodable schedule: {error}")))?);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_entries_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let entry = ScheduleEntry {
            pipeline: "docs".into(),
            schedule: "*/5 * * * * *".into(),
            last_run: Some("2026-11-28T10:00:00Z".into()),
            last_outcome: Some("ok: 2 files".into()),
            next_run: None,
        };
        ledger.put_schedule(&entry).unwrap();
        assert_eq!(ledger.schedule("docs").unwrap(), Some(entry.clone()));
        assert_eq!(ledger.schedules().unwrap(), vec![entry]);
        assert_eq!(ledger.schedule("other").unwrap(), None);
    }
}
