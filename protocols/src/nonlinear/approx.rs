//! The approximations and ops, written once over [`Arith`]: ReLU, GELU, the row maximum,
//! `exp` on non-positive inputs, the reciprocal, the inverse square root, softmax, LayerNorm
//! and argmax. Every function is batched over flat vectors: its rounds depend on the shapes'
//! *depth* (digits, tree levels), never on the number of elements, heads or rows.
//!
//! Scales: values are fixed point at `2^f` unless a comment says otherwise; "at `s`" means
//! scale `2^s`. Each constant below is documented with the error it contributes; the measured
//! end-to-end bounds are in `docs/protocols/nonlinear.md` and asserted by the tests.

use crate::beaver::nl::RowLayout;
use crate::session::ErrorKind;
use crate::share::Party;

use super::arith::{Arith, Prod, ServerVector};

/// Measured error bounds of the plain backend against f64 on each function's domain (the
/// tests assert them; `docs/protocols/nonlinear.md` says how each was measured).
#[derive(Clone, Copy, Debug)]
pub struct Accuracy {
    /// GELU, max absolute error on every representable input of `[-8, 8]` and far-out points.
    pub gelu_abs: f64,
    /// `exp` on `[-20, 0]` (temperature 1), max absolute error.
    pub exp_abs: f64,
    /// Reciprocal on `[1, 1024]`, max absolute error.
    pub recip_abs: f64,
    /// Inverse square root on `[2^-10, 2^16)`, max relative error.
    pub rsqrt_rel: f64,
    /// Inverse square root on its whole domain `[2^-16, 2^24)`, max relative error.
    pub rsqrt_rel_whole: f64,
    /// Softmax (test inputs: logits up to ±100, temperatures 1/4..4), max absolute error.
    pub softmax_abs: f64,
    /// LayerNorm (test inputs: row scales 1e-2..1e2, gains up to ±2), max absolute error.
    pub layer_norm_abs: f64,
}

/// The bounds the tests assert (see [`Accuracy`]).
pub const ACCURACY: Accuracy = Accuracy {
    gelu_abs: 1.8e-3,
    exp_abs: 2.5e-4,
    recip_abs: 2.5e-5,
    rsqrt_rel: 3.0e-4,
    rsqrt_rel_whole: 4.0e-3,
    softmax_abs: 1.5e-3,
    layer_norm_abs: 1.0e-3,
};

/// GELU: for `|x| ≥ GELU_CUT` the correction polynomial is dropped (`gelu(x) = relu(x)`).
pub const GELU_CUT: f64 = 3.25;

/// GELU's correction polynomial `p(a) ≈ a/2·(1 − tanh(√(2/π)(a + 0.044715a³)))` on
/// `[0, 3.25)`, `c_0..c_4` (degree 4, reweighted least squares; `scripts/fit_gelu.py`).
pub const GELU_COEFFS: [f64; 5] = [
    -0.00126995,
    0.53633059,
    -0.53910943,
    0.18300023,
    -0.02088144,
];

/// Extra scale bits of GELU's polynomial sum (at `f + 40`, truncated once by 40 bits).
pub const GELU_EXTRA_BITS: u32 = 40;

/// `exp`: inputs below `-EXP_CLIP` (after the temperature) are clipped to it.
pub const EXP_CLIP: f64 = 16.0;

/// `exp`: number of squarings `k` of `exp(x) ≈ q(x / 2^k)^(2^k)`.
pub const EXP_SQUARINGS: u32 = 4;

/// `exp`: scale of the intermediate values (24 fractional bits).
pub const EXP_SCALE: u32 = 24;

/// `exp`: the quadratic `q(u) = 1 + α u + β u²` on `u ∈ [−1, 0]`, with
/// `α = EXP_ALPHA / 2^12`, `β = EXP_BETA / 2^12`, fitted to minimise `max |q(x/16)^16 − e^x|`
/// on `[−16, 0]` (Taylor's `1 + u + u²/2` gives 1.0e-3 in real arithmetic; this gives 2.3e-4).
pub const EXP_ALPHA: u64 = 4090;
/// See [`EXP_ALPHA`].
pub const EXP_BETA: u64 = 1896;

/// Reciprocal: initial guess `24/17 − 8/17·m` on `m ∈ [1, 2)` (relative error ≤ 1/17).
pub const RECIP_INIT: (f64, f64) = (24.0 / 17.0, 8.0 / 17.0);

