//! Checkpoint fidelity: the Hugging Face GPT-2 config fields that change the computation are
//! honoured (`tie_word_embeddings: false`, `scale_attn_weights`,
//! `scale_attn_by_inverse_layer_idx`) or refused by name; F16/BF16/F64 tensors load by exact
//! conversion; non-finite weights and tensors the model would not use are refused by name.
//!
//! Each case is a small checkpoint written by the test from the GPT-2 fixture
//! (`tests/fixtures/gpt2_tiny`, 2 layers, 4 heads, d = 64, d_k = 16, vocabulary 512) and
//! checked against an equivalent checkpoint the loader already handled before (for example
//! "no `1/√d_k`" equals "W_Q and b_Q multiplied by √d_k = 4", exact in floating point).

use std::path::{Path, PathBuf};

use privlm::model::checkpoint::write_safetensors;
use privlm::model::ops::{Linear, default_score_scale};
use privlm::model::{Model, ModelConfig};
use safetensors::{Dtype, SafeTensors};

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

const D: usize = 64;
const VOCAB: usize = 512;
const TOK: [u32; 9] = [5, 77, 300, 2, 511, 18, 18, 90, 1];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny")
}

fn fixture_config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap()
}

fn fixture_tensors() -> Tensors {
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Tensors = st
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), Dtype::F32);
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, t.shape().to_vec(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn get<'a>(t: &'a mut Tensors, name: &str) -> &'a mut Vec<f32> {
    &mut t.iter_mut().find(|(n, _, _)| n == name).unwrap().2
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-hf-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_hf(dir: &Path, cfg: &serde_json::Value, t: &Tensors) {
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), t).unwrap();
}

