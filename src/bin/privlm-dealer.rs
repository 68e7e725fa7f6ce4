//! `privlm-dealer`: the third, non-colluding party that serves correlated randomness (Beaver
//! triples, matrix triples, square and truncation pairs, weight masks) to a client and a server.
//!
//! It listens for connections, reads each one's hello, pairs the client (P0) and the server (P1)
//! of the same session id, and serves each pair with
//! `privlm_protocols::beaver::dealer::serve_paired` in its own task. The dealer never sees inputs
//! or weights. See `docs/protocols/linear.md`.
//!
//! Transport: every connection should be TLS 1.3 (`privlm_protocols::channel::tls`); until that
//! transport is wired in here, the binary serves plain TCP only when the user passes
//! `--insecure-plaintext-tcp` (for local experiments), and refuses otherwise.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use privlm_protocols::beaver::dealer::{DealerConfig, Hello, read_hello, serve_paired};
use privlm_protocols::beaver::{INSECURE_IDEAL_DEALER_FLAG, require_insecure_opt_in};
use privlm_protocols::channel::{Channel, ChannelConfig, FramedChannel};
use privlm_protocols::prg::Prg;
use privlm_protocols::share::Party;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

const USAGE: &str = "usage: privlm-dealer --listen ADDR [--sessions N] [--chunk-elems N] \
[--idle-timeout-secs N] [--insecure-plaintext-tcp] [--insecure-ideal-dealer --seed N]

  --listen ADDR              address to listen on, for example 127.0.0.1:7400
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
    if !o.plaintext_tcp {
        bail!(
            "the TLS transport is not wired into privlm-dealer yet; pass --insecure-plaintext-tcp \
             to serve over plain TCP for local experiments"
        );
    }
    Ok(o)
}

/// The transport boundary: turns an accepted TCP connection into a channel. TLS plugs in here.
fn make_channel(stream: TcpStream, opts: &Opts) -> anyhow::Result<FramedChannel> {
    stream.set_nodelay(true)?;
    let cfg = ChannelConfig {
        timeout: opts.idle_timeout,
        ..ChannelConfig::default()
    };
    Ok(FramedChannel::new(stream, cfg))
}

type Pending = Arc<Mutex<HashMap<[u8; 32], (Party, FramedChannel)>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Arc::new(parse_args(&args)?);
    let listener = TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    eprintln!("privlm-dealer listening on {}", listener.local_addr()?);
    let cfg = DealerConfig {
        chunk_elems: opts.chunk_elems,
        ..DealerConfig::default()
    };
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let mut master = opts.seed.map(Prg::from_u64);
    let mut started = 0u64;
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        if opts.sessions.is_some_and(|n| started >= n) {
            break;
        }
        let (stream, peer) = listener.accept().await?;
        let mut ch = make_channel(stream, &opts)?;
        let hello: Hello = match read_hello(&mut ch).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("connection from {peer}: no valid hello: {e}");
                continue;
            }
        };
        let mut map = pending.lock().await;
        let Some((other_party, other)) = map.remove(&hello.session) else {
            map.insert(hello.session, (hello.party, ch));
            continue;
        };
        drop(map);
        let mine = hello.clone();
        let theirs = Hello {
            party: other_party,
            ..hello
        };
        if let Err(e) = privlm_protocols::beaver::dealer::check_hellos(&mine, &theirs) {
            let reason = e.to_string();
            let mut other = other;
            let _ = tokio::join!(ch.abort(&reason), other.abort(&reason));
            eprintln!("refused a session: {reason}");
            continue;
        }
        let (p0, p1) = if mine.party == Party::P0 {
            (ch, other)
        } else {
            (other, ch)
        };
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
    while sessions.join_next().await.is_some() {}
    Ok(())
}
