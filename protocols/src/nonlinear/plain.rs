//! The plaintext fixed-point backend: the oracle of the secure backend, and what the engine's
//! fixed-point mirror calls.
//!
//! Values are ring elements (`u64`, wrapping); truncation is the floor of the signed value;
//! comparisons read the low `l` bits as a signed number; products are exact in the ring. It
//! never communicates: its futures complete at the first poll, so [`Plain::run`] drives them
//! without an executor.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::beaver::nl::RowLayout;
use crate::session::ErrorKind;
use crate::share::Party;

use super::arith::{Arith, Bits, Prod, ServerVector, ServerVectorData};
use super::params::NlParams;

/// The plaintext backend (see the module docs).
#[derive(Clone, Debug)]
pub struct Plain {
    params: NlParams,
}

impl Plain {
    /// A backend with the given parameters.
    pub fn new(params: NlParams) -> Self {
        Plain { params }
    }

    /// Runs a computation over the plain backend to completion, without an executor (its
    /// futures never wait).
    ///
    /// # Panics
    /// If `fut` is pending at its first poll, i.e. awaits something other than this backend
    /// (a programming error).
    pub fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("Plain::run: the computation waited on something else"),
        }
    }
}

fn rows_of(layout: &RowLayout) -> Vec<usize> {
    layout.lens().collect()
}

/// `x ⊙ r_row` in the ring.
fn mul_rows_plain(x: &[u64], r: &[u64], lens: &[usize]) -> Vec<u64> {
    let mut out = Vec::with_capacity(x.len());
    let mut off = 0;
    for (&len, &rv) in lens.iter().zip(r) {
        out.extend(x[off..off + len].iter().map(|&v| v.wrapping_mul(rv)));
        off += len;
    }
    out
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), ErrorKind> {
    if ok {
        Ok(())
    } else {
        Err(ErrorKind::BadInput(what()))
    }
}

impl Arith for Plain {
    type V = Vec<u64>;
    type B = Bits;
    type Pending = (Vec<u64>, RowLayout);

    fn params(&self) -> &NlParams {
        &self.params
    }

    fn len(&self, x: &Vec<u64>) -> usize {
        x.len()
    }

    fn constant(&self, vals: &[u64]) -> Vec<u64> {
        vals.to_vec()
    }

    fn add(&self, x: &Vec<u64>, y: &Vec<u64>) -> Vec<u64> {
        x.iter().zip(y).map(|(a, b)| a.wrapping_add(*b)).collect()
    }

    fn sub(&self, x: &Vec<u64>, y: &Vec<u64>) -> Vec<u64> {
        x.iter().zip(y).map(|(a, b)| a.wrapping_sub(*b)).collect()
    }

    fn add_public(&self, x: &Vec<u64>, c: &[u64]) -> Vec<u64> {
        x.iter().zip(c).map(|(a, b)| a.wrapping_add(*b)).collect()
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
        match v {
            Some(v) if !v.is_empty() => x
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
        b.not()
    }

    fn bxor(&self, a: &Bits, b: &Bits) -> Bits {
        a.xor(b)
    }

    fn bgather(&self, b: &Bits, idx: &[usize]) -> Bits {
        b.gather(idx)
    }

    async fn products(&mut self, items: &[Prod<'_, Vec<u64>>]) -> Result<Vec<Vec<u64>>, ErrorKind> {
        items
            .iter()
            .map(|it| match it {
                Prod::Mul(x, y) => {
                    check(x.len() == y.len(), || {
                        format!("product of {} and {} elements", x.len(), y.len())
                    })?;
                    Ok(x.iter()
                        .zip(y.iter())
                        .map(|(a, b)| a.wrapping_mul(*b))
                        .collect())
                }
                Prod::Square(x) => Ok(x.iter().map(|a| a.wrapping_mul(*a)).collect()),
            })
            .collect()
    }

    async fn mul_rows(
        &mut self,
        x: &Vec<u64>,
        r: &Vec<u64>,
        layout: &RowLayout,
    ) -> Result<Vec<u64>, ErrorKind> {
        check(x.len() == layout.len() && r.len() == layout.rows(), || {
            "row product: lengths do not fit the layout".into()
        })?;
        Ok(mul_rows_plain(x, r, &rows_of(layout)))
    }

    async fn trunc_square_keep(
        &mut self,
        x: &Vec<u64>,
        bits: u32,
        layout: &RowLayout,
    ) -> Result<(Vec<u64>, Self::Pending), ErrorKind> {
        let t: Vec<u64> = x.iter().map(|&a| ((a as i64) >> bits) as u64).collect();
        let sq = t.iter().map(|&v| v.wrapping_mul(v)).collect();
        Ok((sq, (t, layout.clone())))
    }

    async fn mul_rows_kept(
        &mut self,
        kept: Self::Pending,
        r: &Vec<u64>,
    ) -> Result<Vec<u64>, ErrorKind> {
        let (x, layout) = kept;
        self.mul_rows(&x, r, &layout).await
    }

    async fn trunc(&mut self, x: &Vec<u64>, bits: u32) -> Result<Vec<u64>, ErrorKind> {
        Ok(x.iter().map(|&a| ((a as i64) >> bits) as u64).collect())
    }

    async fn msb(&mut self, x: &Vec<u64>, bits: u32) -> Result<Bits, ErrorKind> {
        let mut out = Bits::zeros(x.len());
        let words: Vec<u64> = x
            .chunks(64)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u64, |w, (i, &v)| w | (((v >> (bits - 1)) & 1) << i))
            })
            .collect();
        if !words.is_empty() {
            out = Bits::from_words(words, x.len());
        }
        Ok(out)
    }

    async fn mux(
        &mut self,
        b: &Bits,
        xs: &[&Vec<u64>],
        _widths: &[u32],
    ) -> Result<Vec<Vec<u64>>, ErrorKind> {
        Ok(xs
            .iter()
            .map(|x| {
                x.iter()
                    .enumerate()
                    .map(|(i, &v)| if b.get(i) { v } else { 0 })
                    .collect()
            })
            .collect())
    }

    async fn b2a(&mut self, b: &Bits) -> Result<Vec<u64>, ErrorKind> {
        Ok((0..b.len()).map(|i| b.get(i) as u64).collect())
    }

    async fn reveal(&mut self, x: &Vec<u64>, _to: Party) -> Result<Option<Vec<u64>>, ErrorKind> {
        Ok(Some(x.clone()))
    }

    async fn scale_server(
        &mut self,
        x: &Vec<u64>,
        rows: usize,
        v: &ServerVector,
    ) -> Result<Vec<u64>, ErrorKind> {
        let ServerVectorData::Plain(g) = &v.data else {
            return Err(ErrorKind::BadInput(
                "the plain backend needs the plaintext vector".into(),
            ));
        };
        check(x.len() == rows * g.len(), || {
            format!("{} elements are not {rows} rows of {}", x.len(), g.len())
        })?;
        Ok(x.iter()
            .enumerate()
            .map(|(i, a)| a.wrapping_mul(g[i % g.len()]))
            .collect())
    }
}
