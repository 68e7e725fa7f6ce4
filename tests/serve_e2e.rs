//! End to end: `privlm-dealer`, `privlm-server` and `privlm-client` as real processes over
//! loopback TLS generate tokens privately from shipped models (the SM+LN+G baseline and the
//! entropy-guided EReg(SM(t)+ScFuFFN)), checked against the fixed-point mirror's greedy
//! tokens; then the faults of a running generation: a client killed mid-generation (the server
//! frees the session and serves the next client), the server or the dealer killed (the client
//! stops with a clear error).

mod serve_util;

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use privlm::model::{Model, Sampling};
use serve_util::*;

const PROMPT: &str = "import os\n\ndef read(path):\n    with open(path) as f:\n        return f.";

fn mirror_tokens(model: &Path, prompt: &str, n: usize) -> Vec<u32> {
    let m = Model::load(model).unwrap();
    let ids: Vec<u32> = prompt.bytes().map(u32::from).collect();
    m.to_fixed().generate(&ids, n, Sampling::Greedy, 0).unwrap()
}

fn generate_and_check(model: &str, n: usize) {
    let dir = temp_dir(&format!("e2e-{model}"));
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(&dir, &model_dir(model), &dealer, &[cfp], &[]);
    let json = dir.join("out.json");
    let mut cmd = client_cmd(&dir, &server, &dealer);
    cmd.args(["--prompt", PROMPT, "--max-new-tokens", &n.to_string()])
        .arg("--json")
        .arg(&json);
    let t = Instant::now();
    let out = run(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}\nserver: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    eprintln!(
        "{model}: {n} tokens in {:.2} s\n{stdout}",
        t.elapsed().as_secs_f64()
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tokens: Vec<u32> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tokens.len(), n);
    assert_eq!(
        tokens,
        mirror_tokens(&model_dir(model), PROMPT, n),
        "{model}"
    );
    // The streamed text and the table.
    assert!(stdout.starts_with(PROMPT), "{stdout}");
    for want in ["layer0", "layer3", "head", "total", "online", "seconds:"] {
        assert!(stdout.contains(want), "{want} missing from {stdout}");
    }
    assert!(v["cost"]["entries"].as_array().unwrap().len() > 10);
}

#[test]
fn baseline_generates_the_mirrors_tokens() {
    generate_and_check("sm_ln_g", 6);
}

#[test]
fn entropy_guided_model_generates_the_mirrors_tokens() {
    generate_and_check("ereg_sm_t_scfuffn", 6);
}

/// Starts a client generating many tokens; returns once the server accepted its session and
/// generation is under way.
fn start_long_client(dir: &Path, server: &Proc, dealer: &Proc) -> std::process::Child {
    let mut cmd = client_cmd(dir, server, dealer);
    cmd.args(["--prompt", "x = 1\n", "--max-new-tokens", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // The client prints the prompt once the server accepted, then each token: wait for 3.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while seen.len() < "x = 1\n".len() + 3 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the client ended before generating");
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    child
}

fn wait_with_stderr(mut child: std::process::Child, limit: Duration) -> (bool, String) {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.success(), err);
        }
        assert!(
            t.elapsed() < limit,
            "the client did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client killed mid-generation: the server ends that session and serves the next client.
#[test]
fn client_killed_mid_generation_frees_the_session() {
    let dir = temp_dir("e2e-killclient");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(
        &dir,
        &model_dir("sm_scfuffn"),
        &dealer,
        &[cfp],
        &["--max-sessions", "1"],
    );
    let mut c = start_long_client(&dir, &server, &dealer);
    c.kill().unwrap();
    c.wait().unwrap();
    // The single slot comes back: a new client is served (retrying while it is busy).
    let t = Instant::now();
    loop {
        let mut cmd = client_cmd(&dir, &server, &dealer);
        cmd.args(["--prompt", "def ", "--max-new-tokens", "2"]);
        let out = run(cmd);
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("busy"), "{err}");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the session was not freed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        server.stderr().contains("session ended with an error"),
        "{}",
        server.stderr()
    );
}

/// The server killed mid-generation: the client stops with a clear error, well within its
/// timeout.
#[test]
fn server_killed_mid_generation_stops_the_client() {
    let dir = temp_dir("e2e-killserver");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let mut server = start_server(&dir, &model_dir("sm_scfuffn"), &dealer, &[cfp], &[]);
    let c = start_long_client(&dir, &server, &dealer);
    server.kill();
    let (ok, err) = wait_with_stderr(c, Duration::from_secs(15));
    assert!(!ok);
    assert!(err.contains("error:") && err.contains("server"), "{err}");
}

/// The dealer killed mid-generation (each token's pass starts with its preprocessing at the
/// dealer): the client stops with a clear error; the server ends the session, frees its only
/// slot and, once a dealer is back at the same address, serves the next client.
#[test]
fn dealer_killed_mid_generation_stops_the_client() {
    let dir = temp_dir("e2e-killdealer");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let mut dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(
        &dir,
        &model_dir("sm_scfuffn"),
        &dealer,
        &[cfp],
        &["--max-sessions", "1"],
    );
    let c = start_long_client(&dir, &server, &dealer);
    dealer.kill();
    let (ok, err) = wait_with_stderr(c, Duration::from_secs(15));
    assert!(!ok);
    assert!(err.contains("error:") && err.contains("dealer"), "{err}");
    let t = Instant::now();
    while !server.stderr().contains("session ended with an error") {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the server did not end the session: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same dealer (identity and address) restarted: the server's slot is free.
    let dealer = start(
        dealer_cmd_at(
            &dir,
            &[cfp, sfp],
            &dealer.addr,
            &["--pairing-timeout-secs", "20"],
        ),
        "privlm-dealer",
    );
    let mut cmd = client_cmd(&dir, &server, &dealer);
    cmd.args(["--prompt", "def ", "--max-new-tokens", "2"]);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
