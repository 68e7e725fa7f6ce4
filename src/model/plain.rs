//! The f32 backend of [`TensorOps`]: the float reference forward pass.
//!
//! Matrix products go through `ndarray`'s `general_mat_mul`, i.e. the `matrixmultiply` crate's
//! packed, vectorised, multi-threaded SGEMM (a safe API, which `#![forbid(unsafe_code)]`
//! requires). The nonlinearities are the textbook definitions GPT-2 uses (Radford et al.
//! 2019): GELU in tanh form, LayerNorm with biased variance, softmax with the row maximum
//! subtracted.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use super::ModelError;
use super::ops::{
    Embedding, EmbeddingShape, Linear, LinearShape, Norm, NormShape, TensorOps, Tokens, argmax_by,
};

/// A row-major f32 matrix. `Debug` prints the shape only: the values may be a party's secret
/// activations.
#[derive(Clone, PartialEq)]
pub struct F32Tensor {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl F32Tensor {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        F32Tensor {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
}

/// A batch of per-head f32 matrices `[heads, rows, cols]`, head-major. `Debug` prints the
/// shape only.
#[derive(Clone, PartialEq)]
pub struct F32Heads {
    /// Number of heads.
    pub heads: usize,
    /// Rows per head.
    pub rows: usize,
    /// Columns per head.
    pub cols: usize,
    /// Values, `[heads, rows, cols]` row-major.
    pub data: Vec<f32>,
}

impl std::fmt::Debug for F32Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "F32Tensor({} x {}, values hidden)", self.rows, self.cols)
    }
}

impl std::fmt::Debug for F32Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "F32Heads({} x {} x {}, values hidden)",
            self.heads, self.rows, self.cols
        )
    }
}

impl F32Heads {
    fn head(&self, h: usize) -> &[f32] {
        let n = self.rows * self.cols;
        &self.data[h * n..(h + 1) * n]
    }
}

/// The f32 backend (stateless).
#[derive(Clone, Copy, Debug, Default)]
pub struct F32Ops;

fn view(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("shape matches data")
}

/// Up to this many rows, products are computed as matrix-vector products (no packing).
const GEMV_ROWS: usize = 2;

/// Dot product with 8 independent accumulators (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `out = a (n x k) · b`, where `b` is `[k, m]` row-major, or `[m, k]` row-major read
/// transposed when `b_transposed`.
fn gemm(a: &[f32], n: usize, k: usize, b: &[f32], m: usize, b_transposed: bool) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    if n <= GEMV_ROWS {
        // A few rows (generation with the KV cache): stream `b` once instead of packing it.
        for (arow, orow) in a.chunks(k).zip(out.chunks_mut(m)) {
            if b_transposed {
                for (o, brow) in orow.iter_mut().zip(b.chunks(k)) {
                    *o = dot(arow, brow);
                }
            } else {
                for (&x, brow) in arow.iter().zip(b.chunks(m)) {
                    orow.iter_mut().zip(brow).for_each(|(o, &w)| *o += x * w);
                }
            }
        }
        return out;
    }
    let av = view(a, n, k);
    let mut ov = ArrayViewMut2::from_shape((n, m), &mut out[..]).expect("shape matches data");
    if b_transposed {
        general_mat_mul(1.0, &av, &view(b, m, k).t(), 0.0, &mut ov);
    } else {
        general_mat_mul(1.0, &av, &view(b, k, m), 0.0, &mut ov);
    }
    out
}

/// GPT-2's `gelu_new`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
pub fn gelu_f32(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044715 * x * x * x)).tanh())
}

fn shape_err(op: &'static str, msg: String) -> ModelError {
    ModelError::Backend { op, msg }
}

fn need<'a, T>(op: &'static str, v: Option<&'a T>) -> Result<&'a T, ModelError> {
    v.ok_or_else(|| shape_err(op, "the f32 backend needs the weight values".into()))
}

fn map(x: &F32Tensor, f: impl Fn(f32) -> f32) -> F32Tensor {
    F32Tensor {
        rows: x.rows,
        cols: x.cols,
        data: x.data.iter().map(|&v| f(v)).collect(),
    }
}

/// Checks that a score or probability batch `[H, n, offset + n]` fits its causal mask.
fn check_causal(op: &'static str, s: &F32Heads, offset: usize) -> Result<(), ModelError> {
    if s.cols != offset + s.rows {
        return Err(shape_err(
            op,
            format!(
                "{} key columns for {} queries after {offset} cached positions",
                s.cols, s.rows
            ),
        ));
    }
    Ok(())
}

impl TensorOps for F32Ops {
    type Tensor = F32Tensor;
    type Heads = F32Heads;
    type Linear = Linear;
    type Norm = Norm;
    type Embedding = Embedding;
    type Error = ModelError;

    async fn prepare_linear(
        &mut self,
        _shape: LinearShape,
        w: Option<&Linear>,
    ) -> Result<Linear, ModelError> {
        need("prepare_linear", w).cloned()
    }

