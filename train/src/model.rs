//! The trainable model: every architecture of `docs/model.md` written in candle, with the
//! training-time parameterization of Jha & Reagen, "Entropy-Guided Attention for Private
//! LLMs" (2025) and AERO (2024):
//!
//! - learnable FFN scaling `out = β_l · h + (1/α_l) · FFN(h)` (one α and one β per layer);
//! - learnable softmax temperatures `t` (per head and query position, or per head): the
//!   logits of head h, query i are divided by `t[h, i] · √d_k`;
//! - learnable entropy thresholds `θ ∈ R^{L×H}` (used only by the regularizer);
//! - optional weight or spectral normalization of the FFN's linear layers.
//!
//! The forward pass mirrors `privlm::model::ops::forward` operation for operation (same block
//! structure, same scaling order, masked entries exactly 0), so that an exported checkpoint
//! gives the engine the trainer's logits. Parameter names are privlm's tensor names; the
//! normalized weights use torch's names (`weight_g`/`weight_v`, `weight_orig` with the
//! power-iteration vectors `weight_u`/`weight_v` as buffers).

use std::collections::BTreeMap;

use candle_core::{D, DType, Device, Tensor, Var};
use privlm::model::{Activation, FfnKind, ModelConfig, TemperatureForm};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Normalization applied to the FFN's linear layers during training (folded at export).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum FfnNorm {
    /// Plain weights.
    #[default]
    None,
    /// Weight normalization (Salimans & Kingma 2016): `W[:, o] = g[o] · v[:, o] / ‖v[:, o]‖`.
    Weight,
    /// Spectral normalization (Miyato et al. 2018): `W = W_orig / σ`, σ estimated by one
    /// power iteration per training step.
    Spectral,
}

/// Initial values of the paper's extra parameters (none is stated by the paper except t).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitSpec {
    /// Initial softmax temperature t.
    pub temperature: f64,
    /// Initial threshold θ (fraction of E_max).
    pub theta: f64,
    /// Initial α (FFN output divided by α).
    pub alpha: f64,
    /// Initial β (residual multiplied by β).
    pub beta: f64,
    /// Standard deviation of the weight initialisation (GPT-2: 0.02).
    pub std: f64,
}

impl Default for InitSpec {
    fn default() -> Self {
        InitSpec {
            temperature: 1.0,
            theta: 0.5,
            alpha: 1.0,
            beta: 1.0,
            std: 0.02,
        }
    }
}

/// Smallest temperature kept after each optimizer step (t must stay positive).
pub const MIN_TEMPERATURE: f64 = 1e-2;
/// Smallest α kept after each optimizer step (1/α must stay finite).
pub const MIN_ALPHA: f64 = 1e-2;

/// One trainable parameter.
pub struct Param {
    /// privlm / torch name.
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Whether AdamW applies weight decay to it (matrices yes; biases, LayerNorm, gains,
    /// temperatures and thresholds no, as in the authors' trainer).
    pub decay: bool,
}

/// The trainable model.
pub struct TrainModel {
    /// The public configuration (what the exported `config.json` says).
    pub cfg: ModelConfig,
    /// FFN normalization.
    pub ffn_norm: FfnNorm,
    /// Parameters in a fixed order.
    pub params: Vec<Param>,
    index: BTreeMap<String, usize>,
    /// Non-trainable buffers (spectral normalization's power-iteration vectors).
    pub buffers: BTreeMap<String, Tensor>,
    mask: Tensor,
    device: Device,
}

/// What a forward pass returns.
pub struct ForwardOut {
    /// Logits `[B·T, V]`.
    pub logits: Tensor,
    /// Per layer the attention probabilities `[B, H, T, T]` (masked entries exactly 0).
    pub attn: Vec<Tensor>,
}

fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

fn unit(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    let v = normal(rng, n, 1.0);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / norm).collect()
}

/// Which linear layers belong to the FFN (and get the FFN normalization).
fn is_ffn_linear(prefix: &str) -> bool {
    prefix.contains(".mlp.")
}

