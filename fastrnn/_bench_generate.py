"""Generation speed of the bundled char-LM example: fastrnn's C decoding loop against
the same loop written in PyTorch.

:func:`run` returns one row per case and engine (for ``fastrnn bench`` to print or
save). Cases, on the bundled LSTM (examples/charlm), after the prompt "\\n\\n":

- greedy, batch 1 (latency: one token per step, the loop's overhead shows);
- sampling at temperature 0.8, batch 1;
- greedy, batch 32 (throughput);
- beam search, 4 beams, batch 1, SPEC §7 rules.

The torch engine runs the same algorithm step by step under ``torch.inference_mode``
with the same weights (float32) and thread count: embedding, one LSTM step with
its state, Linear, log_softmax, then argmax, ``torch.multinomial``, or a stable
sort of the beam candidates walked as SPEC §7 says.

Checks: greedy and beam tokens must equal torch's (where a float32 near-tie sends
them apart, the row says at which step, and fastrnn's tokens are still checked as
below); every fastrnn result's per-token log p must match torch's teacher-forced
log_softmax of the same tokens (sampling draws differ between the engines' random
generators, so that is its check).
"""

from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["run"]

PROMPT = "\n\n"
LOGP_TOL = 2e-3  # float32 over hundreds of steps: state drift stays far below this


def _torch_net(lm):
    import torch
    from torch import nn

    rnn = lm.rnn
    net = nn.Sequential(
        nn.Embedding(lm.embedding.num_embeddings, lm.embedding.embedding_dim),
        nn.LSTM(rnn.input_size, rnn.hidden_size, rnn.num_layers, batch_first=True),
        nn.Linear(lm.out.in_features, lm.out.out_features),
    )
    net.load_state_dict({k: torch.as_tensor(a) for k, a in lm.state_dict().items()})
    return net.eval()


def _torch_generate(net, prompt, B, steps, mode, beam=1, temperature=0.8, seed=0):
    """The generation loop in torch; returns tokens (B, steps) (beam: (1, L))."""
    import torch

    emb, lstm, head = net
    with torch.inference_mode():
        x = torch.as_tensor([prompt] * B)
        state = None
        if len(prompt) > 1:
            _, state = lstm(emb(x[:, :-1]), None)
        tok = x[:, -1]
        if mode == "beam":
            return _torch_beam(net, tok, state, steps, beam)
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(steps):
            y, state = lstm(emb(tok)[:, None], state)
            logp = torch.log_softmax(head(y[:, 0]), -1)
            if mode == "greedy":
                tok = torch.argmax(logp, -1)
            else:
                p = torch.softmax(logp / temperature, -1)
                tok = torch.multinomial(p, 1, generator=gen)[:, 0]
            out.append(tok)
        return torch.stack(out, 1).numpy()


def _torch_beam(net, tok, state, steps, beam):
    """SPEC §7 beam search for one sequence (no eos: runs `steps` steps)."""
    import torch

    emb, lstm, head = net
    V = head.out_features
    live_tok = tok[:1]
    h, c = (state[0][:, :1], state[1][:, :1]) if state is not None else (None, None)
    sums = torch.zeros(1, dtype=torch.float64)
    hist = []
    for _ in range(steps):
        y, (h, c) = lstm(emb(live_tok)[:, None], None if h is None else (h, c))
        logp = torch.log_softmax(head(y[:, 0]), -1)
        n = live_tok.shape[0]
        key = logp[0].double() if n == 1 else (sums[:, None] + logp.double()).reshape(-1)
        order = torch.sort(key, descending=True, stable=True).indices[:beam]
        parent, token = order // V, order % V
        sums = (sums[parent] + logp.double()[parent, token]) if n > 1 else logp[0].double()[token]
        hist.append((parent, token))
        live_tok, h, c = token, h[:, parent], c[:, parent]
    # the best live hypothesis (all have the same length); the earliest on a tie
    k = int(torch.argmax(sums))
    toks = []
    for parent, token in reversed(hist):
        toks.append(int(token[k]))
        k = int(parent[k])
    return np.array([toks[::-1]])


