//! The entropy regularizer of EGA (Jha & Reagen 2025, "Entropy-Guided Attention for Private
//! LLMs", Algorithm 1): a training loss that keeps each head's attention entropy within a
//! tolerance band around a learnable, head-specific fraction of the maximum entropy.
//!
//! With `E(l,h)` the head's entropy averaged over queries (and over the batch),
//! `E_max = log T`, `margin = γ E_max` and learnable thresholds `θ ∈ R^{L×H}`:
//!
//! ```text
//! δ(l,h)       = E(l,h) − θ(l,h) · E_max
//! penalty(l,h) = δ(l,h)² · 1(|δ(l,h)| > margin)
//! L_entropy    = λ · (1/L) Σ_l (1/H) Σ_h penalty(l,h)
//! ```
//!
//! [`Reduction::PerQuerySum`] is the released code's variant: the deviation is taken per
//! (sequence, query) entropy `H_bi − θ E_max`, and the masked squares are *summed* over the
//! batch and the queries before the same `/H`, `/L`, `×λ`. For the same λ it is about B·T times
//! larger, and it penalizes single queries outside the band even when the head's mean is in it.
//!
//! Gradients are exact for the function as written; the indicator makes the loss jump by
//! `margin²` where `|δ| = margin`, and that jump has no gradient (it is ignored, as autograd
//! ignores it in the authors' code).

use serde::{Deserialize, Serialize};

use super::EntropyError;
use super::stats::{ENTROPY_EPS, check_shape};

/// How the penalty is reduced over queries (and the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduction {
    /// EGA Algorithm 1: penalize the batch- and query-averaged head entropy.
    QueryMean,
    /// The released `entropy_regularization.py`: penalize each (sequence, query) entropy and
    /// sum the penalties over batch × T.
    PerQuerySum,
}

/// Hyperparameters of the regularizer (defaults: EGA's CodeParrot values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegularizerConfig {
    /// Loss coefficient λ (1e-5 for CodeParrot, 5e-5 for Languini).
    pub lambda: f64,
    /// Tolerance factor γ: margin = γ · E_max (0.20 in the paper).
    pub gamma: f64,
    /// Reduction over queries.
    pub reduction: Reduction,
    /// Context length whose log is E_max; `None` uses the attention's T.
    pub context_len: Option<usize>,
}

impl Default for RegularizerConfig {
    fn default() -> Self {
        RegularizerConfig {
            lambda: 1e-5,
            gamma: 0.20,
            reduction: Reduction::QueryMean,
            context_len: None,
        }
    }
}

/// The shape of each layer's attention probabilities: row-major `[batch, heads, T, T]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    /// Sequences in the batch B.
    pub batch: usize,
    /// Heads per layer H.
    pub heads: usize,
    /// Sequence length T.
    pub t: usize,
}

/// The regularizer's value, diagnostics and gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct RegularizerOutput {
    /// The loss `L_entropy` (λ included).
    pub loss: f64,
    /// E_max = log T used.
    pub e_max: f64,
    /// Tolerance margin γ·E_max used.
    pub margin: f64,
    /// Batch- and query-averaged head entropies, `[L, H]` row-major.
    pub head_entropy: Vec<f64>,
    /// Per-head penalty before `/H`, `/L` and `×λ`, `[L, H]`.
    pub penalty: Vec<f64>,
    /// ∂loss/∂θ, `[L, H]`.
    pub grad_theta: Vec<f64>,
    /// ∂loss/∂a per layer, each `[B, H, T, T]`, when requested.
    pub grad_attn: Option<Vec<Vec<f32>>>,
}

/// Per-query entropy of one row and, optionally, its derivative `∂H/∂a_j = −log(a_j+ε) −
/// a_j/(a_j+ε)` (NaN entries are skipped with zero derivative, `nansum` semantics).
fn row_entropy_and_grad(row: &[f32], grad: Option<&mut [f64]>) -> f64 {
    let mut h = 0.0;
    for &a in row {
        if !a.is_nan() {
            let a = f64::from(a);
            h -= a * (a + ENTROPY_EPS).ln();
        }
    }
    if let Some(g) = grad {
        for (gj, &a) in g.iter_mut().zip(row) {
            *gj = if a.is_nan() {
                0.0
            } else {
                let a = f64::from(a);
                -(a + ENTROPY_EPS).ln() - a / (a + ENTROPY_EPS)
            };
        }
    }
    h
}

