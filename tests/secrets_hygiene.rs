//! Secrets never reach `Debug` or the logs.
//!
//! - `debug_of_secret_bearing_types_is_redacted`: every type that holds a share, a weight, a
//!   seed, a key, a wire label or an OT correlation prints no value with `{:?}` (checked for
//!   the values themselves, in decimal and hex, and for any long number at all).
//! - `trace_logs_hold_no_secrets`: a full two-party nonlinear session (ReLU, softmax,
//!   LayerNorm with the server's gain and bias, argmax) over loopback TLS with the real
//!   `privlm-dealer` process, every process at `RUST_LOG=trace`; neither the parties' captured
//!   logs nor the dealer's standard error contain a share, an input, a weight, a session seed
//!   or a byte string of any TLS private key.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dealer_proc::{Dealer, listening_addr, temp_dir};
use privlm::protocols::beaver::dealer::{DealerClient, Welcome};
use privlm::protocols::beaver::{InsecureIdealDealer, Request, TripleProvider};
use privlm::protocols::block::Block;
use privlm::protocols::channel::tls::{self, Identity, KEY_FILE, TlsListener};
use privlm::protocols::channel::{ChannelConfig, FramedChannel};
use privlm::protocols::nonlinear::{self, Mask, NlParams, NormParams, ServerVector};
use privlm::protocols::ot::base::BaseOtSender;
use privlm::protocols::ot::ideal::ideal_cot;
use privlm::protocols::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use privlm::protocols::prg::Prg;
use privlm::protocols::ring::RingTensor;
use privlm::protocols::session::Session;
use privlm::protocols::share::{AShare, Party, reconstruct, split};
use rand_core::Rng;
use secrets_util::{ec_private_scalar, hex_windows, needles};

mod dealer_proc;
mod secrets_util;

/// Fails if `dbg` contains `v` in decimal or hex, or any run of 10+ digits or 12+ hex digits
/// (what a printed 64-bit share, key or label looks like; shapes and counts are short).
fn assert_hides(what: &str, dbg: &str, values: &[u64]) {
    for &v in values {
        for form in [v.to_string(), format!("{v:x}"), format!("{v:X}")] {
            assert!(!dbg.contains(&form), "{what}: Debug shows {form}: {dbg}");
        }
    }
    let mut run_dec = 0;
    let mut run_hex = 0;
    for c in dbg.chars() {
        run_dec = if c.is_ascii_digit() { run_dec + 1 } else { 0 };
        run_hex = if c.is_ascii_hexdigit() {
            run_hex + 1
        } else {
            0
        };
        assert!(run_dec < 10, "{what}: Debug shows a long number: {dbg}");
        assert!(run_hex < 12, "{what}: Debug shows a long hex string: {dbg}");
    }
}

const SECRET: u64 = 0xdead_beef_0bad_f00d;

