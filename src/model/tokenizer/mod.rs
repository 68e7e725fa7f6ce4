//! Tokenizers (placeholder: the tokenizer helper replaces this module).
