//! Shared helpers of the serving tests: start `privlm-dealer` and `privlm-server` as real
//! processes over loopback TLS, run `privlm-client`, talk to the server as a raw client.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privlm::protocols::channel::tls::{self, Fingerprint, Identity};
use privlm::protocols::channel::{Channel, ChannelConfig, ChannelError, FramedChannel};
use privlm::serve::control::{
    Accepted, MAX_ACCEPTED_LEN, MAX_OFFER_LEN, Offer, SERVE_PROTOCOL_VERSION, SessionId,
    SessionRequest,
};

/// A fresh directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The repository's shipped model `name`.
pub fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

/// A child process killed when dropped; its standard output and standard error are collected.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub fingerprint: Fingerprint,
    pub stderr: Arc<Mutex<String>>,
    /// Every line of its standard output (the fingerprint and address lines included).
    pub stdout: Arc<Mutex<String>>,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `cmd` and reads `NAME certificate fingerprint HEX` and `NAME listening on ADDR`
/// from its standard output.
pub fn start(mut cmd: Command, name: &str) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let out = Arc::new(Mutex::new(String::new()));
    let keep = |out: &Arc<Mutex<String>>, line: &str| {
        let mut o = out.lock().unwrap();
        o.push_str(line);
        o.push('\n');
    };
    let mut fp = None;
    let fp_prefix = format!("{name} certificate fingerprint ");
    let addr_prefix = format!("{name} listening on ");
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("{name} exited early: {}", stderr.lock().unwrap());
        };
        keep(&out, &line);
        if let Some(f) = line.strip_prefix(&fp_prefix) {
            fp = Some(Fingerprint::from_hex(f.trim()).unwrap());
        }
        if let Some(a) = line.strip_prefix(&addr_prefix) {
            let sink = out.clone();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    keep(&sink, &line);
                }
            });
            return Proc {
                child,
                addr: a.trim().to_string(),
                fingerprint: fp.expect("fingerprint before address"),
                stderr,
                stdout: out,
            };
        }
    }
}

/// Starts a dealer pinning `peers`.
pub fn start_dealer(dir: &Path, peers: &[Fingerprint]) -> Proc {
    start_dealer_with(dir, peers, &["--pairing-timeout-secs", "20"])
}

/// Starts a dealer pinning `peers`, with extra flags.
pub fn start_dealer_with(dir: &Path, peers: &[Fingerprint], extra: &[&str]) -> Proc {
    start(dealer_cmd_with(dir, peers, extra), "privlm-dealer")
}

/// The dealer's command pinning `peers` (to add flags or environment before [`start`]).
pub fn dealer_cmd(dir: &Path, peers: &[Fingerprint]) -> Command {
    dealer_cmd_with(dir, peers, &["--pairing-timeout-secs", "20"])
}

/// The dealer's command pinning `peers`, with extra flags.
pub fn dealer_cmd_with(dir: &Path, peers: &[Fingerprint], extra: &[&str]) -> Command {
    dealer_cmd_at(dir, peers, "127.0.0.1:0", extra)
}

/// The dealer's command listening on `listen` (a restarted dealer takes its old address).
pub fn dealer_cmd_at(dir: &Path, peers: &[Fingerprint], listen: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-dealer"));
    cmd.args(["--listen", listen, "--identity"])
        .arg(dir.join("dealer-id"))
        .args(extra);
    for p in peers {
        cmd.args(["--peer-fingerprint", &p.to_hex()]);
    }
    cmd
}

/// The server's identity directory under `dir` and its fingerprint (created if needed).
pub fn server_identity(dir: &Path) -> (PathBuf, Fingerprint) {
    let d = dir.join("server-id");
    let fp = Identity::load_or_create(&d).unwrap().fingerprint();
    (d, fp)
}

/// The client's identity directory under `dir` and its fingerprint (created if needed).
pub fn client_identity(dir: &Path) -> (PathBuf, Fingerprint) {
    let d = dir.join("client-id");
    let fp = Identity::load_or_create(&d).unwrap().fingerprint();
    (d, fp)
}

/// Starts a server on `model` using `dealer`, pinning `clients`, with extra flags.
pub fn start_server(
    dir: &Path,
    model: &Path,
    dealer: &Proc,
    clients: &[Fingerprint],
    extra: &[&str],
) -> Proc {
    start_server_via(dir, model, &dealer.addr, dealer, clients, extra)
}

