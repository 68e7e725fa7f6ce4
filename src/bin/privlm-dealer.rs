//! `privlm-dealer`: the third, non-colluding party that serves correlated randomness (Beaver
//! triples, matrix triples, square and truncation pairs, weight masks) to a client and a server.
//!
//! It listens for connections, reads each one's hello, pairs the client (P0) and the server (P1)
//! of the same session id, and serves each pair in its own task: all of it is
//! `privlm_protocols::beaver::dealer::server::DealerServer`, which this binary configures from
//! its command line. The dealer never sees inputs or weights. See `docs/protocols/linear.md`.
//!
//! Transport: every connection is TLS 1.3 (`privlm_protocols::channel::tls`) with the dealer's
//! own certificate (created on first run in `--identity DIR`) and the parties' certificates
//! pinned by fingerprint (`--peer-fingerprint`, once per party). Plain TCP is served only when
//! the user passes `--insecure-plaintext-tcp` (local experiments). Handshakes run concurrently
//! under caps (`channel::tls::Incoming`).
//!
//! Output: the certificate fingerprint and the listening address go to standard output, one
//! line each (`privlm-dealer certificate fingerprint HEX`, `privlm-dealer listening on ADDR`),
//! for the operator and for scripts; logs go to standard error through `tracing`, at level
//! `info` unless `RUST_LOG` says otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use privlm_protocols::beaver::dealer::server::{DealerServer, ServerConfig, dealer_channel_config};
use privlm_protocols::beaver::dealer::{
    DEFAULT_CHUNK_ELEMS, DEFAULT_DEALER_MAX_REQUEST_ELEMS, DEFAULT_MAX_REQUEST_WORK, DealerConfig,
};
use privlm_protocols::beaver::require_insecure_opt_in;
use privlm_protocols::channel::FramedChannel;
use privlm_protocols::channel::tls::{
    Fingerprint, Identity, Incoming, ListenerLimits, TlsListener,
};
use privlm_protocols::compute::ComputePool;
use tokio::net::TcpListener;

const ABOUT: &str = "The privlm dealer: serves correlated randomness to a client and a server";

const LONG_ABOUT: &str = "\
The privlm dealer: a third party that serves correlated randomness (Beaver triples, \
truncation pairs, weight masks) to the two parties of a private inference, the client (P0) \
and the server (P1). It never sees their inputs, outputs or weights; it must not collude \
with either of them.

Both parties connect over TLS 1.3 and send a hello naming their role and a session id they \
agreed on. The dealer pairs the P0 and the P1 of each session id and serves them until they \
close. On first run it creates its TLS identity in --identity DIR and prints its certificate \
fingerprint: give it to both parties, which pin it. Give the dealer each party's fingerprint \
with --peer-fingerprint.";

const AFTER_HELP: &str = "\
Example:
  privlm-dealer --listen 127.0.0.1:7400 --identity dealer-id \\
      --peer-fingerprint CLIENT_FP_HEX --peer-fingerprint SERVER_FP_HEX

