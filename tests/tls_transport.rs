//! The TCP + TLS 1.3 transport over real loopback sockets (127.0.0.1): large exchanges with
//! exact byte counters, certificate pinning, and every kind of bad input from the peer.

use std::path::PathBuf;
use std::time::Duration;

use privlm::protocols::channel::tls::{self, Fingerprint, Identity, TlsError, TlsListener};
use privlm::protocols::channel::{Channel, ChannelConfig, ChannelError, FramedChannel, Phase};
use privlm::protocols::prg::Prg;
use privlm::protocols::ring::RingTensor;
use rand_core::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(10);

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("privlm-tls-{tag}-{}-{nanos}", std::process::id()))
}

fn small_timeout() -> ChannelConfig {
    ChannelConfig {
        timeout: Duration::from_millis(500),
        ..ChannelConfig::default()
    }
}

/// A connected (client, server) pair of TLS channels over loopback.
async fn tls_pair(cfg: ChannelConfig) -> (FramedChannel, FramedChannel) {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &server_id,
        &[client_id.fingerprint()],
        cfg.clone(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        tls::connect(addr, &client_id, server_id.fingerprint(), cfg, T),
        listener.accept()
    );
    let (server, peer) = server.unwrap();
    assert_eq!(peer.fingerprint, client_id.fingerprint());
    (client.unwrap(), server)
}

/// A framed server channel facing a raw TLS client stream the test writes bytes into.
async fn raw_client_pair(cfg: ChannelConfig) -> (tls::TlsStream, FramedChannel) {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let listener = TlsListener::bind("127.0.0.1:0", &server_id, &[client_id.fingerprint()], cfg)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        tls::connect_stream(addr, &client_id, server_id.fingerprint(), T),
        listener.accept()
    );
    (client.unwrap(), server.unwrap().0)
}

/// Reads everything the channel sent to a raw stream and decodes an abort frame, if any.
async fn read_abort_frame(raw: &mut tls::TlsStream) -> Option<String> {
    let mut hdr = [0u8; 4];
    raw.read_exact(&mut hdr).await.ok()?;
    let h = u32::from_le_bytes(hdr);
    if h & (1 << 30) == 0 {
        return None;
    }
    let mut text = vec![0u8; (h & 0xff_ffff) as usize];
    raw.read_exact(&mut text).await.ok()?;
    Some(String::from_utf8_lossy(&text).into_owned())
}

/// 64 MiB of ring elements over TLS, chunked into 1 MiB frames; counters match exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tensor_over_tls_counts_exact_bytes() {
    let n = 8 << 20; // 8 Mi elements = 64 MiB
    let mut rng = Prg::from_u64(7);
    let data: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    let (mut a, mut b) = tls_pair(ChannelConfig::default()).await;
    for ch in [&mut a, &mut b] {
        ch.set_phase(Phase::Online);
        ch.set_label("big");
    }
    let expected = data.clone();
    let sender = tokio::spawn(async move {
        a.send_u64s(&data).await.unwrap();
        a.flush().await.unwrap();
        a
    });
    let got = b.recv_u64s(n, "big").await.unwrap();
    assert!(got == expected, "payload differs");
    let a = sender.await.unwrap();
    let frames = (8 * n).div_ceil(ChannelConfig::default().max_frame_len) as u64;
    assert_eq!(frames, 64);
    let wire = 8 * n as u64 + 4 * frames;
    let sa = a.stats().get(Phase::Online, "big");
    let sb = b.stats().get(Phase::Online, "big");
    assert_eq!(sa.bytes_sent, wire);
    assert_eq!(sb.bytes_recv, wire);
    assert_eq!(
        (sa.msgs_sent, sb.msgs_recv, sa.rounds, sb.rounds),
        (1, 1, 1, 0)
    );
    a.close().await.unwrap();
}

