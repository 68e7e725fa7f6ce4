//! A [`Channel`] over any async byte stream, with length-delimited frames.
//!
//! Frame = 4-byte little-endian header + payload. Header bits 0..24: payload length; bit 31:
//! MORE (the message continues in the next frame); bit 30: ABORT (the payload is the peer's
//! UTF-8 reason for ending the session); other bits must be zero.
//!
//! The stream is split into a background reader task and a background writer task, so both
//! parties may send large messages at the same time without deadlocking (up to the reader's
//! queue of [`ChannelConfig::read_queue_frames`] frames). The reader validates every header
//! before allocating the payload. The writer coalesces frames in a buffer and flushes whenever
//! its queue runs empty.
//!
//! Bounds per connection: the reader holds at most `read_queue_frames + 1` frames of at most
//! `max_frame_len` bytes (the read-ahead), freed when the channel is dropped; a receive waits
//! at most `timeout` for its whole *message* (a peer that trickles frames, even empty ones,
//! cannot keep it alive); a write stalled for `timeout` fails the writer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    Channel, ChannelConfig, ChannelError, FRAME_HEADER_LEN, MAX_FRAME_LEN_LIMIT, Stats,
    sanitize_peer_text,
};

const LEN_MASK: u32 = (1 << 24) - 1;
const FLAG_MORE: u32 = 1 << 31;
const FLAG_ABORT: u32 = 1 << 30;

struct Frame {
    more: bool,
    data: Vec<u8>,
}

