//! One protocol session: this party's role, the channel to the peer, the correlation source,
//! the PRG, the AGREEMENT parameters of the nonlinear layers and the current cost label.
//!
//! The nonlinear ops ([`crate::nonlinear`]) take `&mut Session` and shared tensors and fail with
//! one error type, [`ProtocolError`], which names the op and wraps the building blocks' errors.
//! The building blocks (Beaver products, truncation, OT, garbled circuits) keep their own APIs
//! underneath.
//!
//! **Correlation source.** The session's source is any [`TripleProvider`]: the one trait every
//! correlation comes through, by [`Request`]. Implementations:
//! - [`crate::beaver::dealer::DealerClient`]: the `privlm-dealer` process over the wire; it
//!   serves every kind, the nonlinear ones included ([`crate::beaver::nl`]);
//! - [`crate::beaver::InsecureIdealDealer`]: in-process, tests and benches only, and exactly
//!   the material the dealer process would send for the same seeds;
//! - [`crate::beaver::Prefetched`]: any of these with requests fetched ahead of the online
//!   phase (the requests of an op depend only on public shapes; [`crate::nonlinear::Count`]
//!   lists them);
//! - [`crate::beaver::OtTripleProvider`] (dealer-free): elementwise triples and square pairs
//!   only. Every nonlinear op needs comparison or multiplexer correlations, which it refuses
//!   with [`crate::ot::gilboa::TripleError::NotDealerFree`]: the nonlinear layers need the
//!   dealer.
//!
//! **Op framing.** Each op starts by agreeing on what it computes: before its first message
//! each party sends an 8-byte tag (a hash of the op's name, shapes and parameters), and before
//! its first receive it checks the peer's. Parties that called different ops, or the same op on
//! different shapes, stop there with [`ErrorKind::PeerDisagrees`] naming the op and this party's
//! view, instead of misreading each other's messages. Any error inside an op aborts the channel
//! with the reason, so the peer fails with that reason too (never a hang; every receive is
//! bounded by the channel's timeout).

use crate::beaver::{BeaverError, Material, Request, TripleProvider};
use crate::channel::{Channel, ChannelError, Phase};
use crate::gc::GcError;
use crate::nonlinear::NlParams;
use crate::ot::OtError;
use crate::prg::Prg;
use crate::share::Party;

/// What went wrong inside an op (see [`ProtocolError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The channel to the peer failed (the session is over).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The correlation source (dealer) failed or refused a request.
    #[error(transparent)]
    Beaver(#[from] BeaverError),
    /// An oblivious-transfer building block failed.
    #[error(transparent)]
    Ot(#[from] OtError),
    /// A garbled-circuit building block failed.
    #[error(transparent)]
    Gc(#[from] GcError),
    /// This party's inputs are invalid (shapes, temperatures, an empty vector, ...).
    #[error("invalid input: {0}")]
    BadInput(String),
    /// The peer called another op, or the same op with other shapes or parameters.
    #[error("{0}")]
    PeerDisagrees(String),
    /// The correlation source returned material that does not fit the request.
    #[error("correlation source error: {0}")]
    Correlation(String),
}

/// The error of a nonlinear op: which op failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {kind}")]
pub struct ProtocolError {
    /// The op that failed (`"softmax"`, `"layer_norm"`, ...).
    pub op: &'static str,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl ProtocolError {
    /// An error of `op`.
    pub fn new(op: &'static str, kind: ErrorKind) -> Self {
        ProtocolError { op, kind }
    }
}

/// The 8-byte tag of an op: the first 8 bytes of SHA-256 over its description.
pub(crate) fn op_tag(op: &str, desc: &str) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"privlm/op-tag/v1/");
    ctx.update(op.as_bytes());
    ctx.update(b"/");
    ctx.update(desc.as_bytes());
    let d = ctx.finish();
    u64::from_le_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// The label an op's traffic is counted under: `base/op` (or `op` with an empty base).
pub(crate) fn op_label(base: &str, op: &str) -> String {
    if base.is_empty() {
        op.to_string()
    } else {
        format!("{base}/{op}")
    }
}

/// A two-party protocol session of one party (see the module docs). `Debug` prints no secrets.
pub struct Session<C, K> {
    party: Party,
    ch: C,
    corr: K,
    prg: Prg,
    params: NlParams,
    phase: Phase,
    label: String,
    op: Option<(&'static str, String)>,
    tag_out: Option<u64>,
    tag_in: Option<u64>,
}

impl<C, K> std::fmt::Debug for Session<C, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Session(party={:?}, label={:?}, {:?}, ..)",
            self.party, self.label, self.params
        )
    }
}

impl<C: Channel, K: TripleProvider> Session<C, K> {
    /// A session of `party` over `ch` with correlations from `corr` (which must serve the same
    /// party) and local randomness from `prg` (secret, fresh per session).
    pub fn new(
        party: Party,
        ch: C,
        corr: K,
        prg: Prg,
        params: NlParams,
    ) -> Result<Self, ProtocolError> {
        let bad = |m: String| ProtocolError::new("session", ErrorKind::BadInput(m));
        if corr.party() != party {
            return Err(bad(format!(
                "the correlation source serves {:?}, the session is {party:?}'s",
                corr.party()
            )));
        }
        params.validate().map_err(bad)?;
        Ok(Session {
            party,
            ch,
            corr,
            prg,
            params,
            phase: Phase::Online,
            label: String::new(),
            op: None,
            tag_out: None,
            tag_in: None,
        })
    }

