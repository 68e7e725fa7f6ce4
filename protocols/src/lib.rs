//! privlm-protocols: model-agnostic two-party computation building blocks.
//!
//! Two semi-honest parties P0 and P1 compute on additive secret shares over Z_2^64
//! ([`ring`], [`share`]), exchanging messages over a [`channel::Channel`]. Randomness is always
//! passed explicitly ([`prg`]). This crate knows nothing about transformers.
//!
//! Layout (DESIGN.md section 2): `ring` and `share` (arithmetic), `channel` (transports and
//! counters), `prg` (seeded randomness), `block` (128-bit values), `ot` (oblivious transfer),
//! `gc` (garbled circuits), `beaver` (triples and bilinear products), `convert`
//! (arithmetic/boolean conversions), `session` (one protocol session: role, channel,
//! correlations, PRG, parameters, cost label), `nonlinear` (ReLU, GELU, softmax, LayerNorm,
//! argmax, written once over plaintext, secure and counting backends).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod beaver;
pub mod block;
pub mod channel;
pub mod compute;
pub mod convert;
pub mod gc;
pub mod hash;
pub mod nonlinear;
pub mod ot;
pub mod prg;
pub mod ring;
pub mod session;
pub mod share;
pub mod trunc;

#[cfg(test)]
mod view_test_util;

/// Errors of this crate's building blocks that callers may want to handle uniformly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A channel error (the session is over).
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
    /// A shape error.
    #[error(transparent)]
    Shape(#[from] ring::ShapeError),
    /// A fixed-point encoding error.
    #[error(transparent)]
    FixedPoint(#[from] ring::FixedPointError),
}
