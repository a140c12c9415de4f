#!/usr/bin/env python3
"""The paper's setting end to end against an independent float64 RWKV-4 (issue 16):

1. A random RWKV-4 language model in RWKV-LM's own structure (RWKV_TimeMix,
   RWKV_ChannelMix, Block, GPT; float64), with the GPT-NeoX tokenizer's vocabulary
   (V = 50 277), C = 32, L = 2. Its weights are rounded to bf16 and saved as BlinkDL's
   .pth (bf16), and again under Hugging Face's names (f32).
2. scripts/convert_rwkv4.py converts both; the two conversions hold the same tensors.
3. Logits: `mtp-exp eval --data CORPUS --logits` against the reference's logits on the
   same tokens.
4. Benchmarks: LAMBADA-OpenAI, ARC-Easy, PIQA and WinoGrande from the real files (the
   first N examples) and HellaSwag from a hand-made file, through `mtp-exp eval
   --benchmark --json`, against the metrics computed here from lm-evaluation-harness's
   definitions: its requests and preprocessing, its context/continuation split, full
   forwards from the zero state (mtp reuses the context's state), acc, acc_norm,
   perplexity and their standard errors. PIQA runs with RWKV's prefix token "\\n".
5. The authors' variant: their model (per-perspective token shift, K streams combined
   after the head) in float64 against `mtp-exp eval --logits` with --combine head
   --per-perspective shift.
6. The converter's refusals.

Token ids come from `mtp-exp tokenize --strings`: the tokenizer itself is checked against
tokenizers.js (tests/tokenizer). Everything else here is written from the definitions.

    /usr/bin/python3 tests/rwkv4_reference.py build/bin/mtp-exp ../shared/data

Exit 0 when everything agrees, 1 with the differences, 77 (skipped) without torch or the
shared data.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: this Python has no torch")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(HERE, "..", "scripts", "convert_rwkv4.py")
V, C, L = 50277, 32, 2
EXAMPLES = 30          # per real benchmark file
LOGIT_TOL = 2e-4       # float32 mtp against float64, relative to the logits' scale
LL_TOL = 2e-4          # summed log-likelihoods, relative


# ---- RWKV-4 in RWKV-LM's structure (RWKV-v4/src/model.py), float64 -------------------

class RWKV_TimeMix(nn.Module):
    def __init__(self):
        super().__init__()
        self.time_decay = nn.Parameter(torch.empty(C))
        self.time_first = nn.Parameter(torch.empty(C))
        self.time_mix_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_v = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)

    def forward(self, x):  # x (B,T,C)
        xx = F.pad(x, (0, 0, 1, -1))  # the token shift: x_{t-1}, zero at t = 0
        xk = x * self.time_mix_k + xx * (1 - self.time_mix_k)
        xv = x * self.time_mix_v + xx * (1 - self.time_mix_v)
        xr = x * self.time_mix_r + xx * (1 - self.time_mix_r)
        k, v, r = self.key(xk), self.value(xv), torch.sigmoid(self.receptance(xr))
        w, u = torch.exp(self.time_decay), self.time_first
        B, T, _ = x.shape
        a = torch.zeros(B, C, dtype=x.dtype)
        b = torch.zeros(B, C, dtype=x.dtype)
        out = []
        for t in range(T):  # wkv_t = (a + e^{u+k_t} v_t) / (b + e^{u+k_t}); a, b decay by e^{-w}
            e = torch.exp(u + k[:, t])
            out.append((a + e * v[:, t]) / (b + e))
            a = torch.exp(-w) * a + torch.exp(k[:, t]) * v[:, t]
            b = torch.exp(-w) * b + torch.exp(k[:, t])
        return self.output(r * torch.stack(out, 1))


class RWKV_ChannelMix(nn.Module):
    def __init__(self):
        super().__init__()
        self.time_mix_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, 4 * C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(4 * C, C, bias=False)

    def forward(self, x):
        xx = F.pad(x, (0, 0, 1, -1))
        xk = x * self.time_mix_k + xx * (1 - self.time_mix_k)
        xr = x * self.time_mix_r + xx * (1 - self.time_mix_r)
        k = torch.square(torch.relu(self.key(xk)))
        return torch.sigmoid(self.receptance(xr)) * self.value(k)


class Block(nn.Module):
    def __init__(self, layer_id):
        super().__init__()
        self.layer_id = layer_id
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        self.att, self.ffn = RWKV_TimeMix(), RWKV_ChannelMix()

    def forward(self, x):
        if self.layer_id == 0:
            x = self.ln0(x)
        x = x + self.att(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.Sequential(*[Block(i) for i in range(L)])
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)

    def forward(self, idx):  # (B,T) → logits (B,T,V)
        return self.head(self.ln_out(self.blocks(self.emb(idx))))


class AuthorsGPT(nn.Module):
    """The paper's released RWKV-4 with K perspectives (RazvanDu/TemporalRNNs,
    MultiplePerspectives/src/model_ours.py), in float64: the token-shift mixes of the time
    and channel mix stacked over K, one time_decay and time_first shared; K streams through
    every block; the logits of stream k weighted by softmax(convert3(mean_k ln_out(x_k))).
    Built here from a K = 1 GPT's modules: stream k swaps in its own mixes."""

    def __init__(self, base, K, seed):
        super().__init__()
        self.base, self.K = base, K
        g = torch.Generator().manual_seed(seed)
        self.mix = {}  # (block, "att"|"ffn", name) → (K,C)
        for l, blk in enumerate(base.blocks):
            for part, names in (("att", ("time_mix_k", "time_mix_v", "time_mix_r")),
                                ("ffn", ("time_mix_k", "time_mix_r"))):
                for name in names:
                    p = getattr(getattr(blk, part), name).detach().reshape(C)
                    rows = p + 0.2 * (torch.rand(K, C, generator=g, dtype=torch.float64) - 0.5)
                    self.mix[(l, part, name)] = rows.clamp(0.0, 1.0)
        self.convert3 = torch.randn(K, C, generator=g, dtype=torch.float64)

    def stream(self, idx, k):
        saved = {}
        for (l, part, name), rows in self.mix.items():
            module = getattr(self.base.blocks[l], part)
            saved[(l, part, name)] = getattr(module, name).data.clone()
            getattr(module, name).data.copy_(rows[k].reshape(1, 1, C))
        try:
            return self.base.ln_out(self.base.blocks(self.base.emb(idx)))
        finally:
            for (l, part, name), old in saved.items():
                getattr(getattr(self.base.blocks[l], part), name).data.copy_(old)

    def forward(self, idx):
        h = [self.stream(idx, k) for k in range(self.K)]
        w = torch.softmax(torch.stack(h).mean(0) @ self.convert3.t(), dim=-1)  # (B,T,K)
        return sum(self.base.head(h[k]) * w[..., k:k + 1] for k in range(self.K))

    def mtp_tensors(self):
        """Its parameters under mtp's names (contract §7.1), for --combine head
        --per-perspective shift --aggregator learned (a zero bias: convert3 has none)."""
        out = {}
        for name, t in self.base.state_dict().items():
            if name.endswith("time_decay"):
                out[name[:-len("time_decay")] + "decay"] = t.reshape(1, C).float()
            elif "time_mix" not in name:
                out[name] = t.float()
        for (l, part, name), rows in self.mix.items():
            out[f"blocks.{l}.{part}.{name}"] = rows.float()
        out["head.selector.weight"] = self.convert3.float()
        out["head.selector.bias"] = torch.zeros(self.K)
        return out


