//! Secrets: values that must never reach the screen, a log, `--json` output, an error message
//! or a file opsdeck writes.
//!
//! A [`Secret`] is deliberately not `Serialize` and prints as `********` through `Debug` and
//! `Display`. Every secret value loaded is also registered with the process-wide [`Masker`], so
//! text that passes *through* opsdeck (command output, server replies and errors, log lines,
//! panic messages) can be scrubbed of it even when a remote program echoes the value back.
//!
//! A value rarely leaks only as itself: an error message Debug-formats it (`a\"b`), `--json`
//! escapes it, a URL percent-encodes it, a shell or SQL command quotes it, an HTTP header
//! base64-encodes it. The masker therefore registers each secret in all of these encodings
//! (see [`encodings`]) and replaces every one of them, in one pass of a multi-pattern
//! (Aho-Corasick) automaton, so masking stays linear in the text whatever the number of
//! secrets. Still, mask *raw* text before escaping or formatting it wherever possible: the
//! encodings are the safety net, not the plan.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What a masked secret is replaced with.
pub const MASK: &str = "********";

/// Secrets shorter than this are not registered for output masking: masking a one- or
/// two-character password would shred ordinary output and reveal more than it hides. The same
/// floor applies to every encoded form.
const MIN_MASKABLE_LEN: usize = 3;

/// Base64 of a secret embedded at an unknown offset of a longer base64 text is matched by its
/// stable middle part; shorter middles would match ordinary base64 by chance.
const MIN_BASE64_CORE: usize = 6;

/// A secret value. Cloning is cheap; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value and registers it with the global masker.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        masker().register(&value);
        Secret(Arc::from(value))
    }

    /// The clear value, for handing to a protocol client. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// The compiled form of every registered secret: swapped whole on registration, so masking
/// only takes a read lock long enough to clone an `Arc`.
#[derive(Default)]
struct Compiled {
    /// The registered values (trimmed), to refuse duplicates.
    values: Vec<String>,
    /// Every encoding of every value.
    patterns: Vec<String>,
    automaton: Option<AhoCorasick>,
}

/// Replaces every registered secret, in each of its [`encodings`], with [`MASK`].
#[derive(Default)]
pub struct Masker {
    compiled: RwLock<Arc<Compiled>>,
}

