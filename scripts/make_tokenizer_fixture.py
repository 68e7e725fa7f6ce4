#!/usr/bin/env python3
"""Make tests/fixtures/tokenizer/gpt2_bpe.json: GPT-2 BPE token ids for tricky strings.

Reference implementation: OpenAI's `tiktoken` (pip install tiktoken), run fully offline.
tiktoken normally downloads GPT-2's data; here we build its "gpt2" encoding by hand from the
ORIGINAL GPT-2 files (vocab.bpe = the merge list, encoder.json = token -> id), taken from the
`tiktoken-rs` crate that cargo downloads into ~/.cargo/registry (run `cargo info tiktoken-rs`
once if it is missing). privlm itself uses a different file (r50k_base.tiktoken, the rank list),
so the fixture also checks that both data files describe the same vocabulary.

Usage: python3 scripts/make_tokenizer_fixture.py [--crate PATH_TO_tiktoken-rs-*.crate]
"""

import argparse
import glob
import hashlib
import json
import os
import random
import tarfile

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

# sha256 of the official GPT-2 merges file (the value tiktoken pins for its download).
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
# GPT-2's pre-tokenization pattern, as tiktoken writes it (equivalent to GPT-2's original
# 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+).
PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "gpt2_bpe.json")

FIXED = [
    "",
    "Hello world",
    "Hello, world! How are you?",
    "I'm here; you're there; they've gone; we'll see; he'd know; it's fine; she's",
    "DON'T SHOUT, IT'S RUDE",
    "'s 't 're 've 'm 'll 'd ''s 'S",
    "naïve café résumé façade Zürich",
    "e\u0301 (e + combining acute), n\u0303",
    "日本語のテキストです。中文文本。한국어 텍스트",
    "Привет, мир! Ελληνικά. العربية עברית",
    "नमस्ते दुनिया (Devanagari with combining marks)",
    "emoji 👋🏽 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 😀😀😀",
    "a  b   c    d",
    "tabs\t\tand\tmore\t",
    "line1\nline2\n\nline4\r\nline5\n",
    "   leading spaces",
    "trailing spaces   ",
    "   ",
    "\n",
    " \n \n  \n",
    "\u00a0non-breaking\u00a0space and ideographic\u3000space",
    "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "fn main() -> Result<(), Box<dyn Error>> {\n    println!(\"{:?}\", v);\n}",
    "if x != y && z >= 0 || !w: print('ok')",
    "3.14159 1,000,000 2024-01-01 0x1F 1e-9 -42 ½ ² ٣",
    "12345678901234567890",
    "<|endoftext|> is plain text here",
    "https://example.com/path?q=1&r=two#frag",
    "user@example.com  (c) 2024 — “quotes” ‘single’ … «guillemets»",
    "😀",
    "\u2028\u2029\u0085 unusual line breaks",
    "zero\u200bwidth\u200cjoiners\u200d",
    "    indented    code    block",
    "ALL CAPS and MiXeD cAsE words",
    "!!!??? ... --- *** ### $$$",
    "The quick brown fox jumps over the lazy dog. " * 3,
]

POOL = (
    list("abcXYZ019 '\t\n.,;:!?-_()[]{}<>\"/\\@#$%^&*+=~`|")
    + ["  ", "   ", "\n\n", " '", "'s", "'ll", "é", "ß", "日", "語", "й", "ω", "ا", "न", "्",
       "\u0301", "😀", "👍🏽", "\u200d", "\u00a0", "\u3000", "½", "٣", "\r\n"]
)


def random_strings(n, seed=20260128):
    rng = random.Random(seed)
    return ["".join(rng.choice(POOL) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def find_crate(explicit):
    if explicit:
        return explicit
    hits = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/cache/*/tiktoken-rs-*.crate")))
    if not hits:
        raise SystemExit("tiktoken-rs crate not found: run `cargo info tiktoken-rs` first")
    return hits[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crate")
    args = ap.parse_args()
    crate = find_crate(args.crate)
    tmp = os.path.join(ROOT, "target", "gpt2-reference-data")
    os.makedirs(tmp, exist_ok=True)
    with tarfile.open(crate) as tar:
        for m in tar.getmembers():
            if m.name.endswith(("assets/vocab.bpe", "assets/encoder.json")):
                m.name = os.path.basename(m.name)
                tar.extract(m, tmp)
    vocab_bpe = os.path.join(tmp, "vocab.bpe")
    encoder_json = os.path.join(tmp, "encoder.json")
    with open(vocab_bpe, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    assert got == VOCAB_BPE_SHA256, f"vocab.bpe sha256 {got} is not GPT-2's"
    # Local paths: tiktoken reads them without any network access.
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe, encoder_json)
    enc = tiktoken.Encoding(
        name="gpt2-local",
        pat_str=PAT,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
        explicit_n_vocab=50257,
    )
    cases = []
    for text in FIXED + random_strings(40):
        ids = enc.encode_ordinary(text)
        assert enc.decode_bytes(ids) == text.encode("utf-8")
        cases.append({"text": text, "ids": ids})
    doc = {
        "reference": f"tiktoken {tiktoken.__version__}, gpt2 encoding built from vocab.bpe "
        f"(sha256 {VOCAB_BPE_SHA256}) + encoder.json, encode_ordinary",
        "pattern": PAT,
        "cases": cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
