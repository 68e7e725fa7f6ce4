//! Loopback TLS 1.3 throughput: 64 MiB of ring elements through a [`FramedChannel`] over
//! TCP + rustls on 127.0.0.1 (both parties in one process, one tokio runtime).
//!
//! Run: `cargo bench --bench tls_throughput -- --warm-up-time 1 --measurement-time 5`.
//! Criterion prints the throughput in decimal MB/s (GB/s). `one_way` sends 64 MiB from the
//! client to the server; `both_ways` sends 64 MiB in each direction at once and counts
//! 128 MiB. `mem_one_way` is the same exchange over the in-memory pair (framing cost only).
//!
//! The machine is shared, so wall-clock figures are noisy; after each benchmark the bench
//! also prints the payload rate per CPU-second of the whole process (all threads, from
//! `/proc/self/task/*/schedstat`), a load-independent figure: on an idle machine with two
//! cores the wall-clock rate is at least that.
//!
//! Environment (LOCAL knobs, for tuning): `PRIVLM_BENCH_THREADS` (runtime worker threads,
//! default 2), `PRIVLM_BENCH_FRAME` (max_frame_len), `PRIVLM_BENCH_WBUF`
//! (write_buffer_len), `PRIVLM_BENCH_RQ` / `PRIVLM_BENCH_WQ` (queue depths in frames);
//! defaults: `ChannelConfig::default()`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use privlm::protocols::channel::tls::{self, Identity, TlsListener};
use privlm::protocols::channel::{Channel, ChannelConfig, FramedChannel, mem};
use privlm::protocols::prg::Prg;
use rand_core::Rng;
use tokio::runtime::Runtime;

const N: usize = 8 << 20; // 8 Mi ring elements = 64 MiB

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// CPU time consumed so far by all live threads of this process.
fn cpu_time() -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(ns)
}

fn runtime() -> Runtime {
    let threads = env_usize("PRIVLM_BENCH_THREADS").unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn tls_pair(rt: &Runtime, cfg: ChannelConfig) -> (FramedChannel, FramedChannel) {
    rt.block_on(async {
        let client_id = Identity::generate().expect("identity");
        let server_id = Identity::generate().expect("identity");
        let listener = TlsListener::bind(
            "127.0.0.1:0",
            &server_id,
            &[client_id.fingerprint()],
            cfg.clone(),
        )
        .await
        .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (c, s) = tokio::join!(
            tls::connect(
                addr,
                &client_id,
                server_id.fingerprint(),
                cfg,
                Duration::from_secs(10)
            ),
            listener.accept()
        );
        (c.expect("connect"), s.expect("accept").0)
    })
}

/// Receive buffers reused across iterations, as a protocol reusing its buffers would: the
/// bench measures the transport, not the allocation of a fresh 64 MiB vector per message
/// (`recv_u64s` adds that).
struct Bufs {
    a: Vec<u64>,
    b: Vec<u64>,
}

/// Sends `data` from `a` to `b` (and, if `both`, the same amount back at the same time);
/// returns the channels, the buffers and the elapsed time.
fn exchange(
    rt: &Runtime,
    (mut a, mut b): (FramedChannel, FramedChannel),
    mut bufs: Bufs,
    data: &Arc<Vec<u64>>,
    both: bool,
) -> ((FramedChannel, FramedChannel), Bufs, Duration) {
    let (da, db) = (data.clone(), data.clone());
    rt.block_on(async move {
        let start = Instant::now();
        let mut back = std::mem::take(&mut bufs.a);
        let mut got = std::mem::take(&mut bufs.b);
        let ta = tokio::spawn(async move {
            a.send_u64s(&da).await.expect("send");
            a.flush().await.expect("flush");
            if both {
                a.recv_bytes_into(bytemuck::cast_slice_mut(&mut back), "back")
                    .await
                    .expect("recv");
            }
            (a, back)
        });
        let tb = tokio::spawn(async move {
            if both {
                b.send_u64s(&db).await.expect("send");
                b.flush().await.expect("flush");
            }
            b.recv_bytes_into(bytemuck::cast_slice_mut(&mut got), "bench")
                .await
                .expect("recv");
            assert_eq!(got[got.len() - 1], db[db.len() - 1]);
            (b, got)
        });
        let ((a, back), (b, got)) = (ta.await.expect("task"), tb.await.expect("task"));
        ((a, b), Bufs { a: back, b: got }, start.elapsed())
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut rng = Prg::from_u64(1);
    let data: Arc<Vec<u64>> = Arc::new((0..N).map(|_| rng.next_u64()).collect());
    let d = ChannelConfig::default();
    let cfg = ChannelConfig {
        max_frame_len: env_usize("PRIVLM_BENCH_FRAME").unwrap_or(d.max_frame_len),
        write_buffer_len: env_usize("PRIVLM_BENCH_WBUF").unwrap_or(d.write_buffer_len),
        read_queue_frames: env_usize("PRIVLM_BENCH_RQ").unwrap_or(d.read_queue_frames),
        write_queue_frames: env_usize("PRIVLM_BENCH_WQ").unwrap_or(d.write_queue_frames),
        ..d
    };
    eprintln!(
        "ChannelConfig: max_frame_len {} B, write_buffer_len {} B, read_queue_frames {}, write_queue_frames {}",
        cfg.max_frame_len, cfg.write_buffer_len, cfg.read_queue_frames, cfg.write_queue_frames
    );

    let mut g = c.benchmark_group("tls_throughput");
    g.sample_size(10);
    for (name, both, mem_pair) in [
        ("one_way", false, false),
        ("both_ways", true, false),
        ("mem_one_way", false, true),
    ] {
        let bytes = 8 * N as u64 * if both { 2 } else { 1 };
        g.throughput(Throughput::BytesDecimal(bytes));
        let pair = if mem_pair {
            rt.block_on(async { mem::pair_with(cfg.clone(), 1 << 20) })
        } else {
            tls_pair(&rt, cfg.clone())
        };
        let mut slot = Some((
            pair,
            Bufs {
                a: vec![0u64; N],
                b: vec![0u64; N],
            },
        ));
        let (mut cpu, mut wall, mut runs) = (Duration::ZERO, Duration::ZERO, 0u64);
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (pair, bufs) = slot.take().expect("channels");
                    let c0 = cpu_time();
                    let (pair, bufs, t) = exchange(&rt, pair, bufs, &data, both);
                    cpu += cpu_time().saturating_sub(c0);
                    total += t;
                    slot = Some((pair, bufs));
                }
                wall += total;
                runs += iters;
                total
            })
        });
        if runs == 0 {
            continue;
        }
        let mb = (bytes * runs) as f64 / 1e6;
        eprintln!(
            "{name}: {runs} runs, wall {:.0} MB/s, {:.0} MB per CPU-second ({:.2} CPU cores busy on average)",
            mb / wall.as_secs_f64(),
            mb / cpu.as_secs_f64(),
            cpu.as_secs_f64() / wall.as_secs_f64()
        );
    }
    g.finish();
}

// The macro defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
