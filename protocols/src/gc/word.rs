//! Word gadgets: signed two's-complement words of any width `l` in `1..=64`, as `Vec<Wire>`
//! least significant bit first. Every gadget is a generic function over [`Backend`], so it
//! runs in plaintext ([`Plain`](super::Plain)), is counted ([`Count`](super::Count)) and is
//! garbled with the same code.
//!
//! AND-gate costs (`l` the width; XOR and NOT are free, and so is an AND with a public constant
//! input, which every backend folds):
//!
//! | gadget | ANDs | AND depth |
//! |---|---|---|
//! | [`add`], [`sub`] (mod 2^l) | `l − 1` | `l − 1` |
//! | [`neg`] | `max(l − 2, 0)` | `max(l − 2, 0)` |
//! | [`lt_unsigned`], [`lt_signed`] | `l` | `l` |
//! | [`eq`] | `l − 1` | `⌈log2 l⌉` |
//! | [`mux`] | `l` | `1` |
//! | [`max2`] | `2l` | `l + 1` |
//! | [`max_many`] of `n` words | `2l(n − 1)` | `(l + 1)⌈log2 n⌉` |
//! | [`argmax`] of `n` words, index width `k = max(1, ⌈log2 n⌉)` | `2l(n − 1) + I(n)` (`I(n) = n − k − 1` for `n = 2^k`, at most `k(n − 1)`) | `(l + 1)⌈log2 n⌉` |
//! | [`shl`], [`shr_logical`], [`shr_arith`], [`sign_extend`], [`truncate`] | `0` | `0` |
//! | [`clip`] to constants | at most `4l − 2` (depends on the bounds) | `2l + 2` |
//! | [`mul`] (low `l` bits) | `l² − l + 1` | |
//!
//! The `_many` variants apply a gadget to many word pairs at once: the same gate count times
//! the number of pairs, but the independent gates of one bit position go through one bulk
//! [`Backend::and_n`], which is what makes garbling fast. Addition uses the ripple-carry
//! recurrence `c_{i+1} = c_i ⊕ ((x_i ⊕ c_i) ∧ (y_i ⊕ c_i))` (one AND per carry); `x < y`
//! (unsigned) is the negated carry out of `x + ¬y + 1`, and the signed comparison flips both
//! sign bits first. Ties in [`argmax`] go to the lowest index.

use super::{Backend, GcError};

/// Returns a usage error unless `l` is a valid width.
fn check_width(l: usize, what: &str) -> Result<(), GcError> {
    if (1..=64).contains(&l) {
        Ok(())
    } else {
        Err(GcError::usage(format!(
            "{what}: width {l} is not in 1..=64"
        )))
    }
}

fn check_pairs<W>(xs: &[Vec<W>], ys: &[Vec<W>], what: &str) -> Result<usize, GcError> {
    if xs.len() != ys.len() {
        return Err(GcError::usage(format!(
            "{what}: {} left operands and {} right operands",
            xs.len(),
            ys.len()
        )));
    }
    let l = xs.first().map_or(1, |x| x.len());
    for (x, y) in xs.iter().zip(ys) {
        if x.len() != l || y.len() != l {
            return Err(GcError::usage(format!(
                "{what}: operands have different widths ({}, {}, {l})",
                x.len(),
                y.len()
            )));
        }
    }
    check_width(l, what)?;
    Ok(l)
}

/// The constant word holding the low `width` bits of `value`.
pub fn constant<B: Backend>(b: &mut B, value: u64, width: usize) -> Vec<B::Wire> {
    (0..width)
        .map(|i| b.constant((value >> i) & 1 == 1))
        .collect()
}

