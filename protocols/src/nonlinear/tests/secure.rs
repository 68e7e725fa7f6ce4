//! The secure ops between two parties over `channel::mem::pair()`, with the ideal dealer and
//! with the dealer's serve loop: against the plain backend (within the documented number of
//! units) and against f64 (within the accuracy bounds), plus bad inputs on both sides.

use super::*;
use crate::beaver::InsecureIdealDealer;
use crate::beaver::dealer::{DealerClient, DealerConfig, serve_session};
use crate::channel::{FramedChannel, mem};
use crate::nonlinear::approx::ACCURACY;
use crate::ring::RingTensor;
use crate::session::Session;
use crate::share::{AShare, split};

type IdealSession = Session<FramedChannel, InsecureIdealDealer>;
type DealerSession = Session<FramedChannel, DealerClient<FramedChannel>>;

/// Two sessions over an in-memory pair with the ideal dealer.
pub(super) fn ideal_sessions(seed: u64) -> (IdealSession, IdealSession) {
    let (c0, c1) = mem::pair();
    let (d0, d1) = InsecureIdealDealer::pair(seed);
    let p = params();
    (
        Session::new(Party::P0, c0, d0, Prg::from_u64(seed + 1), p).unwrap(),
        Session::new(Party::P1, c1, d1, Prg::from_u64(seed + 2), p).unwrap(),
    )
}

/// Two sessions whose correlations come from the dealer's serve loop (in a task).
pub(super) async fn dealer_sessions(seed: u64) -> (DealerSession, DealerSession) {
    let (x0, y0) = mem::pair();
    let (x1, y1) = mem::pair();
    tokio::spawn(async move {
        let _ = serve_session(x0, x1, &DealerConfig::default(), &mut Prg::from_u64(seed)).await;
    });
    let (d0, d1) = tokio::join!(
        DealerClient::connect(y0, Party::P0, [7; 32]),
        DealerClient::connect(y1, Party::P1, [7; 32])
    );
    let (c0, c1) = mem::pair();
    let p = params();
    (
        Session::new(Party::P0, c0, d0.unwrap(), Prg::from_u64(seed + 1), p).unwrap(),
        Session::new(Party::P1, c1, d1.unwrap(), Prg::from_u64(seed + 2), p).unwrap(),
    )
}

/// Both parties' shares of a plaintext tensor.
fn share(shape: &[usize], vals: &[u64], rng: &mut Prg) -> (AShare, AShare) {
    split(&RingTensor::from_vec(shape, vals.to_vec()).unwrap(), rng)
}

fn open(a: &AShare, b: &AShare) -> Vec<u64> {
    crate::share::reconstruct(a, b).unwrap().into_data()
}

/// Max difference in fixed-point units.
fn units(a: &[u64], b: &[u64]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i64).wrapping_sub(*y as i64).unsigned_abs())
        .max()
        .unwrap_or(0)
}

/// Activations: random in `(-bound, bound)` plus the edges of the domain.
fn activations(n: usize, bound: f64, rng: &mut Prg) -> Vec<u64> {
    let max = (1i64 << (params().act_bits - 1)) - 1;
    let mut v: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        max as u64,
        (-max) as u64,
        enc(3.25),
        enc(-3.25),
    ];
    v.extend((v.len()..n).map(|_| enc(uniform(rng, -bound, bound))));
    v.truncate(n.max(7));
    v
}

#[tokio::test]
async fn relu_and_gelu_match_plain_and_f64() {
    let mut rng = Prg::from_u64(1);
    let (mut s0, mut s1) = ideal_sessions(10);
    for (shape, bound) in [(vec![7usize], 6.0), (vec![3, 77], 8.0), (vec![4100], 40.0)] {
        let n: usize = shape.iter().product();
        let x = activations(n, bound, &mut rng);
        let (x0, x1) = share(&shape, &x, &mut rng);
        let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &x1));
        let y = open(&a.unwrap(), &b.unwrap());
        let want =
            plain_ops::relu(&params(), &RingTensor::from_vec(&shape, x.clone()).unwrap()).unwrap();
        assert_eq!(y, want.data(), "ReLU is exact");
        let (a, b) = tokio::join!(gelu(&mut s0, &x0), relu_then_gelu(&mut s1, &x1));
        let y = open(&a.unwrap(), &b.unwrap());
        let want =
            plain_ops::gelu(&params(), &RingTensor::from_vec(&shape, x.clone()).unwrap()).unwrap();
        let d = units(&y, want.data());
        assert!(d <= GELU_UNITS, "GELU differs from plain by {d} units");
        let f: Vec<f64> = x.iter().map(|&v| gelu_f64(dec(v))).collect();
        let (max, _) = errors(&y, &f);
        assert!(max <= ACCURACY.gelu_abs + 4e-5, "GELU error {max}");
    }
}

