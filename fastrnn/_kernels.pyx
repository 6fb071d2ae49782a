# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
"""Thin wrapper over the C engine (csrc/fastrnn.h).

No math and no checks here: fastrnn/_validate.py and the layers have already
checked every shape, dtype and index and made every array C-contiguous of the
plan's dtype. Each function makes one C call with the GIL released. The two
per-call paths, Plan.run and Stream.step, only test whether their arrays are
exactly what the engine reads, and hand anything else back (None) to the checks.
Plan.run also checks the size of the h0, c0 and lengths it is given against the
call's shape, and the lengths' range, at the last moment: the layer checked them
against its batch_first before converting other arguments (which can run the
caller's code, or let another thread change the layer).
"""

cimport cython
from libc.limits cimport INT_MAX
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc

cimport numpy as cnp

cnp.import_array()


cdef extern from "fastrnn.h" nogil:
    enum:
        FRN_OK
        FRN_ENOMEM
        FRN_EINVAL
        FRN_EISA
        FRN_F32
        FRN_F64
        FRN_LSTM

    ctypedef struct frn_desc:
        int cell
        int dtype
        int num_layers
        int num_dirs
        int input_size
        int hidden_size
        int proj_size
        int has_bias
        int peephole
        int linear_before_reset

    ctypedef struct frn_weights:
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *w_hr
        const void *peephole

    ctypedef struct frn_plan:
        pass

    ctypedef struct frn_seq:
        int T
        int B
        const void *x
        Py_ssize_t x_st
        Py_ssize_t x_sb
        const int64_t *lengths
        const void *h0
        const void *c0
        void *out
        Py_ssize_t out_st
        Py_ssize_t out_sb
        void *hn
        void *cn

    ctypedef struct frn_stream:
        pass

    int frn_cpu_isa()
    int frn_isa_compiled(int isa)
    int frn_get_isa()
    int frn_set_isa(int isa)
    const char *frn_isa_name(int isa)
    int frn_plan_create(const frn_desc *desc, const frn_weights *weights, frn_plan **out)
    void frn_plan_free(frn_plan *plan)
    int frn_plan_isa(const frn_plan *plan)
    size_t frn_plan_bytes(const frn_plan *plan)
    int frn_forward(const frn_plan *plan, const frn_seq *seq, int n_threads)
    int frn_stream_create(const frn_plan *plan, int B, frn_stream **out)
    void frn_stream_free(frn_stream *s)
    int frn_stream_step(frn_stream *s, const void *x, void *out, int n_threads)
    int frn_stream_state(frn_stream *s, void *h, void *c, int set)
    int frn_stream_cell(frn_stream *s, const void *x, const void *h, const void *c, void *out,
                        void *cout, int n_threads)
    int frn_stream_reorder(frn_stream *s, const int32_t *idx)
    ctypedef struct frn_linear:
        pass
    int frn_linear_create(int dtype, int N, int K, const void *w, const void *bias, frn_linear **out)
    void frn_linear_free(frn_linear *lin)
    int frn_linear_apply(const frn_linear *lin, int M, const void *x, void *y, int n_threads)
    int frn_activation(int isa, int dtype, int kind, const void *x, void *y, size_t n)
    int frn_gemm_test(int isa, int dtype, int M, int N, int K, const void *a, const void *b_t,
                      const void *bias, void *c, int n_threads)
    double frn_core_roundtrip_ns(int iters)
    int frn_useful_threads(double step_fma, double region_fma, int nt, int probe)
    double frn_probe_cores()
    void frn_set_far(int far)
    int frn_spread_pays(double fma)
    int frn_split_uneven(int B, int groups)
    void frn_set_helper_lag(int ns)
    void frn_set_stream_phase0(uint64_t k)
    void frn_set_batch_split(int mode)
    void frn_set_weave(int mode)
    int frn_weave_pays()
    void frn_set_prefetch_next(int mode)
    int frn_prefetch_next_pays()
    int frn_openmp_enabled()
    int frn_max_threads()
    unsigned frn_forks()
    void frn_set_procs(int n)
    void frn_set_max_threads(int n)
    const char *frn_compiler()


