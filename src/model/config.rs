//! Model configuration: the architecture variant and the shapes.
//!
//! The architecture names are those of the nonlinearity-ablation table of Jha & Reagen,
//! "Entropy-Guided Attention for Private LLMs" (2025), Table 1, and of AERO (Jha & Reagen,
//! 2024): `SM+LN+G` (GPT-2), `SM+LN+R`, `SM+LN`, `SM+G`, `SM+R`, `SM`, `SM+ScFFN`,
//! `SM+ScFuFFN` and `SM(t)+ScFuFFN`, optionally wrapped as `EReg(...)` (same inference graph,
//! trained with the entropy regularizer) and suffixed `[k]` (FFN kept only in the first k
//! layers). The configuration is public: it goes into the handshake's model manifest.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// The activation of the feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU, tanh form (GPT-2's `gelu_new`).
    Gelu,
    /// ReLU.
    Relu,
    /// No activation: the FFN is linear.
    Identity,
}

/// The shape of the feed-forward sub-block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FfnKind {
    /// `x + FFN(x)` with `FFN = act(x W_fc + b) W_proj + b`, d -> d_ff -> d.
    Standard,
    /// Scaled FFN: `beta * h + (1/alpha) * FFN(h)`, two linear layers d -> d_ff -> d.
    Scaled,
    /// Scaled and fused: `beta * h + (1/alpha) * (h W)` with one d x d matrix.
    ScaledFused,
}

/// Where the learnable softmax temperature of `SM(t)` lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureForm {
    /// One temperature per head and per query position (`t` in R^{H x T}, the paper's form).
    #[default]
    PerHeadQuery,
    /// One temperature per head (the authors' development trainer).
    PerHead,
}

/// A parsed architecture name: which nonlinearities and which FFN form a block has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Architecture {
    /// Pre-LN LayerNorms inside each block (`+LN`).
    pub block_layer_norm: bool,
    /// The FFN activation.
    pub activation: Activation,
    /// The FFN form.
    pub ffn: FfnKind,
    /// Learnable softmax temperature (`SM(t)`).
    pub temperature: bool,
    /// Trained with the entropy regularizer (`EReg(...)`); the inference graph is the same.
    pub entropy_regularized: bool,
    /// FFN kept only in the first `k` layers (`[k]` suffix); `None` keeps all.
    pub ffn_layers: Option<usize>,
}

/// The core names (without `EReg(...)`, `[k]` and `(t)`), with their meaning.
const CORES: &[(&str, bool, Activation, FfnKind)] = &[
    ("+LN+G", true, Activation::Gelu, FfnKind::Standard),
    ("+LN+R", true, Activation::Relu, FfnKind::Standard),
    ("+LN", true, Activation::Identity, FfnKind::Standard),
    ("+G", false, Activation::Gelu, FfnKind::Standard),
    ("+R", false, Activation::Relu, FfnKind::Standard),
    ("", false, Activation::Identity, FfnKind::Standard),
    ("+ScFFN", false, Activation::Identity, FfnKind::Scaled),
    (
        "+ScFuFFN",
        false,
        Activation::Identity,
        FfnKind::ScaledFused,
    ),
];

/// Every architecture name privlm knows (without the `EReg(...)` and `[k]` decorations,
/// which apply to each).
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "SM+LN+G",
    "SM+LN+R",
    "SM+LN",
    "SM+G",
    "SM+R",
    "SM",
    "SM+ScFFN",
    "SM+ScFuFFN",
    "SM(t)+ScFuFFN",
];

impl Architecture {
    /// GPT-2's architecture, `SM+LN+G`.
    pub fn gpt2() -> Self {
        Architecture {
            block_layer_norm: true,
            activation: Activation::Gelu,
            ffn: FfnKind::Standard,
            temperature: false,
            entropy_regularized: false,
            ffn_layers: None,
        }
    }

    /// Whether layer `layer` has an FFN sub-block.
    pub fn has_ffn(&self, layer: usize) -> bool {
        self.ffn_layers.is_none_or(|k| layer < k)
    }

