//! Chosen-message OT from random OT (Beaver's derandomization), with 128-bit, l-bit and
//! correlated l-bit messages.
//!
//! **Functionality (chosen-message OT).** The sender inputs pairs `(x0_i, x1_i)`, the receiver
//! choice bits `b_i`; the receiver obtains `x_{b_i, i}` and nothing else, the sender learns
//! nothing. **Correlated-message OT** (the form B2A and Gilboa products need): the sender inputs
//! `Δ_i ∈ Z_{2^l}` and obtains a random `x_i`, the receiver obtains `x_i + b_i·Δ_i mod 2^l`.
//!
//! **Protocol.** D. Beaver, "Precomputing Oblivious Transfer" (CRYPTO 1995): a random OT made
//! in preprocessing (sender `(m0, m1)`, receiver `(c, m_c)`) is used online with
//!
//! ```text
//! receiver                                        sender
//! e = b ⊕ c                 --- e (1 bit) --->
//!                           <-- y0 = x0 ⊕ m_e, y1 = x1 ⊕ m_{1⊕e} ---
//! x_b = y_b ⊕ m_c
//! ```
//!
//! For l-bit messages the pads are the low `l` bits of the (already hashed, uniformly random)
//! ROT messages and the sender's reply is `2l` bits per OT. For correlated messages the sender
//! sets `x = pad(m_e)` and replies with the single value `y = x + Δ − pad(m_{1⊕e}) mod 2^l`; the
//! receiver outputs `pad(m_c)` if `b = 0` and `y + pad(m_c)` if `b = 1`. Security: the sender
//! sees `e`, a one-time pad of `b` by the uniform `c`; the receiver sees `m_{1⊕c}` only masked.
//!
//! **Cost online** per OT: 1 bit from receiver to sender, then `256` (chosen 128-bit), `2l`
//! (chosen l-bit) or `l` (correlated) bits back; one round trip per call plus a 9-byte call
//! header (kind and count, checked by the sender) and the frame headers.
//!
//! [`RotBufferSender`] / [`RotBufferReceiver`] keep the preprocessed random OTs (from any
//! [`RotSender`] / [`RotReceiver`]: IKNP, dealer-supplied, ideal) and top the buffer up
//! automatically when a call needs more than was preprocessed. The sans-IO steps are the free
//! functions [`derand_correction`], [`derand_sender_reply`], [`derand_receiver_output`] and their
//! l-bit and correlated forms.

use std::collections::VecDeque;

use crate::block::Block;
use crate::channel::Channel;

use super::wire::{self, Kind, mask, pack_values, packed_len, unpack_values};
use super::{OtError, RotReceiver, RotSender};

/// The receiver's correction `e_i = b_i ⊕ c_i` (its preprocessed random choice bits `c_i`).
pub fn derand_correction(pre_bits: &[bool], choices: &[bool]) -> Vec<bool> {
    assert_eq!(
        pre_bits.len(),
        choices.len(),
        "one random OT per choice bit"
    );
    pre_bits.iter().zip(choices).map(|(c, b)| c ^ b).collect()
}

/// The sender's reply `(y0_i, y1_i) = (x0_i ⊕ m_{e_i}, x1_i ⊕ m_{1⊕e_i})`, as `2n` blocks.
pub fn derand_sender_reply(pre: &[[Block; 2]], e: &[bool], msgs: &[[Block; 2]]) -> Vec<Block> {
    assert_eq!(pre.len(), msgs.len(), "one random OT per message pair");
    assert_eq!(e.len(), msgs.len(), "one correction bit per message pair");
    let mut out = Vec::with_capacity(2 * msgs.len());
    for ((m, &e), x) in pre.iter().zip(e).zip(msgs) {
        out.push(x[0] ^ m[e as usize]);
        out.push(x[1] ^ m[!e as usize]);
    }
    out
}

