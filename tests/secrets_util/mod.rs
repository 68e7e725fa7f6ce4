//! Shared helpers of the secrets tests (`secrets_hygiene.rs`, `secrets_processes.rs`): the
//! forms a leaked secret would take in a log (needles) and the search for them.

#![allow(dead_code, unreachable_pub)]

/// Every 8-byte window of a secret byte string, as lowercase hex (how a leaked key would show).
pub fn hex_windows(bytes: &[u8]) -> Vec<String> {
    bytes
        .windows(8)
        .map(|w| w.iter().map(|b| format!("{b:02x}")).collect())
        .collect()
}

/// The 32-byte private scalar of a P-256 PKCS#8 key (the `ECPrivateKey`'s
/// `INTEGER 1, OCTET STRING (32)`).
pub fn ec_private_scalar(pkcs8: &[u8]) -> &[u8] {
    let at = ec_private_scalar_at(pkcs8);
    &pkcs8[at..at + 32]
}

/// Where the private scalar starts in the PKCS#8 document.
pub fn ec_private_scalar_at(pkcs8: &[u8]) -> usize {
    let tag = [0x02, 0x01, 0x01, 0x04, 0x20];
    pkcs8
        .windows(tag.len())
        .position(|w| w == tag)
        .expect("an EC private key")
        + tag.len()
}

/// A value as a needle: decimal and hex (only values too long to occur by chance are used).
pub fn needles(v: u64) -> [String; 3] {
    [v.to_string(), format!("{v:x}"), format!("{v:#x}")]
}

/// Standard base64 with padding (RFC 4648), for the needles of a key file shown as PEM or
/// base64.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The base64 needles of the private scalar of a PKCS#8 key file: every 12-character window
/// of the whole file's base64 that encodes only bytes of the scalar (the rest of the document
/// is public: the algorithm and the public key).
pub fn key_base64_windows(pkcs8: &[u8]) -> Vec<String> {
    let b64 = base64(pkcs8);
    let at = ec_private_scalar_at(pkcs8);
    // Characters 4k..4k+4 encode bytes 3k..3k+3.
    let first = at.div_ceil(3) * 4;
    let last = (at + 32) / 3 * 4;
    (first..last.saturating_sub(12) + 1)
        .step_by(4)
        .map(|i| b64[i..i + 12].to_string())
        .collect()
}

/// Where the needles were found: `(stream, needle)` pairs. Needles are searched as given
/// (case-sensitive) and, when all lowercase, also in the lowercased stream.
pub fn find_leaks<'a>(streams: &[(&str, &str)], needles: &'a [String]) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    for (who, text) in streams {
        let lower = text.to_lowercase();
        for n in needles {
            let is_lower = n.chars().all(|c| !c.is_uppercase());
            if text.contains(n.as_str()) || (is_lower && lower.contains(n.as_str())) {
                out.push((who.to_string(), n.as_str()));
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc_vectors() {
    for (i, o) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(i.as_bytes()), o);
    }
}
