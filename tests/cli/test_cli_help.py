"""Every flag of every command says what it does and its default, grouped by topic; no `--no-no-` flags."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli import evaluate, export, predict
from training import config
from training.config import GROUPS, HELP, TrainConfig, build_parser, parse_config

ROOT = Path(__file__).resolve().parents[2]
TRAIN_GROUPS = ["data", "model", "optimisation", "regularisation", "distillation", "checkpoints", "runtime"]


def captured_parser(monkeypatch, call) -> argparse.ArgumentParser:
    """The parser a `main` builds and parses with inside itself (resnet-export, resnet-serve)."""
    seen: list[argparse.ArgumentParser] = []

    def spy(self, *args, **kwargs):
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    with pytest.raises(SystemExit):
        call()
    monkeypatch.undo()
    return seen[0]


def serve_parser(monkeypatch) -> argparse.ArgumentParser:
    from app import cli
    from app.core.config import Settings

    return captured_parser(monkeypatch, lambda: cli.parse_args([], Settings()))


PARSERS = {
    "resnet-train": lambda mp: build_parser(),
    "resnet-eval": lambda mp: evaluate.build_parser(),
    "resnet-predict": lambda mp: predict.build_parser(),
    "resnet-export": lambda mp: export.build_parser(),
    "resnet-serve": serve_parser,
}
GROUP_TITLES = {
    "resnet-train": TRAIN_GROUPS,
    "resnet-eval": ["data", "model", "output", "runtime"],
    "resnet-predict": ["model", "output", "runtime"],
    "resnet-export": ["output", "calibration (int8)", "accuracy guard (bf16, int8)", "runtime"],
    "resnet-serve": ["server"],
}


def help_entries(parser: argparse.ArgumentParser, monkeypatch) -> dict[str, str]:
    """The rendered --help, one entry per argument: its invocation (`--lr LR`, `checkpoint`) -> its help text."""
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping: each help on one line, beside or below its invocation
    entries: dict[str, str] = {}
    current = None
    for line in parser.format_help().splitlines():
        if re.match(r"^  \S", line):
            current, _, text = line.strip().partition("  ")
            entries[current] = text.strip()
        elif current is not None and line.startswith("   ") and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
        elif not line.strip() or not line.startswith(" "):
            current = None
    return entries


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_has_a_help_that_shows_its_default(command, monkeypatch):
    parser = PARSERS[command](monkeypatch)
    entries = help_entries(parser, monkeypatch)
    options = {k: v for k, v in entries.items() if k.startswith("-") and not k.startswith("-h, --help")}
    assert options, f"{command}: no options found in --help"
    for invocation, text in entries.items():
        assert text, f"{command} {invocation}: no help"
    for invocation, text in options.items():
        assert "(default: " in text or "; default: " in text, f"{command} {invocation}: no default shown: {text!r}"
        assert "(default: None)" not in text and "(default: )" not in text, f"{command} {invocation}: {text!r}"


@pytest.mark.parametrize("command", PARSERS)
def test_no_double_negative_flags_and_the_groups_exist(command, monkeypatch):
    parser = PARSERS[command](monkeypatch)
    text = parser.format_help()
    assert "--no-no-" not in text
    for title in GROUP_TITLES[command]:
        assert f"\n{title}:\n" in text, f"{command}: no group {title!r}"


def test_the_train_groups_come_in_their_order_and_hold_every_field_once():
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "given"]
    grouped = [name for names in GROUPS.values() for name in names]
    assert list(GROUPS) == TRAIN_GROUPS
    assert sorted(grouped) == sorted(fields) and len(grouped) == len(set(grouped))
    assert set(HELP) == set(fields) and all(HELP.values())
    text = build_parser().format_help()
    assert [text.index(f"\n{t}:\n") for t in TRAIN_GROUPS] == sorted(text.index(f"\n{t}:\n") for t in TRAIN_GROUPS)


def test_decay_norm_bias_has_a_positive_spelling_and_keeps_the_negative_one():
    assert parse_config([]).no_decay_norm_bias is True
    cfg = parse_config(["--decay-norm-bias"])
    assert cfg.no_decay_norm_bias is False and "no_decay_norm_bias" in cfg.given
    cfg = parse_config(["--decay-norm-bias", "--no-decay-norm-bias"])
    assert cfg.no_decay_norm_bias is True and "no_decay_norm_bias" in cfg.given
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--no-no-decay-norm-bias"])
    assert parse_config(["--no-hflip", "--no-progress", "--nesterov"]).hflip is False


def test_defaults_and_given_flags_are_unchanged():
    cfg = parse_config([])
    assert cfg == TrainConfig() and cfg.given == frozenset()
    assert vars(build_parser(suppress_defaults=True).parse_args([])) == {}
    cfg = parse_config(["--lr", "0.1", "--small-input", "--widths", "8", "16", "32", "--channels-last", "false"])
    assert cfg.given == {"lr", "small_input", "widths", "channels_last"}
    assert (cfg.small_input, cfg.widths, cfg.channels_last) == (True, [8, 16, 32], False)


def documented_train_commands() -> list[list[str]]:
    """The `resnet-train` command lines of README.md and weights/README.md, as argument lists."""
    commands = []
    for doc in (ROOT / "README.md", ROOT / "weights" / "README.md"):
        joined = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for line in joined.splitlines():
            if "bin/resnet-train " in line:
                args = shlex.split(line.split("bin/resnet-train ", 1)[1].split("#", 1)[0])
                commands.append(args)
    return commands


def test_the_documented_train_commands_still_parse():
    commands = documented_train_commands()
    assert commands, "README.md / weights/README.md show no resnet-train command"
    for args in commands:
        config.parse_config(args)  # SystemExit (usage error) on an unknown flag


def test_resnet_serve_help_runs_as_a_command():
    proc = subprocess.run([sys.executable, "-m", "app.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RESNET_PORT; default: " in proc.stdout and "\nserver:\n" in proc.stdout
