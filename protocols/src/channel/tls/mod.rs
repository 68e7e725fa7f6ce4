//! TCP + TLS 1.3 transport with mutual authentication by pinned self-signed certificates.
//!
//! Definition: a *secure channel* between two parties that know each other's certificate
//! fingerprint in advance: every byte is encrypted and authenticated (AES-GCM or
//! ChaCha20-Poly1305 records of TLS 1.3, RFC 8446), and each party is sure the other holds the
//! private key of the certificate it pinned. Every connection in privlm uses it (DESIGN.md
//! section 1, "TLS 1.3 everywhere"); secure-inference systems such as BumbleBee and SIGMA
//! likewise assume authenticated point-to-point channels between the parties.
//!
//! - Each party has an [`Identity`]: an ECDSA P-256 self-signed certificate generated with
//!   rcgen on first run and stored in a directory (`cert.der`, `key.der` with mode 0600).
//! - Each side pins the other's certificate by SHA-256 [`Fingerprint`]. The verifiers accept
//!   exactly the pinned certificates (no CA, no names, no validity dates) and still check the
//!   TLS 1.3 handshake signature with the provider's algorithms.
//! - Only TLS 1.3, only the `ring` crypto provider, passed explicitly to every config (never
//!   a process-default provider). No session resumption, no tickets.
//! - TCP runs with `TCP_NODELAY`; the [`FramedChannel`] does its own coalescing.
//! - After the TLS handshake the server sends one byte, [`READY_BYTE`], so that a client whose
//!   certificate the server refused learns it in [`connect`] rather than at its first receive
//!   (in TLS 1.3 the client finishes its handshake before the server checks the client's
//!   certificate). This byte is not part of the framed stream and is not counted.
//!
//! [`connect`] and [`TlsListener::accept`] return a [`FramedChannel`]; `docs/channel.md`
//! describes the wire format and the limits.
//!
//! A server that must stay available to many peers turns its listener into an [`Incoming`]
//! ([`TlsListener::incoming`]): handshakes run concurrently, each in its own task bounded by
//! the handshake timeout, under caps on handshakes in flight, on live connections and on
//! connections per source address; accept errors (such as running out of file descriptors)
//! are logged and retried with back-off. The dealer uses it, and so will the server.

mod identity;
mod listener;
mod verify;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use super::{ChannelConfig, FramedChannel};

pub use identity::{CERT_FILE, CERT_SUBJECT, Fingerprint, Identity, KEY_FILE};
pub use listener::{Accepted, Incoming, ListenerLimits};

/// A TLS stream over TCP (client or server side), before framing.
pub type TlsStream = tokio_rustls::TlsStream<TcpStream>;

/// The byte the server sends after a successful handshake (see the module docs).
pub const READY_BYTE: u8 = 0x5a;

/// A reasonable default for the connect and handshake timeouts.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors while setting up a TLS connection or loading an identity. Errors of an established
/// session are [`super::ChannelError`]s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file or socket operation failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// A certificate or key could not be generated, parsed or used.
    #[error("certificate error: {0}")]
    Certificate(String),
    /// A fingerprint string did not parse.
    #[error("bad fingerprint: {0}")]
    BadFingerprint(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration error: {0}")]
    Config(String),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The TCP connection did not open within the timeout.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The TLS handshake (including the server's ready byte) did not finish within the timeout.
    #[error("TLS handshake with {peer} timed out after {timeout:?}")]
    HandshakeTimeout {
        /// The peer's address.
        peer: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The TLS handshake failed: for example the peer's certificate is not the pinned one, or
    /// the peer refused ours.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer's address.
        peer: String,
        /// What went wrong (rustls' error or the peer's alert).
        reason: String,
    },
    /// Accepting a TCP connection failed.
    #[error("accept failed: {0}")]
    Accept(String),
}

/// The `ring` provider, TLS 1.3 suites only, AES-128-GCM preferred (the fastest on CPUs with
/// AES-NI; 128-bit security is privlm's computational security level).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

fn config_err(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// The client configuration: TLS 1.3 only, our certificate for client authentication, the
/// server's certificate pinned.
pub fn client_config(
    identity: &Identity,
    server: Fingerprint,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let p = provider();
    let algs = p.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verify::PinnedVerifier::new(vec![server], algs)))
        .with_client_auth_cert(vec![identity.cert()], identity.key())
        .map_err(config_err)?;
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_sni = false;
    Ok(Arc::new(cfg))
}

