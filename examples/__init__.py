"""Worked examples of fastrnn (run from the repository root, e.g.
``python -m examples.charlm.generate``)."""
