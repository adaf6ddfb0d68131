//! A byte-level JSON scanner: finds where values start and end without parsing them, in memory
//! bounded by a cap. The JSON array reader uses it to cut the array of records into elements (each
//! then parsed by `serde_json`), to walk a JSON pointer down to that array, and to skip whatever it
//! does not read.
//!
//! The scanner knows only what boundaries need: strings (with their escapes), nesting (`{}` and
//! `[]`, matched by kind), JSON whitespace, and the separators `,` and `:` between values. What is
//! inside a value is `serde_json`'s business; a value that is skipped rather than parsed (another
//! key's value on the way to the pointer) is only checked for balance.
//!
//! UTF-8 needs no special care: every byte of a multi-byte sequence is ≥ 0x80, so it can never be
//! mistaken for a quote, a backslash or a bracket.

use std::io::{self, BufRead};

use super::{RAW_EXCERPT_BYTES, UTF8_BOM};

/// Nesting deeper than this stops the scan (the scanner keeps one byte per open level).
/// `serde_json` itself refuses values nested deeper than 128, so an element nested between the two
/// limits is rejected on its own and the file goes on.
pub(super) const MAX_NESTING_DEPTH: usize = 10_000;

/// Keys on the way to a JSON pointer longer than this are compared as "not the key we look for".
const MAX_POINTER_KEY_BYTES: usize = 64 * 1024;

/// Why a scan stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum ScanError {
    /// The input could not be read.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The content is not JSON of the expected shape at `byte_offset`; nothing after it can be read.
    #[error("{message}")]
    Syntax {
        /// Offset (in the content) of the byte at fault.
        byte_offset: u64,
        /// What was expected and what was found.
        message: String,
    },
}

fn syntax(byte_offset: u64, message: impl Into<String>) -> ScanError {
    ScanError::Syntax { byte_offset, message: message.into() }
}

/// JSON's four whitespace bytes (RFC 8259 §2); a form feed or a non-breaking space is not one.
pub(super) fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// A byte that cannot be part of a number or a literal (`true`, `false`, `null`) and so ends one.
fn ends_bare_token(byte: u8) -> bool {
    is_json_whitespace(byte) || matches!(byte, b',' | b':' | b'[' | b']' | b'{' | b'}' | b'"')
}

/// A byte, or the end of the content, as it reads in an error message.
pub(super) fn describe_byte(found: Option<u8>) -> String {
    match found {
        None => "the end of the content".to_owned(),
        Some(byte) if byte.is_ascii_graphic() => format!("`{}`", byte as char),
        Some(byte) => format!("byte 0x{byte:02X}"),
    }
}

/// Where a scanned value's bytes go: the first `cap` bytes are kept; past the cap only an excerpt
/// (for dead letters) is kept and the length is still counted, so an over-long value costs bounded
/// memory.
pub(super) struct Capture {
    /// The value's bytes: all of them when [`Capture::is_complete`], else the first
    /// [`RAW_EXCERPT_BYTES`].
    pub(super) bytes: Vec<u8>,
    /// How many bytes the value has, kept or not.
    pub(super) length: u64,
    cap: usize,
    overflowed: bool,
}

impl Capture {
    /// Keeps up to `cap` bytes.
    pub(super) fn keeping(cap: usize) -> Self {
        Self { bytes: Vec::new(), length: 0, cap, overflowed: false }
    }

    /// Keeps nothing (for values that are skipped).
    pub(super) fn discarding() -> Self {
        Self { bytes: Vec::new(), length: 0, cap: 0, overflowed: true }
    }

    /// Whether `bytes` holds the whole value.
    pub(super) fn is_complete(&self) -> bool {
        !self.overflowed
    }

    fn push(&mut self, more: &[u8]) {
        self.length += more.len() as u64;
        if self.overflowed {
            return;
        }
        if self.bytes.len() + more.len() > self.cap {
            self.overflowed = true;
            let room = RAW_EXCERPT_BYTES.saturating_sub(self.bytes.len());
            self.bytes.extend_from_slice(&more[..more.len().min(room)]);
            self.bytes.truncate(RAW_EXCERPT_BYTES);
            self.bytes.shrink_to_fit();
            return;
        }
        self.bytes.extend_from_slice(more);
    }
}

