//! Key sets for `mirror = true`: which primary keys each imported version of a source held, so
//! that rows whose keys disappeared from the source can be deleted from Milvus.
//!
//! While a file is imported, the keys of each batch are recorded before the batch is committed
//! (recording ahead of the commit is harmless: the keys are in the file either way). When the file
//! is complete, [`Ledger::keys_gone`] lists the keys of the source's previously mirrored version
//! that the new version lacks; after Milvus deleted them, [`Ledger::complete_mirror`] makes the new
//! version the source's baseline and drops the old key set. A crash in between repeats the
//! deletion, which is harmless. Key sets live on disk, so memory does not grow with the file.

use super::{Ledger, LedgerError};

/// Separator inside composite keys (cannot occur in pipeline names, hashes or paths).
const SEPARATOR: u8 = 0;

impl Ledger {
    /// Records that version `hash` of a file imported by `pipeline` holds the rows `keys`.
    pub fn record_keys<'k>(&self, pipeline: &str, hash: &str, keys: impl IntoIterator<Item = &'k str>) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.insert(member(pipeline, hash, key), &[]);
        }
        self.mirror_keys.apply_batch(batch).map_err(|error| self.storage(error))
    }

    /// Hash of the version of `source` mirrored last, if any.
    pub fn mirrored_version(&self, pipeline: &str, source: &str) -> Result<Option<String>, LedgerError> {
        let value = self.sources.get(composite(&[pipeline, source])).map_err(|error| self.storage(error))?;
        Ok(value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Keys of version `previous` that version `current` lacks, at most `limit` of them, after
    /// `after` (exclusive) in key order: page through them by passing the last key returned.
    pub fn keys_gone(
        &self,
        pipeline: &str,
        previous: &str,
        current: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, LedgerError> {
        let prefix = composite(&[pipeline, previous, ""]);
        let start = match after {
            Some(key) => {
                let mut start = member(pipeline, previous, key);
                start.push(SEPARATOR); // the smallest key after `after`
                start
            }
            None => prefix.clone(),
        };
        let mut gone = Vec::new();
        for item in self.mirror_keys.range(start..) {
            let (stored, _) = item.map_err(|error| self.storage(error))?;
            let Some(key) = stored.strip_prefix(prefix.as_slice()) else { break };
            let key = String::from_utf8_lossy(key).into_owned();
            if !self.mirror_keys.contains_key(member(pipeline, current, &key)).map_err(|error| self.storage(error))? {
                gone.push(key);
                if gone.len() >= limit {
                    break;
                }
            }
        }
        Ok(gone)
    }

    /// How many keys version `hash` holds.
    pub fn count_keys(&self, pipeline: &str, hash: &str) -> Result<u64, LedgerError> {
        let mut count = 0;
        for item in self.mirror_keys.scan_prefix(composite(&[pipeline, hash, ""])) {
            item.map_err(|error| self.storage(error))?;
            count += 1;
        }
        Ok(count)
    }

    /// How many keys of version `previous` version `current` lacks.
    pub fn count_keys_gone(&self, pipeline: &str, previous: &str, current: &str) -> Result<u64, LedgerError> {
        let mut count = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = self.keys_gone(pipeline, previous, current, after.as_deref(), 4096)?;
            let Some(last) = page.last() else { return Ok(count) };
            count += page.len() as u64;
            after = Some(last.clone());
        }
    }

    /// Makes `current` the mirrored version of `source` and drops the key set of `previous` (unless
    /// another source still uses it). Flushed before returning.
    pub fn complete_mirror(&self, pipeline: &str, source: &str, current: &str, previous: Option<&str>) -> Result<(), LedgerError> {
        self.sources.insert(composite(&[pipeline, source]), current.as_bytes()).map_err(|error| self.storage(error))?;
        if let Some(previous) = previous.filter(|previous| *previous != current) {
            if !self.version_in_use(previous)? {
                for item in self.mirror_keys.scan_prefix(composite(&[pipeline, previous, ""])) {
                    let (stored, _) = item.map_err(|error| self.storage(error))?;
                    self.mirror_keys.remove(stored).map_err(|error| self.storage(error))?;
                }
            }
        }
        self.flush()
    }

    fn version_in_use(&self, hash: &str) -> Result<bool, LedgerError> {
        for item in self.sources.iter() {
            let (_, value) = item.map_err(|error| self.storage(error))?;
            if value.as_ref() == hash.as_bytes() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn composite(parts: &[&str]) -> Vec<u8> {
    let mut key = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            key.push(SEPARATOR);
        }
        key.extend_from_slice(part.as_bytes());
    }
    key
}

fn member(pipeline: &str, hash: &str, key: &str) -> Vec<u8> {
    composite(&[pipeline, hash, key])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_gone(ledger: &Ledger, previous: &str, current: &str, page: usize) -> Vec<String> {
        let mut gone = Vec::new();
        loop {
            let next = ledger.keys_gone("docs", previous, current, gone.last().map(String::as_str), page).unwrap();
            if next.is_empty() {
                return gone;
            }
            gone.extend(next);
        }
    }

    #[test]
    fn keys_gone_are_those_of_the_previous_version_missing_from_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.record_keys("docs", "v1", ["a", "b", "c", "d", "e"]).unwrap();
        ledger.record_keys("docs", "v2", ["a", "c", "e", "f"]).unwrap();
        ledger.record_keys("other", "v1", ["z"]).unwrap();
        for page in [1, 2, 10] {
            assert_eq!(all_gone(&ledger, "v1", "v2", page), ["b", "d"], "page size {page}");
        }
        assert!(all_gone(&ledger, "v2", "v2", 10).is_empty());
        assert_eq!(ledger.count_keys("docs", "v1").unwrap(), 5);
        assert_eq!(ledger.count_keys("docs", "v2").unwrap(), 4);
        assert_eq!(ledger.count_keys_gone("docs", "v1", "v2").unwrap(), 2);
        assert_eq!(ledger.count_keys_gone("docs", "v2", "v1").unwrap(), 1);
    }

    #[test]
    fn a_key_that_prefixes_another_is_not_confused_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.record_keys("docs", "v1", ["a", "ab", "abc"]).unwrap();
        ledger.record_keys("docs", "v2", ["ab"]).unwrap();
        assert_eq!(all_gone(&ledger, "v1", "v2", 1), ["a", "abc"]);
    }

    #[test]
    fn completing_a_mirror_moves_the_baseline_and_drops_the_old_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.mirrored_version("docs", "exports/a.csv").unwrap(), None);
        ledger.record_keys("docs", "v1", ["a", "b"]).unwrap();
        ledger.complete_mirror("docs", "exports/a.csv", "v1", None).unwrap();
        ledger.record_keys("docs", "v2", ["a"]).unwrap();
        ledger.complete_mirror("docs", "exports/a.csv", "v2", Some("v1")).unwrap();
        assert_eq!(ledger.mirrored_version("docs", "exports/a.csv").unwrap().as_deref(), Some("v2"));
        assert!(all_gone(&ledger, "v1", "v2", 10).is_empty(), "v1's key set is gone");
        assert_eq!(all_gone(&ledger, "v2", "v3", 10), ["a"]);
    }
}
