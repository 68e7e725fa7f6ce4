//! The fuzz harness of privlm: one function per fuzz target, each feeding untrusted peer bytes
//! to a real party (the frame reader, the dealer, the dealer client, the session handshake,
//! base OT, IKNP, the garbled-circuit evaluator and garbler, the nonlinear session, the
//! inference server's and client's control exchange).
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, one line each) and by the
//! deterministic corpus replay of the normal test suite (`tests/fuzz_replay.rs` includes this
//! file as a module), so CI runs every corpus file through exactly the code libFuzzer ran.
//!
//! **Input format.** [`frame_stream`] reads its input as a raw byte stream (frame headers
//! included). Every other target reads *scripted messages*: the input is a sequence of
//! `u16` little-endian length + payload records ([`split_messages`]), delivered one per
//! receive by [`ScriptChannel`]; what the party sends is discarded. Some targets take a
//! first byte that selects a role or variant. The targets never wait for time: a receive
//! past the end of the script fails with [`ChannelError::Closed`].
//!
//! **What counts as a finding.** A panic, an abort (allocation failure), a hang (libFuzzer's
//! `-timeout`), or an invariant checked here: after an error the channel stays failed, and
//! peer text in errors is bounded.

#![allow(unreachable_pub, dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privlm::net::{ModelManifest, SessionParams, handshake};
use privlm_protocols::beaver::dealer::{DealerClient, DealerConfig, serve_session};
use privlm_protocols::beaver::{InsecureIdealDealer, Request, TripleProvider};
use privlm_protocols::block::Block;
use privlm_protocols::channel::{
    Channel, ChannelConfig, ChannelError, FramedChannel, MAX_PEER_TEXT_CHARS, Stats,
};
use privlm_protocols::compute::ComputePool;
use privlm_protocols::gc::{Backend, Evaluator, Garbler, GcConfig, RevealTo, Role};
use privlm_protocols::nonlinear::{self, Mask, NlParams};
use privlm_protocols::ot::base::{base_ot_recv, base_ot_send};
use privlm_protocols::ot::ideal::{ideal_cot, ideal_rot};
use privlm_protocols::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use privlm_protocols::ot::millionaire::{RotRole, ideal_bit_triples, millionaire};
use privlm_protocols::ot::one_of_n::{OneOfN, recv_one_of_n, send_one_of_n};
use privlm_protocols::ot::{CotReceiver, CotSender, RotReceiver, RotSender};
use privlm_protocols::prg::Prg;
use privlm_protocols::ring::RingTensor;
use privlm_protocols::session::Session;
use privlm_protocols::share::{AShare, Party};
use tokio::io::AsyncWriteExt;

/// A target's entry point.
pub type Target = fn(&[u8]) -> bool;

/// Every fuzz target: its name (the directory of its corpus under `fuzz/corpus/`) and entry.
/// An entry returns `true` when the party completed its whole scripted protocol (what an
/// honest peer's transcript must achieve), `false` when it stopped on an error.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_stream", frame_stream),
    ("dealer_session", dealer_session),
    ("dealer_client", dealer_client),
    ("handshake", session_handshake),
    ("base_ot", base_ot),
    ("iknp", iknp),
    ("gc", gc),
    ("ot_apps", ot_apps),
    ("nonlinear", nonlinear_session),
    ("serve_control", serve_control),
];

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Runs `f` to completion on this thread's current-thread runtime (built once).
pub fn block_on<F: Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        });
        rt.block_on(f)
    })
}

/// Splits an input into scripted messages: `u16` LE length + payload, repeated; the last
/// record may be cut short (it is delivered as is), a lone trailing byte is dropped.
pub fn split_messages(data: &[u8]) -> VecDeque<Vec<u8>> {
    let mut out = VecDeque::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let take = len.min(body.len());
        out.push_back(body[..take].to_vec());
        rest = &body[take..];
    }
    out
}

/// The inverse of [`split_messages`] (for writing seeds). Panics on a message over 64 KiB.
pub fn join_messages<M: AsRef<[u8]>>(msgs: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        let m = m.as_ref();
        let len = u16::try_from(m.len()).expect("scripted message over 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(m);
    }
    out
}

/// The channel configuration of the targets: small limits, short timeout.
pub fn fuzz_channel_config() -> ChannelConfig {
    ChannelConfig {
        max_frame_len: 4096,
        max_message_len: 1 << 16,
        timeout: Duration::from_secs(5),
        ..ChannelConfig::default()
    }
}

