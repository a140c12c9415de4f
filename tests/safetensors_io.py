"""A minimal, dependency-free safetensors reader and writer (docs/contract.md §11.1).

Layout: an 8-byte little-endian header length N, N bytes of JSON
{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian row-major tensor bytes (offsets relative to the data start).

Tensors are exchanged as numpy arrays; only the floating-point and integer dtypes the
project uses are supported. No third-party `safetensors` package is needed.
"""

import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def serialize(tensors, metadata=None):
    """Returns the bytes of a safetensors file holding `tensors` ({name: ndarray}).

    Tensors are written in sorted name order, so the output is deterministic."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<")
        if dt not in _NAMES:
            raise ValueError(f"tensor '{name}': unsupported dtype {a.dtype}")
        raw = np.ascontiguousarray(a, dtype=dt).tobytes()
        header[name] = {
            "dtype": _NAMES[dt],
            "shape": [int(d) for d in a.shape],
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)  # align the data start to 8 bytes
    return struct.pack("<Q", len(head)) + head + b"".join(chunks)


def save(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def parse(data, what="<bytes>"):
    """Returns ({name: ndarray}, metadata) from the bytes of a safetensors file."""
    if len(data) < 8:
        raise ValueError(f"{what}: not a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{what}: header length {n} exceeds the file")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{what}: tensor '{name}' has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(body)) or end - begin != count * dt.itemsize:
            raise ValueError(f"{what}: tensor '{name}' has bad data_offsets {begin}, {end}")
        out[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(shape).copy()
    return out, metadata


def load(path):
    """Returns ({name: ndarray}, metadata) read from `path`."""
    with open(path, "rb") as f:
        return parse(f.read(), what=path)
