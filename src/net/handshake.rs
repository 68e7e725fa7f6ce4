//! The session handshake: both parties send a preamble and a hello, then check the peer's.

use privlm_protocols::channel::{Channel, ChannelError, Phase};
use privlm_protocols::share::Party;
use serde::{Deserialize, Serialize};

use super::params::{
    COMPUTATIONAL_SECURITY_BITS, Difference, PROTOCOL_VERSION, ParamsHash,
    STATISTICAL_SECURITY_BITS, SessionParams,
};

/// First 4 bytes of the preamble.
pub const MAGIC: [u8; 4] = *b"PRLM";

/// Largest hello the handshake reads, in bytes (a GPT-2 manifest is a few KiB): a peer cannot
/// make the handshake buffer more, whatever the channel's `max_message_len`.
pub const MAX_HELLO_LEN: usize = 1 << 20;

/// Label the handshake's traffic is counted under (phase [`Phase::Setup`]).
pub const HANDSHAKE_LABEL: &str = "handshake";

/// The second handshake message.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Hello {
    role: Party,
    computational_security_bits: u32,
    statistical_security_bits: u32,
    max_frame_len: u64,
    params: SessionParams,
    hash: ParamsHash,
}

/// What a successful handshake established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The hash of the agreed parameters (equal on both sides).
    pub hash: ParamsHash,
    /// The peer's role.
    pub peer: Party,
}

/// Why a handshake failed. In every case the session is over; when this side detected the
/// problem it has also sent the peer an abort frame with the same text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// An AGREEMENT parameter (or the protocol version, or a SECURITY constant) differs.
    #[error("{0}")]
    Mismatch(Difference),
    /// The peer cannot be talked to for another reason (not privlm, same role, frame limits,
    /// inconsistent hash).
    #[error("incompatible peer: {0}")]
    Incompatible(String),
    /// The channel failed (timeout, closed, the peer aborted, a malformed message).
    #[error("handshake failed: {0}")]
    Channel(#[from] ChannelError),
}

async fn fail<C: Channel>(ch: &mut C, e: HandshakeError) -> HandshakeError {
    ch.abort(&e.to_string()).await;
    e
}

/// Runs the handshake as `role` with our `params`: sends an 8-byte preamble (`MAGIC` and the
/// protocol version, little endian) and a bincode `Hello` (role, SECURITY constants, our
/// `max_frame_len`, the parameters and their hash), then reads the peer's and checks, in
/// order: magic, protocol version, role (must be the other one), SECURITY constants, frame
/// limit (the peer's frames must fit our limit), the peer's hash against its own parameters,
/// and finally our hash against the peer's. On the first failure it aborts the channel with a
/// message naming the first difference (field, ours, peer) and returns it.
///
/// Both parties send before they receive, so the handshake costs one round on each side.
/// Every receive is bounded by the channel's [`privlm_protocols::channel::ChannelConfig`]
/// timeout. Traffic is counted under [`Phase::Setup`] / [`HANDSHAKE_LABEL`]; the caller's
/// phase and label are restored afterwards.
pub async fn handshake<C: Channel>(
    ch: &mut C,
    role: Party,
    params: &SessionParams,
) -> Result<Agreed, HandshakeError> {
    let (phase, label) = (ch.stats().phase(), ch.stats().label().to_string());
    ch.set_phase(Phase::Setup);
    ch.set_label(HANDSHAKE_LABEL);
    let r = run(ch, role, params).await;
    ch.set_phase(phase);
    ch.set_label(&label);
    r
}

