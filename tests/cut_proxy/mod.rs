//! A TCP proxy for fault tests, placed between two real parties: it forwards bytes both ways
//! and, as armed, cuts the link (drops both sockets of every connection) once the bytes
//! forwarded on it reach N, or stalls it (stops reading both ways, keeps the sockets open)
//! there. Used by `tests/net_cut.rs` (cuts) and `tests/server_attacks.rs` (a stalled reader).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the proxy does on the link it is armed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Forwards everything.
    Pass,
    /// Forwards N bytes (both directions together), then drops both sockets of every
    /// connection; later connections are closed at once.
    Cut(u64),
    /// Forwards N bytes, then reads nothing more either way (the sockets stay open until the
    /// proxy is re-armed or dropped): the peers' writes block once the buffers are full.
    Stall(u64),
}

/// One arming of the proxy: its plan, and what happened.
#[derive(Debug)]
pub struct Link {
    plan: Plan,
    state: Mutex<LinkState>,
    /// Set when the limit is reached: the forwarding tasks stop.
    stop: watch::Sender<bool>,
    /// Set when a stalled link is let go: its sockets are dropped.
    release: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct LinkState {
    /// Bytes forwarded from the connecting party to the target.
    up: u64,
    /// Bytes forwarded from the target to the connecting party.
    down: u64,
    /// When the cut (or stall) happened.
    at: Option<Instant>,
    /// Connections accepted under this arming.
    connections: usize,
}

impl Link {
    fn new(plan: Plan) -> Arc<Link> {
        Arc::new(Link {
            plan,
            state: Mutex::new(LinkState::default()),
            stop: watch::channel(false).0,
            release: watch::channel(false).0,
        })
    }

    /// Bytes forwarded so far: (towards the target, back from it).
    pub fn bytes(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.up, s.down)
    }

    /// When the link was cut or stalled (`None`: not yet).
    pub fn cut_at(&self) -> Option<Instant> {
        self.state.lock().unwrap().at
    }

    /// Connections accepted under this arming.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    fn limit(&self) -> Option<u64> {
        match self.plan {
            Plan::Pass => None,
            Plan::Cut(n) | Plan::Stall(n) => Some(n),
        }
    }

    /// Reserves up to `n` bytes to forward in direction `up`; `true` as the second value when
    /// the link reached its limit with them.
    fn reserve(&self, n: usize, up: bool) -> (usize, bool) {
        let mut s = self.state.lock().unwrap();
        let k = match self.limit() {
            None => n as u64,
            Some(l) => (l - (s.up + s.down).min(l)).min(n as u64),
        };
        if up {
            s.up += k;
        } else {
            s.down += k;
        }
        let reached = self.limit().is_some_and(|l| s.up + s.down >= l);
        (k as usize, reached)
    }

    /// Marks the limit reached: every forwarding task stops (and, for a cut, drops its
    /// sockets).
    fn trip(&self) {
        let mut s = self.state.lock().unwrap();
        if s.at.is_none() {
            s.at = Some(Instant::now());
        }
        drop(s);
        self.stop.send_replace(true);
    }

    /// Stops the link for good (a stalled link drops its sockets).
    fn release(&self) {
        self.stop.send_replace(true);
        self.release.send_replace(true);
    }

    fn tripped(&self) -> bool {
        self.state.lock().unwrap().at.is_some()
    }
}

/// The proxy: listens on a loopback port and forwards each connection to `target` under the
/// current arming. Dropping it stops everything.
pub struct CutProxy {
    pub addr: String,
    link: Arc<Mutex<Arc<Link>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.link.lock().unwrap().release();
    }
}

impl CutProxy {
    /// Starts a proxy to `target` (armed with [`Plan::Pass`]), within the current runtime.
    /// `recv_buffer`: the receive buffer of the proxy's socket towards the target (small
    /// values make back-pressure reach the target early).
    pub async fn start(target: &str, recv_buffer: Option<u32>) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let link = Arc::new(Mutex::new(Link::new(Plan::Pass)));
        let target: SocketAddr = target.parse().unwrap();
        let current = link.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    continue;
                };
                let link = current.lock().unwrap().clone();
                link.state.lock().unwrap().connections += 1;
                if link.plan != Plan::Pass && link.tripped() {
                    // The link is down: new connections die at once.
                    drop(down);
                    continue;
                }
                tokio::spawn(connection(down, target, recv_buffer, link));
            }
        });
        CutProxy { addr, link, task }
    }

    /// Arms the proxy with `plan` for the connections accepted from now on; connections of
    /// the previous arming are dropped if it was a stall (a pass goes on). Returns the new
    /// link.
    pub fn arm(&self, plan: Plan) -> Arc<Link> {
        let new = Link::new(plan);
        let old = std::mem::replace(&mut *self.link.lock().unwrap(), new.clone());
        if old.plan != Plan::Pass {
            old.release();
        }
        new
    }
}

async fn connection(
    down: TcpStream,
    target: SocketAddr,
    recv_buffer: Option<u32>,
    link: Arc<Link>,
) {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let Ok(up) = socket.connect(target).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    let a = tokio::spawn(forward(dr, uw, link.clone(), true));
    let b = tokio::spawn(forward(ur, dw, link.clone(), false));
    let (ra, rb) = (a.await, b.await);
    // A stall keeps both sockets open (handed back by the tasks) until the link is stopped.
    if let (Ok(Some(x)), Ok(Some(y))) = (ra, rb) {
        let mut release = link.release.subscribe();
        raised(&mut release).await;
        drop((x, y));
    }
}

/// Waits until the flag is set (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

type Halves = (OwnedReadHalf, OwnedWriteHalf);

/// Forwards `r` to `w` under `link`; returns the halves for a stall (to keep them open).
async fn forward(
    mut r: OwnedReadHalf,
    mut w: OwnedWriteHalf,
    link: Arc<Link>,
    up: bool,
) -> Option<Halves> {
    let mut stop = link.stop.subscribe();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = tokio::select! {
            _ = raised(&mut stop) => break,
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = w.shutdown().await;
                    return None;
                }
                Ok(n) => n,
            },
        };
        let (k, reached) = link.reserve(n, up);
        let wrote = tokio::select! {
            _ = raised(&mut stop) => false,
            r = w.write_all(&buf[..k]) => r.is_ok(),
        };
        if reached {
            link.trip();
            break;
        }
        if !wrote {
            if link.tripped() {
                break;
            }
            return None;
        }
    }
    match link.plan {
        Plan::Stall(_) => Some((r, w)),
        // Dropping both halves closes the socket (with a reset if unread data remains).
        _ => None,
    }
}
