"""The bridge's tests run against the build tree's package (ctest sets PYTHONPATH to
build/python and MTP_EXP to the mtp-exp binary) with Debian's python3-torch."""

import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/: reference_layer, safetensors_io

import mtp  # noqa: E402

torch.set_num_threads(1)

CELLS = mtp.cells()
AGGREGATORS = mtp.aggregators()


def sizes(cell):
    """(input_size, hidden_size) small enough for gradcheck; I ≠ H where the cell has two
    widths, which catches a transpose."""
    return (4, 4) if cell == "rwkv" else (3, 5)


def selector_options(aggregator, K):
    """The selector settings a case runs with: the learned selector with noise (drawn from
    a fixed seed) and top-k where K allows; the fixed aggregator with its own weights."""
    if aggregator == "learned":
        return {"noise": 0.5, "top_k": 2 if K > 2 else 0}
    if aggregator == "fixed" and K == 3:
        return {"fixed_weights": [0.2, 0.5, 0.3]}
    return {}


@pytest.fixture
def mtp_exp():
    path = os.environ.get("MTP_EXP")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("MTP_EXP (the mtp-exp binary) is not set")
    return path
