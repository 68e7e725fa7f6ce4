//! Conversions between additive shares over Z_2^64 and garbled words.
//!
//! **A2Y** (arithmetic to garbled, [`a2y`]). The garbler holds `a`, the evaluator `b`, with
//! `v = a + b mod 2^64`. The garbler encodes the bits of its share (16 bytes per bit), the
//! evaluator obtains the labels of its share's bits by correlated OT (one COT per bit, with
//! the garbler's free-XOR offset as the COT correlation), and the circuit adds the two words
//! with a ripple-carry adder (`l − 1` ANDs) on only the bits the value needs: bits
//! `t .. t + l` of each share (`t` = [`A2yParams::drop_low`], `l` = [`A2yParams::width`],
//! `t + l ≤ 64`). This is the standard Yao input encoding of a sum (Yao 1986; the
//! arithmetic/Yao conversion as in ABY, Demmler, Schneider, Zohner, NDSS 2015).
//!
//! *Exactness.* Write `v` as a signed 64-bit value. The word computed is
//! `((a >> t) + (b >> t)) mod 2^l` (logical shifts), which equals
//! `(⌊v / 2^t⌋ − e) mod 2^l` with a carry error `e ∈ {0, 1}`: `e = 1` exactly when the low
//! `t` bits of the shares carry into bit `t` (`(a mod 2^t) + (b mod 2^t) ≥ 2^t`). The wrap of
//! the 64-bit sum and every bit above `t + l` vanish mod 2^l. Hence:
//! - with `t = 0` the word is `v mod 2^l`, and read as a signed `l`-bit word it is **exactly
//!   `v` iff `−2^(l−1) ≤ v < 2^(l−1)`**; otherwise it is `v` wrapped mod 2^l;
//! - with `t > 0` the signed word is `⌊v / 2^t⌋ − e`, an error of at most one unit of the
//!   lowest kept bit (`2^t` in `v`'s scale, always towards −∞), provided
//!   `−2^(l−1) ≤ ⌊v / 2^t⌋ − 1` and `⌊v / 2^t⌋ < 2^(l−1)`.
//!
//! **Y2A** (garbled to arithmetic, [`y2a`]). Two ways were considered:
//! 1. *Masked output*: the garbler inputs a random mask `r` and the circuit reveals
//!    `z = y + r` to the evaluator; for a 64-bit result this is 64 garbler labels (1024 B),
//!    a 64-bit adder (63 ANDs, 2016 B) and 8 B of decoding bits, about 3 KB, or with an
//!    `l`-bit mask plus a garbled carry-out and one more OT for the wrap, about `48·l` bytes;
//! 2. *Boolean shares, then B2A by COT* (implemented): output wire `i` is already
//!    XOR-shared for free (garbler `p_i = lsb(W0_i)`, evaluator `e_i = lsb(W_i)`), and
//!    `y_i = p_i + e_i − 2·p_i·e_i`. One COT per bit with choice `e_i` gives the evaluator
//!    `H(t_i) = H(q_i ⊕ e_i·Δ)`; the garbler sends `d_i = H(q_i) − H(q_i ⊕ Δ) + w_i(1 − 2p_i)`
//!    (8 bytes), the evaluator adds `d_i` when `e_i = 1`, and the garbler keeps
//!    `p_i·w_i − H(q_i)`, where `w_i = 2^i` (and `−2^(l−1)` for the sign bit of a signed
//!    word, so the result is sign-extended for free). Cost: `l` COTs and `8·l` bytes, i.e.
//!    about `24·l` bytes with an IKNP-style COT (16 bytes per COT), half of option 1 and no
//!    garbled gates. `H` is `TCCR` with a per-session counter as tweak.
//!
//! Both conversions are generic over [`Backend`]: under [`Plain`](crate::gc::Plain) the
//! garbler's and evaluator's shares are both given and the result is the value; under
//! [`Count`](crate::gc::Count) the inputs and B2A bits are counted.

use crate::gc::word::add_many;
use crate::gc::{Backend, GcError, Role};

/// Which bits of the shared value A2Y brings into the circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct A2yParams {
    /// Width `l` of the garbled word (1..=64).
    pub width: usize,
    /// Low bits `t` dropped before the addition (`t + l ≤ 64`); see the module docs for the
    /// resulting error.
    pub drop_low: u32,
}

impl A2yParams {
    /// `width` bits, nothing dropped: exact for values that fit in `width` signed bits.
    pub fn exact(width: usize) -> Self {
        A2yParams { width, drop_low: 0 }
    }

    fn validate(&self) -> Result<(), GcError> {
        if !(1..=64).contains(&self.width) || self.width + self.drop_low as usize > 64 {
            return Err(GcError::usage(format!(
                "A2Y: need 1 ≤ width ≤ 64 and width + drop_low ≤ 64, got width {} and drop_low {}",
                self.width, self.drop_low
            )));
        }
        Ok(())
    }

    fn bits(&self, shares: &[u64]) -> Vec<bool> {
        shares
            .iter()
            .flat_map(|&s| {
                let s = s >> self.drop_low;
                (0..self.width).map(move |i| (s >> i) & 1 == 1)
            })
            .collect()
    }
}

fn own<'a>(shares: Option<&'a [u64]>, n: usize, who: &str) -> Result<Option<&'a [u64]>, GcError> {
    match shares {
        Some(s) if s.len() != n => Err(GcError::usage(format!(
            "A2Y: {} {who} shares given for {n} values",
            s.len()
        ))),
        other => Ok(other),
    }
}

/// A2Y: garbled words of `n` values shared additively over Z_2^64. The garbler passes
/// `garbler_shares`, the evaluator `evaluator_shares` (the other `None`; [`Plain`] needs
/// both). Cost per value: `l` garbler labels (16 bytes each), `l` COTs, `l − 1` ANDs.
///
/// [`Plain`]: crate::gc::Plain
pub async fn a2y<B: Backend>(
    b: &mut B,
    garbler_shares: Option<&[u64]>,
    evaluator_shares: Option<&[u64]>,
    n: usize,
    p: A2yParams,
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    p.validate()?;
    let gs = own(garbler_shares, n, "garbler")?;
    let es = own(evaluator_shares, n, "evaluator")?;
    let l = p.width;
    let gbits = gs.map(|s| p.bits(s));
    let ebits = es.map(|s| p.bits(s));
    let gw = b.input(Role::Garbler, n * l, gbits.as_deref()).await?;
    let ew = b.input(Role::Evaluator, n * l, ebits.as_deref()).await?;
    let xs: Vec<Vec<B::Wire>> = gw.chunks(l).map(|c| c.to_vec()).collect();
    let ys: Vec<Vec<B::Wire>> = ew.chunks(l).map(|c| c.to_vec()).collect();
    if n == 0 {
        return Ok(Vec::new());
    }
    add_many(b, &xs, &ys).await
}

/// Y2A: this party's additive shares over Z_2^64 of garbled words (LSB first; two's
/// complement sign-extended to 64 bits if `signed`), by boolean shares and B2A with one COT
/// and 8 bytes per bit (see the module docs). [`Plain`](crate::gc::Plain) returns the values.
pub async fn y2a<B: Backend>(
    b: &mut B,
    words: &[Vec<B::Wire>],
    signed: bool,
) -> Result<Vec<u64>, B::Error> {
    b.arith_shares(words, signed).await
}
