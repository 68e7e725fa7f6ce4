//! View tests of the Beaver layer: dealer material and every opened value are uniform and
//! independent of the inputs; shares differ between parties, requests and sessions.
//!
//! The dealer's material is tested through [`InsecureIdealDealer`], which runs the dealer's own
//! seed expansion and correction code (`expand.rs`), so a dealer that, say, fixed P0's share of
//! `c` to zero (P1's correction would then be the product `a·b` itself, far from uniform) is
//! caught here even though every product would still be right. Statistics: see
//! [`crate::view_test_util`] (fixed seeds, about `1e-7` false positives per check).

use super::*;
use crate::channel::{FramedChannel, mem};
use crate::ring::RingTensor;
use crate::share::{AShare, Party};
use crate::trunc::trunc;
use crate::view_test_util::{Recorder, assert_uniform_bytes, assert_uniform_u64s};

const N: usize = 4096;

/// No position holds the same value in `a` and `b` (for independent uniform 64-bit values a
/// collision has probability `N / 2^64`).
fn assert_unrelated(a: &[u64], b: &[u64], what: &str) {
    assert_eq!(a.len(), b.len());
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    assert_eq!(same, 0, "{what}: {same} equal positions");
}

fn elem(m: &ElemTriple) -> [&[u64]; 3] {
    [m.a.data(), m.b.data(), m.c.data()]
}

/// Every component of elementwise triples, square pairs and truncation pairs is uniform for
/// each party (P1's `c` is the dealer's correction), the parties' shares are unrelated, and a
/// second request and a second session give different material.
#[tokio::test]
async fn dealer_shares_and_corrections_are_uniform_and_fresh() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(1);
    let t0 = p0.elementwise(N).await.unwrap();
    let t1 = p1.elementwise(N).await.unwrap();
    let names = ["a", "b", "c"];
    for (k, (x, y)) in elem(&t0).into_iter().zip(elem(&t1)).enumerate() {
        assert_uniform_u64s(x, &format!("P0's share of {}", names[k]));
        assert_uniform_u64s(y, &format!("P1's share of {}", names[k]));
        assert_unrelated(x, y, &format!("P0's and P1's shares of {}", names[k]));
    }
    for i in 0..N {
        let a = t0.a.data()[i].wrapping_add(t1.a.data()[i]);
        let b = t0.b.data()[i].wrapping_add(t1.b.data()[i]);
        let c = t0.c.data()[i].wrapping_add(t1.c.data()[i]);
        assert_eq!(a.wrapping_mul(b), c, "triple {i}");
    }
    // A second request, and the same request in another session, differ.
    let u0 = p0.elementwise(N).await.unwrap();
    let u1 = p1.elementwise(N).await.unwrap();
    let (mut q0, mut q1) = InsecureIdealDealer::pair(2);
    let v0 = q0.elementwise(N).await.unwrap();
    let v1 = q1.elementwise(N).await.unwrap();
    for k in 0..3 {
        assert_unrelated(elem(&t0)[k], elem(&u0)[k], "P0, two requests");
        assert_unrelated(elem(&t1)[k], elem(&u1)[k], "P1, two requests");
        assert_unrelated(elem(&t0)[k], elem(&v0)[k], "P0, two sessions");
        assert_unrelated(elem(&t1)[k], elem(&v1)[k], "P1, two sessions");
    }

    let s0 = p0.square_pairs(N).await.unwrap();
    let s1 = p1.square_pairs(N).await.unwrap();
    for (x, y, what) in [
        (s0.r.data(), s1.r.data(), "r"),
        (s0.r2.data(), s1.r2.data(), "r²"),
    ] {
        assert_uniform_u64s(x, &format!("P0's share of {what}"));
        assert_uniform_u64s(y, &format!("P1's share of {what}"));
        assert_unrelated(x, y, what);
    }
    let r0 = p0.trunc_pairs(N, 16).await.unwrap();
    let r1 = p1.trunc_pairs(N, 16).await.unwrap();
    for (x, y, what) in [
        (r0.r.data(), r1.r.data(), "r"),
        (r0.r_msb.data(), r1.r_msb.data(), "r_63"),
        (
            r0.r_low_shifted.data(),
            r1.r_low_shifted.data(),
            "(r mod 2^63) >> f",
        ),
    ] {
        assert_uniform_u64s(x, &format!("P0's truncation share of {what}"));
        assert_uniform_u64s(y, &format!("P1's truncation share of {what}"));
        assert_unrelated(x, y, what);
    }
}

