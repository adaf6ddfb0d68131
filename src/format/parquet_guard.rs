//! Checks run on untrusted Parquet structures before the parquet crate decodes them, for the two
//! ways a small hostile file could take the process down rather than fail cleanly:
//!
//! - **Deep schemas.** The footer's schema is a flat list of elements whose `num_children`
//!   describe a tree, and the crate builds that tree recursively: a few kilobytes nesting thousands
//!   of groups overflow the stack, which aborts the process (there is no panic to catch).
//!   [`check_footer`] walks the footer iteratively and refuses trees deeper than a limit (and
//!   files whose columns are encrypted, which vecdrop cannot read).
//! - **Decompression bombs.** A page of a few kilobytes can declare (and really hold) gigabytes
//!   once decompressed. [`check_page_sizes`] reads a column chunk's page headers and refuses a
//!   page that declares more than a limit, before anything is decompressed.
//!
//! Both read the Thrift compact encoding directly, reading only the fields they need, with every
//! read bounds-checked.

use std::fmt;

/// Thrift compact protocol type codes.
const TYPE_BOOL_TRUE: u8 = 1;
const TYPE_BOOL_FALSE: u8 = 2;
const TYPE_BYTE: u8 = 3;
const TYPE_I16: u8 = 4;
const TYPE_I32: u8 = 5;
const TYPE_I64: u8 = 6;
const TYPE_DOUBLE: u8 = 7;
const TYPE_BINARY: u8 = 8;
const TYPE_LIST: u8 = 9;
const TYPE_SET: u8 = 10;
const TYPE_MAP: u8 = 11;
const TYPE_STRUCT: u8 = 12;
/// `FileMetaData.schema` is field 2, `encryption_algorithm` (set when a plaintext footer
/// describes encrypted columns) field 8; `SchemaElement.num_children` is field 5.
const FILE_METADATA_SCHEMA_FIELD: i16 = 2;
const FILE_METADATA_ENCRYPTION_FIELD: i16 = 8;
const SCHEMA_ELEMENT_NUM_CHILDREN_FIELD: i16 = 5;
/// `PageHeader.uncompressed_page_size` is field 2, `compressed_page_size` field 3.
const PAGE_HEADER_UNCOMPRESSED_SIZE_FIELD: i16 = 2;
const PAGE_HEADER_COMPRESSED_SIZE_FIELD: i16 = 3;
/// Values nested deeper than this inside a Thrift struct (structs in lists in structs…) are refused.
const MAX_THRIFT_NESTING: usize = 64;
/// Page headers are read in windows of this many bytes first (they are usually < 100 bytes).
const PAGE_HEADER_WINDOW_BYTES: u64 = 64 * 1024;
/// Page headers (with their statistics) larger than this are refused.
const MAX_PAGE_HEADER_BYTES: u64 = 16 * 1024 * 1024;

/// Checks the footer (the Thrift-encoded `FileMetaData`) before the parquet crate decodes it:
/// its schema nests at most `max_depth` levels (the root counts as one) and its columns are not
/// encrypted. Errors describe what is wrong; anything else the crate checks itself.
pub fn check_footer(footer: &[u8], max_depth: usize) -> Result<(), String> {
    let invalid = |error: ThriftError| format!("the footer is not valid Thrift: {error}");
    let mut input = CompactInput { bytes: footer, position: 0 };
    let mut last_field = 0;
    while let Some((field, field_type)) = input.field_header(&mut last_field).map_err(invalid)? {
        match (field, field_type) {
            (FILE_METADATA_SCHEMA_FIELD, TYPE_LIST) => check_schema_depth(&mut input, max_depth)?,
            (FILE_METADATA_ENCRYPTION_FIELD, _) => {
                return Err("the file's columns are encrypted (plaintext footer); vecdrop cannot decrypt them".to_owned())
            }
            _ => input.skip(field_type, 0).map_err(invalid)?,
        }
    }
    Ok(())
}

