"""Reading a `torch.save` file safely: `weights_only=True` always, and a refusal that says why.

The one place in the project that calls `torch.load`. A file that is not a checkpoint, and a pickle that would
import code, are told apart by reading the pickle's opcodes (never executing them).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError


def read_torch_file(path: Path) -> tuple[Any, str]:
    """The object in `path`, loaded with `weights_only=True` on the CPU, and the file's sha256."""
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