cdef inline void *_ptr(object a) except? NULL:
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _arg(object a, str name, int typenum, cnp.npy_intp n) except -1:
    """a is None or a C-contiguous aligned ndarray of typenum and n elements."""
    if a is None:
        return 0
    if not cnp.PyArray_CheckExact(a) or cnp.PyArray_TYPE(<cnp.ndarray>a) != typenum \
            or not cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a) \
            or cnp.PyArray_SIZE(<cnp.ndarray>a) != n:
        raise ValueError(f"{name} no longer matches the call's shape ({n} elements); "
                         f"was the layer changed during the call?")
    return 0


cdef int _in_range(object a, str name, int64_t lo, int64_t hi) except -1:
    """Every value of the int64 array a (already checked by _arg) in [lo, hi)."""
    cdef const int64_t *p = <const int64_t *>cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef cnp.npy_intp i
    for i in range(cnp.PyArray_SIZE(<cnp.ndarray>a)):
        if p[i] < lo or p[i] >= hi:
            raise ValueError(f"{name}[{i}] is {p[i]}; it must be in [{lo}, {hi})")
    return 0


cdef int _check(int rc) except -1:
    if rc == FRN_OK:
        return 0
    if rc == FRN_ENOMEM:
        raise MemoryError("fastrnn: out of memory")
    if rc == FRN_EISA:
        raise ValueError("fastrnn: instruction set not available on this CPU or in this build")
    raise ValueError("fastrnn: the engine refused its arguments (status %d)" % rc)


