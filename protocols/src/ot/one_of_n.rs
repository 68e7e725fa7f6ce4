//! 1-out-of-N oblivious transfer from `log2 N` random 1-out-of-2 OTs.
//!
//! **Functionality** `F_(N choose 1)-OT^w`: the sender inputs a table of `N = 2^k` messages
//! `m_0, ..., m_{N-1}` of `w` bits each; the receiver inputs a choice `c ∈ [0, N)` and learns
//! `m_c` and nothing else; the sender learns nothing.
//!
//! **Construction** (Naor and Pinkas, "Oblivious transfer and polynomial evaluation", STOC'99,
//! section 4: 1-out-of-N from `log N` 1-out-of-2 OTs of keys, with the messages masked by the XOR
//! of pseudorandom functions of the keys), run on *random* OTs so they can come from a dealer or
//! from OT extension in preprocessing (the derandomization of Beaver, "Precomputing oblivious
//! transfer", CRYPTO'95):
//!
//! 1. Preprocessing: `k` random OTs; the sender has key pairs `(K_j^0, K_j^1)`, the receiver
//!    random bits `r_j` and `K_j^{r_j}`.
//! 2. Receiver → sender: `d_j = c_j ⊕ r_j` for the `k` bits `c_j` of its choice (`k` bits).
//! 3. Sender → receiver: for every `v ∈ [0, N)`, `y_v = m_v ⊕ ⨁_j F(K_j^{v_j ⊕ d_j}, v)`
//!    (`N·w` bits).
//! 4. Receiver: `m_c = y_c ⊕ ⨁_j F(K_j^{r_j}, c)`, since `c_j ⊕ d_j = r_j`.
//!
//! For `v ≠ c` some bit `v_j ≠ c_j`, so `y_v` is masked under the key `K_j^{1 ⊕ r_j}` the
//! receiver never saw. `F(K, v)` is the `v`-th `w`-bit slot of the expansion
//! `TCCR(tweak_j_b, K) || TCCR(tweak_j_(b+1), K) || ...` with the tweakable circular
//! correlation-robust hash of [`crate::hash`] (Guo et al., S&P'20); slots never straddle two
//! 128-bit blocks. Distinct `v` under one key read distinct slots, so the masks are independent.
//!
//! **Cost** per instance: `k = log2 N` random OTs, `k` bits receiver → sender, `N·w` bits
//! sender → receiver, two message flights per batch (plus an 8-byte count tag and a 4-byte
//! frame header per message, amortized over the batch). For `N = 16, w = 2` (the millionaires'
//! digit) that is 4 ROTs and 36 bits. Computation: the sender hashes `2k·⌈N/⌊128/w⌋⌉` blocks,
//! the receiver `k`.
//!
//! This module also holds the bit-packing helpers and count-tagged messages the other OT
//! applications share ([`crate::ot::millionaire`], [`crate::ot::b2a`], [`crate::ot::gilboa`]).

use crate::block::Block;
use crate::channel::Channel;
use crate::hash::FIXED_KEY_AES;

use super::{OtError, RotReceiver, RotSender};

/// Largest `k = log2 N` accepted (tables of up to 4096 messages).
pub const MAX_LOG_N: u32 = 12;

/// Instances per batch in [`send_one_of_n`] / [`recv_one_of_n`]: a batch is one message each way.
pub const CHUNK: usize = 4096;

/// Domain separator placed in the tweaks of this module's hashes.
const DOMAIN: u128 = 0x1_0f_4e << 96;

/// Shape of a 1-out-of-N OT: `N = 2^log_n` messages of `width` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneOfN {
    /// `k = log2 N`, in `1..=MAX_LOG_N`.
    pub log_n: u32,
    /// Message width in bits, in `1..=64`.
    pub width: u32,
}

