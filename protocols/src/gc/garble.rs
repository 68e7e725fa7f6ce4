//! Half-gates garbling (Zahur-Rosulek-Evans 2015) and evaluation: the synchronous cores and
//! the streaming [`Garbler`] / [`Evaluator`] backends over a channel.
//!
//! For an AND gate with input zero-labels `A0`, `B0`, permute bits `pa = lsb(A0)`,
//! `pb = lsb(B0)`, a fresh tweak index `j` and `H = TCCR`, with the two halves' tweaks
//! `g = (GcGarblerHalf, j)` and `e = (GcEvaluatorHalf, j)` ([`TweakDomain`]):
//! - generator half: `TG = H(g, A0) ⊕ H(g, A1) ⊕ pb·Δ`, `WG0 = H(g, A0) ⊕ pa·TG`;
//! - evaluator half: `TE = H(e, B0) ⊕ H(e, B1) ⊕ A0`, `WE0 = H(e, B0) ⊕ pb·(TE ⊕ A0)`;
//! - output zero-label `C0 = WG0 ⊕ WE0`; the table is `(TG, TE)`, 32 bytes.
//!
//! The evaluator with labels `Wa`, `Wb` computes
//! `Wc = H(g, Wa) ⊕ lsb(Wa)·TG ⊕ H(e, Wb) ⊕ lsb(Wb)·(TE ⊕ Wa)`.
//!
//! **Tweaks.** The cores take the tweak index from the caller. [`Garbler`] and [`Evaluator`]
//! reserve it from the correlated-OT source's [`TweakCounter`](crate::ot::TweakCounter)
//! ([`CotSender::tweaks`] / [`CotReceiver::tweaks`]), which is shared by every session and every
//! other hash under the same `Δ` and is never reset: no tweak is used twice under one `Δ`. The
//! session header carries the counter's value, so two parties whose counters disagree stop at
//! once with an error instead of computing garbage.
//!
//! **Public constants are folded.** A wire whose value is public has a fixed public label:
//! the evaluator holds `0` for `false` and [`PUBLIC_TRUE`] for `true`, the garbler's zero-labels
//! are `0` and `PUBLIC_TRUE ⊕ Δ`. NOT is XOR with the constant `true`, so these labels are closed
//! under XOR and NOT, and both parties recognise a public wire by its label alone (a secret
//! label equals one of them with probability `2^-127`). An AND with a public input is never
//! garbled: `x ∧ 0 = 0`, `x ∧ 1 = x`, no table, no tweak, no hash. So a garbled table never
//! hashes a label that the evaluator could know in both versions, and constant-heavy gadgets
//! (index multiplexers of argmax, clipping to constant bounds) cost fewer ANDs. The check is two
//! 128-bit comparisons per input on the bulk path, done once per call before the hashing.

use crate::block::Block;
use crate::channel::{Channel, ChannelError};
use crate::hash::{BATCH, FIXED_KEY_AES, TweakDomain};
use crate::ot::{CotReceiver, CotSender};
use crate::prg::Prg;

use super::{Backend, GcError, RevealTo, Role, bit_weight, check_len, pack_bits, unpack_bits};

/// Bytes of one garbled AND table on the wire.
pub const TABLE_BYTES: usize = 32;

/// Largest batch size (AND tables per message) a session may agree on (2 MiB messages).
pub const MAX_BATCH_ANDS: usize = 1 << 16;

/// The evaluator's (public) label of a wire whose value is the public constant `true`; the
/// garbler's zero-label of that wire is `PUBLIC_TRUE ⊕ Δ`. The constant `false` has label `0`
/// on both sides.
pub const PUBLIC_TRUE: Block = Block(1);

/// Gates hashed together by the batched cores (4 hashes per gate for the garbler fill one
/// [`BATCH`] of AES blocks).
const GATE_CHUNK: usize = BATCH / 4;

/// Session header: magic, version, circuit id, batch size, first tweak index.
const MAGIC: [u8; 4] = *b"PLGC";
const VERSION: u32 = 2;
pub(super) const HEADER_LEN: usize = 28;

/// AGREEMENT parameters of a garbled-circuit session; both parties must use equal values (the
/// evaluator checks them against the garbler's header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcConfig {
    /// Identifies the circuit both parties mean to run (for example a hash of the operation's
    /// name and shape). A mismatch aborts the session before any label is sent.
    pub circuit_id: u64,
    /// AND tables per message (at most [`MAX_BATCH_ANDS`]).
    pub batch_ands: usize,
}

