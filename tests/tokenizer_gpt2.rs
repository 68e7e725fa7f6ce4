//! GPT-2 BPE against a reference fixture made by tiktoken (scripts/make_tokenizer_fixture.py),
//! plus round trips and the byte tokenizer.

use privlm::model::tokenizer::{
    ByteTokenizer, GPT2_EOT_TOKEN, GPT2_RANKS_SHA256, GPT2_VOCAB_SIZE, Gpt2Bpe, Tokenizer,
    TokenizerError, TokenizerKind,
};

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let s = include_str!("fixtures/tokenizer/gpt2_bpe.json");
    serde_json::from_str(s).expect("fixture parses")
}

#[test]
fn embedded_rank_table_is_gpt2s() {
    let d = ring::digest::digest(&ring::digest::SHA256, Gpt2Bpe::embedded_rank_file());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GPT2_RANKS_SHA256);
    let t = Gpt2Bpe::new();
    assert_eq!(t.vocab_size(), GPT2_VOCAB_SIZE);
    assert_eq!(t.eot_token(), Some(GPT2_EOT_TOKEN));
    assert!(std::ptr::eq(Gpt2Bpe::shared(), Gpt2Bpe::shared()));
    assert_eq!(Gpt2Bpe::shared().encode("Hello world"), [15496, 995]);
}

#[test]
fn matches_reference_fixture_exactly() {
    let t = Gpt2Bpe::shared();
    let f = fixture();
    assert!(f.cases.len() >= 60, "fixture has {} cases", f.cases.len());
    let mut failures = Vec::new();
    for c in &f.cases {
        let got = t.encode(&c.text);
        if got != c.ids {
            failures.push(format!("{:?}: got {:?}, want {:?}", c.text, got, c.ids));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn decode_of_encode_is_identity() {
    let t = Gpt2Bpe::shared();
    for c in &fixture().cases {
        assert_eq!(t.decode(&t.encode(&c.text)).unwrap(), c.text);
        assert_eq!(t.decode(&c.ids).unwrap(), c.text);
    }
}

#[test]
fn well_known_ids() {
    let t = Gpt2Bpe::shared();
    assert_eq!(t.encode("Hello world"), [15496, 995]);
    assert_eq!(t.decode(&[GPT2_EOT_TOKEN]).unwrap(), "<|endoftext|>");
    // Special-token text is ordinary text when encoding.
    assert!(!t.encode("<|endoftext|>").contains(&GPT2_EOT_TOKEN));
}

#[test]
fn decode_errors() {
    let t = Gpt2Bpe::shared();
    assert_eq!(
        t.decode(&[50257]).unwrap_err(),
        TokenizerError::UnknownToken {
            id: 50257,
            vocab_size: 50257
        }
    );
    // "é" is two bytes; its first byte alone is a token but not valid UTF-8.
    let ids = t.encode("é");
    let first_byte = t.rank(&"é".as_bytes()[..1]).unwrap();
    assert!(matches!(
        t.decode(&[first_byte]),
        Err(TokenizerError::InvalidUtf8 { valid_up_to: 0 })
    ));
    assert_eq!(t.decode_lossy(&[first_byte]).unwrap(), "\u{fffd}");
    assert_eq!(t.decode(&ids).unwrap(), "é");
}

#[test]
fn byte_tokenizer() {
    let t = ByteTokenizer;
    let s = "héllo 👋\n";
    let ids = t.encode(s);
    assert_eq!(ids.len(), s.len());
    assert_eq!(ids[1], 0xc3);
    assert_eq!(t.decode(&ids).unwrap(), s);
    assert_eq!(t.vocab_size(), 256);
    assert_eq!(t.eot_token(), None);
    assert_eq!(
        t.decode(&[256]).unwrap_err(),
        TokenizerError::UnknownToken {
            id: 256,
            vocab_size: 256
        }
    );
}

#[test]
fn kinds_by_name() {
    for (name, kind, vocab) in [
        ("gpt2", TokenizerKind::Gpt2, 50257),
        ("byte", TokenizerKind::Byte, 256),
    ] {
        let k: TokenizerKind = name.parse().unwrap();
        assert_eq!(k, kind);
        assert_eq!(k.to_string(), name);
        assert_eq!(k.vocab_size(), vocab);
        assert_eq!(k.build().vocab_size(), vocab);
    }
    assert!(matches!(
        "bert".parse::<TokenizerKind>(),
        Err(TokenizerError::UnknownKind(_))
    ));
}

/// Throughput figure, not a check: `cargo test --release --test tokenizer_gpt2 -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let t0 = std::time::Instant::now();
    let t = Gpt2Bpe::new();
    let load = t0.elapsed();
    let mut text = String::new();
    for c in &fixture().cases {
        text.push_str(&c.text);
        text.push('\n');
    }
    let text = text.repeat(200);
    let t1 = std::time::Instant::now();
    let ids = t.encode(&text);
    let enc = t1.elapsed();
    println!(
        "load {:.1} ms; encode {} bytes -> {} tokens in {:.1} ms ({:.2} MB/s)",
        load.as_secs_f64() * 1e3,
        text.len(),
        ids.len(),
        enc.as_secs_f64() * 1e3,
        text.len() as f64 / enc.as_secs_f64() / 1e6
    );
}