/// Starts a server like [`start_server`] that reaches `dealer` at `dealer_addr` (a proxy in
/// front of it, for example).
pub fn start_server_via(
    dir: &Path,
    model: &Path,
    dealer_addr: &str,
    dealer: &Proc,
    clients: &[Fingerprint],
    extra: &[&str],
) -> Proc {
    start(
        server_cmd_via(dir, model, dealer_addr, dealer, clients, extra),
        "privlm-server",
    )
}

/// The server's command (to add environment before [`start`]).
pub fn server_cmd(
    dir: &Path,
    model: &Path,
    dealer: &Proc,
    clients: &[Fingerprint],
    extra: &[&str],
) -> Command {
    server_cmd_via(dir, model, &dealer.addr, dealer, clients, extra)
}

/// The server's command, reaching `dealer` at `dealer_addr`.
pub fn server_cmd_via(
    dir: &Path,
    model: &Path,
    dealer_addr: &str,
    dealer: &Proc,
    clients: &[Fingerprint],
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-server"));
    cmd.arg("--model")
        .arg(model)
        .args(["--listen", "127.0.0.1:0", "--identity"])
        .arg(dir.join("server-id"))
        .args(["--dealer", dealer_addr])
        .args(["--dealer-fingerprint", &dealer.fingerprint.to_hex()])
        .args(extra);
    for c in clients {
        cmd.args(["--client-fingerprint", &c.to_hex()]);
    }
    cmd
}

/// The client command with the usual flags (pinned server and dealer).
pub fn client_cmd(dir: &Path, server: &Proc, dealer: &Proc) -> Command {
    client_cmd_pinning(dir, server, server.fingerprint, dealer)
}

/// The client command pinning `server_fp` for the server.
pub fn client_cmd_pinning(
    dir: &Path,
    server: &Proc,
    server_fp: Fingerprint,
    dealer: &Proc,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-client"));
    cmd.arg("--identity")
        .arg(dir.join("client-id"))
        .args(["--server", &server.addr])
        .args(["--server-fingerprint", &server_fp.to_hex()])
        .args(["--dealer", &dealer.addr])
        .args(["--dealer-fingerprint", &dealer.fingerprint.to_hex()])
        .args(["--timeout-secs", "20", "--connect-timeout-secs", "5"]);
    cmd
}

/// The client command pinning `server` and `dealer` but reaching them at `server_addr` and
/// `dealer_addr` (proxies in front of them, for example), with its own timeouts (seconds).
pub fn client_cmd_via(
    dir: &Path,
    server_addr: &str,
    server: &Proc,
    dealer_addr: &str,
    dealer: &Proc,
    timeout_secs: u64,
    connect_timeout_secs: u64,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_privlm-client"));
    cmd.arg("--identity")
        .arg(dir.join("client-id"))
        .args(["--server", server_addr])
        .args(["--server-fingerprint", &server.fingerprint.to_hex()])
        .args(["--dealer", dealer_addr])
        .args(["--dealer-fingerprint", &dealer.fingerprint.to_hex()])
        .args(["--timeout-secs", &timeout_secs.to_string()])
        .args(["--connect-timeout-secs", &connect_timeout_secs.to_string()]);
    cmd
}

/// Runs a command to its end, with its output.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run the command")
}

/// A raw client: TLS to the server, read the offer.
pub async fn raw_connect(server: &Proc, id: &Identity) -> (FramedChannel, Offer) {
    let mut ch = tls::connect(
        server.addr.as_str(),
        id,
        server.fingerprint,
        ChannelConfig {
            max_message_len: MAX_OFFER_LEN,
            ..ChannelConfig::default()
        },
        Duration::from_secs(10),
    )
    .await
    .expect("TLS connect to the server");
    let offer: Offer = ch
        .recv_msg_bounded(MAX_OFFER_LEN, "offer")
        .await
        .expect("offer");
    (ch, offer)
}

/// A request of the raw client.
pub fn request(id: SessionId, prompt_len: u32, max_new: u32) -> SessionRequest {
    SessionRequest {
        version: SERVE_PROTOCOL_VERSION,
        model: None,
        session_id: id,
        prompt_len,
        max_new_tokens: max_new,
    }
}

/// Sends `req` and returns the server's answer: accepted, or the refusal's reason.
pub async fn raw_request(ch: &mut FramedChannel, req: &SessionRequest) -> Result<(), String> {
    ch.send_msg(req).await.map_err(|e| e.to_string())?;
    match ch
        .recv_msg_bounded::<Accepted>(MAX_ACCEPTED_LEN, "accepted")
        .await
    {
        Ok(a) if a.session_id == req.session_id => Ok(()),
        Ok(_) => Err("accepted another id".into()),
        Err(ChannelError::PeerAborted(r)) => Err(r),
        Err(e) => Err(e.to_string()),
    }
}