def _teacher_forced_logp(net, prompt, tokens):
    """log p of each generated token under torch, one row at a time, in one pass."""
    import torch

    emb, lstm, head = net
    out = np.zeros(tokens.shape)
    with torch.inference_mode():
        for b, row in enumerate(tokens):
            seq = torch.as_tensor(list(prompt) + list(row[:-1]))[None]
            y, _ = lstm(emb(seq))
            lp = torch.log_softmax(head(y[0, len(prompt) - 1:]), -1)
            out[b] = lp[torch.arange(len(row)), torch.as_tensor(row)].double().numpy()
    return out


def _median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(quick: bool, time_torch: bool = True) -> list[dict]:
    """Time every case on fastrnn and (when installed, and ``time_torch``) torch; one
    dict per row: case, engine, batch, tokens, seconds (median), tokens_per_s, check,
    speedup (fastrnn rows: torch's time / fastrnn's). Without ``time_torch``, torch
    (when installed) still checks fastrnn's log p, but its loop neither runs nor counts."""
    import fastrnn

    from ._cli_generate import encode, load_charlm

    lm, vocab = load_charlm()
    prompt = encode(PROMPT, vocab)
    steps = 100 if quick else 400
    repeats = 3 if quick else 5
    cases = [
        ("greedy, batch 1", dict(B=1, mode="greedy")),
        ("sampling T=0.8, batch 1", dict(B=1, mode="sample")),
        ("greedy, batch 32", dict(B=32, mode="greedy")),
        ("beam 4, batch 1", dict(B=1, mode="beam", beam=4)),
    ]
    try:
        import torch
    except ImportError:
        torch = None
    threads = fastrnn.get_num_threads()
    if torch is not None:
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        net = _torch_net(lm)
    rows = []
    try:
        for name, c in cases:
            B, mode, beam = c["B"], c["mode"], c.get("beam", 1)
            temp = 0.8 if mode == "sample" else 0.0

            def ours(B=B, beam=beam, temp=temp):
                return lm.generate([prompt] * B, max_len=steps, beam_width=beam,
                                   temperature=temp, seed=0)

            tokens, logp = ours()
            n_tokens = tokens.size
            t_ours = _median_time(ours, repeats)
            row = dict(case=name, engine="fastrnn", batch=B, threads=threads, tokens=n_tokens,
                       seconds=t_ours, tokens_per_s=n_tokens / t_ours, check="unchecked")
            rows.append(row)
            if torch is None:
                row["check"] = "unchecked (torch not installed)"
                continue
            check = []
            ref_lp = _teacher_forced_logp(net, prompt, tokens)
            err = float(np.max(np.abs(ref_lp - logp))) if logp.size else 0.0
            if not math.isfinite(err) or err > LOGP_TOL:
                check.append(f"FAILED: log p off by {err:.2g} (tolerance {LOGP_TOL})")
            if not time_torch:
                row["check"] = "; ".join(check) or "ok"
                continue

            def theirs(B=B, mode=mode, beam=beam):
                return _torch_generate(net, prompt, B, steps, mode, beam=beam)

            ref = theirs()
            t_torch = _median_time(theirs, repeats)
            if mode != "sample" and not np.array_equal(ref, tokens):
                diff = np.flatnonzero((ref != tokens).any(axis=0))
                check.append(f"tokens differ from torch's from step {int(diff[0])} "
                             "(a float32 near-tie)")
            row["check"] = "; ".join(check) or "ok"
            row["speedup"] = t_torch / t_ours
            rows.append(dict(case=name, engine="torch", batch=B, threads=threads,
                             tokens=int(ref.size), seconds=t_torch,
                             tokens_per_s=ref.size / t_torch, check="reference"))
    finally:
        if torch is not None:
            torch.set_num_threads(saved_threads)
    return rows


def _print(rows) -> None:
    print(f"{'case':26s} {'engine':8s} {'tokens/s':>12s} {'speed-up':>9s}  check")
    for r in rows:
        sp = f"{r['speedup']:.1f}x" if "speedup" in r else ""
        print(f"{r['case']:26s} {r['engine']:8s} {r['tokens_per_s']:12,.0f} {sp:>9s}  "
              f"{r['check']}")


if __name__ == "__main__":
    import sys

    _print(run("--quick" in sys.argv))
