//! The counting backend: what every op costs, from the shapes alone.
//!
//! [`Count`] implements [`Arith`] on lengths: it runs the same approximation text as the other
//! backends, but each primitive records the messages the secure backend would send (exact
//! payload sizes, 4-byte frame headers per frame of at most `frame_len` bytes, the 8-byte op
//! tags), the send flights per party (a *round* is counted each time a party sends after having
//! received, as the channel counts it), the correlation requests in order, and the dealer
//! link's traffic for them (each request's bincode encoding and acknowledgement, P1's
//! correction in messages of `chunk_elems` elements). A test runs every op at several sizes
//! over the in-memory channels and checks that these counts equal the channels' counters
//! exactly. The request list is also what a caller prefetches
//! ([`crate::beaver::Prefetched`]) before an op's online phase.

use std::collections::BTreeMap;

use crate::beaver::Request;
use crate::beaver::nl::{CmpShape, NlRequest, RowLayout};
use crate::channel::{Counters, FRAME_HEADER_LEN, Phase};
use crate::session::{ErrorKind, op_label};
use crate::share::Party;
use crate::trunc::TruncMode;

use super::arith::{Arith, Prod, ServerVector};
use super::cmp::{Tree, level_bytes, schedule, table_bytes, tree_first_bytes, u_bytes};
use super::params::NlParams;
use super::secure::width_bytes;
use super::{Mask, NormParams, approx, softmax_flat};

/// What one (phase, label) cost, per party.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartyCosts {
    /// The channel to the peer, as this party's channel counts it.
    pub peer: Counters,
    /// The link to the dealer, as this party's dealer client counts it.
    pub dealer: Counters,
}

/// What one (phase, label) cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountedCosts {
    /// P0's and P1's counters.
    pub parties: [PartyCosts; 2],
    /// Correlation requests made.
    pub requests: u64,
}

impl CountedCosts {
    /// Client-server bytes, both directions (P0's sent plus P1's sent).
    pub fn peer_bytes(&self) -> u64 {
        self.parties[0].peer.bytes_sent + self.parties[1].peer.bytes_sent
    }

    /// Dealer bytes to each party (what the dealer sends).
    pub fn dealer_bytes_to(&self, p: Party) -> u64 {
        self.parties[p.index()].dealer.bytes_recv
    }
}

/// The estimated cost of a softmax row maximum by a garbled max tree instead of the
/// comparison tournament (reported beside it, not run): per row of `L` values of `l` bits,
/// A2Y (garbler labels, `l` dealer COTs and an `l`-bit adder per value), `L − 1` garbled `max`
/// gadgets (`2l` ANDs each) and Y2A of the `l`-bit maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GarbledMaxCost {
    /// AND gates.
    pub ands: u64,
    /// Bytes garbler -> evaluator (tables, labels, Y2A corrections).
    pub garbler_to_evaluator: u64,
    /// Bytes evaluator -> garbler (COT derandomization bits).
    pub evaluator_to_garbler: u64,
}

/// Garbled max tree cost (see [`GarbledMaxCost`]) for rows of lengths `lens` on `l` bits,
/// from the gadget counts of `docs/protocols/gc.md`.
pub fn garbled_row_max_cost(lens: &[usize], l: u64) -> GarbledMaxCost {
    let mut c = GarbledMaxCost::default();
    for &len in lens {
        let len = len as u64;
        let adder = (l - 1) * len;
        let tree = 2 * l * len.saturating_sub(1);
        c.ands += adder + tree;
        c.garbler_to_evaluator += 32 * (adder + tree) + 16 * l * len + 8 * l;
        // Evaluator inputs and Y2A: one dealer COT each, one derandomization bit.
        c.evaluator_to_garbler += (l * len + l).div_ceil(8);
    }
    c
}

fn msg_bytes(len: usize, frame: usize) -> u64 {
    (len + FRAME_HEADER_LEN * len.div_ceil(frame).max(1)) as u64
}

/// One peer-channel event, kept for [`Count::simulate`].
#[derive(Clone, Copy, Debug)]
enum EventKind {
    Send { p: u8, bytes: u64 },
    Recv { p: u8 },
    Work { p: u8, secs: f64 },
}

