"""`class_indices.json`: `{"0": "name", ...}`, the class names by output unit, beside every checkpoint."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from models.atomic import atomic_write_bytes
from models.errors import CheckpointError

CLASS_INDEX_NAME = "class_indices.json"

PathLike = str | os.PathLike[str]


def class_index_path(checkpoint_path: PathLike) -> Path:
    return Path(checkpoint_path).with_name(CLASS_INDEX_NAME)


def write_class_index(path: PathLike, classes: Sequence[str]) -> Path:
    """Write `{"0": "name", ...}` atomically."""
    data = json.dumps({str(i): c for i, c in enumerate(classes)}, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_bytes(path, data.encode())


def read_class_index(path: PathLike) -> list[str]:
    """Read a `{"0": "name", ...}` file; keys must be exactly 0..N-1."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: class index file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON class index ({e})") from None
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return list(raw)
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise CheckpointError(f'{path}: a class index must map "0".."N-1" to class names')
    try:
        by_index = {int(k): v for k, v in raw.items()}
    except ValueError:
        raise CheckpointError(f"{path}: class index keys must be integers") from None
    if sorted(by_index) != list(range(len(raw))):
        raise CheckpointError(f"{path}: class index keys must be 0..{len(raw) - 1} with no gaps")
    return [by_index[i] for i in range(len(raw))]
