//! Serving: the inference server, the client and what they say to each other before the
//! secure computation starts. `privlm-server`, `privlm-client` and `privlm demo` are thin
//! command lines over this module; `docs/serving.md` describes the whole flow.
//!
//! - [`control`]: the per-session control exchange (the server's [`control::Offer`], the
//!   client's [`control::SessionRequest`], refusals with reasons) and the session's
//!   AGREEMENT parameters;
//! - [`server`]: [`server::InferenceServer`], one task per session under a session limit;
//! - [`client`]: [`client::generate`], one private generation from the client's side;
//! - [`known_hosts`]: pinning by fingerprint and trust on first use;
//! - [`load`]: load runs of real processes (`privlm-bench load`).
//!
//! Pairing at the dealer: the client draws a fresh random 32-byte session id, sends it to the
//! server inside the TLS channel, and both parties give it to the dealer in their hello; the
//! dealer pairs the P0 (client) and the P1 (server) with equal ids.

pub mod client;
pub mod control;
pub mod demo;
mod glue;
pub mod known_hosts;
pub mod load;
pub mod report;
pub mod server;

pub use crate::secure::CostReport;
