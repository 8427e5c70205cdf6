//! How messages, pings and closes are written out.

use std::borrow::Cow;
use std::fmt::Write as _;

use weft::{CloseFrame, Message};

/// Binary payloads shown on a terminal are cut after this many bytes.
pub(crate) const PREVIEW_BYTES: usize = 64;

/// Lowercase hex of all of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `<binary, N bytes> 0a1b…`: the first [`PREVIEW_BYTES`] in hex, and `…` if
/// there are more.
pub(crate) fn binary_preview(bytes: &[u8]) -> String {
    let mut s = format!(
        "<binary, {} byte{}>",
        bytes.len(),
        if bytes.len() == 1 { "" } else { "s" }
    );
    if !bytes.is_empty() {
        s.push(' ');
        s.push_str(&hex(&bytes[..bytes.len().min(PREVIEW_BYTES)]));
        if bytes.len() > PREVIEW_BYTES {
            s.push('…');
        }
    }
    s
}

/// Text made safe for a terminal: control characters other than newline and
/// tab (escape sequences a server could use to rewrite the screen) are shown
/// as `\x1b`-style escapes.
pub(crate) fn for_terminal(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(s, "\\x{:02x}", u32::from(c));
        } else {
            s.push(c);
        }
    }
    Cow::Owned(s)
}

/// A message as interactive mode shows it: `Received: …`.
pub(crate) fn received(msg: &Message) -> String {
    match msg {
        Message::Text(t) => format!("Received: {}", for_terminal(t.as_str())),
        Message::Binary(b) => format!("Received: {}", binary_preview(b)),
    }
}

/// A message as non-interactive mode prints it: text as it is, binary as hex.
pub(crate) fn raw(msg: &Message) -> Cow<'_, str> {
    match msg {
        Message::Text(t) => Cow::Borrowed(t.as_str()),
        Message::Binary(b) => Cow::Owned(hex(b)),
    }
}

/// A ping or pong payload: its text when it is printable UTF-8, else a
/// binary preview.
pub(crate) fn control_payload(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok("") => "<empty>".to_owned(),
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => binary_preview(data),
    }
}

/// `Disconnected (code 1000: reason)`, for the close frame the server sent.
pub(crate) fn disconnected(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if f.reason.is_empty() => format!("Disconnected (code {})", f.code),
        Some(f) => format!("Disconnected (code {}: {})", f.code, for_terminal(&f.reason)),
        None => "Disconnected (the server gave no close code)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::CloseCode;

    #[test]
    fn hex_and_previews() {
        assert_eq!(hex(&[0x0a, 0x1b, 0xff, 0]), "0a1bff00");
        assert_eq!(binary_preview(&[]), "<binary, 0 bytes>");
        assert_eq!(binary_preview(&[0xab]), "<binary, 1 byte> ab");
        let long: Vec<u8> = (0..=99).collect();
        let p = binary_preview(&long);
        assert!(p.starts_with("<binary, 100 bytes> 000102"), "{p}");
        assert!(p.ends_with("3e3f…"), "{p}");
        assert_eq!(
            p.len(),
            "<binary, 100 bytes> ".len() + 2 * PREVIEW_BYTES + '…'.len_utf8()
        );
        let exact: Vec<u8> = vec![1; PREVIEW_BYTES];
        assert!(!binary_preview(&exact).ends_with('…'));
    }

    #[test]
    fn messages() {
        assert_eq!(received(&Message::from("hi")), "Received: hi");
        assert_eq!(
            received(&Message::from(vec![1u8, 2])),
            "Received: <binary, 2 bytes> 0102"
        );
        assert_eq!(received(&Message::from("a\x1b[2Jb")), "Received: a\\x1b[2Jb");
        assert_eq!(raw(&Message::from("a\x1b")), "a\x1b");
        assert_eq!(raw(&Message::from(vec![0xde_u8, 0xad])), "dead");
    }

    #[test]
    fn controls_and_closes() {
        assert_eq!(control_payload(b"hi"), "hi");
        assert_eq!(control_payload(b""), "<empty>");
        assert_eq!(control_payload(&[0, 1]), "<binary, 2 bytes> 0001");
        assert_eq!(
            disconnected(Some(&CloseFrame::new(CloseCode(4000), "bye"))),
            "Disconnected (code 4000: bye)"
        );
        assert_eq!(
            disconnected(Some(&CloseFrame::new(CloseCode::NORMAL, ""))),
            "Disconnected (code 1000)"
        );
        assert!(disconnected(None).contains("no close code"));
    }
}
