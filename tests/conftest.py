"""Shared fixtures: the instruction-set paths of this CPU, thread counts, peers."""

from __future__ import annotations

import pytest

import fastrnn
from fastrnn import _kernels

from _util import available_isas


def pytest_report_header(config):
    cfg = fastrnn.config()
    return [f"fastrnn {cfg['version']}: isa={cfg['isa']} available={cfg['isa_available']} "
            f"openmp={cfg['openmp']} threads={cfg['num_threads']}"]


@pytest.fixture(autouse=True, scope="session")
def _cores_close():
    """Calls take the two cores as close, not probed: on a virtual machine the host
    may move them far apart mid-run, and small calls would then run on one thread,
    untested on two (test_runtime tests the probe and the far rule)."""
    _kernels._set_far(0)
    yield
    _kernels._set_far(-1)


@pytest.fixture(autouse=True, scope="session")
def _vendor_paths_everywhere():
    """Batch-1 calls weave their input projection into the recurrent steps wherever
    they can, and AVX-512 row tiles of large weights ask for the next panel ahead,
    on any CPU: by default only AMD CPUs weave and only Intel CPUs prefetch
    (dispatch.c, frn_weave_pays, frn_prefetch_next_pays), and every kernel must be
    tested on every machine. Tests of the other paths turn them off themselves
    (test_kernels, weave and prefetch_next)."""
    _kernels._set_weave(1)
    _kernels._set_prefetch_next(1)
    yield
    _kernels._set_weave(-1)
    _kernels._set_prefetch_next(-1)


@pytest.fixture(params=available_isas())
def isa(request):
    """Run the test on one instruction-set path (each one this CPU and build have)."""
    name = request.param
    before = _kernels.get_isa()
    _kernels._set_isa(("generic", "avx2", "avx512").index(name))
    try:
        yield name
    finally:
        _kernels._set_isa(before)


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def n_threads(request):
    """Run the test with 1 and with 2 OpenMP threads."""
    before = fastrnn.get_num_threads()
    fastrnn.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        fastrnn.set_num_threads(before)
