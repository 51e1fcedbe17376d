"""Benchmark 4's baseline: a seed-style FastAPI server, the way a first version is usually written.

One synchronous handler per request: read the upload, decode it with Pillow, run torchvision
transforms, call the model, return the top 5. No batching, no decode pool, no queue, no limits.
FastAPI runs sync handlers in its thread pool (40 threads), so concurrent requests call the model
concurrently. Same checkpoint and same preprocessing values as the service:

    NAIVE_CHECKPOINT=weights/model.pt uvicorn bench.naive_server:app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import io
import os

import torch
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from torchvision import transforms

from models import load_checkpoint

ckpt = load_checkpoint(os.environ.get("NAIVE_CHECKPOINT", "weights/model.pt"))
model = ckpt.model.eval()
spec = ckpt.preprocess
transform = transforms.Compose([
    transforms.Resize(spec.resize),
    transforms.CenterCrop(spec.crop),
    transforms.ToTensor(),
    transforms.Normalize(spec.mean, spec.std),
])
app = FastAPI(title="naive ResNet server")


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
def predict(file: UploadFile = File(...)) -> dict:
    image = Image.open(io.BytesIO(file.file.read())).convert(spec.color_mode)
    x = transform(image).unsqueeze(0)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)[0]
    scores, indices = probs.topk(min(5, len(ckpt.classes)))
    return {"predictions": [{"label": ckpt.classes[i], "index": i, "score": s}
                            for s, i in zip(scores.tolist(), indices.tolist(), strict=True)]}
