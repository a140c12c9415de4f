#!/usr/bin/env python3
"""The results table of the paper pipeline, from the files run.sh wrote (no number typed
by hand): python3 experiments/results/paper-pipeline/table.py [OUT_DIR]

Prints one Markdown row per run: parameters added to the K = 1 model and trained, the
validation bits per token and per byte, and every benchmark's metrics with their
standard errors. A run or evaluation that is missing (or still being written) is shown as "–".
"""
import json
import os
import sys

RUNS = [  # (folder, label), in run.sh's order
    ("base-k1", "base, K = 1"),
    ("k3-layer-decay", "K = 3, decay per view, combined in every layer (mtp)"),
    ("k3-head-shift", "K = 3, token shift per view, combined at the head (authors)"),
    ("k3-layer-both", "K = 3, token shift and decay per view, in every layer"),
    ("k1-control", "K = 1, fine-tuned the same way (control)"),
]
BENCHMARKS = [  # (file suffix, metrics shown)
    ("lambada-openai", ["acc", "perplexity"]),
    ("arc-easy", ["acc", "acc_norm"]),
    ("piqa", ["acc", "acc_norm"]),
    ("winogrande", ["acc"]),
]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):  # not run, or still being written
        return None


def metric(e, name):
    if e is None or name not in e:
        return "–"
    value, se = e[name], e[name + "_stderr"]
    if name == "perplexity":
        return f"{value:.4g} ± {se:.2g}"
    return f"{value:.4f} ± {se:.4f}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    head = ["run", "added (% of base)", "trained", "val bits/token", "val bits/byte"]
    for b, names in BENCHMARKS:
        head += [f"{b} {n}" for n in names]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for folder, label in RUNS:
        r = load(os.path.join(out, folder, "result.json"))
        if r is None:
            continue
        p, v = r["parameters"], r["validation"]
        row = [label, f"{p['perspective']} ({p['perspective_percent']:.4f}%)",
               f"{p['trained']} ({p['trained_percent']:.3f}%)",
               f"{v['bits_per_token']:.4f}", f"{v['bits_per_byte']:.4f}"]
        for b, names in BENCHMARKS:
            e = load(os.path.join(out, folder, f"eval-{b}.json"))
            row += [metric(e, n) for n in names]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
