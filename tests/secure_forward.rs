//! The secure forward pass between two in-process parties (in-memory channels, the in-process
//! dealer) against the fixed-point mirror: every architecture generates the mirror's tokens
//! through the KV cache, logits stay within the documented bound, rounds per layer do not grow
//! with the number of heads, and a generation with the real `privlm-dealer` process over
//! loopback TLS.

use privlm::model::ops::{ForwardOptions, KvCache, TensorOps, Tokens, forward, prepare_weights};
use privlm::model::{Model, ModelConfig, Sampling, TemperatureForm};
use privlm::protocols::beaver::{InsecureIdealDealer, Prefetched};
use privlm::protocols::channel::{FramedChannel, Phase, mem};
use privlm::protocols::nonlinear::NlParams;
use privlm::protocols::prg::Prg;
use privlm::protocols::session::Session;
use privlm::protocols::share::Party;
use privlm::secure::{
    ClientOutput, CostReport, SecureOps, ServerOutput, SessionEngine, client_generate,
    server_generate,
};

type S = Session<FramedChannel, Prefetched<InsecureIdealDealer>>;

/// The documented bound (docs/secure.md): secure logits are within this of the mirror's.
const LOGIT_BOUND: f32 = 0.01;

fn small(arch: &str, heads: usize) -> ModelConfig {
    ModelConfig {
        architecture: arch.parse().unwrap(),
        n_layer: 2,
        n_head: heads,
        d_model: 32,
        d_ff: 64,
        vocab_size: 50,
        n_ctx: 16,
        final_layer_norm: true,
        layer_norm_eps: 1e-5,
        temperature_form: TemperatureForm::PerHeadQuery,
    }
}

fn sessions(seed: u64) -> (S, S) {
    let (c0, c1) = mem::pair();
    let (d0, d1) = InsecureIdealDealer::pair(seed);
    let p = NlParams::default();
    let s0 = Session::new(
        Party::P0,
        c0,
        Prefetched::new(d0),
        Prg::from_u64(seed ^ 1),
        p,
    )
    .unwrap();
    let s1 = Session::new(
        Party::P1,
        c1,
        Prefetched::new(d1),
        Prg::from_u64(seed ^ 2),
        p,
    )
    .unwrap();
    (s0, s1)
}

async fn generate_pair(
    model: &Model,
    prompt: &[u32],
    n: usize,
    seed: u64,
) -> (Vec<u32>, CostReport, CostReport) {
    let (s0, s1) = sessions(seed);
    let manifest = model.manifest();
    let mut seen = Vec::new();
    let mut on_token = |t| seen.push(t);
    let (c, s) = tokio::join!(
        client_generate(s0, &manifest, prompt, n, &mut on_token),
        server_generate(s1, model, prompt.len(), n)
    );
    let ClientOutput { tokens, report, .. } = c.unwrap();
    let ServerOutput { report: sr, .. } = s.unwrap();
    assert_eq!(tokens, seen, "the callback saw every token in order");
    (tokens, report, sr)
}

const ARCHS: &[&str] = &[
    "SM+LN+G",
    "SM+LN+R",
    "SM+LN",
    "SM+G",
    "SM+R",
    "SM",
    "SM+ScFFN",
    "SM+ScFuFFN",
    "SM(t)+ScFuFFN",
    "EReg(SM(t)+ScFuFFN)",
    "SM+LN+G[1]",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_architecture_generates_the_mirrors_tokens() {
    let prompt = [3u32, 17, 42, 8];
    for (i, arch) in ARCHS.iter().enumerate() {
        let seed = 100 + i as u64;
        let model = Model::random(small(arch, 4), seed).unwrap();
        let want = model
            .to_fixed()
            .generate(&prompt, 6, Sampling::Greedy, 0)
            .unwrap();
        let (got, c, s) = generate_pair(&model, &prompt, 6, seed).await;
        println!("{arch}: {got:?}");
        assert_eq!(got, want, "{arch} (model seed {seed})");
        // The server sent the weights once (setup) and learned nothing but shapes.
        let (setup, _) = s.total(Some(Phase::Setup));
        assert!(setup.bytes_sent > 0, "{arch}: weights set up");
        let (online_c, _) = c.total(Some(Phase::Online));
        assert!(online_c.bytes_sent > 0 && c.pass_seconds.len() == 6);
        // What one party sends the other receives, per (phase, label).
        for e in &c.entries {
            let peer = s
                .entries
                .iter()
                .find(|x| (x.phase, &x.label) == (e.phase, &e.label));
            let (sent, recv) = peer.map_or((0, 0), |x| (x.peer.bytes_sent, x.peer.bytes_recv));
            assert_eq!(
                (e.peer.bytes_sent, e.peer.bytes_recv),
                (recv, sent),
                "{arch} {e:?}"
            );
        }
        // The report goes through JSON unchanged.
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<CostReport>(&json).unwrap(), c);
    }
}

