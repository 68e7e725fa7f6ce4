//! Issue 16: the attack table against `privlm-server` as a real process over loopback TLS (the
//! server's counterpart of `tests/dealer_hardening.rs::attack_table_each_followed_by_a_good_session`).
//! One dealer and one server; attacks in sequence; after each a well-behaved `privlm-client`
//! must generate the fixed-point mirror's token (its duration is the recovery figure) and the
//! server's `VmRSS` must stay near its baseline. Prints the table with
//! `cargo test --release --test server_attacks -- --nocapture`.

mod attack_util;
mod cut_proxy;
mod serve_util;

use std::path::Path;
use std::time::{Duration, Instant};

use attack_util::*;
use cut_proxy::{CutProxy, Plan};
use privlm::model::{Model, Sampling};
use privlm::protocols::channel::ChannelConfig;
use privlm::protocols::channel::tls::{self, Identity, TlsStream};
use privlm::serve::control::{Accepted, SessionId, SessionRequest};
use serve_util::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMPT: &str = "def ";

/// `n` TCP connections from source address `from` (another loopback address than the good
/// client's 127.0.0.1, so that the per-source cap does not apply to the good client) that
/// send nothing, opened back to back; the ones the server closed at once (the source over its
/// cap) come back as `None`.
async fn idle_from(server: &Proc, from: &str, n: usize) -> Vec<Option<TcpStream>> {
    let mut v = Vec::new();
    for _ in 0..n {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        v.push(sock.connect(server.addr.parse().unwrap()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut out = Vec::new();
    for mut s in v {
        let mut one = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut one)).await {
            Err(_) => out.push(Some(s)),
            Ok(_) => out.push(None),
        }
    }
    out
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
}

/// A TLS connection to the server framed by hand, to send what `FramedChannel` never sends.
struct Raw(TlsStream);

impl Raw {
    async fn connect(server: &Proc, id: &Identity) -> Raw {
        let s = tls::connect_stream(
            server.addr.as_str(),
            id,
            server.fingerprint,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        Raw(s)
    }

    /// Connects and reads the offer.
    async fn offered(server: &Proc, id: &Identity) -> Raw {
        let mut r = Raw::connect(server, id).await;
        r.message().await.expect("the offer");
        r
    }

    async fn frame(&mut self, flags: u32, payload: &[u8]) -> std::io::Result<()> {
        write_frame(&mut self.0, flags, payload).await
    }

    /// The next message; `Err` with the server's reason for an abort frame, or the I/O error.
    async fn message(&mut self) -> Result<Vec<u8>, String> {
        read_message(&mut self.0, Some(Duration::from_secs(15))).await
    }

    /// Sends a valid request and reads the acceptance.
    async fn accepted(&mut self, prompt_len: u32, max_new: u32) -> SessionId {
        let sid = SessionId::random();
        self.frame(0, &encode(&request(sid, prompt_len, max_new)))
            .await
            .unwrap();
        let a = self.message().await.expect("accepted");
        let (a, _): (Accepted, usize) =
            bincode::serde::decode_from_slice(&a, bincode::config::standard()).unwrap();
        assert_eq!(a.session_id, sid);
        sid
    }
}

/// The fixed-point mirror's greedy first token after `PROMPT`.
fn mirror_token(model: &Path) -> u32 {
    let m = Model::load(model).unwrap();
    let ids: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
    m.to_fixed().generate(&ids, 1, Sampling::Greedy, 0).unwrap()[0]
}

struct Bench {
    dir: std::path::PathBuf,
    dealer: Proc,
    server: Proc,
    want: u32,
    run: u32,
}

impl Bench {
    /// A well-behaved client generates one token privately; it must be the mirror's. Returns
    /// how long the client took (process start to exit).
    fn good(&mut self) -> Duration {
        self.run += 1;
        let json = self.dir.join(format!("out-{}.json", self.run));
        let mut cmd = client_cmd(&self.dir, &self.server, &self.dealer);
        cmd.args(["--prompt", PROMPT, "--max-new-tokens", "1", "--json"])
            .arg(&json);
        let t = Instant::now();
        let out = run(cmd);
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "client failed: {}\nserver: {}",
            String::from_utf8_lossy(&out.stderr),
            self.server.stderr()
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["tokens"][0].as_u64(), Some(u64::from(self.want)));
        took
    }
}

#[test]
fn attack_table_each_followed_by_a_good_client() {
    let started = Instant::now();
    let dir = temp_dir("attacks");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let model = model_dir("sm_ln_g");
    let want = mirror_token(&model);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    // Short timeouts so that silent peers are given up quickly.
    let server = start_server(
        &dir,
        &model,
        &dealer,
        &[cfp],
        &[
            "--request-timeout-secs",
            "1",
            "--handshake-timeout-secs",
            "2",
            "--idle-timeout-secs",
            "3",
        ],
    );
    let pid = server.child.id();
    let mut b = Bench {
        dir: dir.clone(),
        dealer,
        server,
        want,
        run: 0,
    };
    // Warm-up: the allocator's arenas of the worker threads fill during the first sessions.
    let first = b.good();
    for _ in 0..3 {
        b.good();
    }
    let base = rss_kib(pid);
    let fds0 = fds(pid);
    let id = Identity::load(&dir.join("client-id")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let mut table: Vec<(String, String, Duration, u64)> = Vec::new();
    let mut row = |name: &str, outcome: String, b: &mut Bench| {
        let took = b.good();
        assert!(
            took < Duration::from_secs(10),
            "after {name}: the good client took {took:?}"
        );
        table.push((name.to_string(), outcome, took, rss_kib(pid)));
    };

    // 1. Random bytes instead of a TLS ClientHello.
    let outcome = rt.block_on(async {
        let mut tcp = TcpStream::connect(b.server.addr.as_str()).await.unwrap();
        let _ = tcp.write_all(&random_bytes(4096, 0x9e37_79b9)).await;
        let t = closed_within(&mut tcp, 10).await;
        assert!(t.is_some(), "random bytes: the connection stayed open");
        format!("closed by the server after {:.0?}", t.unwrap())
    });
    row("4 KiB of random bytes before TLS", outcome, &mut b);

    // 2. A certificate the server does not pin.
    let outcome = rt.block_on(async {
        let stranger = Identity::generate().unwrap();
        let r = tls::connect(
            b.server.addr.as_str(),
            &stranger,
            b.server.fingerprint,
            ChannelConfig::default(),
            Duration::from_secs(10),
        )
        .await;
        match r {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an unknown certificate was accepted"),
        }
    });
    row("TLS client with an unknown certificate", outcome, &mut b);

    // 3. No client certificate at all.
    let outcome = rt.block_on(async {
        let tcp = TcpStream::connect(b.server.addr.as_str()).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("privlm.invalid")
            .unwrap()
            .to_owned();
        match tokio_rustls::TlsConnector::from(no_cert_client())
            .connect(name, tcp)
            .await
        {
            Err(e) => format!("handshake failed: {e}"),
            Ok(mut s) => {
                let mut one = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut one)).await {
                    Ok(Ok(0)) => "closed by the server".into(),
                    Ok(Ok(_)) => panic!("no certificate: the server sent data"),
                    Ok(Err(e)) => format!("refused: {e}"),
                    Err(_) => panic!("no certificate: the connection stayed open"),
                }
            }
        }
    });
    row("TLS client with no certificate", outcome, &mut b);

    // 4. Framing attacks where the session request is due.
    let header_attacks: [(&str, u8); 3] = [
        ("frame header announcing 16 MiB as the request", 0),
        ("MORE frames towards a 1 GiB request", 1),
        ("reserved header bits", 2),
    ];
    for (what, kind) in header_attacks {
        let outcome = rt.block_on(async {
            let mut r = Raw::offered(&b.server, &id).await;
            let mut sent = 0usize;
            match kind {
                0 => r.0.write_all(&0x00ff_ffffu32.to_le_bytes()).await.unwrap(),
                1 => {
                    let chunk = vec![0u8; 60 << 10];
                    while sent < 1 << 30 {
                        match tokio::time::timeout(
                            Duration::from_millis(500),
                            r.frame(MORE, &chunk),
                        )
                        .await
                        {
                            Ok(Ok(())) => sent += chunk.len(),
                            _ => break,
                        }
                    }
                }
                _ => r.0.write_all(&0x0f00_0010u32.to_le_bytes()).await.unwrap(),
            }
            let _ = r.0.flush().await;
            let reason = r.message().await.unwrap_err();
            let want = if kind == 2 {
                "malformed frame header"
            } else {
                "exceeds the limit"
            };
            assert!(reason.contains(want), "{reason}");
            if kind == 1 {
                format!("{reason} (after {} KiB)", sent >> 10)
            } else {
                reason
            }
        });
        row(what, outcome, &mut b);
    }

    // 5. A valid TLS connection, then a wrong message where the request is due.
    let sid = SessionId::random();
    let mut with_trailing = encode(&request(sid, 1, 1));
    with_trailing.extend_from_slice(&[1, 2, 3]);
    let wrong_version = SessionRequest {
        version: 99,
        ..request(sid, 1, 1)
    };
    let wrong: [(&str, Vec<u8>); 6] = [
        (
            "an acceptance where the request is due",
            encode(&Accepted { session_id: sid }),
        ),
        ("a request with trailing bytes", with_trailing),
        ("a request of protocol version 99", encode(&wrong_version)),
        ("a request 5000 bytes long", random_bytes(5000, 7)),
        ("1000 random bytes as the request", random_bytes(1000, 11)),
        ("an empty message as the request", Vec::new()),
    ];
    for (what, bytes) in wrong {
        let outcome = rt.block_on(async {
            let mut r = Raw::offered(&b.server, &id).await;
            r.frame(0, &bytes).await.unwrap();
            r.message().await.unwrap_err()
        });
        row(&format!("valid TLS, then {what}"), outcome, &mut b);
    }

    // 6. A silent client is given up after the request timeout (1 s here).
    let outcome = rt.block_on(async {
        let mut r = Raw::offered(&b.server, &id).await;
        let t = Instant::now();
        let reason = r.message().await.unwrap_err();
        assert!(reason.contains("no session request within"), "{reason}");
        format!("{reason} (after {:.1?})", t.elapsed())
    });
    row("valid TLS, then silence", outcome, &mut b);

    // 7. An accepted session, then garbage instead of the session handshake.
    let outcome = rt.block_on(async {
        let mut r = Raw::offered(&b.server, &id).await;
        r.accepted(4, 1).await;
        let _ = r.frame(0, &random_bytes(300, 13)).await;
        let t = closed_within(&mut r.0, 15).await;
        assert!(t.is_some(), "garbage handshake: the connection stayed open");
        format!("closed by the server after {:.0?}", t.unwrap())
    });
    row(
        "accepted, then garbage instead of the session handshake",
        outcome,
        &mut b,
    );

    // 8. Disconnects in every phase.
    let phases = [
        "after TCP connect",
        "half-way through the TLS handshake",
        "after TLS, before the offer is read",
        "after the offer, before the request",
        "in the middle of a frame header",
        "in the middle of the request",
        "after the acceptance, before the session handshake",
        "mid-generation (privlm-client killed after 1 s)",
    ];
    for (phase, what) in phases.iter().enumerate() {
        rt.block_on(async {
            let s = &b.server;
            match phase {
                0 => drop(TcpStream::connect(s.addr.as_str()).await.unwrap()),
                1 => {
                    let mut tcp = TcpStream::connect(s.addr.as_str()).await.unwrap();
                    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                        .await
                        .unwrap();
                }
                2 => drop(Raw::connect(s, &id).await),
                3 => drop(Raw::offered(s, &id).await),
                4 => {
                    let mut r = Raw::offered(s, &id).await;
                    r.0.write_all(&[0x20, 0x00]).await.unwrap();
                    r.0.flush().await.unwrap();
                }
                5 => {
                    let mut r = Raw::offered(s, &id).await;
                    r.0.write_all(&[0x40, 0, 0, 0, 1, 2, 3]).await.unwrap();
                    r.0.flush().await.unwrap();
                }
                6 => {
                    let mut r = Raw::offered(s, &id).await;
                    r.accepted(4, 1).await;
                }
                _ => {}
            }
        });
        if phase == 7 {
            let mut cmd = client_cmd(&b.dir, &b.server, &b.dealer);
            cmd.args(["--prompt", PROMPT, "--max-new-tokens", "64"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let mut child = cmd.spawn().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            let still_running = matches!(child.try_wait(), Ok(None));
            let _ = child.kill();
            let _ = child.wait();
            assert!(still_running, "the client finished within 1 s");
        }
        row(&format!("disconnect {what}"), "-".into(), &mut b);
    }

    // 9. Slowloris, many at once: 40 idle TCP connections from 127.0.0.2 (32 is the cap per
    // source; the rest are closed at once), held open while a good client is served.
    let held = rt.block_on(idle_from(&b.server, "127.0.0.2", 40));
    let open = held.iter().filter(|s| s.is_some()).count();
    assert_eq!(open, 32, "the per-source cap");
    row(
        "slowloris: 40 idle TCP connections at once from one address, held during the good \
         client",
        format!(
            "{open} held (the per-source cap), {} closed at once",
            40 - open
        ),
        &mut b,
    );
    let mut held: Vec<TcpStream> = held.into_iter().flatten().collect();
    let outcome = rt.block_on(async {
        let mut closed = Vec::new();
        for s in held.iter_mut() {
            closed.push(closed_within(s, 10).await);
        }
        let last = closed
            .iter()
            .map(|c| c.expect("an idle connection stayed open"))
            .max();
        format!(
            "every idle connection closed by the server ({:.1?} after the last check)",
            last.unwrap()
        )
    });
    drop(held);
    eprintln!("slowloris burst: {outcome}");

    // 10. Beyond the handshake slots: 64 idle connections from two addresses fill every
    // handshake slot (`--max-handshakes`, 64); the good client waits in the backlog until the
    // handshake timeout (2 s here) frees them.
    let held = rt.block_on(async {
        let mut v = idle_from(&b.server, "127.0.0.3", 32).await;
        v.extend(idle_from(&b.server, "127.0.0.4", 32).await);
        v
    });
    let open = held.iter().filter(|s| s.is_some()).count();
    row(
        "slowloris: 64 idle TCP connections from two addresses (every handshake slot)",
        format!("{open} held until the handshake timeout (2 s); the good client waited for a slot"),
        &mut b,
    );
    drop(held);

    // 11. Slowloris, one per second: a new idle connection every second for 10 s, a good
    // client served after each.
    let mut trickle = Vec::new();
    let mut slowest = Duration::ZERO;
    let t0 = Instant::now();
    for i in 0..10u32 {
        let s = rt
            .block_on(idle_from(&b.server, "127.0.0.5", 1))
            .pop()
            .unwrap();
        trickle.push(s.expect("one idle connection is under every cap"));
        slowest = slowest.max(b.good());
        let next = t0 + Duration::from_secs(u64::from(i) + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let still_open = rt.block_on(async {
        let mut n = 0;
        for s in trickle.iter_mut() {
            let mut one = [0u8; 1];
            if tokio::time::timeout(Duration::from_millis(1), s.read(&mut one))
                .await
                .is_err()
            {
                n += 1;
            }
        }
        n
    });
    drop(trickle);
    row(
        "slowloris: one new idle TCP connection per second for 10 s, a good client after each",
        format!(
            "slowest of the 10 good clients meanwhile {slowest:.0?}; {still_open} of 10 still \
             open at the end (the others closed by the handshake timeout)"
        ),
        &mut b,
    );

    // 12. Back-pressure: a real client accepted into a session, behind a proxy that stops
    // reading both ways (its socket towards the server has a 4 KiB receive buffer) after
    // 7.5 MB (in the online phase): the server's writes block. The server must end that session by its idle
    // timeout (3 s here), serve others meanwhile, and hold its memory.
    let proxy = rt.block_on(CutProxy::start(&b.server.addr, Some(4096)));
    let link = proxy.arm(Plan::Stall(7_500_000));
    let sid = SessionId::random();
    let mut stalled = client_cmd_via(
        &b.dir,
        &proxy.addr,
        &b.server,
        &b.dealer.addr,
        &b.dealer,
        30,
        5,
    )
    .args(["--prompt", PROMPT, "--max-new-tokens", "2", "--quiet"])
    .args(["--session-id", &sid.to_hex()])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let log0 = b.server.stderr().len();
    let t = Instant::now();
    while link.cut_at().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the proxy never stalled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stall = link.cut_at().unwrap();
    let rss_stalled = rss_kib(pid);
    let during = b.good();
    let rss_during = rss_kib(pid);
    let end = loop {
        let log = b.server.stderr()[log0..].to_string();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains(&sid.to_string()) && l.contains("session ended with an error"))
        {
            break l.to_string();
        }
        assert!(
            stall.elapsed() < Duration::from_secs(3 + 5),
            "the stalled session was not ended by the idle timeout: {log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let ended = stall.elapsed();
    assert!(end.contains("peer=127.0.0.1:"), "{end}");
    assert!(end.len() < 600, "a long log line: {end}");
    let reason = end[end.find("error=").unwrap()..].to_string();
    proxy.arm(Plan::Pass);
    let _ = stalled.kill();
    let _ = stalled.wait();
    drop(proxy);
    row(
        "back-pressure: an accepted client stops reading (proxy stalls after 7.5 MB, 4 KiB \
         window)",
        format!(
            "session {sid} ended {ended:.1?} after the stall: {reason}; a good client meanwhile \
             took {during:.0?}; VmRSS {rss_stalled} KiB at the stall, {rss_during} KiB after the \
             good client"
        ),
        &mut b,
    );

    // Descriptors: every attack's connection is gone (give the server a moment).
    let mut fds1 = fds(pid);
    for _ in 0..50 {
        if fds1 <= fds0 + 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        fds1 = fds(pid);
    }
    // Memory after the table: more good clients must not grow it further (a leak would).
    let after_table = rss_kib(pid);
    for _ in 0..5 {
        b.good();
    }
    let after_more = rss_kib(pid);
    eprintln!("\n| attack | outcome | good client after | server VmRSS after |");
    eprintln!("|---|---|---|---|");
    for (name, outcome, took, rss) in &table {
        eprintln!(
            "| {name} | {} | {took:.0?} | {rss} KiB ({:+} KiB) |",
            outcome.replace('|', "/"),
            *rss as i64 - base as i64
        );
    }
    eprintln!(
        "first good client {first:.0?}; baseline VmRSS {base} KiB; descriptors {fds0} before, \
         {fds1} after; VmRSS {after_table} KiB after the table, {after_more} KiB after 5 more \
         good clients; whole test {:.1?}",
        started.elapsed()
    );
    assert!(fds1 <= fds0 + 2, "descriptors: {fds0} before, {fds1} after");
    let last = table.last().unwrap().3;
    assert!(last < base + 48 * 1024, "VmRSS {last} KiB from {base} KiB");
    assert!(
        after_more < after_table + 8 * 1024,
        "VmRSS grew from {after_table} KiB to {after_more} KiB over 5 good clients"
    );
    assert!(b.server.stderr().contains("refused a client"));
}
