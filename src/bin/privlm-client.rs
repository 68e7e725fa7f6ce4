//! `privlm-client`: private text generation with a privlm server's model.
//!
//! Connects to a `privlm-server` (pinned by fingerprint, or trusted on first use and recorded
//! in a known-hosts file like ssh's), asks for a session, pairs with the server at the dealer,
//! streams the generated text as it comes and prints what it cost, layer by layer. All of it
//! is `privlm::serve::client::generate`; see `docs/serving.md`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use privlm::serve::client::{ClientConfig, ClientEvent, generate};
use privlm::serve::control::SessionId;
use privlm::serve::known_hosts::Trust;
use privlm::serve::report;
use privlm_protocols::channel::tls::{Fingerprint, Identity};
use privlm_protocols::nonlinear::NlParams;

const ABOUT: &str = "The privlm client: private text generation with a server's model";

const LONG_ABOUT: &str = "\
The privlm client: generates text from a privlm server's model without revealing the prompt \
or the output to the server (nor the server's weights to the client). A dealer (privlm-dealer) \
serves both parties with correlated randomness; it must not collude with the server.

The server's certificate is pinned with --server-fingerprint, or trusted on first use: the \
first connection to an address records the fingerprint the server presents in the \
known-hosts file (like ssh), later connections must present the same. The same holds for \
the dealer. The server and the dealer must pin this client's certificate: print its \
fingerprint with --show-fingerprint and give it to their operators.";

const AFTER_HELP: &str = "\
Example:
  privlm-client --server server.example.org:7410 --dealer dealer.example.org:7400 \\
      --prompt 'def read_lines(path):' --max-new-tokens 16

  privlm-client --show-fingerprint   (print this client's fingerprint and exit)

Output: the generated text on standard output as it comes, then the cost table; notes and \
errors on standard error; --json FILE writes the tokens, the text, the costs and the \
process's peak resident set (peak_rss_kib, Linux).";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "privlm-client", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// The server's address, HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "show_fingerprint"
    )]
    server: Option<String>,

    /// The dealer's address, HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "show_fingerprint"
    )]
    dealer: Option<String>,

    /// The prompt (UTF-8 text; the server never sees it).
    #[arg(
        long,
        value_name = "TEXT",
        required_unless_present = "show_fingerprint"
    )]
    prompt: Option<String>,

    /// Tokens to generate.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_new_tokens: u32,

    /// The server's certificate fingerprint (64 hex digits; privlm-server prints it at start).
    /// Without it, the known-hosts file decides (trust on first use).
    #[arg(long, value_name = "HEX")]
    server_fingerprint: Option<Fingerprint>,

    /// The dealer's certificate fingerprint (without it, the known-hosts file decides).
    #[arg(long, value_name = "HEX")]
    dealer_fingerprint: Option<Fingerprint>,

    /// Known-hosts file for trust on first use [default: ~/.privlm/known_hosts].
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,

    /// Directory of this client's TLS certificate and key (created on first run)
    /// [default: ~/.privlm/client-id].
    #[arg(long, value_name = "DIR")]
    identity: Option<PathBuf>,

    /// Print this client's certificate fingerprint (creating the identity) and exit.
    #[arg(long)]
    show_fingerprint: bool,

    /// The model expected; the server refuses if it hosts another.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,

    /// Write the tokens, the text and the costs to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Do not print the cost table.
    #[arg(long)]
    quiet: bool,

    /// Timeout of each connection and TLS handshake, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 10,
        help_heading = "Timeouts"
    )]
    connect_timeout_secs: u64,

    /// Longest wait for the server's or the dealer's next message, in seconds.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 120,
        help_heading = "Timeouts"
    )]
    timeout_secs: u64,

    /// Fixed-point fractional bits (AGREEMENT: must equal the server's; leave the default).
    #[arg(long, value_name = "N", help_heading = "Advanced")]
    frac_bits: Option<u32>,

    /// Use this session id (64 hex digits) instead of a fresh random one: for tests only.
    #[arg(long, value_name = "HEX", help_heading = "Advanced")]
    session_id: Option<SessionId>,
}

