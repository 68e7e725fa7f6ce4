//! The secure backend: [`Arith`] on a [`Session`], two parties over the session's channel with
//! the session's correlations. Values are this party's additive shares, bits its XOR shares.
//!
//! Message flows (every step sends before it receives, so a step in which both parties speak
//! costs one flight each; `n` elements). The truncation is one way and a reply of bits: P0
//! sends `x_0 + r_0 + 2^62`, P1 opens `c = x + 2^62 + r` (uniform: `r` pads it), adds the public
//! terms of `crate::trunc`'s formula to its share and replies with `c_63`, the only bit of `c`
//! P0's share depends on (uniform too). Half the bytes of the symmetric opening (8.125 B
//! instead of 16 B per element) for one more one-way delay; vectors shorter than
//! `NlParams::trunc_one_way_min` use the symmetric opening.
//!
//! | step | correlation | each party sends |
//! |---|---|---|
//! | `products` | `Elementwise` / `Square` per item | `x − a, y − b` / `x − r`, 8 B per opened element |
//! | `mul_rows` | `RowMul` | `x − a` per element, `r − b` per row |
//! | `square_keep` + `mul_rows_kept` | `RowMul` with `a²` | `x − a` per element; later `r − b` per row |
//! | `trunc` | `Trunc` | P0: `x_0 + r_0 + 2^62`, 8 B; P1 replies with `c_63`, 1 bit (long vectors); both `x + 2^62 + r`, 8 B (short ones) |
//! | `msb` | `Cmp` | see [`super::cmp`] |
//! | `mux` | `Mux` | `b ⊕ ρ` (1 bit) and `x − a` (`⌈width/8⌉` bytes per value) |
//! | `b2a` | `Mux` with no values | `b ⊕ ρ`, 1 bit |
//! | `reveal` | none | the sender's share, 8 B; the receiver sends nothing |
//! | `scale_server` | `ScaleVec` | P0 only: `x_0 − A`, 8 B |

use crate::beaver::nl::{
    MuxMaterial, NlMaterial, NlRequest, RowLayout, RowMulMaterial, ScaleVecMaterial,
    TruncSquareRowMaterial,
};
use crate::beaver::{Material, Request, TripleProvider};
use crate::channel::Channel;
use crate::session::{ErrorKind, Session};
use crate::share::Party;
use crate::trunc::TruncMode;

use super::arith::{Arith, Bits, Prod, ServerVector, ServerVectorData};
use super::params::NlParams;

/// A short name of a material kind, for error messages.
pub(crate) fn kind_of(m: &Material) -> &'static str {
    match m {
        Material::Elem(_) => "elementwise triples",
        Material::Mat(_) => "matrix triples",
        Material::Square(_) => "square pairs",
        Material::Trunc(_) => "truncation pairs",
        Material::WeightMask(_) => "a weight mask",
        Material::Weight(_) => "a weight triple",
        Material::Table(_) => "a table triple",
        Material::Nonlinear(n) => n.kind(),
        #[allow(unreachable_patterns)]
        _ => "another correlation",
    }
}

fn wrong(asked: &str, got: &Material) -> ErrorKind {
    ErrorKind::Correlation(format!(
        "asked for {asked}, the source returned {}",
        kind_of(got)
    ))
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), ErrorKind> {
    if got == want {
        Ok(())
    } else {
        Err(ErrorKind::Correlation(format!(
            "{what}: the source returned {got} elements for {want}"
        )))
    }
}

