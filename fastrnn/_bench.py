"""`fastrnn bench` (being rewritten: minimal version)."""

from __future__ import annotations

import time

import numpy as np


def add_parser(sub):
    p = sub.add_parser("bench", help="time fastrnn against the NumPy reference and peers")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    import fastrnn
    from fastrnn import reference

    for cls in (fastrnn.LSTM, fastrnn.GRU):
        layer = cls(128, 128, seed=0)
        x = np.random.default_rng(0).standard_normal((100, 1, 128)).astype(np.float32)
        out, _ = layer(x)
        ref = reference.forward(layer, x)[0]
        assert np.allclose(out, ref, atol=1e-5)
        t = time.perf_counter()
        for _ in range(10):
            layer(x)
        t = (time.perf_counter() - t) / 10
        print(f"{cls.__name__} H=128 B=1 T=100: {t / 100 * 1e6:.2f} us/step")
    return 0
