//! [`SecureOps`]: the [`TensorOps`] backend of a secure run, written once over any [`Engine`].
//!
//! Both parties build a `SecureOps` over their engine and run the same
//! [`crate::model::ops::forward`]: the server prepares the weights from their values, the
//! client from the public [`ModelManifest`] alone; the client passes [`Tokens::Ids`], the
//! server [`Tokens::Hidden`]. Tensors are this party's additive shares ([`RingTensor`], fixed
//! point at [`FRAC_BITS`] fractional bits).
//!
//! The arithmetic of each op (the fixed-point mirror [`crate::model::fixed::FixedOps`] computes
//! the same, with floor truncations where these may add one unit):
//!
//! | op | secure computation | engine calls |
//! |---|---|---|
//! | `embed` | one-hot product with the token table (exact), P1 adds the position rows | `lookup` |
//! | `linear` | `trunc_f(X W)`, P1 adds the bias | `matmul_weight`, `trunc` |
//! | `lm_head` (tied) | `trunc_f(X wteᵀ)` with `wteᵀ` registered as its own weight | `matmul_weight`, `trunc` |
//! | `scale(c)` | `trunc_f(enc(c) · x)` (local product) | `trunc` |
//! | `attn_scores` | `trunc_2f((Q Kᵀ) ⊙ enc(s_row))`, unmasked entries only, masked ones 0 | `matmul_shares`, `trunc` |
//! | `causal_softmax` | the protocol softmax, causal mask | `softmax` |
//! | `attn_values` | `trunc_f(P V)` | `matmul_shares`, `trunc` |
//! | `layer_norm`, `gelu`, `relu` | the protocol ops | same |
//! | `argmax` | per row, revealed to the client only | `argmax` |
//! | `reveal` | opened to the client; refused unless [`SecureOps::allow_reveal`] | `reveal` |
//!
//! **Labels and phases.** Weight preparation is counted under `Phase::Setup`, the rest under
//! `Phase::Online`, with base labels `embedding`, `layer{l}/attn`, `layer{l}/ffn`, `head`
//! ([`stage_label`]). With a plan ([`SecureOps::set_plan`]), the first op of each stage first
//! fetches that stage's correlations (`Phase::Preprocessing`, same label), so the online ops
//! only consume prefetched material, and the time spent is accounted apart
//! ([`SecureOps::times`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use privlm_protocols::beaver::Request;
use privlm_protocols::channel::Phase;
use privlm_protocols::nonlinear::{Mask, softmax_entries};
use privlm_protocols::ring::RingTensor;
use privlm_protocols::share::Party;

use super::SecureError;
use super::engine::Engine;
use crate::model::ModelError;
use crate::model::approx::{FRAC_BITS, dec, enc};
use crate::model::fixed::FixedOps;
use crate::model::ops::{
    Embedding, EmbeddingShape, Linear, LinearShape, ModelManifest, Norm, NormShape, Stage,
    TensorOps, Tokens,
};

/// The base cost label of a stage: `embedding`, `layer{l}/attn`, `layer{l}/ffn`, `head`.
pub fn stage_label(stage: Stage) -> String {
    match stage {
        Stage::Embedding => "embedding".into(),
        Stage::Attention(l) => format!("layer{l}/attn"),
        Stage::Ffn(l) => format!("layer{l}/ffn"),
        Stage::Head => "head".into(),
    }
}

/// A prepared linear layer: the engine's weight handle and, on the server, the bias.
pub struct SecureLinear<W> {
    w: W,
    shape: LinearShape,
    bias: Option<Vec<u64>>,
}

/// Prepared LayerNorm parameters: the engine's gain handle, the server's bias, `eps`.
pub struct SecureNorm<V> {
    gain: V,
    bias: Option<Vec<u64>>,
    eps: f64,
}

/// Prepared embeddings: the token table (lookups), its transpose (the tied LM head, when
/// the model's head is tied) and, on the server, the position table.
pub struct SecureEmbedding<W> {
    table: W,
    head: Option<W>,
    wpe: Option<Vec<u64>>,
    shape: EmbeddingShape,
}

