//! Issue 16, faults: the network drops. A proxy (`tests/cut_proxy`) sits on one link of a
//! real session (`privlm-client`, `privlm-server`, `privlm-dealer` over loopback TLS) and cuts
//! it, both directions at once, once the bytes forwarded on it reach N; for many N spread over
//! the whole session (the TLS handshake, the control exchange, preprocessing, the online
//! phase, the last bytes), on each link in turn: client-server, client-dealer, server-dealer.
//!
//! After each cut: the client ends within its timeout (plus slack), either with the mirror's
//! tokens (a cut after it had everything) or with a non-zero exit and a message naming what
//! failed; the server and the dealer log how the connection or session ended and release its
//! descriptors within their timeouts; a well-behaved client (no proxy in its way, except the
//! server's own link to the dealer in the server-dealer case, then passing everything) is
//! served the mirror's tokens; at the end the server's and the dealer's VmRSS are near their
//! baselines. The three links run as three tests (in parallel, each with its own processes).
//! Prints the table with `cargo test --release --test net_cut -- --nocapture`.

mod attack_util;
mod cut_proxy;
mod serve_util;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use attack_util::{fds, rss_kib};
use cut_proxy::{CutProxy, Plan};
use privlm::model::{Model, Sampling};
use privlm::serve::control::SessionId;
use serve_util::*;

const MODEL: &str = "sm_ln_g";
const PROMPT: &str = "def ";
const TOKENS: usize = 2;
/// Every party's longest wait for a peer's next message, in seconds (the clients' and the
/// server's and dealer's idle timeouts).
const TIMEOUT: u64 = 5;
/// Handshake, request, hello timeouts, in seconds.
const SHORT: u64 = 2;
/// What a party may take beyond its timeout to notice and report (a loaded 2-core machine).
const SLACK: Duration = Duration::from_secs(5);
/// Every party must notice a cut directly (a closed connection, or a peer's abort), well
/// before any timeout: below `TIMEOUT`, so that a party left waiting for one fails the test.
const PROMPT_END: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    ClientServer,
    ClientDealer,
    ServerDealer,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::ClientServer => "client-server",
            Which::ClientDealer => "client-dealer",
            Which::ServerDealer => "server-dealer",
        }
    }
}

/// Lines of a process's log that end a connection or a session.
const SERVER_ENDS: [&str; 5] = [
    "session done",
    "session ended with an error",
    "refused a client",
    "lost the client before the offer",
    "refused a connection",
];
const DEALER_ENDS: [&str; 10] = [
    "session served",
    "session ended with an error",
    "left before the other party arrived",
    "no valid hello",
    "no hello within",
    "refused a connection",
    "refused a hello",
    "refused a session",
    "joined session",
    "sent data before",
];

/// The last line of `log` that ends a connection or session, from its marker on, shortened.
fn ending(log: &str, markers: &[&str]) -> Option<String> {
    log.lines().rev().find_map(|l| {
        markers.iter().find_map(|m| {
            l.find(m).map(|i| {
                let mut s = l[i..].to_string();
                if s.len() > 160 {
                    let mut cut = 157;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                    s.push_str("...");
                }
                s
            })
        })
    })
}

struct Row {
    n: u64,
    fraction: f64,
    client: String,
    client_s: f64,
    server: String,
    server_s: f64,
    dealer: String,
    dealer_s: f64,
}

/// How the survivors (server, dealer) ended a cut session, and when.
#[derive(Default)]
struct Ends {
    server_at: Option<Instant>,
    dealer_at: Option<Instant>,
    server: Option<String>,
    dealer: Option<String>,
}

impl Ends {
    /// Looks at both survivors once; `true` when both have logged the end and are back to
    /// their baseline descriptors.
    fn poll(
        &mut self,
        rig: &Rig,
        logs: (usize, usize),
        base_fds: (usize, usize),
        client_done: bool,
    ) -> bool {
        let (s_log0, d_log0) = logs;
        let now = Instant::now();
        if self.server_at.is_none() && fds(rig.server.child.id()) <= base_fds.0 {
            self.server = ending(&rig.server.stderr()[s_log0..], &SERVER_ENDS);
            if self.server.is_some() {
                self.server_at = Some(now);
            }
        }
        if self.dealer_at.is_none() && fds(rig.dealer.child.id()) <= base_fds.1 {
            let d_log = rig.dealer.stderr()[d_log0..].to_string();
            self.dealer = ending(&d_log, &DEALER_ENDS);
            // A dealer the session never reached has nothing to end (known once the client is
            // gone).
            if self.dealer.is_some() || (client_done && !d_log.contains("conn{")) {
                self.dealer_at = Some(now);
            }
        }
        self.server_at.is_some() && self.dealer_at.is_some()
    }
}

