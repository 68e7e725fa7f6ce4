#!/usr/bin/env python3
"""Fit the GELU correction polynomial used by privlm's fixed-point GELU (src/model/approx.rs).

GELU (tanh form) = ReLU(x) - h(|x|), where h(a) = 0.5 a (1 - tanh(sqrt(2/pi)(a + 0.044715 a^3)))
is even in x, >= 0 and decays fast. privlm approximates h by a polynomial p on [0, B) and by 0
for |x| >= B. This script fits p by iteratively reweighted least squares (a cheap minimax
approximation) for a few degrees and cut-offs and prints the max error over the real line.
Usage: python3 scripts/fit_gelu.py
"""
import numpy as np

def h(a):
    return 0.5 * a * (1.0 - np.tanh(np.sqrt(2.0 / np.pi) * (a + 0.044715 * a**3)))

def fit(deg, b, iters=60):
    a = np.linspace(0.0, b, 4001)
    y = h(a)
    w = np.ones_like(a)
    for _ in range(iters):
        v = np.vander(a, deg + 1, increasing=True)
        c, *_ = np.linalg.lstsq(v * w[:, None], y * w, rcond=None)
        err = np.abs(v @ c - y)
        w = w * (1.0 + err / err.max()) ; w /= w.mean()
    aa = np.linspace(0.0, b, 200001)
    e_in = np.abs(np.vander(aa, deg + 1, increasing=True) @ c - h(aa)).max()
    return c, max(e_in, h(b))

for deg in (3, 4, 5, 6):
    for b in (2.75, 3.0, 3.25, 3.5, 4.0):
        c, e = fit(deg, b)
        print(f"deg {deg} B {b}: max err {e:.2e} coeffs {[float(f'{x:.8f}') for x in c]}")
