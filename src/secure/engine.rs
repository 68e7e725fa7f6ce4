//! The protocol primitives of the secure forward pass: the [`Engine`] trait and
//! [`SessionEngine`], its implementation over one protocol [`Session`].
//!
//! [`super::SecureOps`] (the secure [`crate::model::ops::TensorOps`] backend) is written once
//! over [`Engine`]; every message a secure forward pass sends, to the peer or to the dealer,
//! goes through one of the methods below. An implementation that computes nothing but counts
//! (`CountEngine` in `src/cost/`, over [`privlm_protocols::nonlinear::Count`]) therefore counts
//! exactly the bytes and rounds of the real run, and [`super::PlanEngine`] lists exactly the
//! correlation requests it makes.
//!
//! **Values.** A share is this party's additive share of a tensor over Z_2^64, as a
//! [`RingTensor`] (row-major, shape as documented per method). Fixed point with
//! `params().frac_bits` fractional bits unless a method says otherwise; products are returned
//! at `2f` bits and truncated by the caller with [`Engine::trunc`], so the caller decides where
//! truncations happen (and the fixed-point mirror can make the same choices). Local work on
//! shares (additions, public scalings, relayouts, the server's biases) needs no engine call.
//!
//! **Parties.** P0 is the client (the prompt, the generated tokens), P1 the server (every
//! weight). Both parties call the same methods in the same order with the same public
//! arguments (shapes, ids, masks, temperatures); what differs is marked `Option`: the party
//! holding a value passes `Some`, the other `None`.
//!
//! **Weight ids.** Every server matrix and vector is registered once per session under an id
//! ([`Engine::setup_weight`], [`Engine::setup_vector`]): one id namespace (the dealer's session
//! masks), assigned by the caller in a fixed order, never reused.
//!
//! **Cost labels.** [`Engine::set_cost_label`] sets the phase and base label (for example
//! `Phase::Online`, `"layer3/attn"`); each method appends its op name (the table below) while
//! it runs, on the peer channel and on the dealer link: `"layer3/attn/softmax"`.
//!
//! | method | op label | messages (P0 = client, P1 = server; `n`, `k`, `m` as in the method) | correlation |
//! |---|---|---|---|
//! | [`setup_weight`](Engine::setup_weight) | `setup_weight` | P1 → P0: `W − B` (`8km` B + header), once | `WeightMask` |
//! | [`setup_vector`](Engine::setup_vector) | `server_vector` | P1 → P0: `γ − B` (`8d` B), once | `WeightMask` (`1 × d`) |
//! | [`matmul_weight`](Engine::matmul_weight) | `linear` | P0 → P1: `X_0 − A` (`8nk` B), one way | `Weight` |
//! | [`lookup`](Engine::lookup) | `lookup` | P0 → P1: `onehot − A` (`8nV` B), one way | `Weight` (`n × V × d`) |
//! | [`matmul_shares`](Engine::matmul_shares) | `matmul` | both: `x − a`, `y − b` (`8(hnk + hkm)` B each way) | `MatMul` |
//! | [`trunc`](Engine::trunc) | `trunc` | `docs/protocols/nonlinear.md` section 1 | `Trunc` |
//! | [`relu`](Engine::relu), [`gelu`](Engine::gelu), [`softmax`](Engine::softmax), [`layer_norm`](Engine::layer_norm), [`argmax`](Engine::argmax) | the op's name | `docs/protocols/nonlinear.md` | `Nonlinear(..)`, `Trunc`, ... |
//! | [`reveal`](Engine::reveal) | `reveal` | the other party → `to`: its share (`8n` B) | none |
//! | [`preprocess`](Engine::preprocess) | (base label) | dealer link only | the listed requests |

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use privlm_protocols::beaver::dealer::DealerClient;
use privlm_protocols::beaver::ops::{BilinearOp, beaver_many};
use privlm_protocols::beaver::weight::{ClientWeight, PreparedQuery, ServerWeight};
use privlm_protocols::beaver::{
    BeaverError, InsecureIdealDealer, Prefetched, Request, TripleProvider,
};
use privlm_protocols::channel::{Channel, Phase, Stats};
use privlm_protocols::nonlinear::{self, Arith, Mask, NlParams, NormParams, ServerVector};
use privlm_protocols::ring::RingTensor;
use privlm_protocols::session::Session;
use privlm_protocols::share::{AShare, Party};

use super::SecureError;

