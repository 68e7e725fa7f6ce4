//! One Beaver routine for any bilinear operation, and squaring with square pairs.
//!
//! For a bilinear `op` and a triple `(a, b, c = op(a, b))` shaped like the operation, party `p`
//! holding `x_p, y_p, a_p, b_p, c_p`:
//! 1. sends `d_p = x_p - a_p` and `e_p = y_p - b_p` (all products of one call in **one** message);
//! 2. receives the peer's and opens `D = x - a`, `E = y - b`;
//! 3. outputs `z_p = c_p + op(D, y_p) + op(a_p, E)`.
//!
//! Summed over both parties: `op(D, y) + op(a, E) + op(a, b) = op(D, E) + op(D, b) + op(a, E) +
//! op(a, b) = op(x, y)`, by bilinearity. `D` and `E` are uniformly random to each party because
//! `a` and `b` are (Beaver 1991). Cost: one round, `|x| + |y|` elements each way.

use super::kernel::matmul_acc;
use super::{BeaverError, Request, TripleProvider};
use crate::channel::Channel;
use crate::ring::{RingTensor, ShapeError};
use crate::share::{AShare, Party};

/// A bilinear operation the Beaver routine computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BilinearOp {
    /// Elementwise product of two tensors of the same shape.
    Mul,
    /// Matrix product `[n, k] x [k, m] -> [n, m]`.
    MatMul,
    /// Batched matrix product `[h, n, k] x [h, k, m] -> [h, n, m]` (one product per head).
    BatchMatMul,
}

impl BilinearOp {
    fn mismatch(self, x: &[usize], y: &[usize]) -> BeaverError {
        BeaverError::Shape(ShapeError::Mismatch {
            op: match self {
                BilinearOp::Mul => "beaver mul",
                BilinearOp::MatMul => "beaver matmul",
                BilinearOp::BatchMatMul => "beaver batched matmul",
            },
            left: x.to_vec(),
            right: y.to_vec(),
        })
    }

    /// The triple request for operands of shapes `x` and `y`.
    pub fn request(self, x: &[usize], y: &[usize]) -> Result<Request, BeaverError> {
        match (self, x, y) {
            (BilinearOp::Mul, _, _) if x == y => Ok(Request::Elementwise {
                n: x.iter().product(),
            }),
            (BilinearOp::MatMul, &[n, k], &[k2, m]) if k == k2 => {
                Ok(Request::MatMul { batch: 1, n, k, m })
            }
            (BilinearOp::BatchMatMul, &[h, n, k], &[h2, k2, m]) if h == h2 && k == k2 => {
                Ok(Request::MatMul { batch: h, n, k, m })
            }
            _ => Err(self.mismatch(x, y)),
        }
    }

    /// The shape of `op(x, y)` for operands of shapes `x` and `y`.
    pub fn out_shape(self, x: &[usize], y: &[usize]) -> Result<Vec<usize>, BeaverError> {
        Ok(match self.request(x, y)? {
            Request::MatMul { n, m, .. } if self == BilinearOp::MatMul => vec![n, m],
            Request::MatMul { batch, n, m, .. } => vec![batch, n, m],
            _ => x.to_vec(),
        })
    }

    /// The plaintext operation on ring tensors (the reference the tests compare with).
    pub fn apply(self, x: &RingTensor, y: &RingTensor) -> Result<RingTensor, BeaverError> {
        let req = self.request(x.shape(), y.shape())?;
        match (self, req) {
            (BilinearOp::Mul, _) => Ok(x.mul_elem(y)?),
            (_, Request::MatMul { batch, n, k, m }) => {
                let mut out = vec![0u64; batch * n * m];
                for h in 0..batch {
                    matmul_acc(
                        &x.data()[h * n * k..(h + 1) * n * k],
                        &y.data()[h * k * m..(h + 1) * k * m],
                        &mut out[h * n * m..(h + 1) * n * m],
                        n,
                        k,
                        m,
                    );
                }
                let shape = self.out_shape(x.shape(), y.shape())?;
                Ok(RingTensor::from_vec(&shape, out)?)
            }
            _ => unreachable!("request() returns MatMul for the matrix ops"),
        }
    }
}

fn check_party(expected: Party, s: &AShare) -> Result<(), BeaverError> {
    if s.party() != expected {
        return Err(BeaverError::WrongParty(format!(
            "the provider serves {expected:?} but a share belongs to {:?}",
            s.party()
        )));
    }
    Ok(())
}

