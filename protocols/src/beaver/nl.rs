//! Correlations of the nonlinear layers ([`crate::nonlinear`]), served by the dealer like the
//! Beaver triples: comparisons (dealer-dealt random 1-out-of-N OTs and paired bit triples),
//! multiplexers and B2A (bit-masked triples), row-broadcast products (with an optional square
//! of the same mask), and products with a vector that P1 holds in plaintext.
//!
//! Every kind is seed-compressed as in [`super::dealer`]: P0 expands all of its part from its
//! session seed, P1 expands its random values from its own seed and receives only what depends on
//! both (its *correction*). The tables below give, per request, what each party gets and the
//! correction P1 receives (`bits` = compared bits `B`, `q = ⌈B/m⌉` digits of `m` bits,
//! `W = ⌈n/64⌉` blocks of 64 elements):
//!
//! | request | P0 (seed) | P1 (seed) | P1's correction (u64 words) |
//! |---|---|---|---|
//! | `Cmp { n, bits, m }` | per element and digit `j` a random table `A_j` of `2^{m_j}` bits for `lt` and, `j ≥ 1`, for `eq`; `q − 1` paired bit triples | per element and digit a random choice `c_j`; the triples' `a, b1, b2` | `A_j[c_j]` bits and the triples' `c1, c2`: `(4q − 3)·W` |
//! | `Mux { n, k }` | bit `ρ_0`, `k` masks `a_0`, `[ρ]_0`, `[ρ·a]_0` | bit `ρ_1`, `a_1` | `[ρ]_1`, `[ρ·a]_1`: `(k + 1)·n` |
//! | `RowMul { layout, square }` | `a_0` (per element), `b_0` (per row), `c_0`, `[a²]_0` | `a_1`, `b_1` | `c_1 = a·b_row − c_0` (and `a² − [a²]_0`): `n` or `2n` |
//! | `TruncSquareRow { layout, bits }` | `r_0`, `[t]_0`, `[s]_0`, `[s²]_0`, `[t·s]_0`, `[t·b_row]_0`, `[s·b_row]_0` per element, `b_0` per row | `r_1`, `b_1` | `[t]_1, [s]_1, [s²]_1, [t·s]_1, [t·b_row]_1, [s·b_row]_1`: `6n` |
//! | `ScaleVec { id, rows, d }` | `A: [rows, d]`, `C_0` | nothing | `C_1 = A ⊙ B_row − C_0`: `rows·d` |
//!
//! Here `ρ = ρ_0 ⊕ ρ_1` is a uniform bit, `r = r_0 + r_1` uniform with `t = r_63` and
//! `s = (r mod 2^63) >> bits` (a truncation pair, `crate::trunc`), `[v]_p` are additive shares over Z_2^64, and `B` is the
//! session mask of P1's vector `id` (registered with [`super::Request::WeightMask`] as a `1 × d`
//! weight, so it is the same in every query and P0 received `γ − B` once).
//!
//! **Comparison correlation.** Digit `j` of a millionaires' comparison is a 1-out-of-`N_j` OT
//! (`N_j = 2^{m_j}`) of 2-bit messages. The dealer deals it in *random* form: the sender's
//! random tables `A_lt, A_eq` (from P0's seed) and the receiver's random choice `c` (from P1's
//! seed) with the chosen bits `A_lt[c], A_eq[c]` (the correction, one bit each). Online the
//! receiver sends `u = y_j − c mod N_j` and the sender its tables rotated by `u` and XORed with
//! the comparison tables (see `crate::nonlinear`): the same online cost as with random OTs,
//! while the dealer link carries 2 bits per digit instead of `16·m` bytes of OT messages.
//! The AND tree's paired triples `(a, b1, c1 = a∧b1, b2, c2 = a∧b2)` (XOR shares) cost P1 two
//! correction bits each.
//!
//! **Layout.** Elements are processed in blocks of 64 (the last may be shorter). Per block,
//! P0's component stream 0 yields the tables (`q·bs` 32-bit words: `lt` in the low 16 bits,
//! `eq` in the high 16, masked to `N_j` bits) and stream 1 the triples (per combination `t`:
//! `a, b1, c1, b2, c2`, one word each); P1's stream 0 yields the choices (`q·bs` bytes, masked to
//! `m_j` bits) and stream 1 `a, b1, b2` per combination. The correction per block: `q` words of
//! `A_lt[c]` bits, `q − 1` of `A_eq[c]` bits (digits `1..q`), then `c1, c2` per combination. The
//! dealer and the parties call the same block functions, so their streams stay in step.

use serde::{Deserialize, Serialize};

use super::BeaverError;
use super::expand::{Streams, weight_prg};
use crate::prg::{Prg, Seed};
use crate::share::Party;
use rand_core::Rng;

/// Largest digit size `m` of the comparison correlation (tables of at most 16 entries).
pub const MAX_DIGIT_BITS: u32 = 4;

/// Largest number of values one multiplexer correlation masks per element.
pub const MAX_MUX_VALUES: usize = 16;

/// Elements per block of the comparison correlation's layout.
pub const CMP_BLOCK: usize = 64;

fn mask64(bits: usize) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// How the elements of a flat vector group into rows (row-broadcast products, row sums).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RowLayout {
    /// `rows` rows of `cols` elements each.
    Uniform {
        /// Number of rows.
        rows: usize,
        /// Elements per row.
        cols: usize,
    },
    /// Causal attention rows: `heads` blocks of `rows` query rows over `cols` keys; query row `i`
    /// (0-based) of a block holds the `cols − rows + i + 1` unmasked entries (the last `rows`
    /// positions of a `cols`-long context). Needs `1 ≤ rows ≤ cols`.
    Causal {
        /// Number of blocks (attention heads).
        heads: usize,
        /// Query rows per block.
        rows: usize,
        /// Keys (context length).
        cols: usize,
    },
}

