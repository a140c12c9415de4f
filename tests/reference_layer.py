#!/usr/bin/python3
"""An independent float64 reference of the wrapped GRU layer of DESIGN §2, checked
against the real CLI, `mtp-exp layer` (DESIGN §3).

    /usr/bin/python3 tests/reference_layer.py path/to/mtp-exp

The reference is written from the equations alone, with torch autograd for gradients
(loss = sum(y * dy)); it shares no code with the library. For each case (K in 1, 2, 3
times the mean, learned and fixed aggregators, plus explicit --fixed-weights), with a
random shape per case, it writes params.safetensors and input.safetensors (float32),
runs the CLI with --dtype f32 and --dtype f64, and requires y, grad.x and grad.<param>
for every parameter to match: norm-wise relative error max|a - b| / max|b| at most 2e-4
(f32) or 1e-9 (f64); a reference gradient that is exactly zero (the selector at K = 1)
must come back exactly zero. Prints a table of errors; exits 1 on any failure, 77 when
torch is not installed (ctest reports the test as skipped).
"""

import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("SKIPPED: python3-torch not installed")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

SEED = 1729
TOL = {"f32": 2e-4, "f64": 1e-9}

# (K, aggregator, --fixed-weights or None)
CASES = [(K, agg, None) for K in (1, 2, 3) for agg in ("mean", "learned", "fixed")]
CASES += [(3, "fixed", [0.2, 0.5, 0.3]), (2, "fixed", [0.75, 0.25]), (1, "fixed", [1.0])]


# ----------------------------------------------------------------------------------
# The reference: DESIGN §2, GRU in PyTorch gate order (r, z, n), linear before reset,
# K perspectives sharing the weights, each with its own decay row and a zero state.


def default_fixed_weights(K):
    if K == 1:
        return [1.0]
    return [0.5] + [(1.0 - 0.5) / (K - 1)] * (K - 1)


def reference_layer(x, p, K, aggregator, fixed_weights):
    """x (T,B,I) and the params p (float64 tensors) -> y (T,B,H)."""
    T, B, _ = x.shape
    H = p["weight_hh"].shape[1]
    gi = x @ p["weight_ih"].T + p["bias_ih"]  # (T,B,3H)
    h = [torch.zeros(B, H, dtype=torch.float64) for _ in range(K)]
    ys = []
    for t in range(T):
        outs = []
        for k in range(K):
            gh = h[k] @ p["weight_hh"].T + p["bias_hh"]  # (B,3H)
            r = torch.sigmoid(gi[t, :, :H] + gh[:, :H])
            z = torch.sigmoid(gi[t, :, H : 2 * H] + gh[:, H : 2 * H] + p["decay"][k])
            n = torch.tanh(gi[t, :, 2 * H :] + r * gh[:, 2 * H :])
            h[k] = (1 - z) * n + z * h[k]
            outs.append(h[k])
        Yk = torch.stack(outs, dim=1)  # (B,K,H)
        if aggregator == "mean":
            a = Yk.sum(dim=1) / K
        elif aggregator == "learned":
            logits = x[t] @ p["selector.weight"].T + p["selector.bias"]  # (B,K)
            alpha = torch.softmax(logits, dim=-1)
            a = (alpha.unsqueeze(-1) * Yk).sum(dim=1)
        elif aggregator == "fixed":
            w = fixed_weights if fixed_weights is not None else default_fixed_weights(K)
            a = sum(w[k] * Yk[:, k] for k in range(K))
        else:
            raise ValueError(aggregator)
        ys.append(a)
    return torch.stack(ys)


