//! The tensor-ops trait and the transformer written once against it.
//!
//! DESIGN.md section 3 item 2: the layers (embedding, attention with causal mask and optional
//! temperature, the FFN variants, LayerNorm, residual scaling β, LM head) are written once,
//! here, over [`TensorOps`]. Implementations: [`super::plain::F32Ops`] (f32, fast GEMM, the
//! float reference), [`super::fixed::FixedOps`] (fixed point over Z_2^64, the exact mirror of
//! the secure protocol) and, in a later issue, the secure engine. The block structure follows
//! GPT-2 (Radford et al. 2019) and the ablations of Jha & Reagen, "Entropy-Guided Attention for
//! Private LLMs" (2025), Eq. 1-4 and 8 and Appendix A.
//!
//! Every tensor is 2-D, row-major, `[rows, cols]` with one row per token position.

use super::ModelError;
use super::config::{FfnKind, ModelConfig, TemperatureForm};

/// A linear layer `y = x W + b` with `W` stored `[d_in, d_out]` row-major (GPT-2's Conv1D
/// layout), in f32 (the host form every backend prepares its own from). Weights are the
/// server's secret: `Debug` prints shapes only.
#[derive(Clone, PartialEq)]
pub struct Linear {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// Weight, `[d_in, d_out]` row-major.
    pub w: Vec<f32>,
    /// Bias `[d_out]`, if any.
    pub b: Option<Vec<f32>>,
}

/// LayerNorm parameters: `y = (x - mean) / sqrt(var + eps) * gamma + beta`. `Debug` prints
/// the width only.
#[derive(Clone, PartialEq)]
pub struct Norm {
    /// Scale `[d]`.
    pub gamma: Vec<f32>,
    /// Shift `[d]`.
    pub beta: Vec<f32>,
    /// Epsilon added to the variance.
    pub eps: f32,
}

/// Token and position embeddings; the token embedding doubles as the (tied) LM head. `Debug`
/// prints shapes only.
#[derive(Clone, PartialEq)]
pub struct Embedding {
    /// Vocabulary size.
    pub vocab: usize,
    /// Width d.
    pub d: usize,
    /// Number of positions.
    pub n_ctx: usize,
    /// Token embeddings `[vocab, d]`.
    pub wte: Vec<f32>,
    /// Position embeddings `[n_ctx, d]`.
    pub wpe: Vec<f32>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Linear({} -> {}, bias: {}, values hidden)",
            self.d_in,
            self.d_out,
            self.b.is_some()
        )
    }
}

impl std::fmt::Debug for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Norm(d = {}, values hidden)", self.gamma.len())
    }
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Embedding(vocab = {}, d = {}, n_ctx = {}, values hidden)",
            self.vocab, self.d, self.n_ctx
        )
    }
}

/// The operations the transformer needs. `&mut self` lets a secure backend own its channel,
/// triples and counters.
pub trait TensorOps {
    /// A 2-D activation tensor.
    type Tensor: Clone;
    /// A prepared linear layer.
    type Linear;
    /// Prepared LayerNorm parameters.
    type Norm;
    /// Prepared embeddings (also the tied LM head).
    type Embedding;

    /// Converts a host linear layer to this backend's form.
    fn prepare_linear(&self, w: &Linear) -> Self::Linear;
    /// Converts host LayerNorm parameters.
    fn prepare_norm(&self, n: &Norm) -> Self::Norm;
    /// Converts host embeddings.
    fn prepare_embedding(&self, e: &Embedding) -> Self::Embedding;