impl OneOfN {
    /// `N`.
    pub fn n(&self) -> usize {
        1usize << self.log_n
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=MAX_LOG_N).contains(&self.log_n) {
            return Err(format!(
                "1-of-N OT: log2 N = {} outside 1..={MAX_LOG_N}",
                self.log_n
            ));
        }
        if !(1..=64).contains(&self.width) {
            return Err(format!(
                "1-of-N OT: message width {} outside 1..=64",
                self.width
            ));
        }
        Ok(())
    }

    /// Slots of `width` bits per 128-bit hash block.
    fn slots_per_block(&self) -> usize {
        (128 / self.width) as usize
    }

    /// Hash blocks per key expansion.
    fn blocks(&self) -> usize {
        self.n().div_ceil(self.slots_per_block())
    }

    fn slot(&self, blocks: &[Block], v: usize) -> u64 {
        let spb = self.slots_per_block();
        let b = blocks[v / spb].0;
        let off = (v % spb) as u32 * self.width;
        (b >> off) as u64 & mask(self.width)
    }
}

/// The low `w` bits set (`w` in `0..=64`).
pub(crate) fn mask(w: u32) -> u64 {
    if w >= 64 { u64::MAX } else { (1u64 << w) - 1 }
}

fn tweak(j: usize, blk: usize) -> Block {
    Block(DOMAIN | ((j as u128) << 32) | blk as u128)
}

/// Appends values of `0..=64` bits each, least significant bit first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    words: Vec<u64>,
    nbits: usize,
}

impl BitWriter {
    /// A writer with room for `bits` bits.
    pub(crate) fn with_capacity(bits: usize) -> Self {
        BitWriter {
            words: Vec::with_capacity(bits.div_ceil(64)),
            nbits: 0,
        }
    }

    /// Appends the low `w` bits of `v`.
    pub(crate) fn push(&mut self, v: u64, w: u32) {
        if w == 0 {
            return;
        }
        let v = v & mask(w);
        let off = (self.nbits % 64) as u32;
        if off == 0 {
            self.words.push(v);
        } else {
            *self.words.last_mut().expect("nonempty when off > 0") |= v << off;
            if off + w > 64 {
                self.words.push(v >> (64 - off));
            }
        }
        self.nbits += w as usize;
    }

    /// Appends one bit.
    pub(crate) fn push_bit(&mut self, b: bool) {
        self.push(b as u64, 1);
    }

    /// Bits written so far.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nbits
    }

    fn into_bytes_after(self, prefix: &[u8]) -> Vec<u8> {
        let nbytes = self.nbits.div_ceil(8);
        let mut out = Vec::with_capacity(prefix.len() + nbytes);
        out.extend_from_slice(prefix);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.truncate(prefix.len() + nbytes);
        out
    }
}

/// Reads values written by [`BitWriter`], sequentially or at a bit position.
#[derive(Debug)]
pub(crate) struct BitReader {
    words: Vec<u64>,
    pos: usize,
}

impl BitReader {
    fn from_bytes(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8) + 1];
        for (i, c) in bytes.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            words[i] = u64::from_le_bytes(b);
        }
        BitReader { words, pos: 0 }
    }

    /// The `w` bits at bit position `pos`.
    pub(crate) fn read_at(&self, pos: usize, w: u32) -> u64 {
        if w == 0 {
            return 0;
        }
        let i = pos / 64;
        let off = (pos % 64) as u32;
        let mut v = self.words[i] >> off;
        if off + w > 64 {
            v |= self.words[i + 1] << (64 - off);
        }
        v & mask(w)
    }

    /// The next `w` bits.
    pub(crate) fn read(&mut self, w: u32) -> u64 {
        let v = self.read_at(self.pos, w);
        self.pos += w as usize;
        v
    }

    /// The next bit.
    pub(crate) fn read_bit(&mut self) -> bool {
        self.read(1) == 1
    }
}

/// Sends a bit string prefixed by an 8-byte tag (the instance count both sides agreed on).
pub(crate) async fn send_packed<C: Channel>(
    ch: &mut C,
    tag: u64,
    bits: BitWriter,
) -> Result<(), OtError> {
    let bytes = bits.into_bytes_after(&tag.to_le_bytes());
    ch.send_bytes(&bytes).await?;
    Ok(())
}