#[tokio::test]
async fn debug_of_secret_bearing_types_is_redacted() {
    let s = [SECRET];
    let block = Block((SECRET as u128) << 64 | SECRET as u128);
    assert_hides("Block", &format!("{block:?}"), &s);
    let t = RingTensor::from_vec(&[2], vec![SECRET, SECRET ^ 1]).unwrap();
    assert_hides("RingTensor", &format!("{t:?}"), &s);
    let (a, b) = split(&t, &mut Prg::from_u64(1));
    assert_hides("AShare", &format!("{a:?} {b:?}"), &[a.tensor().data()[0]]);
    let seed = [0xa7u8; 32];
    assert_hides(
        "Prg",
        &format!("{:?}", Prg::from_seed(seed)),
        &[0xa7a7_a7a7_a7a7_a7a7],
    );
    let w = Welcome {
        seed,
        chunk_elems: 5,
    };
    let dbg = format!("{w:?}");
    assert_hides("Welcome", &dbg, &[0xa7a7_a7a7_a7a7_a7a7]);
    assert!(!dbg.contains("167"), "Welcome shows seed bytes: {dbg}");

    // Correlations of every kind, both parties.
    let (mut d0, mut d1) = InsecureIdealDealer::pair(3);
    let reqs = [
        Request::Elementwise { n: 3 },
        Request::MatMul {
            batch: 1,
            n: 2,
            k: 2,
            m: 2,
        },
        Request::Square { n: 2 },
        Request::Trunc {
            n: 2,
            frac_bits: 16,
        },
        Request::WeightMask { id: 1, k: 2, m: 2 },
        Request::Weight {
            id: 1,
            n: 1,
            k: 2,
            m: 2,
        },
    ];
    for r in &reqs {
        for d in [&mut d0, &mut d1] {
            let m = d.fetch(r).await.unwrap();
            assert_hides(&format!("Material for {r:?}"), &format!("{m:?}"), &[]);
        }
    }
    assert_hides("InsecureIdealDealer", &format!("{d0:?} {d1:?}"), &[]);

    // OT and GC state.
    let base = BaseOtSender::new(&mut Prg::from_u64(2));
    assert_hides("BaseOtSender", &format!("{base:?}"), &[]);
    let cfg = IknpConfig::default();
    let iknp_s = IknpSender::new(cfg.clone(), block, &mut Prg::from_u64(3));
    let iknp_r = IknpReceiver::new(cfg, &mut Prg::from_u64(4));
    assert_hides("IKNP", &format!("{iknp_s:?} {iknp_r:?}"), &s);
    let (cs, cr) = ideal_cot(seed, block);
    assert_hides("ideal COT", &format!("{cs:?} {cr:?}"), &s);

    // Nonlinear-layer values: the server's vector, a session.
    let sv = ServerVector::plain(7, vec![SECRET; 3]);
    assert_hides("ServerVector", &format!("{sv:?}"), &s);
    let norm = NormParams {
        gain: sv,
        bias: Some(vec![SECRET; 3]),
        eps: 1e-5,
    };
    assert_hides("NormParams", &format!("{norm:?}"), &s);
    let (c0, _c1) = privlm::protocols::channel::mem::pair();
    let session =
        Session::new(Party::P0, c0, d0, Prg::from_seed(seed), NlParams::default()).unwrap();
    assert_hides("Session", &format!("{session:?}"), &s);

    // Keys.
    let id = Identity::generate().unwrap();
    let dbg = format!("{id:?}");
    assert!(dbg.contains("redacted"), "{dbg}");

    // The plaintext model's tensors (weights and activations).
    let f = privlm::model::plain::F32Tensor {
        rows: 1,
        cols: 2,
        data: vec![1234.5677, -0.123_456_79],
    };
    let dbg = format!("{f:?}");
    assert!(!dbg.contains("1234.5") && !dbg.contains("0.1234"), "{dbg}");
    let l = privlm::model::Logits {
        rows: 1,
        vocab: 2,
        data: vec![98.765_43, 1.0],
    };
    let dbg = format!("{l:?}");
    assert!(!dbg.contains("98.76"), "{dbg}");
}

// ---------------------------------------------------------------------------------------------
// Logs at trace level.

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

