#!/usr/bin/env bash
# Install fastrnn the way a user does and run its tests.
#
# A fresh virtualenv; fastrnn built from its sdist (so a file missing from the
# sdist fails here), with the test extras and the PyTorch parity oracle; then the
# test suite, run from outside the source tree against the installed package.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k stream  # extra arguments go to pytest
# The tests run in parallel processes (pytest-xdist): one per CPU, at most 4;
# FASTRNN_TEST_JOBS sets the number (0: in this process, one test at a time).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "== fresh virtualenv"
"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip build

echo "== build the sdist, then install it with the test extras"
"$py" -m build --sdist --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log"; exit 1; }
sdist="$(ls "$work"/dist/fastrnn-*.tar.gz)"
# torch is pinned: the CPU wheel of this version is what the parity tests use
"$py" -m pip install --quiet "torch==2.13.0"
"$py" -m pip install --quiet "${sdist}[test]"

cd "$work"
"$py" -c "import fastrnn; fastrnn.show_config()"
# pytest-xdist workers: one per CPU, at most 4, or FASTRNN_TEST_JOBS (0: none)
workers=(-n auto --maxprocesses 4)
[ -z "${FASTRNN_TEST_JOBS:-}" ] || workers=(-n "$FASTRNN_TEST_JOBS")
echo "== tests (pytest-xdist: ${workers[*]})"
"$py" -m pytest "$repo/tests" -p no:cacheprovider -q "${workers[@]}" "$@"
