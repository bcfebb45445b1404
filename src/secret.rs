//! Secrets: values that must never reach the screen, a log, `--json` output, an error message
//! or a file opsdeck writes.
//!
//! A [`Secret`] is deliberately not `Serialize` and prints as `********` through `Debug` and
//! `Display`. Every secret value loaded is also registered with the process-wide [`Masker`], so
//! text that passes *through* opsdeck (command output, server error text, log lines) can be
//! scrubbed of it even when a remote program echoes the value back.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, RwLock};

/// What a masked secret is replaced with.
pub const MASK: &str = "********";

/// Secrets shorter than this are not registered for output masking: masking a one- or
/// two-character password would shred ordinary output and reveal more than it hides.
const MIN_MASKABLE_LEN: usize = 3;

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

/// Replaces every registered secret value in text with [`MASK`].
#[derive(Default)]
pub struct Masker {
    values: RwLock<Vec<String>>,
}

impl Masker {
    pub fn register(&self, value: &str) {
        // Surrounding whitespace is what `password_cmd` and files tend to add; the server sees
        // the trimmed value, so that is what must be hidden.
        let value = value.trim();
        if value.len() < MIN_MASKABLE_LEN {
            return;
        }
        let mut values = self
            .values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !values.iter().any(|v| v == value) {
            values.push(value.to_owned());
            // Longest first, so a secret that contains another is masked whole.
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// Masks raw bytes (command output may not be UTF-8). Invalid UTF-8 is replaced lossily
    /// only when a secret had to be masked; otherwise the bytes pass through untouched.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if values
            .iter()
            .any(|v| contains_subslice(bytes, v.as_bytes()))
        {
            drop(values);
            let text = String::from_utf8_lossy(bytes);
            Cow::Owned(self.mask(&text).into_owned().into_bytes())
        } else {
            Cow::Borrowed(bytes)
        }
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
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        values
            .iter()
            .filter_map(|v| partial(v.as_bytes()))
            .max()
            .unwrap_or(0)
    }
}

fn contains_subslice(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
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

/// Masks every string in a JSON value (keys included) before it is serialised, so a secret
/// is caught before JSON escaping could disguise it.
pub fn mask_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            if let Cow::Owned(m) = mask(s) {
                *s = m;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_json),
        serde_json::Value::Object(o) => {
            let masked: serde_json::Map<String, serde_json::Value> = std::mem::take(o)
                .into_iter()
                .map(|(k, mut v)| {
                    mask_json(&mut v);
                    (mask(&k).into_owned(), v)
                })
                .collect();
            *o = masked;
        }
        _ => {}
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
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        let _a = Secret::new("abcdef");
        let _b = Secret::new("abcdefghijkl");
        assert_eq!(mask("x abcdefghijkl y"), format!("x {MASK} y"));
    }
}
