//! AGREEMENT parameters of the nonlinear layers: one typed struct both parties must set
//! identically (the engine hashes [`NlParams::agreement_entries`] into the session handshake).

use crate::trunc::TruncMode;

/// Version of the approximations' constants (GELU coefficients, the exp polynomial, clipping
/// bounds, initial guesses). Part of the agreement: a change of any constant bumps it.
pub const APPROX_VERSION: &str = "privlm-nl-1";

/// AGREEMENT parameters of the nonlinear layers (DESIGN.md section 3, item 9).
///
/// Every field changes the transcript or the result, so both parties must use the same values;
/// [`NlParams::agreement_entries`] lists them for the session handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlParams {
    /// Fixed-point fractional bits `f` (8..=20; default 16, `docs/numeric.md`).
    pub frac_bits: u32,
    /// Truncation protocol ([`TruncMode::DealerAssisted`] by default).
    pub trunc: TruncMode,
    /// Digit size `m` of the millionaires' comparisons (1..=4; default 4).
    pub digit_bits: u32,
    /// Bits `ℓ` of the sign tests of activations (ReLU, GELU): exact for inputs with
    /// `|x| < 2^(ℓ − 1 − f)` (default 32: `|x| < 2^15` at `f = 16`).
    pub act_bits: u32,
    /// Bits `ℓ` of the comparisons of logits (softmax row max and clipping, argmax): exact for
    /// logits with `|x| < 2^(ℓ − 2 − f)` (default 33: `|x| < 2^15` at `f = 16`).
    pub logit_bits: u32,
    /// Newton iterations of the softmax reciprocal (default 2).
    pub recip_iters: u32,
    /// Newton iterations of LayerNorm's inverse square root (default 2).
    pub rsqrt_iters: u32,
    /// Truncations of at least this many elements use the one-way flow (8.125 B per element,
    /// two one-way delays), smaller ones the symmetric opening (16 B, one delay): bytes win for
    /// long vectors, latency for the per-row ones (default 16384).
    pub trunc_one_way_min: usize,
    /// Range of the inverse square root's input: `[2^-f, 2^rsqrt_max_log2)`; LayerNorm feeds it
    /// the sum of squares of a row, so this bounds `Σ (x − μ)²` (default 30: `‖x − μ‖₂ < 2^15`).
    pub rsqrt_max_log2: u32,
}

impl Default for NlParams {
    fn default() -> Self {
        NlParams {
            frac_bits: 16,
            trunc: TruncMode::DealerAssisted,
            digit_bits: 4,
            act_bits: 32,
            logit_bits: 33,
            recip_iters: 2,
            rsqrt_iters: 2,
            rsqrt_max_log2: 30,
            trunc_one_way_min: 1 << 14,
        }
    }
}

/// A value in [`NlParams::agreement_entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgreementValue {
    /// An unsigned integer.
    U64(u64),
    /// A name.
    Str(&'static str),
}

impl NlParams {
    /// Checks the ranges every op relies on.
    pub fn validate(&self) -> Result<(), String> {
        let f = self.frac_bits;
        if !(8..=20).contains(&f) {
            return Err(format!("fractional bits {f} outside 8..=20"));
        }
        if !(1..=crate::beaver::nl::MAX_DIGIT_BITS).contains(&self.digit_bits) {
            return Err(format!("digit bits {} outside 1..=4", self.digit_bits));
        }
        for (name, l) in [("act_bits", self.act_bits), ("logit_bits", self.logit_bits)] {
            if !(f + 8..=62).contains(&l) {
                return Err(format!("{name} = {l} outside {}..=62", f + 8));
            }
        }
        if !(1..=6).contains(&self.recip_iters) || !(1..=6).contains(&self.rsqrt_iters) {
            return Err("Newton iterations must be in 1..=6".into());
        }
        if !(1..=30).contains(&self.rsqrt_max_log2) || f + self.rsqrt_max_log2 + 1 > 62 {
            return Err(format!(
                "rsqrt_max_log2 = {} out of range",
                self.rsqrt_max_log2
            ));
        }
        Ok(())
    }

    /// The AGREEMENT entries, by name, for the session handshake's `SessionParams`.
    pub fn agreement_entries(&self) -> Vec<(&'static str, AgreementValue)> {
        use AgreementValue::*;
        vec![
            ("nonlinear.version", Str(APPROX_VERSION)),
            ("nonlinear.frac_bits", U64(self.frac_bits.into())),
            (
                "nonlinear.trunc",
                Str(match self.trunc {
                    TruncMode::DealerAssisted => "dealer-assisted",
                    TruncMode::Local => "local",
                }),
            ),
            ("nonlinear.digit_bits", U64(self.digit_bits.into())),
            ("nonlinear.act_bits", U64(self.act_bits.into())),
            ("nonlinear.logit_bits", U64(self.logit_bits.into())),
            ("nonlinear.recip_iters", U64(self.recip_iters.into())),
            ("nonlinear.rsqrt_iters", U64(self.rsqrt_iters.into())),
            ("nonlinear.rsqrt_max_log2", U64(self.rsqrt_max_log2.into())),
            (
                "nonlinear.trunc_one_way_min",
                U64(self.trunc_one_way_min as u64),
            ),
        ]
    }

    /// `2^f`.
    pub fn one(&self) -> u64 {
        1u64 << self.frac_bits
    }

    /// Encodes a real at scale `2^s` (round to nearest), wrapping into the ring.
    pub fn enc_at(&self, x: f64, s: u32) -> u64 {
        (x * 2f64.powi(s as i32)).round() as i64 as u64
    }

    /// Encodes a real at the default scale `2^f`.
    pub fn enc(&self, x: f64) -> u64 {
        self.enc_at(x, self.frac_bits)
    }

    /// Decodes a ring element at scale `2^f`.
    pub fn dec(&self, x: u64) -> f64 {
        x as i64 as f64 / self.one() as f64
    }
}
