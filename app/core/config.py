"""Service settings: one pydantic-settings class read from `RESNET_*` environment variables (docs/CONTRACTS.md)."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class Settings(BaseSettings):
    """Everything the service reads from the environment; names are `RESNET_` + the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="RESNET_", extra="ignore", frozen=True)

    checkpoint: Path = Path("weights/model.pt")
    class_index: Path | None = None
    device: str = "auto"
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
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
    api_key: SecretStr | None = None
    protect_metrics: bool = False
    cors_origins: list[str] = []
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        v = v.strip().lower()
        if not _DEVICE.match(v):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("api_key", "class_index", "onnx_path", mode="before")
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