struct Rig {
    which: Which,
    dir: PathBuf,
    dealer: Proc,
    server: Proc,
    proxy: CutProxy,
    _rt: tokio::runtime::Runtime,
    want: Vec<u32>,
    runs: u32,
}

impl Rig {
    fn new(which: Which) -> Rig {
        let dir = temp_dir(&format!("netcut-{}", which.name()));
        let (_, cfp) = client_identity(&dir);
        let (_, sfp) = server_identity(&dir);
        let model = model_dir(MODEL);
        let m = Model::load(&model).unwrap();
        let ids: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
        let want = m
            .to_fixed()
            .generate(&ids, TOKENS, Sampling::Greedy, 0)
            .unwrap();
        let t = TIMEOUT.to_string();
        let s = SHORT.to_string();
        let dealer = start_dealer_with(
            &dir,
            &[cfp, sfp],
            &[
                "--idle-timeout-secs",
                &t,
                "--pairing-timeout-secs",
                &t,
                "--hello-timeout-secs",
                &s,
                "--handshake-timeout-secs",
                &s,
            ],
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server_flags = [
            "--idle-timeout-secs",
            &t,
            "--request-timeout-secs",
            &s,
            "--handshake-timeout-secs",
            &s,
        ];
        let (server, proxy) = match which {
            Which::ServerDealer => {
                let proxy = rt.block_on(CutProxy::start(&dealer.addr, None));
                let server =
                    start_server_via(&dir, &model, &proxy.addr, &dealer, &[cfp], &server_flags);
                (server, proxy)
            }
            _ => {
                let server = start_server(&dir, &model, &dealer, &[cfp], &server_flags);
                let target = if which == Which::ClientServer {
                    &server.addr
                } else {
                    &dealer.addr
                };
                let proxy = rt.block_on(CutProxy::start(target, None));
                (server, proxy)
            }
        };
        Rig {
            which,
            dir,
            dealer,
            server,
            proxy,
            _rt: rt,
            want,
            runs: 0,
        }
    }

    /// A client command; through the proxy when `via_proxy` (on the client's links).
    fn client(&mut self, via_proxy: bool) -> (std::process::Command, PathBuf, SessionId) {
        self.runs += 1;
        let (s, d) = match (via_proxy, self.which) {
            (true, Which::ClientServer) => (self.proxy.addr.clone(), self.dealer.addr.clone()),
            (true, Which::ClientDealer) => (self.server.addr.clone(), self.proxy.addr.clone()),
            _ => (self.server.addr.clone(), self.dealer.addr.clone()),
        };
        let json = self.dir.join(format!("out-{}.json", self.runs));
        let _ = std::fs::remove_file(&json);
        let sid = SessionId::random();
        let mut cmd = client_cmd_via(
            &self.dir,
            &s,
            &self.server,
            &d,
            &self.dealer,
            TIMEOUT,
            SHORT,
        );
        cmd.args(["--prompt", PROMPT, "--max-new-tokens", &TOKENS.to_string()])
            .args(["--session-id", &sid.to_hex(), "--quiet", "--json"])
            .arg(&json);
        (cmd, json, sid)
    }

    fn tokens(json: &std::path::Path) -> Vec<u32> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
        v["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect()
    }

    /// A well-behaved client, straight to the server and the dealer: served the mirror's
    /// tokens. Returns its run time.
    fn good(&mut self) -> Duration {
        self.proxy.arm(Plan::Pass);
        let (cmd, json, _) = self.client(false);
        let t = Instant::now();
        let out = run(cmd);
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{}: a good client failed: {}\nserver: {}",
            self.which.name(),
            String::from_utf8_lossy(&out.stderr),
            self.server.stderr()
        );
        assert_eq!(Self::tokens(&json), self.want);
        took
    }