/// A buffered input that knows the content offset and line of its next byte.
pub(super) struct ByteCursor<R> {
    input: R,
    /// Offset in the (decompressed) content of the next unread byte.
    offset: u64,
    /// 1-based line of the next unread byte.
    line: u64,
}

impl<R: BufRead> ByteCursor<R> {
    /// A cursor over `input`, whose first byte is at `offset` on `line` of the content.
    pub(super) fn new(input: R, offset: u64, line: u64) -> Self {
        Self { input, offset, line }
    }

    /// Offset of the next unread byte.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Line of the next unread byte.
    pub(super) fn line(&self) -> u64 {
        self.line
    }

    /// The buffered bytes not yet consumed; empty at the end of the content.
    fn chunk(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.input.fill_buf() {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
                Ok(_) => break,
            }
        }
        self.input.fill_buf()
    }

    fn consume(&mut self, count: usize, newlines: usize) {
        self.input.consume(count);
        self.offset += count as u64;
        self.line += newlines as u64;
    }

    /// The next byte without consuming it; `None` at the end of the content.
    pub(super) fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(self.chunk()?.first().copied())
    }

    /// Consumes `byte`, which [`ByteCursor::peek`] just returned.
    fn consume_peeked(&mut self, byte: u8) {
        self.consume(1, usize::from(byte == b'\n'));
    }

    /// Consumes `expected`, or fails with "expected {what}, found …".
    fn expect(&mut self, expected: u8, what: &str) -> Result<(), ScanError> {
        match self.peek()? {
            Some(byte) if byte == expected => {
                self.consume_peeked(byte);
                Ok(())
            }
            found => Err(syntax(self.offset, format!("expected {what}, found {}", describe_byte(found)))),
        }
    }

    /// Skips a UTF-8 byte order mark, if the content starts with one.
    pub(super) fn skip_byte_order_mark(&mut self) -> Result<(), ScanError> {
        if self.peek()? != Some(UTF8_BOM[0]) {
            return Ok(());
        }
        for expected in UTF8_BOM {
            self.expect(expected, "a UTF-8 byte order mark or JSON text")?;
        }
        Ok(())
    }

    /// Skips JSON whitespace.
    pub(super) fn skip_whitespace(&mut self) -> io::Result<()> {
        loop {
            let chunk = self.chunk()?;
            let count = chunk.iter().take_while(|byte| is_json_whitespace(**byte)).count();
            let newlines = chunk[..count].iter().filter(|byte| **byte == b'\n').count();
            let whitespace_ends_here = count < chunk.len() || chunk.is_empty();
            self.consume(count, newlines);
            if whitespace_ends_here {
                return Ok(());
            }
        }
    }

    /// Reads `"key"` `:` and the whitespace after it; `None` for a key too long to be compared.
    fn read_key(&mut self) -> Result<Option<String>, ScanError> {
        let key_offset = self.offset();
        if self.peek()? != Some(b'"') {
            let found = self.peek()?;
            return Err(syntax(key_offset, format!("expected a key (a string), found {}", describe_byte(found))));
        }
        let mut capture = Capture::keeping(MAX_POINTER_KEY_BYTES);
        self.scan_value(&mut capture)?;
        let key = if capture.is_complete() {
            let decoded =
                serde_json::from_slice::<String>(&capture.bytes).map_err(|error| syntax(key_offset, format!("invalid key: {error}")))?;
            Some(decoded)
        } else {
            None
        };
        self.skip_whitespace()?;
        self.expect(b':', "`:` after a key")?;
        self.skip_whitespace()?;
        Ok(key)
    }

    /// Scans the value that starts at the cursor (no whitespace before it) into `capture` and
    /// leaves the cursor just past it. Fails only when the value's end cannot be found (the
    /// content ends inside it, brackets do not match, nesting is too deep) or when no value starts
    /// here; whether the bytes are valid JSON is for `serde_json` to say.
    pub(super) fn scan_value(&mut self, capture: &mut Capture) -> Result<(), ScanError> {
        match self.peek()? {
            Some(b'{' | b'[' | b'"') => self.scan_nested_value(capture),
            Some(byte) if !ends_bare_token(byte) => self.scan_bare_token(capture),
            found => Err(syntax(self.offset, format!("expected a value, found {}", describe_byte(found)))),
        }
    }

    /// A number or literal: everything up to the next byte that ends one.
    fn scan_bare_token(&mut self, capture: &mut Capture) -> Result<(), ScanError> {
        loop {
            let chunk = self.chunk()?;
            let length = chunk.iter().position(|byte| ends_bare_token(*byte)).unwrap_or(chunk.len());
            let token_ends_here = length < chunk.len() || chunk.is_empty();
            capture.push(&chunk[..length]);
            self.consume(length, 0);
            if token_ends_here {
                return Ok(());
            }
        }
    }

    /// A string, object or array: up to the quote or bracket that closes it.
    fn scan_nested_value(&mut self, capture: &mut Capture) -> Result<(), ScanError> {
        let start = self.offset;
        let mut state = NestingState::default();
        loop {
            let chunk = self.chunk()?;
            if chunk.is_empty() {
                return Err(syntax(self.offset, format!("the content ends inside the value that starts at byte {start}")));
            }
            let (length, value_ends_here) = match state.advance(chunk) {
                Ok(Some(length)) => (length, true),
                Ok(None) => (chunk.len(), false),
                Err((index, message)) => return Err(syntax(self.offset + index as u64, message)),
            };
            capture.push(&chunk[..length]);
            let newlines = chunk[..length].iter().filter(|byte| **byte == b'\n').count();
            self.consume(length, newlines);
            if value_ends_here {
                return Ok(());
            }
        }
    }
}

