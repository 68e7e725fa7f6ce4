//! Beaver triples and secure bilinear products on additive shares.
//!
//! **Functionality.** Given additive shares of `x` and `y` over Z_2^64 and a bilinear map
//! `op` (elementwise product, matrix product, batched matrix product), output fresh additive
//! shares of `op(x, y)`. The protocol is Beaver's (Beaver, "Efficient multiparty protocols using
//! circuit randomization", CRYPTO 1991), with matrix triples for matrix products as in SecureML
//! (Mohassel and Zhang, S&P 2017) and CrypTen (Knott et al., NeurIPS 2021): the parties hold
//! shares of a random triple `(a, b, c = op(a, b))` shaped like the operation, open
//! `d = x - a` and `e = y - b` in one message per direction, and output
//! `z = c + op(d, b) + op(a, e) (+ op(d, e) for P0)`.
//!
//! The triples come from a [`TripleProvider`]:
//! - [`dealer`]: the client of the `privlm-dealer` process, a third, non-colluding party that
//!   compresses its output with seeds as CrypTen's trusted third party does (each party expands
//!   its random parts from a per-session PRG seed, and only the correction share of each product
//!   travels, to P1); [`dealer::serve_session`] is the dealer's side.
//! - `ideal`: `InsecureIdealDealer`, an in-process stand-in for tests and online benches,
//!   compiled only for tests and with the `insecure-ideal` feature (never in the binaries).
//! - [`ot_provider`]: [`OtTripleProvider`], dealer-free: elementwise triples and square pairs by
//!   Gilboa products over correlated OTs; matrix-shaped requests are refused with their cost.
//!
//! Correlations ([`Request`]): elementwise triples, matrix triples (batched), square pairs,
//! truncation pairs (for [`crate::trunc`]), and the *weight* correlation for products with a
//! matrix that P1 holds in plaintext ([`weight`]): a mask `B` fixed for the session, and per
//! query a pair `(A, C_0)` for P0 with `C_1 = A B - C_0` for P1. `docs/protocols/linear.md`
//! writes down every message flow.
//!
//! Roles: the weight-holding party is always P1 (the server in privlm's engine).

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::channel::ChannelError;
use crate::ring::{RingTensor, ShapeError};
use crate::share::Party;

pub mod dealer;
mod expand;
#[cfg(any(test, feature = "insecure-ideal"))]
pub mod ideal;
pub mod kernel;
pub mod lookup;
pub mod nl;
pub mod ops;
pub mod ot_provider;
pub mod prefetch;
pub mod weight;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod view_tests;

#[cfg(any(test, feature = "insecure-ideal"))]
pub use ideal::InsecureIdealDealer;
pub use ops::{BilinearOp, beaver, beaver_many, square};
pub use ot_provider::OtTripleProvider;
pub use prefetch::Prefetched;
pub use weight::{ClientWeight, PreparedQuery, ServerWeight, add_server_plain};

/// Errors of the Beaver layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BeaverError {
    /// The channel to the other computing party failed (the session is over).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The dealer refused a request (for example the two parties asked for different things);
    /// the reason is the dealer's.
    #[error("the dealer refused the request: {0}")]
    DealerRefused(String),
    /// The link to the dealer failed while this party was waiting for it.
    #[error("lost the dealer during {during}: {source}")]
    DealerLost {
        /// What this party was waiting for.
        during: String,
        /// The channel error.
        source: ChannelError,
    },
    /// The dealer sent something that does not fit the protocol.
    #[error("dealer protocol error: {0}")]
    DealerProtocol(String),
    /// A request or an operand has an invalid shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A request that is invalid on its own (zero or overflowing sizes, unknown weight id, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The operation was called by the wrong party or with the other party's data.
    #[error("wrong party: {0}")]
    WrongParty(String),
    /// An insecure component was requested without the explicit opt-in.
    #[error(
        "the insecure ideal dealer is for tests and benches only; pass --insecure-ideal-dealer to use it anyway"
    )]
    InsecureNotAllowed,
    /// The OT-based (dealer-free) provider failed or refused a request (see [`ot_provider`]):
    /// an OT or channel failure, or a correlation too expensive to make by OT (the message
    /// states the estimated cost).
    #[error(transparent)]
    Triple(#[from] crate::ot::gilboa::TripleError),
}

