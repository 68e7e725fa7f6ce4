//! Trust on first use, like ssh's `known_hosts`: a text file of `ADDRESS FINGERPRINT` lines.
//!
//! A party connecting to an address with no pinned fingerprint looks the address up here. If
//! the file names it, the connection pins that fingerprint; if not, the first connection
//! accepts whatever certificate the peer presents and records its fingerprint (ssh's
//! `StrictHostKeyChecking=accept-new`), printing it so that the user can compare it with the
//! one the peer's operator published. A later connection that meets another certificate is
//! refused with a message naming both fingerprints, the file and the line to remove if the
//! change is legitimate.
//!
//! Format: one entry per line, the address exactly as given on the command line (for example
//! `server.example.org:7410`), whitespace, 64 hex digits. Empty lines and lines starting with
//! `#` are ignored. A malformed line is an error naming the file and the line.

use std::path::{Path, PathBuf};

use privlm_protocols::channel::tls::Fingerprint;

/// The known-hosts file (see the module docs).
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    entries: Vec<(String, Fingerprint, usize)>,
}

impl KnownHosts {
    /// Reads `path`; a missing file is an empty list (it is created on the first
    /// [`KnownHosts::add`]).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(addr), Some(fp), None) = (it.next(), it.next(), it.next()) else {
                return Err(format!(
                    "{} line {}: expected `ADDRESS FINGERPRINT`, got {line:?}",
                    path.display(),
                    i + 1
                ));
            };
            let fp = Fingerprint::from_hex(fp)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
            entries.push((addr.to_string(), fp, i + 1));
        }
        Ok(KnownHosts {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The recorded fingerprint of `addr` and its line number.
    pub fn lookup(&self, addr: &str) -> Option<(Fingerprint, usize)> {
        self.entries
            .iter()
            .find(|(a, _, _)| a == addr)
            .map(|(_, fp, line)| (*fp, *line))
    }

    /// Appends `addr fp` to the file (creating it and its directory).
    pub fn add(&mut self, addr: &str, fp: Fingerprint) -> Result<(), String> {
        use std::io::Write;
        if addr.is_empty() || addr.chars().any(char::is_whitespace) {
            return Err(format!(
                "cannot record the address {addr:?} (empty or with spaces)"
            ));
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let existed = self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let mut text = String::new();
        if !existed {
            text.push_str("# privlm known hosts: ADDRESS FINGERPRINT (trust on first use)\n");
        }
        text.push_str(&format!("{addr} {}\n", fp.to_hex()));
        f.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        let line = std::fs::read_to_string(&self.path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        self.entries.push((addr.to_string(), fp, line));
        Ok(())
    }
}

/// How a party decides whether to trust a peer's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly this fingerprint (given on the command line).
    Pinned(Fingerprint),
    /// The fingerprint recorded for the address in this known-hosts file; on first use, record
    /// whatever the peer presents.
    KnownHosts(PathBuf),
}

/// The message for a peer whose certificate differs from the recorded one.
pub fn mismatch_message(
    what: &str,
    addr: &str,
    presented: Option<&str>,
    expected: Fingerprint,
    source: &str,
    remedy: &str,
) -> String {
    let presented = presented
        .map(|p| format!("presented a certificate ({p})"))
        .unwrap_or_else(|| "presented another certificate".to_string());
    format!(
        "the {what} at {addr} {presented} that does not match the pinned fingerprint {expected} \
         ({source}). Someone may be intercepting the connection, or the {what}'s identity \
         changed. Ask its operator for its fingerprint (it prints it at start); if it changed \
         legitimately, {remedy}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_finds_hosts() {
        let dir = std::env::temp_dir().join(format!("privlm-kh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/known_hosts");
        let mut kh = KnownHosts::load(&path).unwrap();
        assert!(kh.lookup("h:1").is_none());
        let fp = Fingerprint::of_der(b"a");
        kh.add("h:1", fp).unwrap();
        assert!(kh.add("bad addr", fp).is_err());
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(kh.lookup("h:1"), Some((fp, 2)));
        assert!(kh.lookup("h:2").is_none());
        std::fs::write(&path, "h:1 zz\n").unwrap();
        let e = KnownHosts::load(&path).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        std::fs::write(&path, "h:1\n").unwrap();
        assert!(
            KnownHosts::load(&path)
                .unwrap_err()
                .contains("ADDRESS FINGERPRINT")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
