from __future__ import annotations

import base64
import json
import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import jpeg_of_many_scans, png_header_only  # noqa: E402
from ferkit.server import create_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tiny_run):
    return TestClient(create_app(str(tiny_run / "model.onnx"), max_upload_mb=1))


@pytest.fixture(scope="module")
def group_jpeg(group_photo) -> bytes:
    return cv2.imencode(".jpg", group_photo[0])[1].tobytes()


def test_page_health_model_and_schema(client):
    page = client.get("/")
    assert page.status_code == 200 and "getUserMedia" in page.text and '"v1/predict' in page.text
    assert client.get("/v1/health").json()["status"] == "ok"
    model = client.get("/v1/model").json()
    assert model["classes"] == ["angry", "happy", "sad", "surprise"] and model["accuracy"] is not None
    assert model["unseen_accuracy"] is None  # no test face of the tiny run repeats a training face
    assert model["colours"]["angry"] == "#dc2828"  # annotate's BGR (40, 40, 220), as the page's hex
    assert model["max_upload_mb"] == 1 and model["max_megapixels"] == 50  # the page shrinks a photo over either
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_openapi_says_how_to_send_an_image_and_what_comes_back(client):
    """/docs' "Try it out" needs the body declared: the endpoint reads it itself."""
    post = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    body = post["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert {"image/*", "application/octet-stream"} <= set(body)
    ok = post["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/Prediction") and "image/png" in ok
    face = client.get("/openapi.json").json()["components"]["schemas"]["FaceResult"]["properties"]
    assert {"box", "label", "confidence", "scores", "detection_score", "landmarks"} <= set(face)
    for status in ("400", "408", "413", "415", "422", "503"):
        assert post["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_openapi_describes_health_and_model_answers(client):
    """A client generated from /openapi.json gets typed health and model answers, not a bare object."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, name in (("/v1/health", "Health"), ("/v1/model", "ModelDescription")):
        answer = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["$ref"].endswith(f"/{name}")
        assert set(schemas[name]["properties"]) == set(client.get(path).json())


def test_head_and_method_errors_follow_http(client):
    for route in ("/", "/v1/health", "/v1/model"):
        assert client.head(route).status_code == 200
    wrong = client.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and "error" in wrong.json()


def test_predict_multipart_and_raw_bytes(client, group_jpeg):
    multipart = client.post("/v1/predict", files={"file": ("g.jpg", group_jpeg, "image/jpeg")})
    raw = client.post("/v1/predict", content=group_jpeg, headers={"content-type": "image/jpeg"})
    for response in (multipart, raw):
        assert response.status_code == 200
        body = response.json()
        assert len(body["faces"]) == 3 and body["elapsed_ms"] > 0
        assert body["model"] == "model.onnx"  # a name: clients are not told this machine's paths
        assert [face["box"][0] for face in body["faces"]] == [80, 223, 439]  # left to right
        assert all(0.7 <= face["detection_score"] <= 1 for face in body["faces"])
        face = body["faces"][0]
        assert len(face["box"]) == 4 and face["label"] in face["scores"]


def test_the_recognizer_flags_of_predict_reach_the_server(tiny_run, group_photo, group_jpeg):
    """`ferkit serve --min-face N --tta ...` finds and scores faces as `ferkit predict` does with them."""
    from ferkit.inference import EmotionRecognizer

    def served(**options):
        app = TestClient(create_app(str(tiny_run / "model.onnx"), **options))
        return app.post("/v1/predict", content=group_jpeg, headers={"content-type": "image/jpeg"}).json()["faces"]

    assert served(min_size=10_000) == []
    photo = cv2.imdecode(np.frombuffer(group_jpeg, np.uint8), cv2.IMREAD_COLOR)
    plain = served()
    for options in ({"tta": True}, {"align": False}):
        expected = EmotionRecognizer(tiny_run / "model.onnx", **options).detect(photo)
        got = served(**options)
        assert [face["box"] for face in got] == [list(face.box) for face in expected]
        for face, want in zip(got, expected):
            assert face["scores"] == pytest.approx(want.scores, abs=1e-4)  # the JSON's 4 decimals
        assert [face["scores"] for face in got] != [face["scores"] for face in plain]  # the option did something


def test_serve_refuses_tiny_faces_with_haar_before_it_listens(capsys):
    from ferkit.cli import main

    assert main(["serve", "--detector", "haar", "--tiny-faces", "--port", "0"]) == 2
    assert "--tiny-faces works with --detector yunet only" in capsys.readouterr().err


def test_predict_takes_base64_json_as_browsers_and_json_clients_send(client, group_jpeg):
    encoded = base64.b64encode(group_jpeg).decode()
    for image in (encoded, f"data:image/jpeg;base64,{encoded}"):
        response = client.post("/v1/predict", json={"image": image})
        assert response.status_code == 200 and len(response.json()["faces"]) == 3
    annotated = client.post("/v1/predict?annotated=true", json={"image": encoded})
    assert annotated.status_code == 200 and annotated.headers["content-type"] == "image/png"
    # URL-safe and unpadded base64, as JavaScript's encoders give it, had been "not valid base64"
    safe = base64.urlsafe_b64encode(group_jpeg).decode().rstrip("=")
    assert any(c in safe for c in "-_") and len(safe) % 4  # the case it stands for
    assert len(client.post("/v1/predict", json={"image": safe}).json()["faces"]) == 3
    url = client.post("/v1/predict", json={"image": "http://example.com/photo.jpg"})
    assert url.status_code == 400 and url.json()["error"] == \
        "an http(s) URL is not an image's base64: send the image itself"


def test_a_run_directory_is_named_by_its_folder(tiny_run):
    assert TestClient(create_app(str(tiny_run) + "/")).get("/v1/model").json()["model"] == tiny_run.name


def test_predict_annotated_returns_an_image(client, group_jpeg):
    response = client.post("/v1/predict?annotated=true", files={"file": ("g.jpg", group_jpeg, "image/jpeg")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)


def test_unknown_routes_and_bad_parameters_are_json(client, group_jpeg):
    assert client.get("/v1/nope").json() == {"error": "Not Found"}
    response = client.post("/v1/predict?annotated=maybe", content=group_jpeg, headers={"content-type": "image/jpeg"})
    assert response.status_code == 422 and response.json()["error"].startswith("annotated: ")


def test_no_face_is_200_with_empty_list(client):
    blank = cv2.imencode(".png", np.full((200, 200, 3), 255, np.uint8))[1].tobytes()
    response = client.post("/v1/predict", content=blank, headers={"content-type": "image/png"})
    assert response.status_code == 200 and response.json()["faces"] == []


@pytest.mark.parametrize("case, status, message", [
    ("not_an_image", 400, "not an image"),
    ("empty", 400, "empty upload"),
    ("truncated_jpeg", 400, "truncated"),
    ("chunked_too_big", 413, "limit"),
    ("too_big", 413, "limit"),
    ("huge_dimensions", 413, "image has too many pixels (limit 50 megapixels)"),  # Pillow's bomb limit
    ("over_the_pixel_limit", 413, "image is 8000x8000 pixels; the limit is 50 megapixels"),  # ferkit's own
    ("wrong_type", 415, "content type"),
    ("no_file_field", 400, "field 'file'"),
    ("text_file_field", 400, "is text, not a file"),
    ("two_files", 400, "2 files in the field 'file': send one image per request"),
    ("json_not_object", 400, 'a JSON body is {"image"'),
    ("json_no_image", 400, 'a JSON body needs "image"'),
    ("json_bad_base64", 400, "not valid base64"),
    ("json_not_an_image", 400, "not an image"),
    ("json_too_big", 413, "limit"),
    ("json_nested_too_deep", 400, 'a JSON body is {"image"'),  # json.loads' RecursionError
    ("jpeg_of_many_scans", 400, "scans, over the 100 ferkit decodes"),  # 46 KB, seconds of decoding
])
def test_bad_input_is_a_clear_4xx_and_the_server_stays_up(client, group_jpeg, case, status, message):
    headers = {"content-type": "image/jpeg"}
    if case == "not_an_image":
        response = client.post("/v1/predict", content=b"hello, I am text", headers=headers)
    elif case == "empty":
        response = client.post("/v1/predict", content=b"", headers=headers)
    elif case == "truncated_jpeg":
        response = client.post("/v1/predict", content=group_jpeg[: len(group_jpeg) // 2], headers=headers)
    elif case == "too_big":
        noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
        big = cv2.imencode(".png", noise)[1].tobytes()  # ~2.4 MB, over the 1 MB cap
        response = client.post("/v1/predict", files={"file": ("big.png", big, "image/png")})
    elif case in ("huge_dimensions", "over_the_pixel_limit"):
        side = 20000 if case == "huge_dimensions" else 8000
        response = client.post("/v1/predict", content=png_header_only(side, side), headers={"content-type": "image/png"})
    elif case == "chunked_too_big":  # no Content-Length: the cap must hold while streaming
        chunks = (bytes(256 * 1024) for _ in range(8))
        response = client.post("/v1/predict", content=chunks, headers=headers)
    elif case == "wrong_type":
        response = client.post("/v1/predict", content=group_jpeg, headers={"content-type": "text/plain"})
    elif case == "two_files":  # answering for the first alone would look like the second had no face
        response = client.post("/v1/predict", files=[("file", ("a.jpg", group_jpeg, "image/jpeg")),
                                                     ("file", ("b.jpg", group_jpeg, "image/jpeg"))])
    elif case == "jpeg_of_many_scans":
        response = client.post("/v1/predict", content=jpeg_of_many_scans(2000), headers=headers)
    elif case == "json_nested_too_deep":
        response = client.post("/v1/predict", content=b"[" * 200_000, headers={"content-type": "application/json"})
    elif case.startswith("json"):
        noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
        body = {"json_not_object": [1, 2], "json_no_image": {"img": "x"}, "json_bad_base64": {"image": "@@@"},
                "json_not_an_image": {"image": base64.b64encode(b"hello").decode()},
                "json_too_big": {"image": base64.b64encode(cv2.imencode(".png", noise)[1].tobytes()).decode()}}[case]
        response = client.post("/v1/predict", json=body)
    elif case == "text_file_field":  # curl -F file=<photo.jpg sends the bytes as text
        response = client.post("/v1/predict", data={"file": "not a file"}, files={"other": ("g.jpg", b"x")})
    else:
        response = client.post("/v1/predict", files={"other": ("g.jpg", group_jpeg, "image/jpeg")})
    assert response.status_code == status
    assert message in response.json()["error"]
    assert client.get("/v1/health").status_code == 200


def test_a_photo_sent_as_a_text_field_is_named_so_at_any_size_within_the_limit(tiny_run):
    """`curl -F file=<photo.jpg` with a 1.4 MB photo and a 10 MB limit: not Starlette's own
    "Part exceeded maximum size of 1024KB"."""
    client = TestClient(create_app(str(tiny_run / "model.onnx"), max_upload_mb=10))
    answer = client.post("/v1/predict", data={"file": "x" * 1_400_000}, files={"other": ("g.jpg", b"x")})
    assert answer.status_code == 400 and "is text, not a file" in answer.json()["error"]


def test_base64_json_wrapped_and_escaped_as_encoders_write_it_is_within_the_limit(client, group_jpeg):
    """An image just under the limit, in base64 with MIME's line breaks and JSON's escaped slashes:
    the body outgrows 4/3 of the limit, the image does not."""
    image = group_jpeg + bytes(1024 * 1024 - 2048 - len(group_jpeg))  # JPEG decoders stop at its end marker
    text = base64.encodebytes(image).decode().replace("/", "\\/")
    body = '{"image": "' + text.replace("\n", "\\n") + '"}'
    assert len(body) > 1024 * 1024 * 4 // 3 + 1024  # what the cap was
    answer = client.post("/v1/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert answer.status_code == 200 and len(answer.json()["faces"]) == 3


def test_a_bug_is_a_json_500_and_the_server_stays_up(tiny_run, group_jpeg, monkeypatch):
    from ferkit.server import app as server

    def broken(*args):
        raise KeyError("a bug")

    monkeypatch.setattr(server, "_infer", broken)
    client = TestClient(create_app(str(tiny_run / "model.onnx")), raise_server_exceptions=False)
    answer = client.post("/v1/predict", content=group_jpeg, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 500 and answer.json() == {"error": "internal server error (KeyError)"}
    assert client.get("/v1/health").status_code == 200
    # A web app on another site can read it too: the 500 came without CORS headers
    client = TestClient(create_app(str(tiny_run / "model.onnx"), cors_origins=["https://app.example.com"]),
                        raise_server_exceptions=False)
    answer = client.post("/v1/predict", content=group_jpeg,
                         headers={"content-type": "image/jpeg", "origin": "https://app.example.com"})
    assert answer.status_code == 500 and answer.json() == {"error": "internal server error (KeyError)"}
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"


def test_a_client_gone_mid_upload_is_no_error(tiny_run, caplog):
    """A closed tab mid-upload was a 500 and an ERROR with 60 lines of traceback in the server's log."""
    import anyio

    app = create_app(str(tiny_run / "model.onnx"))
    messages = iter([{"type": "http.request", "body": b"\xff\xd8 part of a photo", "more_body": True}])

    async def then_gone():
        return next(messages, {"type": "http.disconnect"})

    assert anyio.run(_post, app, then_gone)[0] == 499
    assert "Traceback" not in caplog.text and "ERROR" not in caplog.text


def test_the_page_asks_the_api_under_its_own_path(client):
    """Behind a proxy's prefix reached without its trailing slash, the page's relative requests
    still go under the prefix."""
    assert "<base " not in client.get("/").text  # no prefix told: relative to the page's own address
    under = TestClient(client.app, root_path="/emotions").get("/")
    assert under.status_code == 200 and under.text.count('<base href="/emotions/">') == 1


def test_a_class_ferkit_has_no_colour_for_gets_one(tiny_run, monkeypatch):
    """Someone else's model may name a class ferkit's palette lacks: /v1/model still answers."""
    from ferkit.inference import recognizer

    monkeypatch.delitem(recognizer.COLOURS, "sad")
    answer = TestClient(create_app(str(tiny_run / "model.onnx"))).get("/v1/model")
    assert answer.status_code == 200 and answer.json()["colours"]["sad"] == "#ffffff"


async def _post(app, receive) -> tuple[int, dict]:
    """One raw-body POST /v1/predict through the ASGI app, its body from `receive`."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/predict", "raw_path": b"/v1/predict", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"image/jpeg"), (b"host", b"test")],
             "client": ("127.0.0.1", 1), "server": ("test", 80)}
    await app(scope, receive, send)
    return sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def test_a_full_server_refuses_before_reading_and_a_stalled_upload_times_out(tiny_run, monkeypatch):
    """Bodies are read only by requests in flight, so slow or stalled uploads cannot pile up in memory."""
    import anyio

    from ferkit.server import uploads

    monkeypatch.setattr(uploads, "UPLOAD_SECONDS", 0.5)
    app = create_app(str(tiny_run / "model.onnx"), workers=1, queue=0)
    read_by_second = []

    async def stalls():
        await anyio.sleep(3600)

    async def second_body():
        read_by_second.append(True)
        return {"type": "http.request", "body": b"x", "more_body": False}

    async def both():
        results = {}

        async def first():
            results["stalled"] = await _post(app, stalls)
        with anyio.fail_after(30):  # a failure, not an hour's hang, if the upload never times out
            async with anyio.create_task_group() as group:
                group.start_soon(first)
                await anyio.sleep(0.1)  # the first has taken the only place
                results["busy"] = await _post(app, second_body)
        return results

    results = anyio.run(both)
    assert results["busy"][0] == 503 and results["busy"][1]["retry-after"] == "1"
    assert read_by_second == []  # refused without reading its body
    assert results["stalled"][0] == 408
    assert TestClient(app).get("/v1/health").json()["in_flight"] == 0


@pytest.mark.parametrize("stage", ["upload", "inference"])
def test_a_request_cut_off_by_the_server_stopping_is_a_503_to_retry(tiny_run, monkeypatch, stage):
    """uvicorn cancels the requests still running 5 s after Ctrl-C: each was a plain-text 500 and a
    traceback in the log, as if ferkit had a bug."""
    import asyncio
    import time

    import ferkit.server.app as server_app

    monkeypatch.setattr(server_app, "_infer", lambda *args: time.sleep(2) or {"faces": []})
    app = create_app(str(tiny_run / "model.onnx"))
    messages = [{"type": "http.request", "body": b"\xff\xd8 a photo", "more_body": stage == "upload"}]

    async def receive():
        return messages.pop() if messages else await asyncio.sleep(3600)

    async def stopped_meanwhile():
        request = asyncio.create_task(_post(app, receive))
        await asyncio.sleep(0.3)  # the upload stalled, or its inference under way
        request.cancel("Task cancelled, timeout graceful shutdown exceeded")  # as uvicorn does
        return await asyncio.wait_for(request, 1)  # answered at once, not after the inference

    status, headers = asyncio.run(stopped_meanwhile())
    assert status == 503 and headers["retry-after"] == "1" and headers["content-type"] == "application/json"


@pytest.mark.parametrize("options, message", [
    ({"workers": 0}, "at least one worker"),
    ({"workers": -1}, "at least one worker"),
    ({"queue": -1}, "queue must be >= 0"),
    ({"max_upload_mb": 0}, "upload limit must be a positive number"),
    ({"max_upload_mb": float("inf")}, "upload limit must be a positive number"),
    ({"max_upload_mb": float("nan")}, "upload limit must be a positive number"),
    ({"max_upload_mb": 1e303}, r"up to 1048576 \(1 TiB\), got 1e\+303"),
])
def test_settings_that_could_never_serve_are_refused(tiny_run, options, message):
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match=message):
        create_app(str(tiny_run / "model.onnx"), **options)


@pytest.mark.parametrize("port", ["-1", "70000", "http"])
def test_serve_refuses_a_port_that_cannot_exist(port, capsys):
    from ferkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", port])
    assert exit_info.value.code == 2 and "--port" in capsys.readouterr().err


def test_serve_says_a_port_in_use_before_claiming_to_serve(tiny_run, capsys):
    import socket

    from ferkit.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", str(tiny_run / "model.onnx")]) == 2
    out, err = capsys.readouterr()
    assert "serving on" not in out and f"cannot serve on 127.0.0.1:{port}: Address already in use" in err


def test_serve_listens_on_every_address_of_a_name(monkeypatch):
    """`localhost` is ::1 first on many systems: bound alone, clients asking 127.0.0.1 were refused."""
    import socket

    from ferkit.cli import serve

    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 here")
    stream = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
    resolved = [(socket.AF_INET6, *stream, ("::1", 0, 0, 0)), (socket.AF_INET, *stream, ("127.0.0.1", 0))]
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *args, **kw: resolved if host == "localhost" else real(host, *args, **kw))
    sockets = serve._bind("localhost", 0)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET6, socket.AF_INET]
        port = sockets[0].getsockname()[1]
        assert sockets[1].getsockname() == ("127.0.0.1", port)  # one port for both
        for sock, host in zip(sockets, ("::1", "127.0.0.1")):
            sock.listen()
            socket.create_connection((host, port), timeout=5).close()
    finally:
        for sock in sockets:
            sock.close()


def test_serve_on_all_ipv6_addresses_takes_ipv4_clients_too_where_the_system_does():
    """`--host ::` alone: the dual stack of the system stays (it was made IPv6-only)."""
    import socket
    from pathlib import Path

    from ferkit.cli import serve

    flag = Path("/proc/sys/net/ipv6/bindv6only")
    if not flag.is_file() or flag.read_text().strip() != "0":
        pytest.skip("this system binds IPv6 sockets to IPv6 only")
    sockets = serve._bind("::", 0)
    try:
        assert len(sockets) == 1
        sockets[0].listen()
        socket.create_connection(("127.0.0.1", sockets[0].getsockname()[1]), timeout=5).close()
    finally:
        sockets[0].close()


@pytest.mark.parametrize("prefix", [[], ["--root-path", "emotions"]])
def test_serve_on_port_0_prints_an_address_that_works(tiny_run, prefix):
    """The port the system chose; with --root-path, the address under the prefix, which answers
    here as it does through the proxy (it was a 404, and / served a page whose requests all were)."""
    import json
    import re
    import select
    import subprocess
    import sys
    import time
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--port", "0", "--model",
                               str(tiny_run / "model.onnx"), *prefix], stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([server.stdout], [], [], 60)[0], "serve printed nothing in 60 s"
        line = server.stdout.readline()
        url = re.search(r"serving on (http://127\.0\.0\.1:\d+/\S*)", line).group(1)
        assert url.endswith("/emotions/") == bool(prefix)
        deadline = time.time() + 60
        while True:  # the socket is bound before the line is printed, but served once uvicorn starts
            try:
                with urllib.request.urlopen(url + "v1/health", timeout=5) as response:
                    assert json.load(response)["status"] == "ok"
                break
            except OSError:
                assert time.time() < deadline, "the server never answered"
                time.sleep(0.2)
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
        base = re.search(r'<base href="([^"]*)">', page)
        api = url.split("/", 3)[:3]  # where the page's relative requests go, from its <base> if it has one
        with urllib.request.urlopen("/".join(api) + (base.group(1) if base else "/") + "v1/model", timeout=5) as response:
            assert json.load(response)["classes"]
        if prefix:  # and through a proxy that strips it, as before
            with urllib.request.urlopen("/".join(api) + "/v1/model", timeout=5) as response:
                assert json.load(response)["classes"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_client_gone_before_its_turn_costs_no_inference(tiny_run, group_jpeg, monkeypatch):
    """Clients that time out and retry would otherwise queue work for no one, ahead of those still there."""
    import anyio

    import ferkit.server.app as server_app

    inferred = []
    monkeypatch.setattr(server_app, "_infer", lambda *args: inferred.append(1) or {"faces": []})
    app = create_app(str(tiny_run / "model.onnx"))
    messages = iter([{"type": "http.request", "body": group_jpeg, "more_body": False}])

    async def then_gone():
        return next(messages, {"type": "http.disconnect"})

    assert anyio.run(_post, app, then_gone)[0] == 499 and inferred == []

    async def still_there():  # the body, then nothing more: a client waiting for its answer
        message = next(there, None)
        if message is None:
            await anyio.sleep(3600)
        return message

    there = iter([{"type": "http.request", "body": group_jpeg, "more_body": False}])
    assert anyio.run(_post, app, still_there)[0] == 200 and inferred == [1]


def test_an_image_pillow_fails_on_with_another_error_is_a_400(client, group_jpeg, monkeypatch):
    """Pillow's AVIF plugin raised RuntimeError on a corrupt file: a plain-text 500 before."""
    from PIL import Image

    def fails(*args, **kwargs):
        raise RuntimeError("Failed to decode image: Missing or empty image item")

    monkeypatch.setattr(Image, "open", fails)
    response = client.post("/v1/predict", content=group_jpeg, headers={"content-type": "image/avif"})
    assert response.status_code == 400 and "not an image, or a corrupt one" in response.json()["error"]


@pytest.mark.parametrize("suffix", [".pfm", ".hdr"])
def test_images_only_opencv_reads_are_answered_as_predict_answers_them(tiny_run, group_photo, suffix):
    """PFM and Radiance HDR, which Pillow cannot open: the server had called them "not an image"; a
    header claiming too many pixels is still refused before any decode."""
    from ferkit import EmotionRecognizer

    client = TestClient(create_app(str(tiny_run / "model.onnx"), max_upload_mb=10))  # a PFM of it: 3.7 MB
    image = cv2.imencode(suffix, group_photo[0].astype(np.float32) / 255)[1].tobytes()
    response = client.post("/v1/predict", content=image, headers={"content-type": "application/octet-stream"})
    expected = EmotionRecognizer(tiny_run / "model.onnx").detect(image)
    assert response.status_code == 200 and len(expected) == 3
    assert [face["box"] for face in response.json()["faces"]] == [list(face.box) for face in expected]
    huge = {".pfm": b"PF\n20000 20000\n-1\n", ".hdr": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 9000\n"}
    response = client.post("/v1/predict", content=huge[suffix] + bytes(64))
    size = "9000x20000" if suffix == ".hdr" else "20000x20000"
    assert response.status_code == 413 and f"image is {size} pixels" in response.json()["error"]
    crafted = {".pfm": b"PF\n" + b"9" * 5000 + b" 1\n-1\n", ".hdr": b"#?RADIANCE\n\n-Y " + b"9" * 5000 + b" +X 1\n"}
    response = client.post("/v1/predict", content=crafted[suffix] + bytes(64))  # int() refuses 4,301 digits
    assert response.status_code == 400 and "not an image" in response.json()["error"]


def test_a_heic_upload_says_what_it_is(client):
    """An iPhone photo from a desktop browser: "not an image" left the user guessing."""
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    response = client.post("/v1/predict", content=heic, headers={"content-type": "image/heic"})
    assert response.status_code == 400 and "a HEIC/HEIF photo" in response.json()["error"]


def test_cors_lets_only_the_named_web_apps_call_the_api(tiny_run, group_jpeg):
    app = TestClient(create_app(str(tiny_run / "model.onnx"), cors_origins=["https://app.example.com"]))
    preflight = app.options("/v1/predict", headers={"origin": "https://app.example.com",
                                                    "access-control-request-method": "POST",
                                                    "access-control-request-headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    allowed = app.post("/v1/predict", content=group_jpeg,
                       headers={"content-type": "image/jpeg", "origin": "https://app.example.com"})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    busy_header = allowed.headers["access-control-expose-headers"]  # a page can read a 503's Retry-After
    assert "retry-after" in busy_header.lower()
    other = app.post("/v1/predict", content=group_jpeg,
                     headers={"content-type": "image/jpeg", "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    refused = app.options("/v1/predict", headers={"origin": "https://evil.example",
                                                  "access-control-request-method": "POST"})
    assert refused.status_code == 400  # as JSON, like every other error of the API
    assert refused.json()["error"].startswith("Disallowed CORS origin: ") and "--cors-origin" in refused.json()["error"]
    assert "access-control-allow-origin" not in refused.headers
    delete = app.options("/v1/predict", headers={"origin": "https://app.example.com",
                                                 "access-control-request-method": "DELETE"})
    assert delete.status_code == 400 and delete.json()["error"].startswith("Disallowed CORS method: it allows GET")
    assert "--cors-origin" not in delete.json()["error"]  # the origin was named: its method is what is wrong
    # A public web app calling ferkit on localhost or the LAN: Chrome's private-network preflight
    private = app.options("/v1/predict", headers={"origin": "https://app.example.com",
                                                  "access-control-request-method": "POST",
                                                  "access-control-request-private-network": "true"})
    assert private.status_code == 200 and private.headers["access-control-allow-private-network"] == "true"
    anyone = TestClient(create_app(str(tiny_run / "model.onnx"), cors_origins=["*"]))
    private = anyone.options("/v1/predict", headers={"origin": "https://evil.example",
                                                     "access-control-request-method": "POST",
                                                     "access-control-request-private-network": "true"})
    assert private.status_code == 400 and "not *" in private.json()["error"]  # not every site of the web


def test_without_cors_origins_no_other_site_is_allowed(client, group_jpeg):
    answer = client.post("/v1/predict", content=group_jpeg,
                         headers={"content-type": "image/jpeg", "origin": "https://app.example.com"})
    assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers


def test_a_cors_origin_is_put_as_browsers_send_it(tiny_run):
    """Written with capitals or a default port it would never equal a browser's Origin header."""
    app = TestClient(create_app(str(tiny_run / "model.onnx"),
                                cors_origins=["HTTPS://App.Example.com:443", "http://localhost:8080", "http://[::1]:80",
                                              "https://Bücher.example", "https://straße.example"]))
    # a non-ASCII domain as its punycode: what browsers send (UTS 46, ß kept: not strasse)
    for origin in ("https://app.example.com", "http://localhost:8080", "http://[::1]", "https://xn--bcher-kva.example",
                   "https://xn--strae-oqa.example"):
        answer = app.get("/v1/health", headers={"origin": origin})
        assert answer.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("origin", ["https://app.example.com/", "app.example.com", "ftp://a.example",
                                    "https://a.example/page", "", "https://*.example.com", "https://a.example:99999",
                                    "https://user@a.example", "http://[::1", "http://exa mple.com",
                                    "http://example.com:0"])  # a traceback, then two accepted
def test_a_cors_origin_no_browser_would_send_is_refused(tiny_run, origin):
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match="CORS origin is scheme://host"):
        create_app(str(tiny_run / "model.onnx"), cors_origins=[origin])


def test_a_cors_origin_whose_host_is_no_domain_name_is_refused(tiny_run):
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match="a CORS origin's host must be a valid domain name; got 'https://exa\u2603mple.com'"):
        create_app(str(tiny_run / "model.onnx"), cors_origins=["https://exa\u2603mple.com"])


def test_serve_behind_a_proxy_path_and_for_other_sites(tiny_run, monkeypatch):
    """--root-path reaches uvicorn (so /docs asks for /emotions/openapi.json), --cors-origin the app."""
    import uvicorn

    from ferkit.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: seen.update(config=server.config))
    assert main(["serve", "--port", "0", "--model", str(tiny_run / "model.onnx"), "--root-path", "emotions/",
                 "--cors-origin", "https://a.example", "--cors-origin", "http://localhost:3000"]) == 0
    config = seen["config"]
    assert config.root_path == "/emotions"
    docs = TestClient(config.app, root_path=config.root_path).get("/docs")
    assert "/emotions/openapi.json" in docs.text
    answer = TestClient(config.app).get("/v1/health", headers={"origin": "http://localhost:3000"})
    assert answer.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_multipart_upload_is_closed_once_read(client, group_jpeg, monkeypatch):
    """Starlette spools an uploaded file over 1 MB to a temporary file: closed at once, not when
    the garbage collector gets to the request."""
    from starlette.datastructures import UploadFile

    closed, close = [], UploadFile.close

    async def recording_close(self):
        closed.append(self.filename)
        await close(self)

    monkeypatch.setattr(UploadFile, "close", recording_close)
    answer = client.post("/v1/predict", files={"file": ("g.jpg", group_jpeg, "image/jpeg")})
    assert answer.status_code == 200 and closed == ["g.jpg"]


def test_model_answers_with_odd_words_in_a_hand_edited_metrics_file(tiny_run, tmp_path):
    """/v1/model is typed: a split written as a number in someone's metrics.json is said as text,
    not a 500."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "split": 3}))
    answer = TestClient(create_app(str(run / "model.onnx"))).get("/v1/model")
    assert answer.status_code == 200 and answer.json()["evaluated_on"] == "3"


def test_model_says_the_accuracy_on_faces_the_model_never_trained_on(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    unseen = {"faces": 30, "repeats": 2, "accuracy": 0.625, "macro_f1": 0.6}
    (run / "metrics.json").write_text(json.dumps({**metrics, "unseen": unseen}), encoding="utf-8")
    assert TestClient(create_app(str(run))).get("/v1/model").json()["unseen_accuracy"] == 0.625
    bundled = TestClient(create_app("default")).get("/v1/model").json()
    assert bundled["unseen_accuracy"] == pytest.approx(0.6818, abs=1e-4)  # its metrics.json, session 53
    # A null in a hand-edited file is no figure, not a 500 on every /v1/model
    (run / "metrics.json").write_text(json.dumps({**metrics, "unseen": None}), encoding="utf-8")
    answer = TestClient(create_app(str(run))).get("/v1/model")
    assert answer.status_code == 200 and answer.json()["unseen_accuracy"] is None


def test_the_server_classifies_the_largest_100_faces_unless_told_otherwise(tiny_run, astronaut):
    """891 faces in a 511 KB upload took 7.7 s of one worker: YuNet finds up to 5,000."""
    head = cv2.resize(astronaut[30:250, 140:320], (40, 48))
    grid = cv2.imencode(".png", np.tile(head, (13, 13, 1)))[1].tobytes()  # 169 faces
    def found(**options):
        client = TestClient(create_app(str(tiny_run / "model.onnx"), **options))
        return len(client.post("/v1/predict", content=grid, headers={"content-type": "image/png"}).json()["faces"])
    assert found() == 100 and found(max_faces=500) > 100


def _status(app, path: str, root_path: str, prefixed: bool) -> int:
    """The status of a GET of `path`, with scope["path"] as uvicorn gives it (root_path before it:
    `prefixed`) or as other servers and Starlette's TestClient do."""
    import anyio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": root_path + path if prefixed else path, "raw_path": path.encode(), "query_string": b"",
             "root_path": root_path, "headers": [(b"host", b"test")], "server": ("test", 80), "client": ("c", 1)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent[0]["status"]


@pytest.mark.parametrize("prefixed", [True, False])
def test_a_path_that_still_carries_the_root_path_is_answered(client, prefixed):
    """Through a proxy that strips /emotions, and asked directly with it on, under both ASGI
    conventions; a prefix named as ferkit's own /v1 is left alone, where it would be ambiguous."""
    app = client.app
    assert _status(app, "/v1/model", "/emotions", prefixed) == 200
    assert _status(app, "/emotions/v1/model", "/emotions", prefixed) == 200
    assert _status(app, "/emotions/", "/emotions", prefixed) == 200  # the page
    assert _status(app, "/emotions2/v1/model", "/emotions", prefixed) == 404
    if prefixed:  # (the other convention's /v1/model under /v1 is Starlette's own ambiguity: /model)
        assert _status(app, "/v1/model", "/v1", prefixed) == 200


def test_serve_refuses_a_root_path_named_as_its_own_paths(tiny_run, capsys, monkeypatch):
    import uvicorn

    from ferkit.cli import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("it served"))
    assert main(["serve", "--port", "0", "--model", str(tiny_run / "model.onnx"), "--root-path", "/v1"]) == 2
    assert "--root-path /v1 begins as one of ferkit's own paths" in capsys.readouterr().err


def test_a_misspelt_annotated_is_named_not_ignored(client, group_jpeg):
    """`?annotate=true` (a typo) had answered JSON where a PNG was asked for; a gateway's own
    parameters are none of ferkit's and pass."""
    answer = client.post("/v1/predict?annotate=true", content=group_jpeg, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 422 and answer.json()["error"] == \
        "unknown query parameter annotate: did you mean annotated=true?"
    for query in ("annotated=false", "api_key=x&_=1712345678", "utm_source=x"):
        assert client.post(f"/v1/predict?{query}", content=group_jpeg,
                           headers={"content-type": "image/jpeg"}).status_code == 200, query


def test_an_option_sent_in_the_body_is_named_not_ignored(client, group_jpeg):
    """{"image": ..., "annotated": true}, or a form field annotated=true, had answered JSON where a PNG
    was asked for, without a word: options are query parameters."""
    import base64

    encoded = base64.b64encode(group_jpeg).decode()
    said = "holds the image; 'annotated' goes in the URL's query (?annotated=true)"
    answer = client.post("/v1/predict", json={"image": encoded, "annotated": True})
    assert answer.status_code == 422 and answer.json()["error"] == f"the JSON body {said}"
    answer = client.post("/v1/predict", files={"file": ("a.jpg", group_jpeg, "image/jpeg")}, data={"annotate": "1"})
    assert answer.status_code == 422 and "the form holds the image; 'annotate' goes in" in answer.json()["error"]
    # Other fields are none of ferkit's (a client's file name, a form's CSRF token), and pass, as before
    assert client.post("/v1/predict", json={"image": encoded, "filename": "a.jpg"}).status_code == 200
    assert client.post("/v1/predict", files={"file": ("a.jpg", group_jpeg, "image/jpeg")},
                       data={"csrf_token": "x", "submit": "Send"}).status_code == 200


def test_a_json_body_of_many_brackets_is_refused_unparsed(client, monkeypatch):
    """Millions of {} are some 24 times their size as Python objects, parsed holding the GIL, outside
    the worker limit: refused before json.loads sees them (a 400 as before, without the cost)."""
    import json

    with monkeypatch.context() as patched:
        patched.setattr(json, "loads", lambda *args, **kwargs: pytest.fail("parsed"))
        answer = client.post("/v1/predict", content=b"[" + b"{}," * 300_000 + b"{}]",
                             headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"].startswith('a JSON body is {"image"')


def test_annotated_alone_asks_for_the_image(client, group_jpeg):
    """`?annotated` with no value, as a flag is written, had been a 422; a value that is no yes or
    no still is."""
    for query, kind in (("annotated", "image/png"), ("annotated=", "image/png"), ("annotated=0", "application/json")):
        answer = client.post(f"/v1/predict?{query}", content=group_jpeg, headers={"content-type": "image/jpeg"})
        assert answer.status_code == 200 and answer.headers["content-type"] == kind, query
    maybe = client.post("/v1/predict?annotated=maybe", content=group_jpeg, headers={"content-type": "image/jpeg"})
    assert maybe.status_code == 422 and "annotated" in maybe.json()["error"]


def test_a_multipart_upload_cut_short_says_so(client, group_jpeg):
    """A `file` part with no closing boundary had been told it lacked the field 'file'."""
    boundary = "XyZ"
    body = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            "content-type: image/jpeg\r\n\r\n").encode() + group_jpeg[:5000]
    answer = client.post("/v1/predict", content=body,
                         headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 400 and "cut short" in answer.json()["error"]
    other_field = client.post("/v1/predict", files={"image": ("file", group_jpeg, "image/jpeg")})  # named "file"
    assert other_field.status_code == 400 and "needs an image in the field 'file'" in other_field.json()["error"]



def test_an_annotated_answer_keeps_its_place_until_it_is_sent(tiny_run, group_jpeg, monkeypatch):
    """A client that never read its annotated PNG (some 100 MB for a 50-megapixel photo) had its
    place in flight given to the next request, its answer left in memory, without bound. Now the
    place is kept until the answer is sent, or for UPLOAD_SECONDS at most."""
    import socket
    import threading
    import time
    import urllib.error
    import urllib.request

    import uvicorn

    from ferkit.server import uploads

    monkeypatch.setattr(uploads, "UPLOAD_SECONDS", 3)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(str(tiny_run / "model.onnx"), workers=1, queue=0),
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()

    def status_of_another() -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", data=group_jpeg,
                                         headers={"content-type": "image/jpeg"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    noise = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    photo = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()  # a PNG of ~12 MB back
    try:
        deadline = time.time() + 30
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        with socket.socket() as reader:  # one that reads the status line of its answer, then nothing
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.settimeout(60)
            reader.connect(("127.0.0.1", port))
            reader.sendall(b"POST /v1/predict?annotated=true HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                           + f"Content-Length: {len(photo)}\r\n\r\n".encode() + photo)
            assert reader.recv(12) == b"HTTP/1.1 200"  # being sent: the work is done
            assert status_of_another() == 503  # its place still held
            deadline = time.time() + 20  # given up UPLOAD_SECONDS (3 s here) after sending began
            while (status := status_of_another()) == 503 and time.time() < deadline:
                time.sleep(0.2)
            assert status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
