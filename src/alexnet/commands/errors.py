"""The error policy of every verb: a user's mistake is one line and exit 2, a bug a traceback.

User errors are ValueError (a bad value or a foreign file, named in the message),
FileNotFoundError and other OSErrors (a missing input, an unwritable output, a full disk:
`alexnet.fileio.WriteError` names the file). Anything else (KeyError, TypeError, ...) is a bug
and keeps its traceback. Ctrl-C is one line and exit 130 (the shell's 128 + SIGINT).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

Run = Callable[[argparse.Namespace], int]
INTERRUPTED = 130


def error_line(err: BaseException) -> str:
    """The one line for a user error; OSErrors without their own text name their file."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err) or type(err).__name__


def user_errors(verb: str) -> Callable[[Run], Run]:
    """Wrap a verb's `run`: user errors become `alexnet VERB: error: ...` and exit status 2."""

    def wrap(fn: Run) -> Run:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except (ValueError, OSError) as err:
                print(f"alexnet {verb}: error: {error_line(err)}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"alexnet {verb}: interrupted", file=sys.stderr)
                return INTERRUPTED

        return run

    return wrap
