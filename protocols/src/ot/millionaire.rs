//! The millionaires' comparison on secret-shared values, and DReLU / `x < y` built on it.
//!
//! **Functionality** `F_MILL^ℓ`: the OT sender holds `x`, the OT receiver holds `y` (both
//! `ℓ`-bit unsigned); they obtain boolean shares `z_0 ⊕ z_1 = [x < y]`.
//!
//! **Protocol** (Rathee et al., "CrypTFlow2: Practical 2-Party Secure Inference", CCS'20,
//! section 4.1, with the AND-tree accounting of Huang et al., "Cheetah: Lean and Fast Secure
//! Two-Party Deep Neural Network Inference", USENIX Security'22, section 5):
//! 1. Split both inputs into `q = ⌈ℓ/m⌉` digits of `m` bits (default `m = 4`, least significant
//!    first; the top digit may be shorter).
//! 2. For each digit `j` one 1-out-of-`2^m` OT ([`crate::ot::one_of_n`]): the sender draws
//!    random bits `r_lt, r_eq` and offers, for every value `v` of the receiver's digit, the pair
//!    `([x_j < v] ⊕ r_lt, [x_j = v] ⊕ r_eq)`; the receiver chooses `v = y_j`. Both now hold
//!    shares of `lt_j = [x_j < y_j]` and `eq_j = [x_j = y_j]`. The lowest digit needs only
//!    `lt_0` (1-bit messages).
//! 3. Combine adjacent nodes `(lo, hi)` in a binary tree, `log2 q` levels:
//!    `lt = lt_hi ⊕ (eq_hi ∧ lt_lo)`, `eq = eq_hi ∧ eq_lo` (the XOR is exact: the two terms are
//!    never both 1). Each AND is a Beaver AND on boolean shares with a triple from a
//!    [`BitTripleSource`]. The two ANDs of one node share the operand `eq_hi`, so they use one
//!    *paired* triple `(a, b1, a∧b1, b2, a∧b2)` and open 3 bits per party instead of 4
//!    (Cheetah's optimization). Nodes that contain digit 0 need no `eq` and open 2 bits.
//!
//! **Cost** (`q` digits of `m` bits, messages counted in both directions, online, with random
//! OTs from preprocessing): OTs `q·m` random OTs; bits `q·m` (choice corrections) `+ 2^m·(2q−1)`
//! (tables; 2-bit except the lowest digit's 1-bit one) `+ 6·(q−1−d) + 4·d` (AND openings, `d =
//! ⌈log2 q⌉` nodes on the lowest chain); rounds: 2 flights for the OTs plus one simultaneous
//! exchange per tree level, `2 + ⌈log2 q⌉`. For DReLU on 64-bit shares (`ℓ = 63`, `m = 4`,
//! `q = 16`) that is 543 + 82 = 625 bits ≈ 78 bytes per element, plus an 8-byte count tag and a
//! 4-byte frame header per message per batch of [`CHUNK`] elements. Triples: `q − 1` paired bit
//! triples per comparison (preprocessing: from the dealer, `IdealBitTriples` in tests, or
//! [`RotBitTriples`] from two random OTs each).
//!
//! **DReLU / MSB** on `ℓ`-bit values (CrypTFlow2 section 4.2): with additive shares
//! `x = x_0 + x_1 mod 2^64` of a value in `[−2^(ℓ−1), 2^(ℓ−1))`, reduce the shares mod `2^ℓ`;
//! then `msb(x) = msb(x_0) ⊕ msb(x_1) ⊕ carry` where `carry = [x_0' + x_1' ≥ 2^(ℓ−1)]` for the
//! low `ℓ − 1` bits `x_i'`, i.e. `carry = [(2^(ℓ−1) − 1 − x_0') < x_1']`, one millionaires' on
//! `ℓ − 1` bits. `DReLU(x) = 1 ⊕ msb(x) = [x ≥ 0]`. `x < y` is `msb(x − y)`.
//!
//! **Domain and error.** Exact when the value (for `x < y`: the difference `x − y`) lies in
//! `[−2^(ℓ−1), 2^(ℓ−1))`; outside it the result is the sign of the value wrapped into `ℓ`
//! bits (dropping high bits is the caller's range promise, no probability involved). Dropping
//! the `k` lowest bits ([`DreluParams::drop_low`], comparing bits `k..ℓ−1` only) ignores the
//! carry out of the low `k` bits: the result is wrong only when `x mod 2^(ℓ−1) < 2^k` (i.e.
//! `x ∈ [0, 2^k)` or `x ∈ [−2^(ℓ−1), −2^(ℓ−1) + 2^k)`), and for such `x` with probability
//! `(2^k − 1 − (x mod 2^k)) / 2^k` over the random shares; a wrong result flips the sign bit
//! (a small non-negative `x < 2^k` reads as negative, so ReLU returns 0 instead of a value
//! `< 2^k`; a value within `2^k` of `−2^(ℓ−1)` reads as non-negative).
//! With `k = 0` (the default) the result is exact on the domain.

