//! The f32 backend of [`TensorOps`]: the float reference forward pass.
//!
//! Matrix products go through `ndarray`'s `general_mat_mul`, i.e. the `matrixmultiply` crate's
//! packed, vectorised, multi-threaded SGEMM (a safe API, which `#![forbid(unsafe_code)]`
//! requires). The nonlinearities are the textbook definitions GPT-2 uses (Radford et al.
//! 2019): GELU in tanh form, LayerNorm with biased variance, softmax with the row maximum
//! subtracted.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use super::ops::{Embedding, Linear, Norm, TensorOps};

/// A row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
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

impl TensorOps for F32Ops {
    type Tensor = F32Tensor;
    type Linear = Linear;
    type Norm = Norm;
    type Embedding = Embedding;

    fn prepare_linear(&self, w: &Linear) -> Linear {
        w.clone()
    }
    fn prepare_norm(&self, n: &Norm) -> Norm {
        n.clone()
    }
    fn prepare_embedding(&self, e: &Embedding) -> Embedding {
        e.clone()
    }

    fn rows(&self, x: &F32Tensor) -> usize {
        x.rows
    }

    fn embed(&mut self, e: &Embedding, tokens: &[u32], pos0: usize) -> F32Tensor {
        let d = e.d;
        let mut out = F32Tensor::zeros(tokens.len(), d);
        for (i, &t) in tokens.iter().enumerate() {
            let te = &e.wte[t as usize * d..(t as usize + 1) * d];
            let pe = &e.wpe[(pos0 + i) * d..(pos0 + i + 1) * d];
            for ((o, a), b) in out.data[i * d..(i + 1) * d].iter_mut().zip(te).zip(pe) {
                *o = a + b;
            }
        }
        out
    }

    fn linear(&mut self, x: &F32Tensor, w: &Linear) -> F32Tensor {
        assert_eq!(x.cols, w.d_in, "linear: input width");
        let mut data = gemm(&x.data, x.rows, w.d_in, &w.w, w.d_out, false);
        if let Some(b) = &w.b {
            for row in data.chunks_mut(w.d_out) {
                for (o, bb) in row.iter_mut().zip(b) {
                    *o += bb;
                }
            }
        }
        F32Tensor {
            rows: x.rows,
            cols: w.d_out,
            data,
        }
    }

    fn lm_head(&mut self, x: &F32Tensor, e: &Embedding) -> F32Tensor {
        F32Tensor {
            rows: x.rows,
            cols: e.vocab,
            data: gemm(&x.data, x.rows, e.d, &e.wte, e.vocab, true),
        }
    }

    fn add(&mut self, a: &F32Tensor, b: &F32Tensor) -> F32Tensor {
        assert_eq!((a.rows, a.cols), (b.rows, b.cols), "add: shapes");
        F32Tensor {
            rows: a.rows,
            cols: a.cols,
            data: a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
        }
    }

    fn scale(&mut self, x: &F32Tensor, c: f32) -> F32Tensor {
        F32Tensor {
            rows: x.rows,
            cols: x.cols,
            data: x.data.iter().map(|v| v * c).collect(),
        }
    }

    fn scale_rows(&mut self, x: &F32Tensor, c: &[f32]) -> F32Tensor {
        let mut out = x.clone();
        for (row, &s) in out.data.chunks_mut(x.cols).zip(c) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        out
    }

    fn layer_norm(&mut self, x: &F32Tensor, n: &Norm) -> F32Tensor {
        let d = x.cols;
        let mut out = x.clone();
        for row in out.data.chunks_mut(d) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + n.eps as f64).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&n.gamma).zip(&n.beta) {
                *v = ((*v as f64 - mean) * inv) as f32 * g + b;
            }
        }
        out
    }

    fn gelu(&mut self, x: &F32Tensor) -> F32Tensor {
        F32Tensor {
            rows: x.rows,
            cols: x.cols,
            data: x.data.iter().map(|&v| gelu_f32(v)).collect(),
        }
    }

    fn relu(&mut self, x: &F32Tensor) -> F32Tensor {
        F32Tensor {
            rows: x.rows,
            cols: x.cols,
            data: x.data.iter().map(|&v| v.max(0.0)).collect(),
        }
    }

    fn cols(&self, x: &F32Tensor, start: usize, len: usize) -> F32Tensor {
        let mut data = Vec::with_capacity(x.rows * len);
        for row in x.data.chunks(x.cols) {
            data.extend_from_slice(&row[start..start + len]);
        }
        F32Tensor {
            rows: x.rows,
            cols: len,
            data,
        }
    }

    fn row_range(&self, x: &F32Tensor, start: usize, len: usize) -> F32Tensor {
        F32Tensor {
            rows: len,
            cols: x.cols,
            data: x.data[start * x.cols..(start + len) * x.cols].to_vec(),
        }
    }

    fn concat_cols(&self, parts: &[F32Tensor]) -> F32Tensor {
        let rows = parts.first().map_or(0, |p| p.rows);
        let cols = parts.iter().map(|p| p.cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for p in parts {
                data.extend_from_slice(&p.data[r * p.cols..(r + 1) * p.cols]);
            }
        }
        F32Tensor { rows, cols, data }
    }

    fn concat_rows(&self, a: &F32Tensor, b: &F32Tensor) -> F32Tensor {
        assert_eq!(a.cols, b.cols, "concat_rows: widths");
        let mut data = Vec::with_capacity(a.data.len() + b.data.len());
        data.extend_from_slice(&a.data);
        data.extend_from_slice(&b.data);
        F32Tensor {
            rows: a.rows + b.rows,
            cols: a.cols,
            data,
        }
    }

    fn matmul_nt(&mut self, a: &F32Tensor, b: &F32Tensor) -> F32Tensor {
        assert_eq!(a.cols, b.cols, "matmul_nt: inner width");
        F32Tensor {
            rows: a.rows,
            cols: b.rows,
            data: gemm(&a.data, a.rows, a.cols, &b.data, b.rows, true),
        }
    }

    fn matmul(&mut self, a: &F32Tensor, b: &F32Tensor) -> F32Tensor {
        assert_eq!(a.cols, b.rows, "matmul: inner width");
        F32Tensor {
            rows: a.rows,
            cols: b.cols,
            data: gemm(&a.data, a.rows, a.cols, &b.data, b.cols, false),
        }
    }

    fn causal_softmax(&mut self, x: &F32Tensor, offset: usize) -> F32Tensor {
        let mut out = F32Tensor::zeros(x.rows, x.cols);
        for (i, (row, orow)) in x
            .data
            .chunks(x.cols)
            .zip(out.data.chunks_mut(x.cols))
            .enumerate()
        {
            let seen = (offset + i + 1).min(x.cols);
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
        out
    }

    fn to_f32(&self, x: &F32Tensor) -> Vec<f32> {
        x.data.clone()
    }
}
