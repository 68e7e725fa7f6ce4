//! Model.

pub mod tokenizer;
