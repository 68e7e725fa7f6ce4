#!/usr/bin/env python3
"""Check the tiny GPT-2 fixture against Hugging Face's own GPT2LMHeadModel (PyTorch).

scripts/make_gpt2_fixture.py computes expected.json with a float64 numpy GPT-2. This script
loads the same checkpoint directory with transformers.GPT2LMHeadModel (float64) and checks
that its logits for the fixture's tokens, and its greedy generation from the fixture's
prompt, agree with expected.json. It exits non-zero on a mismatch.

Usage: python3 scripts/check_gpt2_fixture_hf.py [FIXTURE_DIR]
Needs: torch, transformers, safetensors.
"""

import json
import sys

import torch
from transformers import GPT2LMHeadModel

DIR = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gpt2_tiny"
exp = json.load(open(f"{DIR}/expected.json"))
model = GPT2LMHeadModel.from_pretrained(DIR, torch_dtype=torch.float64).eval()

with torch.no_grad():
    logits = model(torch.tensor([exp["tokens"]])).logits[0]
want = torch.tensor(exp["logits"], dtype=torch.float64).reshape(logits.shape)
err = (logits - want).abs().max().item()
print(f"max |HF logits - expected.json logits| = {err:.3e} over {logits.numel()} values")

ids = list(exp["greedy_prompt"])
with torch.no_grad():
    for _ in range(len(exp["greedy_tokens"])):
        nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
        ids.append(nxt)
gen = ids[len(exp["greedy_prompt"]):]
print(f"HF greedy tokens: {gen}")
print(f"expected tokens:  {exp['greedy_tokens']}")

ok = err < 1e-9 and gen == exp["greedy_tokens"]
print("OK: Hugging Face agrees with the fixture" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
