//! Monitoring as the paper does: CSV logs of losses, perplexities, per-layer mean entropy,
//! per-head entropies and NaN counts, and line charts of layerwise mean entropy against the
//! training step (EGA Figure 5) and of the train and held-out loss.
//!
//! Charts are drawn on the engine's [`Canvas`] (its built-in bitmap font needs no font file).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use privlm::entropy::heatmap::Canvas;

/// Appends one line to a CSV file, writing `header` first if the file is new or empty.
pub fn append_csv(path: &Path, header: &str, line: &str) -> anyhow::Result<()> {
    let fresh = std::fs::metadata(path)
        .map(|m| m.len() == 0)
        .unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if fresh {
        writeln!(f, "{header}")?;
    }
    writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Drops the rows of a CSV log (first column = step) whose step is above `step`: on
/// `--resume`, the rows logged after the checkpoint are logged again.
pub fn truncate_csv_after(path: &Path, step: u64) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, line)| {
            *i == 0
                || line
                    .split(',')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|s| s <= step)
        })
        .map(|(_, l)| l)
        .collect();
    let mut out = kept.join("\n");
    out.push('\n');
    std::fs::write(path, out).with_context(|| format!("rewriting {}", path.display()))
}

/// Reads a numeric CSV (header + rows) into the header names and the rows.
pub fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    Ok((header, rows))
}

/// One curve of a chart.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points (x, y); non-finite y values are skipped.
    pub points: Vec<(f64, f64)>,
}

/// Distinct colours (tab10-like) for up to 10 curves; more cycle.
const COLORS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * span {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract().abs() < 1e-9 {
        format!("{:.0}", v)
    } else if (v * 10.0).fract().abs() < 1e-6 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

/// Draws a line chart (title, axis labels, ticks, legend) and writes it as a PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> anyhow::Result<()> {
    let (w, h) = (900usize, 560usize);
    let (left, right, top, bottom) = (90usize, 170usize, 50usize, 70usize);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let mut cv = Canvas::new(w, h, [255, 255, 255]);
    let ink = [20, 20, 20];
    let grid = [225, 225, 225];
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if let Some((lo, hi)) = y_range {
        (y0, y1) = (lo.min(y0), hi.max(y1));
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| left as f64 + (x - x0) / (x1 - x0) * pw as f64;
    let py = |y: f64| top as f64 + (1.0 - (y - y0) / (y1 - y0)) * ph as f64;
    for t in nice_ticks(y0, y1, 6) {
        let y = py(t).round() as usize;
        cv.rect(left, y, pw, 1, grid);
        let s = fmt_tick(t);
        cv.text(
            left - 8 - Canvas::text_width(&s),
            y.saturating_sub(7),
            &s,
            ink,
        );
    }
    for t in nice_ticks(x0, x1, 6) {
        let x = px(t).round() as usize;
        cv.rect(x, top, 1, ph, grid);
        cv.text_centered(x, top + ph + 8, &fmt_tick(t), ink);
    }
    cv.rect(left, top, 1, ph + 1, ink);
    cv.rect(left, top + ph, pw + 1, 1, ink);
    cv.rect(left, top, pw + 1, 1, ink);
    cv.rect(left + pw, top, 1, ph + 1, ink);
    cv.text_centered(w / 2, 14, title, ink);
    cv.text_centered(left + pw / 2, h - 28, x_label, ink);
    cv.text(8, top - 28, y_label, ink);
    for (k, s) in series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        let mut prev: Option<(f64, f64)> = None;
        for &(x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let (ax, ay) = (px(x), py(y));
            if let Some((bx, by)) = prev {
                let n = ((ax - bx).abs().max((ay - by).abs()).ceil() as usize).max(1);
                for i in 0..=n {
                    let f = i as f64 / n as f64;
                    let (x, y) = (bx + f * (ax - bx), by + f * (ay - by));
                    cv.rect(x.round() as usize, y.round() as usize, 2, 2, c);
                }
            } else {
                cv.rect(ax.round() as usize, ay.round() as usize, 2, 2, c);
            }
            prev = Some((ax, ay));
        }
        let ly = top + 10 + k * Canvas::LINE_H;
        cv.rect(left + pw + 14, ly + 6, 22, 3, c);
        cv.text(left + pw + 42, ly, &s.label, ink);
    }
    cv.write_png(path)
        .with_context(|| format!("writing {}", path.display()))
}
