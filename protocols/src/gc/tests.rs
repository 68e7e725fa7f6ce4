//! Tests: every gadget under `Plain` against native integers, under `Count` against its
//! formula, under garbler + evaluator (over the in-memory channel) against `Plain`; the
//! session checks; A2Y / Y2A.

use rand_core::Rng;

use super::word::{self, index_width};
use super::*;
use crate::block::Block;
use crate::channel::{Channel, FramedChannel, mem};
use crate::convert::{A2yParams, a2y, y2a};
use crate::ot::ideal::{IdealCotReceiver, IdealCotSender, ideal_cot};
use crate::prg::Prg;

fn mask(l: usize) -> u64 {
    if l == 64 { u64::MAX } else { (1u64 << l) - 1 }
}

fn sext(v: u64, l: usize) -> i64 {
    let s = 64 - l as u32;
    ((v << s) as i64) >> s
}

fn to_bits(v: u64, l: usize) -> Vec<bool> {
    (0..l).map(|i| (v >> i) & 1 == 1).collect()
}

/// Boundary values of width `l`: 0, ±1, MIN, MIN+1, MAX, MAX−1 (as `l`-bit patterns).
fn boundaries(l: usize) -> Vec<u64> {
    let m = mask(l);
    let min = 1u64 << (l - 1);
    let max = min - 1;
    let mut v = vec![
        0,
        1 & m,
        m, // -1
        min,
        min.wrapping_add(1) & m,
        max,
        max.wrapping_sub(1) & m,
    ];
    v.sort_unstable();
    v.dedup();
    v
}

/// Operand pairs for width `l`: all pairs of boundary values plus `r` random pairs.
fn pairs(l: usize, r: usize, rng: &mut Prg) -> (Vec<u64>, Vec<u64>) {
    let bd = boundaries(l);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for &a in &bd {
        for &b in &bd {
            xs.push(a);
            ys.push(b);
        }
    }
    for _ in 0..r {
        xs.push(rng.next_u64() & mask(l));
        ys.push(rng.next_u64() & mask(l));
    }
    (xs, ys)
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Add,
    Sub,
    Neg,
    LtU,
    LtS,
    Eq,
    Mux,
    Max2,
    Shl(usize),
    ShrL(usize),
    ShrA(usize),
    SignExt(usize),
    Trunc(usize),
    Clip,
    Mul,
    MaxMany,
    Argmax,
}

const PAIR_OPS: [Op; 15] = [
    Op::Add,
    Op::Sub,
    Op::Neg,
    Op::LtU,
    Op::LtS,
    Op::Eq,
    Op::Mux,
    Op::Max2,
    Op::Shl(3),
    Op::ShrL(5),
    Op::ShrA(2),
    Op::SignExt(64),
    Op::Trunc(1),
    Op::Clip,
    Op::Mul,
];

/// Clip bounds for width `l`: roughly [−2^(l−2), 2^(l−3)] (within range for every width).
fn clip_bounds(l: usize) -> (i64, i64) {
    if l == 1 {
        return (-1, 0);
    }
    let lo = -(1i64 << (l - 2));
    let hi = if l >= 3 { 1i64 << (l - 3) } else { 0 };
    (lo, hi)
}

/// The expected output bits of `op` on native integers.
fn native(op: Op, l: usize, xs: &[u64], ys: &[u64]) -> Vec<bool> {
    let m = mask(l);
    let mut out = Vec::new();
    let word = |v: u64, w: usize| to_bits(v & mask(w), w);
    match op {
        Op::MaxMany | Op::Argmax => {
            let all: Vec<u64> = xs.iter().zip(ys).flat_map(|(&a, &b)| [a, b]).collect();
            let mut best = 0;
            for (i, &v) in all.iter().enumerate() {
                if sext(v, l) > sext(all[best], l) {
                    best = i;
                }
            }
            out.extend(word(all[best], l));
            if matches!(op, Op::Argmax) {
                out.extend(word(best as u64, index_width(all.len())));
            }
            return out;
        }
        _ => {}
    }
    for (&x, &y) in xs.iter().zip(ys) {
        let (sx, sy) = (sext(x, l), sext(y, l));
        match op {
            Op::Add => out.extend(word(x.wrapping_add(y), l)),
            Op::Sub => out.extend(word(x.wrapping_sub(y), l)),
            Op::Neg => out.extend(word(x.wrapping_neg(), l)),
            Op::LtU => out.push((x & m) < (y & m)),
            Op::LtS => out.push(sx < sy),
            Op::Eq => out.push(x == y),
            Op::Mux => out.extend(word(if x & 1 == 1 { x } else { y }, l)),
            Op::Max2 => out.extend(word(sx.max(sy) as u64, l)),
            Op::Shl(s) => out.extend(word(x.checked_shl(s as u32).unwrap_or(0), l)),
            Op::ShrL(s) => out.extend(word(x.checked_shr(s as u32).unwrap_or(0), l)),
            Op::ShrA(s) => out.extend(word((sx >> s.min(63)) as u64, l)),
            Op::SignExt(w) => out.extend(word(sx as u64, w)),
            Op::Trunc(w) => out.extend(word(x, w)),
            Op::Clip => {
                let (lo, hi) = clip_bounds(l);
                out.extend(word(sx.clamp(lo, hi) as u64, l))
            }
            Op::Mul => out.extend(word(x.wrapping_mul(y), l)),
            Op::MaxMany | Op::Argmax => unreachable!(),
        }
    }
    out
}

