//! Two-party tests of the Beaver layer, truncation and the dealer: both parties run in one test
//! over `channel::mem::pair()`, with the ideal dealer and with the dealer's serve loop, and every
//! result is compared with the plaintext ring / fixed-point reference.

use rand_core::Rng;

use super::dealer::{
    DealerClient, DealerConfig, DealerError, Hello, SessionSummary, Welcome, serve_session,
};
use super::*;
use crate::channel::{Channel, ChannelError, FramedChannel, Phase, mem};
use crate::prg::Prg;
use crate::ring::{FixedPoint, R64, RingTensor};
use crate::share::{AShare, Party, reconstruct, split};
use crate::trunc::{trunc, trunc_local};

const SESSION: [u8; 32] = [42u8; 32];

type Handle = tokio::task::JoinHandle<Result<SessionSummary, DealerError>>;

/// Two dealer clients connected to a dealer serve loop running in a task.
async fn dealer_pair(
    chunk_elems: usize,
) -> (
    DealerClient<FramedChannel>,
    DealerClient<FramedChannel>,
    Handle,
) {
    let (d0, c0) = mem::pair();
    let (d1, c1) = mem::pair();
    let cfg = DealerConfig {
        chunk_elems,
        ..DealerConfig::default()
    };
    // Connections arrive in either order: hand P1's first.
    let h = tokio::spawn(async move { serve_session(d1, d0, &cfg, &mut Prg::from_u64(99)).await });
    let (p0, p1) = tokio::join!(
        DealerClient::connect(c0, Party::P0, SESSION),
        DealerClient::connect(c1, Party::P1, SESSION)
    );
    (p0.unwrap(), p1.unwrap(), h)
}

/// Closes both dealer clients and checks that the dealer ended cleanly.
async fn finish_dealer(
    p0: DealerClient<FramedChannel>,
    p1: DealerClient<FramedChannel>,
    h: Handle,
) -> SessionSummary {
    p0.into_channel().close().await.unwrap();
    p1.into_channel().close().await.unwrap();
    h.await.unwrap().unwrap()
}

fn rand_fixed(shape: &[usize], bound: f64, fp: FixedPoint, rng: &mut Prg) -> RingTensor {
    let n: usize = shape.iter().product();
    let xs: Vec<f64> = (0..n)
        .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * bound)
        .collect();
    RingTensor::encode(shape, &xs, fp).unwrap()
}

/// Shapes of every bilinear case: (op, x shape, y shape).
fn bilinear_cases() -> Vec<(BilinearOp, Vec<usize>, Vec<usize>)> {
    use BilinearOp::*;
    vec![
        (Mul, vec![1], vec![1]),
        (Mul, vec![7], vec![7]),
        (Mul, vec![3, 5], vec![3, 5]),
        (MatMul, vec![1, 1], vec![1, 1]),
        (MatMul, vec![1, 6], vec![6, 1]),
        (MatMul, vec![6, 1], vec![1, 4]),
        (MatMul, vec![1, 9], vec![9, 5]),
        (MatMul, vec![7, 1], vec![1, 1]),
        (MatMul, vec![5, 3], vec![3, 8]),
        (BatchMatMul, vec![1, 1, 1], vec![1, 1, 1]),
        (BatchMatMul, vec![3, 2, 5], vec![3, 5, 4]),
        (BatchMatMul, vec![4, 1, 6], vec![4, 6, 1]),
    ]
}