cdef class Plan:
    """Weights of a network packed for one ISA and dtype (C frn_plan)."""

    cdef frn_plan *ptr
    cdef readonly int isa
    cdef readonly int num_layers
    cdef readonly int num_dirs
    cdef cnp.npy_intp in_size, hidden, h_out
    cdef int typenum
    cdef bint lstm

    def __cinit__(self, int cell, bint double, int num_layers, int num_dirs, int input_size,
                  int hidden_size, int proj_size, bint has_bias, bint peephole,
                  bint linear_before_reset, list weights):
        # weights: num_layers*num_dirs tuples (w_ih, w_hh, b_ih, b_hh, w_hr, peephole)
        cdef frn_desc d
        cdef int n = num_layers * num_dirs
        cdef int i, rc
        d.cell = cell
        d.dtype = FRN_F64 if double else FRN_F32
        d.num_layers = num_layers
        d.num_dirs = num_dirs
        d.input_size = input_size
        d.hidden_size = hidden_size
        d.proj_size = proj_size
        d.has_bias = has_bias
        d.peephole = peephole
        d.linear_before_reset = linear_before_reset
        cdef frn_weights *w = <frn_weights *>malloc(sizeof(frn_weights) * n)
        if w == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                t = weights[i]
                w[i].w_ih = _ptr(t[0])
                w[i].w_hh = _ptr(t[1])
                w[i].b_ih = _ptr(t[2])
                w[i].b_hh = _ptr(t[3])
                w[i].w_hr = _ptr(t[4])
                w[i].peephole = _ptr(t[5])
            with nogil:
                rc = frn_plan_create(&d, w, &self.ptr)
            _check(rc)
        finally:
            free(w)
        self.isa = frn_plan_isa(self.ptr)
        self.num_layers = num_layers
        self.num_dirs = num_dirs
        self.in_size = input_size
        self.hidden = hidden_size
        self.h_out = proj_size if proj_size > 0 else hidden_size
        self.typenum = cnp.NPY_FLOAT64 if double else cnp.NPY_FLOAT32
        self.lstm = cell == FRN_LSTM

    def __dealloc__(self):
        if self.ptr != NULL:
            frn_plan_free(self.ptr)
            self.ptr = NULL

    @property
    def nbytes(self):
        return frn_plan_bytes(self.ptr)

    def run(self, x, bint batch_first, h0=None, c0=None, lengths=None):
        """The whole-sequence call, when x is exactly what the engine reads: a plain
        ndarray of the plan's dtype, C-contiguous and aligned, (T, B, I) -- (B, T, I)
        when batch_first -- or (T, I), with T, B >= 1 and I the input size. h0, c0
        and lengths are None or as fastrnn/_validate.py leaves them (h0 (L*D, B,
        h_out), c0 (L*D, B, H), without the batch axis for 2-D x; lengths int64
        (B,)). Returns (out, h_n, c_n or None), the batch axis left out for 2-D x,
        out zero past each sequence's length; or None -- without running -- for any
        other x, so the caller can convert it or say what is wrong. Threads: the
        calling thread's setting. Called first on the caller's own x, this skips the
        general checks: a call ~1.6 us shorter (a batch-1 step of LSTM H=64 is
        ~0.9 us)."""
        if not cnp.PyArray_CheckExact(x):
            return None
        cdef cnp.ndarray a = <cnp.ndarray>x
        cdef int nd = cnp.PyArray_NDIM(a)
        if (nd != 2 and nd != 3) or cnp.PyArray_TYPE(a) != self.typenum \
                or not cnp.PyArray_ISCARRAY_RO(a):
            return None
        cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(a)
        cdef cnp.npy_intp T, B, feat = dims[nd - 1]
        if nd == 2:
            T, B = dims[0], 1
        elif batch_first:
            T, B = dims[1], dims[0]
        else:
            T, B = dims[0], dims[1]
        if feat != self.in_size or T < 1 or B < 1:
            return None
        if T > INT_MAX or B > INT_MAX:
            raise ValueError(f"x has {T} time steps and {B} sequences; the engine takes "
                             f"at most {INT_MAX} of each in one call")
        cdef cnp.npy_intp width = self.num_dirs * self.h_out
        cdef cnp.npy_intp sd[3]
        cdef int sn = self.num_layers * self.num_dirs
        cdef frn_seq q
        _arg(h0, "h0", self.typenum, sn * B * self.h_out)
        _arg(c0, "c0", self.typenum, sn * B * self.hidden)
        _arg(lengths, "lengths", cnp.NPY_INT64, B)
        if lengths is not None:
            _in_range(lengths, "lengths", 1, T + 1)
        q.T = <int>T
        q.B = <int>B
        q.x = cnp.PyArray_DATA(a)
        q.lengths = <const int64_t *>_ptr(lengths)
        q.h0 = _ptr(h0)
        q.c0 = _ptr(c0)
        if nd == 2:
            q.x_st, q.x_sb = feat, 0
            q.out_st, q.out_sb = width, 0
            sd[0], sd[1] = T, width
        elif batch_first:
            q.x_st, q.x_sb = feat, T * feat
            q.out_st, q.out_sb = width, T * width
            sd[0], sd[1], sd[2] = B, T, width
        else:
            q.x_st, q.x_sb = B * feat, feat
            q.out_st, q.out_sb = B * width, width
            sd[0], sd[1], sd[2] = T, B, width
        out = cnp.PyArray_EMPTY(nd, sd, self.typenum, 0) if lengths is None \
            else cnp.PyArray_ZEROS(nd, sd, self.typenum, 0)
        # h_n (L*D, B, h_out) and c_n (L*D, B, H); (L*D, h_out), (L*D, H) for 2-D x
        sd[0], sd[1], sd[2] = sn, B, self.h_out
        if nd == 2:
            sd[1] = self.h_out
        hn = cnp.PyArray_EMPTY(nd, sd, self.typenum, 0)
        cn = None
        if self.lstm:
            sd[nd - 1] = self.hidden
            cn = cnp.PyArray_EMPTY(nd, sd, self.typenum, 0)
        q.out = cnp.PyArray_DATA(<cnp.ndarray>out)
        q.hn = cnp.PyArray_DATA(<cnp.ndarray>hn)
        q.cn = _ptr(cn)
        cdef int rc
        with nogil:
            rc = frn_forward(self.ptr, &q, 0)
        _check(rc)
        return out, hn, cn


