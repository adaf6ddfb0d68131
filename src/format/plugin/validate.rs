//! What the host checks in every batch a plugin returns before anything of it is used: the row
//! count, the output size, the offsets (inside what was fed, increasing, not overlapping), the
//! value count, that a checkpoint sits at the end of the last row and that its state is at most
//! [`MAX_CHECKPOINT_STATE_BYTES`]. Pure functions.

use super::sandbox::wit;
use super::MAX_CHECKPOINT_STATE_BYTES;

/// What the batch of one `feed` call must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedBounds {
    /// Absolute offset just past the last byte fed so far.
    pub fed_until: u64,
    /// End of the last row returned before this batch (or the offset feeding started at).
    pub previous_end: u64,
    /// The `max-rows` of the call.
    pub max_rows: u32,
    /// Cap on the bytes of values (and rejection reasons) of one batch.
    pub max_output_bytes: usize,
    /// Columns in the plugin's schema.
    pub columns: usize,
}

/// Checks `batch` against `bounds`; the error says what the plugin did wrong.
pub fn check_batch(batch: &wit::Batch, bounds: &FeedBounds) -> Result<(), String> {
    if batch.rows.len() > bounds.max_rows as usize {
        return Err(format!("returned {} rows from one call, more than max-rows {}", batch.rows.len(), bounds.max_rows));
    }
    let output_bytes: usize = batch.rows.iter().map(row_bytes).sum();
    if output_bytes > bounds.max_output_bytes {
        return Err(format!(
            "returned {output_bytes} bytes of values from one call, more than the cap of {} bytes (plugins.max_output_mib)",
            bounds.max_output_bytes
        ));
    }
    let mut previous_end = bounds.previous_end;
    for (index, row) in batch.rows.iter().enumerate() {
        check_row_offsets(index, row, previous_end, bounds.fed_until)?;
        if let Ok(values) = &row.fields {
            if values.len() != bounds.columns {
                return Err(format!("row at byte {} has {} values but the schema has {} columns", row.start, values.len(), bounds.columns));
            }
        }
        previous_end = row.end;
    }
    if let Some(checkpoint) = &batch.checkpoint {
        check_checkpoint(batch, checkpoint.offset, previous_end, bounds.fed_until)?;
        check_state(&checkpoint.state)?;
    }
    if !batch.wants_input && batch.rows.is_empty() {
        return Err("asked to be called again without returning a row (it would never finish)".to_owned());
    }
    Ok(())
}

fn check_row_offsets(index: usize, row: &wit::Row, previous_end: u64, fed_until: u64) -> Result<(), String> {
    let span = format!("row {index} of the batch spans bytes [{}, {})", row.start, row.end);
    if row.start < previous_end {
        return Err(format!("{span}, which starts before the end of the previous row ({previous_end}): offsets must increase"));
    }
    if row.end <= row.start {
        return Err(format!("{span}, which is empty or reversed"));
    }
    if row.end > fed_until {
        return Err(format!("{span}, past the {fed_until} bytes fed so far"));
    }
    Ok(())
}

fn check_checkpoint(batch: &wit::Batch, offset: u64, last_end: u64, fed_until: u64) -> Result<(), String> {
    if !batch.rows.is_empty() && offset != last_end {
        return Err(format!("returned a checkpoint at byte {offset}, not at the end of its last row ({last_end})"));
    }
    if offset < last_end || offset > fed_until {
        return Err(format!(
            "returned a checkpoint at byte {offset}, outside [{last_end}, {fed_until}] (after the last row, within what was fed)"
        ));
    }
    Ok(())
}

fn check_state(state: &[u8]) -> Result<(), String> {
    if state.len() > MAX_CHECKPOINT_STATE_BYTES {
        return Err(format!(
            "returned a checkpoint state of {} bytes, more than the cap of {MAX_CHECKPOINT_STATE_BYTES} bytes ({} KiB)",
            state.len(),
            MAX_CHECKPOINT_STATE_BYTES >> 10
        ));
    }
    Ok(())
}

