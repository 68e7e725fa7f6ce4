//! The cost table of a private generation: the secure run's own flow
//! ([`crate::secure::client_generate`]: weight setup, then per forward pass a plan, per-stage
//! prefetching of the whole pass, then the online ops, argmax to the client) over `SecureOps<CountEngine>`, and
//! its counts arranged per layer and op, with a latency projected for a network profile.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use privlm_protocols::beaver::Request;
use privlm_protocols::beaver::nl::NlRequest;
use privlm_protocols::channel::Phase;
use privlm_protocols::nonlinear::{Count, NlParams};
use serde::Serialize;

use super::calib::Calibration;
use super::engine::CountEngine;
use super::net::NetProfile;
use crate::model::ModelError;
use crate::model::config::ModelConfig;
use crate::model::config::TemperatureForm;
use crate::model::ops::{
    ForwardOptions, KvCache, LayerConstants, ModelManifest, TensorOps, Tokens, default_score_scale,
    forward, prepare_weights,
};
use crate::secure::SecureError;
use crate::secure::ops::SecureOps;
use crate::secure::plan::PlanEngine;

/// What to count: a model shape and a generation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    /// The model's public configuration (architecture and shapes).
    pub config: ModelConfig,
    /// Prompt length T.
    pub prompt_len: usize,
    /// Tokens to generate (the paper's tables: 1).
    pub new_tokens: usize,
    /// Whether further tokens reuse a secret-shared KV cache (the runtime always does);
    /// without it each further token reruns the whole prefix (counted, not run).
    pub kv_cache: bool,
}

/// The public constants the cost does not depend on (β = 1, the default score scale,
/// temperatures of 1 where the architecture has them).
pub fn placeholder_manifest(cfg: &ModelConfig) -> ModelManifest {
    let temps = cfg.architecture.temperature.then(|| {
        let n = match cfg.temperature_form {
            TemperatureForm::PerHeadQuery => cfg.n_head * cfg.n_ctx,
            TemperatureForm::PerHead => cfg.n_head,
        };
        vec![1.0; n]
    });
    ModelManifest {
        config: cfg.clone(),
        layers: (0..cfg.n_layer)
            .map(|_| LayerConstants {
                beta: 1.0,
                score_scale: default_score_scale(cfg),
                temperature: temps.clone(),
            })
            .collect(),
        untied_lm_head: false,
    }
}

fn drive<T>(
    f: impl std::future::Future<Output = Result<T, SecureError>>,
) -> Result<T, SecureError> {
    crate::model::ops::block_on_local(f)
}

/// Counts a generation (see the module docs) and returns the engine holding the counts.
pub fn count_generation(
    w: &Workload,
    manifest: &ModelManifest,
    params: NlParams,
    calib: Calibration,
) -> Result<CountEngine, SecureError> {
    let cfg = &manifest.config;
    if w.prompt_len == 0 || w.new_tokens == 0 {
        return Err(ModelError::EmptyInput.into());
    }
    if w.prompt_len + w.new_tokens > cfg.n_ctx {
        return Err(ModelError::ContextTooLong {
            len: w.prompt_len + w.new_tokens,
            limit: cfg.n_ctx,
        }
        .into());
    }
    let mut ops = SecureOps::new(CountEngine::new(params, calib), manifest)?;
    let weights = drive(prepare_weights(&mut ops, manifest, None))?;
    let mut planner = SecureOps::new(PlanEngine::new(params), manifest)?;
    let pw = drive(prepare_weights(&mut planner, manifest, None))?;
    let opts = ForwardOptions {
        attention: false,
        last_only: true,
    };
    let mut cache = KvCache::new(cfg.n_layer);
    let mut plan_cache = KvCache::new(cfg.n_layer);
    for step in 0..w.new_tokens {
        let (n, fresh) = match (step, w.kv_cache) {
            (0, _) => (w.prompt_len, false),
            (_, true) => (1, false),
            (_, false) => (w.prompt_len + step, true),
        };
        if fresh {
            cache = KvCache::new(cfg.n_layer);
            plan_cache = KvCache::new(cfg.n_layer);
        }
        let ids = vec![0u32; n];
        planner.engine_mut().clear();
        let po = drive(forward(
            &mut planner,
            cfg,
            &pw,
            Tokens::Ids(&ids),
            &mut plan_cache,
            opts,
        ))?;
        drive(planner.argmax(&po.logits))?;
        ops.set_plan(planner.engine().plan());
        drive(ops.prefetch_plan())?;
        let o = drive(forward(
            &mut ops,
            cfg,
            &weights,
            Tokens::Ids(&ids),
            &mut cache,
            opts,
        ))?;
        drive(ops.argmax(&o.logits))?;
    }
    Ok(ops.into_engine())
}

