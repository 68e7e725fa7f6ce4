//! TCP + TLS 1.3 transport (rustls) with pinned self-signed certificates.
//!
//! Not yet implemented: see the Foundation issue.
