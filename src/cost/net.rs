//! Network profiles: bandwidth and round-trip time of the client-server link.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use privlm_protocols::channel::emulate::Link;
use privlm_protocols::nonlinear::LinkModel;
use serde::{Deserialize, Serialize};

/// A network profile: the client-server link's bandwidth (each direction) and round-trip time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetProfile {
    /// A short name (`lan`, `wan`, or the custom spec).
    pub name: String,
    /// Bits per second, each direction (the link is full duplex).
    pub bits_per_sec: f64,
    /// Round-trip time, seconds.
    pub rtt_secs: f64,
}

impl NetProfile {
    /// LAN: 3 Gbps, 0.8 ms round trip (the anchors' LAN).
    pub fn lan() -> Self {
        NetProfile {
            name: "lan".into(),
            bits_per_sec: 3e9,
            rtt_secs: 0.8e-3,
        }
    }

    /// WAN: 100 Mbps, 80 ms round trip (the paper's setting).
    pub fn wan() -> Self {
        NetProfile {
            name: "wan".into(),
            bits_per_sec: 100e6,
            rtt_secs: 80e-3,
        }
    }

    /// A custom profile.
    pub fn custom(bits_per_sec: f64, rtt_secs: f64) -> Self {
        NetProfile {
            name: format!("{}/{}", fmt_bits(bits_per_sec), fmt_ms(rtt_secs)),
            bits_per_sec,
            rtt_secs,
        }
    }

    /// Bytes per second, each direction.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bits_per_sec / 8.0
    }

    /// One-way delay, seconds.
    pub fn one_way_secs(&self) -> f64 {
        self.rtt_secs / 2.0
    }

    /// The link model of [`privlm_protocols::nonlinear::Count::simulate`].
    pub fn link_model(&self) -> LinkModel {
        LinkModel {
            bytes_per_sec: self.bytes_per_sec(),
            one_way_secs: self.one_way_secs(),
        }
    }

    /// The emulated link of [`privlm_protocols::channel::emulate`].
    pub fn emulated(&self) -> Link {
        Link::new(self.bits_per_sec, Duration::from_secs_f64(self.rtt_secs))
    }

    /// The simple closed form `bytes / bandwidth + rounds × RTT` (both directions' bytes
    /// counted one after the other; the conservative formula of SHAFT/SUF).
    pub fn serial_secs(&self, bytes: u64, rounds: u64) -> f64 {
        bytes as f64 / self.bytes_per_sec() + rounds as f64 * self.rtt_secs
    }
}

fn fmt_bits(b: f64) -> String {
    if b >= 1e9 {
        format!("{}gbps", b / 1e9)
    } else if b >= 1e6 {
        format!("{}mbps", b / 1e6)
    } else {
        format!("{}kbps", b / 1e3)
    }
}

fn fmt_ms(s: f64) -> String {
    format!("{}ms", s * 1e3)
}

impl fmt::Display for NetProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} Mbps, {} ms RTT)",
            self.name,
            self.bits_per_sec / 1e6,
            self.rtt_secs * 1e3
        )
    }
}

/// Why a profile spec did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad network profile {0:?}: use lan, wan, or BANDWIDTH/RTT such as 1gbps/10ms, \
     100mbps/80ms, 500kbps/200ms"
)]
pub struct ProfileParseError(String);

fn parse_num_unit(s: &str, units: &[(&str, f64)]) -> Option<f64> {
    let s = s.trim().to_ascii_lowercase();
    for (u, mul) in units {
        if let Some(n) = s.strip_suffix(u) {
            let v: f64 = n.trim().parse().ok()?;
            return (v.is_finite() && v >= 0.0).then_some(v * mul);
        }
    }
    None
}

impl FromStr for NetProfile {
    type Err = ProfileParseError;

    /// `lan`, `wan`, or `BANDWIDTH/RTT` with units `gbps`, `mbps`, `kbps` and `s`, `ms`, `us`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ProfileParseError(s.to_string());
        match s.trim().to_ascii_lowercase().as_str() {
            "lan" => return Ok(NetProfile::lan()),
            "wan" => return Ok(NetProfile::wan()),
            _ => {}
        }
        let (b, r) = s.split_once('/').ok_or_else(err)?;
        let bw = parse_num_unit(b, &[("gbps", 1e9), ("mbps", 1e6), ("kbps", 1e3)])
            .filter(|&v| v > 0.0)
            .ok_or_else(err)?;
        let rtt = parse_num_unit(r, &[("ms", 1e-3), ("us", 1e-6), ("s", 1.0)]).ok_or_else(err)?;
        Ok(NetProfile::custom(bw, rtt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse() {
        assert_eq!("wan".parse::<NetProfile>().unwrap(), NetProfile::wan());
        assert_eq!("LAN".parse::<NetProfile>().unwrap(), NetProfile::lan());
        let p: NetProfile = "200mbps/40ms".parse().unwrap();
        assert_eq!(p.bits_per_sec, 200e6);
        assert!((p.rtt_secs - 0.040).abs() < 1e-12);
        assert!((p.one_way_secs() - 0.020).abs() < 1e-12);
        for bad in ["", "fast", "100/80", "0mbps/1ms", "-1mbps/1ms", "1gbps/xms"] {
            assert!(bad.parse::<NetProfile>().is_err(), "{bad:?} parsed");
        }
        // 1 GB and 10 rounds on the WAN: 80 s + 0.8 s.
        assert!((NetProfile::wan().serial_secs(1_000_000_000, 10) - 80.8).abs() < 1e-9);
    }
}
