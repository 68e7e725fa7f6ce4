//! A model directory's own tokenizer: `tokenizer.json`, or `vocab.json` + `merges.txt`, else the
//! built-in one by vocabulary size.
//!
//! GPT-2's Hugging Face files are rebuilt here from the embedded tiktoken rank table (no
//! network): the vocabulary through GPT-2's byte-to-unicode table (written out independently
//! below), and each merge by running rank-limited BPE on each token's bytes. The loaded
//! tokenizer must then encode the reference fixture (made by tiktoken) exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use privlm::model::tokenizer::{
    Gpt2Bpe, HfBpe, Tokenizer, TokenizerKind, TokenizerSource, for_model_dir,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("privlm-tokdir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// GPT-2's `bytes_to_unicode`, written from its definition: bytes `!`..`~`, `¡`..`¬`, `®`..`ÿ`
/// map to themselves; the other 68 bytes, in increasing order, to U+0100, U+0101, ...
fn unicode_of_byte() -> Vec<char> {
    let keep: Vec<u32> = (0x21..=0x7e)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut next = 0x100;
    (0..=255u32)
        .map(|b| {
            if keep.contains(&b) {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            }
        })
        .collect()
}

fn to_unicode(bytes: &[u8], table: &[char]) -> String {
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Merge rules in rank order: (left bytes, right bytes).
type Merges = Vec<(Vec<u8>, Vec<u8>)>;

/// GPT-2's vocabulary (id -> bytes) and merges (in rank order), from the embedded table.
fn gpt2_files() -> (Vec<Vec<u8>>, Merges) {
    let bpe = Gpt2Bpe::shared();
    let n = 50256;
    let tokens: Vec<Vec<u8>> = (0..n as u32)
        .map(|id| bpe.decode_bytes(&[id]).unwrap())
        .collect();
    let mut merges = Vec::new();
    for (r, t) in tokens.iter().enumerate().skip(256) {
        // BPE of the token's bytes with only the ranks below r: the last merge joins two parts.
        let mut parts: Vec<Vec<u8>> = t.iter().map(|&b| vec![b]).collect();
        loop {
            let best = (0..parts.len().saturating_sub(1))
                .filter_map(|k| {
                    let cat = [parts[k].as_slice(), parts[k + 1].as_slice()].concat();
                    bpe.rank(&cat).filter(|&x| (x as usize) < r).map(|x| (x, k))
                })
                .min();
            let Some((_, k)) = best else { break };
            let right = parts.remove(k + 1);
            parts[k].extend(right);
        }
        assert_eq!(parts.len(), 2, "token {r} does not split into one merge");
        merges.push((parts[0].clone(), parts[1].clone()));
    }
    (tokens, merges)
}

fn write_vocab_merges(dir: &Path, tokens: &[Vec<u8>], merges: &Merges) {
    let u = unicode_of_byte();
    let mut vocab: BTreeMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (to_unicode(t, &u), i as u32))
        .collect();
    vocab.insert("<|endoftext|>".into(), tokens.len() as u32);
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&vocab).unwrap(),
    )
    .unwrap();
    let mut text = String::from("#version: 0.2\n");
    for (a, b) in merges {
        text.push_str(&format!("{} {}\n", to_unicode(a, &u), to_unicode(b, &u)));
    }
    std::fs::write(dir.join("merges.txt"), text).unwrap();
}

fn tokenizer_json(tokens: &[Vec<u8>], merges: &Merges, pairs_as_arrays: bool) -> serde_json::Value {
    let u = unicode_of_byte();
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (to_unicode(t, &u), (i as u64).into()))
        .collect();
    let merges: Vec<serde_json::Value> = merges
        .iter()
        .map(|(a, b)| {
            let (a, b) = (to_unicode(a, &u), to_unicode(b, &u));
            if pairs_as_arrays {
                serde_json::json!([a, b])
            } else {
                format!("{a} {b}").into()
            }
        })
        .collect();
    serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": tokens.len(), "content": "<|endoftext|>", "special": true}],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges}
    })
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn check_against_fixture(tok: &dyn Tokenizer) {
    let f: Fixture =
        serde_json::from_str(include_str!("fixtures/tokenizer/gpt2_bpe.json")).unwrap();
    assert!(f.cases.len() >= 60);
    for c in &f.cases {
        assert_eq!(tok.encode(&c.text), c.ids, "{:?}", c.text);
        assert_eq!(tok.decode(&c.ids).unwrap(), c.text);
    }
    assert_eq!(tok.vocab_size(), 50257);
    assert_eq!(tok.eot_token(), Some(50256));
    assert_eq!(tok.decode(&[50256]).unwrap(), "<|endoftext|>");
}

