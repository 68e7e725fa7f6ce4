#![allow(missing_docs)]
//! OT benches: base-OT setup, IKNP random COTs, COTs, random OTs, chosen-message OT, dealer
//! COTs, transposition. Both parties run on one thread (a current-thread tokio runtime) over
//! the in-memory pair, so a figure is the cost of *both* parties together.
//!
//! `cargo bench -p privlm-protocols --bench ot -- --warm-up-time 1 --measurement-time 3`
//!
//! Besides criterion's wall-clock figures, each bench prints the CPU time its thread used
//! (from `/proc/thread-self/schedstat`), which stays meaningful on a shared, loaded machine.

use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{Channel, ChannelConfig, FramedChannel, mem};
use privlm_protocols::ot::base::{BASE_OT_COUNT, base_ot_recv, base_ot_send};
use privlm_protocols::ot::chosen::{RotBufferReceiver, RotBufferSender};
use privlm_protocols::ot::dealer::{DealerCotReceiver, DealerCotSender, deal_cot};
use privlm_protocols::ot::iknp::{
    IknpConfig, IknpReceiver, IknpReceiverCore, IknpSender, IknpSenderCore,
};
use privlm_protocols::ot::transpose::cols_to_rows;
use privlm_protocols::ot::{CotReceiver, CotSender, RotReceiver, RotSender};
use privlm_protocols::prg::Prg;
use rand_core::Rng;
use tokio::runtime::Runtime;

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// CPU time used by this thread so far, in nanoseconds (Linux), if available.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `f` under criterion (wall clock), then `iters` more times measuring CPU time.
fn bench_both(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    elems: u64,
    iters: u32,
    mut f: impl FnMut(),
) {
    g.bench_function(name, |b| b.iter(&mut f));
    let (c0, w0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..iters {
        f();
    }
    let wall = w0.elapsed().as_secs_f64() / iters as f64;
    if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
        let cpu = (c1 - c0) as f64 * 1e-9 / iters as f64;
        eprintln!(
            "CPU {name}: {:.3} ms CPU per iteration ({:.2} M elem per CPU-second); wall {:.3} ms",
            cpu * 1e3,
            elems as f64 / cpu / 1e6,
            wall * 1e3
        );
    }
}

fn setup_iknp(rt: &Runtime) -> (IknpSender, IknpReceiver, FramedChannel, FramedChannel) {
    setup_iknp_pipe(rt, mem::DEFAULT_PIPE_BYTES)
}

fn setup_iknp_pipe(
    rt: &Runtime,
    pipe: usize,
) -> (IknpSender, IknpReceiver, FramedChannel, FramedChannel) {
    rt.block_on(async {
        let (mut a, mut b) = mem::pair_with(ChannelConfig::default(), pipe);
        let mut prg = Prg::from_u64(1);
        let mut s = IknpSender::random(IknpConfig::default(), &mut prg);
        let mut r = IknpReceiver::new(IknpConfig::default(), &mut prg);
        let (x, y) = tokio::join!(s.setup(&mut a), r.setup(&mut b));
        x.unwrap();
        y.unwrap();
        (s, r, a, b)
    })
}

/// Bytes sent by both parties and rounds, framing included.
fn traffic(a: &FramedChannel, b: &FramedChannel) -> (u64, u64) {
    let (ta, tb) = (a.stats().total(), b.stats().total());
    (ta.bytes_sent + tb.bytes_sent, ta.rounds + tb.rounds)
}

fn base_ot(c: &mut Criterion) {
    let rt = rt();
    let choices: Vec<bool> = (0..BASE_OT_COUNT).map(|i| i % 2 == 0).collect();
    let mut prg1 = Prg::from_u64(1);
    let mut prg2 = Prg::from_u64(2);
    let (mut a, mut b) = rt.block_on(async { mem::pair() });
    let mut g = c.benchmark_group("base_ot");
    bench_both(&mut g, "128 base OTs", 128, 20, || {
        rt.block_on(async {
            let (x, y) = tokio::join!(
                base_ot_send(&mut a, BASE_OT_COUNT, &mut prg1),
                base_ot_recv(&mut b, &choices, &mut prg2)
            );
            x.unwrap();
            y.unwrap();
        })
    });
    g.finish();
    let t = traffic(&a, &b);
    eprintln!("base OT traffic so far: {} bytes, {} rounds", t.0, t.1);
}

