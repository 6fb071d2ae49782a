"""The typed stub of the Cython wrapper (fastrnn/_kernels.pyi) matches the built module:
mypy's stubtest compares every name and function signature (STYLE: kept true by
stubtest). Runs against the fastrnn the tests import, installed or in place."""

from __future__ import annotations

import os
import subprocess
import sys

from _util import need

import fastrnn

HERE = os.path.dirname(os.path.abspath(__file__))


def test_kernels_stub_matches_the_module(tmp_path):
    need("mypy")
    home = os.path.dirname(os.path.dirname(os.path.abspath(fastrnn.__file__)))
    env = dict(os.environ)
    if os.path.basename(home) not in ("site-packages", "dist-packages"):
        # a source tree: point mypy (and the import) there; an installed fastrnn is
        # found by mypy as a typed package (py.typed), and must not be on MYPYPATH
        env["MYPYPATH"] = home
        env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastrnn._kernels",
         "--mypy-config-file", os.path.join(HERE, "stubtest.ini"),
         "--allowlist", os.path.join(HERE, "stubtest-allowlist.txt")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