/// Reads the schema list (the input is at its header) and refuses trees deeper than `max_depth`.
fn check_schema_depth(input: &mut CompactInput, max_depth: usize) -> Result<(), String> {
    let invalid = |error: ThriftError| format!("the footer is not valid Thrift: {error}");
    let (element_type, element_count) = input.list_header().map_err(invalid)?;
    if element_type != TYPE_STRUCT && element_count > 0 {
        return Err("the footer is not valid Thrift: the schema is not a list of structs".to_owned());
    }
    let mut open_groups: Vec<i64> = Vec::new();
    for _ in 0..element_count {
        let children = schema_element_children(input).map_err(invalid)?;
        while open_groups.last() == Some(&0) {
            open_groups.pop();
        }
        if let Some(remaining) = open_groups.last_mut() {
            *remaining -= 1;
        }
        if children > 0 {
            open_groups.push(children);
            if open_groups.len() > max_depth {
                return Err(format!("the schema nests more than {max_depth} levels deep; vecdrop refuses such files"));
            }
        }
    }
    Ok(())
}

/// Walks the page headers of the column chunk at `start .. start + length` and checks that no page
/// declares more than `max_page_bytes` once decompressed. `read_window(offset, count)` returns up
/// to `count` bytes of the file from `offset` (fewer only at the end of the file).
pub fn check_page_sizes(
    read_window: &dyn Fn(u64, u64) -> std::io::Result<Vec<u8>>,
    start: u64,
    length: u64,
    max_page_bytes: u64,
) -> Result<(), String> {
    let end = start.saturating_add(length);
    let mut offset = start;
    while offset < end {
        let header = read_page_header(read_window, offset, end - offset)?;
        if header.uncompressed_bytes > max_page_bytes {
            return Err(format!(
                "the page at byte {offset} declares {} bytes once decompressed, more than the {max_page_bytes} vecdrop accepts",
                header.uncompressed_bytes
            ));
        }
        offset = offset.saturating_add(header.header_bytes).saturating_add(header.compressed_bytes);
    }
    Ok(())
}

/// What [`check_page_sizes`] needs of a page header.
struct PageSizes {
    header_bytes: u64,
    compressed_bytes: u64,
    uncompressed_bytes: u64,
}

/// Reads the page header at `offset`, with at most `remaining` bytes of the column chunk left.
fn read_page_header(read_window: &dyn Fn(u64, u64) -> std::io::Result<Vec<u8>>, offset: u64, remaining: u64) -> Result<PageSizes, String> {
    let mut window = PAGE_HEADER_WINDOW_BYTES.min(remaining);
    loop {
        let bytes = read_window(offset, window).map_err(|error| format!("cannot read the page header at byte {offset}: {error}"))?;
        let mut input = CompactInput { bytes: &bytes, position: 0 };
        match page_sizes(&mut input) {
            Ok(sizes) => return Ok(sizes),
            Err(ThriftError::EndOfInput) if (bytes.len() as u64) == window && window < remaining.min(MAX_PAGE_HEADER_BYTES) => {
                window = (window * 4).min(remaining).min(MAX_PAGE_HEADER_BYTES);
            }
            Err(error) => return Err(format!("the page header at byte {offset} is not valid Thrift: {error}")),
        }
    }
}

fn page_sizes(input: &mut CompactInput) -> Result<PageSizes, ThriftError> {
    let mut last_field = 0;
    let (mut compressed, mut uncompressed) = (None, None);
    while let Some((field, field_type)) = input.field_header(&mut last_field)? {
        match (field, field_type) {
            (PAGE_HEADER_UNCOMPRESSED_SIZE_FIELD, TYPE_I32) => uncompressed = Some(input.zigzag()?),
            (PAGE_HEADER_COMPRESSED_SIZE_FIELD, TYPE_I32) => compressed = Some(input.zigzag()?),
            _ => input.skip(field_type, 0)?,
        }
    }
    let size = |value: Option<i64>, name: &str| {
        value.and_then(|value| u64::try_from(value).ok()).ok_or_else(|| ThriftError::Invalid(format!("{name} is missing or negative")))
    };
    Ok(PageSizes {
        header_bytes: input.position as u64,
        compressed_bytes: size(compressed, "compressed_page_size")?,
        uncompressed_bytes: size(uncompressed, "uncompressed_page_size")?,
    })
}

/// Reads one `SchemaElement` and returns its `num_children` (0 when absent).
fn schema_element_children(input: &mut CompactInput) -> Result<i64, ThriftError> {
    let mut last_field = 0;
    let mut children = 0;
    while let Some((field, field_type)) = input.field_header(&mut last_field)? {
        if field == SCHEMA_ELEMENT_NUM_CHILDREN_FIELD && field_type == TYPE_I32 {
            children = input.zigzag()?;
        } else {
            input.skip(field_type, 0)?;
        }
    }
    Ok(children)
}

