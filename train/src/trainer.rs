//! The training loop: options, checkpoints and `--resume`, interruption, logging, and the
//! end-of-run export and analysis.
//!
//! Layout of the output directory `--out DIR`:
//!
//! | path | what |
//! |---|---|
//! | `checkpoint/state.safetensors`, `checkpoint/state.json` | parameters, buffers, AdamW moments; step, elapsed time, options |
//! | `model/` | the exported privlm checkpoint (`config.json` + `model.safetensors`) |
//! | `metrics.csv` | every `--log-every` steps: lr, train loss and perplexity, regularizer, gradient norm, tokens/s, attention NaNs, per-layer mean entropy |
//! | `entropy_heads.csv` | every `--log-every` steps: step, layer, head, entropy (nats) |
//! | `eval.csv` | every `--eval-every` steps: held-out loss and perplexity |
//! | `entropy_curves.png` | layerwise mean entropy against step (EGA Fig. 5) |
//! | `loss.png` | train and held-out loss against step |
//! | `entropy/` | the final model's `privlm entropy` report on held-out text: `heatmap.png`, `entropy.json`, `entropy.csv` |
//! | `theta.csv` | learned thresholds θ (EReg models; EGA Fig. 6) |
//! | `summary.json` | the run's figures: steps, tokens, wall time, tokens/s, final losses, histogram, flags |
//! | `sample.txt` | a greedy continuation of a held-out prompt by the exported model |

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use privlm::entropy::{EntropyAccumulator, Reduction, RegularizerConfig, report, table};
use privlm::model::tokenizer::TokenizerKind;
use privlm::model::{Architecture, Model, ModelConfig, Sampling, TemperatureForm};
use serde::{Deserialize, Serialize};

use crate::corpus::{Batch, Corpus, CorpusSpec, eval_batches, train_batch};
use crate::model::{FfnNorm, InitSpec, TrainModel, cross_entropy};
use crate::monitor::{Series, append_csv, line_chart, read_csv, truncate_csv_after};
use crate::optim::{AdamW, AdamWConfig};
use crate::regularizer::{entropy_regularizer, query_entropy};

/// Reduction of the entropy regularizer (see `privlm::entropy::Reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum RegReduction {
    /// EGA Algorithm 1: the penalty on the batch- and query-mean head entropy.
    QueryMean,
    /// The authors' released code: the penalty per (sequence, query), summed.
    PerQuerySum,
}

/// Shape of the learnable temperature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum TempForm {
    /// One temperature per head and query position (`t ∈ R^{H×T}`, the paper's form).
    PerHeadQuery,
    /// One temperature per head (the authors' development trainer).
    PerHead,
}

/// Tokenizer choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum TokChoice {
    /// One token per byte (vocabulary 256).
    Byte,
    /// GPT-2's byte-level BPE (vocabulary 50257; the embedding alone is 50257 × d).
    Gpt2,
}

