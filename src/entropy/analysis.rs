//! The max-relative head histogram (EGA Fig. 2a) and the two failure signatures.

use serde::{Deserialize, Serialize};

use super::EntropyStats;

/// Thresholds for the entropic-overload and entropy-collapse flags. The paper describes both
/// signatures only qualitatively; these defaults separate the paper's baselines (SM+LN+G,
/// SM+LN+R, SM+LN: 3-8% of heads in the top bin, no deep head below 0.6 nats) from its failing
/// models (SM+G 58%, SM+R 23-24%, SM 45% in the top bin; SM's layers 8-11 at 0.04-0.5 nats).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Overload when at least this fraction of all heads is in the top bin [3Max/4, Max].
    pub overload_top_fraction: f64,
    /// ... and Max is at least this fraction of the causal maximum (bins relative to a tiny
    /// Max say nothing about overload).
    pub overload_min_max_ratio: f64,
    /// A layer is listed as overloaded when at least this fraction of its heads is in the top bin.
    pub overload_layer_fraction: f64,
    /// A head is collapsed when its entropy is below this fraction of log T.
    pub collapse_fraction_of_log_t: f64,
    /// Collapse when some layer in the deep half (layer >= L/2) has at least this fraction of
    /// its heads collapsed.
    pub collapse_layer_fraction: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            overload_top_fraction: 0.20,
            overload_min_max_ratio: 0.5,
            overload_layer_fraction: 0.5,
            collapse_fraction_of_log_t: 0.10,
            collapse_layer_fraction: 0.5,
        }
    }
}

/// Bin index (0..4) of an entropy value relative to the maximum observed `max`:
/// [0, Max/4) -> 0, [Max/4, Max/2) -> 1, [Max/2, 3Max/4) -> 2, [3Max/4, Max] -> 3.
pub fn bin_of(value: f64, max: f64) -> usize {
    if max.is_nan() || max <= 0.0 || value < max / 4.0 {
        0
    } else if value < max / 2.0 {
        1
    } else if value < 3.0 * max / 4.0 {
        2
    } else {
        3
    }
}

/// The histogram and flags for one [`EntropyStats`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyAnalysis {
    /// Largest head entropy observed (Max of the bins).
    pub max_entropy: f64,
    /// Smallest head entropy observed.
    pub min_entropy: f64,
    /// Mean over all heads.
    pub mean_entropy: f64,
    /// Mean entropy of each layer.
    pub layer_means: Vec<f64>,
    /// log T (the paper's E_max).
    pub log_t: f64,
    /// (1/T) Σ_{i=1}^{T} log i, the causal maximum.
    pub causal_max: f64,
    /// Bin edges [0, Max/4, Max/2, 3Max/4, Max].
    pub bin_edges: [f64; 5],
    /// Heads per bin over the whole model.
    pub bin_counts: [usize; 4],
    /// Fraction of heads per bin (sums to 1).
    pub bin_fractions: [f64; 4],
    /// Heads per bin in each layer.
    pub layer_bin_counts: Vec<[usize; 4]>,
    /// Bin of each head, row-major `[layers, heads]`.
    pub head_bins: Vec<u8>,
    /// Entropic overload: a disproportionate fraction of heads in the top bin.
    pub overload: bool,
    /// Layers with at least `overload_layer_fraction` of their heads in the top bin.
    pub overload_layers: Vec<usize>,
    /// Fraction of the top-bin heads that sit in the first half of the layers (layer < L/2).
    pub overload_early_share: f64,
    /// Entropy collapse: near-zero heads in deep layers.
    pub collapse: bool,
    /// Deep layers with at least `collapse_layer_fraction` of their heads collapsed.
    pub collapse_layers: Vec<usize>,
    /// Entropy below which a head counts as collapsed (nats).
    pub collapse_threshold: f64,
    /// Every collapsed head as (layer, head), in any layer.
    pub collapsed_heads: Vec<(usize, usize)>,
    /// The thresholds used.
    pub thresholds: Thresholds,
}

impl EntropyAnalysis {
    /// Analyses `stats` with the given thresholds.
    pub fn new(stats: &EntropyStats, th: Thresholds) -> Self {
        let (l_n, h_n) = (stats.layers, stats.heads);
        let n = stats.entropy.len();
        let max = stats
            .entropy
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let max = if max.is_finite() { max } else { 0.0 };
        let min = stats.entropy.iter().copied().fold(f64::INFINITY, f64::min);
        let min = if min.is_finite() { min } else { 0.0 };
        let mean = if n == 0 {
            0.0
        } else {
            stats.entropy.iter().sum::<f64>() / n as f64
        };
        let layer_means = (0..l_n)
            .map(|l| stats.layer(l).iter().sum::<f64>() / h_n as f64)
            .collect();
        let head_bins: Vec<u8> = stats
            .entropy
            .iter()
            .map(|&v| bin_of(v, max) as u8)
            .collect();
        let mut bin_counts = [0usize; 4];
        let mut layer_bin_counts = vec![[0usize; 4]; l_n];
        for (i, &b) in head_bins.iter().enumerate() {
            bin_counts[b as usize] += 1;
            layer_bin_counts[i / h_n][b as usize] += 1;
        }
        let frac = |c: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        let bin_fractions = bin_counts.map(frac);

        let log_t = stats.log_t();
        let causal_max = stats.causal_max();
        let overload_layers: Vec<usize> = (0..l_n)
            .filter(|&l| layer_bin_counts[l][3] as f64 >= th.overload_layer_fraction * h_n as f64)
            .collect();
        let early_top: usize = layer_bin_counts[..l_n / 2].iter().map(|c| c[3]).sum();
        let overload_early_share = if bin_counts[3] == 0 {
            0.0
        } else {
            early_top as f64 / bin_counts[3] as f64
        };
        let overload = n > 0
            && bin_fractions[3] >= th.overload_top_fraction
            && max >= th.overload_min_max_ratio * causal_max;

        let collapse_threshold = th.collapse_fraction_of_log_t * log_t;
        let collapsed_heads: Vec<(usize, usize)> = (0..n)
            .filter(|&i| stats.entropy[i] < collapse_threshold)
            .map(|i| (i / h_n, i % h_n))
            .collect();
        let collapse_layers: Vec<usize> = (l_n / 2..l_n)
            .filter(|&l| {
                let c = stats
                    .layer(l)
                    .iter()
                    .filter(|&&v| v < collapse_threshold)
                    .count();
                c as f64 >= th.collapse_layer_fraction * h_n as f64
            })
            .collect();
        let collapse = !collapse_layers.is_empty();

        EntropyAnalysis {
            max_entropy: max,
            min_entropy: min,
            mean_entropy: mean,
            layer_means,
            log_t,
            causal_max,
            bin_edges: [0.0, max / 4.0, max / 2.0, 3.0 * max / 4.0, max],
            bin_counts,
            bin_fractions,
            layer_bin_counts,
            head_bins,
            overload,
            overload_layers,
            overload_early_share,
            collapse,
            collapse_layers,
            collapse_threshold,
            collapsed_heads,
            thresholds: th,
        }
    }
}
