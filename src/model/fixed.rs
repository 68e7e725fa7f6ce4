//! The fixed-point backend of [`TensorOps`]: the plaintext mirror of the secure forward pass.
//!
//! Values are [`RingTensor`]s over Z_2^64 holding fixed-point numbers with 16 fractional bits
//! (DESIGN.md section 5). Every operation is the exact arithmetic the 2PC engine performs on
//! shares (CrypTen, Knott et al. 2021; SIGMA, Gupta et al. 2023): products of two fixed-point
//! values are followed by a truncation (arithmetic shift by 16 bits), public constants are
//! encoded and multiplied then truncated, and the nonlinearities are the approximations of
//! [`super::approx`]. Summary of the layer arithmetic:
//!
//! - linear: `y = ((x W) >> f) + b` (one matrix product, one truncation per output);
//! - LayerNorm: `mean = (Σx · ⌊2^(f+8)/d⌉) >> (f+8)`, `c = x - mean`,
//!   `var = (Σ (c·c >> f) · ⌊2^(f+8)/d⌉) >> (f+8)`, `r = rsqrt(var + ⌈eps⌉)`,
//!   `y = (((c·r) >> f) · γ >> f) + β`;
//! - attention logits: `((q kᵀ) >> f) · enc(1/(t·√d_k)) >> f` per row;
//! - causal softmax: row max (comparisons), `e = exp_neg(x - max)`, `r = reciprocal(Σ e)`,
//!   `p = (e · r) >> f`; masked entries are 0 and not computed;
//! - β scaling: `(x · enc(β)) >> f`;
//! - embeddings: a row lookup (the secure engine's one-hot product is exact).

use privlm_protocols::ring::{RingTensor, matmul_into};

use super::approx::{self, FRAC_BITS, enc};
use super::ops::{Embedding, Linear, Norm, TensorOps};

/// Extra fractional bits of the public constant 1/d in LayerNorm's means.
pub const MEAN_EXTRA_BITS: u32 = 8;

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
    eps: i64,
}