    /// Number of rows of `x`.
    fn rows(&self, x: &Self::Tensor) -> usize;
    /// `wte[tokens[i]] + wpe[pos0 + i]`, one row per token.
    fn embed(&mut self, e: &Self::Embedding, tokens: &[u32], pos0: usize) -> Self::Tensor;
    /// `x W + b`.
    fn linear(&mut self, x: &Self::Tensor, w: &Self::Linear) -> Self::Tensor;
    /// The tied LM head `x wte^T`.
    fn lm_head(&mut self, x: &Self::Tensor, e: &Self::Embedding) -> Self::Tensor;
    /// Elementwise sum.
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// Multiplication by a public constant.
    fn scale(&mut self, x: &Self::Tensor, c: f32) -> Self::Tensor;
    /// Multiplication of row `i` by the public constant `c[i]`.
    fn scale_rows(&mut self, x: &Self::Tensor, c: &[f32]) -> Self::Tensor;
    /// LayerNorm over each row.
    fn layer_norm(&mut self, x: &Self::Tensor, n: &Self::Norm) -> Self::Tensor;
    /// GELU (tanh form), elementwise.
    fn gelu(&mut self, x: &Self::Tensor) -> Self::Tensor;
    /// ReLU, elementwise.
    fn relu(&mut self, x: &Self::Tensor) -> Self::Tensor;
    /// Columns `start .. start + len` (a local relayout).
    fn cols(&self, x: &Self::Tensor, start: usize, len: usize) -> Self::Tensor;
    /// Rows `start .. start + len` (a local relayout).
    fn row_range(&self, x: &Self::Tensor, start: usize, len: usize) -> Self::Tensor;
    /// Side-by-side concatenation (a local relayout).
    fn concat_cols(&self, parts: &[Self::Tensor]) -> Self::Tensor;
    /// `a` stacked above `b` (a local relayout; the KV cache grows this way).
    fn concat_rows(&self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `a b^T` of two secret tensors, `[n, k] x [m, k] -> [n, m]`.
    fn matmul_nt(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// `a b` of two secret tensors, `[n, k] x [k, m] -> [n, m]`.
    fn matmul(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Self::Tensor;
    /// Row-wise softmax under the causal mask: row `i` sees columns `0 ..= offset + i`; masked
    /// entries are exactly 0.
    fn causal_softmax(&mut self, x: &Self::Tensor, offset: usize) -> Self::Tensor;
    /// The values as f32, row-major (for tests and analysis; a secure backend opens them).
    fn to_f32(&self, x: &Self::Tensor) -> Vec<f32>;
}

/// The FFN sub-block's weights.
#[derive(Clone, Debug)]
pub enum Ffn<L> {
    /// No FFN in this layer (pruned: `[k]` architectures).
    None,
    /// Two linear layers with the activation between: `act(x W_fc + b) W_proj + b`.
    TwoLayer {
        /// `c_fc`, d -> d_ff.
        fc: L,
        /// `c_proj`, d_ff -> d (1/alpha folded in).
        proj: L,
    },
    /// One fused d x d matrix (1/alpha folded in).
    Fused {
        /// `c_fused`, d -> d.
        w: L,
    },
}

/// One transformer block's weights in backend `O`'s form.
pub struct Block<O: TensorOps> {
    /// `ln_1`, if the block has LayerNorms.
    pub ln_1: Option<O::Norm>,
    /// `attn.c_attn`, d -> 3d (Q, K, V side by side).
    pub qkv: O::Linear,
    /// `attn.c_proj`, d -> d.
    pub proj: O::Linear,
    /// `ln_2`, if the block has LayerNorms and an FFN.
    pub ln_2: Option<O::Norm>,
    /// The FFN.
    pub ffn: Ffn<O::Linear>,
    /// Residual scale β of scaled FFNs (public; 1 otherwise).
    pub beta: f32,
    /// Softmax temperatures: `[H, n_ctx]` (per head and query position) or `[H]` (per head).
    pub temperature: Option<Vec<f32>>,
}

/// A whole model's weights in backend `O`'s form.
pub struct ModelWeights<O: TensorOps> {
    /// Embeddings and tied LM head.
    pub embedding: O::Embedding,
    /// The blocks.
    pub blocks: Vec<Block<O>>,
    /// Final LayerNorm, if the config has one.
    pub ln_f: Option<O::Norm>,
}

/// A key/value cache: per layer, the keys and values of every position processed so far.
pub struct KvCache<O: TensorOps> {
    layers: Vec<Option<(O::Tensor, O::Tensor)>>,
    len: usize,
}

impl<O: TensorOps> Clone for KvCache<O> {
    fn clone(&self) -> Self {
        KvCache {
            layers: self.layers.clone(),
            len: self.len,
        }
    }
}

impl<O: TensorOps> KvCache<O> {
    /// An empty cache for `n_layer` layers.
    pub fn new(n_layer: usize) -> Self {
        KvCache {
            layers: (0..n_layer).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What a forward pass returns.
pub struct ForwardOutput<O: TensorOps> {
    /// Logits `[rows, vocab]`: one row per new token, or only the last one.
    pub logits: O::Tensor,
    /// If requested, per layer the attention probabilities `[H, n_new, past + n_new]` row-major.
    pub attention: Vec<Vec<f32>>,
}

/// Options of [`forward`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Collect the attention probabilities of every layer.
    pub attention: bool,
    /// Compute the logits of the last position only.
    pub last_only: bool,
}

/// The public per-row scales of the attention logits of head `h` for query positions
/// `pos0 .. pos0 + n`: `1 / (t_(h,i) · sqrt(d_k))`, with `t = 1` without temperature.
pub fn logit_scales(
    cfg: &ModelConfig,
    temperature: Option<&[f32]>,
    h: usize,
    pos0: usize,
    n: usize,
) -> Vec<f32> {
    let inv_sqrt = 1.0 / (cfg.head_dim() as f32).sqrt();
    (pos0..pos0 + n)
        .map(|p| match temperature {
            None => inv_sqrt,
            Some(t) => {
                let ti = match cfg.temperature_form {
                    TemperatureForm::PerHeadQuery => t[h * cfg.n_ctx + p],
                    TemperatureForm::PerHead => t[h],
                };
                inv_sqrt / ti
            }
        })
        .collect()
}

/// Checks tokens against the vocabulary and the context limit.
pub fn check_tokens(cfg: &ModelConfig, tokens: &[u32], past: usize) -> Result<(), ModelError> {
    if tokens.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    if past + tokens.len() > cfg.n_ctx {
        return Err(ModelError::ContextTooLong {
            len: past + tokens.len(),
            limit: cfg.n_ctx,
        });
    }
    if let Some(&t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(ModelError::TokenOutOfRange {
            token: t,
            vocab: cfg.vocab_size,
        });
    }
    Ok(())
}

/// The transformer's forward pass over `tokens`, continuing from `cache` (which it extends).
pub fn forward<O: TensorOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    w: &ModelWeights<O>,
    tokens: &[u32],
    cache: &mut KvCache<O>,
    opts: ForwardOptions,
) -> Result<ForwardOutput<O>, ModelError> {
    let past = cache.len;
    check_tokens(cfg, tokens, past)?;
    if cache.layers.len() != cfg.n_layer || w.blocks.len() != cfg.n_layer {
        return Err(ModelError::BadConfig {
            field: "n_layer",
            msg: "cache or weights have a different number of layers".into(),
        });
    }
    let n = tokens.len();
    let (d, heads, dk) = (cfg.d_model, cfg.n_head, cfg.head_dim());
    let arch = cfg.architecture;
    let mut x = ops.embed(&w.embedding, tokens, past);
    let mut attention = Vec::new();
    for (l, blk) in w.blocks.iter().enumerate() {
        // Attention sub-block: x + MHA(LN1(x)).
        let a_in = match &blk.ln_1 {
            Some(ln) => ops.layer_norm(&x, ln),
            None => x.clone(),
        };
        let qkv = ops.linear(&a_in, &blk.qkv);
        let q = ops.cols(&qkv, 0, d);
        let k_new = ops.cols(&qkv, d, d);
        let v_new = ops.cols(&qkv, 2 * d, d);
        let (k, v) = match cache.layers[l].take() {
            Some((pk, pv)) => (ops.concat_rows(&pk, &k_new), ops.concat_rows(&pv, &v_new)),
            None => (k_new, v_new),
        };
        let mut heads_out = Vec::with_capacity(heads);
        let mut probs_l = Vec::new();
        for h in 0..heads {
            let qh = ops.cols(&q, h * dk, dk);
            let kh = ops.cols(&k, h * dk, dk);
            let vh = ops.cols(&v, h * dk, dk);
            let scores = ops.matmul_nt(&qh, &kh);
            let scales = logit_scales(cfg, blk.temperature.as_deref(), h, past, n);
            let scores = ops.scale_rows(&scores, &scales);
            let p = ops.causal_softmax(&scores, past);
            if opts.attention {
                probs_l.extend(ops.to_f32(&p));
            }
            heads_out.push(ops.matmul(&p, &vh));
        }
        cache.layers[l] = Some((k, v));
        if opts.attention {
            attention.push(probs_l);
        }
        let att = ops.concat_cols(&heads_out);
        let att = ops.linear(&att, &blk.proj);
        x = ops.add(&x, &att);

        // FFN sub-block.
        if !arch.has_ffn(l) {
            continue;
        }
        let f_in = match &blk.ln_2 {
            Some(ln) => ops.layer_norm(&x, ln),
            None => x.clone(),
        };
        let f = match &blk.ffn {
            Ffn::None => continue,
            Ffn::TwoLayer { fc, proj } => {
                let hid = ops.linear(&f_in, fc);
                let hid = match arch.activation {
                    super::config::Activation::Gelu => ops.gelu(&hid),
                    super::config::Activation::Relu => ops.relu(&hid),
                    super::config::Activation::Identity => hid,
                };
                ops.linear(&hid, proj)
            }
            Ffn::Fused { w } => ops.linear(&f_in, w),
        };
        x = match arch.ffn {
            FfnKind::Standard => ops.add(&x, &f),
            FfnKind::Scaled | FfnKind::ScaledFused => {
                let skip = ops.scale(&x, blk.beta);
                ops.add(&skip, &f)
            }
        };
    }
    cache.len = past + n;
    if let Some(ln) = &w.ln_f {
        x = ops.layer_norm(&x, ln);
    }
    if opts.last_only {
        let r = ops.rows(&x);
        x = ops.row_range(&x, r - 1, 1);
    }
    let logits = ops.lm_head(&x, &w.embedding);
    Ok(ForwardOutput { logits, attention })
}

/// Converts weights from the host (f32) backend's form to another backend's.
pub fn convert_weights<O: TensorOps>(
    ops: &O,
    w: &ModelWeights<super::plain::F32Ops>,
) -> ModelWeights<O> {
    let ffn = |f: &Ffn<Linear>| match f {
        Ffn::None => Ffn::None,
        Ffn::TwoLayer { fc, proj } => Ffn::TwoLayer {
            fc: ops.prepare_linear(fc),
            proj: ops.prepare_linear(proj),
        },
        Ffn::Fused { w } => Ffn::Fused {
            w: ops.prepare_linear(w),
        },
    };
    ModelWeights {
        embedding: ops.prepare_embedding(&w.embedding),
        blocks: w
            .blocks
            .iter()
            .map(|b| Block {
                ln_1: b.ln_1.as_ref().map(|n| ops.prepare_norm(n)),
                qkv: ops.prepare_linear(&b.qkv),
                proj: ops.prepare_linear(&b.proj),
                ln_2: b.ln_2.as_ref().map(|n| ops.prepare_norm(n)),
                ffn: ffn(&b.ffn),
                beta: b.beta,
                temperature: b.temperature.clone(),
            })
            .collect(),
        ln_f: w.ln_f.as_ref().map(|n| ops.prepare_norm(n)),
    }
}
