//! The dealer process's core: reads each connection's [`Hello`], pairs the two parties of a
//! session, and serves each pair, under limits. `privlm-dealer` is this plus a command line.
//!
//! Life of a connection ([`DealerServer::handle`]):
//! 1. **Hello.** Read within [`ServerConfig::hello_timeout`], at most
//!    [`MAX_HELLO_LEN`](super::MAX_HELLO_LEN) bytes, and checked on its own ([`check_hello`]):
//!    a version the dealer does not speak is refused at once, whichever party arrives first.
//! 2. **Pairing** by session id:
//!    - nobody of that session waits: the connection *waits* until the other party arrives,
//!      until it disconnects (or sends anything: a party sends nothing before its
//!      [`Welcome`](super::Welcome)), or for at most [`ServerConfig::pairing_timeout`]. Then its
//!      entry is removed, so a retry with the same session id works at once;
//!    - the other party waits: the two are paired, every hello field is compared
//!      ([`check_hellos`]) and the session is served;
//!    - a party with the same role waits: the newcomer is refused and the waiting party is left
//!      alone (after a grace of [`DUPLICATE_GRACE`], in which a waiting party that has just
//!      disconnected is noticed and removed, so a quick retry is not refused);
//!    - [`ServerConfig::max_waiting`] parties wait already: the newcomer is refused as busy.
//! 3. **Session.** At most [`ServerConfig::max_sessions`] at once: a pair beyond it is refused
//!    with a reason that starts with `busy:` (both parties get
//!    [`BeaverError::DealerRefused`](crate::beaver::BeaverError::DealerRefused)). Each session
//!    gets fresh seeds and is served by [`serve_paired`], its corrections computed on the
//!    shared [`ComputePool`](crate::compute::ComputePool) of [`ServerConfig::dealer`].
//!
//! Every log line about a connection is emitted in a `conn` span naming the peer's address (and
//! the session id and role once known), every line about a session in a `session` span naming
//! the session id and both parties' addresses. Session ids are shown by their first 8 bytes in
//! hex. [`DealerServer::run`] serves the connections of an [`Incoming`] listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use super::{
    DealerConfig, Hello, MAX_REQUEST_LEN, check_hello, check_hellos, read_hello, serve_paired,
};
use crate::channel::tls::Incoming;
use crate::channel::{Channel, ChannelConfig, ChannelError, FramedChannel};
use crate::prg::Prg;
use crate::share::Party;

/// How long a second claim of a role waits for the first claimant's disconnection to be
/// noticed before it is refused.
pub const DUPLICATE_GRACE: Duration = Duration::from_millis(250);

/// LOCAL parameters of a [`DealerServer`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How each session is served (chunk size, request limits, compute pool).
    pub dealer: DealerConfig,
    /// How long a new connection may take to send its hello.
    pub hello_timeout: Duration,
    /// How long a party waits for the other party of its session before it is sent away.
    pub pairing_timeout: Duration,
    /// Sessions served at once; a pair beyond it is refused as busy.
    pub max_sessions: usize,
    /// Parties waiting for their partner at once; a newcomer beyond it is refused as busy.
    pub max_waiting: usize,
    /// Stop after this many sessions have started (then wait for them to end); `None`:
    /// serve until [`DealerServer::shutdown`].
    pub stop_after: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            dealer: DealerConfig::default(),
            hello_timeout: Duration::from_secs(10),
            pairing_timeout: Duration::from_secs(120),
            max_sessions: 16,
            max_waiting: 64,
            stop_after: None,
        }
    }
}

/// The channel configuration for the dealer's connections, with `idle_timeout` as the longest
/// wait for a party's next request. The dealer receives only small control messages, so its
/// limits are small: frames of 64 KiB (the parties accept larger), messages of at most
/// [`MAX_REQUEST_LEN`] bytes, and a read-ahead of at most 9 frames (576 KiB) per connection.
pub fn dealer_channel_config(idle_timeout: Duration) -> ChannelConfig {
    ChannelConfig {
        max_frame_len: 64 << 10,
        max_message_len: MAX_REQUEST_LEN,
        timeout: idle_timeout,
        read_queue_frames: 8,
        write_queue_frames: 16,
        write_buffer_len: 64 << 10,
    }
}

