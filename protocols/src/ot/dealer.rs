//! Dealer-supplied random OTs and correlated OTs, compressed by seeds.
//!
//! **Functionality.** The same as [`super::RotSender`]/[`super::RotReceiver`] (random OT) and
//! [`super::CotSender`]/[`super::CotReceiver`] (correlated OT with global `Δ`), produced by a
//! trusted third party (the *dealer*, the "trusted initializer" of Beaver, "Commodity-Based
//! Cryptography", STOC 1997) instead of by OT extension. Security holds if the dealer does not
//! collude with either party; the parties' protocols on top are unchanged.
//!
//! **Compression.** Each party's part of a batch is expanded from a 32-byte PRG seed that the
//! dealer draws; only what cannot come from a seed is sent explicitly:
//!
//! | batch of `n`      | sender part               | receiver part                     |
//! |-------------------|---------------------------|-----------------------------------|
//! | random OT         | seed → `(m0_i, m1_i)`     | seed → `c_i`; explicit `m_{c_i}` (16 B each) |
//! | correlated OT     | seed → `q_i`; `Δ`         | seed → `c_i`; explicit `t_i = q_i ⊕ c_i·Δ` (16 B each) |
//!
//! So the dealer sends `32 + 8` bytes to the sender and `32 + 16 n` bytes to the receiver per
//! batch. (The receiver's output depends on both parties' randomness, so it cannot come from a
//! seed of its own.)
//!
//! **Online use.** Random OTs need no interaction. COTs with chosen bits `b_i` are derandomized
//! with one bit each: the receiver sends `d_i = b_i ⊕ c_i`, the sender outputs
//! `q_i ⊕ d_i·Δ`. Each call starts with the receiver's 9-byte call header (kind and count) that
//! the sender checks, so parties that disagree on a count stop with an error instead of using
//! misaligned correlations; for random OT this header is the only message (the sender waits
//! for it, which costs no latency in protocols where the receiver speaks first).
//!
//! The dealer-side functions are [`deal_rot`] and [`deal_cot`] (pure, seeded by the caller's
//! RNG). The dealer's process and its network protocol live elsewhere; the party-side
//! consumers are [`DealerRotSender`], [`DealerRotReceiver`], [`DealerCotSender`] and
//! [`DealerCotReceiver`], fed with [`DealerRotSender::add`] and friends.

use std::collections::VecDeque;

use rand_core::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::channel::Channel;
use crate::prg::{Prg, Seed};

use super::wire::{self, HEADER_LEN, Kind};
use super::{CotReceiver, CotSender, OtError, RotReceiver, RotSender, TweakCounter};

const ROT_SENDER: &[u8] = b"privlm dealer rot sender v1";
const COT_SENDER: &[u8] = b"privlm dealer cot sender v1";
const CHOICES: &[u8] = b"privlm dealer ot choices v1";

