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
//!
//! See `docs/tokenizer.md` for the data provenance and the test fixture.

mod bpe;
mod byte;
mod pretokenize;

pub use bpe::{GPT2_EOT_TOKEN, GPT2_RANKS_SHA256, GPT2_VOCAB_SIZE, Gpt2Bpe};
pub use byte::ByteTokenizer;
pub use pretokenize::gpt2_pretokenize;

use std::fmt;
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
