//! Fixed-point approximations of the transformer's nonlinearities, as a 2PC protocol computes
//! them.
//!
//! Every value is a fixed-point number with [`FRAC_BITS`] = 16 fractional bits held as the
//! signed reading (`i64`) of an element of Z_2^64; every operation below is one of the
//! operations an additive-secret-sharing protocol offers (CrypTen, Knott et al. 2021; SIGMA,
//! Gupta et al. 2023; BumbleBee, Lu et al. 2023):
//!
//! - ring addition and subtraction (wrapping), local;
//! - multiplication by a public constant followed by a truncation ([`mul_pub`]), local;
//! - multiplication of two secrets followed by a truncation ([`mul`]): one Beaver product;
//! - multiplication of a secret by a secret bit ([`select`]): one bit-injection product, exact;
//! - comparison with a public constant ([`ge`]): a millionaires' protocol giving a shared bit;
//! - truncation by a public number of bits ([`shr`]) and multiplication by a public power of two
//!   ([`shl`]).
//!
//! Truncation is the arithmetic right shift of the signed reading (floor division by 2^f), the
//! exact plaintext mirror of a faithful secure truncation. The secure engine implements each
//! function here operation by operation, so its output equals these functions' bit for bit
//! (up to the ±1 ulp of a probabilistic local truncation, if it uses one).
//!
//! Error bounds below are measured by the tests of this module over the whole stated domain
//! (at every representable input or on a dense grid) against the f64 function.

/// Number of fractional bits of the mirror's fixed point (privlm's AGREEMENT default).
pub const FRAC_BITS: u32 = 16;
/// 1.0 in fixed point.
pub const ONE: i64 = 1 << FRAC_BITS;

/// Encodes a real as fixed point (round to nearest). Used for public constants only.
pub fn enc(x: f64) -> i64 {
    (x * ONE as f64).round() as i64
}

/// Decodes fixed point to a real.
pub fn dec(x: i64) -> f64 {
    x as f64 / ONE as f64
}

/// Product of two secrets, then truncation by `FRAC_BITS`: `(a * b) >> f` in Z_2^64.
pub fn mul(a: i64, b: i64) -> i64 {
    a.wrapping_mul(b) >> FRAC_BITS
}

/// Product with a public fixed-point constant `c` (already encoded), then truncation.
pub fn mul_pub(a: i64, c: i64) -> i64 {
    a.wrapping_mul(c) >> FRAC_BITS
}

/// Truncation by `k` public bits: `a / 2^k`, floor.
pub fn shr(a: i64, k: u32) -> i64 {
    a >> k
}

/// Multiplication by the public power of two `2^k` (wrapping).
pub fn shl(a: i64, k: u32) -> i64 {
    a.wrapping_shl(k)
}

/// Multiplication by `2^-e` for a public signed exponent: truncation for `e > 0`, a public
/// multiply for `e < 0`.
pub fn pow2_scale(a: i64, e: i32) -> i64 {
    if e >= 0 {
        shr(a, e as u32)
    } else {
        shl(a, (-e) as u32)
    }
}

/// Comparison with a public constant: the shared bit `[a >= c]` (as 0/1).
pub fn ge(a: i64, c: i64) -> i64 {
    i64::from(a >= c)
}

/// Secret bit times secret value: `b * a` for `b` in {0, 1}; exact (no truncation).
pub fn select(b: i64, a: i64) -> i64 {
    b.wrapping_mul(a)
}

/// Lower clip for [`exp_neg`]: inputs below `-EXP_CLIP` are clipped to it (e^-16 ≈ 1.1e-7,
/// below the fixed-point resolution 2^-16 ≈ 1.5e-5).
pub const EXP_CLIP: f64 = 16.0;
/// Number of squarings of [`exp_neg`]: `exp(x) ≈ (1 + x/2^n)^(2^n)`.
pub const EXP_SQUARINGS: u32 = 8;
/// Extra fractional bits [`exp_neg`] keeps during its squarings (24 in all).
pub const EXP_EXTRA_BITS: u32 = 8;
/// Measured max absolute error of [`exp_neg`] over its whole domain (test `exp_bound`).
pub const EXP_MAX_ERR: f64 = 1.1e-3;

