//! Products with a matrix that P1 holds in plaintext, and table lookups built on them.
//!
//! **Functionality.** `X` is shared (`X = X_0 + X_1`, P0 holds `X_0`), `W: [k, m]` is P1's
//! private plaintext; output shares of `X W` (`X: [n, k]`).
//!
//! **Correlation** ([`super::Request::WeightMask`], [`super::Request::Weight`]): a mask
//! `B: [k, m]` fixed for the session and known to P1 only; per query a random `A: [n, k]`
//! known to P0 only and shares `C_0 + C_1 = A B` (P0 holds `C_0`, P1 holds `C_1`).
//!
//! **Protocol.**
//! - Session setup, once per weight: P1 sends `F = W - B` (`k * m` elements). P0 caches `F`.
//! - Per query: P0 sends `E = X_0 - A` (`n * k` elements, the only online message) and outputs
//!   `Z_0 = A F + C_0`; P1 outputs `Z_1 = (E + X_1) W + C_1`.
//!
//! **Correctness.** `Z_0 + Z_1 = A (W - B) + (X_0 - A + X_1) W + A B = A W - A B + X W - A W +
//! A B = X W`.
//!
//! **Security** (semi-honest, dealer not colluding): P0 sees `F = W - B` with `B` uniform and
//! unknown to P0, a one-time pad of `W` (sent once, so reused across queries without harm); P1
//! sees `E = X_0 - A` with a fresh uniform `A` per query, a one-time pad of `X_0`. All other
//! values are local or come from the dealer, whose outputs are independent of the inputs.
//! `docs/protocols/linear.md` has the message flow and the costs.
//!
//! **Table lookup** ([`ClientWeight::lookup`], [`ServerWeight::lookup`]): P0's private indices
//! `ids` against P1's table `W: [V, d]`; P0 forms the one-hot matrix `O: [T, V]` of its indices
//! and uses it as its *whole* input (`X_0 = O`, `X_1 = 0`), so only `E = O - A` travels and P1
//! skips the `X_1 W` product.

use super::{BeaverError, TripleProvider, WeightMask, WeightTriple};
use crate::channel::Channel;
use crate::ring::{RingTensor, ShapeError};
use crate::share::{AShare, Party};

fn wrong(what: &str) -> BeaverError {
    BeaverError::WrongParty(what.to_string())
}

/// P1's side of a session weight: the plaintext `W` and its id.
pub struct ServerWeight {
    id: u32,
    w: RingTensor,
}

impl std::fmt::Debug for ServerWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerWeight(id={}, shape={:?})",
            self.id,
            self.w.shape()
        )
    }
}

/// P0's side of a session weight: the masked weight `F = W - B` and its id.
pub struct ClientWeight {
    id: u32,
    f: RingTensor,
}

impl std::fmt::Debug for ClientWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientWeight(id={}, shape={:?})",
            self.id,
            self.f.shape()
        )
    }
}

fn dims2(t: &[usize], what: &str) -> Result<(usize, usize), BeaverError> {
    match *t {
        [r, c] => Ok((r, c)),
        _ => Err(BeaverError::InvalidRequest(format!(
            "{what} must be a matrix, got shape {t:?}"
        ))),
    }
}

impl ServerWeight {
    /// Session setup for weight `id` (P1): gets the mask `B` and sends `F = W - B` to P0.
    pub async fn setup<C: Channel, P: TripleProvider>(
        ch: &mut C,
        prov: &mut P,
        id: u32,
        w: RingTensor,
    ) -> Result<Self, BeaverError> {
        if prov.party() != Party::P1 {
            return Err(wrong("ServerWeight is P1's side"));
        }
        let (k, m) = dims2(w.shape(), "the weight")?;
        let b = match prov.weight_mask(id, k, m).await? {
            WeightMask::P1 { b } => b,
            WeightMask::P0 => return Err(wrong("the provider returned P0's weight mask")),
        };
        let f = w.sub(&b)?;
        ch.send_tensor(&f).await?;
        Ok(ServerWeight { id, w })
    }

    /// The weight's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The weight's shape `[k, m]`.
    pub fn shape(&self) -> &[usize] {
        self.w.shape()
    }

    /// The plaintext weight (P1's own secret).
    pub(crate) fn plain(&self) -> &RingTensor {
        &self.w
    }

