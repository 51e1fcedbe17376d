"""GET /, the web page: served with a self-only CSP, and in real headless Chromium it classifies an upload, shows
the model and its feature maps, reports API errors and sends the API key, without a request to any other host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from devkit.images import image_bytes
from devkit.server import start_server

CHROMIUM = "/usr/bin/chromium"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
KEY = "ui-test-key"


# --- the files, in process ---------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_root_is_an_html_page_with_a_self_only_csp(client):
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' blob: data:",
                      "connect-src 'self'"):
        assert directive in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert 'src="ui/app.js"' in r.text and 'href="ui/style.css"' in r.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and " style=" not in r.text  # nothing inline


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "media_type"), [("app.js", "text/javascript"), ("style.css", "text/css")])
async def test_ui_files_are_served_with_the_csp(client, name, media_type):
    r = await client.get(f"/ui/{name}")
    assert r.status_code == 200 and len(r.content) > 500
    assert r.headers["content-type"].startswith(media_type)
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/", "/ui/app.js", "/ui/style.css"])
async def test_nothing_on_the_page_comes_from_another_host(client, path):
    text = (await client.get(path)).text
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text


@pytest.mark.anyio
async def test_head_root_is_200_without_a_body(client):
    r = await client.head("/")
    assert r.status_code == 200 and r.content == b""
    assert "content-security-policy" in r.headers


@pytest.mark.anyio
async def test_unknown_ui_file_is_404_with_the_error_body(client):
    r = await client.get("/ui/secrets.txt")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


@pytest.mark.anyio
async def test_page_is_not_in_the_openapi_schema(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and not any(p.startswith("/ui") for p in paths)


# --- the page, in Chromium against a real server ------------------------------------------------------------------

@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page with every request it made and every console error or uncaught exception it had."""

    def __init__(self, browser) -> None:
        self.page = browser.new_page()
        self.requests: list = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def outside(self) -> list[str]:
        urls = [r.url for r in self.requests]
        return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                and urlsplit(u).hostname not in LOOPBACK]

    def to(self, path: str) -> list:
        return [r for r in self.requests if urlsplit(r.url).path == path]


def upload(page, data: bytes, name: str = "cat.png", mime: str = "image/png") -> None:
    page.locator("#file").set_input_files({"name": name, "mimeType": mime, "buffer": data})


def drop(page, data: bytes, name: str, mime: str = "image/png") -> None:
    """Drop a file on the drop zone, as a drag from the desktop would."""
    transfer = page.evaluate_handle(
        """([bytes, name, mime]) => {
             const t = new DataTransfer();
             t.items.add(new File([new Uint8Array(bytes)], name, {type: mime}));
             return t; }""",
        [list(data), name, mime])
    page.locator("#drop").dispatch_event("drop", {"dataTransfer": transfer})


def wait_for_feature_map(page, text: str) -> None:
    """Wait until the feature-map image has loaded and its alt text names `text` (a layer or a file name)."""
    page.wait_for_function(
        """text => { const img = document.getElementById("feature-map");
                     return !img.hidden && img.complete && img.naturalWidth > 0 && img.alt.includes(text); }""",
        arg=text, timeout=30_000)


