#!/usr/bin/python3
"""Regenerates the PyTorch fixtures that tests/test_torch_parity.cpp compares the library
against:

    /usr/bin/python3 tests/make_fixtures.py

Everything is drawn from fixed torch seeds in float64 and written with sorted names, so
rerunning rewrites byte-identical files.

1. tests/fixtures/gru_*.safetensors and lstm_*.safetensors: torch.nn.GRU / torch.nn.LSTM
   reference outputs and gradients (docs/contract.md §4.1–4.2: with K = 1 and decay = 0 the wrapped cell
   is exactly the torch cell). Each file holds, for one shape (T, B, I, H), with G = 3
   (GRU) or 4 (LSTM) gate blocks:
     weight_ih (GH,I), weight_hh (GH,H), bias_ih (GH), bias_hh (GH)   torch's params, renamed
     decay (1,H) = 0                                                   the wrapper's decay
     x (T,B,I), dy (T,B,H)                                             input, upstream gradient
     y (T,B,H)                                                         torch's output (zero
                                                                       initial state)
     grad.x, grad.weight_ih, grad.weight_hh, grad.bias_ih, grad.bias_hh
                                                                       autograd of sum(y * dy)

2. tests/fixtures/rwkv4_model.safetensors: a tiny RWKV-4 language model (V = 11, C = 8,
   L = 2) as a state dict with RWKV-4's exact names and shapes (BlinkDL's RWKV-LM
   RWKV-v4/src/model.py, without the head_qk trick), plus reference data under `ref.`:
     ref.tokens (B,T) int32                         batch-first, as RWKV-4 takes them
     ref.logits (B,T,V) float64                     the model's logits for ref.tokens
     ref.logits_k3_spread1_mean (B,T,V) float64     the same model with K = 3 perspectives
                                                    per time mix, decay rows time_decay + (-1,
                                                    0, +1), averaged (mean aggregator)
   The reference is written below from RWKV-4's equations (docs/contract.md §4.3) with the plain
   O(T²) wkv sum, sharing no code with the library. The state dict is everything not
   under `ref.`.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# ----------------------------------------------------------------------------------
# 1. GRU and LSTM parity fixtures

# (T, B, I, H): two general shapes, a single-step case and a width-1 case.
SHAPES = [(5, 3, 4, 6), (7, 2, 3, 5), (1, 4, 2, 3), (6, 1, 1, 1)]
# name → (torch module, seed of the first shape, its zero initial state)
CELLS = {
    "gru": (torch.nn.GRU, 20240207, "h0 = 0"),
    "lstm": (torch.nn.LSTM, 20240311, "h0 = c0 = 0"),
}
# Torch's init, U(-1/sqrt(H), 1/sqrt(H)), keeps every gate near 1/2; scaling it up puts
# the gates in their nonlinear range so the comparison is not trivial.
PARAM_SCALE = 2.5
RENAME = {
    "weight_ih_l0": "weight_ih",
    "weight_hh_l0": "weight_hh",
    "bias_ih_l0": "bias_ih",
    "bias_hh_l0": "bias_hh",
}


def make_cell(cell, T, B, I, H, seed):
    module, _, state0 = CELLS[cell]
    torch.manual_seed(seed)
    rnn = module(I, H, num_layers=1, batch_first=False).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(PARAM_SCALE)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(T, B, H, dtype=torch.float64)
    y, _ = rnn(x)  # zero initial state
    (y * dy).sum().backward()

    t = {}
    for name, p in rnn.named_parameters():
        t[RENAME[name]] = p.detach().numpy().copy()
        t["grad." + RENAME[name]] = p.grad.detach().numpy().copy()
    t["decay"] = torch.zeros(1, H, dtype=torch.float64).numpy()
    t["x"] = x.detach().numpy().copy()
    t["dy"] = dy.numpy().copy()
    t["y"] = y.detach().numpy().copy()
    t["grad.x"] = x.grad.numpy().copy()
    meta = {
        "generator": "tests/make_fixtures.py",
        "reference": f"torch.nn.{module.__name__} float64, {state0}, loss = sum(y * dy)",
        "shape_TBIH": f"{T},{B},{I},{H}",
        "seed": str(seed),
    }
    return t, meta


# ----------------------------------------------------------------------------------
# 2. RWKV-4 model

RWKV_V, RWKV_C, RWKV_L, RWKV_T, RWKV_B = 11, 8, 2, 6, 2
RWKV_SEED = 4004
RWKV_SPREAD_OFFSETS = (-1.0, 0.0, 1.0)  # K = 3, decay spread 1


def rwkv4_state_dict(V, C, L, seed):
    """Random non-zero params of moderate scale with RWKV-4's names and shapes. (RWKV's
    own init zeros several matrices, which would hide mistakes, so it is not used.)"""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    def norm(prefix):
        sd[prefix + ".weight"] = 1.0 + randn(C, scale=0.2)
        sd[prefix + ".bias"] = randn(C, scale=0.1)

    sd = {"emb.weight": randn(V, C)}
    norm("blocks.0.ln0")
    for l in range(L):
        p = f"blocks.{l}."
        norm(p + "ln1")
        sd[p + "att.time_decay"] = uniform(-3.0, 1.0, C)  # w = -exp(.) in [-e, -e^-3]
        sd[p + "att.time_first"] = uniform(-1.5, 0.5, C)  # around RWKV's log(0.3) ± 0.5
        for m in ("k", "v", "r"):
            sd[p + f"att.time_mix_{m}"] = uniform(0.05, 0.95, 1, 1, C)
        for m in ("key", "value", "receptance", "output"):
            sd[p + f"att.{m}.weight"] = randn(C, C, scale=C**-0.5)
        norm(p + "ln2")
        for m in ("k", "r"):
            sd[p + f"ffn.time_mix_{m}"] = uniform(0.05, 0.95, 1, 1, C)
        sd[p + "ffn.key.weight"] = randn(4 * C, C, scale=C**-0.5)
        sd[p + "ffn.receptance.weight"] = randn(C, C, scale=C**-0.5)
        sd[p + "ffn.value.weight"] = randn(C, 4 * C, scale=0.5 * (4 * C) ** -0.5)
    norm("ln_out")
    sd["head.weight"] = randn(V, C, scale=C**-0.5)
    return sd


def time_shift(x):
    """x (B,T,C) → x̄ with x̄_t = x_{t-1}, x̄_0 = 0: RWKV-4's nn.ZeroPad2d((0, 0, 1, -1))."""
    return torch.nn.ZeroPad2d((0, 0, 1, -1))(x)


