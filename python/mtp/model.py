"""mtp's language model (docs/contract.md §7) as ordinary PyTorch, with mtp's perspective
layers as its mixers: load a model.safetensors trained by ``mtp-exp`` and get the same
logits, fine-tune it in PyTorch, and save it back for ``mtp-exp eval`` / ``generate``.

    model = mtp.load_model("runs/gru-k3/model.safetensors")
    logits, state = model(tokens)        # tokens (T,B) int64 → logits (T,B,V)

The structure is read from the file's tensor names, not from a list of cells: an LN0 on
the embeddings where ``blocks.0.ln0.*`` exists; per block the mixer under ``mixer.`` or
``att.`` (RWKV-4's name); the FFN as the 4× MLP (``ffn.fc``/``ffn.proj``) or RWKV-4's
channel mix (``ffn.key``/``ffn.receptance``/``ffn.value``); ``--no-ffn`` models have
none.
"""

from __future__ import annotations

import json
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import safetensors
from .layers import Perspectives

__all__ = ["MtpModel", "load_model", "save_model"]

_LN_EPS = 1e-5


class Mlp(nn.Module):
    """y = W_proj GELU(W_fc x + b_fc) + b_proj, GELU's tanh approximation."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)
        self.state_size = 0

    def forward(self, x, last):
        return self.proj(F.gelu(self.fc(x), approximate="tanh")), last


class RwkvChannelMix(nn.Module):
    """RWKV-4's channel mix with its own token shift: x̄ is the previous position's input
    (at the first, the carried one)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.time_mix_k = nn.Parameter(torch.zeros(width))
        self.time_mix_r = nn.Parameter(torch.zeros(width))
        self.key = nn.Linear(width, hidden, bias=False)
        self.receptance = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(hidden, width, bias=False)
        self.state_size = width

    def forward(self, x, last):  # x (T,B,W), last (B,W)
        shifted = torch.cat([last.unsqueeze(0), x[:-1]], dim=0)
        xk = self.time_mix_k * x + (1 - self.time_mix_k) * shifted
        xr = self.time_mix_r * x + (1 - self.time_mix_r) * shifted
        y = torch.sigmoid(self.receptance(xr)) * self.value(torch.relu(self.key(xk)) ** 2)
        return y, x[-1]


class Block(nn.Module):
    def __init__(self, width: int, mixer_name: str, mixer: Perspectives,
                 ffn: Optional[nn.Module]):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=_LN_EPS)
        self.mixer_name = mixer_name
        self.add_module(mixer_name, mixer)
        if ffn is not None:
            self.ln2 = nn.LayerNorm(width, eps=_LN_EPS)
            self.ffn = ffn
        else:
            self.ffn = None

    def mixer_module(self) -> Perspectives:
        return getattr(self, self.mixer_name)

    def forward(self, x, state):
        mixer_state, ffn_state = state
        y, mixer_state = self.mixer_module()(self.ln1(x), mixer_state)
        x = x + y
        if self.ffn is not None:
            y, ffn_state = self.ffn(self.ln2(x), ffn_state)
            x = x + y
        return x, (mixer_state, ffn_state)