use std::future::Future;

use rand_core::CryptoRng;

use crate::channel::Channel;
#[cfg(any(test, feature = "insecure-ideal"))]
use crate::prg::{Prg, Seed};
use crate::share::Party;

use super::one_of_n::{
    BitReader, BitWriter, OneOfN, abort_local, mask, recv_mixed, recv_packed, send_mixed,
    send_packed,
};
use super::{OtError, RotReceiver, RotSender};

/// Comparisons per batch: one batch is one OT exchange plus one message per tree level.
pub const CHUNK: usize = 4096;

/// Paired boolean Beaver triples, one party's shares: `c1 = a ∧ b1` and `c2 = a ∧ b2` (on the
/// XOR of both parties' shares). A single AND uses `(a, b1, c1)`.
#[derive(Clone, Default)]
pub struct PairedBitTriples {
    /// Shares of the common operand `a`.
    pub a: Vec<bool>,
    /// Shares of `b1`.
    pub b1: Vec<bool>,
    /// Shares of `c1 = a ∧ b1`.
    pub c1: Vec<bool>,
    /// Shares of `b2`.
    pub b2: Vec<bool>,
    /// Shares of `c2 = a ∧ b2`.
    pub c2: Vec<bool>,
}

impl std::fmt::Debug for PairedBitTriples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairedBitTriples({} triples, ..)", self.a.len())
    }
}

impl PairedBitTriples {
    /// Number of paired triples.
    pub fn len(&self) -> usize {
        self.a.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    fn consistent(&self, n: usize) -> bool {
        [&self.a, &self.b1, &self.c1, &self.b2, &self.c2]
            .iter()
            .all(|v| v.len() == n)
    }
}

/// A source of paired boolean Beaver triples (correlated randomness for AND gates).
pub trait BitTripleSource: Send {
    /// Produces `n` paired triples (this party's shares); may talk over `ch`.
    fn paired_triples<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> impl Future<Output = Result<PairedBitTriples, OtError>> + Send;
}

/// A dealer's (trusted, in-process) bit-triple source: both parties expand one shared seed.
/// **Insecure by construction** (each side could compute the other's shares); for tests and
/// benches of the online phase, where it stands in for triples the dealer sends. Compiled only
/// for tests and with the `insecure-ideal` feature.
#[cfg(any(test, feature = "insecure-ideal"))]
#[derive(Debug)]
pub struct IdealBitTriples {
    party: Party,
    prg: Prg,
}

/// Both parties' ends of an ideal bit-triple source (insecure; tests and benches only).
#[cfg(any(test, feature = "insecure-ideal"))]
pub fn ideal_bit_triples(seed: Seed) -> (IdealBitTriples, IdealBitTriples) {
    let mk = |party| IdealBitTriples {
        party,
        prg: Prg::expand(&seed, b"ideal-bit-triples"),
    };
    (mk(Party::P0), mk(Party::P1))
}

#[cfg(any(test, feature = "insecure-ideal"))]
impl BitTripleSource for IdealBitTriples {
    async fn paired_triples<C: Channel>(
        &mut self,
        _ch: &mut C,
        n: usize,
    ) -> Result<PairedBitTriples, OtError> {
        let mut t = PairedBitTriples::default();
        let p1 = self.party == Party::P1;
        for _ in 0..n {
            let r = rand_core::Rng::next_u64(&mut self.prg);
            let bit = |i: u32| (r >> i) & 1 == 1;
            let (a0, a1, b10, b11, b20, b21, c10, c20) = (
                bit(0),
                bit(1),
                bit(2),
                bit(3),
                bit(4),
                bit(5),
                bit(6),
                bit(7),
            );
            let c1 = (a0 ^ a1) & (b10 ^ b11);
            let c2 = (a0 ^ a1) & (b20 ^ b21);
            let pick = |s0: bool, s1: bool| if p1 { s1 } else { s0 };
            t.a.push(pick(a0, a1));
            t.b1.push(pick(b10, b11));
            t.b2.push(pick(b20, b21));
            t.c1.push(pick(c10, c1 ^ c10));
            t.c2.push(pick(c20, c2 ^ c20));
        }
        Ok(t)
    }
}

/// Paired bit triples from random OTs, two per paired triple (one in each direction) and no
/// further messages: a random OT `(m0, m1)` / `(r, m_r)` is a product sharing
/// `r ∧ (m0 ⊕ m1) = m0 ⊕ m_r` (bitwise), so each cross term `a_i ∧ b_j` of
/// `(a_0 ⊕ a_1) ∧ (b_0 ⊕ b_1)` is one random OT with the receiver's choice as `a_i` and two bits
/// of the sender's `m0 ⊕ m1` as `b1_j, b2_j` (the OT messages must be uniform, which holds for
/// random OTs from extension with hashing and for dealer-supplied ones).
#[derive(Debug)]
pub struct RotBitTriples<S, R> {
    party: Party,
    sender: S,
    receiver: R,
}

impl<S: RotSender, R: RotReceiver> RotBitTriples<S, R> {
    /// A source for `party` using its random-OT sender and receiver (the peer's receiver and
    /// sender respectively).
    pub fn new(party: Party, sender: S, receiver: R) -> Self {
        RotBitTriples {
            party,
            sender,
            receiver,
        }
    }
}

impl<S: RotSender, R: RotReceiver> BitTripleSource for RotBitTriples<S, R> {
    async fn paired_triples<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<PairedBitTriples, OtError> {
        let (sent, (choice, got)) = if self.party == Party::P0 {
            let s = self.sender.send_rot(ch, n).await?;
            (s, self.receiver.recv_rot(ch, n).await?)
        } else {
            let r = self.receiver.recv_rot(ch, n).await?;
            (self.sender.send_rot(ch, n).await?, r)
        };
        if sent.len() != n || choice.len() != n || got.len() != n {
            return Err(abort_local(
                ch,
                "bit triples: random OT source returned too few OTs".into(),
            )
            .await);
        }
        let mut t = PairedBitTriples::default();
        for i in 0..n {
            let [m0, m1] = sent[i];
            let diff = (m0 ^ m1).0;
            let (b1, b2) = (diff & 1 == 1, diff & 2 == 2);
            let a = choice[i];
            // Shares of peer_a ∧ (b1, b2) (this side sent) and a ∧ peer_b (this side received).
            let s = m0.0 ^ got[i].0;
            t.a.push(a);
            t.b1.push(b1);
            t.b2.push(b2);
            t.c1.push((a & b1) ^ (s & 1 == 1));
            t.c2.push((a & b2) ^ (s & 2 == 2));
        }
        Ok(t)
    }
}

/// Paired bit triples made ahead of time ([`BufferedBitTriples::preprocess`]) from any source and
/// served from a buffer, so an online comparison spends no messages or flights on its AND
/// triples (with [`RotBitTriples`] over dealer ROTs, whose sender waits for the receiver's call
/// header, this removes about two one-way delays per comparison batch). A request larger than
/// the buffer tops it up from the source first; both parties do so at the same point, since they
/// issue the same requests. `Debug` prints only counts.
pub struct BufferedBitTriples<T> {
    inner: T,
    buf: PairedBitTriples,
}

impl<T> std::fmt::Debug for BufferedBitTriples<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BufferedBitTriples({} buffered, ..)", self.buf.len())
    }
}

