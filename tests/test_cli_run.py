"""``fastrnn run MODEL --input X.npy --output Y.npy ...`` end to end."""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle

import numpy as np
import pytest
from _io_helpers import need, run_python

need("fastrnn.layers")

from fastrnn import _cli_run  # noqa: E402

T, B, I = 6, 3, 4

ENTRIES = ["fastrnn", "fastrnn._cli_run"]


def cli(entry, *args):
    """Run ``python -m <entry> run ...``; the package entry must exist under CI."""
    if entry == "fastrnn" and importlib.util.find_spec("fastrnn.__main__") is None:
        if os.environ.get("CI"):
            raise AssertionError("fastrnn/__main__.py is missing: `python -m fastrnn` fails")
        pytest.skip("fastrnn/__main__.py does not exist yet")
    return run_python(f"import runpy, sys; sys.argv[0] = {entry!r}; "
                      f"runpy.run_module({entry!r}, run_name='__main__')",
                      "run", *map(str, args))


def assert_one_line_error(proc):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    torch = need("torch")
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, 5, num_layers=2, bidirectional=True).eval()
    torch.save(lstm, d / "lstm.pt")
    gru = torch.nn.GRU(I, 5, batch_first=True).eval()
    torch.save(gru.state_dict(), d / "gru_sd.pt")
    x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "lengths.npy", np.array([6, 2, 4], np.int64))
    with torch.no_grad():
        out, (h, c) = lstm(torch.from_numpy(x))
        out_g, h_g = gru(torch.from_numpy(x.transpose(1, 0, 2).copy()))
    return dict(dir=d, x=x, lstm=(out.numpy(), h.numpy(), c.numpy()),
                gru=(out_g.numpy(), h_g.numpy()), lstm_module=lstm)


@pytest.mark.parametrize("entry", ENTRIES)
def test_run_lstm_pt(files, entry, tmp_path):
    d = files["dir"]
    proc = cli(entry, d / "lstm.pt", "--input", d / "x.npy", "--output", tmp_path / "y.npy",
               "--state-out", tmp_path / "s.npz")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out, h, c = files["lstm"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), out, rtol=1e-5, atol=2e-6)
    with np.load(tmp_path / "s.npz") as s:
        assert sorted(s.files) == ["c_n", "h_n"]
        np.testing.assert_allclose(s["h_n"], h, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(s["c_n"], c, rtol=1e-5, atol=2e-6)


def test_run_batch_first_and_lengths(files, tmp_path):
    import fastrnn.io

    d = files["dir"]
    xb = np.ascontiguousarray(files["x"].transpose(1, 0, 2))
    np.save(tmp_path / "xb.npy", xb)
    proc = cli("fastrnn._cli_run", d / "gru_sd.pt", "--input", tmp_path / "xb.npy",
               "--output", tmp_path / "y.npy", "--batch-first", "--state-out", tmp_path / "s.npz")
    assert proc.returncode == 0, proc.stderr
    out, h = files["gru"]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), out, rtol=1e-5, atol=2e-6)
    with np.load(tmp_path / "s.npz") as s:
        assert s.files == ["h_n"]
        np.testing.assert_allclose(s["h_n"], h, rtol=1e-5, atol=2e-6)
    # --lengths, through main() directly; the same as calling the layer.
    args = argparse.Namespace(model=str(d / "lstm.pt"), input=str(d / "x.npy"),
                              output=str(tmp_path / "yl.npy"), lengths=str(d / "lengths.npy"),
                              batch_first=False, state_out=None)
    assert _cli_run.main(args) == 0
    layer = fastrnn.io.load(d / "lstm.pt")
    want, _ = layer(files["x"], lengths=np.array([6, 2, 4]))
    np.testing.assert_array_equal(np.load(tmp_path / "yl.npy"), want)
    assert np.all(np.load(tmp_path / "yl.npy")[2:, 1] == 0)


def test_output_path_is_exact(files, tmp_path):
    """np.save would append .npy; the path given is the path written."""
    d = files["dir"]
    args = argparse.Namespace(model=str(d / "lstm.pt"), input=str(d / "x.npy"),
                              output=str(tmp_path / "out.bin"), lengths=None,
                              batch_first=False, state_out=str(tmp_path / "states.data"))
    assert _cli_run.main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "states.data"]


def _run_args(tmp_path, model, **kw):
    kw = {"input": str(tmp_path / "x.npy"), "output": str(tmp_path / "y.npy"), "lengths": None,
          "batch_first": False, "state_out": None, **kw}
    return argparse.Namespace(model=str(model), **kw)


