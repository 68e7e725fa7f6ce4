//! The ring Z_2^64, fixed-point encoding, and dense tensors of ring elements.
//!
//! Every value a protocol computes on lives in Z_2^64: `u64` with wrapping arithmetic, read as a
//! two's-complement signed integer where a sign matters. Real numbers are encoded in fixed point
//! with `f` fractional bits (an AGREEMENT parameter, see [`FixedPoint`] and `docs/numeric.md`).

use std::fmt;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use serde::{Deserialize, Serialize};

/// An element of Z_2^64. All arithmetic wraps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(transparent)]
pub struct R64(pub u64);

impl R64 {
    /// The additive identity.
    pub const ZERO: R64 = R64(0);
    /// The multiplicative identity.
    pub const ONE: R64 = R64(1);

    /// The element read as a two's-complement signed integer.
    pub fn signed(self) -> i64 {
        self.0 as i64
    }

    /// The element whose two's-complement reading is `v`.
    pub fn from_signed(v: i64) -> Self {
        R64(v as u64)
    }

    /// Arithmetic (sign-extending) right shift of the signed reading: the plaintext truncation.
    pub fn shr_signed(self, bits: u32) -> Self {
        R64(((self.0 as i64) >> bits) as u64)
    }
}

impl fmt::Debug for R64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R64({})", self.0 as i64)
    }
}

impl Add for R64 {
    type Output = R64;
    fn add(self, rhs: R64) -> R64 {
        R64(self.0.wrapping_add(rhs.0))
    }
}
impl Sub for R64 {
    type Output = R64;
    fn sub(self, rhs: R64) -> R64 {
        R64(self.0.wrapping_sub(rhs.0))
    }
}
impl Mul for R64 {
    type Output = R64;
    fn mul(self, rhs: R64) -> R64 {
        R64(self.0.wrapping_mul(rhs.0))
    }
}
impl Neg for R64 {
    type Output = R64;
    fn neg(self) -> R64 {
        R64(self.0.wrapping_neg())
    }
}
impl AddAssign for R64 {
    fn add_assign(&mut self, rhs: R64) {
        *self = *self + rhs;
    }
}
impl SubAssign for R64 {
    fn sub_assign(&mut self, rhs: R64) {
        *self = *self - rhs;
    }
}
impl MulAssign for R64 {
    fn mul_assign(&mut self, rhs: R64) {
        *self = *self * rhs;
    }
}

/// Default number of fractional bits (see `docs/numeric.md` for the reasoning).
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// Errors of fixed-point encoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FixedPointError {
    /// The value is NaN or infinite.
    #[error("cannot encode a non-finite value ({0})")]
    NotFinite(f64),
    /// The value's magnitude does not fit the signed 64-bit fixed-point range.
    #[error(
        "value {value} is outside the fixed-point range (|x| < 2^{max_log2}) for {frac_bits} fractional bits"
    )]
    OutOfRange {
        /// The value that was refused.
        value: f64,
        /// Number of fractional bits of the encoding.
        frac_bits: u32,
        /// Values must satisfy |x| < 2^max_log2.
        max_log2: u32,
    },
    /// The number of fractional bits is not in 0..=62.
    #[error("fractional bits must be in 0..=62, got {0}")]
    BadFracBits(u32),
}

/// Fixed-point encoding with `frac_bits` fractional bits: `x` is stored as `round(x * 2^f)`
/// in two's complement. Encodable range: |x| < 2^(63 - f).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            frac_bits: DEFAULT_FRAC_BITS,
        }
    }
}

impl FixedPoint {
    /// An encoding with `frac_bits` fractional bits (0..=62).
    pub fn new(frac_bits: u32) -> Result<Self, FixedPointError> {
        if frac_bits > 62 {
            return Err(FixedPointError::BadFracBits(frac_bits));
        }
        Ok(FixedPoint { frac_bits })
    }

