//! Issue 16, a test-sized load check (the benchmark-sized one is `privlm-bench load`, not done):
//! 1, 2, 4 and 8 `privlm-client` processes at once against one `privlm-server` (session limit 8)
//! and one `privlm-dealer` on a small shipped model; every client must generate the fixed-point
//! mirror's tokens. Then a client beyond the session limit is refused with a clear "busy"
//! message, and served once a slot is free. Prints per-session latencies with
//! `cargo test --release --test serve_load -- --nocapture`.

mod serve_util;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use privlm::model::{Model, Sampling};
use privlm::protocols::channel::tls::Identity;
use privlm::serve::control::SessionId;
use serve_util::*;

const PROMPT: &str = "def ";
const TOKENS: usize = 2;
const MAX_SESSIONS: usize = 8;

fn mirror_tokens(model: &Path) -> Vec<u32> {
    let m = Model::load(model).unwrap();
    let ids: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
    m.to_fixed()
        .generate(&ids, TOKENS, Sampling::Greedy, 0)
        .unwrap()
}

fn tokens_of(json: &Path) -> Vec<u32> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn concurrent_clients_and_busy_beyond_the_limit() {
    let dir = temp_dir("load");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let model = model_dir("sm_ln_g");
    let want = mirror_tokens(&model);
    let dealer = start_dealer(&dir, &[cfp, sfp]);
    let server = start_server(
        &dir,
        &model,
        &dealer,
        &[cfp],
        &["--max-sessions", &MAX_SESSIONS.to_string()],
    );

    let mut rows = Vec::new();
    let mut k = 0;
    for n in [1usize, 2, 4, 8] {
        let wall = Instant::now();
        let runs: Vec<_> = (0..n)
            .map(|_| {
                k += 1;
                let json = dir.join(format!("out-{k}.json"));
                let mut cmd = client_cmd(&dir, &server, &dealer);
                cmd.args([
                    "--prompt",
                    PROMPT,
                    "--max-new-tokens",
                    &TOKENS.to_string(),
                    "--json",
                ])
                .arg(&json);
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let out = run(cmd);
                    (out, t.elapsed(), json)
                })
            })
            .collect();
        let mut lat: Vec<Duration> = Vec::new();
        for h in runs {
            let (out, took, json) = h.join().unwrap();
            assert!(
                out.status.success(),
                "{n} clients: {}\nserver: {}",
                stderr_of(&out),
                server.stderr()
            );
            assert_eq!(tokens_of(&json), want, "{n} clients");
            lat.push(took);
        }
        lat.sort();
        rows.push((n, lat, wall.elapsed()));
    }

    // Beyond the limit: every slot is held by an accepted session (raw clients that then say
    // nothing), so the next client is refused as busy, with what to do.
    let id = Identity::load(&dir.join("client-id")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let holders = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..MAX_SESSIONS {
            let (mut ch, _) = raw_connect(&server, &id).await;
            raw_request(&mut ch, &request(SessionId::random(), 4, 2))
                .await
                .unwrap();
            held.push(ch);
        }
        held
    });
    let mut cmd = client_cmd(&dir, &server, &dealer);
    cmd.args(["--prompt", PROMPT, "--max-new-tokens", "1"]);
    let t = Instant::now();
    let out = run(cmd);
    let refused_in = t.elapsed();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "served beyond the limit");
    assert!(
        err.contains("busy") && err.contains(&format!("already runs {MAX_SESSIONS} sessions")),
        "{err}"
    );
    assert!(refused_in < Duration::from_secs(5), "{refused_in:?}");
    // A slot freed: served again.
    drop(holders);
    let t = Instant::now();
    let served_after = loop {
        let json = dir.join("out-after.json");
        let mut cmd = client_cmd(&dir, &server, &dealer);
        cmd.args(["--prompt", PROMPT, "--max-new-tokens", &TOKENS.to_string()])
            .arg("--json")
            .arg(&json);
        let out = run(cmd);
        if out.status.success() {
            assert_eq!(tokens_of(&json), want);
            break t.elapsed();
        }
        assert!(stderr_of(&out).contains("busy"), "{}", stderr_of(&out));
        assert!(t.elapsed() < Duration::from_secs(15), "never served again");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(rt);

    eprintln!(
        "\nsm_ln_g, {TOKENS} tokens after {PROMPT:?}, --max-sessions {MAX_SESSIONS}; latency \
         = one privlm-client run (start to exit)\n"
    );
    eprintln!("| concurrent clients | per-session latency min / median / max | wall |");
    eprintln!("|---|---|---|");
    for (n, lat, wall) in &rows {
        eprintln!(
            "| {n} | {} / {} / {} ms | {} ms |",
            lat[0].as_millis(),
            lat[lat.len() / 2].as_millis(),
            lat[lat.len() - 1].as_millis(),
            wall.as_millis()
        );
    }
    eprintln!(
        "| {} (all {MAX_SESSIONS} slots held) | refused in {refused_in:.0?}: {} | - |",
        MAX_SESSIONS + 1,
        err.lines()
            .find(|l| l.contains("busy"))
            .unwrap_or("")
            .trim()
    );
    eprintln!("served again {served_after:.0?} after the slots were released");
}