/// GELU on P1's side (a helper so the two futures of `join!` have different types of call).
async fn relu_then_gelu(
    s: &mut IdealSession,
    x: &AShare,
) -> Result<AShare, crate::session::ProtocolError> {
    gelu(s, x).await
}

/// Documented bound of secure vs plain for GELU: the `a²` truncation (≤ 1 unit, amplified by
/// at most 1.6 in the polynomial) and the polynomial's truncation (1 unit).
const GELU_UNITS: u64 = 3;
/// Softmax: bound used by the tests (see `docs/protocols/nonlinear.md`).
const SOFTMAX_UNITS: u64 = 8;

#[tokio::test]
async fn softmax_matches_plain_and_f64() {
    let mut rng = Prg::from_u64(2);
    let (mut s0, mut s1) = ideal_sessions(20);
    let mut worst = 0;
    for (shape, mask, bound, with_t) in [
        ([2usize, 6usize, 6usize], Mask::Causal, 10.0, false),
        ([3, 5, 9], Mask::Causal, 40.0, true),
        ([2, 3, 17], Mask::None, 5.0, true),
        ([1, 1, 1], Mask::Causal, 1.0, false),
        ([1, 2, 70], Mask::None, 200.0, false),
    ] {
        let n: usize = shape.iter().product();
        let rows = shape[0] * shape[1];
        let mut x: Vec<u64> = (0..n)
            .map(|_| enc(uniform(&mut rng, -bound, bound)))
            .collect();
        // An all-equal row and very negative logits.
        for v in x.iter_mut().take(shape[2]) {
            *v = enc(-20000.0);
        }
        let temps: Vec<f64> = (0..rows).map(|_| uniform(&mut rng, 0.5, 3.0)).collect();
        let t = with_t.then_some(temps.as_slice());
        let (x0, x1) = share(&shape, &x, &mut rng);
        let (a, b) = tokio::join!(
            softmax(&mut s0, &x0, mask, t),
            softmax(&mut s1, &x1, mask, t)
        );
        let y = open(&a.unwrap(), &b.unwrap());
        let xt = RingTensor::from_vec(&shape, x.clone()).unwrap();
        let want = plain_ops::softmax(&params(), &xt, mask, t).unwrap();
        let d = units(&y, want.data());
        worst = worst.max(d);
        let tv = t.map_or(vec![1.0; rows], |t| t.to_vec());
        let xf: Vec<f64> = x.iter().map(|&v| dec(v)).collect();
        let (max, _) = errors(&y, &softmax_f64(&xf, &shape, mask, &tv));
        assert!(max <= ACCURACY.softmax_abs + 1.5e-4, "softmax error {max}");
        // Masked entries are exactly zero.
        for (i, (&v, &w)) in y.iter().zip(want.data()).enumerate() {
            if w == 0 && softmax_entries(&shape, mask).binary_search(&i).is_err() {
                assert_eq!(v, 0, "masked entry {i}");
            }
        }
    }
    eprintln!("softmax secure vs plain: {worst} units");
    assert!(
        worst <= SOFTMAX_UNITS,
        "softmax differs from plain by {worst} units"
    );
}

/// LayerNorm inputs for the secure test: rows with standard deviations from 0.5 to 200 (the
/// plain-vs-secure difference scales with `γ/σ`, see the docs).
fn ln_case(rows: usize, d: usize, rng: &mut Prg) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let mut x = Vec::new();
    for r in 0..rows {
        let sd = 0.5 * 400f64.powf(r as f64 / (rows - 1).max(1) as f64);
        let off = uniform(rng, -30.0, 30.0);
        x.extend((0..d).map(|_| enc(off + sd * uniform(rng, -1.7, 1.7))));
    }
    let g = (0..d).map(|_| enc(uniform(rng, -3.0, 3.0))).collect();
    let b = (0..d).map(|_| enc(uniform(rng, -1.0, 1.0))).collect();
    (x, g, b)
}

