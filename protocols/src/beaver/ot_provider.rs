//! A dealer-free [`TripleProvider`]: elementwise triples and square pairs made by the two
//! parties themselves with correlated OTs (Gilboa products).
//!
//! **Functionality.** The same as the dealer's for the requests it serves: additive shares over
//! Z_2^64 of elementwise triples `(a, b, a·b)` ([`Request::Elementwise`]) and of square pairs
//! `(r, r²)` ([`Request::Square`]), with `a, b, r` uniform.
//!
//! **Protocol.** Gilboa's product sharing (Gilboa, "Two party RSA key generation", CRYPTO 1999)
//! on additive correlated OTs with shortened messages (Demmler, Schneider, Zohner, "ABY", NDSS
//! 2015; Rathee et al., CrypTFlow2, CCS 2020), implemented in [`crate::ot::gilboa`]: a triple
//! costs 128 COTs and 520 message bytes, a square pair 64 COTs and 260 bytes. The COTs come from
//! any [`CotSender`]/[`CotReceiver`] pair: IKNP extension ([`crate::ot::iknp`], about 16 bytes
//! per COT) for a session with no third party, or the dealer's COTs ([`crate::ot::dealer`]).
//! Semi-honest security in the `F_COT` hybrid model.
//!
//! **Refused requests.** Matrix-shaped correlations (batched matrix triples, weight masks and
//! weight triples, table triples) by the same method cost gigabytes at model shapes (DESIGN.md
//! section 1); [`OtTripleProvider`] answers them with [`TripleError::TooExpensive`] (wrapped in
//! [`BeaverError::Triple`]) stating the estimated traffic, and attempts nothing. Truncation pairs
//! need a comparison on the parties' random shares per pair and are refused with
//! [`TripleError::NotDealerFree`]. Both parties issue the same requests in the same order, so both
//! refuse the same request locally and no message is left unanswered.
//!
//! **Channel.** [`TripleProvider::fetch`] takes no channel, so the provider owns one: a channel
//! to the peer reserved for the OTs and Gilboa messages (a second connection, or an in-memory
//! pair in tests), separate from the channel the Beaver openings use.

use super::{
    BeaverError, DEFAULT_MAX_REQUEST_ELEMS, ElemTriple, Material, Request, SquarePair,
    TripleProvider,
};
use crate::channel::Channel;
use crate::ot::gilboa::{
    BYTES_PER_COT_ESTIMATE, ElementwiseTripleSource, GilboaTriples, TripleError, matrix_triple_cost,
};
use crate::ot::{CotReceiver, CotSender};
use crate::prg::Seed;
use crate::ring::RingTensor;
use crate::share::Party;

/// The dealer-free triple provider of one party (see the module docs). `Debug` prints no secrets.
pub struct OtTripleProvider<C, S, R> {
    party: Party,
    ch: C,
    gilboa: GilboaTriples<S, R>,
    max_elems: usize,
}

impl<C, S, R> std::fmt::Debug for OtTripleProvider<C, S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OtTripleProvider(party={:?}, ..)", self.party)
    }
}

impl<C: Channel, S: CotSender, R: CotReceiver> OtTripleProvider<C, S, R> {
    /// A provider for `party` talking to the peer's provider over `ch` (reserved for it):
    /// `cot_s` pairs with the peer's COT receiver, `cot_r` with the peer's COT sender; `seed`
    /// (secret, fresh) draws this party's random shares.
    pub fn new(party: Party, ch: C, cot_s: S, cot_r: R, seed: Seed) -> Self {
        OtTripleProvider {
            party,
            ch,
            gilboa: GilboaTriples::new(party, cot_s, cot_r, seed),
            max_elems: DEFAULT_MAX_REQUEST_ELEMS,
        }
    }

    /// The provider's channel (for traffic statistics).
    pub fn channel(&self) -> &C {
        &self.ch
    }
}

/// `x·y` saturating at `u64::MAX`.
fn smul(x: u64, y: u64) -> u64 {
    x.saturating_mul(y)
}

