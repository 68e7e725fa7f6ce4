//! Garbled-circuit throughput: AND gates per second, single thread.
//!
//! - `gc_core/*`: the synchronous half-gates cores on 10 Mi independent ANDs, garbling into an
//!   in-memory table buffer (the sink) and evaluating from a buffer: compute only.
//! - `gc_backend/garble_to_sink`: the streaming `Garbler` backend running a gadget circuit of
//!   about 10.5 M ANDs (rounds of bulk signed max over 64-bit words) into a channel that
//!   discards what it is sent: compute plus the backend's batching, no transport.
//! - `gc_mem_pair/garble_and_evaluate`: garbler and evaluator of that circuit over
//!   `channel::mem::pair()` on one current-thread runtime (both parties share the one core:
//!   the figure is the pair's joint throughput).
//!
//! Bytes per AND on the wire are printed from the channel counters.
//!
//! The machine is shared: criterion's wall-clock figures drop when other processes compete
//! for the cores, so each case also prints its rate per second of this thread's CPU time
//! (from `/proc/thread-self/stat`, 10 ms ticks; Linux only).
//!
//! Run: `cargo bench -p privlm-protocols --bench gc -- --warm-up-time 1 --measurement-time 3`.

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{Channel, ChannelConfig, ChannelError, Stats, mem};
use privlm_protocols::gc::{
    Backend, EvalCore, Evaluator, GarbleCore, Garbler, GcConfig, GcError, Role, TABLE_BYTES, word,
};
use privlm_protocols::hash::FIXED_KEY_AES;
use privlm_protocols::ot::ideal::ideal_cot;
use privlm_protocols::prg::Prg;

/// A channel that discards everything it is sent (an in-memory sink) and counts the bytes.
struct SinkChannel {
    cfg: ChannelConfig,
    stats: Stats,
}

impl SinkChannel {
    fn new() -> Self {
        SinkChannel {
            cfg: ChannelConfig::default(),
            stats: Stats::default(),
        }
    }
}

impl Channel for SinkChannel {
    async fn send_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        black_box(data);
        self.stats.record_send(data.len());
        Ok(())
    }
    async fn recv_bytes_into(&mut self, _buf: &mut [u8], _ctx: &str) -> Result<(), ChannelError> {
        Err(ChannelError::Closed)
    }
    async fn recv_bytes_bounded(&mut self, _max: usize) -> Result<Vec<u8>, ChannelError> {
        Err(ChannelError::Closed)
    }
    async fn flush(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
    async fn abort(&mut self, reason: &str) -> ChannelError {
        ChannelError::Aborted(reason.into())
    }
    fn config(&self) -> &ChannelConfig {
        &self.cfg
    }
    fn stats(&self) -> &Stats {
        &self.stats
    }
    fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}

/// CPU seconds used by this thread so far (utime + stime), if `/proc` is available.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs `f` (which performs `ands` AND gates) a few times and prints the rate per CPU second
/// and per wall-clock second.
fn report_cpu_rate(name: &str, ands: u64, mut f: impl FnMut()) {
    let reps = 3;
    let wall = std::time::Instant::now();
    let Some(c0) = thread_cpu_secs() else { return };
    for _ in 0..reps {
        f();
    }
    let Some(c1) = thread_cpu_secs() else { return };
    let wall = wall.elapsed().as_secs_f64();
    let total = (ands * reps) as f64;
    println!(
        "{name}: {:.1} M per CPU second ({:.2} s CPU), {:.1} M per wall second ({:.2} s)",
        total / (c1 - c0).max(0.01) / 1e6,
        c1 - c0,
        total / wall / 1e6,
        wall
    );
}

const CORE_CHUNK: usize = 1 << 20;
const CORE_REPS: usize = 10;
const DELTA: Block = Block(0x0123_4567_89ab_cdef_fedc_ba98_7654_3211);

fn labels(n: usize, rng: &mut Prg) -> Vec<Block> {
    (0..n).map(|_| Block::random(rng)).collect()
}

/// Garbles `CORE_REPS` times `a[i] ∧ b[i]` in batches of 4096 into a reused table buffer,
/// with fresh tweaks throughout (as one long session would).
fn garble_core(a: &[Block], b: &[Block], tables: &mut Vec<u8>, out: &mut Vec<Block>) {
    let mut core = GarbleCore::new(DELTA).unwrap();
    let mut tweak = 0u64;
    for _ in 0..CORE_REPS {
        for (ca, cb) in a.chunks(4096).zip(b.chunks(4096)) {
            tables.clear();
            out.clear();
            core.and_many(ca, cb, tweak, out, tables);
            tweak += ca.len() as u64;
            black_box(&tables);
        }
    }
}

