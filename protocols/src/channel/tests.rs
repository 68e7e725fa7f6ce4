//! Channel tests over the in-memory transport (the TLS transport has its own in `tls`).

use std::time::Duration;

use rand_core::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::prg::Prg;

fn small_timeout() -> ChannelConfig {
    ChannelConfig {
        timeout: Duration::from_millis(300),
        ..ChannelConfig::default()
    }
}

/// A framed channel facing a raw stream the test writes bytes into.
fn raw_pair(cfg: ChannelConfig) -> (FramedChannel, tokio::io::DuplexStream) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (FramedChannel::new(a, cfg), b)
}

#[tokio::test]
async fn typed_round_trips() {
    let (mut a, mut b) = mem::pair();
    let mut rng = Prg::from_u64(1);
    let t = RingTensor::random(&[3, 5], &mut rng);
    let blocks: Vec<Block> = (0..7).map(|_| Block::random(&mut rng)).collect();
    let (t2, blocks2) = (t.clone(), blocks.clone());
    let sender = tokio::spawn(async move {
        a.send_tensor(&t2).await.unwrap();
        a.send_blocks(&blocks2).await.unwrap();
        a.send_msg(&("hello".to_string(), 42u32)).await.unwrap();
        a.send_bytes(&[]).await.unwrap();
        a
    });
    assert_eq!(b.recv_tensor(&[3, 5], "t").await.unwrap(), t);
    assert_eq!(b.recv_blocks(7, "blocks").await.unwrap(), blocks);
    let m: (String, u32) = b.recv_msg("msg").await.unwrap();
    assert_eq!(m, ("hello".to_string(), 42));
    assert_eq!(b.recv_bytes_bounded(10).await.unwrap(), Vec::<u8>::new());
    sender.await.unwrap();
}

/// 64 MiB of ring elements, chunked into 1 MiB frames; counters match exactly on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tensor_counts_exact_bytes() {
    let n = 8 << 20; // 8 Mi elements = 64 MiB
    let mut rng = Prg::from_u64(2);
    let data: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
    let (mut a, mut b) = mem::pair_with(ChannelConfig::default(), 1 << 20);
    a.set_phase(Phase::Online);
    a.set_label("big");
    b.set_phase(Phase::Online);
    b.set_label("big");
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
    let wire = 8 * n as u64 + 4 * frames;
    let sa = a.stats().get(Phase::Online, "big");
    let sb = b.stats().get(Phase::Online, "big");
    assert_eq!(sa.bytes_sent, wire);
    assert_eq!(sb.bytes_recv, wire);
    assert_eq!(
        (sa.msgs_sent, sb.msgs_recv, sa.rounds, sb.rounds),
        (1, 1, 1, 0)
    );
    // Header overhead is bounded: 4 bytes per MiB.
    assert!(wire - 8 * n as u64 <= 4 * 64);
}

/// Both parties send 8 MiB before either receives: the background reader prevents a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_large_sends_do_not_deadlock() {
    let (mut a, mut b) = mem::pair();
    let n = 1 << 20;
    let x: Vec<u64> = (0..n as u64).collect();
    let y: Vec<u64> = (0..n as u64).rev().collect();
    let (x2, y2) = (x.clone(), y.clone());
    let ta = tokio::spawn(async move {
        a.send_u64s(&x2).await.unwrap();
        a.recv_u64s(n, "y").await.unwrap()
    });
    let tb = tokio::spawn(async move {
        b.send_u64s(&y2).await.unwrap();
        b.recv_u64s(n, "x").await.unwrap()
    });
    assert_eq!(ta.await.unwrap(), y);
    assert_eq!(tb.await.unwrap(), x);
}

#[tokio::test]
async fn rounds_count_direction_changes() {
    let (mut a, mut b) = mem::pair();
    // a: send, send, recv, send  -> 2 rounds; b: recv, recv, send, recv -> 1 round.
    let ta = tokio::spawn(async move {
        a.send_u64s(&[1]).await.unwrap();
        a.send_u64s(&[2]).await.unwrap();
        a.recv_u64s(1, "r").await.unwrap();
        a.send_u64s(&[3]).await.unwrap();
        a.flush().await.unwrap();
        a.stats().total()
    });
    b.recv_u64s(1, "1").await.unwrap();
    b.recv_u64s(1, "2").await.unwrap();
    b.send_u64s(&[9]).await.unwrap();
    b.recv_u64s(1, "3").await.unwrap();
    let ca = ta.await.unwrap();
    assert_eq!(ca.rounds, 2);
    assert_eq!(b.stats().total().rounds, 1);
    assert_eq!(ca.msgs_sent, 3);
    assert_eq!(ca.bytes_sent, 3 * 12);
}

