"""Service settings: one pydantic-settings class read from `RESNET_*` environment variables (docs/CONTRACTS.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models import PreprocessSpec, list_models
from models.device import DeviceError, parse_device


class Settings(BaseSettings):
    """Everything the service reads from the environment; names are `RESNET_` + the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="RESNET_", extra="ignore", frozen=True)

    checkpoint: Path = Path("weights/model.pt")
    class_index: Path | None = None
    arch: str | None = None  # for a bare state dict (tutorial-style .pth): its architecture
    arch_kwargs: dict[str, Any] | None = None  # builder options of that architecture (JSON)
    preprocess: dict[str, Any] | None = None  # its preprocessing (JSON, the checkpoint's `preprocess` keys)
    model_dir: Path | None = None  # HTTP reload loads only from here; default: the folder of RESNET_CHECKPOINT
    device: str = "auto"
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"
    onnx_path: Path | None = None
    max_batch_size: int = Field(16, ge=1, le=1024)
    max_batch_delay_ms: float = Field(5.0, ge=0, le=10_000)
    queue_size: int = Field(64, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_batch_files: int = Field(32, ge=1)
    torch_threads: int = Field(0, ge=0)
    decode_threads: int = Field(0, ge=0)
    default_top_k: int = Field(5, ge=1)
    explain_concurrency: int = Field(1, ge=1, le=64)  # /v1/explain: explanations at once; more get 503
    api_key: SecretStr | None = None
    protect_metrics: bool = False
    cors_origins: list[str] = []
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    grpc_port: int = Field(8001, ge=0, le=65535)  # 0 or empty: no gRPC; 8001 is Triton's and KServe's gRPC port
    grpc_max_message_bytes: int = Field(0, ge=0)  # 0: RESNET_MAX_UPLOAD_BYTES x RESNET_MAX_BATCH_FILES + 1 MiB
    model_name: str = Field("resnet", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        try:
            return parse_device(v)
        except DeviceError as e:
            raise ValueError(str(e)) from None

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, v: str | None) -> str | None:
        if v is not None and v not in list_models():
            raise ValueError(f"unknown architecture {v!r}; known: {', '.join(list_models())}")
        return v

    @field_validator("preprocess")
    @classmethod
    def _valid_preprocess(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            PreprocessSpec.from_dict(v)  # ValueError says what is missing or wrong
        return v

    @property
    def resolved_model_dir(self) -> Path:
        """The one folder HTTP reload may load from (symlinks and `..` resolved)."""
        return (self.model_dir or self.checkpoint.parent).resolve()

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("grpc_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, v: object) -> object:
        return 0 if isinstance(v, str) and not v.strip() else v

    @field_validator("api_key", "class_index", "onnx_path", "arch", "model_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @property
    def resolved_torch_threads(self) -> int:
        """0 means one share of the cores per worker process."""
        return self.torch_threads or max(1, (os.cpu_count() or 1) // self.workers)

    @property
    def resolved_decode_threads(self) -> int:
        return self.decode_threads or min(4, os.cpu_count() or 1)

    @property
    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment (tests pass their own to `create_app`)."""
    return Settings()


def settings_error_line(exc: ValidationError) -> str:
    """`invalid settings: RESNET_DEVICE: Value error, must be auto, cpu, cuda or cuda:N` (one line)."""
    parts = []
    for err in exc.errors():
        name = "RESNET_" + "_".join(str(p) for p in err.get("loc", ())).upper()
        parts.append(f"{name}: {err.get('msg', 'invalid value')}")
    return "invalid settings: " + "; ".join(parts)
