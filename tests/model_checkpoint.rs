//! Checkpoint handling: bad checkpoints give errors naming the tensor or field; weight and
//! spectral normalization, 1/alpha, beta and the temperature have the documented meaning.

use std::path::{Path, PathBuf};

use privlm::model::checkpoint::{self, weights_to_tensors, write_safetensors};
use privlm::model::{Model, ModelConfig, ModelError, TemperatureForm};

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn small(arch: &str) -> ModelConfig {
    ModelConfig {
        architecture: arch.parse().unwrap(),
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        d_ff: 16,
        vocab_size: 20,
        n_ctx: 8,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: TemperatureForm::PerHeadQuery,
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-ckpt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, cfg: &ModelConfig, t: &Tensors) {
    std::fs::write(dir.join("config.json"), cfg.to_json()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), t).unwrap();
}

fn tensors(cfg: &ModelConfig, seed: u64) -> Tensors {
    let m = Model::random(cfg.clone(), seed).unwrap();
    weights_to_tensors(cfg, m.weights())
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("load should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let cfg = small("SM+LN+G");
    let mut t = tensors(&cfg, 1);
    t.retain(|(n, _, _)| n != "h.1.mlp.c_fc.weight");
    let dir = tmpdir("missing");
    write(&dir, &cfg, &t);
    let e = load_err(&dir);
    assert!(
        e.contains("h.1.mlp.c_fc.weight") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let cfg = small("SM+LN+G");
    let mut t = tensors(&cfg, 1);
    for (n, s, v) in t.iter_mut() {
        if n == "h.0.attn.c_proj.weight" {
            *s = vec![4, 16];
            v.truncate(64);
        }
    }
    let dir = tmpdir("shape");
    write(&dir, &cfg, &t);
    let e = load_err(&dir);
    assert!(
        e.contains("h.0.attn.c_proj.weight") && e.contains("[4, 16]") && e.contains("[8, 8]"),
        "{e}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let cfg = small("SM+LN+G");
    let dir = tmpdir("arch");
    write(&dir, &cfg, &tensors(&cfg, 1));
    let text = cfg.to_json().replace("SM+LN+G", "SM+LN+Swish");
    std::fs::write(dir.join("config.json"), text).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("architecture") && e.contains("SM+LN+Swish"),
        "{e}"
    );

    // A Hugging Face config with an unsupported activation or model type.
    let hf = r#"{"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "vocab_size": 20,
                 "n_positions": 8, "activation_function": "silu"}"#;
    std::fs::write(dir.join("config.json"), hf).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("activation_function") && e.contains("silu"),
        "{e}"
    );
    std::fs::write(dir.join("config.json"), hf.replace("\"gpt2\"", "\"llama\"")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model_type") && e.contains("llama"), "{e}");
    let hf_ok = hf.replace("silu", "gelu_new");
    std::fs::write(dir.join("config.json"), hf_ok.replace("\"n_head\": 2,", "")).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("n_head"), "{e}");
}

#[test]
fn truncated_file_names_the_tensor() {
    let cfg = small("SM+LN+G");
    let dir = tmpdir("trunc");
    write(&dir, &cfg, &tensors(&cfg, 1));
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("truncated") && e.contains('`'), "{e}");
    // Cut inside the header too.
    std::fs::write(&path, &bytes[..20]).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("safetensors"), "{e}");
    // Through the HF fixture as well: the names keep their `transformer.` prefix.
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
    let hf_dir = tmpdir("trunc-hf");
    std::fs::copy(fx.join("config.json"), hf_dir.join("config.json")).unwrap();
    let b = std::fs::read(fx.join("model.safetensors")).unwrap();
    std::fs::write(hf_dir.join("model.safetensors"), &b[..b.len() / 2]).unwrap();
    let e = load_err(&hf_dir);
    assert!(e.contains("truncated") && e.contains("transformer."), "{e}");
}