/// LayerNorm on both sessions, with the gain set up once.
#[allow(clippy::too_many_arguments)]
async fn run_layer_norm<C: crate::channel::Channel, K: crate::beaver::TripleProvider>(
    s0: &mut Session<C, K>,
    s1: &mut Session<C, K>,
    x: &[u64],
    g: &[u64],
    b: &[u64],
    rows: usize,
    id: u32,
    rng: &mut Prg,
) -> Vec<u64> {
    let d = g.len();
    let (v0, v1) = tokio::join!(
        setup_server_vector(s0, id, d, None),
        setup_server_vector(s1, id, d, Some(g))
    );
    let n0 = NormParams {
        gain: v0.unwrap(),
        bias: None,
        eps: 1e-5,
    };
    let n1 = NormParams {
        gain: v1.unwrap(),
        bias: Some(b.to_vec()),
        eps: 1e-5,
    };
    let (x0, x1) = share(&[rows, d], x, rng);
    let (a, c) = tokio::join!(layer_norm(s0, &x0, &n0), layer_norm(s1, &x1, &n1));
    open(&a.unwrap(), &c.unwrap())
}

#[tokio::test]
async fn layer_norm_matches_plain_and_f64() {
    let mut rng = Prg::from_u64(3);
    let (mut s0, mut s1) = ideal_sessions(30);
    let (rows, d) = (6, 40);
    let (mut x, g, b) = ln_case(rows, d, &mut rng);
    // A constant row.
    for v in &mut x[..d] {
        *v = enc(-2.25);
    }
    let y = run_layer_norm(&mut s0, &mut s1, &x, &g, &b, rows, 4, &mut rng).await;
    let norm = NormParams {
        gain: ServerVector::plain(4, g.clone()),
        bias: Some(b.clone()),
        eps: 1e-5,
    };
    let want = plain_ops::layer_norm(
        &params(),
        &RingTensor::from_vec(&[rows, d], x.clone()).unwrap(),
        &norm,
    )
    .unwrap();
    let ratio = check_ln_units(&y, want.data(), &x, &g, &b);
    eprintln!(
        "layer_norm secure vs plain: {} units, {ratio:.2} of the bound",
        units(&y, want.data())
    );
    let xf: Vec<f64> = x.iter().map(|&v| dec(v)).collect();
    let gf: Vec<f64> = g.iter().map(|&v| dec(v)).collect();
    let bf: Vec<f64> = b.iter().map(|&v| dec(v)).collect();
    let (max, _) = errors(&y, &layer_norm_f64(&xf, d, &gf, &bf, 1e-5));
    assert!(max <= ACCURACY.layer_norm_abs, "LayerNorm error {max}");
    // The constant row gives the bias.
    assert!(units(&y[..d], &b) <= 2);
}

/// LayerNorm, secure vs plain. The truncations perturb `c` by one unit (`|γ|/σ` output units)
/// and `r ≈ 1/σ` by a few units of its last place (`2^-(f+4)`), i.e. relatively by about
/// `σ·2^-(f+4)` plus the Newton steps' `2^-f`; so the documented bound in output units is
/// `2 + |γ| (2/σ + |y| (4 + σ/4))`, `y` the normalized value.
fn check_ln_units(y: &[u64], want: &[u64], x: &[u64], g: &[u64], b: &[u64]) -> f64 {
    let d = g.len();
    let mut worst: f64 = 0.0;
    for (r, xr) in x.chunks(d).enumerate() {
        let xf: Vec<f64> = xr.iter().map(|&v| dec(v)).collect();
        let mean = xf.iter().sum::<f64>() / d as f64;
        let sd = (xf.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64).sqrt();
        for j in 0..d {
            let i = r * d + j;
            let diff = (y[i] as i64).wrapping_sub(want[i] as i64).unsigned_abs() as f64;
            let gamma = dec(g[j]).abs();
            let norm = ((dec(want[i]) - dec(b[j])) / gamma.max(1e-9)).abs();
            let bound = 2.0 + gamma * (2.0 / sd.max(1e-3) + norm * (4.0 + sd / 4.0));
            worst = worst.max(diff / bound);
            assert!(diff <= bound, "element {i}: {diff} units > {bound}");
        }
    }
    worst
}