/// Inverse square root: initial guess `(2 − 1/√2) − (1 − 1/√2)·m` on `[1, 2)` (the chord;
/// relative error < 3%).
pub fn rsqrt_init() -> (f64, f64) {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    (2.0 - s, 1.0 - s)
}

fn ceil_log2(x: usize) -> u32 {
    if x <= 1 {
        0
    } else {
        usize::BITS - (x - 1).leading_zeros()
    }
}

/// ReLU: `x · [x ≥ 0]`, exact for `|x| < 2^(act_bits − 1)` (ring units). One comparison and
/// one multiplexer.
pub async fn relu<A: Arith>(a: &mut A, x: &A::V) -> Result<A::V, ErrorKind> {
    let bits = a.params().act_bits;
    let neg = a.msb(x, bits).await?;
    let pos = a.bnot(&neg);
    let mut r = a.mux(&pos, &[x], &[64]).await?;
    Ok(r.pop().expect("one value"))
}

/// GELU, tanh form (GPT-2's `gelu_new`): `relu(x) − [|x| < 3.25] · p(|x|)` with the degree-4
/// correction polynomial [`GELU_COEFFS`]. Domain: `|x| < 2^(act_bits − 1 − f)`.
///
/// Steps: `s = [x ≥ 0]`; `relu = s·x`; `a = 2 relu − x = |x|`; `in = [a < 3.25]`; `a²`
/// (square, truncated); `a³ = a²·a`, `a⁴ = a²·a²` (one round); the polynomial summed at scale
/// `f + 40` and truncated once; `result = relu − in · p`. Out of range (`|x| ≥ 3.25`) the powers
/// wrap around, and are multiplied by `in = 0`, which is exact in the ring.
pub async fn gelu<A: Arith>(a: &mut A, x: &A::V) -> Result<A::V, ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits;
    let n = a.len(x);
    let neg = a.msb(x, p.act_bits).await?;
    let pos = a.bnot(&neg);
    let relu = a.mux(&pos, &[x], &[64]).await?.pop().expect("one value");
    let abs = a.sub(&a.scale(&relu, 2), x);
    let cut = a.add_public(&abs, &vec![p.enc(GELU_CUT).wrapping_neg(); n]);
    let inside = a.msb(&cut, p.act_bits).await?;
    let a2 = a.square(&abs).await?;
    let a2 = a.trunc(&a2, f).await?;
    let pw = a
        .products(&[Prod::Mul(&a2, &abs), Prod::Square(&a2)])
        .await?;
    let (a3, a4) = (&pw[0], &pw[1]);
    // Sum at scale S = f + 40: a and a² are at f, a³ and a⁴ at 2f.
    let e = GELU_EXTRA_BITS;
    let c = GELU_COEFFS;
    let mut acc = a.scale(&abs, p.enc_at(c[1], e));
    acc = a.add(&acc, &a.scale(&a2, p.enc_at(c[2], e)));
    acc = a.add(&acc, &a.scale(a3, p.enc_at(c[3], e - f)));
    acc = a.add(&acc, &a.scale(a4, p.enc_at(c[4], e - f)));
    acc = a.add_public(&acc, &vec![p.enc_at(c[0], f + e); n]);
    let poly = a.trunc(&acc, e).await?;
    let corr = a
        .mux(&inside, &[&poly], &[64])
        .await?
        .pop()
        .expect("one value");
    Ok(a.sub(&relu, &corr))
}

/// One tournament level over groups of the given lengths: the `(lo, hi)` index lists of the
/// pairs, for the next level the source of each element (`Ok(i)`: winner `i` of this level,
/// `Err(j)`: element `j` carried over), and the new group lengths.
struct Level {
    lo: Vec<usize>,
    hi: Vec<usize>,
    next: Vec<Result<usize, usize>>,
    lens: Vec<usize>,
}

fn tournament_level(lens: &[usize]) -> Level {
    let mut l = Level {
        lo: vec![],
        hi: vec![],
        next: vec![],
        lens: vec![],
    };
    let mut off = 0;
    for &len in lens {
        let pairs = len / 2;
        for p in 0..pairs {
            l.next.push(Ok(l.lo.len()));
            l.lo.push(off + 2 * p);
            l.hi.push(off + 2 * p + 1);
        }
        if len % 2 == 1 {
            l.next.push(Err(off + len - 1));
        }
        l.lens.push(pairs + len % 2);
        off += len;
    }
    l
}

