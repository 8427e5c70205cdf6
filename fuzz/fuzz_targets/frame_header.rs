//! `FrameHeader::parse` on arbitrary bytes, against an independent reading of
//! RFC 6455 §5.2:
//! - `Ok(None)` only for a strict prefix of a header;
//! - errors only for a reserved opcode or a 64-bit length with its top bit set;
//! - a parsed header has the fields the bytes say, consumed no more than the
//!   input, and re-encodes (shortest form) to bytes that parse to the same
//!   header;
//! - every prefix of the input agrees with the whole (incremental parsing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proto::ProtocolError;
use weft_proto::frame::{FrameHeader, Opcode};

/// What RFC 6455 §5.2 says about these bytes.
#[derive(Debug, PartialEq)]
enum Expect {
    Incomplete,
    ReservedOpcode(u8),
    InvalidLength,
    Header { len: usize },
}

fn expect(b: &[u8]) -> Expect {
    if b.len() < 2 {
        return Expect::Incomplete;
    }
    let op = b[0] & 0x0f;
    if !matches!(op, 0x0..=0x2 | 0x8..=0xA) {
        return Expect::ReservedOpcode(op);
    }
    let ext = match b[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if b.len() < 2 + ext {
        return Expect::Incomplete;
    }
    if ext == 8 && b[2] & 0x80 != 0 {
        return Expect::InvalidLength;
    }
    let len = 2 + ext + if b[1] & 0x80 != 0 { 4 } else { 0 };
    if b.len() < len {
        Expect::Incomplete
    } else {
        Expect::Header { len }
    }
}

fn check(data: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let got = FrameHeader::parse(data);
    match (expect(data), &got) {
        (Expect::Incomplete, Ok(None)) => {}
        (Expect::ReservedOpcode(op), Err(ProtocolError::ReservedOpcode(o))) => assert_eq!(op, *o),
        (Expect::InvalidLength, Err(ProtocolError::InvalidLength)) => {}
        (Expect::Header { len }, Ok(Some((h, n)))) => {
            assert_eq!(*n, len, "consumed length");
            assert!(*n <= data.len());
            assert_eq!(h.fin, data[0] & 0x80 != 0);
            assert_eq!(h.rsv, (data[0] >> 4) & 0b111);
            assert_eq!(h.opcode.as_u8(), data[0] & 0x0f);
            assert_eq!(Opcode::from_u8(h.opcode.as_u8()), Ok(h.opcode));
            let payload_len = match data[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([data[2], data[3]])),
                127 => u64::from_be_bytes(data[2..10].try_into().expect("8 bytes")),
                l => u64::from(l),
            };
            assert_eq!(h.payload_len, payload_len);
            assert!(h.payload_len < 1 << 63);
            let key = (data[1] & 0x80 != 0).then(|| <[u8; 4]>::try_from(&data[len - 4..len]).expect("4 bytes"));
            assert_eq!(h.mask, key);
            // Re-encode in the shortest form and parse again.
            let mut re = Vec::new();
            h.encode(&mut re);
            assert_eq!(re.len(), h.encoded_len());
            assert!(re.len() <= *n, "the shortest form is not longer than what was read");
            assert_eq!(FrameHeader::parse(&re), Ok(Some((*h, re.len()))), "round trip");
            // Trailing bytes change nothing.
            re.extend_from_slice(&[0xAA; 3]);
            assert_eq!(FrameHeader::parse(&re).map(|o| o.map(|(h, _)| h)), Ok(Some(*h)));
        }
        (e, g) => panic!("expected {e:?}, parse gave {g:?} for {data:x?}"),
    }
    got
}

fuzz_target!(|data: &[u8]| {
    let whole = check(data);
    // Incremental parsing: a prefix is incomplete until the header is all
    // there, then it gives the same answer as the whole input.
    for cut in 0..data.len().min(16) {
        let part = check(&data[..cut]);
        match (&whole, &part) {
            (_, Ok(None)) => {}
            (Ok(Some((h, n))), Ok(Some((hp, np)))) => assert_eq!((h, n), (hp, np)),
            (Err(e), Err(ep)) => assert_eq!(e, ep),
            (w, p) => panic!("prefix of {cut} gave {p:?}, the whole input {w:?}"),
        }
    }
});
