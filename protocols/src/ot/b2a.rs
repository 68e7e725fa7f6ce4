//! Boolean-to-arithmetic conversion (B2A), the bit multiplexer, and ReLU, from correlated OT.
//!
//! **Additive correlated OT** (the building block; Asharov, Lindell, Schneider, Zohner, "More
//! efficient oblivious transfer and extensions for faster secure computation", CCS'13, section
//! 5.4 "C-OT"): the sender inputs `d ∈ Z_2^w`, the receiver a bit `b`; the sender obtains a
//! random `s`, the receiver `s + b·d mod 2^w`. From a COT `(q, t = q ⊕ b·Δ)` and a hash `H`
//! (the tweakable circular correlation-robust hash of [`crate::hash`]): the sender sets
//! `s = H(q)`, sends `u = H(q) − H(q ⊕ Δ) + d mod 2^w`; the receiver outputs `H(t) + b·u`.
//! Cost: one COT and `w` bits sender → receiver. The tweak of `H` for each instance is
//! reserved from the COT correlation's [`TweakCounter`](super::TweakCounter) (domain
//! [`TweakDomain::AdditiveCot`]) on both ends, so it is never reused under the same `Δ`, across
//! calls, protocols or garbled-circuit sessions.
//!
//! **B2A of a bit** (CrypTFlow2, Rathee et al. CCS'20, section 3 / ABY, Demmler et al. NDSS'15):
//! with `b = b_0 ⊕ b_1 = b_0 + b_1 − 2·b_0·b_1`, one additive COT with P-sender input `d = b_0`
//! and receiver choice `b_1` shares `b_0·b_1`. Cost per bit: one COT, 64 bits, one flight.
//! **B2A of an `ℓ`-bit value** `x = ⨁`-shared: `x = Σ 2^i·b_i`; the product term of bit `i` is
//! needed only mod `2^(63−i)` (it is multiplied by `2^(i+1)`), so the message for bit `i` is
//! `63 − i` bits: `ℓ` COTs and `Σ_{i<ℓ} (63 − i)` bits per value.
//!
//! **Multiplexer** `F_MUX` (CrypTFlow2 section 3, "multiplexer"): arithmetic shares of `x` and
//! boolean shares of `b` give arithmetic shares of `b·x`. Since
//! `x_0·b = x_0·b_0 + b_1·x_0·(1 − 2b_0)`, P0 as sender inputs `d = x_0·(1 − 2b_0)` and P1 chooses
//! with `b_1`; symmetrically for `x_1·b`. Cost per element: two COTs (one each way) and 64 bits
//! each way, in one simultaneous flight.
//!
//! **ReLU** `= x · DReLU(x)` (CrypTFlow2 section 5): [`crate::ot::millionaire::drelu`] then
//! [`mux`].
//!
//! Security: semi-honest, in the `F_COT` hybrid model with `H` modelled as a TCCR hash (Guo et
//! al., S&P'20). The receiver's view of `u` is `H(q ⊕ Δ)`-masked, so it learns nothing of `d`
//! when `b = 0`, and `s` hides `d` from it when `b = 1`.

use rand_core::CryptoRng;

use crate::block::Block;
use crate::channel::Channel;
use crate::hash::{FIXED_KEY_AES, TweakDomain};
use crate::share::Party;

use super::millionaire::{BitTripleSource, DreluParams, RotRole, drelu};
use super::one_of_n::{BitWriter, abort_local, mask, recv_packed, send_packed};
use super::{CotReceiver, CotSender, OtError, RotReceiver, RotSender};

/// Correlated OTs per batch (a batch is one message each way).
pub const CHUNK: usize = 1 << 14;

/// Message width of each additive correlated OT in a call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Widths {
    /// All `w` bits.
    Const(u32),
    /// Instance `i` has `64 − (i mod 64)` bits (Gilboa: bit `j` of a 64-bit multiplier).
    Gilboa,
    /// Instance `i` has `63 − (i mod ℓ)` bits, clamped at 0 (B2A of `ℓ`-bit values).
    B2aValue(u32),
}

