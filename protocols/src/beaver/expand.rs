//! Seed expansion and correction generation, shared by the dealer and the ideal dealer.
//!
//! Per session the dealer draws one seed per party. For request number `i`, party `p` expands
//! `req_seed(s_p, i)` into independent component streams (component 0, 1, 2 = the first,
//! second, third random tensor of the request); P1's session weight masks come from
//! `weight_prg(s_1, id)`. The dealer derives both parties' streams, and the only values that
//! cannot come from a seed (P1's share of a product, of a square, of the truncation pair's bits)
//! are sent to P1 as a *correction* stream, generated here in pieces of bounded size.

use std::collections::HashMap;

use rand_core::Rng;

use super::kernel::{contract_first, contract_mid, matmul, vecmat};
use super::nl::{self, NlGen, NlRequest};
use super::{
    BeaverError, ElemTriple, MatTriple, Material, Request, SquarePair, TableTriple, TruncPair,
    WeightMask, WeightTriple,
};
use crate::prg::{Prg, Seed};
use crate::ring::RingTensor;
use crate::share::Party;

const LOW63: u64 = (1u64 << 63) - 1;

fn req_seed(seed: &Seed, counter: u64) -> Seed {
    let mut label = b"privlm/beaver/request/".to_vec();
    label.extend_from_slice(&counter.to_le_bytes());
    Prg::expand(seed, &label).gen_seed()
}

pub(crate) fn weight_prg(seed: &Seed, id: u32) -> Prg {
    let mut label = b"privlm/beaver/weight/".to_vec();
    label.extend_from_slice(&id.to_le_bytes());
    Prg::expand(seed, &label)
}

fn fill(prg: &mut Prg, n: usize) -> Vec<u64> {
    (0..n).map(|_| prg.next_u64()).collect()
}

fn tensor(shape: &[usize], data: Vec<u64>) -> RingTensor {
    RingTensor::from_vec(shape, data).expect("length computed from the shape")
}

/// The component streams of one request for one party.
pub(crate) struct Streams(Seed);

impl Streams {
    pub(crate) fn new(seed: &Seed, counter: u64) -> Self {
        Streams(req_seed(seed, counter))
    }
    pub(crate) fn get(&self, component: u64) -> Prg {
        Prg::derive(&self.0, component)
    }
}

/// Session bookkeeping both the dealer and the ideal dealer keep: registered weight shapes.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    weights: HashMap<u32, (usize, usize)>,
}

impl Registry {
    /// Checks a request against the session state and records weight registrations.
    pub(crate) fn admit(&mut self, req: &Request) -> Result<(), BeaverError> {
        match *req {
            // A second mask for the same id would be the same B: P0 would receive W - B and
            // W' - B and learn W - W'. Each id is registered once per session.
            Request::WeightMask { id, k, m } => match self.weights.get(&id) {
                Some(&(k0, m0)) => Err(BeaverError::InvalidRequest(format!(
                    "weight {id} is already registered in this session (as {k0}x{m0}); \
                     registering it again (as {k}x{m}) would reuse its mask"
                ))),
                None => {
                    self.weights.insert(id, (k, m));
                    Ok(())
                }
            },
            Request::Table { id, v1, v2, d, .. } => match self.weights.get(&id) {
                Some(&(k0, m0)) if (k0, m0) == (v1 * v2, d) => Ok(()),
                Some(&(k0, m0)) => Err(BeaverError::InvalidRequest(format!(
                    "table {id} was registered as {k0}x{m0}, a lookup asks for {}x{d}",
                    v1 * v2
                ))),
                None => Err(BeaverError::InvalidRequest(format!(
                    "table {id} has no session mask (request WeightMask first)"
                ))),
            },
            Request::Weight { id, k, m, .. } => match self.weights.get(&id) {
                Some(&(k0, m0)) if (k0, m0) == (k, m) => Ok(()),
                Some(&(k0, m0)) => Err(BeaverError::InvalidRequest(format!(
                    "weight {id} was registered as {k0}x{m0}, a triple asks for {k}x{m}"
                ))),
                None => Err(BeaverError::InvalidRequest(format!(
                    "weight {id} has no session mask (request WeightMask first)"
                ))),
            },
            Request::Nonlinear(NlRequest::ScaleVec { id, d, .. }) => match self.weights.get(&id) {
                Some(&(1, m0)) if m0 == d => Ok(()),
                Some(&(k0, m0)) => Err(BeaverError::InvalidRequest(format!(
                    "vector {id} was registered as {k0}x{m0}, a vector product asks for 1x{d}"
                ))),
                None => Err(BeaverError::InvalidRequest(format!(
                    "vector {id} has no session mask (request WeightMask {{ k: 1, m: {d} }} first)"
                ))),
            },
            _ => Ok(()),
        }
    }
}