/// Why Thrift bytes could not be read.
#[derive(Debug, PartialEq)]
enum ThriftError {
    /// The bytes end inside a value (a bigger window may hold it).
    EndOfInput,
    /// The bytes are not Thrift compact encoding.
    Invalid(String),
}

impl fmt::Display for ThriftError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThriftError::EndOfInput => formatter.write_str("it ends inside a value"),
            ThriftError::Invalid(message) => formatter.write_str(message),
        }
    }
}

/// A cursor over Thrift compact bytes; every read is bounds-checked.
struct CompactInput<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl CompactInput<'_> {
    fn byte(&mut self) -> Result<u8, ThriftError> {
        let byte = *self.bytes.get(self.position).ok_or(ThriftError::EndOfInput)?;
        self.position += 1;
        Ok(byte)
    }

    fn advance(&mut self, count: u64) -> Result<(), ThriftError> {
        let remaining = (self.bytes.len() - self.position) as u64;
        if count > remaining {
            return Err(ThriftError::EndOfInput);
        }
        self.position += count as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, ThriftError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ThriftError::Invalid("a varint is longer than 10 bytes".to_owned()))
    }

    fn zigzag(&mut self) -> Result<i64, ThriftError> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// The next field's `(id, type)`, or `None` at the struct's end.
    fn field_header(&mut self, last_field: &mut i16) -> Result<Option<(i16, u8)>, ThriftError> {
        let header = self.byte()?;
        if header == 0 {
            return Ok(None);
        }
        let delta = header >> 4;
        let field = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| ThriftError::Invalid("a field id is out of range".to_owned()))?
        } else {
            last_field.wrapping_add(i16::from(delta))
        };
        *last_field = field;
        Ok(Some((field, header & 0x0F)))
    }

    /// `(element type, count)` of a list or set.
    fn list_header(&mut self) -> Result<(u8, u64), ThriftError> {
        let header = self.byte()?;
        let count = if header >> 4 == 15 { self.varint()? } else { u64::from(header >> 4) };
        Ok((header & 0x0F, count))
    }

    /// Skips one value of `value_type`, `depth` levels inside the outer struct.
    fn skip(&mut self, value_type: u8, depth: usize) -> Result<(), ThriftError> {
        if depth > MAX_THRIFT_NESTING {
            return Err(ThriftError::Invalid(format!("values nest more than {MAX_THRIFT_NESTING} levels deep")));
        }
        match value_type {
            TYPE_BOOL_TRUE | TYPE_BOOL_FALSE => Ok(()),
            TYPE_BYTE => self.advance(1),
            TYPE_I16 | TYPE_I32 | TYPE_I64 => self.varint().map(drop),
            TYPE_DOUBLE => self.advance(8),
            TYPE_BINARY => {
                let length = self.varint()?;
                self.advance(length)
            }
            TYPE_LIST | TYPE_SET => {
                let (element_type, count) = self.list_header()?;
                (0..count).try_for_each(|_| self.skip_element(element_type, depth))
            }
            TYPE_MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                (0..count).try_for_each(|_| {
                    self.skip_element(types >> 4, depth)?;
                    self.skip_element(types & 0x0F, depth)
                })
            }
            TYPE_STRUCT => {
                let mut last_field = 0;
                while let Some((_, field_type)) = self.field_header(&mut last_field)? {
                    self.skip(field_type, depth + 1)?;
                }
                Ok(())
            }
            other => Err(ThriftError::Invalid(format!("unknown Thrift type {other}"))),
        }
    }

    /// Inside lists, sets and maps a boolean takes one byte.
    fn skip_element(&mut self, element_type: u8, depth: usize) -> Result<(), ThriftError> {
        match element_type {
            TYPE_BOOL_TRUE | TYPE_BOOL_FALSE => self.advance(1),
            other => self.skip(other, depth + 1),
        }
    }
}

/// Thrift compact varint encoding (tests).
#[cfg(test)]
fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Thrift compact zigzag encoding (tests).
#[cfg(test)]
fn encode_zigzag(value: i64, out: &mut Vec<u8>) {
    encode_varint(((value << 1) ^ (value >> 63)) as u64, out);
}

