//! [`CountEngine`]: the [`Engine`] that sends nothing and counts, for both parties at once,
//! exactly what a [`crate::secure::SessionEngine`] pair would send.
//!
//! `SecureOps<CountEngine>` running the model's one [`crate::model::ops::forward`] is the cost
//! model: every op of the forward pass reaches one engine method, and each method records on a
//! [`Count`] the messages the session engine's building blocks send (payload, frame headers,
//! op tags where the op frames itself), the correlation requests and the dealer links' traffic
//! for them, under the same (phase, label) the session engine uses. The nonlinear ops and the
//! truncation are [`Count`]'s own (tested equal to the channels); the linear ones follow
//! `privlm_protocols::beaver::{weight, ops}`:
//!
//! | method | label | messages |
//! |---|---|---|
//! | `setup_weight` | `base/setup_weight` | request `WeightMask`; P1 → P0 a tensor header (`1 + 8·2` B) and `W − B` (`8km` B) |
//! | `matmul_weight`, `lookup` | `base/linear`, `base/lookup` | request `Weight`; P0 → P1 `X_0 − A` (`8nk` B) |
//! | `matmul_shares` | `base/matmul` | request `MatMul`; both send `x − a ‖ y − b` (`8(hnk + hkm)` B) and receive |
//! | `trunc`, `reveal` | `base/trunc`, `base/reveal` | [`Count`]'s primitives (no op tag) |
//! | the nonlinear ops | `base/<op>` | [`Count`]'s ops (op tags included) |
//!
//! Values are zero tensors of the right shapes; the engine plays the client (P0), so pass
//! placeholder token ids of the real number. Local compute is recorded from a
//! [`Calibration`] on both parties' clocks, so [`Count::simulate`] projects a latency.

use privlm_protocols::beaver::Request;
use privlm_protocols::channel::Phase;
use privlm_protocols::nonlinear::{Arith, Count, Mask, NlParams, Plain};
use privlm_protocols::ring::RingTensor;
use privlm_protocols::session::ErrorKind;
use privlm_protocols::share::Party;

use super::calib::Calibration;
use crate::secure::{Engine, SecureError};

/// A registered weight: id and shape `[k, m]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountWeight {
    /// The weight id.
    pub id: u32,
    /// Rows.
    pub k: usize,
    /// Columns.
    pub m: usize,
}

/// A registered vector: id and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountVector {
    /// The vector id.
    pub id: u32,
    /// Length.
    pub d: usize,
}

/// What one op did, in model terms (for the OT / correlation / element columns).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpWork {
    /// Elements the op processed (output elements; for products, multiply-accumulates).
    pub elements: u64,
    /// Calls.
    pub calls: u64,
}

/// The counting engine (see the module docs).
#[derive(Clone, Debug)]
pub struct CountEngine {
    count: Count,
    calib: Calibration,
    phase: Phase,
    base: String,
    work: std::collections::BTreeMap<(Phase, String), OpWork>,
}

fn zeros(shape: &[usize]) -> RingTensor {
    RingTensor::zeros(shape)
}

fn kind(op: &'static str, e: ErrorKind) -> SecureError {
    SecureError::protocol(op, e)
}

impl CountEngine {
    /// A counting engine for sessions with parameters `params` and the default channel and
    /// dealer configurations; local compute from `calib`.
    pub fn new(params: NlParams, calib: Calibration) -> Self {
        CountEngine {
            count: Count::with_defaults(params),
            calib,
            phase: Phase::Online,
            base: String::new(),
            work: Default::default(),
        }
    }

    /// A counting engine over a given [`Count`] (for other frame or chunk sizes).
    pub fn with_count(count: Count, calib: Calibration) -> Self {
        CountEngine {
            count,
            calib,
            phase: Phase::Online,
            base: String::new(),
            work: Default::default(),
        }
    }

    /// The counts.
    pub fn count(&self) -> &Count {
        &self.count
    }

    /// The calibration used for compute time.
    pub fn calibration(&self) -> &Calibration {
        &self.calib
    }

    /// Elements and calls per (phase, label).
    pub fn work(&self) -> &std::collections::BTreeMap<(Phase, String), OpWork> {
        &self.work
    }