/// Builds `party`'s material for request number `counter` from its seed and the correction the
/// dealer sent (`correction.len() == req.correction_len(party)`).
pub(crate) fn expand_local(
    party: Party,
    seed: &Seed,
    counter: u64,
    req: &Request,
    correction: Vec<u64>,
) -> Material {
    debug_assert_eq!(correction.len(), req.correction_len(party));
    let st = Streams::new(seed, counter);
    let p0 = party == Party::P0;
    match *req {
        Request::Elementwise { n } => {
            let a = fill(&mut st.get(0), n);
            let b = fill(&mut st.get(1), n);
            let c = if p0 {
                fill(&mut st.get(2), n)
            } else {
                correction
            };
            Material::Elem(ElemTriple {
                a: tensor(&[n], a),
                b: tensor(&[n], b),
                c: tensor(&[n], c),
            })
        }
        Request::MatMul { batch, n, k, m } => {
            let a = fill(&mut st.get(0), batch * n * k);
            let b = fill(&mut st.get(1), batch * k * m);
            let c = if p0 {
                fill(&mut st.get(2), batch * n * m)
            } else {
                correction
            };
            Material::Mat(MatTriple {
                a: tensor(&[batch, n, k], a),
                b: tensor(&[batch, k, m], b),
                c: tensor(&[batch, n, m], c),
            })
        }
        Request::Square { n } => {
            let r = fill(&mut st.get(0), n);
            let r2 = if p0 {
                fill(&mut st.get(2), n)
            } else {
                correction
            };
            Material::Square(SquarePair {
                r: tensor(&[n], r),
                r2: tensor(&[n], r2),
            })
        }
        Request::Trunc { n, .. } => {
            let r = fill(&mut st.get(0), n);
            let (t, s) = if p0 {
                (fill(&mut st.get(1), n), fill(&mut st.get(2), n))
            } else {
                let t = correction.iter().step_by(2).copied().collect();
                let s = correction.iter().skip(1).step_by(2).copied().collect();
                (t, s)
            };
            Material::Trunc(TruncPair {
                r: tensor(&[n], r),
                r_msb: tensor(&[n], t),
                r_low_shifted: tensor(&[n], s),
            })
        }
        Request::WeightMask { id, k, m } => Material::WeightMask(if p0 {
            WeightMask::P0
        } else {
            WeightMask::P1 {
                b: tensor(&[k, m], fill(&mut weight_prg(seed, id), k * m)),
            }
        }),
        Request::Weight { n, k, m, .. } => Material::Weight(if p0 {
            WeightTriple::P0 {
                a: tensor(&[n, k], fill(&mut st.get(0), n * k)),
                c: tensor(&[n, m], fill(&mut st.get(2), n * m)),
            }
        } else {
            WeightTriple::P1 {
                c: tensor(&[n, m], correction),
            }
        }),
        Request::Nonlinear(ref r) => {
            Material::Nonlinear(nl::expand_local(party, &st, r, correction))
        }
        Request::Table { t, v1, v2, d, .. } => Material::Table(if p0 {
            TableTriple::P0 {
                a: tensor(&[t, v1], fill(&mut st.get(0), t * v1)),
                b: tensor(&[t, v2], fill(&mut st.get(1), t * v2)),
                g: tensor(&[t, v1, d], fill(&mut st.get(2), t * v1 * d)),
                h: tensor(&[t, v2, d], fill(&mut st.get(3), t * v2 * d)),
                k: tensor(&[t, d], fill(&mut st.get(4), t * d)),
            }
        } else {
            // Per index: g (v1 d), h (v2 d), k (d).
            let per = (v1 + v2 + 1) * d;
            let (mut g, mut h, mut k) = (
                Vec::with_capacity(t * v1 * d),
                Vec::with_capacity(t * v2 * d),
                Vec::with_capacity(t * d),
            );
            for c in correction.chunks_exact(per) {
                g.extend_from_slice(&c[..v1 * d]);
                h.extend_from_slice(&c[v1 * d..(v1 + v2) * d]);
                k.extend_from_slice(&c[(v1 + v2) * d..]);
            }
            TableTriple::P1 {
                g: tensor(&[t, v1, d], g),
                h: tensor(&[t, v2, d], h),
                k: tensor(&[t, d], k),
            }
        }),
    }
}

