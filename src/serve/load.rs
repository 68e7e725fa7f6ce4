//! Load runs: one `privlm-dealer` and one `privlm-server` process, then rounds of N concurrent
//! `privlm-client` processes, each generating the same tokens of a fixed prompt
//! ([`run_load`]). `privlm-bench load` prints its [`LoadReport`]; `tests/serve_load.rs` checks
//! its counts. See `docs/serving.md` ("Load").
//!
//! Everything is a real process over loopback TLS with fresh identities in a temporary
//! directory, so each process's memory is its own: the report gives the peak resident set
//! (`VmHWM` of `/proc/PID/status`) of the server, of the dealer and the largest of the clients.
//! The server's and the dealer's peaks are reset before each round (`/proc/PID/clear_refs`,
//! value 5) so that each round reports its own; where the reset is refused the peak is the
//! running one since start ([`RoundReport::peak_per_round`] says which). A client's peak is the
//! one it reports itself at its end (`peak_rss_kib` in its `--json`), or else the last one
//! sampled while it ran.
//!
//! A round of N clients within the server's session limit starts them all at once. A round
//! beyond the limit starts `limit` clients, waits until the server has accepted each of them
//! (the client says `session accepted` on standard error), then starts the others while those
//! sessions run: the extra ones must be refused with the server's `busy:` reason, which is
//! counted as [`Outcome::Busy`], not as a failure.
//!
//! Nothing can hang: the processes' start is bounded, every client has a wall-clock deadline
//! (killed past it, counted as failed) on top of its own `--timeout-secs`, and the dealer and
//! the server are killed when the run ends, however it ends.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use privlm_protocols::channel::tls::{Fingerprint, Identity};
use serde::Serialize;

use super::report::human_bytes;
use crate::model::Model;
use crate::model::config::ModelConfig;
use crate::secure::CostReport;

/// What went wrong before or around the clients (a client's own failure is an
/// [`Outcome::Failed`] in the report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot run (no binaries, no model, no rounds, ...).
    #[error("{0}")]
    Config(String),
    /// The dealer or the server did not start, or stopped.
    #[error("{name} {reason}")]
    Process {
        /// `privlm-dealer` or `privlm-server`.
        name: &'static str,
        /// What happened, with the end of its log.
        reason: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Io { what, source }
}

/// The three programs' executables.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `privlm-dealer`.
    pub dealer: PathBuf,
    /// `privlm-server`.
    pub server: PathBuf,
    /// `privlm-client`.
    pub client: PathBuf,
}

impl Binaries {
    /// The programs in the directory of the running executable (or its parent, for test
    /// executables in `target/*/deps`).
    pub fn beside_current_exe() -> Result<Self, LoadError> {
        let exe = std::env::current_exe().map_err(io("locating the running executable"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            let b = Binaries::in_dir(d);
            if b.missing().is_none() {
                return Ok(b);
            }
        }
        let b = Binaries::in_dir(dir);
        Err(LoadError::Config(format!(
            "{} not found beside {}: build the three programs first, for example \
             `cargo build --release --features insecure-ideal --bins`",
            b.missing().unwrap_or_default(),
            exe.display()
        )))
    }

    /// `privlm-dealer`, `privlm-server` and `privlm-client` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        let p = |n: &str| dir.join(format!("{n}{}", std::env::consts::EXE_SUFFIX));
        Binaries {
            dealer: p("privlm-dealer"),
            server: p("privlm-server"),
            client: p("privlm-client"),
        }
    }

    fn missing(&self) -> Option<String> {
        [&self.dealer, &self.server, &self.client]
            .into_iter()
            .find(|p| !p.is_file())
            .map(|p| p.display().to_string())
    }
}

