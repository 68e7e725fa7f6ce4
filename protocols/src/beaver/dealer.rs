//! The dealer: a third, non-colluding party that serves correlated randomness to P0 and P1,
//! compressed with seeds as in CrypTen's trusted third party (Knott et al., "CrypTen: Secure
//! Multi-Party Computation Meets Machine Learning", NeurIPS 2021).
//!
//! **Functionality.** For each [`Request`] that *both* parties issue, in the same order, output to
//! each party its part of a fresh correlation (see [`super::Material`]). The dealer never sees
//! inputs, outputs or weights: it only knows the requested shapes.
//!
//! **Protocol** (every message over the party's own channel to the dealer, TLS in production):
//! 1. Each party sends [`Hello`] (its role and the session id both parties agreed on). The dealer
//!    checks one P0 and one P1 with equal session ids, draws a fresh seed per party, and answers
//!    each with [`Welcome`] (its seed and the chunk size).
//! 2. Per request: each party sends the [`Request`]. The dealer compares the two; if they differ
//!    (or one is invalid) it aborts *both* channels with a reason naming both requests, so both
//!    parties fail with [`BeaverError::DealerRefused`]. Otherwise it acknowledges to both
//!    (one message with the request number, 8 bytes), and streams P1's correction (see
//!    [`Request::correction_len`]) in messages of at most `chunk_elems` elements. Everything
//!    else each party expands from its seed.
//! 3. When both parties close their channels at a request boundary the session ends. A party
//!    that leaves early ends the session for the other with a clear abort reason; a dealer that
//!    disconnects makes the waiting party fail with [`BeaverError::DealerLost`].
//!
//! Bounds: control messages are read with limits sized to them ([`MAX_HELLO_LEN`],
//! [`MAX_REQUEST_LEN`]); a request may ask for at most [`DealerConfig::max_request_elems`]
//! elements per tensor and [`DealerConfig::max_request_work`] units of work (see
//! [`request_work`]). The dealer holds one request's pieces at a time (one matrix product, or
//! one chunk of an elementwise request) and computes them on a bounded [`ComputePool`], never
//! on the async workers; each acknowledgement is flushed before the work starts. Parties hold
//! what the request they made needs.
//!
//! The dealer process (accepting connections, pairing the two parties of a session, limits on
//! sessions) is [`server`].
//!
//! Note for transports: the dealer waits for requests as long as a party computes, so its
//! channels need a timeout longer than the longest online step.

pub mod server;

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::expand::{CorrectionGen, Registry, expand_local};
use super::{BeaverError, DEFAULT_MAX_REQUEST_ELEMS, Material, Request, TripleProvider};
use crate::channel::{Channel, ChannelError};
use crate::compute::ComputePool;
use crate::prg::Seed;
use crate::share::Party;

/// Version of the dealer wire protocol, checked in the handshake.
pub const DEALER_PROTOCOL_VERSION: u32 = 1;

/// Default number of ring elements per correction message (512 KiB).
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 16;

/// Largest encoded [`Hello`] the dealer reads (the real one is about 35 bytes).
pub const MAX_HELLO_LEN: usize = 256;

/// Largest encoded [`Welcome`] a party reads (the real one is about 40 bytes).
pub const MAX_WELCOME_LEN: usize = 256;

/// Largest encoded [`Request`] the dealer reads (the real ones are under 64 bytes).
pub const MAX_REQUEST_LEN: usize = 4096;

/// Default of [`DealerConfig::max_request_elems`]: 2^26 elements (512 MiB) per tensor, enough
/// for GPT-2 large's token table (50257 x 1280).
pub const DEFAULT_DEALER_MAX_REQUEST_ELEMS: usize = 1 << 26;

/// Default of [`DealerConfig::max_request_work`]: 2^34 units (about 35 s of one core at the
/// dealer's measured 489 M multiply-adds/s), well above GPT-2 small's largest request (a
/// 128-token factored lookup, about 10^10).
pub const DEFAULT_MAX_REQUEST_WORK: u64 = 1 << 34;

/// A party's first message to the dealer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`DEALER_PROTOCOL_VERSION`].
    pub version: u32,
    /// The sender's role.
    pub party: Party,
    /// The session id both parties agreed on (for example a hash of their handshake).
    pub session: [u8; 32],
}

