//! Deterministic replay of the fuzz corpora (`fuzz/corpus/<target>/*`) without libFuzzer: every
//! file goes through the same harness function its cargo-fuzz target calls
//! (`fuzz/src/lib.rs`), so CI checks that no input the fuzzer kept (regressions included)
//! panics, aborts or hangs.
//!
//! `cargo test --release --test fuzz_replay -- --ignored write_seeds` rewrites the seed files
//! (`seed-*`) from honest two-party runs recorded on the in-memory channel.

#[path = "../fuzz/src/lib.rs"]
#[allow(missing_docs)]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Instant;

use harness::{Recorder, TARGETS, join_messages};
use privlm::net::{PROTOCOL_VERSION, handshake};
use privlm::protocols::beaver::dealer::{DealerClient, Hello, serve_session};
use privlm::protocols::beaver::{InsecureIdealDealer, Request};
use privlm::protocols::block::Block;
use privlm::protocols::channel::mem;
use privlm::protocols::gc::{Evaluator, Garbler, GcConfig};
use privlm::protocols::nonlinear::NlParams;
use privlm::protocols::ot::base::{base_ot_recv, base_ot_send};
use privlm::protocols::ot::ideal::ideal_cot;
use privlm::protocols::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use privlm::protocols::ot::{CotReceiver, CotSender, RotReceiver, RotSender};
use privlm::protocols::prg::Prg;
use privlm::protocols::session::Session;
use privlm::protocols::share::Party;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// The seeds that are meant to fail (target, seed name).
const BAD_SEEDS: &[(&str, &str)] = &[
    ("frame_stream", "abort"),
    ("dealer_session", "absurd"),
    ("handshake", "version"),
    ("serve_control", "huge-model"),
];

#[test]
fn every_corpus_file_replays_cleanly() {
    let root = corpus_root();
    let mut total = 0;
    for (name, run) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {name} ({}): {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of {name} is empty");
        let start = Instant::now();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            let done = run(&data);
            // Seeds recorded from honest runs must take the party through its whole protocol
            // (else the fuzzer starts shallow); the hand-written bad seeds must not.
            if let Some(kind) = file.strip_prefix("seed-") {
                let honest = !BAD_SEEDS.contains(&(*name, kind));
                assert_eq!(done, honest, "{name}/{file}: completed {done}");
            }
        }
        eprintln!("{name}: {} files in {:?}", files.len(), start.elapsed());
        total += files.len();
    }
    assert!(total > 0);
}

#[test]
fn scripts_split_and_join() {
    let msgs = vec![vec![1u8, 2, 3], vec![], vec![9; 300]];
    let joined = join_messages(&msgs);
    assert_eq!(Vec::from(harness::split_messages(&joined)), msgs);
    // A cut-short last record is delivered as is; a lone trailing byte is dropped.
    let mut cut = joined.clone();
    cut.truncate(joined.len() - 100);
    assert_eq!(harness::split_messages(&cut)[2].len(), 200);
    assert_eq!(harness::split_messages(&[5]).len(), 0);
}