/// The client configuration for trust on first use: like [`client_config`], but any server
/// certificate is accepted (its handshake signature is still checked); the caller reads the
/// fingerprint from the connection and decides.
fn client_config_unpinned(identity: &Identity) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let p = provider();
    let algs = p.signature_verification_algorithms;
    let mut cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verify::PinnedVerifier::any(algs)))
        .with_client_auth_cert(vec![identity.cert()], identity.key())
        .map_err(config_err)?;
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_sni = false;
    Ok(Arc::new(cfg))
}

/// The server configuration: TLS 1.3 only, client certificates required and accepted only if
/// their fingerprint is in `clients`.
pub fn server_config(
    identity: &Identity,
    clients: &[Fingerprint],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let p = provider();
    let algs = p.signature_verification_algorithms;
    let mut cfg = rustls::ServerConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(Arc::new(verify::PinnedVerifier::new(
            clients.to_vec(),
            algs,
        )))
        .with_single_cert(vec![identity.cert()], identity.key())
        .map_err(config_err)?;
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(cfg))
}

fn handshake_error(peer: &dyn fmt::Display, e: std::io::Error) -> TlsError {
    let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the connection closed during the handshake (cut by the network, or the peer does not \
         pin our certificate)"
            .to_string()
    } else {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
                format!("refused the peer's certificate: {}", other.0)
            }
            _ => e.to_string(),
        }
    };
    TlsError::Handshake {
        peer: peer.to_string(),
        reason,
    }
}

/// Opens a TCP connection to `addr` and runs the TLS handshake as a client, accepting only
/// the server certificate with fingerprint `server`. `timeout` bounds the TCP connect and,
/// separately, the TLS handshake. Returns the raw TLS stream (no framing).
pub async fn connect_stream<A>(
    addr: A,
    identity: &Identity,
    server: Fingerprint,
    timeout: Duration,
) -> Result<TlsStream, TlsError>
where
    A: ToSocketAddrs + fmt::Display,
{
    let config = client_config(identity, server)?;
    connect_with(addr, config, timeout).await.map(|(s, _)| s)
}

/// Connects like [`connect`] but accepts whatever certificate the server presents and returns
/// its fingerprint: for *trust on first use* (ssh's `known_hosts`), where the caller has no
/// pin yet. The TLS 1.3 handshake signature is still checked, so the server holds the key of
/// the certificate whose fingerprint is returned; whether that is the right server is the
/// caller's decision, to be made before anything secret is sent (record the fingerprint, or
/// compare it with one obtained out of band).
pub async fn connect_unpinned<A>(
    addr: A,
    identity: &Identity,
    cfg: ChannelConfig,
    timeout: Duration,
) -> Result<(FramedChannel, Fingerprint), TlsError>
where
    A: ToSocketAddrs + fmt::Display,
{
    let config = client_config_unpinned(identity)?;
    let (stream, fp) = connect_with(addr, config, timeout).await?;
    Ok((FramedChannel::new(stream, cfg), fp))
}

/// TCP connect, TLS handshake and ready byte, each bounded by `timeout`; returns the stream
/// and the fingerprint of the certificate the server presented.
async fn connect_with<A>(
    addr: A,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(TlsStream, Fingerprint), TlsError>
where
    A: ToSocketAddrs + fmt::Display,
{
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(TlsError::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(TlsError::ConnectTimeout {
                addr: addr.to_string(),
                timeout,
            });
        }
    };
    tcp.set_nodelay(true)
        .map_err(|e| TlsError::Io(format!("cannot set TCP_NODELAY: {e}")))?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    let name = ServerName::try_from(CERT_SUBJECT)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .to_owned();
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake = async {
        let mut s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_error(&peer, e))?;
        let fingerprint = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of_der(c))
            .ok_or_else(|| TlsError::Handshake {
                peer: peer.clone(),
                reason: "the server presented no certificate".into(),
            })?;
        let mut ready = [0u8; 1];
        s.read_exact(&mut ready)
            .await
            .map_err(|e| handshake_error(&peer, e))?;
        if ready[0] != READY_BYTE {
            return Err(TlsError::Handshake {
                peer: peer.clone(),
                reason: format!("expected the ready byte, got {:#04x}", ready[0]),
            });
        }
        Ok((TlsStream::from(s), fingerprint))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err(TlsError::HandshakeTimeout { peer, timeout }),
    }
}

