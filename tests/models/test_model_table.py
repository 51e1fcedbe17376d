"""scripts/model_table.py: parameters and multiply-adds next to the papers' figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_table.py"


@pytest.fixture(scope="module")
def model_table():
    spec = importlib.util.spec_from_file_location("model_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(out: str, name: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if ln.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_for_two_models(model_table, capsys):
    model_table.main(["--only", "resnet18,resnet20"])
    out = capsys.readouterr().out
    assert "--only resnet18,resnet20" in out
    r18, r20 = _row(out, "resnet18"), _row(out, "resnet20")
    assert len([ln for ln in out.splitlines() if ln.startswith("| resnet")]) == 2
    assert r18[1] == "224x224" and float(r18[3]) == pytest.approx(11.69, abs=0.01)
    assert float(r18[5]) == pytest.approx(1.8, rel=0.02)  # the paper's 1.8 GFLOPs are multiply-adds
    assert r18[7] == "1.8"
    assert r20[1] == "32x32" and r20[2] == "20"  # 6n+2 with n=3
    assert float(r20[3]) == pytest.approx(0.27, abs=0.01)
    assert r20[4].startswith("0.27")


def test_v1_stride_gives_the_papers_resnet50_figure(model_table):
    row = model_table.measure("resnet50")
    assert row["gmacs"] == pytest.approx(4.09, abs=0.01)  # v1.5: the stride on the 3x3 costs 0.23 GMACs more
    assert row["gmacs_v1"] == pytest.approx(3.8, rel=0.02)


def test_unknown_model_is_an_error(model_table):
    with pytest.raises(SystemExit):
        model_table.main(["--only", "resnet19"])
