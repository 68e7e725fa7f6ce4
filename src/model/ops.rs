//! The tensor-ops trait and the transformer written once against it.
//!
//! DESIGN.md section 3 items 2 and 8: the layers (embedding, attention with causal mask, public
//! score scale and optional temperature, the FFN variants, LayerNorm, residual scaling β, LM
//! head) are written once, here, in [`forward`], over [`TensorOps`]. Implementations:
//! [`super::plain::F32Ops`] (f32, fast GEMM, the float reference), [`super::fixed::FixedOps`]
//! (fixed point over Z_2^64, the exact mirror of the secure protocol) and, in later issues, the
//! secure engine (`src/secure/`, one implementation per party) and a counting backend (the cost
//! model). The block structure follows GPT-2 (Radford et al. 2019) and the ablations of Jha &
//! Reagen, "Entropy-Guided Attention for Private LLMs" (2025), Eq. 1-4 and 8 and Appendix A.
//!
//! **Fallible and async.** Every op returns `Result<_, Self::Error>`. The ops that would
//! communicate in two-party computation (products with weights or between secret tensors,
//! truncations, nonlinearities, openings) return `Send` futures, so a secure backend can await
//! its channel inside them; [`forward`] is an `async fn` generic over the backend. The local
//! ops (relayouts, additions) are synchronous. The plaintext backends never pend: their callers
//! drive the futures with [`block_on_local`] (no executor needed).
//!
//! **Batched over heads and rows.** Activations are 2-D `[rows, cols]` ([`TensorOps::Tensor`],
//! one row per position). Attention works on head batches `[heads, rows, cols]`
//! ([`TensorOps::Heads`]): one call computes the scaled scores `Q Kᵀ` of all heads, one the
//! causal softmax of all heads, one `P V` of all heads. A layer's number of backend calls is a
//! constant: it does not grow with the number of heads or rows (`tests/model_ops.rs` counts).
//!
//! **Where the weights enter.** Weights are prepared once per model by [`prepare_weights`] from
//! the public [`ModelManifest`] (configuration plus per-layer public constants) and, on a party
//! that holds them, their values. The plaintext backends and the secure server pass the values;
//! the secure client (and a counting backend) pass `None` and build their handles from the
//! public shapes alone. Likewise the tokens: [`Tokens::Ids`] where they are known (the client,
//! the plaintext backends), [`Tokens::Hidden`] (only their number) on the secure server.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};

use super::ModelError;
use super::config::{Activation, FfnKind, ModelConfig, TemperatureForm};

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

/// Token and position embeddings; the token embedding doubles as the LM head when the model's
/// embeddings are tied. `Debug` prints shapes only.
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

impl fmt::Debug for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Linear({} -> {}, bias: {}, values hidden)",
            self.d_in,
            self.d_out,
            self.b.is_some()
        )
    }
}

impl fmt::Debug for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Norm(d = {}, values hidden)", self.gamma.len())
    }
}

impl fmt::Debug for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Embedding(vocab = {}, d = {}, n_ctx = {}, values hidden)",
            self.vocab, self.d, self.n_ctx
        )
    }
}

/// The public shape of a linear layer (what a party without the weights knows). Whether the
/// layer has a bias is the weight holder's business: adding a bias is local to its share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearShape {
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
}

/// The public shape of a LayerNorm: its width and epsilon (both from the configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormShape {
    /// Width d.
    pub d: usize,
    /// Epsilon added to the variance.
    pub eps: f32,
}

/// The public shape of the embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EmbeddingShape {
    /// Vocabulary size.
    pub vocab: usize,
    /// Width d.
    pub d: usize,
    /// Number of positions.
    pub n_ctx: usize,
}

impl Linear {
    /// The public shape.
    pub fn shape(&self) -> LinearShape {
        LinearShape {
            d_in: self.d_in,
            d_out: self.d_out,
        }
    }

    /// Checks that the value vectors have the lengths the shape says.
    fn check(&self, what: &str) -> Result<(), ModelError> {
        let bias_ok = self.b.as_ref().is_none_or(|b| b.len() == self.d_out);
        if self.w.len() != self.d_in * self.d_out || !bias_ok {
            return Err(ModelError::WeightMismatch(format!(
                "{what}: weight of {} values and bias of {:?} for shape {} -> {}",
                self.w.len(),
                self.b.as_ref().map(Vec::len),
                self.d_in,
                self.d_out
            )));
        }
        Ok(())
    }
}

impl Norm {
    /// The public shape.
    pub fn shape(&self) -> NormShape {
        NormShape {
            d: self.gamma.len(),
            eps: self.eps,
        }
    }
}

impl Embedding {
    /// The public shape.
    pub fn shape(&self) -> EmbeddingShape {
        EmbeddingShape {
            vocab: self.vocab,
            d: self.d,
            n_ctx: self.n_ctx,
        }
    }
}

