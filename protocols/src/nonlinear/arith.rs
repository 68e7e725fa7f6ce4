//! The arithmetic backend trait the approximations are written against, and its bit vectors.
//!
//! One text, three backends (DESIGN.md section 3, item 6): [`super::Plain`] (plaintext fixed
//! point, the oracle), the secure two-party backend ([`crate::session::Session`]) and
//! [`super::Count`] (bytes, rounds and correlations from sizes alone). Every method is batched
//! over a flat vector; a call's rounds do not depend on its length.

use std::future::Future;

use crate::beaver::nl::RowLayout;
use crate::session::ErrorKind;
use crate::share::Party;

use super::params::NlParams;

/// A vector of bits, packed 64 per word, least significant bit first. Holds plaintext bits or
/// one party's XOR shares; `Debug` prints only the length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bits(len={}, ..)", self.len)
    }
}

fn tail_mask(len: usize) -> u64 {
    if len.is_multiple_of(64) {
        u64::MAX
    } else {
        (1u64 << (len % 64)) - 1
    }
}

impl Bits {
    /// `len` zero bits.
    pub fn zeros(len: usize) -> Self {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Bits from words (bits past `len` are cleared); `words` must hold at least `len` bits.
    pub fn from_words(mut words: Vec<u64>, len: usize) -> Self {
        words.resize(len.div_ceil(64), 0);
        if let Some(last) = words.last_mut() {
            *last &= tail_mask(len);
        }
        Bits { words, len }
    }

    /// Bits from booleans.
    pub fn from_bools(b: &[bool]) -> Self {
        let mut out = Bits::zeros(b.len());
        for (i, &v) in b.iter().enumerate() {
            out.words[i / 64] |= (v as u64) << (i % 64);
        }
        out
    }

    /// The bits as booleans.
    pub fn to_bools(&self) -> Vec<bool> {
        (0..self.len).map(|i| self.get(i)).collect()
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i`.
    pub fn get(&self, i: usize) -> bool {
        (self.words[i / 64] >> (i % 64)) & 1 == 1
    }

    /// The packed words (padding bits are zero).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Bitwise XOR (lengths must agree).
    pub fn xor(&self, o: &Bits) -> Bits {
        debug_assert_eq!(self.len, o.len);
        Bits {
            words: self
                .words
                .iter()
                .zip(&o.words)
                .map(|(a, b)| a ^ b)
                .collect(),
            len: self.len,
        }
    }

    /// Every bit flipped.
    pub fn not(&self) -> Bits {
        Bits::from_words(self.words.iter().map(|w| !w).collect(), self.len)
    }

    /// `out[i] = self[idx[i]]`.
    pub fn gather(&self, idx: &[usize]) -> Bits {
        let mut out = Bits::zeros(idx.len());
        for (i, &j) in idx.iter().enumerate() {
            out.words[i / 64] |= (self.get(j) as u64) << (i % 64);
        }
        out
    }

    /// The little-endian bytes of the bits, `⌈len / 8⌉` of them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.truncate(self.len.div_ceil(8));
        out
    }

    /// Bits from `⌈len / 8⌉` little-endian bytes (padding bits are ignored).
    pub fn from_bytes(bytes: &[u8], len: usize) -> Bits {
        let mut words = vec![0u64; len.div_ceil(64)];
        for (i, c) in bytes.chunks(8).enumerate().take(words.len()) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            words[i] = u64::from_le_bytes(b);
        }
        Bits::from_words(words, len)
    }
}

/// A product in one batched round of [`Arith::products`].
#[derive(Debug)]
pub enum Prod<'a, V> {
    /// `x ⊙ y`.
    Mul(&'a V, &'a V),
    /// `x ⊙ x` (one opening instead of two).
    Square(&'a V),
}

/// A vector that P1 (the server) holds in plaintext, set up once per session
/// ([`super::setup_server_vector`]): P1 keeps `γ`, P0 the masked `γ − B` (the session mask `B`
/// comes from the dealer and is never revealed to P0). `Debug` prints the id and length only.
#[derive(Clone)]
pub struct ServerVector {
    pub(crate) id: u32,
    pub(crate) d: usize,
    pub(crate) data: ServerVectorData,
}

#[derive(Clone)]
pub(crate) enum ServerVectorData {
    /// P0: `F = γ − B`.
    Masked(Vec<u64>),
    /// P1 (and the plain backend): `γ`.
    Plain(Vec<u64>),
    /// The count backend: the shape only.
    Shape,
}

impl std::fmt::Debug for ServerVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerVector(id={}, d={}, ..)", self.id, self.d)
    }
}

impl ServerVector {
    /// The plaintext vector for the plain backend (fixed point, scale `2^f`).
    pub fn plain(id: u32, gamma: Vec<u64>) -> Self {
        ServerVector {
            id,
            d: gamma.len(),
            data: ServerVectorData::Plain(gamma),
        }
    }

    /// The shape only, for the count backend.
    pub fn shape(id: u32, d: usize) -> Self {
        ServerVector {
            id,
            d,
            data: ServerVectorData::Shape,
        }
    }

    /// The vector's weight id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.d
    }

    /// True when the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.d == 0
    }
}

/// The operations approximations are made of, batched over flat vectors (see the module
/// docs). Values are fixed point in Z_2^64 (scale chosen by the caller); the local operations
/// never communicate, the `async` ones may.
///
/// Exactness contract (what [`super::Plain`] computes and the secure backend reproduces):
/// ring operations wrap mod 2^64; products are exact in the ring (no truncation); `trunc` is
/// the floor of the signed value divided by `2^bits` (the secure backend returns floor or
/// floor + 1, `docs/numeric.md`); `msb(x, l)` is bit `l − 1` of `x` (the sign of `x` read as
/// an `l`-bit two's-complement number: exact when `x` fits); `mux` is exact modulo
/// `2^width`.
pub trait Arith: Send {
    /// A vector of values (one party's shares, plaintext values, or a length).
    type V: Clone + Send + Sync;
    /// A vector of bits (XOR shares, plaintext bits, or a length).
    type B: Clone + Send + Sync;
    /// An opened value kept for a later row product ([`Arith::trunc_square_keep`]).
    type Pending: Send + Sync;

    /// The AGREEMENT parameters.
    fn params(&self) -> &NlParams;

    /// Length of a value vector.
    fn len(&self, x: &Self::V) -> usize;

    /// A public vector.
    fn constant(&self, vals: &[u64]) -> Self::V;

    /// `x + y`.
    fn add(&self, x: &Self::V, y: &Self::V) -> Self::V;

    /// `x − y`.
    fn sub(&self, x: &Self::V, y: &Self::V) -> Self::V;

    /// `x + c` for a public vector `c`.
    fn add_public(&self, x: &Self::V, c: &[u64]) -> Self::V;

    /// `x ⊙ c` for a public vector `c` (no truncation).
    fn mul_public(&self, x: &Self::V, c: &[u64]) -> Self::V;

    /// `c · x` for a public scalar `c` (no truncation).
    fn scale(&self, x: &Self::V, c: u64) -> Self::V;

    /// `out[i] = x[idx[i]]`.
    fn gather(&self, x: &Self::V, idx: &[usize]) -> Self::V;

    /// The vectors one after the other.
    fn concat(&self, parts: &[&Self::V]) -> Self::V;

    /// Consecutive pieces of the given lengths (the inverse of [`Arith::concat`]).
    fn split(&self, x: &Self::V, lens: &[usize]) -> Vec<Self::V>;

    /// Sums of consecutive groups of the given lengths.
    fn sum_groups(&self, x: &Self::V, lens: &[usize]) -> Self::V;

    /// Element `g` repeated `lens[g]` times, for every group `g`.
    fn repeat_groups(&self, x: &Self::V, lens: &[usize]) -> Self::V;

    /// `x + v` on every row of `x` (`rows × v.len()`), where `v` is the server's plaintext: P1
    /// passes `Some(v)`, P0 passes `None` (and adds nothing); the plain backend adds `v`.
    fn add_server_rows(&self, x: &Self::V, rows: usize, v: Option<&[u64]>) -> Self::V;

    /// Length of a bit vector.
    fn blen(&self, b: &Self::B) -> usize;

    /// `¬b`.
    fn bnot(&self, b: &Self::B) -> Self::B;

    /// `a ⊕ b`.
    fn bxor(&self, a: &Self::B, b: &Self::B) -> Self::B;

    /// `out[i] = b[idx[i]]`.
    fn bgather(&self, b: &Self::B, idx: &[usize]) -> Self::B;

    /// The products of the items, all in one round (no truncation).
    fn products(
        &mut self,
        items: &[Prod<'_, Self::V>],
    ) -> impl Future<Output = Result<Vec<Self::V>, ErrorKind>> + Send;

    /// `x ⊙ r_row`: every element of row `i` of `x` (grouped by `layout`) times `r[i]`.
    fn mul_rows(
        &mut self,
        x: &Self::V,
        r: &Self::V,
        layout: &RowLayout,
    ) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send;

    /// `t²` for `t = ⌊x / 2^bits⌋` (the truncation as in [`Arith::trunc`]), keeping `t` for a
    /// later [`Arith::mul_rows_kept`] (LayerNorm's `c²` and `c · r_row` from one opening of
    /// `c`).
    fn trunc_square_keep(
        &mut self,
        x: &Self::V,
        bits: u32,
        layout: &RowLayout,
    ) -> impl Future<Output = Result<(Self::V, Self::Pending), ErrorKind>> + Send;

    /// `t ⊙ r_row` for the `t` kept by [`Arith::trunc_square_keep`] (the same value its square
    /// was computed from).
    fn mul_rows_kept(
        &mut self,
        kept: Self::Pending,
        r: &Self::V,
    ) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send;

    /// `⌊x / 2^bits⌋` (the secure backend may add one; see the trait docs).
    fn trunc(
        &mut self,
        x: &Self::V,
        bits: u32,
    ) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send;

    /// The sign bits `[x < 0]` of `x` read as `bits`-bit two's-complement values.
    fn msb(
        &mut self,
        x: &Self::V,
        bits: u32,
    ) -> impl Future<Output = Result<Self::B, ErrorKind>> + Send;

    /// `b ⊙ x_i` for each `x_i`, with one opening of `b`; result `i` is exact modulo
    /// `2^widths[i]` (64 for full values; fewer bits cost fewer bytes).
    fn mux(
        &mut self,
        b: &Self::B,
        xs: &[&Self::V],
        widths: &[u32],
    ) -> impl Future<Output = Result<Vec<Self::V>, ErrorKind>> + Send;

    /// The bits as 0/1 ring values.
    fn b2a(&mut self, b: &Self::B) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send;

    /// Reveals `x` to `to` (which gets `Some`, the other party `None`; plain: `Some`).
    fn reveal(
        &mut self,
        x: &Self::V,
        to: Party,
    ) -> impl Future<Output = Result<Option<Vec<u64>>, ErrorKind>> + Send;

    /// `x ⊙ v_row` for the server-held vector `v` (`x` is `rows × v.len()`), no truncation.
    fn scale_server(
        &mut self,
        x: &Self::V,
        rows: usize,
        v: &ServerVector,
    ) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send;

    /// `x ⊙ y` (one product).
    fn mul(
        &mut self,
        x: &Self::V,
        y: &Self::V,
    ) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send {
        async move {
            let mut v = self.products(&[Prod::Mul(x, y)]).await?;
            Ok(v.pop().expect("one product"))
        }
    }

    /// `x ⊙ x`.
    fn square(&mut self, x: &Self::V) -> impl Future<Output = Result<Self::V, ErrorKind>> + Send {
        async move {
            let mut v = self.products(&[Prod::Square(x)]).await?;
            Ok(v.pop().expect("one product"))
        }
    }
}
