"""/docs in real headless Chromium: Swagger UI loads from local assets only and "Try it out" predicts an upload."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from devkit.images import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_swagger_ui_try_it_out_predicts_an_uploaded_image(server):
    from playwright.sync_api import expect, sync_playwright

    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{server.url}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("ResNet inference service", timeout=30_000)

            op = page.locator("#operations-predict-predict_v1_predict_post")
            op.locator(".opblock-summary").click()
            op.locator("button.try-out__btn").click()
            op.locator("input[type=file]").set_input_files(
                {"name": "cat.png", "mimeType": "image/png", "buffer": image_bytes("PNG", seed=21)})
            op.locator("button.execute").click()

            live = op.locator(".live-responses-table .response")
            expect(live.locator(".response-col_status").first).to_have_text("200", timeout=30_000)
            expect(live.locator(".response-col_description").first).to_contain_text('"predictions"')
        finally:
            browser.close()

    assert any(url.endswith("/static/swagger-ui/swagger-ui-bundle.js") for url in requested)
    assert any(url.endswith("/openapi.json") for url in requested)
    assert any(url.split("?")[0].endswith("/v1/predict") for url in requested)
    outside = [url for url in requested if urlsplit(url).scheme in ("http", "https", "ws", "wss")
               and urlsplit(url).hostname not in LOOPBACK]
    assert outside == []
