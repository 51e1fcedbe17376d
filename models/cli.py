"""The convention every command line follows: an expected failure is one line, `prog: error: message`, exit 1.

A command's `main` hands its body to `run_cli`; library code raises named project exceptions
(`models.errors`) and never `SystemExit`. Lists in messages are cut with `cut_list`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

from models.errors import ResNetServiceError


def run_cli(prog: str, body: Callable[[], int | None],
            expected: tuple[type[BaseException], ...] = (ResNetServiceError,)) -> NoReturn:
    """Run `body` and exit with its status (None = 0); an `expected` exception becomes `prog: error: ...`, exit 1.

    Anything else (a bug) keeps its traceback; `SystemExit` from argparse (usage errors, `--help`) passes through.
    """
    try:
        status = body()
    except expected as e:
        fail(prog, str(e))
    sys.exit(status or 0)


def fail(prog: str, message: str) -> NoReturn:
    """Print `prog: error: message` (one line) on stderr and exit 1."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(1)


def cut_list(items: Iterable[object], limit: int = 10) -> str:
    """`a, b, c` for a short list; the first `limit` and `... and N more` for a long one."""
    names = [str(x) for x in items]
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown}, ... and {rest} more" if rest > 0 else shown
