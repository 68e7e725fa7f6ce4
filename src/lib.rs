//! privlm: two-party secure inference for GPT-2-style decoder-only transformers.
//!
//! A client holding a prompt and a server holding model weights run the model together so that
//! the client learns only the generated tokens and the server learns nothing about the prompt
//! or the output. The 2PC building blocks live in the `privlm-protocols` crate; this crate holds
//! the engine: session setup ([`net`]), the plaintext model, the secure forward pass and the
//! cost model (see DESIGN.md section 2 and `docs/`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cost;
pub mod entropy;
pub mod model;
pub mod net;
pub mod secure;
pub mod serve;

pub use privlm_protocols as protocols;