/// The dealer's answer to [`Hello`]. `Debug` hides the seed, which is wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The party's session seed (secret).
    pub seed: Seed,
    /// Elements per correction message.
    pub chunk_elems: u64,
}

impl Drop for Welcome {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

impl std::fmt::Debug for Welcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Welcome(seed hidden, chunk_elems={})", self.chunk_elems)
    }
}

/// LOCAL parameters of the dealer's side of a session.
#[derive(Clone, Debug)]
pub struct DealerConfig {
    /// Ring elements per correction message.
    pub chunk_elems: usize,
    /// Largest tensor (in elements) one request may ask for.
    pub max_request_elems: usize,
    /// Largest amount of work one request may ask for, in the units of [`request_work`].
    pub max_request_work: u64,
    /// Where the corrections are computed. Sessions that share a pool (clones of one config)
    /// share its bound on concurrent work.
    pub compute: ComputePool,
}

impl Default for DealerConfig {
    fn default() -> Self {
        DealerConfig {
            chunk_elems: DEFAULT_CHUNK_ELEMS,
            max_request_elems: DEFAULT_DEALER_MAX_REQUEST_ELEMS,
            max_request_work: DEFAULT_MAX_REQUEST_WORK,
            compute: ComputePool::default(),
        }
    }
}

/// The dealer's work for a request, about one unit per ring multiply-add or element drawn from
/// a PRG, for P1's correction (what bounds the time and the CPU a request costs the dealer).
/// Saturates instead of overflowing.
pub fn request_work(req: &Request) -> u64 {
    let mul = |xs: &[usize]| {
        xs.iter()
            .try_fold(1u64, |acc, &x| acc.checked_mul(x as u64))
            .unwrap_or(u64::MAX)
    };
    let sum = |xs: &[u64]| xs.iter().fold(0u64, |acc, &x| acc.saturating_add(x));
    match *req {
        Request::Elementwise { n } => mul(&[5, n]),
        Request::Square { n } => mul(&[3, n]),
        Request::Trunc { n, .. } => mul(&[4, n]),
        Request::MatMul { batch, n, k, m } => sum(&[
            mul(&[batch, n, k, m]),
            mul(&[2, batch, n, k]),
            mul(&[2, batch, k, m]),
            mul(&[batch, n, m]),
        ]),
        Request::WeightMask { .. } => 0,
        Request::Weight { n, k, m, .. } => {
            sum(&[mul(&[k, m]), mul(&[n, k]), mul(&[n, k, m]), mul(&[n, m])])
        }
        Request::Table { t, v1, v2, d, .. } => sum(&[
            mul(&[v1, v2, d]),
            mul(&[2, t, v1, v2, d]),
            mul(&[t, v1.saturating_add(v2)]),
            mul(&[t, v1.saturating_add(v2).saturating_add(1), d]),
        ]),
        Request::Nonlinear(ref r) => r.work(),
    }
}

/// What a finished session served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSummary {
    /// Requests served.
    pub requests: u64,
    /// Correction elements sent to P1.
    pub correction_elems: u64,
}

/// Errors of the dealer's side of a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DealerError {
    /// The channel to one party failed.
    #[error("channel to {party:?} failed: {source}")]
    Channel {
        /// The party whose channel failed.
        party: Party,
        /// The error.
        source: ChannelError,
    },
    /// The handshake failed (wrong version, two connections with the same role, different
    /// session ids).
    #[error("dealer handshake failed: {0}")]
    Handshake(String),
    /// The dealer refused a request and ended the session (the reason went to both parties).
    #[error("request refused: {0}")]
    Refused(String),
}

async fn abort_both<C: Channel>(chs: &mut [C; 2], reason: &str) {
    let [a, b] = chs;
    let _ = tokio::join!(a.abort(reason), b.abort(reason));
}

/// Checks one [`Hello`] on its own: the dealer refuses a protocol version it does not speak
/// as soon as it reads it, before pairing.
pub fn check_hello(h: &Hello) -> Result<(), DealerError> {
    if h.version != DEALER_PROTOCOL_VERSION {
        return Err(DealerError::Handshake(format!(
            "protocol version {} (this dealer speaks {DEALER_PROTOCOL_VERSION})",
            h.version
        )));
    }
    Ok(())
}

