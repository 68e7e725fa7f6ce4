//! An in-memory duplex pair of channels, for tests and single-process benches.
//!
//! The pipe between the two ends holds only [`DEFAULT_PIPE_BYTES`] bytes, so a protocol that
//! waits for data its peer never sends hangs (and hits the timeout) in tests, not in production.
//! The framing, limits and counters are exactly those of the TLS transport.

use super::{ChannelConfig, FramedChannel};

/// Capacity of the in-memory pipe in each direction.
pub const DEFAULT_PIPE_BYTES: usize = 16 << 10;

/// Two connected channels with the default configuration. Call inside a tokio runtime.
pub fn pair() -> (FramedChannel, FramedChannel) {
    pair_with(ChannelConfig::default(), DEFAULT_PIPE_BYTES)
}

/// Two connected channels with a given configuration and pipe capacity.
pub fn pair_with(cfg: ChannelConfig, pipe_bytes: usize) -> (FramedChannel, FramedChannel) {
    let (a, b) = tokio::io::duplex(pipe_bytes);
    (
        FramedChannel::new(a, cfg.clone()),
        FramedChannel::new(b, cfg),
    )
}
