//! The client's side: connect to the server (pinned, or trust on first use), read its offer,
//! encode the prompt, ask for a session, run the handshake, pair at the dealer and generate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use privlm_protocols::channel::tls::{self, Fingerprint, Identity, TlsError};
use privlm_protocols::channel::{Channel, ChannelConfig, ChannelError, FramedChannel, Phase};
use privlm_protocols::nonlinear::NlParams;
use privlm_protocols::share::Party;

use super::control::{
    Accepted, MAX_ACCEPTED_LEN, MAX_OFFER_LEN, Offer, SERVE_PROTOCOL_VERSION, SessionId,
    SessionRequest, check_request, session_params,
};
use super::glue;
use super::known_hosts::{KnownHosts, Trust, mismatch_message};
use super::server::{DealerLink, connect_dealer_watching, peer_channel_config};
use crate::net::HandshakeError;
use crate::secure::CostReport;

/// Why a client run failed. Every message says what went wrong and, where it can, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request is invalid before anything is sent (empty prompt, too long, ...).
    #[error("{0}")]
    Invalid(String),
    /// A peer's certificate does not match the pinned or recorded fingerprint.
    #[error("{0}")]
    Untrusted(String),
    /// A connection could not be made.
    #[error("{0}")]
    Connect(String),
    /// The server refused the session; the text is its reason.
    #[error("the server refused the session: {0}")]
    Refused(String),
    /// The session failed after it started (handshake, dealer, generation, a peer lost).
    #[error("{0}")]
    Session(String),
}

/// What a client needs to know and hold.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's address, `HOST:PORT`.
    pub server: String,
    /// How to trust the server's certificate.
    pub server_trust: Trust,
    /// The dealer's address.
    pub dealer: String,
    /// How to trust the dealer's certificate.
    pub dealer_trust: Trust,
    /// This client's TLS identity (its fingerprint must be pinned by the server and the dealer).
    pub identity: Arc<Identity>,
    /// Timeout of each TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for any message from the server or the dealer once connected.
    pub timeout: Duration,
    /// The model expected (`None`: whatever the server hosts).
    pub model: Option<String>,
    /// The session id (`None`: a fresh random one, which is what you want).
    pub session_id: Option<SessionId>,
    /// The nonlinear layers' parameters (AGREEMENT with the server; fractional bits inside).
    pub nl: NlParams,
}

/// Progress of a client run, for the caller to show.
#[derive(Debug)]
pub enum ClientEvent<'a> {
    /// A peer was trusted on first use and recorded.
    TrustedFirstUse {
        /// `"server"` or `"dealer"`.
        what: &'a str,
        /// Its address.
        addr: &'a str,
        /// Its fingerprint, now recorded.
        fingerprint: Fingerprint,
        /// The known-hosts file.
        file: &'a Path,
    },
    /// The server accepted the session.
    Accepted {
        /// The server's offer.
        offer: &'a Offer,
        /// The prompt's tokens.
        prompt_tokens: usize,
    },
    /// The session is set up (handshake and dealer done); generation starts.
    Generating,
    /// A token was generated.
    Token(u32),
}

/// The result of a client run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    /// The server's model name.
    pub model: String,
    /// Its architecture.
    pub architecture: String,
    /// The session id.
    pub session_id: String,
    /// The server's certificate fingerprint.
    pub server_fingerprint: String,
    /// The prompt's tokens.
    pub prompt_tokens: Vec<u32>,
    /// The generated tokens.
    pub tokens: Vec<u32>,
    /// The generated text (invalid UTF-8 replaced).
    pub text: String,
    /// Seconds from the first connection to the end of the control exchange, handshake and
    /// dealer pairing.
    pub setup_seconds: f64,
    /// Seconds of the generation itself.
    pub generation_seconds: f64,
    /// The engine's cost report.
    pub cost: CostReport,
}

fn channel_failure(what: &str, e: ChannelError) -> ClientError {
    match e {
        ChannelError::PeerAborted(reason) => ClientError::Refused(reason),
        ChannelError::Closed => ClientError::Session(format!(
            "the {what} closed the connection (did it stop, or does it not pin this client's \
             certificate?)"
        )),
        e => ClientError::Session(format!("lost the {what}: {e}")),
    }
}