    fn label(&self, op: &str) -> String {
        if self.base.is_empty() {
            op.to_string()
        } else {
            format!("{}/{op}", self.base)
        }
    }

    /// Runs `f` under label `base/op` (no op tag, as the session engine's linear ops), with
    /// `secs` of compute on both parties and `elements` of work.
    fn linear_op<T>(
        &mut self,
        op: &str,
        elements: u64,
        secs: f64,
        f: impl FnOnce(&mut Count) -> T,
    ) -> T {
        let label = self.label(op);
        self.count.set_cost_label(self.phase, &label);
        self.note(&label, elements, secs);
        let r = f(&mut self.count);
        self.count.set_cost_label(self.phase, &self.base.clone());
        r
    }

    /// A framed op of [`Count`] (which labels itself `base/op`).
    fn framed_op(
        &mut self,
        op: &'static str,
        elements: u64,
        secs: f64,
        f: impl FnOnce(&mut Count) -> Result<(), ErrorKind>,
    ) -> Result<(), SecureError> {
        let label = self.label(op);
        self.note(&label, elements, secs);
        f(&mut self.count).map_err(|e| kind(op, e))
    }

    fn note(&mut self, label: &str, elements: u64, secs: f64) {
        let w = self
            .work
            .entry((self.phase, label.to_string()))
            .or_default();
        w.elements += elements;
        w.calls += 1;
        // Compute is recorded at the op's start, under its label.
        let saved = self.count.label().1.to_string();
        self.count.set_cost_label(self.phase, label);
        self.count.record_work(Party::P0, secs);
        self.count.record_work(Party::P1, secs);
        self.count.set_cost_label(self.phase, &saved);
    }
}

impl Engine for CountEngine {
    type Weight = CountWeight;
    type Vector = CountVector;

    fn party(&self) -> Party {
        Party::P0
    }

    fn params(&self) -> &NlParams {
        self.count.params()
    }

    fn set_cost_label(&mut self, phase: Phase, label: &str) {
        self.phase = phase;
        label.clone_into(&mut self.base);
        self.count.set_cost_label(phase, label);
    }

    async fn preprocess(&mut self, requests: &[Request]) -> Result<(), SecureError> {
        let base = self.base.clone();
        self.count.set_cost_label(Phase::Preprocessing, &base);
        for r in requests {
            self.count.prefetch(r.clone());
        }
        self.count.set_cost_label(self.phase, &base);
        Ok(())
    }

    async fn setup_weight(
        &mut self,
        id: u32,
        k: usize,
        m: usize,
        _w: Option<RingTensor>,
    ) -> Result<CountWeight, SecureError> {
        let secs = self.calib.secs("setup_weight", k * m);
        self.linear_op("setup_weight", (k * m) as u64, secs, |c| {
            c.record_request(Request::WeightMask { id, k, m });
            c.record_message(Party::P1, 1 + 8 * 2);
            c.record_message(Party::P1, 8 * k * m);
        });
        Ok(CountWeight { id, k, m })
    }

    async fn setup_vector(
        &mut self,
        id: u32,
        d: usize,
        _v: Option<&[u64]>,
    ) -> Result<CountVector, SecureError> {
        self.framed_op("server_vector", d as u64, 0.0, |c| {
            c.setup_server_vector(id, d);
            Ok(())
        })?;
        Ok(CountVector { id, d })
    }

    async fn matmul_weight(
        &mut self,
        x: &RingTensor,
        w: &CountWeight,
    ) -> Result<RingTensor, SecureError> {
        let n = match *x.shape() {
            [n, k] if k == w.k => n,
            ref s => {
                return Err(SecureError::bad(
                    "linear",
                    format!("input {s:?} against weight [{}, {}]", w.k, w.m),
                ));
            }
        };
        let macs = n * w.k * w.m;
        let secs = self.calib.matmul_secs(macs);
        let (id, k, m) = (w.id, w.k, w.m);
        self.linear_op("linear", macs as u64, secs, |c| {
            c.record_request(Request::Weight { id, n, k, m });
            c.record_message(Party::P0, 8 * n * k);
        });
        Ok(zeros(&[n, w.m]))
    }

