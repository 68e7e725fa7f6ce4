//! The counting backend: runs a circuit without values and counts what it would cost.
//!
//! Public constants are tracked as such ([`CountWire::Public`]) and folded exactly as the
//! garbler and the evaluator fold them (an AND with a public input costs nothing), so the AND
//! count is the number of tables the garbler sends. The garbler also recognises wires that
//! *cancel* to a constant, such as `x ⊕ x`, which this backend counts as secret; the gadgets of
//! [`super::word`] never build such wires (tested: every gadget's garbled AND count equals
//! this backend's).

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

/// A wire of [`Count`]: a public constant, or a secret value with its AND depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountWire {
    /// A public constant (from [`Backend::constant`], or computed from constants only).
    Public(bool),
    /// A value that depends on an input, with the AND depth of its longest path.
    Secret(u32),
}

impl CountWire {
    /// The AND depth (0 for public constants).
    pub fn depth(self) -> u32 {
        match self {
            CountWire::Public(_) => 0,
            CountWire::Secret(d) => d,
        }
    }
}

/// Counts gates and AND depth. A wire is a [`CountWire`].
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
    type Wire = CountWire;
    type Error = GcError;

    fn role(&self) -> Option<Role> {
        None
    }

    fn constant(&mut self, bit: bool) -> CountWire {
        CountWire::Public(bit)
    }

    fn xor(&mut self, a: CountWire, b: CountWire) -> CountWire {
        self.counts.xors += 1;
        match (a, b) {
            (CountWire::Public(x), CountWire::Public(y)) => CountWire::Public(x ^ y),
            _ => CountWire::Secret(a.depth().max(b.depth())),
        }
    }

    fn not(&mut self, a: CountWire) -> CountWire {
        self.counts.nots += 1;
        match a {
            CountWire::Public(x) => CountWire::Public(!x),
            s => s,
        }
    }

    async fn and(&mut self, a: CountWire, b: CountWire) -> Result<CountWire, GcError> {
        Ok(match (a, b) {
            (CountWire::Public(false), _) | (_, CountWire::Public(false)) => {
                CountWire::Public(false)
            }
            (CountWire::Public(true), x) | (x, CountWire::Public(true)) => x,
            (CountWire::Secret(x), CountWire::Secret(y)) => {
                self.counts.ands += 1;
                let d = x.max(y) + 1;
                self.counts.and_depth = self.counts.and_depth.max(d);
                CountWire::Secret(d)
            }
        })
    }

    async fn input(
        &mut self,
        owner: Role,
        n: usize,
        bits: Option<&[bool]>,
    ) -> Result<Vec<CountWire>, GcError> {
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
        Ok(vec![CountWire::Secret(0); n])
    }

    async fn reveal(
        &mut self,
        wires: &[CountWire],
        _to: RevealTo,
    ) -> Result<Option<Vec<bool>>, GcError> {
        self.counts.revealed += wires.len() as u64;
        self.counts.reveal_calls += 1;
        Ok(None)
    }

    fn share(&mut self, wires: &[CountWire]) -> Result<Vec<bool>, GcError> {
        Ok(vec![false; wires.len()])
    }

    async fn arith_shares(
        &mut self,
        words: &[Vec<CountWire>],
        _signed: bool,
    ) -> Result<Vec<u64>, GcError> {
        self.counts.b2a_bits += words.iter().map(|w| w.len() as u64).sum::<u64>();
        Ok(vec![0; words.len()])
    }
}