    /// This party.
    pub fn party(&self) -> Party {
        self.party
    }

    /// The AGREEMENT parameters.
    pub fn params(&self) -> &NlParams {
        &self.params
    }

    /// The channel to the peer (for its counters).
    pub fn channel(&self) -> &C {
        &self.ch
    }

    /// The channel to the peer, mutable.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.ch
    }

    /// The correlation source.
    pub fn correlations(&self) -> &K {
        &self.corr
    }

    /// The correlation source, mutable (for example to prefetch).
    pub fn correlations_mut(&mut self) -> &mut K {
        &mut self.corr
    }

    /// The channel and the correlation source at once (for the building blocks that take both,
    /// such as the server-weight products of [`crate::beaver::weight`]). Traffic sent this way
    /// is counted under the current cost label but carries no op tag.
    pub fn parts_mut(&mut self) -> (&mut C, &mut K) {
        (&mut self.ch, &mut self.corr)
    }

    /// The session's PRG (this party's local randomness).
    pub fn prg(&mut self) -> &mut Prg {
        &mut self.prg
    }

    /// Sets the phase and label (for example a layer name) that all further traffic is
    /// counted under, on the peer channel and on the correlation source's own link. While an op
    /// runs, its name is appended: label `"layer3"` becomes `"layer3/softmax"`.
    pub fn set_cost_label(&mut self, phase: Phase, label: &str) {
        self.phase = phase;
        label.clone_into(&mut self.label);
        self.apply_label(label.to_string());
    }

    /// The current phase and base label.
    pub fn cost_label(&self) -> (Phase, &str) {
        (self.phase, &self.label)
    }

    fn apply_label(&mut self, label: String) {
        self.ch.set_phase(self.phase);
        self.ch.set_label(&label);
        self.corr.set_cost_label(self.phase, &label);
    }

    /// Gives the channel and the correlation source back.
    pub fn into_parts(self) -> (C, K) {
        (self.ch, self.corr)
    }

    /// Starts op `op` whose shapes and parameters are described by `desc`.
    pub(crate) fn begin_op(&mut self, op: &'static str, desc: String) {
        let tag = op_tag(op, &desc);
        self.tag_out = Some(tag);
        self.tag_in = Some(tag);
        let label = op_label(&self.label, op);
        self.apply_label(label);
        self.op = Some((op, desc));
    }

    /// Ends the current op: completes the tag exchange if the op sent or received nothing,
    /// restores the base label, and on error aborts the channel so the peer learns why.
    pub(crate) async fn end_op<T>(&mut self, r: Result<T, ErrorKind>) -> Result<T, ProtocolError> {
        let op = self.op.as_ref().map_or("op", |o| o.0);
        let r = match r {
            Ok(v) => self.flush_tags().await.map(|()| v),
            Err(e) => Err(e),
        };
        self.op = None;
        self.tag_out = None;
        self.tag_in = None;
        let base = self.label.clone();
        self.apply_label(base);
        match r {
            Ok(v) => Ok(v),
            Err(kind) => Err(self.fail(op, kind).await),
        }
    }

    /// Fails op `op` with `kind`: aborts the channel with the reason (so the peer fails with it
    /// too; nothing is sent if the channel already failed) and returns the error.
    pub(crate) async fn fail(&mut self, op: &'static str, kind: ErrorKind) -> ProtocolError {
        let e = ProtocolError::new(op, kind);
        let _ = self.ch.abort(&e.to_string()).await;
        e
    }

    async fn flush_tags(&mut self) -> Result<(), ErrorKind> {
        if let Some(t) = self.tag_out.take() {
            self.ch.send_bytes(&t.to_le_bytes()).await?;
        }
        self.check_tag().await
    }

    async fn check_tag(&mut self) -> Result<(), ErrorKind> {
        if let Some(tag) = self.tag_in.take() {
            let mut b = [0u8; 8];
            self.ch.recv_bytes_into(&mut b, "op tag").await?;
            if u64::from_le_bytes(b) != tag {
                let (op, desc) = self.op.clone().unwrap_or(("op", String::new()));
                let reason = format!(
                    "{op}: the peer called another op, or {op} with other shapes or \
                     parameters (this party ({:?}) called {op} with {desc})",
                    self.party
                );
                self.ch.abort(&reason).await;
                return Err(ErrorKind::PeerDisagrees(reason));
            }
        }
        Ok(())
    }

    /// Sends one message to the peer (after the op tag, on the op's first send).
    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<(), ErrorKind> {
        if let Some(t) = self.tag_out.take() {
            self.ch.send_bytes(&t.to_le_bytes()).await?;
        }
        self.ch.send_bytes(data).await?;
        Ok(())
    }

    /// Receives one message of exactly `buf.len()` bytes (after checking the op tag, on the
    /// op's first receive).
    pub(crate) async fn recv_into(&mut self, buf: &mut [u8], ctx: &str) -> Result<(), ErrorKind> {
        self.check_tag().await?;
        self.ch.recv_bytes_into(buf, ctx).await?;
        Ok(())
    }

    /// Receives one message of exactly `len` bytes.
    pub(crate) async fn recv(&mut self, len: usize, ctx: &str) -> Result<Vec<u8>, ErrorKind> {
        let mut buf = vec![0u8; len];
        self.recv_into(&mut buf, ctx).await?;
        Ok(buf)
    }

    /// Fetches one correlation.
    pub(crate) async fn fetch(&mut self, req: Request) -> Result<Material, ErrorKind> {
        Ok(self.corr.fetch(&req).await?)
    }
}
