//! Seeded pseudorandom generators and seed expansion.
//!
//! All protocol code takes an explicit RNG (`&mut impl CryptoRng`), so a test that fixes the
//! seed is reproducible. [`Prg`] is ChaCha12 (rand_chacha): a cryptographic stream cipher used
//! as a PRG. Seeds expand by stream selection ([`Prg::derive`]) or by hashing with a domain label
//! ([`Prg::expand`]), which is how the dealer and the parties compress correlated randomness.

use std::convert::Infallible;
use std::fmt;

use rand_chacha::ChaCha12Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};

/// A 256-bit PRG seed.
pub type Seed = [u8; 32];

/// A cryptographic PRG (ChaCha12). `Debug` never prints its state.
#[derive(Clone)]
pub struct Prg(ChaCha12Rng);

impl fmt::Debug for Prg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prg(..)")
    }
}

impl Prg {
    /// A PRG from a 256-bit seed.
    pub fn from_seed(seed: Seed) -> Self {
        Prg(ChaCha12Rng::from_seed(seed))
    }

    /// A PRG from a small integer seed, for tests and benches (not for secrets).
    pub fn from_u64(seed: u64) -> Self {
        Prg(ChaCha12Rng::seed_from_u64(seed))
    }

    /// A PRG seeded from the operating system's secure randomness.
    pub fn from_os() -> Self {
        Prg::from_seed(os_seed())
    }

    /// The independent stream number `stream` of `seed`: `derive(s, i)` and `derive(s, j)` are
    /// independent PRGs for `i != j`.
    pub fn derive(seed: &Seed, stream: u64) -> Self {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        rng.set_stream(stream);
        Prg(rng)
    }

    /// A PRG for the domain `label` derived from `seed` by SHA-256(seed || label).
    pub fn expand(seed: &Seed, label: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(seed);
        ctx.update(label);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Prg::from_seed(out)
    }

    /// Draws a fresh seed from this PRG.
    pub fn gen_seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.0
            .try_fill_bytes(&mut s)
            .unwrap_or_else(|e: Infallible| match e {});
        s
    }
}

/// 32 bytes from the operating system's secure random source.
pub fn os_seed() -> Seed {
    use ring::rand::SecureRandom;
    let mut s = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .expect("the operating system's random source failed");
    s
}

impl TryRng for Prg {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.0.try_next_u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0.try_next_u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for Prg {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn deterministic_and_independent_streams() {
        let seed = [7u8; 32];
        let a: Vec<u64> = (0..4).map(|_| Prg::from_seed(seed).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut s0 = Prg::derive(&seed, 0);
        let mut s1 = Prg::derive(&seed, 1);
        assert_ne!(s0.next_u64(), s1.next_u64());
        let mut e0 = Prg::expand(&seed, b"triples");
        let mut e1 = Prg::expand(&seed, b"masks");
        assert_ne!(e0.next_u64(), e1.next_u64());
        assert_ne!(os_seed(), os_seed());
        assert_eq!(format!("{:?}", Prg::from_seed(seed)), "Prg(..)");
    }
}
