"""mtp.Perspectives against independent implementations: the float64 reference of
docs/contract.md (tests/reference_layer.py, written from the equations), `mtp-exp layer`
on the same files (the CLI and the bridge run the same C++: equal up to the last bits,
which the buffers' alignment can move in a vectorised sum), and at
K = 1 torch.nn.GRU / torch.nn.LSTM with the decay folded into the gate's bias."""

import subprocess

import pytest
import torch

import mtp
import reference_layer as ref
from conftest import CELLS


def case_layer(cell, dims, params, K, aggregator, weights, dtype):
    spec = ref.CELLS[cell]
    I = spec["input"](dims)
    hidden = {"gru": "H", "lstm": "H", "ssm": "N", "rwkv": "C"}[cell]
    layer = mtp.Perspectives(cell, I, dims[hidden], perspectives=K, aggregator=aggregator,
                             fixed_weights=weights, dtype=dtype)
    layer.load_state_dict({n: torch.from_numpy(v) for n, v in params.items()})
    layer.eval()
    return layer


def run_bridge(layer, inputs, dtype):
    x = torch.tensor(inputs["x"], dtype=dtype, requires_grad=True)
    y, _ = layer(x)
    (y * torch.tensor(inputs["dy"], dtype=dtype)).sum().backward()
    out = {"y": y.detach(), "grad.x": x.grad}
    out.update({"grad." + n: p.grad for n, p in layer.named_parameters()})
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("cell", CELLS)
def test_equals_float64_reference(cell):
    worst = 0.0
    for index, (K, aggregator, weights) in enumerate(ref.CASES):
        dims, params, inputs = ref.make_case(cell, index, K, aggregator)
        layer = case_layer(cell, dims, params, K, aggregator, weights, torch.float64)
        got = run_bridge(layer, inputs, torch.float64)
        want = ref.reference_grads(cell, inputs["x"], inputs["dy"], params, K, aggregator,
                                   weights)
        assert set(got) == set(want)
        for name in want:
            e = ref.rel_error(got[name], want[name])
            worst = max(worst, e)
            assert e <= ref.TOL["f64"], f"K={K} {aggregator} {name}: {e:.3g}"
    print(f"{cell}: worst relative error {worst:.2e} over {len(ref.CASES)} cases")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS)
def test_equals_mtp_exp_layer(cell, dtype, mtp_exp, tmp_path):
    torch_dtype = torch.float32 if dtype == "f32" else torch.float64
    for index, (K, aggregator, weights) in enumerate(ref.CASES):
        dims, params, inputs = ref.make_case(cell, index, K, aggregator)
        layer = case_layer(cell, dims, params, K, aggregator, weights, torch_dtype)
        # The layer's own state_dict is what the CLI reads: the names round-trip.
        mtp.safetensors.save(str(tmp_path / "params.safetensors"), layer.state_dict())
        mtp.safetensors.save(str(tmp_path / "input.safetensors"),
                             {k: torch.from_numpy(v) for k, v in inputs.items()})
        cmd, out = ref.layer_cmd(mtp_exp, str(tmp_path), cell, K, aggregator, weights, dtype)
        cmd += ["--threads", "1"]  # the tests' torch.set_num_threads(1): one summation order
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        cli, _ = mtp.safetensors.load(out)
        got = run_bridge(layer, inputs, torch_dtype)
        assert set(cli) == set(got)
        for name, t in cli.items():
            e = ref.rel_error(t.numpy(), got[name])
            assert e <= (1e-6 if dtype == "f32" else 1e-14), f"K={K} {aggregator} {name}: {e}"


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [False, True])
def test_k1_equals_torch_rnn(kind, dtype, training):
    """mtp at K = 1 is torch's own GRU/LSTM with the decay added to the update / forget
    gate's input bias; in training mode float32 runs oneDNN's fused RNN."""
    torch.manual_seed(9)
    I, H, T, B = 5, 7, 11, 3
    layer = mtp.Perspectives(kind, I, H, perspectives=1, dtype=dtype)
    with torch.no_grad():
        layer.decay.normal_()
    peer = (torch.nn.GRU if kind == "gru" else torch.nn.LSTM)(I, H, dtype=dtype)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(peer, name + "_l0").copy_(layer.get_parameter(name))
        peer.bias_ih_l0[H:2 * H] += layer.decay[0]  # z (GRU: r, z, n) / f (LSTM: i, f, g, o)
    layer.train(training)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(1, B, H, dtype=dtype)
    c0 = torch.randn(1, B, H, dtype=dtype)
    s0 = (h0 if kind == "gru" else torch.cat([h0, c0], dim=2)).transpose(0, 1)  # (B,1,Sw)
    y, sT = layer(x, s0.contiguous())
    if kind == "gru":
        y_ref, h_ref = peer(x, h0)
        s_ref = h_ref.transpose(0, 1)
    else:
        y_ref, (h_ref, c_ref) = peer(x, (h0, c0))
        s_ref = torch.cat([h_ref, c_ref], dim=2).transpose(0, 1)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, y_ref, **tol)
    torch.testing.assert_close(sT, s_ref, **tol)
    dy = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, layer.weight_hh), dy)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, peer.weight_hh_l0), dy)
    torch.testing.assert_close(gx, gx_ref, **tol)
    torch.testing.assert_close(gw, gw_ref, **tol)
    if training and dtype == torch.float32:
        assert layer._pools[dtype][0].used_fast_path
