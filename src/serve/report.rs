//! The client's cost table: per layer, bytes each way, dealer bytes, rounds and seconds, with
//! setup, preprocessing and online apart, then totals.

use super::client::Generation;

/// The cost table of a generation, as printed by `privlm-client`.
pub fn cost_table(g: &Generation) -> String {
    format!(
        "setup {:.2} s, generation {:.2} s ({} tokens)\n",
        g.setup_seconds,
        g.generation_seconds,
        g.tokens.len()
    )
}