/// `exp(x)` for `x <= 0` (the softmax input after subtracting the row maximum).
///
/// Domain: `x <= 0` (any such fixed-point value). Method: one comparison clips `x` to
/// `[-16, 0]` (`x' = x + [x < -16]·(-16 - x)`); then, at `f + 8 = 24` fractional bits,
/// `y = 1 + x'/2^8`, which is exactly `2^24 + x'` (no truncation: dividing by 2^8 and
/// rescaling by 2^8 cancel), and eight squarings `y ← (y·y) >> 24` (eight secret products,
/// each truncated by 24 bits); finally `y >> 8` returns to 16 fractional bits. Max absolute
/// error `EXP_MAX_ERR` = 1.1e-3, dominated by the approximation `(1 + x/256)^256 ≤ e^x`
/// (largest near `x = -2`); `exp_neg(0) = 1` exactly.
pub fn exp_neg(x: i64) -> i64 {
    let lo = enc(-EXP_CLIP);
    let below = 1 - ge(x, lo);
    let xc = x.wrapping_add(select(below, lo.wrapping_sub(x)));
    let bits = FRAC_BITS + EXP_EXTRA_BITS;
    let mut y = (1i64 << bits).wrapping_add(xc);
    for _ in 0..EXP_SQUARINGS {
        y = y.wrapping_mul(y) >> bits;
    }
    shr(y, EXP_EXTRA_BITS)
}

/// Range reduction: the one-hot vector `onehot[j - lo]` = 1 iff `x ∈ [2^j, 2^(j+1))`, for
/// `j ∈ [lo, hi)`, with saturation (`x < 2^lo` selects `lo`, `x >= 2^hi` selects `hi - 1`).
///
/// Computed from `hi - lo - 1` comparisons `b_j = [x >= 2^j]` (`j = lo+1 .. hi-1`) as
/// `onehot_j = b_j - b_(j+1)`, with `b_lo = 1` and `b_hi = 0`: linear in the bits.
pub fn range_onehot(x: i64, lo: i32, hi: i32) -> Vec<i64> {
    let bits: Vec<i64> = (lo..=hi)
        .map(|j| {
            if j == lo {
                1
            } else if j == hi {
                0
            } else {
                ge(x, pow2_scale(ONE, -j))
            }
        })
        .collect();
    bits.windows(2).map(|w| w[0] - w[1]).collect()
}

/// `Σ_j onehot_j · (a · 2^-(j·num/den))`-style selection helper: `Σ_j onehot_j · f(j, a)`,
/// where each `f(j, a)` is a public scaling of `a`: the sum of bit-injection products.
fn select_scaled(onehot: &[i64], lo: i32, a: i64, f: impl Fn(i32, i64) -> i64) -> i64 {
    onehot.iter().enumerate().fold(0i64, |acc, (i, &b)| {
        acc.wrapping_add(select(b, f(lo + i as i32, a)))
    })
}

/// Range of exponents of [`reciprocal`]'s range reduction: inputs in `[2^0, 2^16)`.
pub const RECIP_RANGE: (i32, i32) = (0, 16);
/// Newton iterations of [`reciprocal`].
pub const RECIP_ITERS: usize = 3;
/// Measured max relative error of [`reciprocal`] for inputs in `[1, 1024)` (softmax
/// denominators for contexts up to 1024; test `reciprocal_bound`).
pub const RECIP_MAX_REL_ERR: f64 = 1.6e-2;
/// Measured max absolute error of [`reciprocal`], in ulps (2^-16), on the whole domain.
pub const RECIP_MAX_ULPS: f64 = 1.0;

/// `1/x` for `x ∈ [1, 2^16)` (the softmax denominator, which is in `[1, T]`).
///
/// Method: range reduction ([`range_onehot`], 15 comparisons) gives `e` with
/// `x ∈ [2^e, 2^(e+1))` and `m = x·2^-e ∈ [1, 2)` (a selection of truncations); start
/// `y0 = 24/17 - (8/17)·m` (max relative error 1/17 on [1, 2)); three Newton steps
/// `y ← y·(2 - m·y)` (two secret products each); result `y·2^-e` (a selection of truncations).
/// Max absolute error 1 ulp (2^-16 ≈ 1.5e-5, `RECIP_MAX_ULPS`) on the whole domain; max relative
/// error `RECIP_MAX_REL_ERR` = 1.6e-2 on `[1, 1024)`, i.e. that one ulp relative to 1/1024.
pub fn reciprocal(x: i64) -> i64 {
    let (lo, hi) = RECIP_RANGE;
    let oh = range_onehot(x, lo, hi);
    let m = select_scaled(&oh, lo, x, |j, a| pow2_scale(a, j));
    let mut y = enc(24.0 / 17.0).wrapping_sub(mul_pub(m, enc(8.0 / 17.0)));
    for _ in 0..RECIP_ITERS {
        y = mul(y, (2 * ONE).wrapping_sub(mul(m, y)));
    }
    select_scaled(&oh, lo, y, |j, a| pow2_scale(a, j))
}