/// Default [`GcConfig::batch_ands`]: 4096 tables (128 KiB messages).
pub const DEFAULT_BATCH_ANDS: usize = 4096;

impl GcConfig {
    /// A configuration for circuit `circuit_id` with the default batch of
    /// [`DEFAULT_BATCH_ANDS`] tables.
    pub fn new(circuit_id: u64) -> Self {
        GcConfig {
            circuit_id,
            batch_ands: DEFAULT_BATCH_ANDS,
        }
    }

    fn validate(&self) -> Result<(), GcError> {
        if self.batch_ands == 0 || self.batch_ands > MAX_BATCH_ANDS {
            return Err(GcError::usage(format!(
                "batch_ands must be in 1..={MAX_BATCH_ANDS}, got {}",
                self.batch_ands
            )));
        }
        Ok(())
    }

    /// The session header for a session whose first tweak index is `first_tweak`.
    pub(super) fn encode(&self, first_tweak: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&self.circuit_id.to_le_bytes());
        h[16..20].copy_from_slice(&(self.batch_ands as u32).to_le_bytes());
        h[20..28].copy_from_slice(&first_tweak.to_le_bytes());
        h
    }
}

/// If an AND gate has a public input, its output without garbling. `one` is this party's label
/// of the public `true` (the evaluator's [`PUBLIC_TRUE`], the garbler's `PUBLIC_TRUE ⊕ Δ`).
#[inline]
fn fold(a: Block, b: Block, one: Block) -> Option<Block> {
    if a == Block::ZERO || b == Block::ZERO {
        Some(Block::ZERO)
    } else if a == one {
        Some(b)
    } else if b == one {
        Some(a)
    } else {
        None
    }
}

/// Whether any input of a bulk AND is public (then the slow, folding path runs).
#[inline]
fn any_public(a: &[Block], b: &[Block], one: Block) -> bool {
    a.iter().chain(b).any(|&x| x == Block::ZERO || x == one)
}

/// The AND gates of a bulk call that need garbling: their operands and positions, the public
/// ones' outputs already in `out`.
struct Secret {
    a: Vec<Block>,
    b: Vec<Block>,
    pos: Vec<usize>,
}

fn split_public(a: &[Block], b: &[Block], one: Block, out: &mut [Block]) -> Secret {
    let mut s = Secret {
        a: Vec::with_capacity(a.len()),
        b: Vec::with_capacity(a.len()),
        pos: Vec::with_capacity(a.len()),
    };
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        match fold(x, y, one) {
            Some(c) => out[i] = c,
            None => {
                s.a.push(x);
                s.b.push(y);
                s.pos.push(i);
            }
        }
    }
    s
}

#[inline]
fn put_table(out: &mut Vec<u8>, tg: Block, te: Block) {
    out.extend_from_slice(&tg.to_bytes());
    out.extend_from_slice(&te.to_bytes());
}

#[inline]
fn get_table(t: &[u8]) -> (Block, Block) {
    let tg = Block::from_bytes(t[..16].try_into().expect("16 bytes"));
    let te = Block::from_bytes(t[16..32].try_into().expect("16 bytes"));
    (tg, te)
}

/// The synchronous half-gates garbling core: the global offset and the AND count. Tables are
/// appended to a caller-provided buffer ([`TABLE_BYTES`] per gate). The caller supplies the
/// tweak indices and must never repeat one under the same `Δ` ([`Garbler`] reserves them
/// from the COT sender's [`TweakCounter`](crate::ot::TweakCounter)).
#[derive(Clone)]
pub struct GarbleCore {
    delta: Block,
    ands: u64,
}

impl std::fmt::Debug for GarbleCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbleCore")
            .field("ands", &self.ands)
            .finish_non_exhaustive()
    }
}

impl GarbleCore {
    /// A core with free-XOR offset `delta`; its lsb must be 1 (point-and-permute).
    pub fn new(delta: Block) -> Result<Self, GcError> {
        if !delta.lsb() {
            return Err(GcError::usage("the free-XOR offset must have lsb 1"));
        }
        Ok(GarbleCore { delta, ands: 0 })
    }

    /// The free-XOR offset.
    pub fn delta(&self) -> Block {
        self.delta
    }

    /// AND gates garbled so far.
    pub fn ands(&self) -> u64 {
        self.ands
    }

