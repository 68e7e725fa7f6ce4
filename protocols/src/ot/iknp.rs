//! OT extension: many correlated and random OTs from [`BASE_OT_COUNT`] base OTs.
//!
//! **Functionality.** Correlated OT with a global `Δ` (the sender obtains `q_i`, the receiver
//! with choice bit `r_i` obtains `t_i = q_i ⊕ r_i·Δ`), and random OT derived from it
//! (`m0_i = H(i, q_i)`, `m1_i = H(i, q_i ⊕ Δ)`, the receiver gets `m_{r_i} = H(i, t_i)`).
//!
//! **Protocol.** The semi-honest OT extension of Ishai, Kilian, Nissim and Petrank, "Extending
//! Oblivious Transfers Efficiently" (CRYPTO 2003), in its correlated form (Asharov, Lindell,
//! Schneider, Zohner, "More Efficient Oblivious Transfer and Extensions for Faster Secure
//! Computation", CCS 2013). We chose the **semi-honest** variant (no KOS consistency check):
//! privlm's threat model is semi-honest. Roles are reversed in the setup: the extension sender
//! is the base-OT *receiver* with choice string `s = Δ`, and gets `k_{s_j, j}`; the extension
//! receiver is the base-OT *sender* and gets both `k_{0,j}, k_{1,j}` ([`super::base`]).
//! Per chunk of `m` OTs (`m` a multiple of 128), with `G` AES-128 in counter mode keyed by a
//! base-OT key:
//!
//! ```text
//! receiver (bits r ∈ {0,1}^m)                      sender (s = Δ)
//! t^j = G(k_{0,j}),  u^j = t^j ⊕ G(k_{1,j}) ⊕ r
//!                         --- u^1..u^128 (16 m bytes) --->
//!                                                   q^j = G(k_{s_j,j}) ⊕ s_j·u^j
//! rows: t_i                                         rows: q_i = t_i ⊕ r_i·Δ
//! ```
//!
//! The 128 × m column matrices are turned into rows with [`super::transpose`]. Random OT
//! outputs are hashed with the tweakable circular correlation-robust hash
//! `TCCR(i, x)` of Guo, Katz, Wang, Yu (S&P 2020) on fixed-key AES ([`crate::hash`]), the tweak
//! `i` being reserved from this correlation's [`TweakCounter`] (domain
//! [`TweakDomain::RandomOt`]), the same counter that garbling and the additive correlated OTs
//! over this `Δ` draw from, so no tweak is ever used twice under one `Δ`.
//!
//! **Chosen choice bits.** For [`CotReceiver::recv_cot`] the receiver puts its choice bits into
//! `r` directly, so a fresh chunk costs exactly 128 bits per OT. Chunks are rounded up to a
//! multiple of 128; the padding OTs (random `r`) go to a *leftover* buffer (fewer than 128) and
//! are used first by the next call, COTs being derandomized with one bit each
//! (`d_i = b_i ⊕ r_i`, the sender sets `q_i ⊕= d_i·Δ`). So any count can be asked for, including
//! 0, and at most 127 OTs are ever generated ahead.
//!
//! **Streaming.** Production goes in chunks of at most [`IknpConfig::chunk`] OTs (one message
//! of `16 · chunk` bytes each), so memory is bounded by the chunk plus the output.
//! The base OTs run lazily on the first call.
//!
//! **Message flow per call:** a 9-byte call header (kind and count) from receiver to sender,
//! checked by the sender; on the first call the base OTs (32 + 4096 bytes, one round trip);
//! then, receiver to sender only, the derandomization bits for leftover COTs and one `u`
//! message per chunk. A call is one flight from receiver to sender: no round trip after setup.
//!
//! The sans-IO cores are [`IknpSenderCore`] and [`IknpReceiverCore`] (pure functions of the
//! received bytes); [`IknpSender`] and [`IknpReceiver`] are the async drivers.

use std::collections::VecDeque;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use rand_core::{CryptoRng, Rng};

use crate::block::Block;
use crate::channel::Channel;
use crate::hash::{FIXED_KEY_AES, TweakDomain};
use crate::prg::Prg;

use super::base::{BASE_OT_COUNT, base_ot_recv, base_ot_send};
use super::transpose::cols_to_rows_strided;
use super::wire::{self, HEADER_LEN, Kind};
use super::{CotReceiver, CotSender, OtError, RotReceiver, RotSender, TweakCounter};

/// Default number of OTs extended per message (64 KiB of `u` columns, so the buffers of one
/// chunk stay in the L2 cache).
pub const DEFAULT_CHUNK: usize = 1 << 12;