/// A `FileMetaData` with a version, a schema of `depth` nested groups over one INT32 leaf and
/// no row groups (tests).
#[cfg(test)]
pub fn nested_footer(depth: usize) -> Vec<u8> {
    let element = |name: &[u8], children: Option<i64>, out: &mut Vec<u8>| {
        out.push(0x48); // field 4 (name), binary
        encode_varint(name.len() as u64, out);
        out.extend_from_slice(name);
        if let Some(children) = children {
            out.push(0x15); // field 5 (num_children), i32
            encode_zigzag(children, out);
        }
        out.push(0);
    };
    let mut out = vec![0x15, 0x02]; // field 1 (version) = 1
    out.extend_from_slice(&[0x19, 0xFC]); // field 2 (schema), a list of structs with a varint count
    encode_varint(depth as u64 + 2, &mut out);
    element(b"schema", Some(1), &mut out);
    for _ in 0..depth {
        element(b"group", Some(1), &mut out);
    }
    element(b"leaf", None, &mut out);
    out.extend_from_slice(&[0x16, 0x00]); // field 3 (num_rows) = 0
    out.extend_from_slice(&[0x19, 0x0C]); // field 4 (row_groups), empty list
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data page header (type 0) with the given sizes, a statistics-like binary field of
    /// `padding` bytes, followed by `compressed` bytes of body.
    fn page(uncompressed: i64, compressed: i64, padding: usize) -> Vec<u8> {
        let mut out = vec![0x15, 0x00, 0x15]; // field 1 (type) = 0, field 2 (uncompressed)
        encode_zigzag(uncompressed, &mut out);
        out.push(0x15); // field 3 (compressed)
        encode_zigzag(compressed, &mut out);
        out.push(0x58); // field 8, binary (stands in for statistics)
        encode_varint(padding as u64, &mut out);
        out.resize(out.len() + padding, b's');
        out.push(0);
        out.resize(out.len() + compressed.max(0) as usize, b'd');
        out
    }

    fn reader(bytes: Vec<u8>) -> impl Fn(u64, u64) -> std::io::Result<Vec<u8>> {
        move |offset, count| {
            let start = (offset as usize).min(bytes.len());
            let end = (start + count as usize).min(bytes.len());
            Ok(bytes[start..end].to_vec())
        }
    }

    #[test]
    fn shallow_schemas_pass_and_deep_ones_are_refused() {
        assert_eq!(check_footer(&nested_footer(3), 64), Ok(()));
        assert_eq!(check_footer(&nested_footer(63), 64), Ok(()));
        let refused = check_footer(&nested_footer(5000), 64).unwrap_err();
        assert!(refused.contains("nests more than 64 levels"), "{refused}");
    }

    #[test]
    fn encrypted_columns_are_refused() {
        let mut encrypted = nested_footer(1);
        encrypted.pop();
        encrypted.extend_from_slice(&[0x4C, 0x00, 0x00]); // field 8 (encryption_algorithm), an empty struct
        let refused = check_footer(&encrypted, 64).unwrap_err();
        assert!(refused.contains("encrypted"), "{refused}");
    }

    #[test]
    fn broken_footers_are_errors_not_panics() {
        let whole = nested_footer(3);
        for cut in 0..whole.len() {
            let _ = check_footer(&whole[..cut], 64);
        }
        assert!(check_footer(&whole[..whole.len() / 2], 64).is_err());
        assert!(check_footer(&[0x1F, 0xFF, 0xFF], 64).is_err());
    }

    #[test]
    fn pages_are_walked_and_a_bomb_is_refused() {
        let mut chunk = page(100, 10, 0);
        chunk.extend(page(200_000, 20, 100_000)); // a header bigger than the first window
        let length = chunk.len() as u64;
        assert_eq!(check_page_sizes(&reader(chunk.clone()), 0, length, 1 << 20), Ok(()));
        let refused = check_page_sizes(&reader(chunk), 0, length, 150_000).unwrap_err();
        assert!(refused.contains("declares 200000 bytes"), "{refused}");
    }

    #[test]
    fn broken_page_headers_are_errors() {
        let chunk = page(100, 10, 0);
        assert!(check_page_sizes(&reader(chunk[..3].to_vec()), 0, 20, 1 << 20).is_err());
        assert!(check_page_sizes(&reader(page(-1, 10, 0)), 0, 30, 1 << 20).is_err());
    }
}
