//! Private generation with the real `privlm-dealer` process over loopback TLS: the client (P0)
//! and the server (P1) connect to the dealer with pinned certificates and to each other over
//! TLS, then generate tokens through the KV cache, once per architecture (one dealer session
//! each); the tokens equal the fixed-point mirror's, and the cost reports show the dealer's
//! traffic apart (preprocessing) from the online phase.

mod dealer_proc;

use std::time::Duration;

use dealer_proc::{start_dealer_sessions, temp_dir};
use privlm::model::{Model, ModelConfig, Sampling, TemperatureForm};
use privlm::protocols::beaver::Prefetched;
use privlm::protocols::beaver::dealer::DealerClient;
use privlm::protocols::channel::tls::{self, Identity, TlsListener};
use privlm::protocols::channel::{ChannelConfig, Phase};
use privlm::protocols::nonlinear::NlParams;
use privlm::protocols::prg::Prg;
use privlm::protocols::session::Session;
use privlm::protocols::share::Party;
use privlm::secure::{client_generate, server_generate};

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
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_generation_with_the_dealer_process_over_tls() {
    let dir = temp_dir("secure-dealer");
    let p0 = Identity::generate().unwrap();
    let p1 = Identity::generate().unwrap();
    let (dealer, addr, dealer_fp) =
        start_dealer_sessions(&dir, &[p0.fingerprint(), p1.fingerprint()], ARCHS.len()).await;
    let timeout = Duration::from_secs(20);
    let cfg = ChannelConfig::default();
    let listener = TlsListener::bind("127.0.0.1:0", &p1, &[p0.fingerprint()], cfg.clone())
        .await
        .unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let server_fp = p1.fingerprint();
    for (i, arch) in ARCHS.iter().enumerate() {
        let (peer0, peer1) = tokio::join!(
            tls::connect(server_addr.as_str(), &p0, server_fp, cfg.clone(), timeout),
            listener.accept()
        );
        let (peer0, (peer1, _)) = (peer0.unwrap(), peer1.unwrap());
        let session = [i as u8 + 1; 32];
        let (d0, d1) = tokio::join!(
            async {
                let ch = tls::connect(addr.as_str(), &p0, dealer_fp, cfg.clone(), timeout)
                    .await
                    .unwrap();
                DealerClient::connect(ch, Party::P0, session).await.unwrap()
            },
            async {
                let ch = tls::connect(addr.as_str(), &p1, dealer_fp, cfg.clone(), timeout)
                    .await
                    .unwrap();
                DealerClient::connect(ch, Party::P1, session).await.unwrap()
            }
        );
        let params = NlParams::default();
        let s0 = Session::new(
            Party::P0,
            peer0,
            Prefetched::new(d0),
            Prg::from_u64(1),
            params,
        )
        .unwrap();
        let s1 = Session::new(
            Party::P1,
            peer1,
            Prefetched::new(d1),
            Prg::from_u64(2),
            params,
        )
        .unwrap();

        let config = ModelConfig {
            architecture: arch.parse().unwrap(),
            n_layer: 2,
            n_head: 2,
            d_model: 16,
            d_ff: 32,
            vocab_size: 40,
            n_ctx: 12,
            final_layer_norm: true,
            layer_norm_eps: 1e-5,
            temperature_form: TemperatureForm::PerHeadQuery,
        };
        let model = Model::random(config, 3 + i as u64).unwrap();
        let prompt = [5u32, 9, 2];
        let want = model
            .to_fixed()
            .generate(&prompt, 5, Sampling::Greedy, 0)
            .unwrap();
        let manifest = model.manifest();
        let mut on_token = |_| {};
        let (c, s) = tokio::join!(
            client_generate(s0, &manifest, &prompt, 5, &mut on_token),
            server_generate(s1, &model, prompt.len(), 5)
        );
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.tokens, want, "{arch}");

        // The dealer's traffic is in preprocessing (and the setup's weight masks), none of it
        // online; the peer channel carries no preprocessing.
        let (peer_pre, dealer_pre) = s.report.total(Some(Phase::Preprocessing));
        let (_, dealer_online) = s.report.total(Some(Phase::Online));
        assert_eq!(peer_pre.bytes_sent + peer_pre.bytes_recv, 0, "{arch}");
        assert!(
            dealer_pre.bytes_recv > 0,
            "{arch}: corrections in preprocessing"
        );
        assert_eq!(
            dealer_online.bytes_recv + dealer_online.bytes_sent,
            0,
            "{arch}"
        );
        assert!(
            c.report
                .entries
                .iter()
                .any(|e| e.label.starts_with("layer1/attn/"))
        );

        // Close both dealer links so the dealer ends the session.
        let (_, k0) = c.session.into_parts();
        let (_, k1) = s.session.into_parts();
        k0.into_inner().into_channel().close().await.unwrap();
        k1.into_inner().into_channel().close().await.unwrap();
    }
    // After its --sessions, the dealer exits cleanly.
    let mut dealer = dealer;
    let status = tokio::task::spawn_blocking(move || {
        let s = dealer.0.wait();
        (s, dealer)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "dealer exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