#[derive(Clone, Debug)]
struct Event {
    kind: EventKind,
    /// Index into `Count::labels`.
    label: u32,
}

/// A network link for [`Count::simulate`]: full duplex, the same in both directions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Bandwidth of each direction, bytes per second.
    pub bytes_per_sec: f64,
    /// One-way delay, seconds (half the round-trip time).
    pub one_way_secs: f64,
}

/// What [`Count::simulate`] found: the critical-path time and its share per (phase, label).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timing {
    /// Seconds until both parties are done.
    pub total_secs: f64,
    /// How much each (phase, label)'s events advanced the later of the two parties' clocks.
    pub by_label: BTreeMap<(Phase, String), f64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Link {
    /// Whether the last event was a send (`None`: nothing yet).
    last_send: Option<bool>,
}

/// The counting backend (see the module docs).
#[derive(Clone, Debug)]
pub struct Count {
    params: NlParams,
    frame_len: usize,
    chunk_elems: usize,
    peer: [Link; 2],
    dealer: [Link; 2],
    tag_out: [bool; 2],
    tag_in: [bool; 2],
    phase: Phase,
    base: String,
    label: String,
    costs: BTreeMap<(Phase, String), CountedCosts>,
    requests: Vec<Request>,
    /// Lamport clocks of the two parties in one-way message delays, and the clocks of the
    /// messages in flight from each party (FIFO per direction).
    clock: [u64; 2],
    inflight: [std::collections::VecDeque<u64>; 2],
    /// The peer-channel events in order, for [`Count::simulate`].
    events: Vec<Event>,
    /// (phase, label) of the events, interned.
    labels: Vec<(Phase, String)>,
    /// Requests fetched ahead ([`Count::prefetch`]), not yet consumed.
    prefetched: std::collections::VecDeque<Request>,
}

impl Count {
    /// A counter for parameters `params`, channels with frames of at most `frame_len` bytes
    /// (the default is 1 MiB) and a dealer streaming corrections in messages of `chunk_elems`
    /// elements (default 65536). The dealer links start after their handshake.
    pub fn new(params: NlParams, frame_len: usize, chunk_elems: usize) -> Self {
        Count {
            params,
            frame_len: frame_len.max(1),
            chunk_elems: chunk_elems.max(1),
            peer: [Link::default(); 2],
            dealer: [Link {
                last_send: Some(false),
            }; 2],
            tag_out: [false; 2],
            tag_in: [false; 2],
            phase: Phase::Online,
            base: String::new(),
            label: String::new(),
            costs: BTreeMap::new(),
            requests: Vec::new(),
            clock: [0; 2],
            inflight: Default::default(),
            events: Vec::new(),
            labels: Vec::new(),
            prefetched: Default::default(),
        }
    }

    /// One-way message delays on the critical path so far: each message arrives one delay
    /// after the later of its sending and its sender's previous arrivals (a Lamport clock).
    /// Latency on a network is about `delays × one-way latency` plus compute and transfer time.
    pub fn delays(&self) -> u64 {
        self.clock[0].max(self.clock[1])
    }

    /// A counter with the default channel and dealer configurations.
    pub fn with_defaults(params: NlParams) -> Self {
        Count::new(
            params,
            crate::channel::ChannelConfig::default().max_frame_len,
            crate::beaver::dealer::DEFAULT_CHUNK_ELEMS,
        )
    }

    /// Sets the phase and label of further counts (as [`Session::set_cost_label`]).
    pub fn set_cost_label(&mut self, phase: Phase, label: &str) {
        self.phase = phase;
        label.clone_into(&mut self.base);
        label.clone_into(&mut self.label);
    }

    /// Counts per (phase, label).
    pub fn costs(&self) -> &BTreeMap<(Phase, String), CountedCosts> {
        &self.costs
    }