/// Writes `fuzz/corpus/<target>/seed-<name>`.
fn write_seed(target: &str, name: &str, data: &[u8]) {
    let dir = corpus_root().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn with_role(sel: u8, script: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend(join_messages(script));
    v
}

fn frame(flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (flags | payload.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
}

/// Runs two parties over the in-memory channel and returns what each one sent.
async fn record<F0, F1, Fut0, Fut1>(f0: F0, f1: F1) -> (Vec<Vec<u8>>, Vec<Vec<u8>>)
where
    F0: FnOnce(Recorder<privlm::protocols::channel::FramedChannel>) -> Fut0,
    F1: FnOnce(Recorder<privlm::protocols::channel::FramedChannel>) -> Fut1,
    Fut0: std::future::Future<Output = Vec<Vec<u8>>>,
    Fut1: std::future::Future<Output = Vec<Vec<u8>>>,
{
    let (a, b) = mem::pair_with(harness::fuzz_channel_config(), mem::DEFAULT_PIPE_BYTES);
    tokio::join!(f0(Recorder::new(a)), f1(Recorder::new(b)))
}

#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seeds() {
    harness::block_on(seeds());
}

async fn seeds() {
    // frame_stream: ops word, then raw frames.
    let mut s = vec![0b11_10_01_00, 0];
    s.extend(frame(0, b"hello"));
    let mut shape = vec![2u8];
    shape.extend(2u64.to_le_bytes());
    shape.extend(3u64.to_le_bytes());
    s.extend(frame(0, &shape));
    s.extend(frame(1 << 31, &[0u8; 16]));
    s.extend(frame(0, &[0u8; 32]));
    let msg: (u32, String, Vec<u64>, Option<Vec<String>>) =
        (7, "fuzz".into(), vec![1, 2, 3], Some(vec!["x".into()]));
    s.extend(frame(0, &enc(&msg)));
    s.extend(frame(0, &[1u8; 32]));
    write_seed("frame_stream", "valid", &s);
    let mut s = vec![0, 0];
    s.extend(frame(1 << 30, b"the peer gave up\n\x1b[2J"));
    write_seed("frame_stream", "abort", &s);

    // dealer_session: two hellos and matching requests.
    let hello = |party| {
        enc(&Hello {
            version: 1,
            party,
            session: [7; 32],
        })
    };
    let reqs: Vec<Vec<u8>> = harness::client_requests().iter().map(enc).collect();
    let mut p0 = vec![hello(Party::P0)];
    p0.extend(reqs.iter().cloned());
    let mut p1 = vec![hello(Party::P1)];
    p1.extend(reqs.iter().cloned());
    let a = join_messages(&p0);
    let mut s = (a.len() as u16).to_le_bytes().to_vec();
    s.extend(a);
    s.extend(join_messages(&p1));
    write_seed("dealer_session", "valid", &s);
    let nl = [
        enc(&Request::Elementwise { n: 1 << 40 }),
        enc(&Request::MatMul {
            batch: 1 << 20,
            n: 1 << 20,
            k: 3,
            m: 1 << 30,
        }),
    ];
    let a = join_messages(&[hello(Party::P0), nl[0].clone()]);
    let mut s = (a.len() as u16).to_le_bytes().to_vec();
    s.extend(a);
    s.extend(join_messages(&[hello(Party::P1), nl[0].clone()]));
    write_seed("dealer_session", "absurd", &s);

    // dealer_client: what a real dealer sends each party.
    let (x0, y0) = mem::pair();
    let (x1, y1) = mem::pair();
    let dealer = tokio::spawn(async move {
        let (r0, r1) = (Recorder::new(x0), Recorder::new(x1));
        let (s0, s1) = (r0.log(), r1.log());
        let cfg = privlm::protocols::beaver::dealer::DealerConfig::default();
        let _ = serve_session(r0, r1, &cfg, &mut Prg::from_u64(1)).await;
        let s0 = s0.lock().unwrap().clone();
        let s1 = s1.lock().unwrap().clone();
        (s0, s1)
    });
    let client = |ch, party| async move {
        let mut c = DealerClient::connect(ch, party, [7; 32]).await.unwrap();
        for r in harness::client_requests() {
            privlm::protocols::beaver::TripleProvider::fetch(&mut c, &r)
                .await
                .unwrap();
        }
        drop(c);
    };
    tokio::join!(client(y0, Party::P0), client(y1, Party::P1));
    let (s0, s1) = dealer.await.unwrap();
    write_seed("dealer_client", "p0", &with_role(0, &s0));
    write_seed("dealer_client", "p1", &with_role(1, &s1));

    // handshake: what the other role sends.
    for (sel, role) in [(0u8, Party::P1), (1, Party::P0)] {
        let (sent, _) = record(
            |mut a| async move {
                let _ = handshake(&mut a, role, &harness::handshake_params()).await;
                a.sent()
            },
            |mut b| async move {
                let other = if role == Party::P0 {
                    Party::P1
                } else {
                    Party::P0
                };
                let _ = handshake(&mut b, other, &harness::handshake_params()).await;
                b.sent()
            },
        )
        .await;
        write_seed("handshake", &format!("role{sel}"), &with_role(sel, &sent));
    }
    let mut pre = b"PRLM".to_vec();
    pre.extend((PROTOCOL_VERSION + 1).to_le_bytes());
    write_seed("handshake", "version", &with_role(0, &[pre, vec![0; 8]]));

    // base_ot: the receiver's reply to the sender, the sender's point to the receiver.
    let (s_sent, r_sent) = record(
        |mut a| async move {
            let _ = base_ot_send(&mut a, 4, &mut Prg::from_u64(3)).await;
            a.sent()
        },
        |mut b| async move {
            let _ = base_ot_recv(&mut b, &[true, false, true, true], &mut Prg::from_u64(3)).await;
            b.sent()
        },
    )
    .await;
    write_seed("base_ot", "sender", &with_role(0, &r_sent));
    write_seed("base_ot", "receiver", &with_role(1, &s_sent));

    // iknp.
    let cfg = IknpConfig::with_chunk(128).unwrap();
    let cfg2 = cfg.clone();
    let (s_sent, r_sent) = record(
        |mut a| async move {
            let mut s = IknpSender::new(
                cfg.clone(),
                Block::from_bytes([5; 16]),
                &mut Prg::from_u64(4),
            );
            s.setup(&mut a).await.unwrap();
            s.send_rcot(&mut a, 100).await.unwrap();
            s.send_cot(&mut a, 40).await.unwrap();
            s.send_rot(&mut a, 10).await.unwrap();
            a.sent()
        },
        |mut b| async move {
            let mut r = IknpReceiver::new(cfg2, &mut Prg::from_u64(4));
            r.setup(&mut b).await.unwrap();
            r.recv_rcot(&mut b, 100).await.unwrap();
            r.recv_cot(&mut b, &[true; 40]).await.unwrap();
            r.recv_rot(&mut b, 10).await.unwrap();
            b.sent()
        },
    )
    .await;
    write_seed("iknp", "sender", &with_role(0, &r_sent));
    write_seed("iknp", "receiver", &with_role(1, &s_sent));

    // gc.
    let gcfg = GcConfig {
        circuit_id: 0x5eed,
        batch_ands: 4,
    };
    let bits = [true, false, true, true, false, false, true, false];
    let (g_sent, e_sent) = record(
        |mut a| async move {
            let (mut s, _) = ideal_cot(Prg::from_u64(6).gen_seed(), Block::from_bytes([9; 16]));
            let mut rng = Prg::from_u64(7);
            let mut g = Garbler::new(&mut a, &mut s, &mut rng, gcfg).await.unwrap();
            harness_gc(&mut g, &bits, true).await;
            g.finish().await.unwrap();
            a.sent()
        },
        |mut b| async move {
            let (_, mut r) = ideal_cot(Prg::from_u64(6).gen_seed(), Block::from_bytes([9; 16]));
            let mut e = Evaluator::new(&mut b, &mut r, gcfg).await.unwrap();
            harness_gc(&mut e, &bits, false).await;
            e.finish().await.unwrap();
            b.sent()
        },
    )
    .await;
    write_seed("gc", "evaluator", &with_role(0, &g_sent));
    write_seed("gc", "garbler", &with_role(1, &e_sent));

    // ot_apps.
    let (s_sent, r_sent) = record(
        |mut a| async move {
            harness::ot_apps_run(&mut a, true).await.unwrap();
            a.sent()
        },
        |mut b| async move {
            harness::ot_apps_run(&mut b, false).await.unwrap();
            b.sent()
        },
    )
    .await;
    write_seed("ot_apps", "sender", &with_role(0, &r_sent));
    write_seed("ot_apps", "receiver", &with_role(1, &s_sent));

    // nonlinear.
    let (p0_sent, p1_sent) = record(
        |a| async move {
            let (d0, _) = InsecureIdealDealer::pair(11);
            let mut s =
                Session::new(Party::P0, a, d0, Prg::from_u64(12), NlParams::default()).unwrap();
            harness::nl_ops(&mut s).await.unwrap();
            s.into_parts().0.sent()
        },
        |b| async move {
            let (_, d1) = InsecureIdealDealer::pair(11);
            let mut s =
                Session::new(Party::P1, b, d1, Prg::from_u64(13), NlParams::default()).unwrap();
            harness::nl_ops(&mut s).await.unwrap();
            s.into_parts().0.sent()
        },
    )
    .await;
    write_seed("nonlinear", "p0", &with_role(0, &p1_sent));
    write_seed("nonlinear", "p1", &with_role(1, &p0_sent));

    // serve_control: the raw byte streams of an honest client and server (the server's
    // dealer is unreachable, so it aborts after the handshake).
    let (from_client, from_server) = serve_control_transcript().await;
    let mut s = vec![0u8];
    s.extend(&from_client);
    write_seed("serve_control", "server", &s);
    let mut s = vec![1u8];
    s.extend(&from_server);
    write_seed("serve_control", "client", &s);
    let mut offer = harness::serve_server().offer().clone();
    offer.manifest.config.d_model = 1 << 40;
    offer.manifest.config.n_head = 1;
    let mut s = vec![1u8];
    s.extend(frame(0, &enc(&offer)));
    write_seed("serve_control", "huge-model", &s);
}

/// Copies `from` into `to` until `from` ends, returning the bytes copied.
async fn tap<R, W>(mut from: R, mut to: W) -> Vec<u8>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 1 << 14];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    seen
}

