//! GPT-2 byte-level BPE with the rank table embedded in the binary.
//!
//! Byte-pair encoding (Sennrich et al. 2016) as GPT-2 applies it to bytes (Radford et al.
//! 2019, section 2.2): a text piece (see [`gpt2_pretokenize`](super::gpt2_pretokenize)) starts
//! as its UTF-8 bytes, one part per byte; while some adjacent pair of parts concatenates to a
//! byte string in the vocabulary, the pair whose concatenation has the lowest rank is merged
//! (leftmost on ties, which cannot happen as ranks are distinct). The token ids are the ranks
//! of the final parts. In GPT-2's vocabulary, rank = token id = merge priority.
//!
//! The rank table is OpenAI's `r50k_base.tiktoken` (one line per token: base64 of its bytes,
//! a space, its rank), stored in `assets/gpt2/` and embedded with `include_bytes!`.

use std::collections::HashMap;

use super::{Tokenizer, TokenizerError, gpt2_pretokenize};

/// GPT-2's rank table (`r50k_base.tiktoken`), 835,554 bytes.
const GPT2_RANKS: &[u8] = include_bytes!("../../../assets/gpt2/r50k_base.tiktoken");

/// SHA-256 of the embedded rank table, as published by OpenAI for `r50k_base.tiktoken`.
pub const GPT2_RANKS_SHA256: &str =
    "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930";

/// GPT-2's `<|endoftext|>` token id.
pub const GPT2_EOT_TOKEN: u32 = 50256;

/// GPT-2's vocabulary size (50,256 byte strings plus `<|endoftext|>`).
pub const GPT2_VOCAB_SIZE: usize = 50257;

const EOT_TEXT: &[u8] = b"<|endoftext|>";

/// GPT-2's byte-level BPE tokenizer (vocabulary 50,257; `<|endoftext|>` = 50256).
#[derive(Clone)]
pub struct Gpt2Bpe {
    ranks: HashMap<Vec<u8>, u32>,
    tokens: Vec<Vec<u8>>,
    eot: Option<u32>,
}

impl std::fmt::Debug for Gpt2Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2Bpe")
            .field("mergeable_tokens", &self.tokens.len())
            .field("eot", &self.eot)
            .finish()
    }
}

impl Default for Gpt2Bpe {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpt2Bpe {
    /// GPT-2's tokenizer from the embedded rank table.
    pub fn new() -> Self {
        // The embedded table is a constant checked by the tests (hash and parse).
        Self::from_tiktoken(GPT2_RANKS, Some(GPT2_EOT_TOKEN))
            .expect("embedded GPT-2 rank table parses")
    }

    /// A process-wide instance, parsed once on first use (saves re-parsing the 50k-entry
    /// table when several components need the tokenizer).
    pub fn shared() -> &'static Gpt2Bpe {
        static SHARED: std::sync::OnceLock<Gpt2Bpe> = std::sync::OnceLock::new();
        SHARED.get_or_init(Gpt2Bpe::new)
    }

