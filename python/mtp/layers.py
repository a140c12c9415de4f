"""Perspectives: any registered cell with K temporal perspectives, as a torch.nn.Module.

The parameters are torch Parameters named as docs/contract.md names them (``weight_ih``,
``decay``, ``selector.weight``, ...), each a view into one flat tensor that mtp's layer
reads in place, with no copy; their gradients come back as views of one buffer. One
autograd function per call runs mtp's forward and backward over the whole sequence.

Shapes: x (T,B,I) (or (B,T,I) with batch_first), y (T,B,O), state (B,K,Sw); O and Sw
are the module's output_size and state_size (O = H for GRU and LSTM, I for RWKV and
the SSM; Sw = H, 2H, 4C, N).
"""

from __future__ import annotations

import operator
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from . import _mtp

__all__ = ["Perspectives", "layer_function"]

_SEED_RANGE = 2**62


class _Lease:
    """A C++ layer taken from a module's pool for one forward. It goes back to the pool
    after the backward, or when the graph that holds it is freed (at once after a forward
    without a graph). The layer keeps what its last forward saved, so a second backward
    (retain_graph=True) runs as long as no other forward has used the layer since."""

    __slots__ = ("core", "generation", "_pool")

    def __init__(self, pool: List["_mtp.Layer"], make):
        self.core = pool.pop() if pool else make()
        self.generation = -1
        self._pool = pool

    def release(self):
        if self._pool is not None:
            self._pool.append(self.core)
            self._pool = None

    def __del__(self):
        self.release()