impl Widths {
    fn get(self, i: usize) -> u32 {
        match self {
            Widths::Const(w) => w,
            Widths::Gilboa => 64 - (i % 64) as u32,
            Widths::B2aValue(l) => 63u32.saturating_sub((i % l as usize) as u32),
        }
    }

    fn total(self, start: usize, n: usize) -> usize {
        (start..start + n).map(|i| self.get(i) as usize).sum()
    }
}

/// `H(x_i)` truncated to 64 bits, with tweak index `first + i` (reserved by the caller).
fn hash_u64(blocks: &[Block], first: u64) -> Vec<u64> {
    let tweaks: Vec<Block> = (0..blocks.len() as u64)
        .map(|i| TweakDomain::AdditiveCot.tweak(first + i))
        .collect();
    let mut out = vec![Block::ZERO; blocks.len()];
    FIXED_KEY_AES.tccr_many(&tweaks, blocks, &mut out);
    out.into_iter().map(|b| b.0 as u64).collect()
}

/// Sender half: COT outputs `q` for instances `start..start + d.len()` of the call, hashed with
/// tweak indices from `first`; returns `s` and the packed `u` message.
fn acot_sender_msg(
    q: &[Block],
    delta: Block,
    d: &[u64],
    widths: Widths,
    start: usize,
    first: u64,
) -> (Vec<u64>, BitWriter) {
    let h0 = hash_u64(q, first);
    let q1: Vec<Block> = q.iter().map(|x| *x ^ delta).collect();
    let h1 = hash_u64(&q1, first);
    let mut w = BitWriter::with_capacity(widths.total(start, d.len()));
    let mut s = Vec::with_capacity(d.len());
    for i in 0..d.len() {
        let wi = widths.get(start + i);
        let m = mask(wi);
        s.push(h0[i] & m);
        w.push(h0[i].wrapping_sub(h1[i]).wrapping_add(d[i]) & m, wi);
    }
    (s, w)
}

/// Receiver half: `H(t) + b·u` per instance, hashed with tweak indices from `first`.
fn acot_receiver_out(
    t: &[Block],
    b: &[bool],
    u: &mut super::one_of_n::BitReader,
    widths: Widths,
    start: usize,
    first: u64,
) -> Vec<u64> {
    let h = hash_u64(t, first);
    (0..t.len())
        .map(|i| {
            let wi = widths.get(start + i);
            let ui = u.read(wi);
            h[i].wrapping_add(ui & (b[i] as u64).wrapping_neg()) & mask(wi)
        })
        .collect()
}

async fn checked_cots<C: Channel, S: CotSender>(
    cot: &mut S,
    ch: &mut C,
    n: usize,
) -> Result<Vec<Block>, OtError> {
    let q = cot.send_cot(ch, n).await?;
    if q.len() != n {
        return Err(abort_local(ch, "correlated OT source returned a wrong count".into()).await);
    }
    Ok(q)
}

async fn checked_cotr<C: Channel, R: CotReceiver>(
    cot: &mut R,
    ch: &mut C,
    b: &[bool],
) -> Result<Vec<Block>, OtError> {
    let t = cot.recv_cot(ch, b).await?;
    if t.len() != b.len() {
        return Err(abort_local(ch, "correlated OT source returned a wrong count".into()).await);
    }
    Ok(t)
}

/// Additive correlated OT, sender only: returns `s` (the receiver gets `s + b·d`). Reserves one
/// tweak per instance from `cot`'s counter, after each batch's COTs (the receiver mirrors it).
pub(crate) async fn acot_send<C: Channel, S: CotSender>(
    cot: &mut S,
    ch: &mut C,
    d: &[u64],
    widths: Widths,
    ctx: &str,
) -> Result<Vec<u64>, OtError> {
    let mut s = Vec::with_capacity(d.len());
    let delta = cot.delta();
    let mut start = 0;
    // At least one batch, so a peer with a different (nonzero) count is told.
    loop {
        let dc = &d[start.min(d.len())..(start + CHUNK).min(d.len())];
        let q = checked_cots(cot, ch, dc.len()).await?;
        let first = cot.tweaks().reserve(dc.len() as u64);
        let (sc, w) = acot_sender_msg(&q, delta, dc, widths, start, first);
        send_packed(ch, dc.len() as u64, w).await?;
        s.extend(sc);
        start += CHUNK;
        if start >= d.len() {
            break;
        }
    }
    let _ = ctx;
    Ok(s)
}

