//! Export to privlm's checkpoint format (`config.json` + `model.safetensors`, docs/model.md),
//! folded: weight and spectral normalization become plain `.weight`s, `1/α` is multiplied into
//! the FFN's last linear layer (weight and bias), `β` and the temperatures are written as
//! they are, and the training-only thresholds θ are left out. `privlm::model::Model::load`
//! and `privlm entropy --model` read the result.

use std::path::Path;

use anyhow::Context;
use candle_core::Tensor;
use privlm::model::checkpoint::{CONFIG_FILE, WEIGHTS_FILE, write_safetensors};
use privlm::model::{FfnKind, ModelConfig};

use crate::model::TrainModel;

fn host(t: &Tensor) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
}

/// A named f32 tensor: name, shape, row-major values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The folded tensors of `m` under privlm's names.
pub fn folded_tensors(m: &TrainModel) -> anyhow::Result<Vec<NamedTensor>> {
    let cfg: &ModelConfig = &m.cfg;
    let arch = cfg.architecture;
    let mut out = Vec::new();
    let mut push = |name: String, t: &Tensor| -> anyhow::Result<()> {
        let (shape, data) = host(t)?;
        out.push((name, shape, data));
        Ok(())
    };
    let param = |name: &str| -> anyhow::Result<Tensor> {
        Ok(m.param(name)
            .with_context(|| format!("no parameter {name}"))?
            .as_tensor()
            .clone())
    };
    let opt_param = |name: &str| m.param(name).map(|v| v.as_tensor().clone());
    push("wte.weight".into(), &param("wte.weight")?)?;
    push("wpe.weight".into(), &param("wpe.weight")?)?;
    for l in 0..cfg.n_layer {
        let p = format!("h.{l}");
        for part in ["ln_1", "ln_2"] {
            for wb in ["weight", "bias"] {
                let name = format!("{p}.{part}.{wb}");
                if m.param(&name).is_some() {
                    push(name.clone(), &param(&name)?)?;
                }
            }
        }
        for lin in ["attn.c_attn", "attn.c_proj"] {
            push(
                format!("{p}.{lin}.weight"),
                &m.weight(&format!("{p}.{lin}"))?,
            )?;
            if let Some(b) = opt_param(&format!("{p}.{lin}.bias")) {
                push(format!("{p}.{lin}.bias"), &b)?;
            }
        }
        if arch.temperature {
            let name = format!("{p}.attn.temperature");
            push(name.clone(), &param(&name)?)?;
        }
        if !arch.has_ffn(l) {
            continue;
        }
        let scaled = matches!(arch.ffn, FfnKind::Scaled | FfnKind::ScaledFused);
        let inv_alpha = if scaled {
            1.0 / f64::from(
                param(&format!("{p}.ffn_alpha"))?
                    .flatten_all()?
                    .to_vec1::<f32>()?[0],
            )
        } else {
            1.0
        };
        let (first, last) = if arch.ffn == FfnKind::ScaledFused {
            (None, "mlp.c_fused")
        } else {
            (Some("mlp.c_fc"), "mlp.c_proj")
        };
        if let Some(first) = first {
            push(
                format!("{p}.{first}.weight"),
                &m.weight(&format!("{p}.{first}"))?,
            )?;
            if let Some(b) = opt_param(&format!("{p}.{first}.bias")) {
                push(format!("{p}.{first}.bias"), &b)?;
            }
        }
        let w = (m.weight(&format!("{p}.{last}"))? * inv_alpha)?;
        push(format!("{p}.{last}.weight"), &w)?;
        if let Some(b) = opt_param(&format!("{p}.{last}.bias")) {
            push(format!("{p}.{last}.bias"), &(b * inv_alpha)?)?;
        }
        if scaled {
            push(format!("{p}.ffn_beta"), &param(&format!("{p}.ffn_beta"))?)?;
        }
    }
    if cfg.final_layer_norm {
        push("ln_f.weight".into(), &param("ln_f.weight")?)?;
        push("ln_f.bias".into(), &param("ln_f.bias")?)?;
    }
    Ok(out)
}

/// Writes `m` to `dir` in privlm's format (creating the directory).
pub fn export(m: &TrainModel, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensors = folded_tensors(m)?;
    write_safetensors(&dir.join(WEIGHTS_FILE), &tensors)?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, m.cfg.to_json())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
