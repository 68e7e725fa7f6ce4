//! Garbled circuits: one Boolean circuit description, run by several backends.
//!
//! **Functionality.** Two parties, the *garbler* and the *evaluator*, compute a Boolean
//! function of inputs that either of them owns; outputs are revealed to one party, to both, or
//! left as XOR shares. The protocol is Yao's garbled circuits with the half-gates construction
//! of Zahur, Rosulek and Evans ("Two Halves Make a Whole", EUROCRYPT 2015): free XOR (a global
//! offset `Δ` with `lsb(Δ) = 1`, so every wire carries labels `W0` and `W0 ⊕ Δ`),
//! point-and-permute (the permute bit of a wire is `lsb(W0)`), and two ciphertexts (32 bytes)
//! per AND gate. Labels are hashed with the tweakable circular correlation-robust hash
//! `TCCR(i, x) = π(π(x) ⊕ i) ⊕ π(x)` built from fixed-key AES (Guo, Katz, Wang, Yu, IEEE S&P
//! 2020; [`crate::hash`]), with tweaks reserved from the correlated-OT source's
//! [`TweakCounter`](crate::ot::TweakCounter) so that no tweak repeats under one `Δ`, across
//! sessions. An AND gate with a public constant input is folded, never garbled (see
//! [`PUBLIC_TRUE`] and `docs/protocols/gc.md`). Evaluator-owned inputs come from
//! correlated OT whose global correlation *is* the garbler's `Δ` ([`crate::ot::CotSender`]):
//! the garbler's zero-label is the sender's `q_i`, the evaluator's label is
//! `t_i = q_i ⊕ b_i·Δ`. Security: semi-honest.
//!
//! **One description, many backends** (STYLE.md R2; the idea of swanky's `Fancy` and emp's
//! `Backend`). A circuit is ordinary generic Rust over [`Backend`]; the same function runs under
//! - [`Plain`]: evaluates `bool`s, the test oracle;
//! - [`Count`]: counts AND and XOR gates, AND depth, inputs, outputs and conversion OTs (the
//!   cost model reads it);
//! - [`Garbler`] and [`Evaluator`]: the two ends of the protocol over a
//!   [`Channel`](crate::channel::Channel).
//!
//! Word gadgets (adders, comparators, max/argmax trees, ...) are in [`word`]; conversions
//! between arithmetic shares and garbled words are in [`crate::convert`]. Bits are LSB first.
//!
//! **Why the gate methods that may communicate are `async`.** XOR, NOT and constants are free
//! and synchronous. AND gates, inputs and outputs are `async fn`s of the backend. The garbler
//! appends each garbled table to a buffer and only awaits a send when the buffer holds a full
//! batch of [`GcConfig::batch_ands`] tables; the evaluator only awaits a receive when it has
//! used up the batch it holds. So nearly every `and` completes without suspending (the cost is
//! a branch), the tables stream to the channel in bounded batches while the circuit runs, and
//! memory stays bounded by one batch plus the live wires, whatever the circuit's size. Wires
//! are plain `Copy` values (a label) that the caller simply drops. The alternatives were worse:
//! a synchronous backend must either buffer a whole circuit section's tables (memory grows with
//! the section) or run the circuit on a separate thread bridged to the async channel (the
//! channel would have to be owned and `'static`, while protocols borrow `&mut C`). For speed,
//! gadgets use the bulk [`Backend::and_n`] wherever gates are independent (a tree level, the
//! `k` comparisons of a vectorised gadget at one bit position), which the garbler and
//! evaluator hash in batches of [`crate::hash::BATCH`] blocks so AES-NI is pipelined. The
//! gate arithmetic itself lives in the synchronous, channel-free cores [`GarbleCore`] and
//! [`EvalCore`] (tables in and out of plain byte buffers), which the backends wrap and the
//! benches measure on their own.
//!
//! **Wire format and checks.** At the start the garbler sends a session header (protocol
//! version, the caller's circuit id, the batch size); the evaluator compares it with its own
//! configuration and aborts on any difference, naming it. Tables then travel in messages of
//! exactly `batch_ands · 32` bytes, except that before any other message (input labels, OT,
//! output bits, end of session) the garbler sends the partial batch it holds. The evaluator
//! refuses a batch that is larger than the agreed size or not a whole number of tables, a
//! short batch followed by more gates, and tables left over at a synchronisation point; at
//! [`Garbler::finish`]/[`Evaluator::finish`] both compare their AND-gate counts. Every such
//! error aborts the session with the reason ([`Channel::abort`](crate::channel::Channel::abort)).
//! See `docs/protocols/gc.md` for the message flow and costs.

