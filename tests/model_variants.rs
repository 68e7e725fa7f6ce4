//! Every architecture variant runs forward on random weights (small shape), round-trips through
//! privlm's checkpoint format, agrees with itself under the KV cache, and its fixed-point mirror
//! tracks the f32 forward.

use privlm::model::{Architecture, Model, ModelConfig, TemperatureForm};

fn small(arch: &str) -> ModelConfig {
    ModelConfig {
        architecture: arch.parse().unwrap(),
        n_layer: 3,
        n_head: 4,
        d_model: 32,
        d_ff: 64,
        vocab_size: 50,
        n_ctx: 16,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: TemperatureForm::PerHeadQuery,
    }
}

fn variants() -> Vec<ModelConfig> {
    let mut v: Vec<ModelConfig> = [
        "SM+LN+G",
        "SM+LN+R",
        "SM+LN",
        "SM+G",
        "SM+R",
        "SM",
        "SM+ScFFN",
        "SM+ScFuFFN",
        "SM(t)+ScFuFFN",
        "EReg(SM(t)+ScFuFFN)",
        "SM+ScFuFFN[1]",
        "SM+LN+G[2]",
    ]
    .iter()
    .map(|a| small(a))
    .collect();
    let mut per_head = small("SM(t)+ScFuFFN");
    per_head.temperature_form = TemperatureForm::PerHead;
    v.push(per_head);
    let mut no_lnf = small("SM+ScFuFFN");
    no_lnf.final_layer_norm = false;
    v.push(no_lnf);
    v
}

const TOKENS: [u32; 11] = [3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 49];

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_variant_runs_and_round_trips() {
    let tmp = std::env::temp_dir().join(format!("privlm-variants-{}", std::process::id()));
    for (i, cfg) in variants().into_iter().enumerate() {
        let name = cfg.architecture.name();
        let model = Model::random(cfg.clone(), 100 + i as u64).unwrap();
        let (logits, att) = model.forward_with_attention(&TOKENS).unwrap();
        assert_eq!(logits.data.len(), TOKENS.len() * 50, "{name}");
        assert!(
            logits.data.iter().all(|v| v.is_finite()),
            "{name}: non-finite logits"
        );
        assert_eq!(att.len(), 3);
        assert!(
            att.iter()
                .all(|a| a.len() == 4 * TOKENS.len() * TOKENS.len())
        );

        // Save and load in privlm's format: same logits.
        let dir = tmp.join(format!("m{i}"));
        model.save(&dir).unwrap();
        let back = Model::load(&dir).unwrap();
        assert_eq!(back.config(), model.config(), "{name}");
        assert_eq!(back.forward(&TOKENS).unwrap(), logits, "{name}: round trip");

        // KV cache, one token at a time.
        let mut cache = model.new_cache();
        for (p, &t) in TOKENS.iter().enumerate() {
            let l = model.forward_cached(&[t], &mut cache, true).unwrap();
            let err = max_abs_diff(l.last(), logits.row(p));
            assert!(err <= 1e-4, "{name}: cached position {p} differs by {err}");
        }

        // The fixed-point mirror.
        let fixed = model.to_fixed().forward(&TOKENS).unwrap();
        let err = max_abs_diff(&fixed.data, &logits.data);
        let range = logits.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("{name}: mirror max abs logit error {err:.2e} (logit range {range:.2})");
        assert!(err <= 0.05, "{name}: mirror error {err}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn architecture_semantics() {
    // Pruned FFN: layers >= k have none; with k = 0 the FFN weights don't matter at all.
    let a: Architecture = "SM+ScFuFFN[1]".parse().unwrap();
    assert!(a.has_ffn(0) && !a.has_ffn(1));
    // Fused FFN has one d x d matrix, no d_ff.
    let m = Model::random(small("SM+ScFuFFN"), 1).unwrap();
    match &m.weights().blocks[0].ffn {
        privlm::model::ops::Ffn::Fused { w } => assert_eq!((w.d_in, w.d_out), (32, 32)),
        _ => panic!("expected a fused FFN"),
    }
    // Weights are the server's secret: Debug shows shapes only.
    let dbg = format!(
        "{:?} {:?}",
        m.weights().blocks[0].qkv,
        m.weights().embedding
    );
    assert!(dbg.contains("values hidden") && !dbg.contains('.'), "{dbg}");
    // No LayerNorm in LN-free variants, LayerNorm in +LN variants.
    let m = Model::random(small("SM+R"), 1).unwrap();
    assert!(
        m.weights()
            .blocks
            .iter()
            .all(|b| b.ln_1.is_none() && b.ln_2.is_none())
    );
    let m = Model::random(small("SM+LN"), 1).unwrap();
    assert!(
        m.weights()
            .blocks
            .iter()
            .all(|b| b.ln_1.is_some() && b.ln_2.is_some())
    );
}