/// The input tokens as one party knows them. `Debug` never prints the ids (they are the
/// client's secret).
#[derive(Clone, Copy)]
pub enum Tokens<'a> {
    /// The token ids: the client of a secure run, and the plaintext backends.
    Ids(&'a [u32]),
    /// Only the number of tokens: the server of a secure run.
    Hidden(usize),
}

impl Tokens<'_> {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            Tokens::Ids(t) => t.len(),
            Tokens::Hidden(n) => *n,
        }
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, if this party knows them.
    pub fn ids(&self) -> Option<&[u32]> {
        match self {
            Tokens::Ids(t) => Some(t),
            Tokens::Hidden(_) => None,
        }
    }
}

impl fmt::Debug for Tokens<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tokens::Ids(t) => write!(f, "Tokens::Ids({} ids, values hidden)", t.len()),
            Tokens::Hidden(n) => write!(f, "Tokens::Hidden({n})"),
        }
    }
}

impl<'a> From<&'a [u32]> for Tokens<'a> {
    fn from(t: &'a [u32]) -> Self {
        Tokens::Ids(t)
    }
}

/// Which part of the model the following ops belong to ([`TensorOps::stage`]): a secure
/// backend labels its channel traffic with it, a counting backend its counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Token and position embeddings.
    Embedding,
    /// Layer `l`'s attention sub-block (LayerNorm, QKV, scores, softmax, P·V, projection,
    /// residual).
    Attention(usize),
    /// Layer `l`'s FFN sub-block (LayerNorm, linears, activation, residual or β scaling).
    Ffn(usize),
    /// Final LayerNorm, LM head and argmax.
    Head,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Embedding => f.write_str("embedding"),
            Stage::Attention(l) => write!(f, "layer{l}.attention"),
            Stage::Ffn(l) => write!(f, "layer{l}.ffn"),
            Stage::Head => f.write_str("head"),
        }
    }
}

/// The operations the transformer needs, over one party's view of the values.
///
/// Shapes: a `Tensor` is `[rows, cols]` (row-major, one row per position); a `Heads` is
/// `[heads, rows, cols]` (head-major). Public constants (scales, positions, shapes) are plain
/// arguments; secret values are tensors or prepared weights. `&mut self` lets a secure backend
/// own its session (channel, correlations, counters).
///
/// Methods returning a future are those that communicate in two-party computation; the others
/// are local. A backend may refuse an op it cannot perform with an error (a secure backend
/// refuses [`reveal`](Self::reveal) of secret activations in production, for example).
pub trait TensorOps: Send {
    /// A 2-D activation tensor `[rows, cols]`.
    type Tensor: Clone + Send + Sync;
    /// A batch of per-head matrices `[heads, rows, cols]` (queries, keys, values, scores,
    /// probabilities).
    type Heads: Clone + Send + Sync;
    /// A prepared linear layer.
    type Linear: Send + Sync;
    /// Prepared LayerNorm parameters.
    type Norm: Send + Sync;
    /// Prepared embeddings (also the LM head when tied).
    type Embedding: Send + Sync;
    /// The backend's error; [`forward`]'s own checks (tokens, context length, weights) give
    /// [`ModelError`]s, converted with `From`.
    type Error: From<ModelError> + Send;

    /// Prepares a linear layer of public shape `shape`. `values` is `Some` on a party that holds
    /// the weights (the plaintext backends, the secure server) and `None` on one that holds
    /// none (the secure client, a counting backend), which builds its handle from the shape
    /// alone (for example by receiving the masked weight `W - B`). When given, the values have
    /// exactly this shape (checked by [`prepare_weights`]).
    fn prepare_linear(
        &mut self,
        shape: LinearShape,
        values: Option<&Linear>,
    ) -> impl Future<Output = Result<Self::Linear, Self::Error>> + Send;
    /// Prepares LayerNorm parameters (`values` as in [`prepare_linear`](Self::prepare_linear)).
    fn prepare_norm(
        &mut self,
        shape: NormShape,
        values: Option<&Norm>,
    ) -> impl Future<Output = Result<Self::Norm, Self::Error>> + Send;
    /// Prepares the embeddings and, for tied models, the LM head (`values` as in
    /// [`prepare_linear`](Self::prepare_linear)).
    fn prepare_embedding(
        &mut self,
        shape: EmbeddingShape,
        values: Option<&Embedding>,
    ) -> impl Future<Output = Result<Self::Embedding, Self::Error>> + Send;

    /// Marks the start of a part of the model; the following ops belong to it. The default
    /// does nothing.
    fn stage(&mut self, stage: Stage) {
        let _ = stage;
    }

    // ----- Local ops (no communication in 2PC). -----

