//! Every nonlinear op against the real `privlm-dealer` process over loopback TLS: the client
//! (P0) and the server (P1) each connect to the dealer with a pinned certificate and to each
//! other over TLS, then run ReLU, GELU, causal softmax with temperatures, LayerNorm with the
//! server's gain and bias, and argmax; every result is compared with the plain backend.

mod dealer_proc;

use std::time::Duration;

use dealer_proc::{start_dealer_sessions, temp_dir};
use privlm::protocols::beaver::dealer::DealerClient;
use privlm::protocols::channel::tls::{self, Identity, TlsListener};
use privlm::protocols::channel::{ChannelConfig, FramedChannel};
use privlm::protocols::nonlinear::{self, Mask, NlParams, NormParams, ServerVector, plain_ops};
use privlm::protocols::prg::Prg;
use privlm::protocols::ring::RingTensor;
use privlm::protocols::session::Session;
use privlm::protocols::share::{AShare, Party, reconstruct, split};
use rand_core::Rng;

type S = Session<FramedChannel, DealerClient<FramedChannel>>;

fn enc(x: f64) -> u64 {
    NlParams::default().enc(x)
}

fn uniform(rng: &mut Prg, lo: f64, hi: f64) -> f64 {
    lo + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
}

fn units(a: &RingTensor, b: &RingTensor) -> u64 {
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (*x as i64).wrapping_sub(*y as i64).unsigned_abs())
        .max()
        .unwrap_or(0)
}

/// One party's whole run; returns the outputs it holds (shares, and argmax's index).
async fn party(
    mut s: S,
    xs: [AShare; 4],
    temps: Vec<f64>,
    gain: Option<Vec<u64>>,
    bias: Option<Vec<u64>>,
) -> (Vec<AShare>, Option<usize>, S) {
    let [act, logits, ln, vocab] = xs;
    let mut out = Vec::new();
    out.push(nonlinear::relu(&mut s, &act).await.unwrap());
    out.push(nonlinear::gelu(&mut s, &act).await.unwrap());
    out.push(
        nonlinear::softmax(&mut s, &logits, Mask::Causal, Some(&temps))
            .await
            .unwrap(),
    );
    let d = ln.shape()[1];
    let g = nonlinear::setup_server_vector(&mut s, 7, d, gain.as_deref())
        .await
        .unwrap();
    let norm = NormParams {
        gain: g,
        bias,
        eps: 1e-5,
    };
    out.push(nonlinear::layer_norm(&mut s, &ln, &norm).await.unwrap());
    let idx = nonlinear::argmax(&mut s, &vocab, Party::P0).await.unwrap();
    (out, idx, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_op_with_the_dealer_process_over_tls() {
    let dir = temp_dir("nonlinear-dealer");
    let p0 = Identity::generate().unwrap();
    let p1 = Identity::generate().unwrap();
    let (dealer, addr, dealer_fp) =
        start_dealer_sessions(&dir, &[p0.fingerprint(), p1.fingerprint()], 1).await;
    let timeout = Duration::from_secs(20);
    let cfg = ChannelConfig::default();
    // The server listens for the client (TLS, pinned both ways).
    let listener = TlsListener::bind("127.0.0.1:0", &p1, &[p0.fingerprint()], cfg.clone())
        .await
        .unwrap();
    let server_addr = listener.local_addr().unwrap().to_string();
    let server_fp = p1.fingerprint();
    let (peer0, peer1) = tokio::join!(
        tls::connect(server_addr.as_str(), &p0, server_fp, cfg.clone(), timeout),
        listener.accept()
    );
    let (peer0, (peer1, _)) = (peer0.unwrap(), peer1.unwrap());
    let session = [9u8; 32];
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
    let s0 = Session::new(Party::P0, peer0, d0, Prg::from_u64(1), params).unwrap();
    let s1 = Session::new(Party::P1, peer1, d1, Prg::from_u64(2), params).unwrap();

    // Inputs.
    let mut rng = Prg::from_u64(77);
    let act: Vec<u64> = (0..500)
        .map(|_| enc(uniform(&mut rng, -6.0, 6.0)))
        .collect();
    let lshape = [2usize, 8, 8];
    let logits: Vec<u64> = (0..128)
        .map(|_| enc(uniform(&mut rng, -9.0, 9.0)))
        .collect();
    let temps: Vec<f64> = (0..16).map(|i| 0.5 + 0.25 * i as f64).collect();
    let (rows, d) = (4usize, 32usize);
    let ln: Vec<u64> = (0..rows * d)
        .map(|i| enc(uniform(&mut rng, -3.0, 3.0) * (1 + i / d) as f64))
        .collect();
    let gain: Vec<u64> = (0..d).map(|_| enc(uniform(&mut rng, 0.2, 2.0))).collect();
    let bias: Vec<u64> = (0..d).map(|_| enc(uniform(&mut rng, -1.0, 1.0))).collect();
    let vocab: Vec<u64> = (0..3000)
        .map(|_| enc(uniform(&mut rng, -20.0, 20.0)))
        .collect();
    let tensors = [
        RingTensor::from_vec(&[500], act).unwrap(),
        RingTensor::from_vec(&lshape, logits).unwrap(),
        RingTensor::from_vec(&[rows, d], ln).unwrap(),
        RingTensor::from_vec(&[3000], vocab).unwrap(),
    ];
    let mut sh0 = Vec::new();
    let mut sh1 = Vec::new();
    for t in &tensors {
        let (a, b) = split(t, &mut rng);
        sh0.push(a);
        sh1.push(b);
    }
    let sh0: [AShare; 4] = sh0.try_into().unwrap();
    let sh1: [AShare; 4] = sh1.try_into().unwrap();
    let (t0, t1) = (temps.clone(), temps.clone());
    let (g1, b1) = (gain.clone(), bias.clone());
    let (r0, r1) = tokio::join!(
        tokio::spawn(party(s0, sh0, t0, None, None)),
        tokio::spawn(party(s1, sh1, t1, Some(g1), Some(b1)))
    );
    let ((o0, i0, s0), (o1, i1, s1)) = (r0.unwrap(), r1.unwrap());
    let outs: Vec<RingTensor> = o0
        .iter()
        .zip(&o1)
        .map(|(a, b)| reconstruct(a, b).unwrap())
        .collect();

    // Against the plain backend.
    assert_eq!(outs[0], plain_ops::relu(&params, &tensors[0]).unwrap());
    assert!(units(&outs[1], &plain_ops::gelu(&params, &tensors[0]).unwrap()) <= 3);
    let sm = plain_ops::softmax(&params, &tensors[1], Mask::Causal, Some(&temps)).unwrap();
    assert!(units(&outs[2], &sm) <= 8);
    let norm = NormParams {
        gain: ServerVector::plain(7, gain),
        bias: Some(bias),
        eps: 1e-5,
    };
    let lnp = plain_ops::layer_norm(&params, &tensors[2], &norm).unwrap();
    assert!(units(&outs[3], &lnp) <= 64, "{}", units(&outs[3], &lnp));
    assert_eq!(i0, Some(plain_ops::argmax(&params, &tensors[3]).unwrap()));
    assert_eq!(i1, None, "the index is revealed to P0 only");

    // Close both dealer links; with --sessions 1 the dealer then exits cleanly.
    let (_, c0) = s0.into_parts();
    let (_, c1) = s1.into_parts();
    c0.into_channel().close().await.unwrap();
    c1.into_channel().close().await.unwrap();
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
