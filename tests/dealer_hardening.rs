//! `privlm-dealer` under load and attack, over loopback TLS against the real binary: one test
//! per row of issue 15's table (and the new caps). Each test starts its own dealer, prints the
//! figure it measured (`cargo test --release --test dealer_hardening -- --nocapture`) and is
//! bounded in time.
//!
//! `PRIVLM_DEALER_BIN=/path/to/privlm-dealer` runs the tests against another build of the
//! dealer, for example the code before the fix (tests that need flags it lacks then fail at
//! start-up).

mod attack_util;

use std::future::Future as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use privlm::protocols::beaver::dealer::{DEALER_PROTOCOL_VERSION, DealerClient, Hello};
use privlm::protocols::beaver::{Request, TripleProvider};
use privlm::protocols::channel::tls::{self, Fingerprint, Identity, READY_BYTE, TlsStream};
use privlm::protocols::channel::{Channel, ChannelConfig, FramedChannel};
use privlm::protocols::share::Party;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use attack_util::*;

fn dealer_bin() -> PathBuf {
    std::env::var_os("PRIVLM_DEALER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_privlm-dealer")))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-hard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh session id per call.
fn sid() -> [u8; 32] {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut s = [0u8; 32];
    s[..4].copy_from_slice(&n.to_le_bytes());
    s[4..8].copy_from_slice(&std::process::id().to_le_bytes());
    s
}

/// Runs `f` with a deadline: every test is bounded in time, even against a dealer that hangs.
async fn bounded<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {secs} s"))
}

/// `f`, or an error when it takes more than `secs` (so a figure is printed even against a
/// dealer that never answers).
async fn within<T, F>(secs: u64, f: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {secs} s")))
}

/// A running dealer process, killed on drop.
struct Dealer {
    child: Child,
    addr: String,
    fp: Fingerprint,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
    p0: Identity,
    p1: Identity,
}

impl Drop for Dealer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a dealer pinning two fresh party identities, with `extra` flags; `shell`, when
/// given, is run by `sh` before the dealer (for example `umask 000;`).
fn start_dealer_with(tag: &str, extra: &[&str], shell: Option<&str>) -> Dealer {
    let dir = temp_dir(tag);
    let p0 = Identity::generate().unwrap();
    let p1 = Identity::generate().unwrap();
    let mut cmd = match shell {
        Some(pre) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{pre} exec \"$0\" \"$@\""))
                .arg(dealer_bin());
            c
        }
        None => Command::new(dealer_bin()),
    };
    cmd.args(["--listen", "127.0.0.1:0", "--identity"])
        .arg(dir.join("dealer"))
        .args(["--peer-fingerprint", &p0.fingerprint().to_hex()])
        .args(["--peer-fingerprint", &p1.fingerprint().to_hex()])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start privlm-dealer");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Both streams are drained for the dealer's whole life (a full pipe would block it); the
    // two start-up lines are looked for in either.
    let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
    for stream in [out, err] {
        let (log, tx) = (log.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let plaintext = extra.contains(&"--insecure-plaintext-tcp");
    let (mut addr, mut fp) = (None, plaintext.then(|| p0.fingerprint()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while addr.is_none() || fp.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "the dealer did not start; its output:\n{}",
                log.lock().unwrap()
            );
        };
        if let Some(i) = line.find("certificate fingerprint ") {
            fp = Some(Fingerprint::from_hex(&line[i + 24..]).unwrap());
        }
        if let Some(i) = line.find("listening on ") {
            addr = Some(line[i + 13..].trim().to_string());
        }
    }
    // Keep draining into the log.
    std::thread::spawn(move || for _ in rx {});
    Dealer {
        child,
        addr: addr.unwrap(),
        fp: fp.unwrap(),
        log,
        dir,
        p0,
        p1,
    }
}

fn start_dealer(tag: &str, extra: &[&str]) -> Dealer {
    start_dealer_with(tag, extra, None)
}

