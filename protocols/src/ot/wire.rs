//! Small wire helpers shared by the OT protocols: call headers and bit packing.
//!
//! A *call header* is 9 bytes, `kind (1) || count (u64 LE)`, sent by the OT receiver at the
//! start of each call so that the sender can check that both parties asked for the same kind
//! and number of OTs; a disagreement ends the session with a clear error instead of silently
//! misaligned outputs.

use crate::channel::Channel;

use super::OtError;

/// Bytes of a call header.
pub(crate) const HEADER_LEN: usize = 9;

/// What a call produces (the first header byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Correlated OT with chosen choice bits.
    Cot = 1,
    /// Random OT.
    Rot = 2,
    /// Random correlated OT (random choice bits).
    Rcot = 3,
    /// Chosen-message OT (derandomized random OT), 128-bit messages.
    Chosen = 4,
    /// Chosen-message OT with l-bit messages.
    ChosenU64 = 5,
    /// Correlated-message OT with l-bit messages.
    CorrelatedU64 = 6,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cot => "correlated OT",
            Kind::Rot => "random OT",
            Kind::Rcot => "random correlated OT",
            Kind::Chosen => "chosen-message OT",
            Kind::ChosenU64 => "chosen l-bit message OT",
            Kind::CorrelatedU64 => "correlated l-bit message OT",
        }
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Cot,
            2 => Kind::Rot,
            3 => Kind::Rcot,
            4 => Kind::Chosen,
            5 => Kind::ChosenU64,
            6 => Kind::CorrelatedU64,
            _ => return None,
        })
    }
}

/// Encodes a call header.
pub(crate) fn header(kind: Kind, count: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind as u8;
    h[1..].copy_from_slice(&(count as u64).to_le_bytes());
    h
}

/// Checks a received call header against this party's own call; returns the reason on
/// disagreement.
pub(crate) fn check_header(
    proto: &str,
    got: &[u8],
    kind: Kind,
    count: usize,
) -> Result<(), String> {
    if got.len() < HEADER_LEN {
        return Err(format!(
            "{proto}: call header of {} bytes, expected {HEADER_LEN}",
            got.len()
        ));
    }
    let their_kind = Kind::from_u8(got[0]);
    let their_count = u64::from_le_bytes(got[1..HEADER_LEN].try_into().expect("8 bytes"));
    match their_kind {
        Some(k) if k == kind && their_count == count as u64 => Ok(()),
        Some(k) => Err(format!(
            "{proto}: the receiver asked for {their_count} {} but the sender for {count} {}",
            k.name(),
            kind.name()
        )),
        None => Err(format!(
            "{proto}: unknown call kind {} in the receiver's header",
            got[0]
        )),
    }
}

/// Receives a message of exactly `HEADER_LEN + body_len` bytes that starts with a call header,
/// checks the header, and returns the body. Ends the session on any disagreement.
pub(crate) async fn recv_with_header<C: Channel>(
    ch: &mut C,
    proto: &str,
    kind: Kind,
    count: usize,
    body_len: usize,
) -> Result<Vec<u8>, OtError> {
    let mut buf = vec![0u8; HEADER_LEN + body_len];
    ch.recv_bytes_into(&mut buf, &format!("{proto} {} message", kind.name()))
        .await?;
    if let Err(reason) = check_header(proto, &buf, kind, count) {
        return Err(ch.abort(&reason).await.into());
    }
    buf.drain(..HEADER_LEN);
    Ok(buf)
}

/// Packs bits LSB-first into `ceil(n / 8)` bytes.
pub(crate) fn pack_bits(bits: impl ExactSizeIterator<Item = bool>) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.enumerate() {
        out[i / 8] |= (b as u8) << (i % 8);
    }
    out
}

/// Unpacks `n` bits from exactly `ceil(n / 8)` bytes; `None` if the length is wrong or a padding
/// bit is set.
pub(crate) fn unpack_bits(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    if bytes.len() != n.div_ceil(8) {
        return None;
    }
    if !n.is_multiple_of(8) && bytes[n / 8] >> (n % 8) != 0 {
        return None;
    }
    Some((0..n).map(|i| (bytes[i / 8] >> (i % 8)) & 1 == 1).collect())
}

/// Bytes needed for `n` values of `bits` bits each.
pub(crate) fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Packs the low `bits` bits of each value, LSB-first, into [`packed_len`] bytes.
pub(crate) fn pack_values(vals: &[u64], bits: u32) -> Vec<u8> {
    debug_assert!((1..=64).contains(&bits));
    let mut out = Vec::with_capacity(packed_len(vals.len(), bits));
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    for &v in vals {
        acc |= ((v & mask(bits)) as u128) << filled;
        filled += bits;
        while filled >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks `n` values of `bits` bits; `None` if the length is wrong or padding bits are set.
pub(crate) fn unpack_values(bytes: &[u8], n: usize, bits: u32) -> Option<Vec<u64>> {
    if bytes.len() != packed_len(n, bits) {
        return None;
    }
    let total = n * bits as usize;
    if !total.is_multiple_of(8) && bytes[total / 8] >> (total % 8) != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut acc: u128 = 0;
    let mut filled = 0u32;
    let mut it = bytes.iter();
    for _ in 0..n {
        while filled < bits {
            acc |= (*it.next()? as u128) << filled;
            filled += 8;
        }
        out.push(acc as u64 & mask(bits));
        acc >>= bits;
        filled -= bits;
    }
    Some(out)
}

/// The low `bits` bits set (`bits` in 1..=64).
pub(crate) fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_roundtrip_and_padding_checked() {
        for n in [0usize, 1, 7, 8, 9, 100] {
            let bits: Vec<bool> = (0..n).map(|i| (i * 7) % 3 == 0).collect();
            let p = pack_bits(bits.iter().copied());
            assert_eq!(p.len(), n.div_ceil(8));
            assert_eq!(unpack_bits(&p, n).unwrap(), bits);
        }
        assert!(unpack_bits(&[0x02], 1).is_none(), "padding bit set");
        assert!(unpack_bits(&[0, 0], 1).is_none(), "wrong length");
    }

    #[test]
    fn values_roundtrip() {
        for bits in [1u32, 5, 8, 17, 63, 64] {
            for n in [0usize, 1, 3, 9] {
                let vals: Vec<u64> = (0..n as u64)
                    .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask(bits))
                    .collect();
                let p = pack_values(&vals, bits);
                assert_eq!(p.len(), packed_len(n, bits));
                assert_eq!(
                    unpack_values(&p, n, bits).unwrap(),
                    vals,
                    "bits {bits} n {n}"
                );
            }
        }
        assert!(unpack_values(&[0x08], 1, 3).is_none(), "padding bit set");
    }

    #[test]
    fn header_check() {
        let h = header(Kind::Cot, 5);
        assert!(check_header("t", &h, Kind::Cot, 5).is_ok());
        let e = check_header("t", &h, Kind::Cot, 6).unwrap_err();
        assert!(e.contains("asked for 5") && e.contains("for 6"), "{e}");
        assert!(check_header("t", &h, Kind::Rot, 5).is_err());
        assert!(check_header("t", &[9, 0, 0, 0, 0, 0, 0, 0, 0], Kind::Rot, 0).is_err());
    }
}