/// Carries `c_0 ..= c_upto` of `x[k] + y[k] + cin[k]` for all `k` in lockstep, `upto` ANDs
/// per word.
async fn carries<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
    cin: Vec<B::Wire>,
    upto: usize,
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    let mut out = Vec::with_capacity(upto + 1);
    let mut c = cin;
    let mut t1 = Vec::with_capacity(xs.len());
    let mut t2 = Vec::with_capacity(xs.len());
    for i in 0..upto {
        t1.clear();
        t2.clear();
        for k in 0..xs.len() {
            t1.push(b.xor(xs[k][i], c[k]));
            t2.push(b.xor(ys[k][i], c[k]));
        }
        let a = b.and_n(&t1, &t2).await?;
        let next: Vec<B::Wire> = c.iter().zip(&a).map(|(&ck, &ak)| b.xor(ck, ak)).collect();
        out.push(std::mem::replace(&mut c, next));
    }
    out.push(c);
    Ok(out)
}

/// `x[k] + y[k] + cin` mod 2^l for all `k`.
async fn add_with_carry<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
    cin: bool,
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    let l = check_pairs(xs, ys, "add")?;
    let c0 = vec![b.constant(cin); xs.len()];
    let c = carries(b, xs, ys, c0, l - 1).await?;
    Ok((0..xs.len())
        .map(|k| {
            (0..l)
                .map(|i| {
                    let s = b.xor(xs[k][i], ys[k][i]);
                    b.xor(s, c[i][k])
                })
                .collect()
        })
        .collect())
}

/// `x[k] + y[k]` mod 2^l for all `k`: `l − 1` ANDs each.
pub async fn add_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    add_with_carry(b, xs, ys, false).await
}

/// `x + y` mod 2^l: `l − 1` ANDs.
pub async fn add<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<Vec<B::Wire>, B::Error> {
    Ok(add_many(b, &[x.to_vec()], &[y.to_vec()]).await?.remove(0))
}

/// `x[k] − y[k]` mod 2^l for all `k`: `l − 1` ANDs each.
pub async fn sub_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    check_pairs(xs, ys, "sub")?;
    let nys: Vec<Vec<B::Wire>> = ys.iter().map(|y| b.not_n(y)).collect();
    add_with_carry(b, xs, &nys, true).await
}

/// `x − y` mod 2^l: `l − 1` ANDs.
pub async fn sub<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<Vec<B::Wire>, B::Error> {
    Ok(sub_many(b, &[x.to_vec()], &[y.to_vec()]).await?.remove(0))
}

/// `−x` mod 2^l (`¬x + 1`): `max(l − 2, 0)` ANDs.
pub async fn neg<B: Backend>(b: &mut B, x: &[B::Wire]) -> Result<Vec<B::Wire>, B::Error> {
    let l = x.len();
    check_width(l, "neg")?;
    let a = b.not_n(x);
    // sum_i = a_i ⊕ c_i with c_0 = 1, c_1 = a_0, c_{i+1} = a_i ∧ c_i.
    let mut out = Vec::with_capacity(l);
    out.push(x[0]);
    let mut c = a[0];
    for (i, &ai) in a.iter().enumerate().skip(1) {
        out.push(b.xor(ai, c));
        if i + 1 < l {
            c = b.and(ai, c).await?;
        }
    }
    Ok(out)
}

/// `x[k] < y[k]` for all `k` (signed or unsigned) as the negated carry out of
/// `x + ¬y + 1`, with the sign bits flipped for a signed comparison; all words in lockstep,
/// without copying them.
async fn lt_lockstep<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
    signed: bool,
) -> Result<Vec<B::Wire>, B::Error> {
    let l = check_pairs(xs, ys, "lt")?;
    let one = b.constant(true);
    let mut c = vec![one; xs.len()];
    let mut t1 = Vec::with_capacity(xs.len());
    let mut t2 = Vec::with_capacity(xs.len());
    for i in 0..l {
        t1.clear();
        t2.clear();
        let flip = signed && i + 1 == l;
        for k in 0..xs.len() {
            // Operands x_i and ¬y_i; flipping both sign bits gives ¬x_i and y_i.
            let (xi, yi) = if flip {
                (b.not(xs[k][i]), ys[k][i])
            } else {
                (xs[k][i], b.not(ys[k][i]))
            };
            t1.push(b.xor(xi, c[k]));
            t2.push(b.xor(yi, c[k]));
        }
        let a = b.and_n(&t1, &t2).await?;
        for (ck, ak) in c.iter_mut().zip(a) {
            *ck = b.xor(*ck, ak);
        }
    }
    Ok(b.not_n(&c))
}

