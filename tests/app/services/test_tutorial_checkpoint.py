"""What the classic tutorials save (a bare torchvision-shaped `state_dict` + `class_indices.json`) is served, and
answers what the tutorial's own predict.py computes; `resnet-import` turns it into a self-describing checkpoint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from app.core.config import Settings
from app.core.errors import StartupError
from cli.import_checkpoint import main as import_main
from devkit.asgi import serve
from models import load_checkpoint

pytestmark = pytest.mark.anyio
FLOWERS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
# the tutorial's predict.py, verbatim
TUTORIAL_TRANSFORM = transforms.Compose([
    transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])


def _photo(w: int, h: int, seed: int, fmt: str) -> bytes:
    """Photo-like content (smooth gradients plus noise) at a size where no JPEG draft decoding happens."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * (c + 1) * 0.37 + yy * 0.23 * (3 - c)) % 256 for c in range(3)], -1)
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


PHOTOS = [_photo(500, 375, 0, "JPEG"), _photo(375, 500, 1, "JPEG"), _photo(333, 260, 2, "PNG")]


@pytest.fixture(scope="module")
def tutorial_files(tmp_path_factory):
    """`torch.save(net.state_dict(), "resNet34.pth")` of resnet34(num_classes=5), and the tutorial's class index."""
    root = tmp_path_factory.mktemp("tutorial")
    torch.manual_seed(0)
    net = torchvision.models.resnet34(num_classes=5)
    for m in net.modules():  # trained-looking BN statistics, so that images get different answers
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    torch.save(net.state_dict(), root / "resNet34.pth")
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, root / "resNet34-dp.pth")  # DataParallel
    (root / "class_indices.json").write_text(json.dumps(dict(enumerate(FLOWERS)), indent=4))  # json.dumps({0: ...})
    return root, net


def _tutorial_probs(net: torch.nn.Module, data: bytes) -> list[float]:
    img = TUTORIAL_TRANSFORM(Image.open(io.BytesIO(data)))
    with torch.no_grad():
        return torch.softmax(torch.squeeze(net(img.unsqueeze(0))), dim=0).tolist()


def _settings(root, name: str = "resNet34.pth", **kw) -> Settings:
    return Settings(checkpoint=root / name, arch="resnet34", class_index=root / "class_indices.json", device="cpu",
                    backend="torch", torch_threads=2, log_level="warning", **kw)


@pytest.mark.parametrize("name", ["resNet34.pth", "resNet34-dp.pth"])
async def test_the_service_answers_what_the_tutorials_predict_py_computes(tutorial_files, name):
    root, net = tutorial_files
    async with serve(_settings(root, name)) as (_, client):
        info = (await client.get("/v1/model")).json()
        assert info["classes"] == FLOWERS and info["arch"] == "resnet34"
        assert {k: info["preprocess"][k] for k in ("resize", "crop", "interpolation", "color_mode")} == {
            "resize": 256, "crop": 224, "interpolation": "bilinear", "color_mode": "RGB"}
        for data in PHOTOS:
            r = await client.post("/v1/predict?top_k=5", files={"file": ("p", data, "application/octet-stream")})
            assert r.status_code == 200, r.text
            served = {p["index"]: p["score"] for p in r.json()["predictions"]}
            expected = _tutorial_probs(net, data)
            assert max(abs(served[i] - expected[i]) for i in range(5)) < 1e-4


async def test_preprocess_and_arch_kwargs_settings(tutorial_files):
    root, _ = tutorial_files
    spec = {"resize": 160, "crop": 128, "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bicubic",
            "color_mode": "RGB"}
    async with serve(_settings(root, preprocess=spec, arch_kwargs={"zero_init_residual": True})) as (_, client):
        info = (await client.get("/v1/model")).json()
        assert info["preprocess"] == spec
        assert info["arch_kwargs"]["zero_init_residual"] is True


@pytest.mark.parametrize(("change", "fragment"), [
    ({"arch": "resnet18"}, "unexpected keys: layer1.2.conv1.weight"),
    ({"arch": "resnet50"}, "shape mismatches: layer1.0.conv1.weight is [64, 64, 3, 3], the model's is [64, 64, 1, 1]"),
    ({"class_index": "six"}, "fc has 5 outputs (fc.weight is [5, 512]) but"),
    ({"arch": None}, "RESNET_ARCH and RESNET_CLASS_INDEX"),
])
async def test_errors_name_the_problem(tutorial_files, change, fragment):
    root, _ = tutorial_files
    (root / "six.json").write_text(json.dumps({str(i): f"c{i}" for i in range(6)}))
    kw = {"arch": change.get("arch", "resnet34")}
    index = root / ("six.json" if change.get("class_index") else "class_indices.json")
    settings = Settings(checkpoint=root / "resNet34.pth", class_index=index, device="cpu", backend="torch",
                        log_level="warning", **kw)
    with pytest.raises(StartupError) as exc:
        async with serve(settings, {"X-API-Key": "k"}):
            pass
    assert fragment in str(exc.value)


def test_unknown_arch_setting_is_refused_in_one_line(tutorial_files):
    root, _ = tutorial_files
    with pytest.raises(ValueError, match="unknown architecture 'resnet35'"):
        Settings(checkpoint=root / "resNet34.pth", arch="resnet35")


async def test_reload_accepts_the_same_fields(tutorial_files, settings_for):
    root, net = tutorial_files
    settings = settings_for(api_key="k", model_dir=root)
    async with serve(settings, {"X-API-Key": "k"}) as (_, client):
        r = await client.post("/v1/model/reload", json={"checkpoint": "resNet34.pth", "arch": "resnet34",
                                                         "class_index": "class_indices.json"})
        assert r.status_code == 200, r.text
        assert r.json()["model"]["classes"] == FLOWERS
        r = await client.post("/v1/predict?top_k=5", files={"file": ("p", PHOTOS[0], "image/jpeg")})
        served = {p["index"]: p["score"] for p in r.json()["predictions"]}
        assert max(abs(served[i] - p) for i, p in enumerate(_tutorial_probs(net, PHOTOS[0]))) < 1e-4


def test_resnet_import_writes_a_self_describing_checkpoint(tutorial_files, tmp_path, capsys):
    root, net = tutorial_files
    out = tmp_path / "flowers" / "model.pt"
    code = import_main([str(root / "resNet34-dp.pth"), "--arch", "resnet34", "--class-index",
                        str(root / "class_indices.json"), "-o", str(out)])
    assert code == 0 and "wrote" in capsys.readouterr().out
    ckpt = load_checkpoint(out)  # no --arch, no class index needed any more
    assert ckpt.arch == "resnet34" and ckpt.classes == FLOWERS
    assert (ckpt.preprocess.resize, ckpt.preprocess.crop) == (256, 224)
    assert json.loads((out.parent / "class_indices.json").read_text()) == {str(i): c for i, c in enumerate(FLOWERS)}
    assert all(torch.equal(a, b) for a, b in zip(ckpt.model.state_dict().values(), net.state_dict().values(),
                                                  strict=True))
    with pytest.raises(SystemExit) as exc:
        import_main([str(root / "resNet34.pth"), "--arch", "resnet50", "--class-index",
                        str(root / "class_indices.json"), "-o", str(tmp_path / "x.pt")])
    assert exc.value.code == 1 and "weights do not fit resnet50" in capsys.readouterr().err
