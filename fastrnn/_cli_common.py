"""What the subcommands of ``fastrnn`` share: one-line errors and running one alone."""

from __future__ import annotations

import argparse
import sys


def one_line(text) -> str:
    """``text`` (or an exception) on one line, whitespace runs collapsed."""
    return " ".join(str(text).split())


def error_exit(prog: str, message, code: int = 2):
    """Print ``PROG: error: MESSAGE`` to stderr and exit with ``code``."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(code)


def standalone(prog: str, add_parser, argv=None) -> int:
    """Run one subcommand (``python -m fastrnn._cli_run ...``) without fastrnn's CLI.

    ``add_parser`` registers it on a subparsers object (its defaults hold ``func``);
    ``prog`` prefixes argument errors, which exit with status 2.
    """
    parser = argparse.ArgumentParser(prog="fastrnn")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    parser.error = lambda message: error_exit(prog, message, 2)
    args = parser.parse_args(argv)
    return args.func(args)
