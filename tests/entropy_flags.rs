//! Bins and flags on constructed cases (T = 128: log T = 4.852, causal max = 3.878,
//! collapse threshold 0.1 log T = 0.485).

use privlm::entropy::{EntropyAnalysis, EntropyStats, Thresholds};

fn analyse(layers: usize, heads: usize, f: impl Fn(usize, usize) -> f64) -> EntropyAnalysis {
    let v = (0..layers * heads)
        .map(|i| f(i / heads, i % heads))
        .collect();
    EntropyAnalysis::new(
        &EntropyStats::from_values(layers, heads, 128, v).unwrap(),
        Thresholds::default(),
    )
}

#[test]
fn near_uniform_everywhere_is_overload_without_collapse() {
    // A freshly initialised model: every head close to the causal maximum.
    let a = analyse(4, 4, |l, h| 3.80 + 0.01 * (l + h) as f64);
    assert_eq!(a.bin_counts, [0, 0, 0, 16]);
    assert!(a.overload && !a.collapse);
    assert_eq!(a.overload_layers, [0, 1, 2, 3]);
    assert_eq!(a.overload_early_share, 0.5);
}

#[test]
fn healthy_spread_has_no_flag() {
    // Max = 3.0 -> edges 0.75, 1.5, 2.25: 1.0-1.4 in bin 1 (3 heads), 1.5-2.2 in bin 2
    // (10 heads), 2.4, 2.7, 3.0 in the top bin: 3/16 = 18.75% < 20%.
    let vals = [
        1.0, 1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.05, 2.1, 2.15, 2.2, 2.4, 2.7, 3.0,
    ];
    let a = analyse(4, 4, |l, h| vals[l * 4 + h]);
    assert_eq!(a.bin_counts, [0, 3, 10, 3]);
    assert!(!a.overload && !a.collapse, "{a:?}");
}

#[test]
fn overload_threshold_is_inclusive_at_20_percent() {
    // 5 layers x 4 heads: exactly 4 of 20 heads (20%) at the max, the rest at Max/2.
    let a = analyse(5, 4, |l, _| if l == 0 { 3.0 } else { 1.5 });
    assert_eq!(a.bin_counts, [0, 0, 16, 4]);
    assert!(a.overload);
    assert_eq!(a.overload_layers, [0]);
    assert_eq!(a.overload_early_share, 1.0);
    // One fewer top-bin head: 3/20 = 15% -> no overload.
    let a = analyse(5, 4, |l, h| if l == 0 && h > 0 { 3.0 } else { 1.5 });
    assert!(!a.overload);
}

#[test]
fn overload_needs_a_meaningful_max() {
    // Everything collapsed: all heads near 0.05, so all fall in the top bin of a tiny Max.
    // Max = 0.06 < 0.5 x causal max: not overload, but collapse in the deep layers.
    let a = analyse(4, 4, |_, h| 0.05 + 0.01 * (h % 2) as f64);
    assert_eq!(a.bin_counts[3], 16);
    assert!(!a.overload);
    assert!(a.collapse);
    assert_eq!(a.collapse_layers, [2, 3]);
}

#[test]
fn collapse_only_counts_deep_layers() {
    // Layer 0 fully collapsed (an early layer): listed as collapsed heads, not flagged.
    let a = analyse(4, 4, |l, _| if l == 0 { 0.1 } else { 2.0 });
    assert!(!a.collapse);
    assert_eq!(a.collapsed_heads.len(), 4);
    // Half the heads of the last layer below 0.485: flagged.
    let a = analyse(4, 4, |l, h| if l == 3 && h < 2 { 0.3 } else { 2.0 });
    assert!(a.collapse);
    assert_eq!(a.collapse_layers, [3]);
    // A quarter is not enough.
    let a = analyse(4, 4, |l, h| if l == 3 && h < 1 { 0.3 } else { 2.0 });
    assert!(!a.collapse);
}
