//! Private generation: the client's prompt and the server's weights stay private, the client
//! learns the generated tokens, the server learns their number only.
//!
//! [`client_generate`] and [`server_generate`] run the two halves of one secure generation on a
//! protocol session (channel to the peer, correlations from the dealer through a
//! [`Prefetched`] source):
//!
//! 1. **Setup** (`Phase::Setup`): both parties prepare the weights over [`SecureOps`]: the
//!    server sends each masked weight `W − B` and each LayerNorm gain `γ − B` once (the client
//!    holds the public [`ModelManifest`] only).
//! 2. Per forward pass (the prompt, then one position per generated token through the
//!    secret-shared KV cache: each further token costs one position, not the prompt again):
//!    each party lists the pass's correlation requests with [`PlanEngine`] (local, from public
//!    shapes) and **prefetches** them all (`Phase::Preprocessing`, dealer link only, labelled
//!    by stage; the client also computes its input-independent half of every weight product)
//!    before running the pass's **online** ops (`Phase::Online`). The LM head runs on
//!    the last position only; the argmax is revealed to the client only.
//!
//! The prompt length and the number of tokens are public: the caller agrees on them with the
//! peer before calling (the binaries put them in their query message); both parties must pass
//! the same values. [`CostReport`] gives each party's bytes, messages and rounds per
//! (phase, label) on the peer channel and the dealer link, and wall times per phase.

use std::time::Instant;

use privlm_protocols::beaver::{Prefetched, TripleProvider};
use privlm_protocols::channel::{Channel, Counters, Phase};
use privlm_protocols::session::Session;
use privlm_protocols::share::Party;
use serde::{Deserialize, Serialize};

use super::SecureError;
use super::engine::{LinkStats, SessionEngine};
use super::ops::SecureOps;
use super::plan::PlanEngine;
use crate::model::ModelError;
use crate::model::ops::{
    ForwardOptions, KvCache, ModelManifest, TensorOps, Tokens, forward, prepare_weights,
};
use crate::model::{Model, Weights};

/// One (phase, label) of a [`CostReport`]: this party's counters on the peer channel and on
/// the dealer link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostEntry {
    /// The phase.
    pub phase: Phase,
    /// The label (`layer3/attn/softmax`, `embedding/lookup`, ...).
    pub label: String,
    /// Peer channel (bytes include frame headers; rounds = send flights of this party).
    pub peer: Counters,
    /// Dealer link (zero with the in-process dealer).
    pub dealer: Counters,
}

/// One party's costs of a secure generation (serde: the binaries print it as JSON).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    /// `"client"` or `"server"`.
    pub party: String,
    /// Prompt length.
    pub prompt_len: usize,
    /// Tokens generated.
    pub new_tokens: usize,
    /// Counters per (phase, label), ordered by phase then label.
    pub entries: Vec<CostEntry>,
    /// Wall time of the weight setup (seconds).
    pub setup_seconds: f64,
    /// Wall time spent prefetching correlations (seconds).
    pub preprocessing_seconds: f64,
    /// Wall time of the online ops (seconds): forward passes minus prefetching.
    pub online_seconds: f64,
    /// Wall time of the local planning of the correlation requests (seconds).
    pub planning_seconds: f64,
    /// Online seconds per forward pass (the prompt, then one per further token).
    pub pass_seconds: Vec<f64>,
    /// Online seconds per stage (`embedding`, `layer3/attn`, ..., `head`), summed over the
    /// passes; weight preparation and prefetching excluded.
    pub stage_seconds: Vec<(String, f64)>,
}

impl CostReport {
    /// Sum of the peer-channel and dealer-link counters of one phase (all phases: `None`).
    pub fn total(&self, phase: Option<Phase>) -> (Counters, Counters) {
        let (mut p, mut d) = (Counters::default(), Counters::default());
        for e in self
            .entries
            .iter()
            .filter(|e| phase.is_none_or(|ph| ph == e.phase))
        {
            p.accumulate(&e.peer);
            d.accumulate(&e.dealer);
        }
        (p, d)
    }

    /// Counters summed per phase and per stage: the label's stage part (`layer3/attn`,
    /// `layer3/ffn`, `embedding`, `head`), in label order per phase.
    pub fn by_group(&self) -> Vec<(Phase, String, Counters, Counters)> {
        let mut out: Vec<(Phase, String, Counters, Counters)> = Vec::new();
        for e in &self.entries {
            let parts = if e.label.starts_with("layer") { 2 } else { 1 };
            let g: String = e.label.split('/').take(parts).collect::<Vec<_>>().join("/");
            let g = if g.is_empty() { "(none)".into() } else { g };
            match out.iter_mut().find(|(p, l, _, _)| *p == e.phase && *l == g) {
                Some((_, _, p, d)) => {
                    p.accumulate(&e.peer);
                    d.accumulate(&e.dealer);
                }
                None => out.push((e.phase, g, e.peer, e.dealer)),
            }
        }
        out
    }