/// The model the server hosts.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A model directory (for example `models/sm_ln_g`).
    Dir(PathBuf),
    /// Seeded random weights of this shape ([`Model::random`]), saved in the run's temporary
    /// directory (byte-level tokenizer: the vocabulary must be 256).
    Random {
        /// Architecture and shapes.
        config: ModelConfig,
        /// The weights' seed.
        seed: u64,
    },
}

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The programs.
    pub binaries: Binaries,
    /// The model.
    pub model: ModelSource,
    /// Concurrent clients of each round, in order (for example 1, 2, 4, 8, 9).
    pub rounds: Vec<usize>,
    /// The server's `--max-sessions`.
    pub max_sessions: usize,
    /// Every client's prompt.
    pub prompt: String,
    /// Tokens each client generates.
    pub new_tokens: u32,
    /// A client's wall-clock deadline (it is killed and counted as failed past it); also the
    /// bound on waiting for the first `max_sessions` clients of a round beyond the limit to be
    /// accepted.
    pub session_timeout: Duration,
}

impl LoadConfig {
    /// 1, 2, 4, 8 clients up to `max_sessions`, then `max_sessions + 1`.
    pub fn default_rounds(max_sessions: usize) -> Vec<usize> {
        let mut r: Vec<usize> = [1, 2, 4, 8]
            .into_iter()
            .filter(|&n| n <= max_sessions)
            .collect();
        if r.last() != Some(&max_sessions) && max_sessions > 8 {
            r.push(max_sessions);
        }
        r.push(max_sessions + 1);
        r
    }
}

/// How a client session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Generated its tokens.
    Ok,
    /// Refused by the server with its `busy:` reason.
    Busy,
    /// Anything else (an error, a crash, killed at its deadline).
    Failed,
}

/// Bytes of one session, as the client counted them (all phases).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SessionBytes {
    /// Client to server.
    pub client_to_server: u64,
    /// Server to client.
    pub server_to_client: u64,
    /// Dealer to client.
    pub dealer_to_client: u64,
}

/// One client process.
#[derive(Clone, Debug, Serialize)]
pub struct SessionReport {
    /// How it ended.
    pub outcome: Outcome,
    /// Seconds from its start to its exit.
    pub seconds: f64,
    /// The refusal or the error (its last `error:` line, or why it was killed).
    pub message: Option<String>,
    /// The generated tokens (sessions that ended well).
    pub tokens: Vec<u32>,
    /// Its peak resident set in KiB (its own report at its end, or the last sample).
    pub peak_rss_kib: Option<u64>,
    /// Its byte counts (sessions that ended well).
    pub bytes: Option<SessionBytes>,
}

