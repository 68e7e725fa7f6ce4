//! [`PlanEngine`]: an [`Engine`] that sends nothing and records the correlation requests a
//! forward pass makes, per phase and label, in order: the preprocessing plan.
//!
//! The requests of every op depend only on public shapes, ids and parameters, so running the
//! same [`crate::model::ops::forward`] over `SecureOps<PlanEngine>` (with placeholder token ids
//! of the right number) lists exactly what the two parties' real run will ask for: the linear
//! requests are those the building blocks of [`super::SessionEngine`] make, the nonlinear ones
//! come from [`privlm_protocols::nonlinear::Count`], which is tested to list exactly the secure
//! ops' requests. Values are zero tensors of the right shapes; nothing is computed.

use std::collections::BTreeMap;

use privlm_protocols::beaver::Request;
use privlm_protocols::channel::Phase;
use privlm_protocols::nonlinear::{Arith, Count, Mask, NlParams, Plain};
use privlm_protocols::ring::RingTensor;
use privlm_protocols::share::Party;

use super::SecureError;
use super::engine::Engine;
use super::ops::Plan;

/// A registered weight of the plan engine: its id and shape `[k, m]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanWeight {
    /// The weight id.
    pub id: u32,
    /// Rows.
    pub k: usize,
    /// Columns.
    pub m: usize,
}

/// A registered vector of the plan engine: its id and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanVector {
    /// The vector id.
    pub id: u32,
    /// Length.
    pub d: usize,
}

/// The recording engine (see the module docs). It plays the client (P0): pass placeholder
/// token ids ([`Tokens::Ids`](crate::model::ops::Tokens::Ids)) of the real number.
#[derive(Clone, Debug)]
pub struct PlanEngine {
    count: Count,
    phase: Phase,
    label: String,
    log: Vec<(Phase, String, Request)>,
}

fn kind(op: &'static str, e: privlm_protocols::session::ErrorKind) -> SecureError {
    SecureError::protocol(op, e)
}

fn zeros(shape: &[usize]) -> RingTensor {
    RingTensor::zeros(shape)
}

impl PlanEngine {
    /// A recorder for sessions with parameters `params`.
    pub fn new(params: NlParams) -> Self {
        PlanEngine {
            count: Count::with_defaults(params),
            phase: Phase::Online,
            label: String::new(),
            log: Vec::new(),
        }
    }

    /// Every request recorded, with its phase and label, in order.
    pub fn log(&self) -> &[(Phase, String, Request)] {
        &self.log
    }

    /// Forgets the recorded requests.
    pub fn clear(&mut self) {
        self.log.clear();
        self.count.reset();
    }

    /// The online requests recorded, grouped by consecutive labels: the plan
    /// [`super::SecureOps::set_plan`] takes.
    pub fn plan(&self) -> Plan {
        let mut plan: Plan = Vec::new();
        for (phase, label, req) in &self.log {
            if *phase != Phase::Online {
                continue;
            }
            match plan.last_mut() {
                Some((l, reqs)) if l == label => reqs.push(req.clone()),
                _ => plan.push((label.clone(), vec![req.clone()])),
            }
        }
        plan
    }

    /// Number of requests per (phase, label).
    pub fn summary(&self) -> BTreeMap<(Phase, String), usize> {
        let mut m = BTreeMap::new();
        for (p, l, _) in &self.log {
            *m.entry((*p, l.clone())).or_default() += 1;
        }
        m
    }

    fn record(&mut self, req: Request) {
        self.log.push((self.phase, self.label.clone(), req));
    }

    /// Runs a counted nonlinear op and records the requests it made.
    fn counted(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut Count) -> Result<(), privlm_protocols::session::ErrorKind>,
    ) -> Result<(), SecureError> {
        let before = self.count.requests().len();
        f(&mut self.count).map_err(|e| kind(op, e))?;
        let new: Vec<Request> = self.count.requests()[before..].to_vec();
        for r in new {
            self.record(r);
        }
        Ok(())
    }
}

impl Engine for PlanEngine {
    type Weight = PlanWeight;
    type Vector = PlanVector;