impl Masker {
    pub fn register(&self, value: &str) {
        // Surrounding whitespace is what `password_cmd` and files tend to add; the server sees
        // the trimmed value, so that is what must be hidden.
        let value = value.trim();
        if value.len() < MIN_MASKABLE_LEN {
            return;
        }
        let mut guard = self
            .compiled
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.values.iter().any(|v| v == value) {
            return;
        }
        let mut values = guard.values.clone();
        values.push(value.to_owned());
        let mut patterns = guard.patterns.clone();
        for p in encodings(value) {
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        // Leftmost-longest: of two overlapping encodings (or a secret containing another),
        // the longer is masked whole.
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        *guard = Arc::new(Compiled {
            values,
            patterns,
            automaton,
        });
    }

    fn snapshot(&self) -> Arc<Compiled> {
        self.compiled
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Length of the longest end of `bytes` that is the start (not the whole) of a registered
    /// secret. Output cut right after `bytes` would show that part of the secret; callers
    /// that cut output mask it.
    pub fn secret_start_at_end(&self, bytes: &[u8]) -> usize {
        self.longest_partial(|v| (1..v.len()).rev().find(|&n| bytes.ends_with(&v[..n])))
    }

    /// Length of the longest start of `bytes` that is the end (not the whole) of a registered
    /// secret: the counterpart of [`Masker::secret_start_at_end`] for output cut before `bytes`.
    pub fn secret_end_at_start(&self, bytes: &[u8]) -> usize {
        self.longest_partial(|v| {
            (1..v.len())
                .rev()
                .find(|&n| bytes.starts_with(&v[v.len() - n..]))
        })
    }

    fn longest_partial(&self, partial: impl Fn(&[u8]) -> Option<usize>) -> usize {
        self.snapshot()
            .values
            .iter()
            .filter_map(|v| partial(v.as_bytes()))
            .max()
            .unwrap_or(0)
    }

    /// Number of patterns (every encoding of every secret) the masker looks for.
    pub fn pattern_count(&self) -> usize {
        self.snapshot().patterns.len()
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let c = self.snapshot();
        let Some(ac) = &c.automaton else {
            return Cow::Borrowed(text);
        };
        if !ac.is_match(text) {
            return Cow::Borrowed(text);
        }
        // Patterns are valid UTF-8, so in valid UTF-8 text every match starts and ends on a
        // character boundary.
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in ac.find_iter(text) {
            out.push_str(&text[last..m.start()]);
            out.push_str(MASK);
            last = m.end();
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// Masks raw bytes (command output may not be UTF-8); bytes that hold no secret pass
    /// through untouched, valid UTF-8 or not.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let c = self.snapshot();
        let Some(ac) = &c.automaton else {
            return Cow::Borrowed(bytes);
        };
        if !ac.is_match(bytes) {
            return Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len());
        let mut last = 0;
        for m in ac.find_iter(bytes) {
            out.extend_from_slice(&bytes[last..m.start()]);
            out.extend_from_slice(MASK.as_bytes());
            last = m.end();
        }
        out.extend_from_slice(&bytes[last..]);
        Cow::Owned(out)
    }

    /// True if `text` holds any registered secret in any encoding.
    pub fn contains_secret(&self, text: &[u8]) -> bool {
        self.snapshot()
            .automaton
            .as_ref()
            .is_some_and(|ac| ac.is_match(text))
    }
}

/// The process-wide masker every secret registers with.
pub fn masker() -> &'static Masker {
    static MASKER: std::sync::OnceLock<Masker> = std::sync::OnceLock::new();
    MASKER.get_or_init(Masker::default)
}

/// Shorthand for `masker().mask(text)`.
pub fn mask(text: &str) -> Cow<'_, str> {
    masker().mask(text)
}

/// Masks every string in a JSON value, object keys included, in place. Call it before
/// serializing: masking after serialization would have to find the secret JSON-escaped.
pub fn mask_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(m) = mask(s) {
                *s = m;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        Value::Object(map) => {
            let keyed = map.keys().any(|k| matches!(mask(k), Cow::Owned(_)));
            if keyed {
                let old = std::mem::take(map);
                for (k, mut v) in old {
                    mask_json(&mut v);
                    map.insert(mask(&k).into_owned(), v);
                }
            } else {
                map.values_mut().for_each(mask_json);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Serializes `value` to JSON (pretty or compact) with every string masked first.
pub fn to_masked_json<T: serde::Serialize + ?Sized>(
    value: &T,
    pretty: bool,
) -> serde_json::Result<String> {
    let mut v = serde_json::to_value(value)?;
    mask_json(&mut v);
    if pretty {
        serde_json::to_string_pretty(&v)
    } else {
        serde_json::to_string(&v)
    }
}

/// A `tracing` writer that masks every registered secret before a log line reaches the file.
pub struct MaskingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for MaskingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = masker().mask_bytes(buf);
        self.0.write_all(&masked)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The forms a secret takes when something encodes it on its way out: itself; JSON string
/// escaping (as serde, and with non-ASCII and `/` escaped as PHP and Python do); Rust `{:?}`
/// and `escape_default`; percent-encoding (RFC 3986, `encodeURIComponent` and form style, upper
/// and lower hex); shell-quoted (as `shlex` quotes, and single- and double-quoted by hand); SQL literals (doubled quotes and MySQL
/// backslash escapes); base64 (standard and URL-safe, padded or not, and the stable middle of
/// the secret base64-encoded at any offset of a longer text); and two-step combinations of
/// JSON and Debug escaping (an error Debug-formatted into a JSON document).
///
/// Forms shorter than the masking floor are left out; the result has no duplicates.
pub fn encodings(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if s.len() >= MIN_MASKABLE_LEN && !out.contains(&s) {
            out.push(s);
        }
    };
    add(value.to_owned());

    // JSON.
    for slash in [false, true] {
        for unicode in [None, Some(false), Some(true)] {
            add(json_escape(value, slash, unicode));
        }
    }
    // Rust.
    add(rust_debug(value));
    add(value.escape_default().to_string());
    add(value.escape_debug().to_string());
    // Two steps: JSON of Debug, Debug of JSON, JSON of JSON.
    add(json_escape(&rust_debug(value), false, None));
    add(rust_debug(&json_escape(value, false, None)));
    add(json_escape(&json_escape(value, false, None), false, None));

    // Percent-encoding.
    for upper in [true, false] {
        for keep in ["", "!'()*"] {
            for plus in [false, true] {
                add(percent_encode(value, keep, plus, upper));
            }
        }
    }

    // Shell: how opsdeck itself quotes (shlex, which mixes quoting styles chunk by chunk),
    // and the common hand-written forms.
    if let Ok(q) = shlex::try_quote(value) {
        add(q.into_owned());
    }
    add(value.replace('\'', r"'\''"));
    add(value.replace('\'', r#"'"'"'"#));
    add(shell_double_quoted(value));

    // SQL literals.
    add(value.replace('\'', "''"));
    add(value.replace('\\', r"\\").replace('\'', r"\'"));
    add(value.replace('\\', r"\\").replace('\'', "''"));
    add(mysql_escape(value));

    // Base64.
    for alphabet in [B64_STD, B64_URL] {
        let full = base64(value.as_bytes(), alphabet);
        add(full.trim_end_matches('=').to_owned());
        add(full);
        for offset in 0..3 {
            if let Some(core) = base64_core(value.as_bytes(), offset, alphabet) {
                add(core);
            }
        }
    }
    out
}

fn rust_debug(s: &str) -> String {
    let d = format!("{s:?}");
    d[1..d.len() - 1].to_owned()
}

/// JSON string content. `unicode`: `None` leaves non-ASCII as is (serde, JavaScript);
/// `Some(upper)` writes `\uXXXX` with that hex case (PHP, Python `ensure_ascii`).
fn json_escape(s: &str, slash: bool, unicode: Option<bool>) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if slash => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if !c.is_ascii() && unicode.is_some() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if unicode == Some(true) {
                        let _ = write!(out, "\\u{:04X}", *u);
                    } else {
                        let _ = write!(out, "\\u{:04x}", *u);
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn percent_encode(s: &str, keep: &str, plus_for_space: bool, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        let c = char::from(b);
        if b.is_ascii_alphanumeric() || "-._~".contains(c) || (b.is_ascii() && keep.contains(c)) {
            out.push(c);
        } else if b == b' ' && plus_for_space {
            out.push('+');
        } else if upper {
            let _ = write!(out, "%{b:02X}");
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

fn shell_double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `mysql_real_escape_string`.
fn mysql_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            '\\' | '\'' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The part of `base64(prefix ++ secret ++ suffix)` that depends on the secret alone, for
/// `offset` unknown bytes before it (`offset` mod 3 decides the alignment).
fn base64_core(secret: &[u8], offset: usize, alphabet: &[u8; 64]) -> Option<String> {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(secret);
    let encoded = base64(&padded, alphabet);
    let encoded = encoded.trim_end_matches('=');
    // Characters carrying bits of the unknown prefix: 6 bits each.
    let skip = (offset * 8).div_ceil(6);
    // Characters carrying bits of the unknown suffix: the last one when the total is not a
    // multiple of 3 bytes.
    let drop_tail = usize::from(!padded.len().is_multiple_of(3));
    let end = encoded.len().checked_sub(drop_tail)?;
    let core = encoded.get(skip..end)?;
    (core.len() >= MIN_BASE64_CORE).then(|| core.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-canary");
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(s.expose(), "hunter2-canary");
    }

    #[test]
    fn masker_scrubs_registered_values_from_text_and_bytes() {
        let _s = Secret::new("c4n4ry-xyz-123\n");
        let out = mask("ERROR 1045: Access denied (password: c4n4ry-xyz-123)");
        assert!(!out.contains("c4n4ry-xyz-123"), "{out}");
        assert!(out.contains(MASK));
        let b = masker().mask_bytes(b"echo c4n4ry-xyz-123 done");
        assert_eq!(&*b, format!("echo {MASK} done").as_bytes());
        // Invalid UTF-8 around a secret survives byte for byte.
        let b = masker().mask_bytes(b"\xff c4n4ry-xyz-123 \xfe");
        assert_eq!(&*b, [&b"\xff "[..], MASK.as_bytes(), b" \xfe"].concat());
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        let _a = Secret::new("abcdef");
        let _b = Secret::new("abcdefghijkl");
        assert_eq!(mask("x abcdefghijkl y"), format!("x {MASK} y"));
    }

    #[test]
    fn every_encoding_of_a_hostile_secret_is_masked() {
        let canary = "u1-a\"b\\c'%d ü/+";
        let _s = Secret::new(canary);
        let json = serde_json::to_string(canary).expect("json");
        let forms = [
            canary.to_owned(),
            json[1..json.len() - 1].to_owned(),
            format!("{canary:?}"),
            canary.escape_default().to_string(),
            percent_encode(canary, "", false, true),
            percent_encode(canary, "", false, false),
            percent_encode(canary, "", true, true),
            canary.replace('\'', r"'\''"),
            canary.replace('\'', "''"),
            mysql_escape(canary),
            base64(canary.as_bytes(), B64_STD),
            base64(canary.as_bytes(), B64_URL),
            // A JSON document holding a Debug-formatted error holding the secret.
            serde_json::to_string(&format!("error: {canary:?}")).expect("json"),
        ];
        for f in forms {
            let text = format!("before {f} after");
            let out = mask(&text);
            assert!(out.contains(MASK), "{f:?} not masked: {out}");
            assert!(!out.contains(&f), "{f:?} survives: {out}");
            assert!(
                out.starts_with("before ") && out.ends_with(" after"),
                "{out}"
            );
        }
        // Base64 of the secret inside a longer base64 text, at each alignment.
        for prefix in ["", "a", "ab", "abc"] {
            let whole = base64(format!("{prefix}{canary}tail").as_bytes(), B64_STD);
            assert!(mask(&whole).contains(MASK), "{prefix:?}: {whole}");
        }
    }

    #[test]
    fn json_values_are_masked_keys_included() {
        let _s = Secret::new("json-canary-\"q\"");
        let mut v = serde_json::json!({
            "a": ["x json-canary-\"q\" y", 1, null],
            "json-canary-\"q\"": {"b": "json-canary-\"q\""}
        });
        mask_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("json-canary"), "{text}");
        assert_eq!(v["a"][0], format!("x {MASK} y"));
        assert_eq!(v[MASK]["b"], MASK);
    }

    #[test]
    fn short_values_and_short_encodings_are_not_registered() {
        let m = Masker::default();
        m.register("ab");
        assert_eq!(m.pattern_count(), 0);
        m.register("abc");
        assert!(m.pattern_count() >= 1);
        assert_eq!(m.mask("xabcx"), format!("x{MASK}x"));
        assert_eq!(m.mask("ab"), "ab");
    }

    #[test]
    fn base64_matches_the_reference_alphabet() {
        assert_eq!(base64(b"", B64_STD), "");
        assert_eq!(base64(b"f", B64_STD), "Zg==");
        assert_eq!(base64(b"fo", B64_STD), "Zm8=");
        assert_eq!(base64(b"foo", B64_STD), "Zm9v");
        assert_eq!(base64(b"\xfb\xff", B64_URL), "-_8=");
    }
}
