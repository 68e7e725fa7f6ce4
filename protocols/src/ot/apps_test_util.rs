//! Test helpers for the OT applications: both parties' ends of every correlation over one
//! in-memory channel pair, for each OT implementation (ideal, IKNP, dealer-supplied: the
//! [`OtKind`] makers), and additive sharing of plaintext vectors.

use crate::block::Block;
use crate::channel::{FramedChannel, mem};
use crate::ot::dealer::{
    DealerCotReceiver, DealerCotSender, DealerRotReceiver, DealerRotSender, deal_cot, deal_rot,
};
use crate::ot::ideal::{
    IdealCotReceiver, IdealCotSender, IdealRotReceiver, IdealRotSender, ideal_cot, ideal_rot,
};
use crate::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
use crate::ot::{CotReceiver, CotSender, RotReceiver, RotSender};
use crate::prg::Prg;
use rand_core::Rng;

/// The random-OT role type of the ideal ends.
pub(crate) type Role<'a> = crate::ot::millionaire::RotRole<'a, IdealRotSender, IdealRotReceiver>;

/// Channel ends and OT ends of one implementation (ideal by default); `_01` means P0 sends, P1
/// receives; `_10` the reverse.
pub(crate) struct Ends<
    RS = IdealRotSender,
    RR = IdealRotReceiver,
    CS = IdealCotSender,
    CR = IdealCotReceiver,
> {
    pub(crate) ch0: FramedChannel,
    pub(crate) ch1: FramedChannel,
    pub(crate) rot_s01: RS,
    pub(crate) rot_r01: RR,
    pub(crate) cot_s01: CS,
    pub(crate) cot_r01: CR,
    pub(crate) cot_s10: CS,
    pub(crate) cot_r10: CR,
}

/// Fresh ideal ends derived from `seed`.
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

