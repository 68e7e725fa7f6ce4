//! Per-head attention entropy, averaged over query positions (EGA Eq. 7).

use serde::{Deserialize, Serialize};

use super::EntropyError;

/// The ε inside `log(a + ε)`: the value of the authors' regularizer code (1e-9). With it a
/// zero probability contributes exactly 0, and the sum stays finite.
pub const ENTROPY_EPS: f64 = 1e-9;

/// Checks that `probs` has `heads * t * t` elements.
pub(crate) fn check_shape(probs: &[f32], heads: usize, t: usize) -> Result<(), EntropyError> {
    let want = heads.checked_mul(t).and_then(|x| x.checked_mul(t));
    if t == 0 || heads == 0 || want != Some(probs.len()) {
        return Err(EntropyError::Shape(format!(
            "attention probabilities have {} elements, expected heads x T x T = {heads} x {t} x {t}",
            probs.len()
        )));
    }
    Ok(())
}

/// Entropy of one attention row, `-Σ_j a_j log(a_j + ε)` in nats. NaN entries are skipped
/// (`nansum` semantics, as in the authors' code); the number skipped is added to `nans`.
pub fn row_entropy(row: &[f32], nans: &mut u64) -> f64 {
    let mut s = 0.0f64;
    for &a in row {
        if a.is_nan() {
            *nans += 1;
            continue;
        }
        let a = f64::from(a);
        s -= a * (a + ENTROPY_EPS).ln();
    }
    s
}

/// Per-query entropies `H_i = -Σ_j a_ij log(a_ij + ε)` for one layer: `probs` is row-major
/// `[heads, T, T]` (query-major rows); the result is `[heads, T]`.
pub fn query_entropies(probs: &[f32], heads: usize, t: usize) -> Result<Vec<f64>, EntropyError> {
    check_shape(probs, heads, t)?;
    let mut nans = 0;
    Ok(probs
        .chunks_exact(t)
        .map(|row| row_entropy(row, &mut nans))
        .collect())
}

/// Per-head entropy averaged over queries for one layer (EGA Eq. 7):
/// `E^(h) = -(1/T) Σ_i Σ_j a_ij log(a_ij + ε)`, natural log, ε = [`ENTROPY_EPS`].
/// `probs` is row-major `[heads, T, T]`. Returns `([heads] entropies, NaN entries skipped)`.
pub fn head_entropies(
    probs: &[f32],
    heads: usize,
    t: usize,
) -> Result<(Vec<f64>, u64), EntropyError> {
    check_shape(probs, heads, t)?;
    let mut nans = 0;
    let e = probs
        .chunks_exact(t * t)
        .map(|head| {
            head.chunks_exact(t)
                .map(|row| row_entropy(row, &mut nans))
                .sum::<f64>()
                / t as f64
        })
        .collect();
    Ok((e, nans))
}

/// `(1/T) Σ_{i=1}^{T} log i`: the head entropy of uniform causal attention (query i attends
/// uniformly to its i keys), the largest value a causal head can reach.
pub fn causal_max_entropy(t: usize) -> f64 {
    if t == 0 {
        return 0.0;
    }
    (1..=t).map(|i| (i as f64).ln()).sum::<f64>() / t as f64
}

/// Head entropies of a model on one or more sequences: the mean over sequences of each
/// head's query-averaged entropy, plus the facts needed to interpret them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyStats {
    /// Number of layers L.
    pub layers: usize,
    /// Number of heads per layer H.
    pub heads: usize,
    /// Length T of each sequence that was averaged.
    pub seq_lens: Vec<usize>,
    /// Head entropies in nats, row-major `[layers, heads]`.
    pub entropy: Vec<f64>,
    /// NaN attention probabilities skipped per layer (a training-collapse symptom).
    pub nan_counts: Vec<u64>,
    /// The ε used inside the logarithm.
    pub eps: f64,
}