macro_rules! hidden_debug {
    ($t:ident, $g:ident) => {
        impl<$g> std::fmt::Debug for $t<$g> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($t), "(values hidden)"))
            }
        }
    };
}
hidden_debug!(SecureLinear, W);
hidden_debug!(SecureNorm, V);
hidden_debug!(SecureEmbedding, W);

/// The correlation requests of one forward pass, per stage label in order (made by
/// [`super::PlanEngine`]; consumed by [`SecureOps::set_plan`]).
pub type Plan = Vec<(String, Vec<Request>)>;

/// Wall time of a secure run by phase (see [`SecureOps::times`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    /// Weight preparation (the `W − B` messages and gain vectors).
    pub setup: Duration,
    /// Correlation prefetching ([`Engine::preprocess`]).
    pub preprocessing: Duration,
}

/// The secure [`TensorOps`] backend over engine `E` (see the module docs).
pub struct SecureOps<E: Engine> {
    e: E,
    next_id: u32,
    tied_head: bool,
    label: String,
    pending: Option<String>,
    plan: VecDeque<(String, Vec<Request>)>,
    allow_reveal: bool,
    times: PhaseTimes,
    /// The stage running now: its label, start, and the prefetching time at its start.
    current: Option<(String, Instant, Duration)>,
    stage_times: Vec<(String, Duration)>,
}

impl<E: Engine> std::fmt::Debug for SecureOps<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecureOps(party={:?}, label={:?})",
            self.e.party(),
            self.label
        )
    }
}

fn bad(op: &'static str, msg: impl Into<String>) -> SecureError {
    SecureError::Model(ModelError::Backend {
        op,
        msg: msg.into(),
    })
}

fn enc_all(xs: &[f32]) -> Vec<u64> {
    xs.iter().map(|&x| enc(x as f64) as u64).collect()
}

fn ring(op: &'static str, shape: &[usize], data: Vec<u64>) -> Result<RingTensor, SecureError> {
    RingTensor::from_vec(shape, data).map_err(|e| bad(op, e.to_string()))
}

fn dims3(op: &'static str, x: &RingTensor) -> Result<(usize, usize, usize), SecureError> {
    match *x.shape() {
        [h, r, c] => Ok((h, r, c)),
        ref s => Err(bad(op, format!("expected [heads, rows, cols], got {s:?}"))),
    }
}

fn dims2(op: &'static str, x: &RingTensor) -> Result<(usize, usize), SecureError> {
    match *x.shape() {
        [r, c] => Ok((r, c)),
        ref s => Err(bad(op, format!("expected [rows, cols], got {s:?}"))),
    }
}

/// Per head, `[h, t, d]` to `[h, d, t]`.
fn transpose_heads(x: &RingTensor) -> Result<RingTensor, SecureError> {
    let (h, t, d) = dims3("attn_scores", x)?;
    let src = x.data();
    let mut out = vec![0u64; h * t * d];
    for hh in 0..h {
        let (s, o) = (&src[hh * t * d..], &mut out[hh * t * d..(hh + 1) * t * d]);
        for i in 0..t {
            for j in 0..d {
                o[j * t + i] = s[i * d + j];
            }
        }
    }
    ring("attn_scores", &[h, d, t], out)
}

