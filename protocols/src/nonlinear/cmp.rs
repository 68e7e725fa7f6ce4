//! The secure sign test: millionaires' comparison on dealer-dealt random 1-out-of-N OTs, with
//! the AND tree on bit-sliced XOR shares (64 comparisons per word operation).
//!
//! **Functionality.** Additive shares `x = x_0 + x_1 mod 2^64` of values in
//! `[−2^(ℓ−1), 2^(ℓ−1))`; output XOR shares of `msb(x) = [x < 0]`.
//!
//! **Protocol** (CrypTFlow2, Rathee et al. CCS 2020, sections 4.1-4.2; Cheetah's paired AND
//! triples, Huang et al. USENIX Security 2022): with `B = ℓ − 1`, `x_p' = x_p mod 2^B`,
//! `msb(x) = msb_ℓ(x_0) ⊕ msb_ℓ(x_1) ⊕ [a < y]` with P0's `a = 2^B − 1 − x_0'` and P1's
//! `y = x_1'` (the carry of `x_0' + x_1'` into bit `B`). The comparison `[a < y]` splits both
//! into `q` digits of `m` bits; per digit a 1-out-of-`N` OT gives shares of
//! `lt_j = [a_j < y_j]` and `eq_j = [a_j = y_j]`; a binary tree combines
//! `lt = lt_hi ⊕ (eq_hi ∧ lt_lo)`, `eq = eq_hi ∧ eq_lo`.
//!
//! The digit OTs come from the dealer in random form ([`crate::beaver::nl`]): P0 holds random
//! tables `A_lt, A_eq` (`N` bits each), P1 a random choice `c` and `A_lt[c], A_eq[c]`. Online:
//!
//! ```text
//! P1 -> P0: u_j = y_j − c_j mod N                              (m bits per digit)
//! P0 -> P1: for every v: T_lt[v] ⊕ A_lt[v − u], T_eq[v] ⊕ A_eq[v − u]   (2N bits per digit)
//!           with T_lt[v] = [a_j < v] ⊕ r_lt, T_eq[v] = [a_j = v] ⊕ r_eq (P0's random shares)
//! P1: lt_j = (entry y_j of the first table) ⊕ A_lt[c_j]        (since y_j − u_j = c_j)
//! ```
//!
//! (digit 0 needs only `lt`). The tables are the entries of P0's random table rotated by `u`,
//! so P1 sees uniformly random bits at every position but `y_j`, and P0 sees the uniform `u`.
//!
//! **AND tree schedule.** Each level's ANDs are Beaver ANDs with a paired triple per
//! combination (`e = eq_hi ⊕ a`, `f1 = lt_lo ⊕ b1`, `f2 = eq_lo ⊕ b2`; nodes containing digit
//! 0 skip `f2`). Messages go as soon as they can: P0 knows its leaves (its random `r` bits)
//! before anything arrives, so its level-1 openings travel with the tables; afterwards each
//! flight carries the sender's openings of two consecutive levels (it completes level `k` with
//! the peer's openings just received and immediately opens level `k + 1`). With `L` levels:
//! flights `u`, `tables + L1`, `L1 + L2`, `L2 + L3`, ..., i.e. `L + 2` one-way delays, about
//! `(L + 2) / 2` send flights per party.
//!
//! **Cost per comparison** (`q` digits, widths `m_j`, `N_j = 2^{m_j}`): P1 → P0 `Σ m_j = B`
//! bits plus AND openings; P0 → P1 `N_0 + Σ_{j≥1} 2 N_j` table bits plus AND openings; AND
//! openings `2` bits per party for the combinations that contain digit 0 and `3` for the
//! others. `ℓ = 32, m = 4`: 31 + 224 + 36 = 291 bits ≈ 36.4 bytes. Every bit vector is sent
//! as `⌈n/8⌉` bytes; digits are byte-aligned.

use crate::beaver::nl::{BitTripleWords, CmpMaterial, CmpShape, NlMaterial, NlRequest};
use crate::beaver::{Material, Request, TripleProvider};
use crate::channel::Channel;
use crate::session::{ErrorKind, Session};
use crate::share::Party;
use rand_core::Rng;

use super::arith::Bits;

/// The combination structure of the AND tree over `q` leaves: the number of pairs
/// (combinations) per level; an odd node is carried to the next level unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tree {
    /// `pairs[k]`: combinations at level `k + 1`.
    pub(crate) pairs: Vec<usize>,
}

