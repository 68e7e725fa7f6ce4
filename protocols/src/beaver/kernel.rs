//! A blocked matrix-product kernel over Z_2^64 (wrapping `u64` arithmetic).
//!
//! Same result as [`crate::ring::matmul_into`] (`out += a . b`, row-major); it processes four
//! rows of `a` at once over column blocks of `b`, so each loaded row segment of `b` serves four
//! output rows and stays in cache. The Beaver layer and the dealer use it for their products.

/// Columns of `b` per block (2 KiB of one row).
const COL_BLOCK: usize = 256;
/// Rows of `b` per block (with [`COL_BLOCK`]: 256 KiB, about an L2 cache).
const DEPTH_BLOCK: usize = 128;

/// `out += a (n x k) . b (k x m)` over Z_2^64, row-major.
///
/// # Panics
/// If a slice length does not match its shape (callers check shapes first).
pub fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], n: usize, k: usize, m: usize) {
    assert_eq!(a.len(), n * k, "matmul_acc: a has the wrong length");
    assert_eq!(b.len(), k * m, "matmul_acc: b has the wrong length");
    assert_eq!(out.len(), n * m, "matmul_acc: out has the wrong length");
    if n == 0 || m == 0 || k == 0 {
        return;
    }
    for j0 in (0..m).step_by(COL_BLOCK) {
        let j1 = (j0 + COL_BLOCK).min(m);
        for p0 in (0..k).step_by(DEPTH_BLOCK) {
            let p1 = (p0 + DEPTH_BLOCK).min(k);
            let mut i = 0;
            while i + 4 <= n {
                let (r0, rest) = out[i * m..(i + 4) * m].split_at_mut(m);
                let (r1, rest) = rest.split_at_mut(m);
                let (r2, r3) = rest.split_at_mut(m);
                let (r0, r1, r2, r3) = (
                    &mut r0[j0..j1],
                    &mut r1[j0..j1],
                    &mut r2[j0..j1],
                    &mut r3[j0..j1],
                );
                for p in p0..p1 {
                    let x0 = a[i * k + p];
                    let x1 = a[(i + 1) * k + p];
                    let x2 = a[(i + 2) * k + p];
                    let x3 = a[(i + 3) * k + p];
                    let brow = &b[p * m + j0..p * m + j1];
                    for ((((o0, o1), o2), o3), &bv) in r0
                        .iter_mut()
                        .zip(r1.iter_mut())
                        .zip(r2.iter_mut())
                        .zip(r3.iter_mut())
                        .zip(brow)
                    {
                        *o0 = o0.wrapping_add(x0.wrapping_mul(bv));
                        *o1 = o1.wrapping_add(x1.wrapping_mul(bv));
                        *o2 = o2.wrapping_add(x2.wrapping_mul(bv));
                        *o3 = o3.wrapping_add(x3.wrapping_mul(bv));
                    }
                }
                i += 4;
            }
            while i < n {
                let row = &mut out[i * m + j0..i * m + j1];
                for p in p0..p1 {
                    let x = a[i * k + p];
                    let brow = &b[p * m + j0..p * m + j1];
                    for (o, &bv) in row.iter_mut().zip(brow) {
                        *o = o.wrapping_add(x.wrapping_mul(bv));
                    }
                }
                i += 1;
            }
        }
    }
}

/// `a (n x k) . b (k x m)` as a new vector.
pub fn matmul(a: &[u64], b: &[u64], n: usize, k: usize, m: usize) -> Vec<u64> {
    let mut out = vec![0u64; n * m];
    matmul_acc(a, b, &mut out, n, k, m);
    out
}

/// `out[r] = sum_i w[i] * m[i, r]` for `m: [w.len(), d]` (a vector times a matrix).
pub fn vecmat(w: &[u64], m: &[u64], d: usize) -> Vec<u64> {
    assert_eq!(m.len(), w.len() * d, "vecmat: m has the wrong length");
    let mut out = vec![0u64; d];
    for (&x, row) in w.iter().zip(m.chunks_exact(d.max(1))) {
        if x == 0 {
            continue;
        }
        for (o, &v) in out.iter_mut().zip(row) {
            *o = o.wrapping_add(x.wrapping_mul(v));
        }
    }
    out
}

/// For `t3: [v1, v2, d]` and `w: [v2]`: `out[i, :] = sum_j w[j] t3[i, j, :]` (`[v1, d]`).
pub fn contract_mid(t3: &[u64], v1: usize, v2: usize, d: usize, w: &[u64]) -> Vec<u64> {
    assert_eq!(
        t3.len(),
        v1 * v2 * d,
        "contract_mid: t3 has the wrong length"
    );
    assert_eq!(w.len(), v2, "contract_mid: w has the wrong length");
    let mut out = Vec::with_capacity(v1 * d);
    for i in 0..v1 {
        out.extend(vecmat(w, &t3[i * v2 * d..(i + 1) * v2 * d], d));
    }
    out
}

/// For `t3: [v1, v2, d]` and `w: [v1]`: `out[j, :] = sum_i w[i] t3[i, j, :]` (`[v2, d]`).
pub fn contract_first(t3: &[u64], v1: usize, v2: usize, d: usize, w: &[u64]) -> Vec<u64> {
    assert_eq!(
        t3.len(),
        v1 * v2 * d,
        "contract_first: t3 has the wrong length"
    );
    assert_eq!(w.len(), v1, "contract_first: w has the wrong length");
    let mut out = vec![0u64; v2 * d];
    for (i, &x) in w.iter().enumerate() {
        if x == 0 {
            continue;
        }
        for (o, &v) in out.iter_mut().zip(&t3[i * v2 * d..(i + 1) * v2 * d]) {
            *o = o.wrapping_add(x.wrapping_mul(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;
    use crate::ring::matmul_into;
    use rand_core::Rng;

    #[test]
    fn blocked_equals_naive() {
        let mut rng = Prg::from_u64(11);
        for &(n, k, m) in &[
            (1, 1, 1),
            (1, 7, 1),
            (5, 1, 3),
            (9, 130, 300),
            (4, 257, 513),
            (3, 2, 1),
        ] {
            let a: Vec<u64> = (0..n * k).map(|_| rng.next_u64()).collect();
            let b: Vec<u64> = (0..k * m).map(|_| rng.next_u64()).collect();
            let mut want = vec![0u64; n * m];
            matmul_into(&a, &b, &mut want, n, k, m);
            assert_eq!(matmul(&a, &b, n, k, m), want, "{n}x{k}x{m}");
        }
    }
}