#[test]
fn gpt2_from_hugging_face_files_matches_the_reference() {
    let (tokens, merges) = gpt2_files();
    assert_eq!(merges.len(), 50000);

    let dir = tmpdir("vm");
    write_vocab_merges(&dir, &tokens, &merges);
    let (tok, src) = for_model_dir(&dir, 50257).unwrap();
    assert_eq!(src, TokenizerSource::VocabMerges);
    check_against_fixture(tok.as_ref());

    // tokenizer.json takes precedence, in both merge notations.
    for arrays in [false, true] {
        let j = tokenizer_json(&tokens, &merges, arrays);
        std::fs::write(dir.join("tokenizer.json"), j.to_string()).unwrap();
        let (tok, src) = for_model_dir(&dir, 50257).unwrap();
        assert_eq!(src, TokenizerSource::TokenizerJson);
        check_against_fixture(tok.as_ref());
    }
}

/// A small byte-level vocabulary: the 256 bytes, then `ab` (256), `bc` (257), `abc` (258).
fn small_files(dir: &Path, merges: &[&str]) {
    let u = unicode_of_byte();
    let mut vocab: BTreeMap<String, u32> = (0..=255u8)
        .map(|b| (u[b as usize].to_string(), b as u32))
        .collect();
    for (s, id) in [("ab", 256), ("bc", 257), ("abc", 258)] {
        vocab.insert(s.into(), id);
    }
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&vocab).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("merges.txt"), merges.join("\n")).unwrap();
}

#[test]
fn merges_follow_the_merge_list_not_the_ids() {
    let dir = tmpdir("order");
    // "b c" is listed first: "abc" becomes a + bc (no merge "a bc"), although "ab" has the
    // lower id; tiktoken's rule (rank of the concatenation = id) would give ab + c.
    small_files(&dir, &["b c", "a b", "ab c"]);
    let t = HfBpe::from_vocab_merges(&dir).unwrap();
    assert_eq!(t.encode("abc"), [b'a' as u32, 257]);
    small_files(&dir, &["a b", "b c", "ab c"]);
    let t = HfBpe::from_vocab_merges(&dir).unwrap();
    assert_eq!(t.encode("abc"), [258]);
    assert_eq!(t.encode("abcab"), [258, 256]);
    assert_eq!(t.decode(&[258, 256]).unwrap(), "abcab");
    assert!(t.decode(&[259]).is_err());
}

#[test]
fn bad_tokenizer_files_are_refused_by_name() {
    let dir = tmpdir("bad");
    small_files(&dir, &["a b", "a x"]);
    let e = HfBpe::from_vocab_merges(&dir).unwrap_err().to_string();
    assert!(e.contains("merges.txt") && e.contains("\"ax\""), "{e}");
    small_files(&dir, &["a b c"]);
    let e = HfBpe::from_vocab_merges(&dir).unwrap_err().to_string();
    assert!(e.contains("line 1"), "{e}");

    // Only one of the two files: the missing one is named, no silent fallback.
    std::fs::remove_file(dir.join("merges.txt")).unwrap();
    let e = for_model_dir(&dir, 256).err().unwrap().to_string();
    assert!(e.contains("merges.txt") && e.contains("missing"), "{e}");

    // tokenizer.json settings other than GPT-2's.
    let (tokens, merges) = ((0..=255u8).map(|b| vec![b]).collect::<Vec<_>>(), Vec::new());
    let base = tokenizer_json(&tokens, &merges, false);
    let tj = dir.join("tokenizer.json");
    let cases: [(&str, &str, serde_json::Value); 5] = [
        ("/model/type", "model.type", "WordPiece".into()),
        (
            "/normalizer",
            "normalizer",
            serde_json::json!({"type": "NFC"}),
        ),
        (
            "/pre_tokenizer/add_prefix_space",
            "pre_tokenizer",
            true.into(),
        ),
        ("/model/byte_fallback", "model.byte_fallback", true.into()),
        (
            "/post_processor",
            "post_processor",
            serde_json::json!({"type": "TemplateProcessing"}),
        ),
    ];
    for (ptr, name, val) in cases {
        let mut j = base.clone();
        *j.pointer_mut(ptr).unwrap() = val;
        std::fs::write(&tj, j.to_string()).unwrap();
        let e = HfBpe::from_tokenizer_json(&tj).unwrap_err().to_string();
        assert!(
            e.contains(name) && e.contains("tokenizer.json"),
            "{ptr}: {e}"
        );
    }
    std::fs::write(&tj, base.to_string()).unwrap();
    let t = HfBpe::from_tokenizer_json(&tj).unwrap();
    assert_eq!(t.encode("hi"), [b'h' as u32, b'i' as u32]);
}

#[test]
fn built_in_tokenizer_by_vocabulary_size_otherwise() {
    let dir = tmpdir("none");
    let (t, src) = for_model_dir(&dir, 256).unwrap();
    assert_eq!(src, TokenizerSource::BuiltIn(TokenizerKind::Byte, None));
    assert_eq!(t.vocab_size(), 256);
    let (t, src) = for_model_dir(&dir, 50257).unwrap();
    assert_eq!(src, TokenizerSource::BuiltIn(TokenizerKind::Gpt2, None));
    assert_eq!(t.encode("Hello world"), [15496, 995]);
    let (_, src) = for_model_dir(&dir, 512).unwrap();
    assert!(matches!(
        src,
        TokenizerSource::BuiltIn(TokenizerKind::Byte, Some(_))
    ));
    assert!(for_model_dir(&dir, 100).is_err());
}
