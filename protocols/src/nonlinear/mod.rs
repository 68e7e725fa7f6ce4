//! Nonlinear layers on secret shares: ReLU, GELU, softmax (causal, with temperatures),
//! LayerNorm with the server's private gain and bias, and argmax revealed to one party.
//!
//! **One text, three backends.** The approximations ([`approx`]) are written once over the
//! [`Arith`] trait; the same functions run
//! - in plaintext fixed point on [`Plain`] (the oracle, and the engine's fixed-point mirror),
//! - between two parties on a [`Session`] (this module's `relu`, `gelu`, ... wrap them with
//!   shapes, validation and the op framing of [`crate::session`]),
//! - on [`Count`], which computes bytes each way, rounds, dealer bytes and correlations from
//!   the shapes alone (tested equal to what the channels count, exactly).
//!
//! **How a secure tensor backend calls the ops.** Both parties call the same op with the same
//! shapes and public parameters, each with its own share (`AShare` of its party). Inputs are
//! fixed point at the session's `f` fractional bits; outputs too.
//!
//! | op | input | output | party-specific arguments |
//! |---|---|---|---|
//! | [`relu`], [`gelu`] | any shape | same shape | none |
//! | [`softmax`] | `[heads, rows, cols]` logits | same shape, masked entries 0 | temperatures (public, per head and query row) |
//! | [`layer_norm`] | `[rows, d]` | `[rows, d]` | [`NormParams`]: P0 passes the gain handle from [`setup_server_vector`] and `bias: None`; P1 its gain handle and `Some(bias)` |
//! | [`argmax`] | any shape (flattened) | the index, to one party | the receiving party (public) |
//!
//! Per session, before the first LayerNorm, each gain vector is set up once with
//! [`setup_server_vector`] (P1 passes the plaintext gain, P0 `None`; one message of `8·d`
//! bytes, P1 → P0, count it under `Phase::Setup`).
//!
//! Accuracy, domains, message flows and costs: `docs/protocols/nonlinear.md`.

pub mod approx;
mod arith;
mod cmp;
mod count;
mod params;
mod plain;
mod secure;

#[cfg(test)]
mod tests;

pub use approx::NormParams;
pub use arith::{Arith, Bits, Prod, ServerVector};
pub use count::{
    Count, CountedCosts, GarbledMaxCost, LinkModel, PartyCosts, Timing, garbled_row_max_cost,
};
pub use params::{APPROX_VERSION, AgreementValue, NlParams};
pub use plain::Plain;
pub use secure::Kept;

pub use crate::beaver::nl::RowLayout;

use crate::beaver::{Material, Request, TripleProvider, WeightMask};
use crate::channel::Channel;
use crate::ring::RingTensor;
use crate::session::{ErrorKind, ProtocolError, Session};
use crate::share::{AShare, Party};

/// The causal structure of a softmax input `[heads, rows, cols]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mask {
    /// Every entry takes part.
    None,
    /// Query row `i` of `rows` attends to keys `0 ..= cols − rows + i` (the last `rows`
    /// positions of a `cols`-long context); the other entries are 0 in the output and are never
    /// computed. Needs `rows ≤ cols`.
    Causal,
}

/// Checks a softmax's shape, mask and temperatures; returns the row layout of the computed
/// entries and one temperature per row.
pub fn softmax_layout(
    shape: &[usize],
    mask: Mask,
    temps: Option<&[f64]>,
) -> Result<(RowLayout, Vec<f64>), String> {
    let [heads, rows, cols] = *shape else {
        return Err(format!(
            "softmax input must be [heads, rows, cols], got shape {shape:?}"
        ));
    };
    if cols == 0 && heads * rows > 0 {
        return Err("softmax over rows of zero elements".into());
    }
    let layout = match mask {
        Mask::None => RowLayout::Uniform {
            rows: heads * rows,
            cols,
        },
        Mask::Causal => {
            if rows > cols {
                return Err(format!(
                    "causal softmax needs rows <= cols, got {rows} rows and {cols} columns"
                ));
            }
            if rows == 0 || heads == 0 {
                RowLayout::Uniform { rows: 0, cols }
            } else {
                RowLayout::Causal { heads, rows, cols }
            }
        }
    };
    layout.validate()?;
    let t = match temps {
        None => vec![1.0; heads * rows],
        Some(t) => {
            if t.len() != heads * rows {
                return Err(format!(
                    "{} temperatures for {heads} heads x {rows} rows (one per head and query row)",
                    t.len()
                ));
            }
            if let Some(bad) = t.iter().find(|&&x| !(MIN_TEMP..=MAX_TEMP).contains(&x)) {
                return Err(format!(
                    "temperature {bad} outside [{MIN_TEMP}, {MAX_TEMP}] (temperatures must be \
                     positive and moderate)"
                ));
            }
            t.to_vec()
        }
    };
    Ok((layout, t))
}