/// Receives what [`send_packed`] sent: checks the tag against `tag` and the length against
/// `nbits` (both derived from this party's own parameters) and that the padding bits are zero;
/// any mismatch aborts the session with a reason naming `ctx`. Allocates at most
/// `8 + ceil(nbits / 8)` bytes.
pub(crate) async fn recv_packed<C: Channel>(
    ch: &mut C,
    tag: u64,
    nbits: usize,
    ctx: &str,
) -> Result<BitReader, OtError> {
    let expected = 8 + nbits.div_ceil(8);
    let bytes = ch.recv_bytes_bounded(expected).await?;
    let reason = if bytes.len() < 8 {
        Some(format!(
            "{ctx}: message of {} bytes is shorter than its count tag",
            bytes.len()
        ))
    } else {
        let got = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if got != tag {
            Some(format!(
                "{ctx}: peer's count {got} disagrees with ours ({tag})"
            ))
        } else if bytes.len() != expected {
            Some(format!(
                "{ctx}: expected {expected} bytes, peer sent {}",
                bytes.len()
            ))
        } else if !nbits.is_multiple_of(8) && bytes[expected - 1] >> (nbits % 8) != 0 {
            Some(format!("{ctx}: nonzero padding bits"))
        } else {
            None
        }
    };
    if let Some(r) = reason {
        return Err(ch.abort(&r).await.into());
    }
    Ok(BitReader::from_bytes(&bytes[8..]))
}

/// Aborts the session because this party's own arguments are inconsistent (a caller bug that
/// would otherwise leave the peer waiting).
pub(crate) async fn abort_local<C: Channel>(ch: &mut C, reason: String) -> OtError {
    ch.abort(&reason).await.into()
}

/// Sender of a batch of 1-of-N OTs whose instances may differ in shape (`specs[i]`); `tables`
/// holds `specs[i].n()` messages for each instance in order. One message each way.
pub(crate) async fn send_mixed<C: Channel, S: RotSender>(
    ot: &mut S,
    ch: &mut C,
    specs: &[OneOfN],
    tables: &[u64],
    ctx: &str,
) -> Result<(), OtError> {
    let mut k_total = 0usize;
    let mut n_total = 0usize;
    let mut out_bits = 0usize;
    for s in specs {
        if let Err(r) = s.check() {
            return Err(abort_local(ch, format!("{ctx}: {r}")).await);
        }
        k_total += s.log_n as usize;
        n_total += s.n();
        out_bits += s.n() * s.width as usize;
    }
    if tables.len() != n_total {
        let r = format!(
            "{ctx}: sender has {} table entries for instances that need {n_total}",
            tables.len()
        );
        return Err(abort_local(ch, r).await);
    }
    let keys = ot.send_rot(ch, k_total).await?;
    if keys.len() != k_total {
        return Err(abort_local(ch, format!("{ctx}: random OT source returned too few OTs")).await);
    }
    let mut d = recv_packed(ch, specs.len() as u64, k_total, ctx).await?;

    // Expand every key: exp[(j-th key of the batch, bit b)] = blocks of TCCR output.
    let mut tweaks = Vec::new();
    let mut xs = Vec::new();
    for (s, kk) in specs.iter().zip(chunks_by(&keys, specs)) {
        for (j, pair) in kk.iter().enumerate() {
            for key in pair {
                for blk in 0..s.blocks() {
                    tweaks.push(tweak(j, blk));
                    xs.push(*key);
                }
            }
        }
    }
    let mut exp = vec![Block::ZERO; xs.len()];
    FIXED_KEY_AES.tccr_many(&tweaks, &xs, &mut exp);

    let mut w = BitWriter::with_capacity(out_bits);
    let mut e_off = 0usize;
    let mut t_off = 0usize;
    let mut dbits = [false; MAX_LOG_N as usize];
    for s in specs {
        let k = s.log_n as usize;
        let nb = s.blocks();
        for db in dbits.iter_mut().take(k) {
            *db = d.read_bit();
        }
        // Walk the slots block by block (no division in the inner loop).
        let spb = s.slots_per_block();
        let m = mask(s.width);
        let n = s.n();
        let mut v = 0usize;
        for blk in 0..nb {
            for t in 0..spb.min(n - v) {
                let off = t as u32 * s.width;
                let mut pad = 0u64;
                for (j, &dj) in dbits.iter().enumerate().take(k) {
                    let b = (((v >> j) & 1) == 1) ^ dj;
                    pad ^= (exp[e_off + (2 * j + b as usize) * nb + blk].0 >> off) as u64;
                }
                w.push(tables[t_off + v] ^ (pad & m), s.width);
                v += 1;
            }
        }
        e_off += 2 * k * nb;
        t_off += s.n();
    }
    send_packed(ch, specs.len() as u64, w).await
}