/// Unsigned `x[k] < y[k]` for all `k`: `l` ANDs each.
pub async fn lt_unsigned_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<B::Wire>, B::Error> {
    lt_lockstep(b, xs, ys, false).await
}

/// Unsigned `x < y`: `l` ANDs.
pub async fn lt_unsigned<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<B::Wire, B::Error> {
    Ok(lt_unsigned_many(b, &[x.to_vec()], &[y.to_vec()]).await?[0])
}

/// Signed `x[k] < y[k]` for all `k`: `l` ANDs each.
pub async fn lt_signed_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<B::Wire>, B::Error> {
    lt_lockstep(b, xs, ys, true).await
}

/// Signed `x < y`: `l` ANDs.
pub async fn lt_signed<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<B::Wire, B::Error> {
    Ok(lt_signed_many(b, &[x.to_vec()], &[y.to_vec()]).await?[0])
}

/// `x[k] == y[k]` for all `k`: `l − 1` ANDs each, depth `⌈log2 l⌉`.
pub async fn eq_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<B::Wire>, B::Error> {
    check_pairs(xs, ys, "eq")?;
    let mut level: Vec<Vec<B::Wire>> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&a, &c)| {
                    let d = b.xor(a, c);
                    b.not(d)
                })
                .collect()
        })
        .collect();
    while level.first().is_some_and(|v| v.len() > 1) {
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for v in &level {
            for p in v.chunks_exact(2) {
                l.push(p[0]);
                r.push(p[1]);
            }
        }
        let a = b.and_n(&l, &r).await?;
        let mut it = a.into_iter();
        for v in level.iter_mut() {
            let odd = (v.len() % 2 == 1).then(|| v[v.len() - 1]);
            let mut next: Vec<B::Wire> = it.by_ref().take(v.len() / 2).collect();
            next.extend(odd);
            *v = next;
        }
    }
    Ok(level.into_iter().map(|v| v[0]).collect())
}

/// `x == y`: `l − 1` ANDs.
pub async fn eq<B: Backend>(b: &mut B, x: &[B::Wire], y: &[B::Wire]) -> Result<B::Wire, B::Error> {
    Ok(eq_many(b, &[x.to_vec()], &[y.to_vec()]).await?[0])
}

/// `s[k] ? t[k] : f[k]` for all `k`: `l` ANDs each, all in one bulk AND.
pub async fn mux_many<B: Backend>(
    b: &mut B,
    s: &[B::Wire],
    t: &[Vec<B::Wire>],
    f: &[Vec<B::Wire>],
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    let l = check_pairs(t, f, "mux")?;
    if s.len() != t.len() {
        return Err(GcError::usage(format!(
            "mux: {} selectors for {} word pairs",
            s.len(),
            t.len()
        ))
        .into());
    }
    let mut sel = Vec::with_capacity(s.len() * l);
    let mut diff = Vec::with_capacity(s.len() * l);
    for k in 0..s.len() {
        for i in 0..l {
            sel.push(s[k]);
            diff.push(b.xor(t[k][i], f[k][i]));
        }
    }
    let a = b.and_n(&sel, &diff).await?;
    Ok((0..s.len())
        .map(|k| (0..l).map(|i| b.xor(f[k][i], a[k * l + i])).collect())
        .collect())
}

/// `s ? t : f`: `l` ANDs.
pub async fn mux<B: Backend>(
    b: &mut B,
    s: B::Wire,
    t: &[B::Wire],
    f: &[B::Wire],
) -> Result<Vec<B::Wire>, B::Error> {
    Ok(mux_many(b, &[s], &[t.to_vec()], &[f.to_vec()])
        .await?
        .remove(0))
}

