"""The checkpoint: the contract between training/ and app/ (see shared/DESIGN.md).

One `torch.save` file of tensors and plain Python values only, loaded with `weights_only=True`,
plus `class_indices.json` beside it. Unpickling arbitrary objects is never allowed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.atomic import atomic_torch_save, atomic_write_bytes
from models.errors import CheckpointError
from models.preprocess import PreprocessSpec
from models.registry import create_model, default_preprocess, list_models

FORMAT_NAME = "resnet-checkpoint"
FORMAT_VERSION = 1
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
CLASS_INDEX_NAME = "class_indices.json"

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
    obj, _ = _read(path)
    state = _unwrap_bare(obj)
    if state is None and isinstance(obj, Mapping) and _is_state_dict(obj.get("state_dict")):
        state = dict(obj["state_dict"])
    if not state:
        raise CheckpointError(f"{path}: holds no state dict (neither a checkpoint nor a mapping of tensors)")
    return state


def read_training_state(path: PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `last.pt`'s stored training config and its resume state (model, optimizer, RNG, history, ...)."""
    path = Path(path)
    obj, _ = _read(path)
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
    obj, _ = _read(Path(src))
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{src}: not a {FORMAT_NAME} file")
    obj = dict(obj)
    if metrics:
        obj["metrics"] = {**dict(obj.get("metrics") or {}), **to_plain(dict(metrics))}
    if not keep_resume:
        obj.pop("resume", None)
    return atomic_torch_save(obj, dst)


def _read(path: Path) -> tuple[Any, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol: we say what is wrong below
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), sha
    except pickle.UnpicklingError:
        # torch raises the same error for random bytes and for a pickle that asks for code: tell them apart
        # by parsing the pickle's opcodes ourselves (pickletools only reads them, it never imports or calls).
        names = _pickle_imports(data)
        if names is None:
            raise CheckpointError(
                f"{path}: not a PyTorch checkpoint: neither a torch.save archive nor a pickle (garbage bytes?)"
            ) from None
        allowed = _allowed_globals()
        unsafe = [n for n in names if n not in allowed]
        if not unsafe:  # e.g. pickle.dumps of plain values: harmless, but not what torch.save writes
            raise CheckpointError(f"{path}: not a PyTorch checkpoint: a pickle that torch.save did not write") from None
        raise CheckpointError(
            f"{path}: refused to load unsafe content: the pickle holds objects other than tensors and plain "
            f"values (it would import {', '.join(unsafe)}); checkpoints are loaded with weights_only=True"
        ) from None
    except Exception as e:  # truncated zip, wrong magic number, a pickle that ends early ...
        detail = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300].removesuffix(": ")
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt: {detail})") from None


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _allowed_globals() -> set[str]:
    """Names torch's weights-only unpickler accepts (so that only the offending ones are reported)."""
    try:
        from torch import _weights_only_unpickler as wo

        return set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    except Exception:  # private API: without it every name is reported
        return set()


def _pickle_imports(data: bytes) -> list[str] | None:
    """Globals a pickle (or a torch.save archive's data.pkl) names, or None when `data` is not a pickle at all."""
    stream = data
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return None
                stream = archive.read(name)
        except (zipfile.BadZipFile, OSError, RuntimeError):
            return None
    imports: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name in _STRING_OPS:
                strings.append(str(arg))
            elif opcode.name in ("GLOBAL", "INST"):
                imports.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                imports.append(".".join(strings[-2:]) if len(strings) >= 2 else "a global")
            elif opcode.name == "STOP":
                return sorted(set(imports))
    except Exception:  # unknown opcode, truncated argument ...: not a pickle
        return None
    return None


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
    obj, sha = _read(path)
    bare = _unwrap_bare(obj)
    if bare is not None:
        if arch is None or class_index is None:
            raise CheckpointError(f"{path}: a bare state dict needs an architecture and a class index file "
                                  "(resnet-serve: RESNET_ARCH and RESNET_CLASS_INDEX; the tools: --arch and "
                                  "--class-index)")
        classes = read_class_index(class_index)
        _check_head(path, bare, classes, class_index)
        kwargs = {**dict(arch_kwargs or {}), "num_classes": len(classes)}
        meta: dict[str, Any] = {"format": "torchvision-state-dict"}
        model = _build(path, arch, kwargs, bare)
        spec = _bare_preprocess(path, arch, kwargs, preprocess)
        metrics: dict[str, Any] = {}
        training: dict[str, Any] = {}
    else:
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
        arch, kwargs, classes = obj["arch"], dict(obj["arch_kwargs"]), list(obj["classes"])
        meta = {k: v for k, v in obj.items() if k not in ("state_dict", "resume")}
        model = _build(path, arch, kwargs, obj["state_dict"])
        try:
            spec = PreprocessSpec.from_dict(obj["preprocess"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: bad preprocess entry: {e}") from None
        metrics, training = obj.get("metrics") or {}, obj.get("training") or {}
        if not isinstance(metrics, Mapping) or not isinstance(training, Mapping):
            raise CheckpointError(f"{path}: 'metrics' and 'training' must be mappings")
        metrics, training = dict(metrics), dict(training)
        if class_index is not None:
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
    outputs = _num_outputs(model)
    if outputs is not None and outputs != len(classes):
        raise CheckpointError(f"{path}: the final layer has {outputs} outputs but there are {len(classes)} classes")
    model.to(map_location)
    return Checkpoint(model=model, arch=arch, arch_kwargs=kwargs, classes=classes, preprocess=spec,
                      metrics=metrics, training=training, sha256=sha, path=path, meta=meta)