/// Runs `op` on garbler-owned `xs` and evaluator-owned `ys` (`m` values of width `l` each)
/// and reveals the outputs to both parties.
async fn run_op<B: Backend<Error = GcError>>(
    b: &mut B,
    op: Op,
    l: usize,
    m: usize,
    xs: Option<&[u64]>,
    ys: Option<&[u64]>,
) -> Result<Option<Vec<bool>>, GcError> {
    let xb: Option<Vec<bool>> = xs.map(|v| v.iter().flat_map(|&x| to_bits(x, l)).collect());
    let yb: Option<Vec<bool>> = ys.map(|v| v.iter().flat_map(|&y| to_bits(y, l)).collect());
    let xw = b.input(Role::Garbler, m * l, xb.as_deref()).await?;
    let yw = b.input(Role::Evaluator, m * l, yb.as_deref()).await?;
    let xw: Vec<Vec<B::Wire>> = xw.chunks(l).map(|c| c.to_vec()).collect();
    let yw: Vec<Vec<B::Wire>> = yw.chunks(l).map(|c| c.to_vec()).collect();
    let mut out: Vec<B::Wire> = Vec::new();
    match op {
        Op::MaxMany | Op::Argmax => {
            let all: Vec<Vec<B::Wire>> = xw
                .iter()
                .zip(&yw)
                .flat_map(|(a, c)| [a.clone(), c.clone()])
                .collect();
            if matches!(op, Op::MaxMany) {
                out.extend(word::max_many(b, &all).await?);
            } else {
                let (v, i) = word::argmax(b, &all).await?;
                out.extend(v);
                out.extend(i);
            }
        }
        _ => {
            for (x, y) in xw.iter().zip(&yw) {
                match op {
                    Op::Add => out.extend(word::add(b, x, y).await?),
                    Op::Sub => out.extend(word::sub(b, x, y).await?),
                    Op::Neg => out.extend(word::neg(b, x).await?),
                    Op::LtU => out.push(word::lt_unsigned(b, x, y).await?),
                    Op::LtS => out.push(word::lt_signed(b, x, y).await?),
                    Op::Eq => out.push(word::eq(b, x, y).await?),
                    Op::Mux => out.extend(word::mux(b, x[0], x, y).await?),
                    Op::Max2 => out.extend(word::max2(b, x, y).await?),
                    Op::Shl(s) => out.extend(word::shl(b, x, s)),
                    Op::ShrL(s) => out.extend(word::shr_logical(b, x, s)),
                    Op::ShrA(s) => out.extend(word::shr_arith::<B>(x, s)),
                    Op::SignExt(w) => out.extend(word::sign_extend::<B>(x, w)?),
                    Op::Trunc(w) => out.extend(word::truncate::<B>(x, w)?),
                    Op::Clip => {
                        let (lo, hi) = clip_bounds(l);
                        out.extend(word::clip(b, x, lo, hi).await?)
                    }
                    Op::Mul => out.extend(word::mul(b, x, y).await?),
                    Op::MaxMany | Op::Argmax => unreachable!(),
                }
            }
        }
    }
    b.reveal(&out, RevealTo::Both).await
}

