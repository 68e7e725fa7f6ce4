//! The inference server's core: serves one model to many clients, one task per session.
//!
//! Life of a connection ([`InferenceServer::handle`]):
//! 1. At the session limit, the connection is refused at once with a reason starting with
//!    `busy:`. Otherwise the server sends its [`Offer`].
//! 2. It reads the client's [`SessionRequest`] within [`ServeConfig::request_timeout`] (at most
//!    [`MAX_REQUEST_LEN`] bytes); a silent client or one that sends garbage is dropped with a
//!    reason and never holds a session slot.
//! 3. It checks the request ([`check_request`]), takes a session slot (or refuses as busy) and
//!    registers the session id (a second live session with the same id is refused), answers
//!    [`Accepted`], runs the session handshake as P1 ([`crate::net::handshake`]), connects to
//!    the dealer (TLS, pinned) with the session id, and runs the secure generation.
//! 4. However the session ends (done, client gone, dealer gone, error), its slot and its id are
//!    released when the task ends; errors are logged, never fatal to the server.
//!
//! Bounded memory per session: the control messages are read under size limits, the peer
//! channel's read-ahead is bounded by its [`ChannelConfig`], and the session's own state is
//! what the model's forward pass needs for at most `n_ctx` positions.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use privlm_protocols::beaver::dealer::DealerClient;
use privlm_protocols::channel::tls::{self, Fingerprint, Identity, Incoming};
use privlm_protocols::channel::{Channel, ChannelConfig, ChannelError, FramedChannel, Phase};
use privlm_protocols::nonlinear::NlParams;
use privlm_protocols::share::Party;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::control::{
    Accepted, MAX_REQUEST_LEN, Offer, SERVE_PROTOCOL_VERSION, SessionId, SessionRequest,
    check_request, session_params,
};
use super::glue;
use crate::model::Model;
use crate::model::tokenizer::TokenizerKind;
use crate::secure::CostReport;

/// Where the dealer is and how to recognise it.
#[derive(Clone, Debug)]
pub struct DealerLink {
    /// Its address, `HOST:PORT`.
    pub addr: String,
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// Timeout of the TCP connect and, separately, of the TLS handshake.
    pub connect_timeout: Duration,
    /// Channel settings of the dealer link (its `timeout` bounds every wait for the dealer).
    pub channel: ChannelConfig,
}

/// LOCAL parameters of an [`InferenceServer`].
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Sessions served at once; a client beyond it is refused as busy.
    pub max_sessions: usize,
    /// How long a client may take to send its request after the offer.
    pub request_timeout: Duration,
    /// The most tokens one session may generate.
    pub max_new_tokens: u32,
    /// The nonlinear layers' parameters (AGREEMENT: the client must use the same).
    pub nl: NlParams,
    /// The dealer.
    pub dealer: DealerLink,
    /// Stop after this many sessions were accepted, once they end (`None`: serve until the
    /// listener ends).
    pub stop_after: Option<u64>,
}

/// Channel settings for the client-server link: frames of up to 1 MiB, control messages of
/// at most 4 MiB, a read-ahead of at most 17 MiB, and `timeout` as the longest wait for the
/// peer (the peer computes between messages: keep it above the slowest layer's time).
pub fn peer_channel_config(timeout: Duration) -> ChannelConfig {
    ChannelConfig {
        max_frame_len: 1 << 20,
        max_message_len: 4 << 20,
        timeout,
        read_queue_frames: 16,
        write_queue_frames: 16,
        write_buffer_len: 64 << 10,
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    accepted: AtomicU64,
    completed: AtomicU64,
    refused: AtomicU64,
}

struct Inner {
    model: Arc<Model>,
    offer: Offer,
    identity: Arc<Identity>,
    cfg: ServeConfig,
    slots: Arc<Semaphore>,
    ids: Mutex<HashSet<SessionId>>,
    counters: Counters,
    reports: Mutex<std::collections::VecDeque<CostReport>>,
}

/// How many finished sessions' cost reports a server keeps ([`InferenceServer::reports`]).
pub const KEPT_REPORTS: usize = 16;

/// The server (see the module docs). Cloning gives another handle to the same server.
#[derive(Clone)]
pub struct InferenceServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InferenceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceServer")
            .field("model", &self.inner.offer.model_name)
            .field("active_sessions", &self.active_sessions())
            .finish_non_exhaustive()
    }
}

/// Releases a session id when the session ends.
struct IdGuard {
    server: Arc<Inner>,
    id: SessionId,
}

