"""The HTTP API and web page (FastAPI): the model loaded once, inference off the event loop.

Hardened against bad input: a request takes its place among those in flight before its body is
read (so a crowd of slow or stalled uploads holds at most that many bodies in memory), every
upload is size-capped and time-limited as it arrives, its pixel count is checked from the header
before it is decoded, and each failure is a 4xx JSON error.
"""

from __future__ import annotations

import html
import threading
import time
from importlib import resources
from pathlib import Path
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
import cv2
import idna  # anyio's own dependency
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ferkit import __version__
from ferkit.errors import FerkitError
from ferkit.inference.backends import DEFAULT_MODEL, load_backend, recorded_metrics
from ferkit.inference.images import decode_image
from ferkit.inference.recognizer import COLOURS, UNKNOWN_COLOUR, EmotionRecognizer
from ferkit.server import uploads
from ferkit.server.middleware import CrashAsJSON, HeldUntilSent, JSONErrorCORS, PrefixAnsweredToo


class FaceResult(BaseModel):
    box: tuple[int, int, int, int] = Field(description="x, y, width, height in the image's pixels")
    label: str = Field(description="the most likely emotion")
    confidence: float = Field(description="its probability")
    scores: dict[str, float] = Field(description="every emotion's probability")
    detection_score: float | None = Field(description="how sure the face detector is that this is a face "
                                                      "(YuNet); null from Haar, which gives no score")
    landmarks: dict[str, tuple[float, float]] | None = Field(
        description="x, y of right_eye, left_eye, nose, mouth_right, mouth_left (the person's own right, "
                    "on the image's left), from YuNet; null from Haar")


class Prediction(BaseModel):
    faces: list[FaceResult]
    model: str = Field(description="the model's name: default (the bundled one), or its file or run directory")
    elapsed_ms: float


class Error(BaseModel):
    error: str


class Health(BaseModel):
    status: str = Field(description='"ok" whenever the server answers')
    in_flight: int = Field(description="requests being received or worked on now")


class ModelDescription(BaseModel):
    classes: list[str] = Field(description="the emotions the model tells apart, in its output order")
    image_size: int = Field(description="the side of the square grey face the model takes, in pixels")
    model: str = Field(description="default (the bundled one), or its file or run directory's name")
    detector: str = Field(description="the face detector: yunet or haar")
    version: str = Field(description="ferkit's version")
    recipe: str | None = Field(description="the training recipe, when the model says")
    accuracy: float | None = Field(description="accuracy measured when it was trained or bundled")
    macro_f1: float | None = Field(description="the mean of the per-class F1 scores, measured with it")
    evaluated_on: str | None = Field(description="the faces those were measured on")
    unseen_accuracy: float | None = Field(description="accuracy on those of them that repeat no face the model "
                                                      "trained on, where some do (FER2013's PublicTest: 280 of 3,589)")
    colours: dict[str, str] = Field(description="each emotion's colour in annotated images, #rrggbb")
    max_upload_mb: float = Field(description="the largest image /v1/predict takes, in MB")
    max_megapixels: float = Field(description="the most pixels an image /v1/predict takes may have, in millions")


_BINARY = {"schema": {"type": "string", "format": "binary"}}
# The endpoint reads its body itself (to cap and time it as it arrives), so FastAPI cannot infer it.
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "image/*": _BINARY, "application/octet-stream": _BINARY,
    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {"image": {
        "type": "string", "description": "the image in base64, or a data: URL (data:image/jpeg;base64,...)"}}}}}}}
PREDICT_RESPONSES = {
    200: {"model": Prediction, "description": "the faces found, or with ?annotated=true the image with them drawn",
          "content": {"image/png": {}}},
    **{status: {"model": Error, "description": why} for status, why in (
        (400, "not an image, a corrupt one, an empty upload, two files, or JSON without a base64 image"),
        (408, "the upload did not arrive in time"), (413, "over the size or pixel limit"),
        (415, "neither an image, multipart/form-data nor JSON"), (422, "a bad query parameter"),
        (503, "too many requests in flight: retry after the Retry-After seconds"))}}


# Each face found is classified (by four networks in the bundled model, five times over with --tta),
# and YuNet finds up to 5,000: a 745 KB upload of 480 small faces took 3.4 s of a worker here (the
# three-network bundle of session 43), 0.84 s with the largest 100 alone, which are classified
# unless `--max-faces` says otherwise.
SERVER_MAX_FACES = 100