/// Runs every bilinear case in one `beaver_many` call (one message each way), then truncates,
/// and compares with the plaintext ring product and the plaintext fixed-point product.
async fn check_bilinear<P0: TripleProvider, P1: TripleProvider>(p0: &mut P0, p1: &mut P1) {
    let fp = FixedPoint::default();
    let f = fp.frac_bits();
    let mut rng = Prg::from_u64(1);
    let cases = bilinear_cases();
    let mut plain = Vec::new();
    let (mut s0, mut s1) = (Vec::new(), Vec::new());
    for (op, xs, ys) in &cases {
        let x = rand_fixed(xs, 8.0, fp, &mut rng);
        let y = rand_fixed(ys, 8.0, fp, &mut rng);
        let (x0, x1) = split(&x, &mut rng);
        let (y0, y1) = split(&y, &mut rng);
        plain.push(op.apply(&x, &y).unwrap());
        s0.push((x0, y0));
        s1.push((x1, y1));
    }
    let items0: Vec<_> = cases
        .iter()
        .zip(&s0)
        .map(|((op, _, _), (x, y))| (*op, x, y))
        .collect();
    let items1: Vec<_> = cases
        .iter()
        .zip(&s1)
        .map(|((op, _, _), (x, y))| (*op, x, y))
        .collect();
    let (mut c0, mut c1) = mem::pair();
    c0.set_phase(Phase::Online);
    c1.set_phase(Phase::Online);
    let (z0, z1) = tokio::join!(
        beaver_many(&mut c0, p0, &items0),
        beaver_many(&mut c1, p1, &items1)
    );
    let (z0, z1) = (z0.unwrap(), z1.unwrap());
    // One message per direction for all products of the step.
    assert_eq!(c0.stats().phase_total(Phase::Online).msgs_sent, 1);
    assert_eq!(c1.stats().phase_total(Phase::Online).msgs_sent, 1);
    for (i, ((a, b), want)) in z0.iter().zip(&z1).zip(&plain).enumerate() {
        let got = reconstruct(a, b).unwrap();
        assert_eq!(&got, want, "case {i}: {:?}", cases[i]);
        // Fixed point: truncate the 2f-bit product back to f bits.
        let (t0, t1) = tokio::join!(trunc(&mut c0, p0, a, f), trunc(&mut c1, p1, b, f));
        let t = reconstruct(&t0.unwrap(), &t1.unwrap()).unwrap();
        let reference = want.shr_signed(f);
        for (g, w) in t.data().iter().zip(reference.data()) {
            let err = (*g as i64).wrapping_sub(*w as i64);
            assert!(err == 0 || err == 1, "case {i}: error {err} ulp");
        }
    }
}

#[tokio::test]
async fn bilinear_ideal() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(3);
    check_bilinear(&mut p0, &mut p1).await;
}

#[tokio::test]
async fn bilinear_dealer_small_chunks() {
    // Chunks of 7 elements: every correction crosses chunk boundaries.
    let (mut p0, mut p1, h) = dealer_pair(7).await;
    check_bilinear(&mut p0, &mut p1).await;
    let s = finish_dealer(p0, p1, h).await;
    // One triple request per case, one truncation request per case.
    assert_eq!(s.requests, 2 * bilinear_cases().len() as u64);
}

async fn check_square<P0: TripleProvider, P1: TripleProvider>(p0: &mut P0, p1: &mut P1) {
    let mut rng = Prg::from_u64(4);
    for n in [1usize, 2, 13] {
        let x = RingTensor::random(&[n], &mut rng);
        let (x0, x1) = split(&x, &mut rng);
        let (mut c0, mut c1) = mem::pair();
        let (z0, z1) = tokio::join!(square(&mut c0, p0, &x0), square(&mut c1, p1, &x1));
        let got = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
        assert_eq!(got, x.mul_elem(&x).unwrap());
    }
}

#[tokio::test]
async fn square_pairs_ideal_and_dealer() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(5);
    check_square(&mut p0, &mut p1).await;
    let (mut p0, mut p1, h) = dealer_pair(5).await;
    check_square(&mut p0, &mut p1).await;
    finish_dealer(p0, p1, h).await;
}