fn fresh_seed<R: CryptoRng + ?Sized>(rng: &mut R) -> Seed {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// A stream of random bits from a PRG, 64 per word, consistent however it is split.
struct BitStream {
    prg: Prg,
    word: u64,
    left: u32,
}

impl BitStream {
    fn new(seed: &Seed) -> Self {
        BitStream {
            prg: Prg::expand(seed, CHOICES),
            word: 0,
            left: 0,
        }
    }

    fn next_bit(&mut self) -> bool {
        if self.left == 0 {
            self.word = self.prg.next_u64();
            self.left = 64;
        }
        let b = self.word & 1 == 1;
        self.word >>= 1;
        self.left -= 1;
        b
    }
}

/// The sender's part of a dealt batch of random OTs.
#[derive(Clone, Serialize, Deserialize)]
pub struct RotSenderPart {
    /// Seed of the message pairs.
    pub seed: Seed,
    /// Number of OTs in the batch.
    pub count: u64,
}

/// The receiver's part of a dealt batch of random OTs.
#[derive(Clone, Serialize, Deserialize)]
pub struct RotReceiverPart {
    /// Seed of the choice bits.
    pub seed: Seed,
    /// The chosen messages `m_{c_i}`, one per OT.
    pub chosen: Vec<Block>,
}

/// The sender's part of a dealt batch of correlated OTs.
#[derive(Clone, Serialize, Deserialize)]
pub struct CotSenderPart {
    /// Seed of the `q_i`.
    pub seed: Seed,
    /// The global correlation (lsb 1).
    pub delta: Block,
    /// Number of OTs in the batch.
    pub count: u64,
}

/// The receiver's part of a dealt batch of correlated OTs.
#[derive(Clone, Serialize, Deserialize)]
pub struct CotReceiverPart {
    /// Seed of the random choice bits `c_i`.
    pub seed: Seed,
    /// `t_i = q_i ⊕ c_i·Δ`, one per OT.
    pub t: Vec<Block>,
}

macro_rules! redacted_debug {
    ($t:ty, $len:expr) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                #[allow(clippy::redundant_closure_call)]
                let n: usize = ($len)(self);
                write!(f, "{}(count: {n}, ..)", stringify!($t))
            }
        }
    };
}
redacted_debug!(RotSenderPart, |p: &RotSenderPart| p.count as usize);
redacted_debug!(RotReceiverPart, |p: &RotReceiverPart| p.chosen.len());
redacted_debug!(CotSenderPart, |p: &CotSenderPart| p.count as usize);
redacted_debug!(CotReceiverPart, |p: &CotReceiverPart| p.t.len());

/// The dealer's side: a batch of `count` random OTs, as the sender's and the receiver's parts.
pub fn deal_rot<R: CryptoRng + ?Sized>(
    rng: &mut R,
    count: usize,
) -> (RotSenderPart, RotReceiverPart) {
    let s = RotSenderPart {
        seed: fresh_seed(rng),
        count: count as u64,
    };
    let r_seed = fresh_seed(rng);
    let mut msgs = Prg::expand(&s.seed, ROT_SENDER);
    let mut bits = BitStream::new(&r_seed);
    let chosen = (0..count)
        .map(|_| {
            let m0 = Block::random(&mut msgs);
            let m1 = Block::random(&mut msgs);
            if bits.next_bit() { m1 } else { m0 }
        })
        .collect();
    (
        s,
        RotReceiverPart {
            seed: r_seed,
            chosen,
        },
    )
}

/// The dealer's side: a batch of `count` correlated OTs with global correlation `delta` (its
/// lsb is forced to 1), as the sender's and the receiver's parts.
pub fn deal_cot<R: CryptoRng + ?Sized>(
    rng: &mut R,
    delta: Block,
    count: usize,
) -> (CotSenderPart, CotReceiverPart) {
    let delta = Block(delta.0 | 1);
    let s = CotSenderPart {
        seed: fresh_seed(rng),
        delta,
        count: count as u64,
    };
    let r_seed = fresh_seed(rng);
    let mut qs = Prg::expand(&s.seed, COT_SENDER);
    let mut bits = BitStream::new(&r_seed);
    let t = (0..count)
        .map(|_| Block::random(&mut qs) ^ delta.select(bits.next_bit()))
        .collect();
    (s, CotReceiverPart { seed: r_seed, t })
}

/// Errors when feeding dealer-supplied OT material to a party. (Not to be confused with
/// [`crate::beaver::dealer::DealerError`], the errors of the triple dealer's process.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DealtOtError {
    /// A COT batch for a different `Δ` than this sender's.
    #[error("dealer COT batch has a different delta than this sender's")]
    DeltaMismatch,
    /// A batch announces more OTs than the limit.
    #[error("dealer batch of {0} OTs exceeds the limit of {MAX_BATCH}")]
    TooLarge(u64),
}

/// Largest batch a consumer accepts (bounds the memory of one batch).
pub const MAX_BATCH: u64 = 1 << 32;

struct SeedBatch {
    prg: Prg,
    left: usize,
}