impl Tree {
    pub(crate) fn new(q: usize) -> Self {
        let mut pairs = Vec::new();
        let mut w = q;
        while w > 1 {
            pairs.push(w / 2);
            w = w.div_ceil(2);
        }
        Tree { pairs }
    }

    /// Levels `L`.
    pub(crate) fn levels(&self) -> usize {
        self.pairs.len()
    }

    /// Bit vectors one party opens at level `k` (1-based): 2 for the combination containing
    /// digit 0, 3 for each other one.
    pub(crate) fn vectors(&self, k: usize) -> usize {
        let p = self.pairs[k - 1];
        2 + 3 * (p - 1)
    }
}

/// The flights of the AND tree after the table message: `(sender, levels)`; P0's level-1
/// openings travel with the tables (not listed). Both parties derive the same schedule.
pub(crate) fn schedule(levels: usize) -> Vec<(Party, Vec<usize>)> {
    let mut out = Vec::new();
    if levels == 0 {
        return out;
    }
    // sent[p], got[p] (levels), P0 has sent level 1 with the tables.
    let mut sent = [1usize, 0];
    let mut got = [0usize, 1];
    let mut turn = 1; // P1 speaks next
    while sent[0] < levels || sent[1] < levels {
        let me = turn;
        let mut lv = Vec::new();
        // A party can open level k + 1 once it completed level k (sent and got k).
        while sent[me] < levels && got[me] >= sent[me] {
            sent[me] += 1;
            lv.push(sent[me]);
        }
        got[1 - me] = sent[me];
        let party = if me == 0 { Party::P0 } else { Party::P1 };
        if !lv.is_empty() {
            out.push((party, lv));
        }
        turn = 1 - me;
    }
    out
}

/// Bytes of one opened bit vector of `n` elements.
pub(crate) fn vec_bytes(n: usize) -> usize {
    n.div_ceil(8)
}

/// Bytes of the `u` message (P1 -> P0): per digit `⌈n m_j / 8⌉`.
pub(crate) fn u_bytes(n: usize, shape: &CmpShape) -> usize {
    (0..shape.digits())
        .map(|j| (n * shape.width(j) as usize).div_ceil(8))
        .sum()
}

/// Bits of digit `j`'s table field per element.
fn field_bits(shape: &CmpShape, j: usize) -> usize {
    let n = shape.entries(j) as usize;
    if j == 0 { n } else { 2 * n }
}

/// Bytes of the tables (P0 -> P1): per digit `⌈n · field / 8⌉`.
pub(crate) fn table_bytes(n: usize, shape: &CmpShape) -> usize {
    (0..shape.digits())
        .map(|j| (n * field_bits(shape, j)).div_ceil(8))
        .sum()
}

/// Bytes of one party's openings of level `k`.
pub(crate) fn level_bytes(n: usize, tree: &Tree, k: usize) -> usize {
    tree.vectors(k) * vec_bytes(n)
}

/// Writes fixed-width fields (at most 32 bits) least significant bit first.
struct Packer {
    out: Vec<u8>,
    acc: u64,
    nacc: u32,
}

impl Packer {
    fn new(cap: usize) -> Self {
        Packer {
            out: Vec::with_capacity(cap),
            acc: 0,
            nacc: 0,
        }
    }

    #[inline]
    fn push(&mut self, v: u32, w: u32) {
        self.acc |= (v as u64) << self.nacc;
        self.nacc += w;
        if self.nacc >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.nacc -= 32;
        }
    }

    /// Pads to a byte boundary.
    fn align(&mut self) {
        while self.nacc > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nacc = self.nacc.saturating_sub(8);
        }
        self.acc = 0;
    }
}

/// Reads the `w`-bit field at bit `pos` of `bytes` (`w ≤ 32`).
#[inline]
fn read_field(bytes: &[u8], pos: usize, w: u32) -> u32 {
    let start = pos / 8;
    let mut buf = [0u8; 8];
    let end = (start + 8).min(bytes.len());
    buf[..end - start].copy_from_slice(&bytes[start..end]);
    let v = u64::from_le_bytes(buf) >> (pos % 8);
    (v & ((1u64 << w) - 1)) as u32
}

#[inline]
fn rotl(v: u32, u: u32, n: u32) -> u32 {
    let full = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
    if u == 0 {
        v & full
    } else {
        ((v << u) | (v >> (n - u))) & full
    }
}

fn set_bit(words: &mut [u64], i: usize, b: bool) {
    words[i / 64] |= (b as u64) << (i % 64);
}