/// Every option of a training run (the command line of `privlm-train`).
#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Directory of text files (searched recursively). The Python standard library is a good
    /// default: `python3 -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])"`.
    #[arg(long, value_name = "DIR")]
    pub corpus: PathBuf,
    /// File extension to train on, without the dot ("" = every file).
    #[arg(long, default_value = "py")]
    pub ext: String,
    /// Directory names skipped anywhere in the corpus (repeat for several).
    #[arg(long, value_name = "NAME", default_values_t = ["site-packages".to_string(), "__pycache__".to_string()])]
    pub exclude: Vec<String>,
    /// Fraction of files held out for evaluation (split by file, seeded).
    #[arg(long, default_value_t = 0.05)]
    pub heldout_fraction: f64,
    /// Read at most this many bytes of the corpus (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_bytes: u64,
    /// Tokenizer.
    #[arg(long, value_enum, default_value_t = TokChoice::Byte)]
    pub tokenizer: TokChoice,

    /// Architecture (docs/model.md): SM+LN+G, SM+LN+R, SM+LN, SM+G, SM+R, SM, SM+ScFFN,
    /// SM+ScFuFFN, SM(t)+ScFuFFN; EReg(...) trains with the entropy regularizer; a suffix [k]
    /// keeps the FFN in the first k layers only.
    #[arg(long, default_value = "EReg(SM(t)+ScFuFFN)")]
    pub arch: String,
    /// Number of layers L.
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    /// Attention heads H.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Model width d.
    #[arg(long, default_value_t = 128)]
    pub d_model: usize,
    /// Hidden width of an unfused FFN [default: 4 d].
    #[arg(long)]
    pub d_ff: Option<usize>,
    /// Context length T (training window).
    #[arg(long, default_value_t = 128)]
    pub ctx: usize,
    /// No final LayerNorm before the LM head.
    #[arg(long)]
    pub no_final_ln: bool,
    /// Shape of the SM(t) temperature.
    #[arg(long, value_enum, default_value_t = TempForm::PerHeadQuery)]
    pub temperature_form: TempForm,
    /// Normalization of the FFN's linear layers (folded into plain weights at export).
    #[arg(long, value_enum, default_value_t = FfnNorm::None)]
    pub ffn_norm: FfnNorm,

    /// Initial softmax temperature t (the paper states 1e-2 for CodeParrot; see docs/training.md).
    #[arg(long, default_value_t = 1.0)]
    pub t_init: f64,
    /// Initial threshold θ, as a fraction of E_max = log T (not stated by the paper).
    #[arg(long, default_value_t = 0.5)]
    pub theta_init: f64,
    /// Initial α of the scaled FFN (not stated by the paper).
    #[arg(long, default_value_t = 1.0)]
    pub alpha_init: f64,
    /// Initial β of the scaled FFN (not stated by the paper).
    #[arg(long, default_value_t = 1.0)]
    pub beta_init: f64,
    /// Standard deviation of the weight initialisation.
    #[arg(long, default_value_t = 0.02)]
    pub init_std: f64,

    /// Regularizer coefficient λ (EReg architectures only).
    #[arg(long, default_value_t = 1e-5)]
    pub lambda: f64,
    /// Tolerance margin factor γ: no penalty within γ·log T of θ·log T.
    #[arg(long, default_value_t = 0.2)]
    pub gamma: f64,
    /// Regularizer reduction: the released code's per-query sum (λ = 1e-5 was tuned for it)
    /// or Algorithm 1's query mean.
    #[arg(long, value_enum, default_value_t = RegReduction::PerQuerySum)]
    pub reg_reduction: RegReduction,

    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Final learning rate of the cosine decay [default: lr / 10].
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Warmup steps [default: 5% of --steps].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// AdamW decoupled weight decay (matrices only).
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Clip the global gradient norm (0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// AdamW β1.
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    /// AdamW β2.
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    /// Seed of initialisation, split and batches.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,

    /// Output directory (checkpoints, logs, exported model, plots).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue from DIR/checkpoint (same architecture and shape).
    #[arg(long)]
    pub resume: bool,
    /// Log metrics and entropies every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Evaluate on held-out text every N steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Held-out windows per evaluation.
    #[arg(long, default_value_t = 64)]
    pub eval_windows: usize,
    /// Save a checkpoint every N steps.
    #[arg(long, default_value_t = 200)]
    pub save_every: u64,
    /// Held-out windows for the final entropy report.
    #[arg(long, default_value_t = 32)]
    pub report_windows: usize,
    /// Stop after this many steps in this session, as Ctrl-C would (checkpoint, export, exit
    /// status 130); continue later with --resume. For sharing a machine in slices.
    #[arg(long, value_name = "N")]
    pub session_steps: Option<u64>,
    /// No progress bar (plain log lines only).
    #[arg(long)]
    pub quiet: bool,
}

impl TrainOptions {
    /// The model configuration the options describe.
    pub fn model_config(&self, vocab_size: usize) -> anyhow::Result<ModelConfig> {
        let architecture: Architecture = self
            .arch
            .parse()
            .with_context(|| format!("--arch {:?}", self.arch))?;
        let cfg = ModelConfig {
            architecture,
            n_layer: self.layers,
            n_head: self.heads,
            d_model: self.d_model,
            d_ff: self.d_ff.unwrap_or(4 * self.d_model),
            vocab_size,
            n_ctx: self.ctx,
            final_layer_norm: !self.no_final_ln,
            layer_norm_eps: 1e-5,
            temperature_form: match self.temperature_form {
                TempForm::PerHeadQuery => TemperatureForm::PerHeadQuery,
                TempForm::PerHead => TemperatureForm::PerHead,
            },
        };
        cfg.validate().context("the model shape is invalid")?;
        Ok(cfg)
    }