    /// A plain-text table: per phase and label group, bytes sent and received on the peer
    /// channel, rounds, and dealer bytes received; then totals and times.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} costs: prompt {} tokens, {} generated\n{:<14} {:<22} {:>14} {:>14} {:>8} {:>14} {:>9}\n",
            self.party,
            self.prompt_len,
            self.new_tokens,
            "phase",
            "label",
            "sent B",
            "received B",
            "rounds",
            "dealer recv B",
            "seconds"
        );
        for (phase, label, p, d) in self.by_group() {
            let secs = match phase {
                Phase::Online => self
                    .stage_seconds
                    .iter()
                    .find(|(l, _)| *l == label)
                    .map_or(String::new(), |(_, t)| format!("{t:.3}")),
                _ => String::new(),
            };
            s.push_str(&format!(
                "{:<14} {:<22} {:>14} {:>14} {:>8} {:>14} {:>9}\n",
                format!("{phase:?}"),
                label,
                p.bytes_sent,
                p.bytes_recv,
                p.rounds,
                d.bytes_recv,
                secs
            ));
        }
        for phase in [Phase::Setup, Phase::Preprocessing, Phase::Online] {
            let (p, d) = self.total(Some(phase));
            s.push_str(&format!(
                "{:<14} {:<22} {:>14} {:>14} {:>8} {:>14}\n",
                format!("{phase:?}"),
                "TOTAL",
                p.bytes_sent,
                p.bytes_recv,
                p.rounds,
                d.bytes_recv
            ));
        }
        s.push_str(&format!(
            "seconds: setup {:.3}, preprocessing {:.3}, online {:.3}, planning {:.3}\n",
            self.setup_seconds,
            self.preprocessing_seconds,
            self.online_seconds,
            self.planning_seconds
        ));
        s
    }
}

/// What [`client_generate`] returns.
pub struct ClientOutput<C, K> {
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// The client's costs.
    pub report: CostReport,
    /// The session, given back (for example to close its channels).
    pub session: Session<C, Prefetched<K>>,
}

/// What [`server_generate`] returns.
pub struct ServerOutput<C, K> {
    /// The server's costs.
    pub report: CostReport,
    /// The session, given back.
    pub session: Session<C, Prefetched<K>>,
}

/// The client's half of a private generation (P0; see the module docs): `prompt` (its token
/// ids, secret) and `max_new_tokens` new tokens greedily (argmax), `on_token` called with each
/// as soon as it is known. `manifest` is the public description of the server's model (from
/// the handshake). The server must call [`server_generate`] with `prompt.len()` and the same
/// `max_new_tokens`. Errors: invalid arguments (refused before anything is sent), or any
/// protocol failure (the peer gets the reason too).
pub async fn client_generate<C, K>(
    session: Session<C, Prefetched<K>>,
    manifest: &ModelManifest,
    prompt: &[u32],
    max_new_tokens: usize,
    on_token: &mut (dyn FnMut(u32) + Send),
) -> Result<ClientOutput<C, K>, SecureError>
where
    C: Channel,
    K: TripleProvider + LinkStats,
{
    if session.party() != Party::P0 {
        return Err(SecureError::bad(
            "client_generate",
            "the client's session is P0's",
        ));
    }
    let (tokens, report, session) = run(
        session,
        manifest,
        None,
        Tokens::Ids(prompt),
        max_new_tokens,
        on_token,
    )
    .await?;
    Ok(ClientOutput {
        tokens,
        report,
        session,
    })
}

/// The server's half of a private generation (P1; see the module docs) with `model` (its
/// weights, secret), for a prompt of `prompt_len` tokens and `max_new_tokens` new tokens (both
/// public, agreed with the client). The server learns nothing of the prompt or the tokens.
pub async fn server_generate<C, K>(
    session: Session<C, Prefetched<K>>,
    model: &Model,
    prompt_len: usize,
    max_new_tokens: usize,
) -> Result<ServerOutput<C, K>, SecureError>
where
    C: Channel,
    K: TripleProvider + LinkStats,
{
    if session.party() != Party::P1 {
        return Err(SecureError::bad(
            "server_generate",
            "the server's session is P1's",
        ));
    }
    let (_, report, session) = run(
        session,
        &model.manifest(),
        Some(model.weights()),
        Tokens::Hidden(prompt_len),
        max_new_tokens,
        &mut |_| {},
    )
    .await?;
    Ok(ServerOutput { report, session })
}

