//! Test helpers for the OT applications: both parties' ends of every ideal correlation over one
//! in-memory channel pair, and additive sharing of plaintext vectors.

use crate::block::Block;
use crate::channel::{FramedChannel, mem};
use crate::ot::ideal::{
    IdealCotReceiver, IdealCotSender, IdealRotReceiver, IdealRotSender, ideal_cot, ideal_rot,
};
use crate::prg::Prg;
use rand_core::Rng;

/// The random-OT role type of the ideal ends.
pub(crate) type Role<'a> = crate::ot::millionaire::RotRole<'a, IdealRotSender, IdealRotReceiver>;

/// Channel ends and ideal OT ends; `_01` means P0 sends, P1 receives; `_10` the reverse.
pub(crate) struct Ends {
    pub(crate) ch0: FramedChannel,
    pub(crate) ch1: FramedChannel,
    pub(crate) rot_s01: IdealRotSender,
    pub(crate) rot_r01: IdealRotReceiver,
    pub(crate) cot_s01: IdealCotSender,
    pub(crate) cot_r01: IdealCotReceiver,
    pub(crate) cot_s10: IdealCotSender,
    pub(crate) cot_r10: IdealCotReceiver,
}

/// Fresh ends derived from `seed`.
pub(crate) fn ends(seed: u64) -> Ends {
    let mut prg = Prg::from_u64(seed ^ 0x5eed);
    let (ch0, ch1) = mem::pair();
    let (rot_s01, rot_r01) = ideal_rot(prg.gen_seed());
    let (cot_s01, cot_r01) = ideal_cot(prg.gen_seed(), Block::random(&mut prg));
    let (cot_s10, cot_r10) = ideal_cot(prg.gen_seed(), Block::random(&mut prg));
    Ends {
        ch0,
        ch1,
        rot_s01,
        rot_r01,
        cot_s01,
        cot_r01,
        cot_s10,
        cot_r10,
    }
}

/// Random additive shares of each value.
pub(crate) fn share_all(xs: &[u64], prg: &mut Prg) -> (Vec<u64>, Vec<u64>) {
    let s0: Vec<u64> = xs.iter().map(|_| prg.next_u64()).collect();
    let s1 = xs
        .iter()
        .zip(&s0)
        .map(|(x, r)| x.wrapping_sub(*r))
        .collect();
    (s0, s1)
}

/// Random boolean (XOR) shares of each bit.
pub(crate) fn share_bits(bs: &[bool], prg: &mut Prg) -> (Vec<bool>, Vec<bool>) {
    let s0: Vec<bool> = bs.iter().map(|_| prg.next_u64() & 1 == 1).collect();
    let s1 = bs.iter().zip(&s0).map(|(b, r)| b ^ r).collect();
    (s0, s1)
}