impl<E: Engine> SecureOps<E> {
    /// A backend over `engine` for the model described by `manifest` (both parties pass the
    /// same manifest). Refuses engines whose fixed point is not the model's ([`FRAC_BITS`]).
    pub fn new(engine: E, manifest: &ModelManifest) -> Result<Self, SecureError> {
        let f = engine.params().frac_bits;
        if f != FRAC_BITS {
            return Err(bad(
                "secure ops",
                format!(
                    "the session's fixed point has {f} fractional bits, the model's {FRAC_BITS}"
                ),
            ));
        }
        Ok(SecureOps {
            e: engine,
            next_id: 0,
            tied_head: !manifest.untied_lm_head,
            label: String::new(),
            pending: None,
            plan: VecDeque::new(),
            allow_reveal: false,
            times: PhaseTimes::default(),
            current: None,
            stage_times: Vec::new(),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &E {
        &self.e
    }

    /// The engine, mutable.
    pub fn engine_mut(&mut self) -> &mut E {
        &mut self.e
    }

    /// Gives the engine back.
    pub fn into_engine(self) -> E {
        self.e
    }

    /// Lets [`TensorOps::reveal`] and [`TensorOps::reveal_heads`] open secret activations to
    /// the client (tests and debugging only: a deployment reveals nothing but the tokens).
    /// Both parties must set it alike.
    pub fn allow_reveal(&mut self, yes: bool) {
        self.allow_reveal = yes;
    }

    /// Sets the correlations to prefetch for the next forward pass, per stage (replacing any
    /// left over): the first op of each listed stage first calls [`Engine::preprocess`] with
    /// its requests. Both parties set the same plan.
    pub fn set_plan(&mut self, plan: Plan) {
        self.plan = plan.into();
    }

    /// Fetches the whole plan now (every stage's requests, under its label and
    /// `Phase::Preprocessing`), before the forward pass runs: the online phase then only
    /// consumes. Needs the memory of a whole pass's correlations; without this call the plan is
    /// fetched stage by stage.
    pub async fn prefetch_plan(&mut self) -> Result<(), SecureError> {
        let t = Instant::now();
        while let Some((label, reqs)) = self.plan.pop_front() {
            self.e.set_cost_label(Phase::Online, &label);
            self.e.preprocess(&reqs).await?;
        }
        self.online_phase();
        self.times.preprocessing += t.elapsed();
        Ok(())
    }

    /// Time spent so far in weight preparation and in prefetching.
    pub fn times(&self) -> PhaseTimes {
        self.times
    }

    /// Ends the timing of the current stage (the next [`TensorOps::stage`] does it too).
    pub fn end_stage(&mut self) {
        if let Some((label, start, pre0)) = self.current.take() {
            let t = start
                .elapsed()
                .saturating_sub(self.times.preprocessing.saturating_sub(pre0));
            match self.stage_times.iter_mut().find(|(l, _)| *l == label) {
                Some((_, d)) => *d += t,
                None => self.stage_times.push((label, t)),
            }
        }
    }

    /// Forgets the stage timings (for example those of the weight preparation).
    pub fn reset_stage_times(&mut self) {
        self.current = None;
        self.stage_times.clear();
    }

    /// Online wall time per stage label (prefetching excluded), summed over the passes so far,
    /// in first-seen order.
    pub fn stage_times(&self) -> &[(String, Duration)] {
        &self.stage_times
    }

    /// Number of weight ids registered so far.
    pub fn weights_registered(&self) -> u32 {
        self.next_id
    }

    fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Runs the plan's requests for the stage just entered, if any.
    async fn enter(&mut self) -> Result<(), SecureError> {
        let Some(label) = self.pending.take() else {
            return Ok(());
        };
        if self.plan.front().is_some_and(|(l, _)| *l == label) {
            let (_, reqs) = self.plan.pop_front().expect("checked");
            let t = Instant::now();
            self.e.preprocess(&reqs).await?;
            self.e.set_cost_label(Phase::Online, &label);
            self.times.preprocessing += t.elapsed();
        }
        Ok(())
    }

    fn setup_phase(&mut self) {
        let label = self.label.clone();
        self.e.set_cost_label(Phase::Setup, &label);
    }

    fn online_phase(&mut self) {
        let label = self.label.clone();
        self.e.set_cost_label(Phase::Online, &label);
    }

    fn need_values<'a, T>(
        &self,
        op: &'static str,
        v: Option<&'a T>,
    ) -> Result<Option<&'a T>, SecureError> {
        match (self.e.party(), v) {
            (Party::P1, None) => Err(bad(op, "the server must pass the weight values")),
            (Party::P0, Some(_)) => Err(bad(op, "the client must not hold weight values")),
            (_, v) => Ok(v),
        }
    }

    async fn linear_trunc(
        &mut self,
        x: &RingTensor,
        w: &E::Weight,
    ) -> Result<RingTensor, SecureError> {
        self.enter().await?;
        let y = self.e.matmul_weight(x, w).await?;
        self.e.trunc(&y, FRAC_BITS).await
    }
}

impl<E: Engine> TensorOps for SecureOps<E> {
    type Tensor = RingTensor;
    type Heads = RingTensor;
    type Linear = SecureLinear<E::Weight>;
    type Norm = SecureNorm<E::Vector>;
    type Embedding = SecureEmbedding<E::Weight>;
    type Error = SecureError;

