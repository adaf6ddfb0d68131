//! Arrow → [`FieldValue`]: how one cell of a Parquet column (decoded by arrow-rs) becomes a value.
//!
//! | Arrow type | [`FieldValue`] |
//! |---|---|
//! | null (any type) | `Null` |
//! | boolean | `Bool` |
//! | int8…int64, uint8…uint32, uint64 up to `i64::MAX` | `Int` |
//! | uint64 above `i64::MAX`, float16/32/64 | `Float` |
//! | utf8, large utf8, utf8 view | `Text` |
//! | binary, large binary, binary view, fixed-size binary | `Text` when valid UTF-8, else `Json({"base64": …})` |
//! | decimal32…256 | `Text`, the exact decimal (`"-12.340"`): no precision is lost; numeric fields parse it |
//! | date32/64 | `Text`, `YYYY-MM-DD` |
//! | timestamp with a time zone | `Text`, RFC 3339 in UTC (`2024-05-01T12:00:00.5Z`) |
//! | timestamp without a time zone | `Text`, ISO 8601 local time without offset (`2024-05-01T12:00:00.5`) |
//! | time32/64 | `Text`, `HH:MM:SS[.fff]` |
//! | duration | `Text`, ISO 8601 duration (`PT1.5S`) |
//! | list, large list, fixed-size list of numbers, no null element | `Vector` (as f32) |
//! | other lists, structs, maps | `Json` (arrays, objects; map keys as text) |
//! | dictionary-encoded values | the value the key points at |
//! | interval, union, run-end encoded, list view | refused: the record is rejected naming the column |

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use base64::Engine as _;

use super::FieldValue;

/// Nested lists / structs / maps deeper than this are refused (no unbounded recursion).
pub const MAX_NESTING_DEPTH: usize = 64;

/// The value at `row` of `column`, or why it cannot be represented (the record is then rejected
/// naming the column). `row` must be below `column.len()`.
pub fn field_value(column: &dyn Array, row: usize) -> Result<FieldValue, String> {
    value_at(column, row, 0)
}

fn value_at(array: &dyn Array, row: usize, depth: usize) -> Result<FieldValue, String> {
    if depth > MAX_NESTING_DEPTH {
        return Err(format!("expected at most {MAX_NESTING_DEPTH} levels of nesting, found more"));
    }
    if array.is_null(row) {
        return Ok(FieldValue::Null);
    }
    match array.data_type() {
        DataType::Null => Ok(FieldValue::Null),
        DataType::Boolean => Ok(FieldValue::Bool(array.as_boolean_opt().ok_or_else(|| mismatched(array))?.value(row))),
        DataType::Int8 => integer::<Int8Type>(array, row),
        DataType::Int16 => integer::<Int16Type>(array, row),
        DataType::Int32 => integer::<Int32Type>(array, row),
        DataType::Int64 => integer::<Int64Type>(array, row),
        DataType::UInt8 => integer::<UInt8Type>(array, row),
        DataType::UInt16 => integer::<UInt16Type>(array, row),
        DataType::UInt32 => integer::<UInt32Type>(array, row),
        DataType::UInt64 => {
            let value = primitive::<UInt64Type>(array)?.value(row);
            Ok(i64::try_from(value).map(FieldValue::Int).unwrap_or(FieldValue::Float(value as f64)))
        }
        DataType::Float16 => Ok(FieldValue::Float(primitive::<Float16Type>(array)?.value(row).to_f64())),
        DataType::Float32 => Ok(FieldValue::Float(f64::from(primitive::<Float32Type>(array)?.value(row)))),
        DataType::Float64 => Ok(FieldValue::Float(primitive::<Float64Type>(array)?.value(row))),
        DataType::Utf8 => text(array.as_string_opt::<i32>().map(|strings| strings.value(row)), array),
        DataType::LargeUtf8 => text(array.as_string_opt::<i64>().map(|strings| strings.value(row)), array),
        DataType::Utf8View => text(array.as_string_view_opt().map(|strings| strings.value(row)), array),
        DataType::Binary => binary(array.as_binary_opt::<i32>().map(|bytes| bytes.value(row)), array),
        DataType::LargeBinary => binary(array.as_binary_opt::<i64>().map(|bytes| bytes.value(row)), array),
        DataType::BinaryView => binary(array.as_binary_view_opt().map(|bytes| bytes.value(row)), array),
        DataType::FixedSizeBinary(_) => binary(array.as_fixed_size_binary_opt().map(|bytes| bytes.value(row)), array),
        DataType::Decimal32(..) => Ok(FieldValue::Text(primitive::<Decimal32Type>(array)?.value_as_string(row))),
        DataType::Decimal64(..) => Ok(FieldValue::Text(primitive::<Decimal64Type>(array)?.value_as_string(row))),
        DataType::Decimal128(..) => Ok(FieldValue::Text(primitive::<Decimal128Type>(array)?.value_as_string(row))),
        DataType::Decimal256(..) => Ok(FieldValue::Text(primitive::<Decimal256Type>(array)?.value_as_string(row))),
        DataType::Date32 => date(primitive::<Date32Type>(array)?.value_as_date(row)),
        DataType::Date64 => date(primitive::<Date64Type>(array)?.value_as_date(row)),
        DataType::Timestamp(unit, time_zone) => timestamp(array, row, *unit, time_zone.is_some()),
        DataType::Time32(_) | DataType::Time64(_) => time_of_day(array, row),
        DataType::Duration(unit) => duration(array, row, *unit),
        DataType::List(_) => list(array.as_list_opt::<i32>().ok_or_else(|| mismatched(array))?.value(row).as_ref(), depth),
        DataType::LargeList(_) => list(array.as_list_opt::<i64>().ok_or_else(|| mismatched(array))?.value(row).as_ref(), depth),
        DataType::FixedSizeList(..) => list(array.as_fixed_size_list_opt().ok_or_else(|| mismatched(array))?.value(row).as_ref(), depth),
        DataType::Struct(_) => structure(array, row, depth),
        DataType::Map(..) => map(array, row, depth),
        DataType::Dictionary(..) => dictionary(array, row, depth),
        other => Err(format!("cannot convert a value of Arrow type {other} (not supported by vecdrop)")),
    }
}