cdef inline bint _overlap(object a, object b):
    """Whether the memory of ndarrays a and b overlaps (both contiguous)."""
    cdef const char *pa = <const char *>cnp.PyArray_DATA(<cnp.ndarray>a)
    cdef const char *pb = <const char *>cnp.PyArray_DATA(<cnp.ndarray>b)
    return (pb < pa + cnp.PyArray_NBYTES(<cnp.ndarray>a) and
            pa < pb + cnp.PyArray_NBYTES(<cnp.ndarray>b))


@cython.final  # (no subclasses: its cdef methods are direct calls, inlined)
cdef class Stream:
    """The carried state of a unidirectional network stepping B sequences."""

    cdef frn_stream *ptr
    cdef readonly Plan plan
    cdef cnp.npy_intp out_dims[2]
    cdef cnp.npy_intp in_size
    cdef int typenum
    cdef bint busy  # a step is running (set and tested under the GIL)
    cdef unsigned busy_forks  # frn_forks() when busy was set

    def __cinit__(self, Plan plan, int batch, int input_size, int h_out, bint double):
        cdef int rc
        self.plan = plan
        self.out_dims[0] = batch
        self.out_dims[1] = h_out
        self.in_size = input_size
        self.typenum = cnp.NPY_FLOAT64 if double else cnp.NPY_FLOAT32
        with nogil:
            rc = frn_stream_create(plan.ptr, batch, &self.ptr)
        _check(rc)

    def __dealloc__(self):
        if self.ptr != NULL:
            frn_stream_free(self.ptr)
            self.ptr = NULL

    cdef bint _fits(self, object a, int ndim, cnp.npy_intp d1, bint write):
        """a is an ndarray of the plan's dtype, C-contiguous and aligned (writeable
        when asked), of shape (B, d1), or (d1,) when ndim is 1. This is what a
        typed memoryview in the signature would check, at a fraction of the cost
        of acquiring one on every step."""
        if not cnp.PyArray_Check(a):
            return False
        cdef cnp.ndarray arr = <cnp.ndarray>a
        if cnp.PyArray_TYPE(arr) != self.typenum or not cnp.PyArray_ISCARRAY_RO(arr):
            return False
        if write and not cnp.PyArray_ISWRITEABLE(arr):
            return False
        if cnp.PyArray_NDIM(arr) != ndim:
            return False
        cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
        if ndim == 1:
            return self.out_dims[0] == 1 and dims[0] == d1
        return dims[0] == self.out_dims[0] and dims[1] == d1

    def step(self, x, out, int n_threads=0):
        """One step, if x (and out, unless None) are exactly what the engine takes:
        C-contiguous arrays of the plan's dtype, x (B, I) or (I,) for B = 1, out of
        the matching shape (B, H_out) or (H_out,). Returns out (allocated when None),
        or None -- without stepping -- when an argument is not of that form, or when
        out overlaps x (the engine writes out while it still reads x), so the caller
        can convert it or say what is wrong. n_threads <= 0: the calling thread's
        setting (max_threads(), asked by the engine)."""
        return self._step(x, out, n_threads)

    cdef int _step_ndim(self, object x):
        """x's ndim (1 or 2) when it is a step input exactly as the engine reads it
        (_fits), else 0."""
        cdef int nd = cnp.PyArray_NDIM(<cnp.ndarray>x) if cnp.PyArray_Check(x) else 0
        if nd < 1 or nd > 2 or not self._fits(x, nd, self.in_size, False):
            return 0
        return nd

    cdef void _claim(self):
        """Mark the stream busy (under the GIL): a step is about to run, or the stream
        is retired."""
        self.busy = True
        self.busy_forks = frn_forks()

    cdef object _step(self, object x, object out, int n_threads):
        cdef int nd = self._step_ndim(x)
        if nd == 0:
            return None
        cdef const char *px = <const char *>cnp.PyArray_DATA(<cnp.ndarray>x)
        if out is None:
            out = cnp.PyArray_EMPTY(nd, &self.out_dims[2 - nd], self.typenum, 0)
        elif not self._fits(out, nd, self.out_dims[1], True) or _overlap(x, out):
            return None
        cdef char *po = <char *>cnp.PyArray_DATA(<cnp.ndarray>out)
        cdef int rc
        self._idle(False)
        self._claim()
        with nogil:
            rc = frn_stream_step(self.ptr, px, po, n_threads)
        self.busy = False
        if rc != FRN_OK:
            _check(rc)
        return out

    def cell(self, x, h, c):
        """One step of a one-layer cell from the state h (and c, for an LSTM plan), or
        zeros where None, if every array is exactly what the engine reads: x as for
        step; h and c of the output's shape, (B, H) or, with x (I,), (H,). Returns
        (h', c') -- new arrays, c' None unless LSTM -- or None, without stepping,
        when an argument is not of that form or another thread is stepping this
        stream: the caller then takes its general path."""
        cdef bint lstm = self.plan.lstm
        cdef int nd = self._step_ndim(x)
        if nd == 0 or self.busy or (lstm and (h is None) != (c is None)):
            return None
        if h is not None and not self._fits(h, nd, self.out_dims[1], False):
            return None
        if lstm and c is not None and not self._fits(c, nd, self.out_dims[1], False):
            return None
        cdef cnp.npy_intp *dims = &self.out_dims[2 - nd]
        cdef cnp.ndarray hn = cnp.PyArray_EMPTY(nd, dims, self.typenum, 0)
        cdef cnp.ndarray cn = cnp.PyArray_EMPTY(nd, dims, self.typenum, 0) if lstm else None
        cdef const void *px = cnp.PyArray_DATA(<cnp.ndarray>x)
        cdef const void *ph = NULL if h is None else cnp.PyArray_DATA(<cnp.ndarray>h)
        cdef const void *pc = NULL if c is None or not lstm else cnp.PyArray_DATA(<cnp.ndarray>c)
        cdef void *pho = cnp.PyArray_DATA(hn)
        cdef void *pco = NULL if cn is None else cnp.PyArray_DATA(cn)
        cdef int rc
        self._claim()
        with nogil:
            rc = frn_stream_cell(self.ptr, px, ph, pc, pho, pco, 0)
        self.busy = False
        if rc != FRN_OK:
            _check(rc)
        return hn, cn

    cdef int _idle(self, bint dropping) except -1:
        """One call at a time: a second Python thread stepping the same stream while
        a step runs without the GIL would publish steps to the same helper threads
        (the two spun forever), and its state would change under a reader. In a
        child of fork() whose parent had a thread mid-step here, that thread is
        gone and the state may be half-written: the stream can only be dropped
        (`dropping`: retired without its state, as reset does)."""
        if not self.busy:
            return 0
        if self.busy_forks != frn_forks():
            if dropping:
                return 0
            raise RuntimeError(
                "this stream was being stepped by another thread when the process forked, "
                "so its state may be half-written here: reset() it (or make a new stream)")
        raise RuntimeError(
            "this stream is being stepped in another thread: a stream carries one "
            "sequence's state, so step it from one thread at a time (or make a stream "
            "per thread)")

    def get_state(self, h, c):
        self._idle(False)
        frn_stream_state(self.ptr, _ptr(h), _ptr(c), 0)

    def retire(self, h=None, c=None):
        """Copy the state into h (and c) unless None, and take no step after: the
        Python stream replaces this one (new weights, or a reset), and a step another
        thread began here meanwhile would be lost, so it is refused as a step
        during a step is. Under the GIL, in one go."""
        self._idle(h is None)
        if h is not None:
            frn_stream_state(self.ptr, _ptr(h), _ptr(c), 0)
        self._claim()

    def set_state(self, h, c):
        self._idle(False)
        frn_stream_state(self.ptr, _ptr(h), _ptr(c), 1)

    def reorder(self, idx):
        """Row b of the state becomes row idx[b]; idx int32 (B,), each in [0, B)."""
        self._idle(False)
        frn_stream_reorder(self.ptr, <const int32_t *>_ptr(idx))


