"""The checkpoint: the contract between training/ and app/ (see shared/DESIGN.md).

One `torch.save` file of tensors and plain Python values only, loaded with `weights_only=True`
(`models.torch_file`, the one caller of `torch.load`), plus `class_indices.json` beside it
(`models.class_index`). Unpickling arbitrary objects is never allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.atomic import atomic_torch_save
from models.class_index import CLASS_INDEX_NAME, class_index_path, read_class_index, write_class_index
from models.errors import CheckpointError
from models.preprocess import PreprocessSpec
from models.registry import create_model, default_preprocess, list_models
from models.torch_file import read_torch_file

FORMAT_NAME = "resnet-checkpoint"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"

PathLike = str | os.PathLike[str]


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model in eval mode and everything needed to feed and describe it."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    classes: list[str]
    preprocess: PreprocessSpec
    metrics: dict[str, Any]
    training: dict[str, Any]
    sha256: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def to_plain(obj: Any) -> Any:
    """Turn tuples, paths, numpy scalars into plain values `weights_only` accepts; refuse anything else."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (plain values and tensors only)")


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    classes: Sequence[str],
    preprocess: PreprocessSpec | Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    write_index: bool = True,
) -> Path:
    """Write the checkpoint atomically, and `class_indices.json` beside it unless `write_index=False`."""
    spec = preprocess if isinstance(preprocess, PreprocessSpec) else PreprocessSpec.from_dict(preprocess)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": to_plain(dict(arch_kwargs)),
        "state_dict": state,
        "classes": list(classes),
        "preprocess": to_plain(spec.to_dict()),
        "metrics": to_plain(dict(metrics or {})),
        "training": to_plain(dict(training or {})),
        **to_plain(dict(extra or {})),
    }
    path = atomic_torch_save(obj, path)
    if write_index:
        write_class_index(class_index_path(path), classes)
    return path


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The weights in `path`: a project checkpoint's, or a bare torchvision / DataParallel state dict (no `module.`).

    For `--pretrained` and for importing tutorial-style `.pth` files; `CheckpointError` names the problem.
    """
    path = Path(path)
    obj, _ = read_torch_file(path)
    state = _unwrap_bare(obj)
    if state is None and isinstance(obj, Mapping) and _is_state_dict(obj.get("state_dict")):
        state = dict(obj["state_dict"])
    if not state:
        raise CheckpointError(f"{path}: holds no state dict (neither a checkpoint nor a mapping of tensors)")
    return state


def read_training_state(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `last.pt`'s stored training config and its resume state (model, optimizer, RNG, history, ...)."""
    path = Path(path)
    obj, _ = read_torch_file(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("resume"), Mapping):
        raise CheckpointError(f"{path}: holds no resume state (only last.pt written by resnet-train does)")
    config = (obj.get("training") or {}).get("config")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{path}: holds no training config")
    return dict(config), dict(obj["resume"])


def publish_checkpoint(src: PathLike, dst: PathLike, *, metrics: Mapping[str, Any] | None = None,
                       keep_resume: bool = False) -> Path:
    """Rewrite checkpoint `src` as `dst` (atomically; `dst` may be `src`), with `metrics` merged into its metrics.

    Without `keep_resume` the resume state is dropped: what remains is the file the service loads.
    """
    obj, _ = read_torch_file(Path(src))
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not a {FORMAT_NAME} file")
    obj = dict(obj)
    if metrics:
        obj["metrics"] = {**dict(obj.get("metrics") or {}), **to_plain(dict(metrics))}
    if not keep_resume:
        obj.pop("resume", None)
    return atomic_torch_save(obj, dst)


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap_bare(obj: Any) -> dict[str, torch.Tensor] | None:
    """A torchvision `.pth` (bare state dict), possibly under 'state_dict'/'model' or with DDP's 'module.'."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and "format" not in obj and _is_state_dict(obj.get(key)):
            obj = obj[key]
    if not _is_state_dict(obj):
        return None
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _build(path: Path, arch: str, arch_kwargs: dict[str, Any], state: Mapping[str, torch.Tensor]) -> nn.Module:
    if arch not in list_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r}; known: {', '.join(list_models())}")
    try:
        model = create_model(arch, **arch_kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot build {arch} with {arch_kwargs}: {e}") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of parameter names to tensors")
    misfit = state_dict_misfit(model.state_dict(), state)
    if misfit:
        raise CheckpointError(f"{path}: weights do not fit {arch} {arch_kwargs}: {misfit}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def state_dict_misfit(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any], shown: int = 4) -> str:
    """What keeps `given` from loading where `expected` is: a few missing and unexpected keys, shape mismatches."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} is {list(given[k].shape)}, the model's is {list(expected[k].shape)}"
              for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" (and {len(items) - shown} more)" if len(items) > shown else ""
            parts.append(f"{len(items)} {what}: {', '.join(items[:shown])}{more}")
    return "; ".join(parts)


def _check_head(path: Path, state: Mapping[str, torch.Tensor], classes: list[str], class_index: PathLike) -> None:
    """A class index whose length disagrees with the classifier's outputs is named before anything is built."""
    fc = state.get("fc.weight")
    if fc is not None and fc.ndim == 2 and fc.shape[0] != len(classes):
        raise CheckpointError(f"{path}: fc has {fc.shape[0]} outputs (fc.weight is {list(fc.shape)}) but "
                              f"{class_index} lists {len(classes)} classes")


def _bare_preprocess(path: Path, arch: str, kwargs: dict[str, Any],
                     preprocess: PreprocessSpec | Mapping[str, Any] | None) -> PreprocessSpec:
    if preprocess is None:
        return default_preprocess(arch, **kwargs)
    if isinstance(preprocess, PreprocessSpec):
        return preprocess
    try:
        return PreprocessSpec.from_dict(preprocess)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad preprocessing {dict(preprocess)}: {e}") from None


