//! Benches of the protocols built on OT: DReLU / ReLU on 64-bit shares (bytes and rounds per
//! element, online, with ideal random OTs and bit triples standing in for dealer-supplied ones),
//! 1-out-of-16 OT, and Gilboa triples (triples per second, bytes per triple, with ideal COTs).
//! Integration with the real OTs: DReLU with dealer-supplied random OTs (`ot::dealer` consumers,
//! for the digit OTs and, through `RotBitTriples`, for the AND triples) and, for comparison, with
//! IKNP random OTs; Gilboa triples over IKNP COTs (extension traffic included).
//!
//! Run: `cargo bench -p privlm-protocols --bench ot_apps -- --warm-up-time 1 --measurement-time 3`.
//! The byte and round figures are printed once per group before timing; they come from the
//! channels' counters (`stats().total()`), frame headers and count tags included.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{Channel, FramedChannel, mem};
use privlm_protocols::ot::b2a::relu;
use privlm_protocols::ot::dealer::{DealerRotReceiver, DealerRotSender, deal_rot};
use privlm_protocols::ot::gilboa::{ElementwiseTripleSource, GilboaTriples};
use privlm_protocols::ot::ideal::{
    IdealCotReceiver, IdealCotSender, IdealRotReceiver, IdealRotSender, ideal_cot, ideal_rot,
};
use privlm_protocols::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use privlm_protocols::ot::millionaire::{
    BitTripleSource, BufferedBitTriples, DreluParams, IdealBitTriples, RotBitTriples, RotRole,
    drelu, ideal_bit_triples,
};
use privlm_protocols::ot::one_of_n::{OneOfN, recv_one_of_n, send_one_of_n};
use privlm_protocols::ot::{RotReceiver, RotSender};
use privlm_protocols::prg::Prg;
use privlm_protocols::share::Party;
use rand_core::Rng;
use tokio::runtime::Runtime;

type Role<'a> = RotRole<'a, IdealRotSender, IdealRotReceiver>;

struct Setup {
    ch0: FramedChannel,
    ch1: FramedChannel,
    rs: IdealRotSender,
    rr: IdealRotReceiver,
    cs01: IdealCotSender,
    cr01: IdealCotReceiver,
    cs10: IdealCotSender,
    cr10: IdealCotReceiver,
    t0: IdealBitTriples,
    t1: IdealBitTriples,
    g0: Prg,
    g1: Prg,
}

fn setup(rt: &Runtime) -> Setup {
    let _g = rt.enter();
    let (ch0, ch1) = mem::pair();
    let (rs, rr) = ideal_rot([1; 32]);
    let (cs01, cr01) = ideal_cot([2; 32], Block(5));
    let (cs10, cr10) = ideal_cot([3; 32], Block(7));
    let (t0, t1) = ideal_bit_triples([4; 32]);
    Setup {
        ch0,
        ch1,
        rs,
        rr,
        cs01,
        cr01,
        cs10,
        cr10,
        t0,
        t1,
        g0: Prg::from_u64(1),
        g1: Prg::from_u64(2),
    }
}

fn shares(n: usize) -> (Vec<u64>, Vec<u64>) {
    let mut prg = Prg::from_u64(9);
    let x0: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
    let x1: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
    (x0, x1)
}

async fn run_drelu(s: &mut Setup, x0: &[u64], x1: &[u64], p: DreluParams) {
    let (a, b) = tokio::join!(
        drelu(
            &mut s.ch0,
            Role::Sender(&mut s.rs),
            &mut s.t0,
            &mut s.g0,
            x0,
            p
        ),
        drelu(
            &mut s.ch1,
            Role::Receiver(&mut s.rr),
            &mut s.t1,
            &mut s.g1,
            x1,
            p
        )
    );
    a.unwrap();
    b.unwrap();
}

async fn run_relu(s: &mut Setup, x0: &[u64], x1: &[u64], p: DreluParams) {
    let (a, b) = tokio::join!(
        relu(
            Party::P0,
            &mut s.ch0,
            Role::Sender(&mut s.rs),
            &mut s.cs01,
            &mut s.cr10,
            &mut s.t0,
            &mut s.g0,
            x0,
            p
        ),
        relu(
            Party::P1,
            &mut s.ch1,
            Role::Receiver(&mut s.rr),
            &mut s.cs10,
            &mut s.cr01,
            &mut s.t1,
            &mut s.g1,
            x1,
            p
        )
    );
    a.unwrap();
    b.unwrap();
}

