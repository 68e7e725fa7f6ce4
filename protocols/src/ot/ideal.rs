//! Ideal (trusted, in-process) OT functionalities for tests and benches of higher layers.
//!
//! **Insecure by construction**: both ends derive their outputs from one shared seed and the
//! receiver's side knows `delta`. They exchange no messages. Use them to test a protocol on a
//! perfect lower layer, never in a deployment.

use crate::block::Block;
use crate::channel::Channel;
use crate::prg::{Prg, Seed};

use super::{CotReceiver, CotSender, OtError, RotReceiver, RotSender, TweakCounter};

/// Ideal COT sender. Create both ends with [`ideal_cot`].
#[derive(Debug)]
pub struct IdealCotSender {
    delta: Block,
    prg: Prg,
    tweaks: TweakCounter,
}

/// Ideal COT receiver. Create both ends with [`ideal_cot`].
#[derive(Debug)]
pub struct IdealCotReceiver {
    delta: Block,
    prg: Prg,
    tweaks: TweakCounter,
}

/// Both ends of an ideal COT with global correlation `delta` (its lsb is forced to 1).
pub fn ideal_cot(seed: Seed, delta: Block) -> (IdealCotSender, IdealCotReceiver) {
    let delta = Block(delta.0 | 1);
    (
        IdealCotSender {
            delta,
            prg: Prg::expand(&seed, b"ideal-cot"),
            tweaks: TweakCounter::new(),
        },
        IdealCotReceiver {
            delta,
            prg: Prg::expand(&seed, b"ideal-cot"),
            tweaks: TweakCounter::new(),
        },
    )
}

impl CotSender for IdealCotSender {
    fn delta(&self) -> Block {
        self.delta
    }

    fn tweaks(&mut self) -> &mut TweakCounter {
        &mut self.tweaks
    }

    async fn send_cot<C: Channel>(
        &mut self,
        _ch: &mut C,
        count: usize,
    ) -> Result<Vec<Block>, OtError> {
        Ok((0..count).map(|_| Block::random(&mut self.prg)).collect())
    }
}

impl CotReceiver for IdealCotReceiver {
    fn tweaks(&mut self) -> &mut TweakCounter {
        &mut self.tweaks
    }

    async fn recv_cot<C: Channel>(
        &mut self,
        _ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>, OtError> {
        Ok(choices
            .iter()
            .map(|&b| Block::random(&mut self.prg) ^ self.delta.select(b))
            .collect())
    }
}

/// Ideal ROT sender. Create both ends with [`ideal_rot`].
#[derive(Debug)]
pub struct IdealRotSender {
    prg: Prg,
}

/// Ideal ROT receiver. Create both ends with [`ideal_rot`].
#[derive(Debug)]
pub struct IdealRotReceiver {
    prg: Prg,
}

/// Both ends of an ideal random OT.
pub fn ideal_rot(seed: Seed) -> (IdealRotSender, IdealRotReceiver) {
    (
        IdealRotSender {
            prg: Prg::expand(&seed, b"ideal-rot"),
        },
        IdealRotReceiver {
            prg: Prg::expand(&seed, b"ideal-rot"),
        },
    )
}

fn next_rot(prg: &mut Prg) -> ([Block; 2], bool) {
    let m0 = Block::random(prg);
    let m1 = Block::random(prg);
    let b = Block::random(prg).lsb();
    ([m0, m1], b)
}

impl RotSender for IdealRotSender {
    async fn send_rot<C: Channel>(
        &mut self,
        _ch: &mut C,
        count: usize,
    ) -> Result<Vec<[Block; 2]>, OtError> {
        Ok((0..count).map(|_| next_rot(&mut self.prg).0).collect())
    }
}

impl RotReceiver for IdealRotReceiver {
    async fn recv_rot<C: Channel>(
        &mut self,
        _ch: &mut C,
        count: usize,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        let mut bits = Vec::with_capacity(count);
        let mut msgs = Vec::with_capacity(count);
        for _ in 0..count {
            let (m, b) = next_rot(&mut self.prg);
            bits.push(b);
            msgs.push(m[b as usize]);
        }
        Ok((bits, msgs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::mem;

    #[tokio::test]
    async fn ideal_correlations_hold() {
        let (mut a, mut b) = mem::pair();
        let (mut s, mut r) = ideal_cot([3; 32], Block(0xabc));
        let choices = [true, false, true, true];
        let q = s.send_cot(&mut a, 4).await.unwrap();
        let t = r.recv_cot(&mut b, &choices).await.unwrap();
        for i in 0..4 {
            assert_eq!(t[i], q[i] ^ s.delta().select(choices[i]));
        }
        assert!(s.delta().lsb());
        let (mut s, mut r) = ideal_rot([4; 32]);
        let m = s.send_rot(&mut a, 5).await.unwrap();
        let (bits, got) = r.recv_rot(&mut b, 5).await.unwrap();
        for i in 0..5 {
            assert_eq!(got[i], m[i][bits[i] as usize]);
            assert_ne!(got[i], m[i][!bits[i] as usize]);
        }
    }
}
