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


def _serve(app):
    """`app` on a free loopback port, in a thread, for as long as the generator is suspended."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(tiny_run):
    from ferkit.server import create_app

    yield from _serve(create_app(str(tiny_run / "model.onnx")))


@pytest.fixture(scope="module")
def proxied_url(tiny_run):
    """ferkit under /emotions/, as a reverse proxy that strips the prefix would serve it."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from ferkit.server import create_app

    yield from _serve(Starlette(routes=[Mount("/emotions", app=create_app(str(tiny_run / "model.onnx")))]))


@pytest.fixture(scope="module")
def stripped_url(tiny_run):
    """ferkit under /emotions/ behind a proxy that strips the prefix and does not say so (no root_path)."""
    from starlette.responses import PlainTextResponse

    from ferkit.server import create_app

    app = create_app(str(tiny_run / "model.onnx"))

    async def stripping_proxy(scope, receive, send):
        if scope["type"] == "http":
            if not scope["path"].startswith("/emotions"):  # the host's other sites, not ferkit
                await PlainTextResponse("not ferkit", status_code=404)(scope, receive, send)
                return
            path = scope["path"][len("/emotions"):] or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await app(scope, receive, send)

    yield from _serve(stripping_proxy)


def _open_page(p, server_url: str, flags=(), before=None):
    """Chromium on the page, its model information loaded; `before` runs in the page before its script."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + list(flags))
    page = browser.new_page()
    if before:
        page.add_init_script(before)
    page.goto(server_url + "/")
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
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


@pytest.mark.parametrize("proxy", ["proxied_url", "stripped_url"])
def test_the_page_works_under_a_path_prefix(proxy, group_photo, tmp_path, request):
    """Its requests are relative: at https://host/emotions/ they go to /emotions/v1/..., not /v1/...,
    whether or not the server is told of the prefix."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, request.getfixturevalue(proxy) + "/emotions")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        labels = page.locator(".face h3.label").all_inner_texts()
        browser.close()
    assert len(labels) == 3


def test_live_webcam_mode_sends_frames(server_url):
    """Chromium's fake camera stands in for a webcam: frames go to the API and answers come back."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"])
        page.click("#live")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        assert page.inner_text("#live") == "Stop live webcam"
        live = page.get_attribute("#faces", "aria-live")  # not four announcements a second
        page.click("#live")
        assert page.inner_text("#live") == "Start live webcam"
        assert (live, page.get_attribute("#faces", "aria-live")) == ("off", "polite")
        browser.close()


def test_the_photo_button_is_reached_by_keyboard_and_takes_the_same_file_again(server_url, group_photo,
                                                                                tmp_path):
    """Tab reaches the file input first (display:none could not be focused), and it is emptied once
    read, so choosing the same photo again, a retry after an error, is a change the page sees."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.id")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        value = page.evaluate("$('file').value")
        browser.close()
    assert focused == "file" and value == ""


def test_class_names_from_a_model_are_text_not_markup(server_url):
    """A model file's class names reach the page through the API: shown as written, never run."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        name = "<img src=x onerror=\"window.ran = 1\">"
        page.evaluate("name => draw(view, [{box: [1, 1, 5, 5], label: name, confidence: 1, scores: {[name]: 1}}])",
                      name)
        page.wait_for_timeout(300)
        found = page.evaluate("[$('faces').querySelectorAll('img').length, window.ran || 0, "
                              "$('faces').querySelector('h3').textContent]")
        browser.close()
    assert found == [0, 0, f"1: {name}"]


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
        model = page.inner_text("#model")
        browser.close()
    assert shown == [640, 480, "block"] and faces == 3
    assert after == ["not an image, or a corrupt one", "", "none", ""]
    assert model.startswith("Model: 4 emotions")  # an error had wiped the model's line for good


@pytest.mark.parametrize("status, body, said", [
    (503, '{"error": "the server is stopping"}', "Model information unavailable (HTTP 503)."),
    (200, '{"error": "no model here"}', "Model information unreadable."),  # had read "Server not reachable."
    (200, "<html>a proxy's page</html>", "Model information unreadable."),
    (None, None, "Server not reachable."),  # the connection itself failed
])
def test_a_model_information_error_is_said_and_photos_are_still_labelled(server_url, group_photo, tmp_path, status,
                                                                        body, said):
    """The page took an error's JSON (a 503 while the server stops, a 500) for the model's: it said the
    server was not reachable, and every photo after it failed to draw, its colours undefined."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.route("**/v1/model", lambda route: route.abort() if status is None else
                   route.fulfill(status=status, content_type="application/json", body=body))
        page.goto(server_url + "/")
        page.wait_for_function("!document.getElementById('model').textContent.startsWith('Loading')")
        model = page.inner_text("#model")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        labels = page.locator(".face h3.label").count()
        error = page.inner_text("#error")
        browser.close()
    assert model == said
    assert labels == 3 and error == ""


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


