//! Additive secret shares over Z_2^64.
//!
//! A value `x` is shared as `x = x0 + x1 (mod 2^64)`; party P0 holds `x0`, party P1 holds `x1`.
//! Linear operations are local: sums of shares, multiplication by public values, and adding a
//! public value (done by P0 alone). Products of two shared values need a protocol (Beaver).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ring::{R64, RingTensor, ShapeError};

/// One of the two computing parties. The engine maps the client to `P0` and the server to `P1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Party {
    /// Party 0 (the client in privlm's engine).
    P0,
    /// Party 1 (the server in privlm's engine).
    P1,
}

impl Party {
    /// 0 for P0, 1 for P1.
    pub fn index(self) -> usize {
        match self {
            Party::P0 => 0,
            Party::P1 => 1,
        }
    }

    /// The other party.
    pub fn other(self) -> Party {
        match self {
            Party::P0 => Party::P1,
            Party::P1 => Party::P0,
        }
    }
}

/// One party's additive share of a tensor. `Debug` prints the party and shape, never values.
#[derive(Clone, PartialEq, Eq)]
pub struct AShare {
    party: Party,
    tensor: RingTensor,
}

impl fmt::Debug for AShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AShare(party={:?}, shape={:?})",
            self.party,
            self.tensor.shape()
        )
    }
}

/// Splits a plaintext tensor into two uniformly random additive shares.
pub fn split<R: rand_core::Rng + ?Sized>(secret: &RingTensor, rng: &mut R) -> (AShare, AShare) {
    let r = RingTensor::random(secret.shape(), rng);
    let other = secret.sub(&r).expect("same shape by construction");
    (
        AShare {
            party: Party::P0,
            tensor: r,
        },
        AShare {
            party: Party::P1,
            tensor: other,
        },
    )
}

/// Reconstructs the plaintext from both parties' shares.
pub fn reconstruct(a: &AShare, b: &AShare) -> Result<RingTensor, ShapeError> {
    a.tensor.add(&b.tensor)
}

impl AShare {
    /// Wraps one party's share tensor.
    pub fn new(party: Party, tensor: RingTensor) -> Self {
        AShare { party, tensor }
    }

    /// The share of a public value: P0 holds the value, P1 holds zeros.
    pub fn from_public(party: Party, public: &RingTensor) -> Self {
        let tensor = match party {
            Party::P0 => public.clone(),
            Party::P1 => RingTensor::zeros(public.shape()),
        };
        AShare { party, tensor }
    }

    /// The party holding this share.
    pub fn party(&self) -> Party {
        self.party
    }