/// Where a scan of a string, object or array stands between two chunks of input.
#[derive(Default)]
struct NestingState {
    /// The closing bracket expected for each open level, innermost last.
    expected_closers: Vec<u8>,
    inside_string: bool,
    after_backslash: bool,
}

impl NestingState {
    /// Scans `chunk`: `Ok(Some(length))` when the value ends after `length` bytes of it,
    /// `Ok(None)` when it goes on past the chunk, `Err((index, message))` at a byte that makes its
    /// end unfindable.
    fn advance(&mut self, chunk: &[u8]) -> Result<Option<usize>, (usize, String)> {
        for (index, &byte) in chunk.iter().enumerate() {
            if self.inside_string {
                if self.after_backslash {
                    self.after_backslash = false;
                } else if byte == b'\\' {
                    self.after_backslash = true;
                } else if byte == b'"' {
                    self.inside_string = false;
                    if self.expected_closers.is_empty() {
                        return Ok(Some(index + 1));
                    }
                }
                continue;
            }
            match byte {
                b'"' => self.inside_string = true,
                b'{' | b'[' => {
                    if self.expected_closers.len() >= MAX_NESTING_DEPTH {
                        return Err((index, format!("values are nested deeper than {MAX_NESTING_DEPTH} levels")));
                    }
                    self.expected_closers.push(if byte == b'{' { b'}' } else { b']' });
                }
                b'}' | b']' => match self.expected_closers.pop() {
                    Some(expected) if expected == byte => {
                        if self.expected_closers.is_empty() {
                            return Ok(Some(index + 1));
                        }
                    }
                    Some(expected) => {
                        let message = format!("expected {}, found {}", describe_byte(Some(expected)), describe_byte(Some(byte)));
                        return Err((index, message));
                    }
                    None => return Err((index, format!("unexpected {}", describe_byte(Some(byte))))),
                },
                _ => {}
            }
        }
        Ok(None)
    }
}

/// A JSON pointer parsed once (at config load): the keys from the top-level object down to the
/// array of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPointer(Vec<String>);

impl JsonPointer {
    /// Parses RFC 6901 syntax (see [`parse_json_pointer`]); the error says what is wrong.
    pub fn parse(pointer: &str) -> Result<Self, String> {
        parse_json_pointer(pointer).map(Self)
    }

    /// The reference tokens, outermost first.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }
}

/// RFC 6901 JSON pointer → its reference tokens (`~1` → `/`, `~0` → `~`). `""` is the whole
/// document (no tokens). Tokens are used as object keys only: `/items/0` means the key `"0"`.
pub fn parse_json_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("expected a JSON pointer starting with '/' (e.g. /records), got {pointer:?}"));
    };
    rest.split('/')
        .map(|token| unescape_pointer_token(token).ok_or_else(|| format!("in JSON pointer {pointer:?}: '~' must be followed by 0 or 1")))
        .collect()
}

