"""``fastrnn generate``: text from a character-level language model.

    fastrnn generate [MODEL] [--prompt TEXT] [--max-len N] [--temperature T]
                     [--seed S] [--beam N] [--length-penalty X] [--num N]
                     [--stop CHAR] [--stats]

MODEL is a ``.npz`` written by :meth:`fastrnn.LanguageModel.save` whose metadata
holds its vocabulary (``meta["vocab"]``, one character per id); without MODEL the
bundled example is used: an LSTM trained on Ambrose Bierce's *The Devil's
Dictionary* (examples/charlm in the source tree). The default prompt, a blank
line, starts a new dictionary entry.

Sampling with ``--temperature`` (default 0.8) and ``--seed``; ``--temperature 0``
is greedy; ``--beam N`` is beam search (SPEC §7 rules). The whole per-step loop
runs in C (:meth:`fastrnn.LanguageModel.generate`). Every failure prints one line
on stderr and exits non-zero (2 for bad arguments, 1 otherwise).
"""

from __future__ import annotations

import argparse
import codecs
import sys
import time
from pathlib import Path

from ._cli_common import error_exit, run_guarded, standalone

__all__ = ["add_parser", "main", "BUNDLED_MODEL", "load_charlm", "encode", "decode"]

_PROG = "fastrnn generate"
BUNDLED_MODEL = Path(__file__).resolve().parent / "models" / "data" / "charlm.npz"


def _error_exit(message, code: int = 2):
    error_exit(_PROG, message, code)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``generate`` on an ``argparse`` subparsers object; returns its parser
    (defaults hold ``func=main``)."""
    p = subparsers.add_parser(
        "generate",
        help="generate text with a character-level language model",
        description="Continue a prompt with a character-level language model (by default "
        "the bundled LSTM trained on The Devil's Dictionary); the decoding loop runs in C.",
    )
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a LanguageModel .npz with a vocabulary (default: the bundled one)")
    p.add_argument("--prompt", default="\n\n",
                   help="text to continue (Python escapes such as \\n allowed; default: a "
                   "blank line, which starts a new entry)")
    p.add_argument("--max-len", type=int, default=400, metavar="N",
                   help="characters to generate at most (default 400)")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature > 0 (default 0.8); 0 is greedy")
    p.add_argument("--seed", type=int, default=None, help="seed of the sampler")
    p.add_argument("--beam", type=int, default=1, metavar="N",
                   help="beam search with N beams (implies temperature 0)")
    p.add_argument("--length-penalty", type=float, default=0.0, metavar="X",
                   help="beam scores are sum log p / len**X (default 0)")
    p.add_argument("--num", type=int, default=1, metavar="N",
                   help="independent continuations, generated as one batch (default 1)")
    p.add_argument("--stop", default=None, metavar="CHAR",
                   help="end a continuation at this character (included), e.g. '\\n'")
    p.add_argument("--stats", action="store_true",
                   help="print characters per second on stderr")
    p.set_defaults(func=main)
    p.error = lambda message: _error_exit(message, 2)
    return p


def load_charlm(path=None):
    """(LanguageModel, vocab string) from a model file (default: the bundled one)."""
    from .models import LanguageModel, load_model

    path = BUNDLED_MODEL if path is None else Path(path)
    if not path.exists():
        hint = " (the bundled model is missing from this installation)" \
            if path == BUNDLED_MODEL else ""
        raise ValueError(f"model file {str(path)!r} does not exist{hint}")
    lm = load_model(path)
    if not isinstance(lm, LanguageModel):
        raise ValueError(f"{str(path)!r} holds a {type(lm).__name__}, not a LanguageModel")
    vocab = lm.meta.get("vocab") if isinstance(lm.meta, dict) else None
    if not isinstance(vocab, str) or len(vocab) < lm.vocab_size:
        raise ValueError(f"{str(path)!r} has no character vocabulary (meta['vocab'] with one "
                         f"character per id, {lm.vocab_size} ids)")
    return lm, vocab


def encode(text: str, vocab: str, what: str = "--prompt"):
    index = {c: i for i, c in enumerate(vocab)}
    bad = sorted({c for c in text if c not in index})
    if bad:
        raise ValueError(f"{what} has characters the model does not know: "
                         f"{', '.join(repr(c) for c in bad)}")
    return [index[c] for c in text]


def decode(ids, vocab: str) -> str:
    return "".join(vocab[int(i)] for i in ids)


def _unescape(s: str, what: str) -> str:
    try:
        return codecs.decode(s.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} has a bad escape sequence ({exc.reason})") from None


def _run(args) -> int:
    lm, vocab = load_charlm(args.model)
    prompt = _unescape(args.prompt, "--prompt")
    if not prompt:
        raise ValueError("--prompt is empty; give at least one character")
    ids = encode(prompt, vocab)
    if args.beam > 1 and args.temperature not in (None, 0):
        raise ValueError(f"--beam {args.beam} searches deterministically; it cannot sample "
                         f"with --temperature {args.temperature} (use 0, or --beam 1)")
    temperature = (0.0 if args.beam > 1 else 0.8) if args.temperature is None else args.temperature
    if args.num < 1:
        raise ValueError(f"--num is {args.num}; it must be >= 1")
    eos = None
    if args.stop is not None:
        stop = _unescape(args.stop, "--stop")
        if len(stop) != 1:
            raise ValueError(f"--stop must be one character, got {stop!r}")
        eos = encode(stop, vocab, "--stop")[0]
    batch = [ids] * args.num
    start = time.perf_counter()
    tokens, _ = lm.generate(batch, max_len=args.max_len, eos=eos, beam_width=args.beam,
                            length_penalty=args.length_penalty, temperature=temperature,
                            seed=args.seed)
    seconds = time.perf_counter() - start
    out = sys.stdout
    for i, row in enumerate(tokens):
        if i:
            out.write("\n----\n")
        n = len(row)
        if eos is not None and eos in row.tolist():
            n = row.tolist().index(eos) + 1
        out.write(prompt + decode(row[:n], vocab))
    out.write("\n")
    out.flush()
    if args.stats:
        count = int(tokens.size)
        print(f"{count} characters in {seconds * 1e3:.1f} ms: {count / seconds:,.0f} "
              "characters/s", file=sys.stderr)
    return 0


def main(args) -> int:
    """Run ``generate`` on parsed ``args``; returns the exit code."""
    return run_guarded(_PROG, _run, args)


def _standalone(argv=None) -> int:
    """``python -m fastrnn._cli_generate ...``: the subcommand on its own."""
    return standalone(_PROG, add_parser, argv)


if __name__ == "__main__":
    sys.exit(_standalone())
