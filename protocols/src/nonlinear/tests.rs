//! Tests of the nonlinear layers: the plain backend's accuracy against f64 (every bound of
//! `docs/protocols/nonlinear.md`), the secure ops against the plain backend and f64 over the
//! in-memory channel with the ideal dealer and with the dealer's serve loop, bad inputs, and the
//! count backend against the channels' counters.

mod accuracy;
mod count_exact;
mod secure;

use super::*;
use crate::prg::Prg;
use rand_core::Rng;

/// Default parameters, except that truncations of 64 elements or more take the one-way flow
/// (so the small test shapes exercise both flows).
fn params() -> NlParams {
    NlParams {
        trunc_one_way_min: 64,
        ..NlParams::default()
    }
}

fn enc(x: f64) -> u64 {
    params().enc(x)
}

fn dec(x: u64) -> f64 {
    params().dec(x)
}

/// A uniform real in `[lo, hi)`.
fn uniform(rng: &mut Prg, lo: f64, hi: f64) -> f64 {
    lo + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
}

/// GPT-2's tanh-form GELU in f64.
fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// Softmax of `[heads, rows, cols]` (decoded) with a mask and temperatures, in f64.
fn softmax_f64(x: &[f64], shape: &[usize], mask: Mask, temps: &[f64]) -> Vec<f64> {
    let [heads, rows, cols] = *shape else {
        panic!("shape")
    };
    let mut out = vec![0.0; x.len()];
    for h in 0..heads {
        for i in 0..rows {
            let keep = match mask {
                Mask::None => cols,
                Mask::Causal => cols - rows + i + 1,
            };
            let base = (h * rows + i) * cols;
            let t = temps[h * rows + i];
            let row = &x[base..base + keep];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| ((v - m) / t).exp()).collect();
            let s: f64 = e.iter().sum();
            for (j, v) in e.iter().enumerate() {
                out[base + j] = v / s;
            }
        }
    }
    out
}

/// LayerNorm of `[rows, d]` in f64.
fn layer_norm_f64(x: &[f64], d: usize, gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let r = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .enumerate()
                .map(|(j, v)| (v - mean) * r * gamma[j] + beta[j]),
        );
    }
    out
}

/// Max and mean absolute error of fixed-point outputs against f64 references.
fn errors(got: &[u64], want: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let mut max: f64 = 0.0;
    let mut sum = 0.0;
    for (g, w) in got.iter().zip(want) {
        let e = (dec(*g) - w).abs();
        max = max.max(e);
        sum += e;
    }
    (max, sum / want.len().max(1) as f64)
}