const N: usize = 1 << 20;

fn iknp(c: &mut Criterion) {
    let rt = rt();
    let (mut s, mut r, mut a, mut b) = setup_iknp(&rt);
    let mut prg = Prg::from_u64(3);
    let choices: Vec<bool> = (0..N).map(|_| prg.next_u64() & 1 == 1).collect();
    let mut g = c.benchmark_group("iknp");
    g.throughput(Throughput::Elements(N as u64));
    bench_both(&mut g, "random COT x 2^20", N as u64, 5, || {
        rt.block_on(async {
            let (x, y) = tokio::join!(s.send_rcot(&mut a, N), r.recv_rcot(&mut b, N));
            x.unwrap();
            y.unwrap();
        })
    });
    bench_both(&mut g, "COT (chosen bits) x 2^20", N as u64, 5, || {
        rt.block_on(async {
            let (x, y) = tokio::join!(s.send_cot(&mut a, N), r.recv_cot(&mut b, &choices));
            x.unwrap();
            y.unwrap();
        })
    });
    bench_both(&mut g, "random OT x 2^20", N as u64, 5, || {
        rt.block_on(async {
            let (x, y) = tokio::join!(s.send_rot(&mut a, N), r.recv_rot(&mut b, N));
            x.unwrap();
            y.unwrap();
        })
    });
    {
        let (mut s, mut r, mut a, mut b) = setup_iknp_pipe(&rt, 1 << 20);
        bench_both(&mut g, "random COT x 2^20, 1 MiB pipe", N as u64, 5, || {
            rt.block_on(async {
                let (x, y) = tokio::join!(s.send_rcot(&mut a, N), r.recv_rcot(&mut b, N));
                x.unwrap();
                y.unwrap();
            })
        });
    }
    g.finish();
    // Traffic per COT, measured on one extra call.
    let before = traffic(&a, &b);
    rt.block_on(async {
        let (x, y) = tokio::join!(s.send_rcot(&mut a, N), r.recv_rcot(&mut b, N));
        x.unwrap();
        y.unwrap();
    });
    let after = traffic(&a, &b);
    eprintln!(
        "iknp: {:.3} bits sent per random COT (both directions, framing and call header included), {} new rounds counted for one more call of 2^20 (the receiver keeps sending: one flight)",
        (after.0 - before.0) as f64 * 8.0 / N as f64,
        after.1 - before.1
    );
}

fn chosen(c: &mut Criterion) {
    let rt = rt();
    let (s, r, mut a, mut b) = setup_iknp(&rt);
    let mut s = RotBufferSender::new(s);
    let mut r = RotBufferReceiver::new(r);
    let n = 1 << 18;
    let mut prg = Prg::from_u64(4);
    let msgs: Vec<[Block; 2]> = (0..n)
        .map(|_| [Block::random(&mut prg), Block::random(&mut prg)])
        .collect();
    let choices: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
    let mut g = c.benchmark_group("chosen_ot");
    g.throughput(Throughput::Elements(n as u64));
    bench_both(
        &mut g,
        "IKNP ROT + derandomization x 2^18",
        n as u64,
        5,
        || {
            rt.block_on(async {
                let (x, y) = tokio::join!(
                    s.send_chosen(&mut a, &msgs),
                    r.recv_chosen(&mut b, &choices)
                );
                x.unwrap();
                y.unwrap();
            })
        },
    );
    g.bench_function("online only (preprocessed ROTs) x 2^18", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    let (x, y) = tokio::join!(s.preprocess(&mut a, n), r.preprocess(&mut b, n));
                    x.unwrap();
                    y.unwrap();
                    let start = Instant::now();
                    let (x, y) = tokio::join!(
                        s.send_chosen(&mut a, &msgs),
                        r.recv_chosen(&mut b, &choices)
                    );
                    x.unwrap();
                    y.unwrap();
                    total += start.elapsed();
                })
            }
            total
        })
    });
    g.finish();
}

