"""The char-LM example: the bundled model, `fastrnn generate`, the generation bench
and the training script (a few steps)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from _util import need, one_engine_thread  # noqa: F401 (autouse)
from fastrnn import _bench_generate, _cli_generate
from fastrnn.cli import main as cli_main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "charlm"


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli_main(["generate", *argv])
        except SystemExit as exc:  # argparse errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_bundled_model():
    path = _cli_generate.BUNDLED_MODEL
    assert path.exists() and path.stat().st_size <= 2 * 1024 * 1024
    lm, vocab = _cli_generate.load_charlm()
    assert isinstance(lm, fastrnn.LanguageModel) and isinstance(lm.rnn, fastrnn.LSTM)
    assert lm.meta["kind"] == "charlm" and len(vocab) == lm.vocab_size
    assert lm.dtype == np.float32


def test_generate_cli_sampling_greedy_beam():
    code, out, err = _cli("--prompt", "LOVE, n.", "--max-len", "60", "--seed", "4")
    assert code == 0 and err == ""
    assert out.startswith("LOVE, n.") and len(out) == len("LOVE, n.") + 60 + 1
    assert _cli("--prompt", "LOVE, n.", "--max-len", "60", "--seed", "4")[1] == out
    lm, vocab = _cli_generate.load_charlm()
    ids = _cli_generate.encode("LOVE, n.", vocab)
    code, greedy, _ = _cli("--prompt", "LOVE, n.", "--max-len", "40", "--temperature", "0")
    want = _cli_generate.decode(lm.generate(ids, max_len=40)[0], vocab)
    assert code == 0 and greedy == "LOVE, n." + want + "\n"
    code, beam, _ = _cli("--prompt", "WAR, n.", "--max-len", "30", "--beam", "3", "--stop", "\\n")
    assert code == 0 and beam.startswith("WAR, n.")
    code, many, err = _cli("--max-len", "20", "--num", "3", "--seed", "1", "--stats")
    assert code == 0 and many.count("\n----\n") == 2 and "characters/s" in err


@pytest.mark.parametrize("argv,message", [
    (["--prompt", "caf\u00e9"], "does not know"),
    (["--beam", "2", "--temperature", "0.5"], "cannot sample"),
    (["--stop", "ab"], "one character"),
    (["--max-len", "0"], "max_len"),
    (["--num", "0"], "--num"),
    (["--prompt", ""], "empty"),
    (["no/such/model.npz"], "does not exist"),
])
def test_generate_cli_errors(argv, message):
    code, out, err = _cli(*argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("fastrnn generate: error:") and message in err


def test_generate_cli_refuses_other_models(tmp_path):
    seq = fastrnn.Sequential(fastrnn.Linear(2, 2))
    fastrnn.save_model(seq, tmp_path / "seq.npz")
    code, _, err = _cli(str(tmp_path / "seq.npz"))
    assert code == 1 and "not a LanguageModel" in err
    lm = fastrnn.LanguageModel(fastrnn.Sequential(fastrnn.Embedding(5, 2), fastrnn.GRU(2, 3),
                                                  fastrnn.Linear(3, 5)))
    lm.save(tmp_path / "novocab.npz")
    code, _, err = _cli(str(tmp_path / "novocab.npz"))
    assert code == 1 and "vocabulary" in err
    code, _, err = _cli("--bogus")
    assert code == 2 and err.count("\n") == 1


def test_example_module_entry_point():
    spec = importlib.util.spec_from_file_location("charlm_generate", EXAMPLE / "generate.py")
    if spec is None or not (EXAMPLE / "generate.py").exists():
        pytest.skip("examples/ is not beside the tests")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = io.StringIO()
    with redirect_stdout(out):
        assert mod.main(["--max-len", "10", "--seed", "2"]) == 0
    assert len(out.getvalue()) == 2 + 10 + 1


def test_generation_matches_torch():
    """Greedy tokens equal torch's loop's, and each token's log p its teacher-forced
    log_softmax (the bench's own checks, on a short run)."""
    need("torch")
    lm, vocab = _cli_generate.load_charlm()
    net = _bench_generate._torch_net(lm)
    prompt = _cli_generate.encode("FRIEND, n.", vocab)
    tokens, logp = lm.generate(prompt, max_len=60)
    ref = _bench_generate._torch_generate(net, prompt, 1, 60, "greedy")
    assert np.array_equal(tokens[None], ref)
    lp = _bench_generate._teacher_forced_logp(net, prompt, tokens[None])
    assert np.abs(lp - logp).max() < 1e-4
    beam, blp = lm.generate(prompt, max_len=30, beam_width=4)
    assert np.array_equal(beam[None], _bench_generate._torch_generate(net, prompt, 1, 30, "beam",
                                                                       beam=4))
    assert blp.sum() >= logp[:30].sum() - 1e-4


def test_bench_rows(monkeypatch):
    monkeypatch.setattr(_bench_generate, "_median_time",
                        lambda fn, repeats: (fn(), 1.0)[1])  # check only; do not time
    rows = _bench_generate.run(quick=True)
    engines = {r["engine"] for r in rows}
    assert "fastrnn" in engines
    for r in rows:
        assert {"case", "engine", "batch", "tokens", "seconds", "tokens_per_s", "check"} <= set(r)
        assert r["tokens"] > 0 and r["tokens_per_s"] > 0
        if r["engine"] == "fastrnn":
            assert not r["check"].startswith("FAILED"), r
    json.dumps(rows)


def test_training_script_runs(tmp_path):
    need("torch")
    if not (EXAMPLE / "train.py").exists():
        pytest.skip("examples/ is not beside the tests")
    spec = importlib.util.spec_from_file_location("charlm_train", EXAMPLE / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = tmp_path / "tiny.txt"
    text.write_text((EXAMPLE / "devils_dictionary.txt").read_text()[:5000])
    out = tmp_path / "lm.npz"
    buf = io.StringIO()
    with redirect_stdout(buf):
        mod.main(["--text", str(text), "--out", str(out), "--steps", "3", "--hidden", "16",
                  "--batch", "4", "--seq", "16", "--report", "1", "--threads", "1"])
    assert "step     3" in buf.getvalue()
    lm, vocab = _cli_generate.load_charlm(out)
    assert lm.rnn.hidden_size == 16 and lm.meta["train"]["steps"] == 3
    assert os.stat(out).st_mode & 0o044  # readable like any file the user writes


def test_corpus_and_provenance():
    readme = EXAMPLE / "README.md"
    if not readme.exists():
        pytest.skip("examples/ is not beside the tests")
    text = (EXAMPLE / "devils_dictionary.txt").read_text(encoding="utf-8")
    assert "A Public Domain Text, Copyright Expired" in text
    assert len(text.encode()) < 400_000 and text.isascii()
    notes = readme.read_text()
    assert "dict-devil" in notes and "public domain" in notes.lower()
