"""OpenAPI 3.0.3 output: the Swagger UI we bundle offline (4.x) renders 3.0 but refuses FastAPI's native 3.1."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

OPENAPI_VERSION = "3.0.3"


def to_openapi_30(node: Any) -> Any:
    """Rewrite the few 3.1 constructs FastAPI/pydantic emit into their 3.0 spelling."""
    if isinstance(node, list):
        return [to_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_openapi_30(v) for k, v in node.items()}
    if node.get("contentMediaType") == "application/octet-stream" and node.get("type") == "string":
        node.pop("contentMediaType")
        node["format"] = "binary"
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [s for s in any_of if s != {"type": "null"}]
        node.pop("anyOf")
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        else:
            node["anyOf" if len(rest) > 1 else "allOf"] = rest
        node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list):  # schema keyword in 3.1; 3.0 has a single `example`
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    return node


def drop_unused_security(schema: dict[str, Any], api_key: bool, protect_metrics: bool) -> dict[str, Any]:
    """Declare the X-API-Key requirement only where this deployment enforces it."""
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not api_key or (path == "/metrics" and not protect_metrics):
                operation.pop("security", None)
    if not api_key:
        schema.get("components", {}).pop("securitySchemes", None)
    return schema


def declare_layers(schema: dict[str, Any], layers: list[str] | None) -> dict[str, Any]:
    """`layer` of `POST /v1/feature-maps` and `/v1/explain` as an enum of the served model's feature layers (exactly
    what they accept; the explanation's default is the last one)."""
    for path, default in (("/v1/feature-maps", 0), ("/v1/explain", -1)):
        operation = schema.get("paths", {}).get(path, {}).get("post", {})
        for param in operation.get("parameters", []):
            if param.get("name") == "layer" and layers:
                param["schema"]["enum"] = list(layers)
                param["schema"].pop("nullable", None)
                if param["schema"].get("default") not in layers:
                    param["schema"]["default"] = layers[default]
    return schema


def declare_targets(schema: dict[str, Any], classes: list[str] | None) -> dict[str, Any]:
    """`target` of `POST /v1/explain`: an index 0..K-1 or one of the served model's labels (exactly what it takes)."""
    operation = schema.get("paths", {}).get("/v1/explain", {}).get("post", {})
    for param in operation.get("parameters", []):
        if param.get("name") == "target" and classes:
            description = param["schema"].get("description")
            param["schema"] = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": len(classes) - 1},
                                         {"type": "string", "enum": list(classes)}]}
            if description:
                param["schema"]["description"] = description
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the schema as OpenAPI 3.0.3, built on first use and again when the served model's layers change."""

    def openapi() -> dict[str, Any]:
        service = app.state.service
        model = service.manager.current if service is not None else None
        layers = model.feature_layers if model is not None else None
        classes = model.checkpoint.classes if model is not None else None
        if app.openapi_schema is None or getattr(app.state, "openapi_layers", None) != (layers, classes):
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            schema = to_openapi_30(schema)
            schema["openapi"] = OPENAPI_VERSION
            settings = app.state.settings
            schema = drop_unused_security(schema, settings.api_key_value is not None, settings.protect_metrics)
            schema = declare_targets(declare_layers(schema, layers), classes)
            app.openapi_schema, app.state.openapi_layers = schema, (layers, classes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