pub(crate) fn u64s_to_bytes(v: &[u64], out: &mut Vec<u8>) {
    out.reserve(8 * v.len());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

pub(crate) fn bytes_to_u64s(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// Bytes of one value of `width` bits in a multiplexer message.
pub(crate) fn width_bytes(width: u32) -> usize {
    width.div_ceil(8) as usize
}

fn check_lens(what: &str, a: usize, b: usize) -> Result<(), ErrorKind> {
    if a == b {
        Ok(())
    } else {
        Err(ErrorKind::BadInput(format!(
            "{what}: lengths {a} and {b} differ"
        )))
    }
}

/// One product's masks: `a`, `b` (`None` for a square) and `c` (`a·b` or `r²`).
type ProductMasks = (Vec<u64>, Option<Vec<u64>>, Vec<u64>);

/// The bit of `rho` for element `e`.
#[inline]
fn bit(words: &[u64], e: usize) -> u64 {
    (words[e / 64] >> (e % 64)) & 1
}

/// `z = c + D b_row + a E_row (+ D E_row for P0)` for row-broadcast products.
fn row_product(
    p0: bool,
    d: &[u64],
    e: &[u64],
    mat: &RowMulMaterial,
    layout: &RowLayout,
) -> Vec<u64> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    for (r, len) in layout.lens().enumerate() {
        let (br, er) = (mat.b[r], e[r]);
        for _ in 0..len {
            let mut z = mat.c[i]
                .wrapping_add(d[i].wrapping_mul(br))
                .wrapping_add(mat.a[i].wrapping_mul(er));
            if p0 {
                z = z.wrapping_add(d[i].wrapping_mul(er));
            }
            out.push(z);
            i += 1;
        }
    }
    out
}

impl<C: Channel, K: TripleProvider> Session<C, K> {
    /// Truncation with both parties opening `c = x + 2^62 + r` (one delay, 16 B per element).
    async fn trunc_symmetric(
        &mut self,
        x: &[u64],
        bits: u32,
        pair: &crate::beaver::TruncPair,
    ) -> Result<Vec<u64>, ErrorKind> {
        let n = x.len();
        let p0 = self.party() == Party::P0;
        let offset = if p0 { 1u64 << 62 } else { 0 };
        let masked: Vec<u64> = x
            .iter()
            .zip(pair.r.data())
            .map(|(&v, &r)| v.wrapping_add(r).wrapping_add(offset))
            .collect();
        let mut msg = Vec::with_capacity(8 * n);
        u64s_to_bytes(&masked, &mut msg);
        let peer = bytes_to_u64s(&self.exchange(&msg, "truncation openings").await?);
        let low63 = (1u64 << 63) - 1;
        let high = 1u64 << (63 - bits);
        let bias = 1u64 << (62 - bits);
        let (t, sl) = (pair.r_msb.data(), pair.r_low_shifted.data());
        Ok((0..n)
            .map(|i| {
                let c = masked[i].wrapping_add(peer[i]);
                let c63 = c >> 63;
                let mut v = t[i].wrapping_mul(1u64.wrapping_sub(2 * c63));
                let mut z = sl[i].wrapping_neg();
                if p0 {
                    v = v.wrapping_add(c63);
                    z = z.wrapping_add((c & low63) >> bits).wrapping_sub(bias);
                }
                z.wrapping_add(v.wrapping_mul(high))
            })
            .collect())
    }

    async fn exchange(&mut self, msg: &[u8], ctx: &str) -> Result<Vec<u8>, ErrorKind> {
        self.send(msg).await?;
        self.recv(msg.len(), ctx).await
    }

    async fn rowmul_material(
        &mut self,
        layout: &RowLayout,
        square: bool,
    ) -> Result<RowMulMaterial, ErrorKind> {
        let m = self
            .fetch(Request::Nonlinear(NlRequest::RowMul {
                layout: layout.clone(),
                square,
            }))
            .await?;
        match m {
            Material::Nonlinear(NlMaterial::RowMul(r))
                if r.a.len() == layout.len()
                    && r.b.len() == layout.rows()
                    && r.a2.is_some() == square =>
            {
                Ok(r)
            }
            other => Err(wrong(
                "row-broadcast triples of the requested shape",
                &other,
            )),
        }
    }

    async fn mux_material(&mut self, n: usize, k: usize) -> Result<MuxMaterial, ErrorKind> {
        let m = self
            .fetch(Request::Nonlinear(NlRequest::Mux { n, k }))
            .await?;
        match m {
            Material::Nonlinear(NlMaterial::Mux(x))
                if x.n == n && x.k == k && x.a.len() == n * k && x.rho_arith.len() == n =>
            {
                Ok(x)
            }
            other => Err(wrong("bit-masked triples of the requested shape", &other)),
        }
    }
}

/// What [`Arith::trunc_square_keep`] keeps on the secure backend: the public parts `A, B` of
/// the truncated value `A + B t − s` and the correlation for the later row product (or, with
/// local truncation, the truncated value itself).
pub struct Kept(KeptInner);

enum KeptInner {
    Fused {
        ab: Vec<(u64, u64)>,
        mat: TruncSquareRowMaterial,
        layout: RowLayout,
    },
    Unopened {
        t: Vec<u64>,
        layout: RowLayout,
    },
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = match &self.0 {
            KeptInner::Fused { layout, .. } | KeptInner::Unopened { layout, .. } => layout,
        };
        write!(f, "Kept({l:?}, ..)")
    }
}

