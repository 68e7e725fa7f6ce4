//! `privlm demo`: the dealer, the server and the client in one process, on loopback TLS with
//! fresh identities, generating privately from a baseline model and an entropy-guided one; the
//! private text beside the plaintext model's, and the two architectures' costs side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use privlm_protocols::beaver::dealer::server::{DealerServer, ServerConfig, dealer_channel_config};
use privlm_protocols::channel::tls::{Identity, ListenerLimits, TlsListener};
use privlm_protocols::channel::{FramedChannel, Phase};
use privlm_protocols::nonlinear::NlParams;

use super::client::{ClientConfig, ClientEvent, Generation, generate};
use super::known_hosts::Trust;
use super::report::human_bytes;
use super::server::{DealerLink, InferenceServer, ServeConfig, peer_channel_config};
use crate::model::{Model, Sampling};
use crate::secure::CostReport;

/// The demo's default prompt: the shipped models were trained on Python code.
pub const DEFAULT_PROMPT: &str =
    "import os\n\n\ndef read_lines(path):\n    with open(path) as f:\n        return f.";

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The baseline model directory (default: `models/sm_ln_g`).
    pub baseline: PathBuf,
    /// The entropy-guided model directory (default: `models/ereg_sm_t_scfuffn`).
    pub guided: PathBuf,
    /// The prompt.
    pub prompt: String,
    /// Tokens to generate.
    pub max_new_tokens: u32,
    /// Show a progress indicator (on standard error, when it is a terminal).
    pub progress: bool,
}

/// The shipped models' directory: `./models` when it exists, else the one next to the sources.
pub fn models_dir() -> PathBuf {
    let here = PathBuf::from("models");
    if here.join("sm_ln_g").is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        let m = models_dir();
        DemoOptions {
            baseline: m.join("sm_ln_g"),
            guided: m.join("ereg_sm_t_scfuffn"),
            prompt: DEFAULT_PROMPT.to_string(),
            max_new_tokens: 16,
            progress: true,
        }
    }
}

