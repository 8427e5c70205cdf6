//! UTF-8 validation, whole and incremental (RFC 6455 §5.6, §8.1).
//!
//! The incremental validator fails *fast*: it reports an error as soon as the
//! bytes seen so far cannot begin any valid UTF-8 text, not at the end of the
//! message. It carries at most three bytes of an incomplete code point between
//! calls. The bulk of each chunk goes through `simdutf8`'s SIMD validator.

/// The bytes are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Error;

impl std::fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Validate a whole byte string.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<&str, Utf8Error> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| Utf8Error)
}

/// Whether a whole text is UTF-8, short ASCII text settled without the
/// general validator (see [`Utf8Validator::feed`]).
#[inline]
pub(crate) fn is_valid(bytes: &[u8]) -> bool {
    (bytes.len() < SHORT && short_is_ascii(bytes)) || validate(bytes).is_ok()
}

/// Streaming validator for a text message that arrives in pieces.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// Pieces shorter than this try the ASCII check first (simdutf8's SIMD
/// validators start at 64 bytes).
const SHORT: usize = 64;

/// How long a sequence is, by its lead byte; 0 when it cannot lead.
#[inline]
fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget any partial code point (start a new message).
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Whether an incomplete code point is pending.
    pub fn is_incomplete(&self) -> bool {
        self.partial_len != 0
    }

    /// Validate the next piece. Fails at the first byte that makes the text
    /// invalid, even when the piece ends inside a code point.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Utf8Error> {
        if self.partial_len != 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let now = have + take;
            match simdutf8::compat::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(Utf8Error),
                Err(_) => {
                    // Still a valid prefix; the piece is used up.
                    self.partial_len = now as u8;
                    return Ok(());
                }
            }
            data = &data[take..];
        }
        // Below 64 bytes simdutf8 hands over to the standard library's
        // byte-at-a-time validator; short ASCII pieces (the common chat-sized
        // text message) are settled a word at a time instead.
        if data.len() < SHORT && short_is_ascii(data) {
            return Ok(());
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error),
            Err(e) => {
                // The piece ends inside a code point whose prefix is valid.
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: an incomplete code point is an error.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let incomplete = self.is_incomplete();
        self.reset();
        if incomplete { Err(Utf8Error) } else { Ok(()) }
    }
}

/// Whether a piece shorter than [`SHORT`] is all ASCII: its 8-byte words OR-ed
/// together, then the tail bytes, and the high bits tested once. (The standard
/// library's `is_ascii` spends more on aligning short inputs.)
#[inline]
fn short_is_ascii(data: &[u8]) -> bool {
    let mut words = data.chunks_exact(8);
    let mut acc = 0u64;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc |= u64::from_ne_bytes(b);
    }
    let mut tail = 0u8;
    for &b in words.remainder() {
        tail |= b;
    }
    (acc & 0x8080_8080_8080_8080) == 0 && tail < 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ascii_check_finds_a_high_bit_anywhere() {
        let mut buf = [b'a'; SHORT];
        for len in 0..SHORT {
            assert!(short_is_ascii(&buf[..len]), "len {len}");
            for at in 0..len {
                for high in [0x80u8, 0xc3, 0xff] {
                    buf[at] = high;
                    assert!(!short_is_ascii(&buf[..len]), "len {len}, {high:#x} at {at}");
                    buf[at] = b'a';
                }
            }
        }
    }

    fn every_split(text: &[u8]) -> Option<usize> {
        // Returns the number of bytes fed before the first error for each split,
        // checking that all splits agree.
        let whole = {
            let mut v = Utf8Validator::new();
            v.feed(text).and_then(|_| v.finish()).is_ok()
        };
        for split in 0..=text.len() {
            let mut v = Utf8Validator::new();
            let ok = v
                .feed(&text[..split])
                .and_then(|_| v.feed(&text[split..]))
                .and_then(|_| v.finish())
                .is_ok();
            assert_eq!(ok, whole, "split at {split} of {text:x?}");
        }
        whole.then_some(text.len())
    }

    #[test]
    fn valid_text_in_any_split() {
        for t in [
            "",
            "a",
            "κόσμε",
            "Hello-µ@ßöäüàá-UTF-8!!",
            "\u{10ffff}",
            "\u{1f600} smile",
            "\u{7ff}\u{800}\u{ffff}\u{10000}",
        ] {
            assert!(every_split(t.as_bytes()).is_some(), "{t}");
        }
    }

    #[test]
    fn invalid_text_in_any_split() {
        let cases: &[&[u8]] = &[
            b"\xff",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
            b"\xe0\x80",
            b"abc\xf0\x9f",
            b"\x80",
        ];
        for c in cases {
            assert!(every_split(c).is_none(), "{c:x?}");
        }
    }

    #[test]
    fn rfc6455_8_1_fails_fast_inside_a_code_point() {
        // 0xF4 0x90 can begin no code point (> U+10FFFF): fail on the second byte.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok \xf4").is_ok());
        assert_eq!(v.feed(b"\x90"), Err(Utf8Error));
        // A surrogate lead (ED A0) fails before the third byte arrives.
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xed\xa0"), Err(Utf8Error));
        // A valid but incomplete prefix is fine until the message ends.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xf0\x9f\x98").is_ok());
        assert_eq!(v.finish(), Err(Utf8Error));
    }

    #[test]
    fn carried_prefix_completed_one_byte_at_a_time() {
        let s = "\u{1f600}";
        let mut v = Utf8Validator::new();
        for b in s.as_bytes() {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        v.finish().unwrap();
    }
}