/// The kind of an op, for grouping (the plots' colours).
pub fn op_kind(op: &str) -> &'static str {
    match op {
        "linear" | "lookup" | "matmul" | "setup_weight" => "linear",
        "softmax" => "softmax",
        "gelu" | "relu" => "activation",
        "layer_norm" | "server_vector" => "layernorm",
        "trunc" => "truncation",
        "argmax" => "argmax",
        "reveal" => "reveal",
        "" => "dealer prefetch",
        _ => "other",
    }
}

/// One row of the table: one (phase, label).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The phase.
    pub phase: Phase,
    /// Stage (`embedding`, `layer3/attn`, `layer3/ffn`, `head`).
    pub stage: String,
    /// Op (`linear`, `softmax`, ...; empty for a stage's prefetching).
    pub op: String,
    /// Bytes client → server.
    pub c2s: u64,
    /// Bytes server → client.
    pub s2c: u64,
    /// Bytes dealer → client.
    pub dealer_to_client: u64,
    /// Bytes dealer → server.
    pub dealer_to_server: u64,
    /// Bytes the parties send the dealer (requests).
    pub to_dealer: u64,
    /// Send flights (client, server).
    pub rounds: [u64; 2],
    /// Correlation requests made over the dealer link.
    pub requests: u64,
    /// Elements processed (multiply-accumulates for products).
    pub elements: u64,
    /// Seconds this row adds to the critical path on the profile.
    pub secs: f64,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            phase: Phase::Online,
            stage: String::new(),
            op: String::new(),
            c2s: 0,
            s2c: 0,
            dealer_to_client: 0,
            dealer_to_server: 0,
            to_dealer: 0,
            rounds: [0; 2],
            requests: 0,
            elements: 0,
            secs: 0.0,
        }
    }
}

impl Row {
    /// Client-server bytes, both directions.
    pub fn peer_bytes(&self) -> u64 {
        self.c2s + self.s2c
    }

    /// The layer (`layer3`, `embedding`, `head`).
    pub fn layer(&self) -> &str {
        self.stage.split('/').next().unwrap_or("")
    }

    fn add(&mut self, o: &Row) {
        self.c2s += o.c2s;
        self.s2c += o.s2c;
        self.dealer_to_client += o.dealer_to_client;
        self.dealer_to_server += o.dealer_to_server;
        self.to_dealer += o.to_dealer;
        self.rounds[0] += o.rounds[0];
        self.rounds[1] += o.rounds[1];
        self.requests += o.requests;
        self.elements += o.elements;
        self.secs += o.secs;
    }
}

/// Correlations dealt, by kind: requests and elements (comparisons, triples, pairs...).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Correlations {
    /// Kind → (requests, elements).
    pub by_kind: BTreeMap<String, (u64, u64)>,
}