#[tokio::test]
async fn frame_over_limit_is_refused_without_allocating() {
    let (mut ch, mut raw) = raw_pair(small_timeout());
    // Announce a 16 MiB - 1 frame against the 1 MiB limit; send no payload.
    raw.write_all(&((1u32 << 24) - 1).to_le_bytes())
        .await
        .unwrap();
    let e = ch.recv_u64s(4, "x").await.unwrap_err();
    assert!(matches!(e, ChannelError::FrameTooLarge { .. }), "{e}");
    // Sticky: the next call fails the same way.
    assert_eq!(ch.recv_u64s(1, "y").await.unwrap_err(), e);
}

#[tokio::test]
async fn truncated_frame_is_reported() {
    let (mut ch, mut raw) = raw_pair(small_timeout());
    raw.write_all(&100u32.to_le_bytes()).await.unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    drop(raw);
    let e = ch.recv_bytes_bounded(1000).await.unwrap_err();
    assert_eq!(
        e,
        ChannelError::Truncated {
            expected: 100,
            got: 10
        }
    );
}

#[tokio::test]
async fn reserved_header_bits_are_refused() {
    let (mut ch, mut raw) = raw_pair(small_timeout());
    raw.write_all(&(1u32 << 28).to_le_bytes()).await.unwrap();
    let e = ch.recv_bytes_bounded(1000).await.unwrap_err();
    assert!(matches!(e, ChannelError::BadHeader(_)), "{e}");
}

#[tokio::test]
async fn silent_peer_hits_the_timeout() {
    let (mut a, _b) = mem::pair_with(small_timeout(), 1024);
    let e = a.recv_u64s(1, "x").await.unwrap_err();
    assert!(matches!(e, ChannelError::Timeout(_)), "{e}");
}

#[tokio::test]
async fn closed_peer_is_reported() {
    let (mut a, b) = mem::pair_with(small_timeout(), 1024);
    drop(b);
    let e = a.recv_u64s(1, "x").await.unwrap_err();
    assert_eq!(e, ChannelError::Closed);
}

#[tokio::test]
async fn wrong_length_aborts_both_sides() {
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1024);
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
async fn short_message_aborts() {
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1024);
    a.send_u64s(&[1]).await.unwrap();
    let e = b.recv_u64s(2, "x").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("got 8")),
        "{e}"
    );
}

#[tokio::test]
async fn tensor_shape_mismatch_aborts_before_reading_data() {
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1 << 16);
    a.send_tensor(&RingTensor::zeros(&[4, 2])).await.unwrap();
    let e = b.recv_tensor(&[2, 4], "activations").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("[2, 4]") && m.contains("[4, 2]")),
        "{e}"
    );
    let e = a.recv_u64s(1, "next").await.unwrap_err();
    assert!(matches!(e, ChannelError::PeerAborted(_)), "{e}");
}

#[tokio::test]
async fn wrong_message_type_aborts() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Expected {
        a: u64,
        b: String,
    }
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1024);
    a.send_msg(&7u8).await.unwrap();
    let e = b.recv_msg::<Expected>("hello").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("hello")),
        "{e}"
    );
    // Trailing bytes are refused too.
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1024);
    a.send_msg(&(1u8, 2u8)).await.unwrap();
    let e = b.recv_msg::<u8>("pair").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("trailing")),
        "{e}"
    );
}

#[tokio::test]
async fn oversized_control_message_is_refused() {
    let cfg = ChannelConfig {
        max_message_len: 100,
        ..small_timeout()
    };
    let (mut a, mut b) = mem::pair_with(cfg, 1024);
    a.send_msg(&vec![0u8; 200]).await.unwrap();
    let e = b.recv_msg::<Vec<u8>>("m").await.unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("exceeds")),
        "{e}"
    );
}

#[tokio::test]
async fn abort_frame_reaches_the_peer() {
    let (mut a, mut b) = mem::pair();
    let e = a.abort("model manifest differs").await;
    assert!(matches!(e, ChannelError::Aborted(_)));
    let e = b.recv_bytes_bounded(10).await.unwrap_err();
    assert_eq!(
        e,
        ChannelError::PeerAborted("model manifest differs".into())
    );
    // A raw reader sees the frame too.
    let (mut ch, mut raw) = raw_pair(small_timeout());
    ch.abort("bye").await;
    let mut buf = [0u8; 7];
    raw.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf[4..], b"bye");
}

