//! The plain backend against f64 over each approximation's domain: the bounds documented in
//! `docs/protocols/nonlinear.md` (the secure backend equals the plain one up to its
//! truncations' `+1`, tested in `secure.rs`).

use super::*;
use crate::nonlinear::approx::{self, ACCURACY};

fn plain() -> Plain {
    Plain::new(params())
}

#[test]
fn relu_is_exact() {
    let xs: Vec<u64> = [-5.5, -1e-5, 0.0, 1.0 / 65536.0, 3.25, 32767.0, -32767.0]
        .iter()
        .map(|&x| enc(x))
        .collect();
    let y = Plain::run(approx::relu(&mut plain(), &xs)).unwrap();
    for (x, y) in xs.iter().zip(&y) {
        assert_eq!(*y, (*x as i64).max(0) as u64);
    }
}

#[test]
fn gelu_bound_every_input_in_range() {
    // Every representable input in [-8, 8], plus far-out points and the domain's ends.
    let mut xs: Vec<u64> = (enc(-8.0) as i64..=enc(8.0) as i64)
        .map(|v| v as u64)
        .collect();
    for x in [
        -32767.0, -1e4, -100.0, -9.5, -3.25, 3.25, 9.5, 100.0, 1e4, 32767.0,
    ] {
        xs.push(enc(x));
    }
    let y = Plain::run(approx::gelu(&mut plain(), &xs)).unwrap();
    let want: Vec<f64> = xs.iter().map(|&x| gelu_f64(dec(x))).collect();
    let (max, mean) = errors(&y, &want);
    eprintln!("gelu plain: max abs error {max:.3e}, mean {mean:.3e}");
    assert!(max <= ACCURACY.gelu_abs, "gelu max error {max}");
    // Exactly relu far out.
    assert_eq!(y[y.len() - 1], enc(32767.0));
    assert_eq!(y[y.len() - 10], 0);
}

#[test]
fn exp_bound_every_input_in_range() {
    // d in [-20, 0] at every representable point, temperature 1; and a grid at other
    // temperatures (the clip moves to -16 t).
    let xs: Vec<u64> = (enc(-20.0) as i64..=0).map(|v| v as u64).collect();
    let n = xs.len();
    let y = Plain::run(approx::exp_neg_rows(&mut plain(), &xs, &[n], &[1.0])).unwrap();
    let want: Vec<f64> = xs.iter().map(|&x| dec(x).exp()).collect();
    let (max, mean) = errors(&y, &want);
    eprintln!("exp plain (t = 1): max abs error {max:.3e}, mean {mean:.3e}");
    assert!(max <= ACCURACY.exp_abs, "exp max error {max}");
    assert_eq!(y[n - 1], enc(1.0), "exp(0) = 1 exactly");
    for t in [1.0 / 256.0, 0.3, 2.0, 17.5, 256.0] {
        let xs: Vec<u64> = (0..20001)
            .map(|i| enc(-(i as f64) * 30.0 * t / 20000.0))
            .collect();
        let y = Plain::run(approx::exp_neg_rows(&mut plain(), &xs, &[xs.len()], &[t])).unwrap();
        let want: Vec<f64> = xs.iter().map(|&x| (dec(x) / t).exp()).collect();
        let (max, _) = errors(&y, &want);
        eprintln!("exp plain (t = {t}): max abs error {max:.3e}");
        assert!(max <= ACCURACY.exp_abs + 2e-5, "t = {t}: {max}");
    }
}

/// Max relative error on `[lo, hi)` on a dense geometric grid, and the max absolute error.
fn grid_errors(
    f: impl Fn(&[u64]) -> Vec<u64>,
    want: fn(f64) -> f64,
    lo: f64,
    hi: f64,
    extra_bits: u32,
) -> (f64, f64) {
    let mut xs = Vec::new();
    let mut x = enc(lo);
    while x < enc(hi) {
        xs.push(x);
        x += 1 + x / 4099;
    }
    let y = f(&xs);
    let (mut rel, mut abs): (f64, f64) = (0.0, 0.0);
    for (x, y) in xs.iter().zip(&y) {
        let w = want(dec(*x));
        let e = (dec(*y) / 2f64.powi(extra_bits as i32) - w).abs();
        abs = abs.max(e);
        rel = rel.max(e / w);
    }
    (rel, abs)
}