fn mismatched(array: &dyn Array) -> String {
    format!("internal: a column of type {} does not hold that type", array.data_type())
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array) -> Result<&PrimitiveArray<T>, String> {
    array.as_primitive_opt::<T>().ok_or_else(|| mismatched(array))
}

fn integer<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Result<FieldValue, String>
where
    T::Native: Into<i64>,
{
    Ok(FieldValue::Int(primitive::<T>(array)?.value(row).into()))
}

fn text(value: Option<&str>, array: &dyn Array) -> Result<FieldValue, String> {
    value.map(|text| FieldValue::Text(text.to_owned())).ok_or_else(|| mismatched(array))
}

/// Binary cells are text when they are UTF-8; otherwise `{"base64": …}` so that a column the
/// pipeline does not use (UUIDs, hashes, images) does not reject every record of the file.
fn binary(value: Option<&[u8]>, array: &dyn Array) -> Result<FieldValue, String> {
    let bytes = value.ok_or_else(|| mismatched(array))?;
    Ok(match std::str::from_utf8(bytes) {
        Ok(text) => FieldValue::Text(text.to_owned()),
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            FieldValue::Json(serde_json::json!({ "base64": encoded }))
        }
    })
}

fn date(value: Option<chrono::NaiveDate>) -> Result<FieldValue, String> {
    let date = value.ok_or("expected a date, found one out of the representable range")?;
    Ok(FieldValue::Text(date.format("%Y-%m-%d").to_string()))
}

/// Arrow stores zoned timestamps as UTC instants: they are written in UTC with `Z`. Timestamps
/// without a zone are wall-clock times and are written without an offset.
fn timestamp(array: &dyn Array, row: usize, unit: TimeUnit, zoned: bool) -> Result<FieldValue, String> {
    let datetime = match unit {
        TimeUnit::Second => primitive::<TimestampSecondType>(array)?.value_as_datetime(row),
        TimeUnit::Millisecond => primitive::<TimestampMillisecondType>(array)?.value_as_datetime(row),
        TimeUnit::Microsecond => primitive::<TimestampMicrosecondType>(array)?.value_as_datetime(row),
        TimeUnit::Nanosecond => primitive::<TimestampNanosecondType>(array)?.value_as_datetime(row),
    };
    let datetime = datetime.ok_or("expected a timestamp, found one out of the representable range")?;
    let suffix = if zoned { "Z" } else { "" };
    Ok(FieldValue::Text(format!("{}{suffix}", datetime.format("%Y-%m-%dT%H:%M:%S%.f"))))
}

fn time_of_day(array: &dyn Array, row: usize) -> Result<FieldValue, String> {
    let time = match array.data_type() {
        DataType::Time32(TimeUnit::Second) => primitive::<Time32SecondType>(array)?.value_as_time(row),
        DataType::Time32(TimeUnit::Millisecond) => primitive::<Time32MillisecondType>(array)?.value_as_time(row),
        DataType::Time64(TimeUnit::Microsecond) => primitive::<Time64MicrosecondType>(array)?.value_as_time(row),
        DataType::Time64(TimeUnit::Nanosecond) => primitive::<Time64NanosecondType>(array)?.value_as_time(row),
        other => return Err(format!("cannot convert a value of Arrow type {other}")),
    };
    let time = time.ok_or("expected a time of day, found one out of range")?;
    Ok(FieldValue::Text(time.format("%H:%M:%S%.f").to_string()))
}