/// Checks two parties' [`Hello`]s, every field: the current version for both, one P0 and one
/// P1, equal session ids.
pub fn check_hellos(a: &Hello, b: &Hello) -> Result<(), DealerError> {
    if a.version != DEALER_PROTOCOL_VERSION || b.version != DEALER_PROTOCOL_VERSION {
        return Err(DealerError::Handshake(format!(
            "protocol versions {} and {} (the dealer speaks {DEALER_PROTOCOL_VERSION})",
            a.version, b.version
        )));
    }
    if a.party == b.party {
        return Err(DealerError::Handshake(format!(
            "both connections claim to be {:?}",
            a.party
        )));
    }
    if a.session != b.session {
        return Err(DealerError::Handshake(
            "the two parties gave different session ids".into(),
        ));
    }
    Ok(())
}

/// Reads a party's [`Hello`] (at most [`MAX_HELLO_LEN`] bytes; the first step of the
/// handshake; a dealer that pairs connections by session id calls this per connection, then
/// [`serve_paired`]).
pub async fn read_hello<C: Channel>(ch: &mut C) -> Result<Hello, ChannelError> {
    ch.recv_msg_bounded::<Hello>(MAX_HELLO_LEN, "dealer hello")
        .await
}

/// Serves one session to the two parties connected on `a` and `b` (in either order; the
/// handshake sorts them). Returns when both parties have closed their channels.
pub async fn serve_session<C, R>(
    mut a: C,
    mut b: C,
    cfg: &DealerConfig,
    rng: &mut R,
) -> Result<SessionSummary, DealerError>
where
    C: Channel,
    R: CryptoRng + Send + ?Sized,
{
    let (ha, hb) = tokio::join!(read_hello(&mut a), read_hello(&mut b));
    let (ha, hb) = match (ha, hb) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            let reason = format!("dealer handshake: a party failed: {e}");
            let _ = tokio::join!(a.abort(&reason), b.abort(&reason));
            return Err(DealerError::Handshake(reason));
        }
    };
    if let Err(e) = check_hellos(&ha, &hb) {
        let reason = e.to_string();
        let _ = tokio::join!(a.abort(&reason), b.abort(&reason));
        return Err(e);
    }
    let (p0, p1) = if ha.party == Party::P0 {
        (a, b)
    } else {
        (b, a)
    };
    serve_paired(p0, p1, cfg, rng).await
}

/// Serves one session whose [`Hello`]s were already read and checked ([`check_hellos`]):
/// sends each party its [`Welcome`], then serves requests until both parties close.
pub async fn serve_paired<C, R>(
    p0: C,
    p1: C,
    cfg: &DealerConfig,
    rng: &mut R,
) -> Result<SessionSummary, DealerError>
where
    C: Channel,
    R: CryptoRng + Send + ?Sized,
{
    // Both seeds live for the session (P1's corrections need them) and are wiped at its end.
    let mut seeds = Zeroizing::new([[0u8; 32]; 2]);
    rng.fill_bytes(&mut seeds[0]);
    rng.fill_bytes(&mut seeds[1]);
    let chunk = cfg.chunk_elems.max(1);
    let mut chs = [p0, p1];
    for (p, ch) in chs.iter_mut().enumerate() {
        let w = Welcome {
            seed: seeds[p],
            chunk_elems: chunk as u64,
        };
        if let Err(source) = ch.send_msg(&w).await {
            let party = if p == 0 { Party::P0 } else { Party::P1 };
            abort_both(
                &mut chs,
                "the dealer lost the other party during the handshake",
            )
            .await;
            return Err(DealerError::Channel { party, source });
        }
    }

    // 2. Requests.
    let mut registry = Registry::default();
    let mut summary = SessionSummary::default();
    loop {
        let [c0, c1] = &mut chs;
        let (r0, r1) = tokio::join!(
            c0.recv_msg_bounded::<Request>(MAX_REQUEST_LEN, "dealer request"),
            c1.recv_msg_bounded::<Request>(MAX_REQUEST_LEN, "dealer request")
        );
        let (q0, q1) = match (r0, r1) {
            (Ok(q0), Ok(q1)) => (q0, q1),
            (Err(ChannelError::Closed), Err(ChannelError::Closed)) => return Ok(summary),
            (Err(e), _) => {
                let reason = format!("the dealer lost P0 at request #{}: {e}", summary.requests);
                let _ = c1.abort(&reason).await;
                return Err(DealerError::Channel {
                    party: Party::P0,
                    source: e,
                });
            }
            (_, Err(e)) => {
                let reason = format!("the dealer lost P1 at request #{}: {e}", summary.requests);
                let _ = c0.abort(&reason).await;
                return Err(DealerError::Channel {
                    party: Party::P1,
                    source: e,
                });
            }
        };
        let n = summary.requests;
        if let Err(reason) = check_request(n, &q0, &q1, cfg, &mut registry) {
            tracing::warn!(%reason, "dealer refusing a request");
            abort_both(&mut chs, &reason).await;
            return Err(DealerError::Refused(reason));
        }
        summary.correction_elems += serve_request(&mut chs, &seeds, n, &q0, cfg).await?;
        summary.requests += 1;
    }
}