#[tokio::test]
async fn argmax_reveals_only_to_the_named_party() {
    let mut rng = Prg::from_u64(4);
    let (mut s0, mut s1) = ideal_sessions(40);
    for (n, to) in [
        (1usize, Party::P0),
        (2, Party::P1),
        (5, Party::P0),
        (1000, Party::P1),
    ] {
        let mut x: Vec<u64> = (0..n)
            .map(|_| enc(uniform(&mut rng, -30.0, 30.0)))
            .collect();
        let want_i = n / 3;
        x[want_i] = enc(31.0);
        if n > 2 {
            x[n - 1] = enc(31.0); // a tie: the first index wins
        }
        let (x0, x1) = share(&[n], &x, &mut rng);
        let (a, b) = tokio::join!(argmax(&mut s0, &x0, to), argmax(&mut s1, &x1, to));
        let (a, b) = (a.unwrap(), b.unwrap());
        let (got, other) = if to == Party::P0 { (a, b) } else { (b, a) };
        assert_eq!(got, Some(want_i), "n = {n}");
        assert_eq!(other, None);
    }
}

/// Every op once with correlations from the dealer's serve loop (the wire path).
#[tokio::test]
async fn every_op_over_the_dealer_serve_loop() {
    let mut rng = Prg::from_u64(5);
    let (mut s0, mut s1) = dealer_sessions(50).await;
    let x = activations(300, 5.0, &mut rng);
    let (x0, x1) = share(&[300], &x, &mut rng);
    let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &x1));
    let xt = RingTensor::from_vec(&[300], x.clone()).unwrap();
    assert_eq!(
        open(&a.unwrap(), &b.unwrap()),
        plain_ops::relu(&params(), &xt).unwrap().data()
    );
    let (a, b) = tokio::join!(gelu(&mut s0, &x0), gelu(&mut s1, &x1));
    let want = plain_ops::gelu(&params(), &xt).unwrap();
    assert!(units(&open(&a.unwrap(), &b.unwrap()), want.data()) <= GELU_UNITS);
    let shape = [2, 4, 7];
    let lx: Vec<u64> = (0..56).map(|_| enc(uniform(&mut rng, -9.0, 9.0))).collect();
    let (l0, l1) = share(&shape, &lx, &mut rng);
    let (a, b) = tokio::join!(
        softmax(&mut s0, &l0, Mask::Causal, None),
        softmax(&mut s1, &l1, Mask::Causal, None)
    );
    let lt = RingTensor::from_vec(&shape, lx.clone()).unwrap();
    let want = plain_ops::softmax(&params(), &lt, Mask::Causal, None).unwrap();
    assert!(units(&open(&a.unwrap(), &b.unwrap()), want.data()) <= SOFTMAX_UNITS);
    let (lx, g, bb) = ln_case(3, 16, &mut rng);
    let y = run_layer_norm(&mut s0, &mut s1, &lx, &g, &bb, 3, 2, &mut rng).await;
    let norm = NormParams {
        gain: ServerVector::plain(2, g.clone()),
        bias: Some(bb.clone()),
        eps: 1e-5,
    };
    let want = plain_ops::layer_norm(
        &params(),
        &RingTensor::from_vec(&[3, 16], lx.clone()).unwrap(),
        &norm,
    )
    .unwrap();
    check_ln_units(&y, want.data(), &lx, &g, &bb);
    let (a, b) = tokio::join!(
        argmax(&mut s0, &x0, Party::P1),
        argmax(&mut s1, &x1, Party::P1)
    );
    let want = plain_ops::argmax(&params(), &xt).unwrap();
    assert_eq!((a.unwrap(), b.unwrap()), (None, Some(want)));
}