impl<C: Channel, K: TripleProvider> Arith for Session<C, K> {
    type V = Vec<u64>;
    type B = Bits;
    type Pending = Kept;

    fn params(&self) -> &NlParams {
        Session::params(self)
    }

    fn len(&self, x: &Vec<u64>) -> usize {
        x.len()
    }

    fn constant(&self, vals: &[u64]) -> Vec<u64> {
        match self.party() {
            Party::P0 => vals.to_vec(),
            Party::P1 => vec![0; vals.len()],
        }
    }

    fn add(&self, x: &Vec<u64>, y: &Vec<u64>) -> Vec<u64> {
        x.iter().zip(y).map(|(a, b)| a.wrapping_add(*b)).collect()
    }

    fn sub(&self, x: &Vec<u64>, y: &Vec<u64>) -> Vec<u64> {
        x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect()
    }

    fn add_public(&self, x: &Vec<u64>, c: &[u64]) -> Vec<u64> {
        match self.party() {
            Party::P0 => x.iter().zip(c).map(|(a, b)| a.wrapping_add(*b)).collect(),
            Party::P1 => x.clone(),
        }
    }

    fn mul_public(&self, x: &Vec<u64>, c: &[u64]) -> Vec<u64> {
        x.iter().zip(c).map(|(a, b)| a.wrapping_mul(*b)).collect()
    }

    fn scale(&self, x: &Vec<u64>, c: u64) -> Vec<u64> {
        x.iter().map(|a| a.wrapping_mul(c)).collect()
    }

    fn gather(&self, x: &Vec<u64>, idx: &[usize]) -> Vec<u64> {
        idx.iter().map(|&i| x[i]).collect()
    }

    fn concat(&self, parts: &[&Vec<u64>]) -> Vec<u64> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    fn split(&self, x: &Vec<u64>, lens: &[usize]) -> Vec<Vec<u64>> {
        let mut off = 0;
        lens.iter()
            .map(|&l| {
                let v = x[off..off + l].to_vec();
                off += l;
                v
            })
            .collect()
    }

    fn sum_groups(&self, x: &Vec<u64>, lens: &[usize]) -> Vec<u64> {
        let mut off = 0;
        lens.iter()
            .map(|&l| {
                let s = x[off..off + l].iter().fold(0u64, |a, &b| a.wrapping_add(b));
                off += l;
                s
            })
            .collect()
    }

    fn repeat_groups(&self, x: &Vec<u64>, lens: &[usize]) -> Vec<u64> {
        lens.iter()
            .zip(x)
            .flat_map(|(&l, &v)| std::iter::repeat_n(v, l))
            .collect()
    }

    fn add_server_rows(&self, x: &Vec<u64>, _rows: usize, v: Option<&[u64]>) -> Vec<u64> {
        match (self.party(), v) {
            (Party::P1, Some(v)) if !v.is_empty() => x
                .iter()
                .enumerate()
                .map(|(i, a)| a.wrapping_add(v[i % v.len()]))
                .collect(),
            _ => x.clone(),
        }
    }

    fn blen(&self, b: &Bits) -> usize {
        b.len()
    }

    fn bnot(&self, b: &Bits) -> Bits {
        // ¬(b0 ⊕ b1) = (¬b0) ⊕ b1: P0 flips its share.
        match self.party() {
            Party::P0 => b.not(),
            Party::P1 => b.clone(),
        }
    }