impl<T: BitTripleSource> BufferedBitTriples<T> {
    /// An empty buffer over `inner`.
    pub fn new(inner: T) -> Self {
        BufferedBitTriples {
            inner,
            buf: PairedBitTriples::default(),
        }
    }

    /// Buffered triples.
    pub fn available(&self) -> usize {
        self.buf.len()
    }

    /// Makes `n` more triples now (preprocessing); the peer must call this with the same `n`.
    pub async fn preprocess<C: Channel>(&mut self, ch: &mut C, n: usize) -> Result<(), OtError> {
        let t = self.inner.paired_triples(ch, n).await?;
        if !t.consistent(n) {
            return Err(abort_local(
                ch,
                format!("bit triples: source returned a wrong count (wanted {n})"),
            )
            .await);
        }
        let PairedBitTriples { a, b1, c1, b2, c2 } = t;
        self.buf.a.extend(a);
        self.buf.b1.extend(b1);
        self.buf.c1.extend(c1);
        self.buf.b2.extend(b2);
        self.buf.c2.extend(c2);
        Ok(())
    }
}

impl<T: BitTripleSource> BitTripleSource for BufferedBitTriples<T> {
    async fn paired_triples<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<PairedBitTriples, OtError> {
        if self.buf.len() < n {
            let more = n - self.buf.len();
            self.preprocess(ch, more).await?;
        }
        let b = &mut self.buf;
        Ok(PairedBitTriples {
            a: b.a.drain(..n).collect(),
            b1: b.b1.drain(..n).collect(),
            c1: b.c1.drain(..n).collect(),
            b2: b.b2.drain(..n).collect(),
            c2: b.c2.drain(..n).collect(),
        })
    }
}

/// Which end of the random OTs this party holds in a comparison. The sender is the
/// millionaires' `x` side (and adds the public term in Beaver ANDs); the peer must hold the
/// other role.
#[derive(Debug)]
pub enum RotRole<'a, S, R> {
    /// OT sender.
    Sender(&'a mut S),
    /// OT receiver.
    Receiver(&'a mut R),
}

impl<S, R> RotRole<'_, S, R> {
    fn is_sender(&self) -> bool {
        matches!(self, RotRole::Sender(_))
    }
}