/// A [`Channel`] whose peer is a script: each receive takes the next scripted message, with
/// the length checks of [`FramedChannel`]; sends are counted and discarded. After an error
/// the channel stays failed, as the real one does.
#[derive(Debug)]
pub struct ScriptChannel {
    script: VecDeque<Vec<u8>>,
    cfg: ChannelConfig,
    stats: Stats,
    failed: Option<ChannelError>,
}

impl ScriptChannel {
    /// A channel whose peer sends `script`, in order.
    pub fn new(script: VecDeque<Vec<u8>>) -> Self {
        ScriptChannel {
            script,
            cfg: fuzz_channel_config(),
            stats: Stats::default(),
            failed: None,
        }
    }

    fn check(&self) -> Result<(), ChannelError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: ChannelError) -> ChannelError {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
        }
        e
    }

    fn next(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        match self.script.pop_front() {
            Some(m) => Ok(m),
            None => Err(self.fail(ChannelError::Closed)),
        }
    }
}

impl Channel for ScriptChannel {
    async fn send_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.check()?;
        self.stats.record_send(data.len());
        Ok(())
    }

    async fn recv_bytes_into(&mut self, buf: &mut [u8], context: &str) -> Result<(), ChannelError> {
        let m = self.next()?;
        if m.len() != buf.len() {
            return Err(self.fail(ChannelError::LengthMismatch {
                context: context.to_string(),
                expected: buf.len(),
                got: m.len(),
            }));
        }
        buf.copy_from_slice(&m);
        self.stats.record_recv(m.len());
        Ok(())
    }

    async fn recv_bytes_bounded(&mut self, max_len: usize) -> Result<Vec<u8>, ChannelError> {
        let m = self.next()?;
        if m.len() > max_len {
            return Err(self.fail(ChannelError::MessageTooLarge {
                len: m.len(),
                max: max_len,
            }));
        }
        self.stats.record_recv(m.len());
        Ok(m)
    }

    async fn flush(&mut self) -> Result<(), ChannelError> {
        self.check()
    }

    async fn abort(&mut self, reason: &str) -> ChannelError {
        if let Some(e) = &self.failed {
            return e.clone();
        }
        self.fail(ChannelError::Aborted(reason.to_string()))
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

/// The messages a [`Recorder`] sent, shared (it outlives a channel a protocol consumes).
pub type SentLog = Arc<Mutex<Vec<Vec<u8>>>>;

/// A channel that records every message it sends (to turn honest runs into seed scripts).
#[derive(Debug)]
pub struct Recorder<C> {
    inner: C,
    sent: SentLog,
}

impl<C> Recorder<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Recorder {
            inner,
            sent: SentLog::default(),
        }
    }

    /// The log of sent messages (shared).
    pub fn log(&self) -> SentLog {
        self.sent.clone()
    }

    /// The messages sent so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().expect("log").clone()
    }
}

impl<C: Channel> Channel for Recorder<C> {
    async fn send_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.sent.lock().expect("log").push(data.to_vec());
        self.inner.send_bytes(data).await
    }

    async fn recv_bytes_into(&mut self, buf: &mut [u8], context: &str) -> Result<(), ChannelError> {
        self.inner.recv_bytes_into(buf, context).await
    }

    async fn recv_bytes_bounded(&mut self, max_len: usize) -> Result<Vec<u8>, ChannelError> {
        self.inner.recv_bytes_bounded(max_len).await
    }

    async fn flush(&mut self) -> Result<(), ChannelError> {
        self.inner.flush().await
    }

    async fn abort(&mut self, reason: &str) -> ChannelError {
        self.inner.abort(reason).await
    }

    fn config(&self) -> &ChannelConfig {
        self.inner.config()
    }

    fn stats(&self) -> &Stats {
        self.inner.stats()
    }

    fn stats_mut(&mut self) -> &mut Stats {
        self.inner.stats_mut()
    }
}

/// Checks what the harness demands of every error: peer text is bounded (an error that
/// quotes the peer never carries more than a screenful).
fn check_error(e: &ChannelError) {
    if let ChannelError::PeerAborted(text) = e {
        assert!(
            text.len() <= MAX_PEER_TEXT_CHARS + 64,
            "peer abort text of {} bytes",
            text.len()
        );
        assert!(
            !text.chars().any(|c| c.is_control()),
            "peer abort text with a control character: {text:?}"
        );
    }
}

