//! The nonlinear layers at the paper's shapes (T = 128, d = 768, 12 heads), beside the peers'
//! measured figures (`reference/anchors.md`, last section): client-server bytes each way per
//! element (both phases; everything privlm sends between the parties), dealer bytes per element,
//! send flights per party, max and mean absolute error against f64, wall time.
//!
//! Bytes, rounds and dealer bytes come from the count backend (`nonlinear::Count`, tested equal
//! to the channels' counters); the bench also runs every op for real and checks that the
//! channels counted the same. Time: both parties in one process on a 2-thread tokio runtime,
//! in-memory channels, correlations prefetched from the in-process ideal dealer (the dealer's
//! expansion is timed apart as "prep").
//!
//! Run: `cargo bench -p privlm-protocols --bench nonlinear` (add `-- quick` for small shapes).

#![allow(missing_docs)]

use std::time::Instant;

use privlm_protocols::beaver::{InsecureIdealDealer, Prefetched};
use privlm_protocols::channel::{Channel, FramedChannel, Phase, mem};
use privlm_protocols::nonlinear::approx::{self, NormParams};
use privlm_protocols::nonlinear::{
    self, Count, CountedCosts, Mask, NlParams, Plain, RowLayout, ServerVector, garbled_row_max_cost,
};
use privlm_protocols::prg::Prg;
use privlm_protocols::ring::RingTensor;
use privlm_protocols::session::Session;
use privlm_protocols::share::{AShare, Party, reconstruct, split};
use rand_core::Rng;

type S = Session<FramedChannel, Prefetched<InsecureIdealDealer>>;

fn params() -> NlParams {
    NlParams::default()
}

fn enc(x: f64) -> u64 {
    params().enc(x)
}

fn dec(x: u64) -> f64 {
    params().dec(x)
}

fn uniform(rng: &mut Prg, lo: f64, hi: f64) -> f64 {
    lo + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
}

/// A peer's figures for one op.
struct Peer {
    name: &'static str,
    bytes: &'static str,
    dealer: &'static str,
    rounds: &'static str,
    error: &'static str,
    time: &'static str,
}

/// One row of the table.
struct Row {
    op: String,
    elems: usize,
    costs: CountedCosts,
    delays: u64,
    max_err: f64,
    mean_err: f64,
    prep_s: f64,
    online_s: f64,
    peers: Vec<Peer>,
}

/// Two sessions whose correlations are the count's requests, prefetched (timed).
async fn sessions(requests: &[privlm_protocols::beaver::Request], seed: u64) -> (S, S, f64) {
    let (d0, d1) = InsecureIdealDealer::pair(seed);
    let (mut p0, mut p1) = (Prefetched::new(d0), Prefetched::new(d1));
    let t = Instant::now();
    let (a, b) = tokio::join!(
        async {
            for r in requests {
                p0.prefetch(r.clone()).await.unwrap();
            }
        },
        async {
            for r in requests {
                p1.prefetch(r.clone()).await.unwrap();
            }
        }
    );
    let _ = (a, b);
    let prep = t.elapsed().as_secs_f64();
    let (c0, c1) = mem::pair();
    (
        Session::new(Party::P0, c0, p0, Prg::from_u64(seed + 1), params()).unwrap(),
        Session::new(Party::P1, c1, p1, Prg::from_u64(seed + 2), params()).unwrap(),
        prep,
    )
}

fn errors(got: &[u64], want: &[f64]) -> (f64, f64) {
    let mut max: f64 = 0.0;
    let mut sum = 0.0;
    for (g, w) in got.iter().zip(want) {
        let e = (dec(*g) - w).abs();
        max = max.max(e);
        sum += e;
    }
    (max, sum / want.len().max(1) as f64)
}

/// Checks that the channels counted what the count predicted (online label of the op).
fn check_counts(count: &Count, s0: &S, s1: &S, label: &str) {
    let c = count.get(Phase::Online, label);
    for (i, s) in [s0, s1].iter().enumerate() {
        assert_eq!(
            c.parties[i].peer,
            s.channel().stats().get(Phase::Online, label),
            "{label}: P{i}'s channel disagrees with the count"
        );
    }
}

fn share(shape: &[usize], v: Vec<u64>, rng: &mut Prg) -> (AShare, AShare) {
    split(&RingTensor::from_vec(shape, v).unwrap(), rng)
}

fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

