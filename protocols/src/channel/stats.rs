//! Traffic counters per phase and label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The phase traffic is counted under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Session setup: handshake, base OTs, per-session masked weights.
    Setup,
    /// Input-independent preprocessing (correlated randomness).
    Preprocessing,
    /// Input-dependent online work.
    Online,
}

/// Counters for one (phase, label) pair, seen from one party.
///
/// Bytes include the 4-byte frame headers. A *round* is counted each time this party starts
/// sending after having received (or sends for the first time): the number of message flights
/// this party originates. A protocol in which both parties send at once and then receive costs
/// one round on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Bytes sent, framing included.
    pub bytes_sent: u64,
    /// Bytes received, framing included.
    pub bytes_recv: u64,
    /// Messages sent.
    pub msgs_sent: u64,
    /// Messages received.
    pub msgs_recv: u64,
    /// Send flights started (see the type's docs).
    pub rounds: u64,
}

impl Counters {
    /// Adds another set of counters to this one.
    pub fn accumulate(&mut self, o: &Counters) {
        self.bytes_sent += o.bytes_sent;
        self.bytes_recv += o.bytes_recv;
        self.msgs_sent += o.msgs_sent;
        self.msgs_recv += o.msgs_recv;
        self.rounds += o.rounds;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Send,
    Recv,
}

/// All counters of one channel, keyed by (phase, label).
#[derive(Clone, Debug)]
pub struct Stats {
    phase: Phase,
    label: String,
    last: Option<Direction>,
    entries: BTreeMap<(Phase, String), Counters>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            phase: Phase::Setup,
            label: String::new(),
            last: None,
            entries: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sets the phase for subsequent traffic.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Sets the label for subsequent traffic.
    pub fn set_label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
    }

    fn current(&mut self) -> &mut Counters {
        self.entries
            .entry((self.phase, self.label.clone()))
            .or_default()
    }

    /// Records one sent message of `bytes` bytes (framing included).
    pub fn record_send(&mut self, bytes: usize) {
        let new_round = self.last != Some(Direction::Send);
        self.last = Some(Direction::Send);
        let c = self.current();
        c.bytes_sent += bytes as u64;
        c.msgs_sent += 1;
        if new_round {
            c.rounds += 1;
        }
    }

    /// Records one received message of `bytes` bytes (framing included).
    pub fn record_recv(&mut self, bytes: usize) {
        self.last = Some(Direction::Recv);
        let c = self.current();
        c.bytes_recv += bytes as u64;
        c.msgs_recv += 1;
    }

    /// Counters of one (phase, label), zero if nothing was counted there.
    pub fn get(&self, phase: Phase, label: &str) -> Counters {
        self.entries
            .get(&(phase, label.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// Every (phase, label) with its counters, ordered by phase then label.
    pub fn entries(&self) -> impl Iterator<Item = (Phase, &str, &Counters)> {
        self.entries.iter().map(|((p, l), c)| (*p, l.as_str(), c))
    }

    /// Sum over one phase.
    pub fn phase_total(&self, phase: Phase) -> Counters {
        let mut t = Counters::default();
        for (_, _, c) in self.entries().filter(|(p, _, _)| *p == phase) {
            t.accumulate(c);
        }
        t
    }

    /// Sum over everything.
    pub fn total(&self) -> Counters {
        let mut t = Counters::default();
        for c in self.entries.values() {
            t.accumulate(c);
        }
        t
    }

    /// Forgets all counts (phase and label stay).
    pub fn reset(&mut self) {
        self.entries.clear();
        self.last = None;
    }
}
