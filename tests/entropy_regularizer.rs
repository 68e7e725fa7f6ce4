//! The entropy regularizer (EGA Algorithm 1 and the released code's per-query variant) on
//! hand-computed cases, and its gradients against finite differences.

use privlm::entropy::{
    AttnShape, Reduction, RegularizerConfig, entropy_regularizer, softmax_backward,
};

const LN2: f64 = std::f64::consts::LN_2;

/// One layer, two heads, T = 2, batch 1.
///   head 0: rows [1, 0], [1/2, 1/2] -> H = (0, ln 2),  E = ln(2)/2
///   head 1: rows [1, 0], [1, 0]     -> H = (0, 0),     E = 0
const ATTN: [f32; 8] = [1.0, 0.0, 0.5, 0.5, 1.0, 0.0, 1.0, 0.0];
const SHAPE: AttnShape = AttnShape {
    batch: 1,
    heads: 2,
    t: 2,
};

fn cfg(reduction: Reduction) -> RegularizerConfig {
    RegularizerConfig {
        lambda: 1.0,
        gamma: 0.2,
        reduction,
        context_len: None,
    }
}

fn close(a: f64, b: f64) {
    // ε = 1e-9 inside the log moves every value by ~1e-9.
    assert!((a - b).abs() < 1e-7, "{a} vs {b}");
}

#[test]
fn algorithm_1_by_hand() {
    // E_max = ln 2, margin = 0.2 ln 2. θ = (0.1, 0.3):
    //   head 0: δ = ln2/2 − 0.1 ln2 = 0.4 ln2 > 0.2 ln2  -> penalty 0.16 (ln2)²
    //   head 1: δ = 0 − 0.3 ln2 = −0.3 ln2, |δ| > margin -> penalty 0.09 (ln2)²
    // loss = λ · (1/L) · (1/H) · Σ = (0.16 + 0.09)/2 (ln2)² = 0.125 (ln2)² = 0.0600566...
    // ∂/∂θ_h = λ/(L H) · 2δ · (−E_max): head 0: −0.4 (ln2)², head 1: +0.3 (ln2)².
    let out = entropy_regularizer(
        &cfg(Reduction::QueryMean),
        &[ATTN],
        SHAPE,
        &[0.1, 0.3],
        false,
    )
    .unwrap();
    close(out.e_max, LN2);
    close(out.margin, 0.2 * LN2);
    close(out.head_entropy[0], LN2 / 2.0);
    close(out.head_entropy[1], 0.0);
    close(out.penalty[0], 0.16 * LN2 * LN2);
    close(out.penalty[1], 0.09 * LN2 * LN2);
    close(out.loss, 0.125 * LN2 * LN2);
    assert!((out.loss - 0.060_056_6).abs() < 1e-7);
    close(out.grad_theta[0], -0.4 * LN2 * LN2);
    close(out.grad_theta[1], 0.3 * LN2 * LN2);
    assert!(out.grad_attn.is_none());
}

#[test]
fn inside_the_band_costs_nothing() {
    // θ0 = 0.45: δ = 0.05 ln2 < margin -> 0. θ1 = 0.15: |δ| = 0.15 ln2 < margin -> 0.
    let out = entropy_regularizer(
        &cfg(Reduction::QueryMean),
        &[ATTN],
        SHAPE,
        &[0.45, 0.15],
        true,
    )
    .unwrap();
    assert_eq!(out.loss, 0.0);
    assert_eq!(out.grad_theta, [0.0, 0.0]);
    assert!(out.grad_attn.unwrap()[0].iter().all(|&g| g == 0.0));
    // λ scales linearly and γ = 0 turns the band off: θ = (0.45, 0.15), λ = 2:
    //   δ0 = 0.05 ln2, δ1 = −0.15 ln2; loss = 2 · (0.0025 + 0.0225)/2 (ln2)² = 0.025 (ln2)².
    let c = RegularizerConfig {
        lambda: 2.0,
        gamma: 0.0,
        ..cfg(Reduction::QueryMean)
    };
    let out = entropy_regularizer(&c, &[ATTN], SHAPE, &[0.45, 0.15], false).unwrap();
    close(out.loss, 0.025 * LN2 * LN2);
}

#[test]
fn released_code_variant_by_hand() {
    // Per query: dev = H_i − θ E_max, masked where |dev| <= 0.2 ln2, squares summed over T.
    //   head 0 (θ=0.1): dev = (−0.1 ln2, 0.9 ln2) -> only the second: 0.81 (ln2)²
    //   head 1 (θ=0.3): dev = (−0.3 ln2, −0.3 ln2) -> both: 0.18 (ln2)²
    // loss = (0.81 + 0.18)/2 (ln2)² = 0.495 (ln2)²
    // ∂/∂θ0 = 1/2 · 2 · 0.9 ln2 · (−ln2) = −0.9 (ln2)²; ∂/∂θ1 = 1/2 · 2 · 2 · 0.3 (ln2)² = 0.6 (ln2)².
    let out = entropy_regularizer(
        &cfg(Reduction::PerQuerySum),
        &[ATTN],
        SHAPE,
        &[0.1, 0.3],
        false,
    )
    .unwrap();
    close(out.loss, 0.495 * LN2 * LN2);
    close(out.grad_theta[0], -0.9 * LN2 * LN2);
    close(out.grad_theta[1], 0.6 * LN2 * LN2);
}