fn assemble<A: Arith>(a: &A, winners: &A::V, prev: &A::V, next: &[Result<usize, usize>]) -> A::V {
    let nw = a.len(winners);
    let idx: Vec<usize> = next
        .iter()
        .map(|s| match *s {
            Ok(i) => i,
            Err(j) => nw + j,
        })
        .collect();
    a.gather(&a.concat(&[winners, prev]), &idx)
}

/// The maximum of each group (consecutive lengths `lens`, all ≥ 1), by a tournament of
/// comparisons and multiplexers: `⌈log2 max_len⌉` levels, `Σ (len − 1)` comparisons. Exact when
/// every difference of two elements fits in `logit_bits` bits.
pub async fn row_max<A: Arith>(a: &mut A, x: &A::V, lens: &[usize]) -> Result<A::V, ErrorKind> {
    let bits = a.params().logit_bits;
    let mut cur = x.clone();
    let mut lens = lens.to_vec();
    while lens.iter().any(|&l| l > 1) {
        let Level {
            lo,
            hi,
            next,
            lens: new_lens,
        } = tournament_level(&lens);
        let vlo = a.gather(&cur, &lo);
        let vhi = a.gather(&cur, &hi);
        let less = a.msb(&a.sub(&vlo, &vhi), bits).await?;
        let diff = a.sub(&vhi, &vlo);
        let d = a
            .mux(&less, &[&diff], &[64])
            .await?
            .pop()
            .expect("one value");
        let win = a.add(&vlo, &d);
        cur = assemble(a, &win, &cur, &next);
        lens = new_lens;
    }
    Ok(cur)
}

/// `exp(d / t)` for `d ≤ 0` with a public temperature `t > 0` per group (`lens`, `temps`),
/// at scale `2^f`.
///
/// Steps: clip `d` below `−16 t` (one comparison and one multiplexer); `u = d / (16 t)` at
/// scale `2^24` (a public multiply and a truncation); `y = q(u) = 1 + α u + β u²` (a square,
/// one truncation); four squarings `y ← y²` (each a square and a truncation; the last one
/// truncates to `2^f`). `q(0) = 1` exactly, so `exp(0) = 1` exactly.
pub async fn exp_neg_rows<A: Arith>(
    a: &mut A,
    d: &A::V,
    lens: &[usize],
    temps: &[f64],
) -> Result<A::V, ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits;
    let y = EXP_SCALE;
    let per_row = |g: &dyn Fn(f64) -> u64| -> Vec<u64> {
        lens.iter()
            .zip(temps)
            .flat_map(|(&l, &t)| std::iter::repeat_n(g(t), l))
            .collect()
    };
    let clip = per_row(&|t| p.enc(EXP_CLIP * t));
    let neg_clip: Vec<u64> = clip.iter().map(|c| c.wrapping_neg()).collect();
    let kmul = per_row(&|t| (2f64.powi(y as i32) / (EXP_CLIP * t)).round() as u64);
    // Clip: d' = d + [d < −C]·(−C − d).
    let below = a.msb(&a.add_public(d, &clip), p.logit_bits).await?;
    let lift = a.sub(&a.constant(&neg_clip), d);
    let lift = a
        .mux(&below, &[&lift], &[64])
        .await?
        .pop()
        .expect("one value");
    let dc = a.add(d, &lift);
    // u = d' / (16 t) at scale 2^24.
    let u = a.trunc(&a.mul_public(&dc, &kmul), f).await?;
    // q(u) at scale 2^(2y + 12), truncated to 2^y.
    let u2 = a.square(&u).await?;
    let n = a.len(&u);
    let mut acc = a.scale(&u, EXP_ALPHA << y);
    acc = a.add(&acc, &a.scale(&u2, EXP_BETA));
    acc = a.add_public(&acc, &vec![1u64 << (2 * y + 12); n]);
    let mut v = a.trunc(&acc, y + 12).await?;
    for i in 0..EXP_SQUARINGS {
        let sq = a.square(&v).await?;
        let shift = if i + 1 == EXP_SQUARINGS { 2 * y - f } else { y };
        v = a.trunc(&sq, shift).await?;
    }
    Ok(v)
}