impl RowLayout {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match *self {
            RowLayout::Uniform { rows, .. } => rows,
            RowLayout::Causal { heads, rows, .. } => heads * rows,
        }
    }

    /// Elements of row `r`.
    pub fn row_len(&self, r: usize) -> usize {
        match *self {
            RowLayout::Uniform { cols, .. } => cols,
            RowLayout::Causal { rows, cols, .. } => cols - rows + (r % rows) + 1,
        }
    }

    /// Elements of every row, in order.
    pub fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.rows()).map(|r| self.row_len(r))
    }

    /// Longest row.
    pub fn max_len(&self) -> usize {
        match *self {
            RowLayout::Uniform { rows, cols } => {
                if rows == 0 {
                    0
                } else {
                    cols
                }
            }
            RowLayout::Causal { heads, cols, .. } => {
                if heads == 0 {
                    0
                } else {
                    cols
                }
            }
        }
    }

    /// Total number of elements (saturating).
    pub fn len(&self) -> usize {
        match *self {
            RowLayout::Uniform { rows, cols } => rows.saturating_mul(cols),
            RowLayout::Causal { heads, rows, cols } => {
                // Per block: rows·(cols − rows) + rows·(rows + 1)/2.
                let per = rows
                    .saturating_mul(cols.saturating_sub(rows))
                    .saturating_add(rows.saturating_mul(rows + 1) / 2);
                heads.saturating_mul(per)
            }
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the layout: causal blocks need `1 ≤ rows ≤ cols`; sizes must not overflow.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            RowLayout::Uniform { rows, cols } => {
                if rows.checked_mul(cols).is_none() {
                    return Err(format!("{rows}x{cols} rows overflow"));
                }
            }
            RowLayout::Causal { heads, rows, cols } => {
                if rows == 0 || rows > cols {
                    return Err(format!(
                        "causal rows need 1 <= rows <= cols, got rows {rows}, cols {cols}"
                    ));
                }
                if heads
                    .checked_mul(rows)
                    .and_then(|x| x.checked_mul(cols))
                    .is_none()
                {
                    return Err(format!("{heads}x{rows}x{cols} overflows"));
                }
            }
        }
        Ok(())
    }
}

/// Digit structure of a comparison on `bits` bits with `m`-bit digits (lowest digit first; the
/// top digit may be shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CmpShape {
    /// Compared bits `B` (1..=63).
    pub bits: u32,
    /// Digit size `m` (1..=[`MAX_DIGIT_BITS`]).
    pub digit_bits: u32,
}

impl CmpShape {
    /// Number of digits `q = ⌈B/m⌉`.
    pub fn digits(&self) -> usize {
        self.bits.div_ceil(self.digit_bits) as usize
    }

    /// Bits of digit `j`.
    pub fn width(&self, j: usize) -> u32 {
        let m = self.digit_bits;
        m.min(self.bits - j as u32 * m)
    }

    /// Table entries `N_j = 2^{m_j}` of digit `j`.
    pub fn entries(&self, j: usize) -> u32 {
        1 << self.width(j)
    }

    /// Combination nodes of the AND tree (= paired triples per comparison): `q − 1`.
    pub fn combos(&self) -> usize {
        self.digits() - 1
    }

    /// Correction words per block of 64 elements: `4q − 3`.
    pub fn correction_words_per_block(&self) -> usize {
        4 * self.digits() - 3
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=63).contains(&self.bits) {
            return Err(format!("comparison on {} bits (must be 1..=63)", self.bits));
        }
        if !(1..=MAX_DIGIT_BITS).contains(&self.digit_bits) {
            return Err(format!(
                "comparison digits of {} bits (must be 1..={MAX_DIGIT_BITS})",
                self.digit_bits
            ));
        }
        Ok(())
    }
}

/// A request for a correlation of the nonlinear layers (carried by
/// [`super::Request::Nonlinear`]); see the module docs for what each party gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NlRequest {
    /// `n` comparisons on `bits` bits with `digit_bits`-bit digits (P0 is the OT sender).
    Cmp {
        /// Number of comparisons.
        n: usize,
        /// Compared bits `B`.
        bits: u32,
        /// Digit size `m`.
        digit_bits: u32,
    },
    /// `n` bit-masked triples, each masking `k` values with the same bit (`k = 0`: B2A).
    Mux {
        /// Number of elements.
        n: usize,
        /// Values per element.
        k: usize,
    },
    /// Row-broadcast product triples `(a, b_row, a·b_row)` (and `a²` if `square`).
    RowMul {
        /// Rows and their lengths.
        layout: RowLayout,
        /// Also deal shares of `a²` (LayerNorm reuses one opening for `c²` and `c·r`).
        square: bool,
    },
    /// Per element a truncation pair `(r, t, s)` for a shift by `bits` together with shares of
    /// `s²` and `t·s` (so the square of the truncated value costs no further opening) and of
    /// `t·b_row`, `s·b_row` for a per-row mask `b` (so the truncated value times a per-row value
    /// costs one opening per row): LayerNorm's `c²` and `c · r_row` from one opening of `c`.
    TruncSquareRow {
        /// Rows and their lengths.
        layout: RowLayout,
        /// The truncation's shift (1..=62).
        bits: u32,
    },
    /// Products of `rows × d` values with P1's registered vector `id` (broadcast over rows).
    ScaleVec {
        /// The vector's weight id (registered as a `1 × d` weight mask).
        id: u32,
        /// Rows.
        rows: usize,
        /// Vector length.
        d: usize,
    },
}

impl NlRequest {
    /// Checks sizes (every tensor at most `max_elems` elements) and parameters.
    pub fn validate(&self, max_elems: usize) -> Result<(), BeaverError> {
        let bad = |s: String| Err(BeaverError::InvalidRequest(s));
        let size = match *self {
            NlRequest::Cmp {
                n,
                bits,
                digit_bits,
            } => {
                let shape = CmpShape { bits, digit_bits };
                if let Err(e) = shape.validate() {
                    return bad(e);
                }
                n.checked_mul(shape.digits())
            }
            NlRequest::Mux { n, k } => {
                if k > MAX_MUX_VALUES {
                    return bad(format!(
                        "a multiplexer of {k} values (at most {MAX_MUX_VALUES})"
                    ));
                }
                n.checked_mul(k + 1)
            }
            NlRequest::RowMul { ref layout, .. } => {
                if let Err(e) = layout.validate() {
                    return bad(format!("row product: {e}"));
                }
                Some(layout.len())
            }
            NlRequest::TruncSquareRow { ref layout, bits } => {
                if !(1..=62).contains(&bits) {
                    return bad(format!("truncation by {bits} bits (must be 1..=62)"));
                }
                if let Err(e) = layout.validate() {
                    return bad(format!("row truncation: {e}"));
                }
                layout.len().checked_mul(6)
            }
            NlRequest::ScaleVec { rows, d, .. } => {
                if rows == 0 || d == 0 {
                    return bad(format!("vector product with an empty dimension: {self:?}"));
                }
                rows.checked_mul(d)
            }
        };
        match size {
            Some(s) if s <= max_elems => Ok(()),
            _ => bad(format!(
                "{self:?} exceeds the limit of {max_elems} elements per tensor"
            )),
        }
    }

    /// The dealer's work for this request, about one unit per element drawn from a PRG or
    /// ring operation (see [`super::dealer::request_work`]); saturates.
    pub fn work(&self) -> u64 {
        let mul = |a: usize, b: usize| (a as u64).saturating_mul(b as u64);
        match *self {
            NlRequest::Cmp {
                n,
                bits,
                digit_bits,
            } => {
                let q = CmpShape { bits, digit_bits }.digits();
                mul(n, 4 * q.max(1))
            }
            NlRequest::Mux { n, k } => mul(n, 3 * k + 4),
            NlRequest::RowMul { ref layout, square } => {
                mul(layout.len(), 4 + 2 * square as usize).saturating_add(mul(layout.rows(), 2))
            }
            NlRequest::TruncSquareRow { ref layout, .. } => {
                mul(layout.len(), 16).saturating_add(mul(layout.rows(), 2))
            }
            NlRequest::ScaleVec { rows, d, .. } => mul(rows, 3 * d).saturating_add(d as u64),
        }
    }

