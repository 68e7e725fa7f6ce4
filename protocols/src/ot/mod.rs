//! Oblivious transfer.
//!
//! The interfaces here are what the rest of the crate consumes (garbled-circuit inputs, B2A,
//! the millionaires' protocol, Gilboa triples). Implementations: [`ideal`] (in-process, test-only,
//! insecure by construction) and the real protocols (base OT + IKNP extension), added by the
//! Oblivious transfer issue.
//!
//! Correlations:
//! - **Correlated OT (COT)** with a global `delta`: per OT the sender gets `q_i`, the receiver with
//!   choice bit `b_i` gets `t_i = q_i ^ (b_i * delta)`. `delta` is fixed per sender and its least
//!   significant bit is 1, so it can serve as a garbler's free-XOR offset (point-and-permute).
//! - **Random OT (ROT)**: the sender gets two random messages `(m0, m1)`, the receiver a random
//!   choice bit `b` and `m_b`.

use std::future::Future;

use crate::block::Block;
use crate::channel::{Channel, ChannelError};

#[cfg(test)]
mod apps_test_util;
pub mod b2a;
pub mod base;
pub mod chosen;
pub mod dealer;
pub mod gilboa;
pub mod ideal;
pub mod iknp;
pub mod millionaire;
pub mod one_of_n;
#[cfg(test)]
mod test_util;
pub mod transpose;
mod wire;

/// Errors of OT protocols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtError {
    /// The channel failed (the session is over).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The peer deviated from the protocol in a detectable way.
    #[error("OT protocol error: {0}")]
    Protocol(String),
}

/// Sender of correlated OTs with a fixed global correlation.
pub trait CotSender: Send {
    /// The global correlation; its least significant bit is 1.
    fn delta(&self) -> Block;

    /// Produces `count` correlated OTs; returns the sender's `q_i`.
    fn send_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> impl Future<Output = Result<Vec<Block>, OtError>> + Send;
}

/// Receiver of correlated OTs.
pub trait CotReceiver: Send {
    /// Produces one correlated OT per choice bit; returns `t_i = q_i ^ (b_i * delta)`.
    fn recv_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> impl Future<Output = Result<Vec<Block>, OtError>> + Send;
}

/// Sender of random OTs.
pub trait RotSender: Send {
    /// Produces `count` random OTs; returns the message pairs `(m0, m1)`.
    fn send_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> impl Future<Output = Result<Vec<[Block; 2]>, OtError>> + Send;
}

/// Receiver of random OTs.
pub trait RotReceiver: Send {
    /// Produces `count` random OTs; returns the random choice bits and the chosen messages.
    fn recv_rot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> impl Future<Output = Result<(Vec<bool>, Vec<Block>), OtError>> + Send;
}
