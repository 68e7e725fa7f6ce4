//! The fixed-point backend of [`TensorOps`]: the plaintext mirror of the secure forward pass.
//!
//! Values are [`RingTensor`]s over Z_2^64 holding fixed-point numbers with 16 fractional bits
//! (DESIGN.md section 5). Every operation is the exact arithmetic the secure backend
//! ([`crate::secure::SecureOps`]) performs on shares, with floor truncations where the secure
//! truncation gives floor or floor + 1 (`docs/numeric.md`): products of two fixed-point values
//! are followed by a truncation (arithmetic shift by 16 bits), public constants are encoded and
//! multiplied then truncated, and the nonlinearities are the protocol's own approximations run
//! on the plain backend ([`privlm_protocols::nonlinear::plain_ops`]). Summary:
//!
//! - linear: `y = ((x W) >> f) + b` (one matrix product, one truncation per output);
//! - LayerNorm, GELU, ReLU, causal softmax, argmax: `plain_ops` (the protocol's text on
//!   plaintext values, `docs/protocols/nonlinear.md`);
//! - attention scores: `((q kᵀ) · enc(s/t)) >> 2f` per head and query row (one truncation of
//!   the product at `3f` bits), with `s` the layer's public score scale (`1/√d_k` normally) and
//!   `t` the temperature (1 without); masked entries are 0;
//! - β scaling: `(x · enc(β)) >> f`;
//! - embeddings: a row lookup (the secure engine's one-hot product is exact).

use privlm_protocols::nonlinear::{Mask, NlParams, NormParams, ServerVector, plain_ops};
use privlm_protocols::ring::{RingTensor, matmul_into};

use super::ModelError;
use super::approx::{self, FRAC_BITS, enc};
use super::ops::{
    Embedding, EmbeddingShape, Linear, LinearShape, Norm, NormShape, TensorOps, Tokens,
};

/// A linear layer in fixed point.
#[derive(Clone)]
pub struct FixedLinear {
    d_in: usize,
    d_out: usize,
    w: Vec<u64>,
    b: Option<Vec<u64>>,
}

/// LayerNorm parameters in fixed point.
#[derive(Clone)]
pub struct FixedNorm {
    gamma: Vec<i64>,
    beta: Vec<i64>,
    eps: f64,
}

/// Embeddings in fixed point.
#[derive(Clone)]
pub struct FixedEmbedding {
    vocab: usize,
    d: usize,
    n_ctx: usize,
    wte: Vec<u64>,
    wpe: Vec<u64>,
}

impl std::fmt::Debug for FixedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FixedLinear({} -> {}, values hidden)",
            self.d_in, self.d_out
        )
    }
}

impl std::fmt::Debug for FixedNorm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FixedNorm(d = {}, values hidden)", self.gamma.len())
    }
}

impl std::fmt::Debug for FixedEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FixedEmbedding(vocab = {}, d = {}, values hidden)",
            self.vocab, self.d
        )
    }
}

/// The fixed-point backend (stateless).
#[derive(Clone, Copy, Debug, Default)]
pub struct FixedOps;

fn enc_all(xs: &[f32]) -> Vec<u64> {
    xs.iter().map(|&x| enc(x as f64) as u64).collect()
}

fn shape_err(op: &'static str, msg: String) -> ModelError {
    ModelError::Backend { op, msg }
}

fn shape2(op: &'static str, x: &RingTensor) -> Result<(usize, usize), ModelError> {
    match x.shape() {
        [r, c] => Ok((*r, *c)),
        s => Err(shape_err(
            op,
            format!("expected a 2-D tensor, got shape {s:?}"),
        )),
    }
}

fn shape3(op: &'static str, x: &RingTensor) -> Result<(usize, usize, usize), ModelError> {
    match x.shape() {
        [h, r, c] => Ok((*h, *r, *c)),
        s => Err(shape_err(
            op,
            format!("expected a [heads, rows, cols] tensor, got shape {s:?}"),
        )),
    }
}

