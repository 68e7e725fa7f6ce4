//! The path the CLI takes: attention probabilities -> accumulator -> report files, on
//! synthetic causal softmax attention whose sharpness grows with depth.

use privlm::entropy::{self, EntropyAccumulator};

/// `[heads, T, T]` causal softmax attention with logits
/// `z_ij = (0.37 j + 0.1 sin(1.7 i + 0.9 j + h)) / temp` (increasing in j: one-hot as temp -> 0).
fn layer_attn(heads: usize, t: usize, temp: f64) -> Vec<f32> {
    let mut a = vec![0.0f32; heads * t * t];
    for h in 0..heads {
        for i in 0..t {
            let z: Vec<f64> = (0..=i)
                .map(|j| {
                    (0.37 * j as f64 + 0.1 * (1.7 * i as f64 + 0.9 * j as f64 + h as f64).sin())
                        / temp
                })
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
            for j in 0..=i {
                a[(h * t + i) * t + j] = ((z[j] - m).exp() / s) as f32;
            }
        }
    }
    a
}

#[test]
fn attention_to_report() {
    let (layers, heads) = (6, 4);
    // Temperatures 10 (near uniform) down to 0.01 (one-hot) with depth.
    let temps = [10.0, 3.0, 1.0, 0.3, 0.03, 0.01];
    let mut acc = EntropyAccumulator::new(layers, heads);
    for t in [32usize, 48] {
        let attn: Vec<Vec<f32>> = temps.iter().map(|&tau| layer_attn(heads, t, tau)).collect();
        acc.add_sequence(&attn, t).unwrap();
    }
    let stats = acc.finish().unwrap();
    // Entropy falls with depth.
    let means: Vec<f64> = (0..layers)
        .map(|l| stats.layer(l).iter().sum::<f64>() / heads as f64)
        .collect();
    assert!(means.windows(2).all(|w| w[0] > w[1]), "{means:?}");
    assert!(means[0] > 0.95 * stats.causal_max());

    let dir = std::env::temp_dir().join(format!("privlm-entropy-pipeline-{}", std::process::id()));
    let (rep, paths) = entropy::report(&stats, &dir).unwrap();
    assert!(rep.analysis.collapse, "{:?}", rep.analysis);
    assert_eq!(rep.analysis.collapse_layers, [4, 5]);
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&paths.png).unwrap(),
    ));
    let info = dec.read_info().unwrap().info().clone();
    let (w, h) = entropy::heatmap_size(layers, heads);
    assert_eq!((info.width as usize, info.height as usize), (w, h));
    print!("{}", entropy::table(&rep));
    if std::env::var_os("PRIVLM_KEEP_REPORT").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    } else {
        eprintln!("report kept in {}", dir.display());
    }
}

/// Timing figure, not a check: GPT-2-small shape (12 x 12 heads, T = 128).
/// `cargo test --release --test entropy_pipeline -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_gpt2_small_shape() {
    let (layers, heads, t) = (12, 12, 128);
    let attn: Vec<Vec<f32>> = (0..layers)
        .map(|l| layer_attn(heads, t, 0.1 + l as f64))
        .collect();
    let mut acc = EntropyAccumulator::new(layers, heads);
    let t0 = std::time::Instant::now();
    acc.add_sequence(&attn, t).unwrap();
    let e = t0.elapsed();
    let dir = std::env::temp_dir().join(format!("privlm-entropy-timing-{}", std::process::id()));
    let t1 = std::time::Instant::now();
    entropy::report(&acc.finish().unwrap(), &dir).unwrap();
    let r = t1.elapsed();
    std::fs::remove_dir_all(&dir).unwrap();
    println!(
        "entropy of 12x12x128x128 attention: {:.2} ms; report (json+csv+png): {:.1} ms",
        e.as_secs_f64() * 1e3,
        r.as_secs_f64() * 1e3
    );
}
