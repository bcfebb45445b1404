//! Bounded command output: the head and the tail of each stream are kept, the middle is
//! dropped and replaced by a mark saying how much is missing.
//!
//! Secrets are masked on the raw bytes of what is kept. A stream kept whole is masked whole;
//! a truncated one is masked as head and tail separately, and a secret cut in two by the
//! truncation (its start at the end of the head, or its end at the start of the tail) is
//! masked too, so no part of a secret is ever shown.

use std::collections::VecDeque;

use crate::secret::{self, MASK};

/// Bytes kept per stream by default: the first half and the last half of this.
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;

/// How much of each output stream to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// Bytes kept from the start.
    pub head: usize,
    /// Bytes kept from the end.
    pub tail: usize,
}

impl OutputLimit {
    /// [`DEFAULT_OUTPUT_LIMIT`] per stream.
    pub const DEFAULT: OutputLimit = OutputLimit::per_stream(DEFAULT_OUTPUT_LIMIT);

    /// `bytes` per stream, half from the start and half from the end.
    pub const fn per_stream(bytes: usize) -> OutputLimit {
        OutputLimit {
            head: bytes / 2,
            tail: bytes - bytes / 2,
        }
    }
}

impl Default for OutputLimit {
    fn default() -> Self {
        OutputLimit::DEFAULT
    }
}

/// The mark that stands for the dropped middle of a stream.
pub fn omitted_mark(bytes: u64) -> String {
    format!("\n[opsdeck: {bytes} bytes omitted]\n")
}

/// One stream as it arrives: at most `limit.head + limit.tail` bytes held.
#[derive(Debug)]
pub struct BoundedStream {
    limit: OutputLimit,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

/// A stream as kept: text (masked, lossy UTF-8), bytes seen, and whether the middle was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub text: String,
    pub total_bytes: u64,
    pub truncated: bool,
}

impl BoundedStream {
    pub fn new(limit: OutputLimit) -> Self {
        BoundedStream {
            limit,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.limit.head.saturating_sub(self.head.len());
        if room > 0 {
            let n = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.is_empty() || self.limit.tail == 0 {
            return;
        }
        if bytes.len() >= self.limit.tail {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.limit.tail..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.limit.tail);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept text, secrets masked.
    pub fn finish(self) -> Kept {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let masker = secret::masker();
        if kept == self.total {
            let mut all = self.head;
            all.extend(self.tail);
            return Kept {
                text: String::from_utf8_lossy(&masker.mask_bytes(&all)).into_owned(),
                total_bytes: self.total,
                truncated: false,
            };
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        let mut head = masker.mask_bytes(&self.head).into_owned();
        let cut = masker.secret_start_at_end(&head);
        if cut > 0 {
            head.truncate(head.len() - cut);
            head.extend_from_slice(MASK.as_bytes());
        }
        let mut tail = masker.mask_bytes(&tail).into_owned();
        let cut = masker.secret_end_at_start(&tail);
        if cut > 0 {
            tail.splice(..cut, MASK.bytes());
        }
        let mut text = String::from_utf8_lossy(&head).into_owned();
        text.push_str(&omitted_mark(self.total - kept));
        text.push_str(&String::from_utf8_lossy(&tail));
        Kept {
            text,
            total_bytes: self.total,
            truncated: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(limit: OutputLimit, chunks: &[&[u8]]) -> Kept {
        let mut s = BoundedStream::new(limit);
        for c in chunks {
            s.push(c);
        }
        s.finish()
    }

    // The masker is process-wide and other tests register secrets made of letters and
    // digits: these streams use punctuation only, so no cut here looks like part of a secret.

    #[test]
    fn short_output_is_kept_whole() {
        let k = kept(OutputLimit { head: 4, tail: 4 }, &[b"=.=", b":;:;:"]);
        assert_eq!(k.text, "=.=:;:;:");
        assert!(!k.truncated);
        assert_eq!(k.total_bytes, 8);
    }

    #[test]
    fn long_output_keeps_head_and_tail_and_marks_the_gap() {
        let k = kept(
            OutputLimit { head: 3, tail: 4 },
            &[b"=.", b"=::::", b"::::::::~", b"~.", b"~"],
        );
        assert_eq!(k.text, format!("=.={}~~.~", omitted_mark(12)));
        assert!(k.truncated);
        assert_eq!(k.total_bytes, 19);
    }

    #[test]
    fn a_secret_cut_by_the_truncation_is_masked_on_both_sides() {
        let _s = secret::Secret::new("Sup3rS3cretCanary");
        // The head ends inside the secret, the tail starts inside another copy of it.
        let text = b"xxSup3rS3cr......................etCanaryyy";
        let k = kept(
            OutputLimit { head: 11, tail: 10 },
            &[&text[..5], &text[5..]],
        );
        assert!(k.truncated);
        for part in ["Sup3r", "S3cr", "Canary", "etCan"] {
            assert!(!k.text.contains(part), "{part} leaked: {}", k.text);
        }
        assert!(k.text.starts_with("xx********\n[opsdeck:"), "{}", k.text);
        assert!(k.text.ends_with("]\n********yy"), "{}", k.text);
        // A whole secret split over chunks is masked whole.
        let k = kept(OutputLimit::DEFAULT, &[b"a Sup3rS3c", b"retCanary b"]);
        assert_eq!(k.text, "a ******** b");
    }
}
