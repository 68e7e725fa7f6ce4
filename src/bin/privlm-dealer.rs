//! `privlm-dealer`: the third, non-colluding party that serves correlated randomness (Beaver
//! triples, matrix triples, square and truncation pairs, weight masks) to a client and a server.
//!
//! It listens for connections, reads each one's hello, pairs the client (P0) and the server (P1)
//! of the same session id, and serves each pair with
//! `privlm_protocols::beaver::dealer::serve_paired` in its own task. The dealer never sees inputs
//! or weights. See `docs/protocols/linear.md`.
//!
//! Transport: every connection is TLS 1.3 (`privlm_protocols::channel::tls`) with the dealer's
//! own certificate (created on first run in `--identity DIR`) and the parties' certificates
//! pinned by fingerprint (`--peer-fingerprint`, once per party). Plain TCP is served only when
//! the user passes `--insecure-plaintext-tcp` (local experiments). TLS handshakes run one at a
//! time in the accept loop, each bounded by a timeout; a failed one affects only its connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use privlm_protocols::beaver::dealer::{
    DealerConfig, Hello, check_hellos, read_hello, serve_paired,
};
use privlm_protocols::beaver::{INSECURE_IDEAL_DEALER_FLAG, require_insecure_opt_in};
use privlm_protocols::channel::tls::{Fingerprint, Identity, TlsError, TlsListener};
use privlm_protocols::channel::{Channel, ChannelConfig, FramedChannel};
use privlm_protocols::prg::Prg;
use privlm_protocols::share::Party;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

const USAGE: &str = "usage: privlm-dealer --listen ADDR --identity DIR --peer-fingerprint HEX... \
[--sessions N] [--chunk-elems N] [--idle-timeout-secs N] [--insecure-plaintext-tcp] \
[--insecure-ideal-dealer --seed N]

  --listen ADDR              address to listen on, for example 127.0.0.1:7400
  --identity DIR             the dealer's TLS certificate and key (created on first run)
  --peer-fingerprint HEX     SHA-256 fingerprint of a party's certificate (repeat per party)
  --sessions N               stop after serving N sessions (default: serve forever)
  --chunk-elems N            ring elements per correction message (default 65536)
  --idle-timeout-secs N      how long to wait for a party's next request (default 3600)
  --insecure-plaintext-tcp   serve over plain TCP (no TLS): local experiments only
  --insecure-ideal-dealer    allow --seed (a fixed dealer seed makes every triple predictable)
  --seed N                   derive every session's seeds from N (tests and benches only)";

#[derive(Debug)]
struct Opts {
    listen: String,
    sessions: Option<u64>,
    chunk_elems: usize,
    idle_timeout: Duration,
    plaintext_tcp: bool,
    insecure_ideal: bool,
    seed: Option<u64>,
    identity: Option<PathBuf>,
    peers: Vec<Fingerprint>,
}