/// Server-weight products for odd shapes, two queries per weight, against the plaintext.
async fn check_weight<P0: TripleProvider, P1: TripleProvider>(p0: &mut P0, p1: &mut P1) {
    let fp = FixedPoint::default();
    let mut rng = Prg::from_u64(6);
    let (mut c0, mut c1) = mem::pair();
    for (id, &(n, k, m)) in [(1, 1, 1), (1, 6, 1), (5, 1, 3), (1, 4, 9), (7, 5, 3)]
        .iter()
        .enumerate()
    {
        let id = id as u32;
        let w = rand_fixed(&[k, m], 2.0, fp, &mut rng);
        let (cw, sw) = tokio::join!(
            ClientWeight::setup(&mut c0, p0, id, k, m),
            ServerWeight::setup(&mut c1, p1, id, w.clone())
        );
        let (cw, sw) = (cw.unwrap(), sw.unwrap());
        for _query in 0..2 {
            let x = rand_fixed(&[n, k], 4.0, fp, &mut rng);
            let (x0, x1) = split(&x, &mut rng);
            let (z0, z1) = tokio::join!(cw.matmul(&mut c0, p0, &x0), sw.matmul(&mut c1, p1, &x1));
            let got = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
            assert_eq!(got, x.matmul(&w).unwrap(), "{n}x{k}x{m}");
        }
        // The same product with P0's part prepared ahead of the input.
        // (With a dealer, P1's request must be in flight at the same time: here it is issued
        // by P1's online call, joined with P0's preparation.)
        let x = rand_fixed(&[n, k], 4.0, fp, &mut rng);
        let (x0, x1) = split(&x, &mut rng);
        let client = async {
            let prepared = cw.prepare(p0, n).await?;
            cw.matmul_prepared(&mut c0, prepared, &x0).await
        };
        let (z0, z1) = tokio::join!(client, sw.matmul(&mut c1, p1, &x1));
        let got = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
        assert_eq!(got, x.matmul(&w).unwrap(), "prepared {n}x{k}x{m}");
    }
}

#[tokio::test]
async fn server_weight_ideal() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(7);
    check_weight(&mut p0, &mut p1).await;
}

#[tokio::test]
async fn server_weight_dealer() {
    let (mut p0, mut p1, h) = dealer_pair(4).await;
    check_weight(&mut p0, &mut p1).await;
    finish_dealer(p0, p1, h).await;
}

/// Table lookup of client-held indices against the server's table, plus positional rows the
/// server adds to its share.
async fn check_lookup<P0: TripleProvider, P1: TripleProvider>(p0: &mut P0, p1: &mut P1) {
    let fp = FixedPoint::default();
    let mut rng = Prg::from_u64(8);
    let (mut c0, mut c1) = mem::pair();
    for (id, &(v, d, ref ids)) in [
        (1usize, 1usize, vec![0usize]),
        (37, 5, vec![0, 36, 5, 5, 17]),
        (9, 1, vec![8]),
    ]
    .iter()
    .enumerate()
    {
        let id = id as u32 + 100;
        let table = rand_fixed(&[v, d], 3.0, fp, &mut rng);
        let pos = rand_fixed(&[ids.len(), d], 1.0, fp, &mut rng);
        let (cw, sw) = tokio::join!(
            ClientWeight::setup(&mut c0, p0, id, v, d),
            ServerWeight::setup(&mut c1, p1, id, table.clone())
        );
        let (cw, sw) = (cw.unwrap(), sw.unwrap());
        let (z0, z1) = tokio::join!(
            cw.lookup(&mut c0, p0, ids),
            sw.lookup(&mut c1, p1, ids.len())
        );
        let z0 = add_server_plain(&z0.unwrap(), &pos).unwrap();
        let z1 = add_server_plain(&z1.unwrap(), &pos).unwrap();
        let got = reconstruct(&z0, &z1).unwrap();
        let mut want = Vec::new();
        for (t, &i) in ids.iter().enumerate() {
            for j in 0..d {
                want.push(table.data()[i * d + j].wrapping_add(pos.data()[t * d + j]));
            }
        }
        assert_eq!(got.data(), &want[..], "V={v} d={d} ids={ids:?}");
    }
}

#[tokio::test]
async fn table_lookup_ideal_and_dealer() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(9);
    check_lookup(&mut p0, &mut p1).await;
    let (mut p0, mut p1, h) = dealer_pair(16).await;
    check_lookup(&mut p0, &mut p1).await;
    finish_dealer(p0, p1, h).await;
}