enum WriterCmd {
    Data(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// A channel over an async byte stream (in-memory duplex, TCP, TLS). See the module docs.
pub struct FramedChannel {
    cfg: ChannelConfig,
    stats: Stats,
    tx: Option<mpsc::Sender<WriterCmd>>,
    rx: mpsc::Receiver<Result<Frame, ChannelError>>,
    /// What [`FramedChannel::readable`] took from `rx`: the next receive starts with it.
    peeked: Option<Result<Frame, ChannelError>>,
    writer_error: Arc<Mutex<Option<String>>>,
    failed: Option<ChannelError>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FramedChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedChannel")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl FramedChannel {
    /// Wraps a byte stream. Must be called inside a tokio runtime (it spawns the reader and
    /// writer tasks).
    pub fn new<S>(stream: S, cfg: ChannelConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        assert!(
            cfg.max_frame_len > 0 && cfg.max_frame_len <= MAX_FRAME_LEN_LIMIT,
            "max_frame_len must be in 1..={MAX_FRAME_LEN_LIMIT}"
        );
        let (read_half, write_half) = tokio::io::split(stream);
        let (in_tx, in_rx) = mpsc::channel(cfg.read_queue_frames.max(1));
        let (out_tx, out_rx) = mpsc::channel(cfg.write_queue_frames.max(1));
        let writer_error = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(reader_loop(read_half, in_tx, cfg.max_frame_len));
        let writer = tokio::spawn(writer_loop(
            BufWriter::with_capacity(cfg.write_buffer_len, write_half),
            out_rx,
            writer_error.clone(),
            cfg.timeout,
        ));
        FramedChannel {
            cfg,
            stats: Stats::default(),
            tx: Some(out_tx),
            rx: in_rx,
            peeked: None,
            writer_error,
            failed: None,
            reader,
            writer: Some(writer),
        }
    }

    /// Flushes and closes the sending side, waiting for the writer to finish (at most the
    /// configured timeout). Dropping the channel also closes it, without waiting.
    pub async fn close(mut self) -> Result<(), ChannelError> {
        self.tx = None;
        if let Some(w) = self.writer.take() {
            match tokio::time::timeout(self.cfg.timeout, w).await {
                Ok(_) => {}
                Err(_) => return Err(ChannelError::Timeout(self.cfg.timeout)),
            }
        }
        match self.writer_error.lock().expect("writer error lock").clone() {
            Some(e) => Err(ChannelError::Io(e)),
            None => Ok(()),
        }
    }

    fn check(&self) -> Result<(), ChannelError> {
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: ChannelError) -> ChannelError {
        if self.failed.is_none() {
            tracing::debug!(error = %e, "channel failed");
            self.failed = Some(e.clone());
        }
        e
    }

    fn writer_failure(&mut self) -> ChannelError {
        let msg = self.writer_error.lock().expect("writer error lock").clone();
        self.fail(ChannelError::Io(
            msg.unwrap_or_else(|| "the connection's writer stopped".into()),
        ))
    }

    async fn push(&mut self, cmd: WriterCmd) -> Result<(), ChannelError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(self.fail(ChannelError::Aborted("the channel is closed".into())));
        };
        match tokio::time::timeout(self.cfg.timeout, tx.send(cmd)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.writer_failure()),
            Err(_) => Err(self.fail(ChannelError::Timeout(self.cfg.timeout))),
        }
    }

    /// The deadline of a receive that starts now: the timeout bounds the whole message.
    fn deadline(&self) -> Instant {
        let now = Instant::now();
        // A timeout too large to add means "no deadline": about thirty years.
        now.checked_add(self.cfg.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
    }

    /// Waits, with no timeout, until the peer has sent something or the connection has
    /// failed, and consumes nothing: `Ok` when a frame waits (the next receive returns it),
    /// the error otherwise (the peer aborted or closed, the connection was cut, a malformed
    /// header); the next receive reports that error too. Cancel-safe: meant for
    /// `tokio::select!`, to notice a peer that gives up while this side waits on another
    /// connection.
    pub async fn readable(&mut self) -> Result<(), ChannelError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.peeked.is_none() {
            self.peeked = Some(self.rx.recv().await.unwrap_or(Err(ChannelError::Closed)));
        }
        match &self.peeked {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    async fn next_frame(&mut self, deadline: Instant) -> Result<Frame, ChannelError> {
        let next = match self.peeked.take() {
            Some(r) => Ok(Some(r)),
            None => tokio::time::timeout_at(deadline, self.rx.recv()).await,
        };
        match next {
            Ok(Some(Ok(frame))) => Ok(frame),
            Ok(Some(Err(e))) => {
                // A malformed header is the peer's mistake: tell it why before failing.
                if matches!(
                    e,
                    ChannelError::FrameTooLarge { .. } | ChannelError::BadHeader(_)
                ) && self.failed.is_none()
                {
                    self.send_abort_frame(&e.to_string()).await;
                }
                Err(self.fail(e))
            }
            Ok(None) => Err(self.fail(ChannelError::Closed)),
            Err(_) => Err(self.fail(ChannelError::Timeout(self.cfg.timeout))),
        }
    }

    /// Queues an abort frame carrying `reason` and closes the sending side (best effort: the
    /// peer may already be gone).
    async fn send_abort_frame(&mut self, reason: &str) {
        let mut text = reason.as_bytes();
        text = &text[..text.len().min(self.cfg.max_frame_len).min(4096)];
        if let Some(tx) = self.tx.take() {
            let _ = tokio::time::timeout(
                self.cfg.timeout,
                tx.send(WriterCmd::Data(Self::frame(FLAG_ABORT, text))),
            )
            .await;
        }
    }

    fn frame(flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        v.extend_from_slice(&(flags | payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }
}

impl Drop for FramedChannel {
    fn drop(&mut self) {
        // The writer drains what is queued and shuts the stream down once `tx` is dropped.
        self.reader.abort();
    }
}

impl Channel for FramedChannel {
    async fn send_bytes(&mut self, data: &[u8]) -> Result<(), ChannelError> {
        self.check()?;
        let max = self.cfg.max_frame_len;
        let frames = data.len().div_ceil(max).max(1);
        for i in 0..frames {
            let chunk = &data[(i * max).min(data.len())..((i + 1) * max).min(data.len())];
            let flags = if i + 1 < frames { FLAG_MORE } else { 0 };
            self.push(WriterCmd::Data(Self::frame(flags, chunk)))
                .await?;
        }
        self.stats
            .record_send(data.len() + frames * FRAME_HEADER_LEN);
        Ok(())
    }

    async fn recv_bytes_into(&mut self, buf: &mut [u8], context: &str) -> Result<(), ChannelError> {
        self.check()?;
        let deadline = self.deadline();
        let mut filled = 0usize;
        let mut frames = 0usize;
        loop {
            let frame = self.next_frame(deadline).await?;
            frames += 1;
            let end = filled + frame.data.len();
            if end > buf.len() {
                let e = ChannelError::LengthMismatch {
                    context: context.to_string(),
                    expected: buf.len(),
                    got: end,
                };
                return Err(self.abort(&e.to_string()).await);
            }
            buf[filled..end].copy_from_slice(&frame.data);
            filled = end;
            if !frame.more {
                break;
            }
        }
        if filled != buf.len() {
            let e = ChannelError::LengthMismatch {
                context: context.to_string(),
                expected: buf.len(),
                got: filled,
            };
            return Err(self.abort(&e.to_string()).await);
        }
        self.stats.record_recv(filled + frames * FRAME_HEADER_LEN);
        Ok(())
    }

    async fn recv_bytes_bounded(&mut self, max_len: usize) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        let deadline = self.deadline();
        let mut out = Vec::new();
        let mut frames = 0usize;
        loop {
            let frame = self.next_frame(deadline).await?;
            frames += 1;
            let len = out.len() + frame.data.len();
            if len > max_len {
                let e = ChannelError::MessageTooLarge { len, max: max_len };
                return Err(self.abort(&e.to_string()).await);
            }
            if out.is_empty() && !frame.more {
                out = frame.data;
            } else {
                out.extend_from_slice(&frame.data);
            }
            if !frame.more {
                break;
            }
        }
        self.stats
            .record_recv(out.len() + frames * FRAME_HEADER_LEN);
        Ok(out)
    }

    async fn flush(&mut self) -> Result<(), ChannelError> {
        self.check()?;
        let (done_tx, done_rx) = oneshot::channel();
        self.push(WriterCmd::Flush(done_tx)).await?;
        match tokio::time::timeout(self.cfg.timeout, done_rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.writer_failure()),
            Err(_) => Err(self.fail(ChannelError::Timeout(self.cfg.timeout))),
        }
    }

    async fn abort(&mut self, reason: &str) -> ChannelError {
        if let Some(e) = &self.failed {
            return e.clone();
        }
        tracing::warn!(%reason, "aborting session");
        self.send_abort_frame(reason).await;
        self.fail(ChannelError::Aborted(reason.to_string()))
    }

    fn config(&self) -> &ChannelConfig {
        &self.cfg
    }

    fn stats(&self) -> &Stats {
        &self.stats
    }

    fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }
}