/// The protocol primitives of the secure forward pass (see the module docs for the values,
/// parties, ids, labels and the cost of each method).
///
/// All methods that communicate return `Send` futures; a failed method leaves the session
/// unusable (the channel is aborted with the reason, so the peer fails with it too).
pub trait Engine: Send {
    /// A server matrix registered with [`Engine::setup_weight`] (P1: the plaintext; P0: the
    /// masked `W − B`; a counting engine: the shape).
    type Weight: Send + Sync;
    /// A server vector registered with [`Engine::setup_vector`] (a LayerNorm gain).
    type Vector: Send + Sync;

    /// This party.
    fn party(&self) -> Party;

    /// The AGREEMENT parameters of the nonlinear ops (fixed-point bits and so on).
    fn params(&self) -> &NlParams;

    /// Sets the phase and base label the following traffic is counted under (each method
    /// appends its op name while it runs).
    fn set_cost_label(&mut self, phase: Phase, label: &str);

    /// Preprocessing: fetches the correlations `requests` (in this order) from the correlation
    /// source ahead of the ops that consume them, under the current label and
    /// [`Phase::Preprocessing`]. Both parties pass the same list ([`super::PlanEngine`] makes
    /// it). Optional: without it, each op fetches its own correlations when it runs.
    fn preprocess(
        &mut self,
        requests: &[Request],
    ) -> impl Future<Output = Result<(), SecureError>> + Send;

    /// Registers server matrix `id` of shape `[k, m]` (session setup, once per id): P1 passes
    /// `Some(w)` (fixed point), P0 `None`.
    fn setup_weight(
        &mut self,
        id: u32,
        k: usize,
        m: usize,
        w: Option<RingTensor>,
    ) -> impl Future<Output = Result<Self::Weight, SecureError>> + Send;

    /// Registers server vector `id` of length `d` (session setup, once per id): P1 passes
    /// `Some(v)` (fixed point), P0 `None`.
    fn setup_vector(
        &mut self,
        id: u32,
        d: usize,
        v: Option<&[u64]>,
    ) -> impl Future<Output = Result<Self::Vector, SecureError>> + Send;