def random_rwkv4(seed=16):
    """Random weights of moderate scale (RWKV-4's own init zeroes key, receptance and
    output, which would make every output equal), rounded to bf16."""
    torch.manual_seed(seed)
    model = GPT().double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "time_mix" in name:
                p.uniform_(0.05, 0.95)
            elif "time_decay" in name:
                p.uniform_(-3.0, 1.0)
            elif "time_first" in name:
                p.uniform_(-1.0, 1.0)
            elif "ln" in name and name.endswith("weight"):
                p.uniform_(0.7, 1.3)
            elif "ln" in name:
                p.uniform_(-0.2, 0.2)
            elif name.startswith("emb"):
                p.normal_(0, 1.0)
            elif name.startswith("head"):
                p.normal_(0, 1.5 / math.sqrt(C))
            else:
                p.normal_(0, 1.0 / math.sqrt(p.shape[1]))
            p.copy_(p.to(torch.bfloat16).double())
    return model.eval()


# ---- lm-evaluation-harness's definitions ---------------------------------------------

def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def read_jsonl(path, n):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().splitlines()[:n]]


def requests_of(bench, path, n, labels=None):
    """[(gold, [(context, continuation, choice_for_len)])] as lm-eval builds them."""
    out = []
    if bench == "lambada-openai":
        for doc in read_jsonl(path, n):
            words = doc["text"].split(" ")
            out.append((0, [(" ".join(words[:-1]), " " + words[-1], None)]))
    elif bench == "arc-easy":
        for doc in read_jsonl(path, n):
            q = doc["question"]
            choices = [c["text"] for c in q["choices"]]
            gold = [c["label"] for c in q["choices"]].index(doc["answerKey"])
            out.append((gold, [("Question: " + q["stem"] + "\nAnswer:", " " + c, c)
                               for c in choices]))
    elif bench == "piqa":
        with open(labels) as f:
            golds = [int(x) for x in f.read().split()]
        for doc, gold in zip(read_jsonl(path, n), golds):
            out.append((gold, [("Question: " + doc["goal"] + "\nAnswer:", " " + s, s)
                               for s in (doc["sol1"], doc["sol2"])]))
    elif bench == "winogrande":
        for doc in read_jsonl(path, n):
            i = doc["sentence"].index("_")
            target = " " + doc["sentence"][i + 1:].strip()
            out.append((int(doc["answer"]) - 1,
                        [(doc["sentence"][:i] + o, target, None)
                         for o in (doc["option1"], doc["option2"])]))
    elif bench == "hellaswag":
        for doc in read_jsonl(path, n):
            ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
            query = hellaswag_preprocess(doc["activity_label"] + ": " + ctx)
            choices = [hellaswag_preprocess(e) for e in doc["endings"]]
            out.append((int(doc["label"]), [(query, " " + c, c) for c in choices]))
    return out