fn tensor(shape: &[usize], data: Vec<u64>) -> RingTensor {
    RingTensor::from_vec(shape, data).expect("shape matches data")
}

fn map(x: &RingTensor, f: impl Fn(i64) -> i64) -> RingTensor {
    tensor(
        x.shape(),
        x.data().iter().map(|&v| f(v as i64) as u64).collect(),
    )
}

fn need<'a, T>(op: &'static str, v: Option<&'a T>) -> Result<&'a T, ModelError> {
    v.ok_or_else(|| shape_err(op, "the fixed-point mirror needs the weight values".into()))
}

fn head(x: &RingTensor, h: usize, rows: usize, cols: usize) -> &[u64] {
    &x.data()[h * rows * cols..(h + 1) * rows * cols]
}

/// `a (n x k) · b (k x m)` over Z_2^64, rows split across the available cores.
fn par_matmul(a: &[u64], b: &[u64], n: usize, k: usize, m: usize) -> Vec<u64> {
    let mut out = vec![0u64; n * m];
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n.max(1));
    if threads <= 1 || n * k * m < (1 << 18) || m == 0 {
        matmul_into(a, b, &mut out, n, k, m);
        return out;
    }
    let rows_per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(rows_per * m).enumerate() {
            let r0 = ci * rows_per;
            let rows = chunk.len() / m;
            let a_part = &a[r0 * k..(r0 + rows) * k];
            s.spawn(move || matmul_into(a_part, b, chunk, rows, k, m));
        }
    });
    out
}

/// `a (n x k) · bᵀ` for `b` stored `[m, k]`: dot products of rows, rows split across cores.
fn par_matmul_nt(a: &[u64], b: &[u64], n: usize, k: usize, m: usize) -> Vec<u64> {
    let rows_into = |a_part: &[u64], out: &mut [u64]| {
        for (arow, orow) in a_part.chunks(k).zip(out.chunks_mut(m)) {
            for (o, brow) in orow.iter_mut().zip(b.chunks(k)) {
                *o = arow
                    .iter()
                    .zip(brow)
                    .fold(0u64, |s, (&x, &y)| s.wrapping_add(x.wrapping_mul(y)));
            }
        }
    };
    let mut out = vec![0u64; n * m];
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n.max(1));
    if threads <= 1 || n * k * m < (1 << 18) || m == 0 || k == 0 {
        rows_into(a, &mut out);
        return out;
    }
    let rows_per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(rows_per * m).enumerate() {
            let r0 = ci * rows_per;
            let rows = chunk.len() / m;
            let a_part = &a[r0 * k..(r0 + rows) * k];
            s.spawn(move || rows_into(a_part, chunk));
        }
    });
    out
}

fn truncate_all(v: &mut [u64]) {
    v.iter_mut()
        .for_each(|x| *x = ((*x as i64) >> FRAC_BITS) as u64);
}

impl TensorOps for FixedOps {
    type Tensor = RingTensor;
    type Heads = RingTensor;
    type Linear = FixedLinear;
    type Norm = FixedNorm;
    type Embedding = FixedEmbedding;
    type Error = ModelError;

    async fn prepare_linear(
        &mut self,
        _shape: LinearShape,
        w: Option<&Linear>,
    ) -> Result<FixedLinear, ModelError> {
        let w = need("prepare_linear", w)?;
        Ok(FixedLinear {
            d_in: w.d_in,
            d_out: w.d_out,
            w: enc_all(&w.w),
            b: w.b.as_deref().map(enc_all),
        })
    }

    async fn prepare_norm(
        &mut self,
        _shape: NormShape,
        n: Option<&Norm>,
    ) -> Result<FixedNorm, ModelError> {
        let n = need("prepare_norm", n)?;
        Ok(FixedNorm {
            gamma: n.gamma.iter().map(|&g| enc(g as f64)).collect(),
            beta: n.beta.iter().map(|&b| enc(b as f64)).collect(),
            eps: n.eps as f64,
        })
    }