fn duration(array: &dyn Array, row: usize, unit: TimeUnit) -> Result<FieldValue, String> {
    let duration = match unit {
        TimeUnit::Second => primitive::<DurationSecondType>(array)?.value_as_duration(row),
        TimeUnit::Millisecond => primitive::<DurationMillisecondType>(array)?.value_as_duration(row),
        TimeUnit::Microsecond => primitive::<DurationMicrosecondType>(array)?.value_as_duration(row),
        TimeUnit::Nanosecond => primitive::<DurationNanosecondType>(array)?.value_as_duration(row),
    };
    let duration = duration.ok_or("expected a duration, found one out of range")?;
    Ok(FieldValue::Text(duration.to_string()))
}

/// A list of numbers without nulls is a vector; any other list is a JSON array.
fn list(elements: &dyn Array, depth: usize) -> Result<FieldValue, String> {
    if elements.null_count() == 0 {
        if let Some(vector) = numbers(elements) {
            return Ok(FieldValue::Vector(vector));
        }
    }
    let values = (0..elements.len()).map(|index| value_at(elements, index, depth + 1).map(|value| value.to_json()));
    Ok(FieldValue::Json(serde_json::Value::Array(values.collect::<Result<_, _>>()?)))
}

/// The elements as f32 when they are numbers (f64 and integers are rounded to the nearest f32).
fn numbers(elements: &dyn Array) -> Option<Vec<f32>> {
    fn convert<T: ArrowPrimitiveType>(elements: &dyn Array, to_f32: impl Fn(T::Native) -> f32) -> Option<Vec<f32>> {
        elements.as_primitive_opt::<T>().map(|values| values.values().iter().map(|value| to_f32(*value)).collect())
    }
    match elements.data_type() {
        DataType::Float16 => convert::<Float16Type>(elements, |value| value.to_f32()),
        DataType::Float32 => convert::<Float32Type>(elements, |value| value),
        DataType::Float64 => convert::<Float64Type>(elements, |value| value as f32),
        DataType::Int8 => convert::<Int8Type>(elements, f32::from),
        DataType::Int16 => convert::<Int16Type>(elements, f32::from),
        DataType::Int32 => convert::<Int32Type>(elements, |value| value as f32),
        DataType::Int64 => convert::<Int64Type>(elements, |value| value as f32),
        DataType::UInt8 => convert::<UInt8Type>(elements, f32::from),
        DataType::UInt16 => convert::<UInt16Type>(elements, f32::from),
        DataType::UInt32 => convert::<UInt32Type>(elements, |value| value as f32),
        DataType::UInt64 => convert::<UInt64Type>(elements, |value| value as f32),
        _ => None,
    }
}

fn structure(array: &dyn Array, row: usize, depth: usize) -> Result<FieldValue, String> {
    let structure = array.as_struct_opt().ok_or_else(|| mismatched(array))?;
    let mut object = serde_json::Map::with_capacity(structure.num_columns());
    for (name, child) in structure.column_names().into_iter().zip(structure.columns()) {
        object.insert(name.to_owned(), value_at(child.as_ref(), row, depth + 1)?.to_json());
    }
    Ok(FieldValue::Json(serde_json::Value::Object(object)))
}

/// A map is a JSON object; keys that are not text are written as their JSON text.
fn map(array: &dyn Array, row: usize, depth: usize) -> Result<FieldValue, String> {
    let map = array.as_map_opt().ok_or_else(|| mismatched(array))?;
    let offsets = map.value_offsets();
    let start = usize::try_from(offsets[row]).map_err(|_| mismatched(array))?;
    let end = usize::try_from(offsets[row + 1]).map_err(|_| mismatched(array))?;
    let mut object = serde_json::Map::with_capacity(end.saturating_sub(start));
    for entry in start..end {
        let key = match value_at(map.keys().as_ref(), entry, depth + 1)? {
            FieldValue::Text(text) => text,
            other => other.to_json().to_string(),
        };
        object.insert(key, value_at(map.values().as_ref(), entry, depth + 1)?.to_json());
    }
    Ok(FieldValue::Json(serde_json::Value::Object(object)))
}