def encode_pairs(mtp_exp, tokenizer, pairs, scratch):
    """lm-eval's _encode_pair for every (context, continuation): the context's trailing
    spaces move to the continuation; the continuation is the whole's ids after the
    context's."""
    moved = []
    for context, continuation in pairs:
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        moved.append((context, continuation))
    texts = [c for c, _ in moved] + [c + k for c, k in moved]
    path = os.path.join(scratch, "strings.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    r = subprocess.run([mtp_exp, "tokenize", "--tokenizer", tokenizer, "--input", path,
                        "--strings"], capture_output=True, text=True, check=True)
    ids = json.loads(r.stdout)
    m = len(moved)
    return [(ids[i], ids[m + i][len(ids[i]):]) for i in range(m)]


def reference_metrics(model, bench, examples, encoded, prefix):
    """The metrics of lm-eval from full float64 forwards of prefix + context +
    continuation."""
    k = 0
    hits, hits_norm, nll, per_example = [], [], [], []
    with torch.no_grad():
        for gold, reqs in examples:
            lls, greedy = [], []
            for _ in reqs:
                ctx, cont = encoded[k]
                k += 1
                seq = prefix + ctx + cont
                logp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0], -1)
                pos = range(len(prefix) + len(ctx) - 1, len(seq) - 1)
                lls.append(sum(float(logp[p, t]) for p, t in zip(pos, cont)))
                greedy.append(all(int(logp[p].argmax()) == t for p, t in zip(pos, cont)))
            per_example.append((lls, greedy))
            if bench == "lambada-openai":
                hits.append(float(greedy[0]))
                nll.append(-lls[0])
            else:
                hits.append(float(max(range(len(lls)), key=lambda i: (lls[i], -i)) == gold))
                if reqs[0][2] is not None:
                    norm = [ll / len(r[2]) for ll, r in zip(lls, reqs)]
                    hits_norm.append(float(max(range(len(norm)), key=lambda i: (norm[i], -i))
                                           == gold))

    def mean(v):
        return sum(v) / len(v)

    def stderr(v):
        m = mean(v)
        return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) / math.sqrt(len(v))

    out = {"acc": mean(hits), "acc_stderr": stderr(hits)}
    if hits_norm:
        out.update({"acc_norm": mean(hits_norm), "acc_norm_stderr": stderr(hits_norm)})
    if nll:
        ppl = math.exp(mean(nll))
        out.update({"perplexity": ppl, "perplexity_stderr": ppl * stderr(nll)})
    return out, per_example