    /// Garbles one AND gate with tweak index `tweak`; returns the output zero-label.
    pub fn and(&mut self, a0: Block, b0: Block, tweak: u64, tables: &mut Vec<u8>) -> Block {
        let d = self.delta;
        self.ands += 1;
        let xs = [a0, a0 ^ d, b0, b0 ^ d];
        let g = TweakDomain::GcGarblerHalf.tweak(tweak);
        let e = TweakDomain::GcEvaluatorHalf.tweak(tweak);
        let mut h = [Block::ZERO; 4];
        FIXED_KEY_AES.tccr_many(&[g, g, e, e], &xs, &mut h);
        let (c0, tg, te) = Self::finish_gate(d, a0, b0, &h);
        put_table(tables, tg, te);
        c0
    }

    #[inline]
    fn finish_gate(d: Block, a0: Block, b0: Block, h: &[Block]) -> (Block, Block, Block) {
        let pa = a0.lsb();
        let pb = b0.lsb();
        let tg = h[0] ^ h[1] ^ d.select(pb);
        let wg = h[0] ^ tg.select(pa);
        let te = h[2] ^ h[3] ^ a0;
        let we = h[2] ^ (te ^ a0).select(pb);
        (wg ^ we, tg, te)
    }

    /// Garbles independent AND gates `a0[i] ∧ b0[i]` with tweak indices `first_tweak + i`, in
    /// batches; appends the output zero-labels to `out` and the tables to `tables`.
    pub fn and_many(
        &mut self,
        a0: &[Block],
        b0: &[Block],
        first_tweak: u64,
        out: &mut Vec<Block>,
        tables: &mut Vec<u8>,
    ) {
        assert_eq!(a0.len(), b0.len(), "and_many: operand lengths differ");
        let d = self.delta;
        let mut xs = [Block::ZERO; BATCH];
        let mut tw = [Block::ZERO; BATCH];
        let mut h = [Block::ZERO; BATCH];
        tables.reserve(a0.len() * TABLE_BYTES);
        out.reserve(a0.len());
        let mut j = first_tweak;
        for (ca, cb) in a0.chunks(GATE_CHUNK).zip(b0.chunks(GATE_CHUNK)) {
            let n = ca.len();
            for i in 0..n {
                let g = TweakDomain::GcGarblerHalf.tweak(j + i as u64);
                let e = TweakDomain::GcEvaluatorHalf.tweak(j + i as u64);
                xs[4 * i] = ca[i];
                xs[4 * i + 1] = ca[i] ^ d;
                xs[4 * i + 2] = cb[i];
                xs[4 * i + 3] = cb[i] ^ d;
                tw[4 * i] = g;
                tw[4 * i + 1] = g;
                tw[4 * i + 2] = e;
                tw[4 * i + 3] = e;
            }
            j += n as u64;
            FIXED_KEY_AES.tccr_many(&tw[..4 * n], &xs[..4 * n], &mut h[..4 * n]);
            for i in 0..n {
                let (c0, tg, te) = Self::finish_gate(d, ca[i], cb[i], &h[4 * i..4 * i + 4]);
                put_table(tables, tg, te);
                out.push(c0);
            }
        }
        self.ands += a0.len() as u64;
    }
}

/// The synchronous half-gates evaluation core: the AND count. The caller supplies the same
/// tweak indices the garbler used.
#[derive(Clone, Debug, Default)]
pub struct EvalCore {
    ands: u64,
}

impl EvalCore {
    /// A core that has evaluated nothing.
    pub fn new() -> Self {
        EvalCore::default()
    }

    /// AND gates evaluated so far.
    pub fn ands(&self) -> u64 {
        self.ands
    }

    /// Evaluates one AND gate with its 32-byte table and tweak index `tweak`.
    pub fn and(&mut self, a: Block, b: Block, tweak: u64, table: &[u8]) -> Block {
        self.ands += 1;
        let mut h = [Block::ZERO; 2];
        let tw = [
            TweakDomain::GcGarblerHalf.tweak(tweak),
            TweakDomain::GcEvaluatorHalf.tweak(tweak),
        ];
        FIXED_KEY_AES.tccr_many(&tw, &[a, b], &mut h);
        let (tg, te) = get_table(table);
        h[0] ^ tg.select(a.lsb()) ^ h[1] ^ (te ^ a).select(b.lsb())
    }

