//! The frame header (RFC 6455 §5.2): parse from any prefix of the input, encode
//! in the shortest length form.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, SendError};
use crate::message::{DataKind, Message};

/// The largest header: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;

/// RSV1, as it sits in [`FrameHeader::rsv`].
pub const RSV1: u8 = 0b100;
/// RSV2, as it sits in [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3, as it sits in [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected when parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a text frame.
    Text,
    /// 0x2: a binary frame.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Decode the 4-bit opcode field.
    pub fn from_u8(op: u8) -> Result<Opcode, ProtocolError> {
        Ok(match op {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit opcode field.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// The three RSV bits, RSV1 as `0b100`.
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parse a header from the start of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (the input may be split at any
    /// byte); `Ok(Some((header, n)))` consumed `n` bytes. Reserved opcodes and a
    /// 64-bit length with its top bit set are errors. Nothing is allocated.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        let opcode = Opcode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut n) = match b1 & 0x7f {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
                _ => return Ok(None),
            },
            127 => match rest.first_chunk::<8>() {
                Some(l) => {
                    let len = u64::from_be_bytes(*l);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            match buf[n..].first_chunk::<4>() {
                Some(k) => {
                    n += 4;
                    Some(*k)
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0b111,
                opcode,
                mask,
                payload_len,
            },
            n,
        )))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Append the header to `dst`, in the shortest length form (§5.2).
    #[inline]
    pub fn encode(&self, dst: &mut impl BufMut) {
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode.as_u8();
        let m = if self.mask.is_some() { 0x80 } else { 0 };
        dst.put_u8(b0);
        match self.payload_len {
            len @ 0..=125 => dst.put_u8(m | len as u8),
            len @ 126..=0xffff => {
                dst.put_u8(m | 126);
                dst.put_u16(len as u16);
            }
            len => {
                dst.put_u8(m | 127);
                dst.put_u64(len);
            }
        }
        if let Some(k) = self.mask {
            dst.put_slice(&k);
        }
    }
}

/// Encode a whole message as one unmasked (server-to-client) frame, header and
/// payload in one buffer, for sending the same bytes to many connections with
/// [`Connection::send_raw_frame`](crate::Connection::send_raw_frame).
///
/// Server frames are not masked (§5.1), so the encoding does not depend on the
/// connection: one encoding serves every subscriber of a topic. The frame is
/// never compressed (RSV1 is clear), which is valid on a connection that
/// negotiated permessage-deflate too: compression is chosen per message
/// (RFC 7692 §6), and a skipped message leaves both ends' LZ77 windows as they
/// were. To compress once for connections that negotiated
/// `server_no_context_takeover`, see `deflate::MessageCompressor`.
///
/// ```
/// use weft_proto::{DataKind, frame::encode_server_frame};
///
/// let frame = encode_server_frame(DataKind::Text, b"Hello").unwrap();
/// assert_eq!(&frame[..], b"\x81\x05Hello");
/// assert!(encode_server_frame(DataKind::Text, b"\xff").is_err());
/// ```
///
/// A text payload is checked to be UTF-8 here, once, so that connections
/// sending the frame need not check it again.
pub fn encode_server_frame(kind: DataKind, payload: &[u8]) -> Result<Bytes, SendError> {
    if kind == DataKind::Text && crate::utf8::validate(payload).is_err() {
        return Err(SendError::InvalidUtf8);
    }
    Ok(encode_unchecked(kind, payload))
}

/// [`encode_server_frame`] for a [`Message`], whose text is known to be
/// UTF-8: cannot fail.
pub fn encode_server_message(msg: &Message) -> Bytes {
    encode_unchecked(msg.kind(), msg.as_bytes())
}

fn encode_unchecked(kind: DataKind, payload: &[u8]) -> Bytes {
    let h = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: match kind {
            DataKind::Text => Opcode::Text,
            DataKind::Binary => Opcode::Binary,
        },
        mask: None,
        payload_len: payload.len() as u64,
    };
    let mut buf = BytesMut::with_capacity(h.encoded_len() + payload.len());
    h.encode(&mut buf);
    buf.extend_from_slice(payload);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_in_all_length_forms_parse_back() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let f = encode_server_frame(DataKind::Binary, &payload).unwrap();
            let (h, n) = FrameHeader::parse(&f).unwrap().unwrap();
            assert_eq!((h.fin, h.rsv, h.opcode, h.mask), (true, 0, Opcode::Binary, None));
            assert_eq!(h.payload_len as usize, len);
            assert_eq!(&f[n..], &payload[..]);
            let t = encode_server_message(&Message::Text(String::from_utf8(payload).unwrap().into()));
            assert_eq!(t[0], 0x81);
            assert_eq!(&t[1..], &f[1..]);
        }
        assert_eq!(
            encode_server_frame(DataKind::Text, b"\xc3"),
            Err(SendError::InvalidUtf8)
        );
        assert!(encode_server_frame(DataKind::Binary, b"\xc3").is_ok());
    }

    fn header(bytes: &[u8]) -> FrameHeader {
        let (h, n) = FrameHeader::parse(bytes).unwrap().unwrap();
        assert_eq!(n, h.encoded_len());
        let mut re = Vec::new();
        h.encode(&mut re);
        assert_eq!(re, &bytes[..n], "re-encoding gives the same bytes");
        h
    }

    #[test]
    fn rfc6455_5_7_single_frame_unmasked() {
        let h = header(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!((h.opcode, h.payload_len, h.mask), (Opcode::Text, 5, None));
    }

    #[test]
    fn rfc6455_5_7_single_frame_masked() {
        let h = header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn rfc6455_5_7_fragmented() {
        let h = header(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        let h = header(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Continuation);
    }

    #[test]
    fn rfc6455_5_7_ping_and_masked_pong() {
        let h = header(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!((h.opcode, h.payload_len), (Opcode::Ping, 5));
        let h = header(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!((h.opcode, h.payload_len), (Opcode::Pong, 5));
    }

    #[test]
    fn rfc6455_5_7_256_bytes_and_64k_binary() {
        let h = header(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len), (Opcode::Binary, 256));
        let h = header(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!((h.opcode, h.payload_len), (Opcode::Binary, 65536));
    }

    #[test]
    fn rfc6455_5_2_shortest_length_form() {
        for (len, n) in [(0u64, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (1 << 40, 10)] {
            let h = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: Opcode::Binary,
                mask: None,
                payload_len: len,
            };
            let mut v = Vec::new();
            h.encode(&mut v);
            assert_eq!(v.len(), n, "{len}");
            assert_eq!(FrameHeader::parse(&v).unwrap().unwrap().0, h);
        }
    }

    #[test]
    fn rfc6455_5_2_any_prefix_is_incomplete() {
        let bytes = [0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for cut in 0..bytes.len() {
            assert_eq!(FrameHeader::parse(&bytes[..cut]), Ok(None), "cut {cut}");
        }
        assert!(FrameHeader::parse(&bytes).unwrap().is_some());
    }

    #[test]
    fn rfc6455_5_2_reserved_opcodes_and_length_msb() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        let huge = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&huge), Err(ProtocolError::InvalidLength));
    }
}