HELLASWAG = [
    {"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow "
     "covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then",
     "endings": [", the man adds wax to the windshield and cuts it.",
                 ", a person board a ski lift, while two men supporting the head of the person "
                 "wearing winter clothes snow as the we girls sled.",
                 ", the man puts on a christmas coat, knitted with netting.",
                 ", the man continues removing the snow on his car."], "label": "3"},
    {"activity_label": "Home and Garden", "ctx_a": "[header] How to  clean a [title] grill",
     "ctx_b": "sCRUB the GRATES.  [step] Use a brush",
     "endings": ["[substeps] Rinse   well.", " scrape it", "Ümlaut ÉTÉ [x]y", "a]b[c"],
     "label": 2},
    {"activity_label": "Baking cookies", "ctx_a": "A woman mixes flour in a bowl.", "ctx_b": "",
     "endings": ["She bakes.", "She sings [x] loudly.", "The dog  barks.", "It rains."],
     "label": 0},
]


# ---- the checks ------------------------------------------------------------------------

def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    mtp_exp, shared = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    tokenizer = os.path.join(shared, "tokenizers", "gpt-neox-20b_tokenizer.json")
    if not os.path.isfile(tokenizer):
        print(f"SKIPPED: {tokenizer} is not there (../shared/data)")
        return 77
    failures = []

    def check(ok, what):
        print(("ok      " if ok else "FAILED  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
        model = random_rwkv4()
        sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
        pth = os.path.join(tmp, "rwkv4.pth")
        torch.save(sd, pth)
        hf = {}
        for name, t in model.state_dict().items():
            new = name.replace("emb.weight", "embeddings.weight").replace(".ln0.", ".pre_ln.")
            new = re.sub(r"\.att\.time_mix_k$", ".attention.time_mix_key", new)
            new = re.sub(r"\.att\.time_mix_v$", ".attention.time_mix_value", new)
            new = re.sub(r"\.att\.time_mix_r$", ".attention.time_mix_receptance", new)
            new = re.sub(r"\.ffn\.time_mix_k$", ".feed_forward.time_mix_key", new)
            new = re.sub(r"\.ffn\.time_mix_r$", ".feed_forward.time_mix_receptance", new)
            new = new.replace(".att.", ".attention.").replace(".ffn.", ".feed_forward.")
            hf[new if new == "head.weight" else "rwkv." + new] = t.float()
        hf_dir = os.path.join(tmp, "hf")
        os.makedirs(hf_dir)
        torch.save(hf, os.path.join(hf_dir, "pytorch_model.bin"))

        conv = os.path.join(tmp, "rwkv4.safetensors")
        conv_hf = os.path.join(tmp, "rwkv4-hf.safetensors")
        for src, dst in ((pth, conv), (hf_dir, conv_hf)):
            r = subprocess.run([sys.executable, CONVERTER, src, dst, "--tokenizer", tokenizer,
                                "--seq-len", "24", "--batch", "3"], capture_output=True, text=True)
            check(r.returncode == 0, f"convert {os.path.basename(src)}: {r.stdout.strip()}"
                  f"{r.stderr.strip()}")
        spec = importlib.util.spec_from_file_location(  # python/mtp/safetensors.py: torch only
            "mtp_safetensors", os.path.join(HERE, "..", "python", "mtp", "safetensors.py"))
        st = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(st)
        a, meta = st.load(conv)
        b, _ = st.load(conv_hf)
        check(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
              "BlinkDL's and Hugging Face's names convert to the same tensors")
        check(torch.equal(a["blocks.1.att.decay"][0], sd["blocks.1.att.time_decay"].float()),
              "time_decay (C) became decay (1,C), bf16 → f32 exactly")

        # Logits of the first validation batch of a corpus.
        corpus = os.path.join(tmp, "corpus.txt")
        with open(os.path.join(shared, "text", "tinyshakespeare.txt"), encoding="utf-8") as f:
            text = f.read()[:6000]
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text)
        logits_file = os.path.join(tmp, "logits.safetensors")
        r = subprocess.run([mtp_exp, "eval", "--checkpoint", conv, "--data", corpus, "--logits",
                            logits_file, "--json"], capture_output=True, text=True, env=env)
        check(r.returncode == 0, "mtp-exp eval --data --logits " + r.stderr.strip())
        out, _ = st.load(logits_file)
        tokens, logits = out["tokens"].long(), out["logits"].double()  # (T,B), (T,B,V)
        with torch.no_grad():
            ref = model(tokens.t().contiguous()).transpose(0, 1)  # (T,B,V)
        scale = float(ref.abs().max())
        err = float((logits - ref).abs().max()) / scale
        check(tokens.shape == (24, 3) and err < LOGIT_TOL,
              f"logits of a (T,B) = {tuple(tokens.shape)} batch: max error {err:.2e} of the "
              f"scale {scale:.1f} (bound {LOGIT_TOL:g})")

        # Benchmarks.
        hs = os.path.join(tmp, "hellaswag.jsonl")
        with open(hs, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(d) + "\n" for d in HELLASWAG))
        ev = os.path.join(shared, "eval")
        cases = [("lambada-openai", os.path.join(ev, "lambada_openai_test.jsonl"), None, []),
                 ("arc-easy", os.path.join(ev, "arc_easy_test.jsonl"), None, []),
                 ("piqa", os.path.join(ev, "piqa_dev.jsonl"),
                  os.path.join(ev, "piqa_dev_labels.lst"), [187]),
                 ("winogrande", os.path.join(ev, "winogrande_dev.jsonl"), None, []),
                 ("hellaswag", hs, None, [])]
        for bench, data, labels, prefix in cases:
            n = len(HELLASWAG) if bench == "hellaswag" else EXAMPLES
            examples = requests_of(bench, data, n, labels)
            pairs = [(c, k) for _, reqs in examples for c, k, _ in reqs]
            want, want_examples = reference_metrics(
                model, bench, examples, encode_pairs(mtp_exp, tokenizer, pairs, tmp), prefix)
            per_example = os.path.join(tmp, bench + ".examples.jsonl")
            args = [mtp_exp, "eval", "--checkpoint", conv, "--benchmark", bench, "--data", data,
                    "--limit", str(n), "--json", "--examples", per_example]
            if prefix:
                args += ["--prefix-token", str(prefix[0])]
            r = subprocess.run(args, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                check(False, f"{bench}: mtp-exp eval failed: {r.stderr.strip()}")
                continue
            got = json.loads(r.stdout)
            bad = [f"{k} {got.get(k)} (reference {v})" for k, v in want.items()
                   if k not in got or abs(got[k] - v) > LL_TOL * max(1.0, abs(v))]
            # Every request's log-likelihood and greedy flag, example by example.
            with open(per_example) as f:
                rows = [json.loads(line) for line in f]
            worst = 0.0
            for i, (row, (lls, greedy)) in enumerate(zip(rows, want_examples)):
                for got_ll, ll in zip(row["loglikelihoods"], lls):
                    worst = max(worst, abs(got_ll - ll) / max(1.0, abs(ll)))
                if row["greedy"] != greedy or len(row["loglikelihoods"]) != len(lls):
                    bad.append(f"example {i}: greedy {row['greedy']} (reference {greedy})")
            if len(rows) != n or worst > LL_TOL:
                bad.append(f"{len(rows)} examples written, log-likelihoods within {worst:.1e}")
            check(not bad and got["examples"] == n,
                  f"{bench} ({n} examples{', prefix ' + str(prefix) if prefix else ''}; "
                  f"log-likelihoods within {worst:.1e}): "
                  + (", ".join(f"{k} {v:.4f}" for k, v in want.items()) if not bad
                     else "; ".join(bad)))

        # The authors' variant: their model against --combine head --per-perspective shift,
        # weights rounded to f32 first (the checkpoint's precision).
        authors = AuthorsGPT(random_rwkv4(seed=23), K=3, seed=5)
        with torch.no_grad():
            for t in list(authors.base.parameters()) + list(authors.mix.values()) + [
                    authors.convert3]:
                t.copy_(t.float().double())
        head_ckpt = os.path.join(tmp, "authors.safetensors")
        config = {"cell": "rwkv", "perspectives": 3, "aggregator": "learned", "layers": L,
                  "width": C, "ffn": True, "task": "text", "seq_len": 24, "batch": 3,
                  "combine": "head", "per_perspective": "shift", "tokenizer": tokenizer}
        st.save(head_ckpt, authors.mtp_tensors(),
                {"format": "mtp-checkpoint-1", "config": json.dumps(config), "step": "0"})
        head_logits = os.path.join(tmp, "authors-logits.safetensors")
        r = subprocess.run([mtp_exp, "eval", "--checkpoint", head_ckpt, "--data", corpus,
                            "--logits", head_logits], capture_output=True, text=True, env=env)
        check(r.returncode == 0, "mtp-exp eval --logits of the authors' variant " + r.stderr.strip())
        if r.returncode == 0:
            out, _ = st.load(head_logits)
            tokens, logits = out["tokens"].long(), out["logits"].double()
            with torch.no_grad():
                ref = authors(tokens.t().contiguous()).transpose(0, 1)
            scale = float(ref.abs().max())
            err = float((logits - ref).abs().max()) / scale
            check(err < LOGIT_TOL, f"the authors' variant (K = 3 streams, per-perspective token "
                  f"shift, combined at the head): max logit error {err:.2e} of the scale "
                  f"{scale:.1f} (bound {LOGIT_TOL:g})")

        # Refusals.
        def refused(sd_, why):
            p = os.path.join(tmp, "bad.pth")
            torch.save(sd_, p)
            r = subprocess.run([sys.executable, CONVERTER, p, os.path.join(tmp, "bad.st")],
                               capture_output=True, text=True)
            check(r.returncode == 1 and why in r.stderr,
                  f"refused ({why}): {r.stderr.strip()}")

        refused({**sd, "blocks.0.att.time_faaaa": sd["blocks.0.att.time_first"]}, "RWKV-5/6")
        refused({**sd, "head_q.weight": sd["head.weight"]}, "head_qk")
        refused({k: v for k, v in sd.items() if k != "blocks.1.ffn.value.weight"},
                "blocks.1.ffn.value.weight")
        refused({**sd, "blocks.0.att.key.weight": sd["blocks.0.att.key.weight"][:, :5]},
                "blocks.0.att.key.weight has shape")
        refused({**sd, "ln_out.bias": torch.full((C,), float("nan"))}, "not finite")
        refused({**sd, "emb.weight": sd["emb.weight"].long()}, "not a floating-point type")
        refused({"w": torch.zeros(2)}, "neither RWKV-4's names")
        r = subprocess.run([sys.executable, CONVERTER, pth, os.path.join(tmp, "x.st"),
                            "--tokenizer", os.path.join(HERE, "tokenizer", "texts.json")],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "not a tokenizer.json" in r.stderr,
              f"refused (a file that is not a tokenizer): {r.stderr.strip()}")

    print(f"{len(failures)} failed" if failures else "all agree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