impl Correlations {
    fn of(reqs: &[Request]) -> Self {
        let mut c = Correlations::default();
        for r in reqs {
            let (k, n): (String, usize) = match r {
                Request::Elementwise { n } => ("elementwise triples".into(), *n),
                Request::Square { n } => ("square pairs".into(), *n),
                Request::Trunc { n, .. } => ("truncation pairs".into(), *n),
                Request::MatMul { batch, n, k, m } => (
                    format!("matrix triples {batch}x[{n}x{k}]x[{k}x{m}]"),
                    batch * n * m,
                ),
                Request::WeightMask { k, m, .. } => ("weight masks (elements)".into(), k * m),
                Request::Weight { n, k, m, .. } => {
                    (format!("weight triples [{n}x{k}]x[{k}x{m}]"), n * m)
                }
                Request::Table { t, .. } => ("table lookups".into(), *t),
                Request::Nonlinear(nl) => match nl {
                    NlRequest::Cmp {
                        n,
                        bits,
                        digit_bits,
                    } => (
                        "1-of-16 OTs (comparison digits)".into(),
                        n * (*bits as usize).div_ceil(*digit_bits as usize),
                    ),
                    NlRequest::Mux { n, .. } => ("multiplexer / B2A bits".into(), *n),
                    NlRequest::RowMul { layout, .. } => ("row products".into(), layout.rows()),
                    NlRequest::TruncSquareRow { layout, .. } => {
                        ("truncate-square-row".into(), layout.rows())
                    }
                    NlRequest::ScaleVec { rows, d, .. } => ("vector products".into(), rows * d),
                    #[allow(unreachable_patterns)]
                    _ => ("other nonlinear".into(), 0),
                },
                #[allow(unreachable_patterns)]
                _ => ("other".into(), 0),
            };
            let e = c.by_kind.entry(k).or_default();
            e.0 += 1;
            e.1 += n as u64;
        }
        c
    }
}

/// A cost table (see the module docs). Serializes to the `--json` output.
#[derive(Clone, Debug, Serialize)]
pub struct CostTable {
    /// What was counted.
    pub workload: Workload,
    /// The network profile of the `secs` columns and the latency.
    pub profile: NetProfile,
    /// The calibration's note.
    pub calibration: String,
    /// Every (phase, label), in order of phase then label.
    pub rows: Vec<Row>,
    /// Correlations dealt, by kind.
    pub correlations: Correlations,
    /// Projected seconds: setup (the `W − B` messages), online, and the preprocessing estimate.
    pub latency: Latency,
    /// The counts (events kept for projecting other profiles).
    #[serde(skip)]
    count: Count,
    #[serde(skip)]
    secs_per_message: f64,
}

/// The profile's link with the calibration's per-message overhead added to the one-way delay.
fn with_overhead(p: &NetProfile, c: &Calibration) -> privlm_protocols::nonlinear::LinkModel {
    let mut l = p.link_model();
    l.one_way_secs += c.secs_per_message;
    l
}

/// Projected latency (seconds) on a profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// The one-time session setup, replayed on the link.
    pub setup: f64,
    /// The online phase (every forward pass and argmax), replayed on the link with compute.
    pub online: f64,
    /// The online phase's network part alone (no compute; the per-message overhead included).
    pub online_network: f64,
    /// Fetching the correlations from the dealer over a link like the profile's: the larger
    /// party's dealer bytes over the bandwidth plus one round trip per request (they are
    /// fetched one after another).
    pub preprocessing: f64,
    /// The closed form `bytes / bandwidth + rounds × RTT` for the online phase (both
    /// directions serial, rounds the larger party's send flights), for comparison.
    pub online_closed_form: f64,
}