/// Latency percentiles over a round's successful sessions, in seconds (nearest rank).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Of `xs` (None when empty).
    pub fn of(xs: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = xs.to_vec();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Percentiles {
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// One round: N clients at once.
#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    /// N.
    pub clients: usize,
    /// Beyond the session limit: the first `max_sessions` clients were accepted before the
    /// others started.
    pub staged: bool,
    /// Sessions that generated their tokens.
    pub ok: usize,
    /// Sessions refused as busy.
    pub busy: usize,
    /// Sessions that failed otherwise.
    pub failed: usize,
    /// Seconds from the first client's start to the last one's exit.
    pub wall_seconds: f64,
    /// Latency of the successful sessions.
    pub latency: Option<Percentiles>,
    /// Successful sessions per second of wall time.
    pub sessions_per_sec: f64,
    /// Generated tokens per second of wall time (all successful sessions).
    pub tokens_per_sec: f64,
    /// The server's peak resident set in KiB.
    pub server_peak_rss_kib: Option<u64>,
    /// The dealer's peak resident set in KiB.
    pub dealer_peak_rss_kib: Option<u64>,
    /// The largest client peak resident set in KiB.
    pub client_peak_rss_kib: Option<u64>,
    /// Whether the server's and the dealer's peaks are this round's (reset before it) or the
    /// running peaks since they started.
    pub peak_per_round: bool,
    /// The bytes of one successful session (the first).
    pub bytes_per_session: Option<SessionBytes>,
    /// `/proc/loadavg`'s three load averages at the round's end.
    pub load_average: String,
    /// Every client, in start order.
    pub sessions: Vec<SessionReport>,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// The model (directory name, or `random` with its shape).
    pub model: String,
    /// Its architecture (as the client reports it).
    pub architecture: String,
    /// The server's `--max-sessions`.
    pub max_sessions: usize,
    /// The prompt.
    pub prompt: String,
    /// Tokens per session.
    pub new_tokens: u32,
    /// Load averages before the first round.
    pub load_average_before: String,
    /// The rounds.
    pub rounds: Vec<RoundReport>,
}

/// Progress of a run.
#[derive(Debug)]
pub enum LoadEvent<'a> {
    /// The dealer and the server are up.
    Ready {
        /// The server's address.
        server: &'a str,
        /// The dealer's address.
        dealer: &'a str,
    },
    /// A round starts.
    RoundStarted {
        /// Its clients.
        clients: usize,
    },
    /// A client ended.
    SessionEnded(&'a SessionReport),
    /// A round ended.
    RoundEnded(&'a RoundReport),
}

/// `/proc/loadavg`'s three load averages (`?` where unavailable).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The peak resident set (`VmHWM`) of process `pid` in KiB, while it runs (Linux).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// This process's own peak resident set in KiB (Linux).
pub fn own_peak_rss_kib() -> Option<u64> {
    status_kib("/proc/self/status", "VmHWM:")
}

fn status_kib(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    let line = s.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Resets the peak resident set of `pid` to its current one (`clear_refs` 5); false where
/// refused.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// A long-running process killed when dropped; its standard error goes to a log file.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
    addr: String,
    fingerprint: Fingerprint,
}

impl Daemon {
    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// An error if it exited.
    fn check_alive(&mut self) -> Result<(), LoadError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(LoadError::Process {
                name: self.name,
                reason: format!("exited ({st}); its log ends with:\n{}", self.log_tail()),
            }),
            Err(e) => Err(io(format!("checking {}", self.name))(e)),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `cmd` with its standard error in `log`, and reads `NAME certificate fingerprint HEX`
/// and `NAME listening on ADDR` from its standard output within [`START_TIMEOUT`].
fn start_daemon(mut cmd: Command, name: &'static str, log: PathBuf) -> Result<Daemon, LoadError> {
    let err = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(io(format!("starting {name}")))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (fp_prefix, addr_prefix) = (
            format!("{name} certificate fingerprint "),
            format!("{name} listening on "),
        );
        let mut fp = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(f) = line.strip_prefix(&fp_prefix) {
                fp = Fingerprint::from_hex(f.trim()).ok();
            }
            if let Some(a) = line.strip_prefix(&addr_prefix) {
                let _ = tx.send((fp, a.trim().to_string()));
                break;
            }
        }
        // Keep draining so that the process never blocks on a full pipe.
        for _ in lines {}
    });
    let got = rx.recv_timeout(START_TIMEOUT);
    let fail = |mut child: Child, reason: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(LoadError::Process { name, reason })
    };
    match got {
        Ok((Some(fingerprint), addr)) => Ok(Daemon {
            name,
            child,
            log,
            addr,
            fingerprint,
        }),
        Ok((None, _)) => fail(
            child,
            "printed no certificate fingerprint before its address".into(),
        ),
        Err(_) => {
            let tail = log_tail(&log);
            fail(
                child,
                format!(
                    "did not say where it listens within {START_TIMEOUT:?}; its log ends with:\n{tail}"
                ),
            )
        }
    }
}

/// A temporary directory removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn work_dir() -> Result<WorkDir, LoadError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("privlm-load-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
    Ok(WorkDir(d))
}

/// What a client thread reports while it runs.
enum ClientNote {
    /// Client `i` was accepted.
    Accepted(usize),
    /// Client `i` ended.
    Ended(usize, SessionReport),
}