fn unescape_pointer_token(token: &str) -> Option<String> {
    let mut unescaped = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(character) = chars.next() {
        match character {
            '~' => match chars.next() {
                Some('0') => unescaped.push('~'),
                Some('1') => unescaped.push('/'),
                _ => return None,
            },
            other => unescaped.push(other),
        }
    }
    Some(unescaped)
}

/// `tokens` written back as a JSON pointer, for messages.
fn render_pointer(tokens: &[String]) -> String {
    if tokens.is_empty() {
        return "the top level".to_owned();
    }
    tokens.iter().map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1"))).collect()
}

/// One element of the array of records, as found by [`ElementScanner`].
pub(super) struct ScannedElement {
    /// Offset of its first byte.
    pub(super) start_offset: u64,
    /// Line of its first byte.
    pub(super) start_line: u64,
    /// Offset just past its last byte: where the scan resumes.
    pub(super) end_offset: u64,
    /// Line of `end_offset`.
    pub(super) end_line: u64,
    /// Its bytes (see [`Capture`]).
    pub(super) capture: Capture,
}

/// Where an [`ElementScanner`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayPosition {
    /// Before the document: a byte order mark, the walk down the pointer and `[` come next.
    BeforeDocument,
    /// Just after `[` or `,`: an element comes next.
    BeforeElement,
    /// Just after an element: `,` or `]` comes next.
    AfterElement,
    /// Just after `]`: the rest of the enclosing objects and the end of the content come next.
    AfterArray,
    /// Done, or stopped by an error.
    Finished,
}

/// Cuts the array of records (at the top level, or at a JSON pointer inside objects) into its
/// elements, one at a time, in memory bounded by the element cap and the nesting limit.
pub(super) struct ElementScanner<R> {
    cursor: ByteCursor<R>,
    /// Keys from the top-level object down to the array; empty when the array is the top level.
    pointer: Vec<String>,
    position: ArrayPosition,
    /// Elements longer than this are scanned past but not kept (see [`Capture`]).
    element_byte_cap: usize,
}

impl<R: BufRead> ElementScanner<R> {
    /// A scanner over the whole content (`input` starts at byte 0).
    pub(super) fn at_start(input: R, pointer: Vec<String>, element_byte_cap: usize) -> Self {
        Self { cursor: ByteCursor::new(input, 0, 1), pointer, position: ArrayPosition::BeforeDocument, element_byte_cap }
    }

    /// A scanner resuming just after an element, where [`ScannedElement::end_offset`] and
    /// [`ScannedElement::end_line`] said (`input` starts at that offset).
    pub(super) fn after_element(input: R, offset: u64, line: u64, pointer: Vec<String>, element_byte_cap: usize) -> Self {
        Self { cursor: ByteCursor::new(input, offset, line), pointer, position: ArrayPosition::AfterElement, element_byte_cap }
    }

    /// The next element; `Ok(None)` once the array is closed and the rest of the content checked.
    /// After an error the scanner is finished.
    pub(super) fn next_element(&mut self) -> Result<Option<ScannedElement>, ScanError> {
        let result = self.advance_to_next_element();
        if result.is_err() {
            self.position = ArrayPosition::Finished;
        }
        result
    }

    fn advance_to_next_element(&mut self) -> Result<Option<ScannedElement>, ScanError> {
        loop {
            match self.position {
                ArrayPosition::BeforeDocument => self.open_array()?,
                ArrayPosition::BeforeElement => return self.scan_element().map(Some),
                ArrayPosition::AfterElement => self.pass_separator()?,
                ArrayPosition::AfterArray => self.finish_document()?,
                ArrayPosition::Finished => return Ok(None),
            }
        }
    }

    fn open_array(&mut self) -> Result<(), ScanError> {
        self.cursor.skip_byte_order_mark()?;
        for depth in 0..self.pointer.len() {
            self.cursor.skip_whitespace()?;
            let what = format!("an object at {} (json_pointer {})", render_pointer(&self.pointer[..depth]), render_pointer(&self.pointer));
            self.cursor.expect(b'{', &what)?;
            self.enter_member(depth)?;
        }
        self.cursor.skip_whitespace()?;
        let what = if self.pointer.is_empty() {
            "a JSON array of records at the top level (set json_pointer when the array is inside an object)".to_owned()
        } else {
            format!("an array of records at {}", render_pointer(&self.pointer))
        };
        self.cursor.expect(b'[', &what)?;
        self.cursor.skip_whitespace()?;
        if self.cursor.peek()? == Some(b']') {
            self.cursor.consume_peeked(b']');
            self.position = ArrayPosition::AfterArray;
        } else {
            self.position = ArrayPosition::BeforeElement;
        }
        Ok(())
    }