/// A tensor one element past a frame boundary, both directions at once (no deadlock), and
/// a tensor of exactly one frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_tensors_around_frame_boundaries() {
    let (mut a, mut b) = tls_pair(ChannelConfig::default()).await;
    let mut rng = Prg::from_u64(8);
    let per_frame = ChannelConfig::default().max_frame_len / 8;
    let x = RingTensor::random(&[4 * per_frame + 1], &mut rng);
    let y = RingTensor::random(&[per_frame], &mut rng);
    let (x2, y2) = (x.clone(), y.clone());
    let sx = x.shape().to_vec();
    let sy = y.shape().to_vec();
    let ta = tokio::spawn(async move {
        a.send_tensor(&x2).await.unwrap();
        a.recv_tensor(&sy, "y").await.unwrap()
    });
    let tb = tokio::spawn(async move {
        b.send_tensor(&y2).await.unwrap();
        b.recv_tensor(&sx, "x").await.unwrap()
    });
    assert_eq!(ta.await.unwrap(), y);
    assert_eq!(tb.await.unwrap(), x);
}

#[tokio::test]
async fn identities_persist_and_pinning_accepts_them() {
    let (dc, ds) = (temp_dir("client"), temp_dir("server"));
    let client_id = Identity::load_or_create(&dc).unwrap();
    let server_id = Identity::load_or_create(&ds).unwrap();
    // Reloaded identities have the same fingerprints and still connect.
    let client_id2 = Identity::load_or_create(&dc).unwrap();
    assert_eq!(client_id.fingerprint(), client_id2.fingerprint());
    let pin: Fingerprint = server_id.fingerprint().to_hex().parse().unwrap();
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &server_id,
        &[client_id.fingerprint()],
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(
        tls::connect(addr, &client_id2, pin, ChannelConfig::default(), T),
        listener.accept()
    );
    let (mut c, mut s) = (c.unwrap(), s.unwrap().0);
    c.send_msg(&"hello".to_string()).await.unwrap();
    assert_eq!(s.recv_msg::<String>("greeting").await.unwrap(), "hello");
    std::fs::remove_dir_all(dc).unwrap();
    std::fs::remove_dir_all(ds).unwrap();
}

/// The client pins a certificate the server does not have: both sides fail the handshake.
#[tokio::test]
async fn client_refuses_unpinned_server_certificate() {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let impostor = Identity::generate().unwrap();
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &server_id,
        &[client_id.fingerprint()],
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(
        tls::connect(
            addr,
            &client_id,
            impostor.fingerprint(),
            ChannelConfig::default(),
            T
        ),
        listener.accept()
    );
    let ce = c.unwrap_err();
    let msg = ce.to_string();
    assert!(matches!(ce, TlsError::Handshake { .. }), "{ce}");
    assert!(
        msg.contains("not pinned")
            && msg.contains(&server_id.fingerprint().to_hex())
            && msg.contains(&impostor.fingerprint().to_hex()),
        "{msg}"
    );
    let se = s.unwrap_err();
    assert!(matches!(se, TlsError::Handshake { .. }), "{se}");
    // The listener keeps working after a failed handshake.
    let (c, s) = tokio::join!(
        tls::connect(
            addr,
            &client_id,
            server_id.fingerprint(),
            ChannelConfig::default(),
            T
        ),
        listener.accept()
    );
    c.unwrap();
    s.unwrap();
}

