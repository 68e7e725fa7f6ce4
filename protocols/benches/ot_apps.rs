//! Benches of the protocols built on OT: DReLU / ReLU on 64-bit shares (bytes and rounds per
//! element, online, with ideal random OTs and bit triples standing in for dealer-supplied ones),
//! 1-out-of-16 OT, and Gilboa triples (triples per second, bytes per triple, with ideal COTs).
//!
//! Run: `cargo bench -p privlm-protocols --bench ot_apps -- --warm-up-time 1 --measurement-time 3`.
//! The byte and round figures are printed once per group before timing; they come from the
//! channels' counters (`stats().total()`), frame headers and count tags included.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{Channel, FramedChannel, mem};
use privlm_protocols::ot::b2a::relu;
use privlm_protocols::ot::gilboa::{ElementwiseTripleSource, GilboaTriples};
use privlm_protocols::ot::ideal::{
    IdealCotReceiver, IdealCotSender, IdealRotReceiver, IdealRotSender, ideal_cot, ideal_rot,
};
use privlm_protocols::ot::millionaire::{
    DreluParams, IdealBitTriples, RotRole, drelu, ideal_bit_triples,
};
use privlm_protocols::ot::one_of_n::{OneOfN, recv_one_of_n, send_one_of_n};
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

criterion_group!(benches, bench_drelu, bench_gilboa);
criterion_main!(benches);
