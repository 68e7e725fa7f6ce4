//! `privlm`: the demo and utility command line.
//!
//! Commands:
//! - `privlm demo`: the private-inference demo (`privlm::serve::demo`): dealer, server and
//!   client on loopback TLS, two shipped models, private beside plaintext text, costs side by
//!   side;
//! - `privlm entropy`: the attention-entropy analysis of Jha & Reagen, "Entropy-Guided
//!   Attention for Private LLMs" (2025), section 3: per layer and head, the Shannon entropy of
//!   the attention rows averaged over the query positions, on a given text, written as a
//!   terminal table, `entropy.json`, `entropy.csv` and `heatmap.png` (see `docs/entropy.md`);
//! - `privlm train`: forwards to the trainer binary `privlm-train` (workspace crate `train/`,
//!   kept out of the engine so that the engine does not build a training framework; see
//!   `docs/training.md`);
//! - `privlm cost`: the cost model (`privlm::cost`, `docs/cost.md`), parsed with clap;
//! - `privlm help`.
//!
//! Arguments are parsed by hand (a handful of flags does not earn a parser crate's build time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use privlm::entropy::{EntropyAccumulator, report, table};
use privlm::model::tokenizer::{self, Tokenizer, TokenizerKind, TokenizerSource};
use privlm::model::{Architecture, Model, ModelConfig, TemperatureForm};
use privlm::serve::demo::DemoOptions;

const USAGE: &str = "\
privlm: two-party secure inference for GPT-2-style language models

USAGE:
    privlm demo [OPTIONS]            the private-inference demo: dealer, server and client on
                                     loopback TLS, two shipped models, private beside
                                     plaintext text and their costs side by side
    privlm entropy [OPTIONS]         attention entropy per layer and head on a text
    privlm train [OPTIONS]           train a model (runs the privlm-train binary; see
                                     `privlm train --help` and docs/training.md)
    privlm cost [OPTIONS]            what a private generation costs, per layer and op
                                     (bytes, rounds, dealer traffic, projected seconds)
    privlm help [COMMAND]            this help, or a command's help

Run `privlm help demo` or `privlm help entropy` for their options.
";

const DEMO_USAGE: &str = "\
privlm demo: private inference on loopback TLS

Starts a dealer, a server and a client in this process with fresh TLS identities, and
generates text privately from two shipped models: the SM+LN+G baseline (models/sm_ln_g) and
the entropy-guided EReg(SM(t)+ScFuFFN) (models/ereg_sm_t_scfuffn). Prints the private text
beside the plaintext model's for the same prompt, and both architectures' costs side by side.

USAGE:
    privlm demo [--prompt TEXT] [--max-new-tokens N] [--baseline DIR] [--guided DIR]

OPTIONS:
    --prompt TEXT          the prompt [default: a few lines of Python; the models were
                           trained on Python code]
    --max-new-tokens N     tokens to generate per model [default: 16]
    --baseline DIR         the baseline model [default: models/sm_ln_g]
    --guided DIR           the entropy-guided model [default: models/ereg_sm_t_scfuffn]
";

const ENTROPY_USAGE: &str = "\
privlm entropy: attention entropy per layer and head (Jha & Reagen 2025, section 3)

USAGE:
    privlm entropy --model DIR --text FILE [--out DIR] [--tokenizer gpt2|byte]
    privlm entropy --random-arch NAME --text FILE [shape options] [--out DIR]

The text is tokenized, cut into consecutive windows of the model's context length (each
window is one sequence; a final partial window shorter than half the context is dropped
when there is at least one full window), run through the model, and the per-head entropy
(nats, averaged over queries and windows) is printed as a table and written to
DIR/entropy.json, DIR/entropy.csv and DIR/heatmap.png.

OPTIONS:
    --model DIR          a Hugging Face GPT-2 directory or a privlm checkpoint directory
                         (config.json + model.safetensors)
    --random-arch NAME   instead of --model: seeded random weights of architecture NAME
                         (SM+LN+G, SM+LN+R, SM+LN, SM+G, SM+R, SM, SM+ScFFN, SM+ScFuFFN,
                         SM(t)+ScFuFFN, optionally EReg(...) and a [k] suffix)
    --text FILE          the UTF-8 text to analyse (required, not empty)
    --out DIR            output directory [default: entropy-out]
    --tokenizer KIND     gpt2 or byte [default: the model directory's tokenizer.json or
                         vocab.json + merges.txt if it has them, else by vocabulary
                         size: 256 -> byte, >= 50257 -> gpt2, otherwise byte ids 0..255
                         with a note]