    /// The shape of the shared tensor.
    pub fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }

    /// The raw share (secret: do not log).
    pub fn tensor(&self) -> &RingTensor {
        &self.tensor
    }

    /// Consumes the share, returning the raw share tensor.
    pub fn into_tensor(self) -> RingTensor {
        self.tensor
    }

    /// Share of `x + y`.
    pub fn add(&self, other: &AShare) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: self.tensor.add(&other.tensor)?,
        })
    }

    /// Share of `x - y`.
    pub fn sub(&self, other: &AShare) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: self.tensor.sub(&other.tensor)?,
        })
    }

    /// Share of `-x`.
    pub fn neg(&self) -> AShare {
        AShare {
            party: self.party,
            tensor: self.tensor.neg(),
        }
    }

    /// Share of `x + c` for a public tensor `c` (only P0 adds it).
    pub fn add_public(&self, c: &RingTensor) -> Result<AShare, ShapeError> {
        let tensor = match self.party {
            Party::P0 => self.tensor.add(c)?,
            Party::P1 => {
                if c.shape() != self.tensor.shape() {
                    return Err(ShapeError::Mismatch {
                        op: "add_public",
                        left: self.tensor.shape().to_vec(),
                        right: c.shape().to_vec(),
                    });
                }
                self.tensor.clone()
            }
        };
        Ok(AShare {
            party: self.party,
            tensor,
        })
    }

    /// Share of `x + k` for a public scalar `k` (only P0 adds it).
    pub fn add_public_scalar(&self, k: R64) -> AShare {
        let tensor = match self.party {
            Party::P0 => self.tensor.add_scalar(k),
            Party::P1 => self.tensor.clone(),
        };
        AShare {
            party: self.party,
            tensor,
        }
    }

    /// Share of `k * x` for a public scalar `k`.
    pub fn scale(&self, k: R64) -> AShare {
        AShare {
            party: self.party,
            tensor: self.tensor.scale(k),
        }
    }

    /// Share of `x ⊙ c` (elementwise) for a public tensor `c`.
    pub fn mul_public(&self, c: &RingTensor) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: self.tensor.mul_elem(c)?,
        })
    }

    /// Share of `x . W` for a public matrix `W`.
    pub fn matmul_public(&self, w: &RingTensor) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: self.tensor.matmul(w)?,
        })
    }

    /// Share of `W . x` for a public matrix `W`.
    pub fn public_matmul(&self, w: &RingTensor) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: w.matmul(&self.tensor)?,
        })
    }

    /// The same share under another shape.
    pub fn reshape(self, shape: &[usize]) -> Result<AShare, ShapeError> {
        Ok(AShare {
            party: self.party,
            tensor: self.tensor.reshape(shape)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prg::Prg;
    use proptest::prelude::*;

    fn tensor(v: Vec<u64>) -> RingTensor {
        let n = v.len();
        RingTensor::from_vec(&[n], v).unwrap()
    }

    proptest! {
        #[test]
        fn split_reconstruct(v in proptest::collection::vec(any::<u64>(), 0..64), seed in any::<u64>()) {
            let x = tensor(v);
            let mut rng = Prg::from_u64(seed);
            let (a, b) = split(&x, &mut rng);
            prop_assert_eq!(reconstruct(&a, &b).unwrap(), x);
        }

        #[test]
        fn linear_ops_commute_with_reconstruction(
            pairs in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 1..32),
            k in any::<u64>(), seed in any::<u64>()
        ) {
            let x = tensor(pairs.iter().map(|p| p.0).collect());
            let y = tensor(pairs.iter().map(|p| p.1).collect());
            let c = tensor(pairs.iter().map(|p| p.2).collect());
            let mut rng = Prg::from_u64(seed);
            let (x0, x1) = split(&x, &mut rng);
            let (y0, y1) = split(&y, &mut rng);
            let sum = reconstruct(&x0.add(&y0).unwrap(), &x1.add(&y1).unwrap()).unwrap();
            prop_assert_eq!(sum, x.add(&y).unwrap());
            let diff = reconstruct(&x0.sub(&y0).unwrap(), &x1.sub(&y1).unwrap()).unwrap();
            prop_assert_eq!(diff, x.sub(&y).unwrap());
            let pubadd = reconstruct(&x0.add_public(&c).unwrap(), &x1.add_public(&c).unwrap()).unwrap();
            prop_assert_eq!(pubadd, x.add(&c).unwrap());
            let scaled = reconstruct(&x0.scale(R64(k)), &x1.scale(R64(k))).unwrap();
            prop_assert_eq!(scaled, x.scale(R64(k)));
            let pmul = reconstruct(&x0.mul_public(&c).unwrap(), &x1.mul_public(&c).unwrap()).unwrap();
            prop_assert_eq!(pmul, x.mul_elem(&c).unwrap());
            let neg = reconstruct(&x0.neg(), &x1.neg()).unwrap();
            prop_assert_eq!(neg, x.neg());
            let ks = reconstruct(&x0.add_public_scalar(R64(k)), &x1.add_public_scalar(R64(k))).unwrap();
            prop_assert_eq!(ks, x.add_scalar(R64(k)));
        }
    }

    #[test]
    fn matmul_public_on_shares() {
        let mut rng = Prg::from_u64(7);
        let x = RingTensor::random(&[3, 4], &mut rng);
        let w = RingTensor::random(&[4, 2], &mut rng);
        let (x0, x1) = split(&x, &mut rng);
        let out = reconstruct(
            &x0.matmul_public(&w).unwrap(),
            &x1.matmul_public(&w).unwrap(),
        )
        .unwrap();
        assert_eq!(out, x.matmul(&w).unwrap());
    }

    #[test]
    fn debug_is_redacted() {
        let x = tensor(vec![987654321]);
        let s = AShare::new(Party::P0, x);
        let d = format!("{s:?}");
        assert!(!d.contains("987654321"), "{d}");
    }
}