const DEALER_SEED: u64 = 4242;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secrets() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .expect("the only subscriber of this test binary");

    let dir = temp_dir("secrets-trace");
    let (p0, p1) = (
        Identity::load_or_create(&dir.join("p0")).unwrap(),
        Identity::load_or_create(&dir.join("p1")).unwrap(),
    );
    let dealer_dir = dir.join("dealer");
    let dealer_fp = Identity::load_or_create(&dealer_dir).unwrap().fingerprint();
    let dealer_log = dir.join("dealer.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-dealer"));
    cmd.args(["--listen", "127.0.0.1:0", "--sessions", "1", "--identity"])
        .arg(&dealer_dir)
        .args(["--peer-fingerprint", &p0.fingerprint().to_hex()])
        .args(["--peer-fingerprint", &p1.fingerprint().to_hex()])
        .args([
            "--insecure-ideal-dealer",
            "--seed",
            &DEALER_SEED.to_string(),
        ])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&dealer_log).unwrap());
    let mut child = cmd.spawn().expect("start privlm-dealer");
    let stdout = child.stdout.take().unwrap();
    let mut dealer = Dealer(child);
    let addr = listening_addr(stdout).await;

    let timeout = Duration::from_secs(20);
    let cfg = ChannelConfig::default();
    let listener = TlsListener::bind("127.0.0.1:0", &p1, &[p0.fingerprint()], cfg.clone())
        .await
        .unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let (peer0, peer1) = tokio::join!(
        tls::connect(
            server_addr.as_str(),
            &p0,
            p1.fingerprint(),
            cfg.clone(),
            timeout
        ),
        listener.accept()
    );
    let (peer0, (peer1, _)) = (peer0.unwrap(), peer1.unwrap());
    let session = [9u8; 32];
    let connect = |id: &Identity, party| {
        let (addr, cfg) = (addr.clone(), cfg.clone());
        let id_dir = id.dir().unwrap().to_path_buf();
        async move {
            let id = Identity::load(&id_dir).unwrap();
            let ch = tls::connect(addr.as_str(), &id, dealer_fp, cfg, timeout)
                .await
                .unwrap();
            DealerClient::connect(ch, party, session).await.unwrap()
        }
    };
    let (d0, d1) = tokio::join!(connect(&p0, Party::P0), connect(&p1, Party::P1));
    let params = NlParams::default();
    let s0 = Session::new(Party::P0, peer0, d0, Prg::from_u64(1), params).unwrap();
    let s1 = Session::new(Party::P1, peer1, d1, Prg::from_u64(2), params).unwrap();

    // Inputs: negative values, so that every encoding is a 20-digit number.
    let mut rng = Prg::from_u64(77);
    let mut neg = |n: usize| -> Vec<u64> {
        (0..n)
            .map(|_| params.enc(-0.5 - (rng.next_u64() >> 40) as f64 / (1u64 << 24) as f64 * 3.0))
            .collect()
    };
    let inputs = [
        RingTensor::from_vec(&[16], neg(16)).unwrap(),
        RingTensor::from_vec(&[1, 4, 4], neg(16)).unwrap(),
        RingTensor::from_vec(&[2, 8], neg(16)).unwrap(),
        RingTensor::from_vec(&[40], neg(40)).unwrap(),
    ];
    let gain = neg(8);
    let bias = neg(8);
    let mut split_rng = Prg::from_u64(78);
    let (sh0, sh1): (Vec<AShare>, Vec<AShare>) =
        inputs.iter().map(|t| split(t, &mut split_rng)).unzip();

    async fn run(
        mut s: Session<FramedChannel, DealerClient<FramedChannel>>,
        xs: Vec<AShare>,
        gain: Option<Vec<u64>>,
        bias: Option<Vec<u64>>,
    ) -> Vec<AShare> {
        let mut out = vec![nonlinear::relu(&mut s, &xs[0]).await.unwrap()];
        out.push(
            nonlinear::softmax(&mut s, &xs[1], Mask::Causal, None)
                .await
                .unwrap(),
        );
        let g = nonlinear::setup_server_vector(&mut s, 3, 8, gain.as_deref())
            .await
            .unwrap();
        let norm = NormParams {
            gain: g,
            bias,
            eps: 1e-5,
        };
        out.push(nonlinear::layer_norm(&mut s, &xs[2], &norm).await.unwrap());
        nonlinear::argmax(&mut s, &xs[3], Party::P0).await.unwrap();
        let (_, d) = s.into_parts();
        d.into_channel().close().await.unwrap();
        out
    }
    let (o0, o1) = tokio::join!(
        tokio::spawn(run(s0, sh0.clone(), None, None)),
        tokio::spawn(run(s1, sh1.clone(), Some(gain.clone()), Some(bias.clone())))
    );
    let (o0, o1) = (o0.unwrap(), o1.unwrap());
    // The session really ran: ReLU of negative inputs is zero.
    let relu = reconstruct(&o0[0], &o1[0]).unwrap();
    assert!(relu.data().iter().all(|&v| v == 0));
    let status = tokio::task::spawn_blocking(move || dealer.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "dealer exited with {status}");

    // What must not appear anywhere.
    let mut values: Vec<u64> = Vec::new();
    for t in &inputs {
        values.extend(t.data());
    }
    for sh in sh0.iter().chain(&sh1).chain(&o0).chain(&o1) {
        values.extend(sh.tensor().data());
    }
    values.extend(&gain);
    values.extend(&bias);
    // Only values of 10+ digits (the shares and negative encodings; zeros of ReLU are not
    // secrets and small numbers occur in logs by chance).
    values.retain(|&v| v >= 1_000_000_000);
    assert!(values.len() > 100, "too few secret values to look for");
    let mut strings: Vec<String> = values.iter().flat_map(|&v| needles(v)).collect();
    // The dealer's session seeds (derived from --seed the way the dealer derives them).
    let mut master = Prg::from_u64(DEALER_SEED);
    let mut session_rng = Prg::from_seed(master.gen_seed());
    for _ in 0..2 {
        let mut s = [0u8; 32];
        session_rng.fill_bytes(&mut s);
        strings.extend(hex_windows(&s));
        strings.push(format!("{:?}", &s[..4]).trim_end_matches(']').to_string());
    }
    // Every private key: the secret scalar inside the PKCS#8 document (the document also
    // holds the public key, which the certificate shows and the TLS logs may print).
    for d in [dir.join("p0"), dir.join("p1"), dealer_dir.clone()] {
        let key = std::fs::read(d.join(KEY_FILE)).unwrap();
        strings.extend(hex_windows(ec_private_scalar(&key)));
    }

    let ours = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    let theirs = std::fs::read_to_string(&dealer_log).unwrap();
    for (who, log) in [("the parties' log", &ours), ("the dealer's log", &theirs)] {
        assert!(
            log.lines().count() > 20 && log.contains("TRACE"),
            "{who} is not at trace level:\n{log}"
        );
        let lower = log.to_lowercase();
        for s in &strings {
            assert!(!lower.contains(s.as_str()), "{who} shows the secret {s}");
        }
    }
    eprintln!(
        "checked {} secrets against {} + {} log lines",
        strings.len(),
        ours.lines().count(),
        theirs.lines().count()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