async fn bench_elementwise(gelu: bool, n: usize, rng: &mut Prg) -> Row {
    let mut count = Count::with_defaults(params());
    if gelu {
        count.gelu(n).unwrap();
    } else {
        count.relu(n).unwrap();
    }
    let (mut s0, mut s1, prep) = sessions(count.requests(), 1).await;
    let bound = if gelu { 8.0 } else { 10.0 };
    let xf: Vec<f64> = (0..n).map(|_| uniform(rng, -bound, bound)).collect();
    let x: Vec<u64> = xf.iter().map(|&v| enc(v)).collect();
    let (x0, x1) = share(&[n], x.clone(), rng);
    let t = Instant::now();
    let (a, b) = if gelu {
        tokio::join!(
            tokio::spawn(async move { (nonlinear::gelu(&mut s0, &x0).await, s0) }),
            tokio::spawn(async move { (nonlinear::gelu(&mut s1, &x1).await, s1) })
        )
    } else {
        tokio::join!(
            tokio::spawn(async move { (nonlinear::relu(&mut s0, &x0).await, s0) }),
            tokio::spawn(async move { (nonlinear::relu(&mut s1, &x1).await, s1) })
        )
    };
    let online = t.elapsed().as_secs_f64();
    let ((a, s0), (b, s1)) = (a.unwrap(), b.unwrap());
    let label = if gelu { "gelu" } else { "relu" };
    check_counts(&count, &s0, &s1, label);
    let y = reconstruct(&a.unwrap(), &b.unwrap()).unwrap();
    let want: Vec<f64> = xq(&x)
        .iter()
        .map(|&v| if gelu { gelu_f64(v) } else { v.max(0.0) })
        .collect();
    let (max_err, mean_err) = errors(y.data(), &want);
    let peers = if gelu {
        vec![
            Peer {
                name: "SPU CHEETAH (tanh)",
                bytes: "2796",
                dealer: "-",
                rounds: "-",
                error: "6.5e-3",
                time: "65",
            },
            Peer {
                name: "SPU CHEETAH (piecewise)",
                bytes: "1439",
                dealer: "-",
                rounds: "-",
                error: "1.8e-2",
                time: "57",
            },
            Peer {
                name: "CrypTen (x·sigmoid(1.702x))",
                bytes: "784",
                dealer: "240",
                rounds: "24",
                error: "1.9e-2",
                time: "1.3",
            },
        ]
    } else {
        vec![
            Peer {
                name: "SPU CHEETAH",
                bytes: "101",
                dealer: "-",
                rounds: "-",
                error: "3.8e-6",
                time: "12.5",
            },
            Peer {
                name: "CrypTen",
                bytes: "464",
                dealer: "120",
                rounds: "9",
                error: "1.5e-5",
                time: "0.8",
            },
        ]
    };
    Row {
        op: format!("{} 128x3072", if gelu { "GELU" } else { "ReLU" }),
        elems: n,
        costs: count.total(),
        delays: count.delays(),
        max_err,
        mean_err,
        prep_s: prep,
        online_s: online,
        peers,
    }
}

fn xq(x: &[u64]) -> Vec<f64> {
    x.iter().map(|&v| dec(v)).collect()
}

fn softmax_f64(x: &[f64], heads: usize, t: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..heads * t {
        let i = r % t;
        let row = &x[r * t..r * t + i + 1];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for j in 0..=i {
            out[r * t + j] = (row[j] - m).exp() / s;
        }
    }
    out
}

async fn bench_softmax(heads: usize, t: usize, rng: &mut Prg) -> Row {
    let shape = [heads, t, t];
    let n = heads * t * t;
    let mut count = Count::with_defaults(params());
    count.softmax(&shape, Mask::Causal, None).unwrap();
    let (mut s0, mut s1, prep) = sessions(count.requests(), 2).await;
    let x: Vec<u64> = (0..n).map(|_| enc(uniform(rng, -10.0, 10.0))).collect();
    let (x0, x1) = share(&shape, x.clone(), rng);
    let start = Instant::now();
    let (a, b) = tokio::join!(
        tokio::spawn(async move {
            (
                nonlinear::softmax(&mut s0, &x0, Mask::Causal, None).await,
                s0,
            )
        }),
        tokio::spawn(async move {
            (
                nonlinear::softmax(&mut s1, &x1, Mask::Causal, None).await,
                s1,
            )
        })
    );
    let online = start.elapsed().as_secs_f64();
    let ((a, s0), (b, s1)) = (a.unwrap(), b.unwrap());
    check_counts(&count, &s0, &s1, "softmax");
    let y = reconstruct(&a.unwrap(), &b.unwrap()).unwrap();
    let (max_err, mean_err) = errors(y.data(), &softmax_f64(&xq(&x), heads, t));
    Row {
        op: format!("softmax {heads}x{t}x{t} causal (per full-matrix element)"),
        elems: n,
        costs: count.total(),
        delays: count.delays(),
        max_err,
        mean_err,
        prep_s: prep,
        online_s: online,
        peers: vec![
            Peer {
                name: "SPU CHEETAH",
                bytes: "1498",
                dealer: "-",
                rounds: "-",
                error: "9.5e-3",
                time: "9",
            },
            Peer {
                name: "CrypTen",
                bytes: "1488",
                dealer: "424",
                rounds: "116",
                error: "9.3e-3",
                time: "1.4",
            },
        ],
    }
}

