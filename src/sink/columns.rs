//! What requests carry: rows as columns (cut under [`super::MAX_REQUEST_BYTES`]), key filters
//! written out for Milvus 2.3's expression parser, keys and JSON values read back from answers.

use milvus::v2::error::Error as MilvusError;
use milvus::v2::prelude::FieldData;

use super::CollectionSpec;
use crate::mapping::{Row, ScalarValue};
use crate::settings::{KeyType, ROW_HASH_FIELD};

/// `field in ["a","b"]` with JSON string escaping (accepted by Milvus 2.3's expression parser).
pub fn key_filter(field: &str, keys: &[String], key: KeyType) -> String {
    let literals: Vec<String> = match key {
        KeyType::Varchar => keys.iter().map(|key| serde_json::Value::String(key.clone()).to_string()).collect(),
        // Only integers can be keys of an INT64 collection; anything else matches nothing.
        KeyType::Int64 => keys.iter().filter_map(|key| key.parse::<i64>().ok()).map(|key| key.to_string()).collect(),
    };
    format!("{field} in [{}]", literals.join(","))
}

/// The primary key of a query result row, as text (an INT64 key in decimal).
// The SDK's error type, as every Milvus call returns it (the retry policy classifies it).
#[allow(clippy::result_large_err)]
pub(super) fn key_of(row: &milvus::v2::types::ResultRow<'_>, field: &str, key: KeyType) -> Result<String, MilvusError> {
    match key {
        KeyType::Varchar => Ok(row.get_str(field)?.to_owned()),
        KeyType::Int64 => Ok(row.get_i64(field)?.to_string()),
    }
}

/// Cuts rows into consecutive `[start, end)` ranges whose estimated request size stays under
/// `max_bytes` (a single larger row still gets a range of its own).
pub fn request_ranges(rows: &[Row], dimension: usize, max_bytes: usize) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, row) in rows.iter().enumerate() {
        let size = estimated_bytes(row, dimension);
        if index > start && bytes + size > max_bytes {
            ranges.push((start, index));
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < rows.len() {
        ranges.push((start, rows.len()));
    }
    ranges
}

fn estimated_bytes(row: &Row, dimension: usize) -> usize {
    let scalars: usize = row
        .scalars
        .iter()
        .map(|value| match value {
            ScalarValue::Varchar(text) => text.len() + 8,
            ScalarValue::Json(json) => json.to_string().len() + 8,
            _ => 8,
        })
        .sum();
    row.primary_key.len() + row.text.len() + 4 * dimension + scalars + 32
}

/// The request's columns; `Err` only when an INT64 key is not an integer (a bug: mapping
/// dead-letters those).
#[allow(clippy::result_large_err)]
pub(super) fn columns(spec: &CollectionSpec, key: KeyType, rows: &[Row], vectors: &[Vec<f32>]) -> Result<Vec<FieldData>, MilvusError> {
    let key_column = match key {
        KeyType::Varchar => {
            FieldData::varchar(spec.collection.primary_key.clone(), rows.iter().map(|row| row.primary_key.clone()).collect())
        }
        KeyType::Int64 => {
            let keys = rows
                .iter()
                .map(|row| {
                    row.primary_key.parse::<i64>().map_err(|_| {
                        // Mapping dead-letters non-integer ids of an INT64 key; reaching here is a bug.
                        MilvusError::Unexpected(format!("primary key {:?} is not an integer (INT64 key)", row.primary_key))
                    })
                })
                .collect::<Result<Vec<i64>, _>>()?;
            FieldData::int64(spec.collection.primary_key.clone(), keys)
        }
    };
    let mut columns = vec![
        key_column,
        FieldData::varchar(spec.collection.text_field.clone(), rows.iter().map(|row| row.text.clone()).collect()),
        FieldData::int64(ROW_HASH_FIELD, rows.iter().map(|row| row.row_hash).collect()),
    ];
    for (index, (name, _)) in spec.collection.scalar_fields.iter().enumerate() {
        let values = rows.iter().map(|row| &row.scalars[index]);
        columns.push(scalar_column(name, values));
    }
    columns.push(FieldData::float_vector(spec.collection.vector_field.clone(), vectors.to_vec()));
    Ok(columns)
}

fn scalar_column<'a>(name: &str, values: impl Iterator<Item = &'a ScalarValue> + Clone) -> FieldData {
    macro_rules! collect {
        ($variant:ident, $constructor:ident) => {
            FieldData::$constructor(
                name.to_owned(),
                values
                    .map(|value| match value {
                        ScalarValue::$variant(inner) => inner.clone(),
                        other => unreachable!("mapping gives one type per field, found {other:?}"),
                    })
                    .collect(),
            )
        };
    }
    match values.clone().next() {
        Some(ScalarValue::Bool(_)) => collect!(Bool, boolean),
        Some(ScalarValue::Int32(_)) => collect!(Int32, int32),
        Some(ScalarValue::Int64(_)) => collect!(Int64, int64),
        Some(ScalarValue::Float(_)) => collect!(Float, float),
        Some(ScalarValue::Double(_)) => collect!(Double, double),
        Some(ScalarValue::Varchar(_)) => collect!(Varchar, varchar),
        Some(ScalarValue::Json(_)) => collect!(Json, json),
        None => FieldData::varchar(name.to_owned(), Vec::new()),
    }
}

pub(super) fn json_at(column: &FieldData, index: usize) -> serde_json::Value {
    if let Some(values) = column.as_varchar() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::Value::String(value.clone()));
    }
    if let Some(values) = column.as_int64() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::json!(value));
    }
    if let Some(values) = column.as_int32() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::json!(value));
    }
    if let Some(values) = column.as_double() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::json!(value));
    }
    if let Some(values) = column.as_float() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::json!(value));
    }
    if let Some(values) = column.as_json() {
        return values.get(index).cloned().unwrap_or(serde_json::Value::Null);
    }
    if let Some(values) = column.as_bool() {
        return values.get(index).map_or(serde_json::Value::Null, |value| serde_json::json!(value));
    }
    serde_json::Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RecordPosition;

    fn row(text_bytes: usize) -> Row {
        Row {
            primary_key: "k".into(),
            text: "x".repeat(text_bytes),
            scalars: vec![],
            row_hash: 0,
            position: RecordPosition { ordinal: 0, line: None, byte_offset: 0 },
            vector: None,
        }
    }

    #[test]
    fn requests_are_cut_under_the_byte_cap_and_cover_every_row_in_order() {
        let rows: Vec<Row> = [100, 5000, 100, 9000, 100, 100, 20_000, 100].iter().map(|&size| row(size)).collect();
        let ranges = request_ranges(&rows, 384, 12_000);
        let mut next = 0;
        for &(start, end) in &ranges {
            assert_eq!(start, next, "ranges are consecutive");
            assert!(end > start);
            let bytes: usize = rows[start..end].iter().map(|row| estimated_bytes(row, 384)).sum();
            assert!(end - start == 1 || bytes <= 12_000, "{start}..{end} holds {bytes} bytes");
            next = end;
        }
        assert_eq!(next, rows.len());
        // The 20,000-byte row exceeds the cap on its own and still gets a request.
        assert!(ranges.contains(&(6, 7)));
    }

    #[test]
    fn key_filters_escape_quotes_and_backslashes() {
        assert_eq!(key_filter("id", &["a\"b".into(), "c\\d".into()], KeyType::Varchar), r#"id in ["a\"b","c\\d"]"#);
        assert_eq!(key_filter("id", &["7".into(), "x".into(), "-12".into()], KeyType::Int64), "id in [7,-12]");
    }
}
