//! Bit-matrix transposition for OT extension.
//!
//! OT extension (Ishai, Kilian, Nissim, Petrank, CRYPTO 2003) builds a `128 × m` bit matrix
//! column by column (one column per base OT, `m` bits long) and needs its rows (one 128-bit row
//! per extended OT). This module transposes such matrices with word-level operations: the
//! matrix is cut into `64 × 64` tiles, and each tile is transposed in place by the recursive
//! block-swap method (six stages that exchange `32 × 32`, `16 × 16`, ..., `1 × 1` sub-blocks
//! with shifts and masks on whole `u64` words; see H. S. Warren, *Hacker's Delight*, 2nd ed.,
//! section 7-3). That is `6 · 32` masked swaps per 4096 bits instead of 4096 single-bit moves.
//!
//! Bit order is LSB-first everywhere: bit `i` of a column stored as `u64` words is bit `i % 64`
//! of word `i / 64`; bit `j` of a row [`Block`] is bit `j` of its `u128`.

use crate::block::Block;

/// One swap stage of width `W`: for every row `k` with bit `W` clear, exchanges the high `W`
/// bits of each `2W`-bit group of `a[k]` with the low `W` bits of the same group of `a[k + W]`.
#[inline(always)]
fn stage<const W: usize>(a: &mut [u64; 64], mask: u64) {
    for blk in a.chunks_exact_mut(2 * W) {
        let (lo, hi) = blk.split_at_mut(W);
        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
            let t = ((*x >> W) ^ *y) & mask;
            *x ^= t << W;
            *y ^= t;
        }
    }
}

/// Transposes a 64 × 64 bit matrix in place: afterwards bit `c` of `a[r]` is what bit `r` of
/// `a[c]` was.
#[inline]
pub fn transpose64(a: &mut [u64; 64]) {
    stage::<32>(a, 0x0000_0000_FFFF_FFFF);
    stage::<16>(a, 0x0000_FFFF_0000_FFFF);
    stage::<8>(a, 0x00FF_00FF_00FF_00FF);
    stage::<4>(a, 0x0F0F_0F0F_0F0F_0F0F);
    stage::<2>(a, 0x3333_3333_3333_3333);
    stage::<1>(a, 0x5555_5555_5555_5555);
}

/// Transposes a `128 × m` bit matrix given by columns into its `m` rows.
///
/// `cols` holds 128 columns one after another, each `m` bits long as `m / 64` words. Row `i` of
/// the result has bit `j` equal to bit `i` of column `j`. `m` must be a multiple of 64.
pub fn cols_to_rows(cols: &[u64], m: usize) -> Vec<Block> {
    let mut out = vec![Block::ZERO; m];
    cols_to_rows_into(cols, m, &mut out);
    out
}

/// [`cols_to_rows`] writing into `out` (length `m`).
pub fn cols_to_rows_into(cols: &[u64], m: usize, out: &mut [Block]) {
    cols_to_rows_strided(cols, m / 64, m, out);
}

/// [`cols_to_rows_into`] for columns stored `stride` words apart (`stride >= m / 64`). A stride
/// that is not a multiple of a large power of two avoids cache-set conflicts when the tiles
/// gather one word from each of 64 columns.
pub fn cols_to_rows_strided(cols: &[u64], stride: usize, m: usize, out: &mut [Block]) {
    assert_eq!(m % 64, 0, "cols_to_rows: m = {m} is not a multiple of 64");
    let words = m / 64;
    assert!(
        stride >= words,
        "cols_to_rows: stride {stride} < {words} words"
    );
    assert!(
        words == 0 || cols.len() >= 127 * stride + words,
        "cols_to_rows: column data too short"
    );
    assert_eq!(out.len(), m, "cols_to_rows: wrong output length");
    let mut lo = [0u64; 64];
    let mut hi = [0u64; 64];
    for g in 0..words {
        for r in 0..64 {
            lo[r] = cols[r * stride + g];
            hi[r] = cols[(64 + r) * stride + g];
        }
        transpose64(&mut lo);
        transpose64(&mut hi);
        for ((o, &l), &h) in out[64 * g..64 * (g + 1)].iter_mut().zip(&lo).zip(&hi) {
            *o = Block(l as u128 | ((h as u128) << 64));
        }
    }
}

/// The inverse of [`cols_to_rows`]: `m` rows of 128 bits to 128 columns of `m / 64` words each.
/// `rows.len()` must be a multiple of 64.
pub fn rows_to_cols(rows: &[Block]) -> Vec<u64> {
    let m = rows.len();
    assert_eq!(m % 64, 0, "rows_to_cols: {m} rows is not a multiple of 64");
    let words = m / 64;
    let mut cols = vec![0u64; 128 * words];
    let mut lo = [0u64; 64];
    let mut hi = [0u64; 64];
    for g in 0..words {
        for (i, r) in rows[64 * g..64 * (g + 1)].iter().enumerate() {
            lo[i] = r.0 as u64;
            hi[i] = (r.0 >> 64) as u64;
        }
        transpose64(&mut lo);
        transpose64(&mut hi);
        for r in 0..64 {
            cols[r * words + g] = lo[r];
            cols[(64 + r) * words + g] = hi[r];
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;
    use rand_core::Rng;

    fn naive64(a: &[u64; 64]) -> [u64; 64] {
        let mut t = [0u64; 64];
        for (r, row) in a.iter().enumerate() {
            for (c, tc) in t.iter_mut().enumerate() {
                *tc |= ((row >> c) & 1) << r;
            }
        }
        t
    }

    #[test]
    fn transpose64_matches_naive() {
        let mut prg = Prg::from_u64(1);
        for _ in 0..20 {
            let mut a = [0u64; 64];
            a.iter_mut().for_each(|w| *w = prg.next_u64());
            let want = naive64(&a);
            let mut got = a;
            transpose64(&mut got);
            assert_eq!(got, want);
            transpose64(&mut got);
            assert_eq!(got, a, "transpose is an involution");
        }
        // A single set bit moves to the mirrored position.
        let mut a = [0u64; 64];
        a[3] = 1 << 17;
        transpose64(&mut a);
        let mut want = [0u64; 64];
        want[17] = 1 << 3;
        assert_eq!(a, want);
    }

    #[test]
    fn cols_to_rows_matches_naive() {
        let mut prg = Prg::from_u64(2);
        for m in [0usize, 64, 128, 192, 1024] {
            let words = m / 64;
            let cols: Vec<u64> = (0..128 * words).map(|_| prg.next_u64()).collect();
            let rows = cols_to_rows(&cols, m);
            assert_eq!(rows.len(), m);
            for (i, row) in rows.iter().enumerate() {
                for j in 0..128 {
                    let col_bit = (cols[j * words + i / 64] >> (i % 64)) & 1;
                    let row_bit = ((row.0 >> j) & 1) as u64;
                    assert_eq!(row_bit, col_bit, "row {i} col {j} (m = {m})");
                }
            }
            assert_eq!(rows_to_cols(&rows), cols);
        }
    }
}
