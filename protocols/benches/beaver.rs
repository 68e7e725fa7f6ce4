//! Beaver-layer benches for the FFN shape of GPT-2 small: X [128 x 768] times W [768 x 3072].
//!
//! - `dealer/*`: the dealer serve loop and both dealer clients over in-memory channels, per
//!   triple (seed expansion, the dealer's A B product, the correction stream); throughput in
//!   multiply-adds (n k m) per second.
//! - `online/server_weight_matmul`: the online phase of the server-weight product (triples
//!   prefetched, F sent once before timing): P0 sends E, both parties compute their share.
//! - `kernel/*`: the ring matrix product, naive (ring.rs) against the blocked kernel.
//!
//! Bytes per party are printed once before the timings. Run with
//! `cargo bench -p privlm-protocols --bench beaver -- --warm-up-time 1 --measurement-time 3`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use privlm_protocols::beaver::dealer::{DealerClient, DealerConfig, serve_session};
use privlm_protocols::beaver::kernel;
use privlm_protocols::beaver::{
    ClientWeight, InsecureIdealDealer, Prefetched, Request, ServerWeight, TripleProvider,
};
use privlm_protocols::channel::{Channel, FramedChannel, Phase, mem};
use privlm_protocols::prg::Prg;
use privlm_protocols::ring::{RingTensor, matmul_into};
use privlm_protocols::share::{Party, split};

const N: usize = 128;
const K: usize = 768;
const M: usize = 3072;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn dealer_clients() -> (DealerClient<FramedChannel>, DealerClient<FramedChannel>) {
    let (d0, c0) = mem::pair();
    let (d1, c1) = mem::pair();
    tokio::spawn(async move {
        let _ = serve_session(d0, d1, &DealerConfig::default(), &mut Prg::from_u64(1)).await;
    });
    let (p0, p1) = tokio::join!(
        DealerClient::connect(c0, Party::P0, [0u8; 32]),
        DealerClient::connect(c1, Party::P1, [0u8; 32])
    );
    (p0.expect("P0 connects"), p1.expect("P1 connects"))
}

fn bench_dealer(c: &mut Criterion) {
    let rt = runtime();
    let (mut p0, mut p1) = rt.block_on(dealer_clients());
    rt.block_on(async {
        let (a, b) = tokio::join!(p0.weight_mask(0, K, M), p1.weight_mask(0, K, M));
        a.expect("mask");
        b.expect("mask");
        // Dealer bytes of one weight triple, per party.
        for p in [&mut p0, &mut p1] {
            p.channel_mut().stats_mut().reset();
        }
        let (a, b) = tokio::join!(p0.weight_triple(0, N, K, M), p1.weight_triple(0, N, K, M));
        a.expect("triple");
        b.expect("triple");
        for (name, p) in [("P0", &p0), ("P1", &p1)] {
            let t = p.channel().stats().total();
            eprintln!(
                "dealer weight triple {N}x{K}x{M}: {name} sent {} B, received {} B",
                t.bytes_sent, t.bytes_recv
            );
        }
    });
    let mut g = c.benchmark_group("dealer");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * K * M) as u64));
    g.bench_function("weight_triple_128x768x3072", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (a, b) =
                    tokio::join!(p0.weight_triple(0, N, K, M), p1.weight_triple(0, N, K, M));
                a.expect("triple");
                b.expect("triple");
            })
        })
    });
    g.bench_function("matmul_triple_128x768x3072", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (a, b) = tokio::join!(p0.matmul(1, N, K, M), p1.matmul(1, N, K, M));
                a.expect("triple");
                b.expect("triple");
            })
        })
    });
    g.finish();
}