#[test]
fn reciprocal_bound() {
    let (rel, abs) = grid_errors(
        |xs| Plain::run(approx::reciprocal(&mut plain(), &xs.to_vec(), 1024)).unwrap(),
        |x| 1.0 / x,
        1.0,
        1024.0,
        0,
    );
    eprintln!("reciprocal plain on [1, 1024]: max rel error {rel:.3e}, max abs {abs:.3e}");
    assert!(abs <= ACCURACY.recip_abs, "reciprocal abs {abs}");
    // Exactly the range's ends.
    let y = Plain::run(approx::reciprocal(
        &mut plain(),
        &vec![enc(1.0), enc(128.0)],
        128,
    ))
    .unwrap();
    assert!((dec(y[0]) - 1.0).abs() <= ACCURACY.recip_abs);
    assert!((dec(y[1]) - 1.0 / 128.0).abs() <= ACCURACY.recip_abs);
}

#[test]
fn rsqrt_bound() {
    let (rel, abs) = grid_errors(
        |xs| Plain::run(approx::rsqrt(&mut plain(), &xs.to_vec())).unwrap(),
        |x| 1.0 / x.sqrt(),
        2f64.powi(-10),
        2f64.powi(16),
        approx::RSQRT_OUT_EXTRA_BITS,
    );
    eprintln!("rsqrt plain on [2^-10, 2^16): max rel error {rel:.3e}, max abs {abs:.3e}");
    assert!(rel <= ACCURACY.rsqrt_rel, "rsqrt rel {rel}");
    let (rel2, abs2) = grid_errors(
        |xs| Plain::run(approx::rsqrt(&mut plain(), &xs.to_vec())).unwrap(),
        |x| 1.0 / x.sqrt(),
        2f64.powi(-16),
        2f64.powi(24) - 1.0,
        approx::RSQRT_OUT_EXTRA_BITS,
    );
    eprintln!("rsqrt plain on [2^-16, 2^24): max rel error {rel2:.3e}, max abs {abs2:.3e}");
    assert!(rel2 <= ACCURACY.rsqrt_rel_whole, "rsqrt rel {rel2}");
}

/// Random logits, uniform in `[-bound, bound]`.
fn logits(n: usize, bound: f64, rng: &mut Prg) -> Vec<u64> {
    (0..n).map(|_| enc(uniform(rng, -bound, bound))).collect()
}

#[test]
fn softmax_accuracy_and_edge_cases() {
    let mut rng = Prg::from_u64(7);
    let mut worst: f64 = 0.0;
    for (shape, mask, bound) in [
        ([3usize, 16usize, 16usize], Mask::Causal, 8.0),
        ([2, 5, 9], Mask::Causal, 30.0),
        ([2, 7, 33], Mask::None, 12.0),
        ([1, 1, 1], Mask::None, 3.0),
        ([1, 1, 128], Mask::None, 100.0),
    ] {
        let n: usize = shape.iter().product();
        let x = logits(n, bound, &mut rng);
        let rows = shape[0] * shape[1];
        let temps: Vec<f64> = (0..rows).map(|_| uniform(&mut rng, 0.25, 4.0)).collect();
        for t in [None, Some(temps.as_slice())] {
            let y = Plain::run(softmax_flat(&mut plain(), &x, &shape, mask, t)).unwrap();
            let tv = t.map_or(vec![1.0; rows], |t| t.to_vec());
            let xf: Vec<f64> = x.iter().map(|&v| dec(v)).collect();
            let want = softmax_f64(&xf, &shape, mask, &tv);
            let (max, _) = errors(&y, &want);
            worst = worst.max(max);
            // Masked entries are exactly 0.
            if mask == Mask::Causal && shape[1] > 1 {
                assert_eq!(y[shape[2] - shape[1] + 1], 0, "masked entry");
            }
        }
    }
    eprintln!("softmax plain: max abs error {worst:.3e}");
    assert!(worst <= ACCURACY.softmax_abs, "softmax {worst}");
    // Edge cases: all-equal rows, very negative logits, one-element rows, the first causal row.
    let shape = [2, 4, 4];
    let mut x = vec![enc(-30000.0); 32];
    for v in x.iter_mut().skip(16) {
        *v = enc(5.0);
    }
    x[3] = enc(-29990.0);
    let y = Plain::run(softmax_flat(&mut plain(), &x, &shape, Mask::Causal, None)).unwrap();
    let xf: Vec<f64> = x.iter().map(|&v| dec(v)).collect();
    let want = softmax_f64(&xf, &shape, Mask::Causal, &[1.0; 8]);
    let (max, _) = errors(&y, &want);
    eprintln!("softmax plain edge cases: max abs error {max:.3e}");
    assert!(max <= ACCURACY.softmax_abs);
    assert!(
        (dec(y[0]) - 1.0).abs() <= ACCURACY.softmax_abs,
        "first causal row is 1"
    );
}