use std::future::Future;

use crate::channel::ChannelError;
use crate::ot::OtError;

mod count;
mod garble;
mod plain;
pub mod word;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

pub use count::{Count, CountWire, GateCounts};
pub use garble::{
    DEFAULT_BATCH_ANDS, EvalCore, Evaluator, GarbleCore, Garbler, GcConfig, MAX_BATCH_ANDS,
    PUBLIC_TRUE, TABLE_BYTES,
};
pub use plain::Plain;

/// The two roles of a garbled-circuit session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Garbles the circuit and sends the tables; the COT sender.
    Garbler,
    /// Evaluates the tables; the COT receiver.
    Evaluator,
}

/// Who learns a revealed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevealTo {
    /// Only the garbler learns the value.
    Garbler,
    /// Only the evaluator learns the value.
    Evaluator,
    /// Both parties learn the value.
    Both,
}

impl RevealTo {
    /// Whether a party in `role` learns the value.
    pub fn includes(self, role: Role) -> bool {
        matches!(
            (self, role),
            (RevealTo::Both, _)
                | (RevealTo::Garbler, Role::Garbler)
                | (RevealTo::Evaluator, Role::Evaluator)
        )
    }
}

/// Errors of garbled-circuit backends and gadgets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The channel failed (the session is over).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// Oblivious transfer failed.
    #[error(transparent)]
    Ot(#[from] OtError),
    /// The peer sent something the protocol does not allow; the session was aborted.
    #[error("garbled-circuit protocol error: {0}")]
    Protocol(String),
    /// The caller used the API wrongly (mismatched widths, missing input bits, ...).
    #[error("garbled-circuit usage error: {0}")]
    Usage(String),
}

impl GcError {
    /// A usage error with a message.
    pub fn usage(msg: impl Into<String>) -> Self {
        GcError::Usage(msg.into())
    }
}

/// A Boolean circuit backend: the operations a circuit description may use.
///
/// Wires are `Copy` values owned by the caller. XOR, NOT and constants are free and
/// synchronous; AND gates, inputs and outputs may communicate and are `async`. The bulk
/// variants have default loops; backends override them where batching pays.
pub trait Backend: Send {
    /// A wire: a `bool` ([`Plain`]), a [`CountWire`] ([`Count`]), a label
    /// (garbler/evaluator).
    type Wire: Copy + Send + Sync + 'static;
    /// The backend's error; gadgets report misuse through `From<GcError>`.
    type Error: std::error::Error + From<GcError> + Send + Sync + 'static;

    /// This backend's protocol role, or `None` for the single-process backends.
    fn role(&self) -> Option<Role>;

    /// A public constant.
    fn constant(&mut self, bit: bool) -> Self::Wire;

    /// `a ⊕ b` (free).
    fn xor(&mut self, a: Self::Wire, b: Self::Wire) -> Self::Wire;

    /// `¬a` (free).
    fn not(&mut self, a: Self::Wire) -> Self::Wire;

    /// `a ∧ b` (one garbled AND: 32 bytes on the wire; free if an input is a public constant).
    fn and(
        &mut self,
        a: Self::Wire,
        b: Self::Wire,
    ) -> impl Future<Output = Result<Self::Wire, Self::Error>> + Send;

