//! Tokenizers: text <-> token ids for the models privlm runs.
//!
//! A tokenizer maps a UTF-8 string to a sequence of integer token ids and back. Two are
//! provided, behind the common [`Tokenizer`] trait:
//!
//! - [`Gpt2Bpe`]: GPT-2's byte-level byte-pair encoding (Radford et al. 2019, "Language Models
//!   are Unsupervised Multitask Learners", section 2.2; BPE after Sennrich et al. 2016). Text is
//!   first split into pieces by GPT-2's pre-tokenization pattern, then each piece's UTF-8 bytes
//!   are merged greedily by merge rank. Vocabulary 50,257 (50,256 merged byte strings plus
//!   `<|endoftext|>` = 50256). The rank table ships inside the binary (no download).
//! - [`ByteTokenizer`]: one token per byte (vocabulary 256, id = byte value), for the small
//!   models privlm trains and ships.
//! - [`HfBpe`]: a byte-level BPE tokenizer read from a model directory (`tokenizer.json`, or
//!   `vocab.json` + `merges.txt`); [`for_model_dir`] picks a model's tokenizer.
//!
//! See `docs/tokenizer.md` for the data provenance and the test fixture.

mod bpe;
mod byte;
mod hf;
mod pretokenize;

pub use bpe::{GPT2_EOT_TOKEN, GPT2_RANKS_SHA256, GPT2_VOCAB_SIZE, Gpt2Bpe};
pub use byte::ByteTokenizer;
pub use hf::{HfBpe, byte_to_char};
pub use pretokenize::gpt2_pretokenize;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Errors from building or using a tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizerError {
    /// A token id outside the vocabulary was given to `decode`.
    #[error("token id {id} is outside the vocabulary (size {vocab_size})")]
    UnknownToken {
        /// The offending id.
        id: u32,
        /// The tokenizer's vocabulary size.
        vocab_size: usize,
    },
    /// Decoded bytes are not valid UTF-8 (use `decode_bytes` or `decode_lossy` instead).
    #[error("decoded bytes are not valid UTF-8 at byte {valid_up_to}")]
    InvalidUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// A BPE rank file is malformed.
    #[error("BPE rank file, line {line}: {what}")]
    BadRankFile {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: String,
    },
    /// An unknown tokenizer name was requested.
    #[error("unknown tokenizer {0:?} (known: \"gpt2\", \"byte\")")]
    UnknownKind(String),
    /// A tokenizer file of a model directory is malformed or asks for something unsupported.
    #[error("{path}: {what}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong (names the field or line).
        what: String,
    },
    /// A tokenizer file could not be read.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        msg: String,
    },
    /// No tokenizer fits a vocabulary.
    #[error("{0}")]
    NoTokenizer(String),
}

/// A reversible text <-> token-id mapping.
pub trait Tokenizer: Send + Sync {
    /// Number of token ids (ids are `0..vocab_size()`).
    fn vocab_size(&self) -> usize;

    /// Encodes text to token ids. Special-token text such as `<|endoftext|>` is encoded as
    /// ordinary text, never as a special id.
    fn encode(&self, text: &str) -> Vec<u32>;

    /// Decodes token ids to the bytes they stand for.
    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError>;

    /// Id of the end-of-text token, if the vocabulary has one.
    fn eot_token(&self) -> Option<u32>;

