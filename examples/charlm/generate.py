"""Generate text with the example's model, decoded by fastrnn:

    python -m examples.charlm.generate --prompt "LOVE, n." --temperature 0.7 --seed 1
    python -m examples.charlm.generate MODEL.npz --beam 4 --max-len 120

The same as ``fastrnn generate`` (see ``fastrnn generate --help`` for every
option); without MODEL it uses the bundled model, which train.py writes.
"""

from __future__ import annotations

import sys

from fastrnn._cli_generate import _standalone


def main(argv=None) -> int:
    return _standalone(["generate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