/// Signed `max(x[k], y[k])` for all `k`: `2l` ANDs each.
pub async fn max2_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    ys: &[Vec<B::Wire>],
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    let s = lt_signed_many(b, xs, ys).await?;
    mux_many(b, &s, ys, xs).await
}

/// Signed `max(x, y)`: `2l` ANDs.
pub async fn max2<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<Vec<B::Wire>, B::Error> {
    Ok(max2_many(b, &[x.to_vec()], &[y.to_vec()]).await?.remove(0))
}

fn split_pairs<T: Clone>(v: &[T]) -> (Vec<T>, Vec<T>, Option<T>) {
    let mut l = Vec::with_capacity(v.len() / 2);
    let mut r = Vec::with_capacity(v.len() / 2);
    for p in v.chunks_exact(2) {
        l.push(p[0].clone());
        r.push(p[1].clone());
    }
    let odd = (v.len() % 2 == 1).then(|| v[v.len() - 1].clone());
    (l, r, odd)
}

/// Signed maximum of `n ≥ 1` words by a balanced tree: `2l(n − 1)` ANDs, each tree level in
/// one bulk comparison and one bulk multiplexer.
pub async fn max_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
) -> Result<Vec<B::Wire>, B::Error> {
    if xs.is_empty() {
        return Err(GcError::usage("max_many: no words").into());
    }
    let mut level = xs.to_vec();
    while level.len() > 1 {
        let (l, r, odd) = split_pairs(&level);
        let mut next = max2_many(b, &l, &r).await?;
        next.extend(odd);
        level = next;
    }
    Ok(level.remove(0))
}

/// Width of the index word [`argmax`] returns for `n` words: `max(1, ⌈log2 n⌉)`.
pub fn index_width(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()).max(1) as usize
}

/// Signed maximum of `n ≥ 1` words and its index (an unsigned word of
/// [`index_width`]`(n)` bits; ties go to the lowest index): `2l(n − 1)` ANDs for the values
/// plus the index multiplexers, whose inputs are public constants at the first tree level and
/// partly public above it (`n − k − 1` ANDs for `n = 2^k`, at most `k(n − 1)`).
pub async fn argmax<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
) -> Result<(Vec<B::Wire>, Vec<B::Wire>), B::Error> {
    if xs.is_empty() {
        return Err(GcError::usage("argmax: no words").into());
    }
    let k = index_width(xs.len());
    let mut vals = xs.to_vec();
    let mut idx: Vec<Vec<B::Wire>> = (0..xs.len()).map(|i| constant(b, i as u64, k)).collect();
    while vals.len() > 1 {
        let (lv, rv, ov) = split_pairs(&vals);
        let (li, ri, oi) = split_pairs(&idx);
        // Right wins only if strictly larger, so ties keep the lower index.
        let s = lt_signed_many(b, &lv, &rv).await?;
        let mut nv = mux_many(b, &s, &rv, &lv).await?;
        let mut ni = mux_many(b, &s, &ri, &li).await?;
        nv.extend(ov);
        ni.extend(oi);
        vals = nv;
        idx = ni;
    }
    Ok((vals.remove(0), idx.remove(0)))
}

/// Logical shift left by a constant (zeros enter at the bottom): free.
pub fn shl<B: Backend>(b: &mut B, x: &[B::Wire], s: usize) -> Vec<B::Wire> {
    let zero = b.constant(false);
    (0..x.len())
        .map(|i| if i >= s { x[i - s] } else { zero })
        .collect()
}

/// Logical shift right by a constant (zeros enter at the top): free.
pub fn shr_logical<B: Backend>(b: &mut B, x: &[B::Wire], s: usize) -> Vec<B::Wire> {
    let zero = b.constant(false);
    (0..x.len())
        .map(|i| x.get(i + s).copied().unwrap_or(zero))
        .collect()
}