/// Largest allowed chunk (16 MiB messages).
pub const MAX_CHUNK: usize = 1 << 20;

const KAPPA: usize = BASE_OT_COUNT;

/// AGREEMENT parameters of the extension: both parties must use the same values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IknpConfig {
    /// OTs per extension message; a positive multiple of 128, at most [`MAX_CHUNK`].
    pub chunk: usize,
}

impl Default for IknpConfig {
    fn default() -> Self {
        IknpConfig {
            chunk: DEFAULT_CHUNK,
        }
    }
}

impl IknpConfig {
    /// A configuration with the given chunk size, if valid.
    pub fn with_chunk(chunk: usize) -> Result<Self, IknpError> {
        if chunk == 0 || !chunk.is_multiple_of(128) || chunk > MAX_CHUNK {
            return Err(IknpError::BadChunk(chunk));
        }
        Ok(IknpConfig { chunk })
    }
}

/// Errors of the extension cores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IknpError {
    /// A chunk size that is not a positive multiple of 128 up to [`MAX_CHUNK`].
    #[error("IKNP: chunk size {0} is not a positive multiple of 128 up to {MAX_CHUNK}")]
    BadChunk(usize),
    /// The base-OT keys have the wrong count.
    #[error("IKNP: expected {KAPPA} base-OT keys, got {0}")]
    BaseKeys(usize),
    /// The `u` matrix has the wrong length.
    #[error("IKNP: u matrix has {got} words, expected {expected}")]
    ULength {
        /// Expected words.
        expected: usize,
        /// Received words.
        got: usize,
    },
}

/// Column stride in the internal matrices: one cache line more than the column, so the 64
/// words a transposition tile gathers do not all fall into the same cache sets.
fn padded(words: usize) -> usize {
    words + 8
}

/// AES-128 in counter mode: the PRG that stretches one base-OT key into a column.
struct ColumnPrg {
    cipher: Aes128,
    ctr: u64,
}

impl ColumnPrg {
    fn new(key: Block) -> Self {
        ColumnPrg {
            cipher: Aes128::new(&key.to_bytes().into()),
            ctr: 0,
        }
    }

    /// Fills `out` (an even number of words) with the next keystream words.
    fn fill(&mut self, out: &mut [u64], scratch: &mut Vec<aes::Block>) {
        let n = out.len() / 2;
        scratch.clear();
        scratch.extend(
            (0..n as u64).map(|i| aes::Block::from(((self.ctr + i) as u128).to_le_bytes())),
        );
        self.ctr += n as u64;
        self.cipher.encrypt_blocks(scratch);
        for (w, b) in out.chunks_exact_mut(2).zip(scratch.iter()) {
            let v = u128::from_le_bytes((*b).into());
            w[0] = v as u64;
            w[1] = (v >> 64) as u64;
        }
    }
}

/// The sans-IO core of the extension sender (after the base OTs).
pub struct IknpSenderCore {
    delta: Block,
    prgs: Vec<ColumnPrg>,
    cols: Vec<u64>,
    scratch: Vec<aes::Block>,
}

impl std::fmt::Debug for IknpSenderCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IknpSenderCore(..)")
    }
}

