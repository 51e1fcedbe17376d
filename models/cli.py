"""The conventions every command line follows.

An expected failure is one line, `prog: error: message`, exit 1: a command's `main` returns `run_cli(prog, body)`;
library code raises named project exceptions (`models.errors`), never `SystemExit`. Lists in messages are cut
with `cut_list`. Every flag's help says its default (`HelpFormatter`); integer flags use `positive_int` and
`non_negative_int`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn

from models.errors import ResNetServiceError


def run_cli(prog: str, body: Callable[[], int | None],
            expected: tuple[type[BaseException], ...] = (ResNetServiceError,)) -> int:
    """Run `body` and return its exit status (None = 0) for `main` to return (console scripts exit with it); an
    `expected` exception becomes `prog: error: ...` on stderr and exit 1.

    Anything else (a bug) keeps its traceback; `SystemExit` from argparse (usage errors, `--help`) passes through.
    """
    try:
        return body() or 0
    except expected as e:
        fail(prog, str(e))


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to every option's help, unless the help already says its default in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "(default:" in text else (super()._get_help_string(action) or "")


def parse_bool(text: str) -> bool:
    """An argparse type: true/false, yes/no, on/off, 1/0."""
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value