/// The first 8 bytes of a session id in hex: how logs name a session.
pub fn short_session_id(id: &[u8; 32]) -> String {
    id[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The dealer's pairing and session management (see the module docs). Cloning gives another
/// handle to the same server.
pub struct DealerServer<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for DealerServer<C> {
    fn clone(&self) -> Self {
        DealerServer {
            inner: self.inner.clone(),
        }
    }
}

impl<C> std::fmt::Debug for DealerServer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DealerServer")
            .field("waiting", &self.waiting())
            .field("active_sessions", &self.active_sessions())
            .field("sessions_started", &self.sessions_started())
            .finish_non_exhaustive()
    }
}

struct Inner<C> {
    cfg: ServerConfig,
    waiting: Mutex<HashMap<[u8; 32], Waiting<C>>>,
    sessions: Arc<Semaphore>,
    started: AtomicU64,
    tokens: AtomicU64,
    /// `Some`: every session's seeds come from this PRG (insecure: tests and benches only).
    master: Option<Mutex<Prg>>,
    stop: watch::Sender<bool>,
}

/// A party waiting for the other party of its session. The waiting task owns the channel; the
/// entry holds what an arriving partner needs to check it and hand its own connection over.
struct Waiting<C> {
    token: u64,
    hello: Hello,
    addr: SocketAddr,
    since: Instant,
    tx: oneshot::Sender<Conn<C>>,
}

/// A connection whose hello has been read.
struct Conn<C> {
    ch: C,
    hello: Hello,
    addr: SocketAddr,
    span: Span,
}

enum Arrival<C> {
    /// The connection went to the waiting partner's task, which serves the session.
    Handed,
    /// The waiting partner's task is gone (cancelled); try again.
    Retry(Conn<C>),
    /// A party with the same role waits already.
    Duplicate(Conn<C>, SocketAddr, Duration),
    /// Too many parties wait already.
    Busy(Conn<C>),
    /// The connection now waits for its partner.
    Wait(Conn<C>, oneshot::Receiver<Conn<C>>, u64),
}

enum Woken<C> {
    Partner(Conn<C>),
    Gone(Result<Vec<u8>, ChannelError>),
    Expired,
    Stopped,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves once the server is told to stop (the watch's guard is not kept across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

impl<C> DealerServer<C> {
    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.cfg
    }

    /// Parties waiting for their partner now.
    pub fn waiting(&self) -> usize {
        lock(&self.inner.waiting).len()
    }

    /// Sessions being served now.
    pub fn active_sessions(&self) -> usize {
        self.inner.cfg.max_sessions.max(1) - self.inner.sessions.available_permits()
    }

    /// Sessions started so far.
    pub fn sessions_started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Stops the server: [`DealerServer::run`] stops accepting, waiting parties and
    /// connections still sending their hello are sent away; sessions being served go on to
    /// their end.
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }
}