async fn reader_loop<R>(mut r: R, tx: mpsc::Sender<Result<Frame, ChannelError>>, max_frame: usize)
where
    R: AsyncRead + Unpin,
{
    loop {
        let result = read_frame(&mut r, max_frame).await;
        let stop = result.is_err();
        if tx.send(result).await.is_err() || stop {
            return;
        }
    }
}

/// A failed read as a channel error. A TLS stream that ends without `close_notify` (the
/// connection was cut, or the peer process died) is said so plainly, without rustls's link.
fn read_error(e: std::io::Error) -> ChannelError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ChannelError::Io("the connection was cut (it ended without a TLS close_notify)".into())
    } else {
        ChannelError::Io(e.to_string())
    }
}

async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<usize, ChannelError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(got)
}

async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_frame: usize,
) -> Result<Frame, ChannelError> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    match read_full(r, &mut hdr).await? {
        0 => return Err(ChannelError::Closed),
        n if n < FRAME_HEADER_LEN => {
            return Err(ChannelError::Truncated {
                expected: FRAME_HEADER_LEN,
                got: n,
            });
        }
        _ => {}
    }
    let h = u32::from_le_bytes(hdr);
    if h & !(LEN_MASK | FLAG_MORE | FLAG_ABORT) != 0 {
        return Err(ChannelError::BadHeader(h));
    }
    let len = (h & LEN_MASK) as usize;
    if len > max_frame {
        return Err(ChannelError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    // Read into spare capacity: the payload buffer is never zeroed first.
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let want = (len - data.len()) as u64;
        match (&mut *r).take(want).read_buf(&mut data).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    if data.len() < len {
        return Err(ChannelError::Truncated {
            expected: len,
            got: data.len(),
        });
    }
    if h & FLAG_ABORT != 0 {
        // The reason is the peer's text: escaped and cut before anyone logs or relays it.
        return Err(ChannelError::PeerAborted(sanitize_peer_text(&data)));
    }
    Ok(Frame {
        more: h & FLAG_MORE != 0,
        data,
    })
}

/// Bounds one write operation: a peer that stops reading for `limit` fails the writer (and
/// so frees the connection) instead of holding it forever.
async fn stalled<F>(limit: Duration, op: F) -> std::io::Result<()>
where
    F: Future<Output = std::io::Result<()>>,
{
    match tokio::time::timeout(limit, op).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer accepted no data for {limit:?}"),
        )),
    }
}

async fn writer_loop<W>(
    mut w: BufWriter<W>,
    mut rx: mpsc::Receiver<WriterCmd>,
    error: Arc<Mutex<Option<String>>>,
    limit: Duration,
) where
    W: AsyncWrite + Unpin,
{
    let result: std::io::Result<()> = async {
        loop {
            let cmd = match rx.try_recv() {
                Ok(cmd) => cmd,
                Err(mpsc::error::TryRecvError::Empty) => {
                    stalled(limit, w.flush()).await?;
                    match rx.recv().await {
                        Some(cmd) => cmd,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match cmd {
                WriterCmd::Data(bytes) => stalled(limit, w.write_all(&bytes)).await?,
                WriterCmd::Flush(done) => {
                    stalled(limit, w.flush()).await?;
                    let _ = done.send(());
                }
            }
        }
        stalled(limit, w.flush()).await?;
        stalled(limit, w.shutdown()).await
    }
    .await;
    if let Err(e) = result {
        *error.lock().expect("writer error lock") = Some(e.to_string());
    }
}