fn random_words<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<u64> {
    let mut w: Vec<u64> = (0..n.div_ceil(64)).map(|_| rng.next_u64()).collect();
    if !n.is_multiple_of(64)
        && let Some(l) = w.last_mut()
    {
        *l &= (1u64 << (n % 64)) - 1;
    }
    w
}

fn words_to_bytes(w: &[u64], n: usize, out: &mut Vec<u8>) {
    let nb = vec_bytes(n);
    let start = out.len();
    for x in w {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(start + nb);
}

fn bytes_to_words(b: &[u8], n: usize) -> Vec<u64> {
    Bits::from_bytes(b, n).words().to_vec()
}

/// A node of the AND tree: bit vectors `lt` and (except node 0) `eq`.
#[derive(Clone)]
struct Node {
    lt: Vec<u64>,
    eq: Option<Vec<u64>>,
}

/// One party's state of the AND tree.
struct TreeState<'a> {
    n: usize,
    tree: &'a Tree,
    triples: &'a [BitTripleWords],
    adds_public: bool,
    /// Nodes of the last completed level.
    nodes: Vec<Node>,
    /// Own openings per level (1-based index - 1), kept until completed.
    own: Vec<Vec<Vec<u64>>>,
    /// Peer openings per level.
    peer: Vec<Option<Vec<Vec<u64>>>>,
    done: usize,
    base: Vec<usize>,
}

impl<'a> TreeState<'a> {
    fn new(
        n: usize,
        tree: &'a Tree,
        triples: &'a [BitTripleWords],
        adds_public: bool,
        leaves: Vec<Node>,
    ) -> Self {
        let mut base = Vec::with_capacity(tree.levels());
        let mut acc = 0;
        for &p in &tree.pairs {
            base.push(acc);
            acc += p;
        }
        TreeState {
            n,
            tree,
            triples,
            adds_public,
            nodes: leaves,
            own: vec![Vec::new(); tree.levels()],
            peer: vec![None; tree.levels()],
            done: 0,
            base,
        }
    }

    /// This party's openings of level `done + 1` (from the completed level's nodes).
    fn open_next(&mut self) -> Vec<Vec<u64>> {
        let k = self.done + 1;
        let pairs = self.tree.pairs[k - 1];
        let mut v = Vec::with_capacity(self.tree.vectors(k));
        for p in 0..pairs {
            let t = &self.triples[self.base[k - 1] + p];
            let (lo, hi) = (&self.nodes[2 * p], &self.nodes[2 * p + 1]);
            let eq_hi = hi.eq.as_ref().expect("high nodes carry eq");
            v.push(xor(eq_hi, &t.a));
            v.push(xor(&lo.lt, &t.b1));
            if p > 0 {
                v.push(xor(lo.eq.as_ref().expect("eq above digit 0"), &t.b2));
            }
        }
        self.own[k - 1] = v.clone();
        v
    }

    /// Completes level `done + 1` with both parties' openings.
    fn complete(&mut self) {
        let k = self.done + 1;
        let pairs = self.tree.pairs[k - 1];
        let own = std::mem::take(&mut self.own[k - 1]);
        let peer = self.peer[k - 1].take().expect("peer openings present");
        let mut next = Vec::with_capacity(self.nodes.len().div_ceil(2));
        let mut i = 0;
        for p in 0..pairs {
            let t = &self.triples[self.base[k - 1] + p];
            let e = xor(&own[i], &peer[i]);
            let f1 = xor(&own[i + 1], &peer[i + 1]);
            let z1 = beaver_and(&t.c1, &t.a, &t.b1, &e, &f1, self.adds_public);
            let hi = &self.nodes[2 * p + 1];
            let lt = xor(&hi.lt, &z1);
            let eq = if p > 0 {
                let f2 = xor(&own[i + 2], &peer[i + 2]);
                i += 3;
                Some(beaver_and(&t.c2, &t.a, &t.b2, &e, &f2, self.adds_public))
            } else {
                i += 2;
                None
            };
            next.push(Node { lt, eq });
        }
        if self.nodes.len() % 2 == 1 {
            next.push(self.nodes.last().expect("odd node").clone());
        }
        self.nodes = next;
        self.done = k;
    }

    fn result(&self) -> Bits {
        Bits::from_words(self.nodes[0].lt.clone(), self.n)
    }
}