impl Drop for IdGuard {
    fn drop(&mut self) {
        lock(&self.server.ids).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl InferenceServer {
    /// A server hosting `model` under `name`, connecting to the dealer with `identity`.
    pub fn new(
        model: Arc<Model>,
        name: &str,
        identity: Arc<Identity>,
        cfg: ServeConfig,
    ) -> Result<Self, String> {
        let vocab = model.config().vocab_size;
        let (tokenizer, note) = TokenizerKind::for_vocab_size(vocab).map_err(|e| e.to_string())?;
        if tokenizer.vocab_size() != vocab {
            return Err(format!(
                "the model's vocabulary ({vocab}) is not a built-in tokenizer's (byte: 256, \
                 gpt2: 50257): clients could not encode prompts for it{}",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            ));
        }
        let offer = Offer {
            version: SERVE_PROTOCOL_VERSION,
            model_name: name.to_string(),
            manifest: model.manifest(),
            tokenizer,
            max_new_tokens: cfg.max_new_tokens,
            frac_bits: cfg.nl.frac_bits,
        };
        offer.validate()?;
        cfg.nl.validate()?;
        let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
        Ok(InferenceServer {
            inner: Arc::new(Inner {
                model,
                offer,
                identity,
                cfg,
                slots,
                ids: Mutex::new(HashSet::new()),
                counters: Counters::default(),
                reports: Mutex::new(std::collections::VecDeque::new()),
            }),
        })
    }

    /// What the server offers every client.
    pub fn offer(&self) -> &Offer {
        &self.inner.offer
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.inner.cfg.max_sessions.max(1) - self.inner.slots.available_permits()
    }

    /// Sessions accepted so far.
    pub fn sessions_accepted(&self) -> u64 {
        self.inner.counters.accepted.load(Ordering::Relaxed)
    }

    /// Sessions that generated every token they asked for.
    pub fn sessions_completed(&self) -> u64 {
        self.inner.counters.completed.load(Ordering::Relaxed)
    }

    /// The cost reports of the last [`KEPT_REPORTS`] completed sessions, oldest first (the
    /// server's side: what it sent and received, and what the dealer sent it).
    pub fn reports(&self) -> Vec<CostReport> {
        lock(&self.inner.reports).iter().cloned().collect()
    }

    /// Serves the connections of `incoming` (one task each) until the listener ends or
    /// [`ServeConfig::stop_after`] sessions were accepted, then waits for the running sessions.
    /// Returns the number of sessions accepted.
    pub async fn run(&self, mut incoming: Incoming) -> u64 {
        let mut tasks = JoinSet::new();
        loop {
            if let Some(n) = self.inner.cfg.stop_after
                && self.sessions_accepted() >= n
            {
                break;
            }
            tokio::select! {
                accepted = incoming.next() => {
                    let Some(a) = accepted else { break };
                    let server = self.clone();
                    tasks.spawn(async move { server.handle(a.channel, a.addr).await });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(incoming);
        while tasks.join_next().await.is_some() {}
        self.sessions_accepted()
    }

    /// Handles one authenticated connection to its end (see the module docs).
    pub async fn handle(&self, ch: FramedChannel, addr: SocketAddr) {
        let n = self
            .inner
            .counters
            .connections
            .fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", n, peer = %addr, session = tracing::field::Empty);
        self.handle_inner(ch, &span).instrument(span.clone()).await;
    }

    async fn refuse(&self, ch: &mut FramedChannel, reason: &str) {
        self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%reason, "refused a client");
        ch.abort(reason).await;
    }

    fn busy(&self) -> String {
        format!(
            "busy: this server already runs {} sessions (its limit); try again later",
            self.inner.cfg.max_sessions
        )
    }

    async fn handle_inner(&self, mut ch: FramedChannel, span: &tracing::Span) {
        ch.set_phase(Phase::Setup);
        ch.set_label("control");
        if self.inner.slots.available_permits() == 0 {
            let reason = self.busy();
            return self.refuse(&mut ch, &reason).await;
        }
        if let Err(e) = ch.send_msg(&self.inner.offer).await {
            tracing::info!(error = %e, "lost the client before the offer");
            return;
        }
        let timeout = self.inner.cfg.request_timeout;
        let req = tokio::time::timeout(
            timeout,
            ch.recv_msg_bounded::<SessionRequest>(MAX_REQUEST_LEN, "session request"),
        )
        .await;
        let req = match req {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let reason = format!("no valid session request: {e}");
                return self.refuse(&mut ch, &reason).await;
            }
            Err(_) => {
                let reason = format!("no session request within {timeout:?}");
                return self.refuse(&mut ch, &reason).await;
            }
        };
        span.record("session", tracing::field::display(req.session_id));
        if let Err(reason) = check_request(&self.inner.offer, &req) {
            return self.refuse(&mut ch, &reason).await;
        }
        let Ok(permit) = self.inner.slots.clone().try_acquire_owned() else {
            let reason = self.busy();
            return self.refuse(&mut ch, &reason).await;
        };
        let Some(guard) = self.register(req.session_id) else {
            let reason = format!(
                "session id {} is already in use by another session on this server: draw a \
                 fresh random id (privlm-client does unless --session-id is given)",
                req.session_id
            );
            return self.refuse(&mut ch, &reason).await;
        };
        self.inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            prompt_len = req.prompt_len,
            max_new_tokens = req.max_new_tokens,
            "session accepted"
        );
        let started = Instant::now();
        match self.session(ch, &req, permit).await {
            Ok(()) => {
                self.inner
                    .counters
                    .completed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "session done");
            }
            Err(e) => tracing::warn!(error = %e, "session ended with an error"),
        }
        drop(guard);
    }

    fn register(&self, id: SessionId) -> Option<IdGuard> {
        let mut ids = lock(&self.inner.ids);
        if !ids.insert(id) {
            return None;
        }
        Some(IdGuard {
            server: self.inner.clone(),
            id,
        })
    }

    /// The accepted session: answer, handshake, dealer, generation.
    async fn session(
        &self,
        mut ch: FramedChannel,
        req: &SessionRequest,
        _permit: OwnedSemaphorePermit,
    ) -> Result<(), String> {
        let cfg = &self.inner.cfg;
        ch.send_msg(&Accepted {
            session_id: req.session_id,
        })
        .await
        .map_err(|e| format!("lost the client: {e}"))?;
        let params = session_params(&self.inner.offer.manifest, cfg.nl.frac_bits, &cfg.nl)
            .map_err(|e| e.to_string())?;
        crate::net::handshake(&mut ch, Party::P1, &params)
            .await
            .map_err(|e| e.to_string())?;
        // The client may give up meanwhile (the connection was cut, it could not reach the
        // dealer): the session then ends at once instead of after the dealer's pairing wait.
        let paired = connect_dealer_watching(
            &mut ch,
            &cfg.dealer,
            &self.inner.identity,
            Party::P1,
            req.session_id,
        )
        .await
        .map_err(|e| format!("lost the client while pairing at the dealer: {e}"))?;
        let dealer = match paired {
            Ok(d) => d,
            Err(e) => {
                let reason = format!("the server cannot use its dealer: {e}");
                ch.abort(&reason).await;
                return Err(reason);
            }
        };
        let report = glue::serve(
            ch,
            dealer,
            self.inner.model.clone(),
            cfg.nl,
            req.prompt_len as usize,
            req.max_new_tokens as usize,
        )
        .await?;
        let (peer, dealer) = report.total(None);
        tracing::info!(
            sent = peer.bytes_sent,
            received = peer.bytes_recv,
            dealer_received = dealer.bytes_recv,
            setup_s = report.setup_seconds,
            preprocessing_s = report.preprocessing_seconds,
            online_s = report.online_seconds,
            "session cost"
        );
        let mut kept = lock(&self.inner.reports);
        if kept.len() == KEPT_REPORTS {
            kept.pop_front();
        }
        kept.push_back(report);
        Ok(())
    }
}

/// [`connect_dealer`] while watching `peer`, the other party's channel: if the peer fails
/// first (it aborted, or the connection was cut), its error comes back at once (`Err`)
/// instead of after the dealer's pairing wait. Data from the peer means it is already
/// computing: the pairing is then awaited to its end. Nothing is read from `peer`.
pub(super) async fn connect_dealer_watching(
    peer: &mut FramedChannel,
    link: &DealerLink,
    identity: &Identity,
    party: Party,
    id: SessionId,
) -> Result<Result<DealerClient<FramedChannel>, String>, ChannelError> {
    let pairing = connect_dealer(link, identity, party, id);
    tokio::pin!(pairing);
    tokio::select! {
        d = &mut pairing => Ok(d),
        r = peer.readable() => {
            r?;
            Ok(pairing.await)
        }
    }
}

/// Connects to the dealer over TLS (pinned) and says hello as `party` of session `id`.
pub async fn connect_dealer(
    link: &DealerLink,
    identity: &Identity,
    party: Party,
    id: SessionId,
) -> Result<DealerClient<FramedChannel>, String> {
    let ch = tls::connect(
        link.addr.as_str(),
        identity,
        link.fingerprint,
        link.channel.clone(),
        link.connect_timeout,
    )
    .await
    .map_err(|e| format!("cannot connect to the dealer at {}: {e}", link.addr))?;
    DealerClient::connect(ch, party, id.0)
        .await
        .map_err(|e| format!("the dealer at {} did not pair this session: {e}", link.addr))
}
