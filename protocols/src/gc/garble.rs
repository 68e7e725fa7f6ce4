//! Half-gates garbling (Zahur-Rosulek-Evans 2015) and evaluation: the synchronous cores and
//! the streaming [`Garbler`] / [`Evaluator`] backends over a channel.
//!
//! For an AND gate number `k` with input zero-labels `A0`, `B0`, permute bits
//! `pa = lsb(A0)`, `pb = lsb(B0)`, tweaks `j = 2k`, `j' = 2k + 1` and `H = TCCR`:
//! - generator half: `TG = H(j, A0) ⊕ H(j, A1) ⊕ pb·Δ`, `WG0 = H(j, A0) ⊕ pa·TG`;
//! - evaluator half: `TE = H(j', B0) ⊕ H(j', B1) ⊕ A0`, `WE0 = H(j', B0) ⊕ pb·(TE ⊕ A0)`;
//! - output zero-label `C0 = WG0 ⊕ WE0`; the table is `(TG, TE)`, 32 bytes.
//!
//! The evaluator with labels `Wa`, `Wb` computes
//! `Wc = H(j, Wa) ⊕ lsb(Wa)·TG ⊕ H(j', Wb) ⊕ lsb(Wb)·(TE ⊕ Wa)`.

use crate::block::Block;
use crate::channel::{Channel, ChannelError};
use crate::hash::{BATCH, FIXED_KEY_AES};
use crate::ot::{CotReceiver, CotSender};
use crate::prg::Prg;

use super::{Backend, GcError, RevealTo, Role, bit_weight, check_len, pack_bits, unpack_bits};

/// Bytes of one garbled AND table on the wire.
pub const TABLE_BYTES: usize = 32;

/// Largest batch size (AND tables per message) a session may agree on (2 MiB messages).
pub const MAX_BATCH_ANDS: usize = 1 << 16;

/// Gates hashed together by the batched cores (4 hashes per gate for the garbler fill one
/// [`BATCH`] of AES blocks).
const GATE_CHUNK: usize = BATCH / 4;

/// Session header: magic, version, circuit id, batch size.
const MAGIC: [u8; 4] = *b"PLGC";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;

/// Tweak domain of the B2A hashes (disjoint from the gate tweaks `2k`, `2k + 1`).
const B2A_TWEAK: u128 = 1 << 127;

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

impl GcConfig {
    /// A configuration for circuit `circuit_id` with the default batch of 4096 tables (128 KiB
    /// messages).
    pub fn new(circuit_id: u64) -> Self {
        GcConfig {
            circuit_id,
            batch_ands: 4096,
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

    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&self.circuit_id.to_le_bytes());
        h[16..20].copy_from_slice(&(self.batch_ands as u32).to_le_bytes());
        h
    }
}