SHAPE OPTIONS (with --random-arch; defaults are GPT-2 small at T = 128):
    --layers N           number of layers [default: 12]
    --d-model N          model width [default: 768]
    --heads N            attention heads [default: 12]
    --ctx N              context length [default: 128]
    --d-ff N             FFN hidden width [default: 4 x d-model]
    --vocab N            vocabulary size [default: 50257]
    --seed N             weight seed [default: 0]
    --no-final-ln        no final LayerNorm before the LM head
    --per-head-temperature
                         SM(t) with one temperature per head (default: per head and query)
";

/// Parses the demo's options.
fn demo_options(args: &[String]) -> Result<DemoOptions> {
    let mut o = DemoOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--prompt" => o.prompt = val()?.clone(),
            "--max-new-tokens" => {
                o.max_new_tokens = val()?.parse().context("--max-new-tokens: a number")?
            }
            "--baseline" => o.baseline = PathBuf::from(val()?),
            "--guided" => o.guided = PathBuf::from(val()?),
            other => bail!("unknown demo option {other:?}; see `privlm help demo`"),
        }
    }
    if o.max_new_tokens == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    Ok(o)
}

/// Runs the demo on a multi-threaded runtime and prints its report.
fn run_demo(o: DemoOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let t = Instant::now();
    let (_, text) = rt.block_on(privlm::serve::demo::run_demo(&o))?;
    print!("{text}");
    println!("demo finished in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("demo");
    let rest = args.get(1..).unwrap_or(&[]);
    match cmd {
        "demo" => {
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                print!("{DEMO_USAGE}");
                return ExitCode::SUCCESS;
            }
            match demo_options(rest).and_then(run_demo) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        "help" | "--help" | "-h" => {
            match rest.first().map(String::as_str) {
                Some("entropy") => print!("{ENTROPY_USAGE}"),
                Some("demo") => print!("{DEMO_USAGE}"),
                Some("train") => return run_train(&["--help".to_string()]),
                Some("cost") => return run_cost(&["--help".to_string()]),
                _ => print!("{USAGE}"),
            }
            ExitCode::SUCCESS
        }
        "entropy" => {
            if rest.iter().any(|a| a == "--help" || a == "-h") {
                print!("{ENTROPY_USAGE}");
                return ExitCode::SUCCESS;
            }
            let opts = match EntropyArgs::parse(rest) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e:#}\n\nRun `privlm help entropy` for the options.");
                    return ExitCode::from(2);
                }
            };
            match run_entropy(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        "train" => run_train(rest),
        "cost" => run_cost(rest),
        other => {
            eprintln!("unknown command {other:?}; available: demo, entropy, train, cost, help");
            ExitCode::from(2)
        }
    }
}

/// `privlm cost`: the cost model's command line (`privlm::cost::cli`).
fn run_cost(rest: &[String]) -> ExitCode {
    use clap::Parser;
    let argv = std::iter::once("privlm cost".to_string()).chain(rest.iter().cloned());
    let args = match privlm::cost::cli::CostArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match privlm::cost::cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How to get the trainer when it is not found.
const TRAIN_MISSING: &str = "\
The trainer is a separate binary, privlm-train (workspace crate train/, so that the engine
does not build a training framework). Build it next to privlm with

    cargo build --release -p privlm-train

or run it directly with `cargo run --release -p privlm-train -- --help`. privlm looks for it
in $PRIVLM_TRAIN_BIN, next to the privlm executable, then on PATH.";

/// Finds the `privlm-train` binary: `$PRIVLM_TRAIN_BIN`, then next to this executable, then
/// on `PATH`.
fn find_trainer() -> Result<PathBuf, String> {
    let name = format!("privlm-train{}", std::env::consts::EXE_SUFFIX);
    if let Some(p) = std::env::var_os("PRIVLM_TRAIN_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("PRIVLM_TRAIN_BIN={} is not a file", p.display()))
        };
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(&name)));
    if let Some(p) = sibling.filter(|p| p.is_file()) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("{name} was not found"))
}

/// `privlm train ARGS`: runs `privlm-train ARGS`. On Unix the trainer replaces this process
/// (exec), so that Ctrl-C reaches the trainer alone (it saves a checkpoint before exiting) and
/// its exit status is the command's; elsewhere it runs as a child whose status is returned.
fn run_train(args: &[String]) -> ExitCode {
    let bin = match find_trainer() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("error: {why}.\n\n{TRAIN_MISSING}");
            return ExitCode::from(2);
        }
    };
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // `exec` returns only if it failed.
        let e = cmd.exec();
        eprintln!("error: running {}: {e}", bin.display());
        ExitCode::FAILURE
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(status) => ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ),
        Err(e) => {
            eprintln!("error: running {}: {e}", bin.display());
            ExitCode::FAILURE
        }
    }
}