async fn plain(op: Op, l: usize, xs: &[u64], ys: &[u64]) -> Vec<bool> {
    run_op(&mut Plain, op, l, xs.len(), Some(xs), Some(ys))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn gadgets_plain_match_native() {
    let mut rng = Prg::from_u64(1);
    for l in 1..=64 {
        let (xs, ys) = pairs(l, 20, &mut rng);
        for op in PAIR_OPS {
            let got = plain(op, l, &xs, &ys).await;
            let want = native(op, l, &xs, &ys);
            assert_eq!(got, want, "{op:?} width {l}");
        }
        for n in [1usize, 2, 3, 5, 8, 13] {
            let xs: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask(l)).collect();
            let mut ys: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask(l)).collect();
            // Ties: repeat an earlier value so the lowest index must win.
            ys[n - 1] = xs[0];
            for op in [Op::MaxMany, Op::Argmax] {
                assert_eq!(
                    plain(op, l, &xs, &ys).await,
                    native(op, l, &xs, &ys),
                    "{op:?} width {l} n {n}"
                );
            }
        }
        // Boundary values as a max/argmax list.
        let bd = boundaries(l);
        let half = bd.len() / 2;
        for op in [Op::MaxMany, Op::Argmax] {
            let (a, c) = (&bd[..half.max(1)], &bd[bd.len() - half.max(1)..]);
            assert_eq!(
                plain(op, l, a, c).await,
                native(op, l, a, c),
                "{op:?} width {l}"
            );
        }
    }
}

/// Counts `op` on one pair (or on `n` words for the many-word ops).
async fn count(op: Op, l: usize, n: usize) -> GateCounts {
    let mut c = Count::new();
    let xw = c.input(Role::Garbler, n * l, None).await.unwrap();
    let yw = c.input(Role::Evaluator, n * l, None).await.unwrap();
    let x = &xw[..l];
    let y = &yw[..l];
    c.reset();
    match op {
        Op::Add => drop(word::add(&mut c, x, y).await.unwrap()),
        Op::Sub => drop(word::sub(&mut c, x, y).await.unwrap()),
        Op::Neg => drop(word::neg(&mut c, x).await.unwrap()),
        Op::LtU => drop(word::lt_unsigned(&mut c, x, y).await.unwrap()),
        Op::LtS => drop(word::lt_signed(&mut c, x, y).await.unwrap()),
        Op::Eq => drop(word::eq(&mut c, x, y).await.unwrap()),
        Op::Mux => drop(word::mux(&mut c, x[0], x, y).await.unwrap()),
        Op::Max2 => drop(word::max2(&mut c, x, y).await.unwrap()),
        Op::Clip => {
            let (lo, hi) = clip_bounds(l);
            drop(word::clip(&mut c, x, lo, hi).await.unwrap())
        }
        Op::Mul => drop(word::mul(&mut c, x, y).await.unwrap()),
        Op::MaxMany | Op::Argmax => {
            let all: Vec<Vec<CountWire>> = xw.chunks(l).map(|w| w.to_vec()).collect();
            if matches!(op, Op::MaxMany) {
                drop(word::max_many(&mut c, &all).await.unwrap());
            } else {
                drop(word::argmax(&mut c, &all).await.unwrap());
            }
        }
        Op::Shl(s) => drop(word::shl(&mut c, x, s)),
        Op::ShrL(s) => drop(word::shr_logical(&mut c, x, s)),
        Op::ShrA(s) => drop(word::shr_arith::<Count>(x, s)),
        Op::SignExt(w) => drop(word::sign_extend::<Count>(x, w).unwrap()),
        Op::Trunc(w) => drop(word::truncate::<Count>(x, w).unwrap()),
    }
    c.counts()
}

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// ANDs of the index multiplexers of `argmax` over `n` words, by following which index bits
/// are public constants (an AND with a public bit is free): an independent model of the tree
/// in `word::argmax` at the level of bit values, not wires.
pub(super) fn argmax_index_ands(n: usize) -> u64 {
    let k = index_width(n);
    // Some(bit) = public constant, None = secret.
    let mut idx: Vec<Vec<Option<bool>>> = (0..n)
        .map(|i| (0..k).map(|j| Some((i >> j) & 1 == 1)).collect())
        .collect();
    let mut ands = 0;
    while idx.len() > 1 {
        let mut next = Vec::new();
        for p in idx.chunks(2) {
            if p.len() == 1 {
                next.push(p[0].clone());
                continue;
            }
            let (f, t) = (&p[0], &p[1]);
            let w = (0..k)
                .map(|j| match (t[j], f[j]) {
                    (Some(x), Some(y)) if x == y => Some(x),
                    (Some(_), Some(_)) => None, // f ⊕ sel, free
                    _ => {
                        ands += 1;
                        None
                    }
                })
                .collect();
            next.push(w);
        }
        idx = next;
    }
    ands
}

