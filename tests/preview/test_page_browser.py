"""The live page in a real browser (Playwright driving Debian's chromium): the image changes, the style
slider changes the style term's curve, and *Stop and save* ends the run with the image written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from tests.helpers import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_shows_the_run_and_steers_it(env, images, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    content, style = images
    out = tmp_path / "out.png"
    proc = subprocess.Popen([sys.executable, "-m", "jaxstyle", "stylize", str(content), str(style), "-o", str(out),
                             "--size", "32", "--iterations", "1000000", "--style-weight", "0.01", "--preview"],
                            cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = None, time.time() + 300
        for line in proc.stderr:
            if "preview: http://" in line:
                url = line.split("preview: ", 1)[1].strip()
                break
            assert time.time() < deadline, "no preview URL"
        assert url and url.startswith("http://127.0.0.1:")
        base = url.split("/?", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:  # no token, no page
            urllib.request.urlopen(base + "/", timeout=10)
        assert refused.value.code == 403
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                      "--disable-default-apps", "--disable-sync", "--no-first-run", "--disable-gpu"])
            # the page's CSP forbids eval, which Playwright's string predicates use
            page = browser.new_context(bypass_csp=True, viewport={"width": 1100, "height": 700}).new_page()
            page.goto(url)
            page.wait_for_function("window.preview.imageUpdates >= 2", timeout=120_000)  # the image changed twice
            assert page.locator("#image").evaluate("img => img.naturalWidth") == 32
            points = page.evaluate("window.preview.curves.length")
            before = page.evaluate("window.preview.curves.at(-1).style")
            page.locator("input[name=style_weight]").evaluate(
                "el => { el.value = 1000; el.dispatchEvent(new Event('input'));"
                " el.dispatchEvent(new Event('change')); }")
            page.wait_for_function(f"window.preview.curves.length > {points} + 1 && "
                                   f"window.preview.curves.at(-1).style > 100 * {before}", timeout=120_000)
            page.wait_for_function("window.preview.state.log.some(line => line.includes('style_weight'))")
            page.screenshot(path=str(tmp_path / "page.png"))
            page.click("#stop")
            page.wait_for_function("window.preview.state.status !== 'running'", timeout=120_000)
            assert page.locator("#status").text_content() == "stopped"
            browser.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
        assert "stopped from the preview page" in err and "from the preview page; the optimizer starts afresh" in err
        assert Image.open(out).size == (32, 24)
        assert Image.open(tmp_path / "page.png").size == (1100, 700)
    finally:
        if proc.poll() is None:
            proc.kill()
