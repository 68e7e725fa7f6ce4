//! Base OT: `n` random 1-out-of-2 OTs from public-key operations on the Ristretto group.
//!
//! **Functionality (random OT).** The sender obtains `n` pairs of random 128-bit keys
//! `(k0_i, k1_i)`; the receiver, with choice bits `c_i`, obtains `k_{c_i, i}` and learns
//! nothing about `k_{1-c_i, i}`; the sender learns nothing about `c_i`.
//!
//! **Protocol.** The "simplest OT" of Chou and Orlandi (LATINCRYPT 2015, ePrint 2015/267) in the
//! patched form that hashes the whole transcript of each OT, including the sender's first
//! message `A` (the fix for the gap in the original proof pointed out by Genç, Iovino and Rial,
//! "The simplest oblivious transfer protocol is not UC-secure", ePrint 2017/370, and used by
//! Hauck and Loss, ePrint 2017/1011). We need only semi-honest security, which this variant has
//! under the computational Diffie-Hellman assumption in the random-oracle model. With `G` the
//! Ristretto base point and `H` SHA-256 (truncated to 128 bits) over a domain label, the index
//! `i`, and the encodings of `A`, `B_i` and the shared point:
//!
//! ```text
//! sender                                   receiver (choices c_i)
//! a <- Z_q, A = aG        --- A --->
//!                                          b_i <- Z_q, B_i = b_i G + c_i A
//!                         <-- B_1..B_n --
//! k0_i = H(i, A, B_i, a B_i)               k_{c_i} = H(i, A, B_i, b_i A)
//! k1_i = H(i, A, B_i, a (B_i - A))
//! ```
//!
//! Cost: one message of 32 bytes and one of `32 n` bytes (one round trip); the sender does
//! one fixed-base and `n` variable-base scalar multiplications, the receiver `n` of each.
//! The receiver's addition of `A` is constant-time in `c_i`.
//!
//! Every received point is decompressed and checked: an encoding that is not a canonical
//! Ristretto point, or the identity, fails with [`BaseOtError::BadPoint`]; the drivers then end
//! the session with [`Channel::abort`].
//!
//! The sans-IO core is [`BaseOtSender`] and [`base_ot_receiver_reply`]; [`base_ot_send`] and
//! [`base_ot_recv`] are the async drivers.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rand_core::CryptoRng;
use subtle::{Choice, ConditionallySelectable};
use zeroize::Zeroizing;

use crate::block::Block;
use crate::channel::Channel;

use super::OtError;

/// Number of base OTs per OT-extension session setup (the computational security parameter).
pub const BASE_OT_COUNT: usize = 128;

/// Bytes of an encoded Ristretto point.
pub const POINT_LEN: usize = 32;

const DOMAIN: &[u8] = b"privlm base-ot chou-orlandi patched v1";

/// Errors of the base OT core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaseOtError {
    /// A received point does not decode to a valid non-identity Ristretto point.
    #[error("base OT: {what} {index} is not a valid Ristretto point")]
    BadPoint {
        /// Which point (`"A"` or `"B"`).
        what: &'static str,
        /// Its index in the message.
        index: usize,
    },
    /// A message has the wrong length.
    #[error("base OT: {what} has {got} bytes, expected {expected}")]
    Length {
        /// Which message.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Received length.
        got: usize,
    },
}

fn decode_point(
    bytes: &[u8],
    what: &'static str,
    index: usize,
) -> Result<RistrettoPoint, BaseOtError> {
    let c = CompressedRistretto::from_slice(bytes)
        .map_err(|_| BaseOtError::BadPoint { what, index })?;
    match c.decompress() {
        Some(p) if p != RistrettoPoint::identity() => Ok(p),
        _ => Err(BaseOtError::BadPoint { what, index }),
    }
}

pub(super) fn kdf(index: usize, a: &[u8; 32], b: &[u8], shared: &RistrettoPoint) -> Block {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(&(index as u64).to_le_bytes());
    ctx.update(a);
    ctx.update(b);
    ctx.update(shared.compress().as_bytes());
    let d = ctx.finish();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    Block::from_bytes(k)
}

