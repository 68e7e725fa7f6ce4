//! The transformer written once over `TensorOps`: backends implemented outside the crate run the
//! same `forward`, a layer's number of backend calls does not depend on the number of heads or
//! rows, and a party holding neither weights nor tokens (the secure server's view of the
//! tokens, the secure client's view of the weights, a counting backend) runs it from the public
//! manifest alone.

use std::collections::BTreeMap;

use privlm::model::ops::{
    self, Embedding, EmbeddingShape, ForwardOptions, KvCache, Linear, LinearShape, ModelWeights,
    Norm, NormShape, Stage, TensorOps, Tokens,
};
use privlm::model::{
    F32Ops, Model, ModelConfig, ModelError, ModelManifest, Sampling, TemperatureForm,
    block_on_local,
};

/// Calls per (stage, op).
type Counts = BTreeMap<(Stage, &'static str), usize>;

/// Wraps a backend and counts its calls per stage.
struct Counting<O> {
    inner: O,
    stage: Stage,
    counts: Counts,
}

impl<O> Counting<O> {
    fn new(inner: O) -> Self {
        Counting {
            inner,
            stage: Stage::Embedding,
            counts: Counts::new(),
        }
    }

    fn hit(&mut self, op: &'static str) {
        *self.counts.entry((self.stage, op)).or_default() += 1;
    }
}

impl<O: TensorOps> TensorOps for Counting<O> {
    type Tensor = O::Tensor;
    type Heads = O::Heads;
    type Linear = O::Linear;
    type Norm = O::Norm;
    type Embedding = O::Embedding;
    type Error = O::Error;

    async fn prepare_linear(
        &mut self,
        s: LinearShape,
        v: Option<&Linear>,
    ) -> Result<O::Linear, O::Error> {
        self.hit("prepare_linear");
        self.inner.prepare_linear(s, v).await
    }
    async fn prepare_norm(&mut self, s: NormShape, v: Option<&Norm>) -> Result<O::Norm, O::Error> {
        self.hit("prepare_norm");
        self.inner.prepare_norm(s, v).await
    }
    async fn prepare_embedding(
        &mut self,
        s: EmbeddingShape,
        v: Option<&Embedding>,
    ) -> Result<O::Embedding, O::Error> {
        self.hit("prepare_embedding");
        self.inner.prepare_embedding(s, v).await
    }
    fn stage(&mut self, stage: Stage) {
        self.stage = stage;
        self.inner.stage(stage);
    }
    fn rows(&self, x: &O::Tensor) -> usize {
        self.inner.rows(x)
    }
    fn row_range(&self, x: &O::Tensor, s: usize, l: usize) -> Result<O::Tensor, O::Error> {
        self.inner.row_range(x, s, l)
    }
    fn split_heads(
        &self,
        x: &O::Tensor,
        s: usize,
        h: usize,
        dk: usize,
    ) -> Result<O::Heads, O::Error> {
        self.inner.split_heads(x, s, h, dk)
    }
    fn merge_heads(&self, x: &O::Heads) -> Result<O::Tensor, O::Error> {
        self.inner.merge_heads(x)
    }
    fn concat_rows(&self, a: &O::Heads, b: &O::Heads) -> Result<O::Heads, O::Error> {
        self.inner.concat_rows(a, b)
    }
    fn add(&mut self, a: &O::Tensor, b: &O::Tensor) -> Result<O::Tensor, O::Error> {
        self.hit("add");
        self.inner.add(a, b)
    }
    async fn embed(
        &mut self,
        e: &O::Embedding,
        t: Tokens<'_>,
        p: usize,
    ) -> Result<O::Tensor, O::Error> {
        self.hit("embed");
        self.inner.embed(e, t, p).await
    }
    async fn linear(&mut self, x: &O::Tensor, w: &O::Linear) -> Result<O::Tensor, O::Error> {
        self.hit("linear");
        self.inner.linear(x, w).await
    }
    async fn lm_head(&mut self, x: &O::Tensor, e: &O::Embedding) -> Result<O::Tensor, O::Error> {
        self.hit("lm_head");
        self.inner.lm_head(x, e).await
    }
    async fn scale(&mut self, x: &O::Tensor, c: f32) -> Result<O::Tensor, O::Error> {
        self.hit("scale");
        self.inner.scale(x, c).await
    }
    async fn layer_norm(&mut self, x: &O::Tensor, n: &O::Norm) -> Result<O::Tensor, O::Error> {
        self.hit("layer_norm");
        self.inner.layer_norm(x, n).await
    }
    async fn gelu(&mut self, x: &O::Tensor) -> Result<O::Tensor, O::Error> {
        self.hit("gelu");
        self.inner.gelu(x).await
    }
    async fn relu(&mut self, x: &O::Tensor) -> Result<O::Tensor, O::Error> {
        self.hit("relu");
        self.inner.relu(x).await
    }
    async fn attn_scores(
        &mut self,
        q: &O::Heads,
        k: &O::Heads,
        s: &[f32],
        off: usize,
    ) -> Result<O::Heads, O::Error> {
        self.hit("attn_scores");
        self.inner.attn_scores(q, k, s, off).await
    }
    async fn causal_softmax(&mut self, s: &O::Heads, off: usize) -> Result<O::Heads, O::Error> {
        self.hit("causal_softmax");
        self.inner.causal_softmax(s, off).await
    }
    async fn attn_values(&mut self, p: &O::Heads, v: &O::Heads) -> Result<O::Heads, O::Error> {
        self.hit("attn_values");
        self.inner.attn_values(p, v).await
    }
    async fn argmax(&mut self, x: &O::Tensor) -> Result<Option<Vec<u32>>, O::Error> {
        self.hit("argmax");
        self.inner.argmax(x).await
    }
    async fn reveal(&mut self, x: &O::Tensor) -> Result<Vec<f32>, O::Error> {
        self.hit("reveal");
        self.inner.reveal(x).await
    }
    async fn reveal_heads(&mut self, x: &O::Heads) -> Result<Vec<f32>, O::Error> {
        self.hit("reveal_heads");
        self.inner.reveal_heads(x).await
    }
}

/// A backend that holds only shapes: no weight values, no token ids. It stands for the secure
/// client's view of the weights, the secure server's view of the tokens, and the cost model.
struct Shapes;

fn bad(op: &'static str, msg: String) -> ModelError {
    ModelError::Backend { op, msg }
}

impl TensorOps for Shapes {
    /// `[rows, cols]`.
    type Tensor = (usize, usize);
    /// `[heads, rows, cols]`.
    type Heads = (usize, usize, usize);
    type Linear = LinearShape;
    type Norm = NormShape;
    type Embedding = EmbeddingShape;
    type Error = ModelError;

    async fn prepare_linear(
        &mut self,
        s: LinearShape,
        v: Option<&Linear>,
    ) -> Result<LinearShape, ModelError> {
        assert!(v.is_none(), "a party without weights was given weights");
        Ok(s)
    }
    async fn prepare_norm(
        &mut self,
        s: NormShape,
        v: Option<&Norm>,
    ) -> Result<NormShape, ModelError> {
        assert!(v.is_none());
        Ok(s)
    }
    async fn prepare_embedding(
        &mut self,
        s: EmbeddingShape,
        v: Option<&Embedding>,
    ) -> Result<EmbeddingShape, ModelError> {
        assert!(v.is_none());
        Ok(s)
    }
    fn rows(&self, x: &(usize, usize)) -> usize {
        x.0
    }
    fn row_range(
        &self,
        x: &(usize, usize),
        s: usize,
        l: usize,
    ) -> Result<(usize, usize), ModelError> {
        if s + l > x.0 {
            return Err(bad("row_range", format!("{s}+{l} > {}", x.0)));
        }
        Ok((l, x.1))
    }
    fn split_heads(
        &self,
        x: &(usize, usize),
        s: usize,
        h: usize,
        dk: usize,
    ) -> Result<(usize, usize, usize), ModelError> {
        if s + h * dk > x.1 {
            return Err(bad("split_heads", format!("{s}+{h}*{dk} > {}", x.1)));
        }
        Ok((h, x.0, dk))
    }
    fn merge_heads(&self, x: &(usize, usize, usize)) -> Result<(usize, usize), ModelError> {
        Ok((x.1, x.0 * x.2))
    }
    fn concat_rows(
        &self,
        a: &(usize, usize, usize),
        b: &(usize, usize, usize),
    ) -> Result<(usize, usize, usize), ModelError> {
        Ok((a.0, a.1 + b.1, a.2))
    }
    fn add(
        &mut self,
        a: &(usize, usize),
        b: &(usize, usize),
    ) -> Result<(usize, usize), ModelError> {
        if a != b {
            return Err(bad("add", format!("{a:?} + {b:?}")));
        }
        Ok(*a)
    }
    async fn embed(
        &mut self,
        e: &EmbeddingShape,
        t: Tokens<'_>,
        _: usize,
    ) -> Result<(usize, usize), ModelError> {
        assert!(
            t.ids().is_none(),
            "the party without tokens was given tokens"
        );
        Ok((t.len(), e.d))
    }
    async fn linear(
        &mut self,
        x: &(usize, usize),
        w: &LinearShape,
    ) -> Result<(usize, usize), ModelError> {
        if x.1 != w.d_in {
            return Err(bad("linear", format!("{x:?} x {w:?}")));
        }
        Ok((x.0, w.d_out))
    }
    async fn lm_head(
        &mut self,
        x: &(usize, usize),
        e: &EmbeddingShape,
    ) -> Result<(usize, usize), ModelError> {
        Ok((x.0, e.vocab))
    }
    async fn scale(&mut self, x: &(usize, usize), _: f32) -> Result<(usize, usize), ModelError> {
        Ok(*x)
    }
    async fn layer_norm(
        &mut self,
        x: &(usize, usize),
        _: &NormShape,
    ) -> Result<(usize, usize), ModelError> {
        Ok(*x)
    }
    async fn gelu(&mut self, x: &(usize, usize)) -> Result<(usize, usize), ModelError> {
        Ok(*x)
    }
    async fn relu(&mut self, x: &(usize, usize)) -> Result<(usize, usize), ModelError> {
        Ok(*x)
    }
    async fn attn_scores(
        &mut self,
        q: &(usize, usize, usize),
        k: &(usize, usize, usize),
        s: &[f32],
        off: usize,
    ) -> Result<(usize, usize, usize), ModelError> {
        if k.1 != off + q.1 || s.len() != q.0 * q.1 {
            return Err(bad("attn_scores", format!("{q:?} {k:?} {}", s.len())));
        }
        Ok((q.0, q.1, k.1))
    }
    async fn causal_softmax(
        &mut self,
        s: &(usize, usize, usize),
        _: usize,
    ) -> Result<(usize, usize, usize), ModelError> {
        Ok(*s)
    }
    async fn attn_values(
        &mut self,
        p: &(usize, usize, usize),
        v: &(usize, usize, usize),
    ) -> Result<(usize, usize, usize), ModelError> {
        Ok((p.0, p.1, v.2))
    }
    async fn argmax(&mut self, _: &(usize, usize)) -> Result<Option<Vec<u32>>, ModelError> {
        Ok(None)
    }
    async fn reveal(&mut self, _: &(usize, usize)) -> Result<Vec<f32>, ModelError> {
        Err(bad(
            "reveal",
            "a party without values reveals nothing".into(),
        ))
    }
    async fn reveal_heads(&mut self, _: &(usize, usize, usize)) -> Result<Vec<f32>, ModelError> {
        Err(bad(
            "reveal_heads",
            "a party without values reveals nothing".into(),
        ))
    }
}

/// Compile-time check: the forward pass is a `Send` future for every backend (a secure backend
/// spawns it on a multi-threaded runtime).
#[allow(dead_code)]
fn forward_future_is_send<O: TensorOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    w: &ModelWeights<O>,
    cache: &mut KvCache<O>,
) {
    fn is_send<T: Send>(_: T) {}
    is_send(ops::forward(
        ops,
        cfg,
        w,
        Tokens::Hidden(1),
        cache,
        ForwardOptions::default(),
    ));
    is_send(ops::prepare_weights(ops, &ModelManifest::of(cfg, w), None));
}

