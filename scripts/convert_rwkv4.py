#!/usr/bin/env python3
"""Converts an RWKV-4 language model to an mtp checkpoint (docs/contract.md §10, §11.2),
which `mtp-exp eval`, `generate` and `--init-from` read.

    /usr/bin/python3 scripts/convert_rwkv4.py RWKV-4-Pile-169M-20220807-8023.pth \\
        rwkv4-169m.safetensors --tokenizer ../shared/data/tokenizers/gpt-neox-20b_tokenizer.json

IN is one of
  - BlinkDL's RWKV-LM checkpoint (.pth): emb.weight, blocks.<l>.att.time_decay, ...;
  - Hugging Face's RwkvForCausalLM weights (pytorch_model.bin or model.safetensors, or
    the folder holding them): rwkv.embeddings.weight, rwkv.blocks.<l>.attention...
Tensors in bf16, fp16, f32 or f64 become f32 (bf16 and fp16 exactly). Anything the
converter does not recognise is refused, naming it: another RWKV version (RWKV-5/6
names), RWKV-4's optional head_qk, a missing tensor, a shape that does not fit, a
non-finite value, a vocabulary that is not the tokenizer's.

The result is a K = 1 RWKV-4 model with the mean aggregator: its names are RWKV-4's
except `att.time_decay (C)` → `att.decay (1,C)` and the time mixes `(1,1,C)` → `(C)`.
--tokenizer records the tokenizer's path in the checkpoint's configuration (eval and
generate can also be given one). Needs torch (the library does not).
Exit status: 0 converted, 1 refused (one line on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_safetensors_module():
    """python/mtp/safetensors.py by path: it needs only torch, not the built package."""
    path = os.path.join(HERE, "..", "python", "mtp", "safetensors.py")
    spec = importlib.util.spec_from_file_location("mtp_safetensors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


safetensors = _load_safetensors_module()


class Refused(Exception):
    pass


# Hugging Face's names → BlinkDL's (the prefix rwkv. dropped first).
HF_RENAMES = [
    (r"^embeddings\.weight$", "emb.weight"),
    (r"^blocks\.0\.pre_ln\.", "blocks.0.ln0."),
    (r"\.attention\.time_mix_key$", ".att.time_mix_k"),
    (r"\.attention\.time_mix_value$", ".att.time_mix_v"),
    (r"\.attention\.time_mix_receptance$", ".att.time_mix_r"),
    (r"\.attention\.", ".att."),
    (r"\.feed_forward\.time_mix_key$", ".ffn.time_mix_k"),
    (r"\.feed_forward\.time_mix_receptance$", ".ffn.time_mix_r"),
    (r"\.feed_forward\.", ".ffn."),
]


def read_state_dict(path: str):
    """(tensors by name, 'blinkdl' | 'hf')."""
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise Refused(f"{path}: a folder without model.safetensors or pytorch_model.bin")
    if not os.path.isfile(path):
        raise Refused(f"{path}: no such file")
    if path.endswith(".safetensors"):
        try:
            tensors, _ = safetensors.load(path)
        except ValueError as e:
            raise Refused(str(e)) from None
    else:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle, zip and weights_only errors alike
            raise Refused(f"{path}: not a PyTorch state dict ({type(e).__name__}: {e})") from None
        if isinstance(tensors, dict) and "state_dict" in tensors and isinstance(
                tensors["state_dict"], dict):
            tensors = tensors["state_dict"]
    if not isinstance(tensors, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise Refused(f"{path}: not a state dict of named tensors")
    if any(k.startswith("rwkv.") for k in tensors):
        out = {}
        for name, t in tensors.items():
            new = name[len("rwkv."):] if name.startswith("rwkv.") else name
            for pattern, repl in HF_RENAMES:
                new = re.sub(pattern, repl, new)
            out[new] = t
        return out, "hf"
    if "emb.weight" in tensors:
        return dict(tensors), "blinkdl"
    raise Refused(f"{path}: neither RWKV-4's names (emb.weight) nor Hugging Face's "
                  "(rwkv.embeddings.weight)")


def to_mtp(sd):
    """BlinkDL-named RWKV-4 tensors → (mtp tensors in f32, V, C, L)."""
    if any(k.endswith(("head_q.weight", "head_k.weight", "copy_mask")) for k in sd):
        raise Refused("the model has head_qk (RWKV-4's optional tiny attention), which mtp's "
                      "RWKV-4 does not have")
    emb = sd.get("emb.weight")
    if emb is None or emb.dim() != 2:
        raise Refused("emb.weight is missing or not a matrix")
    V, C = emb.shape
    layers = {int(m.group(1)) for k in sd for m in [re.match(r"^blocks\.(\d+)\.", k)] if m}
    if not layers:
        raise Refused("no blocks.<l>.* tensors")
    L = max(layers) + 1
    vec, row = (C,), (1, 1, C)
    expected = {"emb.weight": (V, C), "blocks.0.ln0.weight": vec, "blocks.0.ln0.bias": vec,
                "ln_out.weight": vec, "ln_out.bias": vec, "head.weight": (V, C)}
    for l in range(L):
        p = f"blocks.{l}."
        expected.update({p + "ln1.weight": vec, p + "ln1.bias": vec, p + "ln2.weight": vec,
                         p + "ln2.bias": vec, p + "att.time_decay": vec,
                         p + "att.time_first": vec, p + "att.time_mix_k": row,
                         p + "att.time_mix_v": row, p + "att.time_mix_r": row,
                         p + "att.key.weight": (C, C), p + "att.value.weight": (C, C),
                         p + "att.receptance.weight": (C, C), p + "att.output.weight": (C, C),
                         p + "ffn.time_mix_k": row, p + "ffn.time_mix_r": row,
                         p + "ffn.key.weight": (4 * C, C), p + "ffn.receptance.weight": (C, C),
                         p + "ffn.value.weight": (C, 4 * C)})
    unknown = sorted(set(sd) - set(expected))
    if unknown:
        hint = " (RWKV-5/6 names: not RWKV-4)" if any(
            re.search(r"time_faaaa|ln_x|time_maa|gate\.weight", k) for k in unknown) else ""
        raise Refused(f"{len(unknown)} tensors RWKV-4 does not have{hint}: "
                      + ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else ""))
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise Refused(f"{len(missing)} RWKV-4 tensor{'s are' if len(missing) > 1 else ' is'} "
                      "missing: " + ", ".join(missing[:5])
                      + (", ..." if len(missing) > 5 else ""))
    out = {}
    for name, shape in expected.items():
        t = sd[name]
        # Hugging Face keeps the time mixes as (1,1,C) too; some exports squeeze them.
        if tuple(t.shape) != shape and not (len(shape) == 3 and tuple(t.shape) == (C,)):
            raise Refused(f"{name} has shape {tuple(t.shape)}, RWKV-4 with C = {C} needs {shape}")
        if t.dtype not in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            raise Refused(f"{name} has dtype {t.dtype}, not a floating-point type")
        t = t.to(torch.float32)
        if not torch.isfinite(t).all():
            raise Refused(f"{name} holds a value that is not finite")
        if name.endswith("att.time_decay"):
            out[name[:-len("time_decay")] + "decay"] = t.reshape(1, C).contiguous()
        elif len(shape) == 3:
            out[name] = t.reshape(C).contiguous()
        else:
            out[name] = t.contiguous()
    return out, V, C, L


def tokenizer_vocab(path: str) -> int:
    """One more than the largest id of a Hugging Face tokenizer.json."""
    try:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        ids = list(j["model"]["vocab"].values()) + [t["id"] for t in j.get("added_tokens") or []]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise Refused(f"--tokenizer {path}: not a tokenizer.json ({type(e).__name__}: {e})") \
            from None
    return max(ids) + 1


def convert(src: str, dst: str, tokenizer: str = "", seq_len: int = 1024, batch: int = 4) -> dict:
    sd, source = read_state_dict(src)
    tensors, V, C, L = to_mtp(sd)
    if tokenizer:
        tv = tokenizer_vocab(tokenizer)
        if tv != V:
            raise Refused(f"the model's vocabulary is {V}, the tokenizer's {tv} ({tokenizer})")
    config = {"cell": "rwkv", "perspectives": 1, "aggregator": "mean", "layers": L, "width": C,
              "ffn": True, "task": "text", "seq_len": seq_len, "batch": batch,
              "tokenizer": os.path.abspath(tokenizer) if tokenizer else ""}
    params = sum(t.numel() for t in tensors.values())
    safetensors.save(dst, tensors, {"format": "mtp-checkpoint-1", "config": json.dumps(config),
                                    "step": "0", "converted_from": os.path.abspath(src),
                                    "source_names": source})
    return {"source_names": source, "vocab": V, "width": C, "layers": L, "parameters": params}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="convert_rwkv4.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="RWKV-4 .pth (BlinkDL), or Hugging Face's weights or folder")
    parser.add_argument("output", help="the mtp checkpoint to write (.safetensors)")
    parser.add_argument("--tokenizer", default="",
                        help="the model's tokenizer.json, checked against the vocabulary and "
                             "recorded in the checkpoint")
    parser.add_argument("--seq-len", type=int, default=1024,
                        help="eval --data: validation windows of this many tokens (RWKV-4 "
                             "Pile's context, 1024)")
    parser.add_argument("--batch", type=int, default=4, help="eval --data: windows per batch")
    args = parser.parse_args(argv)
    if args.seq_len < 2 or args.batch < 1:
        parser.error("--seq-len must be >= 2 and --batch >= 1")
    try:
        r = convert(args.input, args.output, args.tokenizer, args.seq_len, args.batch)
    except Refused as e:
        print(f"convert_rwkv4.py: error: {e}", file=sys.stderr)
        return 1
    print(f"converted {args.input} ({r['source_names']} names): RWKV-4 with {r['layers']} "
          f"layers, width {r['width']}, vocabulary {r['vocab']}, {r['parameters']} parameters "
          f"→ {args.output}")
    if not args.tokenizer and r["vocab"] != 256:
        print(f"note: no --tokenizer recorded: mtp-exp eval and generate need --tokenizer FILE "
              f"(a tokenizer of {r['vocab']} tokens) with this checkpoint", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