#[test]
fn context_len_sets_e_max() {
    // E_max = ln 128 although T = 2; θ = 0: δ0 = ln2/2 ≈ 0.347 < margin 0.2 ln128 ≈ 0.970;
    // δ1 = 0. Nothing is penalized.
    let c = RegularizerConfig {
        context_len: Some(128),
        ..cfg(Reduction::QueryMean)
    };
    let out = entropy_regularizer(&c, &[ATTN], SHAPE, &[0.0, 0.0], false).unwrap();
    close(out.e_max, 128f64.ln());
    assert_eq!(out.loss, 0.0);
}

/// Deterministic pseudo-random causal softmax attention `[B, H, T, T]` (LCG logits).
fn random_attn(b: usize, h: usize, t: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 6.0 - 3.0
    };
    let mut a = vec![0.0f32; b * h * t * t];
    for row in 0..b * h * t {
        let i = row % t;
        let z: Vec<f64> = (0..=i).map(|_| next()).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = z.iter().map(|x| (x - m).exp()).sum();
        for j in 0..=i {
            a[row * t + j] = ((z[j] - m).exp() / sum) as f32;
        }
    }
    a
}

#[test]
fn gradients_match_finite_differences() {
    let (b, h, t, layers) = (2, 3, 5, 2);
    let attn: Vec<Vec<f32>> = (0..layers)
        .map(|l| random_attn(b, h, t, 7 + l as u64))
        .collect();
    let shape = AttnShape {
        batch: b,
        heads: h,
        t,
    };
    let theta: Vec<f64> = (0..layers * h).map(|k| 0.1 + 0.13 * k as f64).collect();
    for red in [Reduction::QueryMean, Reduction::PerQuerySum] {
        let c = RegularizerConfig {
            lambda: 0.7,
            gamma: 0.05,
            reduction: red,
            context_len: None,
        };
        let base = entropy_regularizer(&c, &attn, shape, &theta, true).unwrap();
        assert!(base.loss > 0.0);
        assert!(base.grad_theta.iter().any(|&g| g != 0.0));
        let step = 1e-6;
        for k in 0..theta.len() {
            let mut th = theta.clone();
            th[k] += step;
            let up = entropy_regularizer(&c, &attn, shape, &th, false)
                .unwrap()
                .loss;
            th[k] -= 2.0 * step;
            let dn = entropy_regularizer(&c, &attn, shape, &th, false)
                .unwrap()
                .loss;
            let fd = (up - dn) / (2.0 * step);
            assert!(
                (fd - base.grad_theta[k]).abs() < 1e-6,
                "{red:?} θ{k}: {fd} vs {}",
                base.grad_theta[k]
            );
        }
        // Attention gradient on nonzero entries (f32 inputs, so a larger step).
        let ga = base.grad_attn.as_ref().unwrap();
        let step = 1e-3f32;
        let mut checked = 0;
        for l in 0..layers {
            for idx in (0..attn[l].len()).step_by(7) {
                if attn[l][idx] < 0.05 {
                    continue;
                }
                let mut p = attn.clone();
                p[l][idx] += step;
                let up = entropy_regularizer(&c, &p, shape, &theta, false)
                    .unwrap()
                    .loss;
                p[l][idx] -= 2.0 * step;
                let dn = entropy_regularizer(&c, &p, shape, &theta, false)
                    .unwrap()
                    .loss;
                let fd = (up - dn) / (2.0 * f64::from(step));
                let g = f64::from(ga[l][idx]);
                assert!(
                    (fd - g).abs() < 1e-3 * (1.0 + g.abs()),
                    "{red:?} a[{l}][{idx}]: {fd} vs {g}"
                );
                checked += 1;
            }
        }
        assert!(checked > 10);
    }
}

#[test]
fn softmax_backward_matches_finite_differences() {
    // Row z = (0.3, −1.2, 2.0), loss = Σ_j w_j a_j with w = (1, −2, 0.5): ∂loss/∂a = w.
    let z = [0.3f64, -1.2, 2.0];
    let w = [1.0f64, -2.0, 0.5];
    let soft = |z: &[f64]| {
        let s: f64 = z.iter().map(|x| x.exp()).sum();
        z.iter().map(|x| x.exp() / s).collect::<Vec<_>>()
    };
    let a: Vec<f32> = soft(&z).iter().map(|&x| x as f32).collect();
    let g: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    let dz = softmax_backward(&a, &g, 3).unwrap();
    for k in 0..3 {
        let mut zp = z;
        zp[k] += 1e-6;
        let mut zm = z;
        zm[k] -= 1e-6;
        let f = |z: &[f64]| soft(z).iter().zip(&w).map(|(a, w)| a * w).sum::<f64>();
        let fd = (f(&zp) - f(&zm)) / 2e-6;
        assert!((fd - f64::from(dz[k])).abs() < 1e-5, "{fd} vs {}", dz[k]);
    }
    assert!(softmax_backward(&a, &g[..2], 3).is_err());
}

#[test]
fn bad_inputs_are_refused() {
    let c = cfg(Reduction::QueryMean);
    assert!(
        entropy_regularizer(&c, &[ATTN], SHAPE, &[0.1], false).is_err(),
        "theta size"
    );
    assert!(entropy_regularizer(&c, &[&ATTN[..7]], SHAPE, &[0.1, 0.3], false).is_err());
    assert!(entropy_regularizer::<&[f32]>(&c, &[], SHAPE, &[], false).is_err());
    let b2 = AttnShape { batch: 2, ..SHAPE };
    assert!(
        entropy_regularizer(&c, &[ATTN], b2, &[0.1, 0.3], false).is_err(),
        "batch"
    );
}