class _LayerFunction(torch.autograd.Function):
    """(x, state, *params) → (y, final state) through mtp's forward and backward.

    ``flat`` is the parameters' memory when they are views into it (the module's case);
    None (gradcheck, or parameters moved elsewhere) gathers them into a copy first.
    """

    @staticmethod
    def forward(ctx, lease, infos, flat, training, seed, x, state, *params):
        if flat is None:
            flat = torch.cat([p.detach().reshape(-1) for p in params])
        final = state.detach().clone(memory_format=torch.contiguous_format)
        y = lease.core.forward(flat, x.detach(), final, training, seed)
        lease.generation = lease.core.generation
        ctx.lease, ctx.infos, ctx.flat = lease, infos, flat
        ctx.save_for_backward(x, *params)
        ctx.set_materialize_grads(False)
        return y, final

    @staticmethod
    def backward(ctx, dy, dsT):
        lease = ctx.lease
        core = lease.core
        if core.generation != lease.generation:
            raise RuntimeError(
                "mtp: a second backward through a forward after the layer ran another "
                "forward (retain_graph=True across calls): run that forward again")
        x, *params = ctx.saved_tensors
        if dy is None:
            dy = x.new_zeros(x.shape[:2] + (core.output_width,))
        want_ds0 = ctx.needs_input_grad[6]
        dx, ds0, grads = core.backward(
            ctx.flat, x.detach(), dy.contiguous(), None if dsT is None else dsT.contiguous(),
            want_ds0)
        lease.release()
        param_grads = [grads[offset:offset + _numel(shape)].view(shape)
                       for _, shape, offset, _ in ctx.infos]
        return (None, None, None, None, None, dx, ds0, *param_grads)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def layer_function(layer: "Perspectives", x: torch.Tensor, state: torch.Tensor,
                   params: Sequence[torch.Tensor], *, training: bool = False,
                   seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The layer as a pure function of (x, state, params), for torch.autograd.gradcheck
    and the like: ``params`` in the order of ``layer.param_names`` (the contract's),
    gathered into one flat tensor (a copy); the noise drawn from ``seed``, the same every
    call; a C++ layer of its own per call. Returns (y (T,B,O), final state (B,K,Sw))."""
    lease = _Lease([], lambda: layer._make_core(x.dtype))
    return _LayerFunction.apply(lease, layer._infos, None, training, seed, x.contiguous(),
                                state, *params)


class Perspectives(nn.Module):
    r"""A recurrent cell with K temporal perspectives, run by mtp.

    Args:
        cell: a registered cell, ``"gru"``, ``"lstm"``, ``"rwkv"`` (RWKV-4's time mix) or
            ``"ssm"`` (a diagonal linear SSM); ``mtp.cells()`` lists them.
        input_size: I, the width of x.
        hidden_size: H for GRU and LSTM, N (state channels) for the SSM; RWKV-4 has one
            width, so it must equal ``input_size`` (the default).
        perspectives: K, the views of the past sharing the cell's weights, each with its
            own decay row and state.
        aggregator: ``"mean"``, ``"learned"`` (a softmax selector) or ``"fixed"``;
            ``mtp.aggregators()`` lists them.
        noise, noise_mode, top_k: the learned selector's Gaussian noise σ on its logits
            while training (``noise_mode="learned"``: σ = softplus(W_n x)), and top-k.
        fixed_weights: the fixed aggregator's K weights (default: ½ for the first view,
            the rest spread evenly over the others).
        decay_spread: decay row k starts at the cell's decay + spread·(k − (K−1)/2).
        batch_first: x and y are (B,T,·) instead of (T,B,·).
        dtype: torch.float32 or torch.float64 (default: torch's default dtype).

    ``forward(x, state=None) -> (y, state)``: ``state`` (B,K,Sw) is carried between
    calls and receives gradients; None starts from zeros. The module's ``training`` flag
    turns the selector noise on; its draws follow torch's seed (``torch.manual_seed``).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: Optional[int] = None, *,
                 perspectives: int = 1, aggregator: str = "mean", noise: float = 0.0,
                 noise_mode: str = "fixed", top_k: int = 0,
                 fixed_weights: Optional[Sequence[float]] = None, decay_spread: float = 1.0,
                 batch_first: bool = False, dtype: Optional[torch.dtype] = None):
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        weights = [] if fixed_weights is None else [float(w) for w in fixed_weights]
        self._spec = dict(cell=cell, aggregator=aggregator, input_size=operator.index(input_size),
                          hidden_size=operator.index(input_size if hidden_size is None
                                                     else hidden_size),
                          perspectives=operator.index(perspectives),
                          decay_spread=float(decay_spread), noise=float(noise),
                          noise_mode=noise_mode, top_k=operator.index(top_k),
                          fixed_weights=weights)
        self.batch_first = batch_first
        self._pools = {}  # dtype → idle C++ layers
        core = self._make_core(dtype)
        self._infos = core.params()
        self.input_size = core.input_width
        self.output_size = core.output_width
        self.state_size = core.state_width
        self.perspectives = core.perspectives
        self._noisy = self._spec["noise"] > 0 or noise_mode == "learned"
        flat = torch.empty(core.param_count, dtype=dtype)
        core.init(flat, _draw_seed())
        self._pools.setdefault(dtype, []).append(core)
        self._flat = flat
        for name, shape, offset, _ in self._infos:
            owner, leaf = self._owner_of(name)
            owner.register_parameter(leaf, nn.Parameter(flat[offset:offset + _numel(shape)]
                                                        .view(shape)))

    # -- parameters -------------------------------------------------------------------

    @property
    def param_names(self) -> List[str]:
        """The parameters' names in the contract's order (that of ``layer_function``)."""
        return [name for name, _, _, _ in self._infos]

    def _owner_of(self, name: str) -> Tuple[nn.Module, str]:
        """The submodule that holds a dotted contract name ("selector.noise.weight")."""
        *path, leaf = name.split(".")
        owner: nn.Module = self
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        return owner, leaf

    def _params(self) -> List[nn.Parameter]:
        return [self.get_parameter(name) for name, _, _, _ in self._infos]

    def _flat_params(self) -> torch.Tensor:
        """The flat tensor the parameters are views of. After something replaced their
        storage (``.double()``, ``param.data = ...``), gathers them into a new flat tensor
        (one copy) and makes them views of it again."""
        params = self._params()
        flat = self._flat
        if all(_is_view_at(p, flat, offset) for p, (_, _, offset, _) in zip(params, self._infos)):
            return flat
        dtype = params[0].dtype
        if any(p.dtype != dtype for p in params):
            raise ValueError("mtp: the layer's parameters have mixed dtypes: "
                             f"{sorted({str(p.dtype) for p in params})}")
        if params[0].device.type != "cpu":
            raise ValueError(f"mtp: the layer's parameters are on {params[0].device}: mtp's "
                             "PyTorch bridge runs on the CPU")
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        for p, (_, shape, offset, _) in zip(params, self._infos):
            p.data = flat[offset:offset + _numel(shape)].view(shape)
        self._flat = flat
        return flat

    def __getstate__(self):
        # copy.deepcopy, pickle, torch.save: the C++ layers are rebuilt on demand; the
        # copy's parameters become views of a flat tensor again at its first forward.
        state = self.__dict__.copy()
        state["_pools"] = {}
        return state

    def _make_core(self, dtype: torch.dtype) -> "_mtp.Layer":
        return _mtp.Layer(f64=dtype == torch.float64, **self._spec)

    # -- running ----------------------------------------------------------------------

    def initial_state(self, batch: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """A zero state (B,K,Sw): no history."""
        return torch.zeros(batch, self.perspectives, self.state_size,
                           dtype=dtype or self.get_parameter(self._infos[0][0]).dtype)

    def forward(self, x: torch.Tensor,
                state: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"mtp: x must be a tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise RuntimeError(f"mtp: x has shape {tuple(x.shape)}, expected "
                               f"({'B,T' if self.batch_first else 'T,B'},{self.input_size})")
        if state is not None and not isinstance(state, torch.Tensor):
            raise TypeError(f"mtp: state must be one tensor (B,K,Sw) = (B,{self.perspectives},"
                            f"{self.state_size}), got {type(state).__name__} (an LSTM's h and "
                            "c are its planes [h | c])")
        if self.batch_first:
            x = x.transpose(0, 1)
        x = x.contiguous()
        flat = self._flat_params()
        dtype = flat.dtype
        if state is None:
            state = self.initial_state(x.shape[1], dtype)
        seed = _draw_seed() if self.training and self._noisy else 0
        pool = self._pools.setdefault(dtype, [])
        lease = _Lease(pool, lambda: self._make_core(dtype))
        y, final = _LayerFunction.apply(lease, self._infos, flat, self.training, seed, x, state,
                                        *self._params())
        if y.grad_fn is None:  # no graph holds it: the layer is free again
            lease.release()
        if self.batch_first:
            y = y.transpose(0, 1)
        return y, final

    def extra_repr(self) -> str:
        s = self._spec
        parts = [f"cell={s['cell']!r}", f"input_size={s['input_size']}",
                 f"hidden_size={s['hidden_size']}", f"perspectives={s['perspectives']}",
                 f"aggregator={s['aggregator']!r}"]
        if s["noise"]:
            parts.append(f"noise={s['noise']}")
        if s["noise_mode"] != "fixed":
            parts.append(f"noise_mode={s['noise_mode']!r}")
        if s["top_k"]:
            parts.append(f"top_k={s['top_k']}")
        if s["fixed_weights"]:
            parts.append(f"fixed_weights={s['fixed_weights']}")
        if s["decay_spread"] != 1.0:
            parts.append(f"decay_spread={s['decay_spread']}")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)


def _is_view_at(p: torch.Tensor, flat: torch.Tensor, offset: int) -> bool:
    return (p.dtype == flat.dtype and p.device == flat.device and p.is_contiguous()
            and p.data_ptr() == flat.data_ptr() + offset * flat.element_size())


def _draw_seed() -> int:
    """A seed from torch's default generator, so mtp's draws follow torch.manual_seed."""
    return int(torch.randint(0, _SEED_RANGE, (), dtype=torch.int64))
