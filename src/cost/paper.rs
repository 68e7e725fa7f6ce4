//! The paper's tables reproduced with privlm's protocols (`docs/results.md`).
//!
//! Jha & Reagen's tables (EGA Tables 3, 7, 8 and AERO Tables 4, 5, 7; transcribed in
//! `shared/reference/paper.md` section 4) give, per architecture, the communication and the WAN
//! latency (100 Mbps, 80 ms) of one output token from a T-token prompt in BumbleBee
//! (SecretFlow-SPU). [`reproduce`] counts the same workloads over privlm's protocols: the
//! secure generation's flow over `SecureOps<CountEngine>` ([`super::count_generation`]).

use std::fmt::Write as _;

use privlm_protocols::channel::Phase;
use privlm_protocols::nonlinear::{Count, Mask, NlParams};
use serde::Serialize;

use super::calib::Calibration;
use super::net::NetProfile;
use super::table::{CostTable, Workload, count_generation, op_kind, placeholder_manifest};
use crate::model::config::{Architecture, ModelConfig, TemperatureForm};
use crate::secure::SecureError;

/// The architectures of the paper's rows, in order.
pub const PAPER_ARCHS: &[&str] = &[
    "SM+LN+G",
    "SM+LN+R",
    "SM+ScFFN",
    "SM+ScFuFFN",
    "EReg(SM(t)+ScFuFFN)",
];

/// One of the paper's settings and its BumbleBee figures (GB, minutes) per row of
/// [`PAPER_ARCHS`].
#[derive(Clone, Debug, Serialize)]
pub struct Setting {
    /// Title, e.g. `GPT-2, L = 12, T = 128 (EGA Table 3, AERO Table 4)`.
    pub title: &'static str,
    /// Layers.
    pub layers: usize,
    /// Prompt length T.
    pub prompt: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// The paper's (communication GB, latency minutes) per architecture.
    pub paper: [(f64, f64); 5],
}

/// The four settings of the issue.
pub fn settings() -> Vec<Setting> {
    vec![
        Setting {
            title: "GPT-2, L = 12, T = 128 (EGA Table 3 / AERO Table 4)",
            layers: 12,
            prompt: 128,
            vocab: 50257,
            paper: [
                (25.32, 8.21),
                (9.44, 6.06),
                (6.95, 5.68),
                (6.43, 4.76),
                (6.43, 4.76),
            ],
        },
        Setting {
            title: "GPT-2, L = 12, T = 256 (EGA Table 7 / AERO Table 5)",
            layers: 12,
            prompt: 256,
            vocab: 50257,
            paper: [
                (58.51, 16.57),
                (26.73, 12.59),
                (21.77, 11.91),
                (20.72, 10.45),
                (20.72, 10.45),
            ],
        },
        Setting {
            title: "GPT-2, L = 18, T = 128 (EGA Table 8 / AERO L = 18 table)",
            layers: 18,
            prompt: 128,
            vocab: 50257,
            paper: [
                (37.17, 10.77),
                (13.34, 8.04),
                (9.62, 7.23),
                (8.83, 6.07),
                (8.83, 6.07),
            ],
        },
        Setting {
            title: "GPT-2, L = 12, T = 512, vocabulary 16384 (EGA Table 4 / AERO Table 7)",
            layers: 12,
            prompt: 512,
            vocab: 16384,
            paper: [
                (145.24, 30.74),
                (81.71, 23.54),
                (71.76, 21.51),
                (69.68, 19.44),
                (69.68, 19.44),
            ],
        },
    ]
}

/// The workload of one row: GPT-2's shape with `layers`, vocabulary `vocab`, a prompt of
/// `prompt` tokens and one output token. Architectures with LayerNorm in their blocks keep
/// GPT-2's final LayerNorm; the softmax-only ones have none (the paper's networks remove every
/// LayerNorm).
pub fn workload(arch: &str, layers: usize, prompt: usize, vocab: usize) -> Workload {
    let a: Architecture = arch.parse().expect("a known architecture");
    let mut config = ModelConfig::gpt2_small(a, prompt + 1);
    config.n_layer = layers;
    config.vocab_size = vocab;
    config.final_layer_norm = a.block_layer_norm;
    config.temperature_form = TemperatureForm::PerHeadQuery;
    Workload {
        config,
        prompt_len: prompt,
        new_tokens: 1,
        kv_cache: true,
    }
}

