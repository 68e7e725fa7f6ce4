//! The server and the client as real processes over loopback TLS: refusals with helpful
//! messages, trust on first use, limits, and clients that misbehave (garbage, silence,
//! duplicate session ids) without crashing the server or delaying the others.

mod serve_util;

use std::time::{Duration, Instant};

use privlm::protocols::channel::tls::{self, Identity};
use privlm::protocols::channel::{Channel, ChannelConfig};
use privlm::serve::control::SessionId;
use serve_util::*;
use tokio::io::AsyncWriteExt;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad requests are refused before any secret is computed, each with a message saying what to
/// do; the server keeps serving.
#[test]
fn bad_requests_are_refused_with_helpful_messages() {
    let dir = temp_dir("refusals");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(&dir, &model_dir("sm_ln_g"), &dealer, &[cfp], &[]);

    let cases: [(&[&str], &str); 5] = [
        (&["--prompt", ""], "empty prompt"),
        (
            &["--prompt", &"x".repeat(126), "--max-new-tokens", "5"],
            "exceeds the model's context of 128 tokens: shorten the prompt to at most 123",
        ),
        (
            &["--prompt", "hi", "--model", "nope"],
            "hosts model `sm_ln_g`",
        ),
        (
            &["--prompt", "hi", "--frac-bits", "12"],
            "fixed-point fractional bits differ: ours 12, peer 16",
        ),
        (
            &["--prompt", "hi", "--max-new-tokens", "1000"],
            "at most 64 per session",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = client_cmd(&dir, &server, &dealer);
        cmd.args(args);
        let out = run(cmd);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
    }

    // The wrong server fingerprint: refused, saying what to do.
    let mut cmd = client_cmd_pinning(&dir, &server, dealer.fingerprint, &dealer);
    cmd.args(["--prompt", "hi"]);
    let out = run(cmd);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("does not match the pinned fingerprint")
            && err.contains(&server.fingerprint.to_hex())
            && err.contains("--server-fingerprint"),
        "{err}"
    );

    // The server checks the request itself too (a client that skips its own checks).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = Identity::load(&dir.join("client-id")).unwrap();
    rt.block_on(async {
        for (p, n, want) in [
            (0, 4, "empty prompt"),
            (100, 40, "context of 128"),
            (1, 0, "at least one new token"),
        ] {
            let (mut ch, offer) = raw_connect(&server, &id).await;
            assert_eq!(offer.model_name, "sm_ln_g");
            let e = raw_request(&mut ch, &request(SessionId::random(), p, n))
                .await
                .unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    });
}

/// An unknown model directory: the server says so and exits.
#[test]
fn unknown_model_dir_is_refused() {
    let dir = temp_dir("nomodel");
    let dealer_fp = "ab".repeat(32);
    let out = run({
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_privlm-server"));
        c.args(["--model", "/nonexistent/model", "--listen", "127.0.0.1:0"])
            .args([
                "--dealer",
                "127.0.0.1:1",
                "--dealer-fingerprint",
                &dealer_fp,
            ])
            .args(["--client-fingerprint", &dealer_fp, "--identity"])
            .arg(dir.join("server-id"));
        c
    });
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("/nonexistent/model") && err.contains("does not exist"),
        "{err}"
    );
}

/// Trust on first use: the first connection records the fingerprints; a recorded fingerprint
/// that does not match is refused with the line to delete.
#[test]
fn trust_on_first_use_records_and_checks() {
    let dir = temp_dir("tofu");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(&dir, &model_dir("sm_ln_g"), &dealer, &[cfp], &[]);
    let kh = dir.join("known_hosts");
    let tofu = |prompt: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_privlm-client"));
        c.arg("--identity")
            .arg(dir.join("client-id"))
            .args(["--server", &server.addr, "--dealer", &dealer.addr])
            .arg("--known-hosts")
            .arg(&kh)
            .args(["--prompt", prompt, "--max-new-tokens", "1000"]);
        run(c)
    };
    // Refused by the server's limit, after the server's certificate was trusted and recorded.
    let out = tofu("hi");
    let err = stderr_of(&out);
    assert!(err.contains("first connection to the server"), "{err}");
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        text.contains(&format!("{} {}", server.addr, server.fingerprint.to_hex())),
        "{text}"
    );
    // Second time: pinned from the file, no note.
    let err = stderr_of(&tofu("hi"));
    assert!(!err.contains("first connection to the server"), "{err}");
    assert!(err.contains("at most 64 per session"), "{err}");
    // A recorded fingerprint that does not match.
    std::fs::write(
        &kh,
        format!("# x\n{} {}\n", server.addr, dealer.fingerprint.to_hex()),
    )
    .unwrap();
    let out = tofu("hi");
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("delete line 2 of"), "{err}");
}