/// Admits request number `n` of a session, or says why not: both parties asked for the same
/// thing, it is valid on its own and within the dealer's limits, and it fits the session's
/// state (weights registered once, with the shapes used later).
fn check_request(
    n: u64,
    q0: &Request,
    q1: &Request,
    cfg: &DealerConfig,
    registry: &mut Registry,
) -> Result<(), String> {
    if q0 != q1 {
        return Err(format!(
            "request #{n} does not match: P0 asked for {q0:?}, P1 asked for {q1:?}"
        ));
    }
    let refused = |e: &dyn std::fmt::Display| format!("request #{n} ({q0:?}) refused: {e}");
    q0.validate(cfg.max_request_elems)
        .map_err(|e| refused(&e))?;
    let work = request_work(q0);
    if work > cfg.max_request_work {
        return Err(refused(&format!(
            "it needs about {work} units of dealer work, above this dealer's limit of {}",
            cfg.max_request_work
        )));
    }
    registry.admit(q0).map_err(|e| refused(&e))
}

/// Serves one checked request `req` (number `n`): acknowledges it to both parties, flushed
/// before any work starts, then computes P1's correction piece by piece on the compute pool
/// and streams it in messages of exactly `chunk_elems` elements (the last shorter). Returns the
/// number of correction elements sent.
async fn serve_request<C: Channel>(
    chs: &mut [C; 2],
    seeds: &[Seed; 2],
    n: u64,
    req: &Request,
    cfg: &DealerConfig,
) -> Result<u64, DealerError> {
    let [c0, c1] = &mut *chs;
    let ack = [n];
    let (s0, s1) = tokio::join!(
        async {
            c0.send_u64s(&ack).await?;
            c0.flush().await
        },
        async {
            c1.send_u64s(&ack).await?;
            c1.flush().await
        }
    );
    for (party, r) in [(Party::P0, s0), (Party::P1, s1)] {
        if let Err(source) = r {
            abort_both(chs, "the dealer lost the other party").await;
            return Err(DealerError::Channel { party, source });
        }
    }
    let chunk = cfg.chunk_elems.max(1);
    let (s, r) = (Zeroizing::new(*seeds), req.clone());
    let mut corr = cfg.compute.run(move || CorrectionGen::new(&s, n, &r)).await;
    let mut buf: Vec<u64> = Vec::with_capacity(chunk.min(req.correction_len(Party::P1)));
    let mut sent = 0u64;
    loop {
        let (next, piece) = cfg
            .compute
            .run(move || {
                let piece = corr.next_piece(chunk);
                (corr, piece)
            })
            .await;
        corr = next;
        let Some(piece) = piece else { break };
        let mut rest = piece.as_slice();
        while !rest.is_empty() {
            let take = (chunk - buf.len()).min(rest.len());
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buf.len() == chunk {
                send_correction(chs, &buf).await?;
                sent += buf.len() as u64;
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        send_correction(chs, &buf).await?;
        sent += buf.len() as u64;
    }
    Ok(sent)
}

async fn send_correction<C: Channel>(chs: &mut [C; 2], buf: &[u64]) -> Result<(), DealerError> {
    if let Err(source) = chs[1].send_u64s(buf).await {
        abort_both(chs, "the dealer lost P1").await;
        return Err(DealerError::Channel {
            party: Party::P1,
            source,
        });
    }
    Ok(())
}

/// One party's connection to the dealer: a [`TripleProvider`] that asks the dealer for each
/// request and expands its seed. `Debug` hides the seed, which is wiped on drop.
pub struct DealerClient<C> {
    ch: C,
    party: Party,
    seed: Zeroizing<Seed>,
    chunk_elems: usize,
    counter: u64,
    max_request_elems: usize,
}

impl<C> std::fmt::Debug for DealerClient<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DealerClient(party={:?}, served={})",
            self.party, self.counter
        )
    }
}

