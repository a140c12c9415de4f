#!/usr/bin/python3
"""An independent float64 reference of the wrapped layers of docs/contract.md §2–5 (GRU, LSTM,
RWKV-4 time mix, linear SSM, and the mean / learned / fixed aggregators), checked
against the real CLI, `mtp-exp layer` (docs/contract.md §11.8).

    /usr/bin/python3 tests/reference_layer.py path/to/mtp-exp [cell ...]

The references are written from the equations alone, with torch autograd for the
gradients (loss = sum(y * dy)); they share no code with the library. For every cell
(or only those named) and each case (K in 1, 2, 3 times the mean, learned and fixed
aggregators, plus explicit --fixed-weights), with a random shape per case, it writes
params.safetensors and input.safetensors (float32), runs the CLI with --dtype f32 and
--dtype f64, and requires y, grad.x and grad.<param> for every parameter to match:
norm-wise relative error max|a - b| / max|b| at most 2e-4 (f32) or 1e-9 (f64); a
reference gradient that is exactly zero (the selector at K = 1) must come back exactly
zero (see min_T_selector below for the one place where a gradient is analytically but
not computationally zero, and how the draw avoids it). A few malformed parameter files must be rejected with exit 1 and a one-line
message naming the file. Prints a table of errors; exits 1 on any failure, 77 when
torch is not installed (ctest reports the test as skipped).
"""

import os
import subprocess
import sys
import tempfile
import time

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
# Aggregators, docs/contract.md §5: Yk (B,K,D) per-perspective outputs at step t, x_t (B,I) the
# layer input at that step.


def default_fixed_weights(K):
    if K == 1:
        return [1.0]
    return [0.5] + [(1.0 - 0.5) / (K - 1)] * (K - 1)


def aggregate(Yk, x_t, p, aggregator, fixed_weights):
    K = Yk.shape[1]
    if aggregator == "mean":
        return Yk.sum(dim=1) / K
    if aggregator == "learned":
        logits = x_t @ p["selector.weight"].T + p["selector.bias"]  # (B,K)
        alpha = torch.softmax(logits, dim=-1)
        return (alpha.unsqueeze(-1) * Yk).sum(dim=1)
    if aggregator == "fixed":
        w = fixed_weights if fixed_weights is not None else default_fixed_weights(K)
        return sum(w[k] * Yk[:, k] for k in range(K))
    raise ValueError(aggregator)


# ----------------------------------------------------------------------------------
# The cell references: x (T,B,I) and the params p (float64 tensors) -> y (T,B,O). `agg`
# maps (Yk (B,K,D), t) to the aggregated (B,D). K perspectives share the weights, each
# with its own decay row and a zero initial state.


def gru_reference(x, p, K, agg):
    """GRU in PyTorch gate order (r, z, n), linear before reset; decay shifts z."""
    T, B, _ = x.shape
    H = p["weight_hh"].shape[1]
    gi = x @ p["weight_ih"].T + p["bias_ih"]  # (T,B,3H)
    h = [torch.zeros(B, H, dtype=x.dtype) for _ in range(K)]
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
        ys.append(agg(torch.stack(outs, dim=1), t))
    return torch.stack(ys)


def lstm_reference(x, p, K, agg):
    """LSTM in PyTorch gate order (i, f, g, o); decay shifts the forget gate."""
    T, B, _ = x.shape
    H = p["weight_hh"].shape[1]
    gi = x @ p["weight_ih"].T + p["bias_ih"]  # (T,B,4H)
    h = [torch.zeros(B, H, dtype=x.dtype) for _ in range(K)]
    c = [torch.zeros(B, H, dtype=x.dtype) for _ in range(K)]
    ys = []
    for t in range(T):
        outs = []
        for k in range(K):
            g = gi[t] + h[k] @ p["weight_hh"].T + p["bias_hh"]  # (B,4H)
            i_g = torch.sigmoid(g[:, :H])
            f_g = torch.sigmoid(g[:, H : 2 * H] + p["decay"][k])
            g_g = torch.tanh(g[:, 2 * H : 3 * H])
            o_g = torch.sigmoid(g[:, 3 * H :])
            c[k] = f_g * c[k] + i_g * g_g
            h[k] = o_g * torch.tanh(c[k])
            outs.append(h[k])
        ys.append(agg(torch.stack(outs, dim=1), t))
    return torch.stack(ys)


