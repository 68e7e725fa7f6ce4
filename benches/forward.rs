//! Plaintext forward pass at GPT-2-small shape (L=12, H=12, d=768, vocabulary 50257), T=128,
//! random weights: the f32 reference (criterion), the KV-cached next token, every architecture
//! variant once, and the fixed-point mirror once (it is slow: timed with one run).
//!
//! Run: `cargo bench --bench forward -- --warm-up-time 1 --measurement-time 3`
//! (set `PRIVLM_BENCH_QUICK=1` to skip the per-variant and fixed-point runs).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion};
use privlm::model::config::KNOWN_ARCHITECTURES;
use privlm::model::{Architecture, Model, ModelConfig};

const T: usize = 128;

fn tokens() -> Vec<u32> {
    (0..T as u32).map(|i| (i * 7919 + 13) % 50257).collect()
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let toks = tokens();
    let t0 = Instant::now();
    let model = Model::random(ModelConfig::gpt2_small(Architecture::gpt2(), T), 1).unwrap();
    eprintln!(
        "random GPT-2-small weights: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    c.bench_function("forward_f32_gpt2_small_T128_all_logits", |b| {
        b.iter(|| black_box(model.forward(black_box(&toks)).unwrap()))
    });
    c.bench_function("forward_f32_gpt2_small_T128_last_logits", |b| {
        b.iter(|| {
            let mut cache = model.new_cache();
            black_box(model.forward_cached(&toks, &mut cache, true).unwrap())
        })
    });
    let mut cache = model.new_cache();
    model
        .forward_cached(&toks[..T - 1], &mut cache, true)
        .unwrap();
    c.bench_function("next_token_f32_gpt2_small_after_127_cached", |b| {
        b.iter_batched(
            || cache.clone(),
            |mut c2| black_box(model.forward_cached(&toks[T - 1..], &mut c2, true).unwrap()),
            BatchSize::SmallInput,
        )
    });

    if std::env::var_os("PRIVLM_BENCH_QUICK").is_some() {
        c.final_summary();
        return;
    }
    // Every variant once at GPT-2-small shape.
    for name in KNOWN_ARCHITECTURES {
        let m = Model::random(ModelConfig::gpt2_small(name.parse().unwrap(), T), 2).unwrap();
        let t = Instant::now();
        let l = m.forward(&toks).unwrap();
        assert!(l.data.iter().all(|v| v.is_finite()), "{name}");
        eprintln!(
            "{name:>16}: f32 forward T=128 in {:.3} s",
            t.elapsed().as_secs_f64()
        );
    }

    // The fixed-point mirror, one run.
    let fixed = model.to_fixed();
    let t = Instant::now();
    let l = fixed.forward(&toks).unwrap();
    eprintln!(
        "fixed-point mirror forward GPT-2-small T=128: {:.1} s ({} logits)",
        t.elapsed().as_secs_f64(),
        l.data.len()
    );
    c.final_summary();
}