    /// Inside the object at `pointer[..depth]`, just after its `{`: moves to the value of the key
    /// `pointer[depth]` (the first such key when it repeats), skipping the members before it.
    fn enter_member(&mut self, depth: usize) -> Result<(), ScanError> {
        let wanted = &self.pointer[depth];
        loop {
            self.cursor.skip_whitespace()?;
            if matches!(self.cursor.peek()?, Some(b'}') | None) {
                let message = format!(
                    "json_pointer {}: the object at {} has no key {wanted:?}",
                    render_pointer(&self.pointer),
                    render_pointer(&self.pointer[..depth])
                );
                return Err(syntax(self.cursor.offset(), message));
            }
            let key = self.cursor.read_key()?;
            if key.as_deref() == Some(wanted.as_str()) {
                return Ok(());
            }
            self.cursor.scan_value(&mut Capture::discarding())?;
            self.cursor.skip_whitespace()?;
            if self.cursor.peek()? == Some(b',') {
                self.cursor.consume_peeked(b',');
            } else if self.cursor.peek()? != Some(b'}') {
                let found = self.cursor.peek()?;
                return Err(syntax(self.cursor.offset(), format!("expected `,` or `}}` after a member, found {}", describe_byte(found))));
            }
        }
    }

    fn scan_element(&mut self) -> Result<ScannedElement, ScanError> {
        self.cursor.skip_whitespace()?;
        let (start_offset, start_line) = (self.cursor.offset(), self.cursor.line());
        let mut capture = Capture::keeping(self.element_byte_cap);
        self.cursor.scan_value(&mut capture)?;
        self.position = ArrayPosition::AfterElement;
        Ok(ScannedElement { start_offset, start_line, end_offset: self.cursor.offset(), end_line: self.cursor.line(), capture })
    }

    fn pass_separator(&mut self) -> Result<(), ScanError> {
        self.cursor.skip_whitespace()?;
        match self.cursor.peek()? {
            Some(b',') => {
                self.cursor.consume_peeked(b',');
                self.position = ArrayPosition::BeforeElement;
                Ok(())
            }
            Some(b']') => {
                self.cursor.consume_peeked(b']');
                self.position = ArrayPosition::AfterArray;
                Ok(())
            }
            found => {
                Err(syntax(self.cursor.offset(), format!("expected `,` or `]` after an array element, found {}", describe_byte(found))))
            }
        }
    }

    /// After the array: the members after it in each enclosing object, each object's `}`, then
    /// nothing but whitespace.
    fn finish_document(&mut self) -> Result<(), ScanError> {
        for _ in 0..self.pointer.len() {
            self.close_object()?;
        }
        self.cursor.skip_whitespace()?;
        if let Some(byte) = self.cursor.peek()? {
            let message = format!("expected the end of the content after the JSON document, found {}", describe_byte(Some(byte)));
            return Err(syntax(self.cursor.offset(), message));
        }
        self.position = ArrayPosition::Finished;
        Ok(())
    }

