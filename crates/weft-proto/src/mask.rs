//! Masking (RFC 6455 §5.3): XOR of the payload with a 4-byte key.
//!
//! Eight bytes at a time through `u64`, which the compiler widens to the
//! platform's vector registers; the key is rotated so that masking can resume at
//! any offset when a payload arrives in pieces.

/// The key, rotated so that index 0 lines up with payload offset `offset`.
#[inline]
fn rotated(key: [u8; 4], offset: usize) -> [u8; 4] {
    // `[k0, k1, k2, k3].rotate_left(r)` as one integer rotation: read as a
    // little-endian u32, byte r moves to the bottom.
    u32::from_le_bytes(key)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes()
}

/// XOR `buf` in place with `key`, where `buf[0]` is byte `offset` of the payload.
///
/// Masking and unmasking are the same operation.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated(key, offset);
    // The key twice over (the same bytes in either byte order). A `u64` loop
    // is what the compiler vectorizes best; `u128` blocks measured slower.
    let wide = u64::from(u32::from_ne_bytes(k)) * 0x0000_0001_0000_0001;
    let (words, tail) = buf.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ wide).to_ne_bytes();
    }
    // `words` covered a multiple of 8 bytes, so the key phase is back at 0.
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// [`apply_mask`] from payload offset 0 that also tells whether the unmasked
/// bytes are all ASCII, in the same pass: a short text frame then needs no
/// separate UTF-8 check.
#[inline(always)]
pub(crate) fn unmask_is_ascii(buf: &mut [u8], key: [u8; 4]) -> bool {
    let wide = u64::from(u32::from_ne_bytes(key)) * 0x0000_0001_0000_0001;
    let (words, tail) = buf.as_chunks_mut::<8>();
    let mut acc = 0u64;
    for w in words {
        let v = u64::from_ne_bytes(*w) ^ wide;
        acc |= v;
        *w = v.to_ne_bytes();
    }
    let mut high = 0u8;
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[i & 3];
        high |= *b;
    }
    acc & 0x8080_8080_8080_8080 == 0 && high < 0x80
}

/// Append `src` masked with `key` (from payload offset 0) to `dst`: one pass,
/// one copy, used when sending a client frame.
#[inline]
pub fn extend_masked(dst: &mut bytes::BytesMut, src: &[u8], key: [u8; 4]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[start..], key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn rfc6455_5_3_matches_the_definition_at_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..200u16).map(|i| (i * 7 + 3) as u8).collect();
        for offset in 0..8 {
            for len in 0..data.len() {
                let mut a = data[..len].to_vec();
                let mut b = a.clone();
                apply_mask(&mut a, key, offset);
                naive(&mut b, key, offset);
                assert_eq!(a, b, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn unmask_is_ascii_unmasks_and_finds_a_high_bit_anywhere() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..80 {
            let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut masked = text.clone();
            naive(&mut masked, key, 0);
            let mut a = masked.clone();
            assert!(unmask_is_ascii(&mut a, key), "len {len}");
            assert_eq!(a, text, "len {len}");
            for at in 0..len {
                for high in [0x80u8, 0xc3, 0xff] {
                    let mut t = text.clone();
                    t[at] = high;
                    let mut a = t.clone();
                    naive(&mut a, key, 0);
                    assert!(!unmask_is_ascii(&mut a, key), "len {len}, {high:#x} at {at}");
                    assert_eq!(a, t);
                }
            }
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut p = *b"Hello";
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(p, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
