//! The plaintext backend: wires are `bool`s. The oracle every other backend is tested against.

use super::{Backend, GcError, RevealTo, Role, bit_weight};

/// Evaluates a circuit on `bool`s in one process. Every input's bits must be given (both
/// parties' values are known to the oracle); outputs are always returned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Plain {
    /// A plaintext backend.
    pub fn new() -> Self {
        Plain
    }
}

impl Backend for Plain {
    type Wire = bool;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        None
    }

    fn constant(&mut self, bit: bool) -> bool {
        bit
    }

    fn xor(&mut self, a: bool, b: bool) -> bool {
        a ^ b
    }

    fn not(&mut self, a: bool) -> bool {
        !a
    }

    async fn and(&mut self, a: bool, b: bool) -> Result<bool, GcError> {
        Ok(a & b)
    }

    async fn and_n(&mut self, a: &[bool], b: &[bool]) -> Result<Vec<bool>, GcError> {
        super::check_len(a.len(), b.len(), "and_n")?;
        Ok(a.iter().zip(b).map(|(&x, &y)| x & y).collect())
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<bool>, GcError> {
        match bits {
            Some(b) if b.len() == n => Ok(b.to_vec()),
            Some(b) => Err(GcError::usage(format!(
                "{owner:?} input: {} bits given for {n} wires",
                b.len()
            ))),
            None => Err(GcError::usage(
                "the Plain backend needs every input's bits, whoever owns them",
            )),
        }
    }

    async fn reveal(
        &mut self,
        wires: &[bool],
        _to: RevealTo,
    ) -> Result<Option<Vec<bool>>, GcError> {
        Ok(Some(wires.to_vec()))
    }

    fn share(&mut self, wires: &[bool]) -> Result<Vec<bool>, GcError> {
        Ok(wires.to_vec())
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<bool>],
        signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        Ok(words
            .iter()
            .map(|w| {
                let l = w.len();
                w.iter().enumerate().fold(0u64, |acc, (i, &b)| {
                    acc.wrapping_add(bit_weight(i, l, signed) * b as u64)
                })
            })
            .collect())
    }
}
