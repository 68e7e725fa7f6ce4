//! PNG plots of cost tables, drawn on the entropy module's [`Canvas`] (no plotting crate: a
//! bitmap-only plotting crate would add an image-encoding stack to the build for two charts).

use std::path::Path;

use super::net::NetProfile;
use super::paper::layer_kinds;
use super::table::CostTable;
use crate::entropy::EntropyError;
use crate::entropy::heatmap::Canvas;

/// The op kinds in stacking order, with their colours.
pub const KINDS: &[(&str, [u8; 3])] = &[
    ("linear", [70, 110, 180]),
    ("softmax", [220, 120, 40]),
    ("activation", [200, 60, 60]),
    ("layernorm", [80, 160, 90]),
    ("truncation", [150, 120, 190]),
    ("argmax", [120, 120, 120]),
    ("reveal", [200, 180, 60]),
];

const BLACK: [u8; 3] = [20, 20, 20];
const GREY: [u8; 3] = [200, 200, 200];

fn fmt_mb(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else {
        format!("{:.0} MB", b / 1e6)
    }
}

/// Per-layer stacked bars of client-server bytes by op kind, one panel per table (for example
/// the baseline beside the entropy-guided network), on a common scale.
pub fn layer_bars(tables: &[(&str, &CostTable)], path: &Path) -> Result<(), EntropyError> {
    let panels: Vec<_> = tables.iter().map(|(n, t)| (*n, layer_kinds(t))).collect();
    let max = panels
        .iter()
        .flat_map(|(_, ls)| ls.iter().map(|(_, ks)| ks.iter().map(|k| k.1).sum::<u64>()))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bars = panels.iter().map(|(_, l)| l.len()).max().unwrap_or(1);
    let (bw, gap, ph, top, left) = (14usize, 10usize, 320usize, 56usize, 80usize);
    let pw = bars * (bw + gap) + 20;
    let w = left + panels.len() * (pw + 20) + 170;
    let h = top + ph + 60;
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    c.text(
        left,
        8,
        "client-server bytes per layer and op kind (per query)",
        BLACK,
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = top + ph - (ph as f64 * i as f64 / 4.0) as usize;
        c.rect(left - 4, y, w - left - 170, 1, GREY);
        c.text(2, y.saturating_sub(4), &fmt_mb(v), BLACK);
    }
    for (pi, (name, layers)) in panels.iter().enumerate() {
        let x0 = left + pi * (pw + 20);
        c.text(x0, top - 20, name, BLACK);
        for (li, (lname, kinds)) in layers.iter().enumerate() {
            let x = x0 + li * (bw + gap);
            let mut y = top + ph;
            for (k, col) in KINDS {
                let b = kinds.iter().find(|(x, _)| x == k).map_or(0, |x| x.1);
                let hh = (ph as f64 * b as f64 / max).round() as usize;
                if hh > 0 {
                    y = y.saturating_sub(hh);
                    c.rect(x, y, bw, hh, *col);
                }
            }
            let label = match lname.as_str() {
                "embedding" => "E".to_string(),
                "head" => "H".to_string(),
                l => l.trim_start_matches("layer").to_string(),
            };
            c.text(x, top + ph + 4, &label, BLACK);
        }
    }
    let lx = w - 160;
    for (i, (k, col)) in KINDS.iter().enumerate() {
        c.rect(lx, top + i * 16, 10, 10, *col);
        c.text(lx + 14, top + i * 16, k, BLACK);
    }
    c.text(
        left,
        top + ph + 20,
        "E = embedding, H = LM head + argmax",
        BLACK,
    );
    c.write_png(path)
}

/// Projected online latency against bandwidth (log scale, RTT fixed) for each table.
pub fn latency_vs_bandwidth(
    tables: &[(&str, &CostTable)],
    rtt_secs: f64,
    path: &Path,
) -> Result<(), EntropyError> {
    let bws: Vec<f64> = (0..=24).map(|i| 10f64.powf(7.0 + i as f64 / 8.0)).collect(); // 10 Mbps .. 10 Gbps
    let series: Vec<Vec<f64>> = tables
        .iter()
        .map(|(_, t)| {
            bws.iter()
                .map(|&b| {
                    let p = NetProfile::custom(b, rtt_secs);
                    t.online_latency_on(&p)
                })
                .collect()
        })
        .collect();
    let max = series.iter().flatten().cloned().fold(1.0, f64::max);
    let (w, h, left, top, pw, ph) = (900usize, 400usize, 70usize, 40usize, 560usize, 300usize);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    c.text(
        left,
        8,
        &format!(
            "projected online latency vs bandwidth (RTT {:.0} ms)",
            rtt_secs * 1e3
        ),
        BLACK,
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = top + ph - (ph as f64 * i as f64 / 4.0) as usize;
        c.rect(left, y, pw, 1, GREY);
        c.text(2, y.saturating_sub(4), &format!("{v:.0} s"), BLACK);
    }
    for (i, lbl) in ["10M", "100M", "1G", "10G"].iter().enumerate() {
        let x = left + i * pw / 3;
        c.rect(x, top, 1, ph, GREY);
        c.text(x.saturating_sub(8), top + ph + 6, lbl, BLACK);
    }
    c.text(left + pw / 2 - 40, top + ph + 22, "bandwidth, bit/s", BLACK);
    let cols = [
        [200, 60, 60],
        [70, 110, 180],
        [80, 160, 90],
        [220, 120, 40],
        [120, 120, 120],
    ];
    for (si, s) in series.iter().enumerate() {
        let col = cols[si % cols.len()];
        let pts: Vec<(f64, f64)> = s
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = left as f64 + pw as f64 * i as f64 / (bws.len() - 1) as f64;
                let y = (top + ph) as f64 - ph as f64 * v / max;
                (x, y)
            })
            .collect();
        for win in pts.windows(2) {
            let (a, b) = (win[0], win[1]);
            for k in 0..=40 {
                let t = k as f64 / 40.0;
                let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                c.rect(x as usize, y as usize, 2, 2, col);
            }
        }
        c.rect(left + pw + 20, top + 10 + si * 16, 10, 10, col);
        c.text(left + pw + 34, top + 10 + si * 16, tables[si].0, BLACK);
    }
    c.write_png(path)
}