async fn run<C: Channel>(
    ch: &mut C,
    role: Party,
    params: &SessionParams,
) -> Result<Agreed, HandshakeError> {
    let ours = params.hash();
    let mut preamble = [0u8; 8];
    preamble[..4].copy_from_slice(&MAGIC);
    preamble[4..].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    ch.send_bytes(&preamble).await?;
    let hello = Hello {
        role,
        computational_security_bits: COMPUTATIONAL_SECURITY_BITS,
        statistical_security_bits: STATISTICAL_SECURITY_BITS,
        max_frame_len: ch.config().max_frame_len as u64,
        params: params.clone(),
        hash: ours,
    };
    ch.send_msg(&hello).await?;

    let mut peer_pre = [0u8; 8];
    ch.recv_bytes_into(&mut peer_pre, "handshake preamble")
        .await?;
    if peer_pre[..4] != MAGIC {
        let e = HandshakeError::Incompatible(format!(
            "the peer is not a privlm party (preamble {:02x?})",
            &peer_pre[..4]
        ));
        return Err(fail(ch, e).await);
    }
    let peer_version = u32::from_le_bytes(peer_pre[4..].try_into().expect("4 bytes"));
    if peer_version != PROTOCOL_VERSION {
        // Read (and ignore) the peer's hello so that closing does not reset the connection
        // under data the peer has yet to read; its format may differ from ours. Every
        // version must keep this shape: an 8-byte preamble, then exactly one message.
        let _ = ch.recv_bytes_bounded(MAX_HELLO_LEN).await;
        let e = HandshakeError::Mismatch(Difference {
            field: "protocol version".into(),
            ours: PROTOCOL_VERSION.to_string(),
            peer: peer_version.to_string(),
        });
        return Err(fail(ch, e).await);
    }
    let peer: Hello = ch
        .recv_msg_bounded(MAX_HELLO_LEN, "handshake hello")
        .await?;

    if peer.role == role {
        let e = HandshakeError::Incompatible(format!("both parties claim the role {role:?}"));
        return Err(fail(ch, e).await);
    }
    for (field, mine, theirs) in [
        (
            "computational security bits",
            COMPUTATIONAL_SECURITY_BITS,
            peer.computational_security_bits,
        ),
        (
            "statistical security bits",
            STATISTICAL_SECURITY_BITS,
            peer.statistical_security_bits,
        ),
    ] {
        if mine != theirs {
            let e = HandshakeError::Mismatch(Difference {
                field: field.into(),
                ours: mine.to_string(),
                peer: theirs.to_string(),
            });
            return Err(fail(ch, e).await);
        }
    }
    let our_max = ch.config().max_frame_len as u64;
    if peer.max_frame_len > our_max {
        let e = HandshakeError::Incompatible(format!(
            "the peer sends frames of up to {} bytes but we accept at most {our_max} \
             (max_frame_len is LOCAL, but each side's limit must admit the other's frames)",
            peer.max_frame_len
        ));
        return Err(fail(ch, e).await);
    }
    if peer.max_frame_len < our_max {
        // The peer refuses our frames; it reports the problem, and we fail with the same text.
        let e = HandshakeError::Incompatible(format!(
            "we send frames of up to {our_max} bytes but the peer accepts at most {} \
             (max_frame_len is LOCAL, but each side's limit must admit the other's frames)",
            peer.max_frame_len
        ));
        return Err(fail(ch, e).await);
    }
    if peer.params.hash() != peer.hash {
        let e = HandshakeError::Incompatible(format!(
            "the peer's parameter hash {} does not match its parameters (hash {}): \
             different canonical encodings",
            peer.hash,
            peer.params.hash()
        ));
        return Err(fail(ch, e).await);
    }
    if peer.hash != ours {
        let e = match params.first_difference(&peer.params) {
            Some(d) => HandshakeError::Mismatch(d),
            None => HandshakeError::Incompatible(format!(
                "parameter hashes differ (ours {ours}, peer {}) but no field differs",
                peer.hash
            )),
        };
        return Err(fail(ch, e).await);
    }
    tracing::info!(hash = %ours, peer = ?peer.role, "session parameters agreed");
    Ok(Agreed {
        hash: ours,
        peer: peer.role,
    })
}
