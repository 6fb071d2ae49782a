#!/usr/bin/env bash
# Run the tests that drive the C engine against an AddressSanitizer +
# UndefinedBehaviorSanitizer build of it.
#
# A copy of the source tree is built in place with FASTRNN_SANITIZE=1 (setup.py
# then compiles and links with -fsanitize=address,undefined
# -fno-omit-frame-pointer -fno-sanitize-recover=all, at -O1 -g) with the
# interpreter of a fresh virtualenv, and put first on PYTHONPATH; the script
# checks that this sanitized copy is the fastrnn the tests import. Python is
# not instrumented, so the sanitizer runtimes of the same compiler are
# LD_PRELOADed. Any report -- out-of-bounds access, use after free, misaligned
# load, signed overflow -- ends the process and fails the run.
#
#   bash scripts/sanitize.sh                          # the default subset below
#   bash scripts/sanitize.sh tests/test_stream.py -x  # other pytest arguments
#
# Environment: PYTHON (base interpreter, default python3), CC (compiler, default
# gcc; its libasan/libubsan are preloaded), FASTRNN_SANITIZE_KEEP=1 keeps the
# work directory.
#
# The default subset (about 7 minutes on 2 cores with 2 pytest workers, build and the
# emulated AVX-512 path below included) is every test file that drives the C engine or
# its wrappers without needing torch: errors, streams, cells, hardening, activations,
# the property tests (which also run the C decoding loop of Seq2Seq/LanguageModel
# generation and Linear's kernels on random models, on every ISA path), runtime
# (threads, per-thread workspaces), and the kernels against the reference -- without
# test_kernels' `generic` cases (the scalar path runs ~10x slower under ASan: 11
# minutes for that file alone; its micro-kernels still run here through
# test_activations and test_properties), and with the several-chunk sequences on the
# best ISA only (the chunking is the same code on every path). On an x86-64 CPU with
# AVX2 but not AVX-512, the AVX-512 path is built on emulated intrinsics and is one of
# those paths (below). torch and the other peers are not installed (CI is unset):
# their tests skip here and run in the normal test job; so do the loader fuzzing, CLI
# and leak tests, which exercise Python code (and the leak test measures RSS, which
# ASan's allocator changes).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
cc="${CC:-gcc}"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastrnn-sanitize.XXXXXX")"
if [ "${FASTRNN_SANITIZE_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $work"
else
    trap 'rm -rf "$work"' EXIT
fi

asan="$("$cc" -print-file-name=libasan.so)"
ubsan="$("$cc" -print-file-name=libubsan.so)"
for lib in "$asan" "$ubsan"; do
    # -print-file-name prints the bare name when the compiler has no such file
    if [ ! -e "$lib" ]; then
        echo "sanitize.sh: $cc has no $(basename "$lib"); install its sanitizer runtimes" >&2
        exit 1
    fi
done

echo "== fresh virtualenv (numpy, Cython, pytest, hypothesis, threadpoolctl)"
"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "setuptools>=64" "Cython>=3.0" "numpy>=1.25" pytest \
    pytest-benchmark pytest-xdist hypothesis threadpoolctl

# On an x86-64 CPU without AVX-512 the AVX-512 engine is built on emulated
# intrinsics (setup.py: FASTRNN_EMULATE_AVX512=1), so that the tests that run every
# path run that one too, sanitized; FASTRNN_ISA keeps the CPU's own best path the
# default for the others.
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { for f in "$@"; do [[ "$flags" == *" $f "* ]] || return 1; done; }
build_env=(FASTRNN_SANITIZE=1)
emulate=0
if has avx2 fma && ! has avx512f avx512dq avx512bw avx512vl; then
    emulate=1
    build_env+=(FASTRNN_EMULATE_AVX512=1)
    export FASTRNN_ISA="${FASTRNN_ISA:-avx2}"
fi

echo "== sanitized build (${build_env[*]}, $cc)"
mkdir "$work/src"
cp -R "$repo/setup.py" "$repo/pyproject.toml" "$repo/README.md" "$repo/fastrnn" \
    "$repo/csrc" "$work/src/"
# nothing built by a normal build may come along
find "$work/src" \( -name '*.so' -o -name '*.o' -o -name '__pycache__' \) -prune \
    -exec rm -rf {} +
rm -f "$work/src/fastrnn/_kernels.c"
(cd "$work/src" && env "${build_env[@]}" CC="$cc" "$py" setup.py build_ext --inplace \
    >"$work/build.log" 2>&1) || { tail -n 40 "$work/build.log"; exit 1; }
so="$(ls "$work"/src/fastrnn/_kernels*.so)"
nm -D --undefined-only "$so" >"$work/symbols.txt"
if ! grep -q '__asan_init' "$work/symbols.txt"; then
    echo "sanitize.sh: $so is not instrumented (no __asan_init)" >&2
    exit 1
fi

export PYTHONPATH="$work/src"
export LD_PRELOAD="$asan $ubsan"
# detect_leaks=0: CPython keeps interned objects and arenas until exit by design.
# allocator_may_return_null=1: an impossible allocation fails as malloc does (and
# is reported as MemoryError) instead of ending the process.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1"
unset CI

cd "$work"
"$py" - "$work/src" "$emulate" <<'EOF'
import sys
import fastrnn
assert fastrnn.__file__.startswith(sys.argv[1]), f"imported {fastrnn.__file__}, not the sanitized copy"
assert sys.argv[2] == "0" or "avx512" in fastrnn.config()["isa_available"], \
    "the emulated AVX-512 path was asked for but the build does not offer it"
fastrnn.show_config()
EOF
best="$("$py" -c 'import fastrnn; print(fastrnn.config()["isa"])')"

echo "== canary: a deliberate heap overflow in the engine must be reported"
# frn_activation writes n results to y; give it room for n - 1 (malloc'd, so
# ASan has a redzone right after it).
canary='
import ctypes, glob, sys
lib = ctypes.CDLL(glob.glob(sys.argv[1] + "/fastrnn/_kernels*.so")[0])
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
n = 1000
x = libc.malloc(4 * n); y = libc.malloc(4 * (n - 1))
ctypes.memset(x, 0, 4 * n)
lib.frn_activation(0, 0, 1, ctypes.c_void_p(x), ctypes.c_void_p(y), ctypes.c_size_t(n))
print("canary not caught")
'
# (in a subshell whose stderr is dropped, and which cannot exec python in its place
# -- the `exit` after it -- so that the subshell, not this script, reports the abort
# it expects)
if ("$py" -c "$canary" "$work/src" >"$work/canary.log" 2>&1; exit $?) 2>/dev/null \
        || ! grep -q 'heap-buffer-overflow' "$work/canary.log"; then
    cat "$work/canary.log"
    echo "sanitize.sh: the canary overflow was not reported; the sanitizer is not active" >&2
    exit 1
fi
echo "caught: $(grep -m1 'ERROR: AddressSanitizer' "$work/canary.log")"

# pytest-xdist workers, as in test.sh
workers=(-n auto --maxprocesses 4)
[ -z "${FASTRNN_TEST_JOBS:-}" ] || workers=(-n "$FASTRNN_TEST_JOBS")
echo "== tests under ASan + UBSan (pytest-xdist: ${workers[*]})"
if [ $# -eq 0 ]; then
    if [ "$best" = generic ]; then  # no vector path here: the generic one is all there is
        select="not (test_kernels and long_sequences)"
    else
        select="not (test_kernels and (generic or (long_sequences and not $best)))"
    fi
    set -- "$repo/tests/test_errors.py" "$repo/tests/test_stream.py" \
        "$repo/tests/test_cells.py" "$repo/tests/test_hardening.py" \
        "$repo/tests/test_activations.py" "$repo/tests/test_properties.py" \
        "$repo/tests/test_runtime.py" "$repo/tests/test_kernels.py" -k "$select"
fi
# --capture=sys: a sanitizer report goes to file descriptor 2, which pytest's
# default capture would swallow along with the process it ends.
"$py" -m pytest -p no:cacheprovider -q --capture=sys "${workers[@]}" "$@"