/// Shapes that disagree, bad temperatures, an empty argmax, a party's share on the wrong
/// session, a bias on the client: clear errors on both sides, never a hang.
#[tokio::test]
async fn bad_inputs_fail_on_both_sides() {
    let mut rng = Prg::from_u64(6);
    // Different shapes: the op tags differ.
    let (mut s0, mut s1) = ideal_sessions(60);
    let (x0, _) = share(&[10], &[enc(1.0); 10], &mut rng);
    let (_, y1) = share(&[11], &[enc(1.0); 11], &mut rng);
    let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &y1));
    for e in [a.unwrap_err(), b.unwrap_err()] {
        let t = e.to_string();
        assert!(t.starts_with("relu: "), "{t}");
        assert!(t.contains("other shapes") || t.contains("aborted"), "{t}");
    }
    // Different ops.
    let (mut s0, mut s1) = ideal_sessions(61);
    let (x0, x1) = share(&[4], &[enc(1.0); 4], &mut rng);
    let (a, b) = tokio::join!(relu(&mut s0, &x0), gelu(&mut s1, &x1));
    assert!(a.is_err() && b.is_err());
    // Non-positive temperatures: refused before anything is sent, on both sides.
    let (mut s0, mut s1) = ideal_sessions(62);
    let (x0, x1) = share(&[1, 2, 2], &[0; 4], &mut rng);
    let t = [1.0, -1.0];
    let (a, b) = tokio::join!(
        softmax(&mut s0, &x0, Mask::Causal, Some(&t)),
        softmax(&mut s1, &x1, Mask::Causal, Some(&t))
    );
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert!(e.to_string().contains("temperature -1"), "{e}");
        assert_eq!(e.op, "softmax");
    }
    // Wrong number of temperatures, and a causal softmax with more rows than columns.
    let (mut s0, _s1) = ideal_sessions(63);
    let e = softmax(&mut s0, &x0, Mask::Causal, Some(&[1.0]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("temperatures"), "{e}");
    let (mut s0, _s1) = ideal_sessions(64);
    let (z0, _) = share(&[1, 3, 2], &[0; 6], &mut rng);
    let e = softmax(&mut s0, &z0, Mask::Causal, None).await.unwrap_err();
    assert!(e.to_string().contains("rows <= cols"), "{e}");
    // An empty argmax.
    let (mut s0, mut s1) = ideal_sessions(65);
    let (e0, e1) = share(&[0], &[], &mut rng);
    let (a, b) = tokio::join!(
        argmax(&mut s0, &e0, Party::P0),
        argmax(&mut s1, &e1, Party::P0)
    );
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert!(e.to_string().contains("empty"), "{e}");
    }
    // P1's share handed to P0's session: P0 refuses; P1 learns it from the abort.
    let (mut s0, mut s1) = ideal_sessions(66);
    let (x0, x1) = share(&[4], &[0; 4], &mut rng);
    let (a, b) = tokio::join!(relu(&mut s0, &x1), relu(&mut s1, &x1));
    assert!(a.unwrap_err().to_string().contains("belongs to P1"));
    assert!(b.is_err());
    let _ = x0;
    // The client passing a LayerNorm bias is refused.
    let (mut s0, _s1) = ideal_sessions(67);
    let norm = NormParams {
        gain: ServerVector::shape(1, 4),
        bias: Some(vec![0; 4]),
        eps: 1e-5,
    };
    let (l0, _) = share(&[2, 4], &[0; 8], &mut rng);
    let e = layer_norm(&mut s0, &l0, &norm).await.unwrap_err();
    assert!(e.to_string().contains("must not hold"), "{e}");
}

/// A dealer that serves the wrong kind (a P0 handle of the ideal dealer used by P1, i.e. a
/// source of the wrong party) is refused at session creation; a dealer that refuses a request
/// ends the op on both sides with the dealer's reason.
#[tokio::test]
async fn wrong_correlations_are_refused() {
    let (c0, _c1) = mem::pair();
    let (d0, _d1) = InsecureIdealDealer::pair(1);
    let e = Session::new(Party::P1, c0, d0, Prg::from_u64(1), params()).unwrap_err();
    assert!(e.to_string().contains("serves P0"), "{e}");
    // The dealer refuses mismatched requests (different counts): both parties fail.
    let mut rng = Prg::from_u64(7);
    let (mut s0, mut s1) = dealer_sessions(70).await;
    let (x0, _) = share(&[10], &[enc(1.0); 10], &mut rng);
    let (_, y1) = share(&[12], &[enc(1.0); 12], &mut rng);
    let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &y1));
    for e in [a.unwrap_err(), b.unwrap_err()] {
        let t = e.to_string();
        assert!(
            t.contains("does not match") || t.contains("other shapes"),
            "{t}"
        );
    }
}