@pytest.mark.parametrize("T_", [2, 5])  # T=2: a (2, ...) output once unpacked as (out, state)
def test_run_whole_models(tmp_path, capsys, T_):
    """Files of fastrnn.save_model: Y holds the model's whole output."""
    import fastrnn

    seq = fastrnn.Sequential(fastrnn.LSTM(3, 4, seed=0), fastrnn.Linear(4, 2, seed=1))
    seq.save(tmp_path / "seq.npz")
    x = np.random.default_rng(0).standard_normal((T_, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert _cli_run.main(_run_args(tmp_path, tmp_path / "seq.npz")) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), seq(x))
    np.save(tmp_path / "len.npy", np.array([T_, 1, 2]))
    args = _run_args(tmp_path, tmp_path / "seq.npz", lengths=str(tmp_path / "len.npy"))
    assert _cli_run.main(args) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), seq(x, lengths=[T_, 1, 2]))
    # a language model: token ids in, logits out
    lm = fastrnn.LanguageModel(fastrnn.Sequential(
        fastrnn.Embedding(7, 3, seed=0), fastrnn.GRU(3, 4, batch_first=True, seed=1),
        fastrnn.Linear(4, 7, seed=2)))
    fastrnn.save_model(lm, tmp_path / "lm.npz")
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    np.save(tmp_path / "x.npy", ids)
    assert _cli_run.main(_run_args(tmp_path, tmp_path / "lm.npz")) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), lm(ids))
    # no state to save; and a Seq2Seq takes two sequences
    capsys.readouterr()
    args = _run_args(tmp_path, tmp_path / "lm.npz", state_out=str(tmp_path / "s.npz"))
    assert _cli_run.main(args) != 0
    assert "--state-out does not apply" in capsys.readouterr().err
    assert not (tmp_path / "s.npz").exists()
    s2s = fastrnn.Seq2Seq(
        fastrnn.Sequential(fastrnn.Embedding(7, 3, seed=0), fastrnn.GRU(3, 4, batch_first=True)),
        fastrnn.Sequential(fastrnn.Embedding(7, 3, seed=1), fastrnn.GRU(3, 4, batch_first=True),
                           fastrnn.Linear(4, 7)))
    fastrnn.save_model(s2s, tmp_path / "s2s.npz")
    assert _cli_run.main(_run_args(tmp_path, tmp_path / "s2s.npz")) != 0
    assert "takes a source and a target" in capsys.readouterr().err


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_files_one_line(files, entry, tmp_path):
    d = files["dir"]
    y = tmp_path / "y.npy"
    (tmp_path / "junk.pt").write_bytes(b"garbage" * 10)
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Evil(), 2))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "wrong.npy", np.zeros((T, B, I + 1), np.float32))
    np.save(tmp_path / "badlen.npy", np.array([7, 1, 1]))
    np.save(tmp_path / "strs.npy", np.array(["a", "b"]))
    cases = [
        ((tmp_path / "missing.pt", "--input", d / "x.npy", "--output", y), "missing.pt"),
        ((tmp_path / "junk.pt", "--input", d / "x.npy", "--output", y), "junk.pt"),
        ((tmp_path / "evil.pt", "--input", d / "x.npy", "--output", y), "refused to load global"),
        ((d / "lstm.pt", "--input", tmp_path / "nope.npy", "--output", y), "--input"),
        ((d / "lstm.pt", "--input", tmp_path / "obj.npy", "--output", y), "pickled"),
        ((d / "lstm.pt", "--input", tmp_path / "wrong.npy", "--output", y), ""),
        ((d / "lstm.pt", "--input", tmp_path / "strs.npy", "--output", y), ""),
        ((d / "lstm.pt", "--input", d / "x.npy", "--output", y, "--lengths",
          tmp_path / "badlen.npy"), "length"),
        ((d / "lstm.pt", "--input", d / "x.npy", "--output", tmp_path / "no" / "dir" / "y.npy"),
         "--output"),
        ((d / "lstm.pt", "--output", y), "--input"),  # argparse: required option
        ((d / "lstm.pt", "--input", d / "x.npy", "--output", y, "--bogus"), "--bogus"),
    ]
    for args, needle in cases:
        proc = cli(entry, *args)
        line = assert_one_line_error(proc)
        assert needle in line, (args, line)
        assert "pwned" not in proc.stdout
    assert not y.exists()


def test_main_returns_nonzero_without_raising(tmp_path, capsys):
    args = argparse.Namespace(model=str(tmp_path / "none.onnx"), input="x.npy",
                              output="y.npy", lengths=None, batch_first=False, state_out=None)
    assert _cli_run.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastrnn run: error:") and err.count("\n") == 1


def test_add_parser():
    parser = argparse.ArgumentParser(prog="fastrnn")
    sub = parser.add_subparsers(dest="command")
    _cli_run.add_parser(sub)
    args = parser.parse_args(["run", "m.pt", "--input", "x.npy", "--output", "y.npy",
                              "--batch-first"])
    assert args.func is _cli_run.main and args.batch_first is True
    assert args.lengths is None and args.state_out is None


def test_no_command_is_one_line(capsys):
    """`fastrnn` alone is a bad argument (SPEC §6): one line naming the commands,
    exit status 2 (it once printed the whole help)."""
    from fastrnn import cli

    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fastrnn: error: a command is required: bench, info, run or generate")