/// The estimated cost of a correlation this provider refuses: `(what, cots, message_bytes)`.
/// `None` for the requests it serves.
pub fn refused_cost(req: &Request) -> Option<(String, u64, u64)> {
    let u = |x: usize| x as u64;
    match *req {
        Request::MatMul { batch, n, k, m } => {
            let (cots, msg, _) = matrix_triple_cost(n, k, m);
            let what = if batch == 1 {
                format!("a matrix triple ({n}x{k})·({k}x{m})")
            } else {
                format!("a batch of {batch} matrix triples ({n}x{k})·({k}x{m})")
            };
            Some((what, smul(cots, u(batch)), smul(msg, u(batch))))
        }
        // One cross term of a matrix triple (P0's A times P1's mask B): half the cost.
        Request::Weight { n, k, m, .. } => {
            let (cots, msg, _) = matrix_triple_cost(n, k, m);
            Some((
                format!("a weight triple ({n}x{k})·({k}x{m})"),
                cots / 2,
                msg / 2,
            ))
        }
        Request::WeightMask { k, m, .. } => {
            let (cots, msg, _) = matrix_triple_cost(1, k, m);
            Some((
                format!("a {k}x{m} weight correlation (cost of its triples per query row)"),
                cots / 2,
                msg / 2,
            ))
        }
        // Per index, about 3·v1·v2·d products of a P1-held mask entry with a P0-held value
        // (g, h and k); the COTs on the bits of the table mask are shared by all indices. A lower
        // bound: the one-hot products a ⊗ b are not counted.
        Request::Table { t, v1, v2, d, .. } => {
            let cells = smul(smul(u(v1), u(v2)), u(d));
            Some((
                format!("a table triple for {t} indices into a ({v1}·{v2})x{d} table"),
                smul(cells, 64),
                smul(smul(smul(cells, u(t)), 3), 260),
            ))
        }
        Request::Elementwise { .. }
        | Request::Square { .. }
        | Request::Trunc { .. }
        | Request::Nonlinear(_) => None,
    }
}

fn vector(data: Vec<u64>) -> Result<RingTensor, BeaverError> {
    Ok(RingTensor::from_vec(&[data.len()], data)?)
}

impl<C: Channel, S: CotSender, R: CotReceiver> TripleProvider for OtTripleProvider<C, S, R> {
    fn party(&self) -> Party {
        self.party
    }