/// `2^-e` at scale `2^scale` for each `x` with `x ∈ [2^e, 2^(e+1))` and `e ∈ [lo, hi)`
/// (saturating), plus the one-hot-weighted sum `Σ_j [e = j]·w(j)` of public weights: both
/// linear in the comparison bits `b_j = [x ≥ 2^j]`, `j ∈ (lo, hi)`. Returns
/// `(pow, weighted)`. `x` is at scale `2^f`; the comparisons use `f + hi + 1` bits.
async fn range_reduce<A: Arith>(
    a: &mut A,
    x: &A::V,
    lo: i32,
    hi: i32,
    scale: u32,
    weights: Option<&(dyn Fn(i32) -> u64 + Sync)>,
) -> Result<(A::V, Option<A::V>), ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits as i32;
    let n = a.len(x);
    let js: Vec<i32> = ((lo + 1)..hi).collect();
    // 2^-lo - Σ b_j 2^-j   and   w(lo) + Σ b_j (w(j) − w(j−1)).
    let pw = |j: i32| 1u64 << (scale as i32 - j);
    let mut pow = a.constant(&vec![pw(lo); n]);
    let mut wsum = weights.map(|w| a.constant(&vec![w(lo); n]));
    if !js.is_empty() {
        let shifted: Vec<A::V> = js
            .iter()
            .map(|&j| a.add_public(x, &vec![(1u64 << (j + f)).wrapping_neg(); n]))
            .collect();
        let refs: Vec<&A::V> = shifted.iter().collect();
        let all = a.concat(&refs);
        let lt = a.msb(&all, (f + hi + 1) as u32).await?;
        let ge = a.bnot(&lt);
        let bits = a.b2a(&ge).await?;
        let parts = a.split(&bits, &vec![n; js.len()]);
        for (b, &j) in parts.iter().zip(&js) {
            pow = a.sub(&pow, &a.scale(b, pw(j)));
            if let (Some(ws), Some(w)) = (wsum.as_mut(), weights) {
                *ws = a.add(ws, &a.scale(b, w(j).wrapping_sub(w(j - 1))));
            }
        }
    }
    Ok((pow, wsum))
}

/// `1/s` for `s ∈ [1, max]` (at scale `2^f`), the softmax denominators.
///
/// Range reduction over `[1, 2^h)`, `h = ⌈log2(max + 1)⌉` (`h − 1` comparisons per value):
/// `P = 2^-e`, `m = s·P ∈ [1, 2)`; Newton `y ← y (2 − m y)` from the linear guess
/// [`RECIP_INIT`] (`recip_iters` steps); `1/s = y·P`.
pub async fn reciprocal<A: Arith>(a: &mut A, s: &A::V, max: usize) -> Result<A::V, ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits;
    let n = a.len(s);
    let h = ceil_log2(max + 1).max(1) as i32;
    let (pow, _) = range_reduce(a, s, 0, h, f, None).await?;
    let m = a.mul(s, &pow).await?;
    let m = a.trunc(&m, f).await?;
    let y0 = a.scale(&m, p.enc(RECIP_INIT.1));
    let y0 = a.sub(&a.constant(&vec![p.enc_at(RECIP_INIT.0, 2 * f); n]), &y0);
    let mut y = a.trunc(&y0, f).await?;
    for _ in 0..p.recip_iters {
        let my = a.mul(&m, &y).await?;
        let my = a.trunc(&my, f).await?;
        let two_minus = a.sub(&a.constant(&vec![2 * p.one(); n]), &my);
        let ny = a.mul(&y, &two_minus).await?;
        y = a.trunc(&ny, f).await?;
    }
    let r = a.mul(&y, &pow).await?;
    a.trunc(&r, f).await
}

/// Extra fractional bits of [`rsqrt`]'s output (at scale `2^(f+4)`): LayerNorm's `1/σ` is
/// small when the variance is large, and its relative precision sets the output's.
pub const RSQRT_OUT_EXTRA_BITS: u32 = 4;

/// `1/√v` for `v ∈ [2^-f, 2^rsqrt_max_log2)` (at scale `2^f`); the result is at scale
/// `2^(f + RSQRT_OUT_EXTRA_BITS)`. See [`rsqrt_scaled`].
pub async fn rsqrt<A: Arith>(a: &mut A, v: &A::V) -> Result<A::V, ErrorKind> {
    rsqrt_scaled(a, v, 1.0).await
}