def _num_outputs(model: nn.Module) -> int | None:
    fc = getattr(model, "fc", None)
    return fc.out_features if isinstance(fc, nn.Linear) else None


def load_checkpoint(
    path: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    class_index: PathLike | None = None,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    preprocess: PreprocessSpec | Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Load a project checkpoint, or a bare state dict (torchvision-shaped, as the tutorial scripts save it, also
    with DataParallel's `module.` prefix) given `arch` and `class_index`, with `arch_kwargs` for its builder and
    `preprocess` (default: the architecture's own, e.g. Resize 256 / CenterCrop 224 / ImageNet mean and std).

    Raises `CheckpointError` naming the file and the problem; never unpickles arbitrary objects.
    """
    path = Path(path)
    obj, sha = read_torch_file(path)
    bare = _unwrap_bare(obj)
    if bare is not None:
        ckpt = _from_state_dict(path, sha, bare, arch, arch_kwargs, class_index, preprocess)
    else:
        ckpt = _from_checkpoint_file(path, sha, obj, arch, class_index)
    outputs = _num_outputs(ckpt.model)
    if outputs is not None and outputs != len(ckpt.classes):
        raise CheckpointError(f"{path}: the final layer has {outputs} outputs but there are {len(ckpt.classes)} "
                              "classes")
    ckpt.model.to(map_location)
    return ckpt


def _from_state_dict(path: Path, sha256: str, state: dict[str, torch.Tensor], arch: str | None,
                     arch_kwargs: Mapping[str, Any] | None, class_index: PathLike | None,
                     preprocess: PreprocessSpec | Mapping[str, Any] | None) -> Checkpoint:
    """A bare state dict: the architecture and the class names come from the caller."""
    if arch is None or class_index is None:
        raise CheckpointError(f"{path}: a bare state dict needs an architecture and a class index file "
                              "(resnet-serve: RESNET_ARCH and RESNET_CLASS_INDEX; the tools: --arch and "
                              "--class-index)")
    classes = read_class_index(class_index)
    _check_head(path, state, classes, class_index)
    kwargs = {**dict(arch_kwargs or {}), "num_classes": len(classes)}
    model = _build(path, arch, kwargs, state)
    return Checkpoint(model=model, arch=arch, arch_kwargs=kwargs, classes=classes,
                      preprocess=_bare_preprocess(path, arch, kwargs, preprocess), metrics={}, training={},
                      sha256=sha256, path=path, meta={"format": "torchvision-state-dict"})


def _from_checkpoint_file(path: Path, sha256: str, obj: Any, arch: str | None,
                          class_index: PathLike | None) -> Checkpoint:
    """A `resnet-checkpoint/1` file: it says its own architecture, classes and preprocessing."""
    _check_entries(path, obj, arch)
    kwargs, classes = dict(obj["arch_kwargs"]), list(obj["classes"])
    model = _build(path, obj["arch"], kwargs, obj["state_dict"])
    try:
        spec = PreprocessSpec.from_dict(obj["preprocess"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad preprocess entry: {e}") from None
    metrics, training = obj.get("metrics") or {}, obj.get("training") or {}
    if not isinstance(metrics, Mapping) or not isinstance(training, Mapping):
        raise CheckpointError(f"{path}: 'metrics' and 'training' must be mappings")
    if class_index is not None:
        _check_class_index(path, class_index, classes)
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "resume")}
    return Checkpoint(model=model, arch=obj["arch"], arch_kwargs=kwargs, classes=classes, preprocess=spec,
                      metrics=dict(metrics), training=dict(training), sha256=sha256, path=path, meta=meta)


def _check_entries(path: Path, obj: Any, arch: str | None) -> None:
    """The format, the required keys and their types; `arch`, when given, must be the file's own."""
    if not isinstance(obj, Mapping) or "format" not in obj:
        raise CheckpointError(f"{path}: not a {FORMAT_NAME} file (no 'format' key) and not a state dict")
    fmt = str(obj["format"])
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {fmt!r}; this version reads {FORMAT!r}")
    missing = [k for k in ("arch", "arch_kwargs", "state_dict", "classes", "preprocess") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    if not isinstance(obj["arch"], str) or not isinstance(obj["arch_kwargs"], Mapping):
        raise CheckpointError(f"{path}: 'arch' must be a name and 'arch_kwargs' a mapping")
    if not isinstance(obj["classes"], list) or not all(isinstance(c, str) for c in obj["classes"]):
        raise CheckpointError(f"{path}: 'classes' must be a list of class names")
    if arch is not None and arch != obj["arch"]:
        raise CheckpointError(f"{path}: a {obj['arch']} checkpoint, not {arch} (it says its own architecture; "
                              "an architecture is only needed for a bare state dict)")


def _check_class_index(path: Path, class_index: PathLike, classes: list[str]) -> None:
    """A class index given beside a checkpoint must list the checkpoint's classes, in order."""
    index_classes = read_class_index(class_index)
    if index_classes != classes:
        diff = next(
            (i for i, (a, b) in enumerate(zip(index_classes, classes, strict=False)) if a != b),
            min(len(index_classes), len(classes)),
        )
        raise CheckpointError(
            f"{class_index}: class index disagrees with checkpoint {path}: {len(index_classes)} vs "
            f"{len(classes)} classes, first difference at index {diff}"
        )


__all__ = ["CLASS_INDEX_NAME", "FORMAT", "FORMAT_NAME", "FORMAT_VERSION", "Checkpoint", "class_index_path",
           "load_checkpoint", "publish_checkpoint", "read_class_index", "read_state_dict", "read_training_state",
           "save_checkpoint", "state_dict_misfit", "to_plain", "write_class_index"]