/// A control message with variable-length fields (what a handshake hello carries).
type VarMsg = (u32, String, Vec<u64>, Option<Vec<String>>);

/// Target `frame_stream`: the input's first two bytes choose up to eight receives; the rest is
/// the raw byte stream of the peer (frame headers, flags, payloads) into a real
/// [`FramedChannel`]. After the first error every later call must fail with the same error.
/// Completed: every receive succeeded until the stream ended at a frame boundary.
pub fn frame_stream(data: &[u8]) -> bool {
    if data.len() < 2 {
        return false;
    }
    let ops = u16::from_le_bytes([data[0], data[1]]);
    let stream = data[2..].to_vec();
    block_on(async move {
        let (ours, mut peer) = tokio::io::duplex(stream.len() + 64);
        peer.write_all(&stream).await.expect("pipe has room");
        drop(peer);
        let mut ch = FramedChannel::new(ours, fuzz_channel_config());
        let mut first: Option<ChannelError> = None;
        for i in 0..8 {
            let r = match (ops >> (2 * i)) & 3 {
                0 => ch.recv_bytes_bounded(1024).await.map(drop),
                1 => ch.recv_tensor(&[2, 3], "fuzz tensor").await.map(drop),
                2 => ch.recv_msg::<VarMsg>("fuzz message").await.map(drop),
                _ => ch.recv_u64s(4, "fuzz words").await.map(drop),
            };
            match (r, &first) {
                (Ok(()), None) => {}
                (Ok(()), Some(e)) => panic!("a receive succeeded after the error {e}"),
                (Err(e), None) => {
                    check_error(&e);
                    first = Some(e);
                }
                (Err(e), Some(f)) => assert_eq!(&e, f, "the channel's error changed"),
            }
        }
        // The stream ending at a frame boundary is a clean end.
        matches!(first, None | Some(ChannelError::Closed))
    })
}

/// The dealer configuration of the targets: small limits so that valid requests stay cheap.
fn fuzz_dealer_config() -> DealerConfig {
    DealerConfig {
        chunk_elems: 64,
        max_request_elems: 1 << 12,
        max_request_work: 1 << 16,
        compute: ComputePool::new(1),
    }
}

/// Target `dealer_session`: the dealer's serve loop with both parties scripted. The first two
/// bytes give how many of the remaining bytes are P0's script; the rest is P1's. Scripts
/// carry hellos ([`privlm_protocols::beaver::dealer::Hello`]) and [`Request`]s.
pub fn dealer_session(data: &[u8]) -> bool {
    if data.len() < 2 {
        return false;
    }
    let rest = &data[2..];
    let cut = (u16::from_le_bytes([data[0], data[1]]) as usize).min(rest.len());
    let a = ScriptChannel::new(split_messages(&rest[..cut]));
    let b = ScriptChannel::new(split_messages(&rest[cut..]));
    block_on(async move {
        serve_session(a, b, &fuzz_dealer_config(), &mut Prg::from_u64(1))
            .await
            .is_ok()
    })
}

/// The requests [`dealer_client`] makes, in order (small, and of every common kind).
pub fn client_requests() -> Vec<Request> {
    vec![
        Request::Elementwise { n: 5 },
        Request::MatMul {
            batch: 1,
            n: 2,
            k: 3,
            m: 2,
        },
        Request::Square { n: 3 },
        Request::Trunc {
            n: 4,
            frac_bits: 16,
        },
    ]
}

/// Target `dealer_client`: a party's dealer client against a scripted dealer (welcome,
/// acknowledgements, corrections). First byte: bit 0 selects the party (P1 receives
/// corrections).
pub fn dealer_client(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let party = if sel & 1 == 0 { Party::P0 } else { Party::P1 };
    let ch = ScriptChannel::new(split_messages(rest));
    block_on(async move {
        let Ok(mut client) = DealerClient::connect(ch, party, [7; 32]).await else {
            return false;
        };
        for req in client_requests() {
            if client.fetch(&req).await.is_err() {
                return false;
            }
        }
        true
    })
}

/// The session parameters of the handshake target.
pub fn handshake_params() -> SessionParams {
    SessionParams::new(
        16,
        ModelManifest::new("fuzz").with_tensor("h.0.attn.c_attn.weight", &[4, 12]),
    )
    .with_nonlinear(&NlParams::default())
}