#[tokio::test]
async fn gadget_and_counts_match_formulas() {
    for l in 1..=64usize {
        let l64 = l as u64;
        let cases: [(Op, u64); 13] = [
            (Op::Add, l64 - 1),
            (Op::Sub, l64 - 1),
            (Op::Neg, l64.saturating_sub(2)),
            (Op::LtU, l64),
            (Op::LtS, l64),
            (Op::Eq, l64 - 1),
            (Op::Mux, l64),
            (Op::Max2, 2 * l64),
            (Op::Mul, l64 * l64 - l64 + 1),
            (Op::Shl(2), 0),
            (Op::ShrL(2), 0),
            (Op::ShrA(2), 0),
            (Op::SignExt(64), 0),
        ];
        for (op, want) in cases {
            assert_eq!(count(op, l, 1).await.ands, want, "{op:?} width {l}");
        }
        // Clipping compares with constants: the first AND of each comparison has a public
        // input, and more are free depending on the bounds' bits.
        let clip = count(Op::Clip, l, 1).await.ands;
        assert!(clip <= 4 * l64 - 2, "clip width {l}: {clip} ANDs");
        assert_eq!(count(Op::Add, l, 1).await.and_depth, (l - 1) as u32);
        assert_eq!(count(Op::LtS, l, 1).await.and_depth, l as u32);
        assert_eq!(count(Op::Eq, l, 1).await.and_depth, ceil_log2(l));
        assert_eq!(count(Op::Mux, l, 1).await.and_depth, 1);
        for n in [1usize, 2, 3, 7, 16, 33] {
            let k = index_width(n) as u64;
            let nn = n as u64;
            let mx = count(Op::MaxMany, l, n).await;
            assert_eq!(mx.ands, 2 * l64 * (nn - 1), "max of {n} width {l}");
            assert_eq!(
                mx.and_depth,
                (l as u32 + 1) * ceil_log2(n),
                "max depth {n} {l}"
            );
            let am = count(Op::Argmax, l, n).await;
            assert_eq!(
                am.ands,
                2 * l64 * (nn - 1) + argmax_index_ands(n),
                "argmax of {n} width {l}"
            );
            assert!(argmax_index_ands(n) <= k * (nn - 1));
            if n >= 2 && n.is_power_of_two() {
                assert_eq!(argmax_index_ands(n), nn - k - 1, "argmax index of {n}");
            }
        }
    }
}

fn cot(seed: u8) -> (IdealCotSender, IdealCotReceiver) {
    ideal_cot([seed; 32], Block(0x1234_5678_9abc_def0_0fed_cba9_8765_4321))
}

/// Runs `op` with the garbler on one end of an in-memory pair and the evaluator on the other;
/// returns both parties' revealed outputs. Checks that the garbler garbled exactly as many
/// AND gates as [`Count`] counts for the same circuit (constant folding agrees).
async fn two_party(
    op: Op,
    l: usize,
    xs: &[u64],
    ys: &[u64],
    batch: usize,
) -> (Vec<bool>, Vec<bool>) {
    let (mut c0, mut c1) = mem::pair();
    let (mut s, mut r) = cot(7);
    let cfg = GcConfig {
        circuit_id: 42,
        batch_ands: batch,
    };
    let m = xs.len();
    let mut counter = Count::new();
    run_op(&mut counter, op, l, m, None, None).await.unwrap();
    let (g, e) = tokio::join!(
        async {
            let mut rng = Prg::from_u64(9);
            let mut g = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
            let out = run_op(&mut g, op, l, m, Some(xs), None).await?;
            let ands = g.finish().await?;
            assert_eq!(
                ands,
                counter.ands(),
                "{op:?} width {l}: garbled vs counted ANDs"
            );
            Ok::<_, GcError>(out)
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let out = run_op(&mut e, op, l, m, None, Some(ys)).await?;
            e.finish().await?;
            Ok::<_, GcError>(out)
        }
    );
    (g.unwrap().unwrap(), e.unwrap().unwrap())
}

