//! Channels: how protocols talk to the other party.
//!
//! Protocol code sees the [`Channel`] trait only, never a socket. A channel carries whole
//! *messages* in order; the transport splits each message into length-delimited frames of at
//! most [`ChannelConfig::max_frame_len`] bytes. Every channel counts bytes, messages and rounds
//! per phase ([`Phase`]) and per caller-set label (for example a layer name): see [`Stats`].
//!
//! Implementations:
//! - [`FramedChannel`] over any async byte stream: the in-memory duplex pair of [`mem`] for tests
//!   and the TCP + TLS 1.3 transport of [`tls`].
//!
//! The wire format, the flush rule and the limits are written down in `docs/channel.md`.

pub mod emulate;
mod framed;
pub mod mem;
mod stats;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::block::Block;
use crate::ring::RingTensor;

pub use framed::FramedChannel;
pub use stats::{Counters, Phase, Stats};

/// Largest frame payload the wire format can express (24 bits of length).
pub const MAX_FRAME_LEN_LIMIT: usize = (1 << 24) - 1;

/// Bytes of framing overhead per frame (the length header).
pub const FRAME_HEADER_LEN: usize = 4;

/// LOCAL transport parameters. Both parties must use a `max_frame_len` that the peer's limit
/// accepts; the defaults agree.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Largest frame payload sent or accepted, in bytes (at most [`MAX_FRAME_LEN_LIMIT`]).
    pub max_frame_len: usize,
    /// Largest variable-length message (control messages, [`Channel::recv_msg`]) accepted.
    pub max_message_len: usize,
    /// How long a receive may wait for its whole message (not per frame: a peer that trickles
    /// frames cannot keep a receive alive), and how long a send or a write may stall on
    /// back-pressure, before the session fails.
    pub timeout: Duration,
    /// Frames the background reader may queue before it stops reading (back-pressure). With
    /// `max_frame_len` it bounds the read-ahead memory of a connection: at most
    /// `(read_queue_frames + 1) * max_frame_len` bytes.
    pub read_queue_frames: usize,
    /// Frames the sender may queue before a send waits for the writer.
    pub write_queue_frames: usize,
    /// Size of the write buffer that coalesces small frames.
    pub write_buffer_len: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_frame_len: 1 << 20,
            max_message_len: 64 << 20,
            timeout: Duration::from_secs(120),
            read_queue_frames: 64,
            write_queue_frames: 16,
            write_buffer_len: 64 << 10,
        }
    }
}

/// Errors of a channel. After any error the session is over: the channel stays failed (every
/// later call returns the same error), and a peer-caused error is reported to the peer with an
/// abort frame before the connection closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The underlying stream failed.
    #[error("transport error: {0}")]
    Io(String),
    /// The peer closed the connection at a frame boundary.
    #[error("the peer closed the connection")]
    Closed,
    /// The stream ended in the middle of a frame.
    #[error("truncated frame: the stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame announced (or 4 for a header).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// Nothing arrived within the timeout.
    #[error("timed out after {0:?} waiting for the peer")]
    Timeout(Duration),
    /// A frame announced more bytes than the limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame header had reserved bits set.
    #[error("malformed frame header {0:#010x}")]
    BadHeader(u32),
    /// A message's length differs from what the protocol expects.
    #[error("message length mismatch in {context}: expected {expected} bytes, got {got}")]
    LengthMismatch {
        /// What was being received.
        context: String,
        /// The expected length.
        expected: usize,
        /// The length seen (a lower bound when the message was cut short).
        got: usize,
    },
    /// A variable-length message exceeds the configured maximum.
    #[error("message of at least {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Length seen so far.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message could not be decoded as the expected type or shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer ended the session with an error of its own.
    #[error("the peer aborted the session: {0}")]
    PeerAborted(String),
    /// This side aborted the session.
    #[error("session aborted: {0}")]
    Aborted(String),
}