    /// The number of fractional bits `f`.
    pub fn frac_bits(self) -> u32 {
        self.frac_bits
    }

    /// The scale `2^f` as a float.
    pub fn scale(self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// The scale `2^f` as a ring element (for multiplying by public integers).
    pub fn one(self) -> R64 {
        R64(1u64 << self.frac_bits)
    }

    /// Largest magnitude (exclusive) that encodes: `2^(63 - f)`.
    pub fn max_abs(self) -> f64 {
        2f64.powi(63 - self.frac_bits as i32)
    }

    /// Encodes `x` with round-to-nearest (ties away from zero).
    pub fn encode(self, x: f64) -> Result<R64, FixedPointError> {
        if !x.is_finite() {
            return Err(FixedPointError::NotFinite(x));
        }
        let scaled = (x * self.scale()).round();
        // i64 covers [-2^63, 2^63); require |scaled| < 2^63 strictly on both sides for symmetry.
        if scaled.abs() >= 9_223_372_036_854_775_808.0 {
            return Err(FixedPointError::OutOfRange {
                value: x,
                frac_bits: self.frac_bits,
                max_log2: 63 - self.frac_bits,
            });
        }
        Ok(R64::from_signed(scaled as i64))
    }

    /// Encodes a slice of `f32`; fails on the first value out of range.
    pub fn encode_f32s(self, xs: &[f32]) -> Result<Vec<u64>, FixedPointError> {
        xs.iter()
            .map(|&x| self.encode(x as f64).map(|r| r.0))
            .collect()
    }

    /// Decodes the signed reading of `r` as a real number.
    pub fn decode(self, r: R64) -> f64 {
        r.signed() as f64 / self.scale()
    }

    /// Decodes a slice of raw ring elements to `f32`.
    pub fn decode_f32s(self, rs: &[u64]) -> Vec<f32> {
        rs.iter().map(|&r| self.decode(R64(r)) as f32).collect()
    }
}

/// Errors on tensor shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// The data length does not equal the product of the shape.
    #[error("shape {shape:?} needs {expected} elements, got {got}")]
    Length {
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// Two operands' shapes do not fit the operation.
    #[error("{op}: shapes {left:?} and {right:?} do not fit")]
    Mismatch {
        /// The operation.
        op: &'static str,
        /// Left operand's shape.
        left: Vec<usize>,
        /// Right operand's shape.
        right: Vec<usize>,
    },
}

/// A dense row-major tensor of ring elements. This type holds plaintext or one party's share;
/// its `Debug` prints only the shape, since the values may be secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Vec<u64>,
}