/// `c/√v` for `v ∈ [2^-f, 2^rsqrt_max_log2)` (at scale `2^f`) and a public `c > 0`; the result
/// is at scale `2^(f + RSQRT_OUT_EXTRA_BITS)`. LayerNorm calls it with `v = Σ c²` and
/// `c = √d`, which keeps `d` times more precision than dividing by `d` first.
///
/// Range reduction over `[2^-f, 2^H)` (`f + H − 1` comparisons per value): `P = 2^-e` (at
/// scale `2^H`), `Q = c·2^(-e/2)` (public weights per exponent, at the finest scale the
/// product `y·Q` allows), `m = v·P`;
/// Newton `y ← y (3 − m y²) / 2` from the chord [`rsqrt_init`] (`rsqrt_iters` steps);
/// `c/√v = y·Q`.
pub async fn rsqrt_scaled<A: Arith>(a: &mut A, v: &A::V, c: f64) -> Result<A::V, ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits;
    let n = a.len(v);
    let lo = -(f as i32);
    let hi = p.rsqrt_max_log2 as i32;
    // Q's scale: as fine as y·Q < 2^61 allows (y < 1.3·2^f, Q ≤ c·2^(g + f/2)).
    let g = ((60.0 - 1.5 * f as f64 - c.log2()).floor() as i64)
        .clamp((f + RSQRT_OUT_EXTRA_BITS + 1) as i64, 61) as u32;
    let qw = move |j: i32| (c * 2f64.powf(g as f64 - j as f64 / 2.0)).round() as u64;
    let (pow, q) = range_reduce(a, v, lo, hi, hi as u32, Some(&qw)).await?;
    let q = q.expect("weights requested");
    let m = a.mul(v, &pow).await?;
    let m = a.trunc(&m, hi as u32).await?;
    let (c0, c1) = rsqrt_init();
    let y0 = a.scale(&m, p.enc(c1));
    let y0 = a.sub(&a.constant(&vec![p.enc_at(c0, 2 * f); n]), &y0);
    let mut y = a.trunc(&y0, f).await?;
    for _ in 0..p.rsqrt_iters {
        let y2 = a.square(&y).await?;
        let y2 = a.trunc(&y2, f).await?;
        let my2 = a.mul(&m, &y2).await?;
        let my2 = a.trunc(&my2, f).await?;
        let t = a.sub(&a.constant(&vec![3 * p.one(); n]), &my2);
        let ny = a.mul(&y, &t).await?;
        y = a.trunc(&ny, f + 1).await?;
    }
    let r = a.mul(&y, &q).await?;
    a.trunc(&r, g - RSQRT_OUT_EXTRA_BITS).await
}

/// Softmax of every row of `layout` over the flat vector `x` of its entries (causal layouts
/// hold only the unmasked entries), with a public temperature per row: `softmax(x / t)`.
///
/// Steps: row max (tournament); `d = x − max`; [`exp_neg_rows`]; row sums; one
/// [`reciprocal`] per row; `p = e · r_row` (a row-broadcast product) truncated.
pub async fn softmax<A: Arith>(
    a: &mut A,
    x: &A::V,
    layout: &RowLayout,
    temps: &[f64],
) -> Result<A::V, ErrorKind> {
    let f = a.params().frac_bits;
    let lens: Vec<usize> = layout.lens().collect();
    let m = row_max(a, x, &lens).await?;
    let d = a.sub(x, &a.repeat_groups(&m, &lens));
    let e = exp_neg_rows(a, &d, &lens, temps).await?;
    let s = a.sum_groups(&e, &lens);
    let r = reciprocal(a, &s, layout.max_len()).await?;
    let pr = a.mul_rows(&e, &r, layout).await?;
    a.trunc(&pr, f).await
}

/// LayerNorm's parameters: the server's private gain (a [`ServerVector`]), its private bias
/// (P1 passes `Some`, P0 `None`; the plain backend `Some`), and the public `eps`.
#[derive(Clone)]
pub struct NormParams {
    /// The gain `γ`, multiplied the way server-held weights are (never revealed).
    pub gain: ServerVector,
    /// The bias `β` at scale `2^f` (P1's plaintext; `None` on P0).
    pub bias: Option<Vec<u64>>,
    /// `ε` (public), added to the variance (at least one fixed-point unit).
    pub eps: f64,
}

impl std::fmt::Debug for NormParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NormParams({:?}, bias: {}, eps: {})",
            self.gain,
            if self.bias.is_some() { "held" } else { "none" },
            self.eps
        )
    }
}