/// Shares of `x ∧ y1[i]` for all `i` and `x ∧ y2[i]` for `i < y2.len()` (Beaver ANDs with the
/// paired triples `t[off..]`), in one simultaneous exchange.
async fn and_paired<C: Channel>(
    ch: &mut C,
    adds_public: bool,
    t: &PairedBitTriples,
    off: usize,
    x: &[bool],
    y1: &[bool],
    y2: &[bool],
) -> Result<(Vec<bool>, Vec<bool>), OtError> {
    let n = x.len();
    let n2 = y2.len();
    let nbits = 2 * n + n2;
    let tag = ((n as u64) << 32) | n2 as u64;
    let mut w = BitWriter::with_capacity(nbits);
    for i in 0..n {
        w.push_bit(x[i] ^ t.a[off + i]);
        w.push_bit(y1[i] ^ t.b1[off + i]);
    }
    for (i, &y) in y2.iter().enumerate() {
        w.push_bit(y ^ t.b2[off + i]);
    }
    send_packed(ch, tag, w).await?;
    let mut r: BitReader = recv_packed(ch, tag, nbits, "millionaire AND").await?;
    let mut z1 = Vec::with_capacity(n);
    let mut es = Vec::with_capacity(n);
    for i in 0..n {
        let e = x[i] ^ t.a[off + i] ^ r.read_bit();
        let f = y1[i] ^ t.b1[off + i] ^ r.read_bit();
        z1.push(t.c1[off + i] ^ (e & t.b1[off + i]) ^ (f & t.a[off + i]) ^ (adds_public & e & f));
        es.push(e);
    }
    let mut z2 = Vec::with_capacity(n2);
    for i in 0..n2 {
        let e = es[i];
        let f = y2[i] ^ t.b2[off + i] ^ r.read_bit();
        z2.push(t.c2[off + i] ^ (e & t.b2[off + i]) ^ (f & t.a[off + i]) ^ (adds_public & e & f));
    }
    Ok((z1, z2))
}

/// Digit shapes of an `bits`-bit comparison with `m`-bit digits (lowest first).
fn digit_specs(bits: u32, m: u32) -> Vec<OneOfN> {
    let q = bits.div_ceil(m);
    (0..q)
        .map(|j| OneOfN {
            log_n: m.min(bits - j * m),
            width: if j == 0 { 1 } else { 2 },
        })
        .collect()
}

/// Number of combination nodes (= paired triples) of a `q`-leaf tree.
fn tree_nodes(q: usize) -> usize {
    q.saturating_sub(1)
}