    /// Decodes token ids to a string; fails if the bytes are not valid UTF-8 (a sequence cut
    /// in the middle of a multi-byte character).
    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        String::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })
    }

    /// Decodes token ids to a string, replacing invalid UTF-8 with U+FFFD.
    fn decode_lossy(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The tokenizers privlm knows by name (the name a model's config.json gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// GPT-2 byte-level BPE, vocabulary 50,257.
    Gpt2,
    /// One token per byte, vocabulary 256.
    Byte,
}

impl TokenizerKind {
    /// Vocabulary size of this tokenizer.
    pub fn vocab_size(self) -> usize {
        match self {
            TokenizerKind::Gpt2 => GPT2_VOCAB_SIZE,
            TokenizerKind::Byte => 256,
        }
    }

    /// The built-in tokenizer for a model's vocabulary size: 256 is the byte tokenizer, GPT-2's
    /// size or larger GPT-2 BPE; any other size above 256 falls back to byte ids (which fit)
    /// with a note saying so; a vocabulary under 256 has none.
    pub fn for_vocab_size(vocab: usize) -> Result<(Self, Option<String>), TokenizerError> {
        let gpt2 = GPT2_VOCAB_SIZE;
        if vocab == 256 {
            Ok((TokenizerKind::Byte, None))
        } else if vocab >= gpt2 {
            Ok((TokenizerKind::Gpt2, None))
        } else if vocab > 256 {
            Ok((
                TokenizerKind::Byte,
                Some(format!(
                    "note: vocabulary {vocab} is neither the byte tokenizer's (256) nor GPT-2's \
                     ({gpt2}); using byte tokens (ids 0..255). Pass --tokenizer to choose."
                )),
            ))
        } else {
            Err(TokenizerError::NoTokenizer(format!(
                "vocabulary {vocab} is smaller than any tokenizer privlm has (byte: 256, gpt2: {gpt2})"
            )))
        }
    }

    /// Builds the tokenizer (GPT-2 parses its embedded rank table, a few milliseconds).
    pub fn build(self) -> Box<dyn Tokenizer> {
        match self {
            TokenizerKind::Gpt2 => Box::new(Gpt2Bpe::new()),
            TokenizerKind::Byte => Box::new(ByteTokenizer),
        }
    }
}

impl fmt::Display for TokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenizerKind::Gpt2 => "gpt2",
            TokenizerKind::Byte => "byte",
        })
    }
}

impl FromStr for TokenizerKind {
    type Err = TokenizerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gpt2" => Ok(TokenizerKind::Gpt2),
            "byte" => Ok(TokenizerKind::Byte),
            other => Err(TokenizerError::UnknownKind(other.to_string())),
        }
    }
}

/// Where a model's tokenizer came from ([`for_model_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// The directory's `tokenizer.json`.
    TokenizerJson,
    /// The directory's `vocab.json` and `merges.txt`.
    VocabMerges,
    /// A built-in tokenizer chosen by vocabulary size, with a note when the choice is a guess.
    BuiltIn(TokenizerKind, Option<String>),
}

impl fmt::Display for TokenizerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerSource::TokenizerJson => f.write_str("tokenizer.json of the model directory"),
            TokenizerSource::VocabMerges => {
                f.write_str("vocab.json + merges.txt of the model directory")
            }
            TokenizerSource::BuiltIn(k, _) => write!(f, "built-in {k}"),
        }
    }
}

/// The tokenizer of a model directory: its `tokenizer.json` if it has one, else its
/// `vocab.json` + `merges.txt`, else the built-in tokenizer for `vocab_size`
/// ([`TokenizerKind::for_vocab_size`]). A directory with only one of `vocab.json` and
/// `merges.txt` is an error naming the missing file, not a silent fallback.
pub fn for_model_dir(
    dir: &Path,
    vocab_size: usize,
) -> Result<(Box<dyn Tokenizer>, TokenizerSource), TokenizerError> {
    let tj = dir.join("tokenizer.json");
    if tj.is_file() {
        return Ok((
            Box::new(HfBpe::from_tokenizer_json(&tj)?),
            TokenizerSource::TokenizerJson,
        ));
    }
    let (v, m) = (dir.join("vocab.json"), dir.join("merges.txt"));
    match (v.is_file(), m.is_file()) {
        (true, true) => Ok((
            Box::new(HfBpe::from_vocab_merges(dir)?),
            TokenizerSource::VocabMerges,
        )),
        (true, false) | (false, true) => {
            let (has, missing) = if v.is_file() { (&v, &m) } else { (&m, &v) };
            Err(TokenizerError::BadFile {
                path: missing.display().to_string(),
                what: format!("missing, but {} is there (both are needed)", has.display()),
            })
        }
        (false, false) => {
            let (kind, note) = TokenizerKind::for_vocab_size(vocab_size)?;
            Ok((kind.build(), TokenizerSource::BuiltIn(kind, note)))
        }
    }
}