/// Computes the entropy regularization loss of EGA Algorithm 1 (or the released code's
/// per-query variant) and its gradient with respect to θ, and with respect to the attention
/// probabilities if `want_grad_attn`.
///
/// `attn[l]` holds layer l's probabilities, row-major `[batch, heads, T, T]`; `theta` is
/// `[L, H]` row-major.
pub fn entropy_regularizer<A: AsRef<[f32]>>(
    cfg: &RegularizerConfig,
    attn: &[A],
    shape: AttnShape,
    theta: &[f64],
    want_grad_attn: bool,
) -> Result<RegularizerOutput, EntropyError> {
    let AttnShape { batch, heads, t } = shape;
    let layers = attn.len();
    if layers == 0 || batch == 0 {
        return Err(EntropyError::Shape(
            "regularizer needs at least one layer and sequence".into(),
        ));
    }
    if theta.len() != layers * heads {
        return Err(EntropyError::Shape(format!(
            "theta has {} values, expected layers x heads = {layers} x {heads}",
            theta.len()
        )));
    }
    for a in attn {
        let a = a.as_ref();
        let per = a.len() / batch;
        if per * batch != a.len() {
            return Err(EntropyError::Shape(format!(
                "layer attention has {} elements, not a multiple of batch {batch}",
                a.len()
            )));
        }
        check_shape(&a[..per], heads, t)?;
    }
    let ctx = cfg.context_len.unwrap_or(t);
    if ctx == 0 {
        return Err(EntropyError::Shape(
            "context length must be positive".into(),
        ));
    }
    let e_max = (ctx as f64).ln();
    let margin = cfg.gamma * e_max;
    let scale = cfg.lambda / (layers as f64 * heads as f64);
    let bt = (batch * t) as f64;

    let mut head_entropy = vec![0.0; layers * heads];
    let mut penalty = vec![0.0; layers * heads];
    let mut grad_theta = vec![0.0; layers * heads];
    let mut grad_attn = want_grad_attn.then(|| Vec::with_capacity(layers));
    let mut row_grad = vec![0.0f64; t];
    // Per-query entropies of one head over the batch: [B, T].
    let mut hq = vec![0.0f64; batch * t];

    for (l, a) in attn.iter().enumerate() {
        let a = a.as_ref();
        let mut g_layer = want_grad_attn.then(|| vec![0.0f32; a.len()]);
        for h in 0..heads {
            let idx = l * heads + h;
            let th = theta[idx] * e_max;
            let row_of = |b: usize, i: usize| ((b * heads + h) * t + i) * t;
            for b in 0..batch {
                for i in 0..t {
                    let r = row_of(b, i);
                    hq[b * t + i] = row_entropy_and_grad(&a[r..r + t], None);
                }
            }
            let e = hq.iter().sum::<f64>() / bt;
            head_entropy[idx] = e;
            // Coefficient c_bi such that ∂loss/∂H_bi = c_bi.
            match cfg.reduction {
                Reduction::QueryMean => {
                    let d = e - th;
                    if d.abs() > margin {
                        penalty[idx] = d * d;
                        grad_theta[idx] = scale * 2.0 * d * (-e_max);
                        if let Some(g) = g_layer.as_mut() {
                            let c = scale * 2.0 * d / bt;
                            for b in 0..batch {
                                for i in 0..t {
                                    let r = row_of(b, i);
                                    row_entropy_and_grad(&a[r..r + t], Some(&mut row_grad));
                                    for (gj, &dj) in g[r..r + t].iter_mut().zip(&row_grad) {
                                        *gj = (c * dj) as f32;
                                    }
                                }
                            }
                        }
                    }
                }
                Reduction::PerQuerySum => {
                    let mut p = 0.0;
                    let mut gt = 0.0;
                    for b in 0..batch {
                        for i in 0..t {
                            let d = hq[b * t + i] - th;
                            if d.abs() <= margin {
                                continue;
                            }
                            p += d * d;
                            gt += 2.0 * d * (-e_max);
                            if let Some(g) = g_layer.as_mut() {
                                let r = row_of(b, i);
                                row_entropy_and_grad(&a[r..r + t], Some(&mut row_grad));
                                let c = scale * 2.0 * d;
                                for (gj, &dj) in g[r..r + t].iter_mut().zip(&row_grad) {
                                    *gj = (c * dj) as f32;
                                }
                            }
                        }
                    }
                    penalty[idx] = p;
                    grad_theta[idx] = scale * gt;
                }
            }
        }
        if let (Some(ga), Some(g)) = (grad_attn.as_mut(), g_layer) {
            ga.push(g);
        }
    }
    let loss = scale * penalty.iter().sum::<f64>();
    Ok(RegularizerOutput {
        loss,
        e_max,
        margin,
        head_entropy,
        penalty,
        grad_theta,
        grad_attn,
    })
}

/// Backpropagates through a row-wise softmax: given probabilities `a` (rows of length `t`) and
/// `g = ∂loss/∂a`, returns `∂loss/∂z` with `∂loss/∂z_j = a_j (g_j − Σ_k a_k g_k)`. Masked
/// entries (a = 0) get 0. Logits scaled by `1/(τ√d_k)` need that factor applied by the caller.
pub fn softmax_backward(a: &[f32], g: &[f32], t: usize) -> Result<Vec<f32>, EntropyError> {
    if t == 0 || a.len() != g.len() || !a.len().is_multiple_of(t) {
        return Err(EntropyError::Shape(format!(
            "softmax_backward: {} probabilities, {} gradients, row length {t}",
            a.len(),
            g.len()
        )));
    }
    let mut out = vec![0.0f32; a.len()];
    for ((ar, gr), or) in a
        .chunks_exact(t)
        .zip(g.chunks_exact(t))
        .zip(out.chunks_exact_mut(t))
    {
        let dot: f64 = ar
            .iter()
            .zip(gr)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        for ((o, &x), &y) in or.iter_mut().zip(ar).zip(gr) {
            *o = (f64::from(x) * (f64::from(y) - dot)) as f32;
        }
    }
    Ok(out)
}