/// Evaluates the tables of one chunk `CORE_REPS` times (with the tweaks of the garbling, which
/// a real evaluator would not repeat; the cost is the same).
fn eval_core(a: &[Block], b: &[Block], tables: &[u8], out: &mut Vec<Block>) {
    for _ in 0..CORE_REPS {
        let mut core = EvalCore::new();
        let mut tweak = 0u64;
        for ((ca, cb), ct) in a
            .chunks(4096)
            .zip(b.chunks(4096))
            .zip(tables.chunks(4096 * TABLE_BYTES))
        {
            out.clear();
            core.and_many(ca, cb, tweak, ct, out);
            tweak += ca.len() as u64;
            black_box(&out);
        }
    }
}

/// The AES bound: fixed-key AES and TCCR throughput on the same machine, in blocks. Half-gates
/// garbling costs 4 TCCR (8 AES blocks) per AND, evaluation 2 TCCR (4 AES blocks).
fn bench_aes(c: &mut Criterion) {
    let mut rng = Prg::from_u64(4);
    let xs = labels(CORE_CHUNK, &mut rng);
    let tw: Vec<Block> = (0..CORE_CHUNK as u128).map(Block).collect();
    let mut buf = xs.clone();
    let mut out = vec![Block::ZERO; CORE_CHUNK];
    let mut g = c.benchmark_group("aes_baseline");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CORE_CHUNK as u64));
    g.bench_function("permute_many_1Mi_blocks", |bn| {
        bn.iter(|| FIXED_KEY_AES.permute_many(&mut buf))
    });
    report_cpu_rate(
        "aes_baseline/permute_many (M blocks)",
        CORE_CHUNK as u64 * 10,
        || {
            for _ in 0..10 {
                FIXED_KEY_AES.permute_many(&mut buf)
            }
        },
    );
    g.bench_function("tccr_many_1Mi_blocks", |bn| {
        bn.iter(|| FIXED_KEY_AES.tccr_many(&tw, &xs, &mut out))
    });
    report_cpu_rate(
        "aes_baseline/tccr_many (M hashes)",
        CORE_CHUNK as u64 * 10,
        || {
            for _ in 0..10 {
                FIXED_KEY_AES.tccr_many(&tw, &xs, &mut out)
            }
        },
    );
    g.finish();
}

fn bench_core(c: &mut Criterion) {
    let mut rng = Prg::from_u64(1);
    let a = labels(CORE_CHUNK, &mut rng);
    let b = labels(CORE_CHUNK, &mut rng);
    let total = (CORE_CHUNK * CORE_REPS) as u64;
    let mut tables = Vec::with_capacity(4096 * TABLE_BYTES);
    let mut out = Vec::with_capacity(4096);
    let mut g = c.benchmark_group("gc_core");
    g.sample_size(10);
    g.throughput(Throughput::Elements(total));
    g.bench_function("garble_10Mi_ands", |bn| {
        bn.iter(|| garble_core(&a, &b, &mut tables, &mut out))
    });
    report_cpu_rate("gc_core/garble_10Mi_ands", total, || {
        garble_core(&a, &b, &mut tables, &mut out)
    });
    let mut all_tables = Vec::with_capacity(CORE_CHUNK * TABLE_BYTES);
    let mut zero = Vec::new();
    GarbleCore::new(DELTA)
        .unwrap()
        .and_many(&a, &b, 0, &mut zero, &mut all_tables);
    g.bench_function("evaluate_10Mi_ands", |bn| {
        bn.iter(|| eval_core(&a, &b, &all_tables, &mut out))
    });
    report_cpu_rate("gc_core/evaluate_10Mi_ands", total, || {
        eval_core(&a, &b, &all_tables, &mut out)
    });
    g.finish();
}

/// Pairs of 64-bit words per round and rounds of the gadget circuit.
const PAIRS: usize = 256;
const ROUNDS: usize = 320;
const WIDTH: usize = 64;
/// ANDs of the circuit: each round is a bulk signed max (`2l` ANDs per pair).
const CIRCUIT_ANDS: u64 = (ROUNDS * PAIRS * 2 * WIDTH) as u64;