Output: the certificate fingerprint and the listening address on standard output; logs on \
standard error (level info; set RUST_LOG, for example RUST_LOG=debug, for more).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "privlm-dealer", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Address to listen on, for example 127.0.0.1:7400 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: String,

    /// Directory of the dealer's TLS certificate and key (created on first run, mode 0700).
    #[arg(long, value_name = "DIR")]
    identity: Option<PathBuf>,

    /// SHA-256 fingerprint (64 hex digits) of a party's certificate; give one per party.
    #[arg(long = "peer-fingerprint", value_name = "HEX")]
    peers: Vec<Fingerprint>,

    /// Stop after N sessions have started, once they end (default: serve until killed).
    #[arg(long, value_name = "N")]
    sessions: Option<u64>,

    /// Ring elements per correction message.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CHUNK_ELEMS,
        value_parser = positive_usize)]
    chunk_elems: usize,

    /// How long to wait for a party's next request, in seconds (parties compute in between).
    #[arg(long, value_name = "S", default_value_t = 3600)]
    idle_timeout_secs: u64,

    /// How long a connection may take for its TLS handshake, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10, help_heading = "Limits")]
    handshake_timeout_secs: u64,

    /// How long a connection may take to send its hello after the handshake, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10, help_heading = "Limits")]
    hello_timeout_secs: u64,

    /// How long a party waits for the other party of its session, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120, help_heading = "Limits")]
    pairing_timeout_secs: u64,

    /// Sessions served at once; a pair beyond it is refused as busy.
    #[arg(long, value_name = "N", default_value_t = 16, help_heading = "Limits",
        value_parser = positive_usize)]
    max_sessions: usize,

    /// Parties waiting for their partner at once; a newcomer beyond it is refused as busy.
    #[arg(long, value_name = "N", default_value_t = 64, help_heading = "Limits",
        value_parser = positive_usize)]
    max_waiting: usize,

    /// TLS handshakes in flight at once.
    #[arg(long, value_name = "N", default_value_t = ListenerLimits::default().max_handshakes,
        help_heading = "Limits", value_parser = positive_usize)]
    max_handshakes: usize,

    /// Connections open at once (keep it below the open-files limit, `ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = ListenerLimits::default().max_connections,
        help_heading = "Limits", value_parser = positive_usize)]
    max_connections: usize,

    /// Connections open at once from one IP address.
    #[arg(long, value_name = "N", default_value_t = ListenerLimits::default().max_per_source,
        help_heading = "Limits", value_parser = positive_usize)]
    max_connections_per_source: usize,

    /// Largest tensor one request may ask for, in ring elements (8 bytes each).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DEALER_MAX_REQUEST_ELEMS,
        help_heading = "Limits", value_parser = positive_usize)]
    max_request_elems: usize,

    /// Largest work one request may ask for, in multiply-adds (about 2 ns each).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_REQUEST_WORK,
        help_heading = "Limits")]
    max_request_work: u64,

    /// Threads computing corrections at once (default: one per core).
    #[arg(long, value_name = "N", help_heading = "Limits", value_parser = positive_usize)]
    compute_threads: Option<usize>,

    /// Serve plain TCP, without TLS: no encryption, no authentication. Local experiments only.
    #[arg(long, help_heading = "Insecure (tests and benches only)")]
    insecure_plaintext_tcp: bool,

    /// Allow --seed.
    #[arg(long, help_heading = "Insecure (tests and benches only)")]
    insecure_ideal_dealer: bool,

    /// Derive every session's seeds from N: every triple becomes predictable.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Insecure (tests and benches only)"
    )]
    seed: Option<u64>,
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Cli {
    /// Checks what clap cannot: the insecure opt-in, and TLS settings unless plain TCP.
    fn check(&self) -> anyhow::Result<()> {
        if self.seed.is_some() {
            require_insecure_opt_in(self.insecure_ideal_dealer)?;
        }
        if !self.insecure_plaintext_tcp && (self.identity.is_none() || self.peers.is_empty()) {
            bail!(
                "TLS needs --identity DIR and a --peer-fingerprint for each party \
                 (or --insecure-plaintext-tcp for local experiments); see --help"
            );
        }
        Ok(())
    }

    fn limits(&self) -> ListenerLimits {
        ListenerLimits {
            max_handshakes: self.max_handshakes,
            max_connections: self.max_connections,
            max_per_source: self.max_connections_per_source,
            ..ListenerLimits::default()
        }
    }

    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            dealer: DealerConfig {
                chunk_elems: self.chunk_elems,
                max_request_elems: self.max_request_elems,
                max_request_work: self.max_request_work,
                compute: self
                    .compute_threads
                    .map_or_else(ComputePool::default, ComputePool::new),
            },
            hello_timeout: Duration::from_secs(self.hello_timeout_secs),
            pairing_timeout: Duration::from_secs(self.pairing_timeout_secs),
            max_sessions: self.max_sessions,
            max_waiting: self.max_waiting,
            stop_after: self.sessions,
        }
    }

    /// Binds the listener (creating the identity on first run) and prints the two output lines.
    async fn bind(&self) -> anyhow::Result<Incoming> {
        let cfg = dealer_channel_config(Duration::from_secs(self.idle_timeout_secs));
        if self.insecure_plaintext_tcp {
            tracing::warn!("serving plain TCP: no encryption, no authentication");
            let tcp = TcpListener::bind(&self.listen)
                .await
                .with_context(|| format!("cannot listen on {}", self.listen))?;
            let incoming = Incoming::insecure_plaintext(tcp, cfg, self.limits())?;
            println!("privlm-dealer listening on {}", incoming.local_addr());
            return Ok(incoming);
        }
        let dir = self.identity.as_deref().context("--identity is required")?;
        let identity = Identity::load_or_create(dir)
            .with_context(|| format!("cannot load or create the identity in {}", dir.display()))?;
        println!(
            "privlm-dealer certificate fingerprint {}",
            identity.fingerprint()
        );
        let mut listener =
            TlsListener::bind(self.listen.as_str(), &identity, &self.peers, cfg).await?;
        listener.set_handshake_timeout(Duration::from_secs(self.handshake_timeout_secs));
        let incoming = listener.incoming(self.limits())?;
        println!("privlm-dealer listening on {}", incoming.local_addr());
        Ok(incoming)
    }
}