/// One batch of comparisons.
async fn millionaire_batch<C, S, R, T, G>(
    ch: &mut C,
    role: &mut RotRole<'_, S, R>,
    triples: &mut T,
    rng: &mut G,
    inputs: &[u64],
    bits: u32,
    m: u32,
) -> Result<Vec<bool>, OtError>
where
    C: Channel,
    S: RotSender,
    R: RotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    let n = inputs.len();
    if n == 0 || bits == 0 {
        return Ok(vec![false; n]);
    }
    let digits = digit_specs(bits, m);
    let q = digits.len();
    let mut specs = Vec::with_capacity(n * q);
    for _ in 0..n {
        specs.extend_from_slice(&digits);
    }
    // Leaves: (lt, eq) shares per element and digit; eq unused for digit 0.
    let mut lt = vec![false; n * q];
    let mut eq = vec![false; n * q];
    match role {
        RotRole::Sender(ot) => {
            let entries: usize = specs.iter().map(|s| s.n()).sum();
            let mut tables = Vec::with_capacity(entries);
            let mut rbits = 0u64;
            let mut left = 0u32;
            for (e, &x) in inputs.iter().enumerate() {
                for (j, d) in digits.iter().enumerate() {
                    if left < 2 {
                        rbits = rng.next_u64();
                        left = 64;
                    }
                    let (rl, re) = (rbits & 1 == 1, rbits & 2 == 2);
                    rbits >>= 2;
                    left -= 2;
                    lt[e * q + j] = rl;
                    eq[e * q + j] = re;
                    let xj = (x >> (j as u32 * m)) & mask(d.log_n);
                    for v in 0..d.n() as u64 {
                        let l = ((xj < v) ^ rl) as u64;
                        let q2 = ((xj == v) ^ re) as u64;
                        tables.push(if j == 0 { l } else { l | (q2 << 1) });
                    }
                }
            }
            send_mixed(*ot, ch, &specs, &tables, "millionaire digit OT").await?;
        }
        RotRole::Receiver(ot) => {
            let mut choices = Vec::with_capacity(n * q);
            for &y in inputs {
                for (j, d) in digits.iter().enumerate() {
                    choices.push(((y >> (j as u32 * m)) & mask(d.log_n)) as u32);
                }
            }
            let got = recv_mixed(*ot, ch, &specs, &choices, "millionaire digit OT").await?;
            for (i, g) in got.iter().enumerate() {
                lt[i] = g & 1 == 1;
                eq[i] = g & 2 == 2;
            }
        }
    }

    let need = tree_nodes(q) * n;
    let t = triples.paired_triples(ch, need).await?;
    if !t.consistent(need) {
        return Err(abort_local(
            ch,
            format!("millionaire: triple source returned a wrong count (wanted {need})"),
        )
        .await);
    }
    let adds_public = role.is_sender();
    let mut off = 0usize;
    // Nodes per element: indices into lt/eq, stride q; node 0 contains digit 0.
    let mut width = q;
    while width > 1 {
        let pairs = width / 2;
        // Paired combos (lo is not node 0) first, then the single combo (lo is node 0).
        let mut x = Vec::with_capacity(n * pairs);
        let mut y1 = Vec::with_capacity(n * pairs);
        let mut y2 = Vec::with_capacity(n * (pairs - 1));
        for p in 1..pairs {
            for e in 0..n {
                let (lo, hi) = (e * q + 2 * p, e * q + 2 * p + 1);
                x.push(eq[hi]);
                y1.push(lt[lo]);
                y2.push(eq[lo]);
            }
        }
        for e in 0..n {
            x.push(eq[e * q + 1]);
            y1.push(lt[e * q]);
        }
        let (z1, z2) = and_paired(ch, adds_public, &t, off, &x, &y1, &y2).await?;
        off += x.len();
        // Compact: new node p of element e goes to slot e*q + p.
        for p in 0..pairs {
            for e in 0..n {
                let i = if p == 0 {
                    (pairs - 1) * n + e
                } else {
                    (p - 1) * n + e
                };
                let hi = e * q + 2 * p + 1;
                let new_lt = lt[hi] ^ z1[i];
                let new_eq = if p == 0 { false } else { z2[i] };
                lt[e * q + p] = new_lt;
                eq[e * q + p] = new_eq;
            }
        }
        if width % 2 == 1 {
            for e in 0..n {
                lt[e * q + pairs] = lt[e * q + width - 1];
                eq[e * q + pairs] = eq[e * q + width - 1];
            }
        }
        width = width.div_ceil(2);
    }
    Ok((0..n).map(|e| lt[e * q]).collect())
}

/// Boolean shares of `[x < y]` on the low `bits` bits, where the OT sender's `inputs` are the
/// `x`s and the receiver's are the `y`s (bits above `bits` are ignored). `digit_bits` is `m`
/// (1..=8; 4 is CrypTFlow2's and Cheetah's choice). The peer must call this with the other
/// role, the same `bits`, `digit_bits` and count.
#[allow(clippy::too_many_arguments)]
pub async fn millionaire<C, S, R, T, G>(
    ch: &mut C,
    mut role: RotRole<'_, S, R>,
    triples: &mut T,
    rng: &mut G,
    inputs: &[u64],
    bits: u32,
    digit_bits: u32,
) -> Result<Vec<bool>, OtError>
where
    C: Channel,
    S: RotSender,
    R: RotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    if bits > 64 || !(1..=8).contains(&digit_bits) {
        let r = format!(
            "millionaire: bits {bits} must be at most 64 and digit bits {digit_bits} in 1..=8"
        );
        return Err(abort_local(ch, r).await);
    }
    let mut out = Vec::with_capacity(inputs.len());
    for c in inputs.chunks(CHUNK) {
        out.extend(millionaire_batch(ch, &mut role, triples, rng, c, bits, digit_bits).await?);
    }
    Ok(out)
}

/// AGREEMENT parameters of DReLU / MSB / `x < y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DreluParams {
    /// `ℓ`, the bit width the value fits in (two's complement), in `2..=64`.
    pub bits: u32,
    /// `k`, low bits left out of the comparison (`k ≤ ℓ − 2`); see the module docs for the error.
    pub drop_low: u32,
    /// Digit size `m` of the millionaires' protocol, in `1..=8`.
    pub digit_bits: u32,
}

