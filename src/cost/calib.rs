//! Per-op compute calibration: how long this machine's parties take per element of each op.
//!
//! `privlm-bench calibrate` measures it (both parties in one process on in-memory channels,
//! correlations prefetched, so the time is the parties' online compute plus the channel's
//! local copies) and writes a JSON file; [`Calibration::default`] is the file shipped in
//! `assets/calibration.json`, measured on the project's 2-core machine.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Seconds per element of each op, and the rate of ring matrix products (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Where and how it was measured.
    pub note: String,
    /// u64 multiply-accumulates per second of the ring matrix product (one party).
    pub matmul_macs_per_sec: f64,
    /// Seconds per element, both parties running at once, by op: `relu`, `gelu`, `softmax`
    /// (per element of the `[heads, rows, cols]` input, masked or not), `layer_norm`, `argmax`,
    /// `trunc`, `open` (an element of a Beaver opening), `setup_weight` (per weight element).
    pub secs_per_elem: BTreeMap<String, f64>,
    /// Local overhead of one message on the runtime (the tasks and copies between one party's
    /// send and the other's receive), added to every message's one-way delay.
    #[serde(default)]
    pub secs_per_message: f64,
}

/// The shipped calibration (`assets/calibration.json`).
pub const DEFAULT_CALIBRATION: &str = include_str!("../../assets/calibration.json");

impl Default for Calibration {
    fn default() -> Self {
        serde_json::from_str(DEFAULT_CALIBRATION).expect("assets/calibration.json parses")
    }
}

/// Why a calibration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// Reading or writing failed.
    #[error("calibration file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a calibration.
    #[error("calibration file {path}: {msg}")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        msg: String,
    },
}

impl Calibration {
    /// Zero compute: latency from the network alone.
    pub fn zero() -> Self {
        Calibration {
            note: "zero compute".into(),
            matmul_macs_per_sec: f64::INFINITY,
            secs_per_elem: BTreeMap::new(),
            secs_per_message: 0.0,
        }
    }

    /// Seconds for `n` elements of `op` (0 for an op not calibrated).
    pub fn secs(&self, op: &str, n: usize) -> f64 {
        self.secs_per_elem.get(op).copied().unwrap_or(0.0) * n as f64
    }

    /// Seconds for `macs` multiply-accumulates of a ring matrix product.
    pub fn matmul_secs(&self, macs: usize) -> f64 {
        if self.matmul_macs_per_sec.is_finite() && self.matmul_macs_per_sec > 0.0 {
            macs as f64 / self.matmul_macs_per_sec
        } else {
            0.0
        }
    }

    /// Reads a calibration file (JSON).
    pub fn load(path: &Path) -> Result<Self, CalibrationError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io {
            path: p.clone(),
            source,
        })?;
        let c: Calibration = serde_json::from_str(&text).map_err(|e| CalibrationError::Format {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        let bad = c
            .secs_per_elem
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0));
        if let Some((k, v)) = bad {
            return Err(CalibrationError::Format {
                path: p,
                msg: format!("{k} = {v} seconds per element"),
            });
        }
        if !(c.secs_per_message.is_finite() && c.secs_per_message >= 0.0) {
            return Err(CalibrationError::Format {
                path: p,
                msg: format!("secs_per_message = {}", c.secs_per_message),
            });
        }
        if c.matmul_macs_per_sec.is_nan() || c.matmul_macs_per_sec <= 0.0 {
            return Err(CalibrationError::Format {
                path: p,
                msg: format!("matmul_macs_per_sec = {}", c.matmul_macs_per_sec),
            });
        }
        Ok(c)
    }

    /// Writes the calibration as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        let text = serde_json::to_string_pretty(self).expect("a calibration serializes");
        std::fs::write(path, text + "\n").map_err(|source| CalibrationError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_calibration_loads_and_round_trips() {
        let c = Calibration::default();
        for op in ["relu", "gelu", "softmax", "layer_norm", "argmax", "trunc"] {
            assert!(c.secs(op, 1000) > 0.0, "{op} not calibrated");
        }
        assert!(c.matmul_secs(1 << 30) > 0.0);
        let dir = std::env::temp_dir().join(format!("privlm-calib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        c.save(&p).unwrap();
        assert_eq!(Calibration::load(&p).unwrap(), c);
        std::fs::write(
            &p,
            r#"{"note":"","matmul_macs_per_sec":-1,"secs_per_elem":{}}"#,
        )
        .unwrap();
        assert!(Calibration::load(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