fn chunks_by<'a, T>(items: &'a [T], specs: &'a [OneOfN]) -> impl Iterator<Item = &'a [T]> + 'a {
    let mut off = 0usize;
    specs.iter().map(move |s| {
        let k = s.log_n as usize;
        let r = &items[off..off + k];
        off += k;
        r
    })
}

/// Receiver of a batch of 1-of-N OTs of shapes `specs` with choices `choices` (each below its
/// instance's `N`); returns the chosen messages.
pub(crate) async fn recv_mixed<C: Channel, R: RotReceiver>(
    ot: &mut R,
    ch: &mut C,
    specs: &[OneOfN],
    choices: &[u32],
    ctx: &str,
) -> Result<Vec<u64>, OtError> {
    if choices.len() != specs.len() {
        let r = format!(
            "{ctx}: {} choices for {} instances",
            choices.len(),
            specs.len()
        );
        return Err(abort_local(ch, r).await);
    }
    let mut k_total = 0usize;
    let mut in_bits = 0usize;
    for (s, &c) in specs.iter().zip(choices) {
        if let Err(r) = s.check() {
            return Err(abort_local(ch, format!("{ctx}: {r}")).await);
        }
        if c as usize >= s.n() {
            let r = format!("{ctx}: choice {c} is not below N = {}", s.n());
            return Err(abort_local(ch, r).await);
        }
        k_total += s.log_n as usize;
        in_bits += s.n() * s.width as usize;
    }
    let (r_bits, keys) = ot.recv_rot(ch, k_total).await?;
    if r_bits.len() != k_total || keys.len() != k_total {
        return Err(abort_local(ch, format!("{ctx}: random OT source returned too few OTs")).await);
    }
    let mut w = BitWriter::with_capacity(k_total);
    let mut off = 0usize;
    let mut tweaks = Vec::with_capacity(k_total);
    for (s, &c) in specs.iter().zip(choices) {
        let blk = c as usize / s.slots_per_block();
        for j in 0..s.log_n as usize {
            w.push_bit((((c >> j) & 1) == 1) ^ r_bits[off + j]);
            tweaks.push(tweak(j, blk));
        }
        off += s.log_n as usize;
    }
    send_packed(ch, specs.len() as u64, w).await?;
    let mut h = vec![Block::ZERO; k_total];
    FIXED_KEY_AES.tccr_many(&tweaks, &keys, &mut h);
    let y = recv_packed(ch, specs.len() as u64, in_bits, ctx).await?;

    let mut out = Vec::with_capacity(specs.len());
    let mut pos = 0usize;
    let mut off = 0usize;
    for (s, &c) in specs.iter().zip(choices) {
        let c = c as usize;
        let spb = s.slots_per_block();
        let mut m = y.read_at(pos + c * s.width as usize, s.width);
        for hj in &h[off..off + s.log_n as usize] {
            // Only block `c / spb` was hashed; address the slot within it.
            let one = [*hj];
            let local = c % spb;
            m ^= s.slot(&one, local);
        }
        out.push(m);
        pos += s.n() * s.width as usize;
        off += s.log_n as usize;
    }
    Ok(out)
}