/// Several clients that connect and say nothing, or send garbage (before or after TLS), do not
/// crash the server nor delay a well-behaved client (accepted at once, and a whole private
/// generation while they are still connected); a server at its session limit refuses as busy;
/// ids and slots are freed when a client leaves.
#[test]
fn misbehaving_clients_do_not_delay_others() {
    let dir = temp_dir("misbehave");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(
        &dir,
        &model_dir("sm_ln_g"),
        &dealer,
        &[cfp],
        &[
            "--max-sessions",
            "1",
            "--request-timeout-secs",
            "30",
            "--handshake-timeout-secs",
            "30",
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = Identity::load(&dir.join("client-id")).unwrap();
    rt.block_on(async {
        let mut hold = Vec::new();
        // Silent and garbage TCP connections (no TLS).
        for i in 0..4 {
            let mut s = tokio::net::TcpStream::connect(server.addr.as_str())
                .await
                .unwrap();
            if i % 2 == 1 {
                s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff garbage")
                    .await
                    .unwrap();
            }
            hold.push(s);
        }
        // TLS clients that say nothing, and TLS clients that send garbage frames.
        let mut silent = Vec::new();
        for i in 0..4 {
            let mut ch = tls::connect(
                server.addr.as_str(),
                &id,
                server.fingerprint,
                ChannelConfig::default(),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            if i % 2 == 1 {
                ch.send_bytes(&[0xffu8; 300]).await.unwrap();
                ch.flush().await.unwrap();
            }
            silent.push(ch);
        }
        // A well-behaved client is served at once.
        let t = Instant::now();
        let (mut a, _) = raw_connect(&server, &id).await;
        let sid = SessionId::random();
        raw_request(&mut a, &request(sid, 4, 4)).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

        // Same id while `a` holds it (the limit is 1, so ask a server with room: the id check
        // comes after the slot; here the slot is taken, so the answer is busy).
        let (mut b, _) = raw_connect_or_busy(&server, &id).await;
        if let Some(b) = b.as_mut() {
            let e = raw_request(b, &request(sid, 4, 4)).await.unwrap_err();
            assert!(e.starts_with("busy:"), "{e}");
        }
        // Leaving frees the slot (and the id).
        drop(a);
        let mut ok = false;
        for _ in 0..50 {
            let (ch, _) = raw_connect_or_busy(&server, &id).await;
            if let Some(mut ch) = ch {
                match raw_request(&mut ch, &request(sid, 4, 4)).await {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) => assert!(e.starts_with("busy:"), "{e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "the slot and the id were not freed");
        // A whole private generation while the misbehaving connections are still open.
        let t = Instant::now();
        loop {
            let mut cmd = client_cmd(&dir, &server, &dealer);
            cmd.args(["--prompt", "def ", "--max-new-tokens", "2"]);
            let out = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
            if out.status.success() {
                break;
            }
            let err = stderr_of(&out);
            assert!(err.contains("busy"), "{err}");
            assert!(t.elapsed() < Duration::from_secs(20), "never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop((hold, silent));
    });
    assert!(server.stderr().contains("refused a client"));
}

/// A second live session with the same id is refused (on a server with room).
#[test]
fn duplicate_session_id_is_refused() {
    let dir = temp_dir("dup");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(&dir, &model_dir("sm_ln_g"), &dealer, &[cfp], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = Identity::load(&dir.join("client-id")).unwrap();
    rt.block_on(async {
        let sid = SessionId::random();
        let (mut a, _) = raw_connect(&server, &id).await;
        raw_request(&mut a, &request(sid, 4, 4)).await.unwrap();
        let (mut b, _) = raw_connect(&server, &id).await;
        let e = raw_request(&mut b, &request(sid, 4, 4)).await.unwrap_err();
        assert!(e.contains("already in use"), "{e}");
        // The client binary with the same id says so too.
        let mut cmd = client_cmd(&dir, &server, &dealer);
        cmd.args(["--prompt", "hi", "--session-id", &sid.to_hex()]);
        let out = tokio::task::spawn_blocking(move || run(cmd)).await.unwrap();
        let err = stderr_of(&out);
        assert!(!out.status.success());
        assert!(
            err.contains("already in use") && err.contains("fresh random id"),
            "{err}"
        );
        drop(a);
    });
}

/// A raw connection that may be refused as busy right away (then `None`).
async fn raw_connect_or_busy(
    server: &Proc,
    id: &Identity,
) -> (Option<privlm::protocols::channel::FramedChannel>, ()) {
    let mut ch = tls::connect(
        server.addr.as_str(),
        id,
        server.fingerprint,
        ChannelConfig::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    match ch
        .recv_msg_bounded::<privlm::serve::control::Offer>(4 << 20, "offer")
        .await
    {
        Ok(_) => (Some(ch), ()),
        Err(privlm::protocols::channel::ChannelError::PeerAborted(r)) => {
            assert!(r.starts_with("busy:"), "{r}");
            (None, ())
        }
        Err(e) => panic!("{e}"),
    }
}

/// The dealer is down: the client stops with a clear error naming it.
#[test]
fn dealer_down_is_a_clear_error() {
    let dir = temp_dir("nodealer");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let mut dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(&dir, &model_dir("sm_ln_g"), &dealer, &[cfp], &[]);
    dealer.kill();
    let mut cmd = client_cmd(&dir, &server, &dealer);
    cmd.args(["--prompt", "hi", "--max-new-tokens", "2"]);
    let t = Instant::now();
    let out = run(cmd);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(err.contains("dealer"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20));
}
