//! Plugin values → [`FieldValue`]s, checked against the column kinds the plugin declared.
//!
//! | plugin value | `FieldValue` |
//! |---|---|
//! | null, boolean, integer, float, text | the same |
//! | bytes | `Text` when UTF-8, else `Json({"base64": …})` (as Parquet binary columns) |
//! | timestamp (µs since the epoch) | `Text`, RFC 3339 in UTC (`2024-05-01T12:00:00.5Z`) |
//! | json (text) | `Json`, parsed; text that is not JSON rejects the record |
//! | vector | `Vector`: the row skips the model when it is the pipeline's vector field |

use base64::Engine as _;

use super::sandbox::wit::{self, ColumnKind};
use crate::format::FieldValue;

/// Why a value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// The plugin broke its own schema: a bug in the plugin, which fails the file.
    KindMismatch(String),
    /// The record holds a value that cannot be represented (bad JSON, timestamp out of range):
    /// the record is rejected.
    Invalid(String),
}

/// Converts `value` of column `column` (declared `kind`).
pub fn convert(value: wit::Value, column: &str, kind: ColumnKind) -> Result<FieldValue, ValueError> {
    if !fits(&value, kind) {
        return Err(ValueError::KindMismatch(format!(
            "returned {} for column {column:?}, declared {}",
            name(&value),
            super::kind_name(kind)
        )));
    }
    Ok(match value {
        wit::Value::Null => FieldValue::Null,
        wit::Value::Boolean(value) => FieldValue::Bool(value),
        wit::Value::Integer(value) => FieldValue::Int(value),
        wit::Value::Float(value) => FieldValue::Float(value),
        wit::Value::Text(text) => FieldValue::Text(text),
        wit::Value::Bytes(bytes) => match String::from_utf8(bytes) {
            Ok(text) => FieldValue::Text(text),
            Err(error) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(error.as_bytes());
                FieldValue::Json(serde_json::json!({ "base64": encoded }))
            }
        },
        wit::Value::Timestamp(micros) => {
            let instant = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| ValueError::Invalid(format!("{column}: timestamp {micros} µs is out of range")))?;
            FieldValue::Text(format!("{}Z", instant.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f")))
        }
        wit::Value::Json(text) => {
            FieldValue::Json(serde_json::from_str(&text).map_err(|error| ValueError::Invalid(format!("{column}: expected JSON, {error}")))?)
        }
        wit::Value::Vector(values) => FieldValue::Vector(values),
    })
}

fn fits(value: &wit::Value, kind: ColumnKind) -> bool {
    matches!(
        (kind, value),
        (ColumnKind::Any, _)
            | (_, wit::Value::Null)
            | (ColumnKind::Boolean, wit::Value::Boolean(_))
            | (ColumnKind::Integer, wit::Value::Integer(_))
            | (ColumnKind::Float, wit::Value::Float(_) | wit::Value::Integer(_))
            | (ColumnKind::Text, wit::Value::Text(_))
            | (ColumnKind::Bytes, wit::Value::Bytes(_))
            | (ColumnKind::Timestamp, wit::Value::Timestamp(_))
            | (ColumnKind::Json, wit::Value::Json(_))
            | (ColumnKind::Vector, wit::Value::Vector(_))
    )
}

fn name(value: &wit::Value) -> &'static str {
    match value {
        wit::Value::Null => "null",
        wit::Value::Boolean(_) => "a boolean",
        wit::Value::Integer(_) => "an integer",
        wit::Value::Float(_) => "a float",
        wit::Value::Text(_) => "text",
        wit::Value::Bytes(_) => "bytes",
        wit::Value::Timestamp(_) => "a timestamp",
        wit::Value::Json(_) => "JSON",
        wit::Value::Vector(_) => "a vector",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_as_documented() {
        let convert_any = |value| convert(value, "c", ColumnKind::Any).unwrap();
        assert_eq!(convert_any(wit::Value::Bytes(b"text".to_vec())), FieldValue::Text("text".into()));
        assert_eq!(convert_any(wit::Value::Bytes(vec![0xff])), FieldValue::Json(serde_json::json!({"base64": "/w=="})));
        assert_eq!(convert_any(wit::Value::Timestamp(1_714_564_800_500_000)), FieldValue::Text("2024-05-01T12:00:00.500Z".into()));
        assert_eq!(convert_any(wit::Value::Json("{\"a\":1}".into())), FieldValue::Json(serde_json::json!({"a": 1})));
        assert_eq!(convert_any(wit::Value::Vector(vec![0.5, 1.0])), FieldValue::Vector(vec![0.5, 1.0]));
        assert_eq!(convert(wit::Value::Integer(3), "c", ColumnKind::Float).unwrap(), FieldValue::Int(3));
        assert_eq!(convert(wit::Value::Null, "c", ColumnKind::Vector).unwrap(), FieldValue::Null);
    }

    #[test]
    fn a_value_of_another_kind_is_a_plugin_bug_and_bad_json_a_bad_record() {
        let error = convert(wit::Value::Text("x".into()), "n", ColumnKind::Integer).unwrap_err();
        assert_eq!(error, ValueError::KindMismatch("returned text for column \"n\", declared integer".into()));
        assert!(matches!(convert(wit::Value::Json("{".into()), "j", ColumnKind::Json), Err(ValueError::Invalid(_))));
    }
}
