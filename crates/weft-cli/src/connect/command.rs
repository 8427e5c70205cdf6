//! What a line typed in interactive mode asks for: a message, or a slash
//! command.

use weft::CloseCode;
use weft::proto::close::MAX_CLOSE_REASON;

/// Control frames (pings) carry at most this many bytes.
const MAX_PING: usize = 125;

/// One line of interactive input, understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// Send a text message (a plain line, or `//…` with one `/` removed).
    Text(String),
    /// `/binary …`: send a binary message.
    Binary(Vec<u8>),
    /// `/ping [data]`.
    Ping(Vec<u8>),
    /// `/close [code [reason]]`.
    Close(CloseCode, String),
    /// `/quit`: close with 1000 and exit.
    Quit,
    /// `/help`.
    Help,
    /// An empty line: nothing to do.
    Empty,
}

/// The text `/help` prints.
pub(crate) const HELP: &str = "\
Lines you type are sent as text messages. Commands:
  /ping [data]            send a ping (the pong is printed)
  /close [code [reason]]  close with code (default 1000) and show the server's answer
  /binary <hex or text>   send a binary message: hex digits (0a1b, or 0a 1b) become
                          those bytes, anything else its UTF-8 bytes
  /quit                   close with 1000 and exit (Ctrl-D does the same)
  /help                   this list
  //text                  send the text \"/text\": a line starting with // loses one /";

/// Understand one line typed in interactive mode. `Err` is a message for
/// the user; nothing is sent.
pub(crate) fn parse(line: &str) -> Result<Line, String> {
    if line.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Ok(Line::Text(format!("/{rest}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Line::Text(line.to_owned()));
    };
    let (name, arg) = match command.split_once(char::is_whitespace) {
        Some((name, arg)) => (name, arg.trim_start()),
        None => (command, ""),
    };
    match name {
        "ping" => {
            if arg.len() > MAX_PING {
                return Err(format!(
                    "/ping: the data is {} bytes; a ping carries at most {MAX_PING}",
                    arg.len()
                ));
            }
            Ok(Line::Ping(arg.as_bytes().to_vec()))
        }
        "close" => parse_close(arg),
        "binary" => {
            if arg.is_empty() {
                return Err("/binary needs hex bytes (0a1b) or text to send".to_owned());
            }
            Ok(Line::Binary(decode_hex(arg).unwrap_or_else(|| arg.as_bytes().to_vec())))
        }
        "quit" | "help" if !arg.is_empty() => Err(format!("/{name} takes no argument")),
        "quit" => Ok(Line::Quit),
        "help" => Ok(Line::Help),
        _ => Err(format!(
            "unknown command /{name}: /help lists the commands (start the line with // to send it as text)"
        )),
    }
}

fn parse_close(arg: &str) -> Result<Line, String> {
    if arg.is_empty() {
        return Ok(Line::Close(CloseCode::NORMAL, String::new()));
    }
    let (code, reason) = match arg.split_once(char::is_whitespace) {
        Some((code, reason)) => (code, reason.trim_start()),
        None => (arg, ""),
    };
    let code = code
        .parse::<u16>()
        .ok()
        .map(CloseCode)
        .filter(|c| c.is_sendable())
        .ok_or_else(|| {
            format!("/close: {code} is not a close code that can be sent (1000-1003, 1007-1014, 3000-4999)")
        })?;
    if reason.len() > MAX_CLOSE_REASON {
        return Err(format!(
            "/close: the reason is {} bytes; a close frame carries at most {MAX_CLOSE_REASON}",
            reason.len()
        ));
    }
    Ok(Line::Close(code, reason.to_owned()))
}

/// Hex digits, optionally separated by whitespace, as bytes; `None` if `s` is
/// not that (odd number of digits, other characters, or nothing at all).
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_and_escapes() {
        assert_eq!(parse("hello"), Ok(Line::Text("hello".into())));
        assert_eq!(parse(" /ping"), Ok(Line::Text(" /ping".into())));
        assert_eq!(parse("//ping hi"), Ok(Line::Text("/ping hi".into())));
        assert_eq!(parse("//"), Ok(Line::Text("/".into())));
        assert_eq!(parse(""), Ok(Line::Empty));
    }

    #[test]
    fn ping() {
        assert_eq!(parse("/ping"), Ok(Line::Ping(vec![])));
        assert_eq!(parse("/ping hi there"), Ok(Line::Ping(b"hi there".to_vec())));
        assert!(parse(&format!("/ping {}", "x".repeat(126))).is_err());
        assert!(parse(&format!("/ping {}", "x".repeat(125))).is_ok());
    }

    #[test]
    fn close() {
        assert_eq!(parse("/close"), Ok(Line::Close(CloseCode::NORMAL, String::new())));
        assert_eq!(parse("/close 4000"), Ok(Line::Close(CloseCode(4000), String::new())));
        assert_eq!(
            parse("/close 4000 bye now"),
            Ok(Line::Close(CloseCode(4000), "bye now".into()))
        );
        for bad in [
            "/close 1005",
            "/close 1006",
            "/close 999",
            "/close 5000",
            "/close abc",
            "/close 70000",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("/close 1000 {}", "r".repeat(124))).is_err());
    }

    #[test]
    fn binary() {
        assert_eq!(parse("/binary 0a1b"), Ok(Line::Binary(vec![0x0a, 0x1b])));
        assert_eq!(parse("/binary 0A 1b ff"), Ok(Line::Binary(vec![0x0a, 0x1b, 0xff])));
        assert_eq!(parse("/binary hello"), Ok(Line::Binary(b"hello".to_vec())));
        assert_eq!(parse("/binary abc"), Ok(Line::Binary(b"abc".to_vec())));
        assert!(parse("/binary").is_err());
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse("/quit"), Ok(Line::Quit));
        assert_eq!(parse("/help"), Ok(Line::Help));
        assert!(parse("/quit now").is_err());
        assert!(parse("/pingx").is_err());
        assert!(parse("/").is_err());
        assert!(parse("/unknown arg").is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("  "), None);
        assert_eq!(decode_hex("é1"), None);
    }
}
