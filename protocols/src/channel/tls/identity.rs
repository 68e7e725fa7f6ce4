//! A party's long-term TLS identity: a self-signed certificate, its private key, and the
//! certificate's SHA-256 fingerprint that the other party pins.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::TlsError;

/// File name of the certificate (DER) inside an identity directory.
pub const CERT_FILE: &str = "cert.der";
/// File name of the private key (PKCS#8 DER, mode 0600 on unix) inside an identity directory.
/// The certificate has mode 0600 too, and a directory the identity creates mode 0700.
pub const KEY_FILE: &str = "key.der";
/// Subject alternative name written into generated certificates. Peers never check names:
/// they pin the certificate itself.
pub const CERT_SUBJECT: &str = "privlm.invalid";

/// SHA-256 of a certificate's DER encoding. Printed and parsed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(cert_der: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Fingerprint(out)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Parses 64 hex digits (either case; `:` separators and surrounding whitespace allowed).
    pub fn from_hex(s: &str) -> Result<Self, TlsError> {
        let digits: Vec<u8> = s.trim().bytes().filter(|&b| b != b':').collect();
        let bad = || TlsError::BadFingerprint(format!("expected 64 hex digits, got {s:?}"));
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        Fingerprint::from_hex(s)
    }
}

/// A party's certificate and private key. `Debug` shows the fingerprint and the directory,
/// never the key; the key's bytes are overwritten with zeros when the identity is dropped
/// (the copies rustls keeps in the configurations built from it are rustls' own).
pub struct Identity {
    dir: Option<PathBuf>,
    cert: CertificateDer<'static>,
    key: Zeroizing<PrivatePkcs8KeyDer<'static>>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("dir", &self.dir)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    /// A fresh self-signed identity (ECDSA P-256) kept in memory only.
    pub fn generate() -> Result<Self, TlsError> {
        let ck = rcgen::generate_simple_self_signed(vec![CERT_SUBJECT.to_string()])
            .map_err(|e| TlsError::Certificate(format!("cannot generate a certificate: {e}")))?;
        let cert = ck.cert.der().clone();
        let key = Zeroizing::new(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        Self::from_parts(None, cert, key)
    }

    /// Loads the identity stored in `dir` ([`CERT_FILE`] and [`KEY_FILE`]), or, when neither
    /// file exists, generates one and stores it there (creating `dir` with mode 0700 and both
    /// files with mode 0600 on unix, whatever the umask). A directory holding only one of the
    /// two files is an error, as is a key that does not match the certificate or that other
    /// users may read (see [`Identity::load`]).
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(dir),
            (false, false) => {
                let fresh = Self::generate()?;
                fresh.store(dir)?;
                tracing::info!(dir = %dir.display(), fingerprint = %fresh.fingerprint,
                    "generated a new TLS identity");
                Ok(Identity {
                    dir: Some(dir.to_path_buf()),
                    ..fresh
                })
            }
            (c, _) => Err(TlsError::Certificate(format!(
                "{} holds {} but not {}; remove it or restore the missing file",
                dir.display(),
                if c { CERT_FILE } else { KEY_FILE },
                if c { KEY_FILE } else { CERT_FILE },
            ))),
        }
    }

    /// Loads an identity stored by [`Identity::load_or_create`].
    ///
    /// On unix a key file that other users may read or write (any of the mode bits `0o077`) is
    /// refused, as ssh refuses such a private key: the key may already be known to others.
    /// `chmod 600` the file (or remove the directory to start afresh) and try again.
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        use std::io::Read;
        let cant =
            |p: &Path, e: std::io::Error| TlsError::Io(format!("cannot read {}: {e}", p.display()));
        let key_path = dir.join(KEY_FILE);
        // The mode is checked on the opened file, so the file read is the file checked.
        let mut key_file = fs::File::open(&key_path).map_err(|e| cant(&key_path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = key_file.metadata().map_err(|e| cant(&key_path, e))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(TlsError::Certificate(format!(
                    "the private key {} has mode {mode:04o}: other users may read it; \
                     refusing to use it (run `chmod 600 {}` if it has not leaked, \
                     or remove the directory to create a new identity)",
                    key_path.display(),
                    key_path.display()
                )));
            }
        }
        let mut key = Vec::new();
        key_file
            .read_to_end(&mut key)
            .map_err(|e| cant(&key_path, e))?;
        let key = Zeroizing::new(PrivatePkcs8KeyDer::from(key));
        let cert_path = dir.join(CERT_FILE);
        let cert = CertificateDer::from(fs::read(&cert_path).map_err(|e| cant(&cert_path, e))?);
        Self::from_parts(Some(dir.to_path_buf()), cert, key)
    }

    fn from_parts(
        dir: Option<PathBuf>,
        cert: CertificateDer<'static>,
        key: Zeroizing<PrivatePkcs8KeyDer<'static>>,
    ) -> Result<Self, TlsError> {
        // Check that the key parses and matches the certificate.
        let provider = super::provider();
        let mismatch = |e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Certificate(format!(
                "the private key does not match the certificate ({e})"
            )),
            e => TlsError::Certificate(format!("unusable certificate or key: {e}")),
        };
        let ck = rustls::sign::CertifiedKey::from_der(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(key.clone_key()),
            &provider,
        )
        .map_err(mismatch)?;
        ck.keys_match().map_err(mismatch)?;
        let fingerprint = Fingerprint::of_der(&cert);
        Ok(Identity {
            dir,
            cert,
            key,
            fingerprint,
        })
    }

    /// Writes the two files into `dir`, creating it. On unix, whatever the umask, a directory
    /// this creates gets mode 0700 and both files mode 0600 (the umask can only remove bits).
    /// An existing directory keeps its mode, with a warning when others may write to it.
    fn store(&self, dir: &Path) -> Result<(), TlsError> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            TlsError::Io(format!("cannot {what} {}: {e}", p.display()))
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            builder.mode(0o700);
            if let Ok(meta) = fs::metadata(dir) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o022 != 0 {
                    tracing::warn!(dir = %dir.display(), mode = format!("{mode:04o}"),
                        "the identity directory is writable by other users");
                }
            }
        }
        builder.create(dir).map_err(|e| io("create", dir, e))?;
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| io("create", &path, e))?;
            f.write_all(bytes)
                .and_then(|_| f.sync_all())
                .map_err(|e| io("write", &path, e))
        };
        write(KEY_FILE, self.key.secret_pkcs8_der())?;
        write(CERT_FILE, &self.cert)
    }

    /// The certificate's fingerprint: what the other party pins.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert
    }

    /// The directory the identity was loaded from or stored in (`None` for [`Identity::generate`]).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub(super) fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    pub(super) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        std::env::temp_dir().join(format!(
            "privlm-identity-{tag}-{}-{nanos}",
            std::process::id()
        ))
    }

    #[test]
    fn fingerprint_hex_round_trip() {
        let fp = Fingerprint::of_der(b"not really a certificate");
        let hex = fp.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(Fingerprint::from_hex(&hex).unwrap(), fp);
        assert_eq!(hex.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(Fingerprint::from_hex(&hex.to_uppercase()).unwrap(), fp);
        assert!(Fingerprint::from_hex(&hex[1..]).is_err());
        assert!(Fingerprint::from_hex(&format!("{}g", &hex[1..])).is_err());
        // SHA-256("abc") known answer.
        assert_eq!(
            Fingerprint::of_der(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn load_or_create_persists_and_reloads() {
        let dir = temp_dir("persist");
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.certificate_der(), b.certificate_der());
        assert_eq!(Fingerprint::of_der(a.certificate_der()), a.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Debug never shows key bytes.
        let dbg = format!("{a:?}");
        assert!(dbg.contains("redacted") && dbg.contains(&a.fingerprint().to_hex()));
        let key = fs::read(dir.join(KEY_FILE)).unwrap();
        let key_hex: String = key[key.len() - 8..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!dbg.contains(&key_hex));
        // A missing key file is reported, not silently replaced.
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let e = Identity::load_or_create(&dir).unwrap_err();
        assert!(e.to_string().contains(KEY_FILE), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("modes");
        let a = Identity::load_or_create(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(CERT_FILE)), 0o600);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        let key = dir.join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Identity::load_or_create(&dir).unwrap_err();
        assert!(e.to_string().contains("other users may read it"), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Identity::load(&dir).unwrap().fingerprint(), a.fingerprint());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = temp_dir("mismatch");
        let _a = Identity::load_or_create(&dir).unwrap();
        let other = Identity::generate().unwrap();
        fs::write(dir.join(CERT_FILE), other.certificate_der()).unwrap();
        let e = Identity::load(&dir).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
