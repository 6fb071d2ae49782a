"""Build of the fastrnn extension: Cython wrapper + C engine with OpenMP.

Only csrc/isa/step_<isa>.c get instruction-set flags (ISA_FLAGS below, the one
place that maps files to flags); everything else is built for the baseline
target, and the CPU's best kernels are picked at run time (csrc/dispatch.c).
Nothing is tuned for the build machine: a wheel built here runs on any x86-64, and on other
architectures only the portable C engine is built.

FASTRNN_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer.
FASTRNN_EMULATE_AVX512=1 builds the AVX-512 engine on emulated intrinsics
(csrc/simd/emu_avx512.h) for AVX2 + FMA, so that a machine without AVX-512 can
test that path; such a build is slow on that path and is never a release.
"""

import os
import platform
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

ISA_FLAGS = {
    "step_avx2.c": ["-mavx2", "-mfma", "-mf16c"],
    "step_avx512.c": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma",
                      "-mf16c", "-mprefer-vector-width=512"],
}

# The C engine (csrc/, not the Cython module) undoes Python's -fwrapv: signed
# overflow is never meant there (UBSan checks it, scripts/sanitize.sh), and without
# the flag GCC keeps loop indices in wide registers. Zen 3 (AVX2), 1 thread, 3 x
# 200 alternated calls: batch 64 LSTM H=128 / 512 1.04x / 1.04x faster, GRU H=256
# 1.05x; batch 1 GRU H=128 1.04x, LSTM H=512 1.04x; LSTM H=64 and streams level.
ENGINE_FLAGS = ["-fno-wrapv"]

SANITIZE = os.environ.get("FASTRNN_SANITIZE", "") not in ("", "0")
EMULATE_AVX512 = os.environ.get("FASTRNN_EMULATE_AVX512", "") not in ("", "0")


class BuildExt(build_ext):
    """Adds each ISA file's flags to that file's compile only, the engine's flags to
    csrc/'s files, and OpenMP."""

    def build_extensions(self):
        compiler = self.compiler
        original = compiler._compile

        def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
            extra = list(extra_postargs) + ISA_FLAGS.get(Path(src).name, [])
            if Path(src).parts[0] == "csrc":
                extra += ENGINE_FLAGS
            return original(obj, src, ext, cc_args, extra, pp_opts)

        compiler._compile = _compile
        super().build_extensions()


sources = [
    "fastrnn/_kernels.pyx",
    "csrc/dispatch.c",
    "csrc/layers/pack.c",
    "csrc/isa/step_generic.c",
] + sorted(str(p) for p in Path("csrc/models").glob("*.c"))
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if X86:
    sources += ["csrc/isa/step_avx2.c", "csrc/isa/step_avx512.c"]
    macros.append(("FRN_HAVE_X86", "1"))
    if EMULATE_AVX512:
        # -Wno-psabi: 64-byte vectors passed by value between the file's own static
        # functions, without AVX-512's registers (an ABI note that cannot matter there)
        ISA_FLAGS["step_avx512.c"] = ISA_FLAGS["step_avx2.c"] + ["-Wno-psabi"]
        macros.append(("FRN_EMULATE_AVX512", "1"))

cflags = ["-O3", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unused-function", "-std=gnu11"]
ldflags = ["-fopenmp"]
if SANITIZE:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    cflags = [f for f in cflags if f != "-O3"] + ["-O1", "-g"] + san
    ldflags += san
if sys.platform == "darwin":  # Apple clang: OpenMP through libomp, if present
    cflags = [f for f in cflags if f != "-fopenmp"] + ["-Xpreprocessor", "-fopenmp"]
    ldflags = [f for f in ldflags if f != "-fopenmp"] + ["-lomp"]

ext = Extension(
    "fastrnn._kernels",
    sources=sources,
    include_dirs=["csrc", np.get_include()],
    depends=sorted(str(p) for p in Path("csrc").rglob("*.h")) + ["fastrnn/_models.pxi"],
    define_macros=macros,
    extra_compile_args=cflags,
    extra_link_args=ldflags,
)

setup(
    ext_modules=cythonize([ext], compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)