    /// Correction words the dealer sends to `party` (only P1 receives any).
    pub fn correction_len(&self, party: Party) -> usize {
        if party == Party::P0 {
            return 0;
        }
        match *self {
            NlRequest::Cmp {
                n,
                bits,
                digit_bits,
            } => {
                let shape = CmpShape { bits, digit_bits };
                n.div_ceil(CMP_BLOCK) * shape.correction_words_per_block()
            }
            NlRequest::Mux { n, k } => n * (k + 1),
            NlRequest::RowMul { ref layout, square } => layout.len() * (1 + square as usize),
            NlRequest::TruncSquareRow { ref layout, .. } => 6 * layout.len(),
            NlRequest::ScaleVec { rows, d, .. } => rows * d,
        }
    }
}

/// One paired bit triple per combination node, as bit vectors over the elements (XOR shares):
/// `c1 = a ∧ b1`, `c2 = a ∧ b2`.
#[derive(Clone, Default)]
pub struct BitTripleWords {
    /// Shares of `a`.
    pub a: Vec<u64>,
    /// Shares of `b1`.
    pub b1: Vec<u64>,
    /// Shares of `c1 = a ∧ b1`.
    pub c1: Vec<u64>,
    /// Shares of `b2`.
    pub b2: Vec<u64>,
    /// Shares of `c2 = a ∧ b2`.
    pub c2: Vec<u64>,
}

/// One party's part of a batch of comparison correlations (see the module docs). `Debug`
/// prints sizes only.
#[derive(Clone)]
pub enum CmpMaterial {
    /// P0, the OT sender.
    Sender {
        /// Number of comparisons.
        n: usize,
        /// Digit structure.
        shape: CmpShape,
        /// `tables[j * n + e]`: the random tables of digit `j`, element `e` (`lt` low 16 bits,
        /// `eq` high 16 bits).
        tables: Vec<u32>,
        /// Paired triples per combination node, in tree order.
        triples: Vec<BitTripleWords>,
    },
    /// P1, the OT receiver.
    Receiver {
        /// Number of comparisons.
        n: usize,
        /// Digit structure.
        shape: CmpShape,
        /// `choices[j * n + e]`: the random choice of digit `j`, element `e`.
        choices: Vec<u8>,
        /// `chosen_lt[j]`: bit vector of `A_lt[c]` over the elements, per digit.
        chosen_lt: Vec<Vec<u64>>,
        /// `chosen_eq[j]` (digit 0's is empty).
        chosen_eq: Vec<Vec<u64>>,
        /// Paired triples per combination node.
        triples: Vec<BitTripleWords>,
    },
}

impl std::fmt::Debug for CmpMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (who, n, s) = match self {
            CmpMaterial::Sender { n, shape, .. } => ("Sender", n, shape),
            CmpMaterial::Receiver { n, shape, .. } => ("Receiver", n, shape),
        };
        write!(f, "CmpMaterial::{who}(n={n}, {s:?}, ..)")
    }
}

/// One party's part of `n` bit-masked triples with `k` values each.
#[derive(Clone)]
pub struct MuxMaterial {
    /// Elements.
    pub n: usize,
    /// Values per element.
    pub k: usize,
    /// XOR share of `ρ`, a bit vector over the elements.
    pub rho: Vec<u64>,
    /// Shares of the masks `a`, `[e * k + v]`.
    pub a: Vec<u64>,
    /// Additive shares of `ρ` (as 0/1).
    pub rho_arith: Vec<u64>,
    /// Additive shares of `ρ·a`, `[e * k + v]`.
    pub rho_a: Vec<u64>,
}

impl std::fmt::Debug for MuxMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MuxMaterial(n={}, k={}, ..)", self.n, self.k)
    }
}

/// One party's part of row-broadcast product triples.
#[derive(Clone)]
pub struct RowMulMaterial {
    /// Shares of the per-element mask `a`.
    pub a: Vec<u64>,
    /// Shares of the per-row mask `b`.
    pub b: Vec<u64>,
    /// Shares of `a ⊙ b_row`.
    pub c: Vec<u64>,
    /// Shares of `a²` (when requested).
    pub a2: Option<Vec<u64>>,
}

impl std::fmt::Debug for RowMulMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RowMulMaterial(n={}, rows={}, square={}, ..)",
            self.a.len(),
            self.b.len(),
            self.a2.is_some()
        )
    }
}

/// One party's part of a [`NlRequest::TruncSquareRow`] correlation (per element unless noted).
#[derive(Clone)]
pub struct TruncSquareRowMaterial {
    /// Shares of the mask `r`.
    pub r: Vec<u64>,
    /// Additive shares of `t = r_63`.
    pub t: Vec<u64>,
    /// Shares of `s = (r mod 2^63) >> bits`.
    pub s: Vec<u64>,
    /// Shares of `s²`.
    pub s2: Vec<u64>,
    /// Shares of `t·s`.
    pub ts: Vec<u64>,
    /// Shares of `t·b_row`.
    pub tb: Vec<u64>,
    /// Shares of `s·b_row`.
    pub sb: Vec<u64>,
    /// Shares of the per-row mask `b`.
    pub b: Vec<u64>,
}

impl std::fmt::Debug for TruncSquareRowMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TruncSquareRowMaterial(n={}, rows={}, ..)",
            self.r.len(),
            self.b.len()
        )
    }
}

/// One party's part of a server-vector product triple.
#[derive(Clone)]
pub enum ScaleVecMaterial {
    /// P0 holds the mask `A` and its share `C_0` of `A ⊙ B_row`.
    P0 {
        /// The mask of P0's input, `[rows * d]`.
        a: Vec<u64>,
        /// P0's share.
        c: Vec<u64>,
    },
    /// P1 holds its share `C_1`.
    P1 {
        /// P1's share.
        c: Vec<u64>,
    },
}

impl std::fmt::Debug for ScaleVecMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaleVecMaterial::P0 { a, .. } => write!(f, "ScaleVecMaterial::P0(n={}, ..)", a.len()),
            ScaleVecMaterial::P1 { c } => write!(f, "ScaleVecMaterial::P1(n={}, ..)", c.len()),
        }
    }
}