/// Connects to `addr` and establishes trust in its certificate per `trust`.
pub async fn connect_trusted(
    what: &str,
    addr: &str,
    trust: &Trust,
    identity: &Identity,
    cfg: ChannelConfig,
    timeout: Duration,
    on_event: &mut (dyn FnMut(ClientEvent<'_>) + Send),
) -> Result<(FramedChannel, Fingerprint), ClientError> {
    let (pin, source, remedy, mut kh) = match trust {
        Trust::Pinned(fp) => (
            Some(*fp),
            "given with --".to_string() + what + "-fingerprint",
            format!("pass its new fingerprint with --{what}-fingerprint"),
            None,
        ),
        Trust::KnownHosts(path) => {
            let kh = KnownHosts::load(path).map_err(ClientError::Invalid)?;
            match kh.lookup(addr) {
                Some((fp, line)) => (
                    Some(fp),
                    format!("recorded in {} line {line}", path.display()),
                    format!(
                        "delete line {line} of {} and connect again (or pass \
                         --{what}-fingerprint)",
                        path.display()
                    ),
                    Some(kh),
                ),
                None => (None, String::new(), String::new(), Some(kh)),
            }
        }
    };
    match pin {
        Some(fp) => match tls::connect(addr, identity, fp, cfg, timeout).await {
            Ok(ch) => Ok((ch, fp)),
            Err(TlsError::Handshake { reason, .. }) if reason.contains("is not pinned") => {
                let presented = reason
                    .split_whitespace()
                    .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()));
                Err(ClientError::Untrusted(mismatch_message(
                    what, addr, presented, fp, &source, &remedy,
                )))
            }
            Err(e) => Err(connect_error(what, addr, e)),
        },
        None => {
            let (ch, fp) = tls::connect_unpinned(addr, identity, cfg, timeout)
                .await
                .map_err(|e| connect_error(what, addr, e))?;
            let kh = kh.as_mut().expect("known hosts without a pin");
            kh.add(addr, fp).map_err(ClientError::Invalid)?;
            on_event(ClientEvent::TrustedFirstUse {
                what,
                addr,
                fingerprint: fp,
                file: kh.path(),
            });
            Ok((ch, fp))
        }
    }
}

fn connect_error(what: &str, addr: &str, e: TlsError) -> ClientError {
    let hint = match &e {
        TlsError::Handshake { reason, .. } if reason.contains("fatal alert: Certificate") => {
            format!(
                " The {what} refused this client's certificate: give its operator this \
                 client's fingerprint (privlm-client --show-fingerprint)."
            )
        }
        TlsError::Handshake { reason, .. } if reason.contains("closed during the handshake") => {
            format!(
                " If the network did not cut it, the {what} may not pin this client's \
                 certificate: give its operator this client's fingerprint (privlm-client \
                 --show-fingerprint)."
            )
        }
        TlsError::Connect { .. } | TlsError::ConnectTimeout { .. } => {
            format!(" Is the {what} running and listening on {addr}?")
        }
        _ => String::new(),
    };
    ClientError::Connect(format!(
        "cannot connect to the {what} at {addr}: {e}.{hint}"
    ))
}

/// The control exchange on a fresh channel to the server (the module docs of
/// [`control`](super::control)): reads and checks the server's [`Offer`], encodes `prompt`
/// with its tokenizer, checks and sends the [`SessionRequest`] for `session_id`, and reads the
/// acceptance. Returns the channel, the offer and the prompt's tokens; on any error the channel
/// is aborted or closed. Every byte read here comes from the server and is checked before use.
pub async fn request_session(
    mut ch: FramedChannel,
    model: Option<&str>,
    session_id: SessionId,
    prompt: &str,
    max_new_tokens: u32,
) -> Result<(FramedChannel, Offer, Vec<u32>), ClientError> {
    ch.set_phase(Phase::Setup);
    ch.set_label("control");
    let offer: Offer = ch
        .recv_msg_bounded(MAX_OFFER_LEN, "server offer")
        .await
        .map_err(|e| channel_failure("server", e))?;
    if let Err(reason) = offer.validate() {
        ch.abort(&reason).await;
        return Err(ClientError::Session(format!(
            "unusable server offer: {reason}"
        )));
    }
    let prompt_tokens = offer.tokenizer.build().encode(prompt);
    let req = SessionRequest {
        version: SERVE_PROTOCOL_VERSION,
        model: model.map(str::to_string),
        session_id,
        prompt_len: u32::try_from(prompt_tokens.len()).unwrap_or(u32::MAX),
        max_new_tokens,
    };
    if let Err(reason) = check_request(&offer, &req) {
        let _ = ch.close().await;
        return Err(ClientError::Invalid(reason));
    }
    ch.send_msg(&req)
        .await
        .map_err(|e| channel_failure("server", e))?;
    let acc: Accepted = ch
        .recv_msg_bounded(MAX_ACCEPTED_LEN, "session acceptance")
        .await
        .map_err(|e| channel_failure("server", e))?;
    if acc.session_id != session_id {
        let reason = "the server accepted another session id".to_string();
        ch.abort(&reason).await;
        return Err(ClientError::Session(reason));
    }
    Ok((ch, offer, prompt_tokens))
}