/// The factored lookup (v1 + v2 elements per index online) against the plaintext rows, with
/// tables padded to v1 * v2 rows.
async fn check_factored_lookup<P0: TripleProvider, P1: TripleProvider>(p0: &mut P0, p1: &mut P1) {
    let fp = FixedPoint::default();
    let mut rng = Prg::from_u64(16);
    let (mut c0, mut c1) = mem::pair();
    for (id, &(v, d, ref ids)) in [
        (1usize, 1usize, vec![0usize]),
        (37, 5, vec![0, 36, 5, 5, 17]),
        (2, 3, vec![1, 0]),
        (10, 1, vec![9]),
    ]
    .iter()
    .enumerate()
    {
        let id = id as u32 + 200;
        let (v1, v2) = lookup::factor_dims(v);
        let mut table = rand_fixed(&[v, d], 3.0, fp, &mut rng).into_data();
        table.resize(v1 * v2 * d, 0);
        let table = RingTensor::from_vec(&[v1 * v2, d], table).unwrap();
        let (cw, sw) = tokio::join!(
            ClientWeight::setup(&mut c0, p0, id, v1 * v2, d),
            ServerWeight::setup(&mut c1, p1, id, table.clone())
        );
        let (cw, sw) = (cw.unwrap(), sw.unwrap());
        c0.stats_mut().reset();
        let (z0, z1) = tokio::join!(
            cw.lookup_factored(&mut c0, p0, ids, v1, v2),
            sw.lookup_factored(&mut c1, p1, ids.len(), v1, v2)
        );
        let got = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
        let want: Vec<u64> = ids
            .iter()
            .flat_map(|&i| table.data()[i * d..(i + 1) * d].to_vec())
            .collect();
        assert_eq!(got.data(), &want[..], "V={v} d={d} ids={ids:?}");
        // Online: (v1 + v2) elements per index, one message.
        let sent = c0.stats().total();
        assert_eq!(sent.msgs_sent, 1);
        assert_eq!(sent.bytes_sent, (ids.len() * (v1 + v2) * 8 + 4) as u64);
    }
}

#[tokio::test]
async fn factored_lookup_ideal_and_dealer() {
    let (mut p0, mut p1) = InsecureIdealDealer::pair(17);
    check_factored_lookup(&mut p0, &mut p1).await;
    let (mut p0, mut p1, h) = dealer_pair(6).await;
    check_factored_lookup(&mut p0, &mut p1).await;
    finish_dealer(p0, p1, h).await;
}

#[tokio::test]
async fn table_lookup_rejects_out_of_range_index() {
    let (mut p0, _p1) = InsecureIdealDealer::pair(9);
    // A weight the client believes has 4 rows; no server needed to see the local refusal.
    let (mut c0, mut c1) = mem::pair();
    let f = RingTensor::zeros(&[4, 2]);
    let (_, cw) = tokio::join!(
        c1.send_tensor(&f),
        ClientWeight::setup(&mut c0, &mut p0, 1, 4, 2)
    );
    let cw = cw.unwrap();
    let err = cw.lookup(&mut c0, &mut p0, &[4]).await.unwrap_err();
    assert!(err.to_string().contains("outside the table"), "{err}");
}

/// The online bytes of a 128x768 by 768x768 server-weight product: exactly the opening `E`
/// (128*768*8 bytes) plus one 4-byte frame header, client to server; nothing back. `F` is sent
/// once per session (Setup phase), not per query.
#[tokio::test]
async fn server_weight_online_bytes_and_f_once() {
    let (n, k, m) = (128usize, 768usize, 768usize);
    let (mut p0, mut p1) = InsecureIdealDealer::pair(10);
    let mut rng = Prg::from_u64(11);
    let w = RingTensor::random(&[k, m], &mut rng);
    let (mut c0, mut c1) = mem::pair();
    for c in [&mut c0, &mut c1] {
        c.set_phase(Phase::Setup);
        c.set_label("wq");
    }
    let (cw, sw) = tokio::join!(
        ClientWeight::setup(&mut c0, &mut p0, 0, k, m),
        ServerWeight::setup(&mut c1, &mut p1, 0, w.clone())
    );
    let (cw, sw) = (cw.unwrap(), sw.unwrap());
    let setup_server = c1.stats().get(Phase::Setup, "wq");
    // F = k*m elements: a shape header message, then the elements in 1 MiB frames.
    let f_bytes = (k * m * 8) as u64;
    let f_frames = (k * m * 8).div_ceil(c1.config().max_frame_len) as u64;
    assert_eq!(setup_server.msgs_sent, 2);
    assert_eq!(
        setup_server.bytes_sent,
        f_bytes + 4 * f_frames + (1 + 16) + 4
    );
    for c in [&mut c0, &mut c1] {
        c.set_phase(Phase::Online);
    }
    let e_bytes = (n * k * 8) as u64;
    let overhead = 4 * (n * k * 8).div_ceil(c0.config().max_frame_len) as u64;
    assert_eq!(overhead, 4);
    for query in 1..=2u64 {
        let x = RingTensor::random(&[n, k], &mut rng);
        let (x0, x1) = split(&x, &mut rng);
        let (z0, z1) = tokio::join!(
            cw.matmul(&mut c0, &mut p0, &x0),
            sw.matmul(&mut c1, &mut p1, &x1)
        );
        let got = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
        assert_eq!(got, x.matmul(&w).unwrap());
        let client = c0.stats().get(Phase::Online, "wq");
        let server = c1.stats().get(Phase::Online, "wq");
        assert_eq!(client.bytes_sent, query * (e_bytes + overhead));
        assert_eq!(client.msgs_sent, query);
        assert_eq!(server.bytes_sent, 0);
        assert_eq!(server.bytes_recv, query * (e_bytes + overhead));
        // F was not sent again.
        assert_eq!(c1.stats().get(Phase::Setup, "wq"), setup_server);
        assert_eq!(c1.stats().phase_total(Phase::Setup), setup_server);
    }
}