    /// Element-wise `a[i] ∧ b[i]` of independent gates.
    fn and_n(
        &mut self,
        a: &[Self::Wire],
        b: &[Self::Wire],
    ) -> impl Future<Output = Result<Vec<Self::Wire>, Self::Error>> + Send {
        async move {
            check_len(a.len(), b.len(), "and_n")?;
            let mut out = Vec::with_capacity(a.len());
            for (&x, &y) in a.iter().zip(b) {
                out.push(self.and(x, y).await?);
            }
            Ok(out)
        }
    }

    /// Element-wise `a[i] ⊕ b[i]`.
    fn xor_n(
        &mut self,
        a: &[Self::Wire],
        b: &[Self::Wire],
    ) -> Result<Vec<Self::Wire>, Self::Error> {
        check_len(a.len(), b.len(), "xor_n")?;
        Ok(a.iter().zip(b).map(|(&x, &y)| self.xor(x, y)).collect())
    }

    /// Element-wise `¬a[i]`.
    fn not_n(&mut self, a: &[Self::Wire]) -> Vec<Self::Wire> {
        a.iter().map(|&x| self.not(x)).collect()
    }

    /// `n` input wires owned by `owner`. The owner passes `Some(bits)` (`bits.len() == n`),
    /// the other party `None`; [`Plain`] needs the bits whoever owns them, [`Count`] ignores
    /// them. Garbler inputs cost 16 bytes each, evaluator inputs one correlated OT each.
    fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> impl Future<Output = Result<Vec<Self::Wire>, Self::Error>> + Send;

    /// Reveals wires: returns `Some(values)` to a party that learns them, `None` to the other.
    /// [`Plain`] always returns the values; [`Count`] returns `None`.
    fn reveal(
        &mut self,
        wires: &[Self::Wire],
        to: RevealTo,
    ) -> impl Future<Output = Result<Option<Vec<bool>>, Self::Error>> + Send;

    /// This party's XOR shares of the wires' values, without communication: the garbler keeps
    /// the permute bits `lsb(W0)`, the evaluator the `lsb` of its labels. [`Plain`] returns the
    /// values themselves (the other share being zero), [`Count`] zeros.
    fn share(&mut self, wires: &[Self::Wire]) -> Result<Vec<bool>, Self::Error>;

    /// Converts words (LSB first; two's complement if `signed`, sign-extended to 64 bits) into
    /// this party's additive shares over Z_2^64, with one correlated OT and 8 bytes per bit
    /// (boolean shares, then B2A by COT; see [`crate::convert::y2a`]). [`Plain`] returns the
    /// values themselves, [`Count`] zeros.
    fn arith_shares(
        &mut self,
        words: &[Vec<Self::Wire>],
        signed: bool,
    ) -> impl Future<Output = Result<Vec<u64>, Self::Error>> + Send;
}

/// Checks that two operand lists have equal lengths.
pub(crate) fn check_len(a: usize, b: usize, what: &str) -> Result<(), GcError> {
    if a == b {
        Ok(())
    } else {
        Err(GcError::usage(format!(
            "{what}: operands have different lengths ({a} and {b})"
        )))
    }
}

/// The weight of bit `i` of an `l`-bit word in Z_2^64: `2^i`, or `-2^(l-1)` for the sign bit
/// of a signed word.
pub(crate) fn bit_weight(i: usize, l: usize, signed: bool) -> u64 {
    let w = 1u64 << i;
    if signed && i + 1 == l {
        w.wrapping_neg()
    } else {
        w
    }
}

/// Packs bits LSB first into bytes.
pub(crate) fn pack_bits(bits: impl ExactSizeIterator<Item = bool>) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.enumerate() {
        out[i / 8] |= (b as u8) << (i % 8);
    }
    out
}

/// Unpacks `n` bits LSB first.
pub(crate) fn unpack_bits(bytes: &[u8], n: usize) -> Vec<bool> {
    (0..n).map(|i| (bytes[i / 8] >> (i % 8)) & 1 == 1).collect()
}