#[tokio::test]
async fn gadgets_garbled_match_plain() {
    let mut rng = Prg::from_u64(2);
    let widths = [1usize, 2, 3, 5, 8, 13, 16, 31, 32, 33, 47, 63, 64];
    for (wi, &l) in widths.iter().enumerate() {
        let (xs, ys) = pairs(l, 6, &mut rng);
        // Batch sizes around the chunk boundaries: 1 table, odd, and the default.
        let batch = [1usize, 7, 16, 17, 4096][wi % 5];
        for op in PAIR_OPS {
            let want = plain(op, l, &xs, &ys).await;
            let (g, e) = two_party(op, l, &xs, &ys, batch).await;
            assert_eq!(g, want, "garbler {op:?} width {l} batch {batch}");
            assert_eq!(e, want, "evaluator {op:?} width {l} batch {batch}");
        }
        for n in [1usize, 3, 9] {
            let xs: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask(l)).collect();
            let mut ys: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask(l)).collect();
            ys[0] = xs[n - 1];
            for op in [Op::MaxMany, Op::Argmax] {
                let want = plain(op, l, &xs, &ys).await;
                let (g, e) = two_party(op, l, &xs, &ys, batch).await;
                assert_eq!(g, want, "garbler {op:?} width {l} n {n}");
                assert_eq!(e, want, "evaluator {op:?} width {l} n {n}");
            }
        }
    }
}

#[tokio::test]
async fn reveal_modes_and_shares() {
    let (mut c0, mut c1) = mem::pair();
    let (mut s, mut r) = cot(3);
    let cfg = GcConfig::new(5);
    let xv = [true, false, true, true, false, false, true, false, true];
    let yv = [false, false, true, false, true, true, true, false, false];
    let want: Vec<bool> = xv.iter().zip(&yv).map(|(a, b)| a & b).collect();
    let (g, e) = tokio::join!(
        async {
            let mut rng = Prg::from_u64(1);
            let mut g = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
            let x = g.input(Role::Garbler, 9, Some(&xv)).await?;
            let y = g.input(Role::Evaluator, 9, None).await?;
            let z = g.and_n(&x, &y).await?;
            let t = g.constant(true);
            let f = g.constant(false);
            let z1 = g.and(z[0], t).await?;
            let z2 = g.xor(z[1], t);
            let z3 = g.and(z[2], f).await?;
            let consts = vec![z1, z2, z3, t, f];
            let a = g.reveal(&z, RevealTo::Garbler).await?;
            let b = g.reveal(&z, RevealTo::Evaluator).await?;
            let c = g.reveal(&consts, RevealTo::Both).await?;
            let sh = g.share(&z)?;
            g.finish().await?;
            Ok::<_, GcError>((a, b, c, sh))
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let x = e.input(Role::Garbler, 9, None).await?;
            let y = e.input(Role::Evaluator, 9, Some(&yv)).await?;
            let z = e.and_n(&x, &y).await?;
            let t = e.constant(true);
            let f = e.constant(false);
            let z1 = e.and(z[0], t).await?;
            let z2 = e.xor(z[1], t);
            let z3 = e.and(z[2], f).await?;
            let consts = vec![z1, z2, z3, t, f];
            let a = e.reveal(&z, RevealTo::Garbler).await?;
            let b = e.reveal(&z, RevealTo::Evaluator).await?;
            let c = e.reveal(&consts, RevealTo::Both).await?;
            let sh = e.share(&z)?;
            e.finish().await?;
            Ok::<_, GcError>((a, b, c, sh))
        }
    );
    let (ga, gb, gc, gs) = g.unwrap();
    let (ea, eb, ec, es) = e.unwrap();
    assert_eq!(ga.unwrap(), want);
    assert!(gb.is_none() && ea.is_none());
    assert_eq!(eb.unwrap(), want);
    let cw = vec![want[0], !want[1], false, true, false];
    assert_eq!(gc.unwrap(), cw);
    assert_eq!(ec.unwrap(), cw);
    let xored: Vec<bool> = gs.iter().zip(&es).map(|(a, b)| a ^ b).collect();
    assert_eq!(xored, want);
}