fn cfg(arch: &str, heads: usize) -> ModelConfig {
    ModelConfig {
        architecture: arch.parse().unwrap(),
        n_layer: 2,
        n_head: heads,
        d_model: 16,
        d_ff: 32,
        vocab_size: 40,
        n_ctx: 16,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: TemperatureForm::PerHeadQuery,
    }
}

/// Counts per (stage, op) of one forward of `n` tokens after `past` cached ones, over the f32
/// backend (through the wrapper), checking the wrapper changes nothing.
fn f32_counts(arch: &str, heads: usize, past: usize, n: usize) -> Counts {
    let cfg = cfg(arch, heads);
    let model = Model::random(cfg.clone(), 3).unwrap();
    let tokens: Vec<u32> = (0..(past + n) as u32).map(|i| (i * 7 + 1) % 40).collect();
    let mut ops = Counting::new(F32Ops);
    let w = block_on_local(ops::prepare_weights(
        &mut ops,
        &model.manifest(),
        Some(model.weights()),
    ))
    .unwrap();
    let mut cache = KvCache::new(cfg.n_layer);
    if past > 0 {
        block_on_local(ops::forward(
            &mut ops,
            &cfg,
            &w,
            Tokens::Ids(&tokens[..past]),
            &mut cache,
            ForwardOptions::default(),
        ))
        .unwrap();
    }
    ops.counts.clear();
    let out = block_on_local(ops::forward(
        &mut ops,
        &cfg,
        &w,
        Tokens::Ids(&tokens[past..]),
        &mut cache,
        ForwardOptions::default(),
    ))
    .unwrap();
    let full = model.forward(&tokens).unwrap();
    let err = out
        .logits
        .data
        .iter()
        .zip(&full.data[past * 40..])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert_eq!(out.logits.data.len(), n * 40);
    assert!(err < 1e-4, "{arch}: the wrapped forward differs by {err}");
    ops.counts
}