/// Smallest temperature accepted (`2^-8`).
pub const MIN_TEMP: f64 = 1.0 / 256.0;
/// Largest temperature accepted (`2^8`).
pub const MAX_TEMP: f64 = 256.0;

/// Indices of the computed entries of a softmax input in its row-major flat layout.
pub fn softmax_entries(shape: &[usize], mask: Mask) -> Vec<usize> {
    let [heads, rows, cols] = *shape else {
        return Vec::new();
    };
    let mut idx = Vec::new();
    for h in 0..heads {
        for i in 0..rows {
            let keep = match mask {
                Mask::None => cols,
                Mask::Causal => cols - rows + i + 1,
            };
            let base = (h * rows + i) * cols;
            idx.extend(base..base + keep);
        }
    }
    idx
}

/// Softmax of a `[heads, rows, cols]` tensor on any backend: gathers the computed entries,
/// runs [`approx::softmax`], and scatters back with zeros at masked entries.
pub async fn softmax_flat<A: Arith>(
    a: &mut A,
    x: &A::V,
    shape: &[usize],
    mask: Mask,
    temps: Option<&[f64]>,
) -> Result<A::V, ErrorKind> {
    let (layout, t) = softmax_layout(shape, mask, temps).map_err(ErrorKind::BadInput)?;
    let total: usize = shape.iter().product();
    if a.len(x) != total {
        return Err(ErrorKind::BadInput(format!(
            "softmax: {} values for shape {shape:?}",
            a.len(x)
        )));
    }
    let idx = softmax_entries(shape, mask);
    let vals = a.gather(x, &idx);
    let p = if idx.is_empty() {
        vals
    } else {
        approx::softmax(a, &vals, &layout, &t).await?
    };
    // Scatter: computed entries from p, masked ones from a trailing zero.
    let mut src = vec![idx.len(); total];
    for (k, &i) in idx.iter().enumerate() {
        src[i] = k;
    }
    let zero = a.constant(&[0]);
    Ok(a.gather(&a.concat(&[&p, &zero]), &src))
}

fn check_share<C, K>(s: &Session<C, K>, x: &AShare) -> Result<(), ErrorKind>
where
    C: Channel,
    K: TripleProvider,
{
    if x.party() != s.party() {
        return Err(ErrorKind::BadInput(format!(
            "the share belongs to {:?}, the session is {:?}'s",
            x.party(),
            s.party()
        )));
    }
    Ok(())
}

fn out_share(party: Party, shape: &[usize], data: Vec<u64>) -> Result<AShare, ErrorKind> {
    let t = RingTensor::from_vec(shape, data).map_err(|e| ErrorKind::BadInput(e.to_string()))?;
    Ok(AShare::new(party, t))
}

/// Runs an op on the session: validates, frames it with the op tag, maps errors.
macro_rules! secure_op {
    ($s:ident, $op:literal, $desc:expr, $check:expr, $body:expr) => {{
        let check: Result<(), ErrorKind> = $check;
        if let Err(k) = check {
            return Err($s.fail($op, k).await);
        }
        $s.begin_op($op, $desc);
        let r = $body;
        $s.end_op(r).await
    }};
}

/// ReLU of every element (secure). Domain and error: `docs/protocols/nonlinear.md`.
pub async fn relu<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &AShare,
) -> Result<AShare, ProtocolError> {
    let party = s.party();
    secure_op!(
        s,
        "relu",
        format!("shape {:?}", x.shape()),
        check_share(s, x),
        async {
            let y = approx::relu(s, &x.tensor().data().to_vec()).await?;
            out_share(party, x.shape(), y)
        }
        .await
    )
}

/// GELU (tanh form) of every element (secure).
pub async fn gelu<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &AShare,
) -> Result<AShare, ProtocolError> {
    let party = s.party();
    secure_op!(
        s,
        "gelu",
        format!("shape {:?}", x.shape()),
        check_share(s, x),
        async {
            let y = approx::gelu(s, &x.tensor().data().to_vec()).await?;
            out_share(party, x.shape(), y)
        }
        .await
    )
}