@cython.auto_pickle(False)
cdef class StreamFront:
    """The base of fastrnn.stream.Stream: its step, whose common case -- the layer's
    weights unchanged since the last step, x (and out) already what the engine
    reads -- runs here in one call from Python, without a Python frame (about a
    fifth of a small step's cost). Anything else goes to the subclass's
    _step_checked, which follows reloaded weights, converts and validates."""

    cdef public object _layer
    cdef public object _plan
    cdef public Stream _c

    def step(self, x, out=None):
        """Advance one time step; returns the step's output (or `out`, filled).

        `out` may be any writeable array of the step's output shape and the layer
        dtype; one that is not C-contiguous (e.g. ``Y[:, t]`` of a batch-first
        buffer) is filled through a copy. A refused call (wrong shape, dtype or
        `out`) raises before anything runs and does not advance the stream.
        """
        cdef object y
        if self._layer._plan is self._plan and self._c is not None:
            # on the calling thread's max_threads()
            y = self._c._step(x, out, 0)
            if y is not None:
                return y
        return self._step_checked(x, out)


cdef class Linear:
    """A dense layer y = x W^T + b packed for the micro-kernels (C frn_linear)."""

    cdef frn_linear *ptr
    cdef readonly int isa
    cdef int N, K, typenum

    def __cinit__(self, w, bias):
        # w (N, K) and bias (N,) or None: C-contiguous, float32 or float64 alike
        cdef int rc
        cdef int dt = FRN_F64 if w.dtype.itemsize == 8 else FRN_F32
        cdef int N = w.shape[0], K = w.shape[1]
        cdef const void *pw = _ptr(w)
        cdef const void *pb = _ptr(bias)
        self.typenum = cnp.NPY_FLOAT64 if dt == FRN_F64 else cnp.NPY_FLOAT32
        _arg(w, "w", self.typenum, <cnp.npy_intp>N * K)
        _arg(bias, "bias", self.typenum, N)
        with nogil:
            rc = frn_linear_create(dt, N, K, pw, pb, &self.ptr)
        _check(rc)
        self.isa = frn_get_isa()
        self.N, self.K = N, K

    def __dealloc__(self):
        if self.ptr != NULL:
            frn_linear_free(self.ptr)
            self.ptr = NULL

    def apply(self, x, y, int n_threads):
        """y (M, N) = x (M, K) W^T + b; both C-contiguous of the weights' dtype."""
        cdef int M = x.shape[0]
        _arg(x, "x", self.typenum, <cnp.npy_intp>M * self.K)
        _arg(y, "y", self.typenum, <cnp.npy_intp>M * self.N)
        if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>y):
            raise ValueError("y must be writeable")
        cdef const void *px = _ptr(x)
        cdef void *py = _ptr(y)
        cdef int rc
        with nogil:
            rc = frn_linear_apply(self.ptr, M, px, py, n_threads)
        _check(rc)