impl DreluParams {
    /// Exact comparison of `bits`-bit values with 4-bit digits.
    pub fn exact(bits: u32) -> Self {
        DreluParams {
            bits,
            drop_low: 0,
            digit_bits: 4,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(2..=64).contains(&self.bits) {
            return Err(format!("DReLU: bit width {} outside 2..=64", self.bits));
        }
        if self.drop_low + 2 > self.bits {
            return Err(format!(
                "DReLU: dropping {} low bits leaves nothing of a {}-bit value",
                self.drop_low, self.bits
            ));
        }
        Ok(())
    }
}

/// Boolean shares of the sign bit `msb(x)` (1 for negative) of additively shared values
/// (`shares` is this party's `x_i` in Z_2^64) that lie in `[−2^(ℓ−1), 2^(ℓ−1))`.
pub async fn msb<C, S, R, T, G>(
    ch: &mut C,
    role: RotRole<'_, S, R>,
    triples: &mut T,
    rng: &mut G,
    shares: &[u64],
    p: DreluParams,
) -> Result<Vec<bool>, OtError>
where
    C: Channel,
    S: RotSender,
    R: RotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    if let Err(r) = p.check() {
        return Err(abort_local(ch, r).await);
    }
    let l = p.bits;
    let k = p.drop_low;
    let cmp_bits = l - 1 - k;
    let sender = role.is_sender();
    let inputs: Vec<u64> = shares
        .iter()
        .map(|&x| {
            let mid = (x >> k) & mask(cmp_bits);
            if sender { mask(cmp_bits) - mid } else { mid }
        })
        .collect();
    let carry = millionaire(ch, role, triples, rng, &inputs, cmp_bits, p.digit_bits).await?;
    Ok(shares
        .iter()
        .zip(carry)
        .map(|(&x, c)| ((x >> (l - 1)) & 1 == 1) ^ c)
        .collect())
}

/// Boolean shares of `DReLU(x) = [x ≥ 0]` (see [`msb`]).
pub async fn drelu<C, S, R, T, G>(
    ch: &mut C,
    role: RotRole<'_, S, R>,
    triples: &mut T,
    rng: &mut G,
    shares: &[u64],
    p: DreluParams,
) -> Result<Vec<bool>, OtError>
where
    C: Channel,
    S: RotSender,
    R: RotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    let flip = role.is_sender();
    let m = msb(ch, role, triples, rng, shares, p).await?;
    Ok(m.into_iter().map(|b| b ^ flip).collect())
}