/// Runs one client process to its end or its deadline.
fn run_client(
    i: usize,
    mut cmd: Command,
    json: PathBuf,
    deadline: Duration,
    notes: mpsc::Sender<ClientNote>,
) -> SessionReport {
    let started = Instant::now();
    let failed = |msg: String, secs: f64| SessionReport {
        outcome: Outcome::Failed,
        seconds: secs,
        message: Some(msg),
        tokens: Vec::new(),
        peak_rss_kib: None,
        bytes: None,
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start privlm-client: {e}"), 0.0),
    };
    let pid = child.id();
    let mut pipe = child.stderr.take().expect("piped");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let accepted_tx = notes.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut told = false;
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut s = sink.lock().expect("stderr buffer");
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
            if !told && s.contains("session accepted") {
                told = true;
                let _ = accepted_tx.send(ClientNote::Accepted(i));
            }
        }
    });
    let mut sampled = None;
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(format!("waiting for privlm-client: {e}")),
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(format!("killed at its deadline of {deadline:?}"));
        }
        if last_sample.elapsed() >= Duration::from_millis(20) {
            sampled = peak_rss_kib(pid).or(sampled);
            last_sample = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = started.elapsed().as_secs_f64();
    let _ = reader.join();
    let err = stderr.lock().expect("stderr buffer").clone();
    let last_error = || {
        err.lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .or_else(|| err.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("(nothing on standard error)")
            .trim()
            .to_string()
    };
    let report = match status {
        Err(msg) => SessionReport {
            peak_rss_kib: sampled,
            ..failed(msg, seconds)
        },
        Ok(st) if st.success() => match read_client_json(&json) {
            Ok((tokens, bytes, peak)) => SessionReport {
                outcome: Outcome::Ok,
                seconds,
                message: None,
                tokens,
                peak_rss_kib: peak.or(sampled),
                bytes: Some(bytes),
            },
            Err(e) => SessionReport {
                peak_rss_kib: sampled,
                ..failed(
                    format!("exited well but its --json is unusable: {e}"),
                    seconds,
                )
            },
        },
        Ok(st) => {
            let msg = last_error();
            SessionReport {
                outcome: if err.contains("busy:") {
                    Outcome::Busy
                } else {
                    Outcome::Failed
                },
                seconds,
                message: Some(if err.contains("busy:") {
                    msg
                } else {
                    format!("{msg} ({st})")
                }),
                tokens: Vec::new(),
                peak_rss_kib: sampled,
                bytes: None,
            }
        }
    };
    let _ = notes.send(ClientNote::Ended(i, report.clone()));
    report
}

/// The tokens, the byte counts and the peak resident set of a client's `--json`.
fn read_client_json(path: &Path) -> Result<(Vec<u32>, SessionBytes, Option<u64>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let tokens: Vec<u32> =
        serde_json::from_value(v["tokens"].clone()).map_err(|e| e.to_string())?;
    let cost: CostReport = serde_json::from_value(v["cost"].clone()).map_err(|e| e.to_string())?;
    let (peer, dealer) = cost.total(None);
    let bytes = SessionBytes {
        client_to_server: peer.bytes_sent,
        server_to_client: peer.bytes_recv,
        dealer_to_client: dealer.bytes_recv,
    };
    Ok((tokens, bytes, v["peak_rss_kib"].as_u64()))
}

/// Name and architecture of the model from a client's `--json`.
fn model_of(path: &Path) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some((
        v["model"].as_str()?.into(),
        v["architecture"].as_str()?.into(),
    ))
}

