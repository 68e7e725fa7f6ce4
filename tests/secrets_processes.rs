//! Issue 16 item 5 at the level of the programs: a full private generation by the real
//! `privlm-dealer`, `privlm-server` and `privlm-client` processes over loopback TLS, every one
//! at `RUST_LOG=trace` (the most verbose the programs have: none has a verbosity flag), and
//! every process's standard output and standard error captured and searched for:
//!
//! - the prompt: its text and its token ids as a rendered list (`[100, 101, ...]`, and any
//!   four ids in a row); the generated tokens as a list. The client's own standard output is
//!   exempt from the prompt's and the generated text: printing them to its user is its job;
//! - the model's weights: 200 values spread over every tensor, as the server would render
//!   them (f32 `{}` and `{:?}`) and as fixed-point ring elements (u64 and i64 decimal, hex),
//!   the forms long enough not to occur by chance;
//! - the TLS private keys of all three programs: every 8-byte window of each private scalar
//!   in hex, and the base64 of the key files where it encodes the scalar;
//! - the session id: in full (64 hex digits), and any 8-byte window of it beyond its first 8
//!   bytes (hex, and as a `{:?}` byte list). Its first 8 bytes (16 hex digits) are public
//!   correlation information that the server and the dealer log (`docs/security.md`); pairing
//!   at the dealer needs all 32 bytes.

mod secrets_util;
mod serve_util;

use std::time::{Duration, Instant};

use privlm::model::{Model, Sampling};
use privlm::protocols::channel::tls::KEY_FILE;
use privlm::protocols::nonlinear::NlParams;
use privlm::protocols::prg::Prg;
use privlm::serve::control::SessionId;
use rand_core::Rng;
use secrets_util::{ec_private_scalar, find_leaks, hex_windows, key_base64_windows};
use serve_util::*;

/// A prompt that cannot occur in a log by chance.
const PROMPT: &str = "def zebra_quartz_load(path):";
const TOKENS: usize = 3;
const SESSION_SEED: u64 = 0x5e55;

/// 200 weights spread over every tensor of the model file, in the forms a log would show.
fn weight_needles(model: &std::path::Path) -> (usize, Vec<String>) {
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut values: Vec<f32> = Vec::new();
    let names = st.names();
    let per = 200usize.div_ceil(names.len());
    for name in names {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        let all: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let step = (all.len() / per).max(1);
        values.extend(all.iter().step_by(step).take(per));
    }
    values.truncate(200);
    assert_eq!(values.len(), 200, "the model has enough weights");
    let f = NlParams::default().frac_bits;
    let mut out = Vec::new();
    for &w in &values {
        let fixed = (w as f64 * 2f64.powi(f as i32)).round() as i64;
        for s in [
            format!("{w}"),
            format!("{w:?}"),
            (fixed as u64).to_string(),
            fixed.to_string(),
            format!("{:x}", fixed as u64),
        ] {
            // Shorter forms (0.5, 1, small integers) occur in logs by chance.
            if s.trim_start_matches('-').len() >= 8 {
                out.push(s);
            }
        }
    }
    out.sort();
    out.dedup();
    (values.len(), out)
}

/// Ids as a rendered list and every run of four of them.
fn id_needles(ids: &[u32]) -> Vec<String> {
    let mut out = vec![format!("{ids:?}")];
    for w in ids.windows(4) {
        for sep in [", ", ","] {
            out.push(
                w.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(sep),
            );
        }
    }
    out
}