fn temps_digest(t: Option<&[f64]>) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for v in t.unwrap_or(&[]) {
        h = (h ^ v.to_bits()).wrapping_mul(0x100000001b3);
    }
    h
}

/// Softmax over the last axis of `x: [heads, rows, cols]` (secure), with the public
/// temperatures `temps` (one per head and query row, row-major; `None`: all 1), computing only
/// the entries `mask` keeps; masked entries are 0 in the output.
pub async fn softmax<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &AShare,
    mask: Mask,
    temps: Option<&[f64]>,
) -> Result<AShare, ProtocolError> {
    let party = s.party();
    let check = check_share(s, x).and_then(|()| {
        softmax_layout(x.shape(), mask, temps)
            .map(|_| ())
            .map_err(ErrorKind::BadInput)
    });
    secure_op!(
        s,
        "softmax",
        format!(
            "shape {:?}, mask {mask:?}, temperatures #{:016x}",
            x.shape(),
            temps_digest(temps)
        ),
        check,
        async {
            let data = x.tensor().data().to_vec();
            let y = softmax_flat(s, &data, x.shape(), mask, temps).await?;
            out_share(party, x.shape(), y)
        }
        .await
    )
}

fn check_norm(shape: &[usize], norm: &NormParams, party: Option<Party>) -> Result<usize, String> {
    let [rows, d] = *shape else {
        return Err(format!("LayerNorm input must be [rows, d], got {shape:?}"));
    };
    if d == 0 || d != norm.gain.len() {
        return Err(format!(
            "LayerNorm over rows of {d} with a gain of length {}",
            norm.gain.len()
        ));
    }
    match (party, &norm.bias) {
        (Some(Party::P0), Some(_)) => {
            return Err("P0 (the client) must not hold the LayerNorm bias".into());
        }
        (Some(Party::P1) | None, None) => {
            return Err("the server (or the plain backend) must pass the LayerNorm bias".into());
        }
        (_, Some(b)) if b.len() != d => {
            return Err(format!("LayerNorm bias of length {} for d = {d}", b.len()));
        }
        _ => {}
    }
    if !(norm.eps.is_finite() && norm.eps >= 0.0) {
        return Err(format!(
            "LayerNorm eps {} must be finite and >= 0",
            norm.eps
        ));
    }
    Ok(rows)
}

/// LayerNorm of every row of `x: [rows, d]` with the server's gain and bias (secure). P0 passes
/// `norm` with its masked gain handle and `bias: None`, P1 with its plaintext handle and
/// `Some(bias)`; the gain is never revealed.
pub async fn layer_norm<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &AShare,
    norm: &NormParams,
) -> Result<AShare, ProtocolError> {
    let party = s.party();
    let rows = check_norm(x.shape(), norm, Some(party));
    let check = check_share(s, x).and_then(|()| {
        rows.as_ref()
            .map(|_| ())
            .map_err(|e| ErrorKind::BadInput(e.clone()))
    });
    secure_op!(
        s,
        "layer_norm",
        format!(
            "shape {:?}, gain id {}, eps {:e}",
            x.shape(),
            norm.gain.id(),
            norm.eps
        ),
        check,
        async {
            let rows = *rows.as_ref().expect("checked");
            let y = approx::layer_norm(s, &x.tensor().data().to_vec(), rows, norm).await?;
            out_share(party, x.shape(), y)
        }
        .await
    )
}

/// The index of the largest element of `x` (flattened; the first among ties), revealed only to
/// `to` (secure): `to` gets `Some(index)`, the other party `None`.
pub async fn argmax<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    x: &AShare,
    to: Party,
) -> Result<Option<usize>, ProtocolError> {
    let check = check_share(s, x).and_then(|()| {
        if x.tensor().is_empty() {
            Err(ErrorKind::BadInput("argmax over an empty vector".into()))
        } else {
            Ok(())
        }
    });
    secure_op!(
        s,
        "argmax",
        format!("{} elements, revealed to {to:?}", x.tensor().len()),
        check,
        async {
            let r = approx::argmax(s, &x.tensor().data().to_vec(), to).await?;
            Ok(r.map(|i| i as usize))
        }
        .await
    )
}