    async fn prepare_embedding(
        &mut self,
        _shape: EmbeddingShape,
        e: Option<&Embedding>,
    ) -> Result<FixedEmbedding, ModelError> {
        let e = need("prepare_embedding", e)?;
        Ok(FixedEmbedding {
            vocab: e.vocab,
            d: e.d,
            n_ctx: e.n_ctx,
            wte: enc_all(&e.wte),
            wpe: enc_all(&e.wpe),
        })
    }

    fn rows(&self, x: &RingTensor) -> usize {
        x.shape().first().copied().unwrap_or(0)
    }

    fn row_range(
        &self,
        x: &RingTensor,
        start: usize,
        len: usize,
    ) -> Result<RingTensor, ModelError> {
        let (r, c) = shape2("row_range", x)?;
        if start + len > r {
            return Err(shape_err(
                "row_range",
                format!("rows {start}..{} of {r}", start + len),
            ));
        }
        Ok(tensor(
            &[len, c],
            x.data()[start * c..(start + len) * c].to_vec(),
        ))
    }

    fn split_heads(
        &self,
        x: &RingTensor,
        start: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<RingTensor, ModelError> {
        let (r, c) = shape2("split_heads", x)?;
        if start + heads * head_dim > c {
            return Err(shape_err(
                "split_heads",
                format!("columns {start}..{} of {c}", start + heads * head_dim),
            ));
        }
        let mut data = Vec::with_capacity(heads * r * head_dim);
        for h in 0..heads {
            let c0 = start + h * head_dim;
            for row in x.data().chunks(c.max(1)).take(r) {
                data.extend_from_slice(&row[c0..c0 + head_dim]);
            }
        }
        Ok(tensor(&[heads, r, head_dim], data))
    }

    fn merge_heads(&self, x: &RingTensor) -> Result<RingTensor, ModelError> {
        let (h_n, r, c) = shape3("merge_heads", x)?;
        let cols = h_n * c;
        let mut data = vec![0u64; r * cols];
        for h in 0..h_n {
            for (i, src) in head(x, h, r, c).chunks(c.max(1)).enumerate().take(r) {
                data[i * cols + h * c..i * cols + (h + 1) * c].copy_from_slice(src);
            }
        }
        Ok(tensor(&[r, cols], data))
    }

    fn concat_rows(&self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor, ModelError> {
        let (ha, ra, ca) = shape3("concat_rows", a)?;
        let (hb, rb, cb) = shape3("concat_rows", b)?;
        if (ha, ca) != (hb, cb) {
            return Err(shape_err(
                "concat_rows",
                format!("[{ha}, _, {ca}] and [{hb}, _, {cb}]"),
            ));
        }
        let mut data = Vec::with_capacity(a.len() + b.len());
        for h in 0..ha {
            data.extend_from_slice(head(a, h, ra, ca));
            data.extend_from_slice(head(b, h, rb, cb));
        }
        Ok(tensor(&[ha, ra + rb, ca], data))
    }

    fn add(&mut self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor, ModelError> {
        a.add(b).map_err(|e| shape_err("add", e.to_string()))
    }

    async fn embed(
        &mut self,
        e: &FixedEmbedding,
        tokens: Tokens<'_>,
        pos0: usize,
    ) -> Result<RingTensor, ModelError> {
        let tokens = tokens.ids().ok_or_else(|| {
            shape_err("embed", "the fixed-point mirror needs the token ids".into())
        })?;
        if pos0 + tokens.len() > e.n_ctx {
            return Err(ModelError::ContextTooLong {
                len: pos0 + tokens.len(),
                limit: e.n_ctx,
            });
        }
        let d = e.d;
        let mut data = Vec::with_capacity(tokens.len() * d);
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= e.vocab {
                return Err(ModelError::TokenOutOfRange {
                    token: t,
                    vocab: e.vocab,
                });
            }
            let te = &e.wte[t as usize * d..(t as usize + 1) * d];
            let pe = &e.wpe[(pos0 + i) * d..(pos0 + i + 1) * d];
            data.extend(te.iter().zip(pe).map(|(a, b)| a.wrapping_add(*b)));
        }
        Ok(tensor(&[tokens.len(), d], data))
    }

    async fn linear(&mut self, x: &RingTensor, w: &FixedLinear) -> Result<RingTensor, ModelError> {
        let (n, k) = shape2("linear", x)?;
        if k != w.d_in {
            return Err(shape_err(
                "linear",
                format!("input width {k} for a {} -> {} layer", w.d_in, w.d_out),
            ));
        }
        let mut out = par_matmul(x.data(), &w.w, n, k, w.d_out);
        truncate_all(&mut out);
        if let Some(b) = &w.b {
            for row in out.chunks_mut(w.d_out) {
                for (o, bb) in row.iter_mut().zip(b) {
                    *o = o.wrapping_add(*bb);
                }
            }
        }
        Ok(tensor(&[n, w.d_out], out))
    }

    async fn lm_head(
        &mut self,
        x: &RingTensor,
        e: &FixedEmbedding,
    ) -> Result<RingTensor, ModelError> {
        let (n, k) = shape2("lm_head", x)?;
        if k != e.d {
            return Err(shape_err(
                "lm_head",
                format!("input width {k} for width {}", e.d),
            ));
        }
        let mut out = par_matmul_nt(x.data(), &e.wte, n, k, e.vocab);
        truncate_all(&mut out);
        Ok(tensor(&[n, e.vocab], out))
    }

    async fn scale(&mut self, x: &RingTensor, c: f32) -> Result<RingTensor, ModelError> {
        let k = enc(c as f64);
        Ok(map(x, |v| approx::mul_pub(v, k)))
    }

    async fn layer_norm(
        &mut self,
        x: &RingTensor,
        n: &FixedNorm,
    ) -> Result<RingTensor, ModelError> {
        let (_, d) = shape2("layer_norm", x)?;
        if n.gamma.len() != d {
            return Err(shape_err(
                "layer_norm",
                format!("width {d} for a LayerNorm of width {}", n.gamma.len()),
            ));
        }
        let norm = NormParams {
            gain: ServerVector::plain(0, n.gamma.iter().map(|&g| g as u64).collect()),
            bias: Some(n.beta.iter().map(|&b| b as u64).collect()),
            eps: n.eps,
        };
        plain_ops::layer_norm(&nl(), x, &norm).map_err(|e| nl_err("layer_norm", e))
    }

    async fn gelu(&mut self, x: &RingTensor) -> Result<RingTensor, ModelError> {
        plain_ops::gelu(&nl(), x).map_err(|e| nl_err("gelu", e))
    }

    async fn relu(&mut self, x: &RingTensor) -> Result<RingTensor, ModelError> {
        plain_ops::relu(&nl(), x).map_err(|e| nl_err("relu", e))
    }

    async fn attn_scores(
        &mut self,
        q: &RingTensor,
        k: &RingTensor,
        scales: &[f32],
        offset: usize,
    ) -> Result<RingTensor, ModelError> {
        let (h_n, n, dk) = shape3("attn_scores", q)?;
        let (hk, t, dk2) = shape3("attn_scores", k)?;
        if hk != h_n || dk2 != dk || t != offset + n || scales.len() != h_n * n {
            return Err(shape_err(
                "attn_scores",
                format!(
                    "q [{h_n}, {n}, {dk}], k [{hk}, {t}, {dk2}], {} scales, offset {offset}",
                    scales.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(h_n * n * t);
        for h in 0..h_n {
            // ((q kᵀ) · enc(c)) >> 2f: the public per-row scale on the exact product, one
            // truncation (as the secure backend does).
            let mut s = par_matmul_nt(head(q, h, n, dk), head(k, h, t, dk), n, dk, t);
            for (i, row) in s.chunks_mut(t.max(1)).enumerate().take(n) {
                let seen = offset + i + 1;
                let c = enc(scales[h * n + i] as f64) as u64;
                row[..seen]
                    .iter_mut()
                    .for_each(|v| *v = ((v.wrapping_mul(c) as i64) >> (2 * FRAC_BITS)) as u64);
                row[seen..].iter_mut().for_each(|v| *v = 0);
            }
            data.extend(s);
        }
        Ok(tensor(&[h_n, n, t], data))
    }

    async fn causal_softmax(
        &mut self,
        s: &RingTensor,
        offset: usize,
    ) -> Result<RingTensor, ModelError> {
        let (_, r, c) = shape3("causal_softmax", s)?;
        if c != offset + r {
            return Err(shape_err(
                "causal_softmax",
                format!("{c} key columns for {r} queries after {offset} cached positions"),
            ));
        }
        plain_ops::softmax(&nl(), s, Mask::Causal, None).map_err(|e| nl_err("causal_softmax", e))
    }

    async fn attn_values(
        &mut self,
        p: &RingTensor,
        v: &RingTensor,
    ) -> Result<RingTensor, ModelError> {
        let (h_n, n, t) = shape3("attn_values", p)?;
        let (hv, t2, dk) = shape3("attn_values", v)?;
        if hv != h_n || t2 != t {
            return Err(shape_err(
                "attn_values",
                format!("p [{h_n}, {n}, {t}], v [{hv}, {t2}, {dk}]"),
            ));
        }
        let mut data = Vec::with_capacity(h_n * n * dk);
        for h in 0..h_n {
            let mut o = par_matmul(head(p, h, n, t), head(v, h, t, dk), n, t, dk);
            truncate_all(&mut o);
            data.extend(o);
        }
        Ok(tensor(&[h_n, n, dk], data))
    }

    async fn argmax(&mut self, x: &RingTensor) -> Result<Option<Vec<u32>>, ModelError> {
        let (_, c) = shape2("argmax", x)?;
        x.data()
            .chunks(c.max(1))
            .map(|row| {
                let row = tensor(&[row.len()], row.to_vec());
                plain_ops::argmax(&nl(), &row)
                    .map(|i| Some(i as u32))
                    .map_err(|e| nl_err("argmax", e))
            })
            .collect::<Result<Option<Vec<u32>>, ModelError>>()
    }

    async fn reveal(&mut self, x: &RingTensor) -> Result<Vec<f32>, ModelError> {
        Ok(decode(x))
    }

    async fn reveal_heads(&mut self, x: &RingTensor) -> Result<Vec<f32>, ModelError> {
        Ok(decode(x))
    }
}

/// The nonlinear ops' parameters of the mirror: the protocol defaults (what
/// [`crate::secure::SecureOps`] requires of its session, at [`FRAC_BITS`]).
fn nl() -> NlParams {
    NlParams::default()
}

fn nl_err(op: &'static str, e: privlm_protocols::session::ErrorKind) -> ModelError {
    ModelError::Backend {
        op,
        msg: e.to_string(),
    }
}

fn decode(x: &RingTensor) -> Vec<f32> {
    x.data()
        .iter()
        .map(|&v| approx::dec(v as i64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use privlm_protocols::prg::Prg;

    #[test]
    fn parallel_products_equal_the_ring_matmul() {
        // 70 x 64 x 90 is above the threading threshold; 3 x 5 x 7 below it.
        for (n, k, m) in [(70, 64, 90), (3, 5, 7), (1, 64, 4097)] {
            let mut rng = Prg::from_u64(n as u64);
            let a = RingTensor::random(&[n, k], &mut rng);
            let b = RingTensor::random(&[k, m], &mut rng);
            let want = a.matmul(&b).unwrap();
            assert_eq!(par_matmul(a.data(), b.data(), n, k, m), want.data());
            let bt = b.transpose().unwrap();
            assert_eq!(par_matmul_nt(a.data(), bt.data(), n, k, m), want.data());
        }
    }
}