impl IknpSenderCore {
    /// From `Δ` and the base-OT keys `k_{Δ_j, j}` received with choice string `Δ`.
    pub fn new(delta: Block, keys: &[Block]) -> Result<Self, IknpError> {
        if keys.len() != KAPPA {
            return Err(IknpError::BaseKeys(keys.len()));
        }
        Ok(IknpSenderCore {
            delta,
            prgs: keys.iter().map(|&k| ColumnPrg::new(k)).collect(),
            cols: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The global correlation `Δ`.
    pub fn delta(&self) -> Block {
        self.delta
    }

    /// Extends by `m` OTs (a multiple of 128) from the receiver's `u` columns (`2 m` words),
    /// appending the `q_i` to `out`.
    pub fn extend(&mut self, m: usize, u: &[u64], out: &mut Vec<Block>) -> Result<(), IknpError> {
        if !m.is_multiple_of(128) || m > MAX_CHUNK {
            return Err(IknpError::BadChunk(m));
        }
        let words = m / 64;
        if u.len() != KAPPA * words {
            return Err(IknpError::ULength {
                expected: KAPPA * words,
                got: u.len(),
            });
        }
        let stride = padded(words);
        self.cols.resize(KAPPA * stride, 0);
        for (j, prg) in self.prgs.iter_mut().enumerate() {
            let col = &mut self.cols[j * stride..j * stride + words];
            prg.fill(col, &mut self.scratch);
            let mask = ((self.delta.0 >> j) & 1).wrapping_neg() as u64;
            for (c, &uw) in col.iter_mut().zip(&u[j * words..(j + 1) * words]) {
                *c ^= uw & mask;
            }
        }
        let start = out.len();
        out.resize(start + m, Block::ZERO);
        cols_to_rows_strided(&self.cols, stride, m, &mut out[start..]);
        Ok(())
    }
}

/// The sans-IO core of the extension receiver (after the base OTs).
pub struct IknpReceiverCore {
    prgs: Vec<[ColumnPrg; 2]>,
    t_cols: Vec<u64>,
    u: Vec<u64>,
    tmp: Vec<u64>,
    scratch: Vec<aes::Block>,
}

impl std::fmt::Debug for IknpReceiverCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IknpReceiverCore(..)")
    }
}

impl IknpReceiverCore {
    /// From the base-OT key pairs `(k_{0,j}, k_{1,j})`.
    pub fn new(keys: &[[Block; 2]]) -> Result<Self, IknpError> {
        if keys.len() != KAPPA {
            return Err(IknpError::BaseKeys(keys.len()));
        }
        Ok(IknpReceiverCore {
            prgs: keys
                .iter()
                .map(|k| [ColumnPrg::new(k[0]), ColumnPrg::new(k[1])])
                .collect(),
            t_cols: Vec::new(),
            u: Vec::new(),
            tmp: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Extends by `m = 64 · r.len()` OTs (a multiple of 128) with choice bits `r` (LSB-first
    /// words), appending the `t_i` to `out`; returns the `u` columns to send (`2 m` words).
    pub fn extend(&mut self, r: &[u64], out: &mut Vec<Block>) -> Result<&[u64], IknpError> {
        let words = r.len();
        let m = 64 * words;
        if !m.is_multiple_of(128) || m > MAX_CHUNK {
            return Err(IknpError::BadChunk(m));
        }
        let stride = padded(words);
        self.t_cols.resize(KAPPA * stride, 0);
        self.u.resize(KAPPA * words, 0);
        self.tmp.resize(words, 0);
        for (j, [g0, g1]) in self.prgs.iter_mut().enumerate() {
            let t = &mut self.t_cols[j * stride..j * stride + words];
            g0.fill(t, &mut self.scratch);
            g1.fill(&mut self.tmp, &mut self.scratch);
            let u = &mut self.u[j * words..(j + 1) * words];
            for (((uw, &tw), &gw), &rw) in u.iter_mut().zip(t.iter()).zip(&self.tmp).zip(r) {
                *uw = tw ^ gw ^ rw;
            }
        }
        let start = out.len();
        out.resize(start + m, Block::ZERO);
        cols_to_rows_strided(&self.t_cols, stride, m, &mut out[start..]);
        Ok(&self.u)
    }
}

/// Driver state shared by both ends: sticky failure.
fn poisoned_error(who: &str) -> OtError {
    OtError::Protocol(format!(
        "{who}: an earlier call failed; the OT session is over"
    ))
}

/// The OT-extension sender: implements [`CotSender`] and [`RotSender`].
pub struct IknpSender {
    cfg: IknpConfig,
    delta: Block,
    rng: Prg,
    core: Option<IknpSenderCore>,
    /// Leftover random COTs (`q_i` for receiver bits `r_i`), fewer than 128.
    pool: VecDeque<Block>,
    /// The hash-tweak counter of `Δ` (see [`TweakCounter`]).
    tweaks: TweakCounter,
    poisoned: bool,
    /// Receive buffer for the `u` matrix, reused across chunks.
    ubuf: Vec<u64>,
}

impl std::fmt::Debug for IknpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IknpSender")
            .field("cfg", &self.cfg)
            .field("setup", &self.core.is_some())
            .field("leftover", &self.pool.len())
            .finish_non_exhaustive()
    }
}

/// The OT-extension receiver: implements [`CotReceiver`] and [`RotReceiver`].
pub struct IknpReceiver {
    cfg: IknpConfig,
    rng: Prg,
    core: Option<IknpReceiverCore>,
    /// Leftover random COTs `(r_i, t_i)`, fewer than 128.
    pool: VecDeque<(bool, Block)>,
    /// The mirror of the sender's tweak counter.
    tweaks: TweakCounter,
    poisoned: bool,
}

impl std::fmt::Debug for IknpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IknpReceiver")
            .field("cfg", &self.cfg)
            .field("setup", &self.core.is_some())
            .field("leftover", &self.pool.len())
            .finish_non_exhaustive()
    }
}

const SENDER: &str = "IKNP sender";
const RECEIVER: &str = "IKNP receiver";

impl IknpSender {
    /// A sender with global correlation `delta`; its least significant bit is forced to 1 (so
    /// `Δ` can be a free-XOR offset). Randomness for the base OTs is drawn from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(cfg: IknpConfig, delta: Block, rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        IknpSender {
            cfg,
            delta: Block(delta.0 | 1),
            rng: Prg::from_seed(seed),
            core: None,
            pool: VecDeque::new(),
            tweaks: TweakCounter::new(),
            poisoned: false,
            ubuf: Vec::new(),
        }
    }

    /// A sender with a random `Δ` (lsb 1).
    pub fn random<R: CryptoRng + ?Sized>(cfg: IknpConfig, rng: &mut R) -> Self {
        let delta = Block::random(rng);
        Self::new(cfg, delta, rng)
    }

    /// Whether the base OTs have run.
    pub fn is_setup(&self) -> bool {
        self.core.is_some()
    }

    /// Runs the base OTs now (otherwise they run on the first call). The receiver must call
    /// [`IknpReceiver::setup`] at the same point.
    pub async fn setup<C: Channel>(&mut self, ch: &mut C) -> Result<(), OtError> {
        if self.poisoned {
            return Err(poisoned_error(SENDER));
        }
        self.poisoned = true;
        self.setup_inner(ch).await?;
        self.poisoned = false;
        Ok(())
    }

    async fn setup_inner<C: Channel>(&mut self, ch: &mut C) -> Result<(), OtError> {
        if self.core.is_some() {
            return Ok(());
        }
        let choices: Vec<bool> = (0..KAPPA).map(|j| (self.delta.0 >> j) & 1 == 1).collect();
        let keys = base_ot_recv(ch, &choices, &mut self.rng).await?;
        let core =
            IknpSenderCore::new(self.delta, &keys).map_err(|e| OtError::Protocol(e.to_string()))?;
        self.core = Some(core);
        Ok(())
    }

    /// Produces `n` correlated OTs for the receiver's call of `kind`; returns the `q_i` as the
    /// receiver's bits `r_i` were at generation (before derandomization for [`Kind::Cot`]).
    async fn produce<C: Channel>(
        &mut self,
        ch: &mut C,
        kind: Kind,
        n: usize,
    ) -> Result<Vec<Block>, OtError> {
        if self.poisoned {
            return Err(poisoned_error(SENDER));
        }
        self.poisoned = true;
        let mut h = [0u8; HEADER_LEN];
        ch.recv_bytes_into(&mut h, "IKNP call header").await?;
        if let Err(reason) = wire::check_header("IKNP", &h, kind, n) {
            return Err(ch.abort(&reason).await.into());
        }
        self.setup_inner(ch).await?;
        let mut out = Vec::with_capacity(n);
        let k = self.pool.len().min(n);
        out.extend(self.pool.drain(..k));
        if kind == Kind::Cot && k > 0 {
            let mut d = vec![0u8; k.div_ceil(8)];
            ch.recv_bytes_into(&mut d, "IKNP derandomization bits")
                .await?;
            let Some(bits) = wire::unpack_bits(&d, k) else {
                return Err(ch
                    .abort("IKNP: padding bits set in the derandomization bits")
                    .await
                    .into());
            };
            for (q, b) in out.iter_mut().zip(bits) {
                *q ^= self.delta.select(b);
            }
        }
        let mut rem = n - k;
        let core = self.core.as_mut().expect("set up above");
        while rem > 0 {
            let m = self.cfg.chunk.min(rem.div_ceil(128) * 128);
            let take = rem.min(m);
            self.ubuf.resize(KAPPA * m / 64, 0);
            ch.recv_bytes_into(bytemuck::cast_slice_mut(&mut self.ubuf), "IKNP u matrix")
                .await?;
            #[cfg(target_endian = "big")]
            for w in self.ubuf.iter_mut() {
                *w = u64::from_le(*w);
            }
            if let Err(e) = core.extend(m, &self.ubuf, &mut out) {
                return Err(ch.abort(&e.to_string()).await.into());
            }
            let start = out.len() - m;
            self.pool.extend(out.drain(start + take..));
            rem -= take;
        }
        self.poisoned = false;
        Ok(out)
    }

    /// Produces `count` random correlated OTs: returns `q_i`; the receiver gets random bits
    /// `r_i` and `t_i = q_i ⊕ r_i·Δ` from [`IknpReceiver::recv_rcot`].
    pub async fn send_rcot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<Vec<Block>, OtError> {
        self.produce(ch, Kind::Rcot, count).await
    }
}