def cpu_isa():
    """Best ISA this CPU and this build support (0 generic, 1 avx2, 2 avx512)."""
    return frn_cpu_isa()


def isa_compiled(int isa):
    return bool(frn_isa_compiled(isa))


def get_isa():
    return frn_get_isa()


def _set_isa(int isa):
    """Private: the ISA new plans use (tests run every path in one process)."""
    _check(frn_set_isa(isa))


def isa_name(int isa):
    return frn_isa_name(isa).decode()


def activation(int isa, int kind, x, y):
    """Test hook: y = sigmoid (0), tanh (1) or exp (2) of x through an ISA's kernels.

    x, y: aligned C-contiguous arrays of one shape and one native dtype, float32
    or float64; y writeable. Anything else is refused before the C call.
    """
    if isa < 0 or isa > frn_cpu_isa() or not frn_isa_compiled(isa):
        raise ValueError(f"isa is {isa}; allowed: 0..{frn_cpu_isa()} on this CPU and build")
    if kind < 0 or kind > 2:
        raise ValueError(f"kind is {kind}; allowed: 0 (sigmoid), 1 (tanh), 2 (exp)")
    for name, arr in (("x", x), ("y", y)):
        if not isinstance(arr, cnp.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(arr).__name__}")
        if not arr.dtype.isnative or arr.dtype.num not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise TypeError(f"{name} has dtype {arr.dtype}; allowed: float32, float64")
        if not arr.flags.c_contiguous or not arr.flags.aligned:
            raise ValueError(f"{name} must be an aligned C-contiguous array")
    if y.dtype != x.dtype:
        raise TypeError(f"y has dtype {y.dtype}; it must be x's dtype {x.dtype}")
    if y.shape != x.shape:
        raise ValueError(f"y has shape {y.shape}; it must be x's shape {x.shape}")
    if not y.flags.writeable:
        raise ValueError("y must be writeable")
    cdef int dt = FRN_F64 if x.dtype.itemsize == 8 else FRN_F32
    cdef size_t n = x.size
    cdef const void *px = _ptr(x)
    cdef void *py = _ptr(y)
    cdef int rc
    with nogil:
        rc = frn_activation(isa, dt, kind, px, py, n)
    _check(rc)