class Engine:
    """One loaded model shared by worker threads, each with its own (non-thread-safe) detector."""

    def __init__(self, model: str, detector: str, workers: int, queue: int, options: dict[str, Any]):
        if workers < 1:  # no worker slot: requests would wait for ever
            raise FerkitError(f"the server needs at least one worker (--workers), got {workers}")
        if queue < 0:
            raise FerkitError(f"the server's queue must be >= 0, got {queue}")
        self.options = {key: value for key, value in options.items() if key != "threads"}
        if self.options.get("max_faces") is None:  # --max-faces raises or lowers it
            self.options["max_faces"] = SERVER_MAX_FACES
        self.backend = load_backend(model, options.get("threads"))
        # Clients see a name, not this machine's file paths.
        self.name = DEFAULT_MODEL if model == DEFAULT_MODEL else Path(model).absolute().name  # file or run
        self.metrics = recorded_metrics(self.backend)
        self.detector_name = detector
        self._local = threading.local()
        self.recognizer()  # a bad detector or option fails at start-up, not on the first request
        self.limiter = anyio.CapacityLimiter(workers)  # a request's turn, taken before its work starts
        self.threads = anyio.CapacityLimiter(workers)  # as many threads, so never waited on
        self.max_in_flight, self.in_flight = workers + queue, 0

    def release(self) -> None:
        """A request's place among those in flight, given up."""
        self.in_flight -= 1

    def recognizer(self) -> EmotionRecognizer:
        if not hasattr(self._local, "recognizer"):
            self._local.recognizer = EmotionRecognizer(self.backend, self.detector_name, **self.options)
        return self._local.recognizer


MOST_UPLOAD_MB = 1024 * 1024  # an upload is read into memory: more than any server has

# `?annotated` alone asks for the image, as a flag does on a command line (it had been a 422)
Flag = Annotated[bool, BeforeValidator(lambda value: True if value == "" else value)]


def create_app(model: str = "default", detector: str = "yunet", max_upload_mb: float = 10,
               workers: int = 2, queue: int = 16, cors_origins: Sequence[str] = (), **options: Any) -> FastAPI:
    """The app serving `model`; `options` are EmotionRecognizer's (threads, tta, align, min_size, ...).

    `cors_origins`: the web apps (`https://app.example.com`, or `*` for any) whose pages may call the
    API from the browser; browsers block such calls from other sites unless the server allows them."""
    if not 0 < max_upload_mb <= MOST_UPLOAD_MB:  # 1e303 MB overflowed to a traceback once the model had loaded
        raise FerkitError(f"the upload limit must be a positive number of MB up to {MOST_UPLOAD_MB} (1 TiB), "
                          f"got {max_upload_mb}")
    origins = [_check_origin(origin) for origin in cors_origins]
    engine = Engine(model, detector, workers, queue, options)
    app = FastAPI(title="ferkit", version=__version__,
                  description="Facial emotion recognition: faces, boxes and per-class scores.")
    app.add_middleware(CrashAsJSON)  # added first: the innermost middleware
    if origins:  # the browser's preflight for a POST with a body is answered here, before any route
        # Private network too: the usual caller is a public web app and ferkit on localhost or the LAN,
        # which Chrome's private-network preflight asks about; refused, its page could not call ferkit
        app.add_middleware(JSONErrorCORS, allow_origins=origins, allow_methods=["GET", "HEAD", "POST"],
                           allow_headers=["*"], expose_headers=["Retry-After"], max_age=600,
                           allow_private_network="*" not in origins)  # not every site of the web
    app.add_middleware(PrefixAnsweredToo, router=app.router)
    _errors_as_json(app)
    _page_and_description(app, engine, max_upload_mb)
    _prediction(app, engine, int(max_upload_mb * 1024 * 1024))
    return app


def _errors_as_json(app: FastAPI) -> None:
    """Every error as {"error": ...}, as the API's own are: FastAPI answers some in other shapes."""
    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException too, and 404/405
    async def _json_error(request: Request, exc: StarletteHTTPException):
        # headers: a 405's Allow, a 503's Retry-After
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": "; ".join(_where(e) + e["msg"] for e in exc.errors())}, status_code=422)


def _page_and_description(app: FastAPI, engine: Engine, max_upload_mb: float) -> None:
    """The web page, the health check and the model's description."""
    # HEAD too: uptime checkers and `curl -I` use it
    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> str:
        # Its requests are relative: to the page's own address, which works under a proxy's prefix
        # that the server is not told of, as long as the address ends in a slash; to <base>, the
        # app's root, where it is told (--root-path), so that https://host/emotions works too
        text = (resources.files("ferkit.server") / "static" / "index.html").read_text(encoding="utf-8")
        root = request.scope.get("root_path", "").rstrip("/")
        return text.replace("<head>", f'<head>\n<base href="{html.escape(root, quote=True)}/">', 1) if root else text

    @app.get("/v1/health")
    async def health() -> Health:
        return Health(status="ok", in_flight=engine.in_flight)

    @app.get("/v1/model")
    async def model_info() -> ModelDescription:
        info = engine.backend.info
        return ModelDescription(
            classes=list(info.classes), image_size=info.image_size, model=engine.name,
            detector=engine.detector_name, version=__version__, recipe=_text(info.config.get("recipe")),
            accuracy=engine.metrics.get("accuracy"), macro_f1=engine.metrics.get("macro_f1"),
            evaluated_on=_text(engine.metrics.get("split")),
            unseen_accuracy=engine.metrics.get("unseen", {}).get("accuracy"),
            colours={name: "#{2:02x}{1:02x}{0:02x}".format(*COLOURS.get(name, UNKNOWN_COLOUR))
                     for name in info.classes},
            max_upload_mb=max_upload_mb, max_megapixels=uploads.MAX_PIXELS / 1e6)

    for path, endpoint in (("/v1/health", health), ("/v1/model", model_info)):  # one operation each in /docs
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)