/// Boolean shares of `[x < y]` for additively shared `x` and `y` (this party's shares), computed
/// as `msb(x − y)`: exact when `x − y ∈ [−2^(ℓ−1), 2^(ℓ−1))`, e.g. when both lie in
/// `[−2^(ℓ−2), 2^(ℓ−2))`.
pub async fn less_than<C, S, R, T, G>(
    ch: &mut C,
    role: RotRole<'_, S, R>,
    triples: &mut T,
    rng: &mut G,
    x: &[u64],
    y: &[u64],
    p: DreluParams,
) -> Result<Vec<bool>, OtError>
where
    C: Channel,
    S: RotSender,
    R: RotReceiver,
    T: BitTripleSource,
    G: CryptoRng + Send + ?Sized,
{
    if x.len() != y.len() {
        let r = format!("x < y: {} x shares but {} y shares", x.len(), y.len());
        return Err(abort_local(ch, r).await);
    }
    let d: Vec<u64> = x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect();
    msb(ch, role, triples, rng, &d, p).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::apps_test_util::{Role, ends, share_all};
    use rand_core::Rng;

    async fn run_msb<T: BitTripleSource>(
        xs: &[u64],
        p: DreluParams,
        t0: &mut T,
        t1: &mut T,
        seed: u64,
    ) -> Vec<bool> {
        let mut prg = Prg::from_u64(seed);
        let (s0, s1) = share_all(xs, &mut prg);
        let mut e = ends(seed);
        let (mut g0, mut g1) = (Prg::from_u64(seed + 1), Prg::from_u64(seed + 2));
        let (a, b) = tokio::join!(
            msb(
                &mut e.ch0,
                Role::Sender(&mut e.rot_s01),
                t0,
                &mut g0,
                &s0,
                p
            ),
            msb(
                &mut e.ch1,
                Role::Receiver(&mut e.rot_r01),
                t1,
                &mut g1,
                &s1,
                p
            )
        );
        a.unwrap()
            .iter()
            .zip(b.unwrap())
            .map(|(x, y)| x ^ y)
            .collect()
    }

    fn boundary(l: u32) -> Vec<u64> {
        let half = 1u64 << (l - 1);
        let min = half.wrapping_neg();
        let max = half - 1;
        let mut v = vec![0, 1, u64::MAX, min, max, min + 1, max - 1, 2, u64::MAX - 1];
        if l < 64 {
            v.extend([
                half / 2,
                (half / 2).wrapping_neg(),
                17,
                17u64.wrapping_neg(),
            ]);
        }
        v.into_iter().map(|x| in_domain(x, l)).collect()
    }

    fn plain_msb(x: u64, l: u32) -> bool {
        (x >> (l - 1)) & 1 == 1
    }

    /// Sign-extends the low `l` bits (puts `x` into the domain).
    fn in_domain(x: u64, l: u32) -> u64 {
        ((x << (64 - l)) as i64 >> (64 - l)) as u64
    }

    #[tokio::test]
    async fn msb_equals_plaintext_ideal_triples() {
        for l in [2, 3, 8, 16, 37, 63, 64] {
            for m in [4, 3, 1] {
                let mut prg = Prg::from_u64(l as u64);
                let mut xs = boundary(l);
                xs.extend((0..200).map(|_| in_domain(prg.next_u64(), l)));
                let p = DreluParams {
                    bits: l,
                    drop_low: 0,
                    digit_bits: m,
                };
                let (mut t0, mut t1) = ideal_bit_triples([l as u8; 32]);
                let got = run_msb(&xs, p, &mut t0, &mut t1, 100 + l as u64).await;
                for (x, g) in xs.iter().zip(got) {
                    assert_eq!(g, plain_msb(*x, 64), "l={l} m={m} x={x:#x}");
                }
            }
        }
    }

    #[tokio::test]
    async fn msb_equals_plaintext_rot_triples() {
        let l = 37;
        let mut prg = Prg::from_u64(3);
        let mut xs = boundary(l);
        xs.extend((0..300).map(|_| in_domain(prg.next_u64(), l)));
        let (s01, r01) = crate::ot::ideal::ideal_rot([21; 32]);
        let (s10, r10) = crate::ot::ideal::ideal_rot([22; 32]);
        let mut t0 = RotBitTriples::new(Party::P0, s01, r10);
        let mut t1 = RotBitTriples::new(Party::P1, s10, r01);
        let got = run_msb(&xs, DreluParams::exact(l), &mut t0, &mut t1, 5).await;
        for (x, g) in xs.iter().zip(got) {
            assert_eq!(g, plain_msb(*x, 64), "x={x:#x}");
        }
    }

    #[tokio::test]
    async fn rot_bit_triples_are_triples() {
        let (s01, r01) = crate::ot::ideal::ideal_rot([1; 32]);
        let (s10, r10) = crate::ot::ideal::ideal_rot([2; 32]);
        let mut t0 = RotBitTriples::new(Party::P0, s01, r10);
        let mut t1 = RotBitTriples::new(Party::P1, s10, r01);
        let (mut a, mut b) = crate::channel::mem::pair();
        let (x, y) = tokio::join!(
            t0.paired_triples(&mut a, 500),
            t1.paired_triples(&mut b, 500)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let mut ones = 0;
        for i in 0..500 {
            let a = x.a[i] ^ y.a[i];
            assert_eq!(x.c1[i] ^ y.c1[i], a & (x.b1[i] ^ y.b1[i]));
            assert_eq!(x.c2[i] ^ y.c2[i], a & (x.b2[i] ^ y.b2[i]));
            ones += a as usize;
        }
        assert!((150..350).contains(&ones), "a is not balanced: {ones}");
    }

    #[tokio::test]
    async fn msb_beyond_chunk_and_empty() {
        for n in [0, 1, CHUNK - 1, CHUNK + 1] {
            let mut prg = Prg::from_u64(n as u64);
            let xs: Vec<u64> = (0..n).map(|_| in_domain(prg.next_u64(), 16)).collect();
            let (mut t0, mut t1) = ideal_bit_triples([9; 32]);
            let got = run_msb(&xs, DreluParams::exact(16), &mut t0, &mut t1, 11).await;
            assert_eq!(got.len(), n);
            for (x, g) in xs.iter().zip(got) {
                assert_eq!(g, plain_msb(*x, 64));
            }
        }
    }

    #[tokio::test]
    async fn dropping_low_bits_errs_only_near_zero() {
        let (l, k) = (20u32, 6u32);
        let mut prg = Prg::from_u64(8);
        let mut xs: Vec<u64> = (0..400).map(|_| in_domain(prg.next_u64(), l)).collect();
        xs.extend(boundary(l));
        xs.extend(0..70u64);
        let p = DreluParams {
            bits: l,
            drop_low: k,
            digit_bits: 4,
        };
        let (mut t0, mut t1) = ideal_bit_triples([4; 32]);
        let got = run_msb(&xs, p, &mut t0, &mut t1, 12).await;
        let mut wrong = 0;
        for (x, g) in xs.iter().zip(got) {
            if g != plain_msb(*x, 64) {
                wrong += 1;
                let low = x & mask(l - 1);
                assert!(
                    low < (1 << k),
                    "wrong far from the documented set: x={x:#x}"
                );
                assert_eq!(g, (*x as i64) >= 0, "an error flips the sign bit");
            }
        }
        assert!(wrong > 0, "the test should exercise the documented error");
    }

    #[tokio::test]
    async fn drelu_and_less_than_equal_plaintext() {
        for l in [8u32, 16, 37, 64] {
            let mut prg = Prg::from_u64(40 + l as u64);
            let mut xs = boundary(l);
            xs.extend((0..100).map(|_| in_domain(prg.next_u64(), l)));
            let (s0, s1) = share_all(&xs, &mut prg);
            let mut e = ends(l as u64);
            let (mut t0, mut t1) = ideal_bit_triples([3; 32]);
            let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
            let p = DreluParams::exact(l);
            let (a, b) = tokio::join!(
                drelu(
                    &mut e.ch0,
                    Role::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &s0,
                    p
                ),
                drelu(
                    &mut e.ch1,
                    Role::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &s1,
                    p
                )
            );
            for ((x, u), v) in xs.iter().zip(a.unwrap()).zip(b.unwrap()) {
                assert_eq!(u ^ v, (*x as i64) >= 0, "l={l} x={x:#x}");
            }
            // x < y with both in [-2^(l-2), 2^(l-2)).
            let ys: Vec<u64> = (0..xs.len())
                .map(|i| in_domain(prg.next_u64(), l - 1) ^ (i as u64 & 1))
                .collect();
            let mut xs2: Vec<u64> = xs.iter().map(|&x| in_domain(x, l - 1)).collect();
            let mut ys = ys;
            ys[0] = xs2[0]; // equal values
            // Edges of the domain [-2^(l-2), 2^(l-2)): min/max against each other, 0, ±1.
            let q = 1u64 << (l - 2);
            let (lo, hi) = (q.wrapping_neg(), q - 1);
            let edges = [
                (lo, hi),
                (hi, lo),
                (lo, lo),
                (hi, hi),
                (0, 0),
                (u64::MAX, 0),
                (0, u64::MAX),
                (1, 0),
                (0, 1),
                (lo, lo + 1),
                (hi - 1, hi),
            ];
            for (i, (a, b)) in edges.into_iter().enumerate() {
                xs2[i + 1] = a;
                ys[i + 1] = b;
            }
            let (x0, x1) = share_all(&xs2, &mut prg);
            let (y0, y1) = share_all(&ys, &mut prg);
            let (a, b) = tokio::join!(
                less_than(
                    &mut e.ch0,
                    Role::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &x0,
                    &y0,
                    p
                ),
                less_than(
                    &mut e.ch1,
                    Role::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &x1,
                    &y1,
                    p
                )
            );
            for (i, (u, v)) in a.unwrap().into_iter().zip(b.unwrap()).enumerate() {
                assert_eq!(u ^ v, (xs2[i] as i64) < (ys[i] as i64), "l={l} i={i}");
            }
        }
    }

    #[tokio::test]
    async fn millionaire_unsigned_equals_plaintext() {
        for bits in [1u32, 4, 5, 13, 64] {
            let mut prg = Prg::from_u64(bits as u64);
            let n = 150;
            let mut xs: Vec<u64> = (0..n).map(|_| prg.next_u64() & mask(bits)).collect();
            let mut ys: Vec<u64> = (0..n).map(|_| prg.next_u64() & mask(bits)).collect();
            xs[0] = ys[0];
            xs[1] = 0;
            ys[1] = mask(bits);
            xs[2] = mask(bits);
            ys[2] = 0;
            let mut e = ends(bits as u64);
            let (mut t0, mut t1) = ideal_bit_triples([7; 32]);
            let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
            let (a, b) = tokio::join!(
                millionaire(
                    &mut e.ch0,
                    Role::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &xs,
                    bits,
                    4
                ),
                millionaire(
                    &mut e.ch1,
                    Role::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &ys,
                    bits,
                    4
                )
            );
            for (i, (u, v)) in a.unwrap().into_iter().zip(b.unwrap()).enumerate() {
                assert_eq!(u ^ v, xs[i] < ys[i], "bits={bits} i={i}");
            }
        }
    }

    #[tokio::test]
    async fn bad_parameters_abort() {
        let mut e = ends(1);
        let (mut t0, _) = ideal_bit_triples([7; 32]);
        let mut g = Prg::from_u64(1);
        let r = msb(
            &mut e.ch0,
            Role::Sender(&mut e.rot_s01),
            &mut t0,
            &mut g,
            &[1],
            DreluParams::exact(1),
        )
        .await;
        assert!(r.unwrap_err().to_string().contains("bit width"));
    }

    #[tokio::test]
    async fn disagreeing_counts_abort() {
        let mut e = ends(2);
        let (mut t0, mut t1) = ideal_bit_triples([7; 32]);
        let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
        let p = DreluParams::exact(16);
        let (a, b) = tokio::join!(
            msb(
                &mut e.ch0,
                Role::Sender(&mut e.rot_s01),
                &mut t0,
                &mut g0,
                &[1, 2, 3],
                p
            ),
            msb(
                &mut e.ch1,
                Role::Receiver(&mut e.rot_r01),
                &mut t1,
                &mut g1,
                &[1, 2],
                p
            )
        );
        assert!(a.is_err() && b.is_err());
        let msg = format!("{} / {}", a.unwrap_err(), b.unwrap_err());
        assert!(msg.contains("disagrees"), "{msg}");
    }
}