    /// The regularizer's configuration.
    pub fn regularizer(&self) -> RegularizerConfig {
        RegularizerConfig {
            lambda: self.lambda,
            gamma: self.gamma,
            reduction: match self.reg_reduction {
                RegReduction::QueryMean => Reduction::QueryMean,
                RegReduction::PerQuerySum => Reduction::PerQuerySum,
            },
            context_len: Some(self.ctx),
        }
    }

    /// The optimizer's configuration.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            lr: self.lr,
            min_lr: self.min_lr.unwrap_or(self.lr / 10.0),
            warmup: self
                .warmup
                .unwrap_or_else(|| (self.steps / 20).max(1))
                .max(1),
            total: self.steps,
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: 1e-8,
            weight_decay: self.weight_decay,
            clip: self.clip,
        }
    }

    fn init(&self) -> InitSpec {
        InitSpec {
            temperature: self.t_init,
            theta: self.theta_init,
            alpha: self.alpha_init,
            beta: self.beta_init,
            std: self.init_std,
        }
    }

    fn tokenizer_kind(&self) -> TokenizerKind {
        match self.tokenizer {
            TokChoice::Byte => TokenizerKind::Byte,
            TokChoice::Gpt2 => TokenizerKind::Gpt2,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        ensure!(self.steps > 0, "--steps must be positive");
        ensure!(self.batch > 0, "--batch must be positive");
        ensure!(self.ctx > 1, "--ctx must be at least 2");
        ensure!(
            self.heldout_fraction > 0.0 && self.heldout_fraction < 1.0,
            "--heldout-fraction must be in (0, 1)"
        );
        ensure!(self.t_init > 0.0, "--t-init must be positive");
        ensure!(self.alpha_init > 0.0, "--alpha-init must be positive");
        ensure!(
            self.log_every > 0 && self.eval_every > 0 && self.save_every > 0,
            "--log-every, --eval-every and --save-every must be positive"
        );
        Ok(())
    }
}

/// What `state.json` holds.
#[derive(Serialize, Deserialize)]
struct SavedState {
    /// Optimizer steps completed.
    step: u64,
    /// AdamW's step counter.
    opt_t: u64,
    /// Training wall time so far (seconds, over all sessions).
    elapsed_s: f64,
    /// The exported configuration.
    config: ModelConfig,
    /// The options of the run that saved it.
    options: TrainOptions,
}

/// The figures of a finished (or interrupted) run, also written to `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Architecture name.
    pub architecture: String,
    /// Steps completed.
    pub steps: u64,
    /// Whether the run stopped early (Ctrl-C).
    pub interrupted: bool,
    /// Training tokens seen.
    pub tokens: u64,
    /// Training wall time in seconds (all sessions, excluding evaluation).
    pub train_seconds: f64,
    /// Training throughput (tokens per second of training time).
    pub tokens_per_second: f64,
    /// Parameters (trainable, including θ).
    pub parameters: usize,
    /// Mean training cross-entropy over the last logged steps (nats/token).
    pub final_train_loss: f64,
    /// Held-out cross-entropy (nats/token).
    pub heldout_loss: f64,
    /// Held-out perplexity exp(loss).
    pub heldout_ppl: f64,
    /// Training steps skipped because the loss was not finite.
    pub nan_steps: u64,
    /// Per-layer mean entropy of the final report (nats).
    pub layer_mean_entropy: Vec<f64>,
    /// Fraction of heads in the four max-relative bins.
    pub bin_fractions: [f64; 4],
    /// Entropic overload flag of the final report.
    pub overload: bool,
    /// Entropy collapse flag of the final report.
    pub collapse: bool,
    /// Largest |engine logit − trainer logit| on a held-out window after export.
    pub export_max_logit_diff: f64,
    /// Training corpus files / held-out files / bytes read.
    pub corpus_files: (usize, usize, u64),
}

