//! The count backend equals what the channels count, exactly: every op at several sizes, run
//! for real over in-memory channels with correlations from the dealer's serve loop, against
//! [`Count`]: bytes sent and received, messages and rounds per party on the peer channel and on
//! each party's dealer link, per (phase, label). Also with 1 KiB frames and small correction
//! chunks, so messages span several frames and corrections several messages.

use super::*;
use crate::beaver::dealer::{DealerClient, DealerConfig, serve_session};
use crate::channel::{Channel, ChannelConfig, FramedChannel, Phase, mem};
use crate::ring::RingTensor;
use crate::session::Session;
use crate::share::{AShare, split};

type S = Session<FramedChannel, DealerClient<FramedChannel>>;

/// Two sessions over channels with frames of `frame` bytes, correlations from the dealer's
/// serve loop streaming corrections in messages of `chunk` elements.
async fn sessions(seed: u64, frame: usize, chunk: usize) -> (S, S) {
    let cfg = ChannelConfig {
        max_frame_len: frame,
        ..ChannelConfig::default()
    };
    let (x0, y0) = mem::pair_with(cfg.clone(), mem::DEFAULT_PIPE_BYTES);
    let (x1, y1) = mem::pair_with(cfg.clone(), mem::DEFAULT_PIPE_BYTES);
    let dcfg = DealerConfig {
        chunk_elems: chunk,
        ..DealerConfig::default()
    };
    tokio::spawn(async move {
        let _ = serve_session(x0, x1, &dcfg, &mut Prg::from_u64(seed)).await;
    });
    let (d0, d1) = tokio::join!(
        DealerClient::connect(y0, Party::P0, [3; 32]),
        DealerClient::connect(y1, Party::P1, [3; 32])
    );
    let (c0, c1) = mem::pair_with(cfg, mem::DEFAULT_PIPE_BYTES);
    (
        Session::new(
            Party::P0,
            c0,
            d0.unwrap(),
            Prg::from_u64(seed + 1),
            params(),
        )
        .unwrap(),
        Session::new(
            Party::P1,
            c1,
            d1.unwrap(),
            Prg::from_u64(seed + 2),
            params(),
        )
        .unwrap(),
    )
}

