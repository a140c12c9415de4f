#!/usr/bin/env python3
"""PyTorch CPU peer for bench_layer's K = 1 GRU/LSTM training step (docs/performance.md).

Times torch.nn.LSTM and torch.nn.GRU training steps, forward + backward of an MSE
loss against a fixed target, in float32 with time-major input x (T,B,I), I = H, the
same shape and work as `bench_layer --benchmark_filter='layer/(gru|lstm)/train_step/.*/K:1'`.
Prints one JSON object per model to stdout, e.g.

  {"model": "lstm", "T": 256, "B": 32, "H": 256, "threads": 2, "tokens_per_s": ..., "ms_per_step": ...}

tokens_per_s = T·B / the median step time; warm-up steps are not timed.

  /usr/bin/python3 bench/torch_peer.py --threads 2
"""

import argparse
import json
import statistics
import time

import torch


def time_training_step(model, x, target, warmup, repeats):
    """Median seconds of one forward + backward (gradients zeroed each step, as an
    optimiser loop does)."""
    loss_fn = torch.nn.MSELoss()

    def step():
        model.zero_grad(set_to_none=False)
        y, _ = model(x)
        loss_fn(y, target).backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--T", type=int, default=256, help="sequence length T (default 256)")
    p.add_argument("--B", type=int, default=32, help="batch B (default 32)")
    p.add_argument("--H", type=int, default=256, help="hidden and input width H = I (default 256)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps, median reported (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--models", default="lstm,gru", help="comma-separated: lstm, gru (default both)")
    a = p.parse_args()
    if min(a.T, a.B, a.H, a.repeats) < 1 or a.warmup < 0 or a.threads < 0:
        p.error("--T, --B, --H, --repeats must be >= 1; --warmup, --threads >= 0")
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    torch.manual_seed(0)
    x = torch.randn(a.T, a.B, a.H, dtype=torch.float32, requires_grad=True)
    target = torch.randn(a.T, a.B, a.H, dtype=torch.float32)
    kinds = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    for name in a.models.split(","):
        if name not in kinds:
            p.error(f"--models: unknown model '{name}' (expected lstm, gru)")
        model = kinds[name](input_size=a.H, hidden_size=a.H, dtype=torch.float32)
        seconds = time_training_step(model, x, target, a.warmup, a.repeats)
        print(
            json.dumps(
                {
                    "model": name,
                    "torch": torch.__version__,
                    "T": a.T,
                    "B": a.B,
                    "H": a.H,
                    "threads": torch.get_num_threads(),
                    "tokens_per_s": a.T * a.B / seconds,
                    "ms_per_step": seconds * 1e3,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
