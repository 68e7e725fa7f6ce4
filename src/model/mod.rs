//! The plaintext model: GPT-2 and the nonlinearity-reduced architectures of Jha & Reagen,
//! "Entropy-Guided Attention for Private LLMs" (2025) and AERO (2024), with checkpoints,
//! a float forward pass with a KV cache, generation, and a fixed-point mirror of the secure
//! forward pass.
//!
//! A decoder-only transformer maps tokens `x_1..x_T` to next-token logits: embeddings
//! `wte[x_i] + wpe[i]`, `L` blocks of causal multi-head attention and a feed-forward network
//! (each architecture variant keeps or drops LayerNorm and the FFN activation, may scale or
//! fuse the FFN and may add a softmax temperature; see [`config`]), an optional final
//! LayerNorm and the tied LM head `x wteᵀ`. The layers are written once in [`ops`] against the
//! [`ops::TensorOps`] trait; [`plain::F32Ops`] is the float reference and [`fixed::FixedOps`]
//! the fixed-point mirror the secure engine is checked against. [`Model`] is the f32 entry
//! point; [`FixedModel`] the mirror's.
//!
//! See `docs/model.md` for the configuration fields, the tensor names of privlm's format and
//! the mirror's approximations.

pub mod approx;
pub mod checkpoint;
pub mod config;
pub mod fixed;
pub mod ops;
pub mod plain;
pub mod tokenizer;

use std::path::Path;

use privlm_protocols::prg::Prg;
use rand_core::Rng;

pub use checkpoint::{Format, Weights};
pub use config::{Activation, Architecture, FfnKind, ModelConfig, TemperatureForm};
pub use fixed::FixedOps;
pub use ops::{
    ForwardOptions, KvCache, ModelManifest, Sampling, Stage, TensorOps, Tokens, block_on_local,
};
pub use plain::{F32Heads, F32Ops, F32Tensor};

/// Errors of the model: configuration, checkpoints and inputs. Messages name the field or
/// tensor at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A configuration names an architecture privlm does not know.
    #[error("unknown architecture {name:?} in field `{field}`; known: {known}")]
    UnknownArchitecture {
        /// The config field.
        field: &'static str,
        /// The name given.
        name: String,
        /// What is known.
        known: String,
    },
    /// A configuration field is missing or invalid.
    #[error("config field `{field}`: {msg}")]
    BadConfig {
        /// The config field.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// `config.json` does not parse (serde's message names the field and position).
    #[error("config.json: {0}")]
    ConfigJson(String),
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("missing tensor `{0}` (also tried with the `transformer.` prefix)")]
    MissingTensor(String),
    /// A tensor has the wrong shape.
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    WrongShape {
        /// Tensor name.
        tensor: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Shape found.
        got: Vec<usize>,
    },
    /// A tensor has a dtype privlm cannot read as weights.
    #[error("tensor `{tensor}` has dtype {dtype}, expected F32, F16, BF16 or F64")]
    WrongDtype {
        /// Tensor name.
        tensor: String,
        /// Dtype found.
        dtype: String,
    },
    /// A tensor's values are unusable.
    #[error("tensor `{tensor}`: {msg}")]
    BadTensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// The safetensors file ends before a tensor's data does.
    #[error(
        "truncated safetensors file: tensor `{tensor}` needs data bytes up to {needed}, the file has {available}"
    )]
    Truncated {
        /// The first tensor cut off.
        tensor: String,
        /// End offset it needs (in the data section).
        needed: usize,
        /// Data bytes present.
        available: usize,
    },
    /// The safetensors file is malformed in another way.
    #[error("invalid safetensors file: {0}")]
    Safetensors(String),
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        msg: String,
    },
    /// The prompt (plus cached positions) exceeds the context.
    #[error("input of {len} positions exceeds the model's context limit of {limit} tokens")]
    ContextTooLong {
        /// Positions requested.
        len: usize,
        /// The model's `n_ctx`.
        limit: usize,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {token} is out of range for vocabulary size {vocab}")]
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// No tokens were given.
    #[error("empty input: at least one token is needed")]
    EmptyInput,
    /// Sampling parameters are invalid.
    #[error("sampling: {0}")]
    BadSampling(String),
    /// A tensor op failed (wrong shapes, or an op the backend cannot perform).
    #[error("tensor op `{op}`: {msg}")]
    Backend {
        /// The op.
        op: &'static str,
        /// What went wrong.
        msg: String,
    },
    /// Weights do not agree with the configuration or the model manifest.
    #[error("weights do not match the model: {0}")]
    WeightMismatch(String),
}