def reference_grads(x, dy, params, K, aggregator, fixed_weights):
    """float64 y and the autograd gradients of sum(y * dy) wrt x and every param."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    pt = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in params.items()}
    y = reference_layer(xt, pt, K, aggregator, fixed_weights)
    (y * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    out = {"y": y.detach().numpy(), "grad.x": xt.grad.numpy()}
    for n, v in pt.items():
        out["grad." + n] = v.grad.numpy()
    return out


# ----------------------------------------------------------------------------------
# Cases: random shape and values per case, stored as float32 (the reference computes
# in float64 from the same float32-rounded values, so f64 runs can be held to 1e-9).


def make_case(index, K, aggregator):
    rng = np.random.default_rng([SEED, index])
    T, B = int(rng.integers(1, 10)), int(rng.integers(1, 5))
    I, H = int(rng.integers(1, 8)), int(rng.integers(1, 9))

    def f32(shape, scale):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    # Large enough that the gates are far from 1/2 (a nontrivial check), not so large
    # that they saturate.
    a = 1.5 / np.sqrt(H)
    params = {
        "weight_ih": f32((3 * H, I), 1.5 / np.sqrt(I)),
        "weight_hh": f32((3 * H, H), a),
        "bias_ih": f32((3 * H,), 0.5),
        "bias_hh": f32((3 * H,), 0.5),
        "decay": f32((K, H), 1.0),
    }
    if aggregator == "learned":
        params["selector.weight"] = f32((K, I), 1.0)
        params["selector.bias"] = f32((K,), 0.5)
    inputs = {"x": f32((T, B, I), 1.0), "dy": f32((T, B, H), 1.0)}
    return (T, B, I, H), params, inputs


def rel_error(a, b):
    """max|a - b| / max|b|; 0 or inf when b is exactly zero (a must be exactly zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def run_cli(exe, tmp, K, aggregator, weights, dtype):
    out = os.path.join(tmp, f"out_{dtype}.safetensors")
    cmd = [exe, "layer", "--cell", "gru", "--perspectives", str(K), "--aggregator", aggregator]
    if weights is not None:
        cmd += ["--fixed-weights", ",".join(repr(float(w)) for w in weights)]
    cmd += ["--params", os.path.join(tmp, "params.safetensors")]
    cmd += ["--input", os.path.join(tmp, "input.safetensors")]
    cmd += ["--output", out, "--dtype", dtype]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {' '.join(cmd)}\n{r.stderr.strip()}"
    tensors, _ = safetensors_io.load(out)
    return tensors, None


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} path/to/mtp-exp", file=sys.stderr)
        return 2
    exe = os.path.abspath(sys.argv[1])
    if not os.access(exe, os.X_OK):
        print(f"error: {exe} is not an executable", file=sys.stderr)
        return 2
    torch.set_num_threads(1)

    failures = []
    header = f"{'case':<32} {'T,B,I,H':<10} {'dtype':<5} {'y':>9} {'grad.x':>9} {'params':>9}  worst"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="mtp-ref-") as tmp:
        for index, (K, aggregator, weights) in enumerate(CASES):
            name = f"K={K} {aggregator}"
            if weights is not None:
                name += " w=" + ",".join(f"{w:g}" for w in weights)
            shape, params, inputs = make_case(index, K, aggregator)
            safetensors_io.save(os.path.join(tmp, "params.safetensors"), params)
            safetensors_io.save(os.path.join(tmp, "input.safetensors"), inputs)
            ref = reference_grads(inputs["x"], inputs["dy"], params, K, aggregator, weights)
            for dtype in ("f32", "f64"):
                got, err = run_cli(exe, tmp, K, aggregator, weights, dtype)
                if err is not None:
                    failures.append(f"{name} {dtype}: {err}")
                    print(f"{name:<32} {','.join(map(str, shape)):<10} {dtype:<5} CLI FAILED")
                    continue
                if set(got) != set(ref):
                    failures.append(
                        f"{name} {dtype}: output tensors {sorted(got)}, expected {sorted(ref)}")
                want_dtype = np.float32 if dtype == "f32" else np.float64
                errors = {}
                for tname in sorted(set(got) & set(ref)):
                    if got[tname].shape != ref[tname].shape:
                        failures.append(f"{name} {dtype}: {tname} has shape {got[tname].shape}, "
                                        f"expected {ref[tname].shape}")
                        continue
                    if got[tname].dtype != want_dtype:
                        failures.append(f"{name} {dtype}: {tname} has dtype {got[tname].dtype}")
                    errors[tname] = rel_error(got[tname], ref[tname])
                for tname, e in errors.items():
                    if not e <= TOL[dtype]:
                        failures.append(f"{name} {dtype}: {tname} relative error {e:.3g} "
                                        f"> {TOL[dtype]:g}")
                pgrads = {k: v for k, v in errors.items() if k not in ("y", "grad.x")}
                worst = max(errors, key=errors.get) if errors else "-"
                print(f"{name:<32} {','.join(map(str, shape)):<10} {dtype:<5} "
                      f"{errors.get('y', float('nan')):9.2e} "
                      f"{errors.get('grad.x', float('nan')):9.2e} "
                      f"{max(pgrads.values(), default=float('nan')):9.2e}  {worst}")

    print()
    if failures:
        print(f"FAILED: {len(failures)} problem(s)")
        for f in failures:
            print("  " + f)
        return 1
    print(f"OK: {len(CASES)} cases x 2 dtypes; tolerances f32 {TOL['f32']:g}, f64 {TOL['f64']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