/// One party's forward passes over `steps` (the prompt, then further tokens through the KV
/// cache) with reveal allowed; the client gets each pass's logits, the server nothing.
async fn party_logits(s: S, model: &Model, values: bool, steps: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let manifest = model.manifest();
    let cfg = model.config();
    let party = s.party();
    let mut ops = SecureOps::new(SessionEngine::new(s), &manifest).unwrap();
    ops.allow_reveal(true);
    let values = values.then(|| model.weights());
    let w = prepare_weights(&mut ops, &manifest, values).await.unwrap();
    let mut cache = KvCache::new(cfg.n_layer);
    let mut out = Vec::new();
    for step in steps {
        let tokens = match party {
            Party::P0 => Tokens::Ids(step),
            Party::P1 => Tokens::Hidden(step.len()),
        };
        let o = forward(
            &mut ops,
            cfg,
            &w,
            tokens,
            &mut cache,
            ForwardOptions::default(),
        )
        .await
        .unwrap();
        out.push(ops.reveal(&o.logits).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logits_within_the_documented_bound_of_the_mirror_through_the_kv_cache() {
    let steps: Vec<Vec<u32>> = vec![
        vec![1, 5, 9, 13, 2, 40, 33],
        vec![11],
        vec![23],
        vec![5],
        vec![47],
        vec![30],
    ];
    for (i, arch) in ["SM+LN+G", "SM+ScFuFFN", "EReg(SM(t)+ScFuFFN)"]
        .iter()
        .enumerate()
    {
        let seed = 7 + i as u64;
        let model = Model::random(small(arch, 4), seed).unwrap();
        let fixed = model.to_fixed();
        let mut fcache = fixed.new_cache();
        let (s0, s1) = sessions(seed);
        let (got, server) = tokio::join!(
            party_logits(s0, &model, false, &steps),
            party_logits(s1, &model, true, &steps)
        );
        assert!(
            server.iter().all(Vec::is_empty),
            "the server learns no logits"
        );
        let mut worst = 0f32;
        for (step, got) in steps.iter().zip(&got) {
            let want = fixed.forward_cached(step, &mut fcache, false).unwrap();
            assert_eq!(got.len(), want.data.len());
            let err = got
                .iter()
                .zip(&want.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            worst = worst.max(err);
        }
        println!("{arch}: max |secure - mirror| logit over 6 passes = {worst}");
        assert!(worst <= LOGIT_BOUND, "{arch}: {worst} > {LOGIT_BOUND}");
    }
}

/// The client's online rounds per layer label of one forward pass over `prompt`.
async fn layer_rounds(heads: usize) -> Vec<(String, u64)> {
    let model = Model::random(small("SM+LN+G", heads), 5).unwrap();
    let (_, c, _) = generate_pair(&model, &[4, 8, 15, 16, 23], 1, 5).await;
    c.entries
        .iter()
        .filter(|e| e.phase == Phase::Online && e.label.starts_with("layer"))
        .map(|e| (e.label.clone(), e.peer.rounds))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_per_layer_do_not_grow_with_heads() {
    let one = layer_rounds(1).await;
    let four = layer_rounds(4).await;
    assert!(!one.is_empty());
    assert_eq!(one, four, "rounds per label, 1 head vs 4 heads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_that_disagree_on_the_prompt_length_both_fail_without_hanging() {
    let model = Model::random(small("SM+LN+G", 2), 9).unwrap();
    let (s0, s1) = sessions(9);
    let manifest = model.manifest();
    let mut on_token = |_| {};
    let run = async {
        tokio::join!(
            client_generate(s0, &manifest, &[1, 2, 3, 4], 2, &mut on_token),
            server_generate(s1, &model, 3, 2)
        )
    };
    let (c, s) = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("no hang");
    let (ce, se) = (
        c.err().expect("client fails"),
        s.err().expect("server fails"),
    );
    println!("client: {ce}\nserver: {se}");
    assert!(se.to_string().contains("length mismatch"), "{se}");
    assert!(ce.to_string().contains("aborted"), "{ce}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_never_takes_weight_values() {
    let model = Model::random(small("SM+ScFuFFN", 2), 4).unwrap();
    let (s0, s1) = sessions(4);
    let manifest = model.manifest();
    // The client with weight values is refused before anything is sent.
    let mut ops = SecureOps::new(SessionEngine::new(s0), &manifest).unwrap();
    let e = prepare_weights(&mut ops, &manifest, Some(model.weights()))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("client must not hold"), "{e}");
    drop(s1);
}