impl IknpReceiver {
    /// A receiver; its random choice bits and base-OT randomness come from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(cfg: IknpConfig, rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        IknpReceiver {
            cfg,
            rng: Prg::from_seed(seed),
            core: None,
            pool: VecDeque::new(),
            tweaks: TweakCounter::new(),
            poisoned: false,
        }
    }

    /// Whether the base OTs have run.
    pub fn is_setup(&self) -> bool {
        self.core.is_some()
    }

    /// Runs the base OTs now (otherwise they run on the first call); pairs with
    /// [`IknpSender::setup`].
    pub async fn setup<C: Channel>(&mut self, ch: &mut C) -> Result<(), OtError> {
        if self.poisoned {
            return Err(poisoned_error(RECEIVER));
        }
        self.poisoned = true;
        self.setup_inner(ch).await?;
        self.poisoned = false;
        Ok(())
    }

    async fn setup_inner<C: Channel>(&mut self, ch: &mut C) -> Result<(), OtError> {
        if self.core.is_some() {
            return Ok(());
        }
        let keys = base_ot_send(ch, KAPPA, &mut self.rng).await?;
        let core = IknpReceiverCore::new(&keys).map_err(|e| OtError::Protocol(e.to_string()))?;
        self.core = Some(core);
        Ok(())
    }

    /// Produces `n` correlated OTs; with `choices` the outputs have those choice bits (fresh
    /// chunks carry them directly, leftovers are derandomized), otherwise random bits.
    async fn produce<C: Channel>(
        &mut self,
        ch: &mut C,
        kind: Kind,
        n: usize,
        choices: Option<&[bool]>,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        if self.poisoned {
            return Err(poisoned_error(RECEIVER));
        }
        self.poisoned = true;
        ch.send_bytes(&wire::header(kind, n)).await?;
        self.setup_inner(ch).await?;
        let mut bits = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let k = self.pool.len().min(n);
        for (r, t) in self.pool.drain(..k) {
            bits.push(r);
            ts.push(t);
        }
        if let Some(c) = choices
            && k > 0
        {
            let d = wire::pack_bits(bits.iter().zip(c).map(|(&r, &b)| r ^ b));
            ch.send_bytes(&d).await?;
            bits.copy_from_slice(&c[..k]);
        }
        let mut rem = n - k;
        let mut r = Vec::new();
        let core = self.core.as_mut().expect("set up above");
        while rem > 0 {
            let m = self.cfg.chunk.min(rem.div_ceil(128) * 128);
            let take = rem.min(m);
            r.clear();
            r.extend((0..m / 64).map(|_| self.rng.next_u64()));
            if let Some(c) = choices {
                let pos = n - rem;
                for (w, chunk) in r.iter_mut().zip(c[pos..pos + take].chunks(64)) {
                    let mut v = 0u64;
                    for (i, &b) in chunk.iter().enumerate() {
                        v |= (b as u64) << i;
                    }
                    let keep = if chunk.len() == 64 {
                        0
                    } else {
                        !0u64 << chunk.len()
                    };
                    *w = (*w & keep) | v;
                }
            }
            let start = ts.len();
            let u = core
                .extend(&r, &mut ts)
                .map_err(|e| OtError::Protocol(e.to_string()))?;
            ch.send_u64s(u).await?;
            for i in 0..m {
                let bit = (r[i / 64] >> (i % 64)) & 1 == 1;
                if i < take {
                    bits.push(bit);
                } else {
                    self.pool.push_back((bit, ts[start + i]));
                }
            }
            ts.truncate(start + take);
            rem -= take;
        }
        self.poisoned = false;
        Ok((bits, ts))
    }

    /// Produces `count` random correlated OTs: returns random bits `r_i` and
    /// `t_i = q_i ⊕ r_i·Δ`; pairs with [`IknpSender::send_rcot`].
    pub async fn recv_rcot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        self.produce(ch, Kind::Rcot, count, None).await
    }
}