/// Sends `tables.len() / N` 1-out-of-N OTs of shape `p` (instance `i` offers
/// `tables[i*N .. (i+1)*N]`), in batches of [`CHUNK`] instances.
pub async fn send_one_of_n<C: Channel, S: RotSender>(
    ot: &mut S,
    ch: &mut C,
    p: OneOfN,
    tables: &[u64],
) -> Result<(), OtError> {
    if let Err(r) = p.check() {
        return Err(abort_local(ch, r).await);
    }
    if !tables.len().is_multiple_of(p.n()) {
        let r = format!(
            "1-of-N OT: {} table entries is not a multiple of N = {}",
            tables.len(),
            p.n()
        );
        return Err(abort_local(ch, r).await);
    }
    let count = tables.len() / p.n();
    let specs = vec![p; count.min(CHUNK)];
    for t in tables.chunks(CHUNK * p.n()) {
        let m = t.len() / p.n();
        send_mixed(ot, ch, &specs[..m], t, "1-of-N OT").await?;
    }
    Ok(())
}

/// Receives one 1-out-of-N OT of shape `p` per choice (each below `N`); returns the chosen
/// messages. Batches as [`send_one_of_n`]; both sides must agree on the count.
pub async fn recv_one_of_n<C: Channel, R: RotReceiver>(
    ot: &mut R,
    ch: &mut C,
    p: OneOfN,
    choices: &[u32],
) -> Result<Vec<u64>, OtError> {
    if let Err(r) = p.check() {
        return Err(abort_local(ch, r).await);
    }
    let specs = vec![p; choices.len().min(CHUNK)];
    let mut out = Vec::with_capacity(choices.len());
    for c in choices.chunks(CHUNK) {
        out.extend(recv_mixed(ot, ch, &specs[..c.len()], c, "1-of-N OT").await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::ideal::ideal_rot;
    use crate::prg::Prg;
    use rand_core::Rng;

    #[test]
    fn bit_packing_round_trips() {
        let mut prg = Prg::from_u64(1);
        let mut w = BitWriter::default();
        let mut vals = Vec::new();
        for i in 0..500u32 {
            let width = i % 65;
            let v = prg.next_u64() & mask(width);
            vals.push((v, width));
            w.push(v, width);
        }
        let n = w.len();
        let bytes = w.into_bytes_after(&[]);
        assert_eq!(bytes.len(), n.div_ceil(8));
        let mut r = BitReader::from_bytes(&bytes);
        for (v, width) in vals {
            assert_eq!(r.read(width), v);
        }
    }

    /// The harness for any random-OT implementation: `count` 1-of-N OTs of shape `p` over a
    /// fresh channel pair, compared with the tables.
    async fn run_with<S: RotSender, R: RotReceiver>(
        s: &mut S,
        r: &mut R,
        p: OneOfN,
        count: usize,
        seed: u64,
    ) {
        let mut prg = Prg::from_u64(seed);
        let tables: Vec<u64> = (0..count * p.n())
            .map(|_| prg.next_u64() & mask(p.width))
            .collect();
        let choices: Vec<u32> = (0..count)
            .map(|_| (prg.next_u64() % p.n() as u64) as u32)
            .collect();
        let (mut a, mut b) = crate::channel::mem::pair();
        let (x, y) = tokio::join!(
            send_one_of_n(s, &mut a, p, &tables),
            recv_one_of_n(r, &mut b, p, &choices)
        );
        x.unwrap();
        let got = y.unwrap();
        assert_eq!(got.len(), count);
        for i in 0..count {
            assert_eq!(
                got[i],
                tables[i * p.n() + choices[i] as usize],
                "instance {i}"
            );
        }
    }

    async fn run(p: OneOfN, count: usize, seed: u64) {
        let (mut s, mut r) = ideal_rot(Prg::from_u64(seed ^ 77).gen_seed());
        run_with(&mut s, &mut r, p, count, seed).await;
    }

    #[tokio::test]
    async fn one_of_n_correct_for_shapes_and_sizes() {
        for (log_n, width) in [(4, 2), (4, 1), (1, 64), (3, 7), (4, 64), (6, 3), (8, 33)] {
            for count in [0, 1, 3] {
                run(OneOfN { log_n, width }, count, 7 + count as u64).await;
            }
        }
    }

    #[tokio::test]
    async fn one_of_n_around_chunk() {
        for count in [CHUNK - 1, CHUNK, CHUNK + 1] {
            run(OneOfN { log_n: 4, width: 2 }, count, count as u64).await;
        }
    }

    #[tokio::test]
    async fn other_messages_are_masked() {
        // The receiver's view of unchosen slots must not equal the table (with 64-bit messages a
        // coincidence has probability 2^-64).
        let p = OneOfN {
            log_n: 4,
            width: 64,
        };
        let tables: Vec<u64> = (0..16).collect();
        let (mut a, mut b) = crate::channel::mem::pair();
        let (mut s, mut r) = ideal_rot([9; 32]);
        let specs = [p];
        let (x, y) = tokio::join!(send_mixed(&mut s, &mut a, &specs, &tables, "t"), async {
            let (bits, keys) = r.recv_rot(&mut b, 4).await.unwrap();
            let mut w = BitWriter::default();
            for &rb in &bits {
                w.push_bit(rb); // choice 0
            }
            send_packed(&mut b, 1, w).await.unwrap();
            let y = recv_packed(&mut b, 1, 16 * 64, "t").await.unwrap();
            (bits, keys, y)
        });
        x.unwrap();
        let (_, keys, y) = y;
        for (v, &tv) in tables.iter().enumerate().skip(1) {
            let mut m = y.read_at(v * 64, 64);
            for (j, k) in keys.iter().enumerate() {
                let mut h = [Block::ZERO; 1];
                FIXED_KEY_AES.tccr_many(&[tweak(j, v / 2)], &[*k], &mut h);
                m ^= p.slot(&h, v % 2);
            }
            assert_ne!(m, tv);
        }
    }

    #[tokio::test]
    async fn disagreeing_counts_abort_cleanly() {
        let p = OneOfN { log_n: 4, width: 2 };
        let (mut a, mut b) = crate::channel::mem::pair();
        let (mut s, mut r) = ideal_rot([5; 32]);
        let tables = vec![0u64; 5 * 16];
        let choices = vec![1u32; 6];
        let (x, y) = tokio::join!(
            send_one_of_n(&mut s, &mut a, p, &tables),
            recv_one_of_n(&mut r, &mut b, p, &choices)
        );
        let e = x.unwrap_err().to_string();
        assert!(e.contains("disagrees"), "{e}");
        assert!(y.is_err());
    }

    #[tokio::test]
    async fn wrong_length_aborts_with_reason() {
        // A receiver that sends its choice corrections one byte short (right count tag).
        let p = OneOfN { log_n: 4, width: 2 };
        let (mut a, mut b) = crate::channel::mem::pair();
        let (mut s, mut r) = ideal_rot([6; 32]);
        let tables = vec![0u64; 4 * 16];
        let (x, y) = tokio::join!(send_one_of_n(&mut s, &mut a, p, &tables), async {
            r.recv_rot(&mut b, 16).await.unwrap();
            let mut msg = 4u64.to_le_bytes().to_vec();
            msg.push(0); // 16 bits are 2 bytes; send 1
            b.send_bytes(&msg).await.unwrap();
            b.recv_bytes_bounded(1 << 10).await
        });
        let e = x.unwrap_err().to_string();
        assert!(e.contains("expected 10 bytes, peer sent 9"), "{e}");
        let e = y.unwrap_err().to_string();
        assert!(e.contains("expected 10 bytes"), "{e}");
    }

    #[tokio::test]
    async fn bad_arguments_abort_without_panic() {
        let (mut a, mut b) = crate::channel::mem::pair();
        let (mut s, mut r) = ideal_rot([5; 32]);
        let p = OneOfN { log_n: 4, width: 2 };
        let e = recv_one_of_n(&mut r, &mut b, p, &[16]).await.unwrap_err();
        assert!(e.to_string().contains("not below"), "{e}");
        let bad = OneOfN { log_n: 0, width: 2 };
        assert!(send_one_of_n(&mut s, &mut a, bad, &[]).await.is_err());
    }
}
