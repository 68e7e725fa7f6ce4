//! Issue 16, the load check at test size (the benchmark-sized one is `privlm-bench load`; both
//! are `privlm::serve::load::run_load`): one `privlm-dealer` and one `privlm-server` (session
//! limit 2) on the shipped `sm_ln_g`, then 1, 2 and 3 concurrent `privlm-client` processes,
//! then 1 again. Every client within the limit generates the fixed-point mirror's tokens; the
//! third of the round beyond the limit is refused with the server's "busy" reason (counted,
//! not a failure); a client after that is served again. Prints the report's table with
//! `cargo test --release --test serve_load -- --nocapture`.

use std::path::Path;
use std::time::Duration;

use privlm::model::{Model, Sampling};
use privlm::serve::load::{Binaries, LoadConfig, ModelSource, Outcome, run_load};

const PROMPT: &str = "def ";
const TOKENS: u32 = 2;
const LIMIT: usize = 2;

fn mirror_tokens(model: &Path) -> Vec<u32> {
    let m = Model::load(model).unwrap();
    let ids: Vec<u32> = PROMPT.bytes().map(u32::from).collect();
    m.to_fixed()
        .generate(&ids, TOKENS as usize, Sampling::Greedy, 0)
        .unwrap()
}

#[test]
fn concurrent_clients_and_busy_beyond_the_limit() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sm_ln_g");
    let want = mirror_tokens(&model);
    let cfg = LoadConfig {
        binaries: Binaries {
            dealer: env!("CARGO_BIN_EXE_privlm-dealer").into(),
            server: env!("CARGO_BIN_EXE_privlm-server").into(),
            client: env!("CARGO_BIN_EXE_privlm-client").into(),
        },
        model: ModelSource::Dir(model),
        rounds: vec![1, 2, LIMIT + 1, 1],
        max_sessions: LIMIT,
        prompt: PROMPT.into(),
        new_tokens: TOKENS,
        session_timeout: Duration::from_secs(60),
    };
    let mut ended = 0;
    let report = run_load(&cfg, &mut |ev| {
        if let privlm::serve::load::LoadEvent::SessionEnded(_) = ev {
            ended += 1;
        }
    })
    .unwrap();
    eprintln!("\n{}", report.text());
    assert_eq!(ended, 1 + 2 + 3 + 1, "one event per client");
    assert_eq!(report.model, "sm_ln_g");
    assert_eq!(report.architecture, "SM+LN+G");
    let counts: Vec<(usize, usize, usize, usize)> = report
        .rounds
        .iter()
        .map(|r| (r.clients, r.ok, r.busy, r.failed))
        .collect();
    assert_eq!(
        counts,
        [(1, 1, 0, 0), (2, 2, 0, 0), (3, 2, 1, 0), (1, 1, 0, 0)],
        "{:#?}",
        report
            .rounds
            .iter()
            .flat_map(|r| r.sessions.iter().filter_map(|s| s.message.clone()))
            .collect::<Vec<_>>()
    );
    for r in &report.rounds {
        assert_eq!(r.staged, r.clients > LIMIT);
        let lat = r.latency.expect("latencies of the served sessions");
        assert!(0.0 < lat.p50 && lat.p50 <= lat.p90 && lat.p99 <= lat.max);
        assert!(r.sessions_per_sec > 0.0 && r.tokens_per_sec > 0.0);
        for p in [
            r.server_peak_rss_kib,
            r.dealer_peak_rss_kib,
            r.client_peak_rss_kib,
        ] {
            assert!(p.unwrap() > 1024, "peak RSS {p:?} KiB");
        }
        let b = r.bytes_per_session.expect("bytes of a served session");
        assert!(b.client_to_server > 0 && b.server_to_client > 0 && b.dealer_to_client > 0);
        for s in &r.sessions {
            match s.outcome {
                Outcome::Ok => assert_eq!(s.tokens, want, "{} clients", r.clients),
                Outcome::Busy => {
                    let m = s.message.as_deref().unwrap();
                    assert!(
                        m.contains(&format!("busy: this server already runs {LIMIT} sessions")),
                        "{m}"
                    );
                    assert!(s.seconds < 10.0, "refused after {} s", s.seconds);
                }
                Outcome::Failed => unreachable!(),
            }
        }
    }
    // The table and the CSV carry every round.
    let text = report.text();
    assert!(text.contains("3*") && text.contains("sess/s"), "{text}");
    let csv = report.csv();
    assert_eq!(csv.lines().count(), 1 + report.rounds.len(), "{csv}");
    assert!(
        csv.lines().nth(3).unwrap().contains(",3,true,2,1,0,"),
        "{csv}"
    );
}