/// Counts one workload and builds its table on `profile`.
pub fn table(
    w: Workload,
    calib: &Calibration,
    profile: &NetProfile,
) -> Result<CostTable, SecureError> {
    let manifest = placeholder_manifest(&w.config);
    let e = count_generation(&w, &manifest, NlParams::default(), calib.clone())?;
    Ok(CostTable::build(w, &e, profile.clone()))
}

/// One reproduced row.
#[derive(Clone, Debug, Serialize)]
pub struct ResultRow {
    /// Architecture.
    pub arch: String,
    /// Client-server GB per query (preprocessing + online).
    pub comm_gb: f64,
    /// Dealer GB per query.
    pub dealer_gb: f64,
    /// One-time setup GB (`W − B`).
    pub setup_gb: f64,
    /// Projected online WAN latency, minutes.
    pub latency_min: f64,
    /// Projected dealer prefetch, minutes (a link like the WAN's to the dealer).
    pub prefetch_min: f64,
    /// The op kind with the most bytes, and its share.
    pub dominant: (String, f64),
    /// The paper's (GB, minutes).
    pub paper: (f64, f64),
}

/// One reproduced setting.
#[derive(Clone, Debug, Serialize)]
pub struct ResultTable {
    /// The setting.
    pub setting: Setting,
    /// Rows per [`PAPER_ARCHS`].
    pub rows: Vec<ResultRow>,
}

/// Reproduces every setting on the WAN with `calib`; `progress` is told each row.
pub fn reproduce(
    calib: &Calibration,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<ResultTable>, Vec<CostTable>), SecureError> {
    let wan = NetProfile::wan();
    let mut out = Vec::new();
    let mut first = Vec::new();
    for (si, s) in settings().into_iter().enumerate() {
        let mut rows = Vec::new();
        for (i, arch) in PAPER_ARCHS.iter().enumerate() {
            progress(&format!("{} / {arch}", s.title));
            let t = table(workload(arch, s.layers, s.prompt, s.vocab), calib, &wan)?;
            rows.push(ResultRow {
                arch: arch.to_string(),
                comm_gb: t.query_bytes() as f64 / 1e9,
                dealer_gb: t.dealer_bytes() as f64 / 1e9,
                setup_gb: t.total(Phase::Setup).peer_bytes() as f64 / 1e9,
                latency_min: t.latency.online / 60.0,
                prefetch_min: t.latency.preprocessing / 60.0,
                dominant: t.dominant_op(),
                paper: s.paper[i],
            });
            if si == 0 {
                first.push(t);
            }
        }
        out.push(ResultTable { setting: s, rows });
    }
    Ok((out, first))
}