fn report(name: &str, s: &mut Setup, n: usize) {
    let c0 = s.ch0.stats().total();
    let c1 = s.ch1.stats().total();
    let bytes = c0.bytes_sent + c1.bytes_sent;
    println!(
        "{name}: n={n}: {:.2} bytes/element online (P0->P1 {} B, P1->P0 {} B), rounds P0 {} / P1 {}",
        bytes as f64 / n as f64,
        c0.bytes_sent,
        c1.bytes_sent,
        c0.rounds,
        c1.rounds
    );
    s.ch0.stats_mut().reset();
    s.ch1.stats_mut().reset();
}

fn bench_drelu(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let n = 4096;
    let (x0, x1) = shares(n);
    let mut s = setup(&rt);
    for (l, m) in [(64u32, 4u32), (64, 3), (37, 4), (16, 4)] {
        let p = DreluParams {
            bits: l,
            drop_low: 0,
            digit_bits: m,
        };
        rt.block_on(run_drelu(&mut s, &x0, &x1, p));
        report(&format!("DReLU l={l} m={m}"), &mut s, n);
    }
    rt.block_on(run_relu(&mut s, &x0, &x1, DreluParams::exact(64)));
    report("ReLU l=64 m=4", &mut s, n);

    let mut g = c.benchmark_group("ot_apps");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("drelu_64bit_4096", |b| {
        b.iter(|| rt.block_on(run_drelu(&mut s, &x0, &x1, DreluParams::exact(64))))
    });
    g.bench_function("relu_64bit_4096", |b| {
        b.iter(|| rt.block_on(run_relu(&mut s, &x0, &x1, DreluParams::exact(64))))
    });
    let p = OneOfN { log_n: 4, width: 2 };
    let tables = vec![3u64; n * 16];
    let choices: Vec<u32> = (0..n as u32).map(|i| i % 16).collect();
    g.bench_function("one_of_16_w2_4096", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (a, r) = tokio::join!(
                    send_one_of_n(&mut s.rs, &mut s.ch0, p, &tables),
                    recv_one_of_n(&mut s.rr, &mut s.ch1, p, &choices)
                );
                a.unwrap();
                r.unwrap();
            })
        })
    });
    g.finish();
}

fn bench_gilboa(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let s = setup(&rt);
    let (mut ch0, mut ch1) = (s.ch0, s.ch1);
    let mut g0 = GilboaTriples::new(Party::P0, s.cs01, s.cr10, [5; 32]);
    let mut g1 = GilboaTriples::new(Party::P1, s.cs10, s.cr01, [6; 32]);
    let n = 1024;
    let mut run = |ch0: &mut FramedChannel, ch1: &mut FramedChannel| {
        rt.block_on(async {
            let (a, b) = tokio::join!(
                g0.elementwise_triples(ch0, n),
                g1.elementwise_triples(ch1, n)
            );
            a.unwrap();
            b.unwrap();
        })
    };
    run(&mut ch0, &mut ch1);
    let (c0, c1) = (ch0.stats().total(), ch1.stats().total());
    println!(
        "Gilboa triples: n={n}: {:.1} bytes/triple (both directions, ideal COTs: messages only), rounds P0 {} / P1 {}",
        (c0.bytes_sent + c1.bytes_sent) as f64 / n as f64,
        c0.rounds,
        c1.rounds
    );
    let mut g = c.benchmark_group("ot_apps");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("gilboa_triples_1024", |b| {
        b.iter(|| run(&mut ch0, &mut ch1))
    });
    g.finish();
}

/// Both parties' ends of a DReLU run over some random-OT implementation.
struct RealEnds<RS, RR, T> {
    rs: RS,
    rr: RR,
    t0: T,
    t1: T,
}

type DealerEnds =
    RealEnds<DealerRotSender, DealerRotReceiver, RotBitTriples<DealerRotSender, DealerRotReceiver>>;

/// A dealer ROT pair holding `count` random OTs (dealt in batches of 2^16).
fn dealer_rot_pair(dealer: &mut Prg, count: usize) -> (DealerRotSender, DealerRotReceiver) {
    let (mut s, mut r) = (DealerRotSender::new(), DealerRotReceiver::new());
    let mut left = count;
    while left > 0 {
        let m = left.min(1 << 16);
        let (a, b) = deal_rot(dealer, m);
        s.add(a).expect("dealt batch");
        r.add(b);
        left -= m;
    }
    (s, r)
}