/// Runs A2Y on shared values, then `f` on the words, then Y2A; returns the reconstructed
/// outputs (garbler share + evaluator share).
async fn a2y_y2a_roundtrip(values: &[i64], p: A2yParams, seed: u64) -> Vec<u64> {
    let mut rng = Prg::from_u64(seed);
    let gsh: Vec<u64> = values.iter().map(|_| rng.next_u64()).collect();
    let esh: Vec<u64> = values
        .iter()
        .zip(&gsh)
        .map(|(&v, &g)| (v as u64).wrapping_sub(g))
        .collect();
    let n = values.len();
    // Plain agrees with the two-party run.
    let words = a2y(&mut Plain, Some(&gsh), Some(&esh), n, p).await.unwrap();
    let plain_out = y2a(&mut Plain, &words, true).await.unwrap();
    let (mut c0, mut c1) = mem::pair();
    let (mut s, mut r) = cot(11);
    let cfg = GcConfig::new(77);
    let (g, e) = tokio::join!(
        async {
            let mut rng = Prg::from_u64(seed + 1);
            let mut g = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
            let w = a2y(&mut g, Some(&gsh), None, n, p).await?;
            let out = y2a(&mut g, &w, true).await?;
            g.finish().await?;
            Ok::<_, GcError>(out)
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let w = a2y(&mut e, None, Some(&esh), n, p).await?;
            let out = y2a(&mut e, &w, true).await?;
            e.finish().await?;
            Ok::<_, GcError>(out)
        }
    );
    let out: Vec<u64> = g
        .unwrap()
        .iter()
        .zip(e.unwrap())
        .map(|(a, b)| a.wrapping_add(b))
        .collect();
    assert_eq!(out, plain_out, "two-party A2Y/Y2A differs from Plain");
    out
}

#[tokio::test]
async fn a2y_then_y2a_returns_the_value() {
    let mut rng = Prg::from_u64(5);
    for l in [1usize, 2, 8, 17, 32, 63, 64] {
        let lo = if l == 64 {
            i64::MIN
        } else {
            -(1i64 << (l - 1))
        };
        let hi = if l == 64 {
            i64::MAX
        } else {
            (1i64 << (l - 1)) - 1
        };
        let mut vals = vec![0, lo, hi, lo / 2, hi / 2];
        if l > 1 {
            vals.extend([1, -1]);
        }
        for _ in 0..10 {
            vals.push(sext(rng.next_u64(), l));
        }
        let out = a2y_y2a_roundtrip(&vals, A2yParams::exact(l), l as u64).await;
        let want: Vec<u64> = vals.iter().map(|&v| v as u64).collect();
        assert_eq!(out, want, "width {l}");
    }
    // A value that does not fit comes back wrapped mod 2^l (documented).
    let out = a2y_y2a_roundtrip(&[200, -200], A2yParams::exact(8), 99).await;
    assert_eq!(
        out,
        vec![sext(200, 8) as u64, sext((-200i64) as u64, 8) as u64]
    );
}

#[tokio::test]
async fn a2y_dropping_low_bits_errs_by_at_most_one_unit() {
    let mut rng = Prg::from_u64(6);
    let p = A2yParams {
        width: 24,
        drop_low: 16,
    };
    let vals: Vec<i64> = (0..40)
        .map(|_| sext(rng.next_u64(), 38))
        .chain([
            0,
            1,
            -1,
            (1 << 16) - 1,
            -(1 << 16),
            (1 << 38) - 1,
            -(1 << 38) + (1 << 16),
        ])
        .collect();
    let out = a2y_y2a_roundtrip(&vals, p, 8).await;
    for (&v, &o) in vals.iter().zip(&out) {
        let exact = v >> 16;
        let e = exact - o as i64;
        assert!(
            e == 0 || e == 1,
            "value {v}: got {}, exact {exact}",
            o as i64
        );
    }
}

