//! The session handshake over real loopback TLS: agreement, and every kind of disagreement
//! named on both sides.

use std::time::Duration;

use privlm::net::{
    self, HANDSHAKE_LABEL, HandshakeError, ModelManifest, PROTOCOL_VERSION, ProtocolParams,
    SessionParams,
};
use privlm::protocols::channel::tls::{self, Identity, TlsListener};
use privlm::protocols::channel::{Channel, ChannelConfig, ChannelError, FramedChannel, Phase};
use privlm::protocols::share::Party;
use privlm::protocols::trunc::TruncMode;

fn cfg() -> ChannelConfig {
    ChannelConfig {
        timeout: Duration::from_millis(800),
        ..ChannelConfig::default()
    }
}

async fn tls_pair_with(
    client: ChannelConfig,
    server: ChannelConfig,
) -> (FramedChannel, FramedChannel) {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &server_id,
        &[client_id.fingerprint()],
        server,
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(
        tls::connect(
            addr,
            &client_id,
            server_id.fingerprint(),
            client,
            Duration::from_secs(10)
        ),
        listener.accept()
    );
    (c.unwrap(), s.unwrap().0)
}

async fn tls_pair() -> (FramedChannel, FramedChannel) {
    tls_pair_with(cfg(), cfg()).await
}

fn params() -> SessionParams {
    SessionParams::new(
        16,
        ModelManifest::new("SM+LN+G")
            .with_tensor("wte", &[50257, 768])
            .with_tensor("h.0.attn.c_attn.weight", &[768, 2304]),
    )
    .with_approximation("gelu.method", "tanh")
    .with_approximation("exp.iterations", 8u32)
}

/// Runs the handshake on both sides at once (client P0, server P1).
async fn both(
    c: &mut FramedChannel,
    s: &mut FramedChannel,
    pc: &SessionParams,
    ps: &SessionParams,
) -> (
    Result<net::Agreed, HandshakeError>,
    Result<net::Agreed, HandshakeError>,
) {
    tokio::join!(
        net::handshake(c, Party::P0, pc),
        net::handshake(s, Party::P1, ps)
    )
}