/// The base-OT sender's state between its first message and the receiver's reply.
pub struct BaseOtSender {
    /// The secret scalar, wiped on drop.
    a: Zeroizing<Scalar>,
    a_enc: [u8; 32],
    /// `a · A`, so that `a (B - A) = a B - a A`.
    aa: RistrettoPoint,
}

impl std::fmt::Debug for BaseOtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BaseOtSender(..)")
    }
}

impl BaseOtSender {
    /// Samples the sender's secret `a` and computes `A = aG`.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let a = Zeroizing::new(Scalar::random(rng));
        let big_a = RISTRETTO_BASEPOINT_TABLE * &*a;
        let aa = big_a * *a;
        BaseOtSender {
            a,
            a_enc: big_a.compress().to_bytes(),
            aa,
        }
    }

    /// The first message: the encoding of `A`.
    pub fn first_message(&self) -> [u8; POINT_LEN] {
        self.a_enc
    }

    /// Consumes the receiver's reply (`count` encoded points) and returns the key pairs.
    pub fn finish(self, reply: &[u8], count: usize) -> Result<Vec<[Block; 2]>, BaseOtError> {
        let expected = count.saturating_mul(POINT_LEN);
        if reply.len() != expected {
            return Err(BaseOtError::Length {
                what: "the receiver's reply",
                expected,
                got: reply.len(),
            });
        }
        let mut out = Vec::with_capacity(count);
        for (i, enc) in reply.chunks_exact(POINT_LEN).enumerate() {
            let b = decode_point(enc, "B", i)?;
            let ab = b * *self.a;
            let k0 = kdf(i, &self.a_enc, enc, &ab);
            let k1 = kdf(i, &self.a_enc, enc, &(ab - self.aa));
            out.push([k0, k1]);
        }
        Ok(out)
    }
}

/// The receiver's step: given the sender's first message and its choice bits, returns the reply
/// (`32 · choices.len()` bytes) and the chosen keys.
pub fn base_ot_receiver_reply<R: CryptoRng + ?Sized>(
    rng: &mut R,
    first: &[u8],
    choices: &[bool],
) -> Result<(Vec<u8>, Vec<Block>), BaseOtError> {
    if first.len() != POINT_LEN {
        return Err(BaseOtError::Length {
            what: "the sender's first message",
            expected: POINT_LEN,
            got: first.len(),
        });
    }
    let big_a = decode_point(first, "A", 0)?;
    let a_enc: [u8; 32] = first.try_into().expect("length checked");
    // A fixed-base table for A makes the n multiplications b_i·A about 3x cheaper.
    let a_table = RistrettoBasepointTable::create(&big_a);
    let mut reply = Vec::with_capacity(POINT_LEN * choices.len());
    let mut keys = Vec::with_capacity(choices.len());
    for (i, &c) in choices.iter().enumerate() {
        let b = Zeroizing::new(Scalar::random(rng));
        let bg = RISTRETTO_BASEPOINT_TABLE * &*b;
        let big_b = RistrettoPoint::conditional_select(&bg, &(bg + big_a), Choice::from(c as u8));
        let enc = big_b.compress().to_bytes();
        keys.push(kdf(i, &a_enc, &enc, &(&a_table * &*b)));
        reply.extend_from_slice(&enc);
    }
    Ok((reply, keys))
}

/// Runs the sender side of `count` base OTs over `ch`; returns the key pairs.
pub async fn base_ot_send<C: Channel, R: CryptoRng + Send + ?Sized>(
    ch: &mut C,
    count: usize,
    rng: &mut R,
) -> Result<Vec<[Block; 2]>, OtError> {
    let sender = BaseOtSender::new(rng);
    ch.send_bytes(&sender.first_message()).await?;
    let mut reply = vec![0u8; count * POINT_LEN];
    ch.recv_bytes_into(&mut reply, "base OT reply (points B)")
        .await?;
    match sender.finish(&reply, count) {
        Ok(keys) => Ok(keys),
        Err(e) => Err(ch.abort(&e.to_string()).await.into()),
    }
}