fn batch_tensors(b: &Batch, dev: &candle_core::Device) -> candle_core::Result<(Tensor, Tensor)> {
    let x = Tensor::from_vec(b.inputs.clone(), (b.batch, b.ctx), dev)?;
    let y = Tensor::from_vec(b.targets.clone(), b.batch * b.ctx, dev)?;
    Ok((x, y))
}

/// Mean cross-entropy over evaluation batches (nats/token).
pub fn evaluate(model: &TrainModel, batches: &[Batch]) -> anyhow::Result<f64> {
    let (mut sum, mut n) = (0f64, 0usize);
    for b in batches {
        let (x, y) = batch_tensors(b, model.device())?;
        let out = model.forward(&x)?;
        let ce = cross_entropy(&out.logits, &y)?.to_scalar::<f32>()?;
        sum += f64::from(ce) * (b.batch * b.ctx) as f64;
        n += b.batch * b.ctx;
    }
    Ok(sum / n.max(1) as f64)
}

/// Per-layer head entropies `[L][H]` (batch- and query-mean) and NaN counts of attention.
fn attention_stats(attn: &[Tensor]) -> anyhow::Result<(Vec<Vec<f64>>, Vec<u64>)> {
    let mut ents = Vec::with_capacity(attn.len());
    let mut nans = Vec::with_capacity(attn.len());
    for a in attn {
        let a = a.detach();
        let nan = a
            .ne(&a)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        nans.push(nan as u64);
        let e = query_entropy(&a)?.mean_keepdim(2)?.mean_keepdim(0)?;
        ents.push(
            e.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(f64::from)
                .collect(),
        );
    }
    Ok((ents, nans))
}

const CKPT_DIR: &str = "checkpoint";