/// A reliable, ordered, message-oriented link to the other party.
///
/// Required methods move raw bytes; the provided methods build the typed messages protocols use
/// (ring elements as raw little-endian `u64`, blocks as 16 bytes, control messages with bincode).
/// All methods return `Send` futures so protocol tasks can be spawned on a multi-threaded runtime.
pub trait Channel: Send {
    /// Sends one message.
    fn send_bytes(&mut self, data: &[u8]) -> impl Future<Output = Result<(), ChannelError>> + Send;

    /// Receives one message that must be exactly `buf.len()` bytes long; `context` names it in
    /// the error.
    fn recv_bytes_into(
        &mut self,
        buf: &mut [u8],
        context: &str,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send;

    /// Receives one message of at most `max_len` bytes.
    fn recv_bytes_bounded(
        &mut self,
        max_len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, ChannelError>> + Send;

    /// Waits until everything sent so far has been handed to the transport. The transport
    /// already flushes whenever it has nothing more queued, so protocols never need this for
    /// progress; it is a barrier (for example before measuring or closing).
    fn flush(&mut self) -> impl Future<Output = Result<(), ChannelError>> + Send;

    /// Ends the session: tells the peer why (best effort), then fails this channel.
    fn abort(&mut self, reason: &str) -> impl Future<Output = ChannelError> + Send;

    /// The transport's limits.
    fn config(&self) -> &ChannelConfig;

    /// Traffic counters.
    fn stats(&self) -> &Stats;

    /// Traffic counters, mutable: set the phase and the label here.
    fn stats_mut(&mut self) -> &mut Stats;

    /// Sets the phase that subsequent traffic is counted under.
    fn set_phase(&mut self, phase: Phase) {
        self.stats_mut().set_phase(phase);
    }

    /// Sets the label (for example a layer name) that subsequent traffic is counted under.
    fn set_label(&mut self, label: &str) {
        self.stats_mut().set_label(label);
    }

    /// Sends ring elements as raw little-endian `u64`: exactly `8 * data.len()` payload bytes.
    fn send_u64s(&mut self, data: &[u64]) -> impl Future<Output = Result<(), ChannelError>> + Send {
        async move {
            #[cfg(target_endian = "little")]
            {
                self.send_bytes(bytemuck::cast_slice(data)).await
            }
            #[cfg(not(target_endian = "little"))]
            {
                let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.send_bytes(&bytes).await
            }
        }
    }

    /// Receives exactly `n` ring elements (the count is the protocol's, never the peer's).
    fn recv_u64s(
        &mut self,
        n: usize,
        context: &str,
    ) -> impl Future<Output = Result<Vec<u64>, ChannelError>> + Send {
        async move {
            let mut out = vec![0u64; n];
            self.recv_bytes_into(bytemuck::cast_slice_mut(&mut out), context)
                .await?;
            #[cfg(not(target_endian = "little"))]
            for v in out.iter_mut() {
                *v = u64::from_le(*v);
            }
            Ok(out)
        }
    }

    /// Sends a tensor: a small shape header, then its elements as [`Channel::send_u64s`].
    fn send_tensor(
        &mut self,
        t: &RingTensor,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send {
        async move {
            self.send_bytes(&encode_shape(t.shape())).await?;
            self.send_u64s(t.data()).await
        }
    }

    /// Receives a tensor whose shape must equal `shape` (the agreed shape); a different shape
    /// aborts the session before any element is read.
    fn recv_tensor(
        &mut self,
        shape: &[usize],
        context: &str,
    ) -> impl Future<Output = Result<RingTensor, ChannelError>> + Send {
        async move {
            let header = self.recv_bytes_bounded(1 + 8 * MAX_TENSOR_RANK).await?;
            let got = match decode_shape(&header) {
                Some(s) => s,
                None => {
                    return Err(self
                        .abort(&format!("{context}: malformed tensor header"))
                        .await);
                }
            };
            if got != shape {
                let reason = format!(
                    "{context}: tensor shape mismatch: expected {shape:?}, peer sent {got:?}"
                );
                return Err(self.abort(&reason).await);
            }
            let n = shape.iter().product();
            let data = self.recv_u64s(n, context).await?;
            Ok(RingTensor::from_vec(shape, data).expect("length checked by recv_u64s"))
        }
    }

    /// Sends 128-bit blocks, 16 bytes each.
    fn send_blocks(
        &mut self,
        blocks: &[Block],
    ) -> impl Future<Output = Result<(), ChannelError>> + Send {
        async move {
            let bytes: Vec<u8> = blocks.iter().flat_map(|b| b.to_bytes()).collect();
            self.send_bytes(&bytes).await
        }
    }

    /// Receives exactly `n` blocks.
    fn recv_blocks(
        &mut self,
        n: usize,
        context: &str,
    ) -> impl Future<Output = Result<Vec<Block>, ChannelError>> + Send {
        async move {
            let mut bytes = vec![0u8; n * 16];
            self.recv_bytes_into(&mut bytes, context).await?;
            Ok(bytes
                .chunks_exact(16)
                .map(|c| Block::from_bytes(c.try_into().expect("16-byte chunk")))
                .collect())
        }
    }

    /// Sends a control message encoded with bincode (standard configuration).
    fn send_msg<T: Serialize + Sync>(
        &mut self,
        msg: &T,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send {
        async move {
            let bytes = bincode::serde::encode_to_vec(msg, bincode::config::standard())
                .map_err(|e| ChannelError::Malformed(format!("cannot encode message: {e}")))?;
            self.send_bytes(&bytes).await
        }
    }

    /// Receives a control message of type `T` (at most [`ChannelConfig::max_message_len`]
    /// bytes). Bytes that do not decode as `T`, or trailing bytes, abort the session.
    ///
    /// A receiver that knows its message is small should prefer
    /// [`Channel::recv_msg_bounded`] with a bound sized to the message.
    fn recv_msg<T: DeserializeOwned + Send>(
        &mut self,
        context: &str,
    ) -> impl Future<Output = Result<T, ChannelError>> + Send {
        async move {
            let max = self.config().max_message_len;
            self.recv_msg_bounded(max, context).await
        }
    }

    /// Receives a control message of type `T` of at most `max_len` bytes (and at most
    /// [`ChannelConfig::max_message_len`]); a longer one aborts the session with
    /// [`ChannelError::MessageTooLarge`] as soon as its first frames exceed the bound. Bytes
    /// that do not decode as `T`, or trailing bytes, abort the session.
    fn recv_msg_bounded<T: DeserializeOwned + Send>(
        &mut self,
        max_len: usize,
        context: &str,
    ) -> impl Future<Output = Result<T, ChannelError>> + Send {
        async move {
            let max = max_len.min(self.config().max_message_len);
            let bytes = self.recv_bytes_bounded(max).await?;
            match decode_message::<T>(&bytes) {
                Ok(msg) => Ok(msg),
                Err(e) => Err(self.abort(&format!("{context}: {e}")).await),
            }
        }
    }
}

/// How many bytes of containers a control message may declare per byte it is long (see
/// [`decode_message`]). bincode counts a vector at its elements' in-memory size before
/// reading them (24 bytes for each string or vector element, 8 for an integer that takes one
/// byte on the wire), so honest messages stay well below 32 per byte; a hostile length is
/// billions of times above it.
pub const DECODE_CLAIM_PER_BYTE: usize = 32;

/// Decodes a bincode (standard configuration) control message that came from the peer: the
/// whole of `bytes` must be one `T`. Errors say why (not a `T`, trailing bytes).
///
/// Unbounded, bincode trusts the lengths inside the message: a 10-byte message announcing a
/// string of 2^62 bytes makes it allocate that much first, and the process aborts. Here the
/// sizes the message's containers declare (what bincode allocates before reading them) may
/// total at most [`DECODE_CLAIM_PER_BYTE`] times the message's length, and at least 64 KiB,
/// so what a message can make the receiver allocate is proportional to its own size.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    use bincode::serde::decode_from_slice;
    let std = bincode::config::standard();
    let claim = bytes.len().saturating_mul(DECODE_CLAIM_PER_BYTE);
    // bincode's limit is a type parameter: pick the smallest that covers `claim`.
    let r = if claim <= 64 << 10 {
        decode_from_slice::<T, _>(bytes, std.with_limit::<{ 64 << 10 }>())
    } else if claim <= 2 << 20 {
        decode_from_slice::<T, _>(bytes, std.with_limit::<{ 2 << 20 }>())
    } else if claim <= 64 << 20 {
        decode_from_slice::<T, _>(bytes, std.with_limit::<{ 64 << 20 }>())
    } else if claim <= 2 << 30 {
        decode_from_slice::<T, _>(bytes, std.with_limit::<{ 2 << 30 }>())
    } else {
        decode_from_slice::<T, _>(bytes, std.with_limit::<{ 1 << 36 }>())
    };
    match r {
        Ok((msg, used)) if used == bytes.len() => Ok(msg),
        Ok((_, used)) => Err(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        )),
        Err(bincode::error::DecodeError::LimitExceeded) => Err(format!(
            "cannot decode message: its lengths announce more than {DECODE_CLAIM_PER_BYTE} \
             bytes per byte of the {}-byte message",
            bytes.len()
        )),
        Err(e) => Err(format!("cannot decode message: {e}")),
    }
}

/// Longest text, in characters after escaping, that [`sanitize_peer_text`] keeps.
pub const MAX_PEER_TEXT_CHARS: usize = 200;

/// Makes text that came from the peer (for example the reason in its ABORT frame) safe to log
/// or relay: printable ASCII is kept, everything else (newlines, terminal escapes, other control
/// and non-ASCII characters, invalid UTF-8) is written as a Rust-style escape (`\n`,
/// `\u{1b}`), and the result is cut to about [`MAX_PEER_TEXT_CHARS`] characters, with a note
/// of the full length when something was cut. The peer therefore cannot forge log lines, move
/// the terminal's cursor or fill the log.
pub fn sanitize_peer_text(bytes: &[u8]) -> String {
    // Four bytes per kept character are plenty: the rest is cut anyway.
    let head = &bytes[..bytes.len().min(4 * MAX_PEER_TEXT_CHARS)];
    let mut out = String::with_capacity(MAX_PEER_TEXT_CHARS + 40);
    for c in String::from_utf8_lossy(head).chars() {
        let plain = matches!(c, ' '..='~') && c != '\\';
        let len = if plain { 1 } else { c.escape_default().count() };
        if out.len() + len > MAX_PEER_TEXT_CHARS {
            out.push_str(&format!("... [cut, {} bytes in all]", bytes.len()));
            return out;
        }
        if plain {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    if head.len() < bytes.len() {
        out.push_str(&format!("... [cut, {} bytes in all]", bytes.len()));
    }
    out
}

/// Largest tensor rank [`Channel::send_tensor`] carries.
pub const MAX_TENSOR_RANK: usize = 8;

fn encode_shape(shape: &[usize]) -> Vec<u8> {
    assert!(
        shape.len() <= MAX_TENSOR_RANK,
        "tensor rank {} exceeds {MAX_TENSOR_RANK}",
        shape.len()
    );
    let mut out = Vec::with_capacity(1 + 8 * shape.len());
    out.push(shape.len() as u8);
    for &d in shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    out
}

fn decode_shape(bytes: &[u8]) -> Option<Vec<usize>> {
    let (&rank, rest) = bytes.split_first()?;
    let rank = rank as usize;
    if rank > MAX_TENSOR_RANK || rest.len() != 8 * rank {
        return None;
    }
    rest.chunks_exact(8)
        .map(|c| usize::try_from(u64::from_le_bytes(c.try_into().ok()?)).ok())
        .collect()
}

#[cfg(test)]
mod tests;