/// The tables as Markdown.
pub fn markdown(tables: &[ResultTable]) -> String {
    let mut s = String::new();
    for t in tables {
        let _ = writeln!(s, "### {}\n", t.setting.title);
        let _ = writeln!(
            s,
            "| network | privlm GB | saving | WAN min | saving | dominant op (share of bytes) | dealer GB | prefetch min | setup GB (once) | BumbleBee GB | saving | BumbleBee min | saving |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let base = &t.rows[0];
        for r in &t.rows {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.2}x | {:.2} | {:.2}x | {} ({:.0} %) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x | {:.2} | {:.2}x |",
                r.arch,
                r.comm_gb,
                base.comm_gb / r.comm_gb,
                r.latency_min,
                base.latency_min / r.latency_min,
                r.dominant.0,
                100.0 * r.dominant.1,
                r.dealer_gb,
                r.prefetch_min,
                r.setup_gb,
                r.paper.0,
                base.paper.0 / r.paper.0,
                r.paper.1,
                base.paper.1 / r.paper.1,
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// Per-op costs at the paper's shapes (T = 128, d = 768, 12 heads), from the count backend:
/// Markdown rows of (op, shape, bytes per element c→s + s→c, dealer bytes per element, rounds,
/// one-way delays) beside the peers' bytes per element (`shared/reference/anchors.md`).
pub fn per_op_markdown() -> String {
    let p = NlParams::default();
    let mut s = String::from(
        "| op, shape | privlm B/elem (c→s + s→c) | dealer B/elem | rounds (P0 / P1) | one-way delays | SPU CHEETAH B/elem | CrypTen B/elem (online + dealer) |\n|---|---|---|---|---|---|---|\n",
    );
    type OpFn = Box<dyn Fn(&mut Count)>;
    let ops: Vec<(&str, usize, OpFn, &str, &str)> = vec![
        (
            "ReLU 128×3072",
            128 * 3072,
            Box::new(|c| c.relu(128 * 3072).unwrap()),
            "101",
            "464 + 120",
        ),
        (
            "GELU 128×3072",
            128 * 3072,
            Box::new(|c| c.gelu(128 * 3072).unwrap()),
            "2796 (tanh), 1439 (piecewise)",
            "784 + 240 (x·σ(1.702x))",
        ),
        (
            "softmax 12×128×128 causal (per full-matrix element)",
            12 * 128 * 128,
            Box::new(|c| c.softmax(&[12, 128, 128], Mask::Causal, None).unwrap()),
            "1498",
            "1488 + 424",
        ),
        (
            "LayerNorm 128×768",
            128 * 768,
            Box::new(|c| c.layer_norm(128, 768, 0).unwrap()),
            "666",
            "65 + 31",
        ),
        (
            "argmax over 50257",
            50257,
            Box::new(|c| c.argmax(50257, privlm_protocols::share::Party::P0).unwrap()),
            "-",
            "-",
        ),
    ];
    for (name, n, f, spu, crypten) in ops {
        let mut c = Count::with_defaults(p);
        f(&mut c);
        let t = c.total();
        let (a, b) = (t.parties[0].peer.bytes_sent, t.parties[1].peer.bytes_sent);
        let d = t.parties[0].dealer.bytes_recv + t.parties[1].dealer.bytes_recv;
        let nf = n as f64;
        let _ = writeln!(
            s,
            "| {name} | **{:.1}** ({:.1} + {:.1}) | {:.1} | {} / {} | {} | {spu} | {crypten} |",
            (a + b) as f64 / nf,
            a as f64 / nf,
            b as f64 / nf,
            d as f64 / nf,
            t.parties[0].peer.rounds,
            t.parties[1].peer.rounds,
            c.delays(),
        );
    }
    s
}

/// Per layer of one table, bytes (preprocessing + online, client-server) by op kind: the
/// layers in order (`embedding`, `layer0`, ..., `head`) with (kind, bytes) pairs.
pub fn layer_kinds(t: &CostTable) -> Vec<(String, Vec<(String, u64)>)> {
    let mut layers: Vec<(String, Vec<(String, u64)>)> = Vec::new();
    for r in t.rows.iter().filter(|r| r.phase != Phase::Setup) {
        let l = r.layer().to_string();
        let k = op_kind(&r.op).to_string();
        let idx = match layers.iter().position(|(x, _)| *x == l) {
            Some(i) => i,
            None => {
                layers.push((l, Vec::new()));
                layers.len() - 1
            }
        };
        let kinds = &mut layers[idx].1;
        match kinds.iter_mut().find(|(x, _)| *x == k) {
            Some((_, b)) => *b += r.peer_bytes(),
            None => kinds.push((k, r.peer_bytes())),
        }
    }
    layers.sort_by_key(|(l, _)| layer_order(l));
    layers
}

/// Sort key of a layer name: embedding first, then layers by number, then the head.
pub fn layer_order(l: &str) -> (u8, usize) {
    match l {
        "embedding" => (0, 0),
        "head" => (2, 0),
        _ => (
            1,
            l.trim_start_matches("layer").parse().unwrap_or(usize::MAX),
        ),
    }
}