/// A correlation source that answers comparison requests with the wrong material: a
/// multiplexer correlation (wrong kind) or comparisons for one element fewer (wrong count).
struct Faulty {
    inner: InsecureIdealDealer,
    short: bool,
}

impl crate::beaver::TripleProvider for Faulty {
    fn party(&self) -> Party {
        self.inner.party()
    }

    async fn fetch(
        &mut self,
        req: &crate::beaver::Request,
    ) -> Result<crate::beaver::Material, crate::beaver::BeaverError> {
        use crate::beaver::Request;
        use crate::beaver::nl::NlRequest;
        let req = match req {
            Request::Nonlinear(NlRequest::Cmp {
                n,
                bits,
                digit_bits,
            }) => Request::Nonlinear(if self.short {
                NlRequest::Cmp {
                    n: n - 1,
                    bits: *bits,
                    digit_bits: *digit_bits,
                }
            } else {
                NlRequest::Mux { n: *n, k: 1 }
            }),
            other => other.clone(),
        };
        self.inner.fetch(&req).await
    }
}

#[tokio::test]
async fn a_source_serving_the_wrong_kind_or_count_is_refused_on_both_sides() {
    let mut rng = Prg::from_u64(8);
    for short in [false, true] {
        let (c0, c1) = mem::pair();
        let (d0, d1) = InsecureIdealDealer::pair(80);
        let mut s0 = Session::new(
            Party::P0,
            c0,
            Faulty { inner: d0, short },
            Prg::from_u64(1),
            params(),
        )
        .unwrap();
        let mut s1 = Session::new(Party::P1, c1, d1, Prg::from_u64(2), params()).unwrap();
        let (x0, x1) = share(&[5], &[enc(1.0); 5], &mut rng);
        let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &x1));
        let (a, b) = (a.unwrap_err().to_string(), b.unwrap_err().to_string());
        assert!(a.contains("correlation source error"), "{a}");
        assert!(b.contains("correlation source error"), "P1 learns why: {b}");
    }
}

/// Without a dealer (the OT-based provider over IKNP) every nonlinear op is refused on both
/// sides with the reason, before any correlation traffic.
#[tokio::test]
async fn dealer_free_sessions_refuse_the_nonlinear_ops() {
    use crate::beaver::OtTripleProvider;
    use crate::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
    let mut prg = Prg::from_u64(9);
    let cfg = IknpConfig::default();
    let (p0, p1) = mem::pair();
    let s01 = IknpSender::random(cfg.clone(), &mut prg);
    let r01 = IknpReceiver::new(cfg.clone(), &mut prg);
    let s10 = IknpSender::random(cfg.clone(), &mut prg);
    let r10 = IknpReceiver::new(cfg, &mut prg);
    let o0 = OtTripleProvider::new(Party::P0, p0, s01, r10, prg.gen_seed());
    let o1 = OtTripleProvider::new(Party::P1, p1, s10, r01, prg.gen_seed());
    let (c0, c1) = mem::pair();
    let mut s0 = Session::new(Party::P0, c0, o0, Prg::from_u64(1), params()).unwrap();
    let mut s1 = Session::new(Party::P1, c1, o1, Prg::from_u64(2), params()).unwrap();
    let (x0, x1) = share(&[3], &[enc(1.0); 3], &mut prg);
    let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &x1));
    for e in [a.unwrap_err(), b.unwrap_err()] {
        let t = e.to_string();
        assert!(t.starts_with("relu: "), "{t}");
        assert!(
            t.contains("not available without the dealer") || t.contains("aborted"),
            "{t}"
        );
    }
    assert_eq!(
        s0.correlations().channel().stats().total().bytes_sent,
        0,
        "nothing was attempted on the OT channel"
    );
}
