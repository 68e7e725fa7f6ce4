//! The ideal (in-process) triple provider: **insecure, for tests and online-phase benches only**.
//!
//! Functionality: both parties' handles share the session seeds and compute, for each request,
//! exactly what the dealer process would send them (the same seed expansion and correction code
//! as [`super::dealer`]), without any channel. Since each handle holds both parties' seeds,
//! either party could reconstruct every triple: nothing produced here is private. Binaries must
//! refuse it unless the user passes [`super::INSECURE_IDEAL_DEALER_FLAG`] (see
//! [`super::require_insecure_opt_in`]).
//!
//! Mismatched requests are not detected here (each handle serves its own party); use the
//! dealer's serve loop in tests that need the check.

use super::expand::{CorrectionGen, Registry, expand_local};
use super::{BeaverError, DEFAULT_MAX_REQUEST_ELEMS, Material, Request, TripleProvider};
use crate::prg::{Prg, Seed};
use crate::share::Party;

/// One party's handle on an in-process ideal dealer. Insecure by construction (see the module
/// docs); `Debug` prints no seeds.
pub struct InsecureIdealDealer {
    party: Party,
    seeds: [Seed; 2],
    counter: u64,
    registry: Registry,
}

impl std::fmt::Debug for InsecureIdealDealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InsecureIdealDealer(party={:?}, served={})",
            self.party, self.counter
        )
    }
}

impl InsecureIdealDealer {
    /// The two parties' handles (P0's, P1's), with session seeds drawn from `seed`.
    pub fn pair_from_seed(seed: Seed) -> (Self, Self) {
        let mut prg = Prg::from_seed(seed);
        let seeds = [prg.gen_seed(), prg.gen_seed()];
        let make = |party| InsecureIdealDealer {
            party,
            seeds,
            counter: 0,
            registry: Registry::default(),
        };
        (make(Party::P0), make(Party::P1))
    }

    /// The two parties' handles from a small integer seed (tests and benches).
    pub fn pair(seed: u64) -> (Self, Self) {
        Self::pair_from_seed(Prg::from_u64(seed).gen_seed())
    }

    /// Number of requests served so far.
    pub fn served(&self) -> u64 {
        self.counter
    }
}

impl TripleProvider for InsecureIdealDealer {
    fn party(&self) -> Party {
        self.party
    }

    async fn fetch(&mut self, req: &Request) -> Result<Material, BeaverError> {
        req.validate(DEFAULT_MAX_REQUEST_ELEMS)?;
        self.registry.admit(req)?;
        let correction = match self.party {
            Party::P0 => Vec::new(),
            Party::P1 => CorrectionGen::new(&self.seeds, self.counter, req).collect_all(),
        };
        let material = expand_local(
            self.party,
            &self.seeds[self.party.index()],
            self.counter,
            req,
            correction,
        );
        self.counter += 1;
        Ok(material)
    }
}