#[tokio::test]
async fn shared_comparison_on_boundaries() {
    let cases: Vec<(i64, i64)> = vec![
        (0, 0),
        (0, 1),
        (1, 0),
        (-1, 0),
        (0, -1),
        (-1, 1),
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
        (i64::MIN, i64::MIN),
        (i64::MAX, i64::MAX),
        (i64::MIN, i64::MIN + 1),
        (i64::MAX - 1, i64::MAX),
        (i64::MIN, -1),
        (-1, i64::MIN),
        (i64::MAX, 0),
    ];
    let n = cases.len();
    let mut rng = Prg::from_u64(12);
    // Each value is shared between garbler and evaluator; the circuit compares x < y.
    let mut g_x = Vec::new();
    let mut e_x = Vec::new();
    for &(x, y) in &cases {
        for v in [x, y] {
            let a = rng.next_u64();
            g_x.push(a);
            e_x.push((v as u64).wrapping_sub(a));
        }
    }
    let p = A2yParams::exact(64);
    let (mut c0, mut c1) = mem::pair();
    let (mut s, mut r) = cot(13);
    let cfg = GcConfig::new(1);
    async fn cmp<B: Backend<Error = GcError>>(
        b: &mut B,
        g: Option<&[u64]>,
        e: Option<&[u64]>,
        n: usize,
        p: A2yParams,
    ) -> Result<(Vec<bool>, Vec<u64>), GcError> {
        let w = a2y(b, g, e, 2 * n, p).await?;
        let xs: Vec<Vec<B::Wire>> = w.iter().step_by(2).cloned().collect();
        let ys: Vec<Vec<B::Wire>> = w.iter().skip(1).step_by(2).cloned().collect();
        let lt = word::lt_signed_many(b, &xs, &ys).await?;
        let bits = b.share(&lt)?;
        let words: Vec<Vec<B::Wire>> = lt.iter().map(|&w| vec![w]).collect();
        let arith = y2a(b, &words, false).await?;
        Ok((bits, arith))
    }
    let (g, e) = tokio::join!(
        async {
            let mut rng = Prg::from_u64(14);
            let mut g = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
            let out = cmp(&mut g, Some(&g_x), None, n, p).await?;
            g.finish().await?;
            Ok::<_, GcError>(out)
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let out = cmp(&mut e, None, Some(&e_x), n, p).await?;
            e.finish().await?;
            Ok::<_, GcError>(out)
        }
    );
    let (gb, ga) = g.unwrap();
    let (eb, ea) = e.unwrap();
    let (pb, _) = cmp(&mut Plain, Some(&g_x), Some(&e_x), n, p).await.unwrap();
    for (i, &(x, y)) in cases.iter().enumerate() {
        assert_eq!(gb[i] ^ eb[i], x < y, "boolean share of {x} < {y}");
        assert_eq!(pb[i], x < y, "plain {x} < {y}");
        assert_eq!(
            ga[i].wrapping_add(ea[i]),
            (x < y) as u64,
            "arithmetic share of {x} < {y}"
        );
    }
}

// ---- bad input ----

async fn expect_protocol_error(res: Result<impl Sized, GcError>, needle: &str) {
    match res {
        Err(GcError::Protocol(msg)) => assert!(msg.contains(needle), "unexpected message: {msg}"),
        Err(other) => panic!("expected a protocol error containing {needle:?}, got {other}"),
        Ok(_) => panic!("expected a protocol error containing {needle:?}, got success"),
    }
}

#[tokio::test]
async fn circuit_id_or_batch_mismatch_aborts() {
    for (gcfg, ecfg, needle) in [
        (GcConfig::new(1), GcConfig::new(2), "circuit id"),
        (
            GcConfig::new(1),
            GcConfig {
                circuit_id: 1,
                batch_ands: 8,
            },
            "batch size",
        ),
    ] {
        let (mut c0, mut c1) = mem::pair();
        let (mut s, mut r) = cot(1);
        let (g, e) = tokio::join!(
            async {
                let mut rng = Prg::from_u64(1);
                let mut g = Garbler::new(&mut c0, &mut s, &mut rng, gcfg).await?;
                let x = g.input(Role::Garbler, 3, Some(&[true; 3])).await?;
                g.reveal(&x, RevealTo::Garbler).await
            },
            Evaluator::new(&mut c1, &mut r, ecfg)
        );
        expect_protocol_error(e, needle).await;
        // The garbler learns that the peer aborted.
        match g {
            Err(GcError::Channel(_)) => {}
            other => panic!("garbler should fail with a channel error, got {other:?}"),
        }
    }
}

/// A fake garbler: sends a valid header and then `msgs` as raw messages.
async fn fake_garbler(ch: &mut FramedChannel, cfg: GcConfig, msgs: Vec<Vec<u8>>) {
    ch.send_bytes(&cfg.encode(0)).await.unwrap();
    for m in msgs {
        if ch.send_bytes(&m).await.is_err() {
            return;
        }
    }
}

async fn evaluate_ands(
    ch: &mut FramedChannel,
    r: &mut IdealCotReceiver,
    cfg: GcConfig,
    n: usize,
) -> Result<u64, GcError> {
    let mut e = Evaluator::new(ch, r, cfg).await?;
    // One garbler input label (a secret wire: ANDs with constants would not use tables).
    let x = e.input(Role::Garbler, 1, None).await?[0];
    let mut w = x;
    for _ in 0..n {
        w = e.and(w, x).await?;
    }
    let _ = e.reveal(&[w], RevealTo::Evaluator).await?;
    e.finish().await
}