#[test]
fn wrong_dtype_and_bad_values_are_named() {
    let cfg = small("SM(t)+ScFuFFN");
    let mut t = tensors(&cfg, 3);
    for (n, _, v) in t.iter_mut() {
        if n == "h.1.attn.temperature" {
            v[3] = -1.0;
        }
    }
    let dir = tmpdir("temp");
    write(&dir, &cfg, &t);
    let e = load_err(&dir);
    assert!(e.contains("h.1.attn.temperature"), "{e}");
}

fn logits(dir: &Path, tokens: &[u32]) -> Vec<f32> {
    Model::load(dir).unwrap().forward(tokens).unwrap().data
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn get<'a>(t: &'a mut Tensors, name: &str) -> &'a mut (String, Vec<usize>, Vec<f32>) {
    t.iter_mut().find(|(n, _, _)| n == name).unwrap()
}

const TOK: [u32; 6] = [1, 5, 7, 2, 19, 0];

#[test]
fn alpha_folds_into_the_ffn_and_beta_scales_the_residual() {
    let cfg = small("SM+ScFuFFN");
    let base = tensors(&cfg, 5);
    // alpha = 2 on layer 0 equals halving the fused weight and bias.
    let mut with_alpha = base.clone();
    with_alpha.push(("h.0.ffn_alpha".into(), vec![1], vec![2.0]));
    let mut halved = base.clone();
    for name in ["h.0.mlp.c_fused.weight", "h.0.mlp.c_fused.bias"] {
        get(&mut halved, name).2.iter_mut().for_each(|v| *v *= 0.5);
    }
    let (d1, d2) = (tmpdir("alpha1"), tmpdir("alpha2"));
    write(&d1, &cfg, &with_alpha);
    write(&d2, &cfg, &halved);
    assert!(max_abs_diff(&logits(&d1, &TOK), &logits(&d2, &TOK)) < 1e-5);
    // beta changes the output.
    let mut with_beta = base.clone();
    get(&mut with_beta, "h.1.ffn_beta").2[0] = 0.5;
    let d3 = tmpdir("beta");
    write(&d3, &cfg, &with_beta);
    write(&d2, &cfg, &base);
    assert!(max_abs_diff(&logits(&d3, &TOK), &logits(&d2, &TOK)) > 1e-3);
}

#[test]
fn temperature_divides_the_attention_logits() {
    // A uniform temperature t on every head and position equals dividing W_Q and b_Q by t.
    let cfg = small("SM(t)+ScFuFFN");
    let mut base = tensors(&cfg, 9);
    // Random weights come with random temperatures; start from t = 1.
    for (n, _, v) in base.iter_mut() {
        if n.ends_with("attn.temperature") {
            v.iter_mut().for_each(|x| *x = 1.0);
        }
    }
    let t = 0.25f32;
    let mut hot = base.clone();
    let mut scaled_q = base.clone();
    for l in 0..2 {
        get(&mut hot, &format!("h.{l}.attn.temperature"))
            .2
            .iter_mut()
            .for_each(|v| *v = t);
        let (_, _, w) = get(&mut scaled_q, &format!("h.{l}.attn.c_attn.weight"));
        for row in w.chunks_mut(24) {
            row[..8].iter_mut().for_each(|v| *v /= t);
        }
        let (_, _, b) = get(&mut scaled_q, &format!("h.{l}.attn.c_attn.bias"));
        b[..8].iter_mut().for_each(|v| *v /= t);
    }
    let (d1, d2) = (tmpdir("temp1"), tmpdir("temp2"));
    write(&d1, &cfg, &hot);
    write(&d2, &cfg, &scaled_q);
    let err = max_abs_diff(&logits(&d1, &TOK), &logits(&d2, &TOK));
    assert!(err < 1e-4, "{err}");
    // Per-head form: shape [H].
    let mut cfg_h = cfg.clone();
    cfg_h.temperature_form = TemperatureForm::PerHead;
    let mut ph = base.clone();
    for l in 0..2 {
        let e = get(&mut ph, &format!("h.{l}.attn.temperature"));
        e.1 = vec![2];
        e.2 = vec![t, t];
    }
    let d3 = tmpdir("temp3");
    write(&d3, &cfg_h, &ph);
    assert!(max_abs_diff(&logits(&d3, &TOK), &logits(&d2, &TOK)) < 1e-4);
    // Wrong shape for the per-head form is named.
    write(&d3, &cfg_h, &base);
    let e = load_err(&d3);
    assert!(
        e.contains("h.0.attn.temperature") && e.contains("[2]"),
        "{e}"
    );
}