fn logits(dir: &Path) -> Vec<f32> {
    Model::load(dir).unwrap().forward(&TOK).unwrap().data
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Multiplies the query columns (the first d of c_attn's 3d outputs) of layer `l` by `c`.
fn scale_queries(t: &mut Tensors, l: usize, c: f32) {
    let w = get(t, &format!("transformer.h.{l}.attn.c_attn.weight"));
    for row in w.chunks_mut(3 * D) {
        row[..D].iter_mut().for_each(|v| *v *= c);
    }
    let b = get(t, &format!("transformer.h.{l}.attn.c_attn.bias"));
    b[..D].iter_mut().for_each(|v| *v *= c);
}

#[test]
fn untied_lm_head_is_used() {
    let base = fixture_tensors();
    let tied = logits(&fixture());
    // lm_head.weight [vocab, d]: row v is 2 · wte[perm(v)], so logit v = 2 · tied logit perm(v).
    let perm = |v: usize| (v * 7 + 3) % VOCAB;
    let wte = base
        .iter()
        .find(|(n, _, _)| n == "transformer.wte.weight")
        .unwrap()
        .2
        .clone();
    let mut head = vec![0f32; VOCAB * D];
    for v in 0..VOCAB {
        for j in 0..D {
            head[v * D + j] = 2.0 * wte[perm(v) * D + j];
        }
    }
    let mut t = base.clone();
    t.push(("lm_head.weight".into(), vec![VOCAB, D], head.clone()));
    let mut cfg = fixture_config();
    cfg["tie_word_embeddings"] = false.into();
    let dir = tmpdir("untied");
    write_hf(&dir, &cfg, &t);
    let model = Model::load(&dir).unwrap();
    assert!(model.manifest().untied_lm_head);
    let got = model.forward(&TOK).unwrap().data;
    for (row_got, row_tied) in got.chunks(VOCAB).zip(tied.chunks(VOCAB)) {
        for v in 0..VOCAB {
            let want = 2.0 * row_tied[perm(v)];
            assert!((row_got[v] - want).abs() < 1e-4, "logit {v}");
        }
    }

    // The mirror and generation take the untied head too.
    let fixed = model.to_fixed().forward(&TOK).unwrap();
    assert!(max_abs_diff(&fixed.data, &got) < 0.1);

    // Saved in privlm's format and loaded again: the same model.
    let saved = tmpdir("untied-saved");
    model.save(&saved).unwrap();
    assert_eq!(
        Model::load(&saved).unwrap().forward(&TOK).unwrap().data,
        got
    );

    // Untied without lm_head.weight: refused by name.
    write_hf(&dir, &cfg, &base);
    let e = load_err(&dir);
    assert!(e.contains("lm_head.weight") && e.contains("missing"), "{e}");

    // Tied (the default) with an lm_head.weight present: Hugging Face ties it to wte, so do we.
    let mut cfg_tied = fixture_config();
    cfg_tied
        .as_object_mut()
        .unwrap()
        .remove("tie_word_embeddings");
    write_hf(&dir, &cfg_tied, &t);
    assert_eq!(logits(&dir), tied);
}

#[test]
fn scale_attn_weights_false_drops_the_inverse_sqrt() {
    let base = fixture_tensors();
    let mut cfg = fixture_config();
    cfg["scale_attn_weights"] = false.into();
    let (a, b) = (tmpdir("noscale-a"), tmpdir("noscale-b"));
    write_hf(&a, &cfg, &base);
    // Equivalent: scores (4q)·k / √16 = q·k, exact in floating point.
    let mut t = base.clone();
    for l in 0..2 {
        scale_queries(&mut t, l, 4.0);
    }
    write_hf(&b, &fixture_config(), &t);
    let (la, lb) = (logits(&a), logits(&b));
    assert!(max_abs_diff(&la, &lb) < 1e-5, "{}", max_abs_diff(&la, &lb));
    // ... and it is not the default model.
    assert!(max_abs_diff(&la, &logits(&fixture())) > 1e-2);
    let m = Model::load(&a).unwrap();
    assert!(m.weights().blocks.iter().all(|b| b.score_scale == 1.0));
}

#[test]
fn scale_attn_by_inverse_layer_idx_divides_layer_l_by_l_plus_1() {
    let base = fixture_tensors();
    let mut cfg = fixture_config();
    cfg["scale_attn_by_inverse_layer_idx"] = true.into();
    let (a, b) = (tmpdir("invl-a"), tmpdir("invl-b"));
    write_hf(&a, &cfg, &base);
    // Equivalent: layer 0 unchanged (÷1), layer 1's queries halved (÷2), exact.
    let mut t = base.clone();
    scale_queries(&mut t, 1, 0.5);
    write_hf(&b, &fixture_config(), &t);
    let (la, lb) = (logits(&a), logits(&b));
    assert!(max_abs_diff(&la, &lb) < 1e-5, "{}", max_abs_diff(&la, &lb));
    assert!(max_abs_diff(&la, &logits(&fixture())) > 1e-3);

    // Both flags together: layer l's scale is 1 / (l + 1).
    cfg["scale_attn_weights"] = false.into();
    write_hf(&a, &cfg, &base);
    let m = Model::load(&a).unwrap();
    let scales: Vec<f32> = m.weights().blocks.iter().map(|b| b.score_scale).collect();
    assert_eq!(scales, [1.0, 0.5]);
    // The scales are public constants of the manifest, and survive privlm's format.
    assert_eq!(m.manifest().layers[1].score_scale, 0.5);
    let saved = tmpdir("invl-saved");
    m.save(&saved).unwrap();
    let back = Model::load(&saved).unwrap();
    assert_eq!(back.manifest(), m.manifest());
    assert_eq!(
        back.forward(&TOK).unwrap().data,
        m.forward(&TOK).unwrap().data
    );
}

#[test]
fn unsupported_or_malformed_hf_fields_are_refused_by_name() {
    let base = fixture_tensors();
    let dir = tmpdir("fields");
    let mut cfg = fixture_config();
    cfg["add_cross_attention"] = true.into();
    write_hf(&dir, &cfg, &base);
    let e = load_err(&dir);
    assert!(e.contains("add_cross_attention"), "{e}");
    let mut cfg = fixture_config();
    cfg["tie_word_embeddings"] = "no".into();
    write_hf(&dir, &cfg, &base);
    let e = load_err(&dir);
    assert!(e.contains("tie_word_embeddings"), "{e}");
}

/// `x` rounded towards zero to a value representable in IEEE binary16 (subnormals flushed to
/// zero), as (half bits, exact f32 value).
fn to_f16(x: f32) -> (u16, f32) {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if !(1..31).contains(&exp) {
        assert!(exp < 1, "{x} is too large for f16");
        return (sign, if sign != 0 { -0.0 } else { 0.0 });
    }
    let h = sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16;
    (h, f32::from_bits(b & 0xffff_e000))
}

fn write_dtype(path: &Path, t: &[(String, Vec<usize>, Vec<u8>)], dtype: Dtype) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = t
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn half_precision_tensors_load_by_exact_conversion() {
    let base = fixture_tensors();
    let cfg = fixture_config();
    // BF16: the top 16 bits of each f32; the f32 reference holds exactly those values.
    let mut exact_bf = base.clone();
    let mut bf = Vec::new();
    for (n, s, v) in exact_bf.iter_mut() {
        let bytes = v
            .iter()
            .flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        v.iter_mut()
            .for_each(|x| *x = f32::from_bits(x.to_bits() & 0xffff_0000));
        bf.push((n.clone(), s.clone(), bytes));
    }
    let (d_bf, d_ref) = (tmpdir("bf16"), tmpdir("bf16-ref"));
    std::fs::write(d_bf.join("config.json"), cfg.to_string()).unwrap();
    write_dtype(&d_bf.join("model.safetensors"), &bf, Dtype::BF16);
    write_hf(&d_ref, &cfg, &exact_bf);
    let l_bf = logits(&d_bf);
    assert_eq!(l_bf, logits(&d_ref), "BF16 must load exactly");
    // Close to the f32 model (bf16 keeps 8 significant bits).
    assert!(max_abs_diff(&l_bf, &logits(&fixture())) < 0.5);

    // F16 likewise.
    let mut exact_h = base.clone();
    let mut h = Vec::new();
    for (n, s, v) in exact_h.iter_mut() {
        let mut bytes = Vec::with_capacity(2 * v.len());
        for x in v.iter_mut() {
            let (bits, val) = to_f16(*x);
            bytes.extend(bits.to_le_bytes());
            *x = val;
        }
        h.push((n.clone(), s.clone(), bytes));
    }
    let (d_h, d_href) = (tmpdir("f16"), tmpdir("f16-ref"));
    std::fs::write(d_h.join("config.json"), cfg.to_string()).unwrap();
    write_dtype(&d_h.join("model.safetensors"), &h, Dtype::F16);
    write_hf(&d_href, &cfg, &exact_h);
    let l_h = logits(&d_h);
    assert_eq!(l_h, logits(&d_href), "F16 must load exactly");
    assert!(max_abs_diff(&l_h, &logits(&fixture())) < 0.1);

    // An infinite half (0x7c00) is refused with the tensor's name.
    let name = "transformer.h.1.mlp.c_fc.weight";
    let e = h.iter_mut().find(|(n, _, _)| n == name).unwrap();
    e.2[20..22].copy_from_slice(&0x7c00u16.to_le_bytes());
    write_dtype(&d_h.join("model.safetensors"), &h, Dtype::F16);
    let e = load_err(&d_h);
    assert!(
        e.contains(name) && e.contains("inf") && e.contains("index 10"),
        "{e}"
    );
}

#[test]
fn nan_or_infinite_weights_are_refused_with_the_name() {
    let dir = tmpdir("nan");
    for (name, bad) in [
        ("transformer.h.0.attn.c_proj.bias", f32::NAN),
        ("transformer.wpe.weight", f32::NEG_INFINITY),
        ("transformer.ln_f.weight", f32::INFINITY),
    ] {
        let mut t = fixture_tensors();
        get(&mut t, name)[3] = bad;
        write_hf(&dir, &fixture_config(), &t);
        let e = load_err(&dir);
        assert!(e.contains(name) && e.contains("finite"), "{e}");
    }
}

#[test]
fn tensors_the_model_would_not_use_are_refused() {
    // Hugging Face's mask buffers are skipped.
    let mut t = fixture_tensors();
    t.push((
        "transformer.h.0.attn.bias".into(),
        vec![1, 1, 32, 32],
        vec![1.0; 1024],
    ));
    let dir = tmpdir("unused-hf");
    write_hf(&dir, &fixture_config(), &t);
    assert_eq!(logits(&dir), logits(&fixture()));
    // A weight of some other model is not.
    t.push((
        "transformer.h.0.crossattention.c_attn.weight".into(),
        vec![D, 2 * D],
        vec![0.0; 2 * D * D],
    ));
    write_hf(&dir, &fixture_config(), &t);
    let e = load_err(&dir);
    assert!(
        e.contains("transformer.h.0.crossattention.c_attn.weight") && e.contains("not used"),
        "{e}"
    );

    // privlm's format: LayerNorm weights in an LN-free architecture are refused, not ignored.
    let cfg: ModelConfig = ModelConfig {
        architecture: "SM+ScFuFFN".parse().unwrap(),
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        d_ff: 16,
        vocab_size: 20,
        n_ctx: 8,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: Default::default(),
    };
    let m = Model::random(cfg.clone(), 1).unwrap();
    let mut t = privlm::model::checkpoint::weights_to_tensors(&cfg, m.weights());
    t.push(("h.1.ln_1.weight".into(), vec![8], vec![1.0; 8]));
    let dir = tmpdir("unused-privlm");
    std::fs::write(dir.join("config.json"), cfg.to_json()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &t).unwrap();
    let e = load_err(&dir);
    assert!(
        e.contains("h.1.ln_1.weight") && e.contains("SM+ScFuFFN"),
        "{e}"
    );
}

#[test]
fn privlm_format_carries_score_scales_and_untied_heads() {
    let cfg = ModelConfig {
        architecture: "SM+LN+G".parse().unwrap(),
        n_layer: 2,
        n_head: 2,
        d_model: 8,
        d_ff: 16,
        vocab_size: 20,
        n_ctx: 8,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: Default::default(),
    };
    let mut w = privlm::model::random_weights(&cfg, 2);
    w.blocks[1].score_scale = 0.125;
    w.lm_head = Some(Linear {
        d_in: 8,
        d_out: 20,
        w: (0..160)
            .map(|i| ((i * 37) % 11) as f32 * 0.01 - 0.05)
            .collect(),
        b: None,
    });
    let m = Model::new(cfg.clone(), w).unwrap();
    let dir = tmpdir("privlm-extras");
    m.save(&dir).unwrap();
    // config.json is unchanged in form (the extras live in the tensor file).
    assert_eq!(
        std::fs::read_to_string(dir.join("config.json")).unwrap(),
        cfg.to_json()
    );
    let back = Model::load(&dir).unwrap();
    assert_eq!(back.manifest(), m.manifest());
    assert_eq!(
        back.weights().blocks[0].score_scale,
        default_score_scale(&cfg)
    );
    let toks = [1u32, 4, 19, 7];
    assert_eq!(back.forward(&toks).unwrap(), m.forward(&toks).unwrap());
    // A non-positive stored scale is refused by name.
    let mut t = privlm::model::checkpoint::weights_to_tensors(&cfg, m.weights());
    t.iter_mut()
        .find(|(n, _, _)| n == "h.1.attn.score_scale")
        .unwrap()
        .2[0] = 0.0;
    write_safetensors(&dir.join("model.safetensors"), &t).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("h.1.attn.score_scale"), "{e}");
}