impl CostTable {
    /// Builds the table from a counting engine's counts.
    pub fn build(workload: Workload, engine: &CountEngine, profile: NetProfile) -> Self {
        let count: &Count = engine.count();
        let link = with_overhead(&profile, engine.calibration());
        let t_online = count.simulate(link, &[Phase::Online]);
        let t_setup = count.simulate(link, &[Phase::Setup]);
        let mut rows = Vec::new();
        for ((phase, label), c) in count.costs() {
            let (stage, op) = split_label(label);
            let w = engine.work().get(&(*phase, label.clone()));
            let secs = match phase {
                Phase::Online => t_online.by_label.get(&(*phase, label.clone())),
                Phase::Setup => t_setup.by_label.get(&(*phase, label.clone())),
                Phase::Preprocessing => None,
            }
            .copied()
            .unwrap_or(0.0);
            rows.push(Row {
                phase: *phase,
                stage: stage.to_string(),
                op: op.to_string(),
                c2s: c.parties[0].peer.bytes_sent,
                s2c: c.parties[1].peer.bytes_sent,
                dealer_to_client: c.parties[0].dealer.bytes_recv,
                dealer_to_server: c.parties[1].dealer.bytes_recv,
                to_dealer: c.parties[0].dealer.bytes_sent + c.parties[1].dealer.bytes_sent,
                rounds: [c.parties[0].peer.rounds, c.parties[1].peer.rounds],
                requests: c.requests,
                elements: w.map_or(0, |w| w.elements),
                secs,
            });
        }
        let net_only = count.simulate_network(link, &[Phase::Online]).total_secs;
        let tot = |ph: Phase| {
            let mut r = Row::default();
            for x in rows.iter().filter(|x| x.phase == ph) {
                r.add(x);
            }
            r
        };
        let on = tot(Phase::Online);
        let all = tot(Phase::Preprocessing);
        let dealer = [
            on.dealer_to_client + all.dealer_to_client + tot(Phase::Setup).dealer_to_client,
            on.dealer_to_server + all.dealer_to_server + tot(Phase::Setup).dealer_to_server,
        ];
        let requests = on.requests + all.requests + tot(Phase::Setup).requests;
        let latency = Latency {
            setup: t_setup.total_secs,
            online: t_online.total_secs,
            online_network: net_only,
            preprocessing: dealer[0].max(dealer[1]) as f64 / profile.bytes_per_sec()
                + requests as f64 * profile.rtt_secs,
            online_closed_form: profile
                .serial_secs(on.peer_bytes(), on.rounds[0].max(on.rounds[1])),
        };
        CostTable {
            workload,
            profile,
            calibration: engine.calibration().note.clone(),
            rows,
            correlations: Correlations::of(count.requests()),
            latency,
            count: count.clone(),
            secs_per_message: engine.calibration().secs_per_message,
        }
    }

    /// The online latency projected on another profile (same counts and calibration).
    pub fn online_latency_on(&self, p: &NetProfile) -> f64 {
        let mut link = p.link_model();
        link.one_way_secs += self.secs_per_message;
        self.count.simulate(link, &[Phase::Online]).total_secs
    }

    /// Sum of the rows of `phase`.
    pub fn total(&self, phase: Phase) -> Row {
        let mut r = Row::default();
        for x in self.rows.iter().filter(|x| x.phase == phase) {
            r.add(x);
        }
        r
    }

    /// Rows summed per key (`key(row)`), in first-seen order, for one phase (`None`: all).
    pub fn group_by(
        &self,
        phase: Option<Phase>,
        key: impl Fn(&Row) -> String,
    ) -> Vec<(String, Row)> {
        let mut out: Vec<(String, Row)> = Vec::new();
        for r in self
            .rows
            .iter()
            .filter(|r| phase.is_none_or(|p| r.phase == p))
        {
            let k = key(r);
            match out.iter_mut().find(|(kk, _)| *kk == k) {
                Some((_, acc)) => acc.add(r),
                None => {
                    let mut acc = Row::default();
                    acc.add(r);
                    out.push((k, acc));
                }
            }
        }
        out
    }

    /// Client-server bytes of the preprocessing and online phases (what the paper's tables
    /// count: everything the two parties send each other per query; setup apart).
    pub fn query_bytes(&self) -> u64 {
        self.total(Phase::Online).peer_bytes() + self.total(Phase::Preprocessing).peer_bytes()
    }

    /// All dealer bytes (to both parties, every phase).
    pub fn dealer_bytes(&self) -> u64 {
        self.rows
            .iter()
            .map(|r| r.dealer_to_client + r.dealer_to_server)
            .sum()
    }

    /// The op that carries the most client-server bytes per query, and its share.
    pub fn dominant_op(&self) -> (String, f64) {
        let g = self.group_by(Some(Phase::Online), |r| op_kind(&r.op).to_string());
        let total = self.query_bytes().max(1) as f64;
        g.into_iter()
            .max_by_key(|(_, r)| r.peer_bytes())
            .map(|(k, r)| (k, r.peer_bytes() as f64 / total))
            .unwrap_or_default()
    }