/// Additive correlated OT, receiver only: returns `s + b·d`.
pub(crate) async fn acot_recv<C: Channel, R: CotReceiver>(
    cot: &mut R,
    ch: &mut C,
    b: &[bool],
    widths: Widths,
    ctx: &str,
) -> Result<Vec<u64>, OtError> {
    let mut out = Vec::with_capacity(b.len());
    let mut start = 0;
    loop {
        let bc = &b[start.min(b.len())..(start + CHUNK).min(b.len())];
        let t = checked_cotr(cot, ch, bc).await?;
        let first = cot.tweaks().reserve(bc.len() as u64);
        let mut u = recv_packed(ch, bc.len() as u64, widths.total(start, bc.len()), ctx).await?;
        out.extend(acot_receiver_out(&t, bc, &mut u, widths, start, first));
        start += CHUNK;
        if start >= b.len() {
            break;
        }
    }
    Ok(out)
}

/// Additive correlated OT in both directions at once: this party sends with inputs `d` and
/// receives with choices `b` (the peer does the mirror image). P0 runs its COT sender first,
/// P1 its receiver first, so the underlying COT protocols pair up. Returns `(s, w)`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn acot_both<C: Channel, S: CotSender, R: CotReceiver>(
    party: Party,
    ch: &mut C,
    cot_s: &mut S,
    cot_r: &mut R,
    d: &[u64],
    b: &[bool],
    widths: Widths,
    ctx: &str,
) -> Result<(Vec<u64>, Vec<u64>), OtError> {
    let n = d.len().max(b.len());
    let delta = cot_s.delta();
    let mut s = Vec::with_capacity(d.len());
    let mut out = Vec::with_capacity(b.len());
    let mut start = 0;
    // Always run at least one round so both sides exchange their counts (an empty side is a
    // zero-count message).
    loop {
        let dc = &d[start.min(d.len())..(start + CHUNK).min(d.len())];
        let bc = &b[start.min(b.len())..(start + CHUNK).min(b.len())];
        let (q, t) = if party == Party::P0 {
            let q = checked_cots(cot_s, ch, dc.len()).await?;
            (q, checked_cotr(cot_r, ch, bc).await?)
        } else {
            let t = checked_cotr(cot_r, ch, bc).await?;
            (checked_cots(cot_s, ch, dc.len()).await?, t)
        };
        let first_s = cot_s.tweaks().reserve(dc.len() as u64);
        let first_r = cot_r.tweaks().reserve(bc.len() as u64);
        let (sc, w) = acot_sender_msg(&q, delta, dc, widths, start, first_s);
        send_packed(ch, dc.len() as u64, w).await?;
        let mut u = recv_packed(ch, bc.len() as u64, widths.total(start, bc.len()), ctx).await?;
        out.extend(acot_receiver_out(&t, bc, &mut u, widths, start, first_r));
        s.extend(sc);
        start += CHUNK;
        if start >= n {
            break;
        }
    }
    Ok((s, out))
}

