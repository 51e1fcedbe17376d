"""The one error shape every non-2xx response uses."""

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code.", examples=["invalid_image"])
    message: str = Field(description="Human-readable explanation.", examples=["not a recognised image format"])


class ErrorResponse(BaseModel):
    error: ErrorBody