def gemm_test(int isa, a, b_t, bias, c, int n_threads):
    """Test hook: c = a @ b_t.T + bias through an ISA's packed panels and tiles.

    a (M, K), b_t (N, K), bias (N,) or None, c (M, N) writeable, M, N, K >= 1:
    aligned C-contiguous arrays of one native dtype, float32 or float64.
    Anything else is refused before the C call.
    """
    if isa < 0 or isa > frn_cpu_isa() or not frn_isa_compiled(isa):
        raise ValueError(f"isa is {isa}; allowed: 0..{frn_cpu_isa()} on this CPU and build")
    arrays = (("a", a, 2), ("b_t", b_t, 2), ("c", c, 2)) + (
        () if bias is None else (("bias", bias, 1),))
    for name, arr, ndim in arrays:
        if not isinstance(arr, cnp.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(arr).__name__}")
        if not arr.dtype.isnative or arr.dtype.num not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64):
            raise TypeError(f"{name} has dtype {arr.dtype}; allowed: float32, float64")
        if arr.dtype != a.dtype:
            raise TypeError(f"{name} has dtype {arr.dtype}; it must be a's dtype {a.dtype}")
        if not arr.flags.c_contiguous or not arr.flags.aligned:
            raise ValueError(f"{name} must be an aligned C-contiguous array")
        if arr.ndim != ndim:
            raise ValueError(f"{name} has shape {arr.shape}; it must be {ndim}-D")
    if not c.flags.writeable:
        raise ValueError("c must be writeable")
    M, K, N = a.shape[0], a.shape[1], b_t.shape[0]
    if not (1 <= M <= 2**31 - 1 and 1 <= K <= 2**31 - 1 and 1 <= N <= 2**31 - 1):
        raise ValueError(f"a {a.shape} and b_t {b_t.shape}: M, N, K must be in [1, 2**31-1]")
    if b_t.shape[1] != K:
        raise ValueError(f"b_t has shape {b_t.shape}; it must be (N, K={K})")
    if c.shape != (M, N):
        raise ValueError(f"c has shape {c.shape}; it must be (M, N) = {(M, N)}")
    if bias is not None and bias.shape != (N,):
        raise ValueError(f"bias has shape {bias.shape}; it must be (N,) = ({N},)")
    if n_threads < 1:
        raise ValueError(f"n_threads is {n_threads}; it must be >= 1")
    cdef int dt = FRN_F64 if a.dtype.itemsize == 8 else FRN_F32
    cdef int iM = M, iN = N, iK = K
    cdef const void *pa = _ptr(a)
    cdef const void *pb = _ptr(b_t)
    cdef const void *pbias = _ptr(bias)
    cdef void *pc = _ptr(c)
    cdef int rc
    with nogil:
        rc = frn_gemm_test(isa, dt, iM, iN, iK, pa, pb, pbias, pc, n_threads)
    _check(rc)


