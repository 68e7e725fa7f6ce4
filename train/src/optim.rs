//! AdamW (Loshchilov & Hutter 2019) with decoupled weight decay applied only to the parameters
//! marked for it, a linear warmup then cosine decay of the learning rate, and clipping of the
//! global gradient norm.
//!
//! Written here rather than taken from `candle-nn` because the paper's recipe needs parameter
//! groups (no decay on biases, LayerNorm, gains, temperatures and thresholds), and the
//! optimizer state has to be saved and restored for `--resume`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::model::Param;

/// Optimizer hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup steps (from 0 to `lr`).
    pub warmup: u64,
    /// Total steps (the cosine reaches `min_lr` here).
    pub total: u64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (on matrices only).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub clip: f64,
}

impl AdamWConfig {
    /// Learning rate at optimizer step `step` (0-based): linear warmup over `warmup` steps,
    /// then cosine decay from `lr` to `min_lr` at `total`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let p = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// AdamW state: first and second moments per parameter, in the model's parameter order.
pub struct AdamW {
    /// Hyperparameters.
    pub cfg: AdamWConfig,
    /// First moments.
    pub m: Vec<Tensor>,
    /// Second moments.
    pub v: Vec<Tensor>,
    /// Steps taken (for bias correction).
    pub t: u64,
}

/// What one optimizer step did.
pub struct StepInfo {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

impl AdamW {
    /// Zero moments for `params`.
    pub fn new(cfg: AdamWConfig, params: &[Param]) -> candle_core::Result<Self> {
        let zeros = || -> candle_core::Result<Vec<Tensor>> {
            params
                .iter()
                .map(|p| p.var.as_tensor().zeros_like())
                .collect()
        };
        Ok(AdamW {
            cfg,
            m: zeros()?,
            v: zeros()?,
            t: 0,
        })
    }

    /// The global L2 norm of the gradients of `params`.
    pub fn grad_norm(params: &[Param], grads: &GradStore) -> candle_core::Result<f64> {
        let mut sq = 0f64;
        for p in params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
            }
        }
        Ok(sq.sqrt())
    }

    /// One step at optimizer step index `step` (0-based; sets the learning rate).
    pub fn step(
        &mut self,
        params: &[Param],
        grads: &GradStore,
        step: u64,
    ) -> candle_core::Result<StepInfo> {
        let c = self.cfg;
        let lr = c.lr_at(step);
        let grad_norm = Self::grad_norm(params, grads)?;
        let clip = if c.clip > 0.0 && grad_norm > c.clip {
            c.clip / grad_norm
        } else {
            1.0
        };
        self.t += 1;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (i, p) in params.iter().enumerate() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            // Detached: gradients carry the backward graph, and moments built from them
            // would keep every step's graph (and activations) alive.
            let g = (g.detach() * clip)?;
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let w: &Var = &p.var;
            let cur = w.as_tensor().detach();
            let mut next = (&cur - (update * lr)?)?;
            if p.decay && c.weight_decay > 0.0 {
                next = (next - (&cur * (lr * c.weight_decay))?)?;
            }
            w.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(StepInfo { grad_norm, lr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let c = AdamWConfig {
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 10,
            total: 110,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            clip: 1.0,
        };
        assert!((c.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((c.lr_at(60) - 5.5e-4).abs() < 1e-12);
        assert!((c.lr_at(110) - 1e-4).abs() < 1e-12);
        assert!((c.lr_at(500) - 1e-4).abs() < 1e-12);
    }
}
