//! Factored table lookup: P0's private indices into P1's private table, with `v1 + v2`
//! elements per index online instead of `V` (the one-hot path of [`super::weight`]).
//!
//! **Functionality.** P0 holds indices `ids` (each `< v1 * v2`), P1 holds a table
//! `W: [v1 * v2, d]` (pad a `[V, d]` table with zero rows to `v1 * v2 >= V`, see
//! [`factor_dims`]); output shares of the rows `W[ids]`, revealing neither.
//!
//! **Idea.** Write `id = v2 * hi + lo` and view `W` as `T: [v1, v2, d]`; then
//! `W[id] = T(u, v) = sum_ij u_i v_j T[i, j, :]` with `u = onehot(hi)`, `v = onehot(lo)`, a
//! trilinear form. With masks `a: [v1]`, `b: [v2]` known to P0 only, P0 sends
//! `E_u = u - a`, `E_v = v - b`, and by multilinearity
//! `T(u, v) = T(E_u, E_v) + E_u^T (T x_2 b) + E_v^T (T x_1 a) + T(a, b)`.
//! With the session mask `F = T - B` that P0 already holds (the table's [`super::Request::WeightMask`]),
//! each `T`-term splits into an `F`-term P0 computes and a `B`-term the dealer shares
//! (it knows `a`, `b` and `B`, no input): see [`super::Request::Table`]. P1 computes
//! `T(E_u, E_v)` itself.
//!
//! - P0: `z_0 = E_u^T (F x_2 b + g_0) + E_v^T (F x_1 a + h_0) + F(a, b) + k_0`
//! - P1: `z_1 = T(E_u, E_v) + E_u^T g_1 + E_v^T h_1 + k_1`
//!
//! Sum: `T(E_u, E_v) + E_u^T (T x_2 b) + E_v^T (T x_1 a) + T(a, b) = T(u, v)`.
//! Security: `E_u`, `E_v` are one-time pads of the one-hot vectors (fresh `a`, `b` per index);
//! P1's dealer shares are padded by P0's uniform shares. Costs per index: `(v1 + v2) * 8` bytes
//! P0 to P1 (3.6 KB for GPT-2's vocabulary instead of 402 KB), `(v1 + v2 + 1) d * 8` bytes from
//! the dealer to P1; local work `2 v1 v2 d` multiply-adds for P0 and the dealer, `v1 v2 d` for P1.
//! `docs/protocols/linear.md` section 5 compares it with the one-hot path.

use super::kernel::{contract_first, contract_mid, vecmat};
use super::weight::{ClientWeight, ServerWeight};
use super::{BeaverError, TableTriple, TripleProvider};
use crate::channel::Channel;
use crate::ring::RingTensor;
use crate::share::{AShare, Party};

/// A factorization `(v1, v2)` of a table of `v` rows: `v1 = ceil(sqrt(v))`,
/// `v2 = ceil(v / v1)`, so `v1 * v2 >= v` with little padding (GPT-2: 225 x 224 = 50400).
pub fn factor_dims(v: usize) -> (usize, usize) {
    let v = v.max(1);
    let mut v1 = (v as f64).sqrt().ceil() as usize;
    while v1 * v1 < v {
        v1 += 1;
    }
    while v1 > 1 && (v1 - 1) * (v1 - 1) >= v {
        v1 -= 1;
    }
    (v1, v.div_ceil(v1))
}

fn check_dims(shape: &[usize], v1: usize, v2: usize) -> Result<usize, BeaverError> {
    match *shape {
        [rows, d] if rows == v1 * v2 => Ok(d),
        _ => Err(BeaverError::InvalidRequest(format!(
            "a factored lookup with {v1} x {v2} needs a table of {} rows, this one is {shape:?} \
             (pad it with zero rows)",
            v1 * v2
        ))),
    }
}

fn wrong(what: &str) -> BeaverError {
    BeaverError::WrongParty(what.to_string())
}

/// Adds `sum_i e[i] * (m[i, :] + n[i, :])` over rows of width `d` to `acc`.
fn add_masked_rows(acc: &mut [u64], e: &[u64], m: &[u64], n: Option<&[u64]>, d: usize) {
    for (i, &x) in e.iter().enumerate() {
        for r in 0..d {
            let mut v = m[i * d + r];
            if let Some(n) = n {
                v = v.wrapping_add(n[i * d + r]);
            }
            acc[r] = acc[r].wrapping_add(x.wrapping_mul(v));
        }
    }
}