impl CotSender for IknpSender {
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
        self.produce(ch, Kind::Cot, count).await
    }
}

impl CotReceiver for IknpReceiver {
    fn tweaks(&mut self) -> &mut TweakCounter {
        &mut self.tweaks
    }

    async fn recv_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>, OtError> {
        Ok(self
            .produce(ch, Kind::Cot, choices.len(), Some(choices))
            .await?
            .1)
    }
}

/// Blocks hashed per batch in the random-OT hashing (stays in L1).
const HASH_BATCH: usize = 256;

/// `x_i := TCCR(t(start + i), x_i)` for every `i`, `t` the random-OT tweak domain.
fn hash_in_place(xs: &mut [Block], start: u64) {
    let mut tw = [Block::ZERO; HASH_BATCH];
    let mut tmp = [Block::ZERO; HASH_BATCH];
    for (ci, chunk) in xs.chunks_mut(HASH_BATCH).enumerate() {
        let n = chunk.len();
        let base = start + (ci * HASH_BATCH) as u64;
        for (j, t) in tw[..n].iter_mut().enumerate() {
            *t = TweakDomain::RandomOt.tweak(base + j as u64);
        }
        tmp[..n].copy_from_slice(chunk);
        FIXED_KEY_AES.tccr_many(&tw[..n], &tmp[..n], chunk);
    }
}

