//! The entropy regularizer of EGA Algorithm 1 as a differentiable candle expression: the same
//! function as the engine's plaintext `privlm::entropy::entropy_regularizer` (same ε, E_max,
//! margin, strict indicator and both reductions), so that autograd carries its gradient to the
//! attention (hence to the temperatures and every weight before the softmax) and to θ.
//!
//! With `a` the probabilities `[B, H, T, T]` of one layer and `H_bhi = −Σ_j a log(a + ε)`:
//!
//! ```text
//! QueryMean:   δ_h  = mean_{b,i} H_bhi − θ_h E_max;  pen_h = δ_h² · 1(|δ_h| > γ E_max)
//! PerQuerySum: δ_bhi = H_bhi − θ_h E_max;            pen_h = Σ_{b,i} δ_bhi² · 1(|δ_bhi| > γ E_max)
//! loss = λ · (1/L) Σ_l (1/H) Σ_h pen_{l,h}
//! ```
//!
//! One difference is deliberate: the engine skips NaN probabilities (`nansum`, for analysing
//! broken models), while here a NaN makes the loss NaN, which the trainer counts and reports
//! (a step with a non-finite loss is skipped).

use candle_core::{D, DType, Tensor};
use privlm::entropy::{ENTROPY_EPS, Reduction, RegularizerConfig};

/// The regularizer's loss (a scalar tensor, λ included) and the batch- and query-mean head
/// entropies `[L, H]` (detached, for monitoring).
pub struct RegOut {
    /// λ · L_entropy.
    pub loss: Tensor,
    /// Head entropies `[L, H]` in nats.
    pub head_entropy: Tensor,
}

/// Per-query entropies `[B, H, T]` of attention probabilities `[B, H, T, T]`.
pub fn query_entropy(a: &Tensor) -> candle_core::Result<Tensor> {
    (a * (a + ENTROPY_EPS)?.log()?)?.sum(D::Minus1)?.neg()
}

/// The regularizer over the attention of every layer (`attn[l]`: `[B, H, T, T]`) with
/// thresholds `theta` `[L, H]`.
pub fn entropy_regularizer(
    cfg: &RegularizerConfig,
    attn: &[Tensor],
    theta: &Tensor,
) -> candle_core::Result<RegOut> {
    let layers = attn.len();
    let (_, heads, t, _) = attn
        .first()
        .ok_or_else(|| candle_core::Error::Msg("regularizer needs at least one layer".into()))?
        .dims4()?;
    let e_max = (cfg.context_len.unwrap_or(t) as f64).ln();
    let margin = cfg.gamma * e_max;
    let mut total: Option<Tensor> = None;
    let mut ents = Vec::with_capacity(layers);
    for (l, a) in attn.iter().enumerate() {
        let hq = query_entropy(a)?; // [B, H, T]
        let head_mean = hq.mean_keepdim(2)?.mean_keepdim(0)?; // [1, H, 1]
        ents.push(head_mean.flatten_all()?.detach());
        let th = (theta.get(l)?.reshape((1, heads, 1))? * e_max)?;
        let dev = match cfg.reduction {
            Reduction::QueryMean => head_mean.broadcast_sub(&th)?,
            Reduction::PerQuerySum => hq.broadcast_sub(&th)?,
        };
        let outside = dev.abs()?.gt(margin)?.to_dtype(DType::F32)?;
        let pen = (dev.sqr()? * outside)?.sum_all()?;
        total = Some(match total {
            None => pen,
            Some(s) => (s + pen)?,
        });
    }
    let scale = cfg.lambda / (layers as f64 * heads as f64);
    let loss = (total.expect("at least one layer") * scale)?;
    Ok(RegOut {
        loss,
        head_entropy: Tensor::stack(&ents, 0)?,
    })
}