/// Session setup of a vector P1 holds in plaintext (a LayerNorm gain), once per `id`: P1
/// passes `Some(gamma)` (fixed point), P0 `None`. P1 sends `γ − B` (`8·d` bytes) with the
/// dealer's session mask `B`; the handle each party gets goes into [`NormParams::gain`].
pub async fn setup_server_vector<C: Channel, K: TripleProvider>(
    s: &mut Session<C, K>,
    id: u32,
    d: usize,
    gamma: Option<&[u64]>,
) -> Result<ServerVector, ProtocolError> {
    let party = s.party();
    let check = match (party, gamma) {
        (_, _) if d == 0 => Err(ErrorKind::BadInput("a vector of length 0".into())),
        (Party::P0, Some(_)) => Err(ErrorKind::BadInput(
            "P0 must not hold the server's vector".into(),
        )),
        (Party::P1, None) => Err(ErrorKind::BadInput("P1 must pass its vector".into())),
        (Party::P1, Some(g)) if g.len() != d => Err(ErrorKind::BadInput(format!(
            "vector of length {} for d = {d}",
            g.len()
        ))),
        _ => Ok(()),
    };
    secure_op!(
        s,
        "server_vector",
        format!("id {id}, d {d}"),
        check,
        async {
            let m = s.fetch(Request::WeightMask { id, k: 1, m: d }).await?;
            match (m, gamma) {
                (Material::WeightMask(WeightMask::P1 { b }), Some(g)) => {
                    let f: Vec<u64> = g
                        .iter()
                        .zip(b.data())
                        .map(|(x, m)| x.wrapping_sub(*m))
                        .collect();
                    let mut msg = Vec::with_capacity(8 * d);
                    secure::u64s_to_bytes(&f, &mut msg);
                    s.send(&msg).await?;
                    Ok(ServerVector {
                        id,
                        d,
                        data: arith::ServerVectorData::Plain(g.to_vec()),
                    })
                }
                (Material::WeightMask(WeightMask::P0), None) => {
                    let f = secure::bytes_to_u64s(&s.recv(8 * d, "masked server vector").await?);
                    Ok(ServerVector {
                        id,
                        d,
                        data: arith::ServerVectorData::Masked(f),
                    })
                }
                (other, _) => Err(ErrorKind::Correlation(format!(
                    "asked for a vector mask, the source returned {}",
                    secure::kind_of(&other)
                ))),
            }
        }
        .await
    )
}

/// The plain-backend ops on ring tensors (fixed point at `params.frac_bits`): what the
/// engine's fixed-point mirror calls. Each returns what the secure op computes, up to the
/// secure truncations' `+1` (see `docs/protocols/nonlinear.md`).
pub mod plain_ops {
    use super::*;

    /// ReLU.
    pub fn relu(params: &NlParams, x: &RingTensor) -> Result<RingTensor, ErrorKind> {
        let mut p = Plain::new(*params);
        let y = Plain::run(approx::relu(&mut p, &x.data().to_vec()))?;
        Ok(RingTensor::from_vec(x.shape(), y).expect("same length"))
    }

    /// GELU (tanh form).
    pub fn gelu(params: &NlParams, x: &RingTensor) -> Result<RingTensor, ErrorKind> {
        let mut p = Plain::new(*params);
        let y = Plain::run(approx::gelu(&mut p, &x.data().to_vec()))?;
        Ok(RingTensor::from_vec(x.shape(), y).expect("same length"))
    }

    /// Softmax of `[heads, rows, cols]`.
    pub fn softmax(
        params: &NlParams,
        x: &RingTensor,
        mask: Mask,
        temps: Option<&[f64]>,
    ) -> Result<RingTensor, ErrorKind> {
        let mut p = Plain::new(*params);
        let y = Plain::run(softmax_flat(
            &mut p,
            &x.data().to_vec(),
            x.shape(),
            mask,
            temps,
        ))?;
        Ok(RingTensor::from_vec(x.shape(), y).expect("same length"))
    }

    /// LayerNorm of `[rows, d]` with a plaintext gain ([`ServerVector::plain`]) and bias.
    pub fn layer_norm(
        params: &NlParams,
        x: &RingTensor,
        norm: &NormParams,
    ) -> Result<RingTensor, ErrorKind> {
        let rows = check_norm(x.shape(), norm, None).map_err(ErrorKind::BadInput)?;
        let mut p = Plain::new(*params);
        let y = Plain::run(approx::layer_norm(&mut p, &x.data().to_vec(), rows, norm))?;
        Ok(RingTensor::from_vec(x.shape(), y).expect("same length"))
    }

    /// Argmax (the first index among ties).
    pub fn argmax(params: &NlParams, x: &RingTensor) -> Result<usize, ErrorKind> {
        let mut p = Plain::new(*params);
        let r = Plain::run(approx::argmax(&mut p, &x.data().to_vec(), Party::P0))?;
        Ok(r.expect("plain reveals") as usize)
    }
}