impl EntropyStats {
    /// Stats from known head entropies (e.g. a transcribed heatmap) measured at length `t`.
    pub fn from_values(
        layers: usize,
        heads: usize,
        t: usize,
        entropy: Vec<f64>,
    ) -> Result<Self, EntropyError> {
        if layers == 0 || heads == 0 || layers.checked_mul(heads) != Some(entropy.len()) {
            return Err(EntropyError::Shape(format!(
                "{} entropy values for {layers} layers x {heads} heads",
                entropy.len()
            )));
        }
        if t == 0 {
            return Err(EntropyError::Shape(
                "sequence length T must be positive".into(),
            ));
        }
        Ok(EntropyStats {
            layers,
            heads,
            seq_lens: vec![t],
            entropy,
            nan_counts: vec![0; layers],
            eps: ENTROPY_EPS,
        })
    }

    /// Entropy of head `head` in layer `layer` (nats).
    pub fn get(&self, layer: usize, head: usize) -> f64 {
        self.entropy[layer * self.heads + head]
    }

    /// The entropies of one layer.
    pub fn layer(&self, layer: usize) -> &[f64] {
        &self.entropy[layer * self.heads..(layer + 1) * self.heads]
    }

    /// `log T`, the paper's maximum-entropy reference E_max (mean over the sequences).
    pub fn log_t(&self) -> f64 {
        mean(self.seq_lens.iter().map(|&t| (t as f64).ln()))
    }

    /// `(1/T) Σ_i log i`, the causal maximum (mean over the sequences).
    pub fn causal_max(&self) -> f64 {
        mean(self.seq_lens.iter().map(|&t| causal_max_entropy(t)))
    }
}

fn mean(it: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = it.len();
    if n == 0 {
        0.0
    } else {
        it.sum::<f64>() / n as f64
    }
}

/// Accumulates head entropies over sequences, one layer at a time or a whole sequence at once.
#[derive(Debug, Clone)]
pub struct EntropyAccumulator {
    layers: usize,
    heads: usize,
    sums: Vec<f64>,
    nans: Vec<u64>,
    seq_lens: Vec<usize>,
}

impl EntropyAccumulator {
    /// An empty accumulator for a model with `layers` layers of `heads` heads.
    pub fn new(layers: usize, heads: usize) -> Self {
        EntropyAccumulator {
            layers,
            heads,
            sums: vec![0.0; layers * heads],
            nans: vec![0; layers],
            seq_lens: Vec::new(),
        }
    }

    /// Adds one sequence: `attn[l]` is layer l's attention probabilities, row-major
    /// `[heads, T, T]` (causal and row-stochastic; masked entries 0).
    pub fn add_sequence<A: AsRef<[f32]>>(
        &mut self,
        attn: &[A],
        t: usize,
    ) -> Result<(), EntropyError> {
        if attn.len() != self.layers {
            return Err(EntropyError::Shape(format!(
                "attention for {} layers, expected {}",
                attn.len(),
                self.layers
            )));
        }
        // Validate everything before accumulating anything.
        for a in attn {
            check_shape(a.as_ref(), self.heads, t)?;
        }
        for (l, a) in attn.iter().enumerate() {
            let (e, nans) = head_entropies(a.as_ref(), self.heads, t)?;
            for (s, v) in self.sums[l * self.heads..(l + 1) * self.heads]
                .iter_mut()
                .zip(e)
            {
                *s += v;
            }
            self.nans[l] += nans;
        }
        self.seq_lens.push(t);
        Ok(())
    }

    /// Number of sequences added so far.
    pub fn sequences(&self) -> usize {
        self.seq_lens.len()
    }

    /// The mean head entropies over the sequences added.
    pub fn finish(&self) -> Result<EntropyStats, EntropyError> {
        let n = self.seq_lens.len();
        if n == 0 {
            return Err(EntropyError::Shape("no sequence was added".into()));
        }
        Ok(EntropyStats {
            layers: self.layers,
            heads: self.heads,
            seq_lens: self.seq_lens.clone(),
            entropy: self.sums.iter().map(|s| s / n as f64).collect(),
            nan_counts: self.nans.clone(),
            eps: ENTROPY_EPS,
        })
    }
}