fn parse_args(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        listen: String::new(),
        sessions: None,
        chunk_elems: privlm_protocols::beaver::dealer::DEFAULT_CHUNK_ELEMS,
        idle_timeout: Duration::from_secs(3600),
        plaintext_tcp: false,
        insecure_ideal: false,
        seed: None,
        identity: None,
        peers: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--listen" => o.listen = value("--listen")?,
            "--sessions" => o.sessions = Some(value("--sessions")?.parse()?),
            "--chunk-elems" => o.chunk_elems = value("--chunk-elems")?.parse()?,
            "--idle-timeout-secs" => {
                o.idle_timeout = Duration::from_secs(value("--idle-timeout-secs")?.parse()?)
            }
            "--insecure-plaintext-tcp" => o.plaintext_tcp = true,
            "--identity" => o.identity = Some(PathBuf::from(value("--identity")?)),
            "--peer-fingerprint" => o.peers.push(
                Fingerprint::from_hex(&value("--peer-fingerprint")?)
                    .context("--peer-fingerprint")?,
            ),
            "--seed" => o.seed = Some(value("--seed")?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            f if f == INSECURE_IDEAL_DEALER_FLAG => o.insecure_ideal = true,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if o.listen.is_empty() {
        bail!("--listen is required\n{USAGE}");
    }
    if o.chunk_elems == 0 {
        bail!("--chunk-elems must be positive");
    }
    if o.seed.is_some() {
        require_insecure_opt_in(o.insecure_ideal)?;
    }
    if !o.plaintext_tcp && (o.identity.is_none() || o.peers.is_empty()) {
        bail!(
            "TLS needs --identity DIR and a --peer-fingerprint for each party \
             (or --insecure-plaintext-tcp for local experiments)\n{USAGE}"
        );
    }
    Ok(o)
}

fn channel_config(opts: &Opts) -> ChannelConfig {
    ChannelConfig {
        timeout: opts.idle_timeout,
        ..ChannelConfig::default()
    }
}

/// The transport boundary: where connections come from.
enum Acceptor {
    Tls(TlsListener),
    Plain(TcpListener, ChannelConfig),
}

impl Acceptor {
    async fn bind(opts: &Opts) -> anyhow::Result<Self> {
        if opts.plaintext_tcp {
            let l = TcpListener::bind(&opts.listen)
                .await
                .with_context(|| format!("cannot listen on {}", opts.listen))?;
            return Ok(Acceptor::Plain(l, channel_config(opts)));
        }
        let dir = opts.identity.as_deref().context("--identity is required")?;
        let identity = Identity::load_or_create(dir)
            .with_context(|| format!("cannot load or create the identity in {}", dir.display()))?;
        eprintln!(
            "privlm-dealer certificate fingerprint {}",
            identity.fingerprint()
        );
        let l = TlsListener::bind(
            opts.listen.as_str(),
            &identity,
            &opts.peers,
            channel_config(opts),
        )
        .await?;
        Ok(Acceptor::Tls(l))
    }

    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(match self {
            Acceptor::Tls(l) => l.local_addr()?,
            Acceptor::Plain(l, _) => l.local_addr()?,
        })
    }

    /// The next connection as a channel. `Ok(None)`: one connection failed (logged), the
    /// listener keeps going; `Err`: the listener itself failed.
    async fn accept(&self) -> anyhow::Result<Option<(FramedChannel, SocketAddr)>> {
        match self {
            Acceptor::Plain(l, cfg) => {
                let (stream, peer) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok(Some((FramedChannel::new(stream, cfg.clone()), peer)))
            }
            Acceptor::Tls(l) => match l.accept().await {
                Ok((ch, info)) => Ok(Some((ch, info.addr))),
                Err(e @ TlsError::Accept(_)) => Err(e.into()),
                Err(e) => {
                    eprintln!("refused a connection: {e}");
                    Ok(None)
                }
            },
        }
    }
}

type Pending = Arc<Mutex<HashMap<[u8; 32], (Party, FramedChannel)>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse_args(&args)?;
    let acceptor = Acceptor::bind(&opts).await?;
    eprintln!("privlm-dealer listening on {}", acceptor.local_addr()?);
    run(acceptor, opts).await
}

