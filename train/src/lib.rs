//! privlm-train: trains privlm's models with entropy-guided attention and the entropy
//! regularizer of Jha & Reagen, "Entropy-Guided Attention for Private LLMs" (2025), on CPU with
//! candle, and exports them in privlm's checkpoint format.
//!
//! This is a separate workspace crate so that the engine (`privlm`) does not build a training
//! framework; `privlm train ...` forwards to this crate's `privlm-train` binary.
//!
//! - [`corpus`]: a directory of text files, split by file, byte or GPT-2 BPE tokens;
//! - [`model`]: every architecture of docs/model.md with α/β, temperatures, θ, WN/SN;
//! - [`regularizer`]: EGA Algorithm 1 as a differentiable expression;
//! - [`optim`]: AdamW with parameter groups, warmup + cosine, gradient clipping;
//! - [`export`]: folding into privlm's checkpoint format;
//! - [`monitor`]: CSV logs and charts;
//! - [`trainer`]: the loop, checkpoints, `--resume`, Ctrl-C, the final report.
//!
//! See docs/training.md.

pub mod corpus;
pub mod export;
pub mod model;
pub mod monitor;
pub mod optim;
pub mod regularizer;
pub mod trainer;

pub use trainer::{Summary, TrainOptions, train, train_on};

/// The command line of `privlm-train` (also reached as `privlm train`).
#[derive(Debug, clap::Parser)]
#[command(
    name = "privlm-train",
    version,
    about = "Train a privlm model (entropy-guided attention, entropy regularizer) on a directory of text files",
    long_about = "Train a privlm model on a directory of text files and export it in privlm's \
checkpoint format (config.json + model.safetensors), loadable by `privlm entropy --model` and \
the engine.\n\nExample (the Python standard library as the corpus):\n  privlm train \
--corpus \"$(python3 -c \"import sysconfig; print(sysconfig.get_paths()['stdlib'])\")\" \
--arch 'EReg(SM(t)+ScFuFFN)' --steps 2000 --out runs/ereg\n\nCtrl-C saves a checkpoint and \
exports the model before exiting; run the same command with --resume to continue. See \
docs/training.md."
)]
pub struct Cli {
    /// The training options.
    #[command(flatten)]
    pub opts: TrainOptions,
}