/// Where the model comes from.
enum ModelSource {
    Dir(PathBuf),
    Random {
        architecture: Architecture,
        config: Box<ModelConfig>,
        seed: u64,
    },
}

/// Parsed `privlm entropy` arguments.
struct EntropyArgs {
    source: ModelSource,
    text: PathBuf,
    out: PathBuf,
    tokenizer: Option<TokenizerKind>,
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| anyhow::anyhow!("{flag} expects a non-negative integer, got {v:?}"))
}

impl EntropyArgs {
    fn parse(args: &[String]) -> Result<Self> {
        let mut model = None;
        let mut random_arch: Option<String> = None;
        let mut text = None;
        let mut out = PathBuf::from("entropy-out");
        let mut tokenizer = None;
        let (mut layers, mut d_model, mut heads, mut ctx) = (12usize, 768usize, 12usize, 128usize);
        let (mut d_ff, mut vocab, mut seed) = (None::<usize>, 50257usize, 0u64);
        let mut final_ln = true;
        let mut per_head_t = false;
        let mut shape_given = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let flag = flag.as_str();
            // Flags without a value.
            match flag {
                "--no-final-ln" => {
                    final_ln = false;
                    shape_given.push(flag);
                    continue;
                }
                "--per-head-temperature" => {
                    per_head_t = true;
                    shape_given.push(flag);
                    continue;
                }
                _ => {}
            }
            if !flag.starts_with("--") {
                bail!("unexpected argument {flag:?}");
            }
            let value = it
                .next()
                .with_context(|| format!("{flag} needs a value"))?
                .as_str();
            match flag {
                "--model" => model = Some(PathBuf::from(value)),
                "--random-arch" => random_arch = Some(value.to_string()),
                "--text" => text = Some(PathBuf::from(value)),
                "--out" => out = PathBuf::from(value),
                "--tokenizer" => {
                    tokenizer = Some(value.parse::<TokenizerKind>().map_err(|_| {
                        anyhow::anyhow!("--tokenizer must be gpt2 or byte, got {value:?}")
                    })?)
                }
                "--layers" => layers = parse_num(flag, value)?,
                "--d-model" => d_model = parse_num(flag, value)?,
                "--heads" => heads = parse_num(flag, value)?,
                "--ctx" => ctx = parse_num(flag, value)?,
                "--d-ff" => d_ff = Some(parse_num(flag, value)?),
                "--vocab" => vocab = parse_num(flag, value)?,
                "--seed" => seed = parse_num(flag, value)?,
                _ => bail!("unknown option {flag:?}"),
            }
            if matches!(
                flag,
                "--layers" | "--d-model" | "--heads" | "--ctx" | "--d-ff" | "--vocab" | "--seed"
            ) {
                shape_given.push(flag);
            }
        }
        let text = text.context("--text FILE is required")?;
        let source = match (model, random_arch) {
            (Some(_), Some(_)) => bail!("give either --model or --random-arch, not both"),
            (None, None) => bail!("--model DIR or --random-arch NAME is required"),
            (Some(dir), None) => {
                if let Some(f) = shape_given.first() {
                    bail!("{f} applies only with --random-arch (a checkpoint has its own shape)");
                }
                ModelSource::Dir(dir)
            }
            (None, Some(name)) => {
                let architecture: Architecture = name
                    .parse()
                    .with_context(|| format!("--random-arch {name:?}"))?;
                let mut config = ModelConfig::gpt2_small(architecture, ctx);
                config.n_layer = layers;
                config.n_head = heads;
                config.d_model = d_model;
                config.d_ff = d_ff.unwrap_or(4 * d_model);
                config.vocab_size = vocab;
                config.final_layer_norm = final_ln;
                if per_head_t {
                    config.temperature_form = TemperatureForm::PerHead;
                }
                config
                    .validate()
                    .context("the --random-arch shape is invalid")?;
                ModelSource::Random {
                    architecture,
                    config: Box::new(config),
                    seed,
                }
            }
        };
        Ok(EntropyArgs {
            source,
            text,
            out,
            tokenizer,
        })
    }
}

/// Prints where a model directory's tokenizer came from.
fn describe_source(src: &TokenizerSource) {
    match src {
        TokenizerSource::BuiltIn(_, Some(note)) => println!("{note}"),
        TokenizerSource::BuiltIn(..) => {}
        other => println!("tokenizer: {other}"),
    }
}

/// Consecutive windows of at most `n_ctx` tokens. A last partial window shorter than half the
/// context is dropped when there is at least one full window (its few queries would pull the
/// mean towards the low entropies of short rows). Returns the windows and the dropped count.
fn windows(tokens: &[u32], n_ctx: usize) -> (Vec<&[u32]>, usize) {
    let mut w: Vec<&[u32]> = tokens.chunks(n_ctx).collect();
    let mut dropped = 0;
    if w.len() > 1
        && let Some(last) = w.last()
        && last.len() * 2 < n_ctx
    {
        dropped = last.len();
        w.pop();
    }
    (w, dropped)
}