/// What a provider hands out for an [`NlRequest`].
#[derive(Clone, Debug)]
pub enum NlMaterial {
    /// For [`NlRequest::Cmp`].
    Cmp(CmpMaterial),
    /// For [`NlRequest::Mux`].
    Mux(MuxMaterial),
    /// For [`NlRequest::RowMul`].
    RowMul(RowMulMaterial),
    /// For [`NlRequest::TruncSquareRow`].
    TruncSquareRow(TruncSquareRowMaterial),
    /// For [`NlRequest::ScaleVec`].
    ScaleVec(ScaleVecMaterial),
}

impl NlMaterial {
    /// A short name of the kind (for error messages).
    pub fn kind(&self) -> &'static str {
        match self {
            NlMaterial::Cmp(_) => "comparison correlations",
            NlMaterial::Mux(_) => "bit-masked triples",
            NlMaterial::RowMul(_) => "row-broadcast triples",
            NlMaterial::TruncSquareRow(_) => "row truncation-square correlations",
            NlMaterial::ScaleVec(_) => "vector-product triples",
        }
    }
}

fn words(prg: &mut Prg, n: usize) -> Vec<u64> {
    (0..n).map(|_| prg.next_u64()).collect()
}

/// The random parts of one block of comparisons that come from P0's seed.
struct SenderBlock {
    /// `q * bs` table words, digit-major within the block.
    tables: Vec<u32>,
    /// Per combination: `a, b1, c1, b2, c2`.
    triples: Vec<[u64; 5]>,
}

/// The random parts of one block that come from P1's seed.
struct ReceiverBlock {
    /// `q * bs` choices, digit-major within the block.
    choices: Vec<u8>,
    /// Per combination: `a, b1, b2`.
    triples: Vec<[u64; 3]>,
}

fn sender_block(s0: &mut Prg, s1: &mut Prg, shape: &CmpShape, bs: usize) -> SenderBlock {
    let q = shape.digits();
    let mut tables = Vec::with_capacity(q * bs + 1);
    for _ in 0..(q * bs).div_ceil(2) {
        let w = s0.next_u64();
        tables.push(w as u32);
        tables.push((w >> 32) as u32);
    }
    tables.truncate(q * bs);
    for j in 0..q {
        let m = shape.entries(j);
        let lt = mask64(m as usize) as u32;
        let eq = if j == 0 { 0 } else { lt };
        for t in &mut tables[j * bs..(j + 1) * bs] {
            *t = (*t & lt) | (((*t >> 16) & eq) << 16);
        }
    }
    let valid = mask64(bs);
    let triples = (0..shape.combos())
        .map(|_| std::array::from_fn(|_| s1.next_u64() & valid))
        .collect();
    SenderBlock { tables, triples }
}

fn receiver_block(s0: &mut Prg, s1: &mut Prg, shape: &CmpShape, bs: usize) -> ReceiverBlock {
    let q = shape.digits();
    let mut choices = Vec::with_capacity(q * bs + 8);
    for _ in 0..(q * bs).div_ceil(8) {
        choices.extend_from_slice(&s0.next_u64().to_le_bytes());
    }
    choices.truncate(q * bs);
    for j in 0..q {
        let m = (shape.entries(j) - 1) as u8;
        for c in &mut choices[j * bs..(j + 1) * bs] {
            *c &= m;
        }
    }
    let valid = mask64(bs);
    let triples = (0..shape.combos())
        .map(|_| std::array::from_fn(|_| s1.next_u64() & valid))
        .collect();
    ReceiverBlock { choices, triples }
}

/// P1's correction words for one block.
fn block_correction(p0: &SenderBlock, p1: &ReceiverBlock, shape: &CmpShape, bs: usize) -> Vec<u64> {
    let q = shape.digits();
    let mut out = Vec::with_capacity(shape.correction_words_per_block());
    for j in 0..q {
        let mut w = 0u64;
        for e in 0..bs {
            let c = p1.choices[j * bs + e] as u32;
            w |= (((p0.tables[j * bs + e] >> c) & 1) as u64) << e;
        }
        out.push(w);
    }
    for j in 1..q {
        let mut w = 0u64;
        for e in 0..bs {
            let c = p1.choices[j * bs + e] as u32;
            w |= (((p0.tables[j * bs + e] >> (16 + c)) & 1) as u64) << e;
        }
        out.push(w);
    }
    for (s, r) in p0.triples.iter().zip(&p1.triples) {
        let [a0, b10, c10, b20, c20] = *s;
        let [a1, b11, b21] = *r;
        let a = a0 ^ a1;
        out.push((a & (b10 ^ b11)) ^ c10);
        out.push((a & (b20 ^ b21)) ^ c20);
    }
    out
}

fn block_sizes(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n.div_ceil(CMP_BLOCK)).map(move |b| (b, CMP_BLOCK.min(n - b * CMP_BLOCK)))
}

fn expand_cmp(party: Party, st: &Streams, n: usize, shape: CmpShape, corr: &[u64]) -> CmpMaterial {
    let q = shape.digits();
    let nw = n.div_ceil(64);
    let (mut s0, mut s1) = (st.get(0), st.get(1));
    let mut triples = vec![BitTripleWords::default(); shape.combos()];
    for t in &mut triples {
        for v in [&mut t.a, &mut t.b1, &mut t.c1, &mut t.b2, &mut t.c2] {
            v.reserve_exact(nw);
        }
    }
    match party {
        Party::P0 => {
            let mut tables = vec![0u32; q * n];
            for (b, bs) in block_sizes(n) {
                let blk = sender_block(&mut s0, &mut s1, &shape, bs);
                for j in 0..q {
                    tables[j * n + b * CMP_BLOCK..j * n + b * CMP_BLOCK + bs]
                        .copy_from_slice(&blk.tables[j * bs..(j + 1) * bs]);
                }
                for (t, w) in triples.iter_mut().zip(&blk.triples) {
                    t.a.push(w[0]);
                    t.b1.push(w[1]);
                    t.c1.push(w[2]);
                    t.b2.push(w[3]);
                    t.c2.push(w[4]);
                }
            }
            CmpMaterial::Sender {
                n,
                shape,
                tables,
                triples,
            }
        }
        Party::P1 => {
            let mut choices = vec![0u8; q * n];
            let mut chosen_lt = vec![Vec::with_capacity(nw); q];
            let mut chosen_eq = vec![Vec::with_capacity(nw); q];
            let per = shape.correction_words_per_block();
            for (b, bs) in block_sizes(n) {
                let blk = receiver_block(&mut s0, &mut s1, &shape, bs);
                for j in 0..q {
                    choices[j * n + b * CMP_BLOCK..j * n + b * CMP_BLOCK + bs]
                        .copy_from_slice(&blk.choices[j * bs..(j + 1) * bs]);
                }
                let c = &corr[b * per..(b + 1) * per];
                for j in 0..q {
                    chosen_lt[j].push(c[j]);
                }
                for j in 1..q {
                    chosen_eq[j].push(c[q + j - 1]);
                }
                let cc = &c[2 * q - 1..];
                for (ti, (t, w)) in triples.iter_mut().zip(&blk.triples).enumerate() {
                    t.a.push(w[0]);
                    t.b1.push(w[1]);
                    t.b2.push(w[2]);
                    t.c1.push(cc[2 * ti]);
                    t.c2.push(cc[2 * ti + 1]);
                }
            }
            CmpMaterial::Receiver {
                n,
                shape,
                choices,
                chosen_lt,
                chosen_eq,
                triples,
            }
        }
    }
}