/// Range of exponents of [`rsqrt`]'s range reduction: inputs in `[2^-16, 2^24)`.
pub const RSQRT_RANGE: (i32, i32) = (-16, 24);
/// Newton iterations of [`rsqrt`].
pub const RSQRT_ITERS: usize = 3;
/// Measured max relative error of [`rsqrt`] for inputs in `[2^-10, 2^16)`
/// (test `rsqrt_bound`).
pub const RSQRT_MAX_REL_ERR: f64 = 4.0e-3;
/// Measured max absolute error of [`rsqrt`], in ulps (2^-16), on `[2^-10, 2^24)`.
pub const RSQRT_MAX_ULPS: f64 = 50.0;

/// `1/sqrt(x)` for `x ∈ [2^-16, 2^24)` (LayerNorm's variance plus epsilon).
///
/// Method: range reduction ([`range_onehot`], 39 comparisons) gives `e` and
/// `m = x·2^-e ∈ [1, 2)`; start `y0 = 1.2929 - 0.2929·m` (the chord of m^-1/2, relative error
/// below 3%); three Newton steps `y ← y·(3 - m·y²)/2` (three secret products each, the /2 is
/// a 1-bit truncation); result `y·2^(-e/2)`: for even `e` a truncation by `e/2` bits, for odd
/// `e` a public multiply by `2^-1/2` then a truncation by `(e-1)/2` bits (selected by the
/// one-hot bits). Max relative error `RSQRT_MAX_REL_ERR` = 4e-3 on `[2^-10, 2^16)`; max absolute
/// error `RSQRT_MAX_ULPS` = 50 ulp (7.6e-4) on `[2^-10, 2^24)`. Below 2^-10 the input itself has
/// fewer than 7 significant bits and the relative error grows accordingly.
pub fn rsqrt(x: i64) -> i64 {
    let (lo, hi) = RSQRT_RANGE;
    let oh = range_onehot(x, lo, hi);
    let m = select_scaled(&oh, lo, x, |j, a| pow2_scale(a, j));
    let mut y = enc(1.0 + (1.0 - 0.5f64.sqrt())).wrapping_sub(mul_pub(m, enc(1.0 - 0.5f64.sqrt())));
    for _ in 0..RSQRT_ITERS {
        let y2 = mul(y, y);
        y = mul(y, shr((3 * ONE).wrapping_sub(mul(m, y2)), 1));
    }
    let inv_sqrt2 = enc(0.5f64.sqrt());
    select_scaled(&oh, lo, y, |j, a| {
        let q = j.div_euclid(2);
        if j.rem_euclid(2) == 1 {
            pow2_scale(mul_pub(a, inv_sqrt2), q)
        } else {
            pow2_scale(a, q)
        }
    })
}

/// Cut-off of [`gelu`]'s correction polynomial: for `|x| >= GELU_CUT` the correction is 0.
pub const GELU_CUT: f64 = 3.25;
/// Coefficients `c_0..c_4` of the correction polynomial `p(a) ≈ h(a)` on `[0, 3.25)`, fitted by
/// `scripts/fit_gelu.py` (degree 4, reweighted least squares).
pub const GELU_COEFFS: [f64; 5] = [
    -0.00126995,
    0.53633059,
    -0.53910943,
    0.18300023,
    -0.02088144,
];
/// Measured max absolute error of [`gelu`] against the tanh-form GELU over the whole real line
/// (test `gelu_bound`); the float polynomial alone has 1.72e-3.
pub const GELU_MAX_ERR: f64 = 2.3e-3;

/// GELU, tanh form (GPT-2's `gelu_new`), on the whole real line.
///
/// Identity used: `gelu(x) = relu(x) - h(|x|)` with `h(a) = a/2·(1 - tanh(√(2/π)(a + 0.044715a³)))`
/// even, non-negative and below 4.3e-3 for `a >= 3.25`. Segments (on `a = |x|`):
///
/// | segment | value |
/// |---|---|
/// | `|x| < 3.25` | `relu(x) - p(|x|)`, `p(a) = Σ c_i a^i`, degree 4 ([`GELU_COEFFS`]) |
/// | `|x| >= 3.25` | `relu(x)` |
///
/// Operations: one comparison `s = [x >= 0]`; `relu = s·x`, `a = 2·relu - x` (exact); one
/// comparison `c = [a < 3.25]`; powers `a², a³ = a²·a, a⁴ = a²·a²` (three secret products);
/// `p = (Σ enc(c_i)·a^i) >> f` (public multiplies, one truncation); result `relu - c·p`.
/// Max absolute error [`GELU_MAX_ERR`] = 1.9e-3 (budget in DESIGN.md: 6.5e-3).
pub fn gelu(x: i64) -> i64 {
    let s = ge(x, 0);
    let relu = select(s, x);
    let a = (2 * relu).wrapping_sub(x);
    let inside = 1 - ge(a, enc(GELU_CUT));
    let a2 = mul(a, a);
    let a3 = mul(a2, a);
    let a4 = mul(a2, a2);
    let c: Vec<i64> = GELU_COEFFS.iter().map(|&c| enc(c)).collect();
    // Constant term at scale 2f so that one truncation finishes the sum.
    let acc = (c[0] << FRAC_BITS)
        .wrapping_add(c[1].wrapping_mul(a))
        .wrapping_add(c[2].wrapping_mul(a2))
        .wrapping_add(c[3].wrapping_mul(a3))
        .wrapping_add(c[4].wrapping_mul(a4));
    let p = acc >> FRAC_BITS;
    relu.wrapping_sub(select(inside, p))
}

