"""Explanations never touch the module the inference thread runs: no hooks on it while or after explaining, its
parameters and ReLUs unchanged, and predictions made at the same time are the predictions made alone."""

from __future__ import annotations

import asyncio

import pytest
import torch

import app.services.explain as explain_service
from app.core.config import Settings
from devkit.asgi import serve
from devkit.images import image_bytes
from models.explain import explainable_copy

pytestmark = pytest.mark.anyio


def hooks(module: torch.nn.Module) -> int:
    """Every forward, pre-forward and backward hook on `module` and its children."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


def state(module: torch.nn.Module) -> tuple:
    relus = tuple(m.inplace for m in module.modules() if isinstance(m, torch.nn.ReLU))
    return relus, tuple(p.requires_grad for p in module.parameters()), module.training


async def test_served_module_has_no_hooks_while_and_after_explaining(checkpoint, monkeypatch):
    settings = Settings(checkpoint=checkpoint, device="cpu", backend="torch", torch_threads=1, log_level="warning",
                        explain_concurrency=2)
    images = [image_bytes("PNG", seed=s) for s in range(6)]
    during: list[tuple[int, int, torch.Tensor]] = []

    async with serve(settings) as (application, client):
        served = application.state.service.manager.model()
        module, backend = served.checkpoint.model, served.backend
        probe = torch.randn(4, 3, 32, 32)
        alone = backend.predict(probe)
        before = state(module)

        def spied_copy(model, device=None):
            """The service's private copy, with a test hook that looks at the served module mid-explanation."""
            private = explainable_copy(model, device)
            assert private is not model and all(p is not q for p, q in zip(private.parameters(), model.parameters(),
                                                                              strict=True))
            private.fc.register_forward_hook(
                lambda *_: during.append((hooks(module), hooks(private), backend.predict(probe))))
            return private

        monkeypatch.setattr(explain_service, "explainable_copy", spied_copy)

        sequential = [(await client.post("/v1/predict", files={"file": ("x.png", d, "image/png")})).json()
                      for d in images]

        async def predict(data: bytes) -> dict:
            return (await client.post("/v1/predict", files={"file": ("x.png", data, "image/png")})).json()

        async def explain(data: bytes) -> int:
            r = await client.post("/v1/explain", params={"method": "layercam"}, files={"file": ("x.png", data,
                                                                                                 "image/png")})
            return r.status_code

        jobs = [predict(d) for d in images] * 3 + [explain(d) for d in images[:2]]
        results = await asyncio.gather(*jobs)
        assert results[-2:] == [200, 200]
        for got, want in zip(results[:-2], sequential * 3, strict=True):
            assert [p["index"] for p in got["predictions"]] == [p["index"] for p in want["predictions"]]
            assert [p["score"] for p in got["predictions"]] == pytest.approx([p["score"] for p in want["predictions"]],
                                                                              abs=1e-5)
        assert hooks(module) == 0 and state(module) == before
        assert torch.equal(backend.predict(probe), alone)

    assert len(during) == 2
    for served_hooks, private_hooks, mid in during:
        assert served_hooks == 0 and private_hooks >= 2  # Captum's hook on the layer, and ours, on the copy only
        assert torch.equal(mid, alone)
