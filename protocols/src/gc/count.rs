//! The counting backend: runs a circuit without values and counts what it would cost.

use super::{Backend, GcError, RevealTo, Role, TABLE_BYTES};

/// What a circuit costs, as counted by [`Count`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// AND gates (each a 32-byte garbled table).
    pub ands: u64,
    /// XOR gates (free).
    pub xors: u64,
    /// NOT gates (free).
    pub nots: u64,
    /// AND depth: the longest chain of AND gates from an input or constant to any wire.
    pub and_depth: u32,
    /// Garbler-owned input wires (16 bytes each).
    pub garbler_inputs: u64,
    /// Evaluator-owned input wires (one correlated OT each).
    pub evaluator_inputs: u64,
    /// Revealed output wires (one bit each way that learns them).
    pub revealed: u64,
    /// Reveal calls (each a synchronisation point: one message per direction that learns).
    pub reveal_calls: u64,
    /// Bits converted to arithmetic shares (one correlated OT plus 8 bytes each).
    pub b2a_bits: u64,
}

impl GateCounts {
    /// Bytes of garbled tables (`32 · ands`).
    pub fn table_bytes(&self) -> u64 {
        self.ands * TABLE_BYTES as u64
    }
}

/// Counts gates and AND depth. A wire is the AND depth of its value.
#[derive(Clone, Debug, Default)]
pub struct Count {
    counts: GateCounts,
}

impl Count {
    /// A counter at zero.
    pub fn new() -> Self {
        Count::default()
    }

    /// The counts so far.
    pub fn counts(&self) -> GateCounts {
        self.counts
    }

    /// AND gates so far.
    pub fn ands(&self) -> u64 {
        self.counts.ands
    }

    /// Resets every counter.
    pub fn reset(&mut self) {
        self.counts = GateCounts::default();
    }
}

impl Backend for Count {
    type Wire = u32;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        None
    }

    fn constant(&mut self, _bit: bool) -> u32 {
        0
    }

    fn xor(&mut self, a: u32, b: u32) -> u32 {
        self.counts.xors += 1;
        a.max(b)
    }

    fn not(&mut self, a: u32) -> u32 {
        self.counts.nots += 1;
        a
    }

    async fn and(&mut self, a: u32, b: u32) -> Result<u32, GcError> {
        self.counts.ands += 1;
        let d = a.max(b) + 1;
        self.counts.and_depth = self.counts.and_depth.max(d);
        Ok(d)
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<u32>, GcError> {
        if let Some(b) = bits
            && b.len() != n
        {
            return Err(GcError::usage(format!(
                "{owner:?} input: {} bits given for {n} wires",
                b.len()
            )));
        }
        match owner {
            Role::Garbler => self.counts.garbler_inputs += n as u64,
            Role::Evaluator => self.counts.evaluator_inputs += n as u64,
        }
        Ok(vec![0; n])
    }

    async fn reveal(&mut self, wires: &[u32], _to: RevealTo) -> Result<Option<Vec<bool>>, GcError> {
        self.counts.revealed += wires.len() as u64;
        self.counts.reveal_calls += 1;
        Ok(None)
    }

    fn share(&mut self, wires: &[u32]) -> Result<Vec<bool>, GcError> {
        Ok(vec![false; wires.len()])
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<u32>],
        _signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        self.counts.b2a_bits += words.iter().map(|w| w.len() as u64).sum::<u64>();
        Ok(vec![0; words.len()])
    }
}