    /// P1's side of one query `X W`: receives `E`, outputs `(E + X_1) W + C_1`.
    pub async fn matmul<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        x: &AShare,
    ) -> Result<AShare, BeaverError> {
        if x.party() != Party::P1 {
            return Err(wrong("the input share is not P1's"));
        }
        let (n, k) = dims2(x.shape(), "the input")?;
        self.query(ch, prov, n, k, Some(x.tensor())).await
    }

    /// P1's side of a product whose input P0 holds in full (P1's share is zero): receives `E`,
    /// outputs `E W + C_1`.
    pub async fn matmul_client_input<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        n: usize,
    ) -> Result<AShare, BeaverError> {
        self.query(ch, prov, n, self.w.shape()[0], None).await
    }

    /// P1's side of a table lookup of `n` indices (P1's table is this weight, `[V, d]`).
    pub async fn lookup<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        n: usize,
    ) -> Result<AShare, BeaverError> {
        self.matmul_client_input(ch, prov, n).await
    }

    async fn query<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        n: usize,
        k: usize,
        x1: Option<&RingTensor>,
    ) -> Result<AShare, BeaverError> {
        let (wk, m) = (self.w.shape()[0], self.w.shape()[1]);
        if k != wk {
            return Err(BeaverError::Shape(ShapeError::Mismatch {
                op: "weight matmul",
                left: vec![n, k],
                right: self.w.shape().to_vec(),
            }));
        }
        let c1 = match prov.weight_triple(self.id, n, k, m).await? {
            WeightTriple::P1 { c } => c,
            WeightTriple::P0 { .. } => return Err(wrong("the provider returned P0's triple")),
        };
        let e = ch.recv_u64s(n * k, "weight-product opening E").await?;
        let mut e = RingTensor::from_vec(&[n, k], e)?;
        if let Some(x1) = x1 {
            e.add_assign(x1)?;
        }
        let mut z = e.matmul_fast(&self.w)?;
        z.add_assign(&c1)?;
        Ok(AShare::new(Party::P1, z))
    }
}

impl ClientWeight {
    /// Session setup for weight `id` of shape `[k, m]` (P0): receives and caches `F = W - B`.
    pub async fn setup<C: Channel, P: TripleProvider>(
        ch: &mut C,
        prov: &mut P,
        id: u32,
        k: usize,
        m: usize,
    ) -> Result<Self, BeaverError> {
        if prov.party() != Party::P0 {
            return Err(wrong("ClientWeight is P0's side"));
        }
        match prov.weight_mask(id, k, m).await? {
            WeightMask::P0 => {}
            WeightMask::P1 { .. } => return Err(wrong("the provider returned P1's weight mask")),
        }
        let f = ch.recv_tensor(&[k, m], "masked weight F").await?;
        Ok(ClientWeight { id, f })
    }

    /// The weight's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The weight's shape `[k, m]`.
    pub fn shape(&self) -> &[usize] {
        self.f.shape()
    }

    /// The masked weight `F = W - B`.
    pub(crate) fn masked(&self) -> &RingTensor {
        &self.f
    }