    /// The canonical name, e.g. `EReg(SM(t)+ScFuFFN)[6]`.
    pub fn name(&self) -> String {
        let core = CORES
            .iter()
            .find(|(_, ln, act, ffn)| {
                *ln == self.block_layer_norm && *act == self.activation && *ffn == self.ffn
            })
            .map(|c| c.0)
            .unwrap_or("?");
        let sm = if self.temperature { "SM(t)" } else { "SM" };
        let mut s = format!("{sm}{core}");
        if self.entropy_regularized {
            s = format!("EReg({s})");
        }
        if let Some(k) = self.ffn_layers {
            s.push_str(&format!("[{k}]"));
        }
        s
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Architecture {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self, ModelError> {
        let unknown = || ModelError::UnknownArchitecture {
            field: "architecture",
            name: name.to_string(),
            known: KNOWN_ARCHITECTURES.join(", "),
        };
        let mut s = name.trim();
        let mut ffn_layers = None;
        if let Some(stripped) = s.strip_suffix(']') {
            let open = stripped.rfind('[').ok_or_else(unknown)?;
            let k: usize = stripped[open + 1..].parse().map_err(|_| unknown())?;
            ffn_layers = Some(k);
            s = &stripped[..open];
        }
        let mut entropy_regularized = false;
        if let Some(inner) = s.strip_prefix("EReg(").and_then(|r| r.strip_suffix(')')) {
            entropy_regularized = true;
            s = inner;
        }
        let (temperature, rest) = if let Some(r) = s.strip_prefix("SM(t)") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("SM") {
            (false, r)
        } else {
            return Err(unknown());
        };
        let &(_, block_layer_norm, activation, ffn) =
            CORES.iter().find(|c| c.0 == rest).ok_or_else(unknown)?;
        Ok(Architecture {
            block_layer_norm,
            activation,
            ffn,
            temperature,
            entropy_regularized,
            ffn_layers,
        })
    }
}

impl Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Architecture {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn default_eps() -> f32 {
    1e-5
}

fn default_true() -> bool {
    true
}

/// The public description of a model: architecture and shapes (privlm's `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The architecture name, e.g. `"SM+LN+G"` or `"SM(t)+ScFuFFN[6]"`.
    pub architecture: Architecture,
    /// Number of transformer blocks L.
    pub n_layer: usize,
    /// Number of attention heads H.
    pub n_head: usize,
    /// Model width d (a multiple of `n_head`).
    pub d_model: usize,
    /// Hidden width of an unfused FFN (GPT-2: 4d). Ignored by the fused FFN.
    pub d_ff: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length: the maximum number of positions.
    pub n_ctx: usize,
    /// Whether a final LayerNorm (`ln_f`) precedes the LM head.
    #[serde(default = "default_true")]
    pub final_layer_norm: bool,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    /// Form of the softmax temperature (used only by `SM(t)` architectures).
    #[serde(default)]
    pub temperature_form: TemperatureForm,
}

impl ModelConfig {
    /// GPT-2 small's shape (L=12, H=12, d=768, d_ff=3072, vocabulary 50257) with context `n_ctx`
    /// and the given architecture.
    pub fn gpt2_small(architecture: Architecture, n_ctx: usize) -> Self {
        ModelConfig {
            architecture,
            n_layer: 12,
            n_head: 12,
            d_model: 768,
            d_ff: 3072,
            vocab_size: 50257,
            n_ctx,
            final_layer_norm: true,
            layer_norm_eps: 1e-5,
            temperature_form: TemperatureForm::PerHeadQuery,
        }
    }

    /// The head dimension d / H.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head.max(1)
    }

    /// Checks the shapes for consistency; errors name the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, msg: String| Err(ModelError::BadConfig { field, msg });
        for (field, v) in [
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("d_model", self.d_model),
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if !self.d_model.is_multiple_of(self.n_head) {
            return bad(
                "d_model",
                format!(
                    "{} is not a multiple of n_head = {}",
                    self.d_model, self.n_head
                ),
            );
        }
        if self.architecture.ffn != FfnKind::ScaledFused && self.d_ff == 0 {
            return bad("d_ff", "must be positive for an unfused FFN".into());
        }
        if let Some(k) = self.architecture.ffn_layers
            && k > self.n_layer
        {
            return bad(
                "architecture",
                format!(
                    "keeps the FFN in the first {k} layers but n_layer is {}",
                    self.n_layer
                ),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad("layer_norm_eps", "must be finite and positive".into());
        }
        Ok(())
    }

    /// Parses privlm's `config.json`; errors name the offending field.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let cfg: ModelConfig =
            serde_json::from_str(text).map_err(|e| ModelError::ConfigJson(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// privlm's `config.json` text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for base in KNOWN_ARCHITECTURES {
            for name in [
                base.to_string(),
                format!("EReg({base})"),
                format!("{base}[6]"),
                format!("EReg({base})[3]"),
            ] {
                let a: Architecture = name.parse().unwrap();
                assert_eq!(a.name(), name);
            }
        }
        let a: Architecture = "SM(t)+ScFuFFN[6]".parse().unwrap();
        assert!(a.temperature && a.ffn == FfnKind::ScaledFused && a.ffn_layers == Some(6));
        assert!(a.has_ffn(5) && !a.has_ffn(6));
        assert_eq!(
            "SM+LN+G".parse::<Architecture>().unwrap(),
            Architecture::gpt2()
        );
    }

    #[test]
    fn unknown_architecture_names_field() {
        for bad in ["SM+LN+X", "GPT", "SM+ScFuFFN[x]", "EReg(SM+G", ""] {
            let e = bad.parse::<Architecture>().unwrap_err().to_string();
            assert!(e.contains("architecture"), "{e}");
        }
        let mut cfg = ModelConfig::gpt2_small(Architecture::gpt2(), 128);
        cfg.n_layer = 2;
        let json = cfg.to_json().replace("SM+LN+G", "SM+Tanh");
        let e = ModelConfig::from_json(&json).unwrap_err().to_string();
        assert!(e.contains("architecture") && e.contains("SM+Tanh"), "{e}");
        let json = cfg.to_json().replace("\"n_head\"", "\"n_heads\"");
        let e = ModelConfig::from_json(&json).unwrap_err().to_string();
        assert!(e.contains("n_heads"), "{e}");
    }

    #[test]
    fn config_json_round_trip() {
        let cfg = ModelConfig::gpt2_small("SM(t)+ScFuFFN".parse().unwrap(), 128);
        assert_eq!(ModelConfig::from_json(&cfg.to_json()).unwrap(), cfg);
    }
}