    /// Evaluates independent AND gates with their tables (`32 · a.len()` bytes) and tweak
    /// indices `first_tweak + i`; appends the output labels to `out`.
    pub fn and_many(
        &mut self,
        a: &[Block],
        b: &[Block],
        first_tweak: u64,
        tables: &[u8],
        out: &mut Vec<Block>,
    ) {
        assert_eq!(a.len(), b.len(), "and_many: operand lengths differ");
        assert_eq!(
            tables.len(),
            a.len() * TABLE_BYTES,
            "and_many: wrong table bytes"
        );
        const CHUNK: usize = BATCH / 2;
        let mut xs = [Block::ZERO; BATCH];
        let mut tw = [Block::ZERO; BATCH];
        let mut h = [Block::ZERO; BATCH];
        out.reserve(a.len());
        let mut j = first_tweak;
        for ((ca, cb), ct) in a
            .chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .zip(tables.chunks(CHUNK * TABLE_BYTES))
        {
            let n = ca.len();
            for i in 0..n {
                xs[2 * i] = ca[i];
                xs[2 * i + 1] = cb[i];
                tw[2 * i] = TweakDomain::GcGarblerHalf.tweak(j + i as u64);
                tw[2 * i + 1] = TweakDomain::GcEvaluatorHalf.tweak(j + i as u64);
            }
            j += n as u64;
            FIXED_KEY_AES.tccr_many(&tw[..2 * n], &xs[..2 * n], &mut h[..2 * n]);
            for i in 0..n {
                let (tg, te) = get_table(&ct[TABLE_BYTES * i..TABLE_BYTES * (i + 1)]);
                let wa = ca[i];
                out.push(
                    h[2 * i] ^ tg.select(wa.lsb()) ^ h[2 * i + 1] ^ (te ^ wa).select(cb[i].lsb()),
                );
            }
        }
        self.ands += a.len() as u64;
    }
}

/// Hashes COT outputs to 64-bit values for Y2A, with tweak indices `first + i` (reserved from
/// the correlation's counter by the caller).
pub(super) fn arith_hash(first: u64, xs: &[Block]) -> Vec<u64> {
    let tw: Vec<Block> = (0..xs.len() as u64)
        .map(|i| TweakDomain::GcArith.tweak(first + i))
        .collect();
    let mut h = vec![Block::ZERO; xs.len()];
    FIXED_KEY_AES.tccr_many(&tw, xs, &mut h);
    h.into_iter().map(|b| b.0 as u64).collect()
}

fn word_bits<W: Copy>(words: &[Vec<W>]) -> Vec<W> {
    words.iter().flatten().copied().collect()
}

fn weights(words: &[Vec<Block>], signed: bool) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    for (k, w) in words.iter().enumerate() {
        for i in 0..w.len() {
            out.push((k, bit_weight(i, w.len(), signed)));
        }
    }
    out
}

fn check_words(words: &[Vec<Block>]) -> Result<(), GcError> {
    if let Some(w) = words.iter().find(|w| w.is_empty() || w.len() > 64) {
        return Err(GcError::usage(format!(
            "arith_shares: word width {} is not in 1..=64",
            w.len()
        )));
    }
    Ok(())
}

/// The garbler's end of a session: a [`Backend`] whose wires are zero-labels. Tables stream to
/// the channel in batches of [`GcConfig::batch_ands`]. Call [`Garbler::finish`] at the end.
pub struct Garbler<'a, C: Channel, S: CotSender> {
    ch: &'a mut C,
    cot: &'a mut S,
    core: GarbleCore,
    /// This party's zero-label of the public `true`: `PUBLIC_TRUE ⊕ Δ`.
    one: Block,
    prg: Prg,
    cfg: GcConfig,
    tables: Vec<u8>,
}

impl<C: Channel, S: CotSender> std::fmt::Debug for Garbler<'_, C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Garbler")
            .field("cfg", &self.cfg)
            .field("ands", &self.core.ands())
            .finish_non_exhaustive()
    }
}

impl<'a, C: Channel, S: CotSender> Garbler<'a, C, S> {
    /// Starts a session: sends the header. The free-XOR offset is the COT sender's `delta`,
    /// and gate tweaks come from its [`CotSender::tweaks`] (the header carries the counter's
    /// current value, which the evaluator checks against its mirror); `rng` seeds the labels
    /// of garbler-owned inputs. Any number of sessions may run over one sender, one after the
    /// other.
    pub async fn new<R: rand_core::CryptoRng + ?Sized>(
        ch: &'a mut C,
        cot: &'a mut S,
        rng: &mut R,
        cfg: GcConfig,
    ) -> Result<Self, GcError> {
        cfg.validate()?;
        let core = GarbleCore::new(cot.delta())?;
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        ch.send_bytes(&cfg.encode(cot.tweaks().used())).await?;
        Ok(Garbler {
            ch,
            one: PUBLIC_TRUE ^ core.delta,
            cot,
            core,
            prg: Prg::from_seed(seed),
            tables: Vec::with_capacity(cfg.batch_ands * TABLE_BYTES),
            cfg,
        })
    }