/// Reads a connection's hello (bounded by the handshake timeout) and either parks it until
/// the other party of its session arrives or hands the pair to the main loop.
async fn handshake(
    mut ch: FramedChannel,
    peer: std::net::SocketAddr,
    pending: Pending,
    paired: tokio::sync::mpsc::Sender<(FramedChannel, FramedChannel)>,
) {
    let hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_hello(&mut ch)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            eprintln!("connection from {peer}: no valid hello: {e}");
            return;
        }
        Err(_) => {
            let _ = ch.abort("no hello within the handshake timeout").await;
            eprintln!("connection from {peer}: no hello within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let mut map = pending.lock().await;
    let Some((other_party, mut other)) = map.remove(&hello.session) else {
        map.insert(hello.session, (hello.party, ch));
        return;
    };
    drop(map);
    let theirs = Hello {
        party: other_party,
        ..hello.clone()
    };
    if let Err(e) = check_hellos(&hello, &theirs) {
        let reason = e.to_string();
        let _ = tokio::join!(ch.abort(&reason), other.abort(&reason));
        eprintln!("refused a session: {reason}");
        return;
    }
    let pair = if hello.party == Party::P0 {
        (ch, other)
    } else {
        (other, ch)
    };
    let _ = paired.send(pair).await;
}

/// How long a new connection may take to send its hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections, pairs them by session id, and serves each pair in its own task.
async fn run(acceptor: Acceptor, opts: Opts) -> anyhow::Result<()> {
    let cfg = DealerConfig {
        chunk_elems: opts.chunk_elems,
        ..DealerConfig::default()
    };
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let (paired_tx, mut paired_rx) = tokio::sync::mpsc::channel(16);
    let mut master = opts.seed.map(Prg::from_u64);
    let mut started = 0u64;
    let mut sessions = tokio::task::JoinSet::new();
    while opts.sessions.is_none_or(|n| started < n) {
        tokio::select! {
            accepted = acceptor.accept() => {
                let Some((ch, peer)) = accepted? else { continue };
                tokio::spawn(handshake(ch, peer, pending.clone(), paired_tx.clone()));
            }
            Some((p0, p1)) = paired_rx.recv() => {
                let mut rng = match master.as_mut() {
                    Some(m) => Prg::from_seed(m.gen_seed()),
                    None => Prg::from_os(),
                };
                let cfg = cfg.clone();
                started += 1;
                let n = started;
                sessions.spawn(async move {
                    match serve_paired(p0, p1, &cfg, &mut rng).await {
                        Ok(s) => eprintln!(
                            "session {n}: served {} requests, {} correction elements",
                            s.requests, s.correction_elems
                        ),
                        Err(e) => eprintln!("session {n} ended with an error: {e}"),
                    }
                });
            }
        }
    }
    while sessions.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use privlm_protocols::beaver::TripleProvider;
    use privlm_protocols::beaver::dealer::DealerClient;
    use tokio::net::TcpStream;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_are_enforced() {
        let e = parse_args(&args("--listen 127.0.0.1:0")).unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        let e = parse_args(&args(
            "--listen 127.0.0.1:0 --insecure-plaintext-tcp --seed 3",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("--insecure-ideal-dealer"), "{e}");
        let o = parse_args(&args(
            "--listen 127.0.0.1:0 --insecure-plaintext-tcp --insecure-ideal-dealer --seed 3",
        ))
        .unwrap();
        assert_eq!(o.seed, Some(3));
        assert!(parse_args(&args("--bogus")).is_err());
    }

    /// Two sessions whose connections interleave are paired by session id and served over TCP.
    #[tokio::test]
    async fn serves_interleaved_sessions_over_tcp() {
        let opts = parse_args(&args(
            "--listen 127.0.0.1:0 --insecure-plaintext-tcp --sessions 2 --chunk-elems 5",
        ))
        .unwrap();
        let acceptor = Acceptor::bind(&opts).await.unwrap();
        let addr = acceptor.local_addr().unwrap();
        let server = tokio::spawn(run(acceptor, opts));
        let connect = |party, sid: u8| async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let ch = FramedChannel::new(s, ChannelConfig::default());
            DealerClient::connect(ch, party, [sid; 32]).await.unwrap()
        };
        // Four connections at once, two sessions interleaved.
        let (a0, b1, b0, a1) = tokio::join!(
            connect(Party::P0, 1),
            connect(Party::P1, 2),
            connect(Party::P0, 2),
            connect(Party::P1, 1)
        );
        for (mut p0, mut p1) in [(a0, a1), (b0, b1)] {
            let (x, y) = tokio::join!(p0.elementwise(12), p1.elementwise(12));
            let (x, y) = (x.unwrap(), y.unwrap());
            for i in 0..12 {
                let a = x.a.data()[i].wrapping_add(y.a.data()[i]);
                let b = x.b.data()[i].wrapping_add(y.b.data()[i]);
                let c = x.c.data()[i].wrapping_add(y.c.data()[i]);
                assert_eq!(c, a.wrapping_mul(b));
            }
            p0.into_channel().close().await.unwrap();
            p1.into_channel().close().await.unwrap();
        }
        server.await.unwrap().unwrap();
    }
}