    async fn prepare_norm(
        &mut self,
        _shape: NormShape,
        n: Option<&Norm>,
    ) -> Result<Norm, ModelError> {
        need("prepare_norm", n).cloned()
    }

    async fn prepare_embedding(
        &mut self,
        _shape: EmbeddingShape,
        e: Option<&Embedding>,
    ) -> Result<Embedding, ModelError> {
        need("prepare_embedding", e).cloned()
    }

    fn rows(&self, x: &F32Tensor) -> usize {
        x.rows
    }

    fn row_range(&self, x: &F32Tensor, start: usize, len: usize) -> Result<F32Tensor, ModelError> {
        if start + len > x.rows {
            return Err(shape_err(
                "row_range",
                format!("rows {start}..{} of {}", start + len, x.rows),
            ));
        }
        Ok(F32Tensor {
            rows: len,
            cols: x.cols,
            data: x.data[start * x.cols..(start + len) * x.cols].to_vec(),
        })
    }

    fn split_heads(
        &self,
        x: &F32Tensor,
        start: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<F32Heads, ModelError> {
        if start + heads * head_dim > x.cols {
            return Err(shape_err(
                "split_heads",
                format!(
                    "columns {start}..{} of {}",
                    start + heads * head_dim,
                    x.cols
                ),
            ));
        }
        let mut data = Vec::with_capacity(heads * x.rows * head_dim);
        for h in 0..heads {
            let c0 = start + h * head_dim;
            for row in x.data.chunks(x.cols) {
                data.extend_from_slice(&row[c0..c0 + head_dim]);
            }
        }
        Ok(F32Heads {
            heads,
            rows: x.rows,
            cols: head_dim,
            data,
        })
    }

    fn merge_heads(&self, x: &F32Heads) -> Result<F32Tensor, ModelError> {
        let cols = x.heads * x.cols;
        let mut data = vec![0f32; x.rows * cols];
        for h in 0..x.heads {
            for (i, src) in x.head(h).chunks(x.cols.max(1)).enumerate().take(x.rows) {
                data[i * cols + h * x.cols..i * cols + (h + 1) * x.cols].copy_from_slice(src);
            }
        }
        Ok(F32Tensor {
            rows: x.rows,
            cols,
            data,
        })
    }

    fn concat_rows(&self, a: &F32Heads, b: &F32Heads) -> Result<F32Heads, ModelError> {
        if (a.heads, a.cols) != (b.heads, b.cols) {
            return Err(shape_err(
                "concat_rows",
                format!(
                    "[{}, _, {}] and [{}, _, {}]",
                    a.heads, a.cols, b.heads, b.cols
                ),
            ));
        }
        let mut data = Vec::with_capacity(a.data.len() + b.data.len());
        for h in 0..a.heads {
            data.extend_from_slice(a.head(h));
            data.extend_from_slice(b.head(h));
        }
        Ok(F32Heads {
            heads: a.heads,
            rows: a.rows + b.rows,
            cols: a.cols,
            data,
        })
    }

    fn add(&mut self, a: &F32Tensor, b: &F32Tensor) -> Result<F32Tensor, ModelError> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(shape_err(
                "add",
                format!("[{}, {}] + [{}, {}]", a.rows, a.cols, b.rows, b.cols),
            ));
        }
        Ok(F32Tensor {
            rows: a.rows,
            cols: a.cols,
            data: a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
        })
    }

    async fn embed(
        &mut self,
        e: &Embedding,
        tokens: Tokens<'_>,
        pos0: usize,
    ) -> Result<F32Tensor, ModelError> {
        let tokens = tokens
            .ids()
            .ok_or_else(|| shape_err("embed", "the f32 backend needs the token ids".into()))?;
        let d = e.d;
        if pos0 + tokens.len() > e.n_ctx {
            return Err(ModelError::ContextTooLong {
                len: pos0 + tokens.len(),
                limit: e.n_ctx,
            });
        }
        let mut out = F32Tensor::zeros(tokens.len(), d);
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= e.vocab {
                return Err(ModelError::TokenOutOfRange {
                    token: t,
                    vocab: e.vocab,
                });
            }
            let te = &e.wte[t as usize * d..(t as usize + 1) * d];
            let pe = &e.wpe[(pos0 + i) * d..(pos0 + i + 1) * d];
            for ((o, a), b) in out.data[i * d..(i + 1) * d].iter_mut().zip(te).zip(pe) {
                *o = a + b;
            }
        }
        Ok(out)
    }

    async fn linear(&mut self, x: &F32Tensor, w: &Linear) -> Result<F32Tensor, ModelError> {
        if x.cols != w.d_in {
            return Err(shape_err(
                "linear",
                format!(
                    "input width {} for a {} -> {} layer",
                    x.cols, w.d_in, w.d_out
                ),
            ));
        }
        let mut data = gemm(&x.data, x.rows, w.d_in, &w.w, w.d_out, false);
        if let Some(b) = &w.b {
            for row in data.chunks_mut(w.d_out) {
                for (o, bb) in row.iter_mut().zip(b) {
                    *o += bb;
                }
            }
        }
        Ok(F32Tensor {
            rows: x.rows,
            cols: w.d_out,
            data,
        })
    }

    async fn lm_head(&mut self, x: &F32Tensor, e: &Embedding) -> Result<F32Tensor, ModelError> {
        if x.cols != e.d {
            return Err(shape_err(
                "lm_head",
                format!("input width {} for width {}", x.cols, e.d),
            ));
        }
        Ok(F32Tensor {
            rows: x.rows,
            cols: e.vocab,
            data: gemm(&x.data, x.rows, e.d, &e.wte, e.vocab, true),
        })
    }

    async fn scale(&mut self, x: &F32Tensor, c: f32) -> Result<F32Tensor, ModelError> {
        Ok(map(x, |v| v * c))
    }

    async fn layer_norm(&mut self, x: &F32Tensor, n: &Norm) -> Result<F32Tensor, ModelError> {
        let d = x.cols;
        if n.gamma.len() != d {
            return Err(shape_err(
                "layer_norm",
                format!("width {d} for a LayerNorm of width {}", n.gamma.len()),
            ));
        }
        let mut out = x.clone();
        for row in out.data.chunks_mut(d.max(1)) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + n.eps as f64).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&n.gamma).zip(&n.beta) {
                *v = ((*v as f64 - mean) * inv) as f32 * g + b;
            }
        }
        Ok(out)
    }

    async fn gelu(&mut self, x: &F32Tensor) -> Result<F32Tensor, ModelError> {
        Ok(map(x, gelu_f32))
    }

    async fn relu(&mut self, x: &F32Tensor) -> Result<F32Tensor, ModelError> {
        Ok(map(x, |v| v.max(0.0)))
    }

    async fn attn_scores(
        &mut self,
        q: &F32Heads,
        k: &F32Heads,
        scales: &[f32],
        offset: usize,
    ) -> Result<F32Heads, ModelError> {
        let (h_n, n, t, dk) = (q.heads, q.rows, k.rows, q.cols);
        if k.heads != h_n || k.cols != dk || t != offset + n || scales.len() != h_n * n {
            return Err(shape_err(
                "attn_scores",
                format!(
                    "q [{h_n}, {n}, {dk}], k [{}, {t}, {}], {} scales, offset {offset}",
                    k.heads,
                    k.cols,
                    scales.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(h_n * n * t);
        for h in 0..h_n {
            let mut s = gemm(q.head(h), n, dk, k.head(h), t, true);
            for (i, row) in s.chunks_mut(t.max(1)).enumerate().take(n) {
                let seen = offset + i + 1;
                let c = scales[h * n + i];
                row[..seen].iter_mut().for_each(|v| *v *= c);
                row[seen..].iter_mut().for_each(|v| *v = 0.0);
            }
            data.extend(s);
        }
        Ok(F32Heads {
            heads: h_n,
            rows: n,
            cols: t,
            data,
        })
    }

    async fn causal_softmax(
        &mut self,
        s: &F32Heads,
        offset: usize,
    ) -> Result<F32Heads, ModelError> {
        check_causal("causal_softmax", s, offset)?;
        let c = s.cols;
        let mut out = F32Heads {
            heads: s.heads,
            rows: s.rows,
            cols: c,
            data: vec![0.0; s.data.len()],
        };
        for (r, (row, orow)) in s
            .data
            .chunks(c.max(1))
            .zip(out.data.chunks_mut(c.max(1)))
            .enumerate()
        {
            let seen = offset + r % s.rows.max(1) + 1;
            let max = row[..seen]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, &v) in orow[..seen].iter_mut().zip(&row[..seen]) {
                *o = (v - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            orow[..seen].iter_mut().for_each(|o| *o *= inv);
        }
        Ok(out)
    }

    async fn attn_values(&mut self, p: &F32Heads, v: &F32Heads) -> Result<F32Heads, ModelError> {
        if p.heads != v.heads || p.cols != v.rows {
            return Err(shape_err(
                "attn_values",
                format!(
                    "p [{}, {}, {}], v [{}, {}, {}]",
                    p.heads, p.rows, p.cols, v.heads, v.rows, v.cols
                ),
            ));
        }
        let mut data = Vec::with_capacity(p.heads * p.rows * v.cols);
        for h in 0..p.heads {
            data.extend(gemm(p.head(h), p.rows, p.cols, v.head(h), v.cols, false));
        }
        Ok(F32Heads {
            heads: p.heads,
            rows: p.rows,
            cols: v.cols,
            data,
        })
    }

    async fn argmax(&mut self, x: &F32Tensor) -> Result<Option<Vec<u32>>, ModelError> {
        Ok(Some(
            x.data
                .chunks(x.cols.max(1))
                .map(|row| argmax_by(row) as u32)
                .collect(),
        ))
    }

    async fn reveal(&mut self, x: &F32Tensor) -> Result<Vec<f32>, ModelError> {
        Ok(x.data.clone())
    }

    async fn reveal_heads(&mut self, x: &F32Heads) -> Result<Vec<f32>, ModelError> {
        Ok(x.data.clone())
    }
}
