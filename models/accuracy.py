"""The accuracy record of a low-precision artifact: its model against the exact fp32 one, on held-out images.

Defined once here: `resnet-export` writes it (one per runtime it was checked on), the backends read it back, and
the service's schema and metrics derive from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

PRECISIONS = ("fp32", "bf16", "int8")  # the arithmetic an artifact runs in; fp32 is the exact model


@dataclass(frozen=True)
class AccuracyRecord:
    """Top-1 of both models and their agreement, as one runtime computed them."""

    top1_fp32: float = field(metadata={"doc": "Top-1 of the exact fp32 model."})
    top1: float = field(metadata={"doc": "Top-1 of the model at the artifact's precision."})
    agreement: float = field(metadata={"doc": "Share of images whose top-1 class both models agree on."})
    eval_size: int = field(metadata={"doc": "Held-out images compared."})

    @property
    def drop_points(self) -> float:
        return 100.0 * (self.top1_fp32 - self.top1)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def line(self, precision: str) -> str:
        return (f"top-1 fp32 {100 * self.top1_fp32:.2f}%, {precision} {100 * self.top1:.2f}% "
                f"(drop {self.drop_points:.2f} points), agreement {100 * self.agreement:.2f}% "
                f"on {self.eval_size} held-out images")

    @classmethod
    def from_dict(cls, value: Any) -> AccuracyRecord:
        """A record from its JSON form; `ValueError` names the missing or non-numeric fields."""
        names = [f.name for f in fields(cls)]
        if not isinstance(value, dict) or not all(isinstance(value.get(k), int | float) for k in names):
            raise ValueError(f"an accuracy record needs the numbers {', '.join(names)}")
        return cls(**{k: value[k] for k in names})


ACCURACY_FIELDS = tuple(f.name for f in fields(AccuracyRecord))
