"""The ONNX file an ONNX backend runs: RESNET_ONNX_PATH, or the checkpoint exported at startup.

One place for what ONNX Runtime and OpenVINO share: find or export the file, read its metadata, and refuse a
file that was exported from another checkpoint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.checkpoint import Checkpoint
from models.errors import CheckpointError


@dataclass(frozen=True)
class Artifact:
    """An ONNX file on disk (temporary when exported at startup) and its decoded metadata."""

    path: Path
    metadata: dict[str, Any]
    given: bool  # True: the user's file (RESNET_ONNX_PATH); False: exported from the checkpoint just now

    @property
    def precision(self) -> str:
        return str(self.metadata.get("precision", "fp32"))

    @property
    def accuracy(self) -> dict[str, float]:
        return dict(self.metadata.get("accuracy") or {})


ACCURACY_KEYS = ("top1_fp32", "top1", "agreement", "eval_size")


def check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """A known precision and, when recorded, a complete accuracy record (else `CheckpointError`, at startup)."""
    from models.onnx_export import PRECISIONS

    precision = metadata.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise CheckpointError(f"{path}: unknown precision {precision!r} in its metadata "
                              f"(known: {', '.join(PRECISIONS)})")
    accuracy = metadata.get("accuracy")
    if accuracy is not None and not (isinstance(accuracy, dict) and all(
            isinstance(accuracy.get(k), int | float) for k in ACCURACY_KEYS)):
        raise CheckpointError(f"{path}: its accuracy record needs the numbers {', '.join(ACCURACY_KEYS)}")


@contextmanager
def open_artifact(checkpoint: Checkpoint, onnx_path: str | Path | None) -> Iterator[Artifact]:
    """The artifact for `checkpoint`; the runtime reads the file inside the `with` (a temp export is removed after).

    Raises `CheckpointError` for a missing or unreadable file, or one whose embedded sha256 is not `checkpoint`'s.
    """
    from models.onnx_export import export_onnx, read_onnx_metadata

    if onnx_path is None:
        with tempfile.TemporaryDirectory(prefix="resnet-onnx-") as tmp:
            path = export_onnx(checkpoint, Path(tmp) / "model.onnx")
            yield Artifact(path, read_onnx_metadata(path), given=False)
        return
    path = Path(onnx_path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    metadata = read_onnx_metadata(path)
    check_metadata(path, metadata)
    embedded = metadata.get("checkpoint_sha256")
    if embedded != checkpoint.sha256:
        raise CheckpointError(
            f"{path}: ONNX model was exported from checkpoint sha256 {str(embedded)[:12]}..., "
            f"not from {checkpoint.path.name} ({checkpoint.sha256[:12]}...); run resnet-export again"
        )
    yield Artifact(path, metadata, given=True)