/// Index of the largest value (lowest index on ties).
pub fn argmax(xs: &[f32]) -> usize {
    ops::argmax_by(xs)
}

/// Picks a token from one row of logits.
pub fn sample<R: Rng + ?Sized>(
    logits: &[f32],
    sampling: Sampling,
    rng: &mut R,
) -> Result<u32, ModelError> {
    match sampling {
        Sampling::Greedy => Ok(argmax(logits) as u32),
        Sampling::TopK { temperature, k } => {
            if !(temperature.is_finite() && temperature > 0.0) || k == 0 {
                return Err(ModelError::BadSampling(format!(
                    "need temperature > 0 and k >= 1, got temperature {temperature}, k {k}"
                )));
            }
            let mut idx: Vec<usize> = (0..logits.len()).collect();
            idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            idx.truncate(k.min(logits.len()));
            let top = logits[idx[0]] as f64;
            let w: Vec<f64> = idx
                .iter()
                .map(|&i| ((logits[i] as f64 - top) / temperature as f64).exp())
                .collect();
            let total: f64 = w.iter().sum();
            // Uniform in [0, 1) with 53 random bits.
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut acc = 0.0;
            for (&i, &wi) in idx.iter().zip(&w) {
                acc += wi;
                if u < acc {
                    return Ok(i as u32);
                }
            }
            Ok(*idx.last().expect("k >= 1") as u32)
        }
    }
}

/// Random weights for `cfg`: the architecture's tensors with N(0, std) entries (std 0.02 as in
/// GPT-2, larger for the embeddings so the forward pass is not trivially flat), LayerNorm gains
/// 1 and shifts 0, `beta` 1, temperatures uniform in [0.5, 2). Seeded: the same seed gives the same weights.
pub fn random_weights(cfg: &ModelConfig, seed: u64) -> Weights {
    fn normal(rng: &mut Prg, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                // Box-Muller from two uniform draws, the first in (0, 1].
                let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
                let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32 * std
            })
            .collect()
    }
    fn lin(rng: &mut Prg, d_in: usize, d_out: usize) -> ops::Linear {
        ops::Linear {
            d_in,
            d_out,
            w: normal(rng, d_in * d_out, 0.02 * (768.0 / d_in as f32).sqrt()),
            b: Some(normal(rng, d_out, 0.02)),
        }
    }
    let mut rng = Prg::from_u64(seed);
    let (d, ff) = (cfg.d_model, cfg.d_ff);
    let arch = cfg.architecture;
    let norm = |d: usize| ops::Norm {
        gamma: vec![1.0; d],
        beta: vec![0.0; d],
        eps: cfg.layer_norm_eps,
    };
    let wte = normal(&mut rng, cfg.vocab_size * d, 0.1);
    let wpe = normal(&mut rng, cfg.n_ctx * d, 0.05);
    let blocks = (0..cfg.n_layer)
        .map(|l| ops::Block {
            ln_1: arch.block_layer_norm.then(|| norm(d)),
            qkv: lin(&mut rng, d, 3 * d),
            proj: lin(&mut rng, d, d),
            ln_2: (arch.block_layer_norm && arch.has_ffn(l)).then(|| norm(d)),
            ffn: if !arch.has_ffn(l) {
                ops::Ffn::None
            } else if arch.ffn == FfnKind::ScaledFused {
                ops::Ffn::Fused {
                    w: lin(&mut rng, d, d),
                }
            } else {
                ops::Ffn::TwoLayer {
                    fc: lin(&mut rng, d, ff),
                    proj: lin(&mut rng, ff, d),
                }
            },
            beta: 1.0,
            score_scale: ops::default_score_scale(cfg),
            temperature: arch.temperature.then(|| {
                let n = match cfg.temperature_form {
                    TemperatureForm::PerHeadQuery => cfg.n_head * cfg.n_ctx,
                    TemperatureForm::PerHead => cfg.n_head,
                };
                // Uniform in [0.5, 2): a non-trivial public per-row scaling.
                (0..n)
                    .map(|_| 0.5 + 1.5 * ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32))
                    .collect()
            }),
        })
        .collect();
    ops::ModelWeights {
        embedding: ops::Embedding {
            vocab: cfg.vocab_size,
            d,
            n_ctx: cfg.n_ctx,
            wte,
            wpe,
        },
        blocks,
        ln_f: cfg.final_layer_norm.then(|| norm(d)),
        lm_head: None,
    }
}