/// Counts of one forward over the shapes-only backend, prepared from the manifest alone.
fn shape_counts(arch: &str, heads: usize, past: usize, n: usize) -> Counts {
    let cfg = cfg(arch, heads);
    let manifest = Model::random(cfg.clone(), 3).unwrap().manifest();
    let mut ops = Counting::new(Shapes);
    let w = block_on_local(ops::prepare_weights(&mut ops, &manifest, None)).unwrap();
    let mut cache = KvCache::new(cfg.n_layer);
    if past > 0 {
        block_on_local(ops::forward(
            &mut ops,
            &cfg,
            &w,
            Tokens::Hidden(past),
            &mut cache,
            ForwardOptions::default(),
        ))
        .unwrap();
    }
    ops.counts.clear();
    let out = block_on_local(ops::forward(
        &mut ops,
        &cfg,
        &w,
        Tokens::Hidden(n),
        &mut cache,
        ForwardOptions::default(),
    ))
    .unwrap();
    assert_eq!(out.logits, (n, 40));
    assert_eq!(cache.len(), past + n);
    ops.counts
}

const ARCHS: [&str; 4] = ["SM+LN+G", "SM+LN+R", "SM+ScFuFFN", "SM(t)+ScFFN"];

#[test]
fn calls_per_layer_do_not_grow_with_heads_or_rows() {
    for arch in ARCHS {
        let base = f32_counts(arch, 1, 0, 3);
        // One call each for all heads' scores, softmax and P·V per layer.
        for l in 0..2 {
            for op in ["attn_scores", "causal_softmax", "attn_values"] {
                assert_eq!(base[&(Stage::Attention(l), op)], 1, "{arch} layer {l} {op}");
            }
        }
        for (heads, past, n) in [(4, 0, 3), (8, 0, 3), (1, 0, 9), (4, 5, 1), (2, 3, 4)] {
            assert_eq!(
                f32_counts(arch, heads, past, n),
                base,
                "{arch}: calls changed with {heads} heads, {past} cached, {n} new"
            );
            assert_eq!(
                shape_counts(arch, heads, past, n),
                base,
                "{arch}: the shapes-only backend made other calls ({heads} heads)"
            );
        }
    }
}