impl fmt::Debug for RingTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingTensor(shape={:?}, values hidden)", self.shape)
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl RingTensor {
    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        RingTensor {
            shape: shape.to_vec(),
            data: vec![0; numel(shape)],
        }
    }

    /// A tensor from raw row-major data; the length must match the shape.
    pub fn from_vec(shape: &[usize], data: Vec<u64>) -> Result<Self, ShapeError> {
        let expected = numel(shape);
        if data.len() != expected {
            return Err(ShapeError::Length {
                shape: shape.to_vec(),
                expected,
                got: data.len(),
            });
        }
        Ok(RingTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// Encodes real values in fixed point.
    pub fn encode(shape: &[usize], xs: &[f64], fp: FixedPoint) -> Result<Self, crate::Error> {
        let data = xs
            .iter()
            .map(|&x| fp.encode(x).map(|r| r.0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_vec(shape, data)?)
    }

    /// Decodes every element as a fixed-point real.
    pub fn decode(&self, fp: FixedPoint) -> Vec<f64> {
        self.data.iter().map(|&r| fp.decode(R64(r))).collect()
    }

    /// A tensor of uniformly random elements.
    pub fn random<R: rand_core::Rng + ?Sized>(shape: &[usize], rng: &mut R) -> Self {
        let data = (0..numel(shape)).map(|_| rng.next_u64()).collect();
        RingTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Row-major elements.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// Mutable row-major elements.
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// The same elements under another shape with the same number of elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self, ShapeError> {
        let expected = numel(shape);
        if expected != self.data.len() {
            return Err(ShapeError::Length {
                shape: shape.to_vec(),
                expected,
                got: self.data.len(),
            });
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    fn check_same(&self, other: &Self, op: &'static str) -> Result<(), ShapeError> {
        if self.shape != other.shape {
            return Err(ShapeError::Mismatch {
                op,
                left: self.shape.clone(),
                right: other.shape.clone(),
            });
        }
        Ok(())
    }

    fn zip_with(
        &self,
        other: &Self,
        op: &'static str,
        f: impl Fn(u64, u64) -> u64,
    ) -> Result<Self, ShapeError> {
        self.check_same(other, op)?;
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| f(a, b))
            .collect();
        Ok(RingTensor {
            shape: self.shape.clone(),
            data,
        })
    }

    /// Elementwise sum.
    pub fn add(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, "add", u64::wrapping_add)
    }

    /// Elementwise difference.
    pub fn sub(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, "sub", u64::wrapping_sub)
    }

    /// Elementwise product (plaintext; on shares only when the other operand is public).
    pub fn mul_elem(&self, other: &Self) -> Result<Self, ShapeError> {
        self.zip_with(other, "mul_elem", u64::wrapping_mul)
    }

    /// In-place elementwise sum.
    pub fn add_assign(&mut self, other: &Self) -> Result<(), ShapeError> {
        self.check_same(other, "add_assign")?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a = a.wrapping_add(b);
        }
        Ok(())
    }

    /// In-place elementwise difference.
    pub fn sub_assign(&mut self, other: &Self) -> Result<(), ShapeError> {
        self.check_same(other, "sub_assign")?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a = a.wrapping_sub(b);
        }
        Ok(())
    }

    /// Elementwise negation.
    pub fn neg(&self) -> Self {
        RingTensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|a| a.wrapping_neg()).collect(),
        }
    }

    /// Multiplies every element by a public scalar.
    pub fn scale(&self, k: R64) -> Self {
        RingTensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|a| a.wrapping_mul(k.0)).collect(),
        }
    }

    /// Adds a public scalar to every element.
    pub fn add_scalar(&self, k: R64) -> Self {
        RingTensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|a| a.wrapping_add(k.0)).collect(),
        }
    }

    /// Arithmetic right shift of every element's signed reading (plaintext truncation).
    pub fn shr_signed(&self, bits: u32) -> Self {
        RingTensor {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .map(|&a| ((a as i64) >> bits) as u64)
                .collect(),
        }
    }

    /// Matrix product of two 2-D tensors, `(n x k) . (k x m)`, wrapping in Z_2^64.
    pub fn matmul(&self, other: &Self) -> Result<Self, ShapeError> {
        let (n, k, m) = match (self.shape.as_slice(), other.shape.as_slice()) {
            ([n, k], [k2, m]) if k == k2 => (*n, *k, *m),
            _ => {
                return Err(ShapeError::Mismatch {
                    op: "matmul",
                    left: self.shape.clone(),
                    right: other.shape.clone(),
                });
            }
        };
        let mut out = vec![0u64; n * m];
        matmul_into(&self.data, &other.data, &mut out, n, k, m);
        Ok(RingTensor {
            shape: vec![n, m],
            data: out,
        })
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose(&self) -> Result<Self, ShapeError> {
        let [r, c] = self.shape.as_slice() else {
            return Err(ShapeError::Mismatch {
                op: "transpose",
                left: self.shape.clone(),
                right: vec![],
            });
        };
        let (r, c) = (*r, *c);
        let mut out = vec![0u64; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        Ok(RingTensor {
            shape: vec![c, r],
            data: out,
        })
    }
}

/// `out += a (n x k) . b (k x m)` over Z_2^64, row-major, cache-friendly i-k-j order.
pub fn matmul_into(a: &[u64], b: &[u64], out: &mut [u64], n: usize, k: usize, m: usize) {
    assert_eq!(a.len(), n * k, "matmul_into: a has the wrong length");
    assert_eq!(b.len(), k * m, "matmul_into: b has the wrong length");
    assert_eq!(out.len(), n * m, "matmul_into: out has the wrong length");
    for i in 0..n {
        let row = &mut out[i * m..(i + 1) * m];
        for (p, &aip) in a[i * k..(i + 1) * k].iter().enumerate() {
            if aip == 0 {
                continue;
            }
            let brow = &b[p * m..(p + 1) * m];
            for (o, &bv) in row.iter_mut().zip(brow) {
                *o = o.wrapping_add(aip.wrapping_mul(bv));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps() {
        assert_eq!(R64(u64::MAX) + R64(1), R64(0));
        assert_eq!(R64(0) - R64(1), R64(u64::MAX));
        assert_eq!(-R64(1), R64(u64::MAX));
        assert_eq!(R64(1 << 63) * R64(2), R64(0));
        assert_eq!(R64::from_signed(-8).shr_signed(2), R64::from_signed(-2));
    }

    #[test]
    fn fixed_point_round_trip_and_boundaries() {
        let fp = FixedPoint::new(16).unwrap();
        for &x in &[
            0.0,
            1.0,
            -1.0,
            0.5,
            -0.25,
            std::f64::consts::PI,
            -1234.5678,
            1e-5,
        ] {
            let r = fp.encode(x).unwrap();
            assert!((fp.decode(r) - x).abs() <= 0.5 / fp.scale(), "x = {x}");
        }
        // The largest f64 below the bound 2^(63-f) encodes exactly; the bound itself does not.
        let max = f64::from_bits(fp.max_abs().to_bits() - 1);
        assert_eq!(fp.decode(fp.encode(max).unwrap()), max);
        assert_eq!(fp.decode(fp.encode(-max).unwrap()), -max);
        assert!(matches!(
            fp.encode(fp.max_abs()),
            Err(FixedPointError::OutOfRange { .. })
        ));
        assert!(matches!(
            fp.encode(-fp.max_abs()),
            Err(FixedPointError::OutOfRange { .. })
        ));
        assert!(matches!(
            fp.encode(f64::NAN),
            Err(FixedPointError::NotFinite(_))
        ));
        assert!(matches!(
            fp.encode(f64::INFINITY),
            Err(FixedPointError::NotFinite(_))
        ));
        // The smallest step.
        assert_eq!(fp.encode(1.0 / fp.scale()).unwrap(), R64(1));
        assert_eq!(fp.encode(-1.0 / fp.scale()).unwrap(), R64(u64::MAX));
        assert!(FixedPoint::new(63).is_err());
        // The ring's extreme elements decode to the ends of the range.
        assert_eq!(fp.decode(R64(i64::MIN as u64)), -fp.max_abs());
        assert!(fp.decode(R64(i64::MAX as u64)) <= fp.max_abs());
    }

    #[test]
    fn matmul_and_transpose() {
        let a = RingTensor::from_vec(&[2, 3], vec![1, 2, 3, 4, 5, 6]).unwrap();
        let b = RingTensor::from_vec(&[3, 2], vec![7, 8, 9, 10, 11, 12]).unwrap();
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.data(), &[58, 64, 139, 154]);
        assert_eq!(a.transpose().unwrap().data(), &[1, 4, 2, 5, 3, 6]);
        assert!(a.matmul(&a).is_err());
        assert!(RingTensor::from_vec(&[2, 2], vec![1]).is_err());
    }

    #[test]
    fn debug_hides_values() {
        let t = RingTensor::from_vec(&[1], vec![123456789]).unwrap();
        assert!(!format!("{t:?}").contains("123456789"));
    }
}
