"""mtp: multiple temporal perspectives for any recurrent cell, as PyTorch modules.

    from mtp import Perspectives
    layer = Perspectives("gru", input_size=64, hidden_size=128, perspectives=3,
                         aggregator="learned", noise=0.5)
    y, state = layer(x)            # x (T,B,I) → y (T,B,O), state (B,K,Sw)

mtp's C++ layers do the work (forward and backward over the whole sequence); see
docs/python.md.
"""

from ._mtp import UsageError, __version__, aggregators, cells
from . import safetensors
from .layers import Perspectives, layer_function
from .model import MtpModel, load_model, save_model

__all__ = ["Perspectives", "layer_function", "MtpModel", "load_model", "save_model",
           "safetensors", "cells", "aggregators", "UsageError", "__version__"]