/// One model's run.
#[derive(Debug, Clone)]
pub struct DemoRun {
    /// The model directory.
    pub dir: PathBuf,
    /// What the client got.
    pub generation: Generation,
    /// The server's cost report of the same session.
    pub server: Option<CostReport>,
    /// The plaintext (f32) model's greedy tokens for the same prompt.
    pub plaintext_tokens: Vec<u32>,
    /// Its text.
    pub plaintext_text: String,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(pub String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Runs the demo: both models' runs and the report ([`render`]) to print.
pub async fn run_demo(opts: &DemoOptions) -> Result<(Vec<DemoRun>, String), DemoError> {
    let pb = if opts.progress {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message("creating fresh TLS identities");
    let client_id = Arc::new(Identity::generate().map_err(err)?);
    let server_id = Arc::new(Identity::generate().map_err(err)?);
    let dealer_id = Identity::generate().map_err(err)?;

    pb.set_message("starting the dealer on 127.0.0.1");
    let idle = Duration::from_secs(60);
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &dealer_id,
        &[client_id.fingerprint(), server_id.fingerprint()],
        dealer_channel_config(idle),
    )
    .await
    .map_err(err)?;
    let incoming = listener.incoming(ListenerLimits::default()).map_err(err)?;
    let dealer_addr = incoming.local_addr().to_string();
    let dealer: DealerServer<FramedChannel> = DealerServer::new(ServerConfig::default());
    let dealer_task = tokio::spawn({
        let d = dealer.clone();
        async move { d.run(incoming).await }
    });

    let mut runs = Vec::new();
    for dir in [&opts.baseline, &opts.guided] {
        pb.set_message(format!("loading {}", dir.display()));
        let model =
            Arc::new(Model::load(dir).map_err(|e| {
                DemoError(format!("cannot load the model in {}: {e}", dir.display()))
            })?);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let prompt_ids: Vec<u32> = {
            let tok = model.config().vocab_size;
            let (kind, _) =
                crate::model::tokenizer::TokenizerKind::for_vocab_size(tok).map_err(err)?;
            kind.build().encode(&opts.prompt)
        };
        pb.set_message(format!("{name}: plaintext generation"));
        let plain = model
            .generate(
                &prompt_ids,
                opts.max_new_tokens as usize,
                Sampling::Greedy,
                0,
            )
            .map_err(err)?;
        let (kind, _) =
            crate::model::tokenizer::TokenizerKind::for_vocab_size(model.config().vocab_size)
                .map_err(err)?;
        let plaintext_text = kind.build().decode_lossy(&plain).map_err(err)?;

        pb.set_message(format!("{name}: starting the server"));
        let cfg = ServeConfig {
            max_sessions: 1,
            request_timeout: Duration::from_secs(10),
            max_new_tokens: opts.max_new_tokens.max(1),
            nl: NlParams::default(),
            dealer: DealerLink {
                addr: dealer_addr.clone(),
                fingerprint: dealer_id.fingerprint(),
                connect_timeout: Duration::from_secs(10),
                channel: peer_channel_config(idle),
            },
            stop_after: Some(1),
        };
        let server = InferenceServer::new(model.clone(), &name, server_id.clone(), cfg)
            .map_err(DemoError)?;
        let listener = TlsListener::bind(
            "127.0.0.1:0",
            &server_id,
            &[client_id.fingerprint()],
            peer_channel_config(idle),
        )
        .await
        .map_err(err)?;
        let incoming = listener.incoming(ListenerLimits::default()).map_err(err)?;
        let server_addr = incoming.local_addr().to_string();
        let server_task = tokio::spawn({
            let s = server.clone();
            async move { s.run(incoming).await }
        });

        let ccfg = ClientConfig {
            server: server_addr,
            server_trust: Trust::Pinned(server_id.fingerprint()),
            dealer: dealer_addr.clone(),
            dealer_trust: Trust::Pinned(dealer_id.fingerprint()),
            identity: client_id.clone(),
            connect_timeout: Duration::from_secs(10),
            timeout: idle,
            model: Some(name.clone()),
            session_id: None,
            nl: NlParams::default(),
        };
        pb.set_message(format!("{name}: private generation, connecting"));
        let n = opts.max_new_tokens;
        let mut got = 0u32;
        let t = Instant::now();
        let mut on_event = |ev: ClientEvent<'_>| match ev {
            ClientEvent::Generating => {
                pb.set_message(format!("{name}: private generation, prompt pass"));
            }
            ClientEvent::Token(_) => {
                got += 1;
                pb.set_message(format!(
                    "{name}: private generation, {got}/{n} tokens ({:.1} s)",
                    t.elapsed().as_secs_f64()
                ));
            }
            _ => {}
        };
        let generation = generate(&ccfg, &opts.prompt, n, &mut on_event)
            .await
            .map_err(err)?;
        server_task.await.map_err(err)?;
        let server_report = server.reports().pop();
        runs.push(DemoRun {
            dir: dir.clone(),
            generation,
            server: server_report,
            plaintext_tokens: plain,
            plaintext_text,
        });
    }
    dealer.shutdown();
    let _ = dealer_task.await;
    pb.finish_and_clear();
    let text = render(opts, &runs);
    Ok((runs, text))
}

fn show(s: &str) -> String {
    s.replace('\n', "⏎").replace('\t', "⇥")
}

fn describe(arch: &str) -> &'static str {
    if arch.contains("LN") {
        "baseline: LayerNorm and GELU"
    } else if arch.contains("EReg") {
        "entropy-guided: softmax only, learned temperatures, entropy regularizer"
    } else {
        "softmax only"
    }
}

/// One line of the cost comparison.
fn cost_line(label: &str, values: &[u64], bytes: bool) -> String {
    let f = |v: u64| if bytes { human_bytes(v) } else { v.to_string() };
    let mut s = format!("  {label:<34}");
    for v in values {
        s.push_str(&format!(" {:>22}", f(*v)));
    }
    if let [a, b] = values
        && *b > 0
    {
        s.push_str(&format!(" {:>8.2}x", *a as f64 / *b as f64));
    }
    s.push('\n');
    s
}

