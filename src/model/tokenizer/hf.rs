//! Byte-level BPE tokenizers from a Hugging Face model directory: `vocab.json` + `merges.txt`
//! (the "slow" GPT-2 tokenizer files) or `tokenizer.json` (the `tokenizers` library's file).
//!
//! Byte-level BPE (Radford et al. 2019, section 2.2) as Hugging Face defines it: the text is
//! split by GPT-2's pre-tokenization pattern; each piece's UTF-8 bytes become symbols (one per
//! byte, written in the vocabulary as printable characters by GPT-2's byte-to-unicode table);
//! then, repeatedly, the adjacent pair of symbols that comes first in the merge list is merged
//! (leftmost first among equal pairs), until no adjacent pair is in the list. Ids come from
//! the vocabulary. Unlike [`super::Gpt2Bpe`] (which merges by the rank of the concatenation,
//! tiktoken's rule, exact for GPT-2's own files) this follows the merge list, so it is exact
//! for any byte-level BPE vocabulary.
//!
//! Only the configuration GPT-2 uses is accepted; any other setting of `tokenizer.json`
//! (another model type, a normalizer, another pre-tokenizer, a prefix space, a post-processor
//! adding tokens, ...) is refused with the field's name rather than tokenizing differently.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::{Tokenizer, TokenizerError, gpt2_pretokenize};

const EOT_TEXT: &str = "<|endoftext|>";

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the others (controls,
/// space, DEL, NBSP, soft hyphen, ...) to U+0100 onwards in byte order.
pub fn byte_to_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let shift = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shift).expect("U+0100..U+0143 are characters")
}

/// A byte-level BPE tokenizer loaded from a Hugging Face directory.
#[derive(Clone)]
pub struct HfBpe {
    /// id -> bytes the token stands for (`None` for ids the vocabulary skips).
    tokens: Vec<Option<Vec<u8>>>,
    /// The id of each single byte.
    byte_ids: [u32; 256],
    /// (left id, right id) -> (merge rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    eot: Option<u32>,
}

impl std::fmt::Debug for HfBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfBpe")
            .field("vocab_size", &self.tokens.len())
            .field("merges", &self.merges.len())
            .field("eot", &self.eot)
            .finish()
    }
}