def rwkv_reference(x, p, K, agg):
    """RWKV-4 time mix, wkv by the sum formula of §2 taken literally (no running max:
    fine in float64 for small T and moderate keys), written as the average of v_0..v_t
    weighted by softmax over the exponents e_i = (t-1-i)w + k_i (i < t), e_t = u + k_t
    (numerator and denominator divided by their common sum). Same value; and at t = 0,
    where wkv_0 = v_0, the gradients wrt k and u come out exactly zero, as they are."""
    T, B, C = x.shape
    xbar = torch.cat([torch.zeros(1, B, C, dtype=x.dtype), x[:-1]], dim=0)  # x̄_t = x_{t-1}

    def mix(mu):
        return mu * x + (1 - mu) * xbar

    kk = mix(p["time_mix_k"]) @ p["key.weight"].T  # (T,B,C)
    vv = mix(p["time_mix_v"]) @ p["value.weight"].T
    rr = mix(p["time_mix_r"]) @ p["receptance.weight"].T
    u = p["time_first"]
    ys = []
    for t in range(T):
        outs = []
        for k in range(K):
            w = -torch.exp(p["decay"][k])  # (C)
            e = [(t - 1 - i) * w + kk[i] for i in range(t)] + [u + kk[t]]
            outs.append((torch.softmax(torch.stack(e), dim=0) * vv[: t + 1]).sum(dim=0))
        a = agg(torch.stack(outs, dim=1), t)  # (B,C)
        ys.append((torch.sigmoid(rr[t]) * a) @ p["output.weight"].T)
    return torch.stack(ys)


def ssm_reference(x, p, K, agg):
    """Diagonal real linear SSM: h = a h + sqrt(1 - a²) b, y = W_out Agg h + skip x."""
    T, B, _ = x.shape
    N = p["in_proj.weight"].shape[0]
    b = x @ p["in_proj.weight"].T  # (T,B,N)
    h = [torch.zeros(B, N, dtype=x.dtype) for _ in range(K)]
    ys = []
    for t in range(T):
        outs = []
        for k in range(K):
            a = torch.exp(-torch.exp(p["decay"][k]))
            h[k] = a * h[k] + torch.sqrt(1 - a * a) * b[t]
            outs.append(h[k])
        a = agg(torch.stack(outs, dim=1), t)  # (B,N)
        ys.append(a @ p["out_proj.weight"].T + p["skip"] * x[t])
    return torch.stack(ys)


# ----------------------------------------------------------------------------------
# The table of cells: how to draw a shape, the params of §2 (besides the selector,
# added for every cell by make_case) and the reference.
#
# min_T_selector: the learned selector's gradient is a sum of alpha-weighted differences
# between the perspectives' outputs, analytically zero while they coincide: LSTM's
# outputs do at t = 0 (c_{-1} = 0, so the forget gate and its decay have no effect)
# and RWKV's at t = 0, 1 (the decay enters wkv_t as (t-1-i)w). There both sides only
# compute rounding noise, which no relative tolerance can compare; so for learned with
# K > 1 the draw takes T >= min_T_selector, two or more steps where they differ.
#
# A param spec is (name, shape as a function of the dims and K, sampler). Samplers draw
# from the case's rng; scales are large enough that the gates are far from 1/2 (a
# nontrivial check), not so large that they saturate.


def normal(scale):
    return lambda rng, shape: scale * rng.standard_normal(shape)


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def gated_params(G):
    return lambda d, K: [
        ("weight_ih", (G * d["H"], d["I"]), normal(1.5 / np.sqrt(d["I"]))),
        ("weight_hh", (G * d["H"], d["H"]), normal(1.5 / np.sqrt(d["H"]))),
        ("bias_ih", (G * d["H"],), normal(0.5)),
        ("bias_hh", (G * d["H"],), normal(0.5)),
        ("decay", (K, d["H"]), normal(1.0)),
    ]