/// The documented truncation error on a million elements: dealer-assisted truncation is
/// `floor(x / 2^f)` or one more, never anything else, for |x| < 2^62 (realistic products and
/// the extremes of the range); local truncation fails at about the documented rate.
#[tokio::test]
async fn truncation_error_bound_million() {
    let f = crate::ring::DEFAULT_FRAC_BITS;
    let n = 1_000_000usize;
    let mut rng = Prg::from_u64(12);
    // Half: products of fixed-point values of magnitude up to 2^10 (pre-truncation values up to
    // 2^(20 + 2f)); half: uniform over the whole allowed range |x| < 2^62.
    let data: Vec<u64> = (0..n)
        .map(|i| {
            let u = rng.next_u64();
            let bits = if i % 2 == 0 { 20 + 2 * f } else { 62 };
            let mag = u & ((1u64 << bits) - 1);
            if rng.next_u64() & 1 == 0 {
                mag
            } else {
                mag.wrapping_neg()
            }
        })
        .collect();
    let x = RingTensor::from_vec(&[n], data).unwrap();
    let (x0, x1) = split(&x, &mut rng);
    let (mut p0, mut p1) = InsecureIdealDealer::pair(13);
    let (mut c0, mut c1) = mem::pair();
    let (t0, t1) = tokio::join!(
        trunc(&mut c0, &mut p0, &x0, f),
        trunc(&mut c1, &mut p1, &x1, f)
    );
    let t = reconstruct(&t0.unwrap(), &t1.unwrap()).unwrap();
    let want = x.shr_signed(f);
    let mut off_by_one = 0usize;
    for (i, (g, w)) in t.data().iter().zip(want.data()).enumerate() {
        let err = (*g as i64).wrapping_sub(*w as i64);
        assert!(
            err == 0 || err == 1,
            "element {i}: error {err} ulp (x = {})",
            x.data()[i] as i64
        );
        off_by_one += (err == 1) as usize;
    }
    // The extra unit comes with probability (x mod 2^f) / 2^f (stochastic rounding): about half
    // the time for these uniform low bits; both outcomes must occur.
    assert!(off_by_one > n / 4 && off_by_one < 3 * n / 4, "{off_by_one}");
    // Online bytes: one opening of 8 bytes per element each way (plus frame headers).
    let sent = c0.stats().total().bytes_sent;
    assert_eq!(sent, (8 * n + 4 * (8 * n).div_ceil(1 << 20)) as u64);

    // Local truncation on values of magnitude about 2^60 fails with probability about
    // |x| / 2^64 = 1/16 per element: the catastrophic error the dealer-assisted protocol avoids.
    let m = 100_000usize;
    let big = RingTensor::from_vec(&[m], vec![1u64 << 60; m]).unwrap();
    let (b0, b1) = split(&big, &mut rng);
    let l = reconstruct(&trunc_local(&b0, f).unwrap(), &trunc_local(&b1, f).unwrap()).unwrap();
    let want = (1u64 << 60) >> f;
    let mut failures = 0usize;
    for &g in l.data() {
        let err = (g as i64).wrapping_sub(want as i64);
        if err != 0 && err != -1 {
            failures += 1;
        }
    }
    let rate = failures as f64 / m as f64;
    assert!(
        (rate - 1.0 / 16.0).abs() < 0.01,
        "local failure rate {rate}"
    );
}