/// Shares of `op(x, y)` for one bilinear operation (see the module docs).
pub async fn beaver<C: Channel, P: TripleProvider>(
    ch: &mut C,
    prov: &mut P,
    op: BilinearOp,
    x: &AShare,
    y: &AShare,
) -> Result<AShare, BeaverError> {
    let mut out = beaver_many(ch, prov, &[(op, x, y)]).await?;
    Ok(out.pop().expect("one product in, one out"))
}

/// Shares of `op_i(x_i, y_i)` for several bilinear operations with all openings in one message
/// per direction (one round in total).
pub async fn beaver_many<C: Channel, P: TripleProvider>(
    ch: &mut C,
    prov: &mut P,
    items: &[(BilinearOp, &AShare, &AShare)],
) -> Result<Vec<AShare>, BeaverError> {
    let party = prov.party();
    let mut triples = Vec::with_capacity(items.len());
    for &(op, x, y) in items {
        check_party(party, x)?;
        check_party(party, y)?;
        let req = op.request(x.shape(), y.shape())?;
        let (a, b, c) = match req {
            Request::Elementwise { n } => {
                let t = prov.elementwise(n).await?;
                (t.a, t.b, t.c)
            }
            Request::MatMul { batch, n, k, m } => {
                let t = prov.matmul(batch, n, k, m).await?;
                (t.a, t.b, t.c)
            }
            _ => unreachable!("bilinear ops request triples only"),
        };
        // Give the triple the operands' shapes (and the output's for c).
        let out_shape = op.out_shape(x.shape(), y.shape())?;
        triples.push((
            a.reshape(x.shape())?,
            b.reshape(y.shape())?,
            c.reshape(&out_shape)?,
        ));
    }
    // 1. One message with every d_p and e_p.
    let mut masked = Vec::new();
    for (&(_, x, y), (a, b, _)) in items.iter().zip(&triples) {
        masked.extend(
            x.tensor()
                .data()
                .iter()
                .zip(a.data())
                .map(|(&v, &r)| v.wrapping_sub(r)),
        );
        masked.extend(
            y.tensor()
                .data()
                .iter()
                .zip(b.data())
                .map(|(&v, &r)| v.wrapping_sub(r)),
        );
    }
    ch.send_u64s(&masked).await?;
    // 2. The peer's, and the openings.
    let peer = ch.recv_u64s(masked.len(), "beaver openings").await?;
    let mut off = 0;
    let mut out = Vec::with_capacity(items.len());
    for (&(op, x, y), (a, _b, c)) in items.iter().zip(&triples) {
        let nx = x.tensor().len();
        let ny = y.tensor().len();
        let open = |lo: usize, len: usize| -> Vec<u64> {
            masked[lo..lo + len]
                .iter()
                .zip(&peer[lo..lo + len])
                .map(|(&u, &v)| u.wrapping_add(v))
                .collect()
        };
        let d = RingTensor::from_vec(x.shape(), open(off, nx))?;
        let e = RingTensor::from_vec(y.shape(), open(off + nx, ny))?;
        off += nx + ny;
        // 3. z_p = c_p + op(D, y_p) + op(a_p, E).
        let mut z = c.clone();
        z.add_assign(&op.apply(&d, y.tensor())?)?;
        z.add_assign(&op.apply(a, &e)?)?;
        out.push(AShare::new(party, z));
    }
    Ok(out)
}

/// Shares of `x ⊙ x` from a square pair `(r, r^2)`: open `D = x - r` (one round, `|x|` elements
/// each way) and output `r2_p + 2 D r_p (+ D^2 for P0)`.
pub async fn square<C: Channel, P: TripleProvider>(
    ch: &mut C,
    prov: &mut P,
    x: &AShare,
) -> Result<AShare, BeaverError> {
    let party = prov.party();
    check_party(party, x)?;
    let n = x.tensor().len();
    let pair = prov.square_pairs(n).await?;
    let masked: Vec<u64> = x
        .tensor()
        .data()
        .iter()
        .zip(pair.r.data())
        .map(|(&v, &r)| v.wrapping_sub(r))
        .collect();
    ch.send_u64s(&masked).await?;
    let peer = ch.recv_u64s(n, "square opening").await?;
    let out: Vec<u64> = (0..n)
        .map(|i| {
            let d = masked[i].wrapping_add(peer[i]);
            let mut z =
                pair.r2.data()[i].wrapping_add(d.wrapping_mul(pair.r.data()[i]).wrapping_mul(2));
            if party == Party::P0 {
                z = z.wrapping_add(d.wrapping_mul(d));
            }
            z
        })
        .collect();
    Ok(AShare::new(party, RingTensor::from_vec(x.shape(), out)?))
}
