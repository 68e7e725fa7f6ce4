#!/usr/bin/env python3
"""Make the tiny GPT-2 test fixture in tests/fixtures/gpt2_tiny/.

Writes a Hugging Face GPT-2 checkpoint directory (config.json written by
transformers.GPT2Config, model.safetensors with GPT-2's tensor names, Conv1D [in, out]
layout, `transformer.` prefix, tied input/output embeddings) with random weights, and
expected.json with the model's logits for a fixed token sequence and its greedy generation.

The forward pass is computed here in float64 numpy, written to follow Hugging Face's
GPT2LMHeadModel exactly (pre-LN blocks, gelu_new, causal softmax, scale 1/sqrt(d_head),
final ln_f, LM head = wte^T); transformers supplies the config. scripts/check_gpt2_fixture_hf.py
then checks expected.json against Hugging Face's own GPT2LMHeadModel (needs torch).

Usage: python3 scripts/make_gpt2_fixture.py [OUT_DIR]
Needs: numpy, safetensors, transformers (config only).
"""

import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file
from transformers import GPT2Config

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gpt2_tiny"
N_LAYER, N_HEAD, N_EMBD, VOCAB, N_POS = 2, 4, 64, 512, 32
SEED = 20250103
TOKENS = [17, 301, 5, 88, 402, 256, 3, 511, 0, 77, 123, 42, 9, 480, 230, 64]
PROMPT = [5, 88, 402, 17]
N_NEW = 12
# Hugging Face's names of the embeddings (the rest of the keys are already HF's).
HF_NAME = {"wte": "wte.weight", "wpe": "wpe.weight"}


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def forward(w, tokens):
    t = len(tokens)
    d, h = N_EMBD, N_HEAD
    dk = d // h
    x = w["wte"][tokens] + w["wpe"][:t]
    mask = np.tril(np.ones((t, t), dtype=bool))
    for i in range(N_LAYER):
        p = f"h.{i}."
        a = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :d], qkv[:, d : 2 * d], qkv[:, 2 * d :]
        outs = []
        for hh in range(h):
            sl = slice(hh * dk, (hh + 1) * dk)
            s = q[:, sl] @ k[:, sl].T / np.sqrt(dk)
            s = np.where(mask, s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            e = np.exp(s)
            pr = e / e.sum(-1, keepdims=True)
            outs.append(pr @ v[:, sl])
        att = np.concatenate(outs, -1) @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        x = x + att
        m = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        m = gelu_new(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte"].T


def main():
    rng = np.random.default_rng(SEED)
    d, ff = N_EMBD, 4 * N_EMBD

    def normal(shape, std):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    w = {"wte": normal((VOCAB, d), 0.3), "wpe": normal((N_POS, d), 0.1)}
    for i in range(N_LAYER):
        p = f"h.{i}."
        w[p + "ln_1.weight"] = (1.0 + normal((d,), 0.1)).astype(np.float32)
        w[p + "ln_1.bias"] = normal((d,), 0.1)
        w[p + "attn.c_attn.weight"] = normal((d, 3 * d), 0.15)
        w[p + "attn.c_attn.bias"] = normal((3 * d,), 0.05)
        w[p + "attn.c_proj.weight"] = normal((d, d), 0.1)
        w[p + "attn.c_proj.bias"] = normal((d,), 0.05)
        w[p + "ln_2.weight"] = (1.0 + normal((d,), 0.1)).astype(np.float32)
        w[p + "ln_2.bias"] = normal((d,), 0.1)
        w[p + "mlp.c_fc.weight"] = normal((d, ff), 0.15)
        w[p + "mlp.c_fc.bias"] = normal((ff,), 0.05)
        w[p + "mlp.c_proj.weight"] = normal((ff, d), 0.08)
        w[p + "mlp.c_proj.bias"] = normal((d,), 0.05)
    w["ln_f.weight"] = (1.0 + normal((d,), 0.1)).astype(np.float32)
    w["ln_f.bias"] = normal((d,), 0.1)

    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    logits = forward(w64, TOKENS)

    seq = list(PROMPT)
    margins = []
    for _ in range(N_NEW):
        last = forward(w64, seq)[-1]
        top2 = np.sort(last)[-2:]
        margins.append(float(top2[1] - top2[0]))
        seq.append(int(np.argmax(last)))
    assert min(margins) > 1e-3, f"greedy margins too small: {margins}"

    os.makedirs(OUT, exist_ok=True)
    cfg = GPT2Config(
        n_layer=N_LAYER,
        n_head=N_HEAD,
        n_embd=N_EMBD,
        vocab_size=VOCAB,
        n_positions=N_POS,
        bos_token_id=0,
        eos_token_id=0,
    )
    cfg.architectures = ["GPT2LMHeadModel"]
    with open(os.path.join(OUT, "config.json"), "w") as f:
        f.write(cfg.to_json_string())
    save_file(
        {"transformer." + HF_NAME.get(k, k): np.ascontiguousarray(v) for k, v in w.items()},
        os.path.join(OUT, "model.safetensors"),
        metadata={"format": "pt"},
    )
    expected = {
        "tokens": TOKENS,
        "vocab_size": VOCAB,
        "logits": [float(x) for x in logits.reshape(-1)],
        "greedy_prompt": PROMPT,
        "greedy_tokens": seq[len(PROMPT) :],
        "greedy_min_margin": min(margins),
    }
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)
    print("wrote", OUT, "logit range", float(logits.min()), float(logits.max()), "min margin", min(margins))


if __name__ == "__main__":
    main()