/// The receiver's output `x_{b_i} = y_{b_i} ⊕ m_{c_i}`.
pub fn derand_receiver_output(pre_msgs: &[Block], choices: &[bool], reply: &[Block]) -> Vec<Block> {
    assert_eq!(reply.len(), 2 * choices.len(), "two reply blocks per OT");
    pre_msgs
        .iter()
        .zip(choices)
        .zip(reply.chunks_exact(2))
        .map(|((m, &b), y)| y[b as usize] ^ *m)
        .collect()
}

fn pad(m: Block, bits: u32) -> u64 {
    m.0 as u64 & mask(bits)
}

fn check_bits(bits: u32) {
    assert!(
        (1..=64).contains(&bits),
        "message width must be 1..=64 bits, got {bits}"
    );
}

/// The sender's reply for l-bit messages (values reduced mod `2^bits`): `2n` values.
pub fn derand_sender_reply_u64(
    pre: &[[Block; 2]],
    e: &[bool],
    msgs: &[[u64; 2]],
    bits: u32,
) -> Vec<u64> {
    check_bits(bits);
    assert_eq!(pre.len(), msgs.len(), "one random OT per message pair");
    assert_eq!(e.len(), msgs.len(), "one correction bit per message pair");
    let mut out = Vec::with_capacity(2 * msgs.len());
    for ((m, &e), x) in pre.iter().zip(e).zip(msgs) {
        out.push((x[0] ^ pad(m[e as usize], bits)) & mask(bits));
        out.push((x[1] ^ pad(m[!e as usize], bits)) & mask(bits));
    }
    out
}

/// The receiver's output for l-bit messages.
pub fn derand_receiver_output_u64(
    pre_msgs: &[Block],
    choices: &[bool],
    reply: &[u64],
    bits: u32,
) -> Vec<u64> {
    check_bits(bits);
    assert_eq!(reply.len(), 2 * choices.len(), "two reply values per OT");
    pre_msgs
        .iter()
        .zip(choices)
        .zip(reply.chunks_exact(2))
        .map(|((m, &b), y)| (y[b as usize] ^ pad(*m, bits)) & mask(bits))
        .collect()
}

/// The sender's step of correlated-message OT: returns its outputs `x_i` and the reply
/// `y_i = x_i + Δ_i − pad(m_{1⊕e_i}) mod 2^bits`.
pub fn correlated_sender(
    pre: &[[Block; 2]],
    e: &[bool],
    deltas: &[u64],
    bits: u32,
) -> (Vec<u64>, Vec<u64>) {
    check_bits(bits);
    assert_eq!(pre.len(), deltas.len(), "one random OT per correlation");
    assert_eq!(e.len(), deltas.len(), "one correction bit per correlation");
    let mut xs = Vec::with_capacity(deltas.len());
    let mut ys = Vec::with_capacity(deltas.len());
    for ((m, &e), &d) in pre.iter().zip(e).zip(deltas) {
        let x = pad(m[e as usize], bits);
        xs.push(x);
        ys.push(x.wrapping_add(d).wrapping_sub(pad(m[!e as usize], bits)) & mask(bits));
    }
    (xs, ys)
}

/// The receiver's output of correlated-message OT: `x_i + b_i·Δ_i mod 2^bits`.
pub fn correlated_receiver(
    pre_msgs: &[Block],
    choices: &[bool],
    reply: &[u64],
    bits: u32,
) -> Vec<u64> {
    check_bits(bits);
    assert_eq!(reply.len(), choices.len(), "one reply value per OT");
    pre_msgs
        .iter()
        .zip(choices)
        .zip(reply)
        .map(|((m, &b), &y)| {
            let p = pad(*m, bits);
            if b { y.wrapping_add(p) & mask(bits) } else { p }
        })
        .collect()
}

const PROTO: &str = "chosen OT";

/// The sender's side: a buffer of preprocessed random OTs over a [`RotSender`], spent online
/// on chosen-message and correlated-message OTs.
pub struct RotBufferSender<S> {
    rot: S,
    buf: VecDeque<[Block; 2]>,
}

