#!/usr/bin/python3
"""A character-level language model on tinyshakespeare, written as ordinary PyTorch, with
mtp's perspective layers as its recurrent blocks. Copy it and change what you like.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/char_lm.py \\
        --data ../shared/data/text/tinyshakespeare.txt --cell gru --perspectives 3

Trains on the first 90% of the file (random windows of --seq-len bytes), reports the
validation loss in bits per byte on the last 10% every --eval-every steps, and prints a
sample at the end. --save FILE writes the model's state_dict.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

import mtp


class Block(nn.Module):
    """Pre-norm residual block: x + Perspectives(LayerNorm(x)), then x + MLP(LayerNorm(x))."""

    def __init__(self, width, cell, perspectives, aggregator, noise):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.rnn = mtp.Perspectives(cell, width, width, perspectives=perspectives,
                                    aggregator=aggregator, noise=noise)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x, state):
        y, state = self.rnn(self.norm1(x), state)
        x = x + y
        return x + self.mlp(self.norm2(x)), state


class CharLM(nn.Module):
    def __init__(self, width, layers, **rnn_args):
        super().__init__()
        self.emb = nn.Embedding(256, width)
        self.blocks = nn.ModuleList([Block(width, **rnn_args) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 256, bias=False)

    def forward(self, tokens, states=None):  # tokens (T,B) → logits (T,B,256)
        x = self.emb(tokens)
        states = states or [None] * len(self.blocks)
        new_states = []
        for block, state in zip(self.blocks, states):
            x, state = block(x, state)
            new_states.append(state)
        return self.head(self.norm(x)), new_states


def batches(data, seq_len, batch, generator):
    """Random windows: inputs (T,B) and next-byte targets (T,B)."""
    starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=generator)
    windows = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()], dim=1)
    return windows[:-1].long(), windows[1:].long()


@torch.no_grad()
def bits_per_byte(model, data, seq_len, batch):
    """Mean loss over consecutive windows of the validation text, the state carried."""
    model.eval()
    usable = (len(data) - 1) // (seq_len * batch) * seq_len * batch
    stream = data[:usable + 1]
    cols = usable // batch
    tokens = stream[:-1].view(batch, cols).t().long()  # (cols, B): B contiguous streams
    targets = stream[1:].view(batch, cols).t().long()
    total, states = 0.0, None
    for t in range(0, cols, seq_len):
        logits, states = model(tokens[t:t + seq_len], states)
        total += F.cross_entropy(logits.reshape(-1, 256), targets[t:t + seq_len].reshape(-1),
                                 reduction="sum").item()
    model.train()
    return total / (cols * batch) / math.log(2)


@torch.no_grad()
def sample(model, prompt, length, generator):
    model.eval()
    tokens = torch.tensor(list(prompt.encode()), dtype=torch.long).unsqueeze(1)
    logits, states = model(tokens)
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[-1, 0], dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        out.append(int(nxt))
        logits, states = model(nxt.view(1, 1), states)
    model.train()
    return prompt + bytes(out).decode(errors="replace")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a text file (tinyshakespeare.txt)")
    p.add_argument("--cell", default="gru", choices=mtp.cells())
    p.add_argument("--perspectives", type=int, default=3)
    p.add_argument("--aggregator", default="learned", choices=mtp.aggregators())
    p.add_argument("--noise", type=float, default=0.5, help="selector noise (learned only)")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--save", help="write the trained model's state_dict here")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    generator = torch.Generator().manual_seed(a.seed)

    with open(a.data, "rb") as f:
        data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]
    noise = a.noise if a.aggregator == "learned" else 0.0
    model = CharLM(a.width, a.layers, cell=a.cell, perspectives=a.perspectives,
                   aggregator=a.aggregator, noise=noise)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{a.cell} K={a.perspectives} {a.aggregator}: {n_params} parameters, "
          f"{len(train)} training bytes")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps)
    start = time.time()
    for step in range(1, a.steps + 1):
        tokens, targets = batches(train, a.seq_len, a.batch, generator)
        logits, _ = model(tokens)
        loss = F.cross_entropy(logits.reshape(-1, 256), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % a.eval_every == 0 or step == a.steps:
            bpb = bits_per_byte(model, val, a.seq_len, a.batch)
            print(f"step {step:5d}  train loss {loss.item():.3f}  val {bpb:.3f} bits/byte  "
                  f"{step * a.seq_len * a.batch / (time.time() - start):.0f} bytes/s",
                  flush=True)
    print(sample(model, "ROMEO:\n", 200, generator))
    if a.save:
        torch.save(model.state_dict(), a.save)


if __name__ == "__main__":
    main()