    async fn prepare_linear(
        &mut self,
        shape: LinearShape,
        values: Option<&Linear>,
    ) -> Result<Self::Linear, SecureError> {
        let values = self.need_values("prepare_linear", values)?;
        let t = Instant::now();
        self.setup_phase();
        let id = self.fresh_id();
        let w = values
            .map(|v| ring("prepare_linear", &[shape.d_in, shape.d_out], enc_all(&v.w)))
            .transpose()?;
        let bias = values.and_then(|v| v.b.as_deref().map(enc_all));
        let w = self.e.setup_weight(id, shape.d_in, shape.d_out, w).await?;
        self.online_phase();
        self.times.setup += t.elapsed();
        Ok(SecureLinear { w, shape, bias })
    }

    async fn prepare_norm(
        &mut self,
        shape: NormShape,
        values: Option<&Norm>,
    ) -> Result<Self::Norm, SecureError> {
        let values = self.need_values("prepare_norm", values)?;
        let t = Instant::now();
        self.setup_phase();
        let id = self.fresh_id();
        let gamma = values.map(|n| enc_all(&n.gamma));
        let gain = self.e.setup_vector(id, shape.d, gamma.as_deref()).await?;
        self.online_phase();
        self.times.setup += t.elapsed();
        Ok(SecureNorm {
            gain,
            bias: values.map(|n| enc_all(&n.beta)),
            eps: shape.eps as f64,
        })
    }

    async fn prepare_embedding(
        &mut self,
        shape: EmbeddingShape,
        values: Option<&Embedding>,
    ) -> Result<Self::Embedding, SecureError> {
        let values = self.need_values("prepare_embedding", values)?;
        let t = Instant::now();
        self.setup_phase();
        let (v, d) = (shape.vocab, shape.d);
        let id = self.fresh_id();
        let w = values
            .map(|e| ring("prepare_embedding", &[v, d], enc_all(&e.wte)))
            .transpose()?;
        let wt = match (&w, self.tied_head) {
            (Some(w), true) => Some(
                w.transpose()
                    .map_err(|e| bad("prepare_embedding", e.to_string()))?,
            ),
            _ => None,
        };
        let table = self.e.setup_weight(id, v, d, w).await?;
        let head = if self.tied_head {
            let id = self.fresh_id();
            Some(self.e.setup_weight(id, d, v, wt).await?)
        } else {
            None
        };
        self.online_phase();
        self.times.setup += t.elapsed();
        Ok(SecureEmbedding {
            table,
            head,
            wpe: values.map(|e| enc_all(&e.wpe)),
            shape,
        })
    }

    fn stage(&mut self, stage: Stage) {
        self.end_stage();
        self.label = stage_label(stage);
        self.current = Some((self.label.clone(), Instant::now(), self.times.preprocessing));
        self.pending = Some(self.label.clone());
        self.online_phase();
    }

    fn rows(&self, x: &RingTensor) -> usize {
        FixedOps.rows(x)
    }

