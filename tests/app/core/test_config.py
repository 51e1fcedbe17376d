"""Settings: the RESNET_* names and defaults of docs/CONTRACTS.md, validation, resolved thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Settings, settings_error_line


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("RESNET_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract():
    s = Settings()
    assert s.checkpoint == Path("weights/model.pt") and s.class_index is None
    assert (s.device, s.backend, s.onnx_path) == ("auto", "auto", None)
    assert (s.max_batch_size, s.max_batch_delay_ms, s.queue_size, s.request_timeout_s) == (16, 5, 64, 30)
    assert (s.max_upload_bytes, s.max_image_pixels, s.max_batch_files) == (20971520, 40_000_000, 32)
    assert (s.torch_threads, s.decode_threads, s.default_top_k) == (0, 0, 5)
    assert (s.api_key, s.protect_metrics, s.cors_origins, s.log_level) == (None, False, [], "info")
    assert (s.host, s.port, s.workers) == ("0.0.0.0", 8000, 1)


def test_every_contract_variable_is_read(monkeypatch):
    env = {"CHECKPOINT": "/m/x.pt", "CLASS_INDEX": "/m/c.json", "DEVICE": "cuda:1", "BACKEND": "onnxruntime",
           "ONNX_PATH": "/m/x.onnx", "MAX_BATCH_SIZE": "4", "MAX_BATCH_DELAY_MS": "12.5", "QUEUE_SIZE": "9",
           "REQUEST_TIMEOUT_S": "3", "MAX_UPLOAD_BYTES": "100", "MAX_IMAGE_PIXELS": "200", "MAX_BATCH_FILES": "3",
           "TORCH_THREADS": "2", "DECODE_THREADS": "3", "DEFAULT_TOP_K": "7", "API_KEY": "k", "PROTECT_METRICS": "true",
           "CORS_ORIGINS": '["http://a", "http://b"]', "LOG_LEVEL": "DEBUG", "HOST": "127.0.0.1", "PORT": "9000",
           "WORKERS": "2"}
    for k, v in env.items():
        monkeypatch.setenv(f"RESNET_{k}", v)
    s = Settings()
    assert (str(s.checkpoint), str(s.class_index), s.device, s.backend, str(s.onnx_path)) == (
        "/m/x.pt", "/m/c.json", "cuda:1", "onnxruntime", "/m/x.onnx")
    assert (s.max_batch_size, s.max_batch_delay_ms, s.queue_size, s.request_timeout_s) == (4, 12.5, 9, 3)
    assert (s.max_upload_bytes, s.max_image_pixels, s.max_batch_files) == (100, 200, 3)
    assert (s.resolved_torch_threads, s.resolved_decode_threads, s.default_top_k) == (2, 3, 7)
    assert (s.api_key_value, s.protect_metrics, s.cors_origins, s.log_level) == ("k", True, ["http://a", "http://b"],
                                                                                "debug")
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 9000, 2)


def test_zero_threads_mean_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Settings(workers=4).resolved_torch_threads == 4
    assert Settings(workers=32).resolved_torch_threads == 1
    assert Settings().resolved_decode_threads == 4


def test_empty_api_key_means_none(monkeypatch):
    monkeypatch.setenv("RESNET_API_KEY", "")
    assert Settings().api_key_value is None


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "cuda:"])
def test_bad_device_is_refused_in_one_line(device):
    with pytest.raises(ValidationError) as info:
        Settings(device=device)
    assert settings_error_line(info.value) == "invalid settings: RESNET_DEVICE: Value error, must be auto, cpu, cuda " \
                                              "or cuda:N"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "CUDA:3"])
def test_good_devices(device):
    assert Settings(device=device).device == device.lower()


def test_bad_numbers_are_refused():
    with pytest.raises(ValidationError):
        Settings(max_batch_size=0)
    with pytest.raises(ValidationError):
        Settings(backend="tensorrt")
