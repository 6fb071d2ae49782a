"""Train the character-level LSTM language model of this example, with PyTorch on the
CPU (a few minutes on two cores), and save it for fastrnn.

    python examples/charlm/train.py                 # writes the bundled model
    python examples/charlm/train.py --steps 100 --out /tmp/quick.npz

The model is torch's ``nn.Sequential(Embedding, LSTM, Linear)``; it is converted
with ``fastrnn.LanguageModel.from_torch`` and written with ``save`` to one .npz
(weights under torch's names, the structure and the vocabulary as JSON, no
pickle). By default it lands where ``fastrnn generate`` looks for its bundled
model, ``fastrnn/models/data/charlm.npz`` in the source tree.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEXT = HERE / "devils_dictionary.txt"
BUNDLED = HERE.parent.parent / "fastrnn" / "models" / "data" / "charlm.npz"


def load_text(path=TEXT):
    text = Path(path).read_text(encoding="utf-8")
    vocab = "".join(sorted(set(text)))
    ids = np.array([vocab.index(c) for c in text], np.int64)
    return text, vocab, ids


def build(V, E, H, L):
    import torch.nn as nn

    # nn.Sequential is only the container (an LSTM returns a tuple, so torch cannot
    # call it as a whole); forward() below runs the three parts. fastrnn's Sequential
    # gives the same meaning to it: a recurrent layer passes on its output sequence.
    return nn.Sequential(nn.Embedding(V, E), nn.LSTM(E, H, L, batch_first=True), nn.Linear(H, V))


def forward(net, x, state=None):
    emb, lstm, head = net
    y, state = lstm(emb(x), state)
    return head(y), state


def evaluate(net, ids, T, batches=8):
    """Bits per character on `ids`, in windows of T characters."""
    import torch

    with torch.no_grad():
        n = (len(ids) - 1) // T
        n = min(n, batches * 32)
        x = torch.as_tensor(ids[: n * T].reshape(n, T))
        y = torch.as_tensor(ids[1 : n * T + 1].reshape(n, T))
        logits, _ = forward(net, x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 y.reshape(-1))
    return float(loss) / math.log(2)


def train(args) -> None:
    import torch

    import fastrnn

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    text, vocab, ids = load_text(args.text)
    split = int(len(ids) * 0.95)
    train_ids, val_ids = ids[:split], ids[split:]
    V = len(vocab)
    net = build(V, args.embed, args.hidden, args.layers)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=args.lr / 10)
    print(f"text: {len(text)} characters, vocabulary {V}; model "
          f"{sum(p.numel() for p in net.parameters())} parameters")
    T, B = args.seq, args.batch
    start = time.time()
    for step in range(1, args.steps + 1):
        offs = rng.integers(0, len(train_ids) - T - 1, B)
        x = torch.as_tensor(np.stack([train_ids[o : o + T] for o in offs]))
        y = torch.as_tensor(np.stack([train_ids[o + 1 : o + T + 1] for o in offs]))
        logits, _ = forward(net, x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.report == 0 or step == args.steps:
            print(f"step {step:5d}  train {loss.item() / math.log(2):.3f} bits/char  "
                  f"val {evaluate(net, val_ids, T):.3f}  ({time.time() - start:.0f} s)",
                  flush=True)
    net.eval()
    lm = fastrnn.LanguageModel.from_torch(net)
    lm.meta = {
        "kind": "charlm",
        "vocab": vocab,
        "corpus": "The Devil's Dictionary, Ambrose Bierce (public domain); see "
                  "examples/charlm/README.md",
        "val_bits_per_char": round(evaluate(net, val_ids, T), 4),
        "train": {k: getattr(args, k) for k in ("embed", "hidden", "layers", "seq", "batch",
                                                "steps", "lr", "seed")},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lm.save(out)
    print(f"saved {out} ({out.stat().st_size} bytes)")
    prompt = [vocab.index(c) for c in "LOVE, n."]
    tokens, _ = lm.generate(prompt, max_len=200, temperature=0.7, seed=1)
    print("sample (fastrnn, temperature 0.7):\nLOVE, n." + "".join(vocab[i] for i in tokens))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default=str(TEXT), help="training text (UTF-8)")
    p.add_argument("--out", default=str(BUNDLED), help="where to write the model (.npz)")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--seq", type=int, default=64, help="characters per training window")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report", type=int, default=100)
    train(p.parse_args(argv))


if __name__ == "__main__":
    main()