class MtpModel(nn.Module):
    """Embedding, [LN0], blocks of (LN1, mixer, [LN2, FFN]) with residuals, LN_out, head.

    ``forward(tokens, state=None) -> (logits, state)``: tokens (T,B) int64, logits
    (T,B,V); the state, per block (mixer (B,K,Sw), FFN (B,Fw)), carries history between
    calls (None: zeros, no history). ``mtp_config`` is the run's configuration (the
    file's ``config`` metadata), kept for save_model.
    """

    def __init__(self, vocab: int, width: int, layers: int, *, cell: str, perspectives: int,
                 aggregator: str, mixer_name: str = "mixer", ffn: str = "mlp",
                 ffn_hidden: Optional[int] = None, ln0: bool = False, noise: float = 0.0,
                 noise_mode: str = "fixed", top_k: int = 0, fixed_weights=None,
                 decay_spread: float = 1.0, dtype: Optional[torch.dtype] = None,
                 mtp_config: Optional[dict] = None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        self.mtp_config = dict(mtp_config or {})
        self.emb = nn.Embedding(vocab, width, dtype=dtype)
        self.ln0 = nn.LayerNorm(width, eps=_LN_EPS, dtype=dtype) if ln0 else None
        hidden = ffn_hidden or 4 * width
        blocks = []
        for _ in range(layers):
            mixer = Perspectives(cell, width, width, perspectives=perspectives,
                                 aggregator=aggregator, noise=noise, noise_mode=noise_mode,
                                 top_k=top_k, fixed_weights=fixed_weights,
                                 decay_spread=decay_spread, dtype=dtype)
            block_ffn = {"mlp": lambda: Mlp(width, hidden),
                         "channel-mix": lambda: RwkvChannelMix(width, hidden),
                         "none": lambda: None}[ffn]()
            blocks.append(Block(width, mixer_name, mixer, block_ffn).to(dtype))
        self.blocks = nn.ModuleList(blocks)
        self.ln_out = nn.LayerNorm(width, eps=_LN_EPS, dtype=dtype)
        self.head = nn.Linear(width, vocab, bias=False, dtype=dtype)

    def initial_state(self, batch: int):
        dtype = self.emb.weight.dtype
        return [(b.mixer_module().initial_state(batch, dtype),
                 torch.zeros(batch, b.ffn.state_size if b.ffn is not None else 0, dtype=dtype))
                for b in self.blocks]

    def forward(self, tokens: torch.Tensor, state=None):
        if tokens.dim() != 2:
            raise ValueError(f"mtp: tokens have shape {tuple(tokens.shape)}, expected (T,B)")
        x = self.emb(tokens)
        if self.ln0 is not None:
            x = self.ln0(x)
        if state is None:
            state = self.initial_state(tokens.shape[1])
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block(x, s)
            new_state.append(s)
        return self.head(self.ln_out(x)), new_state


def load_model(path: str, dtype: Optional[torch.dtype] = None) -> MtpModel:
    """The model of an mtp ``model.safetensors`` (written by ``mtp-exp`` training), its
    parameters loaded, in eval mode: ``model(tokens)`` gives the logits ``mtp-exp eval``
    computes (``model.train()`` turns the selector noise of training on)."""
    tensors, metadata = safetensors.load(path)
    if "config" not in metadata:
        raise ValueError(f"{path}: no 'config' in its metadata: not an mtp model.safetensors "
                         "(a layer file loads with Perspectives.load_state_dict)")
    config = json.loads(metadata["config"])
    if config.get("combine", "layer") != "layer" or config.get("per_perspective",
                                                               "decay") != "decay":
        raise ValueError(f"{path}: a model with --combine {config.get('combine')} and "
                         f"--per-perspective {config.get('per_perspective')}: load_model "
                         "builds models whose perspectives combine in every layer with their "
                         "own decay only")
    names = set(tensors)
    if "emb.weight" not in tensors:
        raise ValueError(f"{path}: no 'emb.weight'")
    vocab, width = tensors["emb.weight"].shape
    layers = int(config["layers"])
    mixer_name = "att" if any(n.startswith("blocks.0.att.") for n in names) else "mixer"
    if "blocks.0.ffn.fc.weight" in names:
        ffn, ffn_hidden = "mlp", tensors["blocks.0.ffn.fc.weight"].shape[0]
    elif "blocks.0.ffn.key.weight" in names:
        ffn, ffn_hidden = "channel-mix", tensors["blocks.0.ffn.key.weight"].shape[0]
    else:
        ffn, ffn_hidden = "none", None
    model = MtpModel(int(vocab), int(width), layers, cell=config["cell"],
                     perspectives=int(config["perspectives"]), aggregator=config["aggregator"],
                     mixer_name=mixer_name, ffn=ffn, ffn_hidden=ffn_hidden,
                     ln0="blocks.0.ln0.weight" in names, noise=float(config.get("noise", 0)),
                     noise_mode=config.get("noise_mode", "fixed"),
                     top_k=int(config.get("top_k", 0)),
                     fixed_weights=config.get("fixed_weights") or None,
                     decay_spread=float(config.get("decay_spread", 1.0)), dtype=dtype,
                     mtp_config=config)
    model.mtp_step = int(metadata.get("step", 0))
    # The data files it was trained on (their hashes): save_model writes them back, so that
    # mtp-exp eval still refuses a corpus or tokenizer changed since training.
    model.mtp_data_files = metadata.get("data_files")
    state = {_torch_name(n): t for n, t in tensors.items()}
    missing, unexpected = model.load_state_dict(
        {n: t.to(model.emb.weight.dtype) for n, t in state.items()}, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: tensors do not match the model of its config: missing "
                         f"{[_mtp_name(n) for n in missing]}, unexpected "
                         f"{[_mtp_name(n) for n in unexpected]}")
    return model.eval()


def save_model(model: MtpModel, path: str, step: Optional[int] = None) -> None:
    """Writes the model as an mtp ``model.safetensors`` (F32, the config it was loaded
    with), which ``mtp-exp eval --checkpoint`` and ``generate`` read."""
    if not model.mtp_config:
        raise ValueError("mtp: save_model needs the run configuration of a loaded model "
                         "(model.mtp_config)")
    tensors = {_mtp_name(n): t.detach().to(torch.float32)
               for n, t in model.state_dict().items()}
    metadata = {"format": "mtp-checkpoint-1",
                "config": json.dumps(model.mtp_config),
                "step": str(step if step is not None else getattr(model, "mtp_step", 0))}
    if getattr(model, "mtp_data_files", None):
        metadata["data_files"] = model.mtp_data_files
    safetensors.save(path, tensors, metadata)


# mtp's tensor names (blocks.0.ln0.*) and the module's (ln0.* on the model).
def _torch_name(name: str) -> str:
    return name[len("blocks.0."):] if name.startswith("blocks.0.ln0.") else name


def _mtp_name(name: str) -> str:
    return "blocks.0." + name if name.startswith("ln0.") else name