# The first POST answered 1.5 s late, as a big photo's would be: the page's fetch, delayed in the page.
SLOW_FIRST = """(() => { const fetch0 = window.fetch; let posts = 0;
  window.fetch = async (url, options) => {
    if (options && options.method === "POST" && posts++ === 0) await new Promise(r => setTimeout(r, 1500));
    return fetch0(url, options); }; })();"""


def test_a_slow_earlier_photo_never_replaces_the_one_picked_after_it(server_url, group_photo, tmp_path):
    import numpy as np

    first, second = tmp_path / "group.jpg", tmp_path / "blank.png"
    cv2.imwrite(str(first), group_photo[0])
    cv2.imwrite(str(second), np.full((200, 200, 3), 255, np.uint8))
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, before=SLOW_FIRST)
        page.set_input_files("#file", str(first))
        page.set_input_files("#file", str(second))
        page.wait_for_selector("#noface", timeout=30_000)
        page.wait_for_timeout(2500)  # the first photo's answer has come by now
        shown = page.evaluate("[view.width, $('faces').innerText, $('status').textContent]")
        browser.close()
    assert shown[0] == 200 and "No face found" in shown[1] and shown[2].startswith("0 face(s)")


def test_many_faces_leave_the_photo_at_the_top_of_its_column(server_url, group_photo, tmp_path):
    """The faces' column grew past the photo, which sat centred thousands of pixels down."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        page.evaluate("$('faces').style.minHeight = '5000px'")  # as a photo of 50 faces makes it
        drop, view = page.locator("#drop").bounding_box(), page.locator("#view").bounding_box()
        browser.close()
    assert view["y"] - drop["y"] < 60 and drop["height"] < 1000


# getUserMedia answering after 0.5 s, as it does once the user allows the camera.
SLOW_CAMERA = """(() => { const md = navigator.mediaDevices, get = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => { await new Promise(r => setTimeout(r, 500)); return get(c); }; })();"""


def test_a_double_click_on_live_opens_one_camera_and_stop_stops_it(server_url):
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"], before=SLOW_CAMERA)
        posts = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.click("#live")
        page.click("#live")  # while the camera is still being asked for
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        page.click("#live")
        page.wait_for_timeout(800)  # a frame in flight at the click may still go out
        sent = len(posts)
        page.wait_for_timeout(2000)
        after = len(posts)
        browser.close()
    assert after == sent


# The second live frame refused as a busy server refuses it.
BUSY_ONCE = """(() => { const fetch0 = window.fetch; let posts = 0;
  window.fetch = async (url, options) => {
    if (options && options.method === "POST" && ++posts === 2)
      return new Response(JSON.stringify({error: "server busy"}), {status: 503});
    return fetch0(url, options); }; })();"""


def test_a_live_frame_that_failed_leaves_no_error_once_frames_come_back(server_url):
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"], before=BUSY_ONCE)
        page.click("#live")
        page.wait_for_function("document.getElementById('error').textContent === 'server busy'", timeout=30_000)
        page.wait_for_function("document.getElementById('error').textContent === ''", timeout=30_000)
        status = page.inner_text("#status")
        page.click("#live")
        browser.close()
    assert status.startswith("live:")


def test_a_photo_picked_in_live_mode_stops_it_and_stays(server_url, group_photo, tmp_path):
    """The next live frame drew over the photo within 250 ms: the user picked one and saw nothing."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"])
        page.click("#live")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.getElementById('status').textContent.startsWith('3 face(s)')",
                               timeout=30_000)
        page.wait_for_timeout(1000)  # four live frames' time
        status, button = page.inner_text("#status"), page.inner_text("#live")
        width = page.eval_on_selector("#view", "c => c.width")
        browser.close()
    assert status.startswith("3 face(s)") and button == "Start live webcam"
    assert width == group_photo[0].shape[1]



