//! Checkpoints: Hugging Face GPT-2 directories and privlm's own format, in safetensors.
//!
//! A model directory holds `config.json` and `model.safetensors` (the safetensors format of
//! Hugging Face: an 8-byte little-endian header length, a JSON header naming each tensor's
//! dtype, shape and byte range, then the raw little-endian data).
//!
//! - **Hugging Face GPT-2** (`config.json` with `"model_type": "gpt2"`): GPT-2's names
//!   (`wte.weight`, `h.0.attn.c_attn.weight`, ...), with or without the `transformer.` prefix,
//!   Conv1D weights `[in, out]`. Architecture `SM+LN+G` (`activation_function: gelu_new`) or
//!   `SM+LN+R` (`relu`). The config fields that change the computation are honoured or
//!   refused by name ([`HfOptions`]): `tie_word_embeddings: false` loads `lm_head.weight` as
//!   the LM head (tied: it is ignored, as Hugging Face ties it to `wte`),
//!   `scale_attn_weights` and `scale_attn_by_inverse_layer_idx` set the layers' public score
//!   scales, `add_cross_attention: true` is refused.
//! - **privlm** (`config.json` is a [`ModelConfig`], with an `architecture` field): the same
//!   names plus those of docs/model.md (fused FFN `h.{i}.mlp.c_fused`, `h.{i}.ffn_alpha`,
//!   `h.{i}.ffn_beta`, `h.{i}.attn.temperature`, `h.{i}.attn.score_scale`, `lm_head.weight`,
//!   weight/spectral-normalised weights). Biases are optional (absent = zero). Weight normalization, spectral normalization and `1/alpha`
//!   fold into the weights here, at load time; `beta` and the temperature stay public
//!   per-layer constants.
//!
//! Tensors may be stored as F32, F16, BF16 or F64 and are converted to f32; a NaN or infinite
//! value is refused with the tensor's name. A tensor the model does not use is refused by
//! name (only Hugging Face's attention-mask buffers and a tied `lm_head.weight` are skipped):
//! privlm never serves a model other than the one on disk.
//!
//! The file is read into memory with one `read` call rather than memory-mapped: mapping a
//! file needs an `unsafe` call (the file could change underneath), which the crate's
//! `#![forbid(unsafe_code)]` rules out.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::ModelError;
use super::config::{Activation, Architecture, FfnKind, ModelConfig, TemperatureForm};
use super::ops::{Block, Embedding, Ffn, Linear, ModelWeights, Norm, default_score_scale};
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
    let (cfg, format, hf) = if json.get("architecture").is_some() {
        (ModelConfig::from_json(&text)?, Format::Privlm, None)
    } else {
        let hf = hf_options(&json)?;
        (hf_config(&json)?, Format::HuggingFaceGpt2, Some(hf))
    };
    let st_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&st_path).map_err(|e| ModelError::Io {
        path: st_path.display().to_string(),
        msg: e.to_string(),
    })?;
    let st = open_safetensors(&bytes)?;
    let weights = read_weights_with(&cfg, &st, format, hf.unwrap_or_default())?;
    Ok((cfg, weights, format))
}

/// The Hugging Face GPT-2 config fields beyond the shapes that change what the model computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HfOptions {
    /// `tie_word_embeddings` (default true): the LM head is `wte`; false: `lm_head.weight`.
    pub tie_word_embeddings: bool,
    /// `scale_attn_weights` (default true): scores divided by `√d_k`.
    pub scale_attn_weights: bool,
    /// `scale_attn_by_inverse_layer_idx` (default false): layer `l`'s scores divided by `l + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
}

impl Default for HfOptions {
    fn default() -> Self {
        HfOptions {
            tie_word_embeddings: true,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
        }
    }
}

impl HfOptions {
    /// The public score scale of layer `l`: `1/√d_k` (or 1), divided by `l + 1` if asked.
    pub fn score_scale(&self, cfg: &ModelConfig, l: usize) -> f32 {
        let base = if self.scale_attn_weights {
            default_score_scale(cfg)
        } else {
            1.0
        };
        if self.scale_attn_by_inverse_layer_idx {
            base / (l + 1) as f32
        } else {
            base
        }
    }
}