fn run_entropy(opts: &EntropyArgs) -> Result<()> {
    let text = std::fs::read_to_string(&opts.text)
        .with_context(|| format!("reading the text file {}", opts.text.display()))?;
    if text.trim().is_empty() {
        bail!(
            "the text file {} is empty: there is nothing to analyse",
            opts.text.display()
        );
    }

    let t0 = Instant::now();
    let (model, origin) = match &opts.source {
        ModelSource::Dir(dir) => {
            if !dir.is_dir() {
                bail!(
                    "model directory {} does not exist or is not a directory",
                    dir.display()
                );
            }
            let m = Model::load(dir)
                .with_context(|| format!("loading the model from {}", dir.display()))?;
            (m, dir.display().to_string())
        }
        ModelSource::Random {
            architecture,
            config,
            seed,
        } => {
            let m = Model::random((**config).clone(), *seed)
                .with_context(|| format!("building a random {}", architecture.name()))?;
            (m, format!("random weights, seed {seed}"))
        }
    };
    let t_model = t0.elapsed();
    let cfg = model.config().clone();
    println!(
        "model: {} ({origin}): {} layers, {} heads, d = {}, context {}, vocabulary {}",
        cfg.architecture.name(),
        cfg.n_layer,
        cfg.n_head,
        cfg.d_model,
        cfg.n_ctx,
        cfg.vocab_size
    );

    let (tok, kind): (Box<dyn Tokenizer>, String) = match (opts.tokenizer, &opts.source) {
        (Some(k), _) => (k.build(), k.to_string()),
        (None, ModelSource::Dir(dir)) => {
            let (t, src) = tokenizer::for_model_dir(dir, cfg.vocab_size)
                .with_context(|| format!("the tokenizer of {}", dir.display()))?;
            describe_source(&src);
            let name = match src {
                TokenizerSource::BuiltIn(k, _) => k.to_string(),
                TokenizerSource::TokenizerJson => "tokenizer.json".to_string(),
                TokenizerSource::VocabMerges => "vocab.json + merges.txt".to_string(),
            };
            (t, name)
        }
        (None, ModelSource::Random { .. }) => {
            let (k, note) = TokenizerKind::for_vocab_size(cfg.vocab_size)?;
            if let Some(n) = note {
                println!("{n}");
            }
            (k.build(), k.to_string())
        }
    };
    if tok.vocab_size() > cfg.vocab_size {
        println!(
            "note: the {kind} tokenizer has {} ids but the model's vocabulary is {}; \
             a text using ids beyond it is refused",
            tok.vocab_size(),
            cfg.vocab_size
        );
    }
    let tokens = tok.encode(&text);
    if tokens.is_empty() {
        bail!("the text file {} produced no tokens", opts.text.display());
    }
    let (wins, dropped) = windows(&tokens, cfg.n_ctx);
    if wins.len() > 1 || dropped > 0 {
        println!(
            "note: {} tokens ({kind}) exceed the context of {}: analysing {} consecutive \
             window(s) of up to {} tokens{}",
            tokens.len(),
            cfg.n_ctx,
            wins.len(),
            cfg.n_ctx,
            if dropped > 0 {
                format!("; the last {dropped} tokens (under half a window) are dropped")
            } else {
                String::new()
            }
        );
    } else {
        println!("text: {} tokens ({kind})", tokens.len());
    }

    let t1 = Instant::now();
    let mut acc = EntropyAccumulator::new(cfg.n_layer, cfg.n_head);
    for (i, w) in wins.iter().enumerate() {
        let (_, attn) = model
            .forward_with_attention(w)
            .with_context(|| format!("forward pass on window {i} ({} tokens)", w.len()))?;
        acc.add_sequence(&attn, w.len())
            .with_context(|| format!("entropies of window {i}"))?;
    }
    let t_forward = t1.elapsed();

    let t2 = Instant::now();
    let stats = acc.finish()?;
    let (rep, paths) = report(&stats, &opts.out)
        .with_context(|| format!("writing the report to {}", opts.out.display()))?;
    let t_report = t2.elapsed();

    print!("{}", table(&rep));
    println!(
        "wrote {}, {}, {}",
        paths.json.display(),
        paths.csv.display(),
        paths.png.display()
    );
    println!(
        "time: model {:.2} s, forward with attention {:.2} s ({} window(s)), entropies and report {:.2} s",
        t_model.as_secs_f64(),
        t_forward.as_secs_f64(),
        wins.len(),
        t_report.as_secs_f64()
    );
    Ok(())
}