fn dictionary(array: &dyn Array, row: usize, depth: usize) -> Result<FieldValue, String> {
    let dictionary = array.as_any_dictionary_opt().ok_or_else(|| mismatched(array))?;
    let key = match value_at(dictionary.keys(), row, depth + 1)? {
        FieldValue::Int(key) => usize::try_from(key).ok(),
        _ => None,
    };
    let values = dictionary.values();
    match key {
        Some(key) if key < values.len() => value_at(values.as_ref(), key, depth + 1),
        _ => Err("expected a dictionary key within the dictionary, found one outside it".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, MapBuilder, StringBuilder};
    use arrow_array::{BinaryArray, Decimal128Array, DictionaryArray, Float64Array, StructArray, TimestampMillisecondArray, UInt64Array};
    use arrow_schema::Field;

    use super::*;

    #[test]
    fn scalars_map_to_their_field_values() {
        let big = UInt64Array::from(vec![7, u64::MAX]);
        assert_eq!(field_value(&big, 0), Ok(FieldValue::Int(7)));
        assert_eq!(field_value(&big, 1), Ok(FieldValue::Float(u64::MAX as f64)));
        let floats = Float64Array::from(vec![Some(1.5), None]);
        assert_eq!(field_value(&floats, 0), Ok(FieldValue::Float(1.5)));
        assert_eq!(field_value(&floats, 1), Ok(FieldValue::Null));
        let decimals = Decimal128Array::from(vec![-12_340]).with_precision_and_scale(10, 3).unwrap();
        assert_eq!(field_value(&decimals, 0), Ok(FieldValue::Text("-12.340".to_owned())));
    }

    #[test]
    fn timestamps_are_iso_8601_and_zoned_ones_are_utc() {
        let naive = TimestampMillisecondArray::from(vec![1_714_564_800_500]);
        assert_eq!(field_value(&naive, 0), Ok(FieldValue::Text("2024-05-01T12:00:00.500".to_owned())));
        let zoned = naive.with_timezone("+02:00");
        assert_eq!(field_value(&zoned, 0), Ok(FieldValue::Text("2024-05-01T12:00:00.500Z".to_owned())));
    }

    #[test]
    fn binary_is_text_when_utf8_and_base64_otherwise() {
        let bytes = BinaryArray::from(vec![&b"plain"[..], &[0xFF, 0x00][..]]);
        assert_eq!(field_value(&bytes, 0), Ok(FieldValue::Text("plain".to_owned())));
        assert_eq!(field_value(&bytes, 1), Ok(FieldValue::Json(serde_json::json!({ "base64": "/wA=" }))));
    }

    #[test]
    fn numeric_lists_are_vectors_unless_they_hold_nulls() {
        let mut lists = ListBuilder::new(Float32Builder::new());
        lists.append_value([Some(1.0), Some(2.0)]);
        lists.append_value([Some(1.0), None]);
        let lists = lists.finish();
        assert_eq!(field_value(&lists, 0), Ok(FieldValue::Vector(vec![1.0, 2.0])));
        assert_eq!(field_value(&lists, 1), Ok(FieldValue::Json(serde_json::json!([1.0, null]))));
        let mut fixed = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        fixed.values().append_slice(&[3.0, 4.0]);
        fixed.append(true);
        assert_eq!(field_value(&fixed.finish(), 0), Ok(FieldValue::Vector(vec![3.0, 4.0])));
    }

    #[test]
    fn structs_maps_and_dictionaries() {
        let names: Arc<dyn Array> = Arc::new(arrow_array::StringArray::from(vec!["a", "b"]));
        let counts: Arc<dyn Array> = Arc::new(arrow_array::Int32Array::from(vec![1, 2]));
        let structure = StructArray::from(vec![
            (Arc::new(Field::new("name", DataType::Utf8, false)), names),
            (Arc::new(Field::new("count", DataType::Int32, false)), counts),
        ]);
        assert_eq!(field_value(&structure, 1), Ok(FieldValue::Json(serde_json::json!({ "name": "b", "count": 2 }))));
        let mut map = MapBuilder::new(None, StringBuilder::new(), arrow_array::builder::Int64Builder::new());
        map.keys().append_value("k");
        map.values().append_value(9);
        map.append(true).unwrap();
        assert_eq!(field_value(&map.finish(), 0), Ok(FieldValue::Json(serde_json::json!({ "k": 9 }))));
        let dictionary: DictionaryArray<Int32Type> = vec![Some("x"), None, Some("x")].into_iter().collect();
        assert_eq!(field_value(&dictionary, 2), Ok(FieldValue::Text("x".to_owned())));
        assert_eq!(field_value(&dictionary, 1), Ok(FieldValue::Null));
    }

    #[test]
    fn unsupported_types_are_refused_with_the_type() {
        let intervals = arrow_array::IntervalYearMonthArray::from(vec![3]);
        let reason = field_value(&intervals, 0).unwrap_err();
        assert!(reason.contains("Interval"), "{reason}");
    }
}
