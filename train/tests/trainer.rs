//! The trainer against the engine: every architecture learns on a tiny corpus, the
//! regularizer's gradient reaches θ and t, the regularizer equals the engine's plaintext
//! function, exported checkpoints give the engine the trainer's logits, and checkpoints resume
//! exactly.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use candle_core::Tensor;
use clap::Parser;
use privlm::entropy::{AttnShape, Reduction, RegularizerConfig};
use privlm::model::config::KNOWN_ARCHITECTURES;
use privlm::model::{Model, ModelConfig, TemperatureForm};
use privlm_train::corpus::{Corpus, eval_batches, train_batch};
use privlm_train::model::{FfnNorm, InitSpec, TrainModel, cross_entropy};
use privlm_train::optim::{AdamW, AdamWConfig};
use privlm_train::regularizer::entropy_regularizer;
use privlm_train::{Cli, train_on};

/// A small, repetitive Python-like text: learnable in a few dozen steps.
fn tiny_text(seed: u64) -> String {
    let mut s = String::new();
    for i in 0..400u64 {
        let k = (i * 7 + seed) % 13;
        s.push_str(&format!("def f{k}(x):\n    return x + {k}\n\n"));
    }
    s
}

fn tiny_corpus() -> Corpus {
    let tok = |s: String| s.bytes().map(u32::from).collect::<Vec<u32>>();
    Corpus::from_tokens(tok(tiny_text(0)), tok(tiny_text(5)), 256)
}

fn tiny_config(arch: &str) -> ModelConfig {
    let mut cfg = ModelConfig::gpt2_small(arch.parse().unwrap(), 16);
    (
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.d_ff,
        cfg.vocab_size,
    ) = (2, 2, 16, 32, 256);
    cfg
}

fn adamw(steps: u64, lr: f64) -> AdamWConfig {
    AdamWConfig {
        lr,
        min_lr: lr / 10.0,
        warmup: 2,
        total: steps,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
        clip: 1.0,
    }
}

fn tensors(b: &privlm_train::corpus::Batch, m: &TrainModel) -> (Tensor, Tensor) {
    (
        Tensor::from_vec(b.inputs.clone(), (b.batch, b.ctx), m.device()).unwrap(),
        Tensor::from_vec(b.targets.clone(), b.batch * b.ctx, m.device()).unwrap(),
    )
}

/// Trains `steps` steps (cross-entropy plus the regularizer for EReg) and returns the
/// held-out loss before and after.
fn train_steps(m: &mut TrainModel, corpus: &Corpus, steps: u64, lr: f64) -> (f64, f64) {
    let evals = eval_batches(&corpus.heldout, 8, 8, m.cfg.n_ctx);
    let eval = |m: &TrainModel| privlm_train::trainer::evaluate(m, &evals).unwrap();
    let before = eval(m);
    let mut opt = AdamW::new(adamw(steps, lr), &m.params).unwrap();
    let reg = RegularizerConfig {
        lambda: 1e-3,
        ..RegularizerConfig::default()
    };
    for step in 0..steps {
        m.power_iteration().unwrap();
        let b = train_batch(&corpus.train, 8, m.cfg.n_ctx, 3, step);
        let (x, y) = tensors(&b, m);
        let out = m.forward(&x).unwrap();
        let mut loss = cross_entropy(&out.logits, &y).unwrap();
        if m.cfg.architecture.entropy_regularized {
            let theta = m.param("reg.theta").unwrap().as_tensor();
            loss = (loss + entropy_regularizer(&reg, &out.attn, theta).unwrap().loss).unwrap();
        }
        let grads = loss.backward().unwrap();
        opt.step(&m.params, &grads, step).unwrap();
        m.project().unwrap();
    }
    (before, eval(m))
}

