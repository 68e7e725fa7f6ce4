//! Hashing with fixed-key AES: a random permutation `π = AES_k` under a public constant key.
//!
//! Following Guo, Katz, Wang, Yu, "Efficient and Secure Multiparty Computation from Fixed-Key
//! Block Ciphers" (IEEE S&P 2020, ePrint 2019/074):
//! - correlation-robust hash `CR(x) = π(x) ⊕ x`;
//! - circular correlation-robust hash `CCR(x) = π(σ(x)) ⊕ σ(x)` with the linear orthomorphism
//!   `σ(xL || xR) = (xL ⊕ xR) || xL` (64-bit halves);
//! - tweakable circular correlation-robust hash `TCCR(i, x) = π(π(x) ⊕ i) ⊕ π(x)`, used by
//!   half-gates garbling and OT extension with the gate or OT index as the tweak.
//!
//! The batched variants encrypt [`BATCH`] blocks per call so AES-NI pipelines them.
//!
//! **Tweaks under a global offset.** TCCR is secure only if no tweak is used twice with
//! related inputs. Every hash of a value that is correlated through a COT sender's `Δ`
//! (half-gates garbling, IKNP's random-OT hashing, the additive correlated OTs of B2A, the
//! multiplexer and Gilboa products, the garbler's Y2A) therefore takes its tweak from the one
//! counter that belongs to that correlation ([`crate::ot::TweakCounter`], owned by the COT
//! sender and mirrored by the COT receiver), never from a counter of its own, and marks it with
//! a [`TweakDomain`] (the top byte). See `docs/protocols/gc.md` and `docs/protocols/ot.md`.

use std::sync::LazyLock;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};

use crate::block::Block;

/// Blocks encrypted per AES call in the batched functions.
pub const BATCH: usize = 64;

/// What a tweak drawn from a [`crate::ot::TweakCounter`] is used for: its top byte. The index
/// from the counter is in the low 64 bits, so two uses never share a tweak even if one of them
/// forgot to reserve (defence in depth; the counter alone already makes tweaks unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TweakDomain {
    /// Half-gates garbling, the generator half of an AND gate.
    GcGarblerHalf = 1,
    /// Half-gates garbling, the evaluator half of an AND gate.
    GcEvaluatorHalf = 2,
    /// Random OTs hashed from correlated OTs (IKNP).
    RandomOt = 3,
    /// Additive correlated OTs (B2A, multiplexer, Gilboa products: `ot::b2a`).
    AdditiveCot = 4,
    /// The garbler's conversion of garbled words to arithmetic shares (Y2A).
    GcArith = 5,
}

impl TweakDomain {
    /// The tweak for counter index `index` in this domain.
    #[inline]
    pub fn tweak(self, index: u64) -> Block {
        Block(((self as u128) << 120) | index as u128)
    }
}

/// The public fixed key (an arbitrary constant; security does not depend on its value).
const FIXED_KEY: [u8; 16] = *b"privlm fixed key";

/// AES-128 under a public fixed key, used as a random permutation.
pub struct FixedKeyAes {
    cipher: Aes128,
}

impl std::fmt::Debug for FixedKeyAes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedKeyAes")
    }
}

/// The process-wide fixed-key permutation.
pub static FIXED_KEY_AES: LazyLock<FixedKeyAes> = LazyLock::new(|| FixedKeyAes::new(FIXED_KEY));

#[inline]
fn sigma(x: Block) -> Block {
    let lo = x.0 as u64;
    let hi = (x.0 >> 64) as u64;
    // σ(hi || lo) = (hi ⊕ lo) || hi
    Block((((hi ^ lo) as u128) << 64) | hi as u128)
}

impl FixedKeyAes {
    /// The permutation with a given key (tests use other keys; protocols use [`FIXED_KEY_AES`]).
    pub fn new(key: [u8; 16]) -> Self {
        FixedKeyAes {
            cipher: Aes128::new(&key.into()),
        }
    }

    /// `π(x)`.
    #[inline]
    pub fn permute(&self, x: Block) -> Block {
        let mut b = aes::Block::from(x.to_bytes());
        self.cipher.encrypt_block(&mut b);
        Block::from_bytes(b.into())
    }

    /// `π` applied to every block in place, [`BATCH`] at a time.
    pub fn permute_many(&self, xs: &mut [Block]) {
        let mut buf = [aes::Block::default(); BATCH];
        for chunk in xs.chunks_mut(BATCH) {
            let n = chunk.len();
            for (b, x) in buf.iter_mut().zip(chunk.iter()) {
                *b = aes::Block::from(x.to_bytes());
            }
            self.cipher.encrypt_blocks(&mut buf[..n]);
            for (x, b) in chunk.iter_mut().zip(buf.iter()) {
                *x = Block::from_bytes((*b).into());
            }
        }
    }