/// A random LayerNorm input with row scales from 1e-2 to 100 and offsets.
pub(super) fn ln_input(rows: usize, d: usize, rng: &mut Prg) -> Vec<f64> {
    let mut x = Vec::with_capacity(rows * d);
    for r in 0..rows {
        let scale = 10f64.powf(-2.0 + 4.0 * r as f64 / rows.max(2) as f64 - 0.0);
        let off = uniform(rng, -20.0, 20.0);
        x.extend((0..d).map(|_| off + scale * uniform(rng, -1.7, 1.7)));
    }
    x
}

#[test]
fn layer_norm_accuracy_and_constant_row() {
    let mut rng = Prg::from_u64(11);
    let (rows, d) = (9, 96);
    let mut xf = ln_input(rows, d, &mut rng);
    // A constant row: output is the bias.
    for v in &mut xf[..d] {
        *v = 3.5;
    }
    let gamma: Vec<f64> = (0..d).map(|_| uniform(&mut rng, -2.0, 2.0)).collect();
    let beta: Vec<f64> = (0..d).map(|_| uniform(&mut rng, -1.0, 1.0)).collect();
    let x: Vec<u64> = xf.iter().map(|&v| enc(v)).collect();
    let xq: Vec<f64> = x.iter().map(|&v| dec(v)).collect();
    let gq: Vec<u64> = gamma.iter().map(|&v| enc(v)).collect();
    let bq: Vec<u64> = beta.iter().map(|&v| enc(v)).collect();
    let norm = NormParams {
        gain: ServerVector::plain(1, gq.clone()),
        bias: Some(bq.clone()),
        eps: 1e-5,
    };
    let y = Plain::run(approx::layer_norm(&mut plain(), &x, rows, &norm)).unwrap();
    let gd: Vec<f64> = gq.iter().map(|&v| dec(v)).collect();
    let bd: Vec<f64> = bq.iter().map(|&v| dec(v)).collect();
    let want = layer_norm_f64(&xq, d, &gd, &bd, 1e-5);
    let (max, mean) = errors(&y, &want);
    for r in 0..rows {
        let (m, _) = errors(&y[r * d..(r + 1) * d], &want[r * d..(r + 1) * d]);
        eprintln!("  row {r}: max abs error {m:.3e}");
    }
    eprintln!("layer_norm plain: max abs error {max:.3e}, mean {mean:.3e}");
    assert!(max <= ACCURACY.layer_norm_abs, "layer_norm {max}");
    for j in 0..d {
        assert!(
            (dec(y[j]) - bd[j]).abs() < 1e-4,
            "constant row gives the bias"
        );
    }
}

#[test]
fn argmax_first_among_ties() {
    let p = params();
    let mut p2 = plain();
    for (xs, want) in [
        (vec![1.0, 3.0, 3.0, -2.0], 1),
        (vec![-7.0], 0),
        (vec![0.0, 0.0, 0.0], 0),
        (vec![-1.0, -1.0, 5.0, 5.0, 5.0], 2),
        (vec![-32000.0, 32000.0], 1),
    ] {
        let x: Vec<u64> = xs.iter().map(|&v| p.enc(v)).collect();
        let got = Plain::run(approx::argmax(&mut p2, &x, Party::P1)).unwrap();
        assert_eq!(got, Some(want), "{xs:?}");
    }
    let e = Plain::run(approx::argmax(&mut p2, &Vec::new(), Party::P0)).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    // A long vector: a random maximum.
    let mut rng = Prg::from_u64(3);
    let mut x: Vec<u64> = (0..5000)
        .map(|_| enc(uniform(&mut rng, -50.0, 50.0)))
        .collect();
    x[4321] = enc(60.0);
    x[4999] = enc(60.0);
    assert_eq!(
        Plain::run(approx::argmax(&mut p2, &x, Party::P0)).unwrap(),
        Some(4321)
    );
}
