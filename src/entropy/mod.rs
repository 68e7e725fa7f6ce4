//! Attention entropy: the information-theoretic lens of EGA (Jha & Reagen 2025,
//! "Entropy-Guided Attention for Private LLMs", arXiv 2501.03489, section 3).
//!
//! For head h of layer l with attention probabilities `a_ij` (query i, key j, causal and
//! row-stochastic), the head's entropy is the Shannon entropy of each attention row, in nats,
//! averaged over the T query positions (EGA Eq. 7, after Zhai et al. 2023):
//!
//! ```text
//! E(l,h) = −(1/T) Σ_i Σ_j a_ij log(a_ij + ε),   ε = 1e-9
//! ```
//!
//! averaged again over the sequences analysed. References: `log T` (the paper's E_max) and the
//! causal maximum `(1/T) Σ_{i=1}^{T} log i` (uniform attention over the i visible keys; 3.878
//! for T = 128). The heads are binned relative to the largest observed head entropy Max
//! ([0, Max/4), [Max/4, Max/2), [Max/2, 3Max/4), [3Max/4, Max]; EGA Fig. 2a), and two failure
//! signatures are flagged: *entropic overload* (many heads in the top bin, mostly early layers)
//! and *entropy collapse* (near-zero heads in deep layers); see [`Thresholds`].
//!
//! - [`stats`]: entropies from attention probabilities ([`EntropyAccumulator`], [`EntropyStats`]);
//! - [`analysis`]: bins and flags ([`EntropyAnalysis`]);
//! - [`report()`]: terminal table, `entropy.json`, `entropy.csv`, `heatmap.png`;
//! - [`regularizer`]: the entropy regularization loss of EGA Algorithm 1 and its gradients.
//!
//! See `docs/entropy.md`.

pub mod analysis;
pub mod heatmap;
pub mod regularizer;
mod report;
pub mod stats;

pub use analysis::{EntropyAnalysis, Thresholds, bin_of};
pub use heatmap::{heatmap_size, render_heatmap, write_heatmap_png};
pub use regularizer::{
    AttnShape, Reduction, RegularizerConfig, RegularizerOutput, entropy_regularizer,
    softmax_backward,
};
pub use report::{
    CsvRow, EntropyReport, ReportPaths, parse_csv, report, report_with, table, to_csv,
};
pub use stats::{
    ENTROPY_EPS, EntropyAccumulator, EntropyStats, causal_max_entropy, head_entropies,
    query_entropies,
};

/// Errors of the entropy analysis and the regularizer.
#[derive(Debug, thiserror::Error)]
pub enum EntropyError {
    /// Inputs of the wrong shape or size.
    #[error("shape: {0}")]
    Shape(String),
    /// Writing or reading a report file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding the PNG failed.
    #[error("PNG encoding: {0}")]
    Png(String),
    /// JSON (de)serialization failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A CSV report could not be parsed.
    #[error("CSV line {line}: {what}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
}