/// Approximate size of a row's values as the host holds them.
fn row_bytes(row: &wit::Row) -> usize {
    const PER_VALUE: usize = 16;
    match &row.fields {
        Err(reason) => reason.len(),
        Ok(values) => values
            .iter()
            .map(|value| {
                PER_VALUE
                    + match value {
                        wit::Value::Text(text) | wit::Value::Json(text) => text.len(),
                        wit::Value::Bytes(bytes) => bytes.len(),
                        wit::Value::Vector(vector) => vector.len() * 4,
                        _ => 0,
                    }
            })
            .sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: u64, end: u64) -> wit::Row {
        wit::Row { start, end, fields: Ok(vec![wit::Value::Text("x".into())]) }
    }

    fn batch(rows: Vec<wit::Row>, checkpoint: Option<u64>) -> wit::Batch {
        wit::Batch { rows, checkpoint: checkpoint.map(|offset| wit::Checkpoint { offset, state: Vec::new() }), wants_input: true }
    }

    const BOUNDS: FeedBounds = FeedBounds { fed_until: 100, previous_end: 10, max_rows: 3, max_output_bytes: 1000, columns: 1 };

    #[test]
    fn increasing_rows_inside_the_fed_bytes_with_a_checkpoint_at_the_end_pass() {
        check_batch(&batch(vec![row(10, 20), row(25, 100)], Some(100)), &BOUNDS).unwrap();
        check_batch(&batch(vec![], Some(40)), &BOUNDS).unwrap();
    }

    #[test]
    fn bad_offsets_are_named() {
        let error = |rows, checkpoint| check_batch(&batch(rows, checkpoint), &BOUNDS).unwrap_err();
        assert!(error(vec![row(5, 20)], None).contains("starts before the end of the previous row (10)"));
        assert!(error(vec![row(10, 20), row(15, 30)], None).contains("offsets must increase"));
        assert!(error(vec![row(20, 20)], None).contains("empty or reversed"));
        assert!(error(vec![row(20, 101)], None).contains("past the 100 bytes fed so far"));
        assert!(error(vec![row(10, 20)], Some(30)).contains("not at the end of its last row (20)"));
        assert!(error(vec![], Some(5)).contains("outside [10, 100]"));
    }

    #[test]
    fn too_many_rows_too_much_output_wrong_value_count_and_stalls_are_refused() {
        let four = vec![row(10, 11), row(11, 12), row(12, 13), row(13, 14)];
        assert!(check_batch(&batch(four, None), &BOUNDS).unwrap_err().contains("more than max-rows 3"));
        let big = wit::Row { start: 10, end: 20, fields: Ok(vec![wit::Value::Text("x".repeat(2000))]) };
        assert!(check_batch(&batch(vec![big], None), &BOUNDS).unwrap_err().contains("more than the cap of 1000 bytes"));
        let two_values = wit::Row { start: 10, end: 20, fields: Ok(vec![wit::Value::Null, wit::Value::Null]) };
        assert!(check_batch(&batch(vec![two_values], None), &BOUNDS).unwrap_err().contains("has 2 values but the schema has 1"));
        let stalled = wit::Batch { rows: vec![], checkpoint: None, wants_input: false };
        assert!(check_batch(&stalled, &BOUNDS).unwrap_err().contains("never finish"));
    }

    #[test]
    fn a_checkpoint_state_over_the_cap_is_refused_and_one_at_the_cap_passes() {
        let with_state = |bytes: usize| wit::Batch {
            rows: vec![row(10, 20)],
            checkpoint: Some(wit::Checkpoint { offset: 20, state: vec![7; bytes] }),
            wants_input: true,
        };
        check_batch(&with_state(MAX_CHECKPOINT_STATE_BYTES), &BOUNDS).unwrap();
        let error = check_batch(&with_state(MAX_CHECKPOINT_STATE_BYTES + 1), &BOUNDS).unwrap_err();
        assert!(error.contains("checkpoint state of 65537 bytes, more than the cap of 65536 bytes (64 KiB)"), "{error}");
    }
}