/// The timeout bounds a whole message: a peer that sends an empty MORE frame every third of
/// the timeout does not keep the receive alive.
#[tokio::test]
async fn trickled_frames_do_not_extend_the_timeout() {
    let (mut ch, mut raw) = raw_pair(small_timeout());
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            if raw.write_all(&(1u32 << 31).to_le_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let start = std::time::Instant::now();
    let e = ch.recv_bytes_bounded(64).await.unwrap_err();
    assert_eq!(e, ChannelError::Timeout(Duration::from_millis(300)));
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    trickle.abort();
}

/// A bounded control-message receive refuses a longer message at its first frame.
#[tokio::test]
async fn bounded_control_message() {
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1 << 16);
    a.send_msg(&vec![7u8; 100]).await.unwrap();
    a.send_msg(&vec![7u8; 10]).await.unwrap();
    let e = b
        .recv_msg_bounded::<Vec<u8>>(50, "small")
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChannelError::Aborted(ref m) if m.contains("limit of 50")),
        "{e}"
    );
    let (mut a, mut b) = mem::pair_with(small_timeout(), 1 << 16);
    a.send_msg(&vec![7u8; 10]).await.unwrap();
    let v: Vec<u8> = b.recv_msg_bounded(50, "small").await.unwrap();
    assert_eq!(v, vec![7u8; 10]);
}

/// The peer's abort reason is data: newlines, terminal escapes and backslashes are escaped, and
/// the text is cut to about 200 characters, however long the frame.
#[tokio::test]
async fn peer_abort_reason_is_escaped_and_cut() {
    let (mut ch, mut raw) = raw_pair(small_timeout());
    let mut reason = "bad\nFORGED LOG LINE \u{1b}[31mred\u{1b}[0m \\ é ".to_string();
    reason.push_str(&"x".repeat(100_000));
    let mut frame = ((1u32 << 30) | reason.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(reason.as_bytes());
    let writer = tokio::spawn(async move {
        raw.write_all(&frame).await.unwrap();
        raw
    });
    let e = ch.recv_bytes_bounded(64).await.unwrap_err();
    let ChannelError::PeerAborted(text) = e else {
        panic!("{e}")
    };
    assert!(
        text.starts_with(r"bad\nFORGED LOG LINE \u{1b}[31mred\u{1b}[0m \\ \u{e9} xxx"),
        "{text}"
    );
    assert!(text.ends_with("bytes in all]"), "{text}");
    assert!(text.len() <= MAX_PEER_TEXT_CHARS + 40, "{}", text.len());
    assert!(text.chars().all(|c| (' '..='~').contains(&c)), "{text}");
    drop(writer.await.unwrap());
    assert_eq!(sanitize_peer_text(b"short and plain"), "short and plain");
    assert_eq!(sanitize_peer_text(&[0xff, b'a']), r"\u{fffd}a");
}

/// Fuzzing finding (issue 16, target `handshake`): a control message whose string or vector
/// announces an enormous length made bincode allocate it before reading, and the process
/// aborted ("memory allocation of 7308895159699074578 bytes failed"). Now the message is
/// refused with a reason, whatever the announced length.
#[tokio::test]
async fn hostile_lengths_in_control_messages_are_refused_without_allocating() {
    for len in [
        u64::MAX,
        1 << 62,
        7_308_895_159_699_074_578,
        1 << 40,
        1 << 20,
    ] {
        // A bincode string: the varint marker 0xfd, a u64 length, then 3 bytes.
        let mut msg = vec![0xfd];
        msg.extend_from_slice(&len.to_le_bytes());
        msg.extend_from_slice(b"abc");
        let (mut a, mut b) = mem::pair();
        a.send_bytes(&msg).await.unwrap();
        let e = b.recv_msg::<String>("hostile string").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("hostile string: cannot decode message"),
            "{len}: {e}"
        );
        // The same inside a structure (a vector of strings).
        let mut v = vec![1u8];
        v.extend_from_slice(&msg);
        a.send_bytes(&v).await.ok();
        let e = decode_message::<Vec<String>>(&v).unwrap_err();
        assert!(e.contains("cannot decode message"), "{e}");
        // The peer was told why.
        assert!(matches!(
            a.recv_bytes_bounded(16).await,
            Err(ChannelError::PeerAborted(_))
        ));
    }
}

/// The decoding limit admits every honest message: long vectors of small integers (one byte
/// on the wire, eight in memory), long strings, nested containers.
#[test]
fn decode_limit_admits_honest_messages() {
    type M = (Vec<u64>, String, Vec<Vec<u32>>, Option<Vec<u8>>);
    for n in [0usize, 1, 1000, 100_000, 1 << 20] {
        let m: M = (
            vec![3; n],
            "x".repeat(n),
            vec![vec![1; 4]; n / 8],
            Some(vec![7; n]),
        );
        let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
        assert_eq!(decode_message::<M>(&bytes).unwrap(), m, "n = {n}");
    }
    let bytes = bincode::serde::encode_to_vec(7u32, bincode::config::standard()).unwrap();
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        decode_message::<u32>(&trailing)
            .unwrap_err()
            .contains("1 trailing bytes")
    );
}
