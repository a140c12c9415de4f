#!/usr/bin/python3
"""The PyTorch bridge's speed (docs/python.md): a training step (forward + backward) of
mtp.Perspectives against

  - the same layer called directly: in this process, the extension's C++ layer on the
    same tensors without the module and autograd ("C++ here": the bridge's overhead),
    and in C++ alone, bench_layer's layer/<cell>/train_step in its own process (the same
    cell, learned selector, shape and thread count);
  - the same model written in plain PyTorch: for GRU and LSTM, K torch.nn.GRU / nn.LSTM
    sharing their weights, each with its decay folded into the update / forget gate's
    input bias, and a softmax selector over them; for RWKV-4's time mix and the SSM, the
    equations of docs/contract.md as a loop over time, vectorised over B and K.

Interleaved: every round times each configuration with each of them, the bridge and the
C++ layer alternating step by step, so that load on a shared machine falls on all alike;
the overhead is the median ratio of alternating steps, the rest medians over the rounds.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=build/python \\
        /usr/bin/python3 bench/bench_bridge.py --bench-layer build/bin/bench_layer

Prints a Markdown table and, with --json FILE, writes every round's times.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import mtp


# ----------------------------------------------------------------------------------
# The plain-PyTorch peers: the model of docs/contract.md, K perspectives, learned
# selector (softmax of a linear map of x), in float32, time-major x (T,B,I).


class Selector(nn.Module):
    def __init__(self, I, K):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(K, I) / math.sqrt(I))
        self.bias = nn.Parameter(torch.zeros(K))

    def forward(self, x, Yk):  # x (T,B,I), Yk (T,B,K,D) → (T,B,D)
        alpha = torch.softmax(x @ self.weight.T + self.bias, dim=-1)
        return (alpha.unsqueeze(-1) * Yk).sum(dim=2)


class TorchRnnPerspectives(nn.Module):
    """K nn.GRU / nn.LSTM sharing weight_ih, weight_hh and bias_hh; each perspective's
    bias_ih is the shared one plus its decay on the update (GRU) or forget (LSTM) gate."""

    def __init__(self, kind, I, H, K):
        super().__init__()
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.rnns = nn.ModuleList([rnn(I, H) for _ in range(K)])
        shared = self.rnns[0]
        for r in self.rnns[1:]:
            r.weight_ih_l0 = shared.weight_ih_l0
            r.weight_hh_l0 = shared.weight_hh_l0
            r.bias_hh_l0 = shared.bias_hh_l0
        with torch.no_grad():
            for k, r in enumerate(self.rnns):
                r.bias_ih_l0[H:2 * H] += k - (K - 1) / 2  # the decay rows, spread 1
        self.selector = Selector(I, K)

    def forward(self, x):
        Yk = torch.stack([r(x)[0] for r in self.rnns], dim=2)
        return self.selector(x, Yk)


class TorchRwkvPerspectives(nn.Module):
    """RWKV-4's time mix (docs/contract.md §4.3) with K decay rows: token shift, k, v, r,
    the wkv recurrence with its running maximum, per step; the selector mixes wkv."""

    def __init__(self, C, K):
        super().__init__()
        self.time_mix_k = nn.Parameter(torch.rand(C))
        self.time_mix_v = nn.Parameter(torch.rand(C))
        self.time_mix_r = nn.Parameter(torch.rand(C))
        self.time_first = nn.Parameter(torch.randn(C) * 0.5)
        self.decay = nn.Parameter(torch.randn(K, C) * 0.5 - 1)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.selector = Selector(C, K)
        self.K = K

    def forward(self, x):
        T, B, C = x.shape
        shifted = torch.cat([torch.zeros_like(x[:1]), x[:-1]])

        def mix(mu):
            return mu * x + (1 - mu) * shifted

        k, v, r = self.key(mix(self.time_mix_k)), self.value(mix(self.time_mix_v)), \
            self.receptance(mix(self.time_mix_r))
        w = -torch.exp(self.decay)  # (K,C)
        u = self.time_first
        a = x.new_zeros(B, self.K, C)
        b = x.new_zeros(B, self.K, C)
        p = x.new_full((B, self.K, C), -1e38)
        outs = []
        for t in range(T):
            kt, vt = k[t].unsqueeze(1), v[t].unsqueeze(1)  # (B,1,C)
            q = torch.maximum(p, u + kt)
            e1, e2 = torch.exp(p - q), torch.exp(u + kt - q)
            outs.append((e1 * a + e2 * vt) / (e1 * b + e2))
            q = torch.maximum(p + w, kt)
            e1, e2 = torch.exp(p + w - q), torch.exp(kt - q)
            a, b, p = e1 * a + e2 * vt, e1 * b + e2, q
        wkv = self.selector(x, torch.stack(outs))  # (T,B,C)
        return self.output(torch.sigmoid(r) * wkv)


class TorchSsmPerspectives(nn.Module):
    """The diagonal linear SSM (docs/contract.md §4.4) with K decay rows, per step."""

    def __init__(self, I, N, K):
        super().__init__()
        self.in_proj = nn.Linear(I, N, bias=False)
        self.out_proj = nn.Linear(N, I, bias=False)
        self.skip = nn.Parameter(torch.randn(I))
        self.decay = nn.Parameter(torch.rand(K, N) * 5 - 4)
        self.selector = Selector(I, K)
        self.K = K

    def forward(self, x):
        T, B, _ = x.shape
        u = self.in_proj(x)  # (T,B,N)
        a = torch.exp(-torch.exp(self.decay))  # (K,N)
        gain = torch.sqrt(1 - a * a)
        h = x.new_zeros(B, self.K, u.shape[-1])
        outs = []
        for t in range(T):
            h = a * h + gain * u[t].unsqueeze(1)
            outs.append(h)
        return self.out_proj(self.selector(x, torch.stack(outs))) + self.skip * x


def torch_peer(cell, W, K):
    if cell in ("gru", "lstm"):
        return TorchRnnPerspectives(cell, W, W, K)
    if cell == "rwkv":
        return TorchRwkvPerspectives(W, K)
    return TorchSsmPerspectives(W, W, K)


# ----------------------------------------------------------------------------------
# Timing.


def module_step(model, x, dy):
    """One training step of a module: forward, backward of sum(y·dy) (so dy enters as the
    output gradient, as bench_layer's backward takes it), gradients reset."""

    def step():
        for p in model.parameters():
            p.grad = None
        y = model(x)
        y = y[0] if isinstance(y, tuple) else y
        y.backward(dy)

    return step


def core_step(layer, x, dy):
    """The same step on the extension's C++ layer called directly on the same tensors:
    forward in training mode and backward, no module, no autograd (what the bridge adds is
    the rest)."""
    flat = layer._flat_params()
    core = layer._make_core(flat.dtype)
    state = layer.initial_state(x.shape[1])

    def step():
        core.forward(flat, x, state.clone(), True, 0)
        core.backward(flat, x, dy, None, False)

    return step


def time_steps(steps, repeats):
    """Median seconds of each step function, the functions alternating step by step (so
    that a slow spell of a shared machine falls on all of them), and the median ratio of
    each to the first over the alternations."""
    for step in steps:
        step()  # untimed: allocation, primitive creation
    times = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - t0)
    medians = [statistics.median(t) for t in times]
    ratios = [statistics.median(t / t0 for t, t0 in zip(ts, times[0])) for ts in times]
    return medians, ratios