def rwkv_params(d, K):
    C = d["C"]
    return [
        ("time_mix_k", (C,), uniform(0.0, 1.0)),
        ("time_mix_v", (C,), uniform(0.0, 1.0)),
        ("time_mix_r", (C,), uniform(0.0, 1.0)),
        ("time_first", (C,), normal(0.5)),
        ("key.weight", (C, C), normal(1.0 / np.sqrt(C))),  # keys of order 1
        ("value.weight", (C, C), normal(1.5 / np.sqrt(C))),
        ("receptance.weight", (C, C), normal(1.5 / np.sqrt(C))),
        ("output.weight", (C, C), normal(1.0 / np.sqrt(C))),
        ("decay", (K, C), uniform(-3.0, 1.5)),  # e^w from ~0.95 to ~0.01
    ]


def ssm_params(d, K):
    I, N = d["I"], d["N"]
    return [
        ("in_proj.weight", (N, I), normal(1.0 / np.sqrt(I))),
        ("out_proj.weight", (I, N), normal(1.0 / np.sqrt(N))),
        ("skip", (I,), normal(1.0)),
        ("decay", (K, N), uniform(-4.0, 1.0)),  # a = exp(-exp(decay)) in ~[0.07, 0.98]
    ]


def _tb(rng):
    return {"T": int(rng.integers(1, 10)), "B": int(rng.integers(1, 5))}


CELLS = {
    "gru": {
        "dims": lambda rng: {**_tb(rng), "I": int(rng.integers(1, 8)), "H": int(rng.integers(1, 9))},
        "params": gated_params(3),
        "input": lambda d: d["I"],
        "output": lambda d: d["H"],
        "reference": gru_reference,
        "min_T_selector": 1,
    },
    "lstm": {
        "dims": lambda rng: {**_tb(rng), "I": int(rng.integers(1, 8)), "H": int(rng.integers(1, 9))},
        "params": gated_params(4),
        "input": lambda d: d["I"],
        "output": lambda d: d["H"],
        "reference": lstm_reference,
        "min_T_selector": 3,
    },
    "rwkv": {
        "dims": lambda rng: {**_tb(rng), "C": int(rng.integers(1, 9))},
        "params": rwkv_params,
        "input": lambda d: d["C"],
        "output": lambda d: d["C"],
        "reference": rwkv_reference,
        "min_T_selector": 4,
    },
    "ssm": {
        "dims": lambda rng: {**_tb(rng), "I": int(rng.integers(1, 8)), "N": int(rng.integers(1, 9))},
        "params": ssm_params,
        "input": lambda d: d["I"],
        "output": lambda d: d["I"],
        "reference": ssm_reference,
        "min_T_selector": 1,
    },
}


def make_case(cell, index, K, aggregator):
    """Random dims and float32 values for one case (the reference computes in float64
    from the same float32-rounded values, so f64 runs can be held to 1e-9)."""
    spec = CELLS[cell]
    rng = np.random.default_rng([SEED, list(CELLS).index(cell), index])
    dims = spec["dims"](rng)
    if aggregator == "learned" and K > 1 and dims["T"] < spec["min_T_selector"]:
        dims["T"] = int(rng.integers(spec["min_T_selector"], 10))
    params = {n: sample(rng, shape).astype(np.float32)
              for n, shape, sample in spec["params"](dims, K)}
    I = spec["input"](dims)
    if aggregator == "learned":
        params["selector.weight"] = normal(1.0)(rng, (K, I)).astype(np.float32)
        params["selector.bias"] = normal(0.5)(rng, (K,)).astype(np.float32)
    T, B = dims["T"], dims["B"]
    inputs = {"x": normal(1.0)(rng, (T, B, I)).astype(np.float32),
              "dy": normal(1.0)(rng, (T, B, spec["output"](dims))).astype(np.float32)}
    return dims, params, inputs


