//! A listener that serves many peers at once: concurrent handshakes under caps.
//!
//! [`TlsListener::accept`] runs one handshake at a time, so a peer that opens a TCP connection
//! and sends nothing holds every later peer up for the handshake timeout. [`Incoming`] fixes
//! that for servers (the dealer, the inference server):
//!
//! - one background task accepts TCP connections; each TLS handshake (and the ready byte) runs
//!   in a task of its own, bounded by the listener's handshake timeout;
//! - caps ([`ListenerLimits`]): handshakes in flight, live connections (handshaking or
//!   handed out), and connections per source IP address. Without a free handshake or
//!   connection slot the accept task waits and new connections wait in the kernel's backlog; a
//!   source over its cap has the new connection closed at once. A connection's slots are held
//!   by its stream, so they are freed exactly when the connection closes (both halves of the
//!   [`FramedChannel`] gone), however the owner ends it;
//! - an `accept` error (for example `EMFILE` when the process runs out of file descriptors) is
//!   logged and retried with exponential back-off; it never ends the listener;
//! - authenticated connections come out of [`Incoming::next`] with the peer's address and
//!   certificate fingerprint. `next` is cancel-safe: using it in `tokio::select!` next to other
//!   events drops no connection and no handshake.
//!
//! Dropping the [`Incoming`] stops accepting and cancels the handshakes in flight; connections
//! already handed out are not affected.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{Fingerprint, TlsError, TlsListener, server_handshake};
use crate::channel::{ChannelConfig, FramedChannel};

/// Caps of an [`Incoming`] listener (LOCAL parameters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// TLS handshakes running at once. Further connections wait in the kernel's backlog until
    /// one finishes (at most the handshake timeout).
    pub max_handshakes: usize,
    /// Connections alive at once, handshaking or handed out. Keep it below the process's
    /// open-file limit.
    pub max_connections: usize,
    /// Connections alive at once from one IP address, handshaking or handed out; a new
    /// connection beyond it is closed at once. Keep it below `max_handshakes`, so that one
    /// source cannot occupy every handshake slot.
    pub max_per_source: usize,
    /// First pause after a failed `accept`; it doubles on each further failure.
    pub accept_backoff_min: Duration,
    /// Longest pause after a failed `accept`.
    pub accept_backoff_max: Duration,
    /// Authenticated connections that may wait for [`Incoming::next`].
    pub queue: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_handshakes: 64,
            max_connections: 512,
            max_per_source: 32,
            accept_backoff_min: Duration::from_millis(10),
            accept_backoff_max: Duration::from_secs(1),
            queue: 16,
        }
    }
}

/// An authenticated connection handed out by [`Incoming::next`].
#[derive(Debug)]
pub struct Accepted {
    /// The channel (its stream holds the connection's slots until it closes).
    pub channel: FramedChannel,
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// The fingerprint of the peer's pinned certificate; `None` only for
    /// [`Incoming::insecure_plaintext`].
    pub fingerprint: Option<Fingerprint>,
}

/// A stream of authenticated connections (see the module docs).
pub struct Incoming {
    rx: mpsc::Receiver<Accepted>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
    connections: Arc<Semaphore>,
    limits: ListenerLimits,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("local_addr", &self.local_addr)
            .field("live_connections", &self.live_connections())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which cancels the handshakes in flight.
        self.task.abort();
    }
}

impl TlsListener {
    /// Turns the listener into an [`Incoming`] that runs handshakes concurrently (each
    /// bounded by this listener's handshake timeout) under `limits`. Call inside a tokio
    /// runtime.
    pub fn incoming(self, limits: ListenerLimits) -> Result<Incoming, TlsError> {
        let handshake = Handshake::Tls {
            acceptor: self.acceptor,
            timeout: self.handshake_timeout,
        };
        Incoming::start(self.tcp, handshake, self.cfg, limits)
    }
}

impl Incoming {
    /// Serves plain TCP, with no encryption and no authentication, under the same caps: for
    /// local experiments only (every production connection is TLS).
    pub fn insecure_plaintext(
        tcp: TcpListener,
        cfg: ChannelConfig,
        limits: ListenerLimits,
    ) -> Result<Incoming, TlsError> {
        Incoming::start(tcp, Handshake::Plain, cfg, limits)
    }

    fn start(
        tcp: TcpListener,
        handshake: Handshake,
        cfg: ChannelConfig,
        limits: ListenerLimits,
    ) -> Result<Incoming, TlsError> {
        let local_addr = tcp.local_addr().map_err(|e| TlsError::Io(e.to_string()))?;
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let state = AcceptState {
            handshake: Arc::new(handshake),
            cfg,
            limits: limits.clone(),
            connections: connections.clone(),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes.max(1))),
            sources: Arc::new(Mutex::new(HashMap::new())),
            tx,
        };
        let task = tokio::spawn(accept_loop(tcp, state));
        Ok(Incoming {
            rx,
            task,
            local_addr,
            connections,
            limits,
        })
    }

    /// The next authenticated connection; `None` once the listener has stopped. Cancel-safe.
    pub async fn next(&mut self) -> Option<Accepted> {
        self.rx.recv().await
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connection slots in use now: connections handshaking, waiting in the queue or handed
    /// out and not yet closed, plus the slot the accept task holds for the next connection.
    pub fn live_connections(&self) -> usize {
        self.limits.max_connections.max(1) - self.connections.available_permits()
    }

    /// The caps in force.
    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }
}