/// Runs one private generation of `max_new_tokens` tokens after `prompt` (see the module
/// docs). `on_event` sees progress, including each token as it is generated.
pub async fn generate(
    cfg: &ClientConfig,
    prompt: &str,
    max_new_tokens: u32,
    on_event: &mut (dyn FnMut(ClientEvent<'_>) + Send),
) -> Result<Generation, ClientError> {
    if prompt.is_empty() {
        return Err(ClientError::Invalid(
            "empty prompt: give some text with --prompt TEXT".into(),
        ));
    }
    if max_new_tokens == 0 {
        return Err(ClientError::Invalid(
            "nothing to generate: --max-new-tokens must be at least 1".into(),
        ));
    }
    let start = Instant::now();
    let peer_cfg = peer_channel_config(cfg.timeout);
    let (ch, server_fp) = connect_trusted(
        "server",
        &cfg.server,
        &cfg.server_trust,
        &cfg.identity,
        peer_cfg.clone(),
        cfg.connect_timeout,
        on_event,
    )
    .await?;
    let session_id = cfg.session_id.unwrap_or_else(SessionId::random);
    let (mut ch, offer, prompt_tokens) =
        request_session(ch, cfg.model.as_deref(), session_id, prompt, max_new_tokens).await?;
    let tokenizer = offer.tokenizer.build();
    on_event(ClientEvent::Accepted {
        offer: &offer,
        prompt_tokens: prompt_tokens.len(),
    });
    let params = session_params(&offer.manifest, cfg.nl.frac_bits, &cfg.nl)
        .map_err(|e| ClientError::Session(e.to_string()))?;
    crate::net::handshake(&mut ch, Party::P0, &params)
        .await
        .map_err(|e| match e {
            // The connection failed: no settings to blame.
            HandshakeError::Channel(ref c) if !matches!(c, ChannelError::PeerAborted(_)) => {
                ClientError::Session(format!("lost the server during the session handshake: {e}"))
            }
            _ => ClientError::Session(format!(
                "the session handshake with the server failed: {e}. Client and server must \
                 use the same arithmetic and approximation settings: leave --frac-bits at its \
                 default or set it to the server's ({})",
                offer.frac_bits
            )),
        })?;
    let dealer_fp = match &cfg.dealer_trust {
        Trust::Pinned(fp) => *fp,
        trust => {
            // Trust on first use for the dealer: learn (or check) its fingerprint on a
            // connection of its own, closed at once, then connect pinned.
            let (probe, fp) = connect_trusted(
                "dealer",
                &cfg.dealer,
                trust,
                &cfg.identity,
                ChannelConfig::default(),
                cfg.connect_timeout,
                on_event,
            )
            .await?;
            drop(probe);
            fp
        }
    };
    let link = DealerLink {
        addr: cfg.dealer.clone(),
        fingerprint: dealer_fp,
        connect_timeout: cfg.connect_timeout,
        channel: peer_channel_config(cfg.timeout),
    };
    // The server may give up meanwhile (it cannot reach the dealer, the connection was cut):
    // its reason is reported at once instead of after the dealer's pairing wait.
    let paired = connect_dealer_watching(&mut ch, &link, &cfg.identity, Party::P0, session_id)
        .await
        .map_err(|e| {
            ClientError::Session(format!("lost the server while pairing at the dealer: {e}"))
        })?;
    let dealer = match paired {
        Ok(d) => d,
        Err(e) => {
            let reason = format!("the client cannot use the dealer: {e}");
            ch.abort(&reason).await;
            return Err(ClientError::Session(reason));
        }
    };
    let setup_seconds = start.elapsed().as_secs_f64();
    on_event(ClientEvent::Generating);
    let gen_start = Instant::now();
    let (tokens, cost) = glue::generate(
        ch,
        dealer,
        &offer,
        cfg.nl,
        &prompt_tokens,
        max_new_tokens as usize,
        &mut |t| on_event(ClientEvent::Token(t)),
    )
    .await
    .map_err(|e| {
        ClientError::Session(format!(
            "the private generation with the server at {} (party P1; this client is P0) \
             failed: {e}",
            cfg.server
        ))
    })?;
    let text = tokenizer.decode_lossy(&tokens).unwrap_or_default();
    Ok(Generation {
        model: offer.model_name.clone(),
        architecture: offer.manifest.config.architecture.name(),
        session_id: session_id.to_hex(),
        server_fingerprint: server_fp.to_hex(),
        prompt_tokens,
        tokens,
        text,
        setup_seconds,
        generation_seconds: gen_start.elapsed().as_secs_f64(),
        cost,
    })
}
