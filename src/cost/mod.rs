//! The cost model: what a private forward pass costs, layer by layer and op by op, predicted
//! from the code that runs.
//!
//! - [`engine`]: [`CountEngine`], the secure engine that counts instead of sending, for both
//!   parties at once; `SecureOps<CountEngine>` running the model's one forward pass is the
//!   counting tensor backend (DESIGN.md section 6).
//! - [`net`]: network profiles ([`NetProfile::lan`], [`NetProfile::wan`], custom).
//! - [`table`]: the secure generation's flow over the counting engine
//!   ([`count_generation`]) and the table ([`CostTable`]: per layer, op and phase; text, JSON,
//!   CSV).
//! - [`paper`]: the paper's tables reproduced (`docs/results.md`); [`plot`]: PNG charts.
//! - [`cli`]: `privlm cost` (clap).
//! - [`calib`]: per-op compute calibration ([`Calibration`]; `privlm-bench calibrate` writes
//!   it, a default ships in `assets/calibration.json`).
//!
//! Latency is projected by replaying the counted messages on the profile's link
//! ([`privlm_protocols::nonlinear::Count::simulate`]): each party's clock advances by its
//! calibrated compute, each message occupies its direction of the full-duplex link for
//! `bytes / bandwidth` and arrives one one-way delay (RTT / 2) later. On a link where every
//! flight waits for the previous one this is `compute + bytes / bandwidth + one-way delays ×
//! RTT / 2`; `docs/cost.md` compares it with the closed form `bytes / bandwidth + rounds × RTT`.

pub mod calib;
pub mod cli;
pub mod engine;
pub mod net;
pub mod paper;
pub mod plot;
pub mod table;

pub use calib::Calibration;
pub use engine::CountEngine;
pub use net::NetProfile;

pub use table::{CostTable, Workload, count_generation};