    /// AND gates garbled so far.
    pub fn ands(&self) -> u64 {
        self.core.ands()
    }

    async fn send_batch(&mut self) -> Result<(), GcError> {
        if !self.tables.is_empty() {
            self.ch.send_bytes(&self.tables).await?;
            self.tables.clear();
        }
        Ok(())
    }

    /// Garbles independent gates without public inputs, batch by batch, with fresh tweaks.
    async fn garble_many(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        let mut out = Vec::with_capacity(a.len());
        let mut i = 0;
        while i < a.len() {
            let room = self.cfg.batch_ands - self.tables.len() / TABLE_BYTES;
            let k = room.min(a.len() - i);
            let first = self.cot.tweaks().reserve(k as u64);
            self.core.and_many(
                &a[i..i + k],
                &b[i..i + k],
                first,
                &mut out,
                &mut self.tables,
            );
            i += k;
            if self.tables.len() >= self.cfg.batch_ands * TABLE_BYTES {
                self.send_batch().await?;
            }
        }
        Ok(out)
    }

    /// Sends the tables garbled so far (a synchronisation point; inputs, outputs and
    /// [`Garbler::finish`] call it).
    pub async fn flush_tables(&mut self) -> Result<(), GcError> {
        self.send_batch().await
    }

    /// Ends the session: sends the remaining tables and the AND count (the evaluator checks
    /// it), then flushes the channel. Returns the number of AND gates.
    pub async fn finish(mut self) -> Result<u64, GcError> {
        self.send_batch().await?;
        let n = self.core.ands();
        self.ch.send_bytes(&n.to_le_bytes()).await?;
        self.ch.flush().await?;
        Ok(n)
    }
}

impl<C: Channel, S: CotSender> Backend for Garbler<'_, C, S> {
    type Wire = Block;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        Some(Role::Garbler)
    }

    fn constant(&mut self, bit: bool) -> Block {
        self.one.select(bit)
    }

    fn xor(&mut self, a: Block, b: Block) -> Block {
        a ^ b
    }

    fn not(&mut self, a: Block) -> Block {
        a ^ self.one
    }

    async fn and(&mut self, a: Block, b: Block) -> Result<Block, GcError> {
        if let Some(c) = fold(a, b, self.one) {
            return Ok(c);
        }
        let j = self.cot.tweaks().reserve(1);
        let c = self.core.and(a, b, j, &mut self.tables);
        if self.tables.len() >= self.cfg.batch_ands * TABLE_BYTES {
            self.send_batch().await?;
        }
        Ok(c)
    }

    async fn and_n(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        check_len(a.len(), b.len(), "and_n")?;
        if !any_public(a, b, self.one) {
            return self.garble_many(a, b).await;
        }
        let mut out = vec![Block::ZERO; a.len()];
        let s = split_public(a, b, self.one, &mut out);
        let g = self.garble_many(&s.a, &s.b).await?;
        for (i, c) in s.pos.into_iter().zip(g) {
            out[i] = c;
        }
        Ok(out)
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<Block>, GcError> {
        match owner {
            Role::Garbler => {
                let bits = match bits {
                    Some(b) if b.len() == n => b,
                    _ => {
                        return Err(GcError::usage(format!(
                            "garbler input: the garbler must give exactly {n} bits"
                        )));
                    }
                };
                if n == 0 {
                    return Ok(Vec::new());
                }
                self.send_batch().await?;
                let d = self.core.delta;
                let zero: Vec<Block> = (0..n).map(|_| Block::random(&mut self.prg)).collect();
                let active: Vec<Block> = zero
                    .iter()
                    .zip(bits)
                    .map(|(&w, &b)| w ^ d.select(b))
                    .collect();
                self.ch.send_blocks(&active).await?;
                Ok(zero)
            }
            Role::Evaluator => {
                if bits.is_some() {
                    return Err(GcError::usage(
                        "evaluator input: the garbler cannot know the evaluator's bits",
                    ));
                }
                if n == 0 {
                    return Ok(Vec::new());
                }
                self.send_batch().await?;
                Ok(self.cot.send_cot(&mut *self.ch, n).await?)
            }
        }
    }

    async fn reveal(
        &mut self,
        wires: &[Block],
        to: RevealTo,
    ) -> Result<Option<Vec<bool>>, GcError> {
        if wires.is_empty() {
            return Ok(to.includes(Role::Garbler).then(Vec::new));
        }
        self.send_batch().await?;
        exchange_lsbs(
            &mut *self.ch,
            wires,
            to.includes(Role::Evaluator),
            to.includes(Role::Garbler),
            "garbled-circuit output bits",
        )
        .await
    }

    fn share(&mut self, wires: &[Block]) -> Result<Vec<bool>, GcError> {
        Ok(wires.iter().map(|w| w.lsb()).collect())
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<Block>],
        signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        check_words(words)?;
        let bits = word_bits(words);
        let mut shares = vec![0u64; words.len()];
        if bits.is_empty() {
            return Ok(shares);
        }
        self.send_batch().await?;
        let q = self.cot.send_cot(&mut *self.ch, bits.len()).await?;
        let first = self.cot.tweaks().reserve(bits.len() as u64);
        let d = self.core.delta;
        let q1: Vec<Block> = q.iter().map(|&x| x ^ d).collect();
        let h0 = arith_hash(first, &q);
        let h1 = arith_hash(first, &q1);
        let mut corr = Vec::with_capacity(bits.len());
        for (i, (k, w)) in weights(words, signed).into_iter().enumerate() {
            let p = bits[i].lsb();
            // The evaluator's bit e gets h0 + e·v with v = w·(1 − 2p): with the garbler's
            // p·w − h0 the shares sum to w·(p ⊕ e).
            let v = if p { w.wrapping_neg() } else { w };
            corr.push(h0[i].wrapping_sub(h1[i]).wrapping_add(v));
            shares[k] = shares[k]
                .wrapping_add(if p { w } else { 0 })
                .wrapping_sub(h0[i]);
        }
        self.ch.send_u64s(&corr).await?;
        Ok(shares)
    }
}