#[test]
fn a_party_without_weights_or_tokens_runs_the_same_forward() {
    // Prepared from the manifest alone (the shapes backend asserts it never sees values or
    // token ids); the manifest survives a JSON round trip (the handshake) and is validated.
    let cfg = cfg("SM(t)+ScFuFFN", 4);
    let manifest = Model::random(cfg.clone(), 9).unwrap().manifest();
    let json = serde_json::to_string(&manifest).unwrap();
    let back: ModelManifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, manifest);
    back.validate().unwrap();
    let mut ops = Shapes;
    let w = block_on_local(ops::prepare_weights(&mut ops, &back, None)).unwrap();
    // Greedy generation: the party that does not learn the tokens feeds hidden ones onwards.
    let got = block_on_local(ops::generate(
        &mut ops,
        &cfg,
        &w,
        Tokens::Hidden(5),
        4,
        Sampling::Greedy,
        0,
    ))
    .unwrap();
    assert_eq!(got, vec![None; 4]);

    // A manifest from the peer is untrusted: inconsistent ones are refused by name.
    let mut m = manifest.clone();
    m.layers.pop();
    assert!(m.validate().unwrap_err().to_string().contains("layers"));
    let mut m = manifest.clone();
    m.layers[1].temperature.as_mut().unwrap()[3] = -1.0;
    let e = m.validate().unwrap_err().to_string();
    assert!(e.contains("layer 1") && e.contains("temperature"), "{e}");
    let mut m = manifest.clone();
    m.layers[0].score_scale = f32::NAN;
    assert!(
        m.validate()
            .unwrap_err()
            .to_string()
            .contains("score scale")
    );
}