struct ExplicitBatch {
    bits: BitStream,
    items: std::vec::IntoIter<Block>,
}

async fn exhausted<C: Channel>(ch: &mut C, what: &str, want: usize, have: usize) -> OtError {
    ch.abort(&format!(
        "dealer-supplied {what} exhausted: asked for {want}, {have} left; request more from the dealer"
    ))
    .await
    .into()
}

async fn check_call<C: Channel>(
    ch: &mut C,
    kind: Kind,
    n: usize,
    body: usize,
) -> Result<Vec<u8>, OtError> {
    wire::recv_with_header(ch, "dealer OT", kind, n, body).await
}

/// Party-side sender of dealer-supplied random OTs.
#[derive(Default)]
pub struct DealerRotSender {
    batches: VecDeque<SeedBatch>,
    available: usize,
}

/// Party-side receiver of dealer-supplied random OTs.
#[derive(Default)]
pub struct DealerRotReceiver {
    batches: VecDeque<ExplicitBatch>,
    available: usize,
}

/// Party-side sender of dealer-supplied correlated OTs. Holds the [`TweakCounter`] of its `Δ`:
/// use one sender per `Δ` for the whole session (two senders fed with the same `Δ` would
/// each count tweaks from 0).
pub struct DealerCotSender {
    delta: Block,
    batches: VecDeque<SeedBatch>,
    available: usize,
    tweaks: TweakCounter,
}

/// Party-side receiver of dealer-supplied correlated OTs (holds the mirror [`TweakCounter`]).
#[derive(Default)]
pub struct DealerCotReceiver {
    batches: VecDeque<ExplicitBatch>,
    available: usize,
    tweaks: TweakCounter,
}

macro_rules! consumer_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("available", &self.available)
                    .finish_non_exhaustive()
            }
        }
    )*};
}
consumer_debug!(
    DealerRotSender,
    DealerRotReceiver,
    DealerCotSender,
    DealerCotReceiver
);

impl DealerRotSender {
    /// An empty sender; feed it with [`DealerRotSender::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch from the dealer.
    pub fn add(&mut self, part: RotSenderPart) -> Result<(), DealtOtError> {
        if part.count > MAX_BATCH {
            return Err(DealtOtError::TooLarge(part.count));
        }
        self.available += part.count as usize;
        self.batches.push_back(SeedBatch {
            prg: Prg::expand(&part.seed, ROT_SENDER),
            left: part.count as usize,
        });
        Ok(())
    }

    /// OTs left.
    pub fn available(&self) -> usize {
        self.available
    }
}

fn take_seeded(
    batches: &mut VecDeque<SeedBatch>,
    available: &mut usize,
    n: usize,
    mut f: impl FnMut(&mut Prg),
) {
    *available -= n;
    let mut rem = n;
    while rem > 0 {
        let b = batches.front_mut().expect("availability checked");
        let k = b.left.min(rem);
        for _ in 0..k {
            f(&mut b.prg);
        }
        b.left -= k;
        rem -= k;
        if b.left == 0 {
            batches.pop_front();
        }
    }
}

fn take_explicit(
    batches: &mut VecDeque<ExplicitBatch>,
    available: &mut usize,
    n: usize,
    bits: &mut Vec<bool>,
    items: &mut Vec<Block>,
) {
    *available -= n;
    let mut rem = n;
    while rem > 0 {
        let b = batches.front_mut().expect("availability checked");
        let k = b.items.len().min(rem);
        for _ in 0..k {
            bits.push(b.bits.next_bit());
        }
        items.extend(b.items.by_ref().take(k));
        rem -= k;
        if b.items.len() == 0 {
            batches.pop_front();
        }
    }
}

impl RotSender for DealerRotSender {
    async fn send_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<Vec<[Block; 2]>, OtError> {
        check_call(ch, Kind::Rot, count, 0).await?;
        if self.available < count {
            return Err(exhausted(ch, "random OTs", count, self.available).await);
        }
        let mut out = Vec::with_capacity(count);
        take_seeded(&mut self.batches, &mut self.available, count, |prg| {
            out.push([Block::random(prg), Block::random(prg)]);
        });
        Ok(out)
    }
}