/// The evaluator's end of a session: a [`Backend`] whose wires are active labels. Call
/// [`Evaluator::finish`] at the end; it checks that the garbler garbled the same circuit size.
pub struct Evaluator<'a, C: Channel, R: CotReceiver> {
    ch: &'a mut C,
    cot: &'a mut R,
    core: EvalCore,
    cfg: GcConfig,
    tables: Vec<u8>,
    pos: usize,
    short: bool,
}

impl<C: Channel, R: CotReceiver> std::fmt::Debug for Evaluator<'_, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("cfg", &self.cfg)
            .field("ands", &self.core.ands())
            .finish_non_exhaustive()
    }
}

impl<'a, C: Channel, R: CotReceiver> Evaluator<'a, C, R> {
    /// Joins a session: receives the garbler's header and aborts if its version, circuit id,
    /// batch size or first tweak index differs from `cfg` and this receiver's
    /// [`CotReceiver::tweaks`] (the mirror of the garbler's sender counter).
    pub async fn new(ch: &'a mut C, cot: &'a mut R, cfg: GcConfig) -> Result<Self, GcError> {
        cfg.validate()?;
        let mut h = [0u8; HEADER_LEN];
        ch.recv_bytes_into(&mut h, "garbled-circuit session header")
            .await?;
        let first_tweak = cot.tweaks().used();
        let mine = cfg.encode(first_tweak);
        let mut ev = Evaluator {
            ch,
            cot,
            core: EvalCore::new(),
            cfg,
            tables: Vec::new(),
            pos: 0,
            short: false,
        };
        if h != mine {
            let u32_at =
                |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
            let u64_at =
                |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
            let reason = if h[..4] != MAGIC {
                "the peer's message is not a garbled-circuit session header".to_string()
            } else if u32_at(&h, 4) != VERSION {
                format!(
                    "garbled-circuit protocol version mismatch: ours {VERSION}, the garbler's {}",
                    u32_at(&h, 4)
                )
            } else if u64_at(&h, 8) != cfg.circuit_id {
                format!(
                    "garbled circuit not agreed: our circuit id is {:#018x}, the garbler's {:#018x}",
                    cfg.circuit_id,
                    u64_at(&h, 8)
                )
            } else if u32_at(&h, 16) as usize != cfg.batch_ands {
                format!(
                    "garbled-table batch size not agreed: ours {} ANDs, the garbler's {}",
                    cfg.batch_ands,
                    u32_at(&h, 16)
                )
            } else {
                format!(
                    "hash-tweak counters out of step: ours is at {first_tweak}, the garbler's at \
                     {} (the two correlated-OT ends were not used alike)",
                    u64_at(&h, 20)
                )
            };
            return Err(ev.fail(reason).await);
        }
        Ok(ev)
    }