impl TrainModel {
    /// A freshly initialised model (seeded).
    pub fn new(
        cfg: &ModelConfig,
        ffn_norm: FfnNorm,
        init: InitSpec,
        seed: u64,
    ) -> candle_core::Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut m = TrainModel {
            cfg: cfg.clone(),
            ffn_norm,
            params: Vec::new(),
            index: BTreeMap::new(),
            buffers: BTreeMap::new(),
            mask: causal_mask(cfg.n_ctx, &device)?,
            device,
        };
        let (d, v, ctx, h) = (cfg.d_model, cfg.vocab_size, cfg.n_ctx, cfg.n_head);
        let arch = cfg.architecture;
        let std = init.std;
        m.add("wte.weight", &[v, d], normal(&mut rng, v * d, std), true)?;
        m.add(
            "wpe.weight",
            &[ctx, d],
            normal(&mut rng, ctx * d, std / 2.0),
            true,
        )?;
        for l in 0..cfg.n_layer {
            let p = format!("h.{l}");
            if arch.block_layer_norm {
                m.add_norm(&format!("{p}.ln_1"), d)?;
            }
            m.add_linear(&mut rng, &format!("{p}.attn.c_attn"), d, 3 * d, std)?;
            m.add_linear(&mut rng, &format!("{p}.attn.c_proj"), d, d, std)?;
            if arch.temperature {
                let n = match cfg.temperature_form {
                    TemperatureForm::PerHeadQuery => vec![h, ctx],
                    TemperatureForm::PerHead => vec![h],
                };
                let count = n.iter().product();
                m.add(
                    &format!("{p}.attn.temperature"),
                    &n,
                    vec![init.temperature as f32; count],
                    false,
                )?;
            }
            if !arch.has_ffn(l) {
                continue;
            }
            if arch.block_layer_norm {
                m.add_norm(&format!("{p}.ln_2"), d)?;
            }
            if arch.ffn == FfnKind::ScaledFused {
                m.add_linear(&mut rng, &format!("{p}.mlp.c_fused"), d, d, std)?;
            } else {
                m.add_linear(&mut rng, &format!("{p}.mlp.c_fc"), d, cfg.d_ff, std)?;
                m.add_linear(&mut rng, &format!("{p}.mlp.c_proj"), cfg.d_ff, d, std)?;
            }
            if matches!(arch.ffn, FfnKind::Scaled | FfnKind::ScaledFused) {
                m.add(
                    &format!("{p}.ffn_alpha"),
                    &[1],
                    vec![init.alpha as f32],
                    false,
                )?;
                m.add(
                    &format!("{p}.ffn_beta"),
                    &[1],
                    vec![init.beta as f32],
                    false,
                )?;
            }
        }
        if cfg.final_layer_norm {
            m.add_norm("ln_f", d)?;
        }
        let nh = cfg.n_layer * h;
        m.add(
            "reg.theta",
            &[cfg.n_layer, h],
            vec![init.theta as f32; nh],
            false,
        )?;
        Ok(m)
    }

    fn add(
        &mut self,
        name: &str,
        shape: &[usize],
        data: Vec<f32>,
        decay: bool,
    ) -> candle_core::Result<()> {
        let t = Tensor::from_vec(data, shape, &self.device)?;
        self.index.insert(name.to_string(), self.params.len());
        self.params.push(Param {
            name: name.to_string(),
            var: Var::from_tensor(&t)?,
            decay,
        });
        Ok(())
    }

    fn add_norm(&mut self, prefix: &str, d: usize) -> candle_core::Result<()> {
        self.add(&format!("{prefix}.weight"), &[d], vec![1.0; d], false)?;
        self.add(&format!("{prefix}.bias"), &[d], vec![0.0; d], false)
    }

    fn add_linear(
        &mut self,
        rng: &mut ChaCha8Rng,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        std: f64,
    ) -> candle_core::Result<()> {
        let w = normal(rng, d_in * d_out, std);
        let norm = if is_ffn_linear(prefix) {
            self.ffn_norm
        } else {
            FfnNorm::None
        };
        match norm {
            FfnNorm::None => self.add(&format!("{prefix}.weight"), &[d_in, d_out], w, true)?,
            FfnNorm::Weight => {
                // g starts at the column norms of v, so the initial W equals v (as torch does).
                let mut g = vec![0f32; d_out];
                for row in w.chunks(d_out) {
                    for (gi, x) in g.iter_mut().zip(row) {
                        *gi += x * x;
                    }
                }
                g.iter_mut().for_each(|x| *x = x.sqrt());
                self.add(&format!("{prefix}.weight_g"), &[d_out], g, false)?;
                self.add(&format!("{prefix}.weight_v"), &[d_in, d_out], w, true)?;
            }
            FfnNorm::Spectral => {
                self.add(&format!("{prefix}.weight_orig"), &[d_in, d_out], w, true)?;
                let u = Tensor::from_vec(unit(rng, d_out), d_out, &self.device)?;
                let v = Tensor::from_vec(unit(rng, d_in), d_in, &self.device)?;
                self.buffers.insert(format!("{prefix}.weight_u"), u);
                self.buffers.insert(format!("{prefix}.weight_v"), v);
            }
        }
        // As in the authors' blocks: only the Q/K/V projection has a bias; the attention output
        // projection and the FFN's linear layers are bias-free.
        if prefix.ends_with("attn.c_attn") {
            self.add(&format!("{prefix}.bias"), &[d_out], vec![0.0; d_out], false)?;
        }
        Ok(())
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&Var> {
        self.index.get(name).map(|&i| &self.params[i].var)
    }

    fn p(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.param(name)
            .map(|v| v.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}")))
    }

    /// The device (CPU).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The effective weight `[d_in, d_out]` of linear layer `prefix` (normalization applied).
    pub fn weight(&self, prefix: &str) -> candle_core::Result<Tensor> {
        if let Some(w) = self.param(&format!("{prefix}.weight")) {
            return Ok(w.as_tensor().clone());
        }
        if let Some(g) = self.param(&format!("{prefix}.weight_g")) {
            let v = self.p(&format!("{prefix}.weight_v"))?;
            let norms = v.sqr()?.sum_keepdim(0)?.sqrt()?; // [1, d_out]
            let scale = g.as_tensor().unsqueeze(0)?.broadcast_div(&norms)?;
            return v.broadcast_mul(&scale);
        }
        let w = self.p(&format!("{prefix}.weight_orig"))?;
        let sigma = self.sigma(prefix, w)?;
        w.broadcast_div(&sigma)
    }

    /// σ = vᵀ W_orig u with the (constant) power-iteration vectors, as a `[1, 1]` tensor.
    fn sigma(&self, prefix: &str, w: &Tensor) -> candle_core::Result<Tensor> {
        let buf = |n: &str| {
            self.buffers
                .get(&format!("{prefix}.{n}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("no buffer {prefix}.{n}")))
        };
        let u = buf("weight_u")?.unsqueeze(1)?; // [d_out, 1]
        let v = buf("weight_v")?.unsqueeze(0)?; // [1, d_in]
        v.matmul(w)?.matmul(&u)
    }

    /// One power iteration of every spectral-normalized layer (before a training step):
    /// `v ← normalize(W u)`, `u ← normalize(Wᵀ v)` in Conv1D layout.
    pub fn power_iteration(&mut self) -> candle_core::Result<()> {
        if self.ffn_norm != FfnNorm::Spectral {
            return Ok(());
        }
        let prefixes: Vec<String> = self
            .params
            .iter()
            .filter_map(|p| p.name.strip_suffix(".weight_orig").map(str::to_string))
            .collect();
        for prefix in prefixes {
            let w = self.p(&format!("{prefix}.weight_orig"))?.detach();
            let u = self.buffers[&format!("{prefix}.weight_u")].unsqueeze(1)?;
            let v = w.matmul(&u)?.squeeze(1)?;
            let v = (&v / (v.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()? as f64 + 1e-12))?;
            let u = w.t()?.matmul(&v.unsqueeze(1)?)?.squeeze(1)?;
            let u = (&u / (u.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()? as f64 + 1e-12))?;
            self.buffers.insert(format!("{prefix}.weight_u"), u);
            self.buffers.insert(format!("{prefix}.weight_v"), v);
        }
        Ok(())
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> candle_core::Result<Tensor> {
        let y = x.matmul(&self.weight(prefix)?)?;
        match self.param(&format!("{prefix}.bias")) {
            Some(b) => y.broadcast_add(b.as_tensor()),
            None => Ok(y),
        }
    }

    fn layer_norm(&self, x: &Tensor, prefix: &str) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let c = x.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        let y = c.broadcast_div(&(var + self.cfg.layer_norm_eps as f64)?.sqrt()?)?;
        y.broadcast_mul(self.p(&format!("{prefix}.weight"))?)?
            .broadcast_add(self.p(&format!("{prefix}.bias"))?)
    }

    /// The forward pass over `tokens` (`[B, T]` u32, T ≤ n_ctx): logits `[B·T, V]` and the
    /// attention probabilities of every layer.
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<ForwardOut> {
        let (b, t) = tokens.dims2()?;
        let cfg = &self.cfg;
        let (d, heads, dk) = (cfg.d_model, cfg.n_head, cfg.head_dim());
        let arch = cfg.architecture;
        let wte = self.p("wte.weight")?;
        let emb = wte
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let pos = self.p("wpe.weight")?.narrow(0, 0, t)?;
        let mut x = emb.broadcast_add(&pos)?.reshape((b * t, d))?;
        let mask = self.mask.narrow(0, 0, t)?.narrow(1, 0, t)?;
        let inv_sqrt = 1.0 / (dk as f64).sqrt();
        let mut attn = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let p = format!("h.{l}");
            let a_in = if arch.block_layer_norm {
                self.layer_norm(&x, &format!("{p}.ln_1"))?
            } else {
                x.clone()
            };
            let qkv = self.linear(&a_in, &format!("{p}.attn.c_attn"))?;
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(1, i * d, d)?
                    .reshape((b, t, heads, dk))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = q.matmul(&k.t()?.contiguous()?)?; // [B, H, T, T]
            let scores = if arch.temperature {
                let temp = self.p(&format!("{p}.attn.temperature"))?;
                // Row scale 1 / (t · √d_k), shaped to broadcast over [B, H, T, T].
                let inv_t = match cfg.temperature_form {
                    TemperatureForm::PerHeadQuery => temp.narrow(1, 0, t)?.unsqueeze(2)?,
                    TemperatureForm::PerHead => temp.reshape((heads, 1, 1))?,
                }
                .recip()?;
                scores.broadcast_mul(&(inv_t * inv_sqrt)?)?
            } else {
                (scores * inv_sqrt)?
            };
            let scores = scores.broadcast_add(&mask)?;
            let max = scores.max_keepdim(D::Minus1)?.detach();
            let e = scores.broadcast_sub(&max)?.exp()?;
            let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let out = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * t, d))?;
            attn.push(probs);
            let out = self.linear(&out, &format!("{p}.attn.c_proj"))?;
            x = (x + out)?;

            if !arch.has_ffn(l) {
                continue;
            }
            let f_in = if arch.block_layer_norm {
                self.layer_norm(&x, &format!("{p}.ln_2"))?
            } else {
                x.clone()
            };
            let f = if arch.ffn == FfnKind::ScaledFused {
                self.linear(&f_in, &format!("{p}.mlp.c_fused"))?
            } else {
                let hid = self.linear(&f_in, &format!("{p}.mlp.c_fc"))?;
                let hid = match arch.activation {
                    Activation::Gelu => gelu_tanh(&hid)?,
                    Activation::Relu => hid.relu()?,
                    Activation::Identity => hid,
                };
                self.linear(&hid, &format!("{p}.mlp.c_proj"))?
            };
            x = match arch.ffn {
                FfnKind::Standard => (x + f)?,
                FfnKind::Scaled | FfnKind::ScaledFused => {
                    let alpha = self.p(&format!("{p}.ffn_alpha"))?;
                    let beta = self.p(&format!("{p}.ffn_beta"))?;
                    (x.broadcast_mul(beta)? + f.broadcast_div(alpha)?)?
                }
            };
        }
        if cfg.final_layer_norm {
            x = self.layer_norm(&x, "ln_f")?;
        }
        let logits = x.matmul(&wte.t()?)?;
        Ok(ForwardOut { logits, attn })
    }

    /// Keeps the constrained parameters in range after an optimizer step: temperatures
    /// ≥ [`MIN_TEMPERATURE`], α ≥ [`MIN_ALPHA`], θ in [0, 1].
    pub fn project(&self) -> candle_core::Result<()> {
        for p in &self.params {
            let (lo, hi) = if p.name.ends_with(".attn.temperature") {
                (MIN_TEMPERATURE, f64::INFINITY)
            } else if p.name.ends_with(".ffn_alpha") {
                (MIN_ALPHA, f64::INFINITY)
            } else if p.name == "reg.theta" {
                (0.0, 1.0)
            } else {
                continue;
            };
            let clamped = p.var.as_tensor().clamp(lo, hi)?;
            p.var.set(&clamped)?;
        }
        Ok(())
    }

    /// Every parameter and buffer as named tensors (the training checkpoint's content).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect();
        for (n, t) in &self.buffers {
            out.push((format!("buffer.{n}"), t.clone()));
        }
        out
    }

    /// Restores parameters and buffers from named tensors (shapes must match).
    pub fn load_state(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
    ) -> anyhow::Result<()> {
        for p in &self.params {
            let t = state
                .get(&p.name)
                .ok_or_else(|| anyhow::anyhow!("checkpoint lacks parameter {}", p.name))?;
            anyhow::ensure!(
                t.dims() == p.var.dims(),
                "checkpoint parameter {} has shape {:?}, the model expects {:?}",
                p.name,
                t.dims(),
                p.var.dims()
            );
            p.var.set(&t.to_dtype(DType::F32)?)?;
        }
        for (n, b) in self.buffers.iter_mut() {
            let t = state
                .get(&format!("buffer.{n}"))
                .ok_or_else(|| anyhow::anyhow!("checkpoint lacks buffer {n}"))?;
            anyhow::ensure!(
                t.dims() == b.dims(),
                "checkpoint buffer {n} has the wrong shape"
            );
            *b = t.clone();
        }
        Ok(())
    }
}

/// The additive causal mask `[n, n]`: 0 where key j ≤ query i, −∞ above the diagonal (so the
/// softmax gives exactly 0 there, as the engine's masked softmax does).
fn causal_mask(n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..n * n)
        .map(|k| {
            if k % n <= k / n {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Tensor::from_vec(data, (n, n), device)
}

/// GPT-2's `gelu_new`, `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, as the engine computes it
/// (candle's `gelu` is this tanh form, one fused op with its own backward).
fn gelu_tanh(x: &Tensor) -> candle_core::Result<Tensor> {
    x.gelu()
}

/// Mean cross-entropy of `logits` `[N, V]` against `targets` `[N]` (u32), in nats.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}