    /// The text table: per layer, per op kind, totals and latency (bytes in MB, time in s).
    pub fn text(&self) -> String {
        let mb = |b: u64| b as f64 / 1e6;
        let w = &self.workload;
        let c = &w.config;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: L={} H={} d={} d_ff={} vocab={} ctx={}; prompt {} tokens, {} new, KV cache {}",
            c.architecture,
            c.n_layer,
            c.n_head,
            c.d_model,
            c.d_ff,
            c.vocab_size,
            c.n_ctx,
            w.prompt_len,
            w.new_tokens,
            if w.kv_cache { "on" } else { "off" }
        );
        let _ = writeln!(s, "network {}; compute: {}", self.profile, self.calibration);
        let head = format!(
            "{:<16} {:>11} {:>11} {:>11} {:>11} {:>7} {:>9}",
            "", "c->s MB", "s->c MB", "dealer->c", "dealer->s", "rounds", "secs"
        );
        let line = |s: &mut String, k: &str, r: &Row| {
            let _ = writeln!(
                s,
                "{:<16} {:>11.2} {:>11.2} {:>11.2} {:>11.2} {:>7} {:>9.2}",
                k,
                mb(r.c2s),
                mb(r.s2c),
                mb(r.dealer_to_client),
                mb(r.dealer_to_server),
                r.rounds[0].max(r.rounds[1]),
                r.secs
            );
        };
        let _ = writeln!(s, "\nonline + preprocessing, per layer\n{head}");
        let mut layers = self.group_by(None, |r| {
            if r.phase == Phase::Setup {
                String::new()
            } else {
                r.layer().to_string()
            }
        });
        layers.sort_by_key(|(k, _)| super::paper::layer_order(k));
        for (k, r) in layers {
            if !k.is_empty() {
                line(&mut s, &k, &r);
            }
        }
        let _ = writeln!(s, "\nonline + preprocessing, per op kind\n{head}");
        for (k, r) in self.group_by(None, |r| {
            if r.phase == Phase::Setup {
                String::new()
            } else {
                op_kind(&r.op).to_string()
            }
        }) {
            if !k.is_empty() {
                line(&mut s, &k, &r);
            }
        }
        let _ = writeln!(s, "\nper phase\n{head}");
        for ph in [Phase::Setup, Phase::Preprocessing, Phase::Online] {
            line(&mut s, &format!("{ph:?}"), &self.total(ph));
        }
        let l = &self.latency;
        let (dom, share) = self.dominant_op();
        let _ = writeln!(
            s,
            "\nper query: {:.3} GB client-server ({:.3} GB dealer); setup once: {:.3} GB",
            self.query_bytes() as f64 / 1e9,
            self.dealer_bytes() as f64 / 1e9,
            self.total(Phase::Setup).peer_bytes() as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "dominant op: {dom} ({:.0} % of the bytes)",
            100.0 * share
        );
        let _ = writeln!(
            s,
            "latency on {}: online {:.2} s (network alone {:.2} s; closed form bytes/bw + rounds x RTT {:.2} s), setup {:.2} s, preprocessing {:.2} s",
            self.profile.name,
            l.online,
            l.online_network,
            l.online_closed_form,
            l.setup,
            l.preprocessing
        );
        let _ = writeln!(s, "\ncorrelations dealt (requests, elements)");
        for (k, (r, n)) in &self.correlations.by_kind {
            let _ = writeln!(s, "  {k:<44} {r:>6} {n:>14}");
        }
        s
    }

    /// The rows as CSV (one line per (phase, label)).
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "phase,stage,op,kind,c2s_bytes,s2c_bytes,dealer_to_client_bytes,dealer_to_server_bytes,to_dealer_bytes,client_rounds,server_rounds,requests,elements,secs\n",
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:?},{},{},{},{},{},{},{},{},{},{},{},{},{:.6}",
                r.phase,
                r.stage,
                r.op,
                op_kind(&r.op),
                r.c2s,
                r.s2c,
                r.dealer_to_client,
                r.dealer_to_server,
                r.to_dealer,
                r.rounds[0],
                r.rounds[1],
                r.requests,
                r.elements,
                r.secs
            );
        }
        s
    }
}

fn split_label(label: &str) -> (&str, &str) {
    const OPS: &[&str] = &[
        "linear",
        "lookup",
        "matmul",
        "setup_weight",
        "server_vector",
        "trunc",
        "reveal",
        "relu",
        "gelu",
        "softmax",
        "layer_norm",
        "argmax",
    ];
    match label.rsplit_once('/') {
        Some((stage, op)) if OPS.contains(&op) => (stage, op),
        _ if OPS.contains(&label) => ("", label),
        _ => (label, ""),
    }
}