/// The server pins a different client: the server refuses, and the client learns it in
/// `connect` (thanks to the ready byte), not at its first receive.
#[tokio::test]
async fn server_refuses_unpinned_client_certificate() {
    let client_id = Identity::generate().unwrap();
    let server_id = Identity::generate().unwrap();
    let expected_client = Identity::generate().unwrap();
    let listener = TlsListener::bind(
        "127.0.0.1:0",
        &server_id,
        &[expected_client.fingerprint()],
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(
        tls::connect(
            addr,
            &client_id,
            server_id.fingerprint(),
            ChannelConfig::default(),
            T
        ),
        listener.accept()
    );
    let se = s.unwrap_err();
    assert!(
        se.to_string().contains("not pinned")
            && se.to_string().contains(&client_id.fingerprint().to_hex()),
        "{se}"
    );
    let ce = c.unwrap_err();
    assert!(matches!(ce, TlsError::Handshake { .. }), "{ce}");
    assert!(
        ce.to_string().to_lowercase().contains("alert"),
        "client error should carry the server's alert: {ce}"
    );
}

#[tokio::test]
async fn connect_errors_and_timeouts() {
    let id = Identity::generate().unwrap();
    // Nobody listens on this port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = tls::connect(
        format!("127.0.0.1:{port}"),
        &id,
        id.fingerprint(),
        ChannelConfig::default(),
        T,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TlsError::Connect { .. }), "{e}");
    // A server that accepts TCP but never speaks TLS: the handshake times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(s);
    });
    let e = tls::connect(
        addr,
        &id,
        id.fingerprint(),
        ChannelConfig::default(),
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TlsError::HandshakeTimeout { .. }), "{e}");
    hold.abort();
    // A client that connects but never starts TLS: the listener's handshake times out.
    let mut listener = TlsListener::bind(
        "127.0.0.1:0",
        &id,
        &[id.fingerprint()],
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    listener.set_handshake_timeout(Duration::from_millis(300));
    let addr = listener.local_addr().unwrap();
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let e = listener.accept().await.unwrap_err();
    assert!(matches!(e, TlsError::HandshakeTimeout { .. }), "{e}");
}

#[tokio::test]
async fn frame_over_limit_is_refused_and_reported_to_the_peer() {
    let (mut raw, mut ch) = raw_client_pair(small_timeout()).await;
    // Announce a 16 MiB - 1 frame against the 1 MiB limit; send no payload.
    raw.write_all(&((1u32 << 24) - 1).to_le_bytes())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    let e = ch.recv_u64s(4, "x").await.unwrap_err();
    assert_eq!(
        e,
        ChannelError::FrameTooLarge {
            len: (1 << 24) - 1,
            max: 1 << 20
        }
    );
    assert_eq!(ch.recv_u64s(1, "y").await.unwrap_err(), e, "sticky");
    let reason = read_abort_frame(&mut raw).await.expect("an abort frame");
    assert!(reason.contains("exceeds the limit"), "{reason}");
}

#[tokio::test]
async fn reserved_header_bits_are_refused() {
    let (mut raw, mut ch) = raw_client_pair(small_timeout()).await;
    raw.write_all(&(1u32 << 28).to_le_bytes()).await.unwrap();
    raw.flush().await.unwrap();
    let e = ch.recv_bytes_bounded(1000).await.unwrap_err();
    assert!(matches!(e, ChannelError::BadHeader(_)), "{e}");
    let reason = read_abort_frame(&mut raw).await.expect("an abort frame");
    assert!(reason.contains("malformed frame header"), "{reason}");
}

#[tokio::test]
async fn truncated_frame_is_reported() {
    // The peer closes the TLS session cleanly (close_notify) in the middle of a frame.
    let (mut raw, mut ch) = raw_client_pair(small_timeout()).await;
    raw.write_all(&100u32.to_le_bytes()).await.unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    raw.shutdown().await.unwrap();
    let e = ch.recv_bytes_bounded(1000).await.unwrap_err();
    assert_eq!(
        e,
        ChannelError::Truncated {
            expected: 100,
            got: 10
        }
    );
    // The peer drops the TCP connection without close_notify: a transport error that says so.
    let (mut raw, mut ch) = raw_client_pair(small_timeout()).await;
    raw.write_all(&100u32.to_le_bytes()).await.unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    raw.flush().await.unwrap();
    raw.get_mut().0.shutdown().await.unwrap();
    drop(raw);
    let e = ch.recv_bytes_bounded(1000).await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Io(ref m) if m.contains("connection was cut")
            && m.contains("close_notify") && !m.contains("https://")),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_message_type_aborts_both_sides() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Expected {
        a: u64,
        b: String,
    }
    let (mut a, mut b) = tls_pair(small_timeout()).await;
    a.send_msg(&7u8).await.unwrap();
    let e = b.recv_msg::<Expected>("hello").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("hello") && m.contains("decode")),
        "{e}"
    );
    let e = a.recv_u64s(1, "next").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::PeerAborted(ref m) if m.contains("hello")),
        "{e}"
    );
}