    /// P0's side of one query `X W`: sends `E = X_0 - A`, outputs `A F + C_0`.
    pub async fn matmul<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        x: &AShare,
    ) -> Result<AShare, BeaverError> {
        if x.party() != Party::P0 {
            return Err(wrong("the input share is not P0's"));
        }
        self.matmul_own_input(ch, prov, x.tensor()).await
    }

    /// P0's side of a product whose input `x` P0 holds in full (P1 calls
    /// [`ServerWeight::matmul_client_input`]).
    pub async fn matmul_own_input<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        x: &RingTensor,
    ) -> Result<AShare, BeaverError> {
        let (n, k) = dims2(x.shape(), "the input")?;
        let (wk, m) = (self.f.shape()[0], self.f.shape()[1]);
        if k != wk {
            return Err(BeaverError::Shape(ShapeError::Mismatch {
                op: "weight matmul",
                left: x.shape().to_vec(),
                right: self.f.shape().to_vec(),
            }));
        }
        let (a, c0) = match prov.weight_triple(self.id, n, k, m).await? {
            WeightTriple::P0 { a, c } => (a, c),
            WeightTriple::P1 { .. } => return Err(wrong("the provider returned P1's triple")),
        };
        let e = x.sub(&a)?;
        ch.send_u64s(e.data()).await?;
        let mut z = a.matmul_fast(&self.f)?;
        z.add_assign(&c0)?;
        Ok(AShare::new(Party::P0, z))
    }

    /// Preprocessing for one later query with `n` rows (P0): fetches the triple and computes
    /// `A F + C_0` now, since it does not depend on the input. The online step
    /// ([`ClientWeight::matmul_prepared`]) is then one subtraction and one message. P1 calls
    /// [`ServerWeight::matmul`] as usual; the request order is the same. With a dealer, P1's
    /// request must be issued at the same time (for example with
    /// [`super::Prefetched::prefetch`]), since the dealer serves a request only when both
    /// parties have made it.
    pub async fn prepare<P: TripleProvider>(
        &self,
        prov: &mut P,
        n: usize,
    ) -> Result<PreparedQuery, BeaverError> {
        let (k, m) = (self.f.shape()[0], self.f.shape()[1]);
        let (a, c0) = match prov.weight_triple(self.id, n, k, m).await? {
            WeightTriple::P0 { a, c } => (a, c),
            WeightTriple::P1 { .. } => return Err(wrong("the provider returned P1's triple")),
        };
        let mut z = a.matmul_fast(&self.f)?;
        z.add_assign(&c0)?;
        Ok(PreparedQuery { id: self.id, a, z })
    }

    /// P0's online step of a prepared query: sends `E = X_0 - A`, outputs the precomputed
    /// `A F + C_0`.
    pub async fn matmul_prepared<C: Channel>(
        &self,
        ch: &mut C,
        prepared: PreparedQuery,
        x: &AShare,
    ) -> Result<AShare, BeaverError> {
        if x.party() != Party::P0 {
            return Err(wrong("the input share is not P0's"));
        }
        if prepared.id != self.id || prepared.a.shape() != x.shape() {
            return Err(BeaverError::Shape(ShapeError::Mismatch {
                op: "prepared weight matmul",
                left: x.shape().to_vec(),
                right: prepared.a.shape().to_vec(),
            }));
        }
        let e = x.tensor().sub(&prepared.a)?;
        ch.send_u64s(e.data()).await?;
        Ok(AShare::new(Party::P0, prepared.z))
    }

    /// P0's side of a table lookup: shares of rows `ids` of P1's table (this weight, `[V, d]`),
    /// as a `[ids.len(), d]` share. Neither the indices nor the table are revealed.
    pub async fn lookup<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        ids: &[usize],
    ) -> Result<AShare, BeaverError> {
        let v = self.f.shape()[0];
        let mut onehot = RingTensor::zeros(&[ids.len(), v]);
        for (t, &id) in ids.iter().enumerate() {
            if id >= v {
                return Err(BeaverError::InvalidRequest(format!(
                    "index {id} at position {t} is outside the table of {v} rows"
                )));
            }
            onehot.data_mut()[t * v + id] = 1;
        }
        self.matmul_own_input(ch, prov, &onehot).await
    }
}

/// P0's preprocessed part of one server-weight query (see [`ClientWeight::prepare`]). `Debug`
/// prints only the shape.
pub struct PreparedQuery {
    id: u32,
    a: RingTensor,
    z: RingTensor,
}

impl std::fmt::Debug for PreparedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PreparedQuery(id={}, input shape={:?})",
            self.id,
            self.a.shape()
        )
    }
}

/// Adds a tensor that P1 holds in plaintext (for example positional embeddings) to a shared
/// value: P1 adds it to its share, P0's share is unchanged. No communication.
pub fn add_server_plain(x: &AShare, p: &RingTensor) -> Result<AShare, BeaverError> {
    if x.shape() != p.shape() {
        return Err(BeaverError::Shape(ShapeError::Mismatch {
            op: "add_server_plain",
            left: x.shape().to_vec(),
            right: p.shape().to_vec(),
        }));
    }
    Ok(match x.party() {
        Party::P0 => x.clone(),
        Party::P1 => AShare::new(Party::P1, x.tensor().add(p)?),
    })
}

/// Fast 2-D matrix product for ring tensors (the blocked kernel).
trait MatmulFast {
    fn matmul_fast(&self, other: &RingTensor) -> Result<RingTensor, ShapeError>;
}

impl MatmulFast for RingTensor {
    fn matmul_fast(&self, other: &RingTensor) -> Result<RingTensor, ShapeError> {
        match (self.shape(), other.shape()) {
            (&[n, k], &[k2, m]) if k == k2 => {
                let out = super::kernel::matmul(self.data(), other.data(), n, k, m);
                RingTensor::from_vec(&[n, m], out)
            }
            _ => Err(ShapeError::Mismatch {
                op: "matmul",
                left: self.shape().to_vec(),
                right: other.shape().to_vec(),
            }),
        }
    }
}