@pytest.mark.browser
@pytest.mark.slow
def test_page_classifies_an_upload_and_shows_the_model_and_feature_maps(server, browser):
    from playwright.sync_api import expect

    info = httpx.get(f"{server.url}/v1/model").json()
    png = image_bytes("PNG", seed=33)
    expected = httpx.post(f"{server.url}/v1/predict", params={"top_k": 5},
                          files={"file": ("cat.png", png, "image/png")}).json()["predictions"]
    metric = "test_top1" if "test_top1" in info["metrics"] else "val_top1"
    w = Watched(browser)
    page = w.page
    page.goto(f"{server.url}/")

    expect(page.locator("#model-arch")).to_have_text(info["arch"], timeout=30_000)
    expect(page.locator("#model-classes")).to_have_text(str(info["num_classes"]))
    expect(page.locator("#model-accuracy")).to_contain_text(f"{info['metrics'][metric] * 100:.1f} %")
    expect(page.locator("#model-accuracy")).to_contain_text(metric)
    expect(page.locator("#layer option")).to_have_count(len(info["feature_layers"]))

    upload(page, png)
    bars = page.locator("#predictions li")
    expect(bars).to_have_count(min(5, info["num_classes"]), timeout=30_000)
    assert bars.locator(".label").all_text_contents() == [p["label"] for p in expected]
    assert bars.first.locator(".label").text_content() == expected[0]["label"]
    expect(bars.first.locator(".score")).to_have_text(f"{expected[0]['score'] * 100:.1f} %")
    expect(page.locator("#preview")).to_be_visible()
    assert page.locator("#preview").get_attribute("src").startswith("blob:")
    assert "cat.png" in page.locator("#preview").get_attribute("alt")

    wait_for_feature_map(page, "layer1")  # the default layer, drawn for the new image
    layer = info["feature_layers"][-1]
    page.locator("#layer").select_option(layer)
    wait_for_feature_map(page, layer)
    assert page.locator("#feature-map").get_attribute("src").startswith("blob:")
    expect(page.locator("#feature-status")).to_contain_text(layer)

    predicts = w.to("/v1/predict")
    assert len(predicts) == 1 and parse_qs(urlsplit(predicts[0].url).query) == {"top_k": ["5"]}
    layers = [parse_qs(urlsplit(r.url).query) for r in w.to("/v1/feature-maps")]
    assert layers[-1] == {"layer": [layer], "channels": ["16"]}
    assert {urlsplit(r.url).path for r in w.requests} >= {"/", "/ui/app.js", "/ui/style.css", "/v1/model"}
    expect(page.locator(".error:visible")).to_have_count(0)

    dropped = image_bytes("PNG", seed=35)
    expected = httpx.post(f"{server.url}/v1/predict", params={"top_k": 5},
                          files={"file": ("dropped.png", dropped, "image/png")}).json()["predictions"]
    drop(page, dropped, "dropped.png")
    expect(page.locator("#predict-status")).to_contain_text("dropped.png", timeout=30_000)
    assert bars.locator(".label").all_text_contents() == [p["label"] for p in expected]
    wait_for_feature_map(page, "dropped.png")  # redrawn for the dropped image, same layer
    assert len(w.to("/v1/predict")) == 2
    assert w.outside() == []
    assert w.errors == []


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_the_error_message_of_a_refused_upload(server, browser):
    from playwright.sync_api import expect

    data, name, mime = b"these are not the pixels you are looking for", "notes.txt", "text/plain"
    r = httpx.post(f"{server.url}/v1/predict", params={"top_k": 5}, files={"file": (name, data, mime)})
    assert r.status_code >= 400
    error = r.json()["error"]
    w = Watched(browser)
    page = w.page
    page.goto(f"{server.url}/")
    expect(page.locator("#model-arch")).not_to_have_text("…", timeout=30_000)

    upload(page, data, name, mime)
    alert = page.locator("#predict-error")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_contain_text(f"{r.status_code} {error['code']}: {error['message']}")
    expect(page.locator("#predictions li")).to_have_count(0)
    expect(page.locator("#feature-error")).to_contain_text(str(r.status_code), timeout=30_000)
    expect(page.locator("#preview")).to_be_hidden()
    assert w.outside() == []
    # the browser logs each refused request as "Failed to load resource"; anything else is a bug in the page
    assert [e for e in w.errors if not e.startswith("Failed to load resource")] == []