fn bench_online(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let mut rng = Prg::from_u64(2);
    let w = RingTensor::random(&[K, M], &mut rng);
    let (i0, i1) = InsecureIdealDealer::pair(3);
    let (mut p0, mut p1) = (Prefetched::new(i0), Prefetched::new(i1));
    let (mut c0, mut c1) = mem::pair();
    let (cw, sw) = rt.block_on(async {
        let (cw, sw) = tokio::join!(
            ClientWeight::setup(&mut c0, &mut p0, 0, K, M),
            ServerWeight::setup(&mut c1, &mut p1, 0, w.clone())
        );
        (cw.expect("setup"), sw.expect("setup"))
    });
    eprintln!(
        "server-weight setup (F, once per session): server sent {} B",
        c1.stats().phase_total(Phase::Setup).bytes_sent
    );
    c0.set_phase(Phase::Online);
    c1.set_phase(Phase::Online);
    let x = RingTensor::random(&[N, K], &mut rng);
    let (x0, x1) = split(&x, &mut rng);
    let req = Request::Weight {
        id: 0,
        n: N,
        k: K,
        m: M,
    };
    let mut state = Some((c0, c1, p0, p1));
    let mut once = true;
    let mut g = c.benchmark_group("online");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * K * M) as u64));
    g.bench_function("server_weight_matmul_128x768x3072", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut c0, mut c1, mut p0, mut p1) = state.take().expect("state");
                rt.block_on(async {
                    let (a, b) = tokio::join!(p0.prefetch(req.clone()), p1.prefetch(req.clone()));
                    a.expect("prefetch");
                    b.expect("prefetch");
                });
                let (cw, sw, x0, x1) = (&cw, &sw, x0.clone(), x1.clone());
                let start = Instant::now();
                let ((c0b, p0b), (c1b, p1b)) = rt.block_on(async move {
                    let client = async move {
                        cw.matmul(&mut c0, &mut p0, &x0).await.expect("client");
                        (c0, p0)
                    };
                    let server = async move {
                        sw.matmul(&mut c1, &mut p1, &x1).await.expect("server");
                        (c1, p1)
                    };
                    tokio::join!(client, server)
                });
                total += start.elapsed();
                if once {
                    once = false;
                    eprintln!(
                        "online server-weight product: client sent {} B, server sent {} B",
                        c0b.stats().phase_total(Phase::Online).bytes_sent,
                        c1b.stats().phase_total(Phase::Online).bytes_sent
                    );
                }
                state = Some((c0b, c1b, p0b, p1b));
            }
            total
        })
    });
    // The same with P0's input-independent part (A F + C0) computed during preprocessing.
    g.bench_function("server_weight_matmul_prepared_128x768x3072", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut c0, mut c1, mut p0, mut p1) = state.take().expect("state");
                let prepared = rt.block_on(async {
                    let (a, b) = tokio::join!(cw.prepare(&mut p0, N), p1.prefetch(req.clone()));
                    b.expect("prefetch");
                    a.expect("prepare")
                });
                let (cw, sw, x0, x1) = (&cw, &sw, x0.clone(), x1.clone());
                let start = Instant::now();
                let ((c0b, p0b), (c1b, p1b)) = rt.block_on(async move {
                    let client = async move {
                        cw.matmul_prepared(&mut c0, prepared, &x0)
                            .await
                            .expect("client");
                        (c0, p0)
                    };
                    let server = async move {
                        sw.matmul(&mut c1, &mut p1, &x1).await.expect("server");
                        (c1, p1)
                    };
                    tokio::join!(client, server)
                });
                total += start.elapsed();
                state = Some((c0b, c1b, p0b, p1b));
            }
            total
        })
    });
    g.finish();
}

fn bench_kernel(c: &mut Criterion) {
    let mut rng = Prg::from_u64(4);
    let a = RingTensor::random(&[N, K], &mut rng);
    let b = RingTensor::random(&[K, M], &mut rng);
    let mut g = c.benchmark_group("kernel");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * K * M) as u64));
    g.bench_function("naive_ring_matmul_into", |bch| {
        bch.iter(|| {
            let mut out = vec![0u64; N * M];
            matmul_into(a.data(), b.data(), &mut out, N, K, M);
            out
        })
    });
    g.bench_function("blocked_kernel", |bch| {
        bch.iter(|| kernel::matmul(a.data(), b.data(), N, K, M))
    });
    g.finish();
}

criterion_group!(benches, bench_dealer, bench_online, bench_kernel);
criterion_main!(benches);
