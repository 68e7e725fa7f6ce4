//! Test helpers for *view* tests: checks of what a party sees, not of what it outputs.
//!
//! A protocol can compute the right outputs and still leak (a predictable mask, a label that
//! encodes the input bit, a share fixed to zero). These helpers record the messages a party
//! receives ([`Recorder`]) and test that values which the protocol claims are uniform (one-time
//! padded openings, dealer shares, label permute bits) look uniform and independent of the
//! secrets.
//!
//! **Statistics and false-positive rate.** Every check here is a one-sided test at
//! `Z = 5.2` standard deviations (a normal tail of about `1e-7`): the chi-square test on byte
//! frequencies uses the Wilson-Hilferty approximation of the chi-square quantile with 255
//! degrees of freedom at that `Z`, the balance test of bits the normal approximation of the
//! binomial. The tests use fixed seeds, so they are deterministic; the rate says how likely a
//! correct protocol would be to fail on a random seed: about `1e-7` per check, under `1e-5`
//! for the few hundred checks in the suite.

use crate::channel::{Channel, ChannelConfig, ChannelError, Stats};

/// Standard deviations at which a statistic is declared non-uniform (tail about `1e-7`).
pub(crate) const Z: f64 = 5.2;

/// Upper `Z`-quantile of the chi-square distribution with `df` degrees of freedom
/// (Wilson-Hilferty).
pub(crate) fn chi2_critical(df: f64) -> f64 {
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + Z * a.sqrt()).powi(3)
}

/// The chi-square statistic of the byte frequencies of `bytes` against the uniform
/// distribution (255 degrees of freedom).
pub(crate) fn chi2_bytes(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[b as usize] += 1;
    }
    let e = bytes.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - e) * (c as f64 - e) / e)
        .sum()
}

/// Asserts that the bytes look uniform (chi-square, see the module docs). Needs at least
/// 256 · 20 bytes so every bucket expects 20 or more.
pub(crate) fn assert_uniform_bytes(bytes: &[u8], what: &str) {
    assert!(
        bytes.len() >= 256 * 20,
        "{what}: {} bytes are too few for a chi-square test",
        bytes.len()
    );
    let stat = chi2_bytes(bytes);
    let crit = chi2_critical(255.0);
    assert!(
        stat < crit,
        "{what}: byte frequencies are not uniform (chi-square {stat:.1} over {} bytes, \
         critical value {crit:.1})",
        bytes.len()
    );
}

/// Asserts that the `u64`s look uniform, byte by byte.
pub(crate) fn assert_uniform_u64s(v: &[u64], what: &str) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_uniform_bytes(&bytes, what);
}

/// Asserts that `ones` out of `n` fair coin flips is within `Z` standard deviations of `n/2`.
pub(crate) fn assert_balanced(ones: usize, n: usize, what: &str) {
    assert!(n >= 100, "{what}: {n} samples are too few");
    let sd = (n as f64).sqrt() / 2.0;
    let dev = (ones as f64 - n as f64 / 2.0).abs();
    assert!(
        dev < Z * sd,
        "{what}: {ones} of {n} are set, {:.1} standard deviations from half",
        dev / sd
    );
}

/// A named pattern of secret bits (position -> bit) that a view must not depend on.
pub(crate) type BitPattern = (&'static str, fn(usize) -> bool);

/// All false, all true, alternating.
pub(crate) const BIT_PATTERNS: [BitPattern; 3] = [
    ("all false", |_| false),
    ("all true", |_| true),
    ("alternating", |i| i % 2 == 1),
];

/// A channel wrapper that records every message this party receives, in order; messages
/// received with [`Channel::recv_bytes_bounded`] are also kept apart (the garbled-circuit
/// evaluator receives its table batches, and only those, that way).
pub(crate) struct Recorder<C> {
    inner: C,
    /// Every received message, with the context the protocol gave (empty for bounded ones).
    pub(crate) received: Vec<(String, Vec<u8>)>,
    /// Messages received with [`Channel::recv_bytes_bounded`].
    pub(crate) bounded: Vec<Vec<u8>>,
}

impl<C> Recorder<C> {
    pub(crate) fn new(inner: C) -> Self {
        Recorder {
            inner,
            received: Vec::new(),
            bounded: Vec::new(),
        }
    }

    /// The concatenation of the received messages whose context contains `needle`.
    pub(crate) fn bytes_with(&self, needle: &str) -> Vec<u8> {
        self.received
            .iter()
            .filter(|(c, _)| c.contains(needle))
            .flat_map(|(_, m)| m.iter().copied())
            .collect()
    }

    /// Forgets everything recorded so far.
    pub(crate) fn clear(&mut self) {
        self.received.clear();
        self.bounded.clear();
    }
}

impl<C: Channel> Channel for Recorder<C> {
    async fn send_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.inner.send_bytes(data).await
    }

    async fn recv_bytes_into(&mut self, buf: &mut [u8], context: &str) -> Result<(), ChannelError> {
        self.inner.recv_bytes_into(buf, context).await?;
        self.received.push((context.to_string(), buf.to_vec()));
        Ok(())
    }

    async fn recv_bytes_bounded(&mut self, max_len: usize) -> Result<Vec<u8>, ChannelError> {
        let m = self.inner.recv_bytes_bounded(max_len).await?;
        self.received.push((String::new(), m.clone()));
        self.bounded.push(m.clone());
        Ok(m)
    }

    async fn flush(&mut self) -> Result<(), ChannelError> {
        self.inner.flush().await
    }

    async fn abort(&mut self, reason: &str) -> ChannelError {
        self.inner.abort(reason).await
    }

    fn config(&self) -> &ChannelConfig {
        self.inner.config()
    }

    fn stats(&self) -> &Stats {
        self.inner.stats()
    }

    fn stats_mut(&mut self) -> &mut Stats {
        self.inner.stats_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;
    use rand_core::Rng;

    #[test]
    fn statistics_accept_random_and_reject_biased_data() {
        // The quantile: chi-square(255) has mean 255 and sd about 22.6.
        let c = chi2_critical(255.0);
        assert!((360.0..400.0).contains(&c), "{c}");
        let mut prg = Prg::from_u64(1);
        let good: Vec<u8> = (0..1 << 16).map(|_| prg.next_u64() as u8).collect();
        assert!(chi2_bytes(&good) < c);
        // Low bits of a product of two uniform values are biased towards 0.
        let bad: Vec<u8> = (0..1 << 16)
            .map(|_| prg.next_u64().wrapping_mul(prg.next_u64()) as u8)
            .collect();
        assert!(chi2_bytes(&bad) > c);
        assert_balanced(5000, 10_000, "fair");
        let r = std::panic::catch_unwind(|| assert_balanced(5500, 10_000, "biased"));
        assert!(r.is_err());
    }
}