/// Runs the receiver side of one base OT per choice bit over `ch`; returns the chosen keys.
pub async fn base_ot_recv<C: Channel, R: CryptoRng + Send + ?Sized>(
    ch: &mut C,
    choices: &[bool],
    rng: &mut R,
) -> Result<Vec<Block>, OtError> {
    let mut first = [0u8; POINT_LEN];
    ch.recv_bytes_into(&mut first, "base OT first message (point A)")
        .await?;
    match base_ot_receiver_reply(rng, &first, choices) {
        Ok((reply, keys)) => {
            ch.send_bytes(&reply).await?;
            Ok(keys)
        }
        Err(e) => Err(ch.abort(&e.to_string()).await.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{ChannelError, mem};
    use crate::prg::Prg;
    use rand_core::Rng;

    #[test]
    fn core_keys_agree() {
        let mut rng = Prg::from_u64(7);
        let choices: Vec<bool> = (0..BASE_OT_COUNT)
            .map(|_| rng.next_u64() & 1 == 1)
            .collect();
        let s = BaseOtSender::new(&mut rng);
        let (reply, got) = base_ot_receiver_reply(&mut rng, &s.first_message(), &choices).unwrap();
        let pairs = s.finish(&reply, choices.len()).unwrap();
        for i in 0..choices.len() {
            let c = choices[i] as usize;
            assert_eq!(got[i], pairs[i][c]);
            assert_ne!(got[i], pairs[i][1 - c]);
        }
        // Keys differ across indices.
        assert_ne!(pairs[0][0], pairs[1][0]);
    }

    #[test]
    fn core_rejects_bad_points_and_lengths() {
        let mut rng = Prg::from_u64(8);
        // Not a canonical encoding (all 0xff) and the identity (all zero).
        for bad in [[0xffu8; 32], [0u8; 32]] {
            let e = base_ot_receiver_reply(&mut rng, &bad, &[true]).unwrap_err();
            assert!(matches!(e, BaseOtError::BadPoint { what: "A", .. }), "{e}");
        }
        let e = base_ot_receiver_reply(&mut rng, &[1u8; 5], &[true]).unwrap_err();
        assert!(matches!(e, BaseOtError::Length { .. }));
        let s = BaseOtSender::new(&mut rng);
        let (mut reply, _) =
            base_ot_receiver_reply(&mut rng, &s.first_message(), &[false, true]).unwrap();
        reply[32..].copy_from_slice(&[0xff; 32]);
        let e = BaseOtSender::new(&mut rng).finish(&reply, 2).unwrap_err();
        assert_eq!(
            e,
            BaseOtError::BadPoint {
                what: "B",
                index: 1
            }
        );
        let e = s.finish(&reply[..40], 2).unwrap_err();
        assert!(matches!(
            e,
            BaseOtError::Length {
                expected: 64,
                got: 40,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn drivers_agree_and_bad_point_aborts() {
        let (mut a, mut b) = mem::pair();
        let choices: Vec<bool> = (0..BASE_OT_COUNT).map(|i| i % 3 == 0).collect();
        let (mut r1, mut r2) = (Prg::from_u64(1), Prg::from_u64(2));
        let (s, r) = tokio::join!(
            base_ot_send(&mut a, BASE_OT_COUNT, &mut r1),
            base_ot_recv(&mut b, &choices, &mut r2)
        );
        let (s, r) = (s.unwrap(), r.unwrap());
        for i in 0..BASE_OT_COUNT {
            assert_eq!(r[i], s[i][choices[i] as usize]);
        }

        // A sender whose first message is not a point: the receiver aborts, the sender sees it.
        let (mut a, mut b) = mem::pair();
        let bad_sender = async {
            a.send_bytes(&[0xff; 32]).await.unwrap();
            let mut buf = [0u8; 32];
            a.recv_bytes_into(&mut buf, "reply").await
        };
        let (s, r) = tokio::join!(bad_sender, base_ot_recv(&mut b, &[true], &mut r2));
        assert!(matches!(s, Err(ChannelError::PeerAborted(_))), "{s:?}");
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("not a valid Ristretto point"), "{msg}");
    }
}