async fn bench_layer_norm(rows: usize, d: usize, rng: &mut Prg) -> (Row, CountedCosts) {
    let mut count = Count::with_defaults(params());
    count.set_cost_label(Phase::Setup, "setup");
    count.setup_server_vector(1, d);
    let setup = count.get(Phase::Setup, "setup/server_vector");
    count.set_cost_label(Phase::Online, "");
    count.reset();
    count.layer_norm(rows, d, 1).unwrap();
    let mut reqs = vec![privlm_protocols::beaver::Request::WeightMask { id: 1, k: 1, m: d }];
    reqs.extend_from_slice(count.requests());
    let (mut s0, mut s1, prep) = sessions(&reqs, 3).await;
    let gf: Vec<f64> = (0..d).map(|_| uniform(rng, 0.3, 2.0)).collect();
    let bf: Vec<f64> = (0..d).map(|_| uniform(rng, -1.0, 1.0)).collect();
    let g: Vec<u64> = gf.iter().map(|&v| enc(v)).collect();
    let b: Vec<u64> = bf.iter().map(|&v| enc(v)).collect();
    let (v0, v1) = tokio::join!(
        nonlinear::setup_server_vector(&mut s0, 1, d, None),
        nonlinear::setup_server_vector(&mut s1, 1, d, Some(&g))
    );
    let mut xf = Vec::with_capacity(rows * d);
    for r in 0..rows {
        let sd = 0.5 + 20.0 * r as f64 / rows as f64;
        let off = uniform(rng, -3.0, 3.0);
        xf.extend((0..d).map(|_| off + sd * uniform(rng, -1.7, 1.7)));
    }
    let x: Vec<u64> = xf.iter().map(|&v| enc(v)).collect();
    let (x0, x1) = share(&[rows, d], x.clone(), rng);
    let n0 = NormParams {
        gain: v0.unwrap(),
        bias: None,
        eps: 1e-5,
    };
    let n1 = NormParams {
        gain: v1.unwrap(),
        bias: Some(b.clone()),
        eps: 1e-5,
    };
    let start = Instant::now();
    let (a, c) = tokio::join!(
        tokio::spawn(async move { (nonlinear::layer_norm(&mut s0, &x0, &n0).await, s0) }),
        tokio::spawn(async move { (nonlinear::layer_norm(&mut s1, &x1, &n1).await, s1) })
    );
    let online = start.elapsed().as_secs_f64();
    let ((a, s0), (c, s1)) = (a.unwrap(), c.unwrap());
    check_counts(&count, &s0, &s1, "layer_norm");
    let y = reconstruct(&a.unwrap(), &c.unwrap()).unwrap();
    let xqv = xq(&x);
    let gq = xq(&g);
    let bq = xq(&b);
    let mut want = Vec::with_capacity(rows * d);
    for row in xqv.chunks(d) {
        let m = row.iter().sum::<f64>() / d as f64;
        let v = row.iter().map(|z| (z - m) * (z - m)).sum::<f64>() / d as f64;
        let r = 1.0 / (v + 1e-5).sqrt();
        want.extend(
            row.iter()
                .enumerate()
                .map(|(j, z)| (z - m) * r * gq[j] + bq[j]),
        );
    }
    let (max_err, mean_err) = errors(y.data(), &want);
    let row = Row {
        op: format!("LayerNorm {rows}x{d}"),
        elems: rows * d,
        costs: count.total(),
        delays: count.delays(),
        max_err,
        mean_err,
        prep_s: prep,
        online_s: online,
        peers: vec![
            Peer {
                name: "SPU CHEETAH",
                bytes: "666",
                dealer: "-",
                rounds: "-",
                error: "2.7e-3",
                time: "2.5",
            },
            Peer {
                name: "CrypTen",
                bytes: "65",
                dealer: "31",
                rounds: "20",
                error: "5.8e-3",
                time: "-",
            },
        ],
    };
    (row, setup)
}

