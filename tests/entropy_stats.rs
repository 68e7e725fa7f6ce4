//! Head entropy from attention probabilities: uniform causal attention reaches
//! (1/T) Σ log i, one-hot attention gives 0, averaging over sequences, shapes and NaNs.

use privlm::entropy::{
    ENTROPY_EPS, EntropyAccumulator, EntropyError, causal_max_entropy, head_entropies,
    query_entropies,
};

/// `[heads, T, T]` uniform causal attention: row i is 1/(i+1) on keys 0..=i.
fn uniform_causal(heads: usize, t: usize) -> Vec<f32> {
    let mut a = vec![0.0f32; heads * t * t];
    for h in 0..heads {
        for i in 0..t {
            for j in 0..=i {
                a[(h * t + i) * t + j] = 1.0 / (i + 1) as f32;
            }
        }
    }
    a
}

/// `[heads, T, T]` one-hot attention: row i puts all its mass on key (i * 7 + h) % (i + 1).
fn one_hot(heads: usize, t: usize) -> Vec<f32> {
    let mut a = vec![0.0f32; heads * t * t];
    for h in 0..heads {
        for i in 0..t {
            a[(h * t + i) * t + (i * 7 + h) % (i + 1)] = 1.0;
        }
    }
    a
}

#[test]
fn uniform_causal_reaches_the_causal_maximum() {
    for t in [1usize, 2, 3, 17, 128] {
        let (e, nans) = head_entropies(&uniform_causal(3, t), 3, t).unwrap();
        let want: f64 = (1..=t).map(|i| (i as f64).ln()).sum::<f64>() / t as f64;
        assert_eq!(nans, 0);
        for v in e {
            // f32 probabilities (rel. error ~6e-8) and ε = 1e-9 per entry perturb the sum by
            // well under 1e-5.
            assert!((v - want).abs() < 1e-5, "T={t}: {v} vs {want}");
        }
        assert!((causal_max_entropy(t) - want).abs() < 1e-12);
    }
    // The paper's numbers: 3.878 for T = 128, 5.246 for T = 512.
    assert!((causal_max_entropy(128) - 3.878).abs() < 5e-4);
    assert!((causal_max_entropy(512) - 5.246).abs() < 5e-4);
    // T = 2 by hand: row 0 = [1, 0] -> 0; row 1 = [1/2, 1/2] -> log 2; mean = log(2)/2.
    let (e, _) = head_entropies(&[1.0, 0.0, 0.5, 0.5], 1, 2).unwrap();
    assert!((e[0] - 2f64.ln() / 2.0).abs() < 1e-8);
}

#[test]
fn one_hot_attention_has_zero_entropy() {
    let (e, _) = head_entropies(&one_hot(4, 33), 4, 33).unwrap();
    for v in e {
        // −1·log(1 + ε) ≈ −ε per row.
        assert!(v.abs() <= 2.0 * ENTROPY_EPS, "{v}");
    }
}

#[test]
fn query_entropies_per_row() {
    // T = 3, one head; rows [1,0,0], [.5,.5,0], [1/3,1/3,1/3].
    let t = 1.0f32 / 3.0;
    let q = query_entropies(&[1.0, 0.0, 0.0, 0.5, 0.5, 0.0, t, t, t], 1, 3).unwrap();
    assert!(q[0].abs() < 1e-8);
    assert!((q[1] - 2f64.ln()).abs() < 1e-7);
    assert!((q[2] - 3f64.ln()).abs() < 1e-6);
}

#[test]
fn accumulator_averages_over_sequences() {
    // Layer 0 uniform, layer 1 one-hot; sequence lengths 4 and 8.
    let mut acc = EntropyAccumulator::new(2, 2);
    acc.add_sequence(&[uniform_causal(2, 4), one_hot(2, 4)], 4)
        .unwrap();
    acc.add_sequence(&[uniform_causal(2, 8), one_hot(2, 8)], 8)
        .unwrap();
    let s = acc.finish().unwrap();
    let want = (causal_max_entropy(4) + causal_max_entropy(8)) / 2.0;
    assert!((s.get(0, 0) - want).abs() < 1e-6);
    assert!((s.get(0, 1) - want).abs() < 1e-6);
    assert!(s.get(1, 0).abs() < 1e-8);
    assert_eq!(s.seq_lens, [4, 8]);
    assert!((s.causal_max() - want).abs() < 1e-12);
    assert!((s.log_t() - (4f64.ln() + 8f64.ln()) / 2.0).abs() < 1e-12);
}

#[test]
fn bad_shapes_are_refused_and_nothing_is_accumulated() {
    assert!(matches!(
        head_entropies(&[0.5; 7], 1, 2),
        Err(EntropyError::Shape(_))
    ));
    assert!(head_entropies(&[], 1, 0).is_err());
    let mut acc = EntropyAccumulator::new(2, 1);
    // Second layer has the wrong size: the whole sequence is refused.
    let e = acc
        .add_sequence(&[vec![1.0, 0.0, 0.5, 0.5], vec![1.0; 3]], 2)
        .unwrap_err();
    assert!(
        e.to_string().contains("expected heads x T x T = 1 x 2 x 2"),
        "{e}"
    );
    assert!(acc.add_sequence(&[vec![1.0f32]], 1).is_err(), "layer count");
    assert_eq!(acc.sequences(), 0);
    assert!(acc.finish().is_err());
}

#[test]
fn nans_are_skipped_and_counted() {
    let mut acc = EntropyAccumulator::new(1, 1);
    acc.add_sequence(&[vec![1.0, f32::NAN, 0.5, 0.5]], 2)
        .unwrap();
    let s = acc.finish().unwrap();
    assert_eq!(s.nan_counts, [1]);
    assert!((s.get(0, 0) - 2f64.ln() / 2.0).abs() < 1e-8);
}
