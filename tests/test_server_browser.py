"""The web page in a real headless Chromium (Debian's package, no browser download) on loopback."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import cv2
import pytest

from ferkit.inference.recognizer import COLOURS

pytest.importorskip("fastapi", reason="the server extra is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Chromium not installed (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server_url(tiny_run):
    import uvicorn

    from ferkit.server import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(str(tiny_run / "model.onnx")), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _open_page(p, server_url: str, flags=(), before=None):
    """Chromium on the page, its model information loaded; `before` runs in the page before its script."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + list(flags))
    page = browser.new_page()
    if before:
        page.add_init_script(before)
    page.goto(server_url + "/")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Model:')")
    return browser, page


def test_upload_a_photo_and_see_labels(server_url, group_photo, tmp_path):
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        labels = page.locator(".face h3.label").all_inner_texts()
        bars = page.eval_on_selector_all(".fill", "bars => bars.map(bar => bar.style.backgroundColor)")
        page.screenshot(path=str(tmp_path / "page.png"))
        browser.close()
    classes = ("angry", "happy", "sad", "surprise")
    assert len(labels) == 3
    assert all(label.split(": ")[1] in classes for label in labels)
    # Every score bar in its emotion's colour from /v1/model: the colours of ferkit's annotated images.
    palette = {"rgb({2}, {1}, {0})".format(*COLOURS[name]) for name in classes}
    assert len(bars) == 3 * 4 and set(bars) == palette


def test_live_webcam_mode_sends_frames(server_url):
    """Chromium's fake camera stands in for a webcam: frames go to the API and answers come back."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"])
        page.click("#live")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        assert page.inner_text("#live") == "Stop live webcam"
        page.click("#live")
        assert page.inner_text("#live") == "Start live webcam"
        browser.close()


def test_a_photo_the_browser_cannot_show_and_then_a_bad_file(server_url, group_photo, tmp_path):
    """TIFF decodes on the server but not in Chromium: the page shows the server's annotated image;
    a bad file after it leaves an error and no stale photo or faces."""
    photo, text = tmp_path / "group.tiff", tmp_path / "notes.png"
    cv2.imwrite(str(photo), group_photo[0])
    text.write_text("not an image")
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        shown = page.evaluate("[view.width, view.height, view.style.display]")
        faces = page.locator(".face h3.label").count()
        page.set_input_files("#file", str(text))
        page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=30_000)
        after = page.evaluate("[$('error').textContent, $('faces').innerHTML, view.style.display, $('status').textContent]")
        browser.close()
    assert shown == [640, 480, "block"] and faces == 3
    assert after == ["not an image, or a corrupt one", "", "none", ""]


def test_webcam_on_an_insecure_page_says_why(server_url):
    """Browsers give no navigator.mediaDevices to plain-HTTP pages from another machine."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url,
                                   before="Object.defineProperty(navigator, 'mediaDevices', {value: undefined})")
        page.click("#live")
        page.wait_for_function("document.getElementById('error').textContent !== ''", timeout=10_000)
        error = page.inner_text("#error")
        browser.close()
    assert error.startswith("The webcam needs a secure page") and "localhost" in error
