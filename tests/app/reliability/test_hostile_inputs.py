"""The hostile-input corpus against a real server: valid files get sane scores, invalid ones their documented
error, nothing leaks, the server stays ready and its memory stays bounded."""

from __future__ import annotations

import io
import struct

import httpx
import pytest
from PIL import Image

from tests.app.reliability.corpus import BOMB_SIDE, PNG_SIGNATURE, encode, exif_rotated_jpeg, idat_size
from tests.app.reliability.servers import MIB, assert_error, assert_no_leaks, assert_sane_predictions, rss_mib

pytestmark = pytest.mark.slow
ROUNDS = 3  # the first round lets allocators and pools reach their working size; later rounds must not grow


def _predict(url: str, filename: str, data: bytes, content_type: str, top_k: int = 100) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", params={"top_k": top_k}, files={"file": (filename, data, content_type)},
                      timeout=120)


def _scores(url: str, data: bytes, filename: str = "x.png") -> dict[int, float]:
    r = _predict(url, filename, data, "application/octet-stream")
    assert r.status_code == 200, r.text
    return {p["index"]: p["score"] for p in r.json()["predictions"]}


def test_the_bomb_is_a_real_20000x20000_png(corpus):
    bomb = next(s for s in corpus if s.name == "bomb_png_20000")
    assert bomb.data.startswith(PNG_SIGNATURE) and len(bomb.data) < 200_000
    assert bomb.data[12:16] == b"IHDR" and struct.unpack(">II", bomb.data[16:24]) == (BOMB_SIDE, BOMB_SIDE)
    assert idat_size(bomb.data) == BOMB_SIDE * (1 + BOMB_SIDE // 8)  # every row is there, filter byte included


def test_every_file_gets_its_documented_answer_and_memory_stays_bounded(default_server, corpus, classes):
    url, pid = default_server.url, default_server.proc.pid
    assert _predict(url, "warm.png", encode(Image.new("RGB", (48, 40)), "PNG"), "image/png").status_code == 200
    before = rss_mib(pid)
    after_round: list[float] = []
    wrong: list[str] = []
    for _ in range(ROUNDS):
        for sample in corpus:
            r = _predict(url, sample.filename, sample.data, sample.content_type)
            assert_no_leaks(r.text)
            try:
                if sample.valid:
                    assert r.status_code == 200, r.text
                    assert_sane_predictions(r.json()["predictions"], classes)
                else:
                    assert_error(r, sample.status, sample.code)
            except AssertionError as e:
                wrong.append(f"{sample.name}: {e}")
        after_round.append(rss_mib(pid))
    assert not wrong, "\n".join(wrong)
    assert httpx.get(f"{url}/health/ready", timeout=30).status_code == 200
    growth = after_round[-1] - before
    assert growth < 300, f"RSS grew {growth:.0f} MiB over {ROUNDS} rounds ({before:.0f} -> {after_round} MiB)"
    assert after_round[-1] - after_round[0] < 64, f"RSS keeps growing per round: {after_round} MiB"


def test_the_batch_endpoint_gives_each_file_the_same_answer(default_server, corpus, classes):
    files = [("files", (s.filename, s.data, s.content_type)) for s in corpus]
    r = httpx.post(f"{default_server.url}/v1/predict/batch", params={"top_k": 100}, files=files, timeout=120)
    assert r.status_code == 200, r.text
    assert_no_leaks(r.text)
    results = r.json()["results"]
    assert [item["filename"] for item in results] == [s.filename for s in corpus]
    for sample, item in zip(corpus, results, strict=True):
        if sample.valid:
            assert item["error"] is None, (sample.name, item)
            assert_sane_predictions(item["predictions"], classes)
        else:
            assert item["predictions"] is None and item["error"]["code"] == sample.code, (sample.name, item)


def test_exif_orientation_is_applied_before_predicting(default_server):
    data = exif_rotated_jpeg()
    stored = Image.open(io.BytesIO(data))
    stored.load()  # the pixels as stored in the file, orientation tag ignored
    upright = stored.transpose(Image.Transpose.ROTATE_270)  # orientation 6: turn 90 degrees clockwise to display
    served = _scores(default_server.url, data, "rotated.jpg")
    by_hand = _scores(default_server.url, encode(upright, "PNG"))
    as_stored = _scores(default_server.url, encode(stored, "PNG"))
    assert served == pytest.approx(by_hand, abs=1e-5)
    assert max(abs(as_stored[i] - by_hand[i]) for i in by_hand) > 1e-4  # the rotation changes this model's answer


def test_corpus_sizes_stay_small_on_the_wire(corpus):
    """The corpus is generated, cheap to send, and under the default upload limit (so limits are tested on pixels)."""
    assert all(len(s.data) < 2 * MIB for s in corpus)