    fn bxor(&self, a: &Bits, b: &Bits) -> Bits {
        a.xor(b)
    }

    fn bgather(&self, b: &Bits, idx: &[usize]) -> Bits {
        b.gather(idx)
    }

    async fn products(&mut self, items: &[Prod<'_, Vec<u64>>]) -> Result<Vec<Vec<u64>>, ErrorKind> {
        // Correlations first (in item order), then one message with every opening.
        let mut masks: Vec<ProductMasks> = Vec::new();
        let mut msg = Vec::new();
        for it in items {
            match it {
                Prod::Mul(x, y) => {
                    check_lens("product", x.len(), y.len())?;
                    let n = x.len();
                    if n == 0 {
                        masks.push((vec![], Some(vec![]), vec![]));
                        continue;
                    }
                    let t = match self.fetch(Request::Elementwise { n }).await? {
                        Material::Elem(t) => t,
                        other => return Err(wrong("elementwise triples", &other)),
                    };
                    check_len("elementwise triples", t.a.len(), n)?;
                    let (a, b, c) = (t.a.into_data(), t.b.into_data(), t.c.into_data());
                    let dx: Vec<u64> = x.iter().zip(&a).map(|(v, r)| v.wrapping_sub(*r)).collect();
                    let dy: Vec<u64> = y.iter().zip(&b).map(|(v, r)| v.wrapping_sub(*r)).collect();
                    u64s_to_bytes(&dx, &mut msg);
                    u64s_to_bytes(&dy, &mut msg);
                    masks.push((a, Some(b), c));
                }
                Prod::Square(x) => {
                    let n = x.len();
                    if n == 0 {
                        masks.push((vec![], None, vec![]));
                        continue;
                    }
                    let t = match self.fetch(Request::Square { n }).await? {
                        Material::Square(t) => t,
                        other => return Err(wrong("square pairs", &other)),
                    };
                    check_len("square pairs", t.r.len(), n)?;
                    let (r, r2) = (t.r.into_data(), t.r2.into_data());
                    let dx: Vec<u64> = x.iter().zip(&r).map(|(v, m)| v.wrapping_sub(*m)).collect();
                    u64s_to_bytes(&dx, &mut msg);
                    masks.push((r, None, r2));
                }
            }
        }
        if msg.is_empty() {
            return Ok(items.iter().map(|_| Vec::new()).collect());
        }
        let peer = self.exchange(&msg, "product openings").await?;
        let own = bytes_to_u64s(&msg);
        let peer = bytes_to_u64s(&peer);
        let p0 = self.party() == Party::P0;
        let mut off = 0;
        let mut out = Vec::with_capacity(items.len());
        for (it, (a, b, c)) in items.iter().zip(&masks) {
            match (it, b) {
                (Prod::Mul(x, y), Some(b)) => {
                    let n = x.len();
                    let _ = y;
                    let z = (0..n)
                        .map(|i| {
                            let d = own[off + i].wrapping_add(peer[off + i]);
                            let e = own[off + n + i].wrapping_add(peer[off + n + i]);
                            let mut z = c[i]
                                .wrapping_add(d.wrapping_mul(b[i]))
                                .wrapping_add(a[i].wrapping_mul(e));
                            if p0 {
                                z = z.wrapping_add(d.wrapping_mul(e));
                            }
                            z
                        })
                        .collect();
                    off += 2 * n;
                    out.push(z);
                }
                (Prod::Square(x), _) => {
                    let n = x.len();
                    let z = (0..n)
                        .map(|i| {
                            let d = own[off + i].wrapping_add(peer[off + i]);
                            let mut z = c[i].wrapping_add(d.wrapping_mul(a[i]).wrapping_mul(2));
                            if p0 {
                                z = z.wrapping_add(d.wrapping_mul(d));
                            }
                            z
                        })
                        .collect();
                    off += n;
                    out.push(z);
                }
                (Prod::Mul(..), None) => unreachable!("a product keeps both masks"),
            }
        }
        Ok(out)
    }

    async fn mul_rows(
        &mut self,
        x: &Vec<u64>,
        r: &Vec<u64>,
        layout: &RowLayout,
    ) -> Result<Vec<u64>, ErrorKind> {
        check_lens("row product", x.len(), layout.len())?;
        check_lens("row product (rows)", r.len(), layout.rows())?;
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let mat = self.rowmul_material(layout, false).await?;
        let mut msg = Vec::with_capacity(8 * (x.len() + r.len()));
        let d: Vec<u64> = x
            .iter()
            .zip(&mat.a)
            .map(|(v, m)| v.wrapping_sub(*m))
            .collect();
        let e: Vec<u64> = r
            .iter()
            .zip(&mat.b)
            .map(|(v, m)| v.wrapping_sub(*m))
            .collect();
        u64s_to_bytes(&d, &mut msg);
        u64s_to_bytes(&e, &mut msg);
        let peer = bytes_to_u64s(&self.exchange(&msg, "row product openings").await?);
        let n = x.len();
        let d: Vec<u64> = d
            .iter()
            .zip(&peer[..n])
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        let e: Vec<u64> = e
            .iter()
            .zip(&peer[n..])
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        Ok(row_product(self.party() == Party::P0, &d, &e, &mat, layout))
    }

    async fn trunc_square_keep(
        &mut self,
        x: &Vec<u64>,
        bits: u32,
        layout: &RowLayout,
    ) -> Result<(Vec<u64>, Kept), ErrorKind> {
        check_lens("square", x.len(), layout.len())?;
        if !(1..=62).contains(&bits) {
            return Err(ErrorKind::BadInput(format!(
                "truncation by {bits} bits (must be 1..=62)"
            )));
        }
        let n = x.len();
        if n == 0 || self.params().trunc == TruncMode::Local {
            let t = self.trunc(x, bits).await?;
            let sq = self.square(&t).await?;
            let kept = KeptInner::Unopened {
                t,
                layout: layout.clone(),
            };
            return Ok((sq, Kept(kept)));
        }
        let m = self
            .fetch(Request::Nonlinear(NlRequest::TruncSquareRow {
                layout: layout.clone(),
                bits,
            }))
            .await?;
        let mat = match m {
            Material::Nonlinear(NlMaterial::TruncSquareRow(t))
                if t.r.len() == n && t.sb.len() == n && t.b.len() == layout.rows() =>
            {
                t
            }
            other => return Err(wrong("row truncation-square correlations", &other)),
        };
        let p0 = self.party() == Party::P0;
        let offset = if p0 { 1u64 << 62 } else { 0 };
        let masked: Vec<u64> = x
            .iter()
            .zip(&mat.r)
            .map(|(&v, &r)| v.wrapping_add(r).wrapping_add(offset))
            .collect();
        let mut msg = Vec::with_capacity(8 * n);
        u64s_to_bytes(&masked, &mut msg);
        let peer = bytes_to_u64s(&self.exchange(&msg, "truncation openings").await?);
        let c: Vec<u64> = masked
            .iter()
            .zip(&peer)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        // trunc(x) = A + B t − s with public A, B (see crate::trunc); its square is linear in
        // the shares of t, s, t·s and s² (t² = t).
        let low63 = (1u64 << 63) - 1;
        let high = 1u64 << (63 - bits);
        let bias = 1u64 << (62 - bits);
        let ab: Vec<(u64, u64)> = c
            .iter()
            .map(|&c| {
                let c63 = c >> 63;
                let a = ((c & low63) >> bits)
                    .wrapping_sub(bias)
                    .wrapping_add(high.wrapping_mul(c63));
                (a, high.wrapping_mul(1u64.wrapping_sub(2 * c63)))
            })
            .collect();
        let sq = (0..n)
            .map(|i| {
                let (a, b) = ab[i];
                let mut z = (a
                    .wrapping_mul(b)
                    .wrapping_mul(2)
                    .wrapping_add(b.wrapping_mul(b)))
                .wrapping_mul(mat.t[i])
                .wrapping_sub(a.wrapping_mul(2).wrapping_mul(mat.s[i]))
                .wrapping_sub(b.wrapping_mul(2).wrapping_mul(mat.ts[i]))
                .wrapping_add(mat.s2[i]);
                if p0 {
                    z = z.wrapping_add(a.wrapping_mul(a));
                }
                z
            })
            .collect();
        let kept = KeptInner::Fused {
            ab,
            mat,
            layout: layout.clone(),
        };
        Ok((sq, Kept(kept)))
    }

    async fn mul_rows_kept(&mut self, kept: Kept, r: &Vec<u64>) -> Result<Vec<u64>, ErrorKind> {
        let (ab, mat, layout) = match kept.0 {
            KeptInner::Unopened { t, layout } => return self.mul_rows(&t, r, &layout).await,
            KeptInner::Fused { ab, mat, layout } => (ab, mat, layout),
        };
        check_lens("row product (rows)", r.len(), layout.rows())?;
        let e: Vec<u64> = r
            .iter()
            .zip(&mat.b)
            .map(|(v, m)| v.wrapping_sub(*m))
            .collect();
        let mut msg = Vec::with_capacity(8 * e.len());
        u64s_to_bytes(&e, &mut msg);
        let peer = bytes_to_u64s(&self.exchange(&msg, "row openings").await?);
        let e: Vec<u64> = e
            .iter()
            .zip(&peer)
            .map(|(a, b)| a.wrapping_add(*b))
            .collect();
        // (A + B t − s)(E + b) = A E + A b + B E t + B (t b) − E s − (s b).
        let p0 = self.party() == Party::P0;
        let mut out = Vec::with_capacity(ab.len());
        let mut i = 0;
        for (row, len) in layout.lens().enumerate() {
            let (er, br) = (e[row], mat.b[row]);
            for _ in 0..len {
                let (a, b) = ab[i];
                let mut z = a
                    .wrapping_mul(br)
                    .wrapping_add(b.wrapping_mul(er).wrapping_mul(mat.t[i]))
                    .wrapping_add(b.wrapping_mul(mat.tb[i]))
                    .wrapping_sub(er.wrapping_mul(mat.s[i]))
                    .wrapping_sub(mat.sb[i]);
                if p0 {
                    z = z.wrapping_add(a.wrapping_mul(er));
                }
                out.push(z);
                i += 1;
            }
        }
        Ok(out)
    }

    async fn trunc(&mut self, x: &Vec<u64>, bits: u32) -> Result<Vec<u64>, ErrorKind> {
        if !(1..=62).contains(&bits) {
            return Err(ErrorKind::BadInput(format!(
                "truncation by {bits} bits (must be 1..=62)"
            )));
        }
        if self.params().trunc == TruncMode::Local {
            return Ok(x.iter().map(|&v| ((v as i64) >> bits) as u64).collect());
        }
        let n = x.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let pair = match self.fetch(Request::Trunc { n, frac_bits: bits }).await? {
            Material::Trunc(t) => t,
            other => return Err(wrong("truncation pairs", &other)),
        };
        check_len("truncation pairs", pair.r.len(), n)?;
        if n < self.params().trunc_one_way_min {
            return self.trunc_symmetric(x, bits, &pair).await;
        }
        // One way and a reply of bits (see the module docs): P0 sends x_0 + r_0 + 2^62; P1
        // opens c = x + 2^62 + r, adds the public terms to its share and replies with c_63,
        // the only bit of c P0's share needs. Shares of
        // y = (c_lo >> f) − s + 2^(63−f)(c63 ⊕ r63) − 2^(62−f) (see crate::trunc).
        let low63 = (1u64 << 63) - 1;
        let high = 1u64 << (63 - bits);
        let bias = 1u64 << (62 - bits);
        let (r, t, sl) = (pair.r.data(), pair.r_msb.data(), pair.r_low_shifted.data());
        match self.party() {
            Party::P0 => {
                let masked: Vec<u64> = x
                    .iter()
                    .zip(r)
                    .map(|(&v, &m)| v.wrapping_add(m).wrapping_add(1u64 << 62))
                    .collect();
                let mut msg = Vec::with_capacity(8 * n);
                u64s_to_bytes(&masked, &mut msg);
                self.send(&msg).await?;
                let top = Bits::from_bytes(&self.recv(n.div_ceil(8), "truncation bits").await?, n);
                Ok((0..n)
                    .map(|i| {
                        let c63 = bit(top.words(), i);
                        let v = t[i].wrapping_mul(1u64.wrapping_sub(2 * c63));
                        v.wrapping_mul(high).wrapping_sub(sl[i])
                    })
                    .collect())
            }
            Party::P1 => {
                let peer = bytes_to_u64s(&self.recv(8 * n, "truncation openings").await?);
                let c: Vec<u64> = (0..n)
                    .map(|i| peer[i].wrapping_add(x[i]).wrapping_add(r[i]))
                    .collect();
                let top: Vec<u64> = c
                    .chunks(64)
                    .map(|w| {
                        w.iter()
                            .enumerate()
                            .fold(0u64, |acc, (i, &v)| acc | ((v >> 63) << i))
                    })
                    .collect();
                self.send(&Bits::from_words(top, n).to_bytes()).await?;
                Ok((0..n)
                    .map(|i| {
                        let c63 = c[i] >> 63;
                        let v = t[i]
                            .wrapping_mul(1u64.wrapping_sub(2 * c63))
                            .wrapping_add(c63);
                        ((c[i] & low63) >> bits)
                            .wrapping_sub(bias)
                            .wrapping_sub(sl[i])
                            .wrapping_add(v.wrapping_mul(high))
                    })
                    .collect())
            }
        }
    }

    async fn msb(&mut self, x: &Vec<u64>, bits: u32) -> Result<Bits, ErrorKind> {
        super::cmp::msb(self, x, bits).await
    }

    async fn mux(
        &mut self,
        b: &Bits,
        xs: &[&Vec<u64>],
        widths: &[u32],
    ) -> Result<Vec<Vec<u64>>, ErrorKind> {
        let n = b.len();
        let k = xs.len();
        check_lens("multiplexer widths", widths.len(), k)?;
        for x in xs {
            check_lens("multiplexer", x.len(), n)?;
        }
        if let Some(w) = widths.iter().find(|w| !(1..=64).contains(*w)) {
            return Err(ErrorKind::BadInput(format!("multiplexer width {w}")));
        }
        if n == 0 {
            return Ok(vec![Vec::new(); k]);
        }
        let mat = self.mux_material(n, k).await?;
        // Message: per value vector its masked values (⌈width/8⌉ bytes each), then b ⊕ ρ.
        let e_own = b.xor(&Bits::from_words(mat.rho.clone(), n));
        let mut msg = Vec::new();
        let mut d_own = Vec::with_capacity(k);
        for (v, (x, &w)) in xs.iter().zip(widths).enumerate() {
            let wb = width_bytes(w);
            let d: Vec<u64> = (0..n)
                .map(|e| x[e].wrapping_sub(mat.a[e * k + v]))
                .collect();
            for &dv in &d {
                msg.extend_from_slice(&dv.to_le_bytes()[..wb]);
            }
            d_own.push(d);
        }
        msg.extend_from_slice(&e_own.to_bytes());
        let peer = self.exchange(&msg, "multiplexer openings").await?;
        let mut off = 0;
        let mut ds = Vec::with_capacity(k);
        for (d, &w) in d_own.iter().zip(widths) {
            let wb = width_bytes(w);
            let opened: Vec<u64> = (0..n)
                .map(|e| {
                    let mut buf = [0u8; 8];
                    buf[..wb].copy_from_slice(&peer[off + e * wb..off + (e + 1) * wb]);
                    d[e].wrapping_add(u64::from_le_bytes(buf))
                })
                .collect();
            off += n * wb;
            ds.push(opened);
        }
        let e = e_own.xor(&Bits::from_bytes(&peer[off..], n));
        let p0 = self.party() == Party::P0;
        // b = e ⊕ ρ = e + (1 − 2e) ρ;  b x = e D + e a + (1 − 2e)(D ρ + ρ a).
        Ok((0..k)
            .map(|v| {
                (0..n)
                    .map(|i| {
                        let ei = bit(e.words(), i);
                        let d = ds[v][i];
                        let sign = 1u64.wrapping_sub(2 * ei);
                        let mut z = ei.wrapping_mul(mat.a[i * k + v]).wrapping_add(
                            sign.wrapping_mul(
                                d.wrapping_mul(mat.rho_arith[i])
                                    .wrapping_add(mat.rho_a[i * k + v]),
                            ),
                        );
                        if p0 {
                            z = z.wrapping_add(ei.wrapping_mul(d));
                        }
                        z
                    })
                    .collect()
            })
            .collect())
    }

    async fn b2a(&mut self, b: &Bits) -> Result<Vec<u64>, ErrorKind> {
        let n = b.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mat = self.mux_material(n, 0).await?;
        let e_own = b.xor(&Bits::from_words(mat.rho.clone(), n));
        let peer = self.exchange(&e_own.to_bytes(), "B2A openings").await?;
        let e = e_own.xor(&Bits::from_bytes(&peer, n));
        let p0 = self.party() == Party::P0;
        Ok((0..n)
            .map(|i| {
                let ei = bit(e.words(), i);
                let mut z = 1u64.wrapping_sub(2 * ei).wrapping_mul(mat.rho_arith[i]);
                if p0 {
                    z = z.wrapping_add(ei);
                }
                z
            })
            .collect())
    }

    async fn reveal(&mut self, x: &Vec<u64>, to: Party) -> Result<Option<Vec<u64>>, ErrorKind> {
        let n = x.len();
        if self.party() == to {
            let peer = bytes_to_u64s(&self.recv(8 * n, "revealed shares").await?);
            Ok(Some(
                x.iter()
                    .zip(&peer)
                    .map(|(a, b)| a.wrapping_add(*b))
                    .collect(),
            ))
        } else {
            let mut msg = Vec::with_capacity(8 * n);
            u64s_to_bytes(x, &mut msg);
            self.send(&msg).await?;
            Ok(None)
        }
    }

    async fn scale_server(
        &mut self,
        x: &Vec<u64>,
        rows: usize,
        v: &ServerVector,
    ) -> Result<Vec<u64>, ErrorKind> {
        let d = v.d;
        check_lens("vector product", x.len(), rows * d)?;
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let m = self
            .fetch(Request::Nonlinear(NlRequest::ScaleVec {
                id: v.id,
                rows,
                d,
            }))
            .await?;
        match (self.party(), m, &v.data) {
            (
                Party::P0,
                Material::Nonlinear(NlMaterial::ScaleVec(ScaleVecMaterial::P0 { a, c })),
                ServerVectorData::Masked(f),
            ) => {
                check_len("vector triples", a.len(), x.len())?;
                let e: Vec<u64> = x.iter().zip(&a).map(|(v, m)| v.wrapping_sub(*m)).collect();
                let mut msg = Vec::with_capacity(8 * e.len());
                u64s_to_bytes(&e, &mut msg);
                self.send(&msg).await?;
                Ok((0..x.len())
                    .map(|i| a[i].wrapping_mul(f[i % d]).wrapping_add(c[i]))
                    .collect())
            }
            (
                Party::P1,
                Material::Nonlinear(NlMaterial::ScaleVec(ScaleVecMaterial::P1 { c })),
                ServerVectorData::Plain(g),
            ) => {
                check_len("vector triples", c.len(), x.len())?;
                let e = bytes_to_u64s(&self.recv(8 * x.len(), "vector product").await?);
                Ok((0..x.len())
                    .map(|i| {
                        e[i].wrapping_add(x[i])
                            .wrapping_mul(g[i % d])
                            .wrapping_add(c[i])
                    })
                    .collect())
            }
            (_, Material::Nonlinear(NlMaterial::ScaleVec(_)), _) => Err(ErrorKind::BadInput(
                "the server vector does not belong to this party (P0 holds the masked vector, \
                 P1 the plaintext)"
                    .into(),
            )),
            (_, other, _) => Err(wrong("vector-product triples", &other)),
        }
    }
}