    fn row_range(
        &self,
        x: &RingTensor,
        start: usize,
        len: usize,
    ) -> Result<RingTensor, SecureError> {
        Ok(FixedOps.row_range(x, start, len)?)
    }

    fn split_heads(
        &self,
        x: &RingTensor,
        start: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<RingTensor, SecureError> {
        Ok(FixedOps.split_heads(x, start, heads, head_dim)?)
    }

    fn merge_heads(&self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        Ok(FixedOps.merge_heads(x)?)
    }

    fn concat_rows(&self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor, SecureError> {
        Ok(FixedOps.concat_rows(a, b)?)
    }

    fn add(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor, SecureError> {
        a.add(b).map_err(|e| bad("add", e.to_string()))
    }

    async fn embed(
        &mut self,
        e: &Self::Embedding,
        tokens: Tokens<'_>,
        pos0: usize,
    ) -> Result<RingTensor, SecureError> {
        let n = tokens.len();
        if pos0 + n > e.shape.n_ctx {
            return Err(ModelError::ContextTooLong {
                len: pos0 + n,
                limit: e.shape.n_ctx,
            }
            .into());
        }
        let ids = match (self.e.party(), tokens) {
            (Party::P0, Tokens::Ids(ids)) => Some(ids),
            (Party::P1, Tokens::Hidden(_)) => None,
            (p, _) => {
                return Err(bad(
                    "embed",
                    format!(
                        "{p:?} got the wrong kind of tokens (the client passes the ids, the server their number)"
                    ),
                ));
            }
        };
        self.enter().await?;
        let mut x = self.e.lookup(&e.table, ids, n).await?;
        if let Some(wpe) = &e.wpe {
            let d = e.shape.d;
            let rows = &wpe[pos0 * d..(pos0 + n) * d];
            x.data_mut()
                .iter_mut()
                .zip(rows)
                .for_each(|(a, b)| *a = a.wrapping_add(*b));
        }
        Ok(x)
    }

    async fn linear(
        &mut self,
        x: &RingTensor,
        w: &Self::Linear,
    ) -> Result<RingTensor, SecureError> {
        let (_, k) = dims2("linear", x)?;
        if k != w.shape.d_in {
            return Err(bad(
                "linear",
                format!(
                    "input width {k} for a {} -> {} layer",
                    w.shape.d_in, w.shape.d_out
                ),
            ));
        }
        let mut y = self.linear_trunc(x, &w.w).await?;
        if let Some(b) = &w.bias {
            for row in y.data_mut().chunks_mut(w.shape.d_out.max(1)) {
                row.iter_mut()
                    .zip(b)
                    .for_each(|(o, bb)| *o = o.wrapping_add(*bb));
            }
        }
        Ok(y)
    }

    async fn lm_head(
        &mut self,
        x: &RingTensor,
        e: &Self::Embedding,
    ) -> Result<RingTensor, SecureError> {
        let (_, k) = dims2("lm_head", x)?;
        if k != e.shape.d {
            return Err(bad(
                "lm_head",
                format!("input width {k} for width {}", e.shape.d),
            ));
        }
        let head = e.head.as_ref().ok_or_else(|| {
            bad(
                "lm_head",
                "the model's LM head is untied: use its own linear",
            )
        })?;
        self.linear_trunc(x, head).await
    }

    async fn scale(&mut self, x: &RingTensor, c: f32) -> Result<RingTensor, SecureError> {
        self.enter().await?;
        let y = x.scale(privlm_protocols::ring::R64(enc(c as f64) as u64));
        self.e.trunc(&y, FRAC_BITS).await
    }

    async fn layer_norm(
        &mut self,
        x: &RingTensor,
        n: &Self::Norm,
    ) -> Result<RingTensor, SecureError> {
        self.enter().await?;
        self.e
            .layer_norm(x, &n.gain, n.bias.as_deref(), n.eps)
            .await
    }

    async fn gelu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        self.enter().await?;
        self.e.gelu(x).await
    }

    async fn relu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        self.enter().await?;
        self.e.relu(x).await
    }

    async fn attn_scores(
        &mut self,
        q: &RingTensor,
        k: &RingTensor,
        scales: &[f32],
        offset: usize,
    ) -> Result<RingTensor, SecureError> {
        let (h, n, dk) = dims3("attn_scores", q)?;
        let (hk, t, dk2) = dims3("attn_scores", k)?;
        if hk != h || dk2 != dk || t != offset + n || scales.len() != h * n {
            return Err(bad(
                "attn_scores",
                format!(
                    "q [{h}, {n}, {dk}], k [{hk}, {t}, {dk2}], {} scales, offset {offset}",
                    scales.len()
                ),
            ));
        }
        self.enter().await?;
        let s = self.e.matmul_shares(q, &transpose_heads(k)?).await?;
        // (Q Kᵀ) ⊙ enc(scale) at 3f bits, the unmasked entries only, one truncation by 2f.
        let shape = [h, n, t];
        let idx = softmax_entries(&shape, Mask::Causal);
        let row_len = t.max(1);
        let scaled: Vec<u64> = idx
            .iter()
            .map(|&i| {
                let c = enc(scales[i / row_len] as f64) as u64;
                s.data()[i].wrapping_mul(c)
            })
            .collect();
        let scaled = ring("attn_scores", &[scaled.len()], scaled)?;
        let tr = self.e.trunc(&scaled, 2 * FRAC_BITS).await?;
        let mut out = vec![0u64; h * n * t];
        for (&i, &v) in idx.iter().zip(tr.data()) {
            out[i] = v;
        }
        ring("attn_scores", &shape, out)
    }

    async fn causal_softmax(
        &mut self,
        s: &RingTensor,
        offset: usize,
    ) -> Result<RingTensor, SecureError> {
        let (_, r, c) = dims3("causal_softmax", s)?;
        if c != offset + r {
            return Err(bad(
                "causal_softmax",
                format!("{c} key columns for {r} queries after {offset} cached positions"),
            ));
        }
        self.enter().await?;
        self.e.softmax(s, Mask::Causal, None).await
    }

    async fn attn_values(
        &mut self,
        p: &RingTensor,
        v: &RingTensor,
    ) -> Result<RingTensor, SecureError> {
        let (h, _, t) = dims3("attn_values", p)?;
        let (hv, t2, _) = dims3("attn_values", v)?;
        if hv != h || t2 != t {
            return Err(bad(
                "attn_values",
                format!("p {:?}, v {:?}", p.shape(), v.shape()),
            ));
        }
        self.enter().await?;
        let o = self.e.matmul_shares(p, v).await?;
        self.e.trunc(&o, FRAC_BITS).await
    }

    async fn argmax(&mut self, x: &RingTensor) -> Result<Option<Vec<u32>>, SecureError> {
        let (r, c) = dims2("argmax", x)?;
        self.enter().await?;
        let mut out = Vec::with_capacity(r);
        for i in 0..r {
            let row = FixedOps.row_range(x, i, 1)?;
            let row = ring("argmax", &[c], row.into_data())?;
            if let Some(t) = self.e.argmax(&row, Party::P0).await? {
                out.push(t as u32);
            }
        }
        Ok(match self.e.party() {
            Party::P0 => Some(out),
            Party::P1 => None,
        })
    }

    async fn reveal(&mut self, x: &RingTensor) -> Result<Vec<f32>, SecureError> {
        if !self.allow_reveal {
            return Err(bad(
                "reveal",
                "the secure backend reveals only the generated tokens (reveal not allowed)",
            ));
        }
        self.enter().await?;
        Ok(match self.e.reveal(x, Party::P0).await? {
            Some(v) => v.data().iter().map(|&u| dec(u as i64) as f32).collect(),
            None => Vec::new(),
        })
    }

    async fn reveal_heads(&mut self, x: &RingTensor) -> Result<Vec<f32>, SecureError> {
        self.reveal(x).await
    }
}
