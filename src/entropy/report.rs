//! Entropy reports: terminal table, JSON, CSV and the heatmap, written together by [`report`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{EntropyAnalysis, EntropyError, EntropyStats, Thresholds, write_heatmap_png};

/// Everything `entropy.json` holds: the measured entropies and their analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyReport {
    /// The head entropies.
    pub stats: EntropyStats,
    /// Bins and flags.
    pub analysis: EntropyAnalysis,
}

impl EntropyReport {
    /// Analyses `stats` with the default thresholds.
    pub fn new(stats: EntropyStats) -> Self {
        let analysis = EntropyAnalysis::new(&stats, Thresholds::default());
        EntropyReport { stats, analysis }
    }
}

/// The files [`report`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// `entropy.json`.
    pub json: PathBuf,
    /// `entropy.csv`.
    pub csv: PathBuf,
    /// `heatmap.png`.
    pub png: PathBuf,
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), EntropyError> {
    std::fs::write(path, data).map_err(|source| EntropyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `entropy.json`, `entropy.csv` and `heatmap.png` for `stats` into `out_dir`
/// (created if missing), with the default thresholds, and returns the report (print
/// [`table`] of it on the terminal) and the paths.
pub fn report(
    stats: &EntropyStats,
    out_dir: &Path,
) -> Result<(EntropyReport, ReportPaths), EntropyError> {
    report_with(stats, Thresholds::default(), out_dir)
}

/// [`report`] with explicit flag thresholds.
pub fn report_with(
    stats: &EntropyStats,
    thresholds: Thresholds,
    out_dir: &Path,
) -> Result<(EntropyReport, ReportPaths), EntropyError> {
    std::fs::create_dir_all(out_dir).map_err(|source| EntropyError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let rep = EntropyReport {
        stats: stats.clone(),
        analysis: EntropyAnalysis::new(stats, thresholds),
    };
    let paths = ReportPaths {
        json: out_dir.join("entropy.json"),
        csv: out_dir.join("entropy.csv"),
        png: out_dir.join("heatmap.png"),
    };
    let mut json = serde_json::to_string_pretty(&rep)?;
    json.push('\n');
    write_file(&paths.json, json.as_bytes())?;
    write_file(&paths.csv, to_csv(&rep).as_bytes())?;
    write_heatmap_png(&rep, &paths.png)?;
    Ok((rep, paths))
}

/// ε makes a one-hot head's entropy about −1e-9; print it as 0.00, not −0.00.
pub(crate) fn no_neg_zero(v: f64) -> f64 {
    if v < 0.0 && v > -0.005 { 0.0 } else { v }
}

fn layer_list(ls: &[usize]) -> String {
    ls.iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A human-readable table: one row per layer (head entropies, mean, bin counts), then the
/// references, the histogram and the flags.
pub fn table(rep: &EntropyReport) -> String {
    let (s, a) = (&rep.stats, &rep.analysis);
    let mut out = String::new();
    let t_desc = match (s.seq_lens.iter().min(), s.seq_lens.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("T = {lo}"),
        (Some(lo), Some(hi)) => format!("T = {lo}..{hi}"),
        _ => "no sequence".to_string(),
    };
    let _ = writeln!(
        out,
        "Attention entropy per head (nats), mean over {} sequence(s), {t_desc}",
        s.seq_lens.len()
    );
    let _ = writeln!(
        out,
        "log T = {:.3}   causal max (1/T) sum log i = {:.3}   max observed = {:.3}   mean = {:.3}",
        a.log_t, a.causal_max, a.max_entropy, a.mean_entropy
    );
    let _ = write!(out, "layer |");
    for h in 0..s.heads {
        let _ = write!(out, " {:>5}", format!("h{h}"));
    }
    let _ = writeln!(out, " |  mean | bins 1/4 1/2 3/4 top");
    for l in 0..s.layers {
        let _ = write!(out, "{l:>5} |");
        for &v in s.layer(l) {
            let _ = write!(out, " {:>5.2}", no_neg_zero(v));
        }
        let c = a.layer_bin_counts[l];
        let _ = writeln!(
            out,
            " | {:>5.2} |      {:>3} {:>3} {:>3} {:>3}",
            no_neg_zero(a.layer_means[l]),
            c[0],
            c[1],
            c[2],
            c[3]
        );
    }
    let e = a.bin_edges;
    let f = a.bin_fractions;
    let _ = writeln!(
        out,
        "heads by entropy relative to Max = {:.3}: [0,{:.2}) {:.1}%  [{:.2},{:.2}) {:.1}%  [{:.2},{:.2}) {:.1}%  [{:.2},{:.2}] {:.1}%",
        e[4],
        e[1],
        100.0 * f[0],
        e[1],
        e[2],
        100.0 * f[1],
        e[2],
        e[3],
        100.0 * f[2],
        e[3],
        e[4],
        100.0 * f[3]
    );
    let th = a.thresholds;
    let _ = writeln!(
        out,
        "entropic overload: {}  ({:.1}% of heads in the top bin, threshold {:.0}%; {:.0}% of them in the first half of the layers; layers mostly in the top bin: [{}])",
        if a.overload { "YES" } else { "no" },
        100.0 * f[3],
        100.0 * th.overload_top_fraction,
        100.0 * a.overload_early_share,
        layer_list(&a.overload_layers)
    );
    let _ = writeln!(
        out,
        "entropy collapse:  {}  (deep layers with >= {:.0}% of heads below {:.3} nats = {:.0}% of log T: [{}]; {} collapsed head(s) in all)",
        if a.collapse { "YES" } else { "no" },
        100.0 * th.collapse_layer_fraction,
        a.collapse_threshold,
        100.0 * th.collapse_fraction_of_log_t,
        layer_list(&a.collapse_layers),
        a.collapsed_heads.len()
    );
    let nans: u64 = s.nan_counts.iter().sum();
    if nans > 0 {
        let _ = writeln!(
            out,
            "warning: {nans} NaN attention probabilities were skipped (per layer: {:?})",
            s.nan_counts
        );
    }
    out
}

/// One row of `entropy.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvRow {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// Head entropy (nats).
    pub entropy: f64,
    /// Bin 0..4 relative to Max.
    pub bin: u8,
    /// Whether the head is below the collapse threshold.
    pub collapsed: bool,
}

const CSV_HEADER: &str = "layer,head,entropy_nats,bin,collapsed";

/// `entropy.csv`: a header then one row per head (`layer,head,entropy_nats,bin,collapsed`);
/// entropies are written with full round-trip precision.
pub fn to_csv(rep: &EntropyReport) -> String {
    let (s, a) = (&rep.stats, &rep.analysis);
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for l in 0..s.layers {
        for h in 0..s.heads {
            let i = l * s.heads + h;
            let _ = writeln!(
                out,
                "{l},{h},{},{},{}",
                s.entropy[i],
                a.head_bins[i],
                u8::from(s.entropy[i] < a.collapse_threshold)
            );
        }
    }
    out
}

/// Parses a CSV written by [`to_csv`].
pub fn parse_csv(text: &str) -> Result<Vec<CsvRow>, EntropyError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => {}
        _ => {
            return Err(EntropyError::Csv {
                line: 1,
                what: format!("expected header {CSV_HEADER:?}"),
            });
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| EntropyError::Csv {
            line: line_no,
            what: what.to_string(),
        };
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            return Err(bad(&format!("{} fields, expected 5", f.len())));
        }
        rows.push(CsvRow {
            layer: f[0].parse().map_err(|_| bad("layer"))?,
            head: f[1].parse().map_err(|_| bad("head"))?,
            entropy: f[2].parse().map_err(|_| bad("entropy_nats"))?,
            bin: f[3]
                .parse()
                .ok()
                .filter(|&b: &u8| b < 4)
                .ok_or_else(|| bad("bin"))?,
            collapsed: match f[4] {
                "0" => false,
                "1" => true,
                _ => return Err(bad("collapsed must be 0 or 1")),
            },
        });
    }
    Ok(rows)
}