    /// Number of rows of `x`.
    fn rows(&self, x: &Self::Tensor) -> usize;
    /// Rows `start .. start + len` of `x`.
    fn row_range(
        &self,
        x: &Self::Tensor,
        start: usize,
        len: usize,
    ) -> Result<Self::Tensor, Self::Error>;
    /// Splits columns `start .. start + heads * head_dim` of `x: [n, _]` into
    /// `[heads, n, head_dim]`: head `h` gets columns `start + h * head_dim ..`.
    fn split_heads(
        &self,
        x: &Self::Tensor,
        start: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Self::Heads, Self::Error>;
    /// The inverse relayout: `[heads, n, head_dim]` to `[n, heads * head_dim]`.
    fn merge_heads(&self, x: &Self::Heads) -> Result<Self::Tensor, Self::Error>;
    /// Per head, the rows of `a` followed by those of `b`: `[H, p, c] + [H, n, c] -> [H, p + n,
    /// c]` (the KV cache grows this way).
    fn concat_rows(&self, a: &Self::Heads, b: &Self::Heads) -> Result<Self::Heads, Self::Error>;
    /// Elementwise sum (local on additive shares).
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, Self::Error>;

    // ----- Ops that communicate in 2PC. -----

    /// `wte[tokens[i]] + wpe[pos0 + i]`, one row per token. The party that knows the tokens
    /// gets [`Tokens::Ids`]; the other [`Tokens::Hidden`].
    fn embed(
        &mut self,
        e: &Self::Embedding,
        tokens: Tokens<'_>,
        pos0: usize,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// `x W + b`.
    fn linear(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Linear,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// The tied LM head `x wteᵀ`.
    fn lm_head(
        &mut self,
        x: &Self::Tensor,
        e: &Self::Embedding,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// Multiplication by a public constant (β of the scaled FFNs).
    fn scale(
        &mut self,
        x: &Self::Tensor,
        c: f32,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// LayerNorm over each row.
    fn layer_norm(
        &mut self,
        x: &Self::Tensor,
        n: &Self::Norm,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// GELU (tanh form), elementwise.
    fn gelu(
        &mut self,
        x: &Self::Tensor,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// ReLU, elementwise.
    fn relu(
        &mut self,
        x: &Self::Tensor,
    ) -> impl Future<Output = Result<Self::Tensor, Self::Error>> + Send;
    /// Scaled attention scores of all heads under the causal mask:
    /// `s[h, i, j] = scales[h * n + i] · (q[h, i] · k[h, j])` for `j <= offset + i`, exactly 0
    /// for the masked `j > offset + i` (never needed). `q: [H, n, d_k]`, `k: [H, offset + n,
    /// d_k]`, `scales: [H, n]` row-major public constants (`score_scale / t[h, pos]`, see
    /// [`score_scales`]). The scale is an argument so that a secure backend can fold it into
    /// the truncation of the product.
    fn attn_scores(
        &mut self,
        q: &Self::Heads,
        k: &Self::Heads,
        scales: &[f32],
        offset: usize,
    ) -> impl Future<Output = Result<Self::Heads, Self::Error>> + Send;
    /// Row-wise softmax of all heads under the causal mask: row `i` of `s: [H, n, offset + n]`
    /// sees columns `0 ..= offset + i`; masked entries are exactly 0 and never computed.
    fn causal_softmax(
        &mut self,
        s: &Self::Heads,
        offset: usize,
    ) -> impl Future<Output = Result<Self::Heads, Self::Error>> + Send;
    /// `p[h] v[h]` for all heads: `[H, n, T] x [H, T, d_k] -> [H, n, d_k]`.
    fn attn_values(
        &mut self,
        p: &Self::Heads,
        v: &Self::Heads,
    ) -> impl Future<Output = Result<Self::Heads, Self::Error>> + Send;
    /// The index of each row's largest value (lowest index on ties), revealed to this party
    /// if it is the one that learns the output (`Some`: the client, the plaintext backends),
    /// `None` otherwise (the secure server).
    fn argmax(
        &mut self,
        x: &Self::Tensor,
    ) -> impl Future<Output = Result<Option<Vec<u32>>, Self::Error>> + Send;
    /// The values as f32, row-major (tests, analysis, top-k sampling). A secure backend opens
    /// them, or refuses.
    fn reveal(
        &mut self,
        x: &Self::Tensor,
    ) -> impl Future<Output = Result<Vec<f32>, Self::Error>> + Send;
    /// [`reveal`](Self::reveal) for a head batch, `[H, rows, cols]` row-major.
    fn reveal_heads(
        &mut self,
        x: &Self::Heads,
    ) -> impl Future<Output = Result<Vec<f32>, Self::Error>> + Send;
}

/// Drives a future of a backend that never waits (the plaintext backends [`super::F32Ops`] and
/// [`super::FixedOps`], a counting backend) to completion without an executor. A future that is
/// not ready at the first poll is an error (a backend that communicates needs an async runtime).
pub fn block_on_local<T, E: From<ModelError>>(
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(ModelError::Backend {
            op: "block_on_local",
            msg: "the backend's future is waiting: a communicating backend needs an async runtime"
                .into(),
        }
        .into()),
    }
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

/// One transformer block's weights in backend `O`'s form, with the block's public constants.
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
    /// Public multiplier of the attention scores `q·k` before the temperature: `1/√d_k`
    /// normally ([`default_score_scale`]); Hugging Face's `scale_attn_weights: false` makes it
    /// 1 and `scale_attn_by_inverse_layer_idx: true` divides it by `layer + 1`.
    pub score_scale: f32,
    /// Softmax temperatures: `[H, n_ctx]` (per head and query position) or `[H]` (per head).
    pub temperature: Option<Vec<f32>>,
}

/// A whole model's weights in backend `O`'s form.
pub struct ModelWeights<O: TensorOps> {
    /// Embeddings and, when tied, the LM head.
    pub embedding: O::Embedding,
    /// The blocks.
    pub blocks: Vec<Block<O>>,
    /// Final LayerNorm, if the config has one.
    pub ln_f: Option<O::Norm>,
    /// An untied LM head, d -> vocab (`lm_head.weight` transposed to `[d, vocab]`); `None` when
    /// the LM head is the token embedding (tied, the default).
    pub lm_head: Option<O::Linear>,
}

/// `1/√d_k` as f32, the usual attention score scale.
pub fn default_score_scale(cfg: &ModelConfig) -> f32 {
    1.0 / (cfg.head_dim() as f32).sqrt()
}

/// The public constants of one layer (part of the [`ModelManifest`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerConstants {
    /// Residual scale β ([`Block::beta`]).
    pub beta: f32,
    /// Attention score scale ([`Block::score_scale`]).
    pub score_scale: f32,
    /// Softmax temperatures ([`Block::temperature`]).
    pub temperature: Option<Vec<f32>>,
}

/// The public description of a model: its configuration and per-layer public constants. This
/// is what both parties of a secure run know (the model part of the handshake's manifest); a
/// party without the weights prepares its handles from it alone ([`prepare_weights`]). It
/// derives `Serialize`; a received manifest is checked with [`ModelManifest::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelManifest {
    /// The configuration.
    pub config: ModelConfig,
    /// Per layer, the public constants.
    pub layers: Vec<LayerConstants>,
    /// Whether the LM head is its own matrix (`lm_head.weight`) rather than the token
    /// embedding.
    pub untied_lm_head: bool,
}

impl ModelManifest {
    /// The manifest of `cfg` with weights `w` (any backend's form).
    pub fn of<O: TensorOps>(cfg: &ModelConfig, w: &ModelWeights<O>) -> Self {
        ModelManifest {
            config: cfg.clone(),
            layers: w
                .blocks
                .iter()
                .map(|b| LayerConstants {
                    beta: b.beta,
                    score_scale: b.score_scale,
                    temperature: b.temperature.clone(),
                })
                .collect(),
            untied_lm_head: w.lm_head.is_some(),
        }
    }

    /// Checks the manifest for consistency (it may come from the peer): the configuration, one
    /// entry per layer, finite constants, positive scales and temperatures of the configured
    /// form. Errors name what is wrong.
    pub fn validate(&self) -> Result<(), ModelError> {
        let cfg = &self.config;
        cfg.validate()?;
        let bad = |msg: String| Err(ModelError::WeightMismatch(msg));
        if self.layers.len() != cfg.n_layer {
            return bad(format!(
                "the manifest has constants for {} layers, the config {}",
                self.layers.len(),
                cfg.n_layer
            ));
        }
        for (l, c) in self.layers.iter().enumerate() {
            if !c.beta.is_finite() {
                return bad(format!("layer {l}: beta {} is not finite", c.beta));
            }
            if !(c.score_scale.is_finite() && c.score_scale > 0.0) {
                return bad(format!(
                    "layer {l}: score scale {} is not finite and positive",
                    c.score_scale
                ));
            }
            match (&c.temperature, cfg.architecture.temperature) {
                (None, false) => {}
                (Some(t), true) => {
                    let want = match cfg.temperature_form {
                        TemperatureForm::PerHeadQuery => cfg.n_head * cfg.n_ctx,
                        TemperatureForm::PerHead => cfg.n_head,
                    };
                    if t.len() != want {
                        return bad(format!(
                            "layer {l}: {} temperatures, expected {want}",
                            t.len()
                        ));
                    }
                    if let Some(x) = t.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
                        return bad(format!(
                            "layer {l}: temperature {x} is not finite and positive"
                        ));
                    }
                }
                (Some(_), false) => {
                    return bad(format!(
                        "layer {l} has temperatures but {} has none",
                        cfg.architecture
                    ));
                }
                (None, true) => {
                    return bad(format!(
                        "layer {l} has no temperatures but {} needs them",
                        cfg.architecture
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_linear(what: &str, shape: LinearShape, v: Option<&Linear>) -> Result<(), ModelError> {
    if let Some(v) = v {
        v.check(what)?;
        if v.shape() != shape {
            return Err(ModelError::WeightMismatch(format!(
                "{what} is {} -> {}, the manifest says {} -> {}",
                v.d_in, v.d_out, shape.d_in, shape.d_out
            )));
        }
    }
    Ok(())
}

fn check_norm(what: &str, shape: NormShape, v: Option<&Norm>) -> Result<(), ModelError> {
    if let Some(v) = v
        && (v.gamma.len() != shape.d || v.beta.len() != shape.d)
    {
        return Err(ModelError::WeightMismatch(format!(
            "{what} has widths {} and {}, the manifest says {}",
            v.gamma.len(),
            v.beta.len(),
            shape.d
        )));
    }
    Ok(())
}

fn presence<T>(what: &str, want: bool, v: Option<&Option<T>>) -> Result<(), ModelError> {
    match v {
        Some(x) if x.is_some() != want => Err(ModelError::WeightMismatch(format!(
            "{what} is {} in the weights but {} by the manifest",
            if x.is_some() { "present" } else { "absent" },
            if want { "required" } else { "excluded" }
        ))),
        _ => Ok(()),
    }
}

async fn prep_linear<O: TensorOps>(
    ops: &mut O,
    what: &str,
    shape: LinearShape,
    v: Option<&Linear>,
) -> Result<O::Linear, O::Error> {
    check_linear(what, shape, v)?;
    ops.prepare_linear(shape, v).await
}

async fn prep_norm<O: TensorOps>(
    ops: &mut O,
    what: &str,
    shape: NormShape,
    v: Option<&Norm>,
) -> Result<O::Norm, O::Error> {
    check_norm(what, shape, v)?;
    ops.prepare_norm(shape, v).await
}

/// Prepares a model's weights for backend `ops`: from the public `manifest` alone when
/// `values` is `None` (the secure client, a counting backend), or from the host weights
/// (the plaintext backends, the secure server), which must agree with the manifest (shapes,
/// structure and public constants; errors name the weight). The weights are prepared in
/// model order, each layer under its [`Stage`].
pub async fn prepare_weights<O: TensorOps>(
    ops: &mut O,
    manifest: &ModelManifest,
    values: Option<&ModelWeights<super::plain::F32Ops>>,
) -> Result<ModelWeights<O>, O::Error> {
    manifest.validate()?;
    let cfg = &manifest.config;
    let arch = cfg.architecture;
    let d = cfg.d_model;
    let norm_shape = NormShape {
        d,
        eps: cfg.layer_norm_eps,
    };
    if let Some(v) = values {
        let derived = ModelManifest::of(cfg, v);
        if derived != *manifest {
            let l = (0..cfg.n_layer.min(v.blocks.len()))
                .find(|&l| derived.layers.get(l) != manifest.layers.get(l));
            return Err(ModelError::WeightMismatch(match l {
                Some(l) => format!("layer {l}'s public constants differ from the manifest"),
                None if v.blocks.len() != cfg.n_layer => format!(
                    "the weights have {} blocks, the config {} layers",
                    v.blocks.len(),
                    cfg.n_layer
                ),
                None => "the LM head is tied in one and untied in the other".into(),
            })
            .into());
        }
    }
    ops.stage(Stage::Embedding);
    let e_shape = EmbeddingShape {
        vocab: cfg.vocab_size,
        d,
        n_ctx: cfg.n_ctx,
    };
    if let Some(e) = values.map(|v| &v.embedding) {
        let n_ok = e.wte.len() == e.vocab * e.d && e.wpe.len() == e.n_ctx * e.d;
        if e.shape() != e_shape || !n_ok {
            return Err(ModelError::WeightMismatch(format!(
                "embeddings {:?} with {} and {} values, the manifest says {e_shape:?}",
                e.shape(),
                e.wte.len(),
                e.wpe.len()
            ))
            .into());
        }
    }
    let embedding = ops
        .prepare_embedding(e_shape, values.map(|v| &v.embedding))
        .await?;
    let mut blocks = Vec::with_capacity(cfg.n_layer);
    for (l, c) in manifest.layers.iter().enumerate() {
        ops.stage(Stage::Attention(l));
        let vb = values.map(|v| &v.blocks[l]);
        let lin = |d_in, d_out| LinearShape { d_in, d_out };
        presence(
            &format!("h.{l}.ln_1"),
            arch.block_layer_norm,
            vb.map(|b| &b.ln_1),
        )?;
        let ln_1 = match vb.map(|b| b.ln_1.as_ref()) {
            _ if !arch.block_layer_norm => None,
            v => Some(prep_norm(ops, &format!("h.{l}.ln_1"), norm_shape, v.flatten()).await?),
        };
        let qkv = prep_linear(
            ops,
            &format!("h.{l}.attn.c_attn"),
            lin(d, 3 * d),
            vb.map(|b| &b.qkv),
        )
        .await?;
        let proj = prep_linear(
            ops,
            &format!("h.{l}.attn.c_proj"),
            lin(d, d),
            vb.map(|b| &b.proj),
        )
        .await?;
        ops.stage(Stage::Ffn(l));
        let has_ffn = arch.has_ffn(l);
        let want_ln_2 = arch.block_layer_norm && has_ffn;
        presence(&format!("h.{l}.ln_2"), want_ln_2, vb.map(|b| &b.ln_2))?;
        let ln_2 = match vb.map(|b| b.ln_2.as_ref()) {
            _ if !want_ln_2 => None,
            v => Some(prep_norm(ops, &format!("h.{l}.ln_2"), norm_shape, v.flatten()).await?),
        };
        let vffn = vb.map(|b| &b.ffn);
        let ffn = match (has_ffn, arch.ffn, vffn) {
            (false, _, None | Some(Ffn::None)) => Ffn::None,
            (true, FfnKind::ScaledFused, None | Some(Ffn::Fused { .. })) => {
                let v = match vffn {
                    Some(Ffn::Fused { w }) => Some(w),
                    _ => None,
                };
                Ffn::Fused {
                    w: prep_linear(ops, &format!("h.{l}.mlp.c_fused"), lin(d, d), v).await?,
                }
            }
            (true, FfnKind::Standard | FfnKind::Scaled, None | Some(Ffn::TwoLayer { .. })) => {
                let (fc, pr) = match vffn {
                    Some(Ffn::TwoLayer { fc, proj }) => (Some(fc), Some(proj)),
                    _ => (None, None),
                };
                Ffn::TwoLayer {
                    fc: prep_linear(ops, &format!("h.{l}.mlp.c_fc"), lin(d, cfg.d_ff), fc).await?,
                    proj: prep_linear(ops, &format!("h.{l}.mlp.c_proj"), lin(cfg.d_ff, d), pr)
                        .await?,
                }
            }
            _ => {
                return Err(ModelError::WeightMismatch(format!(
                    "layer {l}'s FFN weights do not have the form {arch} needs"
                ))
                .into());
            }
        };
        blocks.push(Block {
            ln_1,
            qkv,
            proj,
            ln_2,
            ffn,
            beta: c.beta,
            score_scale: c.score_scale,
            temperature: c.temperature.clone(),
        });
    }
    ops.stage(Stage::Head);
    presence("ln_f", cfg.final_layer_norm, values.map(|v| &v.ln_f))?;
    let ln_f = match values.map(|v| v.ln_f.as_ref()) {
        _ if !cfg.final_layer_norm => None,
        v => Some(prep_norm(ops, "ln_f", norm_shape, v.flatten()).await?),
    };
    let lm_head = if manifest.untied_lm_head {
        let shape = LinearShape {
            d_in: d,
            d_out: cfg.vocab_size,
        };
        let v = values.and_then(|v| v.lm_head.as_ref());
        Some(prep_linear(ops, "lm_head", shape, v).await?)
    } else {
        None
    };
    Ok(ModelWeights {
        embedding,
        blocks,
        ln_f,
        lm_head,
    })
}

/// Checks host weights against a manifest (structure, shapes, public constants) without
/// preparing anything; errors name the weight.
pub fn check_weights(
    manifest: &ModelManifest,
    w: &ModelWeights<super::plain::F32Ops>,
) -> Result<(), ModelError> {
    block_on_local(prepare_weights(&mut CheckOnly, manifest, Some(w))).map(|_| ())
}

/// A backend that computes nothing: [`prepare_weights`] over it only checks the weights.
struct CheckOnly;

impl TensorOps for CheckOnly {
    type Tensor = ();
    type Heads = ();
    type Linear = ();
    type Norm = ();
    type Embedding = ();
    type Error = ModelError;

    async fn prepare_linear(
        &mut self,
        _: LinearShape,
        _: Option<&Linear>,
    ) -> Result<(), ModelError> {
        Ok(())
    }
    async fn prepare_norm(&mut self, _: NormShape, _: Option<&Norm>) -> Result<(), ModelError> {
        Ok(())
    }
    async fn prepare_embedding(
        &mut self,
        _: EmbeddingShape,
        _: Option<&Embedding>,
    ) -> Result<(), ModelError> {
        Ok(())
    }
    fn rows(&self, _: &()) -> usize {
        0
    }
    fn row_range(&self, _: &(), _: usize, _: usize) -> Result<(), ModelError> {
        Err(unsupported())
    }
    fn split_heads(&self, _: &(), _: usize, _: usize, _: usize) -> Result<(), ModelError> {
        Err(unsupported())
    }
    fn merge_heads(&self, _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    fn concat_rows(&self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    fn add(&mut self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn embed(&mut self, _: &(), _: Tokens<'_>, _: usize) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn linear(&mut self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn lm_head(&mut self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn scale(&mut self, _: &(), _: f32) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn layer_norm(&mut self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn gelu(&mut self, _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn relu(&mut self, _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn attn_scores(&mut self, _: &(), _: &(), _: &[f32], _: usize) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn causal_softmax(&mut self, _: &(), _: usize) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn attn_values(&mut self, _: &(), _: &()) -> Result<(), ModelError> {
        Err(unsupported())
    }
    async fn argmax(&mut self, _: &()) -> Result<Option<Vec<u32>>, ModelError> {
        Err(unsupported())
    }
    async fn reveal(&mut self, _: &()) -> Result<Vec<f32>, ModelError> {
        Err(unsupported())
    }
    async fn reveal_heads(&mut self, _: &()) -> Result<Vec<f32>, ModelError> {
        Err(unsupported())
    }
}

fn unsupported() -> ModelError {
    ModelError::Backend {
        op: "check",
        msg: "the weight checker computes nothing".into(),
    }
}

/// A key/value cache: per layer, the keys and values `[H, positions, d_k]` of every position
/// processed so far.
pub struct KvCache<O: TensorOps> {
    layers: Vec<Option<(O::Heads, O::Heads)>>,
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
    /// If requested, per layer the attention probabilities `[H, n_new, past + n_new]` row-major
    /// (obtained with [`TensorOps::reveal_heads`]).
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

/// The public scales of the attention scores of one layer for query positions
/// `pos0 .. pos0 + n`, `[H, n]` row-major: `score_scale / t[h, pos]` (`t = 1` without
/// temperature; `t[h]` in the per-head form).
pub fn score_scales(
    cfg: &ModelConfig,
    score_scale: f32,
    temperature: Option<&[f32]>,
    pos0: usize,
    n: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(cfg.n_head * n);
    for h in 0..cfg.n_head {
        out.extend((pos0..pos0 + n).map(|p| match temperature {
            None => score_scale,
            Some(t) => {
                let ti = match cfg.temperature_form {
                    TemperatureForm::PerHeadQuery => t[h * cfg.n_ctx + p],
                    TemperatureForm::PerHead => t[h],
                };
                score_scale / ti
            }
        }));
    }
    out
}

/// Checks tokens against the vocabulary (where known) and the context limit.
pub fn check_tokens(cfg: &ModelConfig, tokens: Tokens<'_>, past: usize) -> Result<(), ModelError> {
    if tokens.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    if past + tokens.len() > cfg.n_ctx {
        return Err(ModelError::ContextTooLong {
            len: past + tokens.len(),
            limit: cfg.n_ctx,
        });
    }
    if let Some(&t) = tokens
        .ids()
        .and_then(|ids| ids.iter().find(|&&t| t as usize >= cfg.vocab_size))
    {
        return Err(ModelError::TokenOutOfRange {
            token: t,
            vocab: cfg.vocab_size,
        });
    }
    Ok(())
}

/// The transformer's forward pass over `tokens`, continuing from `cache` (which it extends on
/// success). Per layer it makes a fixed number of backend calls, whatever the number of heads
/// and rows: one `attn_scores`, one `causal_softmax` and one `attn_values` for all heads.
pub async fn forward<O: TensorOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    w: &ModelWeights<O>,
    tokens: Tokens<'_>,
    cache: &mut KvCache<O>,
    opts: ForwardOptions,
) -> Result<ForwardOutput<O>, O::Error> {
    let past = cache.len;
    check_tokens(cfg, tokens, past)?;
    if cache.layers.len() != cfg.n_layer || w.blocks.len() != cfg.n_layer {
        return Err(ModelError::BadConfig {
            field: "n_layer",
            msg: "cache or weights have a different number of layers".into(),
        }
        .into());
    }
    let n = tokens.len();
    let (d, heads, dk) = (cfg.d_model, cfg.n_head, cfg.head_dim());
    let arch = cfg.architecture;
    ops.stage(Stage::Embedding);
    let mut x = ops.embed(&w.embedding, tokens, past).await?;
    let mut attention = Vec::new();
    // The new keys and values are committed to the cache only once every layer succeeded.
    let mut new_kv = Vec::with_capacity(cfg.n_layer);
    for (l, blk) in w.blocks.iter().enumerate() {
        // Attention sub-block: x + MHA(LN1(x)).
        ops.stage(Stage::Attention(l));
        let a_in = match &blk.ln_1 {
            Some(ln) => ops.layer_norm(&x, ln).await?,
            None => x.clone(),
        };
        let qkv = ops.linear(&a_in, &blk.qkv).await?;
        let q = ops.split_heads(&qkv, 0, heads, dk)?;
        let k_new = ops.split_heads(&qkv, d, heads, dk)?;
        let v_new = ops.split_heads(&qkv, 2 * d, heads, dk)?;
        let (k, v) = match &cache.layers[l] {
            Some((pk, pv)) => (ops.concat_rows(pk, &k_new)?, ops.concat_rows(pv, &v_new)?),
            None => (k_new, v_new),
        };
        let scales = score_scales(cfg, blk.score_scale, blk.temperature.as_deref(), past, n);
        let s = ops.attn_scores(&q, &k, &scales, past).await?;
        let p = ops.causal_softmax(&s, past).await?;
        if opts.attention {
            attention.push(ops.reveal_heads(&p).await?);
        }
        let o = ops.attn_values(&p, &v).await?;
        new_kv.push((k, v));
        let att = ops.merge_heads(&o)?;
        let att = ops.linear(&att, &blk.proj).await?;
        x = ops.add(&x, &att)?;

        // FFN sub-block.
        if !arch.has_ffn(l) {
            continue;
        }
        ops.stage(Stage::Ffn(l));
        let f_in = match &blk.ln_2 {
            Some(ln) => ops.layer_norm(&x, ln).await?,
            None => x.clone(),
        };
        let f = match &blk.ffn {
            Ffn::None => continue,
            Ffn::TwoLayer { fc, proj } => {
                let hid = ops.linear(&f_in, fc).await?;
                let hid = match arch.activation {
                    Activation::Gelu => ops.gelu(&hid).await?,
                    Activation::Relu => ops.relu(&hid).await?,
                    Activation::Identity => hid,
                };
                ops.linear(&hid, proj).await?
            }
            Ffn::Fused { w } => ops.linear(&f_in, w).await?,
        };
        x = match arch.ffn {
            FfnKind::Standard => ops.add(&x, &f)?,
            FfnKind::Scaled | FfnKind::ScaledFused => {
                let skip = ops.scale(&x, blk.beta).await?;
                ops.add(&skip, &f)?
            }
        };
    }
    ops.stage(Stage::Head);
    if opts.last_only {
        let r = ops.rows(&x);
        x = ops.row_range(&x, r - 1, 1)?;
    }
    if let Some(ln) = &w.ln_f {
        x = ops.layer_norm(&x, ln).await?;
    }
    let logits = match &w.lm_head {
        Some(head) => ops.linear(&x, head).await?,
        None => ops.lm_head(&x, &w.embedding).await?,
    };
    for (slot, kv) in cache.layers.iter_mut().zip(new_kv) {
        *slot = Some(kv);
    }
    cache.len = past + n;
    Ok(ForwardOutput { logits, attention })
}

/// How to pick the next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (lowest index on ties), through [`TensorOps::argmax`].
    Greedy,
    /// Sample from the `k` most likely tokens after dividing the logits by `temperature`
    /// (needs [`TensorOps::reveal`]: plaintext backends only).
    TopK {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Number of candidates (>= 1).
        k: usize,
    },
}

/// Generation over any backend: one forward over the prompt, then one position at a time
/// through the KV cache, the LM head on the last position only. Returns per new token its id
/// where this party learns it (`Some`: the client, the plaintext backends) and `None` where it
/// does not (the secure server, which feeds [`Tokens::Hidden`] onwards). `seed` drives top-k
/// sampling. Refused if the prompt plus the new tokens exceed the context.
#[allow(clippy::too_many_arguments)]
pub async fn generate<O: TensorOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    weights: &ModelWeights<O>,
    prompt: Tokens<'_>,
    n_new: usize,
    sampling: Sampling,
    seed: u64,
) -> Result<Vec<Option<u32>>, O::Error> {
    check_tokens(cfg, prompt, 0)?;
    if prompt.len() + n_new > cfg.n_ctx {
        return Err(ModelError::ContextTooLong {
            len: prompt.len() + n_new,
            limit: cfg.n_ctx,
        }
        .into());
    }
    if let Sampling::TopK { temperature, k } = sampling
        && (!(temperature.is_finite() && temperature > 0.0) || k == 0)
    {
        return Err(ModelError::BadSampling(format!(
            "need temperature > 0 and k >= 1, got temperature {temperature}, k {k}"
        ))
        .into());
    }
    let mut rng = privlm_protocols::prg::Prg::from_u64(seed);
    let mut cache = KvCache::new(cfg.n_layer);
    let mut out = Vec::with_capacity(n_new);
    let mut last: Option<Option<u32>> = None;
    for _ in 0..n_new {
        let one;
        let input = match last {
            None => prompt,
            Some(Some(t)) => {
                one = [t];
                Tokens::Ids(&one)
            }
            Some(None) => Tokens::Hidden(1),
        };
        let o = forward(
            ops,
            cfg,
            weights,
            input,
            &mut cache,
            ForwardOptions {
                attention: false,
                last_only: true,
            },
        )
        .await?;
        let t = match sampling {
            Sampling::Greedy => ops.argmax(&o.logits).await?.and_then(|v| v.last().copied()),
            Sampling::TopK { .. } => {
                let logits = ops.reveal(&o.logits).await?;
                Some(super::sample(&logits, sampling, &mut rng)?)
            }
        };
        out.push(t);
        last = Some(t);
    }
    Ok(out)
}

/// Index of the largest value (lowest index on ties); 0 for an empty slice.
pub fn argmax_by<T: PartialOrd + Copy>(xs: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}