/// An honest client's control exchange and handshake with the `serve_control` server,
/// through a tap: (the client's bytes, the server's bytes).
async fn serve_control_transcript() -> (Vec<u8>, Vec<u8>) {
    use privlm::protocols::channel::{Channel, FramedChannel};
    use privlm::serve::client::request_session;
    use privlm::serve::control::{SessionId, session_params};
    use privlm::serve::server::peer_channel_config;
    let cfg = peer_channel_config(std::time::Duration::from_secs(5));
    let (c_end, c_tap) = tokio::io::duplex(1 << 16);
    let (s_end, s_tap) = tokio::io::duplex(1 << 16);
    let (c_rx, c_tx) = tokio::io::split(c_tap);
    let (s_rx, s_tx) = tokio::io::split(s_tap);
    let server = harness::serve_server();
    let serve = server.handle(
        FramedChannel::new(s_end, cfg.clone()),
        "127.0.0.1:9".parse().unwrap(),
    );
    let client = async {
        let ch = FramedChannel::new(c_end, cfg.clone());
        let (mut ch, offer, _) = request_session(
            ch,
            None,
            SessionId(harness::SERVE_SESSION),
            harness::SERVE_PROMPT,
            harness::SERVE_NEW_TOKENS,
        )
        .await
        .unwrap();
        let params = session_params(
            &offer.manifest,
            NlParams::default().frac_bits,
            &NlParams::default(),
        )
        .unwrap();
        handshake(&mut ch, Party::P0, &params).await.unwrap();
        // The server now fails to reach its dealer and aborts; wait for that.
        assert!(ch.recv_bytes_bounded(16).await.is_err());
    };
    let (_, _, from_client, from_server) =
        tokio::join!(serve, client, tap(c_rx, s_tx), tap(s_rx, c_tx));
    assert_eq!(server.sessions_accepted(), 1);
    (from_client, from_server)
}

async fn harness_gc<B: privlm::protocols::gc::Backend>(b: &mut B, bits: &[bool], garbler: bool) {
    harness::gc_circuit(b, Some(bits), garbler)
        .await
        .unwrap_or_else(|_| panic!("honest GC run failed"));
}