/// Connects to a [`TlsListener`] at `addr` (see [`connect_stream`]) and wraps the stream in
/// a [`FramedChannel`] with `cfg`. Call inside a tokio runtime.
pub async fn connect<A>(
    addr: A,
    identity: &Identity,
    server: Fingerprint,
    cfg: ChannelConfig,
    timeout: Duration,
) -> Result<FramedChannel, TlsError>
where
    A: ToSocketAddrs + fmt::Display,
{
    let stream = connect_stream(addr, identity, server, timeout).await?;
    Ok(FramedChannel::new(stream, cfg))
}

/// The server side of one connection's handshake (TLS, then the ready byte), bounded by
/// `timeout`.
async fn server_handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(TlsStream, PeerInfo), TlsError> {
    tcp.set_nodelay(true)
        .map_err(|e| TlsError::Io(format!("cannot set TCP_NODELAY: {e}")))?;
    let handshake = async {
        let mut s = acceptor
            .accept(tcp)
            .await
            .map_err(|e| handshake_error(&addr, e))?;
        let fingerprint = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Fingerprint::of_der(c))
            .ok_or_else(|| TlsError::Handshake {
                peer: addr.to_string(),
                reason: "the client presented no certificate".into(),
            })?;
        s.write_all(&[READY_BYTE])
            .await
            .map_err(|e| handshake_error(&addr, e))?;
        s.flush().await.map_err(|e| handshake_error(&addr, e))?;
        Ok((TlsStream::from(s), PeerInfo { addr, fingerprint }))
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err(TlsError::HandshakeTimeout {
            peer: addr.to_string(),
            timeout,
        }),
    }
}

/// Who connected: the peer's address and the fingerprint of the certificate it presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// The fingerprint of its (pinned) certificate.
    pub fingerprint: Fingerprint,
}

/// The server side: a TCP listener that runs the TLS handshake on each accepted connection
/// and accepts only clients whose certificate fingerprint is pinned.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    cfg: ChannelConfig,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Binds `addr` (port 0 picks a free port). Clients must present a certificate whose
    /// fingerprint is in `clients`; accepted connections get channels with `cfg`. The TLS
    /// handshake timeout is [`DEFAULT_HANDSHAKE_TIMEOUT`] until changed.
    pub async fn bind<A>(
        addr: A,
        identity: &Identity,
        clients: &[Fingerprint],
        cfg: ChannelConfig,
    ) -> Result<Self, TlsError>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let config = server_config(identity, clients)?;
        let tcp = TcpListener::bind(&addr)
            .await
            .map_err(|e| TlsError::Io(format!("cannot listen on {addr}: {e}")))?;
        Ok(TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            cfg,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets the time an accepted connection may take to finish the TLS handshake.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> Result<SocketAddr, TlsError> {
        self.tcp
            .local_addr()
            .map_err(|e| TlsError::Io(e.to_string()))
    }

    /// Accepts one connection and runs the TLS handshake; returns the raw TLS stream. An
    /// error other than [`TlsError::Accept`] concerns that one connection only: the listener
    /// keeps working. This runs one handshake at a time, so a peer that connects and stays
    /// silent holds up the next accept for the whole handshake timeout: fine for a test or a
    /// single expected peer; a server that must stay available to many uses
    /// [`TlsListener::incoming`].
    pub async fn accept_stream(&self) -> Result<(TlsStream, PeerInfo), TlsError> {
        let (tcp, addr) = self
            .tcp
            .accept()
            .await
            .map_err(|e| TlsError::Accept(e.to_string()))?;
        server_handshake(&self.acceptor, tcp, addr, self.handshake_timeout).await
    }

    /// Accepts one connection (see [`TlsListener::accept_stream`]) and wraps it in a
    /// [`FramedChannel`]. Call inside a tokio runtime.
    pub async fn accept(&self) -> Result<(FramedChannel, PeerInfo), TlsError> {
        let (stream, peer) = self.accept_stream().await?;
        tracing::debug!(peer = %peer.addr, fingerprint = %peer.fingerprint, "accepted TLS session");
        Ok((FramedChannel::new(stream, self.cfg.clone()), peer))
    }
}
