//! Elementwise Beaver triples over Z_2^64 by Gilboa's OT-based product sharing.
//!
//! **Functionality** `F_Triple^n`: the parties obtain additive shares of `n` triples
//! `(a, b, c)` with `a, b` uniform in Z_2^64 and `c = a·b mod 2^64`.
//!
//! **Protocol** (Gilboa, "Two party RSA key generation", CRYPTO'99, section 3; the
//! correlated-OT form with shortened messages of Demmler, Schneider, Zohner, "ABY", NDSS'15,
//! section III-C, and of Rathee et al., CrypTFlow2, CCS'20): each party draws its own `a_i, b_i`;
//! `c = a_0 b_0 + a_1 b_1 + a_0 b_1 + a_1 b_0`, and each cross term `a_s·b_r` is shared with 64
//! additive correlated OTs ([`crate::ot::b2a`]): for bit `j` of `b_r`, the receiver chooses with
//! that bit and the sender inputs `a_s mod 2^(64−j)`, so the receiver gets `s_j + b_{r,j}·a_s`
//! and `a_s·b_r = Σ_j 2^j·(w_j − s_j) mod 2^64`. Only the low `64 − j` bits of message `j`
//! matter, so one cross term sends `Σ_j (64 − j) = 2080` bits. Both cross terms run at once
//! (each party is a COT sender and a COT receiver), in one flight per batch.
//!
//! **Cost** per triple: 128 COTs (64 each way) and 2 × 260 = 520 bytes of messages (both
//! directions together), plus the COTs themselves (about 16 bytes each with IKNP, nothing online
//! when the dealer supplies them). Security: semi-honest, in the `F_COT` hybrid model
//! (see [`crate::ot::b2a`]).
//!
//! **Matrix triples are refused.** A triple for `(m×k)·(k×n)` by the same method needs, per
//! cross term, `k·n·64` COTs carrying `m·(64 − j)`-bit messages: about
//! `2·(k·n·64·16 + m·k·n·260)` bytes, about 40 GB for GPT-2's `128×768·768×768`
//! (DESIGN.md section 1). [`matrix_triple_by_ot`] answers such a request with
//! [`TripleError::MatrixTooExpensive`] stating that estimate; matrix triples come from the
//! dealer.

use std::future::Future;

use rand_core::Rng;

use crate::channel::Channel;
use crate::prg::{Prg, Seed};
use crate::share::Party;

use super::b2a::{Widths, acot_both, acot_recv, acot_send};
use super::{CotReceiver, CotSender, OtError};

/// Triples per batch (64 COTs each way per triple: 16384 COTs per batch).
pub const CHUNK: usize = 256;

/// Bytes of COT-extension traffic assumed per COT in cost estimates (IKNP: one 128-bit column
/// entry per OT).
pub const BYTES_PER_COT_ESTIMATE: u64 = 16;

/// Errors of triple generation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TripleError {
    /// The OT layer or the channel failed (the session is over).
    #[error(transparent)]
    Ot(#[from] OtError),
    /// A matrix triple was requested from an OT-based source.
    #[error(
        "matrix triple ({m}x{k})·({k}x{n}) by OT would cost about {gb:.1} GB ({estimated_bytes} \
         bytes) of client-server traffic (Gilboa products: {cots} COTs and {msg_bytes} message \
         bytes); use the dealer for matrix triples",
        gb = *estimated_bytes as f64 / 1e9
    )]
    MatrixTooExpensive {
        /// Rows of the left operand.
        m: usize,
        /// Inner dimension.
        k: usize,
        /// Columns of the right operand.
        n: usize,
        /// COTs needed (both cross terms).
        cots: u64,
        /// Correlated-message bytes (both cross terms).
        msg_bytes: u64,
        /// Total estimated bytes: COTs at [`BYTES_PER_COT_ESTIMATE`] plus messages.
        estimated_bytes: u64,
    },
    /// A correlation whose OT-based generation is too expensive to offer (matrix-shaped:
    /// batched matrix triples, weight and table correlations); nothing was attempted.
    #[error(
        "{what} by OT would cost about {gb:.1} GB ({estimated_bytes} bytes) of client-server \
         traffic ({cots} COTs and {msg_bytes} message bytes); use the dealer for it",
        gb = *estimated_bytes as f64 / 1e9
    )]
    TooExpensive {
        /// The refused request, in words.
        what: String,
        /// COTs needed.
        cots: u64,
        /// Correlated-message bytes.
        msg_bytes: u64,
        /// Total estimated bytes: COTs at [`BYTES_PER_COT_ESTIMATE`] plus messages.
        estimated_bytes: u64,
    },
    /// A correlation the dealer-free source does not produce.
    #[error("{what}: not available without the dealer ({reason})")]
    NotDealerFree {
        /// The refused request, in words.
        what: String,
        /// Why.
        reason: String,
    },
}