fn home_file(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".privlm").join(name)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Prints UTF-8 text from a stream of byte chunks as soon as each character is complete.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        out
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let id_dir = cli
        .identity
        .clone()
        .unwrap_or_else(|| home_file("client-id"));
    let identity = Identity::load_or_create(&id_dir)
        .with_context(|| format!("cannot load or create the identity in {}", id_dir.display()))?;
    if cli.show_fingerprint {
        println!(
            "privlm-client certificate fingerprint {}",
            identity.fingerprint()
        );
        return Ok(());
    }
    let known = cli
        .known_hosts
        .clone()
        .unwrap_or_else(|| home_file("known_hosts"));
    let trust = |fp: Option<Fingerprint>| match fp {
        Some(fp) => Trust::Pinned(fp),
        None => Trust::KnownHosts(known.clone()),
    };
    let mut nl = NlParams::default();
    if let Some(f) = cli.frac_bits {
        nl.frac_bits = f;
    }
    let cfg = ClientConfig {
        server: cli.server.clone().context("--server is required")?,
        server_trust: trust(cli.server_fingerprint),
        dealer: cli.dealer.clone().context("--dealer is required")?,
        dealer_trust: trust(cli.dealer_fingerprint),
        identity: Arc::new(identity),
        connect_timeout: Duration::from_secs(cli.connect_timeout_secs),
        timeout: Duration::from_secs(cli.timeout_secs),
        model: cli.model.clone(),
        session_id: cli.session_id,
        nl,
    };
    let prompt = cli.prompt.clone().context("--prompt is required")?;
    let mut tokenizer: Option<Box<dyn privlm::model::tokenizer::Tokenizer>> = None;
    let mut text = Utf8Stream::default();
    let mut out = std::io::stdout();
    let mut on_event = |ev: ClientEvent<'_>| match ev {
        ClientEvent::TrustedFirstUse {
            what,
            addr,
            fingerprint,
            file,
        } => eprintln!(
            "note: first connection to the {what} at {addr}: trusting its certificate \
             fingerprint {fingerprint}, now recorded in {}. Compare it with the fingerprint \
             its operator published.",
            file.display()
        ),
        ClientEvent::Accepted {
            offer,
            prompt_tokens,
        } => {
            eprintln!(
                "session accepted: model `{}` ({}), prompt of {prompt_tokens} tokens",
                offer.model_name,
                offer.manifest.config.architecture.name()
            );
            tokenizer = Some(offer.tokenizer.build());
            let _ = write!(out, "{prompt}");
            let _ = out.flush();
        }
        ClientEvent::Generating => {}
        ClientEvent::Token(t) => {
            if let Some(tok) = &tokenizer {
                let bytes = tok.decode_bytes(&[t]).unwrap_or_default();
                let _ = write!(out, "{}", text.push(&bytes));
                let _ = out.flush();
            }
        }
    };
    let generation = generate(&cfg, &prompt, cli.max_new_tokens, &mut on_event).await?;
    println!();
    if !cli.quiet {
        println!();
        print!("{}", report::cost_table(&generation));
    }
    if let Some(path) = &cli.json {
        // The generation, and this process's peak resident set (for `privlm-bench load`).
        let mut v = serde_json::to_value(&generation)?;
        v["peak_rss_kib"] = privlm::serve::load::own_peak_rss_kib().into();
        let json = serde_json::to_string_pretty(&v)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
        assert!(Cli::try_parse_from(["privlm-client", "--show-fingerprint"]).is_ok());
        assert!(Cli::try_parse_from(["privlm-client", "--server", "a"]).is_err());
    }

    #[test]
    fn utf8_stream_waits_for_whole_characters() {
        let mut s = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.push(&e[1..]), "é");
        assert_eq!(s.push(&[0xff]), "\u{fffd}");
    }
}