#[test]
fn weight_and_spectral_norm_fold() {
    let cfg = small("SM+ScFuFFN");
    let base = tensors(&cfg, 11);
    let dir_plain = tmpdir("wn0");
    write(&dir_plain, &cfg, &base);
    let w = get(&mut base.clone(), "h.0.mlp.c_fused.weight").2.clone();
    let (d_in, d_out) = (8, 8);

    // Weight norm: v = 3 * W (any positive multiple per column), g = column norms of W.
    let mut wn = base.clone();
    wn.retain(|(n, _, _)| n != "h.0.mlp.c_fused.weight");
    let mut g = vec![0f32; d_out];
    for row in w.chunks(d_out) {
        for (gg, x) in g.iter_mut().zip(row) {
            *gg += x * x;
        }
    }
    g.iter_mut().for_each(|x| *x = x.sqrt());
    wn.push(("h.0.mlp.c_fused.weight_g".into(), vec![d_out], g));
    wn.push((
        "h.0.mlp.c_fused.weight_v".into(),
        vec![d_in, d_out],
        w.iter().map(|x| 3.0 * x).collect(),
    ));
    let dir_wn = tmpdir("wn1");
    write(&dir_wn, &cfg, &wn);
    assert!(max_abs_diff(&logits(&dir_wn, &TOK), &logits(&dir_plain, &TOK)) < 1e-4);

    // Spectral norm: W_orig = 5 W with u, v unit vectors with u^T W_orig v = 5 * (u^T W v);
    // choose u = e_0, v = e_0 and W[0][0] = 1 so that sigma = 5 and W_orig / sigma = W.
    let mut w1 = w.clone();
    w1[0] = 1.0;
    let mut sn_plain = base.clone();
    get(&mut sn_plain, "h.0.mlp.c_fused.weight").2 = w1.clone();
    let mut sn = base.clone();
    sn.retain(|(n, _, _)| n != "h.0.mlp.c_fused.weight");
    let mut e0_out = vec![0f32; d_out];
    e0_out[0] = 1.0;
    let mut e0_in = vec![0f32; d_in];
    e0_in[0] = 1.0;
    sn.push((
        "h.0.mlp.c_fused.weight_orig".into(),
        vec![d_in, d_out],
        w1.iter().map(|x| 5.0 * x).collect(),
    ));
    sn.push(("h.0.mlp.c_fused.weight_u".into(), vec![d_out], e0_out));
    sn.push(("h.0.mlp.c_fused.weight_v".into(), vec![d_in], e0_in));
    let (d_sn, d_snp) = (tmpdir("sn1"), tmpdir("sn0"));
    write(&d_sn, &cfg, &sn);
    write(&d_snp, &cfg, &sn_plain);
    assert!(max_abs_diff(&logits(&d_sn, &TOK), &logits(&d_snp, &TOK)) < 1e-4);

    // A spectral-norm tensor set missing its u vector names it.
    let mut bad = sn.clone();
    bad.retain(|(n, _, _)| n != "h.0.mlp.c_fused.weight_u");
    write(&d_sn, &cfg, &bad);
    let e = load_err(&d_sn);
    assert!(e.contains("h.0.mlp.c_fused.weight_u"), "{e}");
}

#[test]
fn load_dir_reports_format() {
    let cfg = small("SM+LN+R");
    let dir = tmpdir("fmt");
    write(&dir, &cfg, &tensors(&cfg, 2));
    let (c, _, f) = checkpoint::load_dir(&dir).unwrap();
    assert_eq!(f, checkpoint::Format::Privlm);
    assert_eq!(c, cfg);
    assert!(matches!(
        Model::load(&tmpdir("empty")),
        Err(ModelError::Io { .. })
    ));
}