/// Target `handshake`: the session handshake (preamble and hello) against a scripted peer.
/// First byte: bit 0 selects our role.
pub fn session_handshake(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let role = if sel & 1 == 0 { Party::P0 } else { Party::P1 };
    let mut ch = ScriptChannel::new(split_messages(rest));
    block_on(async move { handshake(&mut ch, role, &handshake_params()).await.is_ok() })
}

/// Target `base_ot`: first byte bit 0 selects the side (sender reads the points `B`, receiver
/// reads the point `A`); 4 OTs.
pub fn base_ot(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let mut ch = ScriptChannel::new(split_messages(rest));
    let mut rng = Prg::from_u64(3);
    block_on(async move {
        if sel & 1 == 0 {
            base_ot_send(&mut ch, 4, &mut rng).await.is_ok()
        } else {
            base_ot_recv(&mut ch, &[true, false, true, true], &mut rng)
                .await
                .is_ok()
        }
    })
}

/// Target `iknp`: IKNP OT extension (chunk 128). First byte bit 0 selects the side; the
/// sender runs setup (base-OT receiver), random COT, COT and ROT calls; the receiver the
/// mirror calls.
pub fn iknp(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let mut ch = ScriptChannel::new(split_messages(rest));
    let cfg = IknpConfig::with_chunk(128).expect("valid chunk");
    let mut rng = Prg::from_u64(4);
    block_on(async move {
        if sel & 1 == 0 {
            let mut s = IknpSender::new(cfg, Block::from_bytes([5; 16]), &mut rng);
            async {
                s.setup(&mut ch).await?;
                s.send_rcot(&mut ch, 100).await?;
                s.send_cot(&mut ch, 40).await?;
                s.send_rot(&mut ch, 10).await?;
                Ok::<_, privlm_protocols::ot::OtError>(())
            }
            .await
            .is_ok()
        } else {
            let mut r = IknpReceiver::new(cfg, &mut rng);
            async {
                r.setup(&mut ch).await?;
                r.recv_rcot(&mut ch, 100).await?;
                r.recv_cot(&mut ch, &[true; 40]).await?;
                r.recv_rot(&mut ch, 10).await?;
                Ok::<_, privlm_protocols::ot::OtError>(())
            }
            .await
            .is_ok()
        }
    })
}

/// The circuit both GC roles run: 8-bit inputs from each side, an AND layer, single ANDs
/// across a batch boundary, reveals to each side and B2A conversion.
pub async fn gc_circuit<B: Backend>(
    b: &mut B,
    mine: Option<&[bool]>,
    garbler: bool,
) -> Result<(), B::Error> {
    let (gbits, ebits) = if garbler { (mine, None) } else { (None, mine) };
    let x = b.input(Role::Garbler, 8, gbits).await?;
    let y = b.input(Role::Evaluator, 8, ebits).await?;
    let z = b.and_n(&x, &y).await?;
    let t = b.constant(true);
    let w = b.and(z[0], t).await?;
    let v = b.and(w, z[1]).await?;
    b.reveal(&z, RevealTo::Garbler).await?;
    b.reveal(&z, RevealTo::Evaluator).await?;
    b.reveal(&[v, w], RevealTo::Both).await?;
    b.arith_shares(std::slice::from_ref(&z), true).await?;
    Ok(())
}

/// Target `gc`: a garbled-circuit session (batches of 4 tables) with an ideal COT. First
/// byte bit 0: the evaluator (reads the session header, table batches, garbler labels,
/// reveals, B2A words, the final count) or the garbler (reads what the evaluator sends).
pub fn gc(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let mut ch = ScriptChannel::new(split_messages(rest));
    let (mut s, mut r) = ideal_cot(Prg::from_u64(6).gen_seed(), Block::from_bytes([9; 16]));
    let cfg = GcConfig {
        circuit_id: 0x5eed,
        batch_ands: 4,
    };
    block_on(async move {
        let bits = [true, false, true, true, false, false, true, false];
        if sel & 1 == 0 {
            let Ok(mut e) = Evaluator::new(&mut ch, &mut r, cfg).await else {
                return false;
            };
            gc_circuit(&mut e, Some(&bits), false).await.is_ok() && e.finish().await.is_ok()
        } else {
            let mut rng = Prg::from_u64(7);
            let Ok(mut g) = Garbler::new(&mut ch, &mut s, &mut rng, cfg).await else {
                return false;
            };
            gc_circuit(&mut g, Some(&bits), true).await.is_ok() && g.finish().await.is_ok()
        }
    })
}