    /// AND gates evaluated so far.
    pub fn ands(&self) -> u64 {
        self.core.ands()
    }

    async fn fail(&mut self, reason: String) -> GcError {
        let _ = self.ch.abort(&reason).await;
        GcError::Protocol(reason)
    }

    /// Makes sure at least one table is buffered.
    async fn need_tables(&mut self) -> Result<(), GcError> {
        if self.pos < self.tables.len() {
            return Ok(());
        }
        if self.short {
            let reason = format!(
                "the garbler sent a short batch of {} garbled tables in the middle of the \
                 circuit (agreed batch: {} tables)",
                self.tables.len() / TABLE_BYTES,
                self.cfg.batch_ands
            );
            return Err(self.fail(reason).await);
        }
        let max = self.cfg.batch_ands * TABLE_BYTES;
        let bytes = match self.ch.recv_bytes_bounded(max).await {
            Ok(b) => b,
            // The channel refuses (and aborts on) a message above the bound itself.
            Err(e @ (ChannelError::MessageTooLarge { .. } | ChannelError::Aborted(_))) => {
                return Err(GcError::Protocol(format!(
                    "garbled-table batch exceeds the agreed {} tables ({max} bytes): {e}",
                    self.cfg.batch_ands
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if bytes.is_empty() || bytes.len() % TABLE_BYTES != 0 {
            let reason = format!(
                "garbled-table batch of {} bytes is not a positive multiple of {TABLE_BYTES}",
                bytes.len()
            );
            return Err(self.fail(reason).await);
        }
        self.short = bytes.len() < max;
        self.tables = bytes;
        self.pos = 0;
        Ok(())
    }

    /// Evaluates independent gates without public inputs, table batch by table batch, with
    /// the tweaks the garbler used.
    async fn evaluate_many(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        let mut out = Vec::with_capacity(a.len());
        let mut i = 0;
        while i < a.len() {
            self.need_tables().await?;
            let avail = (self.tables.len() - self.pos) / TABLE_BYTES;
            let k = avail.min(a.len() - i);
            let first = self.cot.tweaks().reserve(k as u64);
            let t = &self.tables[self.pos..self.pos + k * TABLE_BYTES];
            self.core
                .and_many(&a[i..i + k], &b[i..i + k], first, t, &mut out);
            self.pos += k * TABLE_BYTES;
            i += k;
        }
        Ok(out)
    }

    /// At a synchronisation point every table received must have been used.
    async fn sync_point(&mut self, what: &str) -> Result<(), GcError> {
        if self.pos < self.tables.len() {
            let reason = format!(
                "the garbler sent {} garbled tables more than the circuit uses before {what}",
                (self.tables.len() - self.pos) / TABLE_BYTES
            );
            return Err(self.fail(reason).await);
        }
        self.short = false;
        Ok(())
    }

    /// Ends the session: checks that no table is left over and that the garbler garbled as
    /// many AND gates as were evaluated. Returns the number of AND gates.
    pub async fn finish(mut self) -> Result<u64, GcError> {
        self.sync_point("the end of the session").await?;
        let mut b = [0u8; 8];
        self.ch
            .recv_bytes_into(&mut b, "garbled-circuit AND count")
            .await?;
        let theirs = u64::from_le_bytes(b);
        let mine = self.core.ands();
        if theirs != mine {
            let reason =
                format!("the garbler garbled {theirs} AND gates but the agreed circuit has {mine}");
            return Err(self.fail(reason).await);
        }
        Ok(mine)
    }
}

impl<C: Channel, R: CotReceiver> Backend for Evaluator<'_, C, R> {
    type Wire = Block;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        Some(Role::Evaluator)
    }

    fn constant(&mut self, bit: bool) -> Block {
        PUBLIC_TRUE.select(bit)
    }

    fn xor(&mut self, a: Block, b: Block) -> Block {
        a ^ b
    }

    fn not(&mut self, a: Block) -> Block {
        a ^ PUBLIC_TRUE
    }

    async fn and(&mut self, a: Block, b: Block) -> Result<Block, GcError> {
        if let Some(c) = fold(a, b, PUBLIC_TRUE) {
            return Ok(c);
        }
        self.need_tables().await?;
        let j = self.cot.tweaks().reserve(1);
        let t = &self.tables[self.pos..self.pos + TABLE_BYTES];
        self.pos += TABLE_BYTES;
        Ok(self.core.and(a, b, j, t))
    }

    async fn and_n(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        check_len(a.len(), b.len(), "and_n")?;
        if !any_public(a, b, PUBLIC_TRUE) {
            return self.evaluate_many(a, b).await;
        }
        let mut out = vec![Block::ZERO; a.len()];
        let s = split_public(a, b, PUBLIC_TRUE, &mut out);
        let g = self.evaluate_many(&s.a, &s.b).await?;
        for (i, c) in s.pos.into_iter().zip(g) {
            out[i] = c;
        }
        Ok(out)
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<Block>, GcError> {
        match owner {
            Role::Garbler => {
                if bits.is_some() {
                    return Err(GcError::usage(
                        "garbler input: the evaluator cannot know the garbler's bits",
                    ));
                }
                if n == 0 {
                    return Ok(Vec::new());
                }
                self.sync_point("the garbler's input labels").await?;
                Ok(self.ch.recv_blocks(n, "garbler input labels").await?)
            }
            Role::Evaluator => {
                let bits = match bits {
                    Some(b) if b.len() == n => b,
                    _ => {
                        return Err(GcError::usage(format!(
                            "evaluator input: the evaluator must give exactly {n} bits"
                        )));
                    }
                };
                if n == 0 {
                    return Ok(Vec::new());
                }
                self.sync_point("the evaluator's input OTs").await?;
                Ok(self.cot.recv_cot(&mut *self.ch, bits).await?)
            }
        }
    }

    async fn reveal(
        &mut self,
        wires: &[Block],
        to: RevealTo,
    ) -> Result<Option<Vec<bool>>, GcError> {
        if wires.is_empty() {
            return Ok(to.includes(Role::Evaluator).then(Vec::new));
        }
        self.sync_point("an output").await?;
        exchange_lsbs(
            &mut *self.ch,
            wires,
            to.includes(Role::Garbler),
            to.includes(Role::Evaluator),
            "garbled-circuit output decoding bits",
        )
        .await
    }

    fn share(&mut self, wires: &[Block]) -> Result<Vec<bool>, GcError> {
        Ok(wires.iter().map(|w| w.lsb()).collect())
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<Block>],
        signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        check_words(words)?;
        let bits = word_bits(words);
        let mut shares = vec![0u64; words.len()];
        if bits.is_empty() {
            return Ok(shares);
        }
        self.sync_point("a conversion to arithmetic shares").await?;
        let e: Vec<bool> = bits.iter().map(|w| w.lsb()).collect();
        let t = self.cot.recv_cot(&mut *self.ch, &e).await?;
        let first = self.cot.tweaks().reserve(bits.len() as u64);
        let h = arith_hash(first, &t);
        let corr = self
            .ch
            .recv_u64s(bits.len(), "B2A correction words")
            .await?;
        for (i, (k, _)) in weights(words, signed).into_iter().enumerate() {
            let got = h[i].wrapping_add(if e[i] { corr[i] } else { 0 });
            shares[k] = shares[k].wrapping_add(got);
        }
        Ok(shares)
    }
}

/// Output decoding, the same on both sides: a wire's value is the XOR of the garbler's
/// permute bit and the evaluator's label lsb. Sends this side's lsbs if `send`; if `recv`,
/// receives the peer's and returns the decoded values.
async fn exchange_lsbs<C: Channel>(
    ch: &mut C,
    wires: &[Block],
    send: bool,
    recv: bool,
    what: &str,
) -> Result<Option<Vec<bool>>, GcError> {
    let mine = wires.iter().map(|w| w.lsb());
    if send {
        ch.send_bytes(&pack_bits(mine.clone())).await?;
    }
    if !recv {
        return Ok(None);
    }
    let mut buf = vec![0u8; wires.len().div_ceil(8)];
    ch.recv_bytes_into(&mut buf, what).await?;
    let theirs = unpack_bits(&buf, wires.len());
    Ok(Some(mine.zip(theirs).map(|(a, b)| a ^ b).collect()))
}