/// Matrix triples and weight correlations: the mask `B` (P1), `A` and `C_0` (P0) and the
/// correction `C_1` (P1) are uniform.
#[tokio::test]
async fn dealer_matrix_and_weight_material_is_uniform() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(3);
    let m0 = p0.matmul(2, 16, 32, 64).await.unwrap();
    let m1 = p1.matmul(2, 16, 32, 64).await.unwrap();
    for (x, y, what) in [
        (m0.a.data(), m1.a.data(), "A"),
        (m0.b.data(), m1.b.data(), "B"),
        (m0.c.data(), m1.c.data(), "C"),
    ] {
        assert_uniform_u64s(x, &format!("P0's matrix-triple share of {what}"));
        assert_uniform_u64s(y, &format!("P1's matrix-triple share of {what}"));
        assert_unrelated(x, y, what);
    }
    let (k, m, n) = (64, 64, 16);
    assert!(matches!(
        p0.weight_mask(9, k, m).await.unwrap(),
        WeightMask::P0
    ));
    let WeightMask::P1 { b } = p1.weight_mask(9, k, m).await.unwrap() else {
        panic!("P1 gets the mask");
    };
    assert_uniform_u64s(b.data(), "weight mask B");
    let WeightTriple::P0 { a, c } = p0.weight_triple(9, n, k, m).await.unwrap() else {
        panic!("P0's weight triple");
    };
    let WeightTriple::P1 { c: c1 } = p1.weight_triple(9, n, k, m).await.unwrap() else {
        panic!("P1's weight triple");
    };
    assert_uniform_u64s(a.data(), "weight triple A");
    assert_uniform_u64s(c.data(), "weight triple C_0");
    assert_uniform_u64s(c1.data(), "weight triple C_1 (P1's correction)");
    assert_unrelated(c.data(), c1.data(), "C_0 and C_1");
}

fn pair() -> (FramedChannel, Recorder<FramedChannel>) {
    let (a, b) = mem::pair();
    (a, Recorder::new(b))
}

fn share(party: Party, shape: &[usize], v: u64) -> AShare {
    let n = shape.iter().product();
    AShare::new(party, RingTensor::from_vec(shape, vec![v; n]).unwrap())
}

/// What P1 sees of a Beaver product (elementwise and matrix) of constant inputs, and of a
/// truncation of a constant: uniform openings.
#[tokio::test]
async fn beaver_and_truncation_openings_are_uniform() {
    let (mut d0, mut d1) = InsecureIdealDealer::pair(4);
    let (mut c0, mut c1) = pair();
    for (op, xs, ys) in [
        (BilinearOp::Mul, vec![N], vec![N]),
        (BilinearOp::MatMul, vec![32, 64], vec![64, 32]),
    ] {
        c1.clear();
        let (x0, y0) = (share(Party::P0, &xs, 3), share(Party::P0, &ys, 5));
        let (x1, y1) = (share(Party::P1, &xs, 0), share(Party::P1, &ys, 0));
        let (z0, z1) = tokio::join!(
            beaver(&mut c0, &mut d0, op, &x0, &y0),
            beaver(&mut c1, &mut d1, op, &x1, &y1)
        );
        let (z0, z1) = (z0.unwrap(), z1.unwrap());
        let want = op.apply(x0.tensor(), y0.tensor()).unwrap();
        let got = z0.tensor().add(z1.tensor()).unwrap();
        assert_eq!(got, want, "{op:?}");
        assert_uniform_bytes(
            &c1.bytes_with("beaver openings"),
            &format!("{op:?} openings"),
        );
        assert_uniform_u64s(z1.tensor().data(), &format!("P1's {op:?} output share"));
    }
    c1.clear();
    let x0 = share(Party::P0, &[N], 3 << 16);
    let x1 = share(Party::P1, &[N], 0);
    let (t0, t1) = tokio::join!(
        trunc(&mut c0, &mut d0, &x0, 16),
        trunc(&mut c1, &mut d1, &x1, 16)
    );
    let (t0, t1) = (t0.unwrap(), t1.unwrap());
    for (a, b) in t0.tensor().data().iter().zip(t1.tensor().data()) {
        let v = a.wrapping_add(*b);
        assert!(v == 3 || v == 4, "trunc of 3·2^16 by 16 gave {v}");
    }
    assert_uniform_bytes(&c1.bytes_with("truncation opening"), "truncation openings");
}

/// Products with a weight P1 holds: P0 sees `F = W − B` (uniform for a constant `W`), P1 sees
/// `E = X_0 − A` (uniform for a constant `X_0`).
#[tokio::test]
async fn weight_masking_views_are_uniform() {
    let (mut d0, mut d1) = InsecureIdealDealer::pair(5);
    let (a, b) = mem::pair();
    let mut c0 = Recorder::new(a);
    let mut c1 = Recorder::new(b);
    let (k, m, n) = (64, 64, 64);
    let w = RingTensor::from_vec(&[k, m], vec![1; k * m]).unwrap();
    let (cw, sw) = tokio::join!(
        ClientWeight::setup(&mut c0, &mut d0, 7, k, m),
        ServerWeight::setup(&mut c1, &mut d1, 7, w)
    );
    let (cw, sw) = (cw.unwrap(), sw.unwrap());
    assert_uniform_bytes(&c0.bytes_with("masked weight F"), "masked weight F = W − B");
    let x0 = share(Party::P0, &[n, k], 2);
    let x1 = share(Party::P1, &[n, k], 0);
    let (z0, z1) = tokio::join!(
        cw.matmul(&mut c0, &mut d0, &x0),
        sw.matmul(&mut c1, &mut d1, &x1)
    );
    let got = z0.unwrap().tensor().add(z1.unwrap().tensor()).unwrap();
    assert!(got.data().iter().all(|&v| v == 2 * k as u64));
    assert_uniform_bytes(
        &c1.bytes_with("weight-product opening E"),
        "weight-product opening E = X_0 − A",
    );
}