fn expand_mux(party: Party, st: &Streams, n: usize, k: usize, corr: Vec<u64>) -> MuxMaterial {
    let rho = words(&mut st.get(0), n.div_ceil(64));
    let rho = mask_bits(rho, n);
    let a = words(&mut st.get(1), n * k);
    let (rho_arith, rho_a) = match party {
        Party::P0 => (words(&mut st.get(2), n), words(&mut st.get(3), n * k)),
        Party::P1 => {
            let mut ra = Vec::with_capacity(n);
            let mut rab = Vec::with_capacity(n * k);
            for c in corr.chunks_exact(k + 1) {
                ra.push(c[0]);
                rab.extend_from_slice(&c[1..]);
            }
            (ra, rab)
        }
    };
    MuxMaterial {
        n,
        k,
        rho,
        a,
        rho_arith,
        rho_a,
    }
}

fn mask_bits(mut w: Vec<u64>, n: usize) -> Vec<u64> {
    if !n.is_multiple_of(64)
        && let Some(last) = w.last_mut()
    {
        *last &= mask64(n % 64);
    }
    w
}

fn expand_rowmul(
    party: Party,
    st: &Streams,
    layout: &RowLayout,
    square: bool,
    corr: Vec<u64>,
) -> RowMulMaterial {
    let n = layout.len();
    let a = words(&mut st.get(0), n);
    let b = words(&mut st.get(1), layout.rows());
    let (c, a2) = match party {
        Party::P0 => (
            words(&mut st.get(2), n),
            square.then(|| words(&mut st.get(3), n)),
        ),
        Party::P1 => {
            if square {
                let c = corr.iter().step_by(2).copied().collect();
                let q = corr.iter().skip(1).step_by(2).copied().collect();
                (c, Some(q))
            } else {
                (corr, None)
            }
        }
    };
    RowMulMaterial { a, b, c, a2 }
}

/// Builds `party`'s material for a nonlinear request from its request streams and correction.
pub(crate) fn expand_local(
    party: Party,
    st: &Streams,
    req: &NlRequest,
    correction: Vec<u64>,
) -> NlMaterial {
    match *req {
        NlRequest::Cmp {
            n,
            bits,
            digit_bits,
        } => NlMaterial::Cmp(expand_cmp(
            party,
            st,
            n,
            CmpShape { bits, digit_bits },
            &correction,
        )),
        NlRequest::Mux { n, k } => NlMaterial::Mux(expand_mux(party, st, n, k, correction)),
        NlRequest::RowMul { ref layout, square } => {
            NlMaterial::RowMul(expand_rowmul(party, st, layout, square, correction))
        }
        NlRequest::TruncSquareRow { ref layout, .. } => {
            let n = layout.len();
            let r = words(&mut st.get(0), n);
            let b = words(&mut st.get(6), layout.rows());
            let m = match party {
                Party::P0 => TruncSquareRowMaterial {
                    r,
                    t: words(&mut st.get(1), n),
                    s: words(&mut st.get(2), n),
                    s2: words(&mut st.get(3), n),
                    ts: words(&mut st.get(4), n),
                    tb: words(&mut st.get(5), n),
                    sb: words(&mut st.get(7), n),
                    b,
                },
                Party::P1 => {
                    let col = |k: usize| correction.iter().skip(k).step_by(6).copied().collect();
                    TruncSquareRowMaterial {
                        r,
                        t: col(0),
                        s: col(1),
                        s2: col(2),
                        ts: col(3),
                        tb: col(4),
                        sb: col(5),
                        b,
                    }
                }
            };
            NlMaterial::TruncSquareRow(m)
        }
        NlRequest::ScaleVec { rows, d, .. } => NlMaterial::ScaleVec(match party {
            Party::P0 => ScaleVecMaterial::P0 {
                a: words(&mut st.get(0), rows * d),
                c: words(&mut st.get(2), rows * d),
            },
            Party::P1 => ScaleVecMaterial::P1 { c: correction },
        }),
    }
}

// One generator per request, kept in a box by the caller: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum GenKind {
    Cmp {
        p0: [Prg; 2],
        p1: [Prg; 2],
        shape: CmpShape,
        n: usize,
        block: usize,
    },
    Mux {
        /// P0: ρ_0 words, a_0, [ρ]_0, [ρa]_0; P1: ρ_1 words, a_1.
        p0: [Prg; 4],
        p1: [Prg; 2],
        k: usize,
        n: usize,
        e: usize,
        rho_word: u64,
    },
    RowMul {
        a0: Prg,
        c0: Prg,
        q0: Option<Prg>,
        a1: Prg,
        /// `b` per row, and the rows' lengths.
        b: Vec<u64>,
        lens: Vec<usize>,
        row: usize,
        left_in_row: usize,
    },
    TruncSquareRow {
        /// P0: r_0, t_0, s_0, s²_0, (ts)_0, (tb)_0, (sb)_0; P1: r_1.
        p0: [Prg; 7],
        r1: Prg,
        bits: u32,
        b: Vec<u64>,
        lens: Vec<usize>,
        row: usize,
        left_in_row: usize,
    },
    ScaleVec {
        a: Prg,
        c0: Prg,
        mask: Vec<u64>,
        col: usize,
    },
}

/// The dealer's generator of P1's correction for one nonlinear request, in pieces.
pub(crate) struct NlGen {
    kind: GenKind,
    remaining: usize,
}

