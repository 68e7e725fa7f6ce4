//! Oblivious transfer.
//!
//! The interfaces here are what the rest of the crate consumes (garbled-circuit inputs, B2A,
//! the millionaires' protocol, Gilboa triples). Implementations: the real protocols (base OT +
//! IKNP extension), the dealer-supplied consumers ([`dealer`]), and `ideal` (in-process,
//! insecure by construction; compiled only for tests and with the `insecure-ideal` feature,
//! which the binaries never enable).
//!
//! Correlations:
//! - **Correlated OT (COT)** with a global `delta`: per OT the sender gets `q_i`, the receiver with
//!   choice bit `b_i` gets `t_i = q_i ^ (b_i * delta)`. `delta` is fixed per sender and its least
//!   significant bit is 1, so it can serve as a garbler's free-XOR offset (point-and-permute).
//! - **Random OT (ROT)**: the sender gets two random messages `(m0, m1)`, the receiver a random
//!   choice bit `b` and `m_b`.
//!
//! **One tweak space per `Δ`.** Everything hashed under a COT sender's `Δ` (garbled gates,
//! random OTs hashed from COTs, additive correlated OTs) takes its hash tweaks from the
//! [`TweakCounter`] of that correlation: [`CotSender::tweaks`] on the sender, the mirror
//! [`CotReceiver::tweaks`] on the receiver, which both ends advance by the same amounts at the
//! same points of the protocol. The counter lives as long as the correlation and is never
//! reset, so no tweak repeats across garbled-circuit sessions or calls; see
//! `docs/protocols/ot.md`.

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
#[cfg(any(test, feature = "insecure-ideal"))]
pub mod ideal;
pub mod iknp;
pub mod millionaire;
pub mod one_of_n;
#[cfg(test)]
mod test_util;
pub mod transpose;
#[cfg(test)]
mod view_tests;
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

/// The hash-tweak counter of one correlated-OT correlation (one `Δ`).
///
/// TCCR hashing of values correlated by `Δ` is secure only while no tweak repeats, across every
/// use of that `Δ`: every garbled-circuit session, random-OT call and additive-COT call over the
/// same sender. The counter is owned by the correlation source, never reset, and mirrored on
/// the receiver (both ends [`reserve`](TweakCounter::reserve) the same counts in the same
/// order, which the protocols guarantee by construction). The value is public: it only counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TweakCounter {
    next: u64,
}

impl TweakCounter {
    /// A counter at 0 (a fresh correlation).
    pub fn new() -> Self {
        TweakCounter::default()
    }

    /// Reserves `n` fresh consecutive tweak indices and returns the first. Panics only after
    /// 2^64 indices, which no session reaches (at a billion hashes per second it would take
    /// 584 years).
    pub fn reserve(&mut self, n: u64) -> u64 {
        let first = self.next;
        self.next = first
            .checked_add(n)
            .expect("more than 2^64 hash tweaks under one delta");
        first
    }

    /// Indices reserved so far (the next index to be handed out).
    pub fn used(&self) -> u64 {
        self.next
    }
}

/// Sender of correlated OTs with a fixed global correlation.
///
/// Implementors hold one [`TweakCounter`] per `Δ` and return it from [`CotSender::tweaks`];
/// the matching [`CotReceiver`] holds the mirror counter.
pub trait CotSender: Send {
    /// The global correlation; its least significant bit is 1.
    fn delta(&self) -> Block;

    /// The tweak counter of this correlation: every hash of a value correlated by
    /// [`CotSender::delta`] takes its tweaks from here (see [`TweakCounter`]).
    fn tweaks(&mut self) -> &mut TweakCounter;

    /// Produces `count` correlated OTs; returns the sender's `q_i`.
    fn send_cot<C: Channel>(
        &mut self,
        ch: &mut C,
        count: usize,
    ) -> impl Future<Output = Result<Vec<Block>, OtError>> + Send;
}

/// Receiver of correlated OTs.
pub trait CotReceiver: Send {
    /// The mirror of the sender's [`CotSender::tweaks`]: advanced by the same amounts at the
    /// same points, so both ends hash with the same tweaks.
    fn tweaks(&mut self) -> &mut TweakCounter;

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