/// Which end of the correlated OTs this party holds in a one-directional protocol.
#[derive(Debug)]
pub enum CotRole<'a, S, R> {
    /// COT sender (P0 of the conversion).
    Sender(&'a mut S),
    /// COT receiver.
    Receiver(&'a mut R),
}

/// Arithmetic shares in Z_2^64 of the bits whose boolean shares are `bits`: returns this
/// party's `y_i` with `y_0 + y_1 = b_0 ⊕ b_1`. One COT and 64 bits per bit; the peer holds the
/// other role and the same count.
pub async fn b2a_bits<C: Channel, S: CotSender, R: CotReceiver>(
    ch: &mut C,
    role: CotRole<'_, S, R>,
    bits: &[bool],
) -> Result<Vec<u64>, OtError> {
    match role {
        CotRole::Sender(cot) => {
            let d: Vec<u64> = bits.iter().map(|&b| b as u64).collect();
            let s = acot_send(cot, ch, &d, Widths::Const(64), "B2A").await?;
            // b0 - 2·(-s)
            Ok(bits
                .iter()
                .zip(s)
                .map(|(&b, s)| (b as u64).wrapping_add(s << 1))
                .collect())
        }
        CotRole::Receiver(cot) => {
            let w = acot_recv(cot, ch, bits, Widths::Const(64), "B2A").await?;
            Ok(bits
                .iter()
                .zip(w)
                .map(|(&b, w)| (b as u64).wrapping_sub(w << 1))
                .collect())
        }
    }
}

/// Arithmetic shares in Z_2^64 of `ℓ`-bit values given as boolean (XOR) shares: `values[i]` is
/// this party's share of value `i` (bits above `bits` are ignored); the result shares the value
/// zero-extended to 64 bits. `ℓ` COTs and `Σ_{i<ℓ}(63 − i)` message bits per value.
pub async fn b2a_values<C: Channel, S: CotSender, R: CotReceiver>(
    ch: &mut C,
    role: CotRole<'_, S, R>,
    values: &[u64],
    bits: u32,
) -> Result<Vec<u64>, OtError> {
    if !(1..=64).contains(&bits) {
        return Err(abort_local(ch, format!("B2A: bit width {bits} outside 1..=64")).await);
    }
    let l = bits as usize;
    let flat: Vec<bool> = values
        .iter()
        .flat_map(|&v| (0..l).map(move |i| (v >> i) & 1 == 1))
        .collect();
    let widths = Widths::B2aValue(bits);
    let (prod, sign): (Vec<u64>, u64) = match role {
        CotRole::Sender(cot) => {
            let d: Vec<u64> = flat.iter().map(|&b| b as u64).collect();
            (acot_send(cot, ch, &d, widths, "B2A value").await?, 1)
        }
        CotRole::Receiver(cot) => (
            acot_recv(cot, ch, &flat, widths, "B2A value").await?,
            u64::MAX,
        ),
    };
    // Sender's share of b0·b1 is -s, receiver's is w: share of bit i is b_i - 2·(±prod).
    Ok(values
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            let mut acc = 0u64;
            for i in 0..l {
                let b = (v >> i) & 1;
                let p = prod[e * l + i].wrapping_mul(sign); // s (sender) or -w (receiver)
                acc = acc.wrapping_add(b.wrapping_add(p.wrapping_shl(1)).wrapping_shl(i as u32));
            }
            acc
        })
        .collect())
}

/// The multiplexer: arithmetic shares of `b_i · x_i` from this party's arithmetic shares `x`
/// and boolean shares `b`. Needs COTs in both directions (`cot_s` pairs with the peer's
/// receiver); two COTs and 128 bits per element, one simultaneous flight.
pub async fn mux<C: Channel, S: CotSender, R: CotReceiver>(
    party: Party,
    ch: &mut C,
    cot_s: &mut S,
    cot_r: &mut R,
    x: &[u64],
    b: &[bool],
) -> Result<Vec<u64>, OtError> {
    if x.len() != b.len() {
        let r = format!("mux: {} values but {} selection bits", x.len(), b.len());
        return Err(abort_local(ch, r).await);
    }
    let d: Vec<u64> = x
        .iter()
        .zip(b)
        .map(|(&x, &b)| if b { x.wrapping_neg() } else { x })
        .collect();
    let (s, w) = acot_both(party, ch, cot_s, cot_r, &d, b, Widths::Const(64), "mux").await?;
    Ok((0..x.len())
        .map(|i| {
            let own = x[i] & (b[i] as u64).wrapping_neg();
            own.wrapping_sub(s[i]).wrapping_add(w[i])
        })
        .collect())
}

