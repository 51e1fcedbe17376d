"""int8 post-training quantization of an exported ONNX model (ONNX Runtime's static QDQ quantizer).

Weights int8 per output channel, activations uint8 per tensor with ranges calibrated on real images:
the U8S8 form that ONNX Runtime's CPU kernels run on VNNI (and AVX2) integer instructions.
`onnxruntime` is imported inside the functions, so `import models` never needs it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


class _Batches:
    """ONNX Runtime's CalibrationDataReader over an iterable of float32 NCHW arrays."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self._name = input_name
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_int8(fp32_onnx: bytes, batches: Iterable[np.ndarray], *, input_name: str,
                  method: str = "minmax") -> bytes:
    """The int8 QDQ model of `fp32_onnx` (serialized), calibrated on `batches` (preprocessed float32 NCHW)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ValueError(f"calibration method {method!r}: use one of {', '.join(CALIBRATION_METHODS)}")
    with tempfile.TemporaryDirectory(prefix="resnet-int8-") as tmp:
        src, prepared, out = (Path(tmp) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        src.write_bytes(fp32_onnx)
        # Shape inference plus ORT's graph optimisations (BatchNorm folded into Conv) before quantizing.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), _Batches(input_name, batches), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method],
                        extra_options={"CalibMovingAverage": method == "minmax", "CalibTensorRangeSymmetric": False})
        return out.read_bytes()

