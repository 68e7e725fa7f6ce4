//! Heatmap of head entropies (layers × heads), in the style of EGA Fig. 3: a viridis-like
//! colour per cell from 0 to the causal maximum, each cell annotated with its value (2
//! decimals), a colour bar, and the histogram and flags underneath. Text is drawn with a small
//! built-in 5×7 bitmap font, so no font file is needed.

use std::path::Path;

use super::{EntropyError, EntropyReport};

/// Text scale: each font pixel is drawn as `SCALE × SCALE` image pixels.
const SCALE: usize = 2;
/// Advance of one character (5 pixels + 1 space), in image pixels.
const CHAR_W: usize = 6 * SCALE;
/// Height of one text line (7 pixels + spacing), in image pixels.
const LINE_H: usize = 10 * SCALE;
const CELL_W: usize = 64;
const CELL_H: usize = 32;
const LEFT: usize = 16 + 4 * CHAR_W;
const TOP: usize = 12 + 2 * LINE_H + 8 + LINE_H;
const BAR_GAP: usize = 16;
const BAR_W: usize = 24;
const RIGHT: usize = BAR_GAP + BAR_W + 10 + 5 * CHAR_W + 12;
const BOTTOM: usize = 12 + 3 * LINE_H + 8;
const MIN_W: usize = 24 + 70 * CHAR_W;

/// Size `(width, height)` in pixels of the heatmap of a `layers × heads` model.
pub fn heatmap_size(layers: usize, heads: usize) -> (usize, usize) {
    let w = (LEFT + heads * CELL_W + RIGHT).max(MIN_W);
    (w, TOP + layers * CELL_H + BOTTOM)
}

/// Viridis-like colour map: anchors sampled from matplotlib's viridis, linearly interpolated.
fn colormap(x: f64) -> [u8; 3] {
    const ANCHORS: [[u8; 3]; 9] = [
        [0x44, 0x01, 0x54],
        [0x48, 0x28, 0x78],
        [0x3e, 0x49, 0x89],
        [0x31, 0x68, 0x8e],
        [0x26, 0x82, 0x8e],
        [0x1f, 0x9e, 0x89],
        [0x35, 0xb7, 0x79],
        [0x6e, 0xce, 0x58],
        [0xfd, 0xe7, 0x25],
    ];
    let x = if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = x * (ANCHORS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(ANCHORS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    [0, 1, 2].map(|c| (f64::from(a[c]) + f * (f64::from(b[c]) - f64::from(a[c]))).round() as u8)
}

fn text_color_on(bg: [u8; 3]) -> [u8; 3] {
    let lum = 0.299 * f64::from(bg[0]) + 0.587 * f64::from(bg[1]) + 0.114 * f64::from(bg[2]);
    if lum > 140.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

/// 5×7 glyphs, one byte per row, bit 4 = leftmost pixel. Lower case is drawn as upper case.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1E, 0x01, 0x01, 0x0E, 0x01, 0x01, 0x1E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '/' => [0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10],
        '%' => [0x19, 0x1A, 0x02, 0x04, 0x08, 0x0B, 0x13],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// An RGB8 canvas with the heatmap's 5×7 bitmap font (each font pixel drawn 2×2), for other
/// plots that need text without a font file (the trainer's entropy curves use it).
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    /// Advance of one character in pixels.
    pub const CHAR_W: usize = CHAR_W;
    /// Height of one text line in pixels.
    pub const LINE_H: usize = LINE_H;

    /// A `w × h` canvas filled with `bg`.
    pub fn new(w: usize, h: usize, bg: [u8; 3]) -> Self {
        let mut px = Vec::with_capacity(w * h * 3);
        for _ in 0..w * h {
            px.extend_from_slice(&bg);
        }
        Canvas { w, h, px }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.w
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.h
    }

    /// The RGB8 pixels, row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.px
    }

    /// Fills a rectangle (clipped to the canvas).
    pub fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.h) {
            for xx in x..(x + w).min(self.w) {
                let i = (yy * self.w + xx) * 3;
                self.px[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// Draws `s` with its top-left corner at (x, y); characters past the right edge are cut.
    pub fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let gx = x + k * CHAR_W;
            if gx + 5 * SCALE > self.w {
                break;
            }
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(gx + col * SCALE, y + row * SCALE, SCALE, SCALE, c);
                    }
                }
            }
        }
    }

    /// Width in pixels of `s` as [`Canvas::text`] draws it.
    pub fn text_width(s: &str) -> usize {
        (s.chars().count() * CHAR_W).saturating_sub(SCALE)
    }

    /// Draws `s` horizontally centred on `cx`.
    pub fn text_centered(&mut self, cx: usize, y: usize, s: &str, c: [u8; 3]) {
        let x = cx.saturating_sub(Self::text_width(s) / 2);
        self.text(x, y, s, c);
    }

    /// Writes the canvas as an RGB8 PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), EntropyError> {
        write_rgb_png(self.w, self.h, &self.px, path)
    }
}