#[tokio::test]
async fn wrong_length_aborts_both_sides() {
    let (mut a, mut b) = tls_pair(small_timeout()).await;
    a.send_u64s(&[1, 2, 3]).await.unwrap();
    let e = b.recv_u64s(2, "openings").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("openings") && m.contains("expected 16")),
        "{e}"
    );
    let e = a.recv_u64s(1, "next").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::PeerAborted(ref m) if m.contains("openings")),
        "{e}"
    );
}

#[tokio::test]
async fn tensor_shape_mismatch_aborts_both_sides() {
    let (mut a, mut b) = tls_pair(small_timeout()).await;
    a.send_tensor(&RingTensor::zeros(&[4, 2])).await.unwrap();
    let e = b.recv_tensor(&[2, 4], "activations").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("[2, 4]") && m.contains("[4, 2]")),
        "{e}"
    );
    let e = a.recv_u64s(1, "next").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::PeerAborted(ref m) if m.contains("activations")),
        "{e}"
    );
}

#[tokio::test]
async fn silent_peer_hits_the_timeout() {
    let (mut a, b) = tls_pair(small_timeout()).await;
    let start = std::time::Instant::now();
    let e = a.recv_u64s(1, "x").await.unwrap_err();
    assert_eq!(e, ChannelError::Timeout(Duration::from_millis(500)));
    assert!(start.elapsed() >= Duration::from_millis(500));
    // The peer that stayed silent sees the session end when the timed-out side goes away.
    drop(a);
    let mut b = b;
    let e = b.recv_u64s(1, "y").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Closed | ChannelError::Io(_)),
        "{e}"
    );
}

#[tokio::test]
async fn peer_close_is_reported() {
    let (a, mut b) = tls_pair(small_timeout()).await;
    a.close().await.unwrap();
    let e = b.recv_u64s(1, "x").await.unwrap_err();
    assert_eq!(e, ChannelError::Closed);
}

/// LOCAL knobs at their extremes (tiny frames, no write buffer, queues of one frame) change
/// only the framing overhead, never the data; simultaneous sends still do not deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_knobs_at_extremes_keep_results() {
    let tiny = ChannelConfig {
        max_frame_len: 4096,
        write_buffer_len: 1,
        read_queue_frames: 1,
        write_queue_frames: 1,
        ..ChannelConfig::default()
    };
    let (mut a, mut b) = tls_pair(tiny).await;
    let mut rng = Prg::from_u64(9);
    let n = (1 << 17) + 3; // 1 MiB + 24 bytes: 257 frames of 4 KiB
    let x = RingTensor::random(&[n], &mut rng);
    let y = RingTensor::random(&[3, n], &mut rng);
    let (x2, y2) = (x.clone(), y.clone());
    let ta = tokio::spawn(async move {
        a.send_tensor(&x2).await.unwrap();
        let got = a.recv_tensor(&[3, n], "y").await.unwrap();
        a.flush().await.unwrap();
        (got, a.stats().total())
    });
    let tb = tokio::spawn(async move {
        b.send_tensor(&y2).await.unwrap();
        let got = b.recv_tensor(&[n], "x").await.unwrap();
        (got, b.stats().total())
    });
    let ((gy, ca), (gx, cb)) = (ta.await.unwrap(), tb.await.unwrap());
    assert_eq!(gx, x);
    assert_eq!(gy, y);
    // Shape message (1 + 8 bytes, one frame) plus elements in 4 KiB frames.
    let wire = |elems: usize, rank: usize| {
        (1 + 8 * rank + 4) as u64 + (8 * elems) as u64 + 4 * (8 * elems).div_ceil(4096) as u64
    };
    assert_eq!(ca.bytes_sent, wire(n, 1));
    assert_eq!(cb.bytes_recv, wire(n, 1));
    assert_eq!(cb.bytes_sent, wire(3 * n, 2));
    assert_eq!(ca.bytes_recv, wire(3 * n, 2));
}
