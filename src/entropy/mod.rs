//! Attention entropy.