impl Dealer {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once it contains `needle` (or after 5 s): the two output streams are read by
    /// different threads, so a line may land a little after another stream's line.
    fn log_with(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) || start.elapsed() > Duration::from_secs(5) {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Open file descriptors of the dealer.
    fn fds(&self) -> usize {
        fds(self.pid())
    }

    /// Resident memory of the dealer, in KiB.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// Sockets on the dealer's port in state CLOSE-WAIT (the peer closed, the dealer did not).
    fn close_wait(&self) -> usize {
        let port = self
            .addr
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap();
        let port_hex = format!(":{port:04X}");
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|t| t.lines().skip(1).map(String::from).collect::<Vec<_>>())
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&port_hex) && f[3] == "08"
            })
            .count()
    }

    fn identity(&self, party: Party) -> &Identity {
        if party == Party::P0 {
            &self.p0
        } else {
            &self.p1
        }
    }

    async fn channel(&self, party: Party) -> Result<FramedChannel, String> {
        tls::connect(
            self.addr.as_str(),
            self.identity(party),
            self.fp,
            ChannelConfig::default(),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn party(
        &self,
        party: Party,
        session: [u8; 32],
    ) -> Result<DealerClient<FramedChannel>, String> {
        let ch = self.channel(party).await?;
        DealerClient::connect(ch, party, session)
            .await
            .map_err(|e| e.to_string())
    }

    async fn raw(&self, party: Party) -> Raw {
        let s = tls::connect_stream(
            self.addr.as_str(),
            self.identity(party),
            self.fp,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        Raw(s)
    }

    /// One legitimate session: both parties connect, fetch 16 elementwise triples (checked)
    /// and close. Returns its duration.
    async fn session(&self) -> Result<Duration, String> {
        let start = Instant::now();
        let s = sid();
        let (c0, c1) = tokio::join!(self.party(Party::P0, s), self.party(Party::P1, s));
        let (mut c0, mut c1) = (c0?, c1?);
        let (x, y) = tokio::join!(c0.elementwise(16), c1.elementwise(16));
        let (x, y) = (x.map_err(|e| e.to_string())?, y.map_err(|e| e.to_string())?);
        let a = x.a.add(&y.a).unwrap();
        let b = x.b.add(&y.b).unwrap();
        assert_eq!(x.c.add(&y.c).unwrap(), a.mul_elem(&b).unwrap());
        let _ = c0.into_channel().close().await;
        let _ = c1.into_channel().close().await;
        Ok(start.elapsed())
    }
}

/// A TLS connection to the dealer framed by hand, to send what `FramedChannel` never sends.
struct Raw(TlsStream);

impl Raw {
    async fn frame(&mut self, flags: u32, payload: &[u8]) -> std::io::Result<()> {
        write_frame(&mut self.0, flags, payload).await
    }

    async fn hello(&mut self, version: u32, party: Party, session: [u8; 32]) {
        let h = Hello {
            version,
            party,
            session,
        };
        let bytes = bincode::serde::encode_to_vec(&h, bincode::config::standard()).unwrap();
        self.frame(0, &bytes).await.unwrap();
    }

    /// The next message; `Err` with the dealer's reason for an abort frame, or the I/O error.
    async fn message(&mut self) -> Result<Vec<u8>, String> {
        read_message(&mut self.0, None).await
    }
}

fn request_bytes(r: &Request) -> Vec<u8> {
    bincode::serde::encode_to_vec(r, bincode::config::standard()).unwrap()
}

/// Row "plain TCP connections that send nothing": 20 idle connections are held (and more
/// arrive every half second) while 8 legitimate sessions run one after another; none is
/// delayed. Before: each idle connection blocked the only accept loop for the 10 s handshake
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_delay_sessions() {
    let d = start_dealer("idle", &[]);
    bounded(60, async {
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(TcpStream::connect(&d.addr).await.unwrap());
        }
        let addr = d.addr.clone();
        let trickle = tokio::spawn(async move {
            let mut more = Vec::new();
            for _ in 0..6 {
                more.push(TcpStream::connect(&addr).await.unwrap());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            more
        });
        let mut worst = Duration::ZERO;
        for i in 0..8 {
            let t = d
                .session()
                .await
                .unwrap_or_else(|e| panic!("session {i}: {e}"));
            worst = worst.max(t);
        }
        eprintln!("[idle] 8/8 sessions with 20+ idle connections held, slowest {worst:?}");
        assert!(worst < Duration::from_secs(5), "slowest session {worst:?}");
        drop(trickle.await.unwrap());
        drop(idle);
    })
    .await;
}

/// Row "only well-behaved parties, 4 sessions connecting at once": 40 sessions, 4 at a time,
/// all succeed. Before: 23 of 40 failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sessions_four_at_a_time() {
    let d = start_dealer("forty", &[]);
    bounded(90, async {
        let mut ok = 0;
        let mut failures = Vec::new();
        for _ in 0..10 {
            let one = || within(5, d.session());
            let (a, b, c, e) = tokio::join!(one(), one(), one(), one());
            for r in [a, b, c, e] {
                match r {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push(e),
                }
            }
        }
        eprintln!("[forty] {ok}/40 sessions succeeded");
        assert_eq!(ok, 40, "failures: {failures:?}");
    })
    .await;
}

/// A TCP stream whose second write (the client's certificate flight in TLS 1.3) waits first:
/// a slow but legitimate client.
struct SlowStream {
    inner: TcpStream,
    writes: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    delay: Duration,
}

impl AsyncRead for SlowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.writes == 1 {
            let delay = this.delay;
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(pause.as_mut().poll(cx));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = r {
            this.writes += 1;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Row "a slow legitimate client (2 s pause mid-handshake) while another session pairs": its
/// handshake survives 4 other sessions pairing meanwhile (the first pairing completes while
/// it is in progress), and its own session is served. Before: the handshake was dropped, with
/// no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshake_survives_other_pairings() {
    let d = start_dealer("slow", &[]);
    bounded(60, async {
        let session = sid();
        let slow = async {
            let tcp = TcpStream::connect(&d.addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let stream = SlowStream {
                inner: tcp,
                writes: 0,
                pause: None,
                delay: Duration::from_secs(2),
            };
            let config = tls::client_config(&d.p0, d.fp).unwrap();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(tls::CERT_SUBJECT)
                .unwrap()
                .to_owned();
            let connector = tokio_rustls::TlsConnector::from(config);
            let mut s = connector
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            let mut ready = [0u8; 1];
            s.read_exact(&mut ready).await.map_err(|e| e.to_string())?;
            assert_eq!(ready[0], READY_BYTE);
            let ch = FramedChannel::new(s, ChannelConfig::default());
            DealerClient::connect(ch, Party::P0, session)
                .await
                .map_err(|e| e.to_string())
        };
        // A pair whose P0 waits and whose P1 has its TLS channel but says hello only once
        // the slow handshake is under way: their pairing completes during it.
        let pair_a = sid();
        let waiting_p0 = tokio::spawn({
            let ch = d.channel(Party::P0).await.unwrap();
            async move { DealerClient::connect(ch, Party::P0, pair_a).await }
        });
        let late_p1 = d.channel(Party::P1).await.unwrap();
        let others = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut p1 = DealerClient::connect(late_p1, Party::P1, pair_a)
                .await
                .unwrap();
            let mut p0 = waiting_p0.await.unwrap().unwrap();
            let (x, y) = tokio::join!(p0.elementwise(4), p1.elementwise(4));
            x.unwrap();
            y.unwrap();
            let mut n = 1;
            for _ in 0..3 {
                d.session().await.unwrap();
                n += 1;
            }
            // The slow client's partner comes last.
            let p1 = within(10, d.party(Party::P1, session)).await;
            (n, p1)
        };
        let start = Instant::now();
        let (p0, (n, p1)) = tokio::join!(within(20, slow), others);
        eprintln!(
            "[slow] after {:?}: the slow client: {:?}, its partner: {:?}",
            start.elapsed(),
            p0.as_ref().map(|_| "welcomed"),
            p1.as_ref().map(|_| "welcomed")
        );
        let mut p0 = p0.unwrap_or_else(|e| panic!("the slow client failed: {e}"));
        let mut p1 = p1.unwrap();
        let (x, y) = tokio::join!(p0.elementwise(4), p1.elementwise(4));
        x.unwrap();
        y.unwrap();
        eprintln!(
            "[slow] slow client's session served after {:?}, {n} other sessions meanwhile",
            start.elapsed()
        );
        assert_eq!(n, 4);
    })
    .await;
}

/// One connect-hello-close cycle: a pinned client says hello for a fresh session and leaves.
async fn hello_and_leave(d: &Dealer) {
    let mut ch = d.channel(Party::P0).await.unwrap();
    let h = Hello {
        version: DEALER_PROTOCOL_VERSION,
        party: Party::P0,
        session: sid(),
    };
    ch.send_msg(&h).await.unwrap();
    let _ = ch.close().await;
}

async fn cycles(d: &Dealer, n: usize) {
    let per = n / 8;
    let run = || async {
        for _ in 0..per {
            hello_and_leave(d).await;
        }
    };
    tokio::join!(run(), run(), run(), run(), run(), run(), run(), run());
}

/// Waits until the dealer's descriptors drop to `target` (or `limit` passes).
async fn settle_fds(d: &Dealer, target: usize, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = d.fds();
        if n <= target || start.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Row "connect, send a hello, close": 1000 cycles leave the dealer's descriptors and resident
/// memory at their baseline, with no socket in CLOSE-WAIT, and sessions still work. Before:
/// every cycle left a pending entry and a CLOSE-WAIT socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_hello_and_close_cycles_leak_nothing() {
    let d = start_dealer("cycles", &[]);
    bounded(120, async {
        d.session().await.unwrap();
        cycles(&d, 200).await;
        let fds0 = settle_fds(&d, 0, Duration::from_millis(500)).await;
        let rss0 = d.rss_kib();
        let start = Instant::now();
        cycles(&d, 1000).await;
        let took = start.elapsed();
        let fds1 = settle_fds(&d, fds0, Duration::from_secs(5)).await;
        let rss1 = d.rss_kib();
        let close_wait = d.close_wait();
        eprintln!(
            "[cycles] 1000 cycles in {took:?}: descriptors {fds0} -> {fds1}, \
             VmRSS {rss0} KiB -> {rss1} KiB ({:+} KiB), CLOSE-WAIT sockets {close_wait}",
            rss1 as i64 - rss0 as i64
        );
        assert!(fds1 <= fds0, "descriptors {fds0} -> {fds1}");
        assert_eq!(close_wait, 0);
        assert!(
            rss1 <= rss0 + 8 * 1024,
            "resident memory grew from {rss0} KiB to {rss1} KiB"
        );
        d.session().await.unwrap();
    })
    .await;
}

/// Rows "P0 sends its hello and disconnects; the pair retries with the same session id" and
/// "a second claim of a role": the retry works at once, and a second P0 is refused without
/// harming the waiting one. Before: the id stayed poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_session_id_can_be_retried() {
    let d = start_dealer("retry", &[]);
    bounded(60, async {
        let s = sid();
        // P0 says hello and leaves.
        let mut gone = d.raw(Party::P0).await;
        gone.hello(DEALER_PROTOCOL_VERSION, Party::P0, s).await;
        gone.0.shutdown().await.unwrap();
        drop(gone);
        // The retry, once the dealer has read the departure (it logs it; a retry that races
        // with the departure may pair with the departed party and fail cleanly, and the next
        // retry works).
        let _ = d.log_with("left before the other party arrived");
        let start = Instant::now();
        let retry = within(5, async {
            let (c0, c1) = tokio::join!(d.party(Party::P0, s), d.party(Party::P1, s));
            let (mut c0, mut c1) = (c0?, c1?);
            let (x, y) = tokio::join!(c0.elementwise(8), c1.elementwise(8));
            x.map_err(|e| e.to_string())?;
            y.map_err(|e| e.to_string())?;
            Ok(start.elapsed())
        })
        .await;
        eprintln!("[retry] retry with the poisoned id: {retry:?}");

        // A waiting P0, then a second P0 for the same session, then P1.
        let s = sid();
        let first = tokio::spawn({
            let ch = d.channel(Party::P0).await.unwrap();
            async move { DealerClient::connect(ch, Party::P0, s).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = within(5, d.party(Party::P0, s)).await;
        let first = within(5, async {
            let mut c1 = d.party(Party::P1, s).await?;
            let mut c0 = first.await.unwrap().map_err(|e| e.to_string())?;
            let (x, y) = tokio::join!(c0.elementwise(8), c1.elementwise(8));
            x.map_err(|e| e.to_string())?;
            y.map_err(|e| e.to_string())
        })
        .await;
        let second = second.map(|_| "accepted");
        eprintln!("[retry] a second P0: {second:?}; the first P0 then: {first:?}");
        assert!(retry.unwrap() < Duration::from_secs(5));
        let second = second.unwrap_err();
        assert!(second.contains("already has a P0 waiting"), "{second}");
        first.unwrap();
    })
    .await;
}

/// Samples the dealer's resident memory while `f` runs; returns the peak (KiB).
async fn peak_rss<F: std::future::Future>(d: &Dealer, f: F) -> (u64, F::Output) {
    let peak = Arc::new(Mutex::new(d.rss_kib()));
    let pid = d.pid();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(v) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(v);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let p = *peak.lock().unwrap();
    (p, out)
}

/// Row "4 parked connections that keep sending frames": the dealer sends each away (a waiting
/// party must not send) and its memory stays bounded. Before: 270 MB of read-ahead, never freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_parties_that_send_are_sent_away() {
    let d = start_dealer("flood", &[]);
    bounded(60, async {
        d.session().await.unwrap();
        let rss0 = d.rss_kib();
        let flood = |i: usize| {
            let d = &d;
            async move {
                let mut r = d
                    .raw(if i.is_multiple_of(2) {
                        Party::P0
                    } else {
                        Party::P1
                    })
                    .await;
                r.hello(DEALER_PROTOCOL_VERSION, Party::P0, sid()).await;
                // 1 MiB frames (the parties' frame size) or 1 KiB messages, as fast as the
                // dealer takes them, for at most 2 s or 64 MiB.
                let payload = vec![0u8; if i < 2 { 1 << 20 } else { 1 << 10 }];
                let start = Instant::now();
                let mut sent = 0usize;
                while start.elapsed() < Duration::from_secs(2) && sent < 64 << 20 {
                    let f = r.frame(0, &payload);
                    match tokio::time::timeout(Duration::from_millis(500), f).await {
                        Ok(Ok(())) => sent += payload.len(),
                        _ => break,
                    }
                }
                (sent, within(5, r.message()).await)
            }
        };
        let (peak, results) = peak_rss(&d, async {
            tokio::join!(flood(0), flood(1), flood(2), flood(3))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss1 = d.rss_kib();
        let results = [results.0, results.1, results.2, results.3];
        eprintln!(
            "[flood] sent {:?} bytes; dealer VmRSS {rss0} KiB, peak {peak} KiB (+{} KiB), \
             after {rss1} KiB; answers {:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>(),
            peak - rss0,
            results.iter().map(|r| &r.1).collect::<Vec<_>>()
        );
        for (_, answer) in &results {
            // A message that fits the dealer's bound is named as such; a larger one is refused
            // by the bound itself.
            let reason = answer.as_ref().unwrap_err();
            assert!(
                reason.contains("sent data before") || reason.contains("exceeds the limit"),
                "{reason}"
            );
        }
        assert!(peak < rss0 + 32 * 1024, "peak {peak} KiB from {rss0} KiB");
        d.session().await.unwrap();
    })
    .await;
}

/// Row "4 unfinished 64 MiB hellos": the hello is read with a limit sized to it, so each is
/// refused at its first frame and nothing large is held. Before: 270 MB held until the hello
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_hellos_are_refused_at_once() {
    let d = start_dealer("bighello", &[]);
    bounded(60, async {
        d.session().await.unwrap();
        let rss0 = d.rss_kib();
        let big = |i: usize| {
            let d = &d;
            async move {
                let mut r = d
                    .raw(if i.is_multiple_of(2) {
                        Party::P0
                    } else {
                        Party::P1
                    })
                    .await;
                // 1 MiB frames (the parties' frame size) or 60 KiB frames (under the dealer's).
                let payload = vec![b'h'; if i < 2 { 1 << 20 } else { 60 << 10 }];
                let mut sent = 0usize;
                // 64 MiB in MORE frames, never finished.
                while sent + payload.len() < 64 << 20 {
                    let f = r.frame(MORE, &payload);
                    match tokio::time::timeout(Duration::from_millis(500), f).await {
                        Ok(Ok(())) => sent += payload.len(),
                        _ => break,
                    }
                }
                let start = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(15), r.message()).await;
                (sent, start.elapsed(), answer)
            }
        };
        let (peak, results) =
            peak_rss(&d, async { tokio::join!(big(0), big(1), big(2), big(3)) }).await;
        let results = [results.0, results.1, results.2, results.3];
        eprintln!(
            "[bighello] sent {:?} bytes each; dealer VmRSS {rss0} KiB, peak {peak} KiB \
             (+{} KiB); answers {:?}",
            results.iter().map(|r| r.0).collect::<Vec<_>>(),
            peak - rss0,
            results.iter().map(|r| (&r.1, &r.2)).collect::<Vec<_>>()
        );
        for (_, _, answer) in &results {
            let reason = answer.as_ref().unwrap().as_ref().unwrap_err();
            assert!(reason.contains("exceeds the limit"), "{reason}");
        }
        assert!(peak < rss0 + 32 * 1024, "peak {peak} KiB from {rss0} KiB");
    })
    .await;
}

/// Row "one pinned party asks for MatMul{1, 4096, 4096, 4096} twice": refused by the work cap
/// at once; and while two pairs run heavy (allowed) products, a new pair's TLS connect is not
/// delayed and each heavy request's acknowledgement arrives before the work. Before: both
/// async workers computed for minutes, a connect took 44 s, the ack waited for the product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_requests_are_capped_and_computed_off_the_workers() {
    let d = start_dealer("heavy", &[]);
    bounded(120, async {
        // Refused by the cap.
        let s = sid();
        let start = Instant::now();
        let (c0, c1) = tokio::join!(d.party(Party::P0, s), d.party(Party::P1, s));
        let (mut c0, mut c1) = (c0.unwrap(), c1.unwrap());
        let huge = within(20, async {
            let (x, y) =
                tokio::join!(c0.matmul(1, 4096, 4096, 4096), c1.matmul(1, 4096, 4096, 4096));
            Ok((x, y))
        })
        .await;
        let refused_in = start.elapsed();
        let refusal = match &huge {
            Ok((Err(e), Err(_))) => e.to_string(),
            Ok(_) => "served".to_string(),
            Err(e) => e.clone(),
        };
        drop(huge);
        eprintln!("[heavy] MatMul{{1,4096,4096,4096}}: {refusal} after {refused_in:?}");

        // Two pairs with heavy, allowed products, driven by hand to time the ack.
        let heavy = Request::MatMul {
            batch: 1,
            n: 512,
            k: 1024,
            m: 1024,
        };
        let pair = || {
            let (d, heavy) = (&d, heavy.clone());
            async move {
                let s = sid();
                let (mut r0, mut r1) = tokio::join!(d.raw(Party::P0), d.raw(Party::P1));
                tokio::join!(
                    r0.hello(DEALER_PROTOCOL_VERSION, Party::P0, s),
                    r1.hello(DEALER_PROTOCOL_VERSION, Party::P1, s)
                );
                let (w0, w1) = tokio::join!(r0.message(), r1.message());
                w0.unwrap();
                w1.unwrap();
                let start = Instant::now();
                let q = request_bytes(&heavy);
                let (a, b) = tokio::join!(r0.frame(0, &q), r1.frame(0, &q));
                a.unwrap();
                b.unwrap();
                let ack = r1.message().await.unwrap();
                assert_eq!(ack.len(), 8);
                let acked = start.elapsed();
                let first = r1.message().await.unwrap();
                assert!(!first.is_empty());
                (acked, start.elapsed(), r0, r1)
            }
        };
        let newcomer = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let start = Instant::now();
            let ch = within(60, d.channel(Party::P0)).await;
            let connect = start.elapsed();
            drop(ch);
            connect
        };
        let (a, b, connect) = tokio::join!(
            within(60, async { Ok(pair().await) }),
            within(60, async { Ok(pair().await) }),
            newcomer
        );
        let (ack_a, data_a) = a.as_ref().map_or((None, None), |r| (Some(r.0), Some(r.1)));
        let (ack_b, data_b) = b.as_ref().map_or((None, None), |r| (Some(r.0), Some(r.1)));
        eprintln!(
            "[heavy] heavy pairs: ack after {ack_a:?} / {ack_b:?}, first correction after {data_a:?} / \
             {data_b:?}; a new TLS connect meanwhile took {connect:?}"
        );
        assert!(refusal.contains("limit"), "{refusal}");
        assert!(refused_in < Duration::from_secs(5));
        assert!(connect < Duration::from_secs(2), "connect took {connect:?}");
        for (ack, data) in [(ack_a, data_a), (ack_b, data_b)] {
            let (ack, data) = (ack.unwrap(), data.unwrap());
            assert!(ack < Duration::from_secs(1), "ack after {ack:?}");
            assert!(ack < data, "ack {ack:?}, data {data:?}");
        }
    })
    .await;
}

/// Row "a parked P0 says version 99, the arriving P1 says version 1" (and the reverse): the
/// wrong version is refused at once whichever arrives first, naming it, and the right party
/// keeps waiting and is served. Before: both were welcomed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_is_refused_whichever_arrives_first() {
    let d = start_dealer("version", &[]);
    bounded(60, async {
        for wrong_first in [true, false] {
            let s = sid();
            let good_p1 = within(10, async {
                if wrong_first {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                d.party(Party::P1, s).await
            });
            let wrong_p0 = async {
                if !wrong_first {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut r = d.raw(Party::P0).await;
                r.hello(99, Party::P0, s).await;
                within(5, async { Ok(r.message().await) }).await
            };
            let good_p0 = within(10, async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                d.party(Party::P0, s).await
            });
            let (p1, wrong, p0) = tokio::join!(good_p1, wrong_p0, good_p0);
            let wrong = wrong.map(|r| r.map(|_| "welcomed"));
            eprintln!(
                "[version] wrong version first: {wrong_first}: the v99 P0 got {wrong:?}; \
                 good P1: {:?}, good P0: {:?}",
                p1.as_ref().map(|_| "welcomed"),
                p0.as_ref().map(|_| "welcomed")
            );
            let reason = wrong.unwrap().unwrap_err();
            assert!(
                reason.contains("version 99") && reason.contains("speaks 1"),
                "{reason}"
            );
            let (mut p0, mut p1) = (p0.unwrap(), p1.unwrap());
            let (x, y) = tokio::join!(p0.elementwise(4), p1.elementwise(4));
            x.unwrap();
            y.unwrap();
        }
    })
    .await;
}

/// Row "an ABORT frame whose reason is long text with newlines and terminal escapes": the
/// dealer's log and the reason relayed to the other party are escaped and cut. Before: copied
/// verbatim (forged log lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_reason_is_escaped_in_logs_and_relays() {
    let d = start_dealer("abort", &[]);
    bounded(60, async {
        let s = sid();
        let (mut r0, c1) = tokio::join!(
            async {
                let mut r = d.raw(Party::P0).await;
                r.hello(DEALER_PROTOCOL_VERSION, Party::P0, s).await;
                r.message().await.unwrap();
                r
            },
            d.party(Party::P1, s)
        );
        let mut c1 = c1.unwrap();
        let mut reason = String::from("oops\nFORGED 2026-01-01T00:00:00Z INFO all fine\u{1b}[2J");
        reason.push_str(&"\u{1b}[31m!\n".repeat(60_000 / 7));
        r0.frame(ABORT, &reason.as_bytes()[..60_000]).await.unwrap();
        let relayed = c1.elementwise(4).await.unwrap_err().to_string();
        let log = d.log_with("oops");
        eprintln!(
            "[abort] relayed to P1 ({} chars): {relayed}\n[abort] dealer log: {} bytes",
            relayed.len(),
            log.len()
        );
        assert!(relayed.contains("oops"), "{relayed}");
        assert!(
            !relayed.contains('\n') && !relayed.contains('\u{1b}'),
            "{relayed}"
        );
        assert!(relayed.len() < 1000, "{}", relayed.len());
        assert!(log.contains("oops"), "{log}");
        assert!(!log.contains('\u{1b}'));
        assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");
        assert!(log.len() < 20_000, "{} bytes of log", log.len());
    })
    .await;
}

/// Row "idle timeout 5 s, the peer sends an empty MORE frame every 2 s" (here 1 s and every
/// 300 ms): the dealer times the party out and tells the other. Before: never timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_frames_do_not_keep_a_session_alive() {
    let d = start_dealer("trickle", &["--idle-timeout-secs", "1"]);
    bounded(60, async {
        let s = sid();
        let (mut r0, c1) = tokio::join!(
            async {
                let mut r = d.raw(Party::P0).await;
                r.hello(DEALER_PROTOCOL_VERSION, Party::P0, s).await;
                r.message().await.unwrap();
                r
            },
            d.party(Party::P1, s)
        );
        let mut c1 = c1.unwrap();
        let trickle = async {
            for _ in 0..30 {
                if r0.frame(MORE, &[]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let start = Instant::now();
        let (_, res) = tokio::select! {
            r = c1.elementwise(4) => ((), r),
            _ = trickle => panic!("the dealer never timed P0 out"),
        };
        let took = start.elapsed();
        let e = res.unwrap_err().to_string();
        eprintln!("[trickle] P1 told after {took:?}: {e}");
        assert!(e.contains("timed out"), "{e}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    })
    .await;
}

/// Row "`Elementwise{n: 0}`": refused, as every empty request. Before: accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_requests_are_refused() {
    let d = start_dealer("empty", &[]);
    bounded(60, async {
        for req in [
            Request::Elementwise { n: 0 },
            Request::Square { n: 0 },
            Request::Trunc {
                n: 0,
                frac_bits: 12,
            },
            Request::MatMul {
                batch: 1,
                n: 0,
                k: 3,
                m: 3,
            },
        ] {
            let s = sid();
            let (r0, r1) = tokio::join!(d.raw(Party::P0), d.raw(Party::P1));
            let (mut r0, mut r1) = (r0, r1);
            tokio::join!(
                r0.hello(DEALER_PROTOCOL_VERSION, Party::P0, s),
                r1.hello(DEALER_PROTOCOL_VERSION, Party::P1, s)
            );
            let (w0, w1) = tokio::join!(r0.message(), r1.message());
            w0.unwrap();
            w1.unwrap();
            let q = request_bytes(&req);
            let (a, b) = tokio::join!(r0.frame(0, &q), r1.frame(0, &q));
            a.unwrap();
            b.unwrap();
            let answer = r0.message().await;
            eprintln!("[empty] {req:?}: {answer:?}");
            let reason = answer.unwrap_err();
            assert!(reason.contains("empty dimension"), "{reason}");
        }
    })
    .await;
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Row "identity created under umask 000": the directory is 0700 and both files 0600; a key
/// readable by others is refused at start-up. Before: directory 777, certificate 666, and the
/// warning about the key was invisible.
#[tokio::test]
async fn identity_is_owner_only_whatever_the_umask() {
    let d = start_dealer_with("umask", &[], Some("umask 000;"));
    let id = d.dir.join("dealer");
    let modes = (
        mode(&id),
        mode(&id.join(tls::CERT_FILE)),
        mode(&id.join(tls::KEY_FILE)),
    );
    eprintln!(
        "[umask] under umask 000: dir {:o}, cert {:o}, key {:o}",
        modes.0, modes.1, modes.2
    );
    assert_eq!(modes, (0o700, 0o600, 0o600));
    // A key readable by others is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        id.join(tls::KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = Command::new(dealer_bin())
        .args(["--listen", "127.0.0.1:0", "--identity"])
        .arg(&id)
        .args(["--peer-fingerprint", &d.p0.fingerprint().to_hex()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("[umask] with a key of mode 644: {} {stderr}", out.status);
    assert!(!out.status.success());
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// Row "warnings invisible unless RUST_LOG is set": with no RUST_LOG, the insecure-dealer
/// warning appears on standard error.
#[tokio::test]
async fn warnings_are_visible_by_default() {
    let d = start_dealer(
        "warn",
        &[
            "--insecure-plaintext-tcp",
            "--insecure-ideal-dealer",
            "--seed",
            "7",
        ],
    );
    let log = d.log_with("plain TCP");
    eprintln!("[warn] dealer output without RUST_LOG:\n{log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("INSECURE ideal dealer"), "{log}");
    assert!(log.contains("plain TCP"), "{log}");
}

/// New caps: connections beyond the per-source cap are closed at once, idle ones at the
/// handshake timeout; sessions beyond --max-sessions are refused as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_and_session_caps() {
    let d = start_dealer(
        "caps",
        &[
            "--max-connections-per-source",
            "6",
            "--handshake-timeout-secs",
            "1",
            "--max-sessions",
            "1",
        ],
    );
    bounded(60, async {
        let start = Instant::now();
        let mut conns = Vec::new();
        for _ in 0..10 {
            conns.push(TcpStream::connect(&d.addr).await.unwrap());
            // Let the dealer accept (or refuse) this one before the next.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let waits = conns.into_iter().map(|mut c| {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b)).await;
                assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
                start.elapsed()
            })
        });
        let mut closed_at = Vec::new();
        for w in waits.collect::<Vec<_>>() {
            closed_at.push(w.await.unwrap());
        }
        let early = closed_at
            .iter()
            .filter(|t| **t < Duration::from_millis(900))
            .count();
        eprintln!("[caps] 10 idle connections closed after {closed_at:?}");
        assert_eq!(early, 4, "{closed_at:?}");

        // One session at a time: a second pair is refused as busy, a later one is served.
        let s = sid();
        let (a0, a1) = tokio::join!(d.party(Party::P0, s), d.party(Party::P1, s));
        let (a0, a1) = (a0.unwrap(), a1.unwrap());
        let s = sid();
        let (b0, b1) = tokio::join!(d.party(Party::P0, s), d.party(Party::P1, s));
        let busy = b0.unwrap_err();
        assert!(busy.contains("busy"), "{busy}");
        assert!(b1.is_err());
        drop((a0, a1));
        tokio::time::sleep(Duration::from_millis(200)).await;
        d.session().await.unwrap();
        eprintln!("[caps] second concurrent session refused: {busy}");
    })
    .await;
}

/// New behaviour: running out of file descriptors makes `accept` fail; the dealer logs it,
/// backs off and recovers instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_survived() {
    let mut d = start_dealer_with(
        "emfile",
        &[
            "--handshake-timeout-secs",
            "1",
            "--max-connections-per-source",
            "200",
        ],
        Some("ulimit -n 40;"),
    );
    bounded(60, async {
        let mut idle = Vec::new();
        for _ in 0..60 {
            idle.push(TcpStream::connect(&d.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(idle);
        // Within a few handshake timeouts every idle connection is gone.
        tokio::time::sleep(Duration::from_secs(3)).await;
        d.session().await.unwrap();
    })
    .await;
    let log = d.log_with("Too many open files");
    assert!(d.alive(), "{log}");
    let failures = log.matches("accepting a connection failed").count();
    eprintln!("[emfile] {failures} accept failures logged; the dealer is alive and serving");
    assert!(failures > 0, "{log}");
    assert!(log.contains("Too many open files"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Issue 16: the attack table. One dealer, attacks in sequence; after each a well-behaved pair
// must be served (its duration is the recovery figure) and the dealer's memory must be back
// near its baseline. The rows above cover idle and slow connections, floods of hellos, heavy
// requests and descriptor exhaustion; these add the ones they do not.

/// Two raw parties of one session, paired, welcomed.
async fn raw_pair(d: &Dealer) -> (Raw, Raw) {
    let s = sid();
    let (mut a, mut b) = tokio::join!(d.raw(Party::P0), d.raw(Party::P1));
    a.hello(DEALER_PROTOCOL_VERSION, Party::P0, s).await;
    b.hello(DEALER_PROTOCOL_VERSION, Party::P1, s).await;
    let (wa, wb) = tokio::join!(a.message(), b.message());
    wa.unwrap();
    wb.unwrap();
    (a, b)
}

/// What an attack left for the table: what the attacker saw.
type Outcome = String;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_table_each_followed_by_a_good_session() {
    // A short idle timeout so that a peer that stops reading is given up quickly.
    let d = start_dealer("attacks", &["--idle-timeout-secs", "2"]);
    bounded(240, async {
        d.session().await.unwrap();
        let base = d.rss_kib();
        let fds0 = d.fds();
        let mut table: Vec<(String, Outcome, Duration, u64)> = Vec::new();
        let mut row = async |name: &str, outcome: Outcome, d: &Dealer| {
            // Recovery: a good pair is served; memory back near the baseline.
            let took = d
                .session()
                .await
                .unwrap_or_else(|e| panic!("after {name}: {e}"));
            let rss = d.rss_kib();
            assert!(
                took < Duration::from_secs(5),
                "after {name}: session took {took:?}"
            );
            table.push((name.to_string(), outcome, took, rss));
        };

        // 1. Random bytes instead of a TLS ClientHello.
        let mut tcp = TcpStream::connect(&d.addr).await.unwrap();
        let junk = random_bytes(4096, 0x9e37_79b9_7f4a_7c15);
        let _ = tcp.write_all(&junk).await;
        let t = closed_within(&mut tcp, 15).await;
        assert!(t.is_some(), "random bytes: the connection stayed open");
        row(
            "4 KiB of random bytes before TLS",
            format!("closed after {t:?}"),
            &d,
        )
        .await;

        // 2. A certificate the dealer does not pin.
        let stranger = Identity::generate().unwrap();
        let r = tls::connect(
            d.addr.as_str(),
            &stranger,
            d.fp,
            ChannelConfig::default(),
            Duration::from_secs(10),
        )
        .await;
        let e = r
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "accepted".into());
        assert!(
            !e.contains("accepted"),
            "an unknown certificate was accepted"
        );
        row("TLS client with an unknown certificate", e, &d).await;

        // 3. No client certificate at all.
        let tcp = TcpStream::connect(&d.addr).await.unwrap();
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("privlm.invalid")
            .unwrap()
            .to_owned();
        let outcome = match tokio_rustls::TlsConnector::from(no_cert_client())
            .connect(name, tcp)
            .await
        {
            Err(e) => format!("handshake failed: {e}"),
            Ok(mut s) => {
                // TLS 1.3: the client finishes first; the server's verdict arrives after.
                let mut b = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await {
                    Ok(Ok(0)) => "closed by the dealer".into(),
                    Ok(Ok(_)) => panic!("no certificate: the dealer sent data"),
                    Ok(Err(e)) => format!("refused: {e}"),
                    Err(_) => panic!("no certificate: the connection stayed open"),
                }
            }
        };
        row("TLS client with no certificate", outcome, &d).await;

        // 4. Frame headers announcing 16 MiB (the most one header can) and a 1 GiB message.
        let mut r = d.raw(Party::P0).await;
        r.0.write_all(&0x00ff_ffffu32.to_le_bytes()).await.unwrap();
        let reason = r.message().await.unwrap_err();
        assert!(reason.contains("exceeds the limit"), "{reason}");
        row("frame header announcing 16 MiB", reason, &d).await;
        let mut r = d.raw(Party::P1).await;
        let chunk = vec![0u8; 60 << 10];
        let mut sent = 0usize;
        while sent < 1 << 30 {
            match tokio::time::timeout(Duration::from_millis(500), r.frame(MORE, &chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        let reason = r.message().await.unwrap_err();
        assert!(reason.contains("exceeds the limit"), "{reason}");
        row(
            "MORE frames towards a 1 GiB hello",
            format!("{reason} (after {} KiB)", sent >> 10),
            &d,
        )
        .await;
        let mut r = d.raw(Party::P1).await;
        r.0.write_all(&(0x0f00_0010u32).to_le_bytes())
            .await
            .unwrap();
        let reason = r.message().await.unwrap_err();
        assert!(reason.contains("malformed frame header"), "{reason}");
        row("reserved header bits", reason, &d).await;

        // 5. A valid handshake, then a message of the wrong type, or with trailing bytes, or
        // of the wrong length.
        for (what, bytes) in [
            (
                "a hello where a request is due",
                bincode::serde::encode_to_vec(
                    Hello {
                        version: DEALER_PROTOCOL_VERSION,
                        party: Party::P0,
                        session: [1; 32],
                    },
                    bincode::config::standard(),
                )
                .unwrap(),
            ),
            ("a request with trailing bytes", {
                let mut b = request_bytes(&Request::Elementwise { n: 4 });
                b.extend_from_slice(&[0, 0, 0]);
                b
            }),
            ("a request 5000 bytes long", vec![0u8; 5000]),
            ("random bytes as a request", junk[..64].to_vec()),
        ] {
            let (mut a, mut b) = raw_pair(&d).await;
            a.frame(0, &bytes).await.unwrap();
            b.frame(0, &request_bytes(&Request::Elementwise { n: 4 }))
                .await
                .unwrap();
            let (ra, rb) = tokio::join!(a.message(), b.message());
            let (ra, rb) = (ra.unwrap_err(), rb.unwrap_err());
            assert!(!ra.is_empty() && !rb.is_empty());
            row(
                &format!("valid handshake, then {what}"),
                format!("sender: {ra}; partner: {rb}"),
                &d,
            )
            .await;
        }

        // 6. An absurd correlation.
        let (mut a, mut b) = raw_pair(&d).await;
        let absurd = request_bytes(&Request::MatMul {
            batch: 1 << 20,
            n: 1 << 20,
            k: 1 << 20,
            m: 1 << 20,
        });
        a.frame(0, &absurd).await.unwrap();
        b.frame(0, &absurd).await.unwrap();
        let (ra, _) = tokio::join!(a.message(), b.message());
        let ra = ra.unwrap_err();
        row("MatMul{2^20, 2^20, 2^20, 2^20}", ra, &d).await;

        // 7. A peer that stops reading while the dealer streams 32 MiB of corrections to it.
        let (mut a, b) = raw_pair(&d).await;
        let big = request_bytes(&Request::Elementwise { n: 4 << 20 });
        let mut b = b;
        a.frame(0, &big).await.unwrap();
        b.frame(0, &big).await.unwrap();
        let start = Instant::now();
        let (peak, ra) = peak_rss(&d, async {
            let ack = a.message().await;
            assert!(ack.is_ok(), "{ack:?}");
            // P0 gets no correction; it waits for its next turn, P1 never reads.
            tokio::time::timeout(Duration::from_secs(20), a.message()).await
        })
        .await;
        let ended = start.elapsed();
        let ra = ra
            .map(|r| r.err().unwrap_or_else(|| "a message".into()))
            .unwrap_or_else(|_| "no end within 20 s".into());
        drop(b);
        assert!(ended < Duration::from_secs(15), "back-pressure: {ended:?}");
        row(
            "P1 stops reading during 32 MiB of corrections",
            format!("P0 told after {ended:.1?}: {ra}; dealer peak VmRSS {peak} KiB"),
            &d,
        )
        .await;

        // 8. Disconnects in every phase.
        let phases: [(&str, u8); 8] = [
            ("after TCP connect", 0),
            ("half-way through the TLS handshake", 1),
            ("after TLS, before the hello", 2),
            ("in the middle of a frame header", 3),
            ("in the middle of the hello", 4),
            ("while waiting for the partner", 5),
            ("after pairing, before any request", 6),
            ("after its request's acknowledgement", 7),
        ];
        for (what, phase) in phases {
            let partner_saw: String = match phase {
                0 => {
                    drop(TcpStream::connect(&d.addr).await.unwrap());
                    "-".into()
                }
                1 => {
                    let mut tcp = TcpStream::connect(&d.addr).await.unwrap();
                    // The first bytes of a ClientHello record, then nothing more.
                    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                        .await
                        .unwrap();
                    drop(tcp);
                    "-".into()
                }
                2 => {
                    drop(d.raw(Party::P0).await);
                    "-".into()
                }
                3 => {
                    let mut r = d.raw(Party::P0).await;
                    r.0.write_all(&[0x20, 0x00]).await.unwrap();
                    r.0.flush().await.unwrap();
                    drop(r);
                    "-".into()
                }
                4 => {
                    let mut r = d.raw(Party::P0).await;
                    r.0.write_all(&[0x40, 0, 0, 0, 1, 2, 3]).await.unwrap();
                    r.0.flush().await.unwrap();
                    drop(r);
                    "-".into()
                }
                5 => {
                    let mut r = d.raw(Party::P0).await;
                    r.hello(DEALER_PROTOCOL_VERSION, Party::P0, sid()).await;
                    drop(r);
                    "-".into()
                }
                6 => {
                    let (a, mut b) = raw_pair(&d).await;
                    drop(a);
                    b.frame(0, &request_bytes(&Request::Elementwise { n: 4 }))
                        .await
                        .unwrap();
                    b.message().await.unwrap_err()
                }
                _ => {
                    let (mut a, mut b) = raw_pair(&d).await;
                    let req = request_bytes(&Request::Elementwise { n: 1 << 16 });
                    a.frame(0, &req).await.unwrap();
                    b.frame(0, &req).await.unwrap();
                    a.message().await.unwrap();
                    drop(a);
                    // P1 reads its acknowledgement and correction (one chunk), then asks again,
                    // as a party does: the answer is the dealer's reason.
                    b.message().await.unwrap();
                    b.message().await.unwrap();
                    b.frame(0, &request_bytes(&Request::Elementwise { n: 4 }))
                        .await
                        .unwrap();
                    let e = b.message().await.unwrap_err();
                    assert!(e.contains("lost P0"), "{e}");
                    e
                }
            };
            row(
                &format!("disconnect {what}"),
                format!("partner: {partner_saw}"),
                &d,
            )
            .await;
        }

        // Descriptors: every attack's connection is gone.
        let fds = settle_fds(&d, fds0, Duration::from_secs(10)).await;
        eprintln!("\n| attack | outcome | good session after | dealer VmRSS after |");
        eprintln!("|---|---|---|---|");
        for (name, outcome, took, rss) in &table {
            eprintln!(
                "| {name} | {} | {took:.0?} | {rss} KiB ({:+} KiB) |",
                outcome.replace('|', "/"),
                *rss as i64 - base as i64
            );
        }
        eprintln!("baseline VmRSS {base} KiB, descriptors {fds0} before, {fds} after");
        assert!(fds <= fds0 + 2, "descriptors: {fds0} before, {fds} after");
        let last = table.last().unwrap().3;
        assert!(last < base + 48 * 1024, "VmRSS {last} KiB from {base} KiB");
    })
    .await;
}