enum Kind {
    Elem {
        a0: Prg,
        b0: Prg,
        c0: Prg,
        a1: Prg,
        b1: Prg,
    },
    Square {
        r0: Prg,
        q0: Prg,
        r1: Prg,
    },
    Trunc {
        r0: Prg,
        t0: Prg,
        s0: Prg,
        r1: Prg,
        f: u32,
    },
    Mat {
        a0: Prg,
        b0: Prg,
        c0: Prg,
        a1: Prg,
        b1: Prg,
        n: usize,
        k: usize,
        m: usize,
    },
    Weight {
        a: Prg,
        c0: Prg,
        b: Vec<u64>,
        n: usize,
        k: usize,
        m: usize,
    },
    Table {
        a: Prg,
        b: Prg,
        g0: Prg,
        h0: Prg,
        k0: Prg,
        mask: Vec<u64>,
        v1: usize,
        v2: usize,
        d: usize,
    },
    Nonlinear(Box<NlGen>),
    Nothing,
}

/// The dealer's generator of P1's correction stream for one request, produced in pieces.
pub(crate) struct CorrectionGen {
    kind: Kind,
    /// Correction elements still to produce.
    remaining: usize,
}

impl CorrectionGen {
    /// The generator for request number `counter` under the session seeds `seeds[p]`.
    pub(crate) fn new(seeds: &[Seed; 2], counter: u64, req: &Request) -> Self {
        let s0 = Streams::new(&seeds[0], counter);
        let s1 = Streams::new(&seeds[1], counter);
        let remaining = req.correction_len(Party::P1);
        let kind = match *req {
            Request::Elementwise { .. } => Kind::Elem {
                a0: s0.get(0),
                b0: s0.get(1),
                c0: s0.get(2),
                a1: s1.get(0),
                b1: s1.get(1),
            },
            Request::Square { .. } => Kind::Square {
                r0: s0.get(0),
                q0: s0.get(2),
                r1: s1.get(0),
            },
            Request::Trunc { frac_bits, .. } => Kind::Trunc {
                r0: s0.get(0),
                t0: s0.get(1),
                s0: s0.get(2),
                r1: s1.get(0),
                f: frac_bits,
            },
            Request::MatMul { n, k, m, .. } => Kind::Mat {
                a0: s0.get(0),
                b0: s0.get(1),
                c0: s0.get(2),
                a1: s1.get(0),
                b1: s1.get(1),
                n,
                k,
                m,
            },
            Request::Weight { id, n, k, m } => Kind::Weight {
                a: s0.get(0),
                c0: s0.get(2),
                b: fill(&mut weight_prg(&seeds[1], id), k * m),
                n,
                k,
                m,
            },
            Request::Table { id, v1, v2, d, .. } => Kind::Table {
                a: s0.get(0),
                b: s0.get(1),
                g0: s0.get(2),
                h0: s0.get(3),
                k0: s0.get(4),
                mask: fill(&mut weight_prg(&seeds[1], id), v1 * v2 * d),
                v1,
                v2,
                d,
            },
            Request::WeightMask { .. } => Kind::Nothing,
            Request::Nonlinear(ref r) => {
                Kind::Nonlinear(Box::new(NlGen::new(&s0, &s1, &seeds[1], r)))
            }
        };
        CorrectionGen { kind, remaining }
    }