#[test]
fn programs_at_trace_level_print_no_secrets() {
    let dir = temp_dir("secrets-processes");
    let (_, cfp) = client_identity(&dir);
    let (_, sfp) = server_identity(&dir);
    let model = model_dir("sm_ln_g");
    let trace = |cmd: &mut std::process::Command| {
        cmd.env("RUST_LOG", "trace").env("NO_COLOR", "1");
    };
    let mut cmd = dealer_cmd(&dir, &[cfp, sfp]);
    trace(&mut cmd);
    let mut dealer = start(cmd, "privlm-dealer");
    let mut cmd = server_cmd(&dir, &model, &dealer, &[cfp], &[]);
    trace(&mut cmd);
    let mut server = start(cmd, "privlm-server");

    let mut session = [0u8; 32];
    Prg::from_u64(SESSION_SEED).fill_bytes(&mut session);
    let session = SessionId(session);
    let mut cmd = client_cmd(&dir, &server, &dealer);
    cmd.args(["--prompt", PROMPT, "--max-new-tokens", &TOKENS.to_string()])
        .args(["--session-id", &session.to_hex()]);
    trace(&mut cmd);
    let out = run(cmd);
    let client_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let client_err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "client: {client_err}\nserver: {}",
        server.stderr()
    );

    // The generation really ran: the client printed the mirror's text after the prompt.
    let ids: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
    let m = Model::load(&model).unwrap();
    let generated = m
        .to_fixed()
        .generate(&ids, TOKENS, Sampling::Greedy, 0)
        .unwrap();
    let bytes: Vec<u8> = generated.iter().map(|&t| t as u8).collect();
    let text = String::from_utf8(bytes).unwrap_or_default();
    assert!(
        client_out.starts_with(&format!("{PROMPT}{text}")),
        "{client_out}"
    );
    // Let the server log the session's end, then stop both so that their output is complete.
    let t = Instant::now();
    while !server.stderr().contains("session done") {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    dealer.kill();
    std::thread::sleep(Duration::from_millis(200));

    let streams = [
        ("the server's stdout", server.stdout()),
        ("the server's stderr", server.stderr()),
        ("the dealer's stdout", dealer.stdout()),
        ("the dealer's stderr", dealer.stderr()),
        ("the client's stderr", client_err),
        ("the client's stdout", client_out),
    ];
    for (who, log) in &streams[..5] {
        if who.ends_with("stderr") {
            assert!(
                log.lines().count() > 20 && log.contains("TRACE"),
                "{who} is not at trace level:\n{log}"
            );
        }
    }

    // Everywhere: weights, keys, the session id, the prompt's and the output's ids.
    let (weights, mut everywhere) = weight_needles(&model);
    let n_weight_strings = everywhere.len();
    for d in ["client-id", "server-id", "dealer-id"] {
        let key = std::fs::read(dir.join(d).join(KEY_FILE)).unwrap();
        everywhere.extend(hex_windows(ec_private_scalar(&key)));
        everywhere.extend(key_base64_windows(&key));
    }
    everywhere.push(session.to_hex());
    everywhere.extend(hex_windows(&session.0).into_iter().skip(1));
    everywhere.push(
        format!("{:?}", &session.0[8..12])
            .trim_end_matches(']')
            .to_string(),
    );
    everywhere.extend(id_needles(&ids));
    everywhere.push(format!("{generated:?}"));
    // Everywhere but the client's own standard output: the prompt's and the output's text.
    let mut logs_only = vec![PROMPT.to_string(), "zebra_quartz".to_string()];
    if text.trim().len() >= 3 {
        logs_only.push(format!("{PROMPT}{text}"));
    }

    let refs: Vec<(&str, &str)> = streams.iter().map(|(w, s)| (*w, s.as_str())).collect();
    // The search finds what it looks for: the prompt on the client's stdout (its output), a
    // key file shown as base64 and as hex, a weight and the session id printed in full.
    assert!(!find_leaks(&refs[5..], &logs_only).is_empty());
    let key = std::fs::read(dir.join("server-id").join(KEY_FILE)).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
    let shown = format!(
        "{} {hex} {} {}",
        secrets_util::base64(&key),
        everywhere[0],
        session.to_hex().to_uppercase()
    );
    let found = find_leaks(&[("a synthetic log", shown.as_str())], &everywhere);
    assert!(found.len() >= 3 + 2 * 25, "{found:?}");
    let mut leaks = find_leaks(&refs, &everywhere);
    leaks.extend(find_leaks(&refs[..5], &logs_only));
    assert!(
        leaks.is_empty(),
        "secrets in the programs' output: {leaks:?}"
    );
    // The public prefix of the session id is what the logs name the session by.
    let prefix = &session.to_hex()[..16];
    assert!(
        streams[1].1.contains(prefix) && streams[3].1.contains(prefix),
        "the logs name the session by its id's first 8 bytes"
    );

    let lines: usize = streams.iter().map(|(_, s)| s.lines().count()).sum();
    eprintln!(
        "searched {} strings ({} from {weights} weights, {} of keys, session id and ids; {} \
         prompt strings outside the client's stdout) in {lines} lines of 6 streams ({})",
        everywhere.len() + logs_only.len(),
        n_weight_strings,
        everywhere.len() - n_weight_strings,
        logs_only.len(),
        streams
            .iter()
            .map(|(w, s)| format!("{w}: {}", s.lines().count()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