impl From<crate::ot::OtError> for BeaverError {
    fn from(e: crate::ot::OtError) -> Self {
        BeaverError::Triple(crate::ot::gilboa::TripleError::Ot(e))
    }
}

/// Name of the command-line flag every binary requires before it uses an insecure ideal
/// functionality (`InsecureIdealDealer`, or a fixed dealer seed).
pub const INSECURE_IDEAL_DEALER_FLAG: &str = "--insecure-ideal-dealer";

/// Fails unless the user passed [`INSECURE_IDEAL_DEALER_FLAG`]; binaries call this before they
/// construct an `InsecureIdealDealer` or use a fixed dealer seed.
pub fn require_insecure_opt_in(flag_given: bool) -> Result<(), BeaverError> {
    if flag_given {
        tracing::warn!("using the INSECURE ideal dealer: the results are not private");
        Ok(())
    } else {
        Err(BeaverError::InsecureNotAllowed)
    }
}

/// A request for correlated randomness. Both parties issue the same requests in the same order;
/// the dealer checks that they agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// `n` elementwise triples `(a, b, a*b)`.
    Elementwise {
        /// Number of triples.
        n: usize,
    },
    /// A batch of matrix triples: `A: [batch, n, k]`, `B: [batch, k, m]`, `C = A B` per batch
    /// entry.
    MatMul {
        /// Number of independent products (for example attention heads).
        batch: usize,
        /// Rows of `A`.
        n: usize,
        /// Columns of `A` = rows of `B`.
        k: usize,
        /// Columns of `B`.
        m: usize,
    },
    /// `n` square pairs `(r, r^2)`.
    Square {
        /// Number of pairs.
        n: usize,
    },
    /// `n` truncation pairs for `frac_bits` (see [`crate::trunc`]): shares of a uniform `r`, of
    /// its top bit `r_63`, and of `(r mod 2^63) >> frac_bits`.
    Trunc {
        /// Number of pairs.
        n: usize,
        /// The shift.
        frac_bits: u32,
    },
    /// Registers the session mask `B: [k, m]` of P1's weight `id` (once per session): P1 gets
    /// `B`, P0 gets nothing.
    WeightMask {
        /// The weight's session-unique id.
        id: u32,
        /// Rows of the weight.
        k: usize,
        /// Columns of the weight.
        m: usize,
    },
    /// A per-query triple for `X W` with weight `id`: P0 gets `A: [n, k]` and `C_0: [n, m]`,
    /// P1 gets `C_1 = A B - C_0`.
    Weight {
        /// The weight's id (registered with [`Request::WeightMask`]).
        id: u32,
        /// Rows of `X`.
        n: usize,
        /// Rows of the weight.
        k: usize,
        /// Columns of the weight.
        m: usize,
    },
    /// A factored table-lookup triple for `t` indices into P1's table `id`, registered with
    /// [`Request::WeightMask`] as `[v1 * v2, d]` (see [`lookup`]): P0 gets masks
    /// `a: [t, v1]`, `b: [t, v2]` and shares `g_0, h_0, k_0`; P1 gets `g_1, h_1, k_1` with
    /// `g = B x_2 b`, `h = B x_1 a`, `k = B(a, b)` per index, `B` the table's session mask
    /// viewed as `[v1, v2, d]`.
    Table {
        /// The table's id.
        id: u32,
        /// Number of indices.
        t: usize,
        /// First factor of the table's rows.
        v1: usize,
        /// Second factor of the table's rows.
        v2: usize,
        /// Row width.
        d: usize,
    },
    /// A correlation of the nonlinear layers (comparisons, multiplexers, row products, vector
    /// products): see [`nl`].
    Nonlinear(nl::NlRequest),
}

/// Largest number of ring elements in any one tensor of a request that providers accept by
/// default (2^28 elements = 2 GiB); a bound on memory, not a protocol constant.
pub const DEFAULT_MAX_REQUEST_ELEMS: usize = 1 << 28;

fn mul3(a: usize, b: usize, c: usize) -> Option<usize> {
    a.checked_mul(b)?.checked_mul(c)
}