async fn bench_argmax(n: usize, rng: &mut Prg) -> Row {
    let mut count = Count::with_defaults(params());
    count.argmax(n, Party::P0).unwrap();
    let (mut s0, mut s1, prep) = sessions(count.requests(), 4).await;
    let x: Vec<u64> = (0..n).map(|_| enc(uniform(rng, -20.0, 20.0))).collect();
    let want = Plain::run(approx::argmax(&mut Plain::new(params()), &x, Party::P0))
        .unwrap()
        .unwrap() as usize;
    let (x0, x1) = share(&[n], x, rng);
    let start = Instant::now();
    let (a, b) = tokio::join!(
        tokio::spawn(async move { (nonlinear::argmax(&mut s0, &x0, Party::P0).await, s0) }),
        tokio::spawn(async move { (nonlinear::argmax(&mut s1, &x1, Party::P0).await, s1) })
    );
    let online = start.elapsed().as_secs_f64();
    let ((a, s0), (b, s1)) = (a.unwrap(), b.unwrap());
    check_counts(&count, &s0, &s1, "argmax");
    let got = a.unwrap();
    assert_eq!(b.unwrap(), None);
    Row {
        op: format!("argmax over {n} (index to P0)"),
        elems: n,
        costs: count.total(),
        delays: count.delays(),
        max_err: if got == Some(want) { 0.0 } else { f64::NAN },
        mean_err: 0.0,
        prep_s: prep,
        online_s: online,
        peers: vec![],
    }
}

fn print(rows: &[Row]) {
    println!(
        "| op | who | client->server B/elem | server->client B/elem | total B/elem | dealer B/elem (to P1 / P0) | rounds (P0 / P1) | one-way delays | max err | mean err | time (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let c = &r.costs;
        let n = r.elems as f64;
        let (s0, s1) = (c.parties[0].peer.bytes_sent, c.parties[1].peer.bytes_sent);
        let err = if r.max_err.is_nan() {
            "WRONG".to_string()
        } else if r.op.starts_with("argmax") {
            "exact index".to_string()
        } else {
            format!("{:.2e}", r.max_err)
        };
        println!(
            "| {} | **privlm** | {:.1} | {:.1} | **{:.1}** | {:.1} / {:.2} | {} / {} | {} | {} | {:.1e} | {:.2} online (+{:.2} dealer expansion) |",
            r.op,
            s0 as f64 / n,
            s1 as f64 / n,
            (s0 + s1) as f64 / n,
            c.parties[1].dealer.bytes_recv as f64 / n,
            c.parties[0].dealer.bytes_recv as f64 / n,
            c.parties[0].peer.rounds,
            c.parties[1].peer.rounds,
            r.delays,
            err,
            r.mean_err,
            r.online_s,
            r.prep_s,
        );
        for p in &r.peers {
            println!(
                "| | {} | | | {} | {} | {} | | {} | | {} |",
                p.name, p.bytes, p.dealer, p.rounds, p.error, p.time
            );
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (t, d, heads, vocab) = if quick {
        (16, 64, 2, 1000)
    } else {
        (128, 768, 12, 50257)
    };
    let mut rng = Prg::from_u64(2026);
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        rows.push(bench_elementwise(false, t * 4 * d, &mut rng).await);
        rows.push(bench_elementwise(true, t * 4 * d, &mut rng).await);
        rows.push(bench_softmax(heads, t, &mut rng).await);
        let (ln, setup) = bench_layer_norm(t, d, &mut rng).await;
        rows.push(ln);
        rows.push(bench_argmax(vocab, &mut rng).await);
        println!(
            "LayerNorm session setup (the gain's masked vector, once per session): {} B server->client",
            setup.parties[1].peer.bytes_sent
        );
        rows
    });
    println!();
    print(&rows);
    // Row max of the softmax: the comparison tournament (run) against a garbled max tree
    // (estimated from the gadget counts).
    let layout = RowLayout::Causal {
        heads,
        rows: t,
        cols: t,
    };
    let lens: Vec<usize> = layout.lens().collect();
    let mut c = Count::with_defaults(params());
    let n: usize = lens.iter().sum();
    Plain::run(approx::row_max(&mut c, &n, &lens)).unwrap();
    let tour = c.total();
    let g = garbled_row_max_cost(&lens, params().logit_bits as u64);
    let full = (heads * t * t) as f64;
    println!();
    println!("Softmax row max over {heads}x{t} causal rows, per full-matrix element:");
    println!(
        "- comparison tournament (implemented): {:.1} B client-server, rounds {} / {}",
        tour.peer_bytes() as f64 / full,
        tour.parties[0].peer.rounds,
        tour.parties[1].peer.rounds
    );
    println!(
        "- garbled max tree (estimate): {:.1} B ({} ANDs), constant rounds",
        (g.garbler_to_evaluator + g.evaluator_to_garbler) as f64 / full,
        g.ands
    );
    let _ = ServerVector::shape(0, 1);
}
