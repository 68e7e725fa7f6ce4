//! Certificate verifiers that accept exactly the pinned certificates.
//!
//! Pinning replaces the web PKI: there are no certificate authorities, names or validity
//! periods to check, only "is this the certificate I was told to expect". The TLS 1.3
//! handshake signature (CertificateVerify) is still checked with the provider's algorithms,
//! so the peer must hold the pinned certificate's private key.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::Fingerprint;

/// Accepts an end-entity certificate whose SHA-256 fingerprint is one of `pins`, or (built with
/// [`PinnedVerifier::any`], for trust on first use) any certificate; the handshake signature is
/// checked either way.
#[derive(Debug)]
pub(super) struct PinnedVerifier {
    pins: Vec<Fingerprint>,
    any: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub(super) fn new(pins: Vec<Fingerprint>, algs: WebPkiSupportedAlgorithms) -> Self {
        PinnedVerifier {
            pins,
            any: false,
            algs,
        }
    }

    /// Accepts any certificate (the caller reads and checks the fingerprint itself).
    pub(super) fn any(algs: WebPkiSupportedAlgorithms) -> Self {
        PinnedVerifier {
            pins: Vec::new(),
            any: true,
            algs,
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fp = Fingerprint::of_der(end_entity);
        if self.any || self.pins.contains(&fp) {
            Ok(())
        } else {
            tracing::warn!(presented = %fp, "peer certificate does not match the pinned fingerprint");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
                    NotPinned {
                        presented: fp,
                        pinned: self.pins.clone(),
                    },
                ))),
            ))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

/// The peer presented a certificate that is not pinned.
#[derive(Debug, thiserror::Error)]
#[error(
    "certificate fingerprint {presented} is not pinned (expected {})",
    list(pinned)
)]
struct NotPinned {
    presented: Fingerprint,
    pinned: Vec<Fingerprint>,
}

fn list(pins: &[Fingerprint]) -> String {
    let v: Vec<String> = pins.iter().map(|p| p.to_hex()).collect();
    if v.is_empty() {
        "no pinned certificate".into()
    } else {
        v.join(" or ")
    }
}

fn no_tls12() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not supported".into())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