    /// Shares of `X W` (at `2f` bits, not truncated) for a shared `X: [n, k]` and a registered
    /// server matrix `W: [k, m]`. Biases are the server's to add to its share (local).
    fn matmul_weight(
        &mut self,
        x: &RingTensor,
        w: &Self::Weight,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// Shares of rows `ids` of the registered server table `w: [V, d]` (exact, no truncation:
    /// a one-hot product). P0 passes `Some(ids)` (each `< V`), P1 `None`; both pass `n`, the
    /// number of ids. Output `[n, d]`.
    fn lookup(
        &mut self,
        w: &Self::Weight,
        ids: Option<&[u32]>,
        n: usize,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// Shares of the batched product `x y` of two shared tensors, `[h, n, k] x [h, k, m] ->
    /// [h, n, m]` (one product per head, all in one round; at `2f` bits, not truncated).
    fn matmul_shares(
        &mut self,
        x: &RingTensor,
        y: &RingTensor,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// Shares of `⌊x / 2^bits⌋` (or that plus one: `docs/numeric.md`), any shape.
    fn trunc(
        &mut self,
        x: &RingTensor,
        bits: u32,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// ReLU of every element.
    fn relu(
        &mut self,
        x: &RingTensor,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// GELU (tanh form) of every element.
    fn gelu(
        &mut self,
        x: &RingTensor,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// Softmax over the last axis of `x: [heads, rows, cols]`, computing only the entries
    /// `mask` keeps (masked entries are 0), with public temperatures (one per head and row).
    fn softmax(
        &mut self,
        x: &RingTensor,
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// LayerNorm of every row of `x: [rows, d]` with the registered gain `gain` and the
    /// server's bias (P1 passes `Some(bias)`, fixed point; P0 `None`).
    fn layer_norm(
        &mut self,
        x: &RingTensor,
        gain: &Self::Vector,
        bias: Option<&[u64]>,
        eps: f64,
    ) -> impl Future<Output = Result<RingTensor, SecureError>> + Send;

    /// The index of the largest element of `x` (flattened; the first among ties), revealed to
    /// `to` only (`Some` there, `None` at the other party).
    fn argmax(
        &mut self,
        x: &RingTensor,
        to: Party,
    ) -> impl Future<Output = Result<Option<usize>, SecureError>> + Send;

    /// Opens `x` to `to` (`Some(value)` there, `None` at the other party).
    fn reveal(
        &mut self,
        x: &RingTensor,
        to: Party,
    ) -> impl Future<Output = Result<Option<RingTensor>, SecureError>> + Send;
}

/// The statistics of a correlation source's own link (the dealer connection), if it has one.
pub trait LinkStats {
    /// The link's counters (`None`: in-process, no link).
    fn link_stats(&self) -> Option<&Stats>;
}

impl<C: Channel> LinkStats for DealerClient<C> {
    fn link_stats(&self) -> Option<&Stats> {
        Some(self.channel().stats())
    }
}

impl LinkStats for InsecureIdealDealer {
    fn link_stats(&self) -> Option<&Stats> {
        None
    }
}

impl<P: LinkStats + TripleProvider> LinkStats for Prefetched<P> {
    fn link_stats(&self) -> Option<&Stats> {
        self.inner().link_stats()
    }
}

/// A server matrix of a [`SessionEngine`]: the plaintext on P1, `W − B` on P0.
pub enum SessionWeight {
    /// P0's masked weight (shared with the engine's registry, for preprocessing).
    Client(Arc<ClientWeight>),
    /// P1's plaintext weight.
    Server(ServerWeight),
}

impl std::fmt::Debug for SessionWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionWeight::Client(w) => w.fmt(f),
            SessionWeight::Server(w) => w.fmt(f),
        }
    }
}

impl SessionWeight {
    fn shape(&self) -> &[usize] {
        match self {
            SessionWeight::Client(w) => w.shape(),
            SessionWeight::Server(w) => w.shape(),
        }
    }
}

/// [`Engine`] over one protocol [`Session`] whose correlations come through a [`Prefetched`]
/// source (so [`Engine::preprocess`] can fetch them ahead of the online ops).
///
/// **P0's preprocessing of weight products.** On the client, [`Engine::preprocess`] does more
/// than fetch: for each server-weight request (`Request::Weight`) it also computes the
/// input-independent half of the product, `A F + C_0` ([`ClientWeight::prepare`]), so the
/// online step of [`Engine::matmul_weight`] and [`Engine::lookup`] is one subtraction and one
/// message on the client (the server's product stays online: it needs the input).
pub struct SessionEngine<C, K> {
    s: Session<C, Prefetched<K>>,
    phase: Phase,
    base: String,
    /// P0: the registered weights by id.
    weights: Vec<(u32, Arc<ClientWeight>)>,
    /// P0: prepared queries, in request order (id, rows, query).
    prepared: VecDeque<(u32, usize, PreparedQuery)>,
}

impl<C, K> std::fmt::Debug for SessionEngine<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionEngine({:?}, label={:?})", self.s, self.base)
    }
}

impl<C: Channel, K: TripleProvider> SessionEngine<C, K> {
    /// An engine over `session`.
    pub fn new(session: Session<C, Prefetched<K>>) -> Self {
        let (phase, base) = session.cost_label();
        let base = base.to_string();
        SessionEngine {
            s: session,
            phase,
            base,
            weights: Vec::new(),
            prepared: VecDeque::new(),
        }
    }

    /// The session.
    pub fn session(&self) -> &Session<C, Prefetched<K>> {
        &self.s
    }

    /// The session, mutable.
    pub fn session_mut(&mut self) -> &mut Session<C, Prefetched<K>> {
        &mut self.s
    }

    /// Gives the session back.
    pub fn into_session(self) -> Session<C, Prefetched<K>> {
        self.s
    }

    /// Labels the following traffic `base/op` (restored by [`Self::end`]).
    fn begin(&mut self, op: &str) {
        let label = if self.base.is_empty() {
            op.to_string()
        } else {
            format!("{}/{op}", self.base)
        };
        let phase = self.phase;
        self.s.set_cost_label(phase, &label);
        // set_cost_label also moved the session's own base label; keep ours.
    }

    /// Restores the base label; on error aborts the channel with the reason.
    async fn end<T>(
        &mut self,
        op: &'static str,
        r: Result<T, BeaverError>,
    ) -> Result<T, SecureError> {
        let (phase, base) = (self.phase, self.base.clone());
        self.s.set_cost_label(phase, &base);
        match r {
            Ok(v) => Ok(v),
            Err(source) => {
                let e = SecureError::Beaver { op, source };
                let _ = self.s.channel_mut().abort(&e.to_string()).await;
                Err(e)
            }
        }
    }

    /// [`Self::end`] for the session's `Arith` primitives (whose errors are [`ErrorKind`]s).
    async fn end_arith<T>(
        &mut self,
        op: &'static str,
        r: Result<T, privlm_protocols::session::ErrorKind>,
    ) -> Result<T, SecureError> {
        let (phase, base) = (self.phase, self.base.clone());
        self.s.set_cost_label(phase, &base);
        match r {
            Ok(v) => Ok(v),
            Err(kind) => {
                let e = SecureError::protocol(op, kind);
                let _ = self.s.channel_mut().abort(&e.to_string()).await;
                Err(e)
            }
        }
    }

    fn share(&self, x: &RingTensor) -> AShare {
        AShare::new(self.s.party(), x.clone())
    }

    /// P0: the prepared query for weight `id` with `n` rows, if preprocessing made one (it is
    /// next in request order).
    fn take_prepared(&mut self, id: u32, n: usize) -> Option<PreparedQuery> {
        match self.prepared.front() {
            Some((i, rows, _)) if *i == id && *rows == n => self.prepared.pop_front().map(|p| p.2),
            _ => None,
        }
    }

    async fn preprocess_one(&mut self, req: &Request) -> Result<(), BeaverError> {
        if let Request::Weight { id, n, .. } = *req
            && self.s.party() == Party::P0
            && let Some((_, w)) = self.weights.iter().find(|(i, _)| *i == id)
        {
            let w = w.clone();
            let q = w.prepare(self.s.correlations_mut().inner_mut(), n).await?;
            self.prepared.push_back((id, n, q));
            return Ok(());
        }
        self.s.correlations_mut().prefetch(req.clone()).await
    }
}

fn ring(op: &'static str, shape: &[usize], data: Vec<u64>) -> Result<RingTensor, SecureError> {
    RingTensor::from_vec(shape, data).map_err(|e| SecureError::bad(op, e.to_string()))
}

impl<C: Channel, K: TripleProvider> Engine for SessionEngine<C, K> {
    type Weight = SessionWeight;
    type Vector = ServerVector;

    fn party(&self) -> Party {
        self.s.party()
    }

    fn params(&self) -> &NlParams {
        self.s.params()
    }

    fn set_cost_label(&mut self, phase: Phase, label: &str) {
        self.phase = phase;
        label.clone_into(&mut self.base);
        self.s.set_cost_label(phase, label);
    }

    async fn preprocess(&mut self, requests: &[Request]) -> Result<(), SecureError> {
        let (phase, base) = (self.phase, self.base.clone());
        self.s.set_cost_label(Phase::Preprocessing, &base);
        let mut r = Ok(());
        for req in requests {
            r = self.preprocess_one(req).await;
            if r.is_err() {
                break;
            }
        }
        self.phase = phase;
        self.end("preprocess", r).await
    }

    async fn setup_weight(
        &mut self,
        id: u32,
        k: usize,
        m: usize,
        w: Option<RingTensor>,
    ) -> Result<SessionWeight, SecureError> {
        self.begin("setup_weight");
        let party = self.s.party();
        let (ch, prov) = self.s.parts_mut();
        let r = match (party, w) {
            (Party::P1, Some(w)) if w.shape() == [k, m] => ServerWeight::setup(ch, prov, id, w)
                .await
                .map(SessionWeight::Server),
            (Party::P0, None) => ClientWeight::setup(ch, prov, id, k, m)
                .await
                .map(|w| SessionWeight::Client(Arc::new(w))),
            (p, w) => Err(BeaverError::WrongParty(format!(
                "{p:?} passed {} for weight {id} of shape [{k}, {m}]",
                w.map_or("no values".into(), |w| format!(
                    "values of shape {:?}",
                    w.shape()
                ))
            ))),
        };
        let w = self.end("setup_weight", r).await?;
        if let SessionWeight::Client(cw) = &w {
            self.weights.push((id, cw.clone()));
        }
        Ok(w)
    }

    async fn setup_vector(
        &mut self,
        id: u32,
        d: usize,
        v: Option<&[u64]>,
    ) -> Result<ServerVector, SecureError> {
        // The nonlinear op frames, labels and aborts by itself.
        Ok(nonlinear::setup_server_vector(&mut self.s, id, d, v).await?)
    }

    async fn matmul_weight(
        &mut self,
        x: &RingTensor,
        w: &SessionWeight,
    ) -> Result<RingTensor, SecureError> {
        self.begin("linear");
        let xs = self.share(x);
        let prepared = match w {
            SessionWeight::Client(w) => self.take_prepared(w.id(), xs.shape()[0]),
            SessionWeight::Server(_) => None,
        };
        let (ch, prov) = self.s.parts_mut();
        let r = match (w, prepared) {
            (SessionWeight::Client(w), Some(q)) => w.matmul_prepared(ch, q, &xs).await,
            (SessionWeight::Client(w), None) => w.matmul(ch, prov, &xs).await,
            (SessionWeight::Server(w), _) => w.matmul(ch, prov, &xs).await,
        };
        self.end("linear", r.map(AShare::into_tensor)).await
    }

    async fn lookup(
        &mut self,
        w: &SessionWeight,
        ids: Option<&[u32]>,
        n: usize,
    ) -> Result<RingTensor, SecureError> {
        self.begin("lookup");
        let v = w.shape()[0];
        let prepared = match w {
            SessionWeight::Client(w) => self.take_prepared(w.id(), n),
            SessionWeight::Server(_) => None,
        };
        let (ch, prov) = self.s.parts_mut();
        let r = match (w, ids) {
            (SessionWeight::Client(w), Some(ids)) if ids.len() == n => {
                if let Some(t) = ids.iter().find(|&&t| t as usize >= v) {
                    Err(BeaverError::InvalidRequest(format!(
                        "token {t} outside the table of {v} rows"
                    )))
                } else if let Some(q) = prepared {
                    // The one-hot matrix is the client's whole input (the server's share is 0).
                    let mut onehot = RingTensor::zeros(&[n, v]);
                    for (row, &t) in ids.iter().enumerate() {
                        onehot.data_mut()[row * v + t as usize] = 1;
                    }
                    w.matmul_prepared(ch, q, &AShare::new(Party::P0, onehot))
                        .await
                } else {
                    let ids: Vec<usize> = ids.iter().map(|&t| t as usize).collect();
                    w.lookup(ch, prov, &ids).await
                }
            }
            (SessionWeight::Server(w), None) => w.lookup(ch, prov, n).await,
            _ => Err(BeaverError::WrongParty(
                "the client passes its n token ids, the server none".into(),
            )),
        };
        self.end("lookup", r.map(AShare::into_tensor)).await
    }

    async fn matmul_shares(
        &mut self,
        x: &RingTensor,
        y: &RingTensor,
    ) -> Result<RingTensor, SecureError> {
        self.begin("matmul");
        let (xs, ys) = (self.share(x), self.share(y));
        let (ch, prov) = self.s.parts_mut();
        let r = beaver_many(ch, prov, &[(BilinearOp::BatchMatMul, &xs, &ys)]).await;
        let r = r.map(|mut v| v.pop().expect("one product").into_tensor());
        self.end("matmul", r).await
    }

    async fn trunc(&mut self, x: &RingTensor, bits: u32) -> Result<RingTensor, SecureError> {
        self.begin("trunc");
        let r = Arith::trunc(&mut self.s, &x.data().to_vec(), bits).await;
        let y = self.end_arith("trunc", r).await?;
        ring("trunc", x.shape(), y)
    }

    async fn relu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let xs = self.share(x);
        Ok(nonlinear::relu(&mut self.s, &xs).await?.into_tensor())
    }

    async fn gelu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let xs = self.share(x);
        Ok(nonlinear::gelu(&mut self.s, &xs).await?.into_tensor())
    }