impl Request {
    /// Checks sizes: every dimension positive, no tensor above `max_elems` elements,
    /// `frac_bits` in 1..=62.
    pub fn validate(&self, max_elems: usize) -> Result<(), BeaverError> {
        let empty = || {
            Err(BeaverError::InvalidRequest(format!(
                "a request with an empty dimension: {self:?}"
            )))
        };
        let sizes: Vec<Option<usize>> = match *self {
            Request::Elementwise { n: 0 }
            | Request::Square { n: 0 }
            | Request::Trunc { n: 0, .. } => {
                return empty();
            }
            Request::Elementwise { n } | Request::Square { n } => vec![Some(n)],
            Request::Trunc { n, frac_bits } => {
                if !(1..=62).contains(&frac_bits) {
                    return Err(BeaverError::InvalidRequest(format!(
                        "truncation by {frac_bits} bits (must be 1..=62)"
                    )));
                }
                vec![Some(n), n.checked_mul(2)]
            }
            Request::MatMul { batch, n, k, m } => {
                if batch == 0 || n == 0 || k == 0 || m == 0 {
                    return Err(BeaverError::InvalidRequest(format!(
                        "matrix triple with an empty dimension: {self:?}"
                    )));
                }
                vec![mul3(batch, n, k), mul3(batch, k, m), mul3(batch, n, m)]
            }
            Request::WeightMask { k, m, .. } => vec![k.checked_mul(m)],
            Request::Table { t, v1, v2, d, .. } => {
                if t == 0 || v1 == 0 || v2 == 0 || d == 0 {
                    return Err(BeaverError::InvalidRequest(format!(
                        "table triple with an empty dimension: {self:?}"
                    )));
                }
                let per = v1
                    .checked_add(v2)
                    .and_then(|s| s.checked_add(1))
                    .and_then(|s| mul3(s, t, d));
                vec![mul3(v1, v2, d), t.checked_mul(v1), t.checked_mul(v2), per]
            }
            Request::Nonlinear(ref r) => return r.validate(max_elems),
            Request::Weight { n, k, m, .. } => {
                if n == 0 {
                    return Err(BeaverError::InvalidRequest(
                        "weight triple with zero rows".into(),
                    ));
                }
                vec![n.checked_mul(k), k.checked_mul(m), n.checked_mul(m)]
            }
        };
        if let Request::WeightMask { k, m, .. } | Request::Weight { k, m, .. } = *self
            && (k == 0 || m == 0)
        {
            return Err(BeaverError::InvalidRequest(format!(
                "weight with an empty dimension: {self:?}"
            )));
        }
        for s in sizes {
            match s {
                Some(s) if s <= max_elems => {}
                _ => {
                    return Err(BeaverError::InvalidRequest(format!(
                        "{self:?} exceeds the limit of {max_elems} elements per tensor"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Number of correction elements the dealer sends to `party` for this request.
    pub fn correction_len(&self, party: Party) -> usize {
        if party == Party::P0 {
            return 0;
        }
        match *self {
            Request::Elementwise { n } | Request::Square { n } => n,
            Request::Trunc { n, .. } => 2 * n,
            Request::MatMul { batch, n, m, .. } => batch * n * m,
            Request::WeightMask { .. } => 0,
            Request::Weight { n, m, .. } => n * m,
            Request::Table { t, v1, v2, d, .. } => t * (v1 + v2 + 1) * d,
            Request::Nonlinear(ref r) => r.correction_len(party),
        }
    }
}

/// One party's shares of elementwise triples: `a`, `b`, `c` with `c = a * b` elementwise after
/// reconstruction; shape `[n]`.
#[derive(Clone, Debug)]
pub struct ElemTriple {
    /// Share of `a`.
    pub a: RingTensor,
    /// Share of `b`.
    pub b: RingTensor,
    /// Share of `c = a * b`.
    pub c: RingTensor,
}

/// One party's shares of a batch of matrix triples: `a: [batch, n, k]`, `b: [batch, k, m]`,
/// `c: [batch, n, m]`, `c = a b` per batch entry after reconstruction.
#[derive(Clone, Debug)]
pub struct MatTriple {
    /// Share of `A`.
    pub a: RingTensor,
    /// Share of `B`.
    pub b: RingTensor,
    /// Share of `C = A B`.
    pub c: RingTensor,
}

/// One party's shares of square pairs `(r, r^2)`; shape `[n]`.
#[derive(Clone, Debug)]
pub struct SquarePair {
    /// Share of `r`.
    pub r: RingTensor,
    /// Share of `r^2`.
    pub r2: RingTensor,
}

/// One party's shares of truncation pairs; shape `[n]` each.
#[derive(Clone, Debug)]
pub struct TruncPair {
    /// Share of a uniform `r` in Z_2^64.
    pub r: RingTensor,
    /// Arithmetic share of `r`'s top bit `r_63` (0 or 1).
    pub r_msb: RingTensor,
    /// Share of `(r mod 2^63) >> f`.
    pub r_low_shifted: RingTensor,
}

/// A party's part of a weight mask (see [`Request::WeightMask`]).
#[derive(Clone, Debug)]
pub enum WeightMask {
    /// P0 gets nothing.
    P0,
    /// P1 gets the session mask `B: [k, m]`.
    P1 {
        /// The mask.
        b: RingTensor,
    },
}

/// A party's part of a per-query weight triple (see [`Request::Weight`]).
#[derive(Clone, Debug)]
pub enum WeightTriple {
    /// P0 (the data party) holds `A: [n, k]` in full and `C_0: [n, m]`.
    P0 {
        /// The mask of P0's input share.
        a: RingTensor,
        /// P0's share of `A B`.
        c: RingTensor,
    },
    /// P1 (the weight holder) holds `C_1: [n, m]`.
    P1 {
        /// P1's share of `A B`.
        c: RingTensor,
    },
}

/// A party's part of a factored table-lookup triple (see [`Request::Table`]); per index `i`,
/// `g[i]: [v1, d]`, `h[i]: [v2, d]`, `k[i]: [d]`.
#[derive(Clone, Debug)]
pub enum TableTriple {
    /// P0 holds the masks in full and its shares.
    P0 {
        /// Masks of the first one-hot factors, `[t, v1]`.
        a: RingTensor,
        /// Masks of the second one-hot factors, `[t, v2]`.
        b: RingTensor,
        /// Share of `B x_2 b`, `[t, v1, d]`.
        g: RingTensor,
        /// Share of `B x_1 a`, `[t, v2, d]`.
        h: RingTensor,
        /// Share of `B(a, b)`, `[t, d]`.
        k: RingTensor,
    },
    /// P1's shares.
    P1 {
        /// Share of `B x_2 b`, `[t, v1, d]`.
        g: RingTensor,
        /// Share of `B x_1 a`, `[t, v2, d]`.
        h: RingTensor,
        /// Share of `B(a, b)`, `[t, d]`.
        k: RingTensor,
    },
}

/// What a provider hands out for a [`Request`].
#[derive(Clone, Debug)]
pub enum Material {
    /// For [`Request::Elementwise`].
    Elem(ElemTriple),
    /// For [`Request::MatMul`].
    Mat(MatTriple),
    /// For [`Request::Square`].
    Square(SquarePair),
    /// For [`Request::Trunc`].
    Trunc(TruncPair),
    /// For [`Request::WeightMask`].
    WeightMask(WeightMask),
    /// For [`Request::Weight`].
    Weight(WeightTriple),
    /// For [`Request::Table`].
    Table(TableTriple),
    /// For [`Request::Nonlinear`].
    Nonlinear(nl::NlMaterial),
}

pub(crate) fn unexpected(what: &str, got: &Material) -> BeaverError {
    let kind = match got {
        Material::Elem(_) => "elementwise triples",
        Material::Mat(_) => "matrix triples",
        Material::Square(_) => "square pairs",
        Material::Trunc(_) => "truncation pairs",
        Material::WeightMask(_) => "a weight mask",
        Material::Weight(_) => "a weight triple",
        Material::Table(_) => "a table triple",
        Material::Nonlinear(m) => m.kind(),
    };
    BeaverError::DealerProtocol(format!("asked for {what}, the provider returned {kind}"))
}

/// The statistics of a correlation source's own link (the dealer connection), if it has one:
/// what a cost report reads to count dealer traffic next to the peer channel's.
pub trait LinkStats {
    /// The link's counters (`None`: in-process, no link).
    fn link_stats(&self) -> Option<&crate::channel::Stats>;
}

impl<C: crate::channel::Channel> LinkStats for dealer::DealerClient<C> {
    fn link_stats(&self) -> Option<&crate::channel::Stats> {
        Some(self.channel().stats())
    }
}

#[cfg(any(test, feature = "insecure-ideal"))]
impl LinkStats for InsecureIdealDealer {
    fn link_stats(&self) -> Option<&crate::channel::Stats> {
        None
    }
}

impl<P: LinkStats + TripleProvider> LinkStats for Prefetched<P> {
    fn link_stats(&self) -> Option<&crate::channel::Stats> {
        self.inner().link_stats()
    }
}

/// A source of correlated randomness for one party (R5: requests are served as they come, in
/// bounded chunks; nothing is produced for a whole model ahead of time).
///
/// Implementations only provide [`TripleProvider::party`] and [`TripleProvider::fetch`]; the
/// typed helpers check that the material matches the request.
pub trait TripleProvider: Send {
    /// The party this provider serves.
    fn party(&self) -> Party;

    /// Serves one request. Both parties must issue the same requests in the same order.
    fn fetch(
        &mut self,
        req: &Request,
    ) -> impl Future<Output = Result<Material, BeaverError>> + Send;

    /// Sets the phase and label that this provider's own traffic (the dealer link) is counted
    /// under, if it has any. The default does nothing.
    fn set_cost_label(&mut self, _phase: crate::channel::Phase, _label: &str) {}

    /// `n` elementwise triples.
    fn elementwise(
        &mut self,
        n: usize,
    ) -> impl Future<Output = Result<ElemTriple, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::Elementwise { n }).await? {
                Material::Elem(t) => Ok(t),
                other => Err(unexpected("elementwise triples", &other)),
            }
        }
    }

    /// A batch of `batch` matrix triples `[n, k] x [k, m]`.
    fn matmul(
        &mut self,
        batch: usize,
        n: usize,
        k: usize,
        m: usize,
    ) -> impl Future<Output = Result<MatTriple, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::MatMul { batch, n, k, m }).await? {
                Material::Mat(t) => Ok(t),
                other => Err(unexpected("matrix triples", &other)),
            }
        }
    }

    /// `n` square pairs.
    fn square_pairs(
        &mut self,
        n: usize,
    ) -> impl Future<Output = Result<SquarePair, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::Square { n }).await? {
                Material::Square(t) => Ok(t),
                other => Err(unexpected("square pairs", &other)),
            }
        }
    }

    /// `n` truncation pairs for a shift of `frac_bits`.
    fn trunc_pairs(
        &mut self,
        n: usize,
        frac_bits: u32,
    ) -> impl Future<Output = Result<TruncPair, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::Trunc { n, frac_bits }).await? {
                Material::Trunc(t) => Ok(t),
                other => Err(unexpected("truncation pairs", &other)),
            }
        }
    }

    /// The session mask of weight `id` (`[k, m]`).
    fn weight_mask(
        &mut self,
        id: u32,
        k: usize,
        m: usize,
    ) -> impl Future<Output = Result<WeightMask, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::WeightMask { id, k, m }).await? {
                Material::WeightMask(t) => Ok(t),
                other => Err(unexpected("a weight mask", &other)),
            }
        }
    }

    /// A per-query triple for `X [n, k]` times weight `id` (`[k, m]`).
    fn weight_triple(
        &mut self,
        id: u32,
        n: usize,
        k: usize,
        m: usize,
    ) -> impl Future<Output = Result<WeightTriple, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::Weight { id, n, k, m }).await? {
                Material::Weight(t) => Ok(t),
                other => Err(unexpected("a weight triple", &other)),
            }
        }
    }

    /// A factored table-lookup triple (see [`Request::Table`]).
    fn table_triple(
        &mut self,
        id: u32,
        t: usize,
        v1: usize,
        v2: usize,
        d: usize,
    ) -> impl Future<Output = Result<TableTriple, BeaverError>> + Send {
        async move {
            match self.fetch(&Request::Table { id, t, v1, v2, d }).await? {
                Material::Table(x) => Ok(x),
                other => Err(unexpected("a table triple", &other)),
            }
        }
    }
}
