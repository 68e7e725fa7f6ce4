//! Truncation of shared fixed-point values: shares of `x >> f` from shares of `x`.
//!
//! **Functionality.** Given additive shares of `x` in Z_2^64 (read as a signed integer), output
//! shares of `floor(x / 2^f)` up to one unit in the last place. Fixed-point products carry `2f`
//! fractional bits and are truncated by `f` to return to the encoding (`docs/numeric.md (section Truncation)`).
//!
//! Two protocols:
//! - [`trunc`] (**default**, dealer-assisted probabilistic truncation in Z_2^k after Escudero,
//!   Ghosh, Keller, Rachuri and Scholl, "Improved primitives for MPC over mixed arithmetic-binary
//!   circuits", CRYPTO 2020). With a pair `(r, r_63, (r mod 2^63) >> f)` from the dealer, the
//!   parties open `c = x + 2^62 + r` and compute
//!   `(c mod 2^63) >> f - (r mod 2^63) >> f + 2^(63-f) (c_63 XOR r_63) - 2^(62-f)`.
//!   For `|x| < 2^62` the result is `floor(x / 2^f) + b` with `b` in {0, 1}, **never** a
//!   wrap-around; `b = 1` with probability `(x mod 2^f) / 2^f`, so the result is `x / 2^f`
//!   rounded stochastically (unbiased, error below one unit). Cost: one round, 8 bytes per element each way, 16 bytes per element from the
//!   dealer to P1.
//! - [`trunc_local`] (SecureML, Mohassel and Zhang, S&P 2017): each party shifts its own share.
//!   No communication, but it fails catastrophically (an error of about `2^(64-f)`) with
//!   probability about `|x| / 2^64` per element.
//!
//! Derivation of [`trunc`] (all values as integers): let `x' = x + 2^62`, in `[0, 2^63)` when
//! `|x| < 2^62`, and split `r = 2^63 r_63 + r_lo`, `c = 2^63 c_63 + c_lo`. Since `x' + r_lo <
//! 2^64`, `x' + r_lo = c_lo + 2^63 v` where `v` is the carry into bit 63, and bit 63 of `c` is
//! `v XOR r_63`, so `v = c_63 XOR r_63 = c_63 + r_63 - 2 c_63 r_63`, linear in the shares of
//! `r_63` since `c_63` is public. Then `x' = c_lo - r_lo + 2^63 v` exactly, and
//! `floor(x' / 2^f) = floor(c_lo / 2^f) - floor(r_lo / 2^f) - borrow + 2^(63-f) v` with
//! `borrow = [c_lo mod 2^f < r_lo mod 2^f]`; the protocol omits the borrow (it would need a
//! comparison), so it outputs `floor(x' / 2^f) + borrow`, and `borrow = 1` exactly when adding
//! the low `f` bits of `r` to those of `x'` carries, with probability `(x' mod 2^f) / 2^f`.
//! Finally `floor(x / 2^f) = floor(x' / 2^f) - 2^(62-f)`. The opened `c` is uniform (one-time
//! pad by `r`), independent of `x`.

use crate::beaver::{BeaverError, TripleProvider};
use crate::channel::Channel;
use crate::ring::RingTensor;
use crate::share::{AShare, Party};

const LOW63: u64 = (1u64 << 63) - 1;

/// Which truncation protocol to run (an AGREEMENT parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TruncMode {
    /// Dealer-assisted, exact up to one ulp for `|x| < 2^62` ([`trunc`]).
    #[default]
    DealerAssisted,
    /// Local share shifting; fails with probability about `|x| / 2^64` ([`trunc_local`]).
    Local,
}

/// Truncates with the chosen protocol.
pub async fn trunc_with<C: Channel, P: TripleProvider>(
    mode: TruncMode,
    ch: &mut C,
    prov: &mut P,
    x: &AShare,
    frac_bits: u32,
) -> Result<AShare, BeaverError> {
    match mode {
        TruncMode::DealerAssisted => trunc(ch, prov, x, frac_bits).await,
        TruncMode::Local => trunc_local(x, frac_bits),
    }
}

fn check_bits(frac_bits: u32) -> Result<(), BeaverError> {
    if !(1..=62).contains(&frac_bits) {
        return Err(BeaverError::InvalidRequest(format!(
            "truncation by {frac_bits} bits (must be 1..=62)"
        )));
    }
    Ok(())
}

/// Dealer-assisted truncation (see the module docs): shares of `floor(x / 2^f) + b`,
/// `b` in {0, 1} (stochastic rounding), for every `|x| < 2^62`.
pub async fn trunc<C: Channel, P: TripleProvider>(
    ch: &mut C,
    prov: &mut P,
    x: &AShare,
    frac_bits: u32,
) -> Result<AShare, BeaverError> {
    check_bits(frac_bits)?;
    let party = prov.party();
    if x.party() != party {
        return Err(BeaverError::WrongParty(format!(
            "the provider serves {party:?} but the share belongs to {:?}",
            x.party()
        )));
    }
    let f = frac_bits;
    let n = x.tensor().len();
    let pair = prov.trunc_pairs(n, f).await?;
    let offset = if party == Party::P0 { 1u64 << 62 } else { 0 };
    let masked: Vec<u64> = x
        .tensor()
        .data()
        .iter()
        .zip(pair.r.data())
        .map(|(&v, &r)| v.wrapping_add(r).wrapping_add(offset))
        .collect();
    ch.send_u64s(&masked).await?;
    let peer = ch.recv_u64s(n, "truncation opening").await?;
    let p0 = party == Party::P0;
    let high = 1u64 << (63 - f);
    let bias = 1u64 << (62 - f);
    let out: Vec<u64> = (0..n)
        .map(|i| {
            let c = masked[i].wrapping_add(peer[i]);
            let c63 = c >> 63;
            let t = pair.r_msb.data()[i];
            // Share of v = c63 XOR r63 = c63 + t (1 - 2 c63).
            let mut v = t.wrapping_mul(1u64.wrapping_sub(2 * c63));
            let mut z = pair.r_low_shifted.data()[i].wrapping_neg();
            if p0 {
                v = v.wrapping_add(c63);
                z = z.wrapping_add((c & LOW63) >> f).wrapping_sub(bias);
            }
            z.wrapping_add(v.wrapping_mul(high))
        })
        .collect();
    Ok(AShare::new(party, RingTensor::from_vec(x.shape(), out)?))
}

/// Local truncation (SecureML): each party shifts its share as a signed integer. No
/// communication; wrong by about `2^(64-f)` with probability about `|x| / 2^64` per element
/// (`docs/numeric.md (section Truncation)`), otherwise `floor(x / 2^f) - b`, `b` in {0, 1}.
pub fn trunc_local(x: &AShare, frac_bits: u32) -> Result<AShare, BeaverError> {
    check_bits(frac_bits)?;
    Ok(AShare::new(x.party(), x.tensor().shr_signed(frac_bits)))
}