impl<S> std::fmt::Debug for RotBufferSender<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotBufferSender")
            .field("available", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The receiver's side: a buffer of preprocessed random OTs over a [`RotReceiver`].
pub struct RotBufferReceiver<R> {
    rot: R,
    buf: VecDeque<(bool, Block)>,
}

impl<R> std::fmt::Debug for RotBufferReceiver<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotBufferReceiver")
            .field("available", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<S: RotSender> RotBufferSender<S> {
    /// An empty buffer over `rot`.
    pub fn new(rot: S) -> Self {
        RotBufferSender {
            rot,
            buf: VecDeque::new(),
        }
    }

    /// Preprocessed random OTs not yet used.
    pub fn available(&self) -> usize {
        self.buf.len()
    }

    /// The underlying random-OT sender.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.rot
    }

    /// Makes `n` more random OTs now (the receiver calls [`RotBufferReceiver::preprocess`]).
    pub async fn preprocess<C: Channel>(&mut self, ch: &mut C, n: usize) -> Result<(), OtError> {
        let more = self.rot.send_rot(ch, n).await?;
        self.buf.extend(more);
        Ok(())
    }

    async fn take<C: Channel>(&mut self, ch: &mut C, n: usize) -> Result<Vec<[Block; 2]>, OtError> {
        if self.buf.len() < n {
            let missing = n - self.buf.len();
            self.preprocess(ch, missing).await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn recv_correction<C: Channel>(
        &mut self,
        ch: &mut C,
        kind: Kind,
        n: usize,
    ) -> Result<Vec<bool>, OtError> {
        let body = wire::recv_with_header(ch, PROTO, kind, n, n.div_ceil(8)).await?;
        match wire::unpack_bits(&body, n) {
            Some(e) => Ok(e),
            None => Err(ch
                .abort("chosen OT: padding bits set in the receiver's correction")
                .await
                .into()),
        }
    }

    /// Sends one of each pair of 128-bit messages (the receiver calls
    /// [`RotBufferReceiver::recv_chosen`]).
    pub async fn send_chosen<C: Channel>(
        &mut self,
        ch: &mut C,
        msgs: &[[Block; 2]],
    ) -> Result<(), OtError> {
        let n = msgs.len();
        let pre = self.take(ch, n).await?;
        let e = self.recv_correction(ch, Kind::Chosen, n).await?;
        ch.send_blocks(&derand_sender_reply(&pre, &e, msgs)).await?;
        Ok(())
    }

    /// Sends one of each pair of `bits`-bit messages (values are reduced mod `2^bits`).
    /// Panics if `bits` is not in `1..=64`.
    pub async fn send_chosen_u64<C: Channel>(
        &mut self,
        ch: &mut C,
        msgs: &[[u64; 2]],
        bits: u32,
    ) -> Result<(), OtError> {
        check_bits(bits);
        let n = msgs.len();
        let pre = self.take(ch, n).await?;
        let e = self.recv_correction(ch, Kind::ChosenU64, n).await?;
        let reply = derand_sender_reply_u64(&pre, &e, msgs, bits);
        ch.send_bytes(&pack_values(&reply, bits)).await?;
        Ok(())
    }

    /// Correlated-message OT: returns random `x_i`; the receiver obtains `x_i + b_i·Δ_i mod
    /// 2^bits`. Panics if `bits` is not in `1..=64`.
    pub async fn send_correlated_u64<C: Channel>(
        &mut self,
        ch: &mut C,
        deltas: &[u64],
        bits: u32,
    ) -> Result<Vec<u64>, OtError> {
        check_bits(bits);
        let n = deltas.len();
        let pre = self.take(ch, n).await?;
        let e = self.recv_correction(ch, Kind::CorrelatedU64, n).await?;
        let (xs, ys) = correlated_sender(&pre, &e, deltas, bits);
        ch.send_bytes(&pack_values(&ys, bits)).await?;
        Ok(xs)
    }
}

impl<R: RotReceiver> RotBufferReceiver<R> {
    /// An empty buffer over `rot`.
    pub fn new(rot: R) -> Self {
        RotBufferReceiver {
            rot,
            buf: VecDeque::new(),
        }
    }

    /// Preprocessed random OTs not yet used.
    pub fn available(&self) -> usize {
        self.buf.len()
    }

    /// The underlying random-OT receiver.
    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.rot
    }

    /// Makes `n` more random OTs now (pairs with [`RotBufferSender::preprocess`]).
    pub async fn preprocess<C: Channel>(&mut self, ch: &mut C, n: usize) -> Result<(), OtError> {
        let (bits, msgs) = self.rot.recv_rot(ch, n).await?;
        self.buf.extend(bits.into_iter().zip(msgs));
        Ok(())
    }

    async fn take<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
    ) -> Result<(Vec<bool>, Vec<Block>), OtError> {
        if self.buf.len() < n {
            let missing = n - self.buf.len();
            self.preprocess(ch, missing).await?;
        }
        Ok(self.buf.drain(..n).unzip())
    }

    async fn send_correction<C: Channel>(
        &mut self,
        ch: &mut C,
        kind: Kind,
        pre_bits: &[bool],
        choices: &[bool],
    ) -> Result<(), OtError> {
        let e = derand_correction(pre_bits, choices);
        let mut msg = wire::header(kind, choices.len()).to_vec();
        msg.extend(wire::pack_bits(e.into_iter()));
        ch.send_bytes(&msg).await?;
        Ok(())
    }

    /// Receives the chosen 128-bit message of each pair.
    pub async fn recv_chosen<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
    ) -> Result<Vec<Block>, OtError> {
        let n = choices.len();
        let (c, m) = self.take(ch, n).await?;
        self.send_correction(ch, Kind::Chosen, &c, choices).await?;
        let reply = ch.recv_blocks(2 * n, "chosen OT reply").await?;
        Ok(derand_receiver_output(&m, choices, &reply))
    }

    /// Receives the chosen `bits`-bit message of each pair. Panics if `bits` is not in `1..=64`.
    pub async fn recv_chosen_u64<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
        bits: u32,
    ) -> Result<Vec<u64>, OtError> {
        check_bits(bits);
        let n = choices.len();
        let (c, m) = self.take(ch, n).await?;
        self.send_correction(ch, Kind::ChosenU64, &c, choices)
            .await?;
        let reply = self
            .recv_values(ch, 2 * n, bits, "chosen l-bit OT reply")
            .await?;
        Ok(derand_receiver_output_u64(&m, choices, &reply, bits))
    }

    /// Correlated-message OT: receives `x_i + b_i·Δ_i mod 2^bits`. Panics if `bits` is not in
    /// `1..=64`.
    pub async fn recv_correlated_u64<C: Channel>(
        &mut self,
        ch: &mut C,
        choices: &[bool],
        bits: u32,
    ) -> Result<Vec<u64>, OtError> {
        check_bits(bits);
        let n = choices.len();
        let (c, m) = self.take(ch, n).await?;
        self.send_correction(ch, Kind::CorrelatedU64, &c, choices)
            .await?;
        let reply = self.recv_values(ch, n, bits, "correlated OT reply").await?;
        Ok(correlated_receiver(&m, choices, &reply, bits))
    }

    async fn recv_values<C: Channel>(
        &mut self,
        ch: &mut C,
        n: usize,
        bits: u32,
        what: &str,
    ) -> Result<Vec<u64>, OtError> {
        let mut buf = vec![0u8; packed_len(n, bits)];
        ch.recv_bytes_into(&mut buf, what).await?;
        match unpack_values(&buf, n, bits) {
            Some(v) => Ok(v),
            None => Err(ch.abort(&format!("{what}: padding bits set")).await.into()),
        }
    }
}
