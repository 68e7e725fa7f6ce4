//! 128-bit blocks: OT messages, garbled-circuit labels, AES inputs.

use std::fmt;
use std::ops::{BitAnd, BitXor, BitXorAssign};

use serde::{Deserialize, Serialize};

/// A 128-bit value. `Debug` is redacted because blocks are usually keys or wire labels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[repr(transparent)]
pub struct Block(pub u128);

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Block(..)")
    }
}

impl Block {
    /// The all-zero block.
    pub const ZERO: Block = Block(0);
    /// The all-one block.
    pub const ONES: Block = Block(u128::MAX);

    /// The block's 16 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// A block from 16 little-endian bytes.
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Block(u128::from_le_bytes(b))
    }

    /// The least significant bit (the point-and-permute bit of a label).
    pub fn lsb(self) -> bool {
        self.0 & 1 == 1
    }

    /// `self` if `bit` is set, else zero; branch-free.
    pub fn select(self, bit: bool) -> Block {
        Block(self.0 & (bit as u128).wrapping_neg())
    }

    /// A uniformly random block.
    pub fn random<R: rand_core::Rng + ?Sized>(rng: &mut R) -> Self {
        Block((rng.next_u64() as u128) | ((rng.next_u64() as u128) << 64))
    }
}

impl BitXor for Block {
    type Output = Block;
    fn bitxor(self, rhs: Block) -> Block {
        Block(self.0 ^ rhs.0)
    }
}

impl BitXorAssign for Block {
    fn bitxor_assign(&mut self, rhs: Block) {
        self.0 ^= rhs.0;
    }
}

impl BitAnd for Block {
    type Output = Block;
    fn bitand(self, rhs: Block) -> Block {
        Block(self.0 & rhs.0)
    }
}