/// Both halves: setup, then per forward pass plan, prefetch per stage, online.
async fn run<C, K>(
    session: Session<C, Prefetched<K>>,
    manifest: &ModelManifest,
    weights: Option<&Weights>,
    prompt: Tokens<'_>,
    max_new: usize,
    on_token: &mut (dyn FnMut(u32) + Send),
) -> Result<(Vec<u32>, CostReport, Session<C, Prefetched<K>>), SecureError>
where
    C: Channel,
    K: TripleProvider + LinkStats,
{
    manifest.validate()?;
    let cfg = &manifest.config;
    crate::model::ops::check_tokens(cfg, prompt, 0)?;
    if prompt.len() + max_new > cfg.n_ctx {
        return Err(ModelError::ContextTooLong {
            len: prompt.len() + max_new,
            limit: cfg.n_ctx,
        }
        .into());
    }
    let party = session.party();
    let params = *session.params();
    let mut ops = SecureOps::new(SessionEngine::new(session), manifest)?;
    let w = prepare_weights(&mut ops, manifest, weights).await?;
    ops.reset_stage_times();

    // The planner: the same forward over a recording engine, as the client with placeholder ids.
    let t_plan = Instant::now();
    let mut planner = SecureOps::new(PlanEngine::new(params), manifest)?;
    let pw = prepare_weights(&mut planner, manifest, None).await?;
    let mut planning = t_plan.elapsed();
    let mut plan_cache = KvCache::new(cfg.n_layer);

    let mut cache = KvCache::new(cfg.n_layer);
    let opts = ForwardOptions {
        attention: false,
        last_only: true,
    };
    let mut out = Vec::with_capacity(max_new);
    let mut pass_seconds = Vec::with_capacity(max_new);
    let mut online = 0f64;
    let mut last: Option<u32> = None;
    for step in 0..max_new {
        let one;
        let input = match (step, last) {
            (0, _) => prompt,
            (_, Some(t)) => {
                one = [t];
                Tokens::Ids(&one)
            }
            (_, None) => Tokens::Hidden(1),
        };
        // Plan this pass's correlations.
        let t = Instant::now();
        let dummy = vec![0u32; input.len()];
        planner.engine_mut().clear();
        let po = forward(
            &mut planner,
            cfg,
            &pw,
            Tokens::Ids(&dummy),
            &mut plan_cache,
            opts,
        )
        .await?;
        planner.argmax(&po.logits).await?;
        ops.set_plan(planner.engine().plan());
        planning += t.elapsed();
        // Preprocessing of the whole pass, before its online phase.
        ops.prefetch_plan().await?;

        // Run it.
        let t = Instant::now();
        let pre0 = ops.times().preprocessing;
        let o = forward(&mut ops, cfg, &w, input, &mut cache, opts).await?;
        let tok = ops.argmax(&o.logits).await?;
        ops.end_stage();
        let secs = (t.elapsed() - (ops.times().preprocessing - pre0)).as_secs_f64();
        online += secs;
        pass_seconds.push(secs);
        last = match (party, tok.and_then(|v| v.last().copied())) {
            (Party::P0, Some(t)) => {
                on_token(t);
                out.push(t);
                Some(t)
            }
            (Party::P0, None) => {
                return Err(SecureError::bad(
                    "argmax",
                    "the client did not learn the token",
                ));
            }
            (Party::P1, _) => None,
        };
    }
    let times = ops.times();
    let ops_stage_seconds: Vec<(String, f64)> = ops
        .stage_times()
        .iter()
        .map(|(l, d)| (l.clone(), d.as_secs_f64()))
        .collect();
    let session = ops.into_engine().into_session();
    let report = CostReport {
        party: match party {
            Party::P0 => "client".into(),
            Party::P1 => "server".into(),
        },
        prompt_len: prompt.len(),
        new_tokens: max_new,
        entries: entries(&session),
        setup_seconds: times.setup.as_secs_f64(),
        preprocessing_seconds: times.preprocessing.as_secs_f64(),
        online_seconds: online,
        planning_seconds: planning.as_secs_f64(),
        pass_seconds,
        stage_seconds: ops_stage_seconds,
    };
    Ok((out, report, session))
}

/// The session's counters, peer channel and dealer link merged per (phase, label).
pub fn entries<C: Channel, K: TripleProvider + LinkStats>(
    session: &Session<C, Prefetched<K>>,
) -> Vec<CostEntry> {
    let mut m: std::collections::BTreeMap<(Phase, String), CostEntry> = Default::default();
    for (p, l, c) in session.channel().stats().entries() {
        let e = m.entry((p, l.to_string())).or_insert_with(|| CostEntry {
            phase: p,
            label: l.to_string(),
            peer: Counters::default(),
            dealer: Counters::default(),
        });
        e.peer.accumulate(c);
    }
    if let Some(st) = session.correlations().link_stats() {
        for (p, l, c) in st.entries() {
            let e = m.entry((p, l.to_string())).or_insert_with(|| CostEntry {
                phase: p,
                label: l.to_string(),
                peer: Counters::default(),
                dealer: Counters::default(),
            });
            e.dealer.accumulate(c);
        }
    }
    m.into_values().collect()
}