impl<C: Channel + 'static> DealerServer<C> {
    /// A server with `cfg`, drawing each session's seeds from the operating system.
    pub fn new(cfg: ServerConfig) -> Self {
        Self::build(cfg, None)
    }

    /// A server whose sessions' seeds all derive from `seed`: every triple is predictable.
    /// Tests and benches only; binaries require the `--insecure-ideal-dealer` opt-in first.
    pub fn new_insecure_seeded(cfg: ServerConfig, seed: u64) -> Self {
        Self::build(cfg, Some(Mutex::new(Prg::from_u64(seed))))
    }

    fn build(cfg: ServerConfig, master: Option<Mutex<Prg>>) -> Self {
        let sessions = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
        DealerServer {
            inner: Arc::new(Inner {
                cfg,
                waiting: Mutex::new(HashMap::new()),
                sessions,
                started: AtomicU64::new(0),
                tokens: AtomicU64::new(0),
                master,
                stop: watch::channel(false).0,
            }),
        }
    }

    /// Handles one connection from `addr` to its end: reads its hello, pairs it, and serves
    /// the session if this connection's task is the one that receives its partner (see the
    /// module docs).
    pub async fn handle(&self, mut ch: C, addr: SocketAddr) {
        let span = tracing::info_span!(
            "conn",
            peer = %addr,
            session = tracing::field::Empty,
            party = tracing::field::Empty
        );
        let mut stop = self.inner.stop.subscribe();
        let timeout = self.inner.cfg.hello_timeout;
        let hello = async {
            tokio::select! {
                r = tokio::time::timeout(timeout, read_hello(&mut ch)) => match r {
                    Ok(Ok(hello)) => Some(hello),
                    Ok(Err(e)) => {
                        tracing::info!(error = %e, "no valid hello");
                        None
                    }
                    Err(_) => {
                        let reason = format!("no hello within {timeout:?}");
                        tracing::info!("{reason}");
                        ch.abort(&reason).await;
                        None
                    }
                },
                _ = stopped(&mut stop) => {
                    ch.abort("the dealer is shutting down").await;
                    None
                }
            }
        }
        .instrument(span.clone())
        .await;
        let Some(hello) = hello else { return };
        span.record(
            "session",
            tracing::field::display(short_session_id(&hello.session)),
        );
        span.record("party", tracing::field::debug(hello.party));
        if let Err(e) = check_hello(&hello) {
            let reason = e.to_string();
            tracing::warn!(parent: &span, %reason, "refused a hello");
            ch.abort(&reason).instrument(span).await;
            return;
        }
        self.pair(Conn {
            ch,
            hello,
            addr,
            span,
        })
        .await;
    }

    /// Under the lock: hands `me` to its waiting partner, or registers it as waiting, or says
    /// why neither.
    fn arrive(&self, me: Conn<C>) -> Arrival<C> {
        let mut map = lock(&self.inner.waiting);
        let sid = me.hello.session;
        if let Some(w) = map.get(&sid) {
            if w.hello.party == me.hello.party {
                let (addr, since) = (w.addr, w.since.elapsed());
                return Arrival::Duplicate(me, addr, since);
            }
            let w = map.remove(&sid).expect("the entry is present");
            // A oneshot send never blocks; under the lock it cannot race with the waiting
            // task's own removal of its entry.
            return match w.tx.send(me) {
                Ok(()) => Arrival::Handed,
                Err(me) => Arrival::Retry(me),
            };
        }
        if map.len() >= self.inner.cfg.max_waiting {
            return Arrival::Busy(me);
        }
        let token = self.inner.tokens.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        map.insert(
            sid,
            Waiting {
                token,
                hello: me.hello.clone(),
                addr: me.addr,
                since: Instant::now(),
                tx,
            },
        );
        Arrival::Wait(me, rx, token)
    }

    /// Removes the waiting entry `token` of session `sid`; `false` when it is gone already
    /// (a partner took it and was handed over).
    fn leave(&self, sid: &[u8; 32], token: u64) -> bool {
        let mut map = lock(&self.inner.waiting);
        match map.get(sid) {
            Some(w) if w.token == token => {
                map.remove(sid);
                true
            }
            _ => false,
        }
    }

    async fn pair(&self, mut me: Conn<C>) {
        let mut grace_polls = 10u32;
        loop {
            let (conn, mut rx, token) = match self.arrive(me) {
                Arrival::Handed => return,
                Arrival::Retry(conn) => {
                    me = conn;
                    continue;
                }
                Arrival::Duplicate(conn, other, since) => {
                    me = conn;
                    if grace_polls > 0 {
                        grace_polls -= 1;
                        tokio::time::sleep(DUPLICATE_GRACE / 10).await;
                        continue;
                    }
                    let reason = format!(
                        "session {} already has a {:?} waiting (connected from {other} {:.1} s \
                         ago); refusing this second {:?}",
                        short_session_id(&me.hello.session),
                        me.hello.party,
                        since.as_secs_f64(),
                        me.hello.party
                    );
                    tracing::warn!(parent: &me.span, %reason, "refused a connection");
                    me.ch.abort(&reason).instrument(me.span.clone()).await;
                    return;
                }
                Arrival::Busy(mut conn) => {
                    let reason = format!(
                        "busy: {} parties are already waiting for their partner; try again later",
                        self.inner.cfg.max_waiting
                    );
                    tracing::warn!(parent: &conn.span, %reason, "refused a connection");
                    conn.ch.abort(&reason).instrument(conn.span.clone()).await;
                    return;
                }
                Arrival::Wait(conn, rx, token) => (conn, rx, token),
            };
            me = conn;
            tracing::info!(parent: &me.span, "waiting for the other party");
            let woken = self.wait(&mut me, &mut rx).await;
            let sid = me.hello.session;
            let woken = match woken {
                Woken::Partner(p) => Woken::Partner(p),
                other if self.leave(&sid, token) => other,
                // The partner was handed over while this connection woke for another
                // reason: it is in `rx` now.
                other => match rx.try_recv() {
                    Ok(partner) => match other {
                        // The partner came in time after all.
                        Woken::Expired => Woken::Partner(partner),
                        Woken::Gone(r) => {
                            self.log_gone(&mut me, r).await;
                            me = partner;
                            continue;
                        }
                        _ => {
                            let mut partner = partner;
                            let reason = "the dealer is shutting down";
                            let _ = tokio::join!(me.ch.abort(reason), partner.ch.abort(reason));
                            return;
                        }
                    },
                    Err(_) => other,
                },
            };
            match woken {
                Woken::Partner(partner) => {
                    // This party may have left just before its partner came, its departure
                    // not yet read: look at its channel once more (after letting its reader
                    // run) before serving. A departure noticed only later still ends the
                    // session cleanly, with a reason for the partner.
                    tokio::task::yield_now().await;
                    let check = me.ch.recv_bytes_bounded(MAX_REQUEST_LEN);
                    match tokio::time::timeout(Duration::ZERO, check).await {
                        Err(_) => return self.serve(me, partner).await,
                        Ok(r) => {
                            self.log_gone(&mut me, r).await;
                            me = partner;
                            continue;
                        }
                    }
                }
                Woken::Gone(r) => return self.log_gone(&mut me, r).await,
                Woken::Expired => {
                    let reason = format!(
                        "no {:?} joined session {} within {:?}",
                        me.hello.party.other(),
                        short_session_id(&sid),
                        self.inner.cfg.pairing_timeout
                    );
                    tracing::info!(parent: &me.span, "{reason}");
                    me.ch.abort(&reason).instrument(me.span.clone()).await;
                    return;
                }
                Woken::Stopped => {
                    me.ch
                        .abort("the dealer is shutting down")
                        .instrument(me.span.clone())
                        .await;
                    return;
                }
            }
        }
    }

    /// Waits for the partner, for this connection to end (or send anything), for the pairing
    /// timeout, or for the server to stop.
    async fn wait(&self, me: &mut Conn<C>, rx: &mut oneshot::Receiver<Conn<C>>) -> Woken<C> {
        let deadline = Instant::now() + self.inner.cfg.pairing_timeout;
        let mut stop = self.inner.stop.subscribe();
        let span = me.span.clone();
        async {
            tokio::select! {
                biased;
                partner = rx => match partner {
                    Ok(p) => Woken::Partner(p),
                    // The sender is dropped only together with the entry: by a shutdown.
                    Err(_) => Woken::Stopped,
                },
                // Any message counts (a request sent too early fits the bound and is named as
                // such; a larger one is refused by the bound itself).
                r = me.ch.recv_bytes_bounded(MAX_REQUEST_LEN) => Woken::Gone(r),
                _ = tokio::time::sleep_until(deadline) => Woken::Expired,
                _ = stopped(&mut stop) => Woken::Stopped,
            }
        }
        .instrument(span)
        .await
    }

    async fn log_gone(&self, me: &mut Conn<C>, r: Result<Vec<u8>, ChannelError>) {
        const REASON: &str = "sent data before the other party arrived";
        match r {
            Ok(_) => {
                tracing::warn!(parent: &me.span, "{REASON}");
                me.ch.abort(REASON).instrument(me.span.clone()).await;
            }
            // The channel refused (and reported) a message over the bound itself.
            Err(ChannelError::Aborted(e)) => {
                tracing::warn!(parent: &me.span, error = %e, "{REASON}")
            }
            Err(e) => {
                tracing::info!(parent: &me.span, error = %e,
                    "left before the other party arrived")
            }
        }
    }

    /// Serves the session of `a` and `b` (the two parties of one session id, either order).
    async fn serve(&self, a: Conn<C>, b: Conn<C>) {
        let (mut p0, mut p1) = if a.hello.party == Party::P0 {
            (a, b)
        } else {
            (b, a)
        };
        let sid = p0.hello.session;
        let span = tracing::info_span!(
            parent: None,
            "session",
            id = %short_session_id(&sid),
            p0 = %p0.addr,
            p1 = %p1.addr
        );
        if let Err(e) = check_hellos(&p0.hello, &p1.hello) {
            return refuse_pair(&span, &mut p0, &mut p1, &e.to_string()).await;
        }
        let Ok(permit) = self.inner.sessions.clone().try_acquire_owned() else {
            let reason = format!(
                "busy: this dealer already serves {} sessions; try again later",
                self.inner.cfg.max_sessions
            );
            return refuse_pair(&span, &mut p0, &mut p1, &reason).await;
        };
        let limit = self.inner.cfg.stop_after;
        let admitted = self
            .inner
            .started
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                limit.is_none_or(|l| n < l).then_some(n + 1)
            });
        let Ok(before) = admitted else {
            let reason = "the dealer is not accepting new sessions";
            return refuse_pair(&span, &mut p0, &mut p1, reason).await;
        };
        let number = before + 1;
        if limit == Some(number) {
            // The last session: stop accepting; this one is served to its end.
            self.shutdown();
        }
        let mut rng = match &self.inner.master {
            Some(m) => Prg::from_seed(lock(m).gen_seed()),
            None => Prg::from_os(),
        };
        tracing::info!(parent: &span, number, "session started");
        let result = serve_paired(p0.ch, p1.ch, &self.inner.cfg.dealer, &mut rng)
            .instrument(span.clone())
            .await;
        match result {
            Ok(s) => tracing::info!(parent: &span, requests = s.requests,
                correction_elems = s.correction_elems, "session served"),
            Err(e) => tracing::warn!(parent: &span, error = %e, "session ended with an error"),
        }
        drop(permit);
    }
}

