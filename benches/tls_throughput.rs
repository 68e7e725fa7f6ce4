//! Loopback TLS 1.3 throughput: 64 MiB of ring elements through a [`FramedChannel`] over
//! TCP + rustls on 127.0.0.1 (both parties in one process, one tokio runtime).
//!
//! Run: `cargo bench --bench tls_throughput -- --warm-up-time 1 --measurement-time 5`.
//! Criterion prints the throughput in decimal MB/s (GB/s). `one_way` sends 64 MiB from the
//! client to the server; `both_ways` sends 64 MiB in each direction at once and counts
//! 128 MiB. `mem_one_way` is the same exchange over the in-memory pair (framing cost only).
//! Environment: `PRIVLM_BENCH_THREADS` (runtime worker threads, default 2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use privlm::protocols::channel::tls::{self, Identity, TlsListener};
use privlm::protocols::channel::{Channel, ChannelConfig, FramedChannel, mem};
use privlm::protocols::prg::Prg;
use rand_core::Rng;
use tokio::runtime::Runtime;

const N: usize = 8 << 20; // 8 Mi ring elements = 64 MiB

fn runtime() -> Runtime {
    let threads = std::env::var("PRIVLM_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
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

/// Sends `data` from `a` to `b` (and, if `both`, the same amount back at the same time);
/// returns the channels and the elapsed time.
fn exchange(
    rt: &Runtime,
    mut a: FramedChannel,
    mut b: FramedChannel,
    data: &Arc<Vec<u64>>,
    both: bool,
) -> (FramedChannel, FramedChannel, Duration) {
    let n = data.len();
    let (da, db) = (data.clone(), data.clone());
    rt.block_on(async move {
        let start = Instant::now();
        let ta = tokio::spawn(async move {
            a.send_u64s(&da).await.expect("send");
            a.flush().await.expect("flush");
            if both {
                let got = a.recv_u64s(n, "back").await.expect("recv");
                assert_eq!(got.len(), n);
            }
            a
        });
        let tb = tokio::spawn(async move {
            if both {
                b.send_u64s(&db).await.expect("send");
                b.flush().await.expect("flush");
            }
            let got = b.recv_u64s(n, "bench").await.expect("recv");
            assert_eq!(got[n - 1], db[n - 1]);
            b
        });
        let (a, b) = (ta.await.expect("task"), tb.await.expect("task"));
        (a, b, start.elapsed())
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut rng = Prg::from_u64(1);
    let data: Arc<Vec<u64>> = Arc::new((0..N).map(|_| rng.next_u64()).collect());
    let cfg = ChannelConfig::default();
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
        let mut slot = Some(pair);
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (a, b) = slot.take().expect("channels");
                    let (a, b, t) = exchange(&rt, a, b, &data, both);
                    total += t;
                    slot = Some((a, b));
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
