# Cython declarations and wrappers for csrc/models/ (whole-model helpers: the
# decoding loop of encoder-decoder generation). Included at the end of
# _kernels.pyx so the C code lives in the one extension module.