/// The f32 model: configuration plus weights. The reference for the secure engine and the
/// entry point of the entropy analysis.
pub struct Model {
    config: ModelConfig,
    weights: Weights,
}

/// Logits of a forward pass: `rows x vocab`, row-major. `Debug` prints the shape only (the
/// logits reveal the client's output).
#[derive(Clone, PartialEq)]
pub struct Logits {
    /// Number of rows (positions).
    pub rows: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl std::fmt::Debug for Logits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Logits({} x {}, values hidden)", self.rows, self.vocab)
    }
}

impl Logits {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// The last row.
    pub fn last(&self) -> &[f32] {
        self.row(self.rows - 1)
    }
}

impl Model {
    /// A model from a config and weights. The config is validated, and the weights are checked
    /// against it (structure, shapes and public constants; errors name the weight).
    pub fn new(config: ModelConfig, weights: Weights) -> Result<Self, ModelError> {
        config.validate()?;
        ops::check_weights(&ModelManifest::of(&config, &weights), &weights)?;
        Ok(Model { config, weights })
    }

    /// Loads a model directory: Hugging Face GPT-2 or privlm's format.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let (config, weights, _) = checkpoint::load_dir(dir)?;
        Model::new(config, weights)
    }

    /// A model with seeded random weights (see [`random_weights`]).
    pub fn random(config: ModelConfig, seed: u64) -> Result<Self, ModelError> {
        config.validate()?;
        let weights = random_weights(&config, seed);
        Ok(Model { config, weights })
    }

    /// Saves in privlm's format (`config.json` + `model.safetensors`).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        checkpoint::save_dir(dir, &self.config, &self.weights)
    }

    /// The public configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The public description both parties of a secure run know: the configuration and the
    /// per-layer public constants (β, score scales, temperatures).
    pub fn manifest(&self) -> ModelManifest {
        ModelManifest::of(&self.config, &self.weights)
    }

    /// The weights (folded f32 form).
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// A fresh KV cache.
    pub fn new_cache(&self) -> KvCache<F32Ops> {
        KvCache::new(self.config.n_layer)
    }

    /// Logits for every position of `tokens`. A prompt longer than the context is refused.
    pub fn forward(&self, tokens: &[u32]) -> Result<Logits, ModelError> {
        let mut cache = self.new_cache();
        self.forward_cached(tokens, &mut cache, false)
    }

    /// Logits for every position and, per layer, the attention probabilities
    /// `[heads, T, T]` row-major (row = query, column = key; masked entries are 0).
    pub fn forward_with_attention(
        &self,
        tokens: &[u32],
    ) -> Result<(Logits, Vec<Vec<f32>>), ModelError> {
        let mut cache = self.new_cache();
        let out = block_on_local(ops::forward(
            &mut F32Ops,
            &self.config,
            &self.weights,
            Tokens::Ids(tokens),
            &mut cache,
            ForwardOptions {
                attention: true,
                last_only: false,
            },
        ))?;
        Ok((to_logits(out.logits), out.attention))
    }

    /// Runs `tokens` after the positions already in `cache` (and appends them to it).
    /// With `last_only`, only the last position's logits are computed.
    pub fn forward_cached(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<F32Ops>,
        last_only: bool,
    ) -> Result<Logits, ModelError> {
        let out = block_on_local(ops::forward(
            &mut F32Ops,
            &self.config,
            &self.weights,
            Tokens::Ids(tokens),
            cache,
            ForwardOptions {
                attention: false,
                last_only,
            },
        ))?;
        Ok(to_logits(out.logits))
    }

    /// Generates `n_new` tokens after `prompt` with the KV cache; `seed` drives sampling.
    /// Returns only the new tokens. Refused if prompt plus new tokens exceed the context.
    pub fn generate(
        &self,
        prompt: &[u32],
        n_new: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        known(block_on_local(ops::generate(
            &mut F32Ops,
            &self.config,
            &self.weights,
            Tokens::Ids(prompt),
            n_new,
            sampling,
            seed,
        ))?)
    }

    /// The fixed-point mirror of this model.
    pub fn to_fixed(&self) -> FixedModel {
        let weights = block_on_local(ops::prepare_weights(
            &mut FixedOps,
            &self.manifest(),
            Some(&self.weights),
        ))
        .expect("the weights were checked against the manifest when the model was built");
        FixedModel {
            config: self.config.clone(),
            weights,
        }
    }
}