#[test]
fn weights_that_disagree_with_the_manifest_are_refused() {
    let cfg = cfg("SM+LN+G", 2);
    let model = Model::random(cfg.clone(), 4).unwrap();
    let mut manifest = model.manifest();
    manifest.layers[1].score_scale *= 2.0;
    let e = block_on_local(ops::prepare_weights(
        &mut F32Ops,
        &manifest,
        Some(model.weights()),
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("layer 1"), "{e}");
    // A host-side shape error names the weight.
    let mut weights = privlm::model::random_weights(&cfg, 4);
    weights.blocks[0].proj.w.pop();
    let e = Model::new(cfg.clone(), weights).err().unwrap().to_string();
    assert!(e.contains("h.0.attn.c_proj"), "{e}");
    let mut weights = privlm::model::random_weights(&cfg, 4);
    weights.blocks[1].ln_2 = None;
    let e = Model::new(cfg, weights).err().unwrap().to_string();
    assert!(e.contains("h.1.ln_2"), "{e}");
}

#[test]
fn the_f32_path_still_exposes_attention_per_head() {
    // [H, n, T] through the batched path equals the per-position cached computation.
    let cfg = cfg("SM+LN+G", 4);
    let model = Model::random(cfg, 5).unwrap();
    let tokens = [1u32, 5, 9, 2, 33, 7];
    let (_, att) = model.forward_with_attention(&tokens).unwrap();
    let t = tokens.len();
    let mut ops = F32Ops;
    let mut cache = model.new_cache();
    let w = model.weights();
    block_on_local(ops::forward(
        &mut ops,
        model.config(),
        w,
        Tokens::Ids(&tokens[..4]),
        &mut cache,
        ForwardOptions::default(),
    ))
    .unwrap();
    let tail = block_on_local(ops::forward(
        &mut ops,
        model.config(),
        w,
        Tokens::Ids(&tokens[4..]),
        &mut cache,
        ForwardOptions {
            attention: true,
            last_only: true,
        },
    ))
    .unwrap();
    for (l, layer) in tail.attention.iter().enumerate() {
        // [H, 2, 6] for the two new queries.
        assert_eq!(layer.len(), 4 * 2 * t);
        for h in 0..4 {
            for i in 0..2 {
                let got = &layer[(h * 2 + i) * t..(h * 2 + i + 1) * t];
                let want = &att[l][(h * t + 4 + i) * t..(h * t + 5 + i) * t];
                for (a, b) in got.iter().zip(want) {
                    assert!((a - b).abs() < 1e-5, "layer {l} head {h} row {i}");
                }
            }
        }
    }
    assert_eq!(tail.logits.rows, 1);
}