/// Runs the load (see the module docs): starts the dealer and the server, runs each round,
/// stops them, and reports.
pub fn run_load(
    cfg: &LoadConfig,
    on_event: &mut dyn FnMut(LoadEvent<'_>),
) -> Result<LoadReport, LoadError> {
    if let Some(m) = cfg.binaries.missing() {
        return Err(LoadError::Config(format!("{m} does not exist")));
    }
    if cfg.rounds.is_empty() || cfg.rounds.contains(&0) {
        return Err(LoadError::Config(
            "every round needs at least one client".into(),
        ));
    }
    if cfg.max_sessions == 0 || cfg.new_tokens == 0 || cfg.prompt.is_empty() {
        return Err(LoadError::Config(
            "the session limit, the tokens and the prompt must not be empty".into(),
        ));
    }
    let work = work_dir()?;
    let dir = &work.0;
    let (model_dir, model_name) = match &cfg.model {
        ModelSource::Dir(d) => {
            if !d.is_dir() {
                return Err(LoadError::Config(format!(
                    "model directory {} does not exist",
                    d.display()
                )));
            }
            let name = d
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "model".into());
            (d.clone(), name)
        }
        ModelSource::Random { config, seed } => {
            let d = dir.join("random-model");
            Model::random(config.clone(), *seed)
                .and_then(|m| m.save(&d))
                .map_err(|e| LoadError::Config(format!("random model: {e}")))?;
            let name = format!(
                "random-L{}-d{}-h{}-v{}-seed{seed}",
                config.n_layer, config.d_model, config.n_head, config.vocab_size
            );
            (d, name)
        }
    };
    let ident = |n: &str| -> Result<Fingerprint, LoadError> {
        let p = dir.join(n);
        Identity::load_or_create(&p)
            .map(|i| i.fingerprint())
            .map_err(|e| LoadError::Config(format!("identity {}: {e}", p.display())))
    };
    let client_fp = ident("client-id")?;
    let server_fp = ident("server-id")?;
    let most = cfg.rounds.iter().copied().max().unwrap_or(1);
    // Connections from 127.0.0.1: one per client at the server, two per session at the dealer.
    let per_source = (2 * most + 8).max(32).to_string();
    let idle = cfg.session_timeout.as_secs().max(1).to_string();

    let mut cmd = Command::new(&cfg.binaries.dealer);
    cmd.args(["--listen", "127.0.0.1:0", "--identity"])
        .arg(dir.join("dealer-id"))
        .args(["--peer-fingerprint", &client_fp.to_hex()])
        .args(["--peer-fingerprint", &server_fp.to_hex()])
        .args(["--max-sessions", &most.max(cfg.max_sessions).to_string()])
        .args(["--max-connections-per-source", &per_source])
        .args(["--pairing-timeout-secs", &idle])
        .args(["--idle-timeout-secs", &idle]);
    let mut dealer = start_daemon(cmd, "privlm-dealer", dir.join("dealer.log"))?;

    let mut cmd = Command::new(&cfg.binaries.server);
    cmd.arg("--model")
        .arg(&model_dir)
        .args(["--name", &model_name])
        .args(["--listen", "127.0.0.1:0", "--identity"])
        .arg(dir.join("server-id"))
        .args(["--dealer", &dealer.addr])
        .args(["--dealer-fingerprint", &dealer.fingerprint.to_hex()])
        .args(["--client-fingerprint", &client_fp.to_hex()])
        .args(["--max-sessions", &cfg.max_sessions.to_string()])
        .args(["--max-new-tokens", &cfg.new_tokens.to_string()])
        .args(["--max-connections-per-source", &per_source])
        .args(["--idle-timeout-secs", &idle]);
    let mut server = start_daemon(cmd, "privlm-server", dir.join("server.log"))?;
    on_event(LoadEvent::Ready {
        server: &server.addr,
        dealer: &dealer.addr,
    });

    let mut report = LoadReport {
        model: model_name,
        architecture: String::new(),
        max_sessions: cfg.max_sessions,
        prompt: cfg.prompt.clone(),
        new_tokens: cfg.new_tokens,
        load_average_before: load_average(),
        rounds: Vec::new(),
    };
    let mut k = 0usize;
    for &n in &cfg.rounds {
        on_event(LoadEvent::RoundStarted { clients: n });
        dealer.check_alive()?;
        server.check_alive()?;
        let server_pid = server.child.id();
        let dealer_pid = dealer.child.id();
        let peak_per_round = reset_peak(server_pid) & reset_peak(dealer_pid);
        let (tx, rx) = mpsc::channel();
        let staged = n > cfg.max_sessions;
        let first = if staged { cfg.max_sessions } else { n };
        let started = Instant::now();
        let mut handles = Vec::with_capacity(n);
        let spawn = |handles: &mut Vec<_>, k: &mut usize| {
            *k += 1;
            let json = dir.join(format!("client-{k}.json"));
            let mut cmd = Command::new(&cfg.binaries.client);
            cmd.arg("--identity")
                .arg(dir.join("client-id"))
                .args(["--server", &server.addr])
                .args(["--server-fingerprint", &server.fingerprint.to_hex()])
                .args(["--dealer", &dealer.addr])
                .args(["--dealer-fingerprint", &dealer.fingerprint.to_hex()])
                .args(["--prompt", &cfg.prompt])
                .args(["--max-new-tokens", &cfg.new_tokens.to_string()])
                .args(["--timeout-secs", &idle, "--connect-timeout-secs", "10"])
                .arg("--quiet")
                .arg("--json")
                .arg(&json);
            let (tx, deadline, i) = (tx.clone(), cfg.session_timeout, handles.len());
            handles.push(std::thread::spawn(move || {
                run_client(i, cmd, json, deadline, tx)
            }));
        };
        for _ in 0..first {
            spawn(&mut handles, &mut k);
        }
        if staged {
            // Wait until each of the first clients was accepted (or ended).
            let mut settled = std::collections::HashSet::new();
            let wait_until = Instant::now() + cfg.session_timeout;
            while settled.len() < first {
                let left = wait_until.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(ClientNote::Accepted(i)) => {
                        settled.insert(i);
                    }
                    Ok(ClientNote::Ended(i, r)) => {
                        settled.insert(i);
                        on_event(LoadEvent::SessionEnded(&r));
                    }
                    Err(_) => break,
                }
            }
            for _ in first..n {
                spawn(&mut handles, &mut k);
            }
        }
        drop(tx);
        for note in rx.iter() {
            if let ClientNote::Ended(_, r) = note {
                on_event(LoadEvent::SessionEnded(&r));
            }
        }
        let sessions: Vec<SessionReport> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| SessionReport {
                    outcome: Outcome::Failed,
                    seconds: 0.0,
                    message: Some("the client's monitor thread panicked".into()),
                    tokens: Vec::new(),
                    peak_rss_kib: None,
                    bytes: None,
                })
            })
            .collect();
        let wall = started.elapsed().as_secs_f64();
        if report.architecture.is_empty() {
            for i in 1..=k {
                if let Some((_, arch)) = model_of(&dir.join(format!("client-{i}.json"))) {
                    report.architecture = arch;
                    break;
                }
            }
        }
        let count = |o| sessions.iter().filter(|s| s.outcome == o).count();
        let ok = count(Outcome::Ok);
        let lat: Vec<f64> = sessions
            .iter()
            .filter(|s| s.outcome == Outcome::Ok)
            .map(|s| s.seconds)
            .collect();
        let tokens: usize = sessions.iter().map(|s| s.tokens.len()).sum();
        let round = RoundReport {
            clients: n,
            staged,
            ok,
            busy: count(Outcome::Busy),
            failed: count(Outcome::Failed),
            wall_seconds: wall,
            latency: Percentiles::of(&lat),
            sessions_per_sec: ok as f64 / wall,
            tokens_per_sec: tokens as f64 / wall,
            server_peak_rss_kib: peak_rss_kib(server_pid),
            dealer_peak_rss_kib: peak_rss_kib(dealer_pid),
            client_peak_rss_kib: sessions.iter().filter_map(|s| s.peak_rss_kib).max(),
            peak_per_round,
            bytes_per_session: sessions.iter().find_map(|s| s.bytes),
            load_average: load_average(),
            sessions,
        };
        on_event(LoadEvent::RoundEnded(&round));
        report.rounds.push(round);
    }
    dealer.check_alive()?;
    server.check_alive()?;
    Ok(report)
}