/// One party's shares of elementwise triples. `Debug` prints only the length.
#[derive(Clone, Default)]
pub struct ElementwiseTriples {
    /// Shares of `a`.
    pub a: Vec<u64>,
    /// Shares of `b`.
    pub b: Vec<u64>,
    /// Shares of `c = a·b`.
    pub c: Vec<u64>,
}

impl std::fmt::Debug for ElementwiseTriples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ElementwiseTriples({} triples, ..)", self.a.len())
    }
}

/// A source of elementwise Beaver triples over Z_2^64.
pub trait ElementwiseTripleSource: Send {
    /// Produces `n` triples (this party's shares); may talk over `ch`.
    fn elementwise_triples<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> impl Future<Output = Result<ElementwiseTriples, TripleError>> + Send;
}

/// Gilboa triples from correlated OTs in both directions (dealer-free mode).
#[derive(Debug)]
pub struct GilboaTriples<S, R> {
    party: Party,
    cot_s: S,
    cot_r: R,
    prg: Prg,
}

impl<S: CotSender, R: CotReceiver> GilboaTriples<S, R> {
    /// A source for `party`: `cot_s` pairs with the peer's COT receiver, `cot_r` with its
    /// sender; `seed` (secret, fresh) draws this party's `a` and `b` shares.
    pub fn new(party: Party, cot_s: S, cot_r: R, seed: Seed) -> Self {
        GilboaTriples {
            party,
            cot_s,
            cot_r,
            prg: Prg::expand(&seed, b"gilboa-triples"),
        }
    }

    async fn batch<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
        out: &mut ElementwiseTriples,
    ) -> Result<(), OtError> {
        let a: Vec<u64> = (0..n).map(|_| self.prg.next_u64()).collect();
        let b: Vec<u64> = (0..n).map(|_| self.prg.next_u64()).collect();
        let d: Vec<u64> = a.iter().flat_map(|&x| std::iter::repeat_n(x, 64)).collect();
        let choices: Vec<bool> = b
            .iter()
            .flat_map(|&y| (0..64).map(move |j| (y >> j) & 1 == 1))
            .collect();
        let (s, w) = acot_both(
            self.party,
            ch,
            &mut self.cot_s,
            &mut self.cot_r,
            &d,
            &choices,
            Widths::Gilboa,
            "Gilboa triples",
        )
        .await?;
        for e in 0..n {
            let mut c = a[e].wrapping_mul(b[e]);
            for j in 0..64 {
                let i = e * 64 + j;
                c = c.wrapping_add(w[i].wrapping_sub(s[i]).wrapping_shl(j as u32));
            }
            out.c.push(c);
        }
        out.a.extend(a);
        out.b.extend(b);
        Ok(())
    }
}

/// One party's shares of square pairs `(r, r²)`. `Debug` prints only the length.
#[derive(Clone, Default)]
pub struct SquarePairs {
    /// Shares of `r`.
    pub r: Vec<u64>,
    /// Shares of `r²`.
    pub r2: Vec<u64>,
}

impl std::fmt::Debug for SquarePairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SquarePairs({} pairs, ..)", self.r.len())
    }
}