@pytest.fixture
def keyed_server(checkpoint, tmp_path):
    """A second server that requires X-API-Key (the shared one runs without a key)."""
    srv = start_server(tmp_path, checkpoint=checkpoint, api_key=KEY)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_page_sends_the_api_key_and_keeps_it_for_the_tab(keyed_server, browser):
    from playwright.sync_api import expect

    num_classes = httpx.get(f"{keyed_server.url}/v1/model").json()["num_classes"]
    w = Watched(browser)
    page = w.page
    page.goto(f"{keyed_server.url}/")
    expect(page.locator("#model-arch")).not_to_have_text("…", timeout=30_000)  # GET /v1/model needs no key

    upload(page, image_bytes("PNG", seed=34))
    expect(page.locator("#predict-error")).to_contain_text("401 unauthorized", timeout=30_000)
    expect(page.locator("#predict-error")).to_contain_text("API key")

    page.locator(".key summary").click()
    page.locator("#api-key").fill(KEY)
    page.locator("#api-key").blur()  # the change event retries the image with the key
    expect(page.locator("#predictions li")).to_have_count(min(5, num_classes), timeout=30_000)
    expect(page.locator("#predict-error")).to_be_hidden()
    wait_for_feature_map(page, "layer1")
    assert w.to("/v1/predict")[-1].headers.get("x-api-key") == KEY
    assert w.to("/v1/feature-maps")[-1].headers.get("x-api-key") == KEY

    page.reload()
    expect(page.locator("#api-key")).to_have_value(KEY)  # sessionStorage: same tab, after a reload
    assert page.evaluate("sessionStorage.getItem('resnet-api-key')") == KEY
    assert w.outside() == []
    assert [e for e in w.errors if not e.startswith("Failed to load resource")] == []


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_the_heatmap_of_a_chosen_top5_class(server, browser):
    import io

    from PIL import Image
    from playwright.sync_api import expect

    png = image_bytes("PNG", seed=36)
    expected = httpx.post(f"{server.url}/v1/predict", params={"top_k": 5},
                          files={"file": ("cat.png", png, "image/png")}).json()["predictions"]
    chosen = expected[-1]  # the last of the top-5: not the class drawn by default
    direct = httpx.post(f"{server.url}/v1/explain", params={"target": chosen["index"]},
                        files={"file": ("cat.png", png, "image/png")}, timeout=60)
    assert direct.status_code == 200 and direct.headers["content-type"] == "image/png"
    width, height = Image.open(io.BytesIO(direct.content)).size
    w = Watched(browser)
    page = w.page
    page.goto(f"{server.url}/")
    expect(page.locator("#model-arch")).not_to_have_text("…", timeout=30_000)

    upload(page, png)
    switch = page.locator('#explain-classes input[name="explain-class"]')
    expect(switch).to_have_count(len(expected), timeout=30_000)
    assert page.locator("#explain-classes label").all_text_contents() == [f" {p['label']}" for p in expected]
    wait_for_heatmap(page, expected[0]["label"])  # the top-1 class is drawn at once
    switch.nth(len(expected) - 1).check()
    wait_for_heatmap(page, chosen["label"])
    size = page.evaluate("() => [document.getElementById('heatmap').naturalWidth, "
                         "document.getElementById('heatmap').naturalHeight]")
    assert size == [width, height]
    assert page.locator("#heatmap").get_attribute("src").startswith("blob:")
    expect(page.locator("#explain-status")).to_contain_text(chosen["label"])

    queries = [parse_qs(urlsplit(r.url).query) for r in w.to("/v1/explain")]
    assert queries[0] == {"target": [str(expected[0]["index"])], "method": ["gradcam"]}
    assert queries[-1] == {"target": [str(chosen["index"])], "method": ["gradcam"]}
    expect(page.locator("#explain-error")).to_be_hidden()
    assert w.outside() == []
    assert [e for e in w.errors if not e.startswith("Failed to load resource")] == []


def wait_for_heatmap(page, label: str) -> None:
    """Wait until the heatmap image has loaded for the class `label` (its alt text names the class)."""
    page.wait_for_function(
        """label => { const img = document.getElementById("heatmap");
                     return !img.hidden && img.complete && img.naturalWidth > 0 && img.alt.includes(label); }""",
        arg=f"“{label}”", timeout=30_000)