def core_roundtrip_ns(int iters):
    """Bench hook: ns for one cache line to go from one OpenMP thread's CPU to
    another's and back (average over `iters` >= 1), or -1.0 without two threads."""
    if iters < 1:
        raise ValueError(f"iters is {iters}; it must be >= 1")
    cdef double ns
    with nogil:
        ns = frn_core_roundtrip_ns(iters)
    return ns


def openmp_enabled():
    return bool(frn_openmp_enabled())


def max_threads():
    return frn_max_threads()


def set_max_threads(int n):
    frn_set_max_threads(n)


def _set_procs(int n):
    """Private: processors calls may use, n < 1 for what OpenMP reports (tests run
    teams larger than this machine's cores)."""
    frn_set_procs(n)


def _useful_threads(double step_fma, double region_fma, int nt, bint probe=True):
    """Private: of nt threads, how many a call uses for `step_fma` multiply-adds
    between hand-overs in an OpenMP region of `region_fma` (0: none of its own)."""
    return frn_useful_threads(step_fma, region_fma, nt, probe)


def _probe_cores():
    """Private: probe where the cores are now; the round trip in ns, or -1 when the
    probe could not tell (one thread, or the other one descheduled)."""
    cdef double ns
    with nogil:
        ns = frn_probe_cores()
    return ns


def _set_far(int far):
    """Private: the cores taken as far apart (1), close (0) or between (2) instead of
    probed; -1 probes again."""
    frn_set_far(far)


def _spread_pays(double fma):
    """Private: whether a batch-1 projection of `fma` multiply-adds, of a layer that
    steps on one thread, goes to more threads (probes where the cores are when due)."""
    return bool(frn_spread_pays(fma))


def _split_uneven(int B, int groups):
    """Private: whether a batch of B rows split in `groups` groups of rows leaves
    one far more than its share while the cores are close (its units are split
    instead)."""
    return bool(frn_split_uneven(B, groups))


def _set_batch_split(int mode):
    """Private: whole-sequence calls split batches over threads by hidden units (0),
    in groups of rows whenever they can (1), or where that was measured to pay (-1)."""
    frn_set_batch_split(mode)


def _set_weave(int mode):
    """Private: batch-1 calls weave the input projection into the recurrent steps
    where they can (1), never (0), or as chosen for this CPU (-1)."""
    frn_set_weave(mode)


def _weaves():
    """Private: whether batch-1 calls weave the projection where they can, now."""
    return bool(frn_weave_pays())


def _set_prefetch_next(int mode):
    """Private: row tiles of large weights ask for the next panel ahead (AVX-512 only)
    always (1), never (0), or as chosen for this CPU (-1)."""
    frn_set_prefetch_next(mode)


def _prefetches_next():
    """Private: whether row tiles ask for the next panel ahead where they can, now."""
    return bool(frn_prefetch_next_pays())


def _set_helper_lag(int ns):
    """Private: streams' helper threads join one step in four up to `ns` late, as
    when the OS runs them late (tests of the hand-over; 0: never)."""
    frn_set_helper_lag(ns)


def _set_stream_phase0(uint64_t k):
    """Private: streams made from now on number their phases from k, their counters
    as phases 0 and 1 left them (tests of a stream that has stepped ~10^9 times)."""
    frn_set_stream_phase0(k)


def compiler():
    return frn_compiler().decode()

include "_models.pxi"