    /// The embedded rank table's bytes (for checking its hash).
    pub fn embedded_rank_file() -> &'static [u8] {
        GPT2_RANKS
    }

    /// A byte-level BPE tokenizer from a tiktoken rank file (`base64 rank` per line, ranks
    /// exactly `0..n` in any order, every single byte present), with an optional end-of-text id
    /// that must be `n` or more.
    pub fn from_tiktoken(data: &[u8], eot: Option<u32>) -> Result<Self, TokenizerError> {
        let mut ranks = HashMap::new();
        let mut by_rank: Vec<Option<Vec<u8>>> = Vec::new();
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let line_no = i + 1;
            let bad = |what: &str| TokenizerError::BadRankFile {
                line: line_no,
                what: what.to_string(),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let sp = line
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("expected `base64 rank`"))?;
            let token = base64_decode(&line[..sp]).ok_or_else(|| bad("invalid base64"))?;
            if token.is_empty() {
                return Err(bad("empty token"));
            }
            let rank: u32 = std::str::from_utf8(&line[sp + 1..])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("rank is not a non-negative integer"))?;
            let r = rank as usize;
            if r > data.len() {
                return Err(bad("rank larger than the file could describe"));
            }
            if by_rank.len() <= r {
                by_rank.resize(r + 1, None);
            }
            if by_rank[r].is_some() {
                return Err(bad(&format!("rank {rank} appears twice")));
            }
            if ranks.insert(token.clone(), rank).is_some() {
                return Err(bad("token appears twice"));
            }
            by_rank[r] = Some(token);
        }
        let tokens: Vec<Vec<u8>> = by_rank
            .into_iter()
            .enumerate()
            .map(|(r, t)| {
                t.ok_or_else(|| TokenizerError::BadRankFile {
                    line: 0,
                    what: format!("rank {r} is missing"),
                })
            })
            .collect::<Result<_, _>>()?;
        for b in 0..=255u8 {
            if !ranks.contains_key(&[b][..]) {
                return Err(TokenizerError::BadRankFile {
                    line: 0,
                    what: format!("single byte {b:#04x} has no rank"),
                });
            }
        }
        if let Some(e) = eot
            && (e as usize) < tokens.len()
        {
            return Err(TokenizerError::BadRankFile {
                line: 0,
                what: format!("end-of-text id {e} collides with a mergeable token"),
            });
        }
        Ok(Gpt2Bpe { ranks, tokens, eot })
    }

    /// Rank (= token id) of a byte string, if it is a mergeable token.
    pub fn rank(&self, bytes: &[u8]) -> Option<u32> {
        self.ranks.get(bytes).copied()
    }

    /// Appends the BPE token ids of one pre-tokenized piece.
    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        // parts[k] = start offset of part k; a sentinel at the end. pair[k] = rank of the
        // concatenation of parts k and k+1 (u32::MAX if not in the vocabulary).
        let mut parts: Vec<usize> = (0..=piece.len()).collect();
        let pair_rank = |parts: &[usize], k: usize| -> u32 {
            if k + 2 < parts.len() {
                self.rank(&piece[parts[k]..parts[k + 2]])
                    .unwrap_or(u32::MAX)
            } else {
                u32::MAX
            }
        };
        let mut pair: Vec<u32> = (0..parts.len() - 1).map(|k| pair_rank(&parts, k)).collect();
        while let Some((k, &best)) = pair.iter().enumerate().min_by_key(|&(k, &r)| (r, k)) {
            if best == u32::MAX {
                break;
            }
            // Merge parts k and k+1: drop boundary k+1, then refresh the two affected pairs.
            parts.remove(k + 1);
            pair.remove(k + 1);
            pair[k] = pair_rank(&parts, k);
            if k > 0 {
                pair[k - 1] = pair_rank(&parts, k - 1);
            }
        }
        for w in parts.windows(2) {
            // Every single byte has a rank, and merged parts are vocabulary entries.
            let id = self.rank(&piece[w[0]..w[1]]).unwrap_or(u32::MAX);
            debug_assert_ne!(id, u32::MAX);
            out.push(id);
        }
    }
}

impl Tokenizer for Gpt2Bpe {
    fn vocab_size(&self) -> usize {
        self.tokens.len() + usize::from(self.eot.is_some())
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        for piece in gpt2_pretokenize(text) {
            self.encode_piece(piece.as_bytes(), &mut out);
        }
        out
    }

    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            if let Some(t) = self.tokens.get(id as usize) {
                out.extend_from_slice(t);
            } else if Some(id) == self.eot {
                out.extend_from_slice(EOT_TEXT);
            } else {
                return Err(TokenizerError::UnknownToken {
                    id,
                    vocab_size: self.vocab_size(),
                });
            }
        }
        Ok(out)
    }

    fn eot_token(&self) -> Option<u32> {
        self.eot
    }
}

/// Decodes standard base64 (RFC 4648 alphabet, `=` padding required to a multiple of 4).
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let n_chunks = s.len() / 4;
    for (ci, chunk) in s.chunks_exact(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && ci + 1 != n_chunks) {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | val(c)?;
        }
        acc <<= 6 * pad as u32;
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(base64_decode(b"IQ==").unwrap(), b"!");
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"aGVs").unwrap(), b"hel");
        assert!(base64_decode(b"aGV").is_none());
        assert!(base64_decode(b"a===").is_none());
        assert!(base64_decode(b"IQ==IQ==").is_none());
        assert!(base64_decode(b"I*==").is_none());
    }

    #[test]
    fn bad_rank_files_are_refused_with_the_line() {
        let e = Gpt2Bpe::from_tiktoken(b"IQ== 0\nnot-a-line\n", None).unwrap_err();
        assert!(
            matches!(e, TokenizerError::BadRankFile { line: 2, .. }),
            "{e}"
        );
        let e = Gpt2Bpe::from_tiktoken(b"IQ== 0\nIQ== 1\n", None).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Gpt2Bpe::from_tiktoken(b"IQ== 1\n", None).unwrap_err();
        assert!(e.to_string().contains("rank 0 is missing"), "{e}");
        let e = Gpt2Bpe::from_tiktoken(b"IQ== 0\n", None).unwrap_err();
        assert!(e.to_string().contains("single byte"), "{e}");
    }
}