    /// The counts of one (phase, label), zero if none.
    pub fn get(&self, phase: Phase, label: &str) -> CountedCosts {
        self.costs
            .get(&(phase, label.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Everything counted, summed.
    pub fn total(&self) -> CountedCosts {
        let mut t = CountedCosts::default();
        for c in self.costs.values() {
            for p in 0..2 {
                t.parties[p].peer.accumulate(&c.parties[p].peer);
                t.parties[p].dealer.accumulate(&c.parties[p].dealer);
            }
            t.requests += c.requests;
        }
        t
    }

    /// The correlation requests so far, in order (what to prefetch).
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Forgets all counts, requests, prefetched requests and recorded events (link states are
    /// kept).
    pub fn reset(&mut self) {
        self.costs.clear();
        self.requests.clear();
        self.prefetched.clear();
        self.events.clear();
        self.labels.clear();
    }

    /// The parameters counted with.
    pub fn params(&self) -> &NlParams {
        &self.params
    }

    /// The current (phase, label), the op's name appended inside an op.
    pub fn label(&self) -> (Phase, &str) {
        (self.phase, &self.label)
    }

    fn event(&mut self, kind: EventKind) {
        let key = (self.phase, self.label.clone());
        let label = match self.labels.iter().rposition(|l| *l == key) {
            Some(i) => i,
            None => {
                self.labels.push(key);
                self.labels.len() - 1
            }
        } as u32;
        self.events.push(Event { kind, label });
    }

    /// Records `secs` of local computation by party `p` (for [`Count::simulate`]; it costs no
    /// bytes).
    pub fn record_work(&mut self, p: Party, secs: f64) {
        if secs > 0.0 {
            self.event(EventKind::Work {
                p: p.index() as u8,
                secs,
            });
        }
    }

    /// Records a message of `len` payload bytes sent by `from` (frame headers and a pending op
    /// tag added as the channel would). The receiver's side is [`Count::record_recv`]; record
    /// events in an order the protocol could produce them (a receive after its send).
    pub fn record_send(&mut self, from: Party, len: usize) {
        self.send(from.index(), len);
    }

    /// Records the receipt by `at` of the oldest message in flight to it, of `len` bytes.
    pub fn record_recv(&mut self, at: Party, len: usize) {
        self.recv(at.index(), len);
    }

    /// Records a message from `from` to the other party, sent and received.
    pub fn record_message(&mut self, from: Party, len: usize) {
        self.send(from.index(), len);
        self.recv(1 - from.index(), len);
    }

    /// Records both parties sending `len` bytes at once, then receiving the peer's (one
    /// opening).
    pub fn record_exchange(&mut self, len: usize) {
        self.exchange(len);
    }

    /// Records one correlation request and the dealer links' traffic for it.
    pub fn record_request(&mut self, req: Request) {
        self.request(req);
    }

    /// Records an op called `op`: the 8-byte op tags each party sends before its first message
    /// and checks before its first receive (as [`crate::session::Session`]'s ops do), and the
    /// op's name appended to the label, around what `f` records.
    pub fn record_op<T>(&mut self, op: &str, f: impl FnOnce(&mut Count) -> T) -> T {
        self.begin_op(op);
        let r = f(self);
        self.end_op();
        r
    }

    /// Replays the recorded peer-channel events on `link` and returns when both parties are
    /// done: a party's clock advances by its recorded work; a message sent at time `t` starts
    /// on its direction's link when that is free, occupies it `bytes / bandwidth`, and arrives
    /// `one_way` later; a receive waits for the arrival. Only events of `phases` are replayed
    /// (the dealer links are not: correlations are fetched ahead).
    pub fn simulate(&self, link: LinkModel, phases: &[Phase]) -> Timing {
        self.replay(link, phases, true)
    }

    /// [`Count::simulate`] without the recorded work: the network's part alone.
    pub fn simulate_network(&self, link: LinkModel, phases: &[Phase]) -> Timing {
        self.replay(link, phases, false)
    }

    fn replay(&self, link: LinkModel, phases: &[Phase], work: bool) -> Timing {
        let mut clock = [0f64; 2];
        let mut free = [0f64; 2];
        let mut inflight: [std::collections::VecDeque<f64>; 2] = Default::default();
        let mut t = Timing::default();
        let bw = link.bytes_per_sec.max(1e-9);
        for e in &self.events {
            let key = &self.labels[e.label as usize];
            if !phases.contains(&key.0) {
                continue;
            }
            let before = clock[0].max(clock[1]);
            match e.kind {
                EventKind::Work { p, secs } if work => clock[p as usize] += secs,
                EventKind::Work { .. } => {}
                EventKind::Send { p, bytes } => {
                    let p = p as usize;
                    let start = clock[p].max(free[p]);
                    free[p] = start + bytes as f64 / bw;
                    inflight[p].push_back(free[p] + link.one_way_secs);
                }
                EventKind::Recv { p } => {
                    let p = p as usize;
                    if let Some(arr) = inflight[1 - p].pop_front() {
                        clock[p] = clock[p].max(arr);
                    }
                }
            }
            let after = clock[0].max(clock[1]);
            if after > before {
                *t.by_label.entry(key.clone()).or_default() += after - before;
            }
        }
        t.total_secs = clock[0].max(clock[1]);
        t
    }

    fn entry(&mut self) -> &mut CountedCosts {
        self.costs
            .entry((self.phase, self.label.clone()))
            .or_default()
    }

    fn raw_send(&mut self, p: usize, len: usize) {
        self.inflight[p].push_back(self.clock[p]);
        let b = msg_bytes(len, self.frame_len);
        self.event(EventKind::Send {
            p: p as u8,
            bytes: b,
        });
        let new_round = self.peer[p].last_send != Some(true);
        self.peer[p].last_send = Some(true);
        let c = &mut self.entry().parties[p].peer;
        c.bytes_sent += b;
        c.msgs_sent += 1;
        c.rounds += new_round as u64;
    }

    fn raw_recv(&mut self, p: usize, len: usize) {
        // Events are recorded in a causal order, so the message is in flight.
        let sent = self.inflight[1 - p].pop_front().unwrap_or(self.clock[p]);
        self.clock[p] = self.clock[p].max(sent + 1);
        let b = msg_bytes(len, self.frame_len);
        self.event(EventKind::Recv { p: p as u8 });
        self.peer[p].last_send = Some(false);
        let c = &mut self.entry().parties[p].peer;
        c.bytes_recv += b;
        c.msgs_recv += 1;
    }

    fn send(&mut self, p: usize, len: usize) {
        if std::mem::take(&mut self.tag_out[p]) {
            self.raw_send(p, 8);
        }
        self.raw_send(p, len);
    }

    fn recv(&mut self, p: usize, len: usize) {
        if std::mem::take(&mut self.tag_in[p]) {
            self.raw_recv(p, 8);
        }
        self.raw_recv(p, len);
    }

    /// Both parties send `len` bytes, then receive the peer's.
    fn exchange(&mut self, len: usize) {
        self.send(0, len);
        self.send(1, len);
        self.recv(0, len);
        self.recv(1, len);
    }

    fn dealer_event(&mut self, p: usize, len: usize, send: bool) {
        let b = msg_bytes(len, self.frame_len);
        let new_round = send && self.dealer[p].last_send != Some(true);
        self.dealer[p].last_send = Some(send);
        let c = &mut self.entry().parties[p].dealer;
        if send {
            c.bytes_sent += b;
            c.msgs_sent += 1;
            c.rounds += new_round as u64;
        } else {
            c.bytes_recv += b;
            c.msgs_recv += 1;
        }
    }

    /// Records fetching `req` ahead of the op that will consume it (as
    /// [`crate::beaver::Prefetched::prefetch`]): the dealer links' traffic now, under the
    /// current label; the op's identical request later costs nothing.
    pub fn prefetch(&mut self, req: Request) {
        self.fetch(req.clone());
        self.prefetched.push_back(req);
    }

    /// Number of prefetched requests not yet consumed.
    pub fn prefetched(&self) -> usize {
        self.prefetched.len()
    }

    /// One correlation request of an op: served from the prefetched queue when its front is
    /// this request, else fetched now.
    fn request(&mut self, req: Request) {
        if self.prefetched.front() == Some(&req) {
            self.prefetched.pop_front();
            self.requests.push(req);
            return;
        }
        self.fetch(req.clone());
        self.requests.push(req);
    }

    /// The dealer links' traffic of one request made now.
    fn fetch(&mut self, req: Request) {
        let enc = bincode::serde::encode_to_vec(&req, bincode::config::standard())
            .map(|v| v.len())
            .unwrap_or(0);
        for p in 0..2 {
            self.dealer_event(p, enc, true);
            self.dealer_event(p, 8, false);
        }
        let mut left = req.correction_len(Party::P1);
        while left > 0 {
            let k = left.min(self.chunk_elems);
            self.dealer_event(1, 8 * k, false);
            left -= k;
        }
        self.entry().requests += 1;
    }

    fn begin_op(&mut self, op: &str) {
        self.label = op_label(&self.base, op);
        self.tag_out = [true; 2];
        self.tag_in = [true; 2];
    }

    fn end_op(&mut self) {
        for p in 0..2 {
            if std::mem::take(&mut self.tag_out[p]) {
                self.raw_send(p, 8);
            }
        }
        for p in 0..2 {
            if std::mem::take(&mut self.tag_in[p]) {
                self.raw_recv(p, 8);
            }
        }
        self.label = self.base.clone();
    }

    fn run_op<T>(
        &mut self,
        op: &str,
        f: impl FnOnce(&mut Count) -> Result<T, ErrorKind>,
    ) -> Result<T, ErrorKind> {
        self.begin_op(op);
        let r = f(self);
        self.end_op();
        r
    }

    /// Counts [`super::relu`] on `n` elements.
    pub fn relu(&mut self, n: usize) -> Result<(), ErrorKind> {
        self.run_op("relu", |c| {
            super::Plain::run(approx::relu(c, &n)).map(|_| ())
        })
    }

    /// Counts [`super::gelu`] on `n` elements.
    pub fn gelu(&mut self, n: usize) -> Result<(), ErrorKind> {
        self.run_op("gelu", |c| {
            super::Plain::run(approx::gelu(c, &n)).map(|_| ())
        })
    }

    /// Counts [`super::softmax`] on `shape = [heads, rows, cols]`.
    pub fn softmax(
        &mut self,
        shape: &[usize],
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> Result<(), ErrorKind> {
        let n: usize = shape.iter().product();
        self.run_op("softmax", |c| {
            super::Plain::run(softmax_flat(c, &n, shape, mask, temps)).map(|_| ())
        })
    }

    /// Counts [`super::layer_norm`] on `rows × d` with gain vector `id`.
    pub fn layer_norm(&mut self, rows: usize, d: usize, id: u32) -> Result<(), ErrorKind> {
        let norm = NormParams {
            gain: ServerVector::shape(id, d),
            bias: None,
            eps: 1e-5,
        };
        self.run_op("layer_norm", |c| {
            super::Plain::run(approx::layer_norm(c, &(rows * d), rows, &norm)).map(|_| ())
        })
    }

    /// Counts [`super::argmax`] on `n` elements revealed to `to`.
    pub fn argmax(&mut self, n: usize, to: Party) -> Result<(), ErrorKind> {
        if n == 0 {
            return Err(ErrorKind::BadInput("argmax over an empty vector".into()));
        }
        self.run_op("argmax", |c| {
            super::Plain::run(approx::argmax(c, &n, to)).map(|_| ())
        })
    }

    /// Counts [`super::setup_server_vector`] of length `d`.
    pub fn setup_server_vector(&mut self, id: u32, d: usize) {
        self.begin_op("server_vector");
        self.request(Request::WeightMask { id, k: 1, m: d });
        self.send(1, 8 * d);
        self.recv(0, 8 * d);
        self.end_op();
    }
}

impl Arith for Count {
    type V = usize;
    type B = usize;
    type Pending = (usize, RowLayout);

    fn params(&self) -> &NlParams {
        &self.params
    }

    fn len(&self, x: &usize) -> usize {
        *x
    }

    fn constant(&self, vals: &[u64]) -> usize {
        vals.len()
    }

    fn add(&self, x: &usize, _y: &usize) -> usize {
        *x
    }

    fn sub(&self, x: &usize, _y: &usize) -> usize {
        *x
    }

    fn add_public(&self, x: &usize, _c: &[u64]) -> usize {
        *x
    }

    fn mul_public(&self, x: &usize, _c: &[u64]) -> usize {
        *x
    }

    fn scale(&self, x: &usize, _c: u64) -> usize {
        *x
    }

    fn gather(&self, _x: &usize, idx: &[usize]) -> usize {
        idx.len()
    }

    fn concat(&self, parts: &[&usize]) -> usize {
        parts.iter().copied().sum()
    }

    fn split(&self, _x: &usize, lens: &[usize]) -> Vec<usize> {
        lens.to_vec()
    }

    fn sum_groups(&self, _x: &usize, lens: &[usize]) -> usize {
        lens.len()
    }

    fn repeat_groups(&self, _x: &usize, lens: &[usize]) -> usize {
        lens.iter().sum()
    }

    fn add_server_rows(&self, x: &usize, _rows: usize, _v: Option<&[u64]>) -> usize {
        *x
    }

    fn blen(&self, b: &usize) -> usize {
        *b
    }

    fn bnot(&self, b: &usize) -> usize {
        *b
    }

    fn bxor(&self, a: &usize, _b: &usize) -> usize {
        *a
    }

    fn bgather(&self, _b: &usize, idx: &[usize]) -> usize {
        idx.len()
    }

    async fn products(&mut self, items: &[Prod<'_, usize>]) -> Result<Vec<usize>, ErrorKind> {
        let mut total = 0;
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            match *it {
                Prod::Mul(&n, _) => {
                    if n > 0 {
                        self.request(Request::Elementwise { n });
                    }
                    total += 2 * n;
                    out.push(n);
                }
                Prod::Square(&n) => {
                    if n > 0 {
                        self.request(Request::Square { n });
                    }
                    total += n;
                    out.push(n);
                }
            }
        }
        if total > 0 {
            self.exchange(8 * total);
        }
        Ok(out)
    }

    async fn mul_rows(
        &mut self,
        x: &usize,
        _r: &usize,
        layout: &RowLayout,
    ) -> Result<usize, ErrorKind> {
        if *x > 0 {
            self.request(Request::Nonlinear(NlRequest::RowMul {
                layout: layout.clone(),
                square: false,
            }));
            self.exchange(8 * (x + layout.rows()));
        }
        Ok(*x)
    }

    async fn trunc_square_keep(
        &mut self,
        x: &usize,
        bits: u32,
        layout: &RowLayout,
    ) -> Result<(usize, (usize, RowLayout)), ErrorKind> {
        if *x > 0 {
            match self.params.trunc {
                TruncMode::DealerAssisted => {
                    self.request(Request::Nonlinear(NlRequest::TruncSquareRow {
                        layout: layout.clone(),
                        bits,
                    }))
                }
                TruncMode::Local => self.request(Request::Square { n: *x }),
            }
            self.exchange(8 * x);
        }
        Ok((*x, (*x, layout.clone())))
    }

    async fn mul_rows_kept(
        &mut self,
        kept: (usize, RowLayout),
        r: &usize,
    ) -> Result<usize, ErrorKind> {
        let (n, layout) = kept;
        match self.params.trunc {
            TruncMode::DealerAssisted => {
                if n > 0 {
                    self.exchange(8 * layout.rows());
                }
                Ok(n)
            }
            TruncMode::Local => self.mul_rows(&n, r, &layout).await,
        }
    }

    async fn trunc(&mut self, x: &usize, bits: u32) -> Result<usize, ErrorKind> {
        if *x > 0 && self.params.trunc == TruncMode::DealerAssisted {
            self.request(Request::Trunc {
                n: *x,
                frac_bits: bits,
            });
            if *x < self.params.trunc_one_way_min {
                self.exchange(8 * x);
            } else {
                self.send(0, 8 * x);
                self.recv(1, 8 * x);
                self.send(1, x.div_ceil(8));
                self.recv(0, x.div_ceil(8));
            }
        }
        Ok(*x)
    }

    async fn msb(&mut self, x: &usize, bits: u32) -> Result<usize, ErrorKind> {
        let n = *x;
        if n == 0 {
            return Ok(0);
        }
        let shape = CmpShape {
            bits: bits - 1,
            digit_bits: self.params.digit_bits,
        };
        self.request(Request::Nonlinear(NlRequest::Cmp {
            n,
            bits: shape.bits,
            digit_bits: shape.digit_bits,
        }));
        let tree = Tree::new(shape.digits());
        let ub = u_bytes(n, &shape);
        let tb = table_bytes(n, &shape) + tree_first_bytes(n, &tree);
        self.send(1, ub);
        self.recv(0, ub);
        self.send(0, tb);
        self.recv(1, tb);
        for (sender, levels) in schedule(tree.levels()) {
            let len: usize = levels.iter().map(|&k| level_bytes(n, &tree, k)).sum();
            let s = sender.index();
            self.send(s, len);
            self.recv(1 - s, len);
        }
        Ok(n)
    }

    async fn mux(
        &mut self,
        b: &usize,
        xs: &[&usize],
        widths: &[u32],
    ) -> Result<Vec<usize>, ErrorKind> {
        let n = *b;
        if n > 0 {
            self.request(Request::Nonlinear(NlRequest::Mux { n, k: xs.len() }));
            let len: usize =
                widths.iter().map(|&w| n * width_bytes(w)).sum::<usize>() + n.div_ceil(8);
            self.exchange(len);
        }
        Ok(xs.iter().map(|_| n).collect())
    }

    async fn b2a(&mut self, b: &usize) -> Result<usize, ErrorKind> {
        if *b > 0 {
            self.request(Request::Nonlinear(NlRequest::Mux { n: *b, k: 0 }));
            self.exchange(b.div_ceil(8));
        }
        Ok(*b)
    }

    async fn reveal(&mut self, x: &usize, to: Party) -> Result<Option<Vec<u64>>, ErrorKind> {
        let t = to.index();
        self.send(1 - t, 8 * x);
        self.recv(t, 8 * x);
        Ok(None)
    }

    async fn scale_server(
        &mut self,
        x: &usize,
        rows: usize,
        v: &ServerVector,
    ) -> Result<usize, ErrorKind> {
        if *x > 0 {
            self.request(Request::Nonlinear(NlRequest::ScaleVec {
                id: v.id(),
                rows,
                d: v.len(),
            }));
            self.send(0, 8 * x);
            self.recv(1, 8 * x);
        }
        Ok(*x)
    }
}

#[cfg(test)]
mod timeline_tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// The replay by hand: a one-way message, a reply, an exchange (both directions at once
    /// overlap on the full-duplex link), and work on one party's clock.
    #[test]
    fn replay_on_a_link() {
        let link = LinkModel {
            bytes_per_sec: 1000.0,
            one_way_secs: 0.5,
        };
        let mut c = Count::with_defaults(NlParams::default());
        c.set_cost_label(Phase::Online, "a");
        c.record_message(Party::P0, 996); // 1000 B with the frame header: 1 s + 0.5 s
        c.set_cost_label(Phase::Online, "b");
        c.record_work(Party::P1, 0.25);
        c.record_message(Party::P1, 496); // starts at 1.75: 0.5 s + 0.5 s -> 2.75
        let t = c.simulate(link, &[Phase::Online]);
        assert!(close(t.total_secs, 2.75), "{t:?}");
        assert!(close(t.by_label[&(Phase::Online, "a".into())], 1.5));
        assert!(close(t.by_label[&(Phase::Online, "b".into())], 1.25));
        assert!(close(
            c.simulate_network(link, &[Phase::Online]).total_secs,
            2.5
        ));
        // An exchange: both send 1000 B at 2.75, both receive at 4.25.
        c.set_cost_label(Phase::Setup, "x");
        c.record_exchange(996);
        assert!(close(
            c.simulate(link, &[Phase::Online, Phase::Setup]).total_secs,
            4.25
        ));
        // Phases filter: the setup exchange alone.
        assert!(close(c.simulate(link, &[Phase::Setup]).total_secs, 1.5));
    }

    /// A prefetched request costs its dealer traffic once, under the prefetch's label.
    #[test]
    fn prefetched_requests_are_not_fetched_again() {
        let req = Request::Elementwise { n: 10 };
        let mut a = Count::with_defaults(NlParams::default());
        a.set_cost_label(Phase::Preprocessing, "p");
        a.prefetch(req.clone());
        assert_eq!(a.prefetched(), 1);
        a.set_cost_label(Phase::Online, "o");
        a.record_request(req.clone());
        assert_eq!(a.prefetched(), 0);
        assert_eq!(
            a.get(Phase::Online, "o").parties[1].dealer,
            Counters::default()
        );
        let mut b = Count::with_defaults(NlParams::default());
        b.set_cost_label(Phase::Online, "o");
        b.record_request(req);
        assert_eq!(
            a.get(Phase::Preprocessing, "p").parties,
            b.get(Phase::Online, "o").parties
        );
        assert_eq!(a.requests(), b.requests());
    }
}