def wkv_naive(w, u, k, v):
    """The plain sum of docs/contract.md §4.3: w, u (C); k, v (B,T,C) → wkv (B,T,C).
    wkv_t = (Σ_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u+k_t} v_t)
          / (Σ_{i<t} e^{(t-1-i)w + k_i}     + e^{u+k_t})"""
    T = k.shape[1]
    out = []
    for t in range(T):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp((t - 1 - i) * w + k[:, i])
            num = num + e * v[:, i]
            den = den + e
        out.append(num / den)
    return torch.stack(out, dim=1)


def time_mix(sd, p, x, decay_offsets):
    """RWKV-4 RWKV_TimeMix on x (B,T,C); with several decay offsets, one wkv per
    perspective (decay row time_decay + offset), averaged."""
    xx = time_shift(x)
    mk, mv, mr = (sd[p + f"time_mix_{m}"] for m in ("k", "v", "r"))
    xk = x * mk + xx * (1 - mk)
    xv = x * mv + xx * (1 - mv)
    xr = x * mr + xx * (1 - mr)
    k = xk @ sd[p + "key.weight"].T
    v = xv @ sd[p + "value.weight"].T
    r = xr @ sd[p + "receptance.weight"].T
    u = sd[p + "time_first"]
    views = [wkv_naive(-torch.exp(sd[p + "time_decay"] + o), u, k, v) for o in decay_offsets]
    wkv = sum(views) / len(views)
    return (torch.sigmoid(r) * wkv) @ sd[p + "output.weight"].T


def channel_mix(sd, p, x):
    """RWKV-4 RWKV_ChannelMix on x (B,T,C)."""
    xx = time_shift(x)
    mk, mr = sd[p + "time_mix_k"], sd[p + "time_mix_r"]
    xk = x * mk + xx * (1 - mk)
    xr = x * mr + xx * (1 - mr)
    k = torch.square(torch.relu(xk @ sd[p + "key.weight"].T))
    kv = k @ sd[p + "value.weight"].T
    return torch.sigmoid(xr @ sd[p + "receptance.weight"].T) * kv


def rwkv4_forward(sd, tokens, L, decay_offsets=(0.0,)):
    """RWKV-4 GPT.forward: tokens (B,T) → logits (B,T,V)."""

    def ln(x, prefix):
        w = sd[prefix + ".weight"]
        return F.layer_norm(x, w.shape, w, sd[prefix + ".bias"], eps=1e-5)

    x = sd["emb.weight"][tokens]
    for l in range(L):
        p = f"blocks.{l}."
        if l == 0:
            x = ln(x, p + "ln0")
        x = x + time_mix(sd, p + "att.", ln(x, p + "ln1"), decay_offsets)
        x = x + channel_mix(sd, p + "ffn.", ln(x, p + "ln2"))
    return ln(x, "ln_out") @ sd["head.weight"].T


def make_rwkv4():
    V, C, L, T, B = RWKV_V, RWKV_C, RWKV_L, RWKV_T, RWKV_B
    sd = rwkv4_state_dict(V, C, L, RWKV_SEED)
    g = torch.Generator().manual_seed(RWKV_SEED + 1)
    tokens = torch.randint(0, V, (B, T), generator=g)
    t = {name: v.numpy().copy() for name, v in sd.items()}
    t["ref.tokens"] = tokens.to(torch.int32).numpy().copy()
    t["ref.logits"] = rwkv4_forward(sd, tokens, L).numpy().copy()
    t["ref.logits_k3_spread1_mean"] = rwkv4_forward(sd, tokens, L, RWKV_SPREAD_OFFSETS).numpy()
    meta = {
        "generator": "tests/make_fixtures.py",
        "reference": "RWKV-4 GPT (RWKV-LM RWKV-v4/src/model.py, no head_qk), float64, naive wkv",
        "config_VCLTB": f"{V},{C},{L},{T},{B}",
        "layout": "ref.tokens (B,T) int32 and ref.logits* (B,T,V) are batch-first",
        "seed": str(RWKV_SEED),
    }
    return t, meta


def save(path, tensors, meta):
    safetensors_io.save(path, tensors, meta)
    print(f"wrote {os.path.relpath(path, os.path.dirname(HERE))} ({os.path.getsize(path)} bytes)")


def main():
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    for cell, (_, seed, _) in CELLS.items():
        for i, (T, B, I, H) in enumerate(SHAPES):
            tensors, meta = make_cell(cell, T, B, I, H, seed + i)
            save(os.path.join(OUT, f"{cell}_T{T}_B{B}_I{I}_H{H}.safetensors"), tensors, meta)
    tensors, meta = make_rwkv4()
    save(os.path.join(OUT, "rwkv4_model.safetensors"), tensors, meta)


if __name__ == "__main__":
    main()
