//! Network emulation: a byte stream that delivers what the peer sent as if it had crossed a
//! link of given bandwidth and one-way delay.
//!
//! [`emulate`] wraps any async byte stream (one end of an in-memory duplex, a TCP or TLS
//! stream). What this end *receives* is shaped: a background task reads the underlying stream
//! as fast as it can, stamps each chunk with its arrival time `t`, and hands it on to the
//! application at `max(t, link_free) + len / bandwidth + one_way` (and `link_free` moves to
//! the end of the chunk's transmission), so back-to-back chunks queue behind each other as on
//! a real link. What this end *sends* passes through unchanged: the peer's wrapper shapes it.
//! Wrapping both ends of a connection therefore emulates a full-duplex link, each direction
//! with its own bandwidth. The underlying transport must be much faster than the emulated
//! link (loopback, memory), since its own time is counted as part of the link's.
//!
//! Used under a [`super::FramedChannel`] (`FramedChannel::new(emulate(stream, link), cfg)`;
//! [`pair`] for the in-memory case), so the channel's framing and counters are unchanged:
//! the channel still counts exactly what it sends and receives. A channel-level wrapper could
//! not deliver a message while its owner computes without calling it, so the emulation sits
//! below the framing, where background tasks own the stream.
//!
//! Timing: waits shorter than about a millisecond are spent yielding (tokio's timer resolution
//! is one millisecond), which costs some CPU on fast profiles.
//!
//! Memory: at most `QUEUE_CHUNKS` chunks of `CHUNK` bytes wait for their release time, then
//! the reader stops reading (back-pressure on the peer).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{ChannelConfig, FramedChannel};

/// Largest chunk the reader hands on at once.
const CHUNK: usize = 64 << 10;
/// Chunks that may wait for their release time.
const QUEUE_CHUNKS: usize = 256;

/// A link profile: bandwidth of each direction and one-way delay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Bits per second, each direction.
    pub bits_per_sec: f64,
    /// One-way delay (half the round-trip time).
    pub one_way: Duration,
}

impl Link {
    /// A link of `bits_per_sec` each way and round-trip time `rtt`.
    pub fn new(bits_per_sec: f64, rtt: Duration) -> Self {
        Link {
            bits_per_sec,
            one_way: rtt / 2,
        }
    }

    /// Time `len` bytes occupy the link.
    pub fn transmission(&self, len: usize) -> Duration {
        Duration::from_secs_f64(8.0 * len as f64 / self.bits_per_sec.max(1.0))
    }
}

/// Wraps `stream` so that what it receives arrives as over `link` (see the module docs).
/// Returns the application's end. Call inside a tokio runtime: it spawns three tasks, which
/// end when either side closes.
pub fn emulate<S>(stream: S, link: Link) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (app, inner) = tokio::io::duplex(CHUNK);
    let (mut real_r, mut real_w) = tokio::io::split(stream);
    let (mut in_r, mut in_w) = tokio::io::split(inner);
    // Outgoing: unchanged (the peer's wrapper shapes it).
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut in_r, &mut real_w).await;
        let _ = real_w.shutdown().await;
    });
    // Incoming: stamp arrivals...
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            match real_r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send((Instant::now(), buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    // ...and release them when the link would have delivered them.
    tokio::spawn(async move {
        let mut link_free = Instant::now();
        while let Some((arrived, buf)) = rx.recv().await {
            link_free = link_free.max(arrived) + link.transmission(buf.len());
            wait_until(link_free + link.one_way).await;
            if in_w.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = in_w.shutdown().await;
    });
    app
}

/// Sleeps until `deadline` with sub-millisecond precision: tokio's timer has a resolution of
/// one millisecond, too coarse for a LAN's delays, so the last `SPIN` are spent yielding.
async fn wait_until(deadline: Instant) {
    const SPIN: Duration = Duration::from_micros(1500);
    if let Some(early) = deadline.checked_sub(SPIN)
        && early > Instant::now()
    {
        tokio::time::sleep_until(early).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

/// Two connected in-memory channels over an emulated `link` (both directions shaped).
pub fn pair(cfg: ChannelConfig, link: Link) -> (FramedChannel, FramedChannel) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        FramedChannel::new(emulate(a, link), cfg.clone()),
        FramedChannel::new(emulate(b, link), cfg),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    /// Ping-pong: each message costs one one-way delay; the bytes and counters are those of
    /// an unshaped channel.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delay_per_flight() {
        let link = Link::new(1e9, Duration::from_millis(40));
        let (mut a, mut b) = pair(ChannelConfig::default(), link);
        let t0 = Instant::now();
        let flights = 10;
        let pong = tokio::spawn(async move {
            for _ in 0..flights / 2 {
                let v = b.recv_u64s(4, "ping").await.unwrap();
                b.send_u64s(&v).await.unwrap();
            }
            b
        });
        for i in 0..flights / 2 {
            a.send_u64s(&[i, 1, 2, 3]).await.unwrap();
            let v = a.recv_u64s(4, "pong").await.unwrap();
            assert_eq!(v, [i, 1, 2, 3]);
        }
        let el = secs(t0.elapsed());
        let b = pong.await.unwrap();
        let want = flights as f64 * 0.020;
        assert!(
            el >= want && el < want * 1.15 + 0.01,
            "{flights} flights took {el:.3} s, want about {want:.3} s"
        );
        let sa = a.stats().total();
        let sb = b.stats().total();
        assert_eq!(sa.bytes_sent, 5 * (32 + 4));
        assert_eq!(sa.bytes_sent, sb.bytes_recv);
    }

    /// A bulk transfer costs its transmission time plus one delay; both directions at once
    /// take no longer than one (full duplex).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bandwidth_full_duplex() {
        let link = Link::new(80e6, Duration::from_millis(20)); // 10 MB/s, 10 ms one way
        let (mut a, mut b) = pair(ChannelConfig::default(), link);
        let n = 500_000; // 4 MB each way: 0.4 s
        let data: Vec<u64> = (0..n as u64).collect();
        let d2 = data.clone();
        let t0 = Instant::now();
        let other = tokio::spawn(async move {
            b.send_u64s(&d2).await.unwrap();
            let got = b.recv_u64s(n, "bulk").await.unwrap();
            assert_eq!(got, d2);
        });
        a.send_u64s(&data).await.unwrap();
        let got = a.recv_u64s(n, "bulk").await.unwrap();
        assert_eq!(got, data);
        other.await.unwrap();
        let el = secs(t0.elapsed());
        let want = secs(link.transmission(8 * n)) + 0.010;
        assert!(
            el >= 0.95 * want && el < want * 1.15,
            "4 MB each way took {el:.3} s, want about {want:.3} s"
        );
    }
}