fn xor(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Shares of `x ∧ y` from the opened `e = x ⊕ a`, `f = y ⊕ b`: `c ⊕ (e ∧ b) ⊕ (f ∧ a)`, plus
/// `e ∧ f` for one party.
fn beaver_and(c: &[u64], a: &[u64], b: &[u64], e: &[u64], f: &[u64], public: bool) -> Vec<u64> {
    let pm = if public { u64::MAX } else { 0 };
    (0..c.len())
        .map(|i| c[i] ^ (e[i] & b[i]) ^ (f[i] & a[i]) ^ (e[i] & f[i] & pm))
        .collect()
}

fn cmp_material(m: Material, n: usize, shape: CmpShape) -> Result<CmpMaterial, ErrorKind> {
    let bad = |what: String| Err(ErrorKind::Correlation(what));
    match m {
        Material::Nonlinear(NlMaterial::Cmp(c)) => {
            let (cn, cs) = match &c {
                CmpMaterial::Sender { n, shape, .. } | CmpMaterial::Receiver { n, shape, .. } => {
                    (*n, *shape)
                }
            };
            if cn != n || cs != shape {
                return bad(format!(
                    "asked for {n} comparisons of {shape:?}, got {cn} of {cs:?}"
                ));
            }
            Ok(c)
        }
        other => bad(format!(
            "asked for comparison correlations, the source returned {}",
            super::secure::kind_of(&other)
        )),
    }
}

/// XOR shares of `[x < 0]` for this party's shares `x` of values in `[−2^(ℓ−1), 2^(ℓ−1))`,
/// `ℓ = bits` (2..=64).
pub(crate) async fn msb<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &[u64],
    bits: u32,
) -> Result<Bits, ErrorKind> {
    let n = x.len();
    if n == 0 {
        return Ok(Bits::zeros(0));
    }
    if !(2..=64).contains(&bits) {
        return Err(ErrorKind::BadInput(format!(
            "sign test on {bits} bits (must be 2..=64)"
        )));
    }
    let b = bits - 1;
    let shape = CmpShape {
        bits: b,
        digit_bits: s.params().digit_bits,
    };
    let lowmask = if b == 64 { u64::MAX } else { (1u64 << b) - 1 };
    let mat = s
        .fetch(Request::Nonlinear(NlRequest::Cmp {
            n,
            bits: b,
            digit_bits: shape.digit_bits,
        }))
        .await?;
    let mat = cmp_material(mat, n, shape)?;
    let party = s.party();
    let inputs: Vec<u64> = x
        .iter()
        .map(|&v| match party {
            Party::P0 => lowmask - (v & lowmask),
            Party::P1 => v & lowmask,
        })
        .collect();
    let lt = millionaire(s, &inputs, shape, &mat).await?;
    let top: Vec<u64> = x
        .chunks(64)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u64, |w, (i, &v)| w | (((v >> (bits - 1)) & 1) << i))
        })
        .collect();
    Ok(lt.xor(&Bits::from_words(top, n)))
}