/// The OT applications of the `ot_apps` target, as the ROT sender (`sender`) or receiver:
/// a millionaires' comparison of 5 values on 13 bits (4-bit digits), then five 1-out-of-8
/// OTs of 20-bit messages.
pub async fn ot_apps_run<C: Channel>(
    ch: &mut C,
    sender: bool,
) -> Result<(), privlm_protocols::ot::OtError> {
    let (mut s, mut r) = ideal_rot(Prg::from_u64(21).gen_seed());
    let (t0, t1) = ideal_bit_triples(Prg::from_u64(22).gen_seed());
    let mut rng = Prg::from_u64(23 + sender as u64);
    let inputs = [3u64, 8191, 0, 4096, 77];
    let p = OneOfN {
        log_n: 3,
        width: 20,
    };
    if sender {
        let mut t = t0;
        millionaire(
            ch,
            RotRole::<_, privlm_protocols::ot::ideal::IdealRotReceiver>::Sender(&mut s),
            &mut t,
            &mut rng,
            &inputs,
            13,
            4,
        )
        .await?;
        let tables: Vec<u64> = (0..40).map(|i| (i * 7919) % (1 << 20)).collect();
        send_one_of_n(&mut s, ch, p, &tables).await
    } else {
        let mut t = t1;
        millionaire(
            ch,
            RotRole::<privlm_protocols::ot::ideal::IdealRotSender, _>::Receiver(&mut r),
            &mut t,
            &mut rng,
            &inputs,
            13,
            4,
        )
        .await?;
        recv_one_of_n(&mut r, ch, p, &[0, 7, 3, 1, 5])
            .await
            .map(drop)
    }
}

/// Target `ot_apps`: the OT applications with an ideal random OT ([`ot_apps_run`]): the
/// millionaires' protocol (digit tables, Beaver ANDs of bit triples) and 1-out-of-N OT
/// (count tags, packed tables, padding bits). First byte bit 0: ROT sender or receiver.
pub fn ot_apps(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let mut ch = ScriptChannel::new(split_messages(rest));
    block_on(async move { ot_apps_run(&mut ch, sel & 1 == 0).await.is_ok() })
}

/// This party's share of a small fixed input (the values only matter for honest seed runs).
pub fn nl_share(party: Party, shape: &[usize], seed: u64) -> AShare {
    let p = NlParams::default();
    let n: usize = shape.iter().product();
    let vals: Vec<u64> = (0..n)
        .map(|i| p.enc(((i as f64) * 0.37 + seed as f64).sin() * 2.0))
        .collect();
    let plain = RingTensor::from_vec(shape, vals).expect("shape");
    let (a, b) = privlm_protocols::share::split(&plain, &mut Prg::from_u64(seed));
    match party {
        Party::P0 => a,
        Party::P1 => b,
    }
}

/// The nonlinear ops of the `nonlinear` target, in order, on `s`.
pub async fn nl_ops<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
) -> Result<(), privlm_protocols::session::ProtocolError> {
    let party = s.party();
    nonlinear::relu(s, &nl_share(party, &[4], 1)).await?;
    nonlinear::softmax(s, &nl_share(party, &[1, 2, 3], 2), Mask::Causal, None).await?;
    nonlinear::argmax(s, &nl_share(party, &[5], 3), Party::P0).await?;
    nonlinear::gelu(s, &nl_share(party, &[3], 4)).await?;
    Ok(())
}

/// Target `nonlinear`: a nonlinear session (op tags, truncation, comparison and multiplexer
/// messages) with the ideal dealer, against a scripted peer. First byte bit 0 selects our
/// party.
pub fn nonlinear_session(data: &[u8]) -> bool {
    let Some((&sel, rest)) = data.split_first() else {
        return false;
    };
    let party = if sel & 1 == 0 { Party::P0 } else { Party::P1 };
    let ch = ScriptChannel::new(split_messages(rest));
    let (d0, d1) = InsecureIdealDealer::pair(11);
    let d = if party == Party::P0 { d0 } else { d1 };
    let prg = Prg::from_u64(12 + sel as u64 % 2);
    let Ok(mut s) = Session::new(party, ch, d, prg, NlParams::default()) else {
        panic!("session setup");
    };
    block_on(async move { nl_ops(&mut s).await.is_ok() })
}