fn mismatch(r: Result<net::Agreed, HandshakeError>) -> String {
    match r {
        Err(HandshakeError::Mismatch(d)) => d.to_string(),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn handshake_agrees_and_counts_setup_traffic() {
    let (mut c, mut s) = tls_pair().await;
    c.set_phase(Phase::Online);
    c.set_label("layer0");
    let p = params();
    let (rc, rs) = both(&mut c, &mut s, &p, &p).await;
    let (ac, as_) = (rc.unwrap(), rs.unwrap());
    assert_eq!(ac.hash, p.hash());
    assert_eq!(as_.hash, p.hash());
    assert_eq!((ac.peer, as_.peer), (Party::P1, Party::P0));
    // Counted under Setup / "handshake", one round each; the caller's phase/label restored.
    let sc = c.stats().get(Phase::Setup, HANDSHAKE_LABEL);
    let ss = s.stats().get(Phase::Setup, HANDSHAKE_LABEL);
    assert_eq!(sc.bytes_sent, ss.bytes_recv);
    assert_eq!(ss.bytes_sent, sc.bytes_recv);
    assert_eq!((sc.msgs_sent, sc.msgs_recv, sc.rounds), (2, 2, 1));
    assert_eq!((ss.msgs_sent, ss.msgs_recv, ss.rounds), (2, 2, 1));
    assert_eq!(c.stats().phase(), Phase::Online);
    assert_eq!(c.stats().label(), "layer0");
    // The session goes on after the handshake.
    c.send_u64s(&[1, 2, 3]).await.unwrap();
    assert_eq!(s.recv_u64s(3, "after").await.unwrap(), vec![1, 2, 3]);
}

#[tokio::test]
async fn frac_bits_mismatch_is_named_on_both_sides() {
    let (mut c, mut s) = tls_pair().await;
    let pc = params();
    let ps = SessionParams {
        frac_bits: 12,
        ..params()
    };
    let (rc, rs) = both(&mut c, &mut s, &pc, &ps).await;
    assert_eq!(
        mismatch(rc),
        "fixed-point fractional bits differ: ours 16, peer 12"
    );
    assert_eq!(
        mismatch(rs),
        "fixed-point fractional bits differ: ours 12, peer 16"
    );
    // Both channels are over.
    assert!(matches!(
        c.recv_u64s(1, "x").await.unwrap_err(),
        ChannelError::Aborted(ref m) if m.contains("fractional bits")
    ));
    assert!(s.send_u64s(&[1]).await.is_err());
}

#[tokio::test]
async fn manifest_and_approximation_mismatches_are_named() {
    let (mut c, mut s) = tls_pair().await;
    let pc = params();
    let mut ps = params();
    ps.manifest.tensors[1].shape = vec![768, 768];
    let (rc, rs) = both(&mut c, &mut s, &pc, &ps).await;
    assert_eq!(
        mismatch(rc),
        "shape of model tensor `h.0.attn.c_attn.weight` differs: ours [768, 2304], peer [768, 768]"
    );
    assert_eq!(
        mismatch(rs),
        "shape of model tensor `h.0.attn.c_attn.weight` differs: ours [768, 768], peer [768, 2304]"
    );

    let (mut c, mut s) = tls_pair().await;
    let ps = params().with_approximation("gelu.method", "piecewise");
    let (rc, rs) = both(&mut c, &mut s, &pc, &ps).await;
    assert_eq!(
        mismatch(rc),
        "approximation setting `gelu.method` differs: ours \"tanh\", peer \"piecewise\""
    );
    assert!(mismatch(rs).contains("ours \"piecewise\", peer \"tanh\""));

    let (mut c, mut s) = tls_pair().await;
    let ps = SessionParams {
        manifest: ModelManifest::new("SM+ScFuFFN"),
        ..params()
    };
    let (rc, rs) = both(&mut c, &mut s, &pc, &ps).await;
    assert_eq!(
        mismatch(rc),
        "model architecture differs: ours \"SM+LN+G\", peer \"SM+ScFuFFN\""
    );
    assert!(mismatch(rs).starts_with("model architecture differs"));
}

#[tokio::test]
async fn truncation_mode_mismatch_is_named() {
    let (mut c, mut s) = tls_pair().await;
    let pc = params();
    let ps = params().with_protocol(ProtocolParams {
        trunc_mode: TruncMode::Local,
        ..ProtocolParams::default()
    });
    let (rc, rs) = both(&mut c, &mut s, &pc, &ps).await;
    assert_eq!(
        mismatch(rc),
        "truncation mode differs: ours dealer-assisted, peer local"
    );
    assert_eq!(
        mismatch(rs),
        "truncation mode differs: ours local, peer dealer-assisted"
    );
}

/// A peer speaking another protocol version: we name the versions; the peer gets our abort.
#[tokio::test]
async fn version_mismatch_is_named_on_both_sides() {
    let (mut c, mut s) = tls_pair().await;
    let p = params();
    let fake_peer = async {
        let mut pre = Vec::from(net::MAGIC);
        pre.extend_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        s.send_bytes(&pre).await.unwrap();
        s.send_msg(&"a future hello format").await.unwrap();
        s.recv_bytes_bounded(1 << 20).await
    };
    let (rc, rs) = tokio::join!(net::handshake(&mut c, Party::P0, &p), fake_peer);
    assert_eq!(
        mismatch(rc),
        format!(
            "protocol version differs: ours {PROTOCOL_VERSION}, peer {}",
            PROTOCOL_VERSION + 1
        )
    );
    // The fake peer first receives our preamble, then our hello, then the abort.
    assert_eq!(rs.unwrap().len(), 8);
    let hello = s.recv_bytes_bounded(1 << 20).await.unwrap();
    assert!(!hello.is_empty());
    let e = s.recv_bytes_bounded(1 << 20).await.unwrap_err();
    assert!(
        matches!(e, ChannelError::PeerAborted(ref m) if m.contains("protocol version differs")),
        "{e}"
    );
}

#[tokio::test]
async fn same_role_and_frame_limits_are_refused() {
    let (mut c, mut s) = tls_pair().await;
    let p = params();
    let (rc, rs) = tokio::join!(
        net::handshake(&mut c, Party::P0, &p),
        net::handshake(&mut s, Party::P0, &p)
    );
    for r in [rc, rs] {
        assert!(
            matches!(r, Err(HandshakeError::Incompatible(ref m)) if m.contains("both parties claim the role P0")),
            "{r:?}"
        );
    }
    let small = ChannelConfig {
        max_frame_len: 1 << 16,
        ..cfg()
    };
    let (mut c, mut s) = tls_pair_with(small, cfg()).await;
    let (rc, rs) = both(&mut c, &mut s, &p, &p).await;
    for r in [rc, rs] {
        assert!(
            matches!(r, Err(HandshakeError::Incompatible(ref m)) if m.contains("65536") && m.contains("1048576")),
            "{r:?}"
        );
    }
}

/// A peer that is not privlm, or sends a hello of the wrong type: clear errors, no panic.
#[tokio::test]
async fn bad_preamble_and_malformed_hello_abort() {
    let (mut c, mut s) = tls_pair().await;
    let p = params();
    let fake_peer = async {
        s.send_bytes(b"GET / HT").await.unwrap();
        s.recv_bytes_bounded(1 << 20).await
    };
    let (rc, _) = tokio::join!(net::handshake(&mut c, Party::P0, &p), fake_peer);
    assert!(
        matches!(rc, Err(HandshakeError::Incompatible(ref m)) if m.contains("not a privlm party")),
        "{rc:?}"
    );

    let (mut c, mut s) = tls_pair().await;
    let fake_peer = async {
        let mut pre = Vec::from(net::MAGIC);
        pre.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        s.send_bytes(&pre).await.unwrap();
        s.send_msg(&(1u8, "not a hello")).await.unwrap();
        let _ = s.recv_bytes_bounded(1 << 20).await; // our preamble
        let _ = s.recv_bytes_bounded(1 << 20).await; // our hello
        s.recv_bytes_bounded(1 << 20).await
    };
    let (rc, rs) = tokio::join!(net::handshake(&mut c, Party::P0, &p), fake_peer);
    assert!(
        matches!(rc, Err(HandshakeError::Channel(ChannelError::Aborted(ref m))) if m.contains("handshake hello")),
        "{rc:?}"
    );
    assert!(
        matches!(rs, Err(ChannelError::PeerAborted(ref m)) if m.contains("handshake hello")),
        "{rs:?}"
    );
}

/// A hello over `MAX_HELLO_LEN` is refused as soon as its frames exceed the bound, and bytes
/// that announce a 2^62-byte length are refused without allocating it (the string case,
/// a fuzzing finding, is replayed by `tests/fuzz_replay.rs` and tested in the channel).
#[tokio::test]
async fn oversized_and_hostile_hellos_are_refused() {
    let p = params();
    let mut pre = Vec::from(net::MAGIC);
    pre.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    // A role byte, then a 2^62 length announced in 9 bytes (bincode varint).
    let mut hostile = vec![0u8];
    hostile.push(0xfd);
    hostile.extend_from_slice(&(1u64 << 62).to_le_bytes());
    for (hello, want) in [
        (vec![0u8; net::MAX_HELLO_LEN + 1], "exceeds the limit"),
        (hostile, "cannot decode message"),
    ] {
        let (mut c, mut s) = tls_pair().await;
        let pre = pre.clone();
        let fake_peer = async move {
            s.send_bytes(&pre).await.unwrap();
            s.send_bytes(&hello).await.unwrap();
            let _ = s.recv_bytes_bounded(1 << 20).await; // our preamble
            let _ = s.recv_bytes_bounded(1 << 20).await; // our hello
            s.recv_bytes_bounded(1 << 20).await
        };
        let (rc, rs) = tokio::join!(net::handshake(&mut c, Party::P0, &p), fake_peer);
        let rc = rc.unwrap_err().to_string();
        assert!(rc.contains(want), "{rc}");
        assert!(
            matches!(rs, Err(ChannelError::PeerAborted(ref m)) if m.contains(want)),
            "{rs:?}"
        );
    }
}

#[tokio::test]
async fn silent_peer_times_out_in_the_handshake() {
    let (mut c, _s) = tls_pair().await;
    let r = net::handshake(&mut c, Party::P0, &params()).await;
    assert!(
        matches!(r, Err(HandshakeError::Channel(ChannelError::Timeout(_)))),
        "{r:?}"
    );
}