    async fn fetch(&mut self, req: &Request) -> Result<Material, BeaverError> {
        req.validate(self.max_elems)?;
        match *req {
            Request::Elementwise { n } => {
                let t = self.gilboa.elementwise_triples(&mut self.ch, n).await?;
                Ok(Material::Elem(ElemTriple {
                    a: vector(t.a)?,
                    b: vector(t.b)?,
                    c: vector(t.c)?,
                }))
            }
            Request::Square { n } => {
                let p = self.gilboa.square_pairs(&mut self.ch, n).await?;
                Ok(Material::Square(SquarePair {
                    r: vector(p.r)?,
                    r2: vector(p.r2)?,
                }))
            }
            Request::Trunc { n, frac_bits } => Err(TripleError::NotDealerFree {
                what: format!("{n} truncation pairs (shift {frac_bits})"),
                reason: "each pair needs shares of the top bit and of the shifted low bits of \
                         r = r_0 + r_1, i.e. comparisons on the parties' random shares; not \
                         implemented by the OT-based provider"
                    .into(),
            }
            .into()),
            Request::Nonlinear(ref r) => Err(TripleError::NotDealerFree {
                what: format!("the nonlinear-layer correlation {r:?}"),
                reason: "comparisons, multiplexers and row products take their correlations \
                         from the dealer; the OT-based provider does not make them"
                    .into(),
            }
            .into()),
            _ => {
                let (what, cots, msg_bytes) =
                    refused_cost(req).expect("every other request is refused with a cost");
                Err(TripleError::TooExpensive {
                    what,
                    cots,
                    msg_bytes,
                    estimated_bytes: smul(cots, BYTES_PER_COT_ESTIMATE).saturating_add(msg_bytes),
                }
                .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beaver::{BilinearOp, beaver, square};
    use crate::block::Block;
    use crate::channel::{FramedChannel, mem};
    use crate::ot::dealer::{DealerCotReceiver, DealerCotSender, deal_cot};
    use crate::ot::iknp::{IknpConfig, IknpReceiver, IknpSender};
    use crate::prg::Prg;
    use crate::share::{reconstruct, split};
    use rand_core::Rng;

    type IknpProvider = OtTripleProvider<FramedChannel, IknpSender, IknpReceiver>;

    fn iknp_providers(seed: u64) -> (IknpProvider, IknpProvider) {
        let mut prg = Prg::from_u64(seed);
        let cfg = IknpConfig::default();
        let (ch0, ch1) = mem::pair();
        let s01 = IknpSender::random(cfg.clone(), &mut prg);
        let r01 = IknpReceiver::new(cfg.clone(), &mut prg);
        let s10 = IknpSender::random(cfg.clone(), &mut prg);
        let r10 = IknpReceiver::new(cfg, &mut prg);
        (
            OtTripleProvider::new(Party::P0, ch0, s01, r10, prg.gen_seed()),
            OtTripleProvider::new(Party::P1, ch1, s10, r01, prg.gen_seed()),
        )
    }

    fn tensor(shape: &[usize], prg: &mut Prg) -> RingTensor {
        let n = shape.iter().product();
        RingTensor::from_vec(shape, (0..n).map(|_| prg.next_u64()).collect()).unwrap()
    }

    /// The Beaver routine multiplies and squares correctly with triples from the provider.
    async fn beaver_with<P: TripleProvider>(mut p0: P, mut p1: P) {
        let mut prg = Prg::from_u64(3);
        let (mut ch0, mut ch1) = mem::pair();
        for shape in [vec![1usize], vec![3, 50], vec![257]] {
            let x = tensor(&shape, &mut prg);
            let y = tensor(&shape, &mut prg);
            let (x0, x1) = split(&x, &mut prg);
            let (y0, y1) = split(&y, &mut prg);
            let (z0, z1) = tokio::join!(
                beaver(&mut ch0, &mut p0, BilinearOp::Mul, &x0, &y0),
                beaver(&mut ch1, &mut p1, BilinearOp::Mul, &x1, &y1)
            );
            let z = reconstruct(&z0.unwrap(), &z1.unwrap()).unwrap();
            let want: Vec<u64> = x
                .data()
                .iter()
                .zip(y.data())
                .map(|(a, b)| a.wrapping_mul(*b))
                .collect();
            assert_eq!(z.data(), &want[..], "product, shape {shape:?}");
            let (s0, s1) = tokio::join!(
                square(&mut ch0, &mut p0, &x0),
                square(&mut ch1, &mut p1, &x1)
            );
            let s = reconstruct(&s0.unwrap(), &s1.unwrap()).unwrap();
            let want: Vec<u64> = x.data().iter().map(|a| a.wrapping_mul(*a)).collect();
            assert_eq!(s.data(), &want[..], "square, shape {shape:?}");
        }
    }

    #[tokio::test]
    async fn beaver_multiplies_with_gilboa_over_iknp() {
        let (p0, p1) = iknp_providers(1);
        beaver_with(p0, p1).await;
    }

    #[tokio::test]
    async fn beaver_multiplies_with_gilboa_over_dealer_cots() {
        let mut dealer = Prg::from_u64(2);
        let mut pair = || {
            let delta = Block::random(&mut dealer);
            let (mut s, mut r) = (DealerCotSender::new(delta), DealerCotReceiver::new());
            let (a, b) = deal_cot(&mut dealer, delta, 100_000);
            s.add(a).unwrap();
            r.add(b);
            (s, r)
        };
        let (s01, r01) = pair();
        let (s10, r10) = pair();
        let (ch0, ch1) = mem::pair();
        let p0 = OtTripleProvider::new(Party::P0, ch0, s01, r10, [7; 32]);
        let p1 = OtTripleProvider::new(Party::P1, ch1, s10, r01, [8; 32]);
        beaver_with(p0, p1).await;
    }

    #[tokio::test]
    async fn matrix_shaped_requests_are_refused_with_their_cost() {
        let (mut p0, mut p1) = iknp_providers(4);
        let mut prg = Prg::from_u64(5);
        let (mut ch0, mut ch1) = mem::pair();
        let x = tensor(&[128, 768], &mut prg);
        let w = tensor(&[768, 768], &mut prg);
        let (x0, x1) = split(&x, &mut prg);
        let (w0, w1) = split(&w, &mut prg);
        let (a, b) = tokio::join!(
            beaver(&mut ch0, &mut p0, BilinearOp::MatMul, &x0, &w0),
            beaver(&mut ch1, &mut p1, BilinearOp::MatMul, &x1, &w1)
        );
        let want = 2 * (768u64 * 768 * 64 * 16 + 128 * 768 * 768 * 260);
        for e in [a.unwrap_err(), b.unwrap_err()] {
            let text = e.to_string();
            assert!(
                text.contains(&want.to_string()) && text.contains("40.5 GB"),
                "{text}"
            );
            assert!(text.contains("(128x768)·(768x768)") && text.contains("dealer"));
            assert!(matches!(
                e,
                BeaverError::Triple(TripleError::TooExpensive { .. })
            ));
        }
        // Nothing was attempted: the provider channels carried no traffic.
        assert_eq!(p0.channel().stats().total().bytes_sent, 0);
        assert_eq!(p1.channel().stats().total().bytes_sent, 0);
        // Weight, weight-mask, table and truncation requests are refused too.
        for req in [
            Request::Weight {
                id: 1,
                n: 128,
                k: 768,
                m: 3072,
            },
            Request::WeightMask {
                id: 1,
                k: 768,
                m: 3072,
            },
            Request::Table {
                id: 2,
                t: 128,
                v1: 256,
                v2: 197,
                d: 768,
            },
            Request::Trunc {
                n: 10,
                frac_bits: 16,
            },
        ] {
            let text = p0.fetch(&req).await.unwrap_err().to_string();
            let ok = text.contains("bytes") || text.contains("not available without the dealer");
            assert!(ok, "{req:?}: {text}");
        }
        // And the provider still serves elementwise triples afterwards.
        let (a, b) = tokio::join!(p0.elementwise(5), p1.elementwise(5));
        let (a, b) = (a.unwrap(), b.unwrap());
        for i in 0..5 {
            let x = a.a.data()[i].wrapping_add(b.a.data()[i]);
            let y = a.b.data()[i].wrapping_add(b.b.data()[i]);
            assert_eq!(a.c.data()[i].wrapping_add(b.c.data()[i]), x.wrapping_mul(y));
        }
    }
}
