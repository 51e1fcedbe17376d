"""Readers for the deployment files (Dockerfile, .dockerignore, compose files), shared by the deploy tests.

These tests run without a Docker engine, so they read the files the way Docker and Compose would; tests/container
builds and runs them on a real engine (scripts/test-container.sh).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from app.core.config import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
COMPOSE_SCHEMA = REPO / "deploy" / "compose-spec.schema.json"
NGINX_CONF = REPO / "deploy" / "nginx.conf"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Instruction:
    stage: str  # the stage's name (`AS name`), or its index as text
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # everything after the keyword, continuation lines joined
    line: int


def read_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions in order; comment lines (also inside continuations) dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    stage, buf, start = "", "", 0
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = no
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        text = (buf + line).strip()
        buf = ""
        keyword, _, args = text.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            named = len(words) >= 3 and words[1].upper() == "AS"
            stage = words[2] if named else str(sum(i.keyword == "FROM" for i in out))
        out.append(Instruction(stage, keyword, args, start))
    return out


def stages(instructions: list[Instruction]) -> list[str]:
    return [i.stage for i in instructions if i.keyword == "FROM"]


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = stages(instructions)[-1]
    return [i for i in instructions if i.stage == last]


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}: {found}"
    return found[0]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD (shell form is refused: no signals via sh)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec-form array: {args}"
    return value


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    """The argv of the final stage's HEALTHCHECK CMD."""
    args = only(final_stage(instructions), "HEALTHCHECK").args
    _options, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args}"
    return exec_form(command)


def healthcheck_options(instructions: list[Instruction]) -> dict[str, str]:
    args = only(final_stage(instructions), "HEALTHCHECK").args.partition("CMD ")[0]
    return dict(opt.removeprefix("--").split("=", 1) for opt in shlex.split(args))


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """`ARG NAME=default` values (the last one wins, as for a build that passes no --build-arg)."""
    out: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ARG" and "=" in i.args:
            name, _, value = i.args.partition("=")
            out[name.strip()] = value.strip().strip('"')
    return out


def declared_args(instructions: list[Instruction], stage: str) -> list[str]:
    """Names of the ARGs declared in a stage (with or without a default): the build arguments its RUNs see."""
    return [i.args.partition("=")[0].strip() for i in instructions if i.keyword == "ARG" and i.stage == stage]


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (not `--from=stage`)."""
    out: list[str] = []
    for i in instructions:
        if i.keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(i.args)
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        out += words[:-1]
    return out


# ---- .dockerignore, with Docker's rules: Go filepath.Match patterns plus `**`, `!` re-includes, last match wins,
# and a pattern that matches a folder matches everything inside it.


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]  # Go's classes ([a-z], [^a-z]) read the same as a regex's
            i = end + 1
            continue
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exclusion, regex) per pattern line, in file order."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = re.sub(r"/+", "/", pattern).removeprefix("./")
        rules.append((exclude, _pattern_regex(pattern)))
    return rules


def is_excluded(rel_path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `rel_path` (relative to the context root) out of the build context."""
    parts = rel_path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = exclude
    return excluded


# ---- compose


def load_yaml(path: Path) -> Any:
    """YAML 1.2, as Compose reads it (`on`/`yes` stay strings); anchors and aliases resolved."""
    return YAML(typ="safe", pure=True).load(path.read_text())


def env_map(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's `environment` as a dict; a name without a value (passed through from the shell) maps to None."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: None if v is None else str(v) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        name, sep, value = str(item).partition("=")
        out[name] = value if sep else None
    return out


def volume_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """Short (`src:dst[:mode]`) and long volume syntax, as {source, target, read_only}."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = split_outside_interpolation(v, ":")
            mode = parts[2] if len(parts) > 2 else "rw"
            out.append({"source": parts[0], "target": parts[1], "read_only": "ro" in mode.split(",")})
        else:
            out.append({"source": v.get("source"), "target": v["target"], "read_only": bool(v.get("read_only"))})
    return out


def split_outside_interpolation(text: str, sep: str) -> list[str]:
    """`text.split(sep)`, except inside `${...}` (so `${DATA_DIR:-./data}:/data:ro` has three parts)."""
    parts, depth, current = [], 0, ""
    for i, c in enumerate(text):
        if text.startswith("${", i):
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        if c == sep and not depth:
            parts.append(current)
            current = ""
        else:
            current += c
    return [*parts, current]


def settings_env_names() -> set[str]:
    """The variables Settings reads: prefix + field name (or the field's alias), upper case."""
    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or prefix + name).upper())
    return names