/// XOR shares of `[a < y]` (P0 holds `a`, P1 holds `y`, both `shape.bits`-bit).
async fn millionaire<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    inputs: &[u64],
    shape: CmpShape,
    mat: &CmpMaterial,
) -> Result<Bits, ErrorKind> {
    let n = inputs.len();
    let q = shape.digits();
    let m = shape.digit_bits;
    let tree = Tree::new(q);
    let sched = schedule(tree.levels());
    // Digit j of v: shift and mask per digit, computed once.
    let dmask: Vec<u64> = (0..q).map(|j| (1u64 << shape.width(j)) - 1).collect();
    let digit = |v: u64, j: usize| ((v >> (j as u32 * m)) & dmask[j]) as u32;
    let nw = n.div_ceil(64);
    let mut st = match mat {
        CmpMaterial::Sender {
            tables, triples, ..
        } => {
            let ubuf = s.recv(u_bytes(n, &shape), "comparison choices").await?;
            let mut leaves = Vec::with_capacity(q);
            let mut pk = Packer::new(table_bytes(n, &shape) + tree_first_bytes(n, &tree) + 8);
            let mut upos = 0usize;
            for j in 0..q {
                let nj = shape.entries(j);
                let full = (1u32 << nj) - 1;
                let wj = shape.width(j);
                let rl = random_words(s.prg(), n);
                let re = if j == 0 {
                    vec![0; nw]
                } else {
                    random_words(s.prg(), n)
                };
                let tj = &tables[j * n..(j + 1) * n];
                for e in 0..n {
                    let u = read_field(&ubuf, upos + e * wj as usize, wj);
                    let xj = digit(inputs[e], j);
                    let r_lt = ((rl[e / 64] >> (e % 64)) & 1) as u32;
                    let lt =
                        (full & !((2u32 << xj).wrapping_sub(1))) ^ (full & r_lt.wrapping_neg());
                    let a = tj[e];
                    let f_lt = lt ^ rotl(a & 0xffff, u, nj);
                    if j == 0 {
                        pk.push(f_lt, nj);
                    } else {
                        let r_eq = ((re[e / 64] >> (e % 64)) & 1) as u32;
                        let eq = (1u32 << xj) ^ (full & r_eq.wrapping_neg());
                        let f_eq = eq ^ rotl(a >> 16, u, nj);
                        pk.push(f_lt | (f_eq << nj), 2 * nj);
                    }
                }
                pk.align();
                upos += (n * wj as usize).div_ceil(8) * 8;
                leaves.push(Node {
                    lt: rl,
                    eq: (j > 0).then_some(re),
                });
            }
            let mut msg = pk.out;
            let mut st = TreeState::new(n, &tree, triples, true, leaves);
            if tree.levels() > 0 {
                for v in st.open_next() {
                    words_to_bytes(&v, n, &mut msg);
                }
            }
            s.send(&msg).await?;
            st
        }
        CmpMaterial::Receiver {
            choices,
            chosen_lt,
            chosen_eq,
            triples,
            ..
        } => {
            let mut pk = Packer::new(u_bytes(n, &shape) + 8);
            for j in 0..q {
                let wj = shape.width(j);
                let mask = (1u32 << wj) - 1;
                let cj = &choices[j * n..(j + 1) * n];
                for e in 0..n {
                    let y = digit(inputs[e], j);
                    pk.push(y.wrapping_sub(cj[e] as u32) & mask, wj);
                }
                pk.align();
            }
            s.send(&pk.out).await?;
            let tbytes = table_bytes(n, &shape);
            let buf = s
                .recv(tbytes + tree_first_bytes(n, &tree), "comparison tables")
                .await?;
            let mut leaves = Vec::with_capacity(q);
            let mut pos = 0usize;
            for j in 0..q {
                let nj = shape.entries(j);
                let fw = field_bits(&shape, j) as u32;
                let mut lt = vec![0u64; nw];
                let mut eq = vec![0u64; if j > 0 { nw } else { 0 }];
                for (e, &inp) in inputs.iter().enumerate() {
                    let y = digit(inp, j);
                    let fld = read_field(&buf, pos + e * fw as usize, fw);
                    set_bit(&mut lt, e, (fld >> y) & 1 == 1);
                    if j > 0 {
                        set_bit(&mut eq, e, (fld >> (nj + y)) & 1 == 1);
                    }
                }
                let lt = xor(&lt, &chosen_lt[j]);
                let eq = (j > 0).then(|| xor(&eq, &chosen_eq[j]));
                leaves.push(Node { lt, eq });
                pos += (n * fw as usize).div_ceil(8) * 8;
            }
            let mut st = TreeState::new(n, &tree, triples, false, leaves);
            if tree.levels() > 0 {
                st.peer[0] = Some(split_vectors(&buf[tbytes..], n, tree.vectors(1)));
            }
            st
        }
    };
    let me = s.party();
    for (sender, levels) in &sched {
        if *sender == me {
            let mut msg = Vec::new();
            for &k in levels {
                // Complete what can be completed, then open level k.
                while st.done + 1 < k {
                    st.complete();
                }
                for v in st.open_next() {
                    words_to_bytes(&v, n, &mut msg);
                }
                if st.peer[k - 1].is_some() {
                    st.complete();
                }
            }
            s.send(&msg).await?;
        } else {
            let sizes: usize = levels.iter().map(|&k| level_bytes(n, &tree, k)).sum();
            let buf = s.recv(sizes, "comparison AND tree").await?;
            let mut off = 0;
            for &k in levels {
                st.peer[k - 1] = Some(split_vectors(&buf[off..], n, tree.vectors(k)));
                off += level_bytes(n, &tree, k);
                if !st.own[k - 1].is_empty() && st.done + 1 == k {
                    st.complete();
                }
            }
        }
    }
    while st.done < tree.levels() {
        st.complete();
    }
    Ok(st.result())
}

/// `count` bit vectors of `n` bits from the front of `buf`.
fn split_vectors(buf: &[u8], n: usize, count: usize) -> Vec<Vec<u64>> {
    let vb = vec_bytes(n);
    (0..count)
        .map(|i| bytes_to_words(&buf[i * vb..(i + 1) * vb], n))
        .collect()
}

/// Bytes of P0's level-1 openings that travel with the tables.
pub(crate) fn tree_first_bytes(n: usize, tree: &Tree) -> usize {
    if tree.levels() == 0 {
        0
    } else {
        level_bytes(n, tree, 1)
    }
}