    async fn softmax(
        &mut self,
        x: &RingTensor,
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> Result<RingTensor, SecureError> {
        let xs = self.share(x);
        Ok(nonlinear::softmax(&mut self.s, &xs, mask, temps)
            .await?
            .into_tensor())
    }

    async fn layer_norm(
        &mut self,
        x: &RingTensor,
        gain: &ServerVector,
        bias: Option<&[u64]>,
        eps: f64,
    ) -> Result<RingTensor, SecureError> {
        let xs = self.share(x);
        let norm = NormParams {
            gain: gain.clone(),
            bias: bias.map(<[u64]>::to_vec),
            eps,
        };
        Ok(nonlinear::layer_norm(&mut self.s, &xs, &norm)
            .await?
            .into_tensor())
    }

    async fn argmax(&mut self, x: &RingTensor, to: Party) -> Result<Option<usize>, SecureError> {
        let xs = self.share(x);
        Ok(nonlinear::argmax(&mut self.s, &xs, to).await?)
    }

    async fn reveal(
        &mut self,
        x: &RingTensor,
        to: Party,
    ) -> Result<Option<RingTensor>, SecureError> {
        self.begin("reveal");
        let r = Arith::reveal(&mut self.s, &x.data().to_vec(), to).await;
        match self.end_arith("reveal", r).await? {
            Some(v) => Ok(Some(ring("reveal", x.shape(), v)?)),
            None => Ok(None),
        }
    }
}