/// Reads the fields of [`HfOptions`] from a Hugging Face `config.json`, and refuses by name the
/// fields privlm cannot honour (`add_cross_attention: true`). A field of the wrong type is an
/// error naming it.
pub fn hf_options(json: &serde_json::Value) -> Result<HfOptions, ModelError> {
    let flag = |name: &'static str, default: bool| -> Result<bool, ModelError> {
        match json.get(name) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(v) => Err(ModelError::BadConfig {
                field: name,
                msg: format!("expected true or false, got {v}"),
            }),
        }
    };
    if flag("add_cross_attention", false)? {
        return Err(ModelError::BadConfig {
            field: "add_cross_attention",
            msg: "cross-attention (an encoder-decoder GPT-2) is not supported".into(),
        });
    }
    Ok(HfOptions {
        tie_word_embeddings: flag("tie_word_embeddings", true)?,
        scale_attn_weights: flag("scale_attn_weights", true)?,
        scale_attn_by_inverse_layer_idx: flag("scale_attn_by_inverse_layer_idx", false)?,
    })
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

/// Looks up tensors by name, trying the `transformer.` prefix too, and remembers which were
/// read.
struct Reader<'a, 'b> {
    st: &'a SafeTensors<'b>,
    used: RefCell<BTreeSet<String>>,
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
        let values = to_f32(t.dtype(), t.data()).ok_or_else(|| ModelError::WrongDtype {
            tensor: full.clone(),
            dtype: format!("{:?}", t.dtype()),
        })?;
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::BadTensor {
                tensor: full,
                msg: format!("value {v} at index {i}: weights must be finite"),
            });
        }
        self.used.borrow_mut().insert(full);
        Ok(Some(values))
    }

    /// The tensors of the file that were not read, except those `skip` accepts.
    fn unused(&self, skip: impl Fn(&str) -> bool) -> Vec<String> {
        let used = self.used.borrow();
        let mut names: Vec<String> = self
            .st
            .names()
            .into_iter()
            .filter(|n| !used.contains(*n) && !skip(n))
            .map(str::to_string)
            .collect();
        names.sort();
        names
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

/// Little-endian tensor bytes of a floating-point dtype as f32 (`None` for other dtypes).
/// F16 and BF16 convert exactly; F64 rounds to the nearest f32.
fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    })
}