fn kib(v: Option<u64>) -> String {
    v.map_or("-".into(), |k| human_bytes(k * 1024))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| format!("{s:.3}"))
}

impl LoadReport {
    /// The terminal table: one row per round (latencies in seconds; memory is the peak
    /// resident set; bytes are one session's, as its client counted them).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "load: model `{}` ({}), privlm-server --max-sessions {}; each client generates {} \
             tokens after {:?}; load average {} before",
            self.model,
            self.architecture,
            self.max_sessions,
            self.new_tokens,
            self.prompt,
            self.load_average_before
        );
        let _ = writeln!(
            s,
            "{:>7} {:>4} {:>4} {:>4} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:<14}",
            "clients",
            "ok",
            "busy",
            "fail",
            "p50 s",
            "p90 s",
            "p99 s",
            "max s",
            "sess/s",
            "tok/s",
            "server",
            "dealer",
            "client",
            "c→s",
            "s→c",
            "dealer→c",
            "load avg"
        );
        let _ = writeln!(
            s,
            "{:>22} | {:^31} | {:^15} | {:^32} | {:^32} |",
            "", "latency per session", "throughput", "peak RSS", "bytes per session"
        );
        s.push_str(&"-".repeat(148));
        s.push('\n');
        for r in &self.rounds {
            let l = r.latency;
            let b = r.bytes_per_session;
            let _ = writeln!(
                s,
                "{:>7} {:>4} {:>4} {:>4} | {:>7} {:>7} {:>7} {:>7} | {:>7.2} {:>7.2} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:<14}",
                format!("{}{}", r.clients, if r.staged { "*" } else { "" }),
                r.ok,
                r.busy,
                r.failed,
                secs(l.map(|l| l.p50)),
                secs(l.map(|l| l.p90)),
                secs(l.map(|l| l.p99)),
                secs(l.map(|l| l.max)),
                r.sessions_per_sec,
                r.tokens_per_sec,
                kib(r.server_peak_rss_kib),
                kib(r.dealer_peak_rss_kib),
                kib(r.client_peak_rss_kib),
                b.map_or("-".into(), |b| human_bytes(b.client_to_server)),
                b.map_or("-".into(), |b| human_bytes(b.server_to_client)),
                b.map_or("-".into(), |b| human_bytes(b.dealer_to_client)),
                r.load_average
            );
        }
        if self.rounds.iter().any(|r| r.staged) {
            let _ = writeln!(
                s,
                "* beyond the limit: {} clients started first and were accepted, then the others",
                self.max_sessions
            );
        }
        if self.rounds.iter().any(|r| !r.peak_per_round) {
            s.push_str(
                "server and dealer peaks are since their start (the per-round reset was refused)\n",
            );
        }
        for r in &self.rounds {
            for m in r
                .sessions
                .iter()
                .filter(|x| x.outcome != Outcome::Ok)
                .filter_map(|x| x.message.as_deref())
                .take(3)
            {
                let _ = writeln!(s, "{} clients: {m}", r.clients);
            }
        }
        s
    }

    /// One CSV line per round (latencies in seconds, memory in KiB, bytes of one session).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "model,architecture,max_sessions,new_tokens,clients,staged,ok,busy,failed,wall_secs,p50_secs,p90_secs,p99_secs,max_secs,sessions_per_sec,tokens_per_sec,server_peak_rss_kib,dealer_peak_rss_kib,client_peak_rss_kib,peak_per_round,c2s_bytes,s2c_bytes,dealer_to_client_bytes,load_average\n",
        );
        let opt = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let optf = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
        for r in &self.rounds {
            let l = r.latency;
            let b = r.bytes_per_session;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{:.6},{},{},{},{},{:.6},{:.6},{},{},{},{},{},{},{},{}",
                self.model,
                self.architecture,
                self.max_sessions,
                self.new_tokens,
                r.clients,
                r.staged,
                r.ok,
                r.busy,
                r.failed,
                r.wall_seconds,
                optf(l.map(|l| l.p50)),
                optf(l.map(|l| l.p90)),
                optf(l.map(|l| l.p99)),
                optf(l.map(|l| l.max)),
                r.sessions_per_sec,
                r.tokens_per_sec,
                opt(r.server_peak_rss_kib),
                opt(r.dealer_peak_rss_kib),
                opt(r.client_peak_rss_kib),
                r.peak_per_round,
                opt(b.map(|b| b.client_to_server)),
                opt(b.map(|b| b.server_to_client)),
                opt(b.map(|b| b.dealer_to_client)),
                r.load_average
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(Percentiles::of(&[]), None);
        let p = Percentiles::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (2.0, 3.0, 3.0, 3.0));
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&xs).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    }

    #[test]
    fn default_rounds_end_beyond_the_limit() {
        assert_eq!(LoadConfig::default_rounds(8), [1, 2, 4, 8, 9]);
        assert_eq!(LoadConfig::default_rounds(2), [1, 2, 3]);
        assert_eq!(LoadConfig::default_rounds(12), [1, 2, 4, 8, 12, 13]);
    }

    #[test]
    fn peak_rss_of_this_process() {
        if cfg!(target_os = "linux") {
            let own = own_peak_rss_kib().unwrap();
            assert!(own > 0);
            assert!(peak_rss_kib(std::process::id()).unwrap() >= own);
        }
    }
}
