"""mtp.Perspectives: gradients through mtp's backward (torch.autograd.gradcheck in float64,
every cell × aggregator × K ∈ {1, 3}, with selector noise and a carried state), and the
module's behaviour as a torch.nn.Module."""

import copy

import pytest
import torch

import mtp
from conftest import AGGREGATORS, CELLS, selector_options, sizes


def make_layer(cell, aggregator, K, dtype=torch.float64, **extra):
    I, H = sizes(cell)
    options = {**selector_options(aggregator, K), **extra}
    return mtp.Perspectives(cell, I, H, perspectives=K, aggregator=aggregator, dtype=dtype,
                            **options)


def history_state(layer, B, T=3):
    """A state a history can produce (RWKV's needs b > 0 and one last x across K)."""
    with torch.no_grad():
        _, state = layer(torch.randn(T, B, layer.input_size, dtype=torch.float64))
    return state


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck(cell, aggregator, K):
    torch.manual_seed(7)
    layer = make_layer(cell, aggregator, K)
    T, B = 4, 2
    x = torch.randn(T, B, layer.input_size, dtype=torch.float64, requires_grad=True)
    s0 = history_state(layer, B).requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in
              (layer.get_parameter(n) for n in layer.param_names)]

    def f(x, s0, *params):
        # training=True: the selector noise is on, drawn from the same seed every call.
        y, sT = mtp.layer_function(layer, x, s0, params, training=True, seed=11)
        return y, sT

    assert torch.autograd.gradcheck(f, (x, s0, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_learned_noise_mode_gradcheck(cell):
    torch.manual_seed(3)
    layer = make_layer(cell, "learned", 3, noise=0.0, noise_mode="learned")
    assert "selector.noise.weight" in layer.param_names
    x = torch.randn(4, 2, layer.input_size, dtype=torch.float64, requires_grad=True)
    s0 = layer.initial_state(2)
    params = [layer.get_parameter(n).detach().clone().requires_grad_()
              for n in layer.param_names]
    f = lambda x, *p: mtp.layer_function(layer, x, s0, p, training=True, seed=5)[0]  # noqa
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_module_gradients_equal_the_function(cell):
    """The module's parameters are views into one flat tensor; their gradients after
    backward equal those of the pure function on copies."""
    torch.manual_seed(1)
    layer = make_layer(cell, "learned", 3)
    x = torch.randn(6, 3, layer.input_size, dtype=torch.float64)
    layer.eval()
    y, sT = layer(x)
    (y.square().sum() + sT.sum()).backward()
    copies = [layer.get_parameter(n).detach().clone().requires_grad_()
              for n in layer.param_names]
    y2, s2 = mtp.layer_function(layer, x, layer.initial_state(3), copies)
    (y2.square().sum() + s2.sum()).backward()
    torch.testing.assert_close(y, y2, rtol=0, atol=0)
    for name, c in zip(layer.param_names, copies):
        torch.testing.assert_close(layer.get_parameter(name).grad, c.grad, rtol=0, atol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_call(cell):
    """Two chunks with the state carried, backward once through both, equal one call over
    the whole sequence: outputs and every gradient (x, initial state, parameters)."""
    torch.manual_seed(2)
    layer = make_layer(cell, "learned", 3)
    layer.eval()
    x = torch.randn(9, 2, layer.input_size, dtype=torch.float64, requires_grad=True)
    s0 = history_state(layer, 2).requires_grad_()
    y, sT = layer(x, s0)
    (y.sin().sum() + sT.cos().sum()).backward()
    whole = [x.grad.clone(), s0.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    x.grad = s0.grad = None
    layer.zero_grad()
    ya, sa = layer(x[:4], s0)
    yb, sb = layer(x[4:], sa)
    (torch.cat([ya, yb]).sin().sum() + sb.cos().sum()).backward()
    chunks = [x.grad, s0.grad] + [p.grad for p in layer.parameters()]
    torch.testing.assert_close(torch.cat([ya, yb]), y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sb, sT, rtol=1e-12, atol=1e-12)
    for a, b in zip(chunks, whole):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_retain_graph_second_backward():
    torch.manual_seed(4)
    layer = make_layer("gru", "learned", 3)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    y, _ = layer(x)
    y.sum().backward(retain_graph=True)
    first = [p.grad.clone() for p in layer.parameters()]
    y.sum().backward()
    for p, g in zip(layer.parameters(), first):
        torch.testing.assert_close(p.grad, 2 * g)


def test_noise_follows_torch_seed():
    layer = make_layer("gru", "learned", 3, dtype=torch.float32)
    x = torch.randn(6, 2, 3)
    layer.train()
    torch.manual_seed(10)
    a, _ = layer(x)
    torch.manual_seed(10)
    b, _ = layer(x)
    torch.manual_seed(11)
    c, _ = layer(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    layer.eval()  # no noise: the seed does not matter
    torch.manual_seed(10)
    d, _ = layer(x)
    torch.manual_seed(11)
    e, _ = layer(x)
    assert torch.equal(d, e)
    assert not torch.equal(a, d)


@pytest.mark.parametrize("cell", CELLS)
def test_batch_first_and_dtypes(cell):
    torch.manual_seed(5)
    layer = make_layer(cell, "mean", 3, dtype=torch.float32)
    layer_bf = copy.deepcopy(layer)
    layer_bf.batch_first = True
    x = torch.randn(7, 2, layer.input_size)
    y, s = layer(x)
    y_bf, s_bf = layer_bf(x.transpose(0, 1))
    assert y.dtype == torch.float32 and y.shape == (7, 2, layer.output_size)
    assert s.shape == (2, 3, layer.state_size)
    torch.testing.assert_close(y_bf.transpose(0, 1), y, rtol=0, atol=0)
    torch.testing.assert_close(s_bf, s, rtol=0, atol=0)
    # .double() replaces the parameters' storage: the module re-flattens once and runs
    # in float64 from the same values.
    layer.double()
    y64, _ = layer(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip():
    torch.manual_seed(6)
    a = make_layer("lstm", "learned", 3)
    b = make_layer("lstm", "learned", 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    a.eval()
    b.eval()
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=0, atol=0)
    assert list(a.state_dict()) == a.param_names


def test_optimizer_updates_reach_mtp():
    """An optimiser writes the parameters in place; mtp reads them there (no stale copy)."""
    torch.manual_seed(8)
    layer = make_layer("ssm", "learned", 2, dtype=torch.float32)
    x = torch.randn(5, 2, layer.input_size)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    y0, _ = layer(x)
    y0.square().mean().backward()
    opt.step()
    y1, _ = layer(x)
    assert not torch.equal(y0, y1)
    copies = [layer.get_parameter(n).detach().clone() for n in layer.param_names]
    layer.eval()
    torch.testing.assert_close(layer(x)[0], mtp.layer_function(
        layer, x, layer.initial_state(2), copies)[0], rtol=0, atol=0)
