"""The ONNX file an ONNX runtime runs: one written by `resnet-export`, or the checkpoint exported just now.

One place for what ONNX Runtime and OpenVINO share: find or export the file, read and check its metadata (the
precision, the accuracy recorded per runtime, the classes and preprocessing), and refuse a file that was exported
from another checkpoint.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.accuracy import PRECISIONS, AccuracyRecord
from models.checkpoint import Checkpoint
from models.errors import CheckpointError
from models.preprocess import PreprocessSpec


@dataclass(frozen=True)
class Artifact:
    """An ONNX file on disk (temporary when exported at startup) and its decoded metadata."""

    path: Path
    metadata: dict[str, Any]
    given: bool  # True: the user's file; False: exported from the checkpoint just now

    @property
    def precision(self) -> str:
        return str(self.metadata.get("precision", "fp32"))

    @property
    def accuracy_by_runtime(self) -> dict[str, AccuracyRecord]:
        return accuracy_records(self.metadata)

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.get("classes") or [])

    @property
    def preprocess(self) -> PreprocessSpec:
        try:
            return PreprocessSpec.from_dict(self.metadata["preprocess"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{self.path}: bad preprocess metadata: {e}") from None


def accuracy_records(metadata: dict[str, Any]) -> dict[str, AccuracyRecord]:
    """The accuracy `resnet-export` recorded, per runtime it was checked on. Files written before records were kept
    per runtime hold one record, `accuracy`, measured on `accuracy_runtime`."""
    by_runtime = metadata.get("accuracy_by_runtime")
    if by_runtime is None and metadata.get("accuracy") is not None:
        legacy = "openvino" if metadata.get("precision") == "bf16" else "onnxruntime"
        by_runtime = {metadata.get("accuracy_runtime", legacy): metadata["accuracy"]}
    if not isinstance(by_runtime or {}, dict):
        raise ValueError("accuracy_by_runtime must map a runtime's name to its record")
    return {str(k): AccuracyRecord.from_dict(v) for k, v in (by_runtime or {}).items()}


def check_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """A known precision and complete accuracy records, when recorded (else `CheckpointError`, at startup)."""
    precision = metadata.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise CheckpointError(f"{path}: unknown precision {precision!r} in its metadata "
                              f"(known: {', '.join(PRECISIONS)})")
    try:
        accuracy_records(metadata)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def exported_from_another(path: str | Path, checkpoint: Checkpoint) -> bool:
    """True when `path` is a readable export whose recorded checkpoint sha256 is not `checkpoint`'s."""
    from models.onnx_export import read_onnx_metadata

    try:
        embedded = read_onnx_metadata(path).get("checkpoint_sha256")
    except CheckpointError:  # unreadable: the runtime that opens it says why, in one line
        return False
    return embedded is not None and embedded != checkpoint.sha256


def read_artifact(path: str | Path, checkpoint: Checkpoint | None = None) -> Artifact:
    """A file written by `resnet-export` (from `checkpoint`, when given), checked: `CheckpointError` if it is missing,
    unreadable, of an unknown precision, or exported from another checkpoint."""
    from models.onnx_export import ONNX_FORMAT, read_onnx_metadata

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    metadata = read_onnx_metadata(path)
    embedded = metadata.get("checkpoint_sha256")
    if checkpoint is not None and embedded != checkpoint.sha256:
        raise CheckpointError(
            f"{path}: ONNX model was exported from checkpoint sha256 {str(embedded)[:12]}..., "
            f"not from {checkpoint.path.name} ({checkpoint.sha256[:12]}...); run resnet-export again"
        )
    if metadata.get("format") != ONNX_FORMAT:
        raise CheckpointError(f"{path}: not written by resnet-export (no {ONNX_FORMAT} metadata: no classes, no "
                              "preprocessing); export the checkpoint with resnet-export")
    check_metadata(path, metadata)
    return Artifact(path, metadata, given=True)


@contextmanager
def open_artifact(checkpoint: Checkpoint | None, onnx_path: str | Path | None) -> Iterator[Artifact]:
    """The artifact to run: `onnx_path`, or `checkpoint` exported to a temp file (removed after the `with`).

    Raises `CheckpointError` for a missing or unreadable file, or one whose embedded sha256 is not `checkpoint`'s.
    """
    from models.onnx_export import export_onnx, read_onnx_metadata

    if onnx_path is None:
        if checkpoint is None:
            raise CheckpointError("nothing to run: neither a checkpoint nor an ONNX file")
        with tempfile.TemporaryDirectory(prefix="resnet-onnx-") as tmp:
            path = export_onnx(checkpoint, Path(tmp) / "model.onnx")
            yield Artifact(path, read_onnx_metadata(path), given=False)
        return
    yield read_artifact(onnx_path, checkpoint)