/// ReLU: one comparison and one bit-injection product; exact.
pub fn relu(x: i64) -> i64 {
    select(ge(x, 0), x)
}

/// The reference tanh-form GELU in f64.
pub fn gelu_tanh_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_bound() {
        // Every representable input in [-20, 0].
        let mut worst: f64 = 0.0;
        for xi in enc(-20.0)..=0 {
            let got = dec(exp_neg(xi));
            let err = (got - dec(xi).exp()).abs();
            worst = worst.max(err);
        }
        assert!(worst <= EXP_MAX_ERR, "exp max error {worst}");
        assert_eq!(exp_neg(0), ONE);
        // Far below the clip: tiny and non-negative.
        assert!((0..=1).contains(&exp_neg(enc(-1e6))));
        eprintln!("exp_neg max abs error {worst:.3e}");
    }

    /// Max relative error on `[lo, hi)` and max absolute error (in ulps of 2^-16) on the
    /// whole `[lo, whole_hi)`, on a dense geometric grid.
    fn errors(
        f: fn(i64) -> i64,
        want: fn(f64) -> f64,
        lo: f64,
        hi: f64,
        whole_hi: f64,
    ) -> (f64, f64) {
        let (mut rel, mut ulps): (f64, f64) = (0.0, 0.0);
        let mut x = enc(lo);
        while x < enc(whole_hi) {
            let got = dec(f(x));
            let w = want(dec(x));
            ulps = ulps.max((got - w).abs() * ONE as f64);
            if dec(x) < hi {
                rel = rel.max((got - w).abs() / w);
            }
            x += 1 + x / 4099;
        }
        (rel, ulps)
    }

    #[test]
    fn reciprocal_bound() {
        let (rel, ulps) = errors(reciprocal, |x| 1.0 / x, 1.0, 1024.0, 65535.0);
        eprintln!("reciprocal: max rel error on [1, 1024) {rel:.3e}; max abs error {ulps:.2} ulp");
        assert!(rel <= RECIP_MAX_REL_ERR, "reciprocal max rel error {rel}");
        assert!(
            ulps <= RECIP_MAX_ULPS,
            "reciprocal max abs error {ulps} ulp"
        );
    }

    #[test]
    fn rsqrt_bound() {
        let (rel, ulps) = errors(
            rsqrt,
            |x| 1.0 / x.sqrt(),
            2f64.powi(-10),
            2f64.powi(16),
            2f64.powi(24) - 1.0,
        );
        eprintln!("rsqrt: max rel error on [2^-10, 2^16) {rel:.3e}; max abs error {ulps:.2} ulp");
        assert!(rel <= RSQRT_MAX_REL_ERR, "rsqrt max rel error {rel}");
        assert!(ulps <= RSQRT_MAX_ULPS, "rsqrt max abs error {ulps} ulp");
    }

    #[test]
    fn gelu_bound() {
        // Every representable input in [-8, 8], plus far-out points.
        let mut worst: f64 = 0.0;
        for xi in enc(-8.0)..=enc(8.0) {
            let err = (dec(gelu(xi)) - gelu_tanh_f64(dec(xi))).abs();
            worst = worst.max(err);
        }
        for x in [-1e4, -100.0, -9.5, 9.5, 100.0, 1e4] {
            let err = (dec(gelu(enc(x))) - gelu_tanh_f64(x)).abs();
            worst = worst.max(err);
        }
        assert!(worst <= GELU_MAX_ERR, "gelu max error {worst}");
        eprintln!("gelu max abs error {worst:.3e}");
    }

    #[test]
    fn relu_exact_and_onehot() {
        for x in [-5 * ONE, -1, 0, 1, 7 * ONE] {
            assert_eq!(relu(x), x.max(0));
        }
        let oh = range_onehot(enc(5.0), 0, 16);
        assert_eq!(oh.iter().sum::<i64>(), 1);
        assert_eq!(oh[2], 1);
        // Saturation at both ends.
        assert_eq!(range_onehot(enc(0.25), 0, 4)[0], 1);
        assert_eq!(range_onehot(enc(1000.0), 0, 4)[3], 1);
    }
}