impl NlGen {
    /// The generator for request streams `s0` (P0's) and `s1` (P1's); `seed1` is P1's session
    /// seed (for the vector masks).
    pub(crate) fn new(s0: &Streams, s1: &Streams, seed1: &Seed, req: &NlRequest) -> Self {
        let remaining = req.correction_len(Party::P1);
        let kind = match *req {
            NlRequest::Cmp {
                n,
                bits,
                digit_bits,
            } => GenKind::Cmp {
                p0: [s0.get(0), s0.get(1)],
                p1: [s1.get(0), s1.get(1)],
                shape: CmpShape { bits, digit_bits },
                n,
                block: 0,
            },
            NlRequest::Mux { n, k } => GenKind::Mux {
                p0: [s0.get(0), s0.get(1), s0.get(2), s0.get(3)],
                p1: [s1.get(0), s1.get(1)],
                k,
                n,
                e: 0,
                rho_word: 0,
            },
            NlRequest::RowMul { ref layout, square } => {
                let rows = layout.rows();
                let b0 = words(&mut s0.get(1), rows);
                let b1 = words(&mut s1.get(1), rows);
                let b = b0
                    .iter()
                    .zip(&b1)
                    .map(|(x, y)| x.wrapping_add(*y))
                    .collect();
                GenKind::RowMul {
                    a0: s0.get(0),
                    c0: s0.get(2),
                    q0: square.then(|| s0.get(3)),
                    a1: s1.get(0),
                    b,
                    lens: layout.lens().collect(),
                    row: 0,
                    left_in_row: 0,
                }
            }
            NlRequest::TruncSquareRow { ref layout, bits } => {
                let rows = layout.rows();
                let b0 = words(&mut s0.get(6), rows);
                let b1 = words(&mut s1.get(6), rows);
                GenKind::TruncSquareRow {
                    p0: [0, 1, 2, 3, 4, 5, 7].map(|k| s0.get(k)),
                    r1: s1.get(0),
                    bits,
                    b: b0
                        .iter()
                        .zip(&b1)
                        .map(|(x, y)| x.wrapping_add(*y))
                        .collect(),
                    lens: layout.lens().collect(),
                    row: 0,
                    left_in_row: 0,
                }
            }
            NlRequest::ScaleVec { id, d, .. } => GenKind::ScaleVec {
                a: s0.get(0),
                c0: s0.get(2),
                mask: words(&mut weight_prg(seed1, id), d),
                col: 0,
            },
        };
        NlGen { kind, remaining }
    }