/// Every architecture (and the `[k]`, per-head temperature, weight- and spectral-norm
/// variants) with its option set.
fn variants() -> Vec<(String, FfnNorm, TemperatureForm)> {
    let mut v: Vec<(String, FfnNorm, TemperatureForm)> = KNOWN_ARCHITECTURES
        .iter()
        .map(|a| (a.to_string(), FfnNorm::None, TemperatureForm::PerHeadQuery))
        .collect();
    v.push((
        "EReg(SM(t)+ScFuFFN)".into(),
        FfnNorm::None,
        TemperatureForm::PerHeadQuery,
    ));
    v.push((
        "EReg(SM(t)+ScFuFFN)[1]".into(),
        FfnNorm::None,
        TemperatureForm::PerHead,
    ));
    v.push((
        "SM+ScFFN".into(),
        FfnNorm::Weight,
        TemperatureForm::PerHeadQuery,
    ));
    v.push((
        "SM+ScFuFFN".into(),
        FfnNorm::Spectral,
        TemperatureForm::PerHeadQuery,
    ));
    v.push((
        "SM+LN+G".into(),
        FfnNorm::Spectral,
        TemperatureForm::PerHeadQuery,
    ));
    v
}

#[test]
fn every_architecture_learns_and_exports_to_the_engine() {
    let corpus = tiny_corpus();
    for (arch, norm, tform) in variants() {
        let mut cfg = tiny_config(&arch);
        cfg.temperature_form = tform;
        let init = InitSpec {
            std: 0.1,
            ..InitSpec::default()
        };
        let mut m = TrainModel::new(&cfg, norm, init, 11).unwrap();
        let (before, after) = train_steps(&mut m, &corpus, 30, 1e-2);
        println!("{arch} {norm:?} {tform:?}: held-out loss {before:.4} -> {after:.4}");
        assert!(
            after < before - 0.3,
            "{arch} ({norm:?}): held-out loss {before:.4} -> {after:.4} did not decrease"
        );

        // The exported checkpoint gives the engine the trainer's logits.
        let dir = tmp(&format!("export-{}", sanitize(&arch)));
        privlm_train::export::export(&m, &dir).unwrap();
        let engine = Model::load(&dir).unwrap();
        assert_eq!(engine.config(), &cfg);
        let tokens: Vec<u32> = tiny_text(9).bytes().take(16).map(u32::from).collect();
        let x = Tensor::from_vec(tokens.clone(), (1, 16), m.device()).unwrap();
        let ours = m.forward(&x).unwrap().logits.flatten_all().unwrap();
        let ours = ours.to_vec1::<f32>().unwrap();
        let theirs = engine.forward(&tokens).unwrap().data;
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("  engine logits within {diff:.2e}");
        assert!(
            diff <= 1e-4,
            "{arch} ({norm:?}): engine logits differ by {diff}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A model whose attention is far from uniform (larger weights), for the regularizer tests.
fn peaked_model(arch: &str, tform: TemperatureForm) -> TrainModel {
    let mut cfg = tiny_config(arch);
    cfg.temperature_form = tform;
    let init = InitSpec {
        std: 0.5,
        temperature: 0.7,
        theta: 0.3,
        ..InitSpec::default()
    };
    TrainModel::new(&cfg, FfnNorm::None, init, 5).unwrap()
}

#[test]
fn regularizer_gradient_reaches_theta_and_temperatures() {
    for tform in [TemperatureForm::PerHeadQuery, TemperatureForm::PerHead] {
        let m = peaked_model("EReg(SM(t)+ScFuFFN)", tform);
        let corpus = tiny_corpus();
        let b = train_batch(&corpus.train, 4, 16, 1, 0);
        let (x, _) = tensors(&b, &m);
        let out = m.forward(&x).unwrap();
        let theta = m.param("reg.theta").unwrap().as_tensor();
        for reduction in [Reduction::QueryMean, Reduction::PerQuerySum] {
            let cfg = RegularizerConfig {
                lambda: 1.0,
                gamma: 0.05,
                reduction,
                context_len: None,
            };
            // The regularizer alone: its gradient must reach θ and every layer's t.
            let r = entropy_regularizer(&cfg, &out.attn, theta).unwrap();
            assert!(r.loss.to_scalar::<f32>().unwrap() > 0.0);
            let grads = r.loss.backward().unwrap();
            let nonzero = |name: &str| {
                let g = grads
                    .get(m.param(name).unwrap().as_tensor())
                    .unwrap_or_else(|| panic!("no gradient reaches {name}"));
                let v = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let n = v.iter().filter(|x| x.abs() > 0.0).count();
                assert!(
                    n > 0,
                    "{name}: gradient is all zero ({reduction:?}, {tform:?})"
                );
                n
            };
            nonzero("reg.theta");
            for l in 0..m.cfg.n_layer {
                let n = nonzero(&format!("h.{l}.attn.temperature"));
                println!("{tform:?} {reduction:?}: layer {l}: {n} temperatures get a gradient");
            }
        }
    }
}

#[test]
fn regularizer_equals_the_engine_function() {
    let m = peaked_model("EReg(SM(t)+ScFuFFN)", TemperatureForm::PerHeadQuery);
    let corpus = tiny_corpus();
    let b = train_batch(&corpus.train, 3, 16, 2, 0);
    let (x, _) = tensors(&b, &m);
    let out = m.forward(&x).unwrap();
    let theta_t = m.param("reg.theta").unwrap().as_tensor().clone();
    // Heterogeneous thresholds so that some heads are inside the band and some outside.
    let theta_vals: Vec<f32> = (0..4).map(|i| 0.15 + 0.2 * i as f32).collect();
    m.param("reg.theta")
        .unwrap()
        .set(&Tensor::from_vec(theta_vals.clone(), (2, 2), m.device()).unwrap())
        .unwrap();
    let theta64: Vec<f64> = theta_vals.iter().map(|&v| f64::from(v)).collect();
    let attn: Vec<Vec<f32>> = out
        .attn
        .iter()
        .map(|a| a.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let shape = AttnShape {
        batch: 3,
        heads: 2,
        t: 16,
    };
    for reduction in [Reduction::QueryMean, Reduction::PerQuerySum] {
        for (lambda, gamma) in [(1.0, 0.2), (1e-5, 0.2), (1.0, 0.0), (1.0, 0.35)] {
            let cfg = RegularizerConfig {
                lambda,
                gamma,
                reduction,
                context_len: None,
            };
            let theta = m.param("reg.theta").unwrap().as_tensor();
            let ours = entropy_regularizer(&cfg, &out.attn, theta).unwrap();
            let engine =
                privlm::entropy::entropy_regularizer(&cfg, &attn, shape, &theta64, false).unwrap();
            let v = f64::from(ours.loss.to_scalar::<f32>().unwrap());
            let tol = 1e-5 * engine.loss.abs().max(lambda);
            println!(
                "{reduction:?} lambda {lambda} gamma {gamma}: trainer {v:.9e}, engine {:.9e}",
                engine.loss
            );
            assert!(
                (v - engine.loss).abs() <= tol,
                "{reduction:?} λ={lambda} γ={gamma}: trainer {v} vs engine {}",
                engine.loss
            );
            let ents = ours
                .head_entropy
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (a, b) in ents.iter().zip(&engine.head_entropy) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "head entropy {a} vs {b}");
            }
            // The same θ gradient as the engine's analytic one.
            let grads = ours.loss.backward().unwrap();
            let g = grads.get(theta).unwrap().flatten_all().unwrap();
            for (a, b) in g.to_vec1::<f32>().unwrap().iter().zip(&engine.grad_theta) {
                let tol = 1e-4 * b.abs().max(lambda);
                assert!((f64::from(*a) - b).abs() <= tol, "grad θ {a} vs {b}");
            }
        }
    }
    drop(theta_t);
}

fn cli(args: &[&str]) -> privlm_train::TrainOptions {
    let mut v = vec!["privlm-train"];
    v.extend_from_slice(args);
    Cli::try_parse_from(v).unwrap().opts
}

#[test]
fn resume_continues_exactly_where_it_stopped() {
    let corpus = tiny_corpus();
    let base = [
        "--corpus",
        "unused",
        "--arch",
        "EReg(SM(t)+ScFuFFN)",
        "--layers",
        "2",
        "--heads",
        "2",
        "--d-model",
        "16",
        "--ctx",
        "16",
        "--batch",
        "4",
        "--steps",
        "12",
        "--lr",
        "5e-3",
        "--log-every",
        "2",
        "--eval-every",
        "4",
        "--eval-windows",
        "4",
        "--save-every",
        "4",
        "--report-windows",
        "2",
        "--quiet",
        "--lambda",
        "1e-3",
    ];
    let full_dir = tmp("resume-full");
    let mut args = base.to_vec();
    let full_s = full_dir.to_str().unwrap().to_string();
    args.extend(["--out", &full_s]);
    let never = AtomicBool::new(false);
    let full = train_on(&cli(&args), &corpus, &never).unwrap();
    assert_eq!(full.steps, 12);
    assert!(!full.interrupted);
    assert!(full.export_max_logit_diff <= 1e-4);
    for f in [
        "metrics.csv",
        "eval.csv",
        "entropy_heads.csv",
        "entropy_curves.png",
        "loss.png",
        "theta.csv",
        "summary.json",
        "sample.txt",
        "entropy/heatmap.png",
        "model/config.json",
        "model/model.safetensors",
    ] {
        assert!(full_dir.join(f).is_file(), "missing {f}");
    }

    // Stop after 5 steps (as Ctrl-C would), then resume to the end.
    let part_dir = tmp("resume-part");
    let part_s = part_dir.to_str().unwrap().to_string();
    let mut args = base.to_vec();
    args.extend(["--out", &part_s, "--session-steps", "5"]);
    let first = train_on(&cli(&args), &corpus, &never).unwrap();
    assert!(first.interrupted && first.steps == 5);
    // Without --resume an existing checkpoint is refused.
    let mut args = base.to_vec();
    args.extend(["--out", &part_s]);
    let e = train_on(&cli(&args), &corpus, &never).unwrap_err();
    assert!(format!("{e:#}").contains("--resume"), "{e:#}");
    args.push("--resume");
    let second = train_on(&cli(&args), &corpus, &never).unwrap();
    assert_eq!(second.steps, 12);

    let a = std::fs::read(full_dir.join("model/model.safetensors")).unwrap();
    let b = std::fs::read(part_dir.join("model/model.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed run's weights differ from the uninterrupted run's"
    );
    let rows = |d: &PathBuf| {
        std::fs::read_to_string(d.join("metrics.csv"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(
        rows(&full_dir),
        rows(&part_dir),
        "metrics.csv rows after resume"
    );
    std::fs::remove_dir_all(&full_dir).unwrap();
    std::fs::remove_dir_all(&part_dir).unwrap();
}

#[test]
fn corpus_directory_end_to_end_and_ctrl_c() {
    // A directory of files through the binary; SIGINT saves and exports before exiting.
    let dir = tmp("corpus");
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    for i in 0..12 {
        std::fs::write(dir.join(format!("pkg/m{i}.py")), tiny_text(i)).unwrap();
    }
    let out = tmp("ctrlc-out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_privlm-train"))
        .args([
            "--corpus",
            dir.to_str().unwrap(),
            "--arch",
            "SM+ScFuFFN",
            "--layers",
            "1",
        ])
        .args([
            "--heads",
            "2",
            "--d-model",
            "16",
            "--ctx",
            "16",
            "--batch",
            "2",
        ])
        .args([
            "--steps",
            "1000000",
            "--log-every",
            "1",
            "--eval-every",
            "1000",
        ])
        .args([
            "--heldout-fraction",
            "0.3",
            "--report-windows",
            "2",
            "--quiet",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !out.join("metrics.csv").exists() {
        assert!(t0.elapsed().as_secs() < 120, "the trainer did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status after SIGINT");
    assert!(out.join("checkpoint/state.safetensors").is_file());
    let engine = Model::load(&out.join("model")).unwrap();
    assert_eq!(engine.config().architecture.name(), "SM+ScFuFFN");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["interrupted"], true);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bad_options_are_refused_with_the_reason() {
    let corpus = tiny_corpus();
    let never = AtomicBool::new(false);
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    for (arch, d_model, ctx, steps, want) in [
        ("SM+Tanh", "16", "16", "5", "SM+Tanh"),
        ("SM+ScFuFFN", "15", "16", "5", "d_model"),
        ("SM+ScFuFFN", "16", "20000", "5", "window"),
        ("SM+ScFuFFN", "16", "16", "0", "--steps"),
    ] {
        let a = [
            "--corpus",
            "x",
            "--out",
            o,
            "--layers",
            "1",
            "--heads",
            "2",
            "--quiet",
            "--arch",
            arch,
            "--d-model",
            d_model,
            "--ctx",
            ctx,
            "--steps",
            steps,
        ];
        let e = train_on(&cli(&a), &corpus, &never).unwrap_err();
        assert!(
            format!("{e:#}").contains(want),
            "{e:#} should mention {want}"
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
