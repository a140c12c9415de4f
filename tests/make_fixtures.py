#!/usr/bin/python3
"""Regenerates tests/fixtures/gru_*.safetensors: torch.nn.GRU reference outputs and
gradients that tests/test_torch_parity.cpp compares the library against (DESIGN §2:
with K = 1 and decay = 0 the wrapped GRU is exactly torch.nn.GRU).

    /usr/bin/python3 tests/make_fixtures.py

Each file holds, for one shape (T, B, I, H), in float64:
  weight_ih (3H,I), weight_hh (3H,H), bias_ih (3H), bias_hh (3H)   torch's params, renamed
  decay (1,H) = 0                                                   the wrapper's decay
  x (T,B,I), dy (T,B,H)                                             input, upstream gradient
  y (T,B,H)                                                         torch's output (h0 = 0)
  grad.x, grad.weight_ih, grad.weight_hh, grad.bias_ih, grad.bias_hh
                                                                    autograd of sum(y * dy)
Everything is drawn from a fixed torch seed, so rerunning rewrites identical files.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# (T, B, I, H): the two brief shapes, a single-step case and a width-1 case.
SHAPES = [(5, 3, 4, 6), (7, 2, 3, 5), (1, 4, 2, 3), (6, 1, 1, 1)]
SEED = 20240207
# Torch's init, U(-1/sqrt(H), 1/sqrt(H)), keeps every gate near 1/2; scaling it up puts
# the gates in their nonlinear range so the comparison is not trivial.
PARAM_SCALE = 2.5
RENAME = {
    "weight_ih_l0": "weight_ih",
    "weight_hh_l0": "weight_hh",
    "bias_ih_l0": "bias_ih",
    "bias_hh_l0": "bias_hh",
}


def make(T, B, I, H, seed):
    torch.manual_seed(seed)
    gru = torch.nn.GRU(I, H, num_layers=1, batch_first=False).double()
    with torch.no_grad():
        for p in gru.parameters():
            p.mul_(PARAM_SCALE)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(T, B, H, dtype=torch.float64)
    y, _ = gru(x)  # h0 = 0
    (y * dy).sum().backward()

    t = {}
    for name, p in gru.named_parameters():
        t[RENAME[name]] = p.detach().numpy().copy()
        t["grad." + RENAME[name]] = p.grad.detach().numpy().copy()
    t["decay"] = torch.zeros(1, H, dtype=torch.float64).numpy()
    t["x"] = x.detach().numpy().copy()
    t["dy"] = dy.numpy().copy()
    t["y"] = y.detach().numpy().copy()
    t["grad.x"] = x.grad.numpy().copy()
    meta = {
        "generator": "tests/make_fixtures.py",
        "reference": "torch.nn.GRU float64, h0 = 0, loss = sum(y * dy)",
        "shape_TBIH": f"{T},{B},{I},{H}",
        "seed": str(seed),
    }
    return t, meta


def main():
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    for i, (T, B, I, H) in enumerate(SHAPES):
        tensors, meta = make(T, B, I, H, SEED + i)
        path = os.path.join(OUT, f"gru_T{T}_B{B}_I{I}_H{H}.safetensors")
        safetensors_io.save(path, tensors, meta)
        print(f"wrote {os.path.relpath(path, os.path.dirname(HERE))} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