async fn refuse_pair<C: Channel>(span: &Span, a: &mut Conn<C>, b: &mut Conn<C>, reason: &str) {
    tracing::warn!(parent: span, %reason, "refused a session");
    async {
        let _ = tokio::join!(a.ch.abort(reason), b.ch.abort(reason));
    }
    .instrument(span.clone())
    .await;
}

impl DealerServer<FramedChannel> {
    /// Serves connections from `incoming` until the server stops ([`DealerServer::shutdown`],
    /// or [`ServerConfig::stop_after`] sessions started) or the listener ends, then waits for
    /// the sessions being served. Returns the number of sessions started.
    pub async fn run(&self, mut incoming: Incoming) -> u64 {
        let mut tasks = JoinSet::new();
        let mut stop = self.inner.stop.subscribe();
        loop {
            tokio::select! {
                accepted = incoming.next() => {
                    let Some(a) = accepted else { break };
                    let server = self.clone();
                    tasks.spawn(async move { server.handle(a.channel, a.addr).await });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = stopped(&mut stop) => break,
            }
        }
        drop(incoming);
        while tasks.join_next().await.is_some() {}
        self.sessions_started()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beaver::TripleProvider;
    use crate::beaver::dealer::{DEALER_PROTOCOL_VERSION, DealerClient, request_work};
    use crate::beaver::{BeaverError, Request};
    use crate::channel::mem;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn server(pairing_ms: u64) -> DealerServer<FramedChannel> {
        DealerServer::new(ServerConfig {
            pairing_timeout: Duration::from_millis(pairing_ms),
            max_sessions: 1,
            ..ServerConfig::default()
        })
    }

    /// Connects a party over an in-memory pair whose dealer end `server` handles.
    fn connect(
        server: &DealerServer<FramedChannel>,
        party: Party,
        session: [u8; 32],
        port: u16,
    ) -> tokio::task::JoinHandle<Result<DealerClient<FramedChannel>, BeaverError>> {
        let (d, c) = mem::pair();
        let s = server.clone();
        tokio::spawn(async move { s.handle(d, addr(port)).await });
        tokio::spawn(DealerClient::connect(c, party, session))
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        for _ in 0..200 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{what} did not happen within 1 s");
    }

    /// A waiting party that leaves is removed at once; one that stays expires; either way the
    /// session id can be used again.
    #[tokio::test]
    async fn waiting_parties_leave_or_expire() {
        let s = server(300);
        // Leaves: hello, then the channel is dropped.
        let (d, mut c) = mem::pair();
        let h = tokio::spawn({
            let s = s.clone();
            async move { s.handle(d, addr(1)).await }
        });
        let hello = Hello {
            version: DEALER_PROTOCOL_VERSION,
            party: Party::P0,
            session: [1; 32],
        };
        c.send_msg(&hello).await.unwrap();
        until("parking", || s.waiting() == 1).await;
        drop(c);
        until("removal", || s.waiting() == 0).await;
        h.await.unwrap();
        // Expires.
        let start = std::time::Instant::now();
        let e = connect(&s, Party::P1, [1; 32], 2)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(e, BeaverError::DealerRefused(ref m) if m.contains("no P0 joined")),
            "{e}"
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(s.waiting(), 0);
        // The id works again.
        let a = connect(&s, Party::P0, [1; 32], 3);
        let b = connect(&s, Party::P1, [1; 32], 4);
        let (mut a, mut b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        let (x, y) = tokio::join!(a.elementwise(3), b.elementwise(3));
        x.unwrap();
        y.unwrap();
        assert_eq!(s.sessions_started(), 1);
    }

    /// A second claim of a waiting role is refused and the waiting party is kept; a pair beyond
    /// the session cap is refused as busy.
    #[tokio::test]
    async fn duplicates_and_busy_are_refused() {
        let s = server(5_000);
        let first = connect(&s, Party::P0, [2; 32], 1);
        until("parking", || s.waiting() == 1).await;
        let e = connect(&s, Party::P0, [2; 32], 2)
            .await
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("already has a P0 waiting"), "{e}");
        assert_eq!(s.waiting(), 1);
        let second = connect(&s, Party::P1, [2; 32], 3);
        let (a, b) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        );
        until("the session", || s.active_sessions() == 1).await;
        // max_sessions is 1.
        let x = connect(&s, Party::P0, [3; 32], 4);
        let y = connect(&s, Party::P1, [3; 32], 5);
        let e = x.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("busy:"), "{e}");
        assert!(y.await.unwrap().is_err());
        drop((a, b));
        until("the end of the session", || s.active_sessions() == 0).await;
    }

    #[test]
    fn work_estimates() {
        assert_eq!(request_work(&Request::Elementwise { n: 10 }), 50);
        let big = Request::MatMul {
            batch: 1,
            n: 4096,
            k: 4096,
            m: 4096,
        };
        assert!(request_work(&big) > 1 << 36);
        let absurd = Request::Table {
            id: 0,
            t: usize::MAX,
            v1: usize::MAX,
            v2: usize::MAX,
            d: usize::MAX,
        };
        assert_eq!(request_work(&absurd), u64::MAX);
    }
}
