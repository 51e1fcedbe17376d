"""Shape of `POST /v1/explain`'s JSON answer (sent with `Accept: application/json`)."""

from pydantic import BaseModel, Field

from app.schemas.predict import Prediction
from models.explain import Method


class ExplainResponse(BaseModel):
    target: Prediction = Field(description="The class explained: its label, index and softmax score.")
    method: Method = Field(description="The class-activation method used.")
    layer: str = Field(description="The layer whose activations and gradients made the map.", examples=["layer3"])
    size: list[int] = Field(min_length=2, max_length=2, description="[height, width] of the heatmap: the crop.")
    heatmap: list[list[float]] = Field(description="Rows of the heatmap, values in [0, 1] (1 = the most evidence "
                                                   "for the class); the crop's size, pixel for pixel.")
    predictions: list[Prediction] = Field(description="Top-5 classes of the image, highest score first.")