/// IEEE 754 binary16 to binary32 (exact: every half value is a float).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        // Zero or subnormal: mant · 2^-24, exact in f32.
        0 => {
            let v = mant as f32 / (1u32 << 24) as f32;
            return if sign != 0 { -v } else { v };
        }
        // Infinity or NaN (the payload kept).
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        // Normal: rebias the exponent (15 -> 127).
        e => sign | ((e + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

fn scale_linear(l: &mut Linear, c: f32) {
    l.w.iter_mut().for_each(|x| *x *= c);
    if let Some(b) = &mut l.b {
        b.iter_mut().for_each(|x| *x *= c);
    }
}

/// Reads the weights of `cfg` from an opened safetensors file (Hugging Face options at their
/// defaults; see [`read_weights_with`]).
pub fn read_weights(
    cfg: &ModelConfig,
    st: &SafeTensors<'_>,
    format: Format,
) -> Result<Weights, ModelError> {
    read_weights_with(cfg, st, format, HfOptions::default())
}

/// Reads the weights of `cfg` from an opened safetensors file. For Hugging Face checkpoints,
/// `hf` gives the LM-head tying and the score scales; privlm checkpoints carry both in the file
/// (`lm_head.weight`, `h.{i}.attn.score_scale`) and ignore `hf`. Every tensor of the file must
/// be used (Hugging Face's mask buffers `h.{i}.attn.bias` / `.masked_bias` and a tied
/// `lm_head.weight` excepted); an unused one is refused by name.
pub fn read_weights_with(
    cfg: &ModelConfig,
    st: &SafeTensors<'_>,
    format: Format,
    hf_opts: HfOptions,
) -> Result<Weights, ModelError> {
    let r = Reader {
        st,
        used: RefCell::new(BTreeSet::new()),
    };
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
        let score_scale = if hf {
            hf_opts.score_scale(cfg, l)
        } else {
            let name = format!("{p}.attn.score_scale");
            let s = r
                .opt(&name, &[1])?
                .map_or(default_score_scale(cfg), |v| v[0]);
            if !(s.is_finite() && s > 0.0) {
                return Err(ModelError::BadTensor {
                    tensor: name,
                    msg: format!("the score scale must be finite and positive, got {s}"),
                });
            }
            s
        };
        blocks.push(Block {
            ln_1,
            qkv,
            proj,
            ln_2,
            ffn,
            beta,
            score_scale,
            temperature,
        });
    }
    let ln_f = if cfg.final_layer_norm {
        Some(r.norm("ln_f", d, eps)?)
    } else {
        None
    };
    // The LM head: Hugging Face says in the config; privlm's format by the tensor's presence.
    let untied = if hf {
        !hf_opts.tie_word_embeddings
    } else {
        r.has("lm_head.weight")
    };
    let lm_head = if untied {
        let w = r.req("lm_head.weight", &[cfg.vocab_size, d])?;
        Some(Linear {
            d_in: d,
            d_out: cfg.vocab_size,
            w: transpose(&w, cfg.vocab_size, d),
            b: None,
        })
    } else {
        None
    };
    let unused = r.unused(|name| {
        let n = name.strip_prefix("transformer.").unwrap_or(name);
        hf && (n == "lm_head.weight"
            || n.ends_with(".attn.bias")
            || n.ends_with(".attn.masked_bias"))
    });
    if let Some(first) = unused.first() {
        return Err(ModelError::BadTensor {
            tensor: first.clone(),
            msg: format!(
                "not used by {} with this config ({} unused tensor(s): {}); refusing to serve a \
                 model other than the one on disk",
                cfg.architecture,
                unused.len(),
                unused
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(ModelWeights {
        embedding,
        blocks,
        ln_f,
        lm_head,
    })
}

/// `[rows, cols]` row-major to `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, row) in x.chunks(cols).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

/// Serialises the weights in privlm's tensor naming (folded form: `ffn_alpha` is not written
/// since 1/alpha is already in the weights; `ffn_beta` and temperatures are; a score scale
/// only where it differs from `1/√d_k`; `lm_head.weight` only for an untied head).
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
        if b.score_scale != default_score_scale(cfg) {
            out.push((
                format!("{p}.attn.score_scale"),
                vec![1],
                vec![b.score_scale],
            ));
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
    if let Some(h) = &w.lm_head {
        // Stored like `wte` (and Hugging Face's `lm_head.weight`): [vocab, d].
        out.push((
            "lm_head.weight".into(),
            vec![h.d_out, h.d_in],
            transpose(&h.w, h.d_in, h.d_out),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every binary16 bit pattern converts to the value the IEEE 754 formula gives.
    #[test]
    fn f16_conversion_is_exact_on_every_pattern() {
        for h in 0..=u16::MAX {
            let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exp = ((h >> 10) & 0x1f) as i32;
            let mant = (h & 0x3ff) as f64;
            let got = f16_to_f32(h);
            match exp {
                0x1f if mant == 0.0 => assert_eq!(got, sign as f32 * f32::INFINITY),
                0x1f => assert!(got.is_nan(), "{h:#06x}"),
                0 => assert_eq!(got as f64, sign * mant * 2f64.powi(-24), "{h:#06x}"),
                e => assert_eq!(
                    got as f64,
                    sign * (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
                    "{h:#06x}"
                ),
            }
            assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}: sign");
        }
    }

    #[test]
    fn other_dtypes_are_not_converted() {
        assert!(to_f32(Dtype::I32, &[0; 4]).is_none());
        assert_eq!(to_f32(Dtype::BF16, &[0x80, 0x3f]).unwrap(), [1.0]);
        assert_eq!(to_f32(Dtype::F64, &2.5f64.to_le_bytes()).unwrap(), [2.5]);
    }
}