    /// `CR(x) = π(x) ⊕ x`.
    #[inline]
    pub fn cr(&self, x: Block) -> Block {
        self.permute(x) ^ x
    }

    /// `CCR(x) = π(σ(x)) ⊕ σ(x)`.
    #[inline]
    pub fn ccr(&self, x: Block) -> Block {
        let s = sigma(x);
        self.permute(s) ^ s
    }

    /// `CCR` applied to every block in place.
    pub fn ccr_many(&self, xs: &mut [Block]) {
        for x in xs.iter_mut() {
            *x = sigma(*x);
        }
        let mut tmp = [Block::ZERO; BATCH];
        for chunk in xs.chunks_mut(BATCH) {
            let t = &mut tmp[..chunk.len()];
            t.copy_from_slice(chunk);
            self.permute_many(t);
            for (x, p) in chunk.iter_mut().zip(t.iter()) {
                *x ^= *p;
            }
        }
    }

    /// `TCCR(i, x) = π(π(x) ⊕ i) ⊕ π(x)`.
    #[inline]
    pub fn tccr(&self, tweak: Block, x: Block) -> Block {
        let p = self.permute(x);
        self.permute(p ^ tweak) ^ p
    }

    /// `out[j] = TCCR(tweaks[j], xs[j])`, batched.
    pub fn tccr_many(&self, tweaks: &[Block], xs: &[Block], out: &mut [Block]) {
        assert_eq!(
            tweaks.len(),
            xs.len(),
            "tccr_many: tweaks and inputs differ in length"
        );
        assert_eq!(
            out.len(),
            xs.len(),
            "tccr_many: output has the wrong length"
        );
        // One pass over the cipher's own block type: no intermediate copies or buffers per
        // chunk (about 1.5x faster than two `permute_many` calls).
        let mut p = [aes::Block::default(); BATCH];
        let mut q = [aes::Block::default(); BATCH];
        for ((tw, x), o) in tweaks
            .chunks(BATCH)
            .zip(xs.chunks(BATCH))
            .zip(out.chunks_mut(BATCH))
        {
            let n = x.len();
            for j in 0..n {
                p[j] = aes::Block::from(x[j].to_bytes());
            }
            self.cipher.encrypt_blocks(&mut p[..n]);
            for j in 0..n {
                q[j] = aes::Block::from((Block::from_bytes(p[j].into()) ^ tw[j]).to_bytes());
            }
            self.cipher.encrypt_blocks(&mut q[..n]);
            for j in 0..n {
                o[j] = Block::from_bytes(q[j].into()) ^ Block::from_bytes(p[j].into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_known_answer() {
        // FIPS-197 appendix C.1: key 000102..0f, plaintext 00112233..ff.
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        let ct = FixedKeyAes::new(key)
            .permute(Block::from_bytes(pt))
            .to_bytes();
        let expected = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        assert_eq!(ct, expected);
    }

    #[test]
    fn batched_equals_single() {
        let h = &*FIXED_KEY_AES;
        let xs: Vec<Block> = (0..150u128)
            .map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
            .collect();
        let tweaks: Vec<Block> = (0..150u128).map(Block).collect();
        let mut p = xs.clone();
        h.permute_many(&mut p);
        let mut c = xs.clone();
        h.ccr_many(&mut c);
        let mut t = vec![Block::ZERO; xs.len()];
        h.tccr_many(&tweaks, &xs, &mut t);
        for i in 0..xs.len() {
            assert_eq!(p[i], h.permute(xs[i]));
            assert_eq!(c[i], h.ccr(xs[i]));
            assert_eq!(t[i], h.tccr(tweaks[i], xs[i]));
        }
        assert_ne!(h.tccr(Block(1), xs[3]), h.tccr(Block(2), xs[3]));
        // Domains separate equal indices.
        assert_ne!(
            TweakDomain::GcGarblerHalf.tweak(7),
            TweakDomain::GcEvaluatorHalf.tweak(7)
        );
        assert_eq!(TweakDomain::RandomOt.tweak(5), Block((3u128 << 120) | 5));
        // σ is an orthomorphism: σ(x) ⊕ x is a permutation too; spot-check injectivity.
        assert_ne!(sigma(Block(1)) ^ Block(1), sigma(Block(2)) ^ Block(2));
    }
}