/// The tokens a plaintext generation produced (a plaintext backend always learns them).
fn known(t: Vec<Option<u32>>) -> Result<Vec<u32>, ModelError> {
    t.into_iter()
        .map(|t| {
            t.ok_or_else(|| ModelError::Backend {
                op: "argmax",
                msg: "the backend did not reveal the token".into(),
            })
        })
        .collect()
}

fn to_logits(t: F32Tensor) -> Logits {
    Logits {
        rows: t.rows,
        vocab: t.cols,
        data: t.data,
    }
}

/// The fixed-point mirror: the same forward pass in Z_2^64 fixed point (see [`fixed`]).
pub struct FixedModel {
    config: ModelConfig,
    weights: ops::ModelWeights<FixedOps>,
}

impl FixedModel {
    /// The public configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The fixed-point weights.
    pub fn weights(&self) -> &ops::ModelWeights<FixedOps> {
        &self.weights
    }

    /// A fresh KV cache.
    pub fn new_cache(&self) -> KvCache<FixedOps> {
        KvCache::new(self.config.n_layer)
    }

    /// Decoded logits for every position of `tokens`.
    pub fn forward(&self, tokens: &[u32]) -> Result<Logits, ModelError> {
        let mut cache = self.new_cache();
        self.run(tokens, &mut cache, ForwardOptions::default())
            .map(|r| r.0)
    }

    /// Decoded logits and per-layer attention probabilities `[heads, T, T]`.
    pub fn forward_with_attention(
        &self,
        tokens: &[u32],
    ) -> Result<(Logits, Vec<Vec<f32>>), ModelError> {
        let mut cache = self.new_cache();
        let opts = ForwardOptions {
            attention: true,
            last_only: false,
        };
        self.run(tokens, &mut cache, opts)
    }

    /// Runs `tokens` after the positions in `cache` (and appends them); decoded logits of every
    /// new position, or of the last one only.
    pub fn forward_cached(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<FixedOps>,
        last_only: bool,
    ) -> Result<Logits, ModelError> {
        let opts = ForwardOptions {
            attention: false,
            last_only,
        };
        self.run(tokens, cache, opts).map(|r| r.0)
    }

    fn run(
        &self,
        tokens: &[u32],
        cache: &mut KvCache<FixedOps>,
        opts: ForwardOptions,
    ) -> Result<(Logits, Vec<Vec<f32>>), ModelError> {
        let mut ops = FixedOps;
        let out = block_on_local(ops::forward(
            &mut ops,
            &self.config,
            &self.weights,
            Tokens::Ids(tokens),
            cache,
            opts,
        ))?;
        let data = block_on_local(ops.reveal(&out.logits))?;
        let (rows, vocab) = (ops.rows(&out.logits), self.config.vocab_size);
        Ok((Logits { rows, vocab, data }, out.attention))
    }

    /// Generation in the mirror (argmax over the fixed-point logits for `Greedy`).
    pub fn generate(
        &self,
        prompt: &[u32],
        n_new: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<Vec<u32>, ModelError> {
        known(block_on_local(ops::generate(
            &mut FixedOps,
            &self.config,
            &self.weights,
            Tokens::Ids(prompt),
            n_new,
            sampling,
            seed,
        ))?)
    }
}
