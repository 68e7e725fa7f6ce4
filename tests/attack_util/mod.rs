//! What the attack tables against the dealer (`dealer_hardening.rs`) and the server
//! (`server_attacks.rs`) share: frames written by hand, a TLS client without a certificate,
//! and readings of the attacked process (memory, descriptors).

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use privlm::protocols::channel::tls::TlsStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Frame header flag: more frames of this message follow.
pub const MORE: u32 = 1 << 31;
/// Frame header flag: the payload is the peer's abort reason.
pub const ABORT: u32 = 1 << 30;

/// Writes one frame (`flags | len` header, then the payload), as `FramedChannel` would, or not.
pub async fn write_frame(s: &mut TlsStream, flags: u32, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(&(flags | payload.len() as u32).to_le_bytes())
        .await?;
    s.write_all(payload).await?;
    s.flush().await
}

/// Reads the next message (its frames joined); `Err` with the peer's reason for an abort frame,
/// or the I/O error. With `header_timeout`, each frame header must arrive within it.
pub async fn read_message(
    s: &mut TlsStream,
    header_timeout: Option<Duration>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let mut h = [0u8; 4];
        match header_timeout {
            Some(t) => tokio::time::timeout(t, s.read_exact(&mut h))
                .await
                .map_err(|_| format!("no answer within {} s", t.as_secs()))?,
            None => s.read_exact(&mut h).await,
        }
        .map_err(|e| e.to_string())?;
        let h = u32::from_le_bytes(h);
        let mut data = vec![0u8; (h & 0xff_ffff) as usize];
        s.read_exact(&mut data).await.map_err(|e| e.to_string())?;
        if h & ABORT != 0 {
            return Err(String::from_utf8_lossy(&data).into_owned());
        }
        out.extend_from_slice(&data);
        if h & MORE == 0 {
            return Ok(out);
        }
    }
}

/// Reads from `s` until the peer closes it or `secs` pass; how long that took (`None`: still
/// open).
pub async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, secs: u64) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| start.elapsed())
}

/// Seeded xorshift bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Open file descriptors of process `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// A TLS client that presents no certificate and accepts any server certificate.
pub fn no_cert_client() -> Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    let p = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(p)))
        .with_no_client_auth();
    Arc::new(cfg)
}
