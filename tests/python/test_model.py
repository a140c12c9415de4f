"""Models between mtp-exp and PyTorch, both directions; a PyTorch model with an mtp layer
trains; bad arguments and bad tensors raise Python exceptions (the CLI's one-line
messages), never a crash."""

import json
import os
import subprocess
import sys

import pytest
import torch

import mtp
from conftest import CELLS


def train_run(mtp_exp, out, *flags):
    cmd = [mtp_exp, *flags, "--steps", "4", "--width", "16", "--layers", "2", "--threads", "1",
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out / "model.safetensors"


def eval_run(mtp_exp, checkpoint, logits):
    r = subprocess.run([mtp_exp, "eval", "--checkpoint", str(checkpoint), "--threads", "1",
                        "--json", "--logits", str(logits)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("cell", CELLS)
def test_mtp_exp_model_in_torch_and_back(cell, mtp_exp, tmp_path):
    """A model trained by mtp-exp (K = 3, learned selector with noise) gives mtp-exp's
    logits in PyTorch; changed in PyTorch and saved, mtp-exp evaluates the changed model
    to PyTorch's logits."""
    checkpoint = train_run(mtp_exp, tmp_path / "run", "--cell", cell, "--perspectives", "3",
                           "--aggregator", "learned", "--noise", "0.3")
    eval_run(mtp_exp, checkpoint, tmp_path / "logits.safetensors")
    want, _ = mtp.safetensors.load(str(tmp_path / "logits.safetensors"))
    model = mtp.load_model(str(checkpoint))
    assert not model.training  # loaded for evaluation: no selector noise
    with torch.no_grad():
        logits, _ = model(want["tokens"].long())
    torch.testing.assert_close(logits, want["logits"], rtol=1e-5, atol=1e-5)

    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        logits, _ = model(want["tokens"].long())
    # Into a folder that does not exist yet: save_model creates it.
    mtp.save_model(model, str(tmp_path / "tuned" / "model.safetensors"))
    eval_run(mtp_exp, tmp_path / "tuned" / "model.safetensors", tmp_path / "logits2.safetensors")
    back, _ = mtp.safetensors.load(str(tmp_path / "logits2.safetensors"))
    torch.testing.assert_close(back["logits"], logits, rtol=1e-5, atol=1e-5)


def test_text_model_state_carries(mtp_exp, tmp_path):
    """An RWKV text model's state (the mixers' and the channel mixes' last inputs) carried
    over two chunks equals one call."""
    data = tmp_path / "text.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    checkpoint = train_run(mtp_exp, tmp_path / "run", "--task", "text", "--data", str(data),
                           "--cell", "rwkv", "--perspectives", "2", "--seq-len", "32")
    model = mtp.load_model(str(checkpoint)).eval()
    tokens = torch.randint(0, 256, (20, 3))
    with torch.no_grad():
        whole, _ = model(tokens)
        a, state = model(tokens[:7])
        b, _ = model(tokens[7:], state)
    torch.testing.assert_close(torch.cat([a, b]), whole, rtol=1e-5, atol=1e-5)
    # Saved again, it still records its corpus: mtp-exp eval refuses the corpus changed.
    saved = tmp_path / "saved" / "model.safetensors"
    mtp.save_model(model, str(saved))
    assert mtp.safetensors.load(str(saved))[1]["data_files"]
    with open(data, "a") as f:
        f.write("changed")
    r = subprocess.run([mtp_exp, "eval", "--checkpoint", str(saved), "--threads", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "changed since training" in r.stderr, r.stderr


@pytest.mark.parametrize("cell", CELLS)
def test_torch_model_with_mtp_layer_trains(cell):
    """An ordinary PyTorch model (embedding, mtp layer, linear head) learns to recall the
    token two steps back: its loss falls by a quarter or more (from ln 8 = 2.08)."""
    torch.manual_seed(0)
    V, W = 8, 16

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, W)
            self.rnn = mtp.Perspectives(cell, W, W, perspectives=3, aggregator="learned",
                                        noise=0.1)
            self.head = torch.nn.Linear(W, V)

        def forward(self, tokens):
            y, _ = self.rnn(self.emb(tokens))
            return self.head(y)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        tokens = torch.randint(0, V, (24, 16))
        logits = net(tokens)[2:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tokens[:-2].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert end < 0.75 * start, f"loss {start:.3f} → {end:.3f}"


def cli_message(mtp_exp, out, flags):
    r = subprocess.run([mtp_exp, *flags, "--steps", "1", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    return line[len("mtp-exp: error: "):line.rindex(" (see mtp-exp --help)")]


@pytest.mark.parametrize("kwargs", [
    dict(perspectives=0),
    dict(perspectives=65),
    dict(cell="foo"),
    dict(aggregator="median"),
    dict(noise=0.5),
    dict(noise=-1.0, aggregator="learned"),
    dict(aggregator="learned", perspectives=2, top_k=3),
    dict(aggregator="learned", noise=0.2, noise_mode="learned"),
    dict(aggregator="fixed", perspectives=2, fixed_weights=[0.5, 0.6]),
    dict(aggregator="mean", perspectives=2, fixed_weights=[0.5, 0.5]),
    dict(noise_mode="loud"),
])
def test_bad_arguments_raise_the_cli_message(kwargs, mtp_exp, tmp_path):
    """The same arguments as mtp-exp flags give the same one-line message, as a
    ValueError (the module's defaults are K = 1 and the mean; the CLI's are passed)."""
    args = {"cell": "gru", "aggregator": "mean", "perspectives": 1, **kwargs}
    flags = []
    for name, value in args.items():
        value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        flags += ["--" + name.replace("_", "-"), value]
    with pytest.raises(ValueError) as info:
        mtp.Perspectives(args.pop("cell"), 4, 4, **args)
    assert str(info.value) == cli_message(mtp_exp, tmp_path / "run", flags)


def test_bad_sizes_and_tensors_raise():
    with pytest.raises(ValueError, match="hidden_size must equal input_size"):
        mtp.Perspectives("rwkv", 4, 6)
    with pytest.raises(ValueError, match="input_size must be in"):
        mtp.Perspectives("gru", 0, 4)
    with pytest.raises(ValueError, match="dtype must be"):
        mtp.Perspectives("gru", 4, 4, dtype=torch.float16)
    layer = mtp.Perspectives("gru", 4, 5, perspectives=2)
    with pytest.raises(RuntimeError, match=r"x has shape \(3, 2, 3\), expected \(T,B,4\)"):
        layer(torch.randn(3, 2, 3))
    with pytest.raises(RuntimeError, match=r"x has shape \(2, 5, 3\), expected \(B,T,4\)"):
        mtp.Perspectives("gru", 4, 5, batch_first=True)(torch.randn(2, 5, 3))
    with pytest.raises(TypeError, match=r"state must be one tensor \(B,K,Sw\) = \(B,2,5\)"):
        layer(torch.randn(3, 2, 4), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)))
    with pytest.raises(TypeError):
        mtp.Perspectives("gru", 4.5, 4)
    with pytest.raises(RuntimeError, match="x is torch.float64, the layer is torch.float32"):
        layer(torch.randn(3, 2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"state has shape \(2,1,5\), expected \(2,2,5\)"):
        layer(torch.randn(3, 2, 4), torch.zeros(2, 1, 5))
    with pytest.raises(RuntimeError, match="expected"):
        layer(torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="T, B >= 1"):
        layer(torch.randn(0, 2, 4))
    # Non-contiguous inputs are made contiguous (a copy), not refused.
    x = torch.randn(2, 3, 4).transpose(0, 1)
    assert layer(x)[0].shape == (3, 2, 5)


def test_char_lm_example_runs_and_learns(tmp_path):
    """python/examples/char_lm.py as a researcher runs it, shortened: it trains, its
    validation bits per byte fall, it samples and saves."""
    example = os.path.join(os.path.dirname(__file__), "..", "..", "python", "examples",
                           "char_lm.py")
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question. " * 300)
    r = subprocess.run([sys.executable, example, "--data", str(text), "--steps", "40",
                        "--eval-every", "20", "--width", "32", "--seq-len", "32", "--batch",
                        "8", "--threads", "1", "--save", str(tmp_path / "lm.pt")],
                       capture_output=True, text=True, env=os.environ)
    assert r.returncode == 0, r.stderr
    vals = [float(line.split("val ")[1].split()[0]) for line in r.stdout.splitlines()
            if line.startswith("step")]
    assert len(vals) == 2 and vals[1] < vals[0], r.stdout
    assert "ROMEO:" in r.stdout
    assert (tmp_path / "lm.pt").exists()


def test_installed_package_imports_alone(tmp_path):
    """cmake --install puts the package where Debian's python3 finds packages (under the
    prefix); from there it imports and runs with nothing but torch beside it."""
    build = os.environ.get("MTP_BUILD_DIR")
    if not build:
        pytest.skip("MTP_BUILD_DIR is not set")
    r = subprocess.run(["cmake", "--install", build, "--component", "python", "--prefix",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    site = tmp_path / "lib" / "python3" / "dist-packages"
    code = ("import torch, mtp; l = mtp.Perspectives('lstm', 3, 4, perspectives=2); "
            "y, s = l(torch.randn(5, 2, 3)); print(mtp.__file__, tuple(y.shape))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(site)) and "(5, 2, 4)" in r.stdout