fn ranges(ls: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ls.len() {
        let mut j = i;
        while j + 1 < ls.len() && ls[j + 1] == ls[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", ls[i], ls[j])
        } else {
            ls[i].to_string()
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Renders the heatmap of `rep` as RGB8 pixels; returns `(width, height, pixels)`.
pub fn render_heatmap(rep: &EntropyReport) -> (usize, usize, Vec<u8>) {
    let (s, a) = (&rep.stats, &rep.analysis);
    let (w, h) = heatmap_size(s.layers, s.heads);
    let mut cv = Canvas::new(w, h, [255, 255, 255]);
    let ink = [20, 20, 20];
    let vmax = a.causal_max.max(a.max_entropy).max(1e-12);

    cv.text(12, 12, "ATTENTION ENTROPY PER HEAD (NATS)", ink);
    let t = match (s.seq_lens.iter().min(), s.seq_lens.iter().max()) {
        (Some(lo), Some(hi)) if lo == hi => format!("T={lo}"),
        (Some(lo), Some(hi)) => format!("T={lo}-{hi}"),
        _ => String::new(),
    };
    cv.text(
        12,
        12 + LINE_H,
        &format!(
            "{t}  SEQS={}  LOG T={:.2}  CAUSAL MAX={:.2}  MAX={:.2}",
            s.seq_lens.len(),
            a.log_t,
            a.causal_max,
            a.max_entropy
        ),
        ink,
    );
    let grid_y = TOP;
    for hd in 0..s.heads {
        cv.text_centered(
            LEFT + hd * CELL_W + CELL_W / 2,
            grid_y - LINE_H,
            &format!("H{hd}"),
            ink,
        );
    }
    for l in 0..s.layers {
        let y = grid_y + l * CELL_H;
        cv.text(10, y + (CELL_H - 7 * SCALE) / 2, &format!("L{l}"), ink);
        for hd in 0..s.heads {
            let v = s.get(l, hd);
            let bg = colormap(v / vmax);
            let x = LEFT + hd * CELL_W;
            cv.rect(x, y, CELL_W, CELL_H, bg);
            cv.text_centered(
                x + CELL_W / 2,
                y + (CELL_H - 7 * SCALE) / 2,
                &format!("{:.2}", super::report::no_neg_zero(v)),
                text_color_on(bg),
            );
        }
    }
    // Colour bar from 0 (bottom) to vmax (top), with 5 ticks.
    let bx = LEFT + s.heads * CELL_W + BAR_GAP;
    let bh = (s.layers * CELL_H).max(1);
    for yy in 0..bh {
        let frac = 1.0 - yy as f64 / (bh - 1).max(1) as f64;
        cv.rect(bx, grid_y + yy, BAR_W, 1, colormap(frac));
    }
    for k in 0..=4 {
        let frac = k as f64 / 4.0;
        let yy = grid_y + ((1.0 - frac) * (bh - 1) as f64).round() as usize;
        // Tick: a white line across the bar (a dark mark beside the label reads as a minus).
        cv.rect(bx, yy.min(grid_y + bh - 2), BAR_W, 2, [255, 255, 255]);
        let ty = yy
            .saturating_sub(7 * SCALE / 2)
            .clamp(grid_y.saturating_sub(4), grid_y + bh);
        cv.text(bx + BAR_W + 10, ty, &format!("{:.2}", frac * vmax), ink);
    }
    // Histogram and flags.
    let by = grid_y + s.layers * CELL_H + 12;
    let f = a.bin_fractions.map(|x| 100.0 * x);
    cv.text(
        12,
        by,
        &format!(
            "HEADS BY ENTROPY/MAX: <1/4 {:.1}%  <1/2 {:.1}%  <3/4 {:.1}%  TOP {:.1}%",
            f[0], f[1], f[2], f[3]
        ),
        ink,
    );
    let flag = |b: bool| if b { "YES" } else { "NO" };
    let ov = if a.overload_layers.is_empty() {
        String::new()
    } else {
        format!(" (LAYERS {})", ranges(&a.overload_layers))
    };
    let co = if a.collapse_layers.is_empty() {
        String::new()
    } else {
        format!(" (LAYERS {})", ranges(&a.collapse_layers))
    };
    cv.text(
        12,
        by + LINE_H,
        &format!("ENTROPIC OVERLOAD: {}{ov}", flag(a.overload)),
        ink,
    );
    cv.text(
        12,
        by + 2 * LINE_H,
        &format!("ENTROPY COLLAPSE: {}{co}", flag(a.collapse)),
        ink,
    );
    (w, h, cv.px)
}

/// Renders the heatmap of `rep` and writes it as a PNG file.
pub fn write_heatmap_png(rep: &EntropyReport, path: &Path) -> Result<(), EntropyError> {
    let (w, h, px) = render_heatmap(rep);
    write_rgb_png(w, h, &px, path)
}

fn write_rgb_png(w: usize, h: usize, px: &[u8], path: &Path) -> Result<(), EntropyError> {
    let io = |source| EntropyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let wu = u32::try_from(w).map_err(|_| EntropyError::Png(format!("width {w} too large")))?;
    let hu = u32::try_from(h).map_err(|_| EntropyError::Png(format!("height {h} too large")))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), wu, hu);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .map_err(|e| EntropyError::Png(e.to_string()))?;
    writer
        .write_image_data(px)
        .map_err(|e| EntropyError::Png(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| EntropyError::Png(e.to_string()))?;
    Ok(())
}