impl DealerRotReceiver {
    /// An empty receiver; feed it with [`DealerRotReceiver::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch from the dealer.
    pub fn add(&mut self, part: RotReceiverPart) {
        self.available += part.chosen.len();
        self.batches.push_back(ExplicitBatch {
            bits: BitStream::new(&part.seed),
            items: part.chosen.into_iter(),
        });
    }

    /// OTs left.
    pub fn available(&self) -> usize {
        self.available
    }
}

impl RotReceiver for DealerRotReceiver {
    async fn recv_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        if self.available < count {
            return Err(exhausted(ch, "random OTs", count, self.available).await);
        }
        ch.send_bytes(&wire::header(Kind::Rot, count)).await?;
        let mut bits = Vec::with_capacity(count);
        let mut msgs = Vec::with_capacity(count);
        take_explicit(
            &mut self.batches,
            &mut self.available,
            count,
            &mut bits,
            &mut msgs,
        );
        Ok((bits, msgs))
    }
}

impl DealerCotSender {
    /// An empty sender with global correlation `delta` (lsb forced to 1); every batch added
    /// must carry the same `Δ`.
    pub fn new(delta: Block) -> Self {
        DealerCotSender {
            delta: Block(delta.0 | 1),
            batches: VecDeque::new(),
            available: 0,
            tweaks: TweakCounter::new(),
        }
    }

    /// Adds a batch from the dealer.
    pub fn add(&mut self, part: CotSenderPart) -> Result<(), DealtOtError> {
        if part.delta != self.delta {
            return Err(DealtOtError::DeltaMismatch);
        }
        if part.count > MAX_BATCH {
            return Err(DealtOtError::TooLarge(part.count));
        }
        self.available += part.count as usize;
        self.batches.push_back(SeedBatch {
            prg: Prg::expand(&part.seed, COT_SENDER),
            left: part.count as usize,
        });
        Ok(())
    }

    /// OTs left.
    pub fn available(&self) -> usize {
        self.available
    }
}

impl CotSender for DealerCotSender {
    fn delta(&self) -> Block {
        self.delta
    }

    fn tweaks(&mut self) -> &mut TweakCounter {
        &mut self.tweaks
    }

    async fn send_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<Vec<Block>, OtError> {
        let body = check_call(ch, Kind::Cot, count, count.div_ceil(8)).await?;
        let Some(d) = wire::unpack_bits(&body, count) else {
            return Err(ch
                .abort("dealer OT: padding bits set in the derandomization bits")
                .await
                .into());
        };
        if self.available < count {
            return Err(exhausted(ch, "correlated OTs", count, self.available).await);
        }
        let mut out = Vec::with_capacity(count);
        let delta = self.delta;
        let mut it = d.into_iter();
        take_seeded(&mut self.batches, &mut self.available, count, |prg| {
            let di = it.next().expect("one bit per OT");
            out.push(Block::random(prg) ^ delta.select(di));
        });
        Ok(out)
    }
}

impl DealerCotReceiver {
    /// An empty receiver; feed it with [`DealerCotReceiver::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch from the dealer.
    pub fn add(&mut self, part: CotReceiverPart) {
        self.available += part.t.len();
        self.batches.push_back(ExplicitBatch {
            bits: BitStream::new(&part.seed),
            items: part.t.into_iter(),
        });
    }

    /// OTs left.
    pub fn available(&self) -> usize {
        self.available
    }
}

impl CotReceiver for DealerCotReceiver {
    fn tweaks(&mut self) -> &mut TweakCounter {
        &mut self.tweaks
    }

