//! The paper's transcribed heatmaps (reference/paper.md appendix, EGA Fig. 3, T = 128):
//! the Softmax-only model shows entropic overload and entropy collapse, the GPT-2 baseline
//! neither; the bins reproduce EGA Fig. 2a; the report files are written and read back.

use privlm::entropy::{self, EntropyReport, EntropyStats, bin_of, parse_csv};

/// SM+LN+G (GPT-2 baseline), EGA Fig. 3a. Rows = layers 0-11, columns = heads 0-11.
const SM_LN_G: &str = "
2.16 2.91 3.83 3.33 3.55 3.12 3.00 3.20 2.68 2.87 3.04 3.04
3.46 0.77 0.73 1.00 0.93 1.13 0.95 1.48 1.38 1.56 1.10 0.61
1.64 1.92 1.71 1.01 1.57 1.06 2.11 1.43 1.70 1.83 1.35 2.40
3.18 2.33 2.04 2.31 2.45 2.32 2.20 1.94 2.44 2.40 2.84 2.17
2.58 2.52 2.27 1.88 2.24 2.61 2.63 2.14 2.50 3.07 2.41 2.76
2.09 0.64 2.71 1.39 2.17 2.30 2.77 1.64 2.46 2.43 2.77 1.78
2.38 2.72 2.50 2.27 2.55 2.37 2.34 2.79 2.57 2.35 2.78 2.37
2.56 2.79 2.31 2.60 2.51 2.51 2.58 2.49 2.33 2.60 2.57 1.98
2.72 2.43 2.30 2.61 2.26 2.36 2.65 2.72 2.70 2.62 2.84 2.65
2.78 2.73 2.66 2.68 2.67 2.55 2.70 2.66 2.62 2.51 2.71 2.81
2.69 2.72 2.90 2.71 2.70 2.60 2.83 2.71 2.57 2.48 2.57 2.71
2.75 2.75 2.69 2.88 2.70 2.66 2.73 2.60 2.70 2.68 2.62 2.62";

/// SM (Softmax-only), EGA Fig. 3f.
const SM: &str = "
3.57 3.63 3.67 3.55 3.65 3.65 3.59 3.41 3.75 3.47 3.54 3.56
3.84 3.85 3.85 3.83 3.84 3.83 3.85 3.85 3.86 3.86 3.83 3.87
3.82 3.77 3.86 3.74 3.75 3.85 3.85 3.83 3.86 3.86 3.83 3.83
3.69 3.76 3.75 3.83 3.78 3.83 3.83 3.84 3.75 3.83 3.73 3.82
3.69 3.81 3.73 3.81 3.80 3.75 3.85 3.66 3.70 3.48 3.83 3.78
2.73 2.22 2.59 2.86 3.41 3.06 3.27 1.19 3.02 2.40 1.31 3.15
2.19 1.77 1.64 2.55 2.38 1.90 1.84 2.52 2.07 2.31 1.57 2.80
1.88 2.12 2.68 2.90 1.09 2.87 1.61 1.33 2.07 2.09 1.73 1.32
0.99 0.36 0.54 0.50 0.78 0.33 0.22 0.36 0.36 0.49 0.44 0.88
0.15 0.25 0.27 0.25 0.17 0.17 0.18 0.15 0.17 0.19 0.12 0.14
0.06 0.15 0.07 0.06 0.03 0.06 0.05 0.04 0.08 0.05 0.05 0.05
0.04 0.04 0.05 0.04 0.05 0.04 0.05 0.05 0.05 0.04 0.05 0.04";

fn stats(text: &str) -> EntropyStats {
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    EntropyStats::from_values(12, 12, 128, v).unwrap()
}

fn assert_pct(got: [f64; 4], want: [f64; 4], tol: f64) {
    for k in 0..4 {
        assert!(
            (100.0 * got[k] - want[k]).abs() <= tol,
            "bin {k}: {:.1}% vs paper {}% (all: {got:?})",
            100.0 * got[k],
            want[k]
        );
    }
}

