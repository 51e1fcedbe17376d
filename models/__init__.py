"""The ResNet model zoo, its registry, the checkpoint format and the shared preprocessing."""

from models import resnet as _resnet  # noqa: F401  (registers the builders)
from models.checkpoint import (
    CLASS_INDEX_NAME,
    FORMAT,
    Checkpoint,
    load_checkpoint,
    read_class_index,
    save_checkpoint,
    write_class_index,
)
from models.errors import (
    CheckpointError,
    ImageDecodeError,
    ImageError,
    ImageTooLargeError,
    ResNetServiceError,
    UnsupportedImageTypeError,
)
from models.preprocess import PreprocessSpec, load_image_tensor, preprocess_image
from models.registry import create_model, default_preprocess, list_models

__all__ = [
    "CLASS_INDEX_NAME", "FORMAT", "Checkpoint", "CheckpointError", "ImageDecodeError", "ImageError",
    "ImageTooLargeError", "PreprocessSpec", "ResNetServiceError", "UnsupportedImageTypeError", "create_model",
    "default_preprocess", "list_models", "load_checkpoint", "load_image_tensor", "preprocess_image",
    "read_class_index", "save_checkpoint", "write_class_index",
]