    async fn recv_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>, OtError> {
        let n = choices.len();
        if self.available < n {
            return Err(exhausted(ch, "correlated OTs", n, self.available).await);
        }
        let mut c = Vec::with_capacity(n);
        let mut t = Vec::with_capacity(n);
        take_explicit(&mut self.batches, &mut self.available, n, &mut c, &mut t);
        let mut msg = Vec::with_capacity(HEADER_LEN + n.div_ceil(8));
        msg.extend_from_slice(&wire::header(Kind::Cot, n));
        msg.extend(wire::pack_bits(c.iter().zip(choices).map(|(a, b)| a ^ b)));
        ch.send_bytes(&msg).await?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::mem;
    use crate::ot::test_util::{check_chosen, check_cot, check_rot};

    const SIZES: &[usize] = &[0, 1, 99, 100, 101, 350, 0, 3];

    /// Dealer batches of 100 so requests straddle batch boundaries.
    fn rot_pair(seed: u64) -> (DealerRotSender, DealerRotReceiver) {
        let mut dealer = Prg::from_u64(seed);
        let (mut s, mut r) = (DealerRotSender::new(), DealerRotReceiver::new());
        for _ in 0..20 {
            let (a, b) = deal_rot(&mut dealer, 100);
            s.add(a).unwrap();
            r.add(b);
        }
        (s, r)
    }

    fn cot_pair(seed: u64) -> (DealerCotSender, DealerCotReceiver) {
        let mut dealer = Prg::from_u64(seed);
        let delta = Block::random(&mut dealer);
        let (mut s, mut r) = (DealerCotSender::new(delta), DealerCotReceiver::new());
        for _ in 0..20 {
            let (a, b) = deal_cot(&mut dealer, delta, 100);
            s.add(a).unwrap();
            r.add(b);
        }
        (s, r)
    }

    #[tokio::test]
    async fn dealer_rot_harness() {
        let (mut s, mut r) = rot_pair(1);
        check_rot(&mut s, &mut r, SIZES).await;
        assert_eq!(s.available(), 2000 - SIZES.iter().sum::<usize>());
        assert_eq!(s.available(), r.available());
    }

    #[tokio::test]
    async fn dealer_cot_harness() {
        let (mut s, mut r) = cot_pair(2);
        check_cot(&mut s, &mut r, SIZES).await;
        assert_eq!(s.available(), r.available());
    }

    #[tokio::test]
    async fn dealer_chosen_harness() {
        let (s, r) = rot_pair(3);
        check_chosen(s, r, &[0, 1, 99, 100, 101]).await;
    }

    #[tokio::test]
    async fn exhaustion_and_mismatch_end_the_session() {
        let (mut s, mut r) = rot_pair(4);
        let (mut a, mut b) = mem::pair();
        let (x, y) = tokio::join!(s.send_rot(&mut a, 2001), r.recv_rot(&mut b, 2001));
        let msg = y.unwrap_err().to_string();
        assert!(msg.contains("exhausted"), "{msg}");
        assert!(x.is_err());

        let (mut s, mut r) = cot_pair(5);
        let (mut a, mut b) = mem::pair();
        let (x, _y) = tokio::join!(s.send_cot(&mut a, 10), r.recv_cot(&mut b, &[false; 11]));
        let msg = x.unwrap_err().to_string();
        assert!(
            msg.contains("asked for 11") && msg.contains("for 10"),
            "{msg}"
        );

        let mut s = DealerCotSender::new(Block(3));
        let (part, _) = deal_cot(&mut Prg::from_u64(6), Block(5), 4);
        assert_eq!(s.add(part).unwrap_err(), DealtOtError::DeltaMismatch);
    }

    #[test]
    fn parts_are_compressed_and_redacted() {
        let (s, r) = deal_cot(&mut Prg::from_u64(7), Block(9), 10);
        assert_eq!(r.t.len(), 10);
        assert_eq!(s.count, 10);
        assert_eq!(format!("{s:?}"), "CotSenderPart(count: 10, ..)");
        assert_eq!(format!("{r:?}"), "CotReceiverPart(count: 10, ..)");
    }
}