fn bad(path: &str, what: impl Into<String>) -> TokenizerError {
    TokenizerError::BadFile {
        path: path.to_string(),
        what: what.into(),
    }
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|e| TokenizerError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

/// Bytes of a vocabulary entry: through the byte-to-unicode table when every character is in
/// it, else (special tokens written as plain text) the entry's UTF-8.
fn entry_bytes(s: &str, unicode_to_byte: &HashMap<char, u8>) -> Vec<u8> {
    s.chars()
        .map(|c| unicode_to_byte.get(&c).copied())
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_else(|| s.as_bytes().to_vec())
}

impl HfBpe {
    /// Loads `vocab.json` and `merges.txt` of a directory.
    pub fn from_vocab_merges(dir: &Path) -> Result<Self, TokenizerError> {
        let vp = dir.join("vocab.json");
        let mp = dir.join("merges.txt");
        let (vname, mname) = (vp.display().to_string(), mp.display().to_string());
        let vocab: Value =
            serde_json::from_str(&read(&vp)?).map_err(|e| bad(&vname, e.to_string()))?;
        let vocab = parse_vocab(&vname, &vocab)?;
        let text = read(&mp)?;
        let mut merges = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || (i == 0 && line.starts_with("#version")) {
                continue;
            }
            let mut it = line.split(' ');
            match (it.next(), it.next(), it.next()) {
                (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => {
                    merges.push((a.to_string(), b.to_string(), i + 1))
                }
                _ => {
                    return Err(bad(
                        &mname,
                        format!(
                            "line {}: expected two symbols separated by one space",
                            i + 1
                        ),
                    ));
                }
            }
        }
        Self::build(&mname, vocab, Vec::new(), merges)
    }

    /// Loads a `tokenizer.json`; settings other than GPT-2's are refused by name.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, TokenizerError> {
        let name = path.display().to_string();
        let json: Value =
            serde_json::from_str(&read(path)?).map_err(|e| bad(&name, e.to_string()))?;
        let field = |f: &str| bad(&name, format!("`{f}`: {}", "not GPT-2's byte-level BPE"));
        let is = |v: &Value, ty: &str| v.get("type").and_then(Value::as_str) == Some(ty);
        let null_or = |v: Option<&Value>, ok: &dyn Fn(&Value) -> bool| match v {
            None | Some(Value::Null) => true,
            Some(v) => ok(v),
        };
        let model = json.get("model").ok_or_else(|| bad(&name, "no `model`"))?;
        if !is(model, "BPE") {
            return Err(bad(
                &name,
                format!(
                    "`model.type` is {}, only \"BPE\" is supported",
                    model.get("type").unwrap_or(&Value::Null)
                ),
            ));
        }
        for f in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
            let v = model.get(f);
            if !null_or(v, &|v| v.as_str() == Some("")) {
                return Err(field(&format!("model.{f}")));
            }
        }
        for f in ["byte_fallback", "ignore_merges"] {
            if !null_or(model.get(f), &|v| v == &Value::Bool(false)) {
                return Err(field(&format!("model.{f}")));
            }
        }
        if !null_or(json.get("normalizer"), &|_| false) {
            return Err(field("normalizer"));
        }
        let pre_ok = |p: &Value| {
            is(p, "ByteLevel")
                && p.get("add_prefix_space") != Some(&Value::Bool(true))
                && p.get("use_regex") != Some(&Value::Bool(false))
        };
        if !json.get("pre_tokenizer").is_some_and(pre_ok) {
            return Err(field("pre_tokenizer"));
        }
        if !null_or(json.get("post_processor"), &|p| is(p, "ByteLevel")) {
            return Err(field("post_processor"));
        }
        if !null_or(json.get("decoder"), &|p| is(p, "ByteLevel")) {
            return Err(field("decoder"));
        }
        let vocab = parse_vocab(
            &name,
            model
                .get("vocab")
                .ok_or_else(|| bad(&name, "no `model.vocab`"))?,
        )?;
        let mut added = Vec::new();
        for t in json
            .get("added_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = t.get("id").and_then(Value::as_u64);
            let content = t.get("content").and_then(Value::as_str);
            match (id, content) {
                (Some(id), Some(c)) if id <= u32::MAX as u64 => {
                    added.push((c.to_string(), id as u32))
                }
                _ => {
                    return Err(bad(
                        &name,
                        "`added_tokens`: entry without `id` and `content`",
                    ));
                }
            }
        }
        let mut merges = Vec::new();
        let list = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&name, "no `model.merges` list"))?;
        for (i, m) in list.iter().enumerate() {
            let pair = match m {
                Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                    (Some(a), Some(b)) => Some((a.to_string(), b.to_string())),
                    _ => None,
                },
                _ => None,
            };
            let (a, b) =
                pair.ok_or_else(|| bad(&name, format!("`model.merges[{i}]` is not a pair")))?;
            merges.push((a, b, i));
        }
        Self::build(&name, vocab, added, merges)
    }

    fn build(
        name: &str,
        vocab: Vec<(String, u32)>,
        added: Vec<(String, u32)>,
        merges: Vec<(String, String, usize)>,
    ) -> Result<Self, TokenizerError> {
        let unicode_to_byte: HashMap<char, u8> =
            (0..=255u8).map(|b| (byte_to_char(b), b)).collect();
        let size = vocab
            .iter()
            .chain(&added)
            .map(|(_, id)| *id as usize + 1)
            .max()
            .unwrap_or(0);
        // Ids must be dense enough to hold in memory: at most 16 times the entries.
        if size > 16 * (vocab.len() + added.len()).max(1) {
            return Err(bad(
                name,
                format!("ids up to {size} for {} entries", vocab.len()),
            ));
        }
        let mut tokens: Vec<Option<Vec<u8>>> = vec![None; size];
        let mut ids: HashMap<&str, u32> = HashMap::new();
        for (s, id) in &vocab {
            if tokens[*id as usize].is_some() {
                return Err(bad(name, format!("id {id} appears twice")));
            }
            tokens[*id as usize] = Some(entry_bytes(s, &unicode_to_byte));
            ids.insert(s, *id);
        }
        for (s, id) in &added {
            match &tokens[*id as usize] {
                // The added token repeats a vocabulary entry (GPT-2's <|endoftext|>).
                Some(b) if b == s.as_bytes() => {}
                Some(_) => return Err(bad(name, format!("added token id {id} is taken"))),
                None => tokens[*id as usize] = Some(s.as_bytes().to_vec()),
            }
            ids.entry(s).or_insert(*id);
        }
        let mut byte_ids = [0u32; 256];
        for b in 0..=255u8 {
            let c = byte_to_char(b).to_string();
            byte_ids[b as usize] = *ids.get(c.as_str()).ok_or_else(|| {
                bad(
                    name,
                    format!("the byte {b:#04x} ({c:?}) has no vocabulary entry"),
                )
            })?;
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, (a, b, line)) in merges.iter().enumerate() {
            let look = |s: &str| {
                ids.get(s).copied().ok_or_else(|| {
                    bad(
                        name,
                        format!("merge {line} ({a} {b}): {s:?} is not in the vocabulary"),
                    )
                })
            };
            let (ia, ib, im) = (look(a)?, look(b)?, look(&format!("{a}{b}"))?);
            merge_map.entry((ia, ib)).or_insert((rank as u32, im));
        }
        let eot = ids.get(EOT_TEXT).copied();
        Ok(HfBpe {
            tokens,
            byte_ids,
            merges: merge_map,
            eot,
        })
    }

    fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        loop {
            // The adjacent pair earliest in the merge list (leftmost among equals).
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(k, w)| self.merges.get(&(w[0], w[1])).map(|&(r, m)| (r, k, m)))
                .min();
            let Some((_, k, merged)) = best else { break };
            syms[k] = merged;
            syms.remove(k + 1);
        }
        out.extend(syms);
    }
}

fn parse_vocab(name: &str, v: &Value) -> Result<Vec<(String, u32)>, TokenizerError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(name, "the vocabulary is not a JSON object"))?;
    obj.iter()
        .map(|(k, v)| match v.as_u64() {
            Some(id) if id <= u32::MAX as u64 => Ok((k.clone(), id as u32)),
            _ => Err(bad(
                name,
                format!("vocabulary entry {k:?}: id {v} is not a u32"),
            )),
        })
        .collect()
}

impl Tokenizer for HfBpe {
    fn vocab_size(&self) -> usize {
        self.tokens.len()
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
            match self.tokens.get(id as usize) {
                Some(Some(t)) => out.extend_from_slice(t),
                _ => {
                    return Err(TokenizerError::UnknownToken {
                        id,
                        vocab_size: self.vocab_size(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn eot_token(&self) -> Option<u32> {
        self.eot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        // A few well-known entries: space is 'Ġ' (U+0120), newline 'Ċ' (U+010A), 0xAD U+0143.
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_to_char(b'A'), 'A');
        let all: std::collections::HashSet<char> = (0..=255u8).map(byte_to_char).collect();
        assert_eq!(all.len(), 256);
    }
}