impl<S: CotSender, R: CotReceiver> GilboaTriples<S, R> {
    /// `n` square pairs `(r, r²)`: `r² = r_0² + r_1² + 2·r_0·r_1`, and the one cross term is a
    /// Gilboa product in one direction (P0's COT sender with `r_0`, P1's COT receiver choosing
    /// with the bits of `r_1`): 64 COTs and 260 message bytes per pair, half a triple. One
    /// flight (P0 → P1) per batch of [`super::b2a::CHUNK`] COTs.
    pub async fn square_pairs<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<SquarePairs, TripleError> {
        let r: Vec<u64> = (0..n).map(|_| self.prg.next_u64()).collect();
        // Σ_j 2^j·(w_j − s_j) = r_0·r_1; P0 holds −Σ 2^j s_j, P1 Σ 2^j w_j.
        let (parts, sign) = if self.party == Party::P0 {
            let d: Vec<u64> = r.iter().flat_map(|&x| std::iter::repeat_n(x, 64)).collect();
            let s = acot_send(&mut self.cot_s, ch, &d, Widths::Gilboa, "square pairs").await?;
            (s, u64::MAX)
        } else {
            let choices: Vec<bool> = r
                .iter()
                .flat_map(|&y| (0..64).map(move |j| (y >> j) & 1 == 1))
                .collect();
            let w = acot_recv(
                &mut self.cot_r,
                ch,
                &choices,
                Widths::Gilboa,
                "square pairs",
            )
            .await?;
            (w, 1)
        };
        if parts.len() != n * 64 {
            return Err(
                OtError::Protocol("square pairs: wrong number of OT outputs".into()).into(),
            );
        }
        let r2 = r
            .iter()
            .enumerate()
            .map(|(e, &x)| {
                let mut cross = 0u64;
                for j in 0..64 {
                    cross = cross.wrapping_add(parts[e * 64 + j].wrapping_shl(j as u32));
                }
                // r_p² + 2·(±cross)
                x.wrapping_mul(x)
                    .wrapping_add(cross.wrapping_mul(sign).wrapping_shl(1))
            })
            .collect();
        Ok(SquarePairs { r, r2 })
    }
}

impl<S: CotSender, R: CotReceiver> ElementwiseTripleSource for GilboaTriples<S, R> {
    async fn elementwise_triples<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<ElementwiseTriples, TripleError> {
        let mut out = ElementwiseTriples {
            a: Vec::with_capacity(n),
            b: Vec::with_capacity(n),
            c: Vec::with_capacity(n),
        };
        let mut done = 0;
        // At least one batch, so a peer asking for a different count is told (count tags).
        loop {
            let m = (n - done).min(CHUNK);
            self.batch(ch, m, &mut out).await?;
            done += m;
            if done >= n {
                break;
            }
        }
        Ok(out)
    }
}

/// Estimated client-server bytes of a `(m×k)·(k×n)` matrix triple by Gilboa products:
/// `(cots, message_bytes, total_bytes)` for both cross terms, COTs at
/// [`BYTES_PER_COT_ESTIMATE`].
pub fn matrix_triple_cost(m: usize, k: usize, n: usize) -> (u64, u64, u64) {
    let (m, k, n) = (m as u128, k as u128, n as u128);
    let cots = k.saturating_mul(n).saturating_mul(2 * 64);
    let msg = m
        .saturating_mul(k)
        .saturating_mul(n)
        .saturating_mul(2 * 2080 / 8);
    let total = cots
        .saturating_mul(BYTES_PER_COT_ESTIMATE as u128)
        .saturating_add(msg);
    let c = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    (c(cots), c(msg), c(total))
}

