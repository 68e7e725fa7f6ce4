//! The secure forward pass: the transformer of [`crate::model`] run between a client (P0, the
//! prompt) and a server (P1, the weights) on additive secret shares.
//!
//! Layering (DESIGN.md section 3):
//! - [`engine`]: the [`Engine`] trait, every protocol primitive the secure tensor backend uses
//!   (server-weight products, share x share products, truncation, embedding lookup, the
//!   nonlinear ops, reveals, cost labels, preprocessing), and [`SessionEngine`], its
//!   implementation over one [`privlm_protocols::session::Session`]. Every byte a secure run
//!   sends goes through an [`Engine`] method, so a counting engine (`src/cost/`) that implements
//!   the same trait counts exactly what the real run sends.
//! - [`ops`]: [`SecureOps`], the [`crate::model::ops::TensorOps`] backend written once over
//!   any [`Engine`]: both parties run the same [`crate::model::ops::forward`].
//! - [`plan`]: [`PlanEngine`], an engine that sends nothing and lists the correlation requests
//!   of a forward pass per stage (what the preprocessing phase fetches ahead of the online one).
//! - [`generate`]: private generation with a secret-shared KV cache
//!   ([`client_generate`], [`server_generate`]) and its [`CostReport`].
//!
//! `docs/secure.md` describes the protocol of each layer, the costs and the measurements.

pub mod engine;
pub mod generate;
pub mod ops;
pub mod plan;

pub use engine::{Engine, LinkStats, SessionEngine};
pub use generate::{
    ClientOutput, CostEntry, CostReport, ServerOutput, client_generate, server_generate,
};
pub use ops::SecureOps;
pub use plan::PlanEngine;

use privlm_protocols::beaver::BeaverError;
use privlm_protocols::session::{ErrorKind, ProtocolError};

use crate::model::ModelError;

/// Errors of the secure forward pass. Messages name the op that failed; they never contain
/// secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// A protocol op failed (channel, dealer, peer disagreement, invalid input).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A linear building block (Beaver products, server weights, lookups) failed.
    #[error("{op}: {source}")]
    Beaver {
        /// The engine op.
        op: &'static str,
        /// Why.
        #[source]
        source: BeaverError,
    },
    /// The model's own checks (shapes, tokens, context length, weights).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// This party's inputs to an engine op are invalid (a programming error or a peer's lie
    /// caught before anything was sent).
    #[error("{op}: {msg}")]
    BadInput {
        /// The engine op.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
}

impl SecureError {
    /// An error of engine op `op` from a protocol error kind.
    pub fn protocol(op: &'static str, kind: ErrorKind) -> Self {
        SecureError::Protocol(ProtocolError::new(op, kind))
    }

    /// An invalid input to engine op `op`.
    pub fn bad(op: &'static str, msg: impl Into<String>) -> Self {
        SecureError::BadInput {
            op,
            msg: msg.into(),
        }
    }
}