    /// One session through the proxy passing everything: the link's total bytes.
    fn measure(&mut self) -> u64 {
        let link = self.proxy.arm(Plan::Pass);
        let (cmd, json, _) = self.client(true);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{}: the uncut run failed: {}",
            self.which.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(Self::tokens(&json), self.want);
        assert_eq!(
            link.connections(),
            1,
            "one connection per session on the link"
        );
        // The last bytes (TLS close) may still be on their way.
        std::thread::sleep(Duration::from_millis(200));
        let (up, down) = link.bytes();
        eprintln!(
            "{}: uncut session forwards {up} bytes towards the {} and {down} back",
            self.which.name(),
            if self.which == Which::ClientServer {
                "server"
            } else {
                "dealer"
            }
        );
        up + down
    }

    /// Cuts the link at byte `n` of one session and checks every party's end.
    fn cut(&mut self, n: u64, total: u64, base_fds: (usize, usize)) -> Row {
        let s_log0 = self.server.stderr().len();
        let d_log0 = self.dealer.stderr().len();
        let link = self.proxy.arm(Plan::Cut(n));
        let (mut cmd, json, sid) = self.client(true);
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = String::new();
        let reader = {
            let mut pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        };
        let hard = started + Duration::from_secs(TIMEOUT * 6);
        let mut ends = Ends::default();
        let status = loop {
            // The survivors are watched while the client runs: each may end first.
            if link.cut_at().is_some() {
                ends.poll(self, (s_log0, d_log0), base_fds, false);
            }
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > hard {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} cut at {n}: the client hangs after {:?}",
                    self.which.name(),
                    started.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let exited = Instant::now();
        err.push_str(&reader.join().unwrap());
        let Some(at) = link.cut_at() else {
            // Sessions differ by a few bytes (random ids and seeds): this one ended first.
            assert!(
                status.success() && Self::tokens(&json) == self.want,
                "{} cut at {n}: the link was never cut, yet the client failed: {err}",
                self.which.name()
            );
            let (up, down) = link.bytes();
            return Row {
                n,
                fraction: n as f64 / total as f64,
                client: format!(
                    "ok: the session ended after {} bytes, before the cut",
                    up + down
                ),
                client_s: 0.0,
                server: "-".into(),
                server_s: 0.0,
                dealer: "-".into(),
                dealer_s: 0.0,
            };
        };
        let client_s = exited.saturating_duration_since(at).as_secs_f64();
        let bound = Duration::from_secs(TIMEOUT) + SLACK;
        assert!(
            exited.duration_since(at) < bound,
            "{} cut at {n}: the client took {client_s:.1} s after the cut",
            self.which.name()
        );
        let client = if status.success() {
            assert_eq!(
                Self::tokens(&json),
                self.want,
                "{} cut at {n}: a client that succeeded must have the mirror's tokens",
                self.which.name()
            );
            "ok (had every token)".to_string()
        } else {
            let line = err
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or_else(|| {
                    panic!(
                        "{} cut at {n}: the client failed without an error line: {err}",
                        self.which.name()
                    )
                })
                .to_string();
            assert!(
                line.contains("server") || line.contains("dealer"),
                "{} cut at {n}: the client's error does not name the peer: {line}",
                self.which.name()
            );
            // A cut handshake is not blamed on the certificates alone.
            assert!(
                !line.contains("refused this client's certificate"),
                "{} cut at {n}: {line}",
                self.which.name()
            );
            line
        };
        // The survivors: each logs the end and releases the connection's descriptors.
        let deadline = at + bound;
        while !ends.poll(self, (s_log0, d_log0), base_fds, true) {
            let (spid, dpid) = (self.server.child.id(), self.dealer.child.id());
            assert!(
                Instant::now() < deadline,
                "{} cut at {n} (session {sid}): not released within {bound:?}: server fds {} \
                 (baseline {}), dealer fds {} (baseline {})\nserver log: {}\ndealer log: {}",
                self.which.name(),
                fds(spid),
                base_fds.0,
                fds(dpid),
                base_fds.1,
                &self.server.stderr()[s_log0..],
                &self.dealer.stderr()[d_log0..],
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::env::var_os("NET_CUT_LOGS").is_some() {
            eprintln!(
                "--- {} cut at {n}\nserver: {}\ndealer: {}",
                self.which.name(),
                &self.server.stderr()[s_log0..],
                &self.dealer.stderr()[d_log0..]
            );
        }
        let Ends {
            server_at,
            dealer_at,
            server,
            dealer,
        } = ends;
        for (who, t) in [
            ("client", Some(exited)),
            ("server", server_at),
            ("dealer", dealer_at),
        ] {
            let took = t.unwrap().saturating_duration_since(at);
            assert!(
                took < PROMPT_END,
                "{} cut at {n}: the {who} ended {took:?} after the cut, as if it waited for a \
                 timeout",
                self.which.name()
            );
        }
        let secs = |t: Option<Instant>| t.unwrap().saturating_duration_since(at).as_secs_f64();
        Row {
            n,
            fraction: n as f64 / total as f64,
            client,
            client_s,
            server: server.unwrap(),
            server_s: secs(server_at),
            dealer: dealer.unwrap_or_else(|| "- (not reached)".into()),
            dealer_s: secs(dealer_at),
        }
    }
}

/// The cut points: small fixed ones, then fractions of the uncut session's bytes.
fn cut_points(total: u64) -> Vec<u64> {
    // The first bytes: the TLS handshake (about 2.5 KB with the certificates), the offer,
    // the request, the session handshake.
    let mut v = vec![
        1, 5, 100, 600, 1500, 2500, 4000, 6000, 10_000, 20_000, 50_000,
    ];
    for f in [0.01, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.995] {
        v.push((total as f64 * f) as u64);
    }
    v.push(total - 1);
    v.retain(|&n| n > 0 && n < total);
    v.sort_unstable();
    v.dedup();
    v
}

fn cut_link(which: Which) {
    let started = Instant::now();
    let mut rig = Rig::new(which);
    let first = rig.good();
    for _ in 0..2 {
        rig.good();
    }
    let total = rig.measure();
    rig.good();
    let (spid, dpid) = (rig.server.child.id(), rig.dealer.child.id());
    let base_fds = (fds(spid), fds(dpid));
    let base_rss = (rss_kib(spid), rss_kib(dpid));
    let mut rows = Vec::new();
    let mut good_max = Duration::ZERO;
    for n in cut_points(total) {
        rows.push(rig.cut(n, total, base_fds));
        let took = rig.good();
        good_max = good_max.max(took);
        assert!(
            took < Duration::from_secs(10),
            "{} after the cut at {n}: the good client took {took:?}",
            which.name()
        );
    }
    let after_rss = (rss_kib(spid), rss_kib(dpid));
    for _ in 0..3 {
        rig.good();
    }
    let more_rss = (rss_kib(spid), rss_kib(dpid));

    let mut out = format!(
        "\n{} link: {total} bytes in an uncut session; timeouts {TIMEOUT} s (idle), {SHORT} s \
         (handshake, request, hello)\n\
         | N | of total | client | after cut | server | released after | dealer | released after |\n\
         |---|---|---|---|---|---|---|---|\n",
        which.name()
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {:.1}% | {} | {:.2} s | {} | {:.2} s | {} | {:.2} s |\n",
            r.n,
            100.0 * r.fraction,
            r.client.replace('|', "/"),
            r.client_s,
            r.server.replace('|', "/"),
            r.server_s,
            r.dealer.replace('|', "/"),
            r.dealer_s
        ));
    }
    out.push_str(&format!(
        "first good client {first:.0?}, slowest good client after a cut {good_max:.0?}; \
         descriptors server {} / dealer {} (baseline, back to it after every cut); VmRSS server \
         {} -> {} -> {} KiB, dealer {} -> {} -> {} KiB (baseline, after the cuts, after 3 more \
         good clients); {} cuts in {:.1?}\n",
        base_fds.0,
        base_fds.1,
        base_rss.0,
        after_rss.0,
        more_rss.0,
        base_rss.1,
        after_rss.1,
        more_rss.1,
        rows.len(),
        started.elapsed()
    ));
    eprint!("{out}");
    for (name, base, after, more) in [
        ("server", base_rss.0, after_rss.0, more_rss.0),
        ("dealer", base_rss.1, after_rss.1, more_rss.1),
    ] {
        assert!(
            after < base + 32 * 1024,
            "{}: {name} VmRSS {after} KiB from {base} KiB",
            which.name()
        );
        assert!(
            more < after + 8 * 1024,
            "{}: {name} VmRSS grew from {after} KiB to {more} KiB over 3 good clients",
            which.name()
        );
    }
}

#[test]
fn cuts_on_the_client_server_link() {
    cut_link(Which::ClientServer);
}

#[test]
fn cuts_on_the_client_dealer_link() {
    cut_link(Which::ClientDealer);
}

#[test]
fn cuts_on_the_server_dealer_link() {
    cut_link(Which::ServerDealer);
}
