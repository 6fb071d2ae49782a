"""Typed stub of the Cython wrapper fastrnn._kernels (fastrnn/_kernels.pyx).

Thin bindings of csrc/fastrnn.h: no math and no checks beyond what the signatures
say. The Python layer (fastrnn/_validate.py) has already checked every shape,
dtype and index and made every array C-contiguous of the plan's dtype. Shapes are
in the comments: T steps, B batch, I input, H hidden, P = proj_size or H
(H_out), D directions, L layers, G gates.

Kept true by ``python -m mypy.stubtest fastrnn._kernels``.
"""

from typing import Any, Optional

from numpy.typing import NDArray

_Array = NDArray[Any]

ATTN_CODES: dict[Optional[str], int]

class Plan:
    """Weights of a network packed for one ISA and dtype (C frn_plan)."""

    @property
    def isa(self) -> int: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def num_dirs(self) -> int: ...
    def __new__(
        cls,
        cell: int,  # FRN_RNN_TANH 0, FRN_RNN_RELU 1, FRN_LSTM 2, FRN_GRU 3
        double: bool,
        num_layers: int,
        num_dirs: int,
        input_size: int,
        hidden_size: int,
        proj_size: int,
        has_bias: bool,
        peephole: bool,
        linear_before_reset: bool,
        # L*D tuples (w_ih (G*H, K_in), w_hh (G*H, P), b_ih (G*H,) | None,
        #             b_hh (G*H,) | None, w_hr (P, H) | None, peephole (3, H) | None)
        weights: list[Any],
    ) -> Plan: ...
    @property
    def nbytes(self) -> int: ...
    # x (T, B, I), (B, T, I) when batch_first, or (T, I), exactly as the engine reads
    # it; h0 (L*D, B, P), c0 (L*D, B, H) (no B for 2-D x), lengths int64 (B,) each
    # in [1, T], all as _validate leaves them. Returns (out, h_n, c_n | None), or
    # None (nothing run) for any other x.
    def run(
        self,
        x: Any,
        batch_first: bool,
        h0: Optional[_Array] = ...,
        c0: Optional[_Array] = ...,
        lengths: Optional[_Array] = ...,
    ) -> Optional[tuple[_Array, _Array, Optional[_Array]]]: ...

class Stream:
    """The carried state of a unidirectional network stepping B sequences."""

    @property
    def plan(self) -> Plan: ...
    def __new__(cls, plan: Plan, batch: int, input_size: int, h_out: int,
                double: bool) -> Stream: ...
    # x (B, I) or (I,) for B = 1; out (B, P) or (P,), or None to allocate it.
    # Returns out, or None (nothing stepped) when x or out is not of that form;
    # n_threads <= 0 (the default): the calling thread's max_threads().
    def step(self, x: Any, out: Any, n_threads: int = ...) -> Optional[_Array]: ...
    # A one-layer cell's step from h (and c, LSTM), None: zeros; x, h and c as
    # step's x and out. Returns (h', c' or None), or None (nothing stepped) when an
    # argument is not of that form or the stream is busy.
    def cell(self, x: Any, h: Any, c: Any) -> Optional[tuple[_Array, Optional[_Array]]]: ...
    def get_state(self, h: _Array, c: Optional[_Array]) -> None: ...  # h (L, B, P), c (L, B, H)
    def retire(self, h: Optional[_Array] = None, c: Optional[_Array] = None) -> None: ...
    def set_state(self, h: _Array, c: Optional[_Array]) -> None: ...
    def reorder(self, idx: _Array) -> None: ...  # int32 (B,), each in [0, B)

class StreamFront:
    """The base of fastrnn.stream.Stream: its step, whose common case runs here."""

    _layer: Any
    _plan: Any
    _c: Stream
    # x (B, I) or (I,) for B = 1; out (B, P) or (P,) or None; anything the engine
    # does not take as it is goes to the subclass's _step_checked(x, out)
    def step(self, x: Any, out: Any = None) -> _Array: ...

class Linear:
    """A dense layer y = x W^T + b packed for the micro-kernels (C frn_linear)."""

    @property
    def isa(self) -> int: ...
    def __new__(cls, w: _Array, bias: Optional[_Array]) -> Linear: ...  # w (N, K), bias (N,)
    def apply(self, x: _Array, y: _Array, n_threads: int) -> None: ...  # x (M, K) -> y (M, N)

def cpu_isa() -> int: ...
def isa_compiled(isa: int) -> bool: ...
def get_isa() -> int: ...
def _set_isa(isa: int) -> None: ...
def _set_procs(n: int) -> None: ...
def _useful_threads(step_fma: float, region_fma: float, nt: int, probe: bool = ...) -> int: ...
def _probe_cores() -> float: ...
def _set_far(far: int) -> None: ...
def _spread_pays(fma: float) -> bool: ...
def _split_uneven(B: int, groups: int) -> bool: ...
def _set_batch_split(mode: int) -> None: ...
def _set_weave(mode: int) -> None: ...
def _weaves() -> bool: ...
def _set_prefetch_next(mode: int) -> None: ...
def _prefetches_next() -> bool: ...
def _set_helper_lag(ns: int) -> None: ...
def _set_stream_phase0(k: int) -> None: ...
def isa_name(isa: int) -> str: ...
def activation(isa: int, kind: int, x: _Array, y: _Array) -> None: ...  # kind 0 σ, 1 tanh, 2 exp
def gemm_test(isa: int, a: _Array, b_t: _Array, bias: Optional[_Array], c: _Array,
              n_threads: int) -> None: ...  # c (M, N) = a (M, K) @ b_t (N, K).T + bias
def core_roundtrip_ns(iters: int) -> float: ...
def openmp_enabled() -> bool: ...
def max_threads() -> int: ...
def set_max_threads(n: int) -> None: ...
def compiler() -> str: ...
def decode(
    rnn: Plan,
    L: int,
    E: int,
    HO: int,
    H: int,
    lstm: bool,
    h0: Optional[_Array],  # (L, B, HO)
    c0: Optional[_Array],  # (L, B, H)
    first: _Array,  # int64 (B,)
    emb: _Array,  # (V, E)
    out: Linear,
    V: int,
    attn: Optional[str],
    keys: Optional[_Array],  # (B, S, K)
    key_len: Optional[_Array],  # int64 (B,)
    wa: Optional[Linear],
    ua: Optional[Linear],
    va: Optional[_Array],
    va_bias: float,
    beam: int,
    max_len: int,
    eos: int,
    length_penalty: float,
    temperature: float,
    seed: int,
    tokens: _Array,  # int64 (B, max_len)
    logp: _Array,  # (B, max_len)
    lengths: _Array,  # int64 (B,)
    n_threads: int,
) -> None: ...