    /// The next piece of the correction (about `max_elems` words, at least one element's or
    /// block's worth); `None` when done.
    pub(crate) fn next_piece(&mut self, max_elems: usize) -> Option<Vec<u64>> {
        if self.remaining == 0 {
            return None;
        }
        let mut out = Vec::new();
        match &mut self.kind {
            GenKind::Cmp {
                p0,
                p1,
                shape,
                n,
                block,
            } => {
                let per = shape.correction_words_per_block();
                let blocks = (max_elems / per).max(1);
                for _ in 0..blocks {
                    if *block * CMP_BLOCK >= *n {
                        break;
                    }
                    let bs = CMP_BLOCK.min(*n - *block * CMP_BLOCK);
                    let [s00, s01] = p0;
                    let [s10, s11] = p1;
                    let sb = sender_block(s00, s01, shape, bs);
                    let rb = receiver_block(s10, s11, shape, bs);
                    out.extend(block_correction(&sb, &rb, shape, bs));
                    *block += 1;
                }
            }
            GenKind::Mux {
                p0,
                p1,
                k,
                n,
                e,
                rho_word,
            } => {
                let per = *k + 1;
                let count = (max_elems / per).max(1).min(*n - *e);
                out.reserve(count * per);
                for _ in 0..count {
                    if *e % 64 == 0 {
                        *rho_word = p0[0].next_u64() ^ p1[0].next_u64();
                    }
                    let rho = (*rho_word >> (*e % 64)) & 1;
                    out.push(rho.wrapping_sub(p0[2].next_u64()));
                    for _ in 0..*k {
                        let a = p0[1].next_u64().wrapping_add(p1[1].next_u64());
                        out.push((rho.wrapping_mul(a)).wrapping_sub(p0[3].next_u64()));
                    }
                    *e += 1;
                }
            }
            GenKind::RowMul {
                a0,
                c0,
                q0,
                a1,
                b,
                lens,
                row,
                left_in_row,
            } => {
                let per = 1 + q0.is_some() as usize;
                let count = (max_elems / per).max(1).min(self.remaining / per);
                out.reserve(count * per);
                for _ in 0..count {
                    while *left_in_row == 0 {
                        *left_in_row = lens[*row];
                        *row += 1;
                    }
                    *left_in_row -= 1;
                    let a = a0.next_u64().wrapping_add(a1.next_u64());
                    out.push(a.wrapping_mul(b[*row - 1]).wrapping_sub(c0.next_u64()));
                    if let Some(q0) = q0 {
                        out.push(a.wrapping_mul(a).wrapping_sub(q0.next_u64()));
                    }
                }
            }
            GenKind::TruncSquareRow {
                p0,
                r1,
                bits,
                b,
                lens,
                row,
                left_in_row,
            } => {
                let count = (max_elems / 6).max(1).min(self.remaining / 6);
                out.reserve(6 * count);
                let low63 = (1u64 << 63) - 1;
                for _ in 0..count {
                    while *left_in_row == 0 {
                        *left_in_row = lens[*row];
                        *row += 1;
                    }
                    *left_in_row -= 1;
                    let [r0, t0, s0, q0, ts0, tb0, sb0] = p0;
                    let r = r0.next_u64().wrapping_add(r1.next_u64());
                    let t = r >> 63;
                    let s = (r & low63) >> *bits;
                    let b = b[*row - 1];
                    out.push(t.wrapping_sub(t0.next_u64()));
                    out.push(s.wrapping_sub(s0.next_u64()));
                    out.push(s.wrapping_mul(s).wrapping_sub(q0.next_u64()));
                    out.push(t.wrapping_mul(s).wrapping_sub(ts0.next_u64()));
                    out.push(t.wrapping_mul(b).wrapping_sub(tb0.next_u64()));
                    out.push(s.wrapping_mul(b).wrapping_sub(sb0.next_u64()));
                }
            }
            GenKind::ScaleVec { a, c0, mask, col } => {
                let count = max_elems.max(1).min(self.remaining);
                out.reserve(count);
                for _ in 0..count {
                    let v = a.next_u64().wrapping_mul(mask[*col]);
                    out.push(v.wrapping_sub(c0.next_u64()));
                    *col = (*col + 1) % mask.len();
                }
            }
        }
        self.remaining -= out.len();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beaver::dealer::{DealerClient, DealerConfig, serve_session};
    use crate::beaver::{InsecureIdealDealer, Material, Request, TripleProvider, WeightMask};
    use crate::channel::{FramedChannel, mem};

    const SEED: [u8; 32] = [5u8; 32];

    async fn dealer_pair(
        chunk_elems: usize,
    ) -> (
        DealerClient<FramedChannel>,
        DealerClient<FramedChannel>,
        tokio::task::JoinHandle<()>,
    ) {
        let (d0, c0) = mem::pair();
        let (d1, c1) = mem::pair();
        let cfg = DealerConfig {
            chunk_elems,
            ..DealerConfig::default()
        };
        let h = tokio::spawn(async move {
            let _ = serve_session(d0, d1, &cfg, &mut Prg::from_seed(SEED)).await;
        });
        let (p0, p1) = tokio::join!(
            DealerClient::connect(c0, Party::P0, [1; 32]),
            DealerClient::connect(c1, Party::P1, [1; 32])
        );
        (p0.unwrap(), p1.unwrap(), h)
    }

    fn bits_of(w: &[u64], n: usize) -> Vec<bool> {
        (0..n).map(|i| (w[i / 64] >> (i % 64)) & 1 == 1).collect()
    }

    /// Every value of a nonlinear material, flattened (to compare two sources).
    fn dump(m: &Material) -> Vec<u64> {
        let mut v = Vec::new();
        let Material::Nonlinear(m) = m else {
            if let Material::WeightMask(WeightMask::P1 { b }) = m {
                return b.data().to_vec();
            }
            return v;
        };
        match m {
            NlMaterial::Cmp(CmpMaterial::Sender {
                tables, triples, ..
            }) => {
                v.extend(tables.iter().map(|&t| t as u64));
                for t in triples {
                    for x in [&t.a, &t.b1, &t.c1, &t.b2, &t.c2] {
                        v.extend_from_slice(x);
                    }
                }
            }
            NlMaterial::Cmp(CmpMaterial::Receiver {
                choices,
                chosen_lt,
                chosen_eq,
                triples,
                ..
            }) => {
                v.extend(choices.iter().map(|&t| t as u64));
                chosen_lt.iter().chain(chosen_eq).for_each(|x| v.extend(x));
                for t in triples {
                    for x in [&t.a, &t.b1, &t.c1, &t.b2, &t.c2] {
                        v.extend_from_slice(x);
                    }
                }
            }
            NlMaterial::Mux(x) => {
                for y in [&x.rho, &x.a, &x.rho_arith, &x.rho_a] {
                    v.extend_from_slice(y);
                }
            }
            NlMaterial::RowMul(x) => {
                for y in [&x.a, &x.b, &x.c] {
                    v.extend_from_slice(y);
                }
                v.extend(x.a2.iter().flatten());
            }
            NlMaterial::TruncSquareRow(x) => {
                for y in [&x.r, &x.t, &x.s, &x.s2, &x.ts, &x.tb, &x.sb, &x.b] {
                    v.extend_from_slice(y);
                }
            }
            NlMaterial::ScaleVec(ScaleVecMaterial::P0 { a, c }) => {
                v.extend_from_slice(a);
                v.extend_from_slice(c);
            }
            NlMaterial::ScaleVec(ScaleVecMaterial::P1 { c }) => v.extend_from_slice(c),
        }
        v
    }

    /// Checks the correlation of both parties' parts of `req`.
    fn check(req: &NlRequest, m0: &Material, m1: &Material, mask: &[u64]) {
        let (Material::Nonlinear(a), Material::Nonlinear(b)) = (m0, m1) else {
            panic!("not nonlinear material");
        };
        match (req, a, b) {
            (
                NlRequest::Cmp { n, .. },
                NlMaterial::Cmp(CmpMaterial::Sender {
                    shape,
                    tables,
                    triples: t0,
                    ..
                }),
                NlMaterial::Cmp(CmpMaterial::Receiver {
                    choices,
                    chosen_lt,
                    chosen_eq,
                    triples: t1,
                    ..
                }),
            ) => {
                let n = *n;
                for j in 0..shape.digits() {
                    let lt = bits_of(&chosen_lt[j], n);
                    let eq = (j > 0).then(|| bits_of(&chosen_eq[j], n));
                    for e in 0..n {
                        let (t, c) = (tables[j * n + e], choices[j * n + e] as u32);
                        assert!(c < shape.entries(j), "choice in range");
                        assert!(t & 0xffff < 1 << shape.entries(j), "table masked");
                        assert_eq!(lt[e], (t >> c) & 1 == 1, "digit {j} element {e}");
                        if let Some(eq) = &eq {
                            assert_eq!(eq[e], (t >> (16 + c)) & 1 == 1);
                        }
                    }
                }
                assert_eq!(t0.len(), shape.combos());
                for (x, y) in t0.iter().zip(t1) {
                    let (a, b1, b2) = (bits_of(&x.a, n), bits_of(&x.b1, n), bits_of(&x.b2, n));
                    let (a1, b11, b21) = (bits_of(&y.a, n), bits_of(&y.b1, n), bits_of(&y.b2, n));
                    let (c1, c2) = (bits_of(&x.c1, n), bits_of(&x.c2, n));
                    let (c11, c21) = (bits_of(&y.c1, n), bits_of(&y.c2, n));
                    for e in 0..n {
                        let aa = a[e] ^ a1[e];
                        assert_eq!(c1[e] ^ c11[e], aa & (b1[e] ^ b11[e]));
                        assert_eq!(c2[e] ^ c21[e], aa & (b2[e] ^ b21[e]));
                    }
                    assert_eq!(x.a.len(), n.div_ceil(64), "one word per 64 elements");
                }
            }
            (NlRequest::Mux { n, k }, NlMaterial::Mux(x), NlMaterial::Mux(y)) => {
                let (r0, r1) = (bits_of(&x.rho, *n), bits_of(&y.rho, *n));
                for e in 0..*n {
                    let rho = (r0[e] ^ r1[e]) as u64;
                    assert_eq!(x.rho_arith[e].wrapping_add(y.rho_arith[e]), rho);
                    for v in 0..*k {
                        let i = e * k + v;
                        let a = x.a[i].wrapping_add(y.a[i]);
                        assert_eq!(x.rho_a[i].wrapping_add(y.rho_a[i]), rho.wrapping_mul(a));
                    }
                }
            }
            (
                NlRequest::RowMul { layout, square },
                NlMaterial::RowMul(x),
                NlMaterial::RowMul(y),
            ) => {
                let mut i = 0;
                for (r, len) in layout.lens().enumerate() {
                    let b = x.b[r].wrapping_add(y.b[r]);
                    for _ in 0..len {
                        let a = x.a[i].wrapping_add(y.a[i]);
                        assert_eq!(x.c[i].wrapping_add(y.c[i]), a.wrapping_mul(b));
                        if *square {
                            let q =
                                x.a2.as_ref().unwrap()[i].wrapping_add(y.a2.as_ref().unwrap()[i]);
                            assert_eq!(q, a.wrapping_mul(a));
                        }
                        i += 1;
                    }
                }
                assert_eq!(i, layout.len());
            }
            (
                NlRequest::TruncSquareRow { layout, bits },
                NlMaterial::TruncSquareRow(x),
                NlMaterial::TruncSquareRow(y),
            ) => {
                let add = |u: &[u64], v: &[u64], i: usize| u[i].wrapping_add(v[i]);
                let mut i = 0;
                for (row, len) in layout.lens().enumerate() {
                    let b = add(&x.b, &y.b, row);
                    for _ in 0..len {
                        let r = add(&x.r, &y.r, i);
                        let (t, s) = (r >> 63, (r & ((1u64 << 63) - 1)) >> bits);
                        assert_eq!(add(&x.t, &y.t, i), t);
                        assert_eq!(add(&x.s, &y.s, i), s);
                        assert_eq!(add(&x.s2, &y.s2, i), s.wrapping_mul(s));
                        assert_eq!(add(&x.ts, &y.ts, i), t.wrapping_mul(s));
                        assert_eq!(add(&x.tb, &y.tb, i), t.wrapping_mul(b));
                        assert_eq!(add(&x.sb, &y.sb, i), s.wrapping_mul(b));
                        i += 1;
                    }
                }
            }
            (
                NlRequest::ScaleVec { d, .. },
                NlMaterial::ScaleVec(ScaleVecMaterial::P0 { a, c: c0 }),
                NlMaterial::ScaleVec(ScaleVecMaterial::P1 { c: c1 }),
            ) => {
                for i in 0..a.len() {
                    assert_eq!(c0[i].wrapping_add(c1[i]), a[i].wrapping_mul(mask[i % d]));
                }
            }
            other => panic!("unexpected materials {other:?}"),
        }
    }

    fn requests() -> Vec<NlRequest> {
        let mut v = Vec::new();
        for n in [1usize, 63, 64, 65, 200] {
            for (bits, m) in [(31, 4), (32, 4), (1, 4), (3, 4), (20, 3), (9, 1)] {
                v.push(NlRequest::Cmp {
                    n,
                    bits,
                    digit_bits: m,
                });
            }
            v.push(NlRequest::Mux { n, k: 0 });
            v.push(NlRequest::Mux { n, k: 2 });
        }
        for square in [false, true] {
            v.push(NlRequest::RowMul {
                layout: RowLayout::Uniform { rows: 3, cols: 7 },
                square,
            });
            v.push(NlRequest::RowMul {
                layout: RowLayout::Causal {
                    heads: 2,
                    rows: 4,
                    cols: 6,
                },
                square,
            });
        }
        v.push(NlRequest::TruncSquareRow {
            layout: RowLayout::Uniform { rows: 4, cols: 9 },
            bits: 10,
        });
        v.push(NlRequest::ScaleVec {
            id: 9,
            rows: 3,
            d: 5,
        });
        v
    }

    /// Every kind from the ideal dealer and from the dealer's serve loop (corrections streamed in
    /// pieces of 7 elements): the same material for the same seeds, and the correlations hold.
    #[tokio::test]
    async fn ideal_and_dealer_serve_the_same_correct_material() {
        let (mut i0, mut i1) = InsecureIdealDealer::pair_from_seed(SEED);
        let (mut d0, mut d1, h) = dealer_pair(7).await;
        let reg = Request::WeightMask { id: 9, k: 1, m: 5 };
        let mut mask = Vec::new();
        for prov in [&mut i0, &mut i1] {
            let m = prov.fetch(&reg).await.unwrap();
            if let Material::WeightMask(WeightMask::P1 { b }) = m {
                mask = b.data().to_vec();
            }
        }
        let (x, y) = tokio::join!(d0.fetch(&reg), d1.fetch(&reg));
        assert_eq!(dump(&y.unwrap()), mask);
        x.unwrap();
        for req in requests() {
            let r = Request::Nonlinear(req.clone());
            let (a, b) = (i0.fetch(&r).await.unwrap(), i1.fetch(&r).await.unwrap());
            check(&req, &a, &b, &mask);
            let (c, d) = tokio::join!(d0.fetch(&r), d1.fetch(&r));
            let (c, d) = (c.unwrap(), d.unwrap());
            assert_eq!(dump(&a), dump(&c), "{req:?}: P0's material differs");
            assert_eq!(dump(&b), dump(&d), "{req:?}: P1's material differs");
            // Only P1 receives a correction, of the announced length.
            assert_eq!(r.correction_len(Party::P0), 0);
        }
        drop((d0, d1));
        h.await.unwrap();
    }

    #[tokio::test]
    async fn dealer_refuses_mismatched_and_invalid_requests() {
        // The two parties ask for different comparisons: both are told.
        let (mut d0, mut d1, _h) = dealer_pair(64).await;
        let a = Request::Nonlinear(NlRequest::Cmp {
            n: 10,
            bits: 31,
            digit_bits: 4,
        });
        let b = Request::Nonlinear(NlRequest::Cmp {
            n: 11,
            bits: 31,
            digit_bits: 4,
        });
        let (x, y) = tokio::join!(d0.fetch(&a), d1.fetch(&b));
        for e in [x.unwrap_err(), y.unwrap_err()] {
            let t = e.to_string();
            assert!(t.contains("does not match") && t.contains("n: 11"), "{t}");
        }
        // A vector product with an unregistered vector.
        let (mut d0, mut d1, _h) = dealer_pair(64).await;
        let r = Request::Nonlinear(NlRequest::ScaleVec {
            id: 3,
            rows: 2,
            d: 4,
        });
        let (x, y) = tokio::join!(d0.fetch(&r), d1.fetch(&r));
        for e in [x.unwrap_err(), y.unwrap_err()] {
            assert!(e.to_string().contains("no session mask"), "{e}");
        }
        // Invalid parameters are refused locally, before anything is sent.
        for bad in [
            NlRequest::Cmp {
                n: 3,
                bits: 31,
                digit_bits: 5,
            },
            NlRequest::Cmp {
                n: 3,
                bits: 64,
                digit_bits: 4,
            },
            NlRequest::Mux { n: 3, k: 17 },
            NlRequest::RowMul {
                layout: RowLayout::Causal {
                    heads: 1,
                    rows: 5,
                    cols: 4,
                },
                square: false,
            },
            NlRequest::ScaleVec {
                id: 1,
                rows: 0,
                d: 4,
            },
        ] {
            let e = Request::Nonlinear(bad.clone())
                .validate(1 << 20)
                .unwrap_err();
            assert!(e.to_string().contains("invalid request"), "{bad:?}: {e}");
        }
        let huge = NlRequest::Mux { n: 1 << 20, k: 3 };
        assert!(Request::Nonlinear(huge).validate(1 << 20).is_err());
    }

    #[test]
    fn layouts() {
        let c = RowLayout::Causal {
            heads: 2,
            rows: 3,
            cols: 5,
        };
        assert_eq!(c.lens().collect::<Vec<_>>(), vec![3, 4, 5, 3, 4, 5]);
        assert_eq!(c.len(), 24);
        assert_eq!(c.rows(), 6);
        assert_eq!(c.max_len(), 5);
        let u = RowLayout::Uniform { rows: 4, cols: 3 };
        assert_eq!(u.len(), 12);
        assert!(u.validate().is_ok());
        let shape = CmpShape {
            bits: 31,
            digit_bits: 4,
        };
        assert_eq!(shape.digits(), 8);
        assert_eq!(shape.width(7), 3);
        assert_eq!(shape.correction_words_per_block(), 29);
    }
}
