"""The `fastrnn` command (SPEC §6): bench, info, run, generate.

Bad arguments or files give a non-zero exit and a one-line message on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ._cli_common import one_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _info(args) -> int:
    from . import show_config

    show_config()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastrnn", description="Fast CPU inference for RNN, LSTM and GRU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from . import _bench, _cli_run

    _bench.add_parser(sub)
    p = sub.add_parser("info", help="show the build and runtime configuration")
    p.set_defaults(func=_info)
    _cli_run.add_parser(sub)
    from . import _cli_generate

    _cli_generate.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.error("a command is required: bench, info, run or generate (fastrnn --help "
                     "lists them)")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("fastrnn: interrupted\n")
        return 130
    except (ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        sys.stderr.write(f"fastrnn {args.command}: error: {one_line(exc) or type(exc).__name__}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