    /// The next piece of the correction stream: at most `max_elems` elements for the
    /// elementwise kinds, one whole product (`n * m` elements) for the matrix kinds. `None`
    /// when the stream is complete.
    pub(crate) fn next_piece(&mut self, max_elems: usize) -> Option<Vec<u64>> {
        if self.remaining == 0 {
            return None;
        }
        let max_elems = max_elems.max(2);
        let piece = match &mut self.kind {
            Kind::Elem { a0, b0, c0, a1, b1 } => {
                let len = self.remaining.min(max_elems);
                (0..len)
                    .map(|_| {
                        let a = a0.next_u64().wrapping_add(a1.next_u64());
                        let b = b0.next_u64().wrapping_add(b1.next_u64());
                        a.wrapping_mul(b).wrapping_sub(c0.next_u64())
                    })
                    .collect()
            }
            Kind::Square { r0, q0, r1 } => {
                let len = self.remaining.min(max_elems);
                (0..len)
                    .map(|_| {
                        let r = r0.next_u64().wrapping_add(r1.next_u64());
                        r.wrapping_mul(r).wrapping_sub(q0.next_u64())
                    })
                    .collect()
            }
            Kind::Trunc { r0, t0, s0, r1, f } => {
                let pairs = (self.remaining / 2).min(max_elems / 2);
                let mut out = Vec::with_capacity(2 * pairs);
                for _ in 0..pairs {
                    let r = r0.next_u64().wrapping_add(r1.next_u64());
                    let t = r >> 63;
                    let s = (r & LOW63) >> *f;
                    out.push(t.wrapping_sub(t0.next_u64()));
                    out.push(s.wrapping_sub(s0.next_u64()));
                }
                out
            }
            Kind::Mat {
                a0,
                b0,
                c0,
                a1,
                b1,
                n,
                k,
                m,
            } => {
                let (n, k, m) = (*n, *k, *m);
                let a: Vec<u64> = (0..n * k)
                    .map(|_| a0.next_u64().wrapping_add(a1.next_u64()))
                    .collect();
                let b: Vec<u64> = (0..k * m)
                    .map(|_| b0.next_u64().wrapping_add(b1.next_u64()))
                    .collect();
                let mut c = matmul(&a, &b, n, k, m);
                for v in c.iter_mut() {
                    *v = v.wrapping_sub(c0.next_u64());
                }
                c
            }
            Kind::Weight { a, c0, b, n, k, m } => {
                let av = fill(a, *n * *k);
                let mut c = matmul(&av, b, *n, *k, *m);
                for v in c.iter_mut() {
                    *v = v.wrapping_sub(c0.next_u64());
                }
                c
            }
            Kind::Table {
                a,
                b,
                g0,
                h0,
                k0,
                mask,
                v1,
                v2,
                d,
            } => {
                // One index per piece: g = B x_2 b, h = B x_1 a, k = a^T g, minus P0's shares.
                let (v1, v2, d) = (*v1, *v2, *d);
                let av = fill(a, v1);
                let bv = fill(b, v2);
                let g = contract_mid(mask, v1, v2, d, &bv);
                let h = contract_first(mask, v1, v2, d, &av);
                let k = vecmat(&av, &g, d);
                let mut out = Vec::with_capacity((v1 + v2 + 1) * d);
                out.extend(g.iter().map(|&x| x.wrapping_sub(g0.next_u64())));
                out.extend(h.iter().map(|&x| x.wrapping_sub(h0.next_u64())));
                out.extend(k.iter().map(|&x| x.wrapping_sub(k0.next_u64())));
                out
            }
            Kind::Nonlinear(g) => g.next_piece(max_elems).unwrap_or_default(),
            Kind::Nothing => Vec::new(),
        };
        self.remaining -= piece.len();
        Some(piece)
    }

    /// Produces the whole correction stream at once (the ideal dealer's shortcut).
    #[cfg(any(test, feature = "insecure-ideal"))]
    pub(crate) fn collect_all(mut self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.remaining);
        while let Some(p) = self.next_piece(1 << 16) {
            if p.is_empty() {
                break;
            }
            out.extend_from_slice(&p);
        }
        out
    }
}