def test_a_photo_picked_while_the_camera_is_asked_for_stays_and_the_camera_is_let_go(server_url, group_photo,
                                                                                    tmp_path):
    """The photo had been shown, then drawn over by the live frames once the camera was allowed."""
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"], before=SLOW_CAMERA)
        page.click("#live")  # the camera comes 500 ms later
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.getElementById('status').textContent.startsWith('3 face(s)')",
                               timeout=30_000)
        page.wait_for_timeout(1500)  # the camera's answer, and four live frames' time after it
        status, button = page.inner_text("#status"), page.inner_text("#live")
        let_go = page.evaluate("!cam.srcObject || cam.srcObject.getTracks().every(t => t.readyState === 'ended')")
        browser.close()
    assert status.startswith("3 face(s)") and button == "Start live webcam" and let_go

# The first live frame's request never answered, as through a proxy that holds a dropped connection.
HUNG_ONCE = """(() => { const fetch0 = window.fetch; let posts = 0;
  window.fetch = (url, options) => {
    if (options && options.method === "POST" && ++posts === 1)
      return new Promise((_, reject) => options.signal.addEventListener("abort", () => reject(options.signal.reason)));
    return fetch0(url, options); }; })();"""


def _live_given_up_then_shown(server_url: str, stand_in: str) -> tuple[str, str]:
    """Live mode with `stand_in` in place of the page's fetch: the error shown when a frame is first
    given up, and the one left once a frame shows."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"], before=stand_in)
        page.click("#live")
        page.wait_for_function("document.getElementById('error').textContent.startsWith('The server did not')",
                               timeout=30_000)
        given_up, stale = page.inner_text("#error"), page.evaluate("view.classList.contains('stale')")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        shown, fresh = page.inner_text("#error"), not page.evaluate("view.classList.contains('stale')")
        page.click("#live")
        browser.close()
    # the last frame's boxes are dimmed beside the error, not shown as if current
    assert stale and fresh
    return given_up, shown


def test_a_live_frame_never_answered_is_given_up_and_frames_go_on(server_url):
    """Live mode sends a frame only once the last is answered: one hung request froze it for good."""
    given_up, shown = _live_given_up_then_shown(server_url, HUNG_ONCE)
    assert given_up == "The server did not answer within 10 s." and shown == ""


# Every prediction answered 12 s after it was asked, as by a server slower than the first limit.
SLOW = """(() => { const fetch0 = window.fetch;
  window.fetch = (url, options) => {
    if (!options || options.method !== "POST") return fetch0(url, options);
    return new Promise((resolve, reject) => {
      const later = setTimeout(() => fetch0(url, options).then(resolve, reject), 12000);
      options.signal.addEventListener("abort", () => { clearTimeout(later); reject(options.signal.reason); }); }); };
})();"""


def test_live_mode_waits_longer_for_a_server_slower_than_its_first_limit(server_url):
    """Every frame of a server slower than 10 s was given up, and none ever showed."""
    given_up, shown = _live_given_up_then_shown(server_url, SLOW)  # the first at 10 s; the next may take 20
    assert given_up == "The server did not answer within 10 s." and shown == ""


def test_stopping_live_while_a_frame_hangs_lets_a_restart_go_on_at_once(server_url):
    """The hung frame is aborted with live mode, says nothing, and holds up no frame of the restart."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"], before=HUNG_ONCE)
        page.click("#live")
        page.wait_for_timeout(1500)  # the first frame is out, and hangs
        page.click("#live")
        page.click("#live")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=5_000)
        page.wait_for_timeout(1000)
        error = page.inner_text("#error")
        page.click("#live")
        browser.close()
    assert error == ""