#[tokio::test]
async fn trunc_handles_odd_shapes_and_extremes() {
    let f = 16;
    let (mut p0, mut p1) = InsecureIdealDealer::pair(14);
    let mut rng = Prg::from_u64(15);
    let lim = (1i64 << 62) - 1;
    let vals = [0i64, 1, -1, lim, -lim, 65535, -65536, 1 << 40, -(1 << 40)];
    let x = RingTensor::from_vec(
        &[vals.len(), 1],
        vals.iter().map(|&v| R64::from_signed(v).0).collect(),
    )
    .unwrap();
    let (x0, x1) = split(&x, &mut rng);
    let (mut c0, mut c1) = mem::pair();
    let (t0, t1) = tokio::join!(
        trunc(&mut c0, &mut p0, &x0, f),
        trunc(&mut c1, &mut p1, &x1, f)
    );
    let t = reconstruct(&t0.unwrap(), &t1.unwrap()).unwrap();
    assert_eq!(t.shape(), &[vals.len(), 1]);
    for (g, v) in t.data().iter().zip(vals) {
        let err = (*g as i64) - (v >> f);
        assert!(err == 0 || err == 1, "x = {v}: error {err}");
    }
}

/// The dealer refuses requests that differ between the parties and both parties hear why.
#[tokio::test]
async fn dealer_refuses_mismatched_requests() {
    let (mut p0, mut p1, h) = dealer_pair(8).await;
    // A first agreeing request is served.
    let (a, b) = tokio::join!(p0.elementwise(3), p1.elementwise(3));
    a.unwrap();
    b.unwrap();
    // Then P1 asks for a different shape.
    let (a, b) = tokio::join!(p0.matmul(1, 2, 3, 4), p1.matmul(1, 2, 3, 5));
    for (who, r) in [("P0", a.map(|_| ())), ("P1", b.map(|_| ()))] {
        match r {
            Err(BeaverError::DealerRefused(reason)) => {
                assert!(reason.contains("does not match"), "{who}: {reason}");
                assert!(reason.contains("request #1"), "{who}: {reason}");
            }
            other => panic!("{who}: expected a refusal, got {other:?}"),
        }
    }
    match h.await.unwrap() {
        Err(DealerError::Refused(r)) => assert!(r.contains("does not match")),
        other => panic!("dealer: {other:?}"),
    }
}

#[tokio::test]
async fn dealer_refuses_unregistered_weight_and_bad_handshake() {
    let (mut p0, mut p1, h) = dealer_pair(8).await;
    let (a, b) = tokio::join!(p0.weight_triple(5, 2, 3, 4), p1.weight_triple(5, 2, 3, 4));
    for r in [a.map(|_| ()), b.map(|_| ())] {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("no session mask"), "{e}");
    }
    assert!(h.await.unwrap().is_err());

    // A weight id registered twice would reuse its mask: refused.
    let (mut p0, mut p1, h) = dealer_pair(8).await;
    let (a, b) = tokio::join!(p0.weight_mask(1, 2, 2), p1.weight_mask(1, 2, 2));
    a.unwrap();
    b.unwrap();
    let (a, b) = tokio::join!(p0.weight_mask(1, 2, 2), p1.weight_mask(1, 2, 2));
    for r in [a.map(|_| ()), b.map(|_| ())] {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("already registered"), "{e}");
    }
    assert!(h.await.unwrap().is_err());
    let (mut i0, _) = InsecureIdealDealer::pair(1);
    i0.weight_mask(3, 1, 1).await.unwrap();
    assert!(i0.weight_mask(3, 1, 1).await.is_err());

    // Two connections claiming the same role.
    let (d0, c0) = mem::pair();
    let (d1, c1) = mem::pair();
    let h = tokio::spawn(async move {
        serve_session(d0, d1, &DealerConfig::default(), &mut Prg::from_u64(1)).await
    });
    let (a, b) = tokio::join!(
        DealerClient::connect(c0, Party::P0, SESSION),
        DealerClient::connect(c1, Party::P0, SESSION)
    );
    for r in [a.map(|_| ()), b.map(|_| ())] {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("both connections claim"), "{e}");
    }
    assert!(matches!(h.await.unwrap(), Err(DealerError::Handshake(_))));
}