def time_direct(bench_layer, cell, T, B, W, K, threads):
    """bench_layer's median wall time of the same step in C++, in seconds."""
    name = f"^layer/{cell}/train_step/T:{T}/B:{B}/W:{W}/K:{K}/real_time$"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r = subprocess.run([bench_layer, f"--benchmark_filter={name}", "--benchmark_format=json",
                        "--benchmark_repetitions=5", "--benchmark_min_time=0.2",
                        "--benchmark_report_aggregates_only=true"],
                       capture_output=True, text=True, env=env, check=True)
    for b in json.loads(r.stdout)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            return b["real_time"] * {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[b["time_unit"]]
    raise RuntimeError(f"bench_layer printed no median for {name}: {r.stdout[:500]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench-layer", required=True, help="path to build/bin/bench_layer")
    p.add_argument("--cells", default="gru,lstm,rwkv,ssm")
    p.add_argument("--K", default="1,3", help="perspectives, comma-separated (default 1,3)")
    p.add_argument("--T", type=int, default=256)
    p.add_argument("--B", type=int, default=32)
    p.add_argument("--W", type=int, default=256, help="I = H = W (default 256)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps per round of the bridge and of the C++ layer, "
                        "alternating; a quarter as many of plain PyTorch (default 10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="also write every round's times here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    configs = [(c, int(k)) for c in a.cells.split(",") for k in a.K.split(",")]
    x = torch.randn(a.T, a.B, a.W)
    dy = torch.randn(a.T, a.B, a.W)
    models = {}
    for cell, K in configs:
        models[cell, K] = (mtp.Perspectives(cell, a.W, a.W, perspectives=K,
                                            aggregator="learned").train(),
                           torch_peer(cell, a.W, K).train())
    rounds = []
    for r in range(a.rounds):
        for cell, K in configs:
            bridge, peer = models[cell, K]
            (core_s, bridge_s), (_, bridge_per_core) = time_steps(
                [core_step(bridge, x, dy), module_step(bridge, x, dy)], a.steps)
            (torch_s,), _ = time_steps([module_step(peer, x, dy)], max(1, a.steps // 4))
            row = {"round": r, "cell": cell, "K": K,
                   "direct_s": time_direct(a.bench_layer, cell, a.T, a.B, a.W, K, a.threads),
                   "core_s": core_s, "bridge_s": bridge_s, "bridge_per_core": bridge_per_core,
                   "torch_s": torch_s}
            rounds.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"T={a.T} B={a.B} I=H={a.W}, float32, learned selector, {a.threads} threads, "
          f"{a.rounds} interleaved rounds; torch {torch.__version__}; {machine}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| cell | K | bench_layer ms | C++ here ms | bridge ms | bridge overhead "
          "| vs bench_layer | plain PyTorch ms | mtp speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for cell, K in configs:
        rs = [r for r in rounds if (r["cell"], r["K"]) == (cell, K)]
        med = {k: statistics.median(r[k] for r in rs)
               for k in ("direct_s", "core_s", "bridge_s", "torch_s")}
        overhead = statistics.median(r["bridge_per_core"] - 1 for r in rs)
        vs_cpp = statistics.median(r["bridge_s"] / r["direct_s"] - 1 for r in rs)
        speedup = statistics.median(r["torch_s"] / r["bridge_s"] for r in rs)
        print(f"| {cell} | {K} | {med['direct_s'] * 1e3:.1f} | {med['core_s'] * 1e3:.1f} | "
              f"{med['bridge_s'] * 1e3:.1f} | {overhead * 100:+.1f}% | {vs_cpp * 100:+.1f}% | "
              f"{med['torch_s'] * 1e3:.1f} | {speedup:.2f}× |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rounds": rounds}, f, indent=2)


if __name__ == "__main__":
    main()