/// Embeddings in fixed point.
#[derive(Clone)]
pub struct FixedEmbedding {
    vocab: usize,
    d: usize,
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

fn shape2(x: &RingTensor) -> (usize, usize) {
    match x.shape() {
        [r, c] => (*r, *c),
        s => panic!("fixed backend: expected a 2-D tensor, got shape {s:?}"),
    }
}

fn tensor(rows: usize, cols: usize, data: Vec<u64>) -> RingTensor {
    RingTensor::from_vec(&[rows, cols], data).expect("shape matches data")
}

fn map(x: &RingTensor, f: impl Fn(i64) -> i64) -> RingTensor {
    let (r, c) = shape2(x);
    tensor(r, c, x.data().iter().map(|&v| f(v as i64) as u64).collect())
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

/// `(a · ⌊2^(f+extra)·c⌉) >> (f+extra)`: a public multiply with a finer constant.
fn mul_pub_fine(a: i64, c: f64, extra: u32) -> i64 {
    let k = (c * (1u64 << (FRAC_BITS + extra)) as f64).round() as i64;
    a.wrapping_mul(k) >> (FRAC_BITS + extra)
}

impl TensorOps for FixedOps {
    type Tensor = RingTensor;
    type Linear = FixedLinear;
    type Norm = FixedNorm;
    type Embedding = FixedEmbedding;

    fn prepare_linear(&self, w: &Linear) -> FixedLinear {
        FixedLinear {
            d_in: w.d_in,
            d_out: w.d_out,
            w: enc_all(&w.w),
            b: w.b.as_deref().map(enc_all),
        }
    }

    fn prepare_norm(&self, n: &Norm) -> FixedNorm {
        FixedNorm {
            gamma: n.gamma.iter().map(|&g| enc(g as f64)).collect(),
            beta: n.beta.iter().map(|&b| enc(b as f64)).collect(),
            eps: enc(n.eps as f64).max(1),
        }
    }

    fn prepare_embedding(&self, e: &Embedding) -> FixedEmbedding {
        FixedEmbedding {
            vocab: e.vocab,
            d: e.d,
            wte: enc_all(&e.wte),
            wpe: enc_all(&e.wpe),
        }
    }

    fn rows(&self, x: &RingTensor) -> usize {
        shape2(x).0
    }

    fn embed(&mut self, e: &FixedEmbedding, tokens: &[u32], pos0: usize) -> RingTensor {
        let d = e.d;
        let mut data = Vec::with_capacity(tokens.len() * d);
        for (i, &t) in tokens.iter().enumerate() {
            let te = &e.wte[t as usize * d..(t as usize + 1) * d];
            let pe = &e.wpe[(pos0 + i) * d..(pos0 + i + 1) * d];
            data.extend(te.iter().zip(pe).map(|(a, b)| a.wrapping_add(*b)));
        }
        tensor(tokens.len(), d, data)
    }

    fn linear(&mut self, x: &RingTensor, w: &FixedLinear) -> RingTensor {
        let (n, k) = shape2(x);
        assert_eq!(k, w.d_in, "linear: input width");
        let mut out = par_matmul(x.data(), &w.w, n, k, w.d_out);
        truncate_all(&mut out);
        if let Some(b) = &w.b {
            for row in out.chunks_mut(w.d_out) {
                for (o, bb) in row.iter_mut().zip(b) {
                    *o = o.wrapping_add(*bb);
                }
            }
        }
        tensor(n, w.d_out, out)
    }

    fn lm_head(&mut self, x: &RingTensor, e: &FixedEmbedding) -> RingTensor {
        let (n, k) = shape2(x);
        let mut out = par_matmul_nt(x.data(), &e.wte, n, k, e.vocab);
        truncate_all(&mut out);
        tensor(n, e.vocab, out)
    }

    fn add(&mut self, a: &RingTensor, b: &RingTensor) -> RingTensor {
        a.add(b).expect("add: shapes")
    }

    fn scale(&mut self, x: &RingTensor, c: f32) -> RingTensor {
        let k = enc(c as f64);
        map(x, |v| approx::mul_pub(v, k))
    }

    fn scale_rows(&mut self, x: &RingTensor, c: &[f32]) -> RingTensor {
        let (r, cols) = shape2(x);
        let mut data = x.data().to_vec();
        for (row, &s) in data.chunks_mut(cols).zip(c) {
            let k = enc(s as f64);
            row.iter_mut()
                .for_each(|v| *v = approx::mul_pub(*v as i64, k) as u64);
        }
        tensor(r, cols, data)
    }

    fn layer_norm(&mut self, x: &RingTensor, n: &FixedNorm) -> RingTensor {
        let (r, d) = shape2(x);
        let inv_d = 1.0 / d as f64;
        let mut data = Vec::with_capacity(r * d);
        for row in x.data().chunks(d) {
            let sum = row.iter().fold(0i64, |s, &v| s.wrapping_add(v as i64));
            let mean = mul_pub_fine(sum, inv_d, MEAN_EXTRA_BITS);
            let c: Vec<i64> = row.iter().map(|&v| (v as i64).wrapping_sub(mean)).collect();
            let sq = c
                .iter()
                .fold(0i64, |s, &v| s.wrapping_add(approx::mul(v, v)));
            let var = mul_pub_fine(sq, inv_d, MEAN_EXTRA_BITS);
            let rs = approx::rsqrt(var.wrapping_add(n.eps));
            for ((cv, g), b) in c.iter().zip(&n.gamma).zip(&n.beta) {
                let y = approx::mul(approx::mul(*cv, rs), *g).wrapping_add(*b);
                data.push(y as u64);
            }
        }
        tensor(r, d, data)
    }

    fn gelu(&mut self, x: &RingTensor) -> RingTensor {
        map(x, approx::gelu)
    }

    fn relu(&mut self, x: &RingTensor) -> RingTensor {
        map(x, approx::relu)
    }

    fn cols(&self, x: &RingTensor, start: usize, len: usize) -> RingTensor {
        let (r, c) = shape2(x);
        let mut data = Vec::with_capacity(r * len);
        for row in x.data().chunks(c) {
            data.extend_from_slice(&row[start..start + len]);
        }
        tensor(r, len, data)
    }

    fn row_range(&self, x: &RingTensor, start: usize, len: usize) -> RingTensor {
        let (_, c) = shape2(x);
        tensor(len, c, x.data()[start * c..(start + len) * c].to_vec())
    }

    fn concat_cols(&self, parts: &[RingTensor]) -> RingTensor {
        let rows = parts.first().map_or(0, |p| shape2(p).0);
        let cols: usize = parts.iter().map(|p| shape2(p).1).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for p in parts {
                let pc = shape2(p).1;
                data.extend_from_slice(&p.data()[r * pc..(r + 1) * pc]);
            }
        }
        tensor(rows, cols, data)
    }

    fn concat_rows(&self, a: &RingTensor, b: &RingTensor) -> RingTensor {
        let (ra, c) = shape2(a);
        let (rb, cb) = shape2(b);
        assert_eq!(c, cb, "concat_rows: widths");
        let mut data = a.data().to_vec();
        data.extend_from_slice(b.data());
        tensor(ra + rb, c, data)
    }

    fn matmul_nt(&mut self, a: &RingTensor, b: &RingTensor) -> RingTensor {
        let (n, k) = shape2(a);
        let (m, k2) = shape2(b);
        assert_eq!(k, k2, "matmul_nt: inner width");
        let mut out = par_matmul_nt(a.data(), b.data(), n, k, m);
        truncate_all(&mut out);
        tensor(n, m, out)
    }

    fn matmul(&mut self, a: &RingTensor, b: &RingTensor) -> RingTensor {
        let (n, k) = shape2(a);
        let (k2, m) = shape2(b);
        assert_eq!(k, k2, "matmul: inner width");
        let mut out = par_matmul(a.data(), b.data(), n, k, m);
        truncate_all(&mut out);
        tensor(n, m, out)
    }

    fn causal_softmax(&mut self, x: &RingTensor, offset: usize) -> RingTensor {
        let (r, c) = shape2(x);
        let mut data = vec![0u64; r * c];
        for (i, (row, orow)) in x.data().chunks(c).zip(data.chunks_mut(c)).enumerate() {
            let seen = (offset + i + 1).min(c);
            let max = row[..seen].iter().map(|&v| v as i64).max().unwrap_or(0);
            let e: Vec<i64> = row[..seen]
                .iter()
                .map(|&v| approx::exp_neg((v as i64).wrapping_sub(max)))
                .collect();
            let sum = e.iter().fold(0i64, |s, &v| s.wrapping_add(v));
            // sum >= 1: the maximum's term is exp_neg(0) = 1 exactly.
            let inv = approx::reciprocal(sum);
            for (o, ev) in orow[..seen].iter_mut().zip(&e) {
                *o = approx::mul(*ev, inv) as u64;
            }
        }
        tensor(r, c, data)
    }

    fn to_f32(&self, x: &RingTensor) -> Vec<f32> {
        x.data()
            .iter()
            .map(|&v| approx::dec(v as i64) as f32)
            .collect()
    }
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