#[test]
fn softmax_only_shows_overload_and_collapse() {
    let rep = EntropyReport::new(stats(SM));
    let a = &rep.analysis;
    assert!(a.overload, "{a:?}");
    assert!(a.collapse, "{a:?}");
    // Max = 3.87 -> edges 0.9675, 1.935, 2.9025. Top bin: layers 0-4 (60 heads) + 5 heads of
    // layer 5 = 65/144; bottom bin: 11 heads of layer 8 + layers 9-11 = 47/144.
    assert_eq!(a.bin_counts[3], 65);
    assert_eq!(a.bin_counts[0], 47);
    assert_pct(a.bin_fractions, [33.0, 10.0, 12.0, 45.0], 1.5);
    assert_eq!(a.overload_layers, [0, 1, 2, 3, 4]);
    assert_eq!(a.overload_early_share, 1.0);
    // Collapse threshold 0.1 * log 128 = 0.485: layer 8 has 6 heads below, layers 9-11 all.
    assert!((a.collapse_threshold - 0.1 * 128f64.ln()).abs() < 1e-12);
    assert_eq!(a.collapse_layers, [8, 9, 10, 11]);
    assert_eq!(a.collapsed_heads.len(), 6 + 36);
    // Layer means of paper.md section 7.
    for (l, want) in [
        3.59, 3.85, 3.82, 3.79, 3.74, 2.60, 2.13, 1.97, 0.52, 0.18, 0.06, 0.04,
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            (a.layer_means[l] - want).abs() < 0.006,
            "layer {l}: {}",
            a.layer_means[l]
        );
    }
}

#[test]
fn gpt2_baseline_is_healthy() {
    let rep = EntropyReport::new(stats(SM_LN_G));
    let a = &rep.analysis;
    assert!(!a.overload, "{a:?}");
    assert!(!a.collapse, "{a:?}");
    assert!(a.collapse_layers.is_empty());
    // Paper (Fig. 2a): 4 / 14 / 74 / 8 %; paper.md: recomputation agrees within 1-2 points.
    assert_pct(a.bin_fractions, [4.0, 14.0, 74.0, 8.0], 2.0);
    assert!((a.max_entropy - 3.83).abs() < 1e-12);
}

#[test]
fn bins_at_their_edges() {
    let m = 4.0;
    assert_eq!(bin_of(0.0, m), 0);
    assert_eq!(bin_of(0.999, m), 0);
    assert_eq!(bin_of(1.0, m), 1);
    assert_eq!(bin_of(2.0, m), 2);
    assert_eq!(bin_of(2.999, m), 2);
    assert_eq!(bin_of(3.0, m), 3);
    assert_eq!(bin_of(4.0, m), 3);
    assert_eq!(bin_of(1.0, 0.0), 0);
}

#[test]
fn report_files_round_trip() {
    let dir = std::env::temp_dir().join(format!("privlm-entropy-report-{}", std::process::id()));
    let st = stats(SM);
    let (rep, paths) = entropy::report(&st, &dir).unwrap();

    let json: EntropyReport =
        serde_json::from_str(&std::fs::read_to_string(&paths.json).unwrap()).unwrap();
    assert_eq!(json, rep);

    let rows = parse_csv(&std::fs::read_to_string(&paths.csv).unwrap()).unwrap();
    assert_eq!(rows.len(), 144);
    for r in &rows {
        assert_eq!(r.entropy, st.get(r.layer, r.head), "exact round trip");
        assert_eq!(r.bin, rep.analysis.head_bins[r.layer * 12 + r.head]);
        assert_eq!(r.collapsed, r.entropy < rep.analysis.collapse_threshold);
    }
    assert!(parse_csv("nonsense\n1,2,3\n").is_err());
    assert!(parse_csv("layer,head,entropy_nats,bin,collapsed\n0,0,x,1,0\n").is_err());

    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&paths.png).unwrap(),
    ));
    let reader = dec.read_info().unwrap();
    let info = reader.info();
    let (w, h) = entropy::heatmap_size(12, 12);
    assert_eq!((info.width as usize, info.height as usize), (w, h));
    assert_eq!(info.color_type, png::ColorType::Rgb);

    let t = entropy::table(&rep);
    assert!(t.contains("entropic overload: YES"), "{t}");
    assert!(t.contains("entropy collapse:  YES"), "{t}");
    assert_eq!(t.lines().count(), 3 + 12 + 3);
    if std::env::var_os("PRIVLM_KEEP_REPORT").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    } else {
        eprintln!("report kept in {}", dir.display());
    }
}