def reference_grads(cell, x, dy, params, K, aggregator, fixed_weights, dtype=torch.float64):
    """y and the autograd gradients of sum(y * dy) wrt x and every param, in float64
    (dtype=torch.float32 shows how well conditioned a case is, for diagnostics)."""
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    pt = {n: torch.tensor(v, dtype=dtype, requires_grad=True) for n, v in params.items()}

    def agg(Yk, t):
        return aggregate(Yk, xt[t], pt, aggregator, fixed_weights)

    y = CELLS[cell]["reference"](xt, pt, K, agg)
    (y * torch.tensor(dy, dtype=dtype)).sum().backward()
    out = {"y": y.detach().numpy(), "grad.x": xt.grad.numpy()}
    for n, v in pt.items():
        # None: y does not depend on the param here (decay of rwkv at T = 1), an exact 0
        out["grad." + n] = v.grad.numpy() if v.grad is not None else np.zeros(v.shape)
    return out


# ----------------------------------------------------------------------------------
# The CLI and the comparison.


def rel_error(a, b):
    """max|a - b| / max|b|; 0 or inf when b is exactly zero (a must be exactly zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def layer_cmd(exe, tmp, cell, K, aggregator, weights, dtype, params_path=None):
    out = os.path.join(tmp, f"out_{dtype}.safetensors")
    cmd = [exe, "layer", "--cell", cell, "--perspectives", str(K), "--aggregator", aggregator]
    if weights is not None:
        cmd += ["--fixed-weights", ",".join(repr(float(w)) for w in weights)]
    cmd += ["--params", params_path or os.path.join(tmp, "params.safetensors")]
    cmd += ["--input", os.path.join(tmp, "input.safetensors")]
    cmd += ["--output", out, "--dtype", dtype]
    return cmd, out


def run_cli(exe, tmp, cell, K, aggregator, weights, dtype):
    cmd, out = layer_cmd(exe, tmp, cell, K, aggregator, weights, dtype)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {' '.join(cmd)}\n{r.stderr.strip()}"
    tensors, _ = safetensors_io.load(out)
    return tensors, None


def compare(name, dtype, got, ref, failures, ref32=None):
    """Appends the problems to `failures`; returns {tensor: relative error}. ref32(),
    the reference run in float32, is only called for an f32 failure, to tell a bug from
    a case that float32 arithmetic cannot get within the tolerance."""
    if set(got) != set(ref):
        failures.append(f"{name} {dtype}: output tensors {sorted(got)}, expected {sorted(ref)}")
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
            msg = f"{name} {dtype}: {tname} relative error {e:.3g} > {TOL[dtype]:g}"
            if dtype == "f32" and ref32 is not None:
                msg += (f" (the torch float32 reference is off by "
                        f"{rel_error(ref32()[tname], ref[tname]):.3g})")
            failures.append(msg)
    return errors


def negative_checks(exe, tmp, failures):
    """Malformed params files: exit 1 and one line on stderr naming the file."""
    rng = np.random.default_rng([SEED, 99])
    checks = []
    for H in (2, 3):  # 4H = 8 is not a multiple of 3; 4H = 12 is, so weight_hh must catch it
        d = {"I": 3, "H": H}
        p = {n: sample(rng, s).astype(np.float32) for n, s, sample in gated_params(4)(d, 1)}
        checks.append((f"lstm params (H={H}) as --cell gru", "gru", p, 3))
    d = {"C": 4}
    p = {n: sample(rng, s).astype(np.float32) for n, s, sample in rwkv_params(d, 1)}
    p["key.weight"] = normal(0.5)(rng, (4, 3)).astype(np.float32)
    checks.append(("rwkv key.weight (4,3)", "rwkv", p, 4))
    p = {n: sample(rng, s).astype(np.float32) for n, s, sample in rwkv_params(d, 1)}
    p["value.weight"] = normal(0.5)(rng, (3, 4)).astype(np.float32)
    checks.append(("rwkv value.weight (3,4)", "rwkv", p, 4))

    for n, (what, cell, params, I) in enumerate(checks):
        path = os.path.join(tmp, f"bad_{n}_{cell}.safetensors")
        safetensors_io.save(path, params)
        safetensors_io.save(os.path.join(tmp, "input.safetensors"),
                            {"x": np.zeros((2, 1, I), np.float32)})
        cmd, _ = layer_cmd(exe, tmp, cell, 1, "mean", None, "f32", params_path=path)
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        ok = r.returncode == 1 and len(lines) == 1 and path in lines[0]
        print(f"  {'ok  ' if ok else 'FAIL'} {what:<36} exit {r.returncode}: "
              f"{r.stderr.strip().replace(path, '<params>')}")
        if not ok:
            failures.append(f"negative check '{what}': exit {r.returncode}, stderr "
                            f"{r.stderr.strip()!r} (want exit 1, one line naming {path})")


def main():
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} path/to/mtp-exp [cell ...]", file=sys.stderr)
        return 2
    exe = os.path.abspath(sys.argv[1])
    if not os.access(exe, os.X_OK):
        print(f"error: {exe} is not an executable", file=sys.stderr)
        return 2
    cells = sys.argv[2:] or list(CELLS)
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        print(f"error: unknown cell(s) {unknown}; known: {list(CELLS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    start = time.time()

    failures = []
    worst = {}  # (cell, dtype) -> (error, case, tensor)
    header = (f"{'cell':<5} {'case':<22} {'T,B,dims':<10} {'dtype':<5} {'y':>9} {'grad.x':>9} "
              f"{'params':>9}  worst")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="mtp-ref-") as tmp:
        for cell in cells:
            for index, (K, aggregator, weights) in enumerate(CASES):
                name = f"K={K} {aggregator}"
                if weights is not None:
                    name += " w=" + ",".join(f"{w:g}" for w in weights)
                dims, params, inputs = make_case(cell, index, K, aggregator)
                shape = ",".join(str(v) for v in dims.values())
                safetensors_io.save(os.path.join(tmp, "params.safetensors"), params)
                safetensors_io.save(os.path.join(tmp, "input.safetensors"), inputs)
                ref = reference_grads(cell, inputs["x"], inputs["dy"], params, K, aggregator,
                                      weights)
                cache = {}

                def ref32():
                    if not cache:
                        cache.update(reference_grads(cell, inputs["x"], inputs["dy"], params, K,
                                                     aggregator, weights, torch.float32))
                    return cache

                for dtype in ("f32", "f64"):
                    got, err = run_cli(exe, tmp, cell, K, aggregator, weights, dtype)
                    if err is not None:
                        failures.append(f"{cell} {name} {dtype}: {err}")
                        print(f"{cell:<5} {name:<22} {shape:<10} {dtype:<5} CLI FAILED")
                        continue
                    errors = compare(f"{cell} {name}", dtype, got, ref, failures, ref32)
                    pgrads = [v for k, v in errors.items() if k not in ("y", "grad.x")]
                    w = max(errors, key=errors.get) if errors else "-"
                    if errors and errors[w] >= worst.get((cell, dtype), (-1.0,))[0]:
                        worst[(cell, dtype)] = (errors[w], name, w)
                    print(f"{cell:<5} {name:<22} {shape:<10} {dtype:<5} "
                          f"{errors.get('y', float('nan')):9.2e} "
                          f"{errors.get('grad.x', float('nan')):9.2e} "
                          f"{max(pgrads, default=float('nan')):9.2e}  {w}")

        print("\nnegative checks (params file rejected: exit 1, one line naming the file):")
        negative_checks(exe, tmp, failures)

    print("\nworst relative error per cell:")
    for (cell, dtype), (e, case, tname) in sorted(worst.items()):
        print(f"  {cell:<5} {dtype}  {e:9.2e}  ({case}, {tname})")
    print()
    if failures:
        print(f"FAILED: {len(failures)} problem(s)")
        for f in failures:
            print("  " + f)
        return 1
    print(f"OK: {len(cells)} cells x {len(CASES)} cases x 2 dtypes; tolerances f32 "
          f"{TOL['f32']:g}, f64 {TOL['f64']:g}; {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
