"""models/cli.py: one line on stderr and exit 1 for an expected failure; long lists cut."""

from __future__ import annotations

import pytest

from models.cli import cut_list, run_cli
from models.errors import CheckpointError


def test_expected_failure_is_one_line_and_exit_1(capsys):
    def body() -> int:
        raise CheckpointError("model.pt: not a checkpoint\n  (truncated)")

    with pytest.raises(SystemExit) as exc:
        run_cli("resnet-x", body)
    assert exc.value.code == 1
    assert capsys.readouterr().err == "resnet-x: error: model.pt: not a checkpoint (truncated)\n"


def test_status_passes_through_and_bugs_keep_their_traceback():
    assert run_cli("resnet-x", lambda: None) == 0
    assert run_cli("resnet-x", lambda: 3) == 3
    with pytest.raises(ZeroDivisionError):
        run_cli("resnet-x", lambda: 1 // 0)


def test_long_lists_are_cut():
    assert cut_list(["a", "b"]) == "a, b"
    assert cut_list(range(1000)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... and 990 more"
    assert cut_list(range(3), limit=2) == "0, 1, ... and 1 more"
