//! The byte-level tokenizer: token id = byte value, vocabulary 256.

use super::{Tokenizer, TokenizerError};

/// One token per UTF-8 byte: `encode(s) = s.as_bytes()` as ids, vocabulary 256, no
/// end-of-text token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    fn vocab_size(&self) -> usize {
        256
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }

    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        ids.iter()
            .map(|&id| {
                u8::try_from(id).map_err(|_| TokenizerError::UnknownToken {
                    id,
                    vocab_size: 256,
                })
            })
            .collect()
    }

    fn eot_token(&self) -> Option<u32> {
        None
    }
}