/// A dealer that disconnects in the middle of a correction stream: P1 (waiting for the stream)
/// fails at once with a clear error, P0 at its next request.
#[tokio::test]
async fn dealer_disconnect_mid_stream() {
    let (d0, c0) = mem::pair();
    let (d1, c1) = mem::pair();
    // A dealer that follows the protocol up to half of the first correction, then vanishes.
    let fake = tokio::spawn(async move {
        let (mut d0, mut d1) = (d0, d1);
        let _: Hello = d0.recv_msg("hello").await.unwrap();
        let _: Hello = d1.recv_msg("hello").await.unwrap();
        for d in [&mut d0, &mut d1] {
            d.send_msg(&Welcome {
                seed: [1u8; 32],
                chunk_elems: 4,
            })
            .await
            .unwrap();
        }
        let _: Request = d0.recv_msg("request").await.unwrap();
        let _: Request = d1.recv_msg("request").await.unwrap();
        d0.send_u64s(&[0]).await.unwrap();
        d1.send_u64s(&[0]).await.unwrap();
        d1.send_u64s(&[1, 2, 3, 4]).await.unwrap();
        d0.close().await.unwrap();
        d1.close().await.unwrap();
    });
    let (p0, p1) = tokio::join!(
        DealerClient::connect(c0, Party::P0, SESSION),
        DealerClient::connect(c1, Party::P1, SESSION)
    );
    let (mut p0, mut p1) = (p0.unwrap(), p1.unwrap());
    let (a, b) = tokio::join!(p0.elementwise(10), p1.elementwise(10));
    // P0 needs no correction: its first request completed before the dealer vanished.
    a.unwrap();
    match b {
        Err(BeaverError::DealerLost { during, source }) => {
            assert!(during.contains("request #0"), "{during}");
            assert_eq!(source, ChannelError::Closed);
        }
        other => panic!("P1: expected DealerLost, got {other:?}"),
    }
    fake.await.unwrap();
    match p0.elementwise(10).await {
        Err(BeaverError::DealerLost { during, .. }) => assert!(during.contains("request #1")),
        other => panic!("P0: expected DealerLost, got {other:?}"),
    }
}

/// A party that leaves mid-session ends the session for the other party with a clear reason.
#[tokio::test]
async fn dealer_reports_a_departed_party() {
    let (mut p0, p1, h) = dealer_pair(8).await;
    drop(p1);
    match p0.elementwise(2).await {
        Err(BeaverError::DealerRefused(r)) => assert!(r.contains("lost P1"), "{r}"),
        other => panic!("expected the dealer's report, got {other:?}"),
    }
    assert!(h.await.unwrap().is_err());
}

#[test]
fn requests_validate_sizes() {
    assert!(
        Request::MatMul {
            batch: 1,
            n: 1 << 40,
            k: 1 << 40,
            m: 1
        }
        .validate(DEFAULT_MAX_REQUEST_ELEMS)
        .is_err()
    );
    assert!(Request::Trunc { n: 3, frac_bits: 0 }.validate(100).is_err());
    assert!(
        Request::Trunc {
            n: 3,
            frac_bits: 63
        }
        .validate(100)
        .is_err()
    );
    assert!(
        Request::WeightMask { id: 0, k: 0, m: 3 }
            .validate(100)
            .is_err()
    );
    assert!(Request::Elementwise { n: 101 }.validate(100).is_err());
    assert!(Request::Elementwise { n: 100 }.validate(100).is_ok());
    assert!(require_insecure_opt_in(false).is_err());
    assert!(require_insecure_opt_in(true).is_ok());
}

#[test]
fn debug_output_hides_secrets() {
    let (p0, _) = InsecureIdealDealer::pair(1);
    assert!(!format!("{p0:?}").contains('['));
    let w = Welcome {
        seed: [7u8; 32],
        chunk_elems: 3,
    };
    assert!(!format!("{w:?}").contains('7'));
    let s = AShare::new(Party::P0, RingTensor::from_vec(&[1], vec![31337]).unwrap());
    assert!(!format!("{s:?}").contains("31337"));
}