/// ReLU on additively shared `ℓ`-bit values: `x · [x ≥ 0]` via [`drelu`] and [`mux`]. The
/// random-OT role and `party` must be complementary to the peer's.
#[allow(clippy::too_many_arguments)]
pub async fn relu<C, RS, RR, CS, CR, T, G>(
    party: Party,
    ch: &mut C,
    rot: RotRole<'_, RS, RR>,
    cot_s: &mut CS,
    cot_r: &mut CR,
    triples: &mut T,
    rng: &mut G,
    x: &[u64],
    p: DreluParams,
) -> Result<Vec<u64>, OtError>
where
    C: Channel,
    RS: RotSender,
    RR: RotReceiver,
    CS: CotSender,
    CR: CotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    let d = drelu(ch, rot, triples, rng, x, p).await?;
    mux(party, ch, cot_s, cot_r, x, &d).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::apps_test_util::{Role, ends, share_all, share_bits};
    use crate::ot::ideal::{IdealCotReceiver, IdealCotSender};
    use crate::ot::millionaire::ideal_bit_triples;
    use crate::prg::Prg;
    use rand_core::Rng;

    type CRole<'a> = CotRole<'a, IdealCotSender, IdealCotReceiver>;

    /// The additive-COT hash uses the tweaks reserved for it (`(AdditiveCot, f + i)`), and a
    /// call reserves exactly one tweak per instance on both ends.
    #[tokio::test]
    async fn acot_uses_the_reserved_tweaks() {
        let mut prg = Prg::from_u64(77);
        let xs: Vec<Block> = (0..70).map(|_| Block::random(&mut prg)).collect();
        let h = hash_u64(&xs, 900);
        for i in 0..xs.len() {
            let t = TweakDomain::AdditiveCot.tweak(900 + i as u64);
            assert_eq!(h[i], FIXED_KEY_AES.tccr(t, xs[i]).0 as u64, "hash {i}");
        }
        let mut e = ends(5);
        let bits = vec![true; CHUNK + 3];
        let (x, y) = tokio::join!(
            b2a_bits(&mut e.ch0, CRole::Sender(&mut e.cot_s01), &bits),
            b2a_bits(&mut e.ch1, CRole::Receiver(&mut e.cot_r01), &bits)
        );
        x.unwrap();
        y.unwrap();
        let n = bits.len() as u64;
        assert_eq!(
            (e.cot_s01.tweaks().used(), e.cot_r01.tweaks().used()),
            (n, n)
        );
    }

    #[tokio::test]
    async fn b2a_bits_equal_plaintext() {
        for n in [0usize, 1, 5, CHUNK - 1, CHUNK, CHUNK + 1] {
            let mut prg = Prg::from_u64(n as u64);
            let bits: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
            let (b0, b1) = share_bits(&bits, &mut prg);
            let mut e = ends(n as u64);
            let (y0, y1) = tokio::join!(
                b2a_bits(&mut e.ch0, CRole::Sender(&mut e.cot_s01), &b0),
                b2a_bits(&mut e.ch1, CRole::Receiver(&mut e.cot_r01), &b1)
            );
            let (y0, y1) = (y0.unwrap(), y1.unwrap());
            assert_eq!(y0.len(), n);
            for i in 0..n {
                assert_eq!(y0[i].wrapping_add(y1[i]), bits[i] as u64, "n={n} i={i}");
            }
        }
    }

    #[tokio::test]
    async fn b2a_values_equal_plaintext() {
        for l in [1u32, 8, 16, 37, 63, 64] {
            let mut prg = Prg::from_u64(l as u64);
            let mut xs: Vec<u64> = (0..50).map(|_| prg.next_u64() & mask(l)).collect();
            xs.extend([0, mask(l), 1 & mask(l)]);
            let s0: Vec<u64> = xs.iter().map(|_| prg.next_u64()).collect();
            let s1: Vec<u64> = xs.iter().zip(&s0).map(|(x, r)| x ^ r).collect();
            let mut e = ends(l as u64);
            let (y0, y1) = tokio::join!(
                b2a_values(&mut e.ch0, CRole::Sender(&mut e.cot_s01), &s0, l),
                b2a_values(&mut e.ch1, CRole::Receiver(&mut e.cot_r01), &s1, l)
            );
            for ((x, a), b) in xs.iter().zip(y0.unwrap()).zip(y1.unwrap()) {
                assert_eq!(a.wrapping_add(b), *x, "l={l}");
            }
        }
    }

    #[tokio::test]
    async fn mux_equals_plaintext() {
        for n in [0usize, 1, 7, CHUNK + 1] {
            let mut prg = Prg::from_u64(100 + n as u64);
            let mut xs: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
            let bits: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
            if n > 1 {
                xs[0] = u64::MAX;
                xs[1] = 1 << 63;
            }
            let (x0, x1) = share_all(&xs, &mut prg);
            let (b0, b1) = share_bits(&bits, &mut prg);
            let mut e = ends(n as u64);
            let (y0, y1) = tokio::join!(
                mux(
                    Party::P0,
                    &mut e.ch0,
                    &mut e.cot_s01,
                    &mut e.cot_r10,
                    &x0,
                    &b0
                ),
                mux(
                    Party::P1,
                    &mut e.ch1,
                    &mut e.cot_s10,
                    &mut e.cot_r01,
                    &x1,
                    &b1
                )
            );
            let (y0, y1) = (y0.unwrap(), y1.unwrap());
            for i in 0..n {
                let want = if bits[i] { xs[i] } else { 0 };
                assert_eq!(y0[i].wrapping_add(y1[i]), want, "n={n} i={i}");
            }
        }
    }

    #[tokio::test]
    async fn relu_equals_plaintext() {
        for l in [8u32, 16, 37, 64] {
            let mut prg = Prg::from_u64(l as u64);
            let half = 1u64 << (l - 1);
            let sext = |x: u64| ((x << (64 - l)) as i64 >> (64 - l)) as u64;
            let mut xs: Vec<u64> = vec![0, 1, u64::MAX, half.wrapping_neg(), half - 1];
            xs.extend((0..200).map(|_| sext(prg.next_u64())));
            let (x0, x1) = share_all(&xs, &mut prg);
            let mut e = ends(l as u64);
            let (mut t0, mut t1) = ideal_bit_triples([l as u8; 32]);
            let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
            let p = DreluParams::exact(l);
            let (y0, y1) = tokio::join!(
                relu(
                    Party::P0,
                    &mut e.ch0,
                    Role::Sender(&mut e.rot_s01),
                    &mut e.cot_s01,
                    &mut e.cot_r10,
                    &mut t0,
                    &mut g0,
                    &x0,
                    p
                ),
                relu(
                    Party::P1,
                    &mut e.ch1,
                    Role::Receiver(&mut e.rot_r01),
                    &mut e.cot_s10,
                    &mut e.cot_r01,
                    &mut t1,
                    &mut g1,
                    &x1,
                    p
                )
            );
            for ((x, a), b) in xs.iter().zip(y0.unwrap()).zip(y1.unwrap()) {
                let want = if (*x as i64) >= 0 { *x } else { 0 };
                assert_eq!(a.wrapping_add(b), want, "l={l} x={x:#x}");
            }
        }
    }

    #[tokio::test]
    async fn mux_count_mismatch_aborts() {
        let mut e = ends(3);
        let (a, b) = tokio::join!(
            mux(
                Party::P0,
                &mut e.ch0,
                &mut e.cot_s01,
                &mut e.cot_r10,
                &[1, 2, 3],
                &[true, false, true]
            ),
            mux(
                Party::P1,
                &mut e.ch1,
                &mut e.cot_s10,
                &mut e.cot_r01,
                &[1, 2],
                &[true, false]
            )
        );
        let msg = format!("{} / {}", a.unwrap_err(), b.unwrap_err());
        assert!(msg.contains("disagrees"), "{msg}");
    }
}