impl ClientWeight {
    /// P0's side of a factored lookup of `ids` (see the module docs); this weight must be
    /// `[v1 * v2, d]`. Returns shares of `[ids.len(), d]`.
    pub async fn lookup_factored<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        ids: &[usize],
        v1: usize,
        v2: usize,
    ) -> Result<AShare, BeaverError> {
        let d = check_dims(self.shape(), v1, v2)?;
        let t = ids.len();
        for (pos, &id) in ids.iter().enumerate() {
            if id >= v1 * v2 {
                return Err(BeaverError::InvalidRequest(format!(
                    "index {id} at position {pos} is outside the table of {} rows",
                    v1 * v2
                )));
            }
        }
        let (a, b, g, h, k) = match prov.table_triple(self.id(), t, v1, v2, d).await? {
            TableTriple::P0 { a, b, g, h, k } => (a, b, g, h, k),
            TableTriple::P1 { .. } => return Err(wrong("the provider returned P1's triple")),
        };
        // E_u (t x v1) then E_v (t x v2), one message.
        let mut e: Vec<u64> = a.data().iter().map(|x| x.wrapping_neg()).collect();
        let mut ev: Vec<u64> = b.data().iter().map(|x| x.wrapping_neg()).collect();
        for (i, &id) in ids.iter().enumerate() {
            e[i * v1 + id / v2] = e[i * v1 + id / v2].wrapping_add(1);
            ev[i * v2 + id % v2] = ev[i * v2 + id % v2].wrapping_add(1);
        }
        let split = e.len();
        e.extend_from_slice(&ev);
        ch.send_u64s(&e).await?;
        let (eu, ev) = e.split_at(split);
        let f = self.masked().data();
        let mut out = Vec::with_capacity(t * d);
        for i in 0..t {
            let ai = &a.data()[i * v1..(i + 1) * v1];
            let bi = &b.data()[i * v2..(i + 1) * v2];
            let fb = contract_mid(f, v1, v2, d, bi);
            let fa = contract_first(f, v1, v2, d, ai);
            let mut z = vecmat(ai, &fb, d);
            for (zr, &kr) in z.iter_mut().zip(&k.data()[i * d..(i + 1) * d]) {
                *zr = zr.wrapping_add(kr);
            }
            let gi = &g.data()[i * v1 * d..(i + 1) * v1 * d];
            let hi = &h.data()[i * v2 * d..(i + 1) * v2 * d];
            add_masked_rows(&mut z, &eu[i * v1..(i + 1) * v1], &fb, Some(gi), d);
            add_masked_rows(&mut z, &ev[i * v2..(i + 1) * v2], &fa, Some(hi), d);
            out.extend(z);
        }
        Ok(AShare::new(Party::P0, RingTensor::from_vec(&[t, d], out)?))
    }
}

impl ServerWeight {
    /// P1's side of a factored lookup of `t` indices (see the module docs); this weight must
    /// be `[v1 * v2, d]`. Returns shares of `[t, d]`.
    pub async fn lookup_factored<C: Channel, P: TripleProvider>(
        &self,
        ch: &mut C,
        prov: &mut P,
        t: usize,
        v1: usize,
        v2: usize,
    ) -> Result<AShare, BeaverError> {
        let d = check_dims(self.shape(), v1, v2)?;
        let (g, h, k) = match prov.table_triple(self.id(), t, v1, v2, d).await? {
            TableTriple::P1 { g, h, k } => (g, h, k),
            TableTriple::P0 { .. } => return Err(wrong("the provider returned P0's triple")),
        };
        let e = ch
            .recv_u64s(t * (v1 + v2), "factored lookup openings")
            .await?;
        let (eu, ev) = e.split_at(t * v1);
        let w = self.plain().data();
        let mut out = Vec::with_capacity(t * d);
        for i in 0..t {
            let evi = &ev[i * v2..(i + 1) * v2];
            let eui = &eu[i * v1..(i + 1) * v1];
            let r = contract_mid(w, v1, v2, d, evi);
            let mut z = k.data()[i * d..(i + 1) * d].to_vec();
            add_masked_rows(
                &mut z,
                eui,
                &r,
                Some(&g.data()[i * v1 * d..(i + 1) * v1 * d]),
                d,
            );
            add_masked_rows(
                &mut z,
                evi,
                &h.data()[i * v2 * d..(i + 1) * v2 * d],
                None,
                d,
            );
            out.extend(z);
        }
        Ok(AShare::new(Party::P1, RingTensor::from_vec(&[t, d], out)?))
    }
}

#[cfg(test)]
mod tests {
    use super::factor_dims;

    #[test]
    fn factor_dims_cover_and_are_balanced() {
        assert_eq!(factor_dims(50257), (225, 224));
        for v in 1..300 {
            let (a, b) = factor_dims(v);
            assert!(a * b >= v && a * (b - 1) < v, "v = {v}: {a} x {b}");
            assert!(a.abs_diff(b) <= 1, "v = {v}: {a} x {b}");
        }
    }
}