    fn close_object(&mut self) -> Result<(), ScanError> {
        loop {
            self.cursor.skip_whitespace()?;
            match self.cursor.peek()? {
                Some(b'}') => {
                    self.cursor.consume_peeked(b'}');
                    return Ok(());
                }
                Some(b',') => {
                    self.cursor.consume_peeked(b',');
                    self.cursor.skip_whitespace()?;
                    self.cursor.read_key()?;
                    self.cursor.scan_value(&mut Capture::discarding())?;
                }
                found => {
                    return Err(syntax(
                        self.cursor.offset(),
                        format!("expected `,` or `}}` after a member, found {}", describe_byte(found)),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(start offset, end offset, kept bytes, complete)` of each element.
    type FoundElements = Result<Vec<(u64, u64, Vec<u8>, bool)>, ScanError>;

    fn elements(content: &[u8], pointer: &str, cap: usize) -> FoundElements {
        let mut scanner = ElementScanner::at_start(content, parse_json_pointer(pointer).unwrap(), cap);
        let mut found = Vec::new();
        while let Some(element) = scanner.next_element()? {
            found.push((element.start_offset, element.end_offset, element.capture.bytes.clone(), element.capture.is_complete()));
        }
        Ok(found)
    }

    fn syntax_offset(result: FoundElements) -> (u64, String) {
        match result {
            Err(ScanError::Syntax { byte_offset, message }) => (byte_offset, message),
            other => panic!("expected a syntax error, got {:?}", other.map(|found| found.len())),
        }
    }

    #[test]
    fn strings_hide_brackets_quotes_and_backslashes() {
        let content = br#"[ {"a":"]}\"[{\\","b":[1,{"c":"\\"}]} , "x\"]" ,12.5e3,true ]"#;
        let found = elements(content, "", usize::MAX).unwrap();
        let texts: Vec<&[u8]> = found.iter().map(|(_, _, bytes, _)| bytes.as_slice()).collect();
        assert_eq!(texts, [&br#"{"a":"]}\"[{\\","b":[1,{"c":"\\"}]}"#[..], br#""x\"]""#, b"12.5e3", b"true"]);
        assert_eq!(found[0].0, 2);
    }

    #[test]
    fn pointer_walk_skips_other_members_and_checks_the_rest() {
        let content = br#"{"meta":{"records":[9]},"a~b/c":{"x":[],"items":[{"k":1},{"k":2}],"after":"]"},"z":0}"#;
        let found = elements(content, "/a~0b~1c/items", usize::MAX).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].2, br#"{"k":2}"#);
        let (_, message) = syntax_offset(elements(content, "/a~0b~1c/missing", usize::MAX));
        assert!(message.contains("has no key \"missing\""), "{message}");
        let (_, message) = syntax_offset(elements(content, "/z", usize::MAX));
        assert!(message.contains("expected an object at /z") || message.contains("an array of records at /z"), "{message}");
    }

    #[test]
    fn structural_errors_name_their_offset() {
        assert_eq!(syntax_offset(elements(br#"[{"a":1} {"b":2}]"#, "", usize::MAX)).0, 9);
        assert_eq!(syntax_offset(elements(br#"[{"a":1}] x"#, "", usize::MAX)).0, 10);
        assert_eq!(syntax_offset(elements(br#"[{"a":[1}]"#, "", usize::MAX)).0, 8);
        assert_eq!(syntax_offset(elements(br#"[{"a":1},]"#, "", usize::MAX)).0, 9);
        assert_eq!(syntax_offset(elements(br#"[{"a":1}"#, "", usize::MAX)).0, 8);
        let (offset, message) = syntax_offset(elements(br#"{"a":1}"#, "", usize::MAX));
        assert_eq!(offset, 0);
        assert!(message.contains("expected a JSON array"), "{message}");
    }

    #[test]
    fn over_long_elements_are_measured_but_not_kept() {
        let long = format!(r#"[{{"a":"{}"}},{{"b":1}}]"#, "x".repeat(RAW_EXCERPT_BYTES * 3));
        let found = elements(long.as_bytes(), "", 100).unwrap();
        assert_eq!(found.len(), 2);
        assert!(!found[0].3);
        assert_eq!(found[0].2.len(), RAW_EXCERPT_BYTES);
        assert_eq!(found[0].1 - found[0].0, RAW_EXCERPT_BYTES as u64 * 3 + 8);
        assert!(found[1].3);
    }

    #[test]
    fn deep_nesting_stops_instead_of_growing() {
        let deep = "[".repeat(MAX_NESTING_DEPTH + 2);
        let (_, message) = syntax_offset(elements(deep.as_bytes(), "", usize::MAX));
        assert!(message.contains("nested deeper"), "{message}");
    }

    #[test]
    fn pointer_syntax() {
        assert_eq!(parse_json_pointer("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_json_pointer("/").unwrap(), [""]);
        assert_eq!(parse_json_pointer("/a~1b/~0c").unwrap(), ["a/b", "~c"]);
        assert!(parse_json_pointer("records").is_err());
        assert!(parse_json_pointer("/a~2").is_err());
    }
}