#[inline]
fn tweak(j: u64) -> Block {
    Block(j as u128)
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

/// The synchronous half-gates garbling core: the global offset and the gate counter. Tables
/// are appended to a caller-provided buffer ([`TABLE_BYTES`] per gate).
#[derive(Clone)]
pub struct GarbleCore {
    delta: Block,
    gate: u64,
}

impl std::fmt::Debug for GarbleCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbleCore")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl GarbleCore {
    /// A core with free-XOR offset `delta`; its lsb must be 1 (point-and-permute).
    pub fn new(delta: Block) -> Result<Self, GcError> {
        if !delta.lsb() {
            return Err(GcError::usage("the free-XOR offset must have lsb 1"));
        }
        Ok(GarbleCore { delta, gate: 0 })
    }

    /// The free-XOR offset.
    pub fn delta(&self) -> Block {
        self.delta
    }

    /// AND gates garbled so far.
    pub fn ands(&self) -> u64 {
        self.gate
    }

    /// Garbles one AND gate; returns the output zero-label.
    pub fn and(&mut self, a0: Block, b0: Block, tables: &mut Vec<u8>) -> Block {
        let d = self.delta;
        let j = 2 * self.gate;
        self.gate += 1;
        let xs = [a0, a0 ^ d, b0, b0 ^ d];
        let tw = [tweak(j), tweak(j), tweak(j + 1), tweak(j + 1)];
        let mut h = [Block::ZERO; 4];
        FIXED_KEY_AES.tccr_many(&tw, &xs, &mut h);
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

    /// Garbles independent AND gates `a0[i] ∧ b0[i]` in batches; appends the output
    /// zero-labels to `out` and the tables to `tables`.
    pub fn and_many(
        &mut self,
        a0: &[Block],
        b0: &[Block],
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
        for (ca, cb) in a0.chunks(GATE_CHUNK).zip(b0.chunks(GATE_CHUNK)) {
            let n = ca.len();
            for i in 0..n {
                let j = 2 * (self.gate + i as u64);
                xs[4 * i] = ca[i];
                xs[4 * i + 1] = ca[i] ^ d;
                xs[4 * i + 2] = cb[i];
                xs[4 * i + 3] = cb[i] ^ d;
                tw[4 * i] = tweak(j);
                tw[4 * i + 1] = tweak(j);
                tw[4 * i + 2] = tweak(j + 1);
                tw[4 * i + 3] = tweak(j + 1);
            }
            self.gate += n as u64;
            FIXED_KEY_AES.tccr_many(&tw[..4 * n], &xs[..4 * n], &mut h[..4 * n]);
            for i in 0..n {
                let (c0, tg, te) = Self::finish_gate(d, ca[i], cb[i], &h[4 * i..4 * i + 4]);
                put_table(tables, tg, te);
                out.push(c0);
            }
        }
    }
}

/// The synchronous half-gates evaluation core: the gate counter.
#[derive(Clone, Debug, Default)]
pub struct EvalCore {
    gate: u64,
}

impl EvalCore {
    /// A core at gate 0.
    pub fn new() -> Self {
        EvalCore::default()
    }

    /// AND gates evaluated so far.
    pub fn ands(&self) -> u64 {
        self.gate
    }

    /// Evaluates one AND gate with its 32-byte table.
    pub fn and(&mut self, a: Block, b: Block, table: &[u8]) -> Block {
        let j = 2 * self.gate;
        self.gate += 1;
        let mut h = [Block::ZERO; 2];
        FIXED_KEY_AES.tccr_many(&[tweak(j), tweak(j + 1)], &[a, b], &mut h);
        let (tg, te) = get_table(table);
        h[0] ^ tg.select(a.lsb()) ^ h[1] ^ (te ^ a).select(b.lsb())
    }

    /// Evaluates independent AND gates with their tables (`32 · a.len()` bytes); appends the
    /// output labels to `out`.
    pub fn and_many(&mut self, a: &[Block], b: &[Block], tables: &[u8], out: &mut Vec<Block>) {
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
        for ((ca, cb), ct) in a
            .chunks(CHUNK)
            .zip(b.chunks(CHUNK))
            .zip(tables.chunks(CHUNK * TABLE_BYTES))
        {
            let n = ca.len();
            for i in 0..n {
                let j = 2 * (self.gate + i as u64);
                xs[2 * i] = ca[i];
                xs[2 * i + 1] = cb[i];
                tw[2 * i] = tweak(j);
                tw[2 * i + 1] = tweak(j + 1);
            }
            self.gate += n as u64;
            FIXED_KEY_AES.tccr_many(&tw[..2 * n], &xs[..2 * n], &mut h[..2 * n]);
            for i in 0..n {
                let (tg, te) = get_table(&ct[TABLE_BYTES * i..TABLE_BYTES * (i + 1)]);
                let wa = ca[i];
                out.push(
                    h[2 * i] ^ tg.select(wa.lsb()) ^ h[2 * i + 1] ^ (te ^ wa).select(cb[i].lsb()),
                );
            }
        }
    }
}

/// Hashes COT outputs to 64-bit values for B2A, with the running counter as tweak.
fn b2a_hash(counter: &mut u64, xs: &[Block]) -> Vec<u64> {
    let tw: Vec<Block> = (0..xs.len() as u64)
        .map(|i| Block(B2A_TWEAK | (*counter + i) as u128))
        .collect();
    *counter += xs.len() as u64;
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
    prg: Prg,
    cfg: GcConfig,
    tables: Vec<u8>,
    b2a_counter: u64,
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
    /// Starts a session: sends the header. The free-XOR offset is the COT sender's `delta`;
    /// `rng` seeds the labels of garbler-owned inputs.
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
        ch.send_bytes(&cfg.encode()).await?;
        Ok(Garbler {
            ch,
            cot,
            core,
            prg: Prg::from_seed(seed),
            tables: Vec::with_capacity(cfg.batch_ands * TABLE_BYTES),
            cfg,
            b2a_counter: 0,
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
        self.core.delta.select(bit)
    }

    fn xor(&mut self, a: Block, b: Block) -> Block {
        a ^ b
    }

    fn not(&mut self, a: Block) -> Block {
        a ^ self.core.delta
    }

    async fn and(&mut self, a: Block, b: Block) -> Result<Block, GcError> {
        let c = self.core.and(a, b, &mut self.tables);
        if self.tables.len() >= self.cfg.batch_ands * TABLE_BYTES {
            self.send_batch().await?;
        }
        Ok(c)
    }

    async fn and_n(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        check_len(a.len(), b.len(), "and_n")?;
        let mut out = Vec::with_capacity(a.len());
        let mut i = 0;
        while i < a.len() {
            let room = self.cfg.batch_ands - self.tables.len() / TABLE_BYTES;
            let k = room.min(a.len() - i);
            self.core
                .and_many(&a[i..i + k], &b[i..i + k], &mut out, &mut self.tables);
            i += k;
            if self.tables.len() >= self.cfg.batch_ands * TABLE_BYTES {
                self.send_batch().await?;
            }
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
        let d = self.core.delta;
        let q1: Vec<Block> = q.iter().map(|&x| x ^ d).collect();
        let mut c0 = self.b2a_counter;
        let h0 = b2a_hash(&mut c0, &q);
        let h1 = b2a_hash(&mut self.b2a_counter, &q1);
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
    b2a_counter: u64,
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
    /// Joins a session: receives the garbler's header and aborts if its version, circuit id
    /// or batch size differs from `cfg`.
    pub async fn new(ch: &'a mut C, cot: &'a mut R, cfg: GcConfig) -> Result<Self, GcError> {
        cfg.validate()?;
        let mut h = [0u8; HEADER_LEN];
        ch.recv_bytes_into(&mut h, "garbled-circuit session header")
            .await?;
        let mine = cfg.encode();
        let mut ev = Evaluator {
            ch,
            cot,
            core: EvalCore::new(),
            cfg,
            tables: Vec::new(),
            pos: 0,
            short: false,
            b2a_counter: 0,
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
            } else {
                format!(
                    "garbled-table batch size not agreed: ours {} ANDs, the garbler's {}",
                    cfg.batch_ands,
                    u32_at(&h, 16)
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

    fn constant(&mut self, _bit: bool) -> Block {
        Block::ZERO
    }

    fn xor(&mut self, a: Block, b: Block) -> Block {
        a ^ b
    }

    fn not(&mut self, a: Block) -> Block {
        a
    }

    async fn and(&mut self, a: Block, b: Block) -> Result<Block, GcError> {
        self.need_tables().await?;
        let t = &self.tables[self.pos..self.pos + TABLE_BYTES];
        self.pos += TABLE_BYTES;
        Ok(self.core.and(a, b, t))
    }

    async fn and_n(&mut self, a: &[Block], b: &[Block]) -> Result<Vec<Block>, GcError> {
        check_len(a.len(), b.len(), "and_n")?;
        let mut out = Vec::with_capacity(a.len());
        let mut i = 0;
        while i < a.len() {
            self.need_tables().await?;
            let avail = (self.tables.len() - self.pos) / TABLE_BYTES;
            let k = avail.min(a.len() - i);
            let t = &self.tables[self.pos..self.pos + k * TABLE_BYTES];
            self.core.and_many(&a[i..i + k], &b[i..i + k], t, &mut out);
            self.pos += k * TABLE_BYTES;
            i += k;
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
        let h = b2a_hash(&mut self.b2a_counter, &t);
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
