//! A private generation between two in-process parties, with its per-layer cost table.
//!
//! The client (P0) holds the prompt, the server (P1) a model with random weights; both run the
//! same transformer code over the secure backend, with a dealer serve loop in a third task
//! (the real `privlm-dealer` protocol over in-memory channels, so the dealer link is counted).
//! The generated tokens are checked against the fixed-point mirror.
//!
//! Run (tiny model): `cargo run --release --example private_forward`
//!
//! The GPT-2-small measurement of docs/secure.md (12 layers, d = 768, 12 heads, vocab 50257,
//! random weights, 128-token prompt, one output token; several GB of memory and minutes):
//! `cargo run --release --example private_forward -- --gpt2-small --arch SM+LN+G --prompt 128 --new 1 --no-mirror`

use std::time::Instant;

use clap::Parser;
use privlm::model::{Model, ModelConfig, Sampling, TemperatureForm};
use privlm::protocols::beaver::Prefetched;
use privlm::protocols::beaver::dealer::{DealerClient, DealerConfig, serve_session};
use privlm::protocols::channel::{Phase, mem};
use privlm::protocols::nonlinear::NlParams;
use privlm::protocols::prg::Prg;
use privlm::protocols::session::Session;
use privlm::protocols::share::Party;
use privlm::secure::{CostReport, client_generate, server_generate};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Architecture name (DESIGN.md section 7), e.g. SM+LN+G, SM+ScFuFFN, EReg(SM(t)+ScFuFFN).
    #[arg(long, default_value = "SM+LN+G")]
    arch: String,
    /// GPT-2-small shape instead of the tiny model.
    #[arg(long)]
    gpt2_small: bool,
    /// Prompt length (tokens).
    #[arg(long, default_value_t = 8)]
    prompt: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 4)]
    new: usize,
    /// Skip the comparison with the fixed-point mirror (slow at GPT-2 shape).
    #[arg(long)]
    no_mirror: bool,
    /// Also print the server's table.
    #[arg(long)]
    server_table: bool,
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn summary(r: &CostReport) -> String {
    let (setup, _) = r.total(Some(Phase::Setup));
    let (pre_p, _) = r.total(Some(Phase::Preprocessing));
    let (on_p, on_d) = r.total(Some(Phase::Online));
    let (_, all_d) = r.total(None);
    format!(
        "{}: online sent {} B, received {} B, rounds {}; preprocessing peer {} B; setup sent {} \
         B, received {} B; dealer link received {} B, sent {} B (online {} B)",
        r.party,
        on_p.bytes_sent,
        on_p.bytes_recv,
        on_p.rounds,
        pre_p.bytes_sent + pre_p.bytes_recv,
        setup.bytes_sent,
        setup.bytes_recv,
        all_d.bytes_recv,
        all_d.bytes_sent,
        on_d.bytes_recv + on_d.bytes_sent,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let arch = args.arch.parse()?;
    let config = if args.gpt2_small {
        ModelConfig::gpt2_small(arch, (args.prompt + args.new).max(1024))
    } else {
        ModelConfig {
            architecture: arch,
            n_layer: 3,
            n_head: 4,
            d_model: 32,
            d_ff: 128,
            vocab_size: 64,
            n_ctx: 64,
            final_layer_norm: true,
            layer_norm_eps: 1e-5,
            temperature_form: TemperatureForm::PerHeadQuery,
        }
    };
    let t = Instant::now();
    let model = Model::random(config.clone(), 1)?;
    eprintln!(
        "model {} built in {:.1} s",
        config.architecture,
        t.elapsed().as_secs_f64()
    );
    let prompt: Vec<u32> = (0..args.prompt)
        .map(|i| ((i * 7919 + 13) % config.vocab_size) as u32)
        .collect();

    // The dealer: its serve loop over in-memory channels, one session.
    let (d0, c0) = mem::pair();
    let (d1, c1) = mem::pair();
    let dealer = tokio::spawn(async move {
        serve_session(d0, d1, &DealerConfig::default(), &mut Prg::from_os()).await
    });
    let sid = [5u8; 32];
    let (k0, k1) = tokio::join!(
        DealerClient::connect(c0, Party::P0, sid),
        DealerClient::connect(c1, Party::P1, sid)
    );
    let (p0, p1) = mem::pair();
    let params = NlParams::default();
    let s0 = Session::new(Party::P0, p0, Prefetched::new(k0?), Prg::from_os(), params)?;
    let s1 = Session::new(Party::P1, p1, Prefetched::new(k1?), Prg::from_os(), params)?;

    // Each party in its own task (as in a deployment, where each is its own process), so
    // their local products run in parallel.
    let model = std::sync::Arc::new(model);
    let manifest = model.manifest();
    let (n_new, prompt_len) = (args.new, prompt.len());
    let t = Instant::now();
    let client = tokio::spawn({
        let prompt = prompt.clone();
        async move {
            let mut on_token = |t: u32| eprintln!("client learned token {t}");
            client_generate(s0, &manifest, &prompt, n_new, &mut on_token).await
        }
    });
    let server = tokio::spawn({
        let model = model.clone();
        async move { server_generate(s1, &model, prompt_len, n_new).await }
    });
    let (c, s) = tokio::join!(client, server);
    let (c, s) = (c??, s??);
    let wall = t.elapsed().as_secs_f64();

    println!("{}", c.report.table());
    if args.server_table {
        println!("{}", s.report.table());
    }
    println!("{}", summary(&c.report));
    println!("{}", summary(&s.report));
    println!(
        "wall {wall:.2} s (client: setup {:.2} s, preprocessing {:.2} s, online {:.2} s, planning \
         {:.2} s); peak RSS of this process (both parties and the dealer) {:.0} MiB",
        c.report.setup_seconds,
        c.report.preprocessing_seconds,
        c.report.online_seconds,
        c.report.planning_seconds,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    println!("tokens: {:?}", c.tokens);

    let (_, k0) = c.session.into_parts();
    let (_, k1) = s.session.into_parts();
    k0.into_inner().into_channel().close().await?;
    k1.into_inner().into_channel().close().await?;
    dealer.await??;

    if !args.no_mirror {
        let want = model
            .to_fixed()
            .generate(&prompt, args.new, Sampling::Greedy, 0)?;
        println!(
            "fixed-point mirror: {want:?} ({})",
            if want == c.tokens {
                "equal"
            } else {
                "DIFFERENT"
            }
        );
    }
    Ok(())
}