/// Emits `(TCCR(t(start + i), x_i), TCCR(t(start + i), x_i ⊕ Δ))` for every `i`.
fn hash_rows(xs: &[Block], start: u64, delta: Block, mut emit: impl FnMut(Block, Block)) {
    let mut tw = [Block::ZERO; HASH_BATCH];
    let mut x1 = [Block::ZERO; HASH_BATCH];
    let mut h0 = [Block::ZERO; HASH_BATCH];
    let mut h1 = [Block::ZERO; HASH_BATCH];
    for (ci, chunk) in xs.chunks(HASH_BATCH).enumerate() {
        let n = chunk.len();
        let base = start + (ci * HASH_BATCH) as u64;
        for (j, t) in tw[..n].iter_mut().enumerate() {
            *t = TweakDomain::RandomOt.tweak(base + j as u64);
        }
        FIXED_KEY_AES.tccr_many(&tw[..n], chunk, &mut h0[..n]);
        for (y, &x) in x1[..n].iter_mut().zip(chunk) {
            *y = x ^ delta;
        }
        FIXED_KEY_AES.tccr_many(&tw[..n], &x1[..n], &mut h1[..n]);
        for j in 0..n {
            emit(h0[j], h1[j]);
        }
    }
}

impl RotSender for IknpSender {
    async fn send_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<Vec<[Block; 2]>, OtError> {
        let q = self.produce(ch, Kind::Rot, count).await?;
        let first = self.tweaks.reserve(count as u64);
        let mut out = Vec::with_capacity(count);
        hash_rows(&q, first, self.delta, |a, b| out.push([a, b]));
        Ok(out)
    }
}