    async fn lookup(
        &mut self,
        w: &CountWeight,
        _ids: Option<&[u32]>,
        n: usize,
    ) -> Result<RingTensor, SecureError> {
        let macs = n * w.k * w.m;
        let secs = self.calib.matmul_secs(macs);
        let (id, k, m) = (w.id, w.k, w.m);
        self.linear_op("lookup", macs as u64, secs, |c| {
            c.record_request(Request::Weight { id, n, k, m });
            c.record_message(Party::P0, 8 * n * k);
        });
        Ok(zeros(&[n, w.m]))
    }

    async fn matmul_shares(
        &mut self,
        x: &RingTensor,
        y: &RingTensor,
    ) -> Result<RingTensor, SecureError> {
        let (h, n, k, m) = match (x.shape(), y.shape()) {
            (&[h, n, k], &[h2, k2, m]) if h == h2 && k == k2 => (h, n, k, m),
            (a, b) => {
                return Err(SecureError::bad(
                    "matmul",
                    format!("batched product of {a:?} and {b:?}"),
                ));
            }
        };
        let macs = h * n * k * m;
        // Each party: e·b (or e·f) and a·f products, about three of the size.
        let secs = self.calib.matmul_secs(3 * macs) + self.calib.secs("open", h * (n * k + k * m));
        self.linear_op("matmul", macs as u64, secs, |c| {
            c.record_request(Request::MatMul { batch: h, n, k, m });
            c.record_exchange(8 * (h * n * k + h * k * m));
        });
        Ok(zeros(&[h, n, m]))
    }

    async fn trunc(&mut self, x: &RingTensor, bits: u32) -> Result<RingTensor, SecureError> {
        let n = x.len();
        let secs = self.calib.secs("trunc", n);
        self.linear_op("trunc", n as u64, secs, |c| {
            Plain::run(Arith::trunc(c, &n, bits)).map(|_| ())
        })
        .map_err(|e| kind("trunc", e))?;
        Ok(zeros(x.shape()))
    }

    async fn relu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let n = x.len();
        let secs = self.calib.secs("relu", n);
        self.framed_op("relu", n as u64, secs, |c| c.relu(n))?;
        Ok(zeros(x.shape()))
    }

    async fn gelu(&mut self, x: &RingTensor) -> Result<RingTensor, SecureError> {
        let n = x.len();
        let secs = self.calib.secs("gelu", n);
        self.framed_op("gelu", n as u64, secs, |c| c.gelu(n))?;
        Ok(zeros(x.shape()))
    }

    async fn softmax(
        &mut self,
        x: &RingTensor,
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> Result<RingTensor, SecureError> {
        let shape = x.shape().to_vec();
        let n = x.len();
        let secs = self.calib.secs("softmax", n);
        self.framed_op("softmax", n as u64, secs, |c| {
            c.softmax(&shape, mask, temps)
        })?;
        Ok(zeros(x.shape()))
    }

    async fn layer_norm(
        &mut self,
        x: &RingTensor,
        gain: &CountVector,
        _bias: Option<&[u64]>,
        _eps: f64,
    ) -> Result<RingTensor, SecureError> {
        let rows = match *x.shape() {
            [r, d] if d == gain.d => r,
            ref s => {
                return Err(SecureError::bad(
                    "layer_norm",
                    format!("input {s:?} against a gain of {}", gain.d),
                ));
            }
        };
        let n = x.len();
        let secs = self.calib.secs("layer_norm", n);
        let (d, id) = (gain.d, gain.id);
        self.framed_op("layer_norm", n as u64, secs, |c| c.layer_norm(rows, d, id))?;
        Ok(zeros(x.shape()))
    }

    async fn argmax(&mut self, x: &RingTensor, to: Party) -> Result<Option<usize>, SecureError> {
        let n = x.len();
        let secs = self.calib.secs("argmax", n);
        self.framed_op("argmax", n as u64, secs, |c| c.argmax(n, to))?;
        Ok((to == Party::P0).then_some(0))
    }

    async fn reveal(
        &mut self,
        x: &RingTensor,
        to: Party,
    ) -> Result<Option<RingTensor>, SecureError> {
        let n = x.len();
        self.linear_op("reveal", n as u64, 0.0, |c| {
            Plain::run(Arith::reveal(c, &n, to)).map(|_| ())
        })
        .map_err(|e| kind("reveal", e))?;
        Ok((to == Party::P0).then(|| zeros(x.shape())))
    }
}