/// LayerNorm of `rows` rows of `d` values: `γ ⊙ (x − μ) / √(σ² + ε) + β`.
///
/// Centred without a division: `c̃ = d·x − Σx = d (x − μ)`, exact in the ring, then
/// `c = ⌊c̃ / 2^k⌋` with `k = ⌊log2 d⌋` (so `c ∈ [1, 2)·(x − μ)`; a constant row gives exactly
/// `c = 0` and the output `β`).
/// Steps: `c²` keeping `c` ([`Arith::trunc_square_keep`]: one opening for the truncation, the
/// square and the later row product); `S = (Σ c²) >> f + ⌈ε d³ / 4^k⌉`; `r = √d / √S`
/// ([`rsqrt_scaled`], at `2^(f+4)`; `c · r = (x − μ)/σ`); `c · r_row` (at `2^(2f+4)`, from the
/// kept value); times `γ` (at `2^(3f+4)`, P0 sends one masked value per element); one
/// truncation by `2f + 4`; P1 adds `β`. Domain: `Σ c² < 2^rsqrt_max_log2` per row, i.e.
/// `‖x − μ‖₂ < 2^14` with the default 30, and `|γ · (x − μ)/σ| < 2^(62 − 3f − 4)` (`2^10` at
/// `f = 16`).
pub async fn layer_norm<A: Arith>(
    a: &mut A,
    x: &A::V,
    rows: usize,
    norm: &NormParams,
) -> Result<A::V, ErrorKind> {
    let p = *a.params();
    let f = p.frac_bits;
    let d = norm.gain.len();
    let lens = vec![d; rows];
    let layout = RowLayout::Uniform { rows, cols: d };
    let k = (usize::BITS - 1 - d.leading_zeros()).max(1);
    let s1 = a.sum_groups(x, &lens);
    let ct = a.sub(&a.scale(x, d as u64), &a.repeat_groups(&s1, &lens));
    let (sq, kept) = a.trunc_square_keep(&ct, k, &layout).await?;
    let s2 = a.sum_groups(&sq, &lens);
    let s2 = a.trunc(&s2, f).await?;
    let dd = d as f64;
    let eps = p.enc(norm.eps * dd * dd * dd / 4f64.powi(k as i32)).max(1);
    let s2 = a.add_public(&s2, &vec![eps; rows]);
    let r = rsqrt_scaled(a, &s2, dd.sqrt()).await?;
    let y = a.mul_rows_kept(kept, &r).await?;
    let z = a.scale_server(&y, rows, &norm.gain).await?;
    let out = a.trunc(&z, 2 * f + RSQRT_OUT_EXTRA_BITS).await?;
    Ok(a.add_server_rows(&out, rows, norm.bias.as_deref()))
}

/// The index of the largest element of `x` (the first one among ties), revealed to `to` only
/// (`Some` there, `None` at the other party). A tournament of comparisons with index tracking:
/// `⌈log2 n⌉` levels, `n − 1` comparisons, each level's value and index selected with one
/// multiplexer (values modulo `2^logit_bits`, indices modulo `2^⌈log2 n⌉`).
pub async fn argmax<A: Arith>(a: &mut A, x: &A::V, to: Party) -> Result<Option<u64>, ErrorKind> {
    let n = a.len(x);
    if n == 0 {
        return Err(ErrorKind::BadInput("argmax over an empty vector".into()));
    }
    let bits = a.params().logit_bits;
    let ib = ceil_log2(n).max(1);
    let mut vals = x.clone();
    let mut idx = a.constant(&(0..n as u64).collect::<Vec<_>>());
    let mut len = n;
    while len > 1 {
        let Level { lo, hi, next, .. } = tournament_level(&[len]);
        let vlo = a.gather(&vals, &lo);
        let vhi = a.gather(&vals, &hi);
        let ilo = a.gather(&idx, &lo);
        let ihi = a.gather(&idx, &hi);
        let less = a.msb(&a.sub(&vlo, &vhi), bits).await?;
        let dv = a.sub(&vhi, &vlo);
        let di = a.sub(&ihi, &ilo);
        let sel = a.mux(&less, &[&dv, &di], &[bits, ib]).await?;
        let wv = a.add(&vlo, &sel[0]);
        let wi = a.add(&ilo, &sel[1]);
        vals = assemble(a, &wv, &vals, &next);
        idx = assemble(a, &wi, &idx, &next);
        len = len.div_ceil(2);
    }
    let mask = if ib >= 64 { u64::MAX } else { (1u64 << ib) - 1 };
    Ok(a.reveal(&idx, to).await?.map(|v| v[0] & mask))
}
