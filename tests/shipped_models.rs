//! The trained models shipped in `models/` (made by `privlm train`, see models/README.md):
//! each loads, stays under 5 MB, continues Python code with code-like text (sampled), and the
//! fixed-point mirror (`FixedModel`, what the secure engine computes) reproduces the f32
//! model's greedy tokens.

use std::path::{Path, PathBuf};

use privlm::model::tokenizer::TokenizerKind;
use privlm::model::{Model, Sampling};

/// The shipped models and their architectures.
const SHIPPED: &[(&str, &str)] = &[
    ("sm_ln_g", "SM+LN+G"),
    ("sm_scfuffn", "SM+ScFuFFN"),
    ("ereg_sm_t_scfuffn", "EReg(SM(t)+ScFuFFN)"),
    ("sm", "SM"),
];

const PROMPT: &str =
    "import os\n\n\ndef read_lines(path):\n    with open(path) as f:\n        return f.";

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

#[test]
fn shipped_models_load_and_are_small() {
    for &(name, arch) in SHIPPED {
        let d = dir(name);
        let size: u64 = ["config.json", "model.safetensors"]
            .iter()
            .map(|f| std::fs::metadata(d.join(f)).unwrap().len())
            .sum();
        assert!(size < 5 << 20, "{name}: {size} bytes, over 5 MB");
        let m = Model::load(&d).unwrap();
        let c = m.config();
        assert_eq!(c.architecture.name(), arch, "{name}");
        assert_eq!((c.vocab_size, c.n_ctx), (256, 128), "{name}");
    }
}

#[test]
fn shipped_models_write_code() {
    let tok = TokenizerKind::Byte.build();
    let prompt = tok.encode(PROMPT);
    for &(name, _) in SHIPPED {
        let m = Model::load(&dir(name)).unwrap();
        let n = 48;
        let sampling = Sampling::TopK {
            temperature: 0.8,
            k: 40,
        };
        let out = m.generate(&prompt, n, sampling, 1).unwrap();
        let text = tok.decode_lossy(&out).unwrap();
        println!("{name} (top-40, temperature 0.8, seed 1):\n{PROMPT}{text}\n---");
        // Code-like: printable ASCII with newlines, several distinct bytes, some letters.
        let printable = out
            .iter()
            .filter(|&&t| t == 10 || (32..127).contains(&t))
            .count();
        assert!(printable * 10 >= n * 9, "{name}: {text:?} is not text");
        let distinct: std::collections::BTreeSet<u32> = out.iter().copied().collect();
        assert!(
            distinct.len() >= 8,
            "{name}: {text:?} has too few distinct bytes"
        );
        let letters = text.chars().filter(char::is_ascii_alphabetic).count();
        assert!(letters * 8 >= n, "{name}: {text:?} has few letters");
        let words = text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| w.len() >= 3)
            .count();
        assert!(words >= 2, "{name}: {text:?} has no identifier-like words");
    }
}

/// Logit error the mirror may make (docs/model.md: the mirror's logits are within 2.8e-2 of
/// the f32 logits on the GPT-2 fixture, test bound 0.05); a greedy decision whose top-two
/// margin is below twice that is a near-tie the mirror may legitimately break the other way.
const NEAR_TIE: f32 = 0.1;

#[test]
fn fixed_point_mirror_reproduces_greedy_tokens() {
    let tok = TokenizerKind::Byte.build();
    let prompts = [PROMPT, "class Parser:\n    def parse(self, text):\n"];
    for &(name, _) in SHIPPED {
        let m = Model::load(&dir(name)).unwrap();
        let fixed = m.to_fixed();
        for p in prompts {
            let prompt = tok.encode(p);
            let n = 32;
            let plain = m.generate(&prompt, n, Sampling::Greedy, 0).unwrap();
            let mirror = fixed.generate(&prompt, n, Sampling::Greedy, 0).unwrap();
            // Margins of the f32 decisions: top-1 minus top-2 logit at each generated position.
            let mut seq = prompt.clone();
            seq.extend(&plain);
            let logits = m.forward(&seq[..seq.len() - 1]).unwrap();
            let margin = |k: usize| {
                let mut row = logits.row(prompt.len() - 1 + k).to_vec();
                row.sort_by(|a, b| b.total_cmp(a));
                row[0] - row[1]
            };
            let agree = plain
                .iter()
                .zip(&mirror)
                .take_while(|(a, b)| a == b)
                .count();
            println!(
                "{name}: greedy {:?}; mirror agrees on {agree}/{n} tokens",
                tok.decode_lossy(&plain).unwrap()
            );
            if agree < n {
                assert!(
                    margin(agree) < NEAR_TIE,
                    "{name}: the mirror's greedy token {agree} differs ({} vs {}) where the f32 \
                     margin is {} (not a near-tie)",
                    mirror[agree],
                    plain[agree],
                    margin(agree)
                );
                println!(
                    "  (token {agree} is a near-tie: f32 margin {:.4})",
                    margin(agree)
                );
            }
        }
    }
}
