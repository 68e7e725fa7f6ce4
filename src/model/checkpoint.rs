//! Checkpoints: Hugging Face GPT-2 directories and privlm's own format, in safetensors.
//!
//! A model directory holds `config.json` and `model.safetensors` (the safetensors format of
//! Hugging Face: an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the raw little-endian data).
//!
//! - **Hugging Face GPT-2** (`config.json` with `"model_type": "gpt2"`): GPT-2's names
//!   (`wte.weight`, `h.0.attn.c_attn.weight`, ...), with or without the `transformer.` prefix,
//!   Conv1D weights `[in, out]`, input and output embeddings tied (`lm_head.weight`, if
//!   present, is ignored). Architecture `SM+LN+G` (`activation_function: gelu_new`) or
//!   `SM+LN+R` (`relu`).
//! - **privlm** (`config.json` is a [`ModelConfig`], with an `architecture` field): the same
//!   names plus those of docs/model.md (fused FFN `h.{i}.mlp.c_fused`, `h.{i}.ffn_alpha`,
//!   `h.{i}.ffn_beta`, `h.{i}.attn.temperature`, weight/spectral-normalised weights). Biases
//!   are optional (absent = zero). Weight normalization, spectral normalization and `1/alpha`
//!   fold into the weights here, at load time; `beta` and the temperature stay public
//!   per-layer constants.
//!
//! The file is read into memory with one `read` call rather than memory-mapped: mapping a
//! file needs an `unsafe` call (the file could change underneath), which the crate's
//! `#![forbid(unsafe_code)]` rules out.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::ModelError;
use super::config::{Activation, Architecture, FfnKind, ModelConfig, TemperatureForm};
use super::ops::{Block, Embedding, Ffn, Linear, ModelWeights, Norm};
use super::plain::F32Ops;

/// The host (f32) weights of a model.
pub type Weights = ModelWeights<F32Ops>;

/// File name of the configuration in a model directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the tensors in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Which checkpoint format a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Hugging Face `GPT2LMHeadModel`.
    HuggingFaceGpt2,
    /// privlm's own format.
    Privlm,
}

/// Loads a model directory (either format). Returns the config, the weights and the format.
pub fn load_dir(dir: &Path) -> Result<(ModelConfig, Weights, Format), ModelError> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::Io {
        path: cfg_path.display().to_string(),
        msg: e.to_string(),
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::ConfigJson(e.to_string()))?;
    let (cfg, format) = if json.get("architecture").is_some() {
        (ModelConfig::from_json(&text)?, Format::Privlm)
    } else {
        (hf_config(&json)?, Format::HuggingFaceGpt2)
    };
    let st_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&st_path).map_err(|e| ModelError::Io {
        path: st_path.display().to_string(),
        msg: e.to_string(),
    })?;
    let st = open_safetensors(&bytes)?;
    let weights = read_weights(&cfg, &st, format)?;
    Ok((cfg, weights, format))
}

/// Reads a Hugging Face GPT-2 `config.json` into a [`ModelConfig`]; errors name the field.
pub fn hf_config(json: &serde_json::Value) -> Result<ModelConfig, ModelError> {
    let field = |name: &'static str| -> Result<usize, ModelError> {
        json.get(name)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or(ModelError::BadConfig {
                field: name,
                msg: "missing or not a non-negative integer".into(),
            })
    };
    if let Some(mt) = json.get("model_type").and_then(|v| v.as_str())
        && mt != "gpt2"
    {
        return Err(ModelError::UnknownArchitecture {
            field: "model_type",
            name: mt.to_string(),
            known: "gpt2 (Hugging Face), or a privlm config with an `architecture` field".into(),
        });
    }
    let d = field("n_embd")?;
    let d_ff = match json.get("n_inner") {
        None | Some(serde_json::Value::Null) => 4 * d,
        Some(_) => field("n_inner")?,
    };
    let act = json
        .get("activation_function")
        .and_then(|v| v.as_str())
        .unwrap_or("gelu_new");
    let mut architecture = Architecture::gpt2();
    architecture.activation = match act {
        "gelu_new" | "gelu_pytorch_tanh" => Activation::Gelu,
        "relu" => Activation::Relu,
        other => {
            return Err(ModelError::UnknownArchitecture {
                field: "activation_function",
                name: other.to_string(),
                known: "gelu_new, gelu_pytorch_tanh, relu".into(),
            });
        }
    };
    let n_ctx = field("n_positions").or_else(|_| field("n_ctx"))?;
    let eps = json
        .get("layer_norm_epsilon")
        .and_then(|v| v.as_f64())
        .unwrap_or(1e-5) as f32;
    let cfg = ModelConfig {
        architecture,
        n_layer: field("n_layer")?,
        n_head: field("n_head")?,
        d_model: d,
        d_ff,
        vocab_size: field("vocab_size")?,
        n_ctx,
        final_layer_norm: true,
        layer_norm_eps: eps,
        temperature_form: TemperatureForm::PerHeadQuery,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Parses a safetensors buffer; a truncated file gives an error naming the first tensor whose
/// bytes are missing.
pub fn open_safetensors(bytes: &[u8]) -> Result<SafeTensors<'_>, ModelError> {
    SafeTensors::deserialize(bytes).map_err(|e| diagnose(bytes, e))
}

