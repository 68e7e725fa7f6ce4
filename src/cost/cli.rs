//! `privlm cost`: the command line of the cost model (clap), shared by `privlm` and
//! `privlm-bench`.

use std::path::PathBuf;

use clap::Parser;

use super::calib::Calibration;
use super::net::NetProfile;
use super::table::{CostTable, Workload, count_generation, placeholder_manifest};
use crate::model::config::{Architecture, ModelConfig, TemperatureForm};
use privlm_protocols::nonlinear::NlParams;

/// Predicts what a private generation costs, per layer and op, from the code that runs.
#[derive(Clone, Debug, Parser)]
#[command(name = "privlm cost", version, about, long_about = None)]
pub struct CostArgs {
    /// Architecture: SM+LN+G, SM+LN+R, SM+LN, SM+G, SM+R, SM, SM+ScFFN, SM+ScFuFFN,
    /// SM(t)+ScFuFFN, optionally EReg(...) and a [k] suffix.
    #[arg(long, default_value = "SM+LN+G")]
    pub arch: String,
    /// Number of layers.
    #[arg(long, default_value_t = 12)]
    pub layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    pub heads: usize,
    /// Model width.
    #[arg(long, default_value_t = 768)]
    pub d_model: usize,
    /// FFN hidden width [default: 4 x d-model].
    #[arg(long)]
    pub d_ff: Option<usize>,
    /// Vocabulary size.
    #[arg(long, default_value_t = 50257)]
    pub vocab: usize,
    /// Context length [default: prompt + new tokens].
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Prompt length T.
    #[arg(long, default_value_t = 128)]
    pub prompt: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 1)]
    pub new_tokens: usize,
    /// Recompute the whole prefix for each further token instead of using the KV cache.
    #[arg(long)]
    pub no_kv_cache: bool,
    /// No final LayerNorm before the LM head.
    #[arg(long)]
    pub no_final_ln: bool,
    /// Network profile: lan (3 Gbps, 0.8 ms), wan (100 Mbps, 80 ms) or BANDWIDTH/RTT such as
    /// 1gbps/10ms.
    #[arg(long, default_value = "wan")]
    pub net: String,
    /// Compute calibration file (`privlm-bench calibrate` writes one) [default: the shipped
    /// assets/calibration.json].
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Also write the table as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write the rows as CSV to this file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

/// Why `privlm cost` failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CostCliError(String);

impl CostArgs {
    /// The workload these flags describe.
    pub fn workload(&self) -> Result<Workload, CostCliError> {
        let arch: Architecture = self
            .arch
            .parse()
            .map_err(|e: crate::model::ModelError| CostCliError(e.to_string()))?;
        let config = ModelConfig {
            architecture: arch,
            n_layer: self.layers,
            n_head: self.heads,
            d_model: self.d_model,
            d_ff: self.d_ff.unwrap_or(4 * self.d_model),
            vocab_size: self.vocab,
            n_ctx: self.ctx.unwrap_or(self.prompt + self.new_tokens),
            final_layer_norm: !self.no_final_ln,
            layer_norm_eps: 1e-5,
            temperature_form: TemperatureForm::PerHeadQuery,
        };
        config.validate().map_err(|e| CostCliError(e.to_string()))?;
        Ok(Workload {
            config,
            prompt_len: self.prompt,
            new_tokens: self.new_tokens,
            kv_cache: !self.no_kv_cache,
        })
    }

    /// Counts and builds the table.
    pub fn table(&self) -> Result<CostTable, CostCliError> {
        let w = self.workload()?;
        let profile: NetProfile = self
            .net
            .parse()
            .map_err(|e: super::net::ProfileParseError| CostCliError(e.to_string()))?;
        let calib = match &self.calibration {
            Some(p) => Calibration::load(p).map_err(|e| CostCliError(e.to_string()))?,
            None => Calibration::default(),
        };
        let manifest = placeholder_manifest(&w.config);
        let engine = count_generation(&w, &manifest, NlParams::default(), calib)
            .map_err(|e| CostCliError(e.to_string()))?;
        Ok(CostTable::build(w, &engine, profile))
    }
}

/// Runs `privlm cost` with these arguments: prints the table, writes the files asked for.
pub fn run(args: &CostArgs) -> Result<(), CostCliError> {
    let t = args.table()?;
    print!("{}", t.text());
    let io = |p: &PathBuf, e: std::io::Error| CostCliError(format!("{}: {e}", p.display()));
    if let Some(p) = &args.json {
        let s = serde_json::to_string_pretty(&t).expect("the table serializes");
        std::fs::write(p, s + "\n").map_err(|e| io(p, e))?;
    }
    if let Some(p) = &args.csv {
        std::fs::write(p, t.csv()).map_err(|e| io(p, e))?;
    }
    Ok(())
}