fn dealer(c: &mut Criterion) {
    let rt = rt();
    let n = 1 << 18;
    let mut dealer = Prg::from_u64(5);
    let delta = Block::random(&mut dealer);
    let mut prg = Prg::from_u64(6);
    let choices: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
    let (mut a, mut b) = rt.block_on(async { mem::pair() });
    let mut g = c.benchmark_group("dealer");
    g.throughput(Throughput::Elements(n as u64));
    bench_both(&mut g, "deal COT x 2^18", n as u64, 5, || {
        std::hint::black_box(deal_cot(&mut dealer, delta, n));
    });
    g.bench_function("consume dealt COT (chosen bits) x 2^18", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (sp, rp) = deal_cot(&mut dealer, delta, n);
                let mut s = DealerCotSender::new(delta);
                s.add(sp).unwrap();
                let mut r = DealerCotReceiver::new();
                r.add(rp);
                rt.block_on(async {
                    let start = Instant::now();
                    let (x, y) = tokio::join!(s.send_cot(&mut a, n), r.recv_cot(&mut b, &choices));
                    x.unwrap();
                    y.unwrap();
                    total += start.elapsed();
                })
            }
            total
        })
    });
    g.finish();
}

fn iknp_core(c: &mut Criterion) {
    // Compute only (no channel): both cores on one 2^14 chunk, as after the base OTs.
    let m = 1 << 14;
    let mut prg = Prg::from_u64(8);
    let delta = Block(Block::random(&mut prg).0 | 1);
    let pairs: Vec<[Block; 2]> = (0..128)
        .map(|_| [Block::random(&mut prg), Block::random(&mut prg)])
        .collect();
    let chosen: Vec<Block> = (0..128)
        .map(|j| pairs[j][((delta.0 >> j) & 1) as usize])
        .collect();
    let mut s = IknpSenderCore::new(delta, &chosen).unwrap();
    let mut r = IknpReceiverCore::new(&pairs).unwrap();
    let bits: Vec<u64> = (0..m / 64).map(|_| prg.next_u64()).collect();
    let mut g = c.benchmark_group("iknp_core");
    g.throughput(Throughput::Elements(m as u64));
    let mut ts = Vec::with_capacity(m);
    let mut qs = Vec::with_capacity(m);
    bench_both(
        &mut g,
        "receiver + sender extend, 2^14 (no channel)",
        m as u64,
        50,
        || {
            ts.clear();
            qs.clear();
            let u = r.extend(&bits, &mut ts).unwrap().to_vec();
            s.extend(m, &u, &mut qs).unwrap();
        },
    );
    g.finish();
}

fn hash(c: &mut Criterion) {
    let n = 1 << 16;
    let xs: Vec<Block> = (0..n as u128).map(|i| Block(i * 0x9e37_79b9)).collect();
    let tw: Vec<Block> = (0..n as u128).map(Block).collect();
    let mut out = vec![Block::ZERO; n];
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Elements(n as u64));
    bench_both(&mut g, "tccr_many x 2^16", n as u64, 50, || {
        privlm_protocols::hash::FIXED_KEY_AES.tccr_many(&tw, &xs, &mut out);
    });
    g.finish();
}

fn transpose(c: &mut Criterion) {
    let m = 1 << 14;
    let mut prg = Prg::from_u64(7);
    let cols: Vec<u64> = (0..128 * m / 64).map(|_| prg.next_u64()).collect();
    let mut g = c.benchmark_group("transpose");
    g.throughput(Throughput::Elements(m as u64));
    bench_both(&mut g, "128 x 2^14 cols to rows", m as u64, 50, || {
        std::hint::black_box(cols_to_rows(&cols, m));
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = base_ot, iknp_core, transpose, hash, iknp, chosen, dealer
}
criterion_main!(benches);
