//! `privlm-server`: hosts one model for private inference.
//!
//! Serves clients over TLS 1.3 (pinned certificates), one task per session under a session
//! limit; each session pairs with its client at the dealer by the session id the client drew.
//! All of it is `privlm::serve::server::InferenceServer`; this binary configures it from its
//! command line. See `docs/serving.md`.
//!
//! Output: the certificate fingerprint and the listening address go to standard output, one
//! line each (`privlm-server certificate fingerprint HEX`, `privlm-server listening on ADDR`);
//! logs go to standard error through `tracing` (level `info` unless `RUST_LOG` says otherwise).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use privlm::model::Model;
use privlm::serve::server::{DealerLink, InferenceServer, ServeConfig, peer_channel_config};
use privlm_protocols::channel::tls::{Fingerprint, Identity, ListenerLimits, TlsListener};
use privlm_protocols::nonlinear::NlParams;

const ABOUT: &str = "The privlm server: hosts a model for private inference";

const LONG_ABOUT: &str = "\
The privlm server: hosts one model (weights stay private) for private inference. A client \
with a private prompt and this server run the transformer together over TLS 1.3; the client \
learns only the generated tokens, the server learns nothing about the prompt or the output. \
A dealer (privlm-dealer, a third party that must not collude with either) serves both with \
correlated randomness.

On first run the server creates its TLS identity in --identity DIR and prints its certificate \
fingerprint: give it to the clients (which pin it) and to the dealer's operator \
(--peer-fingerprint). The server pins the dealer (--dealer-fingerprint) and its clients \
(--client-fingerprint, or a file of them with --authorized-clients).";

const AFTER_HELP: &str = "\
Example:
  privlm-server --model models/sm_ln_g --listen 0.0.0.0:7410 --identity server-id \\
      --dealer dealer.example.org:7400 --dealer-fingerprint DEALER_FP_HEX \\
      --client-fingerprint CLIENT_FP_HEX

  privlm-server --identity server-id --show-fingerprint   (print it and exit)

Output: the certificate fingerprint and the listening address on standard output; logs on \
standard error (level info; set RUST_LOG, for example RUST_LOG=debug, for more).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "privlm-server", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Model directory (privlm checkpoint or Hugging Face GPT-2: config.json +
    /// model.safetensors), for example models/sm_ln_g.
    #[arg(long, value_name = "DIR", required_unless_present = "show_fingerprint")]
    model: Option<PathBuf>,

    /// Name clients may ask for with --model (default: the model directory's name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Address to listen on, for example 0.0.0.0:7410 (port 0 picks a free port).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "show_fingerprint"
    )]
    listen: Option<String>,

    /// The dealer's address, HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "show_fingerprint"
    )]
    dealer: Option<String>,

    /// The dealer's certificate fingerprint (64 hex digits; privlm-dealer prints it at start).
    #[arg(long, value_name = "HEX", required_unless_present = "show_fingerprint")]
    dealer_fingerprint: Option<Fingerprint>,

    /// Directory of the server's TLS certificate and key (created on first run, mode 0700).
    #[arg(long, value_name = "DIR")]
    identity: PathBuf,

    /// Print this server's certificate fingerprint (creating the identity) and exit.
    #[arg(long)]
    show_fingerprint: bool,

    /// A client's certificate fingerprint (64 hex digits); repeat for each client.
    #[arg(long = "client-fingerprint", value_name = "HEX")]
    clients: Vec<Fingerprint>,

    /// A file of client fingerprints, one per line (`#` starts a comment; text after the
    /// fingerprint on a line is ignored).
    #[arg(long, value_name = "FILE")]
    authorized_clients: Option<PathBuf>,

    /// The most tokens one session may generate.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_new_tokens: u32,

    /// Stop after N sessions were accepted, once they end (default: serve until killed).
    #[arg(long, value_name = "N")]
    sessions: Option<u64>,

    /// Sessions served at once; a client beyond it is refused as busy.
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Limits",
        value_parser = positive_usize)]
    max_sessions: usize,

    /// How long a connection may take for its TLS handshake, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10, help_heading = "Limits")]
    handshake_timeout_secs: u64,

    /// How long a client may take to send its session request, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10, help_heading = "Limits")]
    request_timeout_secs: u64,

    /// Longest wait for a client's or the dealer's next message in a session, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120, help_heading = "Limits")]
    idle_timeout_secs: u64,

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
}

fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be positive".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads fingerprints, one per line (first word), skipping blank and `#` lines.
fn read_fingerprints(path: &Path) -> anyhow::Result<Vec<Fingerprint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        if word.starts_with('#') {
            continue;
        }
        out.push(
            Fingerprint::from_hex(word)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

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
    let identity = Identity::load_or_create(&cli.identity).with_context(|| {
        format!(
            "cannot load or create the identity in {}",
            cli.identity.display()
        )
    })?;
    println!(
        "privlm-server certificate fingerprint {}",
        identity.fingerprint()
    );
    if cli.show_fingerprint {
        return Ok(());
    }
    let (Some(model_dir), Some(listen), Some(dealer), Some(dealer_fp)) = (
        cli.model.as_deref(),
        cli.listen.as_deref(),
        cli.dealer.clone(),
        cli.dealer_fingerprint,
    ) else {
        bail!("--model, --listen, --dealer and --dealer-fingerprint are required; see --help");
    };
    let mut clients = cli.clients.clone();
    if let Some(f) = &cli.authorized_clients {
        clients.extend(read_fingerprints(f)?);
    }
    if clients.is_empty() {
        bail!(
            "no client may connect: pin each client's certificate with --client-fingerprint HEX \
             or --authorized-clients FILE (a client prints its fingerprint with \
             `privlm-client --show-fingerprint`)"
        );
    }
    if !model_dir.is_dir() {
        bail!(
            "model directory {} does not exist: give a directory with config.json and \
             model.safetensors (for example models/sm_ln_g)",
            model_dir.display()
        );
    }
    let model = Model::load(model_dir)
        .with_context(|| format!("cannot load the model in {}", model_dir.display()))?;
    let name = cli.name.clone().unwrap_or_else(|| {
        model_dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    let idle = Duration::from_secs(cli.idle_timeout_secs);
    let cfg = ServeConfig {
        max_sessions: cli.max_sessions,
        request_timeout: Duration::from_secs(cli.request_timeout_secs),
        max_new_tokens: cli.max_new_tokens,
        nl: NlParams::default(),
        dealer: DealerLink {
            addr: dealer,
            fingerprint: dealer_fp,
            connect_timeout: Duration::from_secs(cli.handshake_timeout_secs),
            channel: peer_channel_config(idle),
        },
        stop_after: cli.sessions,
    };
    let identity = Arc::new(identity);
    let server = InferenceServer::new(Arc::new(model), &name, identity.clone(), cfg)
        .map_err(anyhow::Error::msg)?;
    let mut listener =
        TlsListener::bind(listen, &identity, &clients, peer_channel_config(idle)).await?;
    listener.set_handshake_timeout(Duration::from_secs(cli.handshake_timeout_secs));
    let limits = ListenerLimits {
        max_handshakes: cli.max_handshakes,
        max_connections: cli.max_connections,
        max_per_source: cli.max_connections_per_source,
        ..ListenerLimits::default()
    };
    let incoming = listener.incoming(limits)?;
    println!("privlm-server listening on {}", incoming.local_addr());
    let offer = server.offer();
    tracing::info!(
        model = %offer.model_name,
        architecture = %offer.manifest.config.architecture.name(),
        clients = clients.len(),
        max_sessions = cli.max_sessions,
        "privlm-server ready"
    );
    let n = server.run(incoming).await;
    tracing::info!(sessions = n, "privlm-server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        let fp = "ab".repeat(32);
        let c = Cli::try_parse_from([
            "privlm-server",
            "--model",
            "m",
            "--listen",
            "x",
            "--dealer",
            "d",
            "--dealer-fingerprint",
            &fp,
            "--identity",
            "i",
        ])
        .unwrap();
        assert_eq!(c.max_sessions, 4);
        assert!(Cli::try_parse_from(["privlm-server", "--identity", "i"]).is_err());
        assert!(
            Cli::try_parse_from(["privlm-server", "--identity", "i", "--show-fingerprint"]).is_ok()
        );
    }
}