enum Handshake {
    Tls {
        acceptor: tokio_rustls::TlsAcceptor,
        timeout: Duration,
    },
    Plain,
}

type Sources = Arc<Mutex<HashMap<IpAddr, usize>>>;

struct AcceptState {
    handshake: Arc<Handshake>,
    cfg: ChannelConfig,
    limits: ListenerLimits,
    connections: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    sources: Sources,
    tx: mpsc::Sender<Accepted>,
}

/// A connection's share of the caps: released when dropped.
struct Slots {
    _connection: OwnedSemaphorePermit,
    source: IpAddr,
    sources: Sources,
}

impl Drop for Slots {
    fn drop(&mut self) {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.source);
            }
        }
    }
}

/// Claims a slot for `ip`, or `None` when the source is at its cap.
fn claim_source(sources: &Sources, ip: IpAddr, cap: usize) -> Option<usize> {
    let mut map = sources.lock().unwrap_or_else(|p| p.into_inner());
    let n = map.entry(ip).or_insert(0);
    if *n >= cap.max(1) {
        return None;
    }
    *n += 1;
    Some(*n)
}

/// Logs a repeated warning at most once per period, counting what it held back.
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    const PERIOD: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Throttle {
            last: None,
            held: 0,
        }
    }

    /// `Some(number of warnings held back since the last one)` when this one may be logged.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + Self::PERIOD) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

async fn accept_loop(tcp: TcpListener, state: AcceptState) {
    let mut tasks = JoinSet::new();
    let mut over_cap = Throttle::new();
    let mut backoff = state.limits.accept_backoff_min;
    loop {
        while tasks.try_join_next().is_some() {}
        // Capacity first: without a connection slot and a handshake slot, new connections
        // wait in the kernel's backlog. The semaphores are never closed.
        let Ok(connection) = state.connections.clone().acquire_owned().await else {
            return;
        };
        let Ok(handshake) = state.handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = loop {
            match tcp.accept().await {
                Ok(x) => break x,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ECONNABORTED...: never fatal. Handshakes in
                    // flight go on meanwhile and may free descriptors.
                    tracing::warn!(error = %e, retry_in = ?backoff,
                        "accepting a connection failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(state.limits.accept_backoff_max);
                }
            }
        };
        backoff = state.limits.accept_backoff_min;
        let ip = addr.ip();
        if claim_source(&state.sources, ip, state.limits.max_per_source).is_none() {
            if let Some(held) = over_cap.allow() {
                tracing::warn!(peer = %addr, cap = state.limits.max_per_source, held_back = held,
                    "refused a connection: too many connections from this address");
            }
            drop(stream);
            continue;
        }
        let slots = Slots {
            _connection: connection,
            source: ip,
            sources: state.sources.clone(),
        };
        tasks.spawn(handshake_one(
            stream,
            addr,
            slots,
            handshake,
            state.handshake.clone(),
            state.cfg.clone(),
            state.tx.clone(),
        ));
    }
}

async fn handshake_one(
    tcp: TcpStream,
    addr: SocketAddr,
    slots: Slots,
    permit: OwnedSemaphorePermit,
    handshake: Arc<Handshake>,
    cfg: ChannelConfig,
    tx: mpsc::Sender<Accepted>,
) {
    let accepted = match &*handshake {
        Handshake::Tls { acceptor, timeout } => {
            match server_handshake(acceptor, tcp, addr, *timeout).await {
                Ok((stream, peer)) => Accepted {
                    channel: FramedChannel::new(Guarded::new(stream, slots), cfg),
                    addr,
                    fingerprint: Some(peer.fingerprint),
                },
                Err(e) => {
                    tracing::info!(peer = %addr, error = %e, "refused a connection");
                    return;
                }
            }
        }
        Handshake::Plain => {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::info!(peer = %addr, error = %e, "dropped a connection");
                return;
            }
            Accepted {
                channel: FramedChannel::new(Guarded::new(tcp, slots), cfg),
                addr,
                fingerprint: None,
            }
        }
    };
    drop(permit);
    tracing::debug!(peer = %addr, fingerprint = ?accepted.fingerprint, "accepted a connection");
    // Fails only when the Incoming is gone: the connection is then dropped.
    let _ = tx.send(accepted).await;
}

/// A stream that holds its connection's slots until it is dropped (when both halves of the
/// framed channel are gone).
struct Guarded<S> {
    inner: S,
    _slots: Slots,
}

impl<S> Guarded<S> {
    fn new(inner: S, slots: Slots) -> Self {
        Guarded {
            inner,
            _slots: slots,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
