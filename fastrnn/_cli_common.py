"""What the subcommands of ``fastrnn`` share: one-line errors, exit codes, running one alone."""

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


def run_guarded(prog: str, run, args) -> int:
    """``run(args)`` with every failure as one line on stderr and an exit code.

    Bad input and unreadable files (ValueError, TypeError, OSError; ModelFileError
    is a ValueError) and MemoryError exit 1, Ctrl-C 130, anything else 1 as an
    internal error: never a traceback on the command line.
    """
    try:
        return run(args)
    except (ValueError, TypeError, OSError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{exc.filename!r}: {message}"
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"{prog}: error: internal error ({type(exc).__name__}: {one_line(exc)}); "
              "please report it", file=sys.stderr)
        return 1
