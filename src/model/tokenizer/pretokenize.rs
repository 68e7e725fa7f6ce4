//! GPT-2's pre-tokenization: splitting text into pieces before BPE.
//!
//! GPT-2 splits text with the pattern
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! (leftmost-first alternation, Unicode classes). The `regex` crate has no look-ahead, so the
//! `\s+(?!\S)` rule is applied by hand: we match the pattern without it (its last alternative
//! `\s+` then takes a maximal whitespace run) and, when that run has two or more characters
//! and a non-space character follows it, give its last character back so that it can start
//! the next piece (that is how `\s+(?!\S)` behaves: "a   b" splits as `a`, `  `, ` b`).

use std::sync::OnceLock;

use regex::Regex;

/// The GPT-2 pattern minus the `\s+(?!\S)` alternative (applied by hand, see module docs).
const PATTERN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a constant known to compile (checked by the unit test below).
    RE.get_or_init(|| Regex::new(PATTERN).expect("GPT-2 pre-tokenization pattern compiles"))
}

/// Splits `text` into GPT-2 pre-tokenization pieces; their concatenation is `text`.
pub fn gpt2_pretokenize(text: &str) -> Vec<&str> {
    let re = pattern();
    let mut pieces = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        // Every character matches some alternative, so a match always starts at `pos`.
        let Some(m) = re.find_at(text, pos) else {
            break;
        };
        debug_assert_eq!(m.start(), pos);
        let piece = m.as_str();
        let mut end = m.end();
        let is_space_run = piece.chars().next().is_some_and(char::is_whitespace)
            && piece.chars().all(char::is_whitespace);
        if is_space_run && end < text.len() {
            // `\s+(?!\S)`: leave the last whitespace character for the next piece.
            if let Some((last_start, _)) = piece.char_indices().next_back()
                && last_start > 0
            {
                end = m.start() + last_start;
            }
        }
        pieces.push(&text[pos..end]);
        pos = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces() {
        assert_eq!(gpt2_pretokenize("Hello world"), ["Hello", " world"]);
        assert_eq!(gpt2_pretokenize("a   b"), ["a", "  ", " b"]);
        assert_eq!(gpt2_pretokenize("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(gpt2_pretokenize("a  "), ["a", "  "]);
        assert_eq!(gpt2_pretokenize("I'm ok's"), ["I", "'m", " ok", "'s"]);
        assert_eq!(gpt2_pretokenize("x=12.5"), ["x", "=", "12", ".", "5"]);
        assert_eq!(gpt2_pretokenize(""), Vec::<&str>::new());
    }
}