/// Arithmetic shift right by a constant (copies of the sign bit enter at the top): free.
pub fn shr_arith<B: Backend>(x: &[B::Wire], s: usize) -> Vec<B::Wire> {
    match x.last() {
        None => Vec::new(),
        Some(&m) => (0..x.len())
            .map(|i| x.get(i + s).copied().unwrap_or(m))
            .collect(),
    }
}

/// Sign-extends `x` to `width ≥ x.len()` bits: free.
pub fn sign_extend<B: Backend>(x: &[B::Wire], width: usize) -> Result<Vec<B::Wire>, GcError> {
    check_width(width, "sign_extend")?;
    let Some(&m) = x.last() else {
        return Err(GcError::usage("sign_extend: empty word"));
    };
    if width < x.len() {
        return Err(GcError::usage(format!(
            "sign_extend: target width {width} is below the word's width {}",
            x.len()
        )));
    }
    let mut v = x.to_vec();
    v.resize(width, m);
    Ok(v)
}

/// The low `width ≤ x.len()` bits of `x` (reduction mod 2^width): free.
pub fn truncate<B: Backend>(x: &[B::Wire], width: usize) -> Result<Vec<B::Wire>, GcError> {
    check_width(width, "truncate")?;
    if width > x.len() {
        return Err(GcError::usage(format!(
            "truncate: target width {width} exceeds the word's width {}",
            x.len()
        )));
    }
    Ok(x[..width].to_vec())
}

fn fits_signed(v: i64, l: usize) -> bool {
    l == 64 || (v >= -(1i64 << (l - 1)) && v < (1i64 << (l - 1)))
}

/// Clips each signed word to the constant range `[lo, hi]` (`lo ≤ hi`, both representable
/// in `l` bits): at most `4l − 2` ANDs each (comparisons with constants fold some gates).
pub async fn clip_many<B: Backend>(
    b: &mut B,
    xs: &[Vec<B::Wire>],
    lo: i64,
    hi: i64,
) -> Result<Vec<Vec<B::Wire>>, B::Error> {
    let Some(l) = xs.first().map(|x| x.len()) else {
        return Ok(Vec::new());
    };
    check_width(l, "clip")?;
    if lo > hi || !fits_signed(lo, l) || !fits_signed(hi, l) {
        return Err(GcError::usage(format!(
            "clip: the range [{lo}, {hi}] is empty or not representable in {l} bits"
        ))
        .into());
    }
    let los: Vec<Vec<B::Wire>> = xs.iter().map(|_| constant(b, lo as u64, l)).collect();
    let his: Vec<Vec<B::Wire>> = xs.iter().map(|_| constant(b, hi as u64, l)).collect();
    let below = lt_signed_many(b, xs, &los).await?;
    let y = mux_many(b, &below, &los, xs).await?;
    let above = lt_signed_many(b, &his, &y).await?;
    mux_many(b, &above, &his, &y).await
}

/// Clips a signed word to the constant range `[lo, hi]`: at most `4l − 2` ANDs.
pub async fn clip<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    lo: i64,
    hi: i64,
) -> Result<Vec<B::Wire>, B::Error> {
    let mut v = clip_many(b, &[x.to_vec()], lo, hi).await?;
    if v.is_empty() {
        return Err(GcError::usage("clip: empty word").into());
    }
    Ok(v.remove(0))
}

/// `x · y` mod 2^l (the low `l` bits of the product, the same for signed and unsigned words)
/// by schoolbook shift-and-add: `l² − l + 1` ANDs. Expensive; use only where unavoidable.
pub async fn mul<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<Vec<B::Wire>, B::Error> {
    let l = check_pairs(&[x.to_vec()], &[y.to_vec()], "mul")?;
    let mut acc = b.and_n(x, &vec![y[0]; l]).await?;
    for i in 1..l {
        let w = l - i;
        let pp = b.and_n(&x[..w], &vec![y[i]; w]).await?;
        let hi = add(b, &acc[i..], &pp).await?;
        acc[i..].copy_from_slice(&hi);
    }
    Ok(acc)
}