def test_a_photo_dropped_beside_the_box_is_analysed_not_opened(server_url, group_photo):
    """The browser opened a file dropped outside the box in the page's place, leaving the page."""
    import base64

    jpeg = base64.b64encode(cv2.imencode(".jpg", group_photo[0])[1].tobytes()).decode()
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        kept = page.evaluate("""(b64) => {
          const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0)), dt = new DataTransfer();
          dt.items.add(new File([bytes], "group.jpg", {type: "image/jpeg"}));
          return document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""", jpeg)
        page.wait_for_selector(".face h3.label", timeout=30_000)
        faces = page.locator(".face h3.label").count()
        browser.close()
    assert kept is False and faces == 3  # the browser's own handling (opening the file) prevented


@pytest.fixture(scope="module")
def small_limit_url(tiny_run):
    from ferkit.server import create_app

    yield from _serve(create_app(str(tiny_run / "model.onnx"), max_upload_mb=0.25))


def test_a_photo_over_the_upload_limit_is_shrunk_before_sending(small_limit_url, tiny_run, group_photo, tmp_path):
    """A phone's 48-megapixel photo (12-25 MB) was refused by the 10 MB limit, with no way round it.
    The boxes drawn are the photo's own, scaled back from the smaller copy the server saw."""
    import numpy as np

    from ferkit.inference import EmotionRecognizer

    big = cv2.resize(group_photo[0], (2560, 1920), interpolation=cv2.INTER_CUBIC)
    big = np.clip(big + np.random.default_rng(0).normal(0, 6, big.shape), 0, 255).astype(np.uint8)
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), big)
    assert photo.stat().st_size > 3 * 1024 * 1024  # over the limit as a JPEG too
    expected = sorted(face.box for face in EmotionRecognizer(str(tiny_run / "model.onnx")).detect(big))
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, small_limit_url)
        page.evaluate("""() => { const drawOwn = window.draw;
          window.draw = (source, faces, boxes) => { window.drawn = faces.map(f => f.box); return drawOwn(source, faces, boxes); }; }""")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector(".face h3.label", timeout=30_000)
        status, error = page.inner_text("#status"), page.inner_text("#error")
        drawn, width = page.evaluate("window.drawn"), page.eval_on_selector("#view", "c => c.width")
        browser.close()
    assert error == "" and "% size, within the server's limits" in status and width == 2560
    assert len(drawn) == len(expected) == 3
    for box, own in zip(sorted(drawn), expected):  # within a few pixels of the 2560-px photo's
        assert max(abs(a - b) for a, b in zip(box, own)) <= 12, (box, own)


def test_a_webcam_that_stops_ends_live_mode_and_says_so(server_url):
    """Unplugged or taken by another app, its track ends: the last frame had been sent on and on,
    under a status saying live."""
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url, ["--use-fake-device-for-media-stream",
                                                   "--use-fake-ui-for-media-stream"])
        page.click("#live")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('live:')", timeout=30_000)
        page.evaluate("document.getElementById('cam').srcObject.getVideoTracks()[0].dispatchEvent(new Event('ended'))")
        button, error = page.inner_text("#live"), page.inner_text("#error")
        browser.close()
    assert button == "Start live webcam" and "The webcam stopped sending video" in error


def test_a_photo_over_16_megapixels_is_drawn_on_a_canvas_of_16(server_url, tmp_path):
    """iOS Safari leaves a canvas over 16.7 megapixels blank: a 20-megapixel photo showed nothing."""
    import numpy as np

    photo = tmp_path / "big.jpg"
    image = np.full((4000, 5000, 3), 128, np.uint8)
    image[:, 2500:] = 30  # its right half dark: drawn scaled, not cropped
    cv2.imwrite(str(photo), image)
    with playwright.sync_playwright() as p:
        browser, page = _open_page(p, server_url)
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#noface", timeout=30_000)
        width, height, left, right = page.eval_on_selector("#view", """c => {
          const at = (x, y) => c.getContext("2d").getImageData(x, y, 1, 1).data[0];
          return [c.width, c.height, at(c.width / 4, c.height / 2), at(3 * c.width / 4, c.height / 2)]; }""")
        browser.close()
    assert width * height <= 16_000_000 and abs(width / height - 1.25) < 0.01 and width > 4000
    assert abs(left - 128) < 8 and abs(right - 30) < 8