fn diagnose(bytes: &[u8], err: safetensors::SafeTensorError) -> ModelError {
    // Try to read the header ourselves to name the tensor that the file cuts off.
    let header = || -> Option<(usize, Vec<(String, usize)>)> {
        let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
        let json: HashMap<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        let mut ends: Vec<(String, usize)> = json
            .iter()
            .filter(|(k, _)| k.as_str() != "__metadata__")
            .filter_map(|(k, v)| {
                let end = v.get("data_offsets")?.get(1)?.as_u64()? as usize;
                Some((k.clone(), end))
            })
            .collect();
        ends.sort_by_key(|(_, e)| *e);
        Some((n, ends))
    };
    if let Some((n, ends)) = header() {
        let available = bytes.len().saturating_sub(8 + n);
        if let Some((name, end)) = ends.iter().find(|(_, end)| *end > available) {
            return ModelError::Truncated {
                tensor: name.clone(),
                needed: *end,
                available,
            };
        }
    }
    ModelError::Safetensors(format!("{err:?}"))
}

/// Looks up tensors by name, trying the `transformer.` prefix too.
struct Reader<'a, 'b> {
    st: &'a SafeTensors<'b>,
}

impl Reader<'_, '_> {
    fn find(&self, name: &str) -> Option<(String, safetensors::tensor::TensorView<'_>)> {
        for full in [name.to_string(), format!("transformer.{name}")] {
            if let Ok(t) = self.st.tensor(&full) {
                return Some((full, t));
            }
        }
        None
    }

    fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn opt(&self, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>, ModelError> {
        let Some((full, t)) = self.find(name) else {
            return Ok(None);
        };
        // A scalar may be stored with shape [] or [1].
        let got = t.shape();
        let scalar_ok = shape == [1] && got.is_empty();
        if got != shape && !scalar_ok {
            return Err(ModelError::WrongShape {
                tensor: full,
                expected: shape.to_vec(),
                got: got.to_vec(),
            });
        }
        if t.dtype() != Dtype::F32 {
            return Err(ModelError::WrongDtype {
                tensor: full,
                dtype: format!("{:?}", t.dtype()),
            });
        }
        Ok(Some(
            t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    fn req(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        self.opt(name, shape)?
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    /// A linear layer's weight `[d_in, d_out]`: plain, weight-normalised (`weight_g`,
    /// `weight_v`) or spectral-normalised (`weight_orig`, `weight_u`, `weight_v`), folded.
    fn weight(&self, prefix: &str, d_in: usize, d_out: usize) -> Result<Vec<f32>, ModelError> {
        let plain = format!("{prefix}.weight");
        if self.has(&plain) {
            return self.req(&plain, &[d_in, d_out]);
        }
        if self.has(&format!("{prefix}.weight_g")) {
            let g = self.req(&format!("{prefix}.weight_g"), &[d_out])?;
            let v = self.req(&format!("{prefix}.weight_v"), &[d_in, d_out])?;
            return Ok(fold_weight_norm(&g, &v, d_in, d_out));
        }
        if self.has(&format!("{prefix}.weight_orig")) {
            let w = self.req(&format!("{prefix}.weight_orig"), &[d_in, d_out])?;
            let u = self.req(&format!("{prefix}.weight_u"), &[d_out])?;
            let v = self.req(&format!("{prefix}.weight_v"), &[d_in])?;
            return Ok(fold_spectral_norm(&w, &u, &v, d_in, d_out));
        }
        Err(ModelError::MissingTensor(plain))
    }

    fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias_required: bool,
    ) -> Result<Linear, ModelError> {
        let w = self.weight(prefix, d_in, d_out)?;
        let bname = format!("{prefix}.bias");
        let b = if bias_required {
            Some(self.req(&bname, &[d_out])?)
        } else {
            self.opt(&bname, &[d_out])?
        };
        Ok(Linear { d_in, d_out, w, b })
    }

    fn norm(&self, prefix: &str, d: usize, eps: f32) -> Result<Norm, ModelError> {
        Ok(Norm {
            gamma: self.req(&format!("{prefix}.weight"), &[d])?,
            beta: self.req(&format!("{prefix}.bias"), &[d])?,
            eps,
        })
    }
}

/// Weight normalization (Salimans & Kingma 2016), folded: column `o` of `W` is
/// `g[o] · v[:, o] / ||v[:, o]||` (torch's `weight_norm` on a Linear, dim 0, in Conv1D layout).
pub fn fold_weight_norm(g: &[f32], v: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let mut norms = vec![0f64; d_out];
    for row in v.chunks(d_out).take(d_in) {
        for (n, &x) in norms.iter_mut().zip(row) {
            *n += (x as f64) * (x as f64);
        }
    }
    let scale: Vec<f64> = norms
        .iter()
        .zip(g)
        .map(|(n, &g)| if *n > 0.0 { g as f64 / n.sqrt() } else { 0.0 })
        .collect();
    v.chunks(d_out)
        .flat_map(|row| row.iter().zip(&scale).map(|(&x, s)| (x as f64 * s) as f32))
        .collect()
}

/// Spectral normalization (Miyato et al. 2018), folded as torch's `spectral_norm` does at
/// evaluation: `W / σ` with `σ = uᵀ W_orig v` from the stored power-iteration vectors
/// (`u` over outputs, `v` over inputs; `W_orig` in Conv1D layout `[in, out]`).
pub fn fold_spectral_norm(w: &[f32], u: &[f32], v: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let mut sigma = 0f64;
    for (i, row) in w.chunks(d_out).take(d_in).enumerate() {
        let dot: f64 = row.iter().zip(u).map(|(&a, &b)| a as f64 * b as f64).sum();
        sigma += v[i] as f64 * dot;
    }
    let inv = if sigma != 0.0 { 1.0 / sigma } else { 1.0 };
    w.iter().map(|&x| (x as f64 * inv) as f32).collect()
}

fn scale_linear(l: &mut Linear, c: f32) {
    l.w.iter_mut().for_each(|x| *x *= c);
    if let Some(b) = &mut l.b {
        b.iter_mut().for_each(|x| *x *= c);
    }
}

/// Reads the weights of `cfg` from an opened safetensors file.
pub fn read_weights(
    cfg: &ModelConfig,
    st: &SafeTensors<'_>,
    format: Format,
) -> Result<Weights, ModelError> {
    let r = Reader { st };
    let hf = format == Format::HuggingFaceGpt2;
    let (d, heads, ctx) = (cfg.d_model, cfg.n_head, cfg.n_ctx);
    let arch = cfg.architecture;
    let eps = cfg.layer_norm_eps;
    let embedding = Embedding {
        vocab: cfg.vocab_size,
        d,
        n_ctx: ctx,
        wte: r.req("wte.weight", &[cfg.vocab_size, d])?,
        wpe: r.req("wpe.weight", &[ctx, d])?,
    };
    let mut blocks = Vec::with_capacity(cfg.n_layer);
    for l in 0..cfg.n_layer {
        let p = format!("h.{l}");
        let ln_1 = if arch.block_layer_norm {
            Some(r.norm(&format!("{p}.ln_1"), d, eps)?)
        } else {
            None
        };
        let qkv = r.linear(&format!("{p}.attn.c_attn"), d, 3 * d, hf)?;
        let proj = r.linear(&format!("{p}.attn.c_proj"), d, d, hf)?;
        let has_ffn = arch.has_ffn(l);
        let ln_2 = if arch.block_layer_norm && has_ffn {
            Some(r.norm(&format!("{p}.ln_2"), d, eps)?)
        } else {
            None
        };
        let scaled = matches!(arch.ffn, FfnKind::Scaled | FfnKind::ScaledFused);
        let alpha = if scaled {
            r.opt(&format!("{p}.ffn_alpha"), &[1])?
                .map_or(1.0, |v| v[0])
        } else {
            1.0
        };
        if alpha == 0.0 || !alpha.is_finite() {
            return Err(ModelError::BadTensor {
                tensor: format!("{p}.ffn_alpha"),
                msg: format!("must be finite and non-zero, got {alpha}"),
            });
        }
        let beta = if scaled {
            r.opt(&format!("{p}.ffn_beta"), &[1])?.map_or(1.0, |v| v[0])
        } else {
            1.0
        };
        let ffn = if !has_ffn {
            Ffn::None
        } else if arch.ffn == FfnKind::ScaledFused {
            let mut w = r.linear(&format!("{p}.mlp.c_fused"), d, d, false)?;
            scale_linear(&mut w, 1.0 / alpha);
            Ffn::Fused { w }
        } else {
            let fc = r.linear(&format!("{p}.mlp.c_fc"), d, cfg.d_ff, hf)?;
            let mut proj = r.linear(&format!("{p}.mlp.c_proj"), cfg.d_ff, d, hf)?;
            scale_linear(&mut proj, 1.0 / alpha);
            Ffn::TwoLayer { fc, proj }
        };
        let temperature = if arch.temperature {
            let name = format!("{p}.attn.temperature");
            let t = match cfg.temperature_form {
                TemperatureForm::PerHeadQuery => r.req(&name, &[heads, ctx])?,
                TemperatureForm::PerHead => r.req(&name, &[heads])?,
            };
            if let Some(bad) = t.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
                return Err(ModelError::BadTensor {
                    tensor: name,
                    msg: format!("temperatures must be finite and positive, got {bad}"),
                });
            }
            Some(t)
        } else {
            None
        };
        blocks.push(Block {
            ln_1,
            qkv,
            proj,
            ln_2,
            ffn,
            beta,
            temperature,
        });
    }
    let ln_f = if cfg.final_layer_norm {
        Some(r.norm("ln_f", d, eps)?)
    } else {
        None
    };
    Ok(ModelWeights {
        embedding,
        blocks,
        ln_f,
    })
}

/// Serialises the weights in privlm's tensor naming (folded form: `ffn_alpha` is not written
/// since 1/alpha is already in the weights; `ffn_beta` and temperatures are).
pub fn weights_to_tensors(cfg: &ModelConfig, w: &Weights) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let e = &w.embedding;
    out.push(("wte.weight".into(), vec![e.vocab, e.d], e.wte.clone()));
    out.push(("wpe.weight".into(), vec![e.n_ctx, e.d], e.wpe.clone()));
    let lin = |out: &mut Vec<_>, name: String, l: &Linear| {
        out.push((format!("{name}.weight"), vec![l.d_in, l.d_out], l.w.clone()));
        if let Some(b) = &l.b {
            out.push((format!("{name}.bias"), vec![l.d_out], b.clone()));
        }
    };
    let norm = |out: &mut Vec<_>, name: String, n: &Norm| {
        out.push((
            format!("{name}.weight"),
            vec![n.gamma.len()],
            n.gamma.clone(),
        ));
        out.push((format!("{name}.bias"), vec![n.beta.len()], n.beta.clone()));
    };
    for (l, b) in w.blocks.iter().enumerate() {
        let p = format!("h.{l}");
        if let Some(n) = &b.ln_1 {
            norm(&mut out, format!("{p}.ln_1"), n);
        }
        lin(&mut out, format!("{p}.attn.c_attn"), &b.qkv);
        lin(&mut out, format!("{p}.attn.c_proj"), &b.proj);
        if let Some(n) = &b.ln_2 {
            norm(&mut out, format!("{p}.ln_2"), n);
        }
        match &b.ffn {
            Ffn::None => {}
            Ffn::TwoLayer { fc, proj } => {
                lin(&mut out, format!("{p}.mlp.c_fc"), fc);
                lin(&mut out, format!("{p}.mlp.c_proj"), proj);
            }
            Ffn::Fused { w } => lin(&mut out, format!("{p}.mlp.c_fused"), w),
        }
        if matches!(cfg.architecture.ffn, FfnKind::Scaled | FfnKind::ScaledFused) {
            out.push((format!("{p}.ffn_beta"), vec![1], vec![b.beta]));
        }
        if let Some(t) = &b.temperature {
            let shape = match cfg.temperature_form {
                TemperatureForm::PerHeadQuery => vec![cfg.n_head, cfg.n_ctx],
                TemperatureForm::PerHead => vec![cfg.n_head],
            };
            out.push((format!("{p}.attn.temperature"), shape, t.clone()));
        }
    }
    if let Some(n) = &w.ln_f {
        norm(&mut out, "ln_f".into(), n);
    }
    out
}

/// Writes named f32 tensors to a safetensors file (metadata `format: privlm`).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), ModelError> {
    let bytes: Vec<(&str, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.as_str(),
                s.as_slice(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.to_vec(), b)
                .map(|v| (n.to_string(), v))
                .map_err(|e| ModelError::Safetensors(format!("{n}: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "privlm".to_string());
    let data = safetensors::serialize(views, Some(meta))
        .map_err(|e| ModelError::Safetensors(format!("{e:?}")))?;
    std::fs::write(path, data).map_err(|e| ModelError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

/// Writes a model directory in privlm's format (`config.json` + `model.safetensors`).
pub fn save_dir(dir: &Path, cfg: &ModelConfig, w: &Weights) -> Result<(), ModelError> {
    let io = |path: &Path, e: std::io::Error| ModelError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    write_safetensors(&dir.join(WEIGHTS_FILE), &weights_to_tensors(cfg, w))?;
    let cfg_path = dir.join(CONFIG_FILE);
    std::fs::write(&cfg_path, cfg.to_json()).map_err(|e| io(&cfg_path, e))?;
    Ok(())
}