/// The benchmark circuit: `x ← max(x, y_rot)` for `ROUNDS` rounds over `PAIRS` word pairs.
async fn circuit<B: Backend>(
    b: &mut B,
    xs: Option<&[bool]>,
    ys: Option<&[bool]>,
) -> Result<Vec<bool>, B::Error> {
    let n = PAIRS * WIDTH;
    let x = b.input(Role::Garbler, n, xs).await?;
    let y = b.input(Role::Evaluator, n, ys).await?;
    let mut xw: Vec<Vec<B::Wire>> = x.chunks(WIDTH).map(|c| c.to_vec()).collect();
    let mut yw: Vec<Vec<B::Wire>> = y.chunks(WIDTH).map(|c| c.to_vec()).collect();
    for _ in 0..ROUNDS {
        xw = word::max2_many(b, &xw, &yw).await?;
        yw.rotate_left(1);
    }
    b.share(&xw[0])
}

/// Garbles the circuit into a sink; returns the bytes per AND sent.
fn garble_to_sink(rt: &tokio::runtime::Runtime, xs: &[bool], cfg: GcConfig) -> f64 {
    rt.block_on(async {
        let mut ch = SinkChannel::new();
        let (mut s, _r) = ideal_cot([1; 32], DELTA);
        let mut rng = Prg::from_u64(3);
        let mut gb = Garbler::new(&mut ch, &mut s, &mut rng, cfg).await.unwrap();
        circuit(&mut gb, Some(xs), None).await.unwrap();
        let n = gb.finish().await.unwrap();
        assert_eq!(n, CIRCUIT_ANDS);
        ch.stats().total().bytes_sent as f64 / n as f64
    })
}

/// Garbles and evaluates the circuit over an in-memory pair; returns the bytes per AND sent
/// each way.
fn over_mem_pair(
    rt: &tokio::runtime::Runtime,
    xs: &[bool],
    ys: &[bool],
    cfg: GcConfig,
) -> (f64, f64) {
    rt.block_on(async {
        let (mut c0, mut c1) = mem::pair();
        let (mut s, mut r) = ideal_cot([1; 32], DELTA);
        let (ga, ev) = tokio::join!(
            async {
                let mut rng = Prg::from_u64(3);
                let mut gb = Garbler::new(&mut c0, &mut s, &mut rng, cfg).await?;
                let sh = circuit(&mut gb, Some(xs), None).await?;
                gb.finish().await?;
                Ok::<_, GcError>(sh)
            },
            async {
                let mut ev = Evaluator::new(&mut c1, &mut r, cfg).await?;
                let sh = circuit(&mut ev, None, Some(ys)).await?;
                ev.finish().await?;
                Ok::<_, GcError>(sh)
            }
        );
        black_box((ga.unwrap(), ev.unwrap()));
        let sent = c0.stats().total().bytes_sent as f64;
        let back = c1.stats().total().bytes_sent as f64;
        (sent / CIRCUIT_ANDS as f64, back / CIRCUIT_ANDS as f64)
    })
}

fn bench_backend(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Prg::from_u64(2);
    let xs: Vec<bool> = (0..PAIRS * WIDTH)
        .map(|_| Block::random(&mut rng).lsb())
        .collect();
    let ys: Vec<bool> = (0..PAIRS * WIDTH)
        .map(|_| Block::random(&mut rng).lsb())
        .collect();
    let cfg = GcConfig::new(0xbe7c);

    let mut g = c.benchmark_group("gc_backend");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CIRCUIT_ANDS));
    g.bench_function("garble_to_sink", |bn| {
        bn.iter(|| garble_to_sink(&rt, &xs, cfg))
    });
    g.finish();
    report_cpu_rate("gc_backend/garble_to_sink", CIRCUIT_ANDS, || {
        garble_to_sink(&rt, &xs, cfg);
    });
    println!(
        "gc_backend/garble_to_sink: {CIRCUIT_ANDS} ANDs, {:.3} bytes per AND sent by the garbler \
         (tables, input labels, header; no transport framing)",
        garble_to_sink(&rt, &xs, cfg)
    );

    let mut g = c.benchmark_group("gc_mem_pair");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CIRCUIT_ANDS));
    g.bench_function("garble_and_evaluate", |bn| {
        bn.iter(|| over_mem_pair(&rt, &xs, &ys, cfg))
    });
    g.finish();
    report_cpu_rate("gc_mem_pair/garble_and_evaluate", CIRCUIT_ANDS, || {
        over_mem_pair(&rt, &xs, &ys, cfg);
    });
    let (fwd, back) = over_mem_pair(&rt, &xs, &ys, cfg);
    println!(
        "gc_mem_pair: {fwd:.3} bytes per AND garbler->evaluator (tables, input labels, frame \
         headers), {back:.5} evaluator->garbler"
    );
}

criterion_group!(benches, bench_aes, bench_core, bench_backend);
criterion_main!(benches);