impl RotReceiver for IknpReceiver {
    async fn recv_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        let (bits, mut t) = self.produce(ch, Kind::Rot, count, None).await?;
        let first = self.tweaks.reserve(count as u64);
        hash_in_place(&mut t, first);
        Ok((bits, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{ChannelError, mem};
    use crate::ot::test_util::{check_chosen, check_cot, check_rot};

    fn pair(chunk: usize, seed: u64) -> (IknpSender, IknpReceiver) {
        let cfg = IknpConfig::with_chunk(chunk).unwrap();
        let mut prg = Prg::from_u64(seed);
        (
            IknpSender::new(
                cfg.clone(),
                Block(0x1234_5678_9abc_def0_0fed_cba9_8765_4320),
                &mut prg,
            ),
            IknpReceiver::new(cfg, &mut prg),
        )
    }

    fn sizes(chunk: usize) -> Vec<usize> {
        vec![0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 5, 0, 130, 7]
    }

    #[tokio::test]
    async fn cot_small_chunk() {
        let (mut s, mut r) = pair(256, 1);
        assert!(s.delta().lsb(), "lsb forced to 1");
        check_cot(&mut s, &mut r, &sizes(256)).await;
    }

    #[tokio::test]
    async fn cot_default_chunk() {
        let (mut s, mut r) = pair(DEFAULT_CHUNK, 2);
        check_cot(
            &mut s,
            &mut r,
            &[1, DEFAULT_CHUNK - 1, DEFAULT_CHUNK, DEFAULT_CHUNK + 1],
        )
        .await;
    }

    #[tokio::test]
    async fn rot_small_chunk() {
        let (mut s, mut r) = pair(128, 3);
        check_rot(&mut s, &mut r, &sizes(128)).await;
    }

    #[tokio::test]
    async fn rot_outputs_are_hashed() {
        // Raw COT outputs would have m0 ^ m1 = delta for every OT.
        let (mut s, mut r) = pair(128, 10);
        let (mut a, mut b) = mem::pair();
        let (m, _) = tokio::join!(s.send_rot(&mut a, 200), r.recv_rot(&mut b, 200));
        let m = m.unwrap();
        assert_ne!(m[0][0] ^ m[0][1], m[1][0] ^ m[1][1]);
        assert_ne!(m[0][0] ^ m[0][1], s.delta());
    }

    #[tokio::test]
    async fn chosen_over_iknp() {
        let (s, r) = pair(256, 4);
        check_chosen(s, r, &sizes(256)).await;
    }

    #[tokio::test]
    async fn mixed_calls_share_leftovers() {
        let (mut s, mut r) = pair(256, 5);
        let (mut a, mut b) = mem::pair();
        // RCOT leaves leftovers that the next COT derandomizes and the next ROT hashes.
        let (q, rt) = tokio::join!(s.send_rcot(&mut a, 100), r.recv_rcot(&mut b, 100));
        let (q, (bits, t)) = (q.unwrap(), rt.unwrap());
        for i in 0..100 {
            assert_eq!(t[i], q[i] ^ s.delta().select(bits[i]));
        }
        check_cot(&mut s, &mut r, &[5, 300]).await;
        check_rot(&mut s, &mut r, &[3, 200]).await;
    }

    #[tokio::test]
    async fn count_mismatch_ends_session() {
        let (mut s, mut r) = pair(256, 6);
        let (mut a, mut b) = mem::pair();
        let choices = vec![true; 999];
        let (x, y) = tokio::join!(s.send_cot(&mut a, 1000), r.recv_cot(&mut b, &choices));
        let msg = x.unwrap_err().to_string();
        assert!(
            msg.contains("asked for 999") && msg.contains("for 1000"),
            "{msg}"
        );
        assert!(y.is_err());
        // Sticky: the sender refuses further calls.
        assert!(s.send_cot(&mut a, 1).await.is_err());

        // A kind mismatch (COT vs ROT) is caught too.
        let (mut s, mut r) = pair(256, 7);
        let (mut a, mut b) = mem::pair();
        let (x, _y) = tokio::join!(s.send_rot(&mut a, 10), r.recv_cot(&mut b, &[true; 10]));
        assert!(x.unwrap_err().to_string().contains("random OT"));
    }

    #[tokio::test]
    async fn wrong_u_length_aborts() {
        let (mut s, _) = pair(256, 8);
        let (mut a, mut b) = mem::pair();
        let mut rng = Prg::from_u64(9);
        let fake = async {
            b.send_bytes(&wire::header(Kind::Cot, 128)).await.unwrap();
            base_ot_send(&mut b, KAPPA, &mut rng).await.unwrap();
            // 128 OTs need 2048 bytes of u; send 100.
            b.send_bytes(&[0u8; 100]).await.unwrap();
            let mut buf = [0u8; 1];
            b.recv_bytes_into(&mut buf, "anything").await
        };
        let (x, y) = tokio::join!(s.send_cot(&mut a, 128), fake);
        let msg = x.unwrap_err().to_string();
        assert!(msg.contains("IKNP u matrix"), "{msg}");
        assert!(matches!(y, Err(ChannelError::PeerAborted(_))), "{y:?}");
    }

    /// The random-OT hashes use the tweaks reserved for them: `m0_i = TCCR(t(f + i), q_i)`,
    /// `m1_i = TCCR(t(f + i), q_i ⊕ Δ)` with `f` the counter's value before the call and `t`
    /// the random-OT domain, across hash batches.
    #[test]
    fn random_ot_hashes_use_the_reserved_tweaks() {
        let mut prg = Prg::from_u64(11);
        let xs: Vec<Block> = (0..600).map(|_| Block::random(&mut prg)).collect();
        let delta = Block(0x77 | 1);
        let mut pairs = Vec::new();
        hash_rows(&xs, 1000, delta, |a, b| pairs.push([a, b]));
        let mut ys = xs.clone();
        hash_in_place(&mut ys, 1000);
        for i in 0..xs.len() {
            let t = TweakDomain::RandomOt.tweak(1000 + i as u64);
            assert_eq!(pairs[i][0], FIXED_KEY_AES.tccr(t, xs[i]), "m0 of {i}");
            assert_eq!(
                pairs[i][1],
                FIXED_KEY_AES.tccr(t, xs[i] ^ delta),
                "m1 of {i}"
            );
            assert_eq!(ys[i], pairs[i][0]);
        }
    }

    /// The column PRG never repeats its keystream: across many small chunks the receiver's `u`
    /// messages (all-zero choices, so `u = G(k0) ⊕ G(k1)`) are all different and uniform.
    #[tokio::test]
    async fn column_keystream_never_repeats_across_chunks() {
        use crate::view_test_util::{Recorder, assert_uniform_bytes};
        let (mut s, mut r) = pair(128, 12);
        let (a, mut b) = mem::pair();
        let mut a = Recorder::new(a);
        let n = 128 * 64;
        let zeros = vec![false; n];
        let (q, t) = tokio::join!(s.send_cot(&mut a, n), r.recv_cot(&mut b, &zeros));
        assert_eq!(q.unwrap(), t.unwrap());
        let us: Vec<Vec<u8>> = a
            .received
            .iter()
            .filter(|(c, _)| c.contains("IKNP u matrix"))
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(us.len(), 64, "one u message per chunk of 128");
        let words: std::collections::HashSet<&[u8]> =
            us.iter().flat_map(|m| m.chunks_exact(16)).collect();
        assert_eq!(words.len(), 64 * 128, "u columns repeat across chunks");
        assert_uniform_bytes(&us.concat(), "u columns over 64 chunks");
    }

    /// Explicit setup runs the base OTs (and only once); later calls use them.
    #[tokio::test]
    async fn explicit_setup_runs_the_base_ots_once() {
        let (mut s, mut r) = pair(256, 13);
        let (mut a, mut b) = mem::pair();
        assert!(!s.is_setup() && !r.is_setup());
        let (x, y) = tokio::join!(s.setup(&mut a), r.setup(&mut b));
        x.unwrap();
        y.unwrap();
        assert!(s.is_setup() && r.is_setup());
        let setup_bytes = a.stats().total().bytes_sent + b.stats().total().bytes_sent;
        assert_eq!(
            setup_bytes,
            32 + 4096 + 8,
            "base OTs: A, 128 points, two frame headers"
        );
        // A second setup is free.
        let (x, y) = tokio::join!(s.setup(&mut a), r.setup(&mut b));
        x.unwrap();
        y.unwrap();
        assert_eq!(
            a.stats().total().bytes_sent + b.stats().total().bytes_sent,
            setup_bytes
        );
        check_cot(&mut s, &mut r, &[300]).await;
    }

    /// The column PRG is AES-128 in counter mode from counter 0, continued across calls
    /// (words are the little-endian halves of each block).
    #[test]
    fn column_prg_is_aes_ctr() {
        let key = Block(0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100);
        let aes = Aes128::new(&key.to_bytes().into());
        let block = |i: u128| {
            let mut b = aes::Block::from(i.to_le_bytes());
            aes.encrypt_block(&mut b);
            u128::from_le_bytes(b.into())
        };
        let mut prg = ColumnPrg::new(key);
        let mut scratch = Vec::new();
        let (mut w1, mut w2) = ([0u64; 4], [0u64; 6]);
        prg.fill(&mut w1, &mut scratch);
        prg.fill(&mut w2, &mut scratch);
        let words: Vec<u64> = w1.iter().chain(&w2).copied().collect();
        for i in 0..5 {
            let b = block(i as u128);
            assert_eq!(words[2 * i], b as u64, "block {i}, low word");
            assert_eq!(words[2 * i + 1], (b >> 64) as u64, "block {i}, high word");
        }
    }

    #[test]
    fn core_validates() {
        assert!(IknpConfig::with_chunk(100).is_err());
        assert!(IknpConfig::with_chunk(0).is_err());
        assert!(IknpSenderCore::new(Block(1), &[Block(0); 3]).is_err());
        let mut core = IknpSenderCore::new(Block(1), &[Block(0); KAPPA]).unwrap();
        assert_eq!(core.delta(), Block(1));
        let mut out = Vec::new();
        assert!(matches!(
            core.extend(128, &[0u64; 5], &mut out),
            Err(IknpError::ULength {
                expected: 256,
                got: 5
            })
        ));
        assert!(matches!(
            core.extend(64, &[0u64; 128], &mut out),
            Err(IknpError::BadChunk(64))
        ));
        // The largest chunk is accepted (then the u length is checked), one more is not.
        assert!(matches!(
            core.extend(MAX_CHUNK, &[], &mut out),
            Err(IknpError::ULength { .. })
        ));
        assert!(matches!(
            core.extend(MAX_CHUNK + 128, &[], &mut out),
            Err(IknpError::BadChunk(_))
        ));
        let mut rcore = IknpReceiverCore::new(&[[Block(0), Block(1)]; KAPPA]).unwrap();
        assert!(IknpReceiverCore::new(&[[Block(0), Block(1)]; 3]).is_err());
        assert!(matches!(
            rcore.extend(&[0u64; 1], &mut out),
            Err(IknpError::BadChunk(64))
        ));
        assert!(matches!(
            rcore.extend(&vec![0u64; (MAX_CHUNK + 128) / 64], &mut out),
            Err(IknpError::BadChunk(_))
        ));
        assert!(rcore.extend(&[0u64; 2], &mut out).is_ok());
    }
}