/// Makers of connected OT pairs of one implementation (fresh, independent instances on every
/// call), so the same application test runs over IKNP, the dealer and the ideal OTs.
pub(crate) trait OtKind {
    /// Random-OT sender.
    type RS: RotSender;
    /// Random-OT receiver.
    type RR: RotReceiver;
    /// COT sender.
    type CS: CotSender;
    /// COT receiver.
    type CR: CotReceiver;
    /// A connected random-OT pair.
    fn rot_pair(&mut self) -> (Self::RS, Self::RR);
    /// A connected COT pair.
    fn cot_pair(&mut self) -> (Self::CS, Self::CR);
    /// Channel and OT ends.
    fn ends(&mut self) -> Ends<Self::RS, Self::RR, Self::CS, Self::CR> {
        let (ch0, ch1) = mem::pair();
        let (rot_s01, rot_r01) = self.rot_pair();
        let (cot_s01, cot_r01) = self.cot_pair();
        let (cot_s10, cot_r10) = self.cot_pair();
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
}

/// The ideal OTs of `ot/ideal.rs`.
pub(crate) struct IdealKind(pub(crate) Prg);

impl OtKind for IdealKind {
    type RS = IdealRotSender;
    type RR = IdealRotReceiver;
    type CS = IdealCotSender;
    type CR = IdealCotReceiver;
    fn rot_pair(&mut self) -> (Self::RS, Self::RR) {
        ideal_rot(self.0.gen_seed())
    }
    fn cot_pair(&mut self) -> (Self::CS, Self::CR) {
        let seed = self.0.gen_seed();
        ideal_cot(seed, Block::random(&mut self.0))
    }
}

/// IKNP OT extension over real base OTs (run lazily on first use), with chunk size `chunk`.
pub(crate) struct IknpKind {
    pub(crate) prg: Prg,
    pub(crate) chunk: usize,
}

impl IknpKind {
    fn cfg(&self) -> IknpConfig {
        IknpConfig::with_chunk(self.chunk).expect("valid chunk")
    }
}

impl OtKind for IknpKind {
    type RS = IknpSender;
    type RR = IknpReceiver;
    type CS = IknpSender;
    type CR = IknpReceiver;
    fn rot_pair(&mut self) -> (Self::RS, Self::RR) {
        let cfg = self.cfg();
        (
            IknpSender::random(cfg.clone(), &mut self.prg),
            IknpReceiver::new(cfg, &mut self.prg),
        )
    }
    fn cot_pair(&mut self) -> (Self::CS, Self::CR) {
        self.rot_pair()
    }
}

/// Dealer-supplied OTs: every pair gets `count` OTs dealt in batches of `batch`.
pub(crate) struct DealerKind {
    pub(crate) dealer: Prg,
    pub(crate) count: usize,
    pub(crate) batch: usize,
}

impl OtKind for DealerKind {
    type RS = DealerRotSender;
    type RR = DealerRotReceiver;
    type CS = DealerCotSender;
    type CR = DealerCotReceiver;
    fn rot_pair(&mut self) -> (Self::RS, Self::RR) {
        let (mut s, mut r) = (DealerRotSender::new(), DealerRotReceiver::new());
        let mut left = self.count;
        while left > 0 {
            let m = left.min(self.batch);
            let (a, b) = deal_rot(&mut self.dealer, m);
            s.add(a).expect("dealt ROT batch");
            r.add(b);
            left -= m;
        }
        (s, r)
    }
    fn cot_pair(&mut self) -> (Self::CS, Self::CR) {
        let delta = Block::random(&mut self.dealer);
        let (mut s, mut r) = (DealerCotSender::new(delta), DealerCotReceiver::new());
        let mut left = self.count;
        while left > 0 {
            let m = left.min(self.batch);
            let (a, b) = deal_cot(&mut self.dealer, delta, m);
            s.add(a).expect("dealt COT batch");
            r.add(b);
            left -= m;
        }
        (s, r)
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

/// The OT applications run over every OT implementation (IKNP with real base OTs, dealer-supplied
/// ROT/COT consumers, ideal), each result checked against plaintext.
mod over_every_ot {
    use super::*;
    use crate::ot::b2a::{CotRole, b2a_bits, b2a_values, mux, relu};
    use crate::ot::gilboa::{ElementwiseTripleSource, GilboaTriples};
    use crate::ot::millionaire::{
        BufferedBitTriples, DreluParams, RotBitTriples, RotRole, drelu, less_than,
    };
    use crate::ot::one_of_n::{OneOfN, recv_one_of_n, send_one_of_n};
    use crate::share::Party;

    fn iknp(seed: u64) -> IknpKind {
        // A small chunk so the applications' batches span several extension chunks.
        IknpKind {
            prg: Prg::from_u64(seed),
            chunk: 512,
        }
    }

    fn dealer(seed: u64) -> DealerKind {
        // Batches of 1000 so requests straddle dealer batches.
        DealerKind {
            dealer: Prg::from_u64(seed),
            count: 40_000,
            batch: 1000,
        }
    }

    fn ideal(seed: u64) -> IdealKind {
        IdealKind(Prg::from_u64(seed))
    }

    /// Sign-extends the low `l` bits.
    fn sext(x: u64, l: u32) -> u64 {
        ((x << (64 - l)) as i64 >> (64 - l)) as u64
    }

    fn domain_values(l: u32, n: usize, prg: &mut Prg) -> Vec<u64> {
        let half = 1u64 << (l - 1);
        let mut xs = vec![
            0,
            1,
            u64::MAX,
            half.wrapping_neg(),
            half - 1,
            half.wrapping_neg() + 1,
            half - 2,
        ];
        xs.extend((0..n).map(|_| sext(prg.next_u64(), l)));
        xs
    }

    /// DReLU and x < y with the AND triples made from the same kind of random OTs.
    async fn drelu_less_than<K: OtKind>(mut k: K) {
        for l in [16u32, 64] {
            let mut prg = Prg::from_u64(l as u64);
            let xs = domain_values(l, 120, &mut prg);
            let (s0, s1) = share_all(&xs, &mut prg);
            let mut e = k.ends();
            let (s01, r01) = k.rot_pair();
            let (s10, r10) = k.rot_pair();
            let mut t0 = RotBitTriples::new(Party::P0, s01, r10);
            let mut t1 = RotBitTriples::new(Party::P1, s10, r01);
            let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
            let p = DreluParams::exact(l);
            let (a, b) = tokio::join!(
                drelu(
                    &mut e.ch0,
                    RotRole::<K::RS, K::RR>::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &s0,
                    p
                ),
                drelu(
                    &mut e.ch1,
                    RotRole::<K::RS, K::RR>::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &s1,
                    p
                )
            );
            for ((x, u), v) in xs.iter().zip(a.unwrap()).zip(b.unwrap()) {
                assert_eq!(u ^ v, (*x as i64) >= 0, "DReLU l={l} x={x:#x}");
            }
            // x < y for x, y in [-2^(l-2), 2^(l-2)), with equal pairs.
            let xs: Vec<u64> = xs.iter().map(|&x| sext(x, l - 1)).collect();
            let mut ys: Vec<u64> = xs.iter().map(|_| sext(prg.next_u64(), l - 1)).collect();
            ys[0] = xs[0];
            ys[3] = xs[3];
            let (x0, x1) = share_all(&xs, &mut prg);
            let (y0, y1) = share_all(&ys, &mut prg);
            let (a, b) = tokio::join!(
                less_than(
                    &mut e.ch0,
                    RotRole::<K::RS, K::RR>::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &x0,
                    &y0,
                    p
                ),
                less_than(
                    &mut e.ch1,
                    RotRole::<K::RS, K::RR>::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &x1,
                    &y1,
                    p
                )
            );
            for (i, (u, v)) in a.unwrap().into_iter().zip(b.unwrap()).enumerate() {
                assert_eq!(u ^ v, (xs[i] as i64) < (ys[i] as i64), "x<y l={l} i={i}");
            }
        }
    }

    /// B2A of bits and of 64-bit values, the multiplexer and ReLU.
    async fn b2a_mux_relu<K: OtKind>(mut k: K) {
        let mut prg = Prg::from_u64(77);
        let mut e = k.ends();
        // B2A bits, around the B2A chunk is covered by the ideal tests; here several IKNP chunks.
        let n = 1500;
        let bits: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
        let (b0, b1) = share_bits(&bits, &mut prg);
        let (y0, y1) = tokio::join!(
            b2a_bits(
                &mut e.ch0,
                CotRole::<K::CS, K::CR>::Sender(&mut e.cot_s01),
                &b0
            ),
            b2a_bits(
                &mut e.ch1,
                CotRole::<K::CS, K::CR>::Receiver(&mut e.cot_r01),
                &b1
            )
        );
        let (y0, y1) = (y0.unwrap(), y1.unwrap());
        for i in 0..n {
            assert_eq!(y0[i].wrapping_add(y1[i]), bits[i] as u64, "B2A bit {i}");
        }
        // B2A of 64-bit and 20-bit values.
        for l in [64u32, 20] {
            let mask = if l == 64 { u64::MAX } else { (1 << l) - 1 };
            let mut xs: Vec<u64> = (0..40).map(|_| prg.next_u64() & mask).collect();
            xs.extend([0, mask, 1]);
            let s0: Vec<u64> = xs.iter().map(|_| prg.next_u64()).collect();
            let s1: Vec<u64> = xs.iter().zip(&s0).map(|(x, r)| x ^ r).collect();
            let (y0, y1) = tokio::join!(
                b2a_values(
                    &mut e.ch0,
                    CotRole::<K::CS, K::CR>::Sender(&mut e.cot_s01),
                    &s0,
                    l
                ),
                b2a_values(
                    &mut e.ch1,
                    CotRole::<K::CS, K::CR>::Receiver(&mut e.cot_r01),
                    &s1,
                    l
                )
            );
            for ((x, a), b) in xs.iter().zip(y0.unwrap()).zip(y1.unwrap()) {
                assert_eq!(a.wrapping_add(b), *x, "B2A value l={l}");
            }
        }
        // Multiplexer.
        let n = 700;
        let mut xs: Vec<u64> = (0..n).map(|_| prg.next_u64()).collect();
        xs[0] = u64::MAX;
        xs[1] = 1 << 63;
        let sel: Vec<bool> = (0..n).map(|_| prg.next_u64() & 1 == 1).collect();
        let (x0, x1) = share_all(&xs, &mut prg);
        let (c0, c1) = share_bits(&sel, &mut prg);
        let (y0, y1) = tokio::join!(
            mux(
                Party::P0,
                &mut e.ch0,
                &mut e.cot_s01,
                &mut e.cot_r10,
                &x0,
                &c0
            ),
            mux(
                Party::P1,
                &mut e.ch1,
                &mut e.cot_s10,
                &mut e.cot_r01,
                &x1,
                &c1
            )
        );
        let (y0, y1) = (y0.unwrap(), y1.unwrap());
        for i in 0..n {
            let want = if sel[i] { xs[i] } else { 0 };
            assert_eq!(y0[i].wrapping_add(y1[i]), want, "mux {i}");
        }
        // ReLU on 64-bit shares, AND triples from random OTs.
        let (s01, r01) = k.rot_pair();
        let (s10, r10) = k.rot_pair();
        let mut t0 = RotBitTriples::new(Party::P0, s01, r10);
        let mut t1 = RotBitTriples::new(Party::P1, s10, r01);
        let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
        let xs = domain_values(64, 100, &mut prg);
        let (x0, x1) = share_all(&xs, &mut prg);
        let p = DreluParams::exact(64);
        let (y0, y1) = tokio::join!(
            relu(
                Party::P0,
                &mut e.ch0,
                RotRole::<K::RS, K::RR>::Sender(&mut e.rot_s01),
                &mut e.cot_s01,
                &mut e.cot_r10,
                &mut t0,
                &mut g0,
                &x0,
                p
            ),
            relu(
                Party::P1,
                &mut e.ch1,
                RotRole::<K::RS, K::RR>::Receiver(&mut e.rot_r01),
                &mut e.cot_s10,
                &mut e.cot_r01,
                &mut t1,
                &mut g1,
                &x1,
                p
            )
        );
        for ((x, a), b) in xs.iter().zip(y0.unwrap()).zip(y1.unwrap()) {
            let want = if (*x as i64) >= 0 { *x } else { 0 };
            assert_eq!(a.wrapping_add(b), want, "ReLU x={x:#x}");
        }
    }

    /// 1-out-of-16 (2-bit and 64-bit messages) and 1-out-of-2^8 OT.
    async fn one_of_n_all<K: OtKind>(mut k: K) {
        let mut prg = Prg::from_u64(5);
        let mut e = k.ends();
        for (p, count) in [
            (OneOfN { log_n: 4, width: 2 }, 0),
            (OneOfN { log_n: 4, width: 2 }, 1),
            (OneOfN { log_n: 4, width: 2 }, 600),
            (
                OneOfN {
                    log_n: 4,
                    width: 64,
                },
                100,
            ),
            (OneOfN { log_n: 8, width: 9 }, 50),
        ] {
            let nn = p.n();
            let mask = if p.width == 64 {
                u64::MAX
            } else {
                (1 << p.width) - 1
            };
            let tables: Vec<u64> = (0..count * nn).map(|_| prg.next_u64() & mask).collect();
            let choices: Vec<u32> = (0..count)
                .map(|_| (prg.next_u64() % nn as u64) as u32)
                .collect();
            let (x, y) = tokio::join!(
                send_one_of_n(&mut e.rot_s01, &mut e.ch0, p, &tables),
                recv_one_of_n(&mut e.rot_r01, &mut e.ch1, p, &choices)
            );
            x.unwrap();
            let y = y.unwrap();
            assert_eq!(y.len(), count);
            for i in 0..count {
                assert_eq!(
                    y[i],
                    tables[i * nn + choices[i] as usize],
                    "1-of-{nn} i={i}"
                );
            }
        }
    }

    /// Gilboa triples: `c = a·b` around the batch size.
    async fn gilboa_triples<K: OtKind>(mut k: K) {
        let e = k.ends();
        let (mut ch0, mut ch1) = (e.ch0, e.ch1);
        let mut g0 = GilboaTriples::new(Party::P0, e.cot_s01, e.cot_r10, [1; 32]);
        let mut g1 = GilboaTriples::new(Party::P1, e.cot_s10, e.cot_r01, [2; 32]);
        use crate::ot::gilboa::CHUNK;
        for n in [0, 1, CHUNK + 1] {
            let (x, y) = tokio::join!(
                g0.elementwise_triples(&mut ch0, n),
                g1.elementwise_triples(&mut ch1, n)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!((x.c.len(), y.c.len()), (n, n));
            for i in 0..n {
                let a = x.a[i].wrapping_add(y.a[i]);
                let b = x.b[i].wrapping_add(y.b[i]);
                assert_eq!(
                    x.c[i].wrapping_add(y.c[i]),
                    a.wrapping_mul(b),
                    "n={n} i={i}"
                );
            }
            if n > 8 {
                assert!(x.a != y.a && x.b.iter().any(|&v| v != 0));
            }
        }
    }

    /// DReLU with AND triples preprocessed from random OTs of the same kind: once from the buffer,
    /// once larger than what is left (top-up).
    async fn drelu_buffered<K: OtKind>(mut k: K) {
        let mut prg = Prg::from_u64(31);
        let xs = domain_values(64, 100, &mut prg);
        let mut e = k.ends();
        let (s01, r01) = k.rot_pair();
        let (s10, r10) = k.rot_pair();
        let mut t0 = BufferedBitTriples::new(RotBitTriples::new(Party::P0, s01, r10));
        let mut t1 = BufferedBitTriples::new(RotBitTriples::new(Party::P1, s10, r01));
        // 15 paired triples per 64-bit DReLU: enough for the first call, not the second.
        let pre = 15 * xs.len() + 40;
        let (a, b) = tokio::join!(
            t0.preprocess(&mut e.ch0, pre),
            t1.preprocess(&mut e.ch1, pre)
        );
        a.unwrap();
        b.unwrap();
        let (mut g0, mut g1) = (Prg::from_u64(1), Prg::from_u64(2));
        for round in 0..2 {
            let (s0, s1) = share_all(&xs, &mut prg);
            let (a, b) = tokio::join!(
                drelu(
                    &mut e.ch0,
                    RotRole::<K::RS, K::RR>::Sender(&mut e.rot_s01),
                    &mut t0,
                    &mut g0,
                    &s0,
                    DreluParams::exact(64)
                ),
                drelu(
                    &mut e.ch1,
                    RotRole::<K::RS, K::RR>::Receiver(&mut e.rot_r01),
                    &mut t1,
                    &mut g1,
                    &s1,
                    DreluParams::exact(64)
                )
            );
            for ((x, u), v) in xs.iter().zip(a.unwrap()).zip(b.unwrap()) {
                assert_eq!(u ^ v, (*x as i64) >= 0, "round {round} x={x:#x}");
            }
            assert_eq!(t0.available(), t1.available());
        }
        assert_eq!(t0.available(), 0);
    }

    #[tokio::test]
    async fn drelu_buffered_triples_over_dealer_and_iknp() {
        drelu_buffered(dealer(13)).await;
        drelu_buffered(iknp(14)).await;
    }

    #[tokio::test]
    async fn drelu_less_than_over_iknp() {
        drelu_less_than(iknp(1)).await;
    }

    #[tokio::test]
    async fn drelu_less_than_over_dealer() {
        drelu_less_than(dealer(2)).await;
    }

    #[tokio::test]
    async fn drelu_less_than_over_ideal() {
        drelu_less_than(ideal(3)).await;
    }

    #[tokio::test]
    async fn b2a_mux_relu_over_iknp() {
        b2a_mux_relu(iknp(4)).await;
    }

    #[tokio::test]
    async fn b2a_mux_relu_over_dealer() {
        b2a_mux_relu(dealer(5)).await;
    }

    #[tokio::test]
    async fn b2a_mux_relu_over_ideal() {
        b2a_mux_relu(ideal(6)).await;
    }

    #[tokio::test]
    async fn one_of_n_over_iknp() {
        one_of_n_all(iknp(7)).await;
    }

    #[tokio::test]
    async fn one_of_n_over_dealer() {
        one_of_n_all(dealer(8)).await;
    }

    #[tokio::test]
    async fn one_of_n_over_ideal() {
        one_of_n_all(ideal(9)).await;
    }

    #[tokio::test]
    async fn gilboa_over_iknp() {
        gilboa_triples(iknp(10)).await;
    }

    #[tokio::test]
    async fn gilboa_over_dealer() {
        gilboa_triples(dealer(11)).await;
    }

    #[tokio::test]
    async fn gilboa_over_ideal() {
        gilboa_triples(ideal(12)).await;
    }
}