/// Dealer material for one DReLU batch of `n` 64-bit elements: the digit OTs (63 per element)
/// and the ROTs behind the AND triples (q − 1 ≤ 20 paired triples per element, one ROT each way
/// per triple), with a margin.
fn dealer_ends(dealer: &mut Prg, n: usize) -> DealerEnds {
    let (rs, rr) = dealer_rot_pair(dealer, 64 * n);
    let (s01, r01) = dealer_rot_pair(dealer, 21 * n);
    let (s10, r10) = dealer_rot_pair(dealer, 21 * n);
    RealEnds {
        rs,
        rr,
        t0: RotBitTriples::new(Party::P0, s01, r10),
        t1: RotBitTriples::new(Party::P1, s10, r01),
    }
}

type IknpEnds = RealEnds<IknpSender, IknpReceiver, RotBitTriples<IknpSender, IknpReceiver>>;

fn iknp_ends(prg: &mut Prg) -> IknpEnds {
    let cfg = IknpConfig::default();
    let mut pair = || {
        (
            IknpSender::random(cfg.clone(), prg),
            IknpReceiver::new(cfg.clone(), prg),
        )
    };
    let (rs, rr) = pair();
    let (s01, r01) = pair();
    let (s10, r10) = pair();
    RealEnds {
        rs,
        rr,
        t0: RotBitTriples::new(Party::P0, s01, r10),
        t1: RotBitTriples::new(Party::P1, s10, r01),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_drelu_real<RS: RotSender, RR: RotReceiver, T: BitTripleSource>(
    ch0: &mut FramedChannel,
    ch1: &mut FramedChannel,
    e: &mut RealEnds<RS, RR, T>,
    g0: &mut Prg,
    g1: &mut Prg,
    x0: &[u64],
    x1: &[u64],
    p: DreluParams,
) {
    let (a, b) = tokio::join!(
        drelu(
            ch0,
            RotRole::<RS, RR>::Sender(&mut e.rs),
            &mut e.t0,
            g0,
            x0,
            p
        ),
        drelu(
            ch1,
            RotRole::<RS, RR>::Receiver(&mut e.rr),
            &mut e.t1,
            g1,
            x1,
            p
        )
    );
    a.unwrap();
    b.unwrap();
}

fn report_channels(name: &str, ch0: &mut FramedChannel, ch1: &mut FramedChannel, n: usize) {
    let c0 = ch0.stats().total();
    let c1 = ch1.stats().total();
    let bytes = c0.bytes_sent + c1.bytes_sent;
    println!(
        "{name}: n={n}: {:.2} bytes/element (P0->P1 {} B, P1->P0 {} B), rounds P0 {} / P1 {}",
        bytes as f64 / n as f64,
        c0.bytes_sent,
        c1.bytes_sent,
        c0.rounds,
        c1.rounds
    );
    ch0.stats_mut().reset();
    ch1.stats_mut().reset();
}

fn bench_drelu_real(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let n = 4096;
    let (x0, x1) = shares(n);
    let (mut ch0, mut ch1) = {
        let _g = rt.enter();
        mem::pair()
    };
    let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
    let mut dealer = Prg::from_u64(77);
    for (l, m) in [(64u32, 4u32), (64, 3), (37, 4)] {
        let p = DreluParams {
            bits: l,
            drop_low: 0,
            digit_bits: m,
        };
        let mut e = dealer_ends(&mut dealer, n);
        rt.block_on(run_drelu_real(
            &mut ch0, &mut ch1, &mut e, &mut g0, &mut g1, &x0, &x1, p,
        ));
        report_channels(
            &format!("DReLU over dealer ROTs (digit OTs and AND triples) l={l} m={m}"),
            &mut ch0,
            &mut ch1,
            n,
        );
    }
    // Dealer ROTs for the digit OTs, bit triples handed out by the dealer (IdealBitTriples
    // stands in for the dealer's bit-triple correlation: no messages between the parties).
    {
        let (rs, rr) = dealer_rot_pair(&mut dealer, 64 * n);
        let (t0, t1) = ideal_bit_triples([12; 32]);
        let mut e = RealEnds { rs, rr, t0, t1 };
        rt.block_on(run_drelu_real(
            &mut ch0,
            &mut ch1,
            &mut e,
            &mut g0,
            &mut g1,
            &x0,
            &x1,
            DreluParams::exact(64),
        ));
        report_channels(
            "DReLU over dealer ROTs (digit OTs) + dealer bit triples l=64 m=4",
            &mut ch0,
            &mut ch1,
            n,
        );
    }
    // Dealer ROTs for everything, the AND triples preprocessed (BufferedBitTriples) before the
    // online phase; the counters are reset after preprocessing, so the figure is online only.
    {
        let e = dealer_ends(&mut dealer, n);
        let mut e = RealEnds {
            rs: e.rs,
            rr: e.rr,
            t0: BufferedBitTriples::new(e.t0),
            t1: BufferedBitTriples::new(e.t1),
        };
        let (a, b) = rt.block_on(async {
            tokio::join!(
                e.t0.preprocess(&mut ch0, 15 * n),
                e.t1.preprocess(&mut ch1, 15 * n)
            )
        });
        a.unwrap();
        b.unwrap();
        report_channels(
            "  (preprocessing: AND triples from dealer ROTs)",
            &mut ch0,
            &mut ch1,
            n,
        );
        rt.block_on(run_drelu_real(
            &mut ch0,
            &mut ch1,
            &mut e,
            &mut g0,
            &mut g1,
            &x0,
            &x1,
            DreluParams::exact(64),
        ));
        report_channels(
            "DReLU over dealer ROTs, AND triples preprocessed from dealer ROTs, online l=64 m=4",
            &mut ch0,
            &mut ch1,
            n,
        );
    }
    // IKNP: the first run includes the base OTs of the three IKNP pairs, the second is steady.
    let mut prg = Prg::from_u64(8);
    let mut e = iknp_ends(&mut prg);
    for what in ["with base-OT setup", "steady state"] {
        rt.block_on(run_drelu_real(
            &mut ch0,
            &mut ch1,
            &mut e,
            &mut g0,
            &mut g1,
            &x0,
            &x1,
            DreluParams::exact(64),
        ));
        report_channels(
            &format!("DReLU over IKNP ROTs l=64 m=4, {what}"),
            &mut ch0,
            &mut ch1,
            n,
        );
    }

    let mut g = c.benchmark_group("ot_apps");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("drelu_64bit_4096_dealer_rot", |b| {
        b.iter_batched(
            || dealer_ends(&mut dealer, n),
            |mut e| {
                rt.block_on(run_drelu_real(
                    &mut ch0,
                    &mut ch1,
                    &mut e,
                    &mut g0,
                    &mut g1,
                    &x0,
                    &x1,
                    DreluParams::exact(64),
                ))
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("drelu_64bit_4096_iknp_rot", |b| {
        b.iter(|| {
            rt.block_on(run_drelu_real(
                &mut ch0,
                &mut ch1,
                &mut e,
                &mut g0,
                &mut g1,
                &x0,
                &x1,
                DreluParams::exact(64),
            ))
        })
    });
    g.finish();
}

fn bench_gilboa_iknp(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut prg = Prg::from_u64(11);
    let (mut ch0, mut ch1) = {
        let _g = rt.enter();
        mem::pair()
    };
    let cfg = IknpConfig::default();
    let s01 = IknpSender::random(cfg.clone(), &mut prg);
    let r01 = IknpReceiver::new(cfg.clone(), &mut prg);
    let s10 = IknpSender::random(cfg.clone(), &mut prg);
    let r10 = IknpReceiver::new(cfg, &mut prg);
    let mut g0 = GilboaTriples::new(Party::P0, s01, r10, [5; 32]);
    let mut g1 = GilboaTriples::new(Party::P1, s10, r01, [6; 32]);
    let n = 1024;
    let mut run = |ch0: &mut FramedChannel, ch1: &mut FramedChannel| {
        rt.block_on(async {
            let (a, b) = tokio::join!(
                g0.elementwise_triples(ch0, n),
                g1.elementwise_triples(ch1, n)
            );
            a.unwrap();
            b.unwrap();
        })
    };
    run(&mut ch0, &mut ch1);
    report_channels(
        "Gilboa triples over IKNP, with base-OT setup (bytes/element = per triple)",
        &mut ch0,
        &mut ch1,
        n,
    );
    run(&mut ch0, &mut ch1);
    report_channels(
        "Gilboa triples over IKNP, steady state (bytes/element = per triple)",
        &mut ch0,
        &mut ch1,
        n,
    );
    let mut g = c.benchmark_group("ot_apps");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("gilboa_triples_1024_iknp", |b| {
        b.iter(|| run(&mut ch0, &mut ch1))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_drelu,
    bench_gilboa,
    bench_drelu_real,
    bench_gilboa_iknp
);
criterion_main!(benches);