/// Logs to standard error, `info` and above unless `RUST_LOG` says otherwise, with colours
/// only on a terminal.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let cli = Cli::parse();
    cli.check()?;
    let incoming = cli.bind().await?;
    let cfg = cli.server_config();
    tracing::info!(
        max_sessions = cfg.max_sessions,
        compute_threads = cfg.dealer.compute.threads(),
        "privlm-dealer ready"
    );
    let server: DealerServer<FramedChannel> = match cli.seed {
        Some(seed) => DealerServer::new_insecure_seeded(cfg, seed),
        None => DealerServer::new(cfg),
    };
    let started = server.run(incoming).await;
    tracing::info!(sessions = started, "privlm-dealer stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use privlm_protocols::beaver::dealer::DealerClient;
    use privlm_protocols::beaver::{INSECURE_IDEAL_DEALER_FLAG, TripleProvider};
    use privlm_protocols::channel::ChannelConfig;
    use privlm_protocols::share::Party;
    use tokio::net::TcpStream;

    fn parse(s: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("privlm-dealer").chain(s.split_whitespace()))
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let flag = INSECURE_IDEAL_DEALER_FLAG.trim_start_matches("--");
        assert!(
            Cli::command()
                .get_arguments()
                .any(|a| a.get_long() == Some(flag)),
            "the opt-in flag must be spelt {INSECURE_IDEAL_DEALER_FLAG}"
        );
    }

    #[test]
    fn flags_are_enforced() {
        let e = parse("--listen 127.0.0.1:0").unwrap().check().unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        let e = parse("--listen 127.0.0.1:0 --insecure-plaintext-tcp --seed 3")
            .unwrap()
            .check()
            .unwrap_err();
        assert!(e.to_string().contains("--insecure-ideal-dealer"), "{e}");
        let o =
            parse("--listen 127.0.0.1:0 --insecure-plaintext-tcp --insecure-ideal-dealer --seed 3")
                .unwrap();
        o.check().unwrap();
        assert_eq!(o.seed, Some(3));
        assert!(parse("--bogus").is_err());
        assert!(parse("--listen x --insecure-plaintext-tcp --chunk-elems 0").is_err());
        let fp = "ab".repeat(32);
        let o = parse(&format!(
            "--listen x --identity d --peer-fingerprint {fp} --peer-fingerprint {fp} \
             --idle-timeout-secs 5 --sessions 2 --chunk-elems 7"
        ))
        .unwrap();
        o.check().unwrap();
        assert_eq!(o.peers.len(), 2);
        let cfg = o.server_config();
        assert_eq!((cfg.stop_after, cfg.dealer.chunk_elems), (Some(2), 7));
        assert!(parse("--listen x --peer-fingerprint 12").is_err());
    }

    /// Two sessions whose connections interleave are paired by session id and served over TCP.
    #[tokio::test]
    async fn serves_interleaved_sessions_over_tcp() {
        let cli =
            parse("--listen 127.0.0.1:0 --insecure-plaintext-tcp --sessions 2 --chunk-elems 5")
                .unwrap();
        let incoming = cli.bind().await.unwrap();
        let addr = incoming.local_addr();
        let server: DealerServer<FramedChannel> = DealerServer::new(cli.server_config());
        let server = tokio::spawn(async move { server.run(incoming).await });
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
        assert_eq!(server.await.unwrap(), 2);
    }
}
