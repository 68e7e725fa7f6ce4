//! OT benches: base-OT setup, IKNP random COTs, random OTs, chosen-message OT, transposition.
//! Both parties run on one thread (a current-thread tokio runtime) over the in-memory pair.
//!
//! `cargo bench -p privlm-protocols --bench ot -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{Channel, FramedChannel, mem};
use privlm_protocols::ot::base::{BASE_OT_COUNT, base_ot_recv, base_ot_send};
use privlm_protocols::ot::chosen::{RotBufferReceiver, RotBufferSender};
use privlm_protocols::ot::dealer::{DealerCotReceiver, DealerCotSender, deal_cot};
use privlm_protocols::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
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

fn setup_iknp(rt: &Runtime) -> (IknpSender, IknpReceiver, FramedChannel, FramedChannel) {
    rt.block_on(async {
        let (mut a, mut b) = mem::pair();
        let mut prg = Prg::from_u64(1);
        let mut s = IknpSender::random(IknpConfig::default(), &mut prg);
        let mut r = IknpReceiver::new(IknpConfig::default(), &mut prg);
        let (x, y) = tokio::join!(s.setup(&mut a), r.setup(&mut b));
        x.unwrap();
        y.unwrap();
        (s, r, a, b)
    })
}

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
    c.bench_function("base_ot/128 (both parties, one thread)", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (x, y) = tokio::join!(
                    base_ot_send(&mut a, BASE_OT_COUNT, &mut prg1),
                    base_ot_recv(&mut b, &choices, &mut prg2)
                );
                x.unwrap();
                y.unwrap();
            })
        })
    });
}

const N: usize = 1 << 20;

fn iknp(c: &mut Criterion) {
    let rt = rt();
    let (mut s, mut r, mut a, mut b) = setup_iknp(&rt);
    let mut g = c.benchmark_group("iknp");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("random COT x 2^20", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (x, y) = tokio::join!(s.send_rcot(&mut a, N), r.recv_rcot(&mut b, N));
                x.unwrap();
                y.unwrap();
            })
        })
    });
    let before = traffic(&a, &b);
    let mut prg = Prg::from_u64(3);
    let choices: Vec<bool> = (0..N).map(|_| prg.next_u64() & 1 == 1).collect();
    g.bench_function("COT (chosen bits) x 2^20", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (x, y) = tokio::join!(s.send_cot(&mut a, N), r.recv_cot(&mut b, &choices));
                x.unwrap();
                y.unwrap();
            })
        })
    });
    g.bench_function("random OT x 2^20", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (x, y) = tokio::join!(s.send_rot(&mut a, N), r.recv_rot(&mut b, N));
                x.unwrap();
                y.unwrap();
            })
        })
    });
    g.finish();
    // Traffic per COT, measured on one extra call.
    let before2 = traffic(&a, &b);
    rt.block_on(async {
        let (x, y) = tokio::join!(s.send_rcot(&mut a, N), r.recv_rcot(&mut b, N));
        x.unwrap();
        y.unwrap();
    });
    let after = traffic(&a, &b);
    let _ = before;
    eprintln!(
        "iknp: {:.2} bits sent per random COT (both directions, framing included), {} rounds for 2^20",
        (after.0 - before2.0) as f64 * 8.0 / N as f64,
        after.1 - before2.1
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
    g.bench_function("IKNP ROT + derandomization x 2^18", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (x, y) = tokio::join!(
                    s.send_chosen(&mut a, &msgs),
                    r.recv_chosen(&mut b, &choices)
                );
                x.unwrap();
                y.unwrap();
            })
        })
    });
    g.bench_function("online only (preprocessed ROTs) x 2^18", |bench| {
        bench.iter_batched(
            || {
                rt.block_on(async {
                    let (x, y) = tokio::join!(s.preprocess(&mut a, n), r.preprocess(&mut b, n));
                    x.unwrap();
                    y.unwrap();
                })
            },
            |_| {
                rt.block_on(async {
                    let (x, y) = tokio::join!(
                        s.send_chosen(&mut a, &msgs),
                        r.recv_chosen(&mut b, &choices)
                    );
                    x.unwrap();
                    y.unwrap();
                })
            },
            criterion::BatchSize::PerIteration,
        )
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
    g.bench_function("deal COT x 2^18", |bench| {
        bench.iter(|| deal_cot(&mut dealer, delta, n))
    });
    g.bench_function("consume dealt COT (chosen bits) x 2^18", |bench| {
        bench.iter_batched(
            || {
                let (sp, rp) = deal_cot(&mut dealer, delta, n);
                let mut s = DealerCotSender::new(delta);
                s.add(sp).unwrap();
                let mut r = DealerCotReceiver::new();
                r.add(rp);
                (s, r)
            },
            |(mut s, mut r)| {
                rt.block_on(async {
                    let (x, y) = tokio::join!(s.send_cot(&mut a, n), r.recv_cot(&mut b, &choices));
                    x.unwrap();
                    y.unwrap();
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn transpose(c: &mut Criterion) {
    let m = 1 << 14;
    let mut prg = Prg::from_u64(7);
    let cols: Vec<u64> = (0..128 * m / 64).map(|_| prg.next_u64()).collect();
    let mut g = c.benchmark_group("transpose");
    g.throughput(Throughput::Elements(m as u64));
    g.bench_function("128 x 2^14 cols to rows", |bench| {
        bench.iter(|| cols_to_rows(&cols, m))
    });
    g.finish();
}

criterion_group!(benches, base_ot, iknp, chosen, dealer, transpose);
criterion_main!(benches);