/// Runs the target called `name` on `data`: `None` if there is no such target, else
/// whether the party completed its protocol.
pub fn run(name: &str, data: &[u8]) -> Option<bool> {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| f(data))
}

/// The tiny model the `serve_control` server hosts (byte vocabulary, one layer, width 8).
pub fn serve_model() -> privlm::model::Model {
    use privlm::model::{Architecture, Model, ModelConfig};
    let mut cfg = ModelConfig::gpt2_small(Architecture::gpt2(), 16);
    (
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.d_ff,
        cfg.vocab_size,
    ) = (1, 2, 8, 32, 256);
    Model::random(cfg, 1).expect("tiny model")
}

/// The prompt, new-token count and session id of the `serve_control` client.
pub const SERVE_PROMPT: &str = "def ";
/// See [`SERVE_PROMPT`].
pub const SERVE_NEW_TOKENS: u32 = 2;
/// See [`SERVE_PROMPT`].
pub const SERVE_SESSION: [u8; 32] = [7; 32];

/// A fresh inference server (fresh counters) for [`serve_model`], whose dealer is unreachable
/// (a port nothing listens on), so that a session that gets through the control exchange and
/// the handshake ends at once. The model and the identity are built once per thread.
pub fn serve_server() -> privlm::serve::server::InferenceServer {
    use privlm::serve::server::{DealerLink, InferenceServer, ServeConfig};
    use privlm_protocols::channel::tls::{Fingerprint, Identity};
    thread_local! {
        static IDENTITY: Arc<Identity> = Arc::new(Identity::generate().expect("identity"));
        static MODEL: Arc<privlm::model::Model> = Arc::new(serve_model());
    }
    let cfg = ServeConfig {
        max_sessions: 2,
        request_timeout: Duration::from_secs(5),
        max_new_tokens: 4,
        nl: NlParams::default(),
        dealer: DealerLink {
            addr: "127.0.0.1:1".into(),
            fingerprint: Fingerprint::from_bytes([0; 32]),
            connect_timeout: Duration::from_secs(1),
            channel: fuzz_channel_config(),
        },
        stop_after: None,
    };
    let identity = IDENTITY.with(Arc::clone);
    let model = MODEL.with(Arc::clone);
    InferenceServer::new(model, "tiny", identity, cfg).expect("server")
}

/// A [`FramedChannel`] over an in-memory pipe whose peer writes `stream` (raw frames) and then
/// ends its side, while whatever our side writes is read and dropped. `f` runs on the channel.
async fn over_stream<F, Fut, T>(stream: &[u8], f: F) -> T
where
    F: FnOnce(FramedChannel) -> Fut,
    Fut: Future<Output = T>,
{
    use tokio::io::AsyncReadExt;
    let (ours, peer) = tokio::io::duplex(1 << 16);
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    let ch = FramedChannel::new(
        ours,
        privlm::serve::server::peer_channel_config(Duration::from_secs(5)),
    );
    let feed = async {
        let _ = peer_tx.write_all(stream).await;
        let _ = peer_tx.shutdown().await;
    };
    let drain = async {
        let mut sink = vec![0u8; 1 << 14];
        while matches!(peer_rx.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let (out, (), ()) = tokio::join!(f(ch), feed, drain);
    out
}

/// Target `serve_control`: the client-server control exchange (offer, session request,
/// acceptance, then the session handshake) with the peer's raw byte stream (frames) scripted.
/// First byte bit 0: we are the inference server (the script is a client's: request and
/// hello) or the client (the script is a server's: offer, acceptance, hello). Completed: the
/// server accepted the session, or the client's request was accepted.
pub fn serve_control(data: &[u8]) -> bool {
    let Some((&sel, stream)) = data.split_first() else {
        return false;
    };
    block_on(async move {
        if sel & 1 == 0 {
            let server = serve_server();
            let addr = "127.0.0.1:9".parse().expect("address");
            over_stream(stream, |ch| server.handle(ch, addr)).await;
            server.sessions_accepted() == 1
        } else {
            over_stream(stream, |ch| async move {
                privlm::serve::client::request_session(
                    ch,
                    None,
                    privlm::serve::control::SessionId(SERVE_SESSION),
                    SERVE_PROMPT,
                    SERVE_NEW_TOKENS,
                )
                .await
                .is_ok()
            })
            .await
        }
    })
}
