//! Session setup: the handshake over agreed parameters, on top of the TLS transport.
//!
//! Definition: before any secret-dependent message, the two parties establish that they run
//! the same protocol on the same public parameters. Two-party protocols are only correct (and
//! their security proofs only apply) when both parties use the same ring, the same
//! fixed-point scale, the same approximations and the same model shapes; a silent mismatch
//! yields garbage, not an error. Following DESIGN.md (central abstraction 6) and STYLE.md R10,
//! every parameter belongs to one of three classes:
//!
//! - **LOCAL**: may differ between the parties and never changes the transcript: thread
//!   counts, buffer sizes, queue depths, timeouts
//!   ([`privlm_protocols::channel::ChannelConfig`]). One exception is checked anyway: the
//!   largest frame a party sends must fit the peer's frame limit, so the handshake compares
//!   `max_frame_len` (without hashing it).
//! - **AGREEMENT**: must be equal on both sides: protocol version, ring width, fixed-point
//!   fractional bits, the protocol building blocks' parameters ([`ProtocolParams`]: IKNP chunk
//!   size, garbled-table batch size, DReLU bit width, dropped bits and digit size, truncation
//!   mode), approximation settings, the model manifest (architecture and shapes, never
//!   weights). They live in one typed [`SessionParams`], whose canonical encoding is
//!   hashed with SHA-256; both parties exchange version, parameters and hash
//!   ([`handshake`]) and abort on any difference with an error naming the first one, for
//!   example `fixed-point fractional bits differ: ours 16, peer 12`.
//! - **SECURITY**: [`COMPUTATIONAL_SECURITY_BITS`] = 128 and [`STATISTICAL_SECURITY_BITS`] =
//!   40. Constants, never configuration; they are part of the hashed encoding and checked
//!   by name in the handshake.
//!
//! Connecting: [`privlm_protocols::channel::tls::connect`] (bounded by a connect timeout)
//! or [`privlm_protocols::channel::tls::TlsListener::accept`] (bounded by a handshake
//! timeout) give a channel; every receive on it, the handshake's included, is bounded by
//! `ChannelConfig::timeout`. The message flow is in `docs/channel.md`.

mod handshake;
mod params;

pub use handshake::{Agreed, HANDSHAKE_LABEL, HandshakeError, MAGIC, MAX_HELLO_LEN, handshake};
pub use params::{
    COMPUTATIONAL_SECURITY_BITS, Difference, ModelManifest, PROTOCOL_VERSION, ParamValue,
    ParamsHash, ProtocolParams, RING_BITS, STATISTICAL_SECURITY_BITS, SessionParams, TensorSpec,
};