/// The demo's report.
pub fn render(opts: &DemoOptions, runs: &[DemoRun]) -> String {
    let mut s = String::new();
    s.push_str(
        "privlm demo: private inference on loopback TLS (dealer, server and client in this \
         process, fresh identities)\n",
    );
    s.push_str(&format!("prompt: {}\n\n", show(&opts.prompt)));
    for r in runs {
        let g = &r.generation;
        s.push_str(&format!(
            "model {} — {} ({})\n",
            r.dir.display(),
            g.architecture,
            describe(&g.architecture)
        ));
        s.push_str(&format!("  private   : {}\n", show(&g.text)));
        s.push_str(&format!("  plaintext : {}\n", show(&r.plaintext_text)));
        let same = g.tokens == r.plaintext_tokens;
        let first_diff = g
            .tokens
            .iter()
            .zip(&r.plaintext_tokens)
            .position(|(a, b)| a != b);
        s.push_str(&match (same, first_diff) {
            (true, _) => format!("  the same {} tokens\n\n", g.tokens.len()),
            (false, Some(i)) => format!(
                "  tokens differ from position {i} on (fixed-point arithmetic: the private \
                 run follows the fixed-point mirror, which can break a near-tie otherwise)\n\n"
            ),
            (false, None) => "  different lengths\n\n".into(),
        });
    }
    if let [a, b] = runs {
        let (ga, gb) = (&a.generation, &b.generation);
        s.push_str(&format!(
            "cost of one private generation ({} prompt tokens, {} new), client-server link \
             (client's count) and dealer:\n",
            ga.prompt_tokens.len(),
            ga.tokens.len()
        ));
        s.push_str(&format!(
            "  {:<34} {:>22} {:>22} {:>9}\n",
            "", ga.architecture, gb.architecture, "ratio"
        ));
        let both = |f: &dyn Fn(&DemoRun) -> u64| [f(a), f(b)];
        let peer = |r: &DemoRun, ph: Phase| r.generation.cost.total(Some(ph)).0;
        let dealer_all = |r: &DemoRun| {
            let c = r.generation.cost.total(None).1.bytes_recv;
            let sv = r.server.as_ref().map_or(0, |x| x.total(None).1.bytes_recv);
            c + sv
        };
        s.push_str(&cost_line(
            "setup (weights), server→client",
            &both(&|r| peer(r, Phase::Setup).bytes_recv),
            true,
        ));
        s.push_str(&cost_line(
            "online, client→server",
            &both(&|r| peer(r, Phase::Online).bytes_sent),
            true,
        ));
        s.push_str(&cost_line(
            "online, server→client",
            &both(&|r| peer(r, Phase::Online).bytes_recv),
            true,
        ));
        s.push_str(&cost_line(
            "dealer → both parties",
            &both(&dealer_all),
            true,
        ));
        s.push_str(&cost_line(
            "online rounds (client's flights)",
            &both(&|r| peer(r, Phase::Online).rounds),
            false,
        ));
        let secs = |f: &dyn Fn(&CostReport) -> f64| -> String {
            format!(
                "  {:<34} {:>21.2}s {:>21.2}s {:>8.2}x\n",
                "",
                f(&ga.cost),
                f(&gb.cost),
                f(&ga.cost) / f(&gb.cost).max(1e-9)
            )
        };
        let mut line = secs(&|c| c.online_seconds);
        line.replace_range(2..36, &format!("{:<34}", "online seconds"));
        s.push_str(&line);
        let mut line = secs(&|c| c.preprocessing_seconds);
        line.replace_range(2..36, &format!("{:<34}", "preprocessing seconds"));
        s.push_str(&line);
        s.push_str(&format!(
            "  {:<34} {:>21.2}s {:>21.2}s\n",
            "wall time of the generation", ga.generation_seconds, gb.generation_seconds
        ));
        s.push_str(
            "\nPer layer: privlm-client prints the full table (see README: three machines).\n",
        );
    }
    s
}