    fn party(&self) -> Party {
        Party::P0
    }

    fn params(&self) -> &NlParams {
        Arith::params(&self.count)
    }

    fn set_cost_label(&mut self, phase: Phase, label: &str) {
        self.phase = phase;
        label.clone_into(&mut self.label);
    }

    async fn preprocess(&mut self, _requests: &[Request]) -> Result<(), SecureError> {
        Ok(())
    }

    async fn setup_weight(
        &mut self,
        id: u32,
        k: usize,
        m: usize,
        _w: Option<RingTensor>,
    ) -> Result<PlanWeight, SecureError> {
        self.record(Request::WeightMask { id, k, m });
        Ok(PlanWeight { id, k, m })
    }

    async fn setup_vector(
        &mut self,
        id: u32,
        d: usize,
        _v: Option<&[u64]>,
    ) -> Result<PlanVector, SecureError> {
        self.record(Request::WeightMask { id, k: 1, m: d });
        Ok(PlanVector { id, d })
    }

    async fn matmul_weight(
        &mut self,
        x: &RingTensor,
        w: &PlanWeight,
    ) -> Result<RingTensor, SecureError> {
        let n = x.shape().first().copied().unwrap_or(0);
        self.record(Request::Weight {
            id: w.id,
            n,
            k: w.k,
            m: w.m,
        });
        Ok(zeros(&[n, w.m]))
    }

    async fn lookup(
        &mut self,
        w: &PlanWeight,
        _ids: Option<&[u32]>,
        n: usize,
    ) -> Result<RingTensor, SecureError> {
        self.record(Request::Weight {
            id: w.id,
            n,
            k: w.k,
            m: w.m,
        });
        Ok(zeros(&[n, w.m]))
    }

    async fn matmul_shares(
        &mut self,
        x: &RingTensor,
        y: &RingTensor,
    ) -> Result<RingTensor, SecureError> {
        match (x.shape(), y.shape()) {
            (&[h, n, k], &[h2, k2, m]) if h == h2 && k == k2 => {
                self.record(Request::MatMul { batch: h, n, k, m });
                Ok(zeros(&[h, n, m]))
            }
            (a, b) => Err(SecureError::bad(
                "matmul",
                format!("batched product of {a:?} and {b:?}"),
            )),
        }
    }

    async fn trunc(&mut self, x: &RingTensor, bits: u32) -> Result<RingTensor, SecureError> {
        let n = x.len();
        self.counted("trunc", |c| {
            Plain::run(Arith::trunc(c, &n, bits)).map(|_| ())
        })?;
        Ok(zeros(x.shape()))
    }

    async fn relu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let n = x.len();
        self.counted("relu", |c| c.relu(n))?;
        Ok(zeros(x.shape()))
    }

    async fn gelu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let n = x.len();
        self.counted("gelu", |c| c.gelu(n))?;
        Ok(zeros(x.shape()))
    }

    async fn softmax(
        &mut self,
        x: &RingTensor,
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> Result<RingTensor, SecureError> {
        let shape = x.shape().to_vec();
        self.counted("softmax", |c| c.softmax(&shape, mask, temps))?;
        Ok(zeros(x.shape()))
    }

    async fn layer_norm(
        &mut self,
        x: &RingTensor,
        gain: &PlanVector,
        _bias: Option<&[u64]>,
        _eps: f64,
    ) -> Result<RingTensor, SecureError> {
        let rows = x.shape().first().copied().unwrap_or(0);
        self.counted("layer_norm", |c| c.layer_norm(rows, gain.d, gain.id))?;
        Ok(zeros(x.shape()))
    }

    async fn argmax(&mut self, x: &RingTensor, to: Party) -> Result<Option<usize>, SecureError> {
        let n = x.len();
        self.counted("argmax", |c| c.argmax(n, to))?;
        Ok((to == Party::P0).then_some(0))
    }

    async fn reveal(
        &mut self,
        x: &RingTensor,
        to: Party,
    ) -> Result<Option<RingTensor>, SecureError> {
        Ok((to == Party::P0).then(|| zeros(x.shape())))
    }
}