/// Answers a request for a `(m×k)·(k×n)` matrix triple from the OT-based (dealer-free) source:
/// always [`TripleError::MatrixTooExpensive`] with the estimated cost; nothing is attempted.
pub fn matrix_triple_by_ot(
    m: usize,
    k: usize,
    n: usize,
) -> Result<std::convert::Infallible, TripleError> {
    let (cots, msg_bytes, estimated_bytes) = matrix_triple_cost(m, k, n);
    Err(TripleError::MatrixTooExpensive {
        m,
        k,
        n,
        cots,
        msg_bytes,
        estimated_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::apps_test_util::ends;

    /// The harness for any [`ElementwiseTripleSource`] pair (the dealer's provider can be
    /// checked with it too): `n` triples, then 3 more from the same sources.
    async fn check_source<T: ElementwiseTripleSource, C: Channel>(
        t0: &mut T,
        t1: &mut T,
        ch0: &mut C,
        ch1: &mut C,
        n: usize,
    ) {
        for n in [n, 3] {
            let (x, y) = tokio::join!(
                t0.elementwise_triples(ch0, n),
                t1.elementwise_triples(ch1, n)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!((x.a.len(), x.b.len(), x.c.len()), (n, n, n));
            assert_eq!((y.a.len(), y.b.len(), y.c.len()), (n, n, n));
            for i in 0..n {
                let a = x.a[i].wrapping_add(y.a[i]);
                let b = x.b[i].wrapping_add(y.b[i]);
                assert_eq!(
                    x.c[i].wrapping_add(y.c[i]),
                    a.wrapping_mul(b),
                    "n={n} i={i}"
                );
            }
            if n >= 8 {
                // Shares and values are not degenerate.
                assert!(x.a.iter().any(|&v| v != 0) && y.b.iter().any(|&v| v != 0));
                assert!(x.a != y.a);
            }
        }
    }

    async fn check(n: usize, seed: u64) {
        let e = ends(seed);
        let (mut ch0, mut ch1) = (e.ch0, e.ch1);
        let mut g0 = GilboaTriples::new(Party::P0, e.cot_s01, e.cot_r10, [1; 32]);
        let mut g1 = GilboaTriples::new(Party::P1, e.cot_s10, e.cot_r01, [2; 32]);
        check_source(&mut g0, &mut g1, &mut ch0, &mut ch1, n).await;
    }

    #[tokio::test]
    async fn gilboa_triples_satisfy_c_eq_ab() {
        for n in [0, 1, 2, CHUNK - 1, CHUNK, CHUNK + 1] {
            check(n, n as u64).await;
        }
    }

    #[tokio::test]
    async fn square_pairs_satisfy_r2_eq_r_squared() {
        let e = ends(4);
        let (mut ch0, mut ch1) = (e.ch0, e.ch1);
        let mut g0 = GilboaTriples::new(Party::P0, e.cot_s01, e.cot_r10, [1; 32]);
        let mut g1 = GilboaTriples::new(Party::P1, e.cot_s10, e.cot_r01, [2; 32]);
        // 256 pairs are exactly one B2A chunk of COTs.
        for n in [0, 1, 255, 256, 257] {
            let (x, y) = tokio::join!(g0.square_pairs(&mut ch0, n), g1.square_pairs(&mut ch1, n));
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!((x.r.len(), y.r2.len()), (n, n));
            for i in 0..n {
                let r = x.r[i].wrapping_add(y.r[i]);
                assert_eq!(
                    x.r2[i].wrapping_add(y.r2[i]),
                    r.wrapping_mul(r),
                    "n={n} i={i}"
                );
            }
            if n > 8 {
                assert!(x.r != y.r && x.r2 != y.r2);
            }
        }
    }

    #[tokio::test]
    async fn disagreeing_counts_abort() {
        let e = ends(9);
        let (mut ch0, mut ch1) = (e.ch0, e.ch1);
        let mut g0 = GilboaTriples::new(Party::P0, e.cot_s01, e.cot_r10, [1; 32]);
        let mut g1 = GilboaTriples::new(Party::P1, e.cot_s10, e.cot_r01, [2; 32]);
        let (x, y) = tokio::join!(
            g0.elementwise_triples(&mut ch0, 4),
            g1.elementwise_triples(&mut ch1, 5)
        );
        let msg = format!("{} / {}", x.unwrap_err(), y.unwrap_err());
        assert!(msg.contains("disagrees"), "{msg}");
    }

    #[test]
    fn matrix_request_is_refused_with_cost() {
        let e = matrix_triple_by_ot(128, 768, 768).unwrap_err();
        let TripleError::MatrixTooExpensive {
            estimated_bytes, ..
        } = e.clone()
        else {
            panic!("wrong error")
        };
        // 2·(768·768·64·16 + 128·768·768·260) bytes.
        assert_eq!(
            estimated_bytes,
            2 * (768 * 768 * 64 * 16 + 128 * 768 * 768 * 260)
        );
        let text = e.to_string();
        assert!(
            text.contains("40.") && text.contains("GB") && text.contains("dealer"),
            "{text}"
        );
        assert_eq!(matrix_triple_cost(0, 5, 5).1, 0);
        assert_eq!(
            matrix_triple_cost(usize::MAX, usize::MAX, usize::MAX).2,
            u64::MAX
        );
    }
}