fn lost(during: &str, e: ChannelError) -> BeaverError {
    match e {
        ChannelError::PeerAborted(reason) => BeaverError::DealerRefused(reason),
        source => BeaverError::DealerLost {
            during: during.to_string(),
            source,
        },
    }
}

impl<C: Channel> DealerClient<C> {
    /// Performs the handshake on `ch` as `party` in session `session`.
    pub async fn connect(mut ch: C, party: Party, session: [u8; 32]) -> Result<Self, BeaverError> {
        let hello = Hello {
            version: DEALER_PROTOCOL_VERSION,
            party,
            session,
        };
        ch.send_msg(&hello)
            .await
            .map_err(|e| lost("the handshake", e))?;
        let w: Welcome = ch
            .recv_msg_bounded(MAX_WELCOME_LEN, "dealer welcome")
            .await
            .map_err(|e| lost("the handshake", e))?;
        let chunk_elems = match usize::try_from(w.chunk_elems) {
            Ok(c) if c > 0 => c,
            _ => {
                let reason = format!("the dealer announced chunks of {} elements", w.chunk_elems);
                ch.abort(&reason).await;
                return Err(BeaverError::DealerProtocol(reason));
            }
        };
        Ok(DealerClient {
            ch,
            party,
            seed: Zeroizing::new(w.seed),
            chunk_elems,
            counter: 0,
            max_request_elems: DEFAULT_MAX_REQUEST_ELEMS,
        })
    }

    /// The channel to the dealer (for its counters).
    pub fn channel(&self) -> &C {
        &self.ch
    }

    /// The channel to the dealer, mutable (to set phase and label).
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.ch
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.counter
    }

    /// Gives the channel back (to close it cleanly at the end of the session).
    pub fn into_channel(self) -> C {
        self.ch
    }
}

impl<C: Channel> TripleProvider for DealerClient<C> {
    fn party(&self) -> Party {
        self.party
    }

    fn set_cost_label(&mut self, phase: crate::channel::Phase, label: &str) {
        self.ch.set_phase(phase);
        self.ch.set_label(label);
    }

    async fn fetch(&mut self, req: &Request) -> Result<Material, BeaverError> {
        req.validate(self.max_request_elems)?;
        let n = self.counter;
        let during = format!("request #{n} ({req:?})");
        self.ch.send_msg(req).await.map_err(|e| lost(&during, e))?;
        let ack = self
            .ch
            .recv_u64s(1, "dealer acknowledgement")
            .await
            .map_err(|e| lost(&during, e))?;
        if ack[0] != n {
            let reason = format!(
                "the dealer acknowledged request #{} while this party is at #{n}",
                ack[0]
            );
            self.ch.abort(&reason).await;
            return Err(BeaverError::DealerProtocol(reason));
        }
        let total = req.correction_len(self.party);
        let mut correction = Vec::with_capacity(total);
        while correction.len() < total {
            let len = self.chunk_elems.min(total - correction.len());
            let part = self
                .ch
                .recv_u64s(len, "dealer correction")
                .await
                .map_err(|e| lost(&during, e))?;
            correction.extend_from_slice(&part);
        }
        self.counter += 1;
        Ok(expand_local(self.party, &self.seed, n, req, correction))
    }
}