def _prediction(app: FastAPI, engine: Engine, max_bytes: int) -> None:
    """POST /v1/predict: an upload's faces, or the image annotated, a bounded number at once."""
    @app.post("/v1/predict", openapi_extra=UPLOAD_BODY, responses=PREDICT_RESPONSES)
    async def predict(request: Request, annotated: Flag = False):
        """An image as multipart field `file`, as the raw body, or in base64 as JSON {"image": ...};
        JSON faces, or the annotated image."""
        typos = [name for name in uploads.like_annotated(request.query_params) if name != "annotated"]
        if typos:  # ?annotate=true had answered JSON where a PNG was asked for, without a word; other
            # parameters (a gateway's api_key, tracking tags) are none of ferkit's, and pass
            raise HTTPException(422, f"unknown query parameter {typos[0]}: did you mean annotated=true?")
        if engine.in_flight >= engine.max_in_flight:  # before reading the body: refused ones cost no memory
            raise HTTPException(503, "server busy: too many requests in flight, retry shortly",
                                headers={"Retry-After": "1"})
        engine.in_flight += 1
        answer = None
        try:
            try:
                data = await uploads.read_upload(request, max_bytes)
            except ClientDisconnect:  # a closed tab, a phone gone out of range: no one to answer, no bug
                return Response(status_code=499)
            async with engine.limiter:
                # A client gone while it queued (timed out, retrying): its work would be for no one,
                # and would keep the clients still there waiting
                if await request.is_disconnected():
                    return Response(status_code=499)  # as nginx logs it: the client closed the request
                answer = await anyio.to_thread.run_sync(_infer, engine, data, annotated, limiter=engine.threads)
                if annotated:  # up to some 100 MB: its place is given up once it is sent
                    answer = HeldUntilSent(answer, "image/png", engine.release, uploads.UPLOAD_SECONDS)
                return answer
        finally:
            if not isinstance(answer, HeldUntilSent):
                engine.release()


def _check_origin(origin: str) -> str:
    """The origin as a browser sends it (scheme://host[:port], lower case, no default port): the CORS
    check compares strings, and one written any other way would never match, leaving the API blocked
    with no error on the server's side. What cannot be put so (a path, a trailing slash, a
    wildcard host) is refused."""
    if origin == "*":
        return origin
    refused = FerkitError(f"a CORS origin is scheme://host[:port] with nothing after it (e.g. "
                          f"https://app.example.com), or * for any; got {origin!r}")
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:  # "http://[::1": an unclosed IPv6 bracket, or a port that is no number
        raise refused from None
    host = parts.hostname or ""
    if (parts.scheme.lower() not in ("http", "https") or not host or "*" in host or port == 0
            or any(c.isspace() for c in host)
            or parts.path or parts.query or parts.fragment or parts.username or parts.password):
        raise refused
    scheme = parts.scheme.lower()
    try:  # browsers send a non-ASCII domain as its punycode (https://bücher.example: xn--bcher-kva), by
        # UTS 46 without the transitional mapping (ß stays ß), which Python's own idna codec lacks
        host = host if host.isascii() else idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (UnicodeError, idna.IDNAError):
        raise FerkitError(f"a CORS origin's host must be a valid domain name; got {origin!r}") from None
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def _text(value: Any) -> str | None:
    """A model's own words (its recipe, the split its metrics came from) as text: a hand-edited or
    another tool's file may hold anything there, and /v1/model must still answer."""
    return None if value is None else str(value)


def _where(error: dict) -> str:
    """`annotated: ` for a query parameter's error, so the message names what was wrong."""
    names = [str(part) for part in error.get("loc", ()) if part not in ("query", "body", "path", "header")]
    return f"{'.'.join(names)}: " if names else ""


def _infer(engine: Engine, data: bytes, annotated: bool):
    started = time.perf_counter()
    uploads.check_image(data)
    try:
        image = decode_image(data, "upload")
    except FerkitError as exc:
        raise HTTPException(400, str(exc)) from None
    rec = engine.recognizer()
    faces = rec.detect(image)
    if annotated:
        ok, png = cv2.imencode(".png", rec.annotate(image, faces))
        if not ok:
            raise HTTPException(500, "the annotated image could not be encoded")
        return png.tobytes()
    return {"faces": [f.to_dict() for f in faces], "model": engine.name,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 2)}