/// Asserts that the count equals both parties' channel and dealer-link counters for every
/// (phase, label) either side recorded.
fn assert_exact(count: &Count, s: [&S; 2], what: &str) {
    let mut keys: Vec<(Phase, String)> = count.costs().keys().cloned().collect();
    for sess in s {
        for (p, l, _) in sess.channel().stats().entries() {
            keys.push((p, l.to_string()));
        }
    }
    keys.sort();
    keys.dedup();
    let mut checked = 0;
    for (phase, label) in keys {
        let c = count.get(phase, &label);
        for (i, sess) in s.iter().enumerate() {
            let peer = sess.channel().stats().get(phase, &label);
            assert_eq!(
                c.parties[i].peer, peer,
                "{what}: P{i} peer channel, {phase:?}/{label:?}"
            );
            let dealer = sess.correlations().channel().stats().get(phase, &label);
            if label.is_empty() {
                continue; // the dealer handshake, before any op
            }
            assert_eq!(
                c.parties[i].dealer, dealer,
                "{what}: P{i} dealer link, {phase:?}/{label:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{what}: nothing compared");
}

fn shares(shape: &[usize], vals: Vec<u64>, rng: &mut Prg) -> (AShare, AShare) {
    split(&RingTensor::from_vec(shape, vals).unwrap(), rng)
}

fn counter(frame: usize, chunk: usize) -> Count {
    Count::new(params(), frame, chunk)
}

const CONFIGS: [(usize, usize); 2] = [(1 << 20, 1 << 16), (1024, 100)];

#[tokio::test]
async fn count_equals_channel_relu_gelu() {
    let mut rng = Prg::from_u64(1);
    for (frame, chunk) in CONFIGS {
        for n in [1usize, 64, 1000, 4100] {
            let (mut s0, mut s1) = sessions(n as u64, frame, chunk).await;
            let mut count = counter(frame, chunk);
            let x: Vec<u64> = (0..n).map(|_| enc(uniform(&mut rng, -9.0, 9.0))).collect();
            let (x0, x1) = shares(&[n], x, &mut rng);
            s0.set_cost_label(Phase::Online, "layer0");
            s1.set_cost_label(Phase::Online, "layer0");
            count.set_cost_label(Phase::Online, "layer0");
            let (a, b) = tokio::join!(relu(&mut s0, &x0), relu(&mut s1, &x1));
            a.unwrap();
            b.unwrap();
            count.relu(n).unwrap();
            let (a, b) = tokio::join!(gelu(&mut s0, &x0), gelu(&mut s1, &x1));
            a.unwrap();
            b.unwrap();
            count.gelu(n).unwrap();
            assert_exact(
                &count,
                [&s0, &s1],
                &format!("relu+gelu n={n} frame={frame}"),
            );
        }
    }
}

#[tokio::test]
async fn count_equals_channel_softmax() {
    let mut rng = Prg::from_u64(2);
    for (frame, chunk) in CONFIGS {
        for (shape, mask, temps) in [
            ([1usize, 1usize, 1usize], Mask::Causal, false),
            ([2, 5, 9], Mask::Causal, true),
            ([2, 3, 17], Mask::None, false),
            ([3, 16, 16], Mask::Causal, true),
        ] {
            let (mut s0, mut s1) = sessions(7, frame, chunk).await;
            let mut count = counter(frame, chunk);
            let n: usize = shape.iter().product();
            let x: Vec<u64> = (0..n).map(|_| enc(uniform(&mut rng, -9.0, 9.0))).collect();
            let (x0, x1) = shares(&shape, x, &mut rng);
            let t: Vec<f64> = (0..shape[0] * shape[1]).map(|i| 0.5 + i as f64).collect();
            let t = temps.then_some(t.as_slice());
            let (a, b) = tokio::join!(
                softmax(&mut s0, &x0, mask, t),
                softmax(&mut s1, &x1, mask, t)
            );
            a.unwrap();
            b.unwrap();
            count.softmax(&shape, mask, t).unwrap();
            assert_exact(
                &count,
                [&s0, &s1],
                &format!("softmax {shape:?} frame={frame}"),
            );
        }
    }
}

#[tokio::test]
async fn count_equals_channel_layer_norm() {
    let mut rng = Prg::from_u64(3);
    for (frame, chunk) in CONFIGS {
        for (rows, d) in [(1usize, 4usize), (3, 16), (5, 100)] {
            let (mut s0, mut s1) = sessions(9, frame, chunk).await;
            let mut count = counter(frame, chunk);
            for s in [&mut s0, &mut s1] {
                s.set_cost_label(Phase::Setup, "ln_1");
            }
            count.set_cost_label(Phase::Setup, "ln_1");
            let g: Vec<u64> = (0..d).map(|_| enc(uniform(&mut rng, -2.0, 2.0))).collect();
            let (v0, v1) = tokio::join!(
                setup_server_vector(&mut s0, 5, d, None),
                setup_server_vector(&mut s1, 5, d, Some(&g))
            );
            count.setup_server_vector(5, d);
            for s in [&mut s0, &mut s1] {
                s.set_cost_label(Phase::Online, "ln_1");
            }
            count.set_cost_label(Phase::Online, "ln_1");
            let x: Vec<u64> = (0..rows * d)
                .map(|_| enc(uniform(&mut rng, -9.0, 9.0)))
                .collect();
            let (x0, x1) = shares(&[rows, d], x, &mut rng);
            let n0 = NormParams {
                gain: v0.unwrap(),
                bias: None,
                eps: 1e-5,
            };
            let n1 = NormParams {
                gain: v1.unwrap(),
                bias: Some(vec![0; d]),
                eps: 1e-5,
            };
            let (a, b) = tokio::join!(layer_norm(&mut s0, &x0, &n0), layer_norm(&mut s1, &x1, &n1));
            a.unwrap();
            b.unwrap();
            count.layer_norm(rows, d, 5).unwrap();
            assert_exact(
                &count,
                [&s0, &s1],
                &format!("layer_norm {rows}x{d} frame={frame}"),
            );
        }
    }
}

#[tokio::test]
async fn count_equals_channel_argmax() {
    let mut rng = Prg::from_u64(4);
    for (frame, chunk) in CONFIGS {
        for (n, to) in [
            (1usize, Party::P0),
            (2, Party::P1),
            (7, Party::P0),
            (300, Party::P1),
        ] {
            let (mut s0, mut s1) = sessions(11, frame, chunk).await;
            let mut count = counter(frame, chunk);
            let x: Vec<u64> = (0..n).map(|_| enc(uniform(&mut rng, -9.0, 9.0))).collect();
            let (x0, x1) = shares(&[n], x, &mut rng);
            let (a, b) = tokio::join!(argmax(&mut s0, &x0, to), argmax(&mut s1, &x1, to));
            a.unwrap();
            b.unwrap();
            count.argmax(n, to).unwrap();
            assert_exact(&count, [&s0, &s1], &format!("argmax n={n} frame={frame}"));
        }
    }
}

/// Requests listed by the count, prefetched before the op, serve the whole op: the online
/// phase makes no dealer request.
#[tokio::test]
async fn count_lists_the_requests_to_prefetch() {
    use crate::beaver::{InsecureIdealDealer, Prefetched};
    let mut rng = Prg::from_u64(5);
    let shape = [2usize, 4, 6];
    let mut count = Count::with_defaults(params());
    count.softmax(&shape, Mask::Causal, None).unwrap();
    let reqs = count.requests().to_vec();
    assert!(reqs.len() > 10);
    let (d0, d1) = InsecureIdealDealer::pair(8);
    let (mut p0, mut p1) = (Prefetched::new(d0), Prefetched::new(d1));
    for r in &reqs {
        p0.prefetch(r.clone()).await.unwrap();
        p1.prefetch(r.clone()).await.unwrap();
    }
    let (c0, c1) = mem::pair();
    let mut s0 = Session::new(Party::P0, c0, p0, Prg::from_u64(1), params()).unwrap();
    let mut s1 = Session::new(Party::P1, c1, p1, Prg::from_u64(2), params()).unwrap();
    let x: Vec<u64> = (0..48).map(|_| enc(uniform(&mut rng, -5.0, 5.0))).collect();
    let (x0, x1) = shares(&shape, x.clone(), &mut rng);
    let (a, b) = tokio::join!(
        softmax(&mut s0, &x0, Mask::Causal, None),
        softmax(&mut s1, &x1, Mask::Causal, None)
    );
    let y = crate::share::reconstruct(&a.unwrap(), &b.unwrap()).unwrap();
    assert_eq!(
        s0.correlations().queued(),
        0,
        "every prefetched request was used"
    );
    assert_eq!(
        s0.correlations_mut().inner_mut().served(),
        reqs.len() as u64
    );
    let want = plain_ops::softmax(
        &params(),
        &RingTensor::from_vec(&shape, x).unwrap(),
        Mask::Causal,
        None,
    )
    .unwrap();
    let diff = y
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
        .max()
        .unwrap();
    assert!(diff <= 8);
    let _ = s1;
}