fn save_checkpoint(
    dir: &Path,
    model: &TrainModel,
    opt: &AdamW,
    state: &SavedState,
) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{CKPT_DIR}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut tensors: HashMap<String, Tensor> = model.state().into_iter().collect();
    for (i, p) in model.params.iter().enumerate() {
        tensors.insert(format!("opt.m.{}", p.name), opt.m[i].clone());
        tensors.insert(format!("opt.v.{}", p.name), opt.v[i].clone());
    }
    candle_core::safetensors::save(&tensors, tmp.join("state.safetensors"))?;
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(state)?)?;
    // Swap in the new checkpoint so that a complete one exists at every moment: the previous
    // one is kept as `checkpoint.old` until the new one is in place.
    let dst = dir.join(CKPT_DIR);
    let old = dir.join(format!("{CKPT_DIR}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if dst.exists() {
        std::fs::rename(&dst, &old).with_context(|| format!("moving {}", dst.display()))?;
    }
    std::fs::rename(&tmp, &dst)
        .with_context(|| format!("moving checkpoint to {}", dst.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn load_checkpoint(
    dir: &Path,
    model: &mut TrainModel,
    opt: &mut AdamW,
) -> anyhow::Result<SavedState> {
    let mut ck = dir.join(CKPT_DIR);
    if !ck.exists() {
        // Interrupted between the two renames of `save_checkpoint`: the previous one is whole.
        ck = dir.join(format!("{CKPT_DIR}.old"));
    }
    let text = std::fs::read_to_string(ck.join("state.json"))
        .with_context(|| format!("--resume: reading {}", ck.join("state.json").display()))?;
    let state: SavedState = serde_json::from_str(&text).context("--resume: state.json")?;
    ensure!(
        state.config == model.cfg,
        "--resume: the checkpoint's model ({} L={} H={} d={} T={}) differs from the options ({} L={} H={} d={} T={})",
        state.config.architecture,
        state.config.n_layer,
        state.config.n_head,
        state.config.d_model,
        state.config.n_ctx,
        model.cfg.architecture,
        model.cfg.n_layer,
        model.cfg.n_head,
        model.cfg.d_model,
        model.cfg.n_ctx
    );
    ensure!(
        state.options.ffn_norm == model.ffn_norm,
        "--resume: the checkpoint used --ffn-norm {:?}",
        state.options.ffn_norm
    );
    let tensors = candle_core::safetensors::load(ck.join("state.safetensors"), model.device())?;
    model.load_state(&tensors)?;
    for (i, p) in model.params.iter().enumerate() {
        for (kind, slot) in [("m", &mut opt.m[i]), ("v", &mut opt.v[i])] {
            let t = tensors
                .get(&format!("opt.{kind}.{}", p.name))
                .with_context(|| format!("checkpoint lacks optimizer state of {}", p.name))?;
            *slot = t.clone();
        }
    }
    opt.t = state.opt_t;
    Ok(state)
}

fn say(pb: &ProgressBar, msg: &str) {
    if pb.is_hidden() {
        println!("{msg}");
    } else {
        pb.println(msg);
    }
}

/// Trains according to `opts`. `stop` is polled after every step (Ctrl-C): when set, the run
/// saves a checkpoint, exports the model and returns with `interrupted = true`.
pub fn train(opts: &TrainOptions, stop: &AtomicBool) -> anyhow::Result<Summary> {
    opts.check()?;
    let t_load = Instant::now();
    let corpus = Corpus::load(&CorpusSpec {
        dir: opts.corpus.clone(),
        ext: opts.ext.clone(),
        exclude: opts.exclude.clone(),
        heldout_fraction: opts.heldout_fraction,
        seed: opts.seed,
        tokenizer: opts.tokenizer_kind(),
        max_bytes: opts.max_bytes,
    })?;
    println!(
        "corpus {}: {} training files ({} tokens), {} held-out files ({} tokens), {:.1} MB, read in {:.1} s",
        opts.corpus.display(),
        corpus.train_files,
        corpus.train.len(),
        corpus.heldout_files,
        corpus.heldout.len(),
        corpus.bytes as f64 / 1e6,
        t_load.elapsed().as_secs_f64()
    );
    train_on(opts, &corpus, stop)
}

/// Trains on an already loaded corpus (tests build their own).
pub fn train_on(
    opts: &TrainOptions,
    corpus: &Corpus,
    stop: &AtomicBool,
) -> anyhow::Result<Summary> {
    opts.check()?;
    corpus.check_context(opts.ctx)?;
    let cfg = opts.model_config(corpus.vocab_size)?;
    let ereg = cfg.architecture.entropy_regularized;
    let reg_cfg = opts.regularizer();
    let mut model = TrainModel::new(&cfg, opts.ffn_norm, opts.init(), opts.seed)?;
    let mut opt = AdamW::new(opts.adamw(), &model.params)?;
    let out = &opts.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let metrics = out.join("metrics.csv");
    let heads_csv = out.join("entropy_heads.csv");
    let eval_csv = out.join("eval.csv");

    let (mut start, mut elapsed0) = (0u64, 0f64);
    if opts.resume {
        let st = load_checkpoint(out, &mut model, &mut opt)?;
        start = st.step;
        elapsed0 = st.elapsed_s;
        for p in [&metrics, &heads_csv, &eval_csv] {
            truncate_csv_after(p, start)?;
        }
        println!(
            "resumed from {} at step {start}",
            out.join(CKPT_DIR).display()
        );
        if start >= opts.steps {
            println!(
                "the checkpoint is at step {start} >= --steps {}: nothing to train",
                opts.steps
            );
        }
    } else {
        if out.join(CKPT_DIR).exists() || out.join(format!("{CKPT_DIR}.old")).exists() {
            bail!(
                "{} already holds a checkpoint: pass --resume to continue it, or choose another --out",
                out.display()
            );
        }
        for p in [&metrics, &heads_csv, &eval_csv] {
            let _ = std::fs::remove_file(p);
        }
    }
    let n_params: usize = model.params.iter().map(|p| p.var.elem_count()).sum();
    println!(
        "model {}: {} layers, {} heads, d = {}, context {}, vocabulary {}, FFN norm {:?}, {} parameters{}",
        cfg.architecture,
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.n_ctx,
        cfg.vocab_size,
        opts.ffn_norm,
        n_params,
        if ereg {
            format!(
                "; entropy regularizer lambda {} gamma {} ({:?})",
                reg_cfg.lambda, reg_cfg.gamma, reg_cfg.reduction
            )
        } else {
            String::new()
        }
    );

    let evals = eval_batches(&corpus.heldout, opts.eval_windows, opts.batch, opts.ctx);
    let tokens_per_step = (opts.batch * opts.ctx) as u64;
    let layer_cols: Vec<String> = (0..cfg.n_layer).map(|l| format!("entropy_l{l}")).collect();
    let nan_cols: Vec<String> = (0..cfg.n_layer).map(|l| format!("nan_l{l}")).collect();
    let metrics_header = format!(
        "step,lr,train_loss,train_ppl,reg_loss,grad_norm,tokens_per_s,{},{}",
        layer_cols.join(","),
        nan_cols.join(",")
    );

    let pb = if opts.quiet {
        ProgressBar::with_draw_target(Some(opts.steps), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::new(opts.steps)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, ETA {eta} | {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_position(start);

    let mut train_time = 0f64; // this session, excluding evaluation and logging
    let mut nan_steps = 0u64;
    let mut recent_loss: Vec<f64> = Vec::new();
    let mut interrupted = false;
    let mut step = start;
    let mut window_t = Instant::now();
    let mut window_tokens = 0u64;
    let state_of = |step: u64, opt: &AdamW, elapsed: f64| SavedState {
        step,
        opt_t: opt.t,
        elapsed_s: elapsed,
        config: cfg.clone(),
        options: opts.clone(),
    };
    while step < opts.steps {
        let session_done = opts.session_steps.is_some_and(|n| step - start >= n);
        if stop.load(Ordering::SeqCst) || session_done {
            interrupted = true;
            break;
        }
        let t0 = Instant::now();
        model.power_iteration()?;
        let b = train_batch(&corpus.train, opts.batch, opts.ctx, opts.seed, step);
        let (x, y) = batch_tensors(&b, model.device())?;
        let fwd = model.forward(&x)?;
        let ce = cross_entropy(&fwd.logits, &y)?;
        let (loss, reg_val) = if ereg {
            let theta = model.param("reg.theta").expect("theta exists").as_tensor();
            let r = entropy_regularizer(&reg_cfg, &fwd.attn, theta)?;
            let rv = f64::from(r.loss.to_scalar::<f32>()?);
            ((&ce + &r.loss)?, rv)
        } else {
            (ce.clone(), 0.0)
        };
        let ce_v = f64::from(ce.to_scalar::<f32>()?);
        let loss_v = f64::from(loss.to_scalar::<f32>()?);
        let logging = (step + 1) % opts.log_every == 0 || step + 1 == opts.steps || step == 0;
        if !loss_v.is_finite() {
            nan_steps += 1;
            let (_, nans) = attention_stats(&fwd.attn)?;
            say(
                &pb,
                &format!(
                    "step {}: loss is {loss_v} (attention NaNs per layer {nans:?}); step skipped",
                    step + 1
                ),
            );
            ensure!(
                nan_steps <= 50,
                "training diverged: 50 steps with a non-finite loss (see metrics.csv)"
            );
            step += 1;
            pb.set_position(step);
            continue;
        }
        let grads = loss.backward()?;
        let info = opt.step(&model.params, &grads, step)?;
        model.project()?;
        train_time += t0.elapsed().as_secs_f64();
        window_tokens += tokens_per_step;
        step += 1;
        recent_loss.push(ce_v);
        if recent_loss.len() > 20 {
            recent_loss.remove(0);
        }

        if logging {
            let tps = window_tokens as f64 / window_t.elapsed().as_secs_f64().max(1e-9);
            window_t = Instant::now();
            window_tokens = 0;
            let (ents, nans) = attention_stats(&fwd.attn)?;
            let layer_means: Vec<String> = ents
                .iter()
                .map(|e| format!("{:.6}", e.iter().sum::<f64>() / e.len() as f64))
                .collect();
            append_csv(
                &metrics,
                &metrics_header,
                &format!(
                    "{step},{:.6e},{ce_v:.6},{:.6},{reg_val:.6e},{:.6},{tps:.1},{},{}",
                    info.lr,
                    ce_v.exp(),
                    info.grad_norm,
                    layer_means.join(","),
                    nans.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            )?;
            for (l, e) in ents.iter().enumerate() {
                for (h, v) in e.iter().enumerate() {
                    append_csv(
                        &heads_csv,
                        "step,layer,head,entropy",
                        &format!("{step},{l},{h},{v:.6}"),
                    )?;
                }
            }
            pb.set_message(format!(
                "loss {ce_v:.3}{} | {:.0} tok/s",
                if ereg {
                    format!(" + reg {reg_val:.2e}")
                } else {
                    String::new()
                },
                tps
            ));
        }
        if step % opts.eval_every == 0 || step == opts.steps {
            let te = Instant::now();
            let hl = evaluate(&model, &evals)?;
            append_csv(
                &eval_csv,
                "step,heldout_loss,heldout_ppl",
                &format!("{step},{hl:.6},{:.6}", hl.exp()),
            )?;
            say(
                &pb,
                &format!(
                    "step {step}/{}: train loss {:.4} (ppl {:.3}), held-out loss {hl:.4} (ppl {:.3}), lr {:.2e}, {:.0} s training, eval {:.1} s",
                    opts.steps,
                    ce_v,
                    ce_v.exp(),
                    hl.exp(),
                    info.lr,
                    elapsed0 + train_time,
                    te.elapsed().as_secs_f64()
                ),
            );
        }
        if step % opts.save_every == 0 && step < opts.steps {
            save_checkpoint(
                out,
                &model,
                &opt,
                &state_of(step, &opt, elapsed0 + train_time),
            )?;
        }
        pb.set_position(step);
    }
    pb.finish_and_clear();
    let total_train = elapsed0 + train_time;
    save_checkpoint(out, &model, &opt, &state_of(step, &opt, total_train))?;
    if interrupted {
        println!(
            "interrupted at step {step}: checkpoint saved in {}; continue with the same command and --resume",
            out.join(CKPT_DIR).display()
        );
    }
    finish(
        opts,
        corpus,
        &model,
        &evals,
        FinishInfo {
            step,
            interrupted,
            total_train,
            nan_steps,
            recent_loss,
            n_params,
        },
    )
}

struct FinishInfo {
    step: u64,
    interrupted: bool,
    total_train: f64,
    nan_steps: u64,
    recent_loss: Vec<f64>,
    n_params: usize,
}

/// Export, final evaluation, the engine's entropy report, plots and the summary.
fn finish(
    opts: &TrainOptions,
    corpus: &Corpus,
    model: &TrainModel,
    evals: &[Batch],
    info: FinishInfo,
) -> anyhow::Result<Summary> {
    let out = &opts.out;
    let cfg = &model.cfg;
    let model_dir = out.join("model");
    crate::export::export(model, &model_dir)?;
    let engine = Model::load(&model_dir)
        .with_context(|| format!("loading the exported model {}", model_dir.display()))?;

    // The engine must compute the trainer's logits on the exported weights.
    let w = &evals[0];
    let first: Vec<u32> = w.inputs[..w.ctx].to_vec();
    let x = Tensor::from_vec(first.clone(), (1, w.ctx), model.device())?;
    let ours = model.forward(&x)?.logits.flatten_all()?.to_vec1::<f32>()?;
    let theirs = engine.forward(&first)?.data;
    let diff = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "exported {}: engine logits within {diff:.2e} of the trainer's",
        model_dir.display()
    );

    let heldout_loss = evaluate(model, evals)?;

    // The engine's entropy report (what `privlm entropy --model DIR` writes) on held-out windows.
    let mut acc = EntropyAccumulator::new(cfg.n_layer, cfg.n_head);
    let report_wins = eval_batches(&corpus.heldout, opts.report_windows, 1, opts.ctx);
    for b in &report_wins {
        let (_, attn) = engine.forward_with_attention(&b.inputs)?;
        acc.add_sequence(&attn, b.ctx)?;
    }
    let stats = acc.finish()?;
    let (rep, _) = report(&stats, &out.join("entropy"))?;
    println!("{}", table(&rep));

    // Plots from the CSV logs.
    let (hdr, rows) = read_csv(&out.join("metrics.csv"))?;
    let col = |name: &str| hdr.iter().position(|h| h == name);
    let mut layer_series = Vec::new();
    for l in 0..cfg.n_layer {
        if let Some(c) = col(&format!("entropy_l{l}")) {
            layer_series.push(Series {
                label: format!("L{l}"),
                points: rows.iter().map(|r| (r[0], r[c])).collect(),
            });
        }
    }
    let causal = privlm::entropy::causal_max_entropy(cfg.n_ctx);
    line_chart(
        &out.join("entropy_curves.png"),
        &format!("{}: LAYERWISE MEAN ENTROPY", cfg.architecture),
        "STEP",
        "ENTROPY (NATS)",
        &layer_series,
        Some((0.0, causal)),
    )?;
    let mut loss_series = Vec::new();
    if let Some(c) = col("train_loss") {
        loss_series.push(Series {
            label: "TRAIN".into(),
            points: rows.iter().map(|r| (r[0], r[c])).collect(),
        });
    }
    if let Ok((_, erows)) = read_csv(&out.join("eval.csv")) {
        loss_series.push(Series {
            label: "HELD-OUT".into(),
            points: erows.iter().map(|r| (r[0], r[1])).collect(),
        });
    }
    line_chart(
        &out.join("loss.png"),
        &format!("{}: CROSS-ENTROPY", cfg.architecture),
        "STEP",
        "LOSS (NATS/TOKEN)",
        &loss_series,
        None,
    )?;

    if cfg.architecture.entropy_regularized {
        let theta = model
            .param("reg.theta")
            .expect("theta exists")
            .as_tensor()
            .to_vec2::<f32>()?;
        let mut s = String::from("layer,head,theta\n");
        for (l, row) in theta.iter().enumerate() {
            for (h, v) in row.iter().enumerate() {
                s.push_str(&format!("{l},{h},{v:.6}\n"));
            }
        }
        std::fs::write(out.join("theta.csv"), s)?;
    }

    // A greedy continuation of a held-out prompt.
    let prompt_len = (cfg.n_ctx / 2).min(corpus.heldout.len());
    let prompt = &corpus.heldout[..prompt_len];
    let continuation = engine.generate(prompt, cfg.n_ctx - prompt_len, Sampling::Greedy, 0)?;
    let tok = opts.tokenizer_kind().build();
    let text = format!(
        "--- prompt ---\n{}\n--- greedy continuation ---\n{}\n",
        tok.decode_lossy(prompt)?,
        tok.decode_lossy(&continuation)?
    );
    std::fs::write(out.join("sample.txt"), &text)?;

    let final_train_loss = if info.recent_loss.is_empty() {
        f64::NAN
    } else {
        info.recent_loss.iter().sum::<f64>() / info.recent_loss.len() as f64
    };
    let tokens = info.step * (opts.batch * opts.ctx) as u64;
    let a = &rep.analysis;
    let summary = Summary {
        architecture: cfg.architecture.name(),
        steps: info.step,
        interrupted: info.interrupted,
        tokens,
        train_seconds: info.total_train,
        tokens_per_second: tokens as f64 / info.total_train.max(1e-9),
        parameters: info.n_params,
        final_train_loss,
        heldout_loss,
        heldout_ppl: heldout_loss.exp(),
        nan_steps: info.nan_steps,
        layer_mean_entropy: a.layer_means.clone(),
        bin_fractions: a.bin_fractions,
        overload: a.overload,
        collapse: a.collapse,
        export_max_logit_diff: f64::from(diff),
        corpus_files: (corpus.train_files, corpus.heldout_files, corpus.bytes),
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!(
        "done: {} steps, {} tokens in {:.0} s of training ({:.0} tokens/s); held-out loss {:.4}, perplexity {:.3}; outputs in {}",
        summary.steps,
        summary.tokens,
        summary.train_seconds,
        summary.tokens_per_second,
        summary.heldout_loss,
        summary.heldout_ppl,
        out.display()
    );
    Ok(summary)
}