#[tokio::test]
async fn wrong_batch_sizes_abort() {
    let cfg = GcConfig {
        circuit_id: 3,
        batch_ands: 4,
    };
    let cases: Vec<(Vec<Vec<u8>>, usize, &str)> = vec![
        // Not a whole number of tables.
        (vec![vec![0u8; 33]], 2, "multiple of 32"),
        // Larger than the agreed batch.
        (vec![vec![0u8; 5 * 32]], 5, "exceeds the agreed"),
        // A short batch followed by more gates.
        (vec![vec![0u8; 2 * 32], vec![0u8; 2 * 32]], 4, "short batch"),
        // More tables than the circuit uses before the output.
        (vec![vec![0u8; 3 * 32]], 2, "more than the circuit uses"),
    ];
    for (mut msgs, n, needle) in cases {
        msgs.insert(0, vec![0x5a; 16]);
        let (mut c0, mut c1) = mem::pair();
        let (_s, mut r) = cot(2);
        let (_, e) = tokio::join!(
            fake_garbler(&mut c0, cfg, msgs),
            evaluate_ands(&mut c1, &mut r, cfg, n)
        );
        expect_protocol_error(e, needle).await;
    }
}

#[tokio::test]
async fn different_circuit_sizes_are_detected() {
    // The garbler garbles a 9-bit adder, the evaluator expects an 8-bit one: the extra tables
    // (or the AND count at the end) end the session with an error, never a panic.
    let (mut c0, mut c1) = mem::pair();
    let (mut s, mut r) = cot(4);
    let cfg = GcConfig::new(9);
    let (g, e) = tokio::join!(
        async {
            let mut rng = Prg::from_u64(1);
            let mut g = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
            let x = g.input(Role::Garbler, 9, Some(&[true; 9])).await?;
            let y = word::add(&mut g, &x, &x).await?;
            let _ = g.share(&y)?;
            g.finish().await
        },
        async {
            let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
            let x = e.input(Role::Garbler, 8, None).await?;
            let y = word::add(&mut e, &x, &x).await?;
            let _ = e.share(&y)?;
            e.finish().await
        }
    );
    assert!(g.is_err() || e.is_err());
    match e {
        Err(GcError::Protocol(_)) | Err(GcError::Channel(_)) => {}
        other => panic!("evaluator should fail, got {other:?}"),
    }
}

/// The garbler and evaluator over the real OT extension (IKNP COT for the evaluator's input
/// labels, the garbler's free-XOR offset as IKNP's delta) instead of the ideal COT.
#[tokio::test]
async fn gadgets_over_real_iknp_match_plain() {
    use crate::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
    let mut rng = Prg::from_u64(31);
    for l in [8usize, 32, 64] {
        let (xs, ys) = pairs(l, 9, &mut rng);
        for op in [Op::Add, Op::LtS, Op::Mux, Op::Max2, Op::Mul] {
            let want = plain(op, l, &xs, &ys).await;
            let (mut c0, mut c1) = mem::pair();
            let mut srng = Prg::from_u64(100 + l as u64);
            let mut rrng = Prg::from_u64(200 + l as u64);
            let delta = Block(0x0bad_cafe_0000_1111_2222_3333_4444_5555);
            let mut s = IknpSender::new(IknpConfig::default(), delta, &mut srng);
            let mut r = IknpReceiver::new(IknpConfig::default(), &mut rrng);
            let cfg = GcConfig {
                circuit_id: 7,
                batch_ands: 64,
            };
            let m = xs.len();
            let (g, e) = tokio::join!(
                async {
                    let mut g = Garbler::new(&mut c0, &mut s, &mut srng, cfg).await?;
                    let out = run_op(&mut g, op, l, m, Some(&xs), None).await?;
                    g.finish().await?;
                    Ok::<_, GcError>(out)
                },
                async {
                    let mut e = Evaluator::new(&mut c1, &mut r, cfg).await?;
                    let out = run_op(&mut e, op, l, m, None, Some(&ys)).await?;
                    e.finish().await?;
                    Ok::<_, GcError>(out)
                }
            );
            assert_eq!(
                g.unwrap(),
                Some(want.clone()),
                "garbler {op:?} width {l} over IKNP"
            );
            assert_eq!(
                e.unwrap(),
                Some(want),
                "evaluator {op:?} width {l} over IKNP"
            );
        }
    }
}
