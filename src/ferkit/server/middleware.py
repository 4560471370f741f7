"""The API's middleware: its errors in its own JSON shape, whichever layer answers; and a large
answer that keeps its request's place until it is sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response


class CrashAsJSON:
    """A bug's 500 in the API's own JSON shape, the traceback logged as uvicorn logs one. A middleware
    inside the CORS one, so that a web app on another site can read the answer too: Starlette's
    handler for Exception answers from outside every middleware, without CORS headers.

    A request the server cuts off as it stops (uvicorn cancels those still running 5 s after Ctrl-C
    or SIGTERM) is a 503 to retry elsewhere, not uvicorn's plain-text 500 and a traceback: nothing
    went wrong, and a load balancer or client retries a 503 by itself."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            if started:
                raise
            # The task's cancellation is taken here, at its top: the answer is all that is left to do
            answer = JSONResponse({"error": "the server is stopping: retry shortly"}, status_code=503,
                                  headers={"Retry-After": "1", "Connection": "close"})
            await answer(scope, receive, send)
        except Exception as exc:
            if started:  # half an answer sent: nothing to do but let the server end the connection
                raise
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
            answer = JSONResponse({"error": f"internal server error ({type(exc).__name__})"}, status_code=500)
            await answer(scope, receive, send)


class JSONErrorCORS(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflight is a JSON error like every other answer
    of this API rather than its plain text."""

    def preflight_response(self, request_headers):
        answer = super().preflight_response(request_headers)
        if answer.status_code == 200:
            return answer
        headers = {key: value for key, value in answer.headers.items()
                   if key not in ("content-length", "content-type")}
        said = answer.body.decode()  # "Disallowed CORS origin, method, headers, private-network"
        why = ("the server lets only the web apps named with --cors-origin call it from a browser"
               if "origin" in said else
               "only web apps named with --cors-origin (not *) may call the server on a private network"
               if "private-network" in said else f"it allows {', '.join(sorted(self.allow_methods))} and any header")
        return JSONResponse({"error": f"{said}: {why}"}, status_code=answer.status_code, headers=headers)


class PrefixAnsweredToo:
    """With --root-path /emotions a proxy strips the prefix before ferkit sees a request; one that
    reaches ferkit with the prefix still on (the address `serve` prints, opened on its machine, or a
    proxy that passes paths whole) is answered as the proxy's would be. It was a 404, and the page
    served at / asked for /emotions/v1/..., so without the proxy nothing worked. A prefix named as
    one of ferkit's own paths (/v1) is left alone: /v1/model would be ambiguous."""

    def __init__(self, app, router):
        self.app, self.router, self._clash = app, router, {}

    async def __call__(self, scope, receive, send):
        root = scope.get("root_path", "").rstrip("/")
        if root and root not in self._clash:  # the routes are all added by the first request
            self._clash[root] = clashes(root, self.router.routes)
        if root and scope["type"] in ("http", "websocket") and not self._clash[root]:
            # uvicorn puts root_path before the path it was asked for, other servers do not (ASGI
            # allows both): a path under the prefix twice is one asked for with the prefix on
            asked = _under(scope["path"], root)
            if asked is not None and (again := _under(asked, root)) is not None:
                scope = {**scope, "path": root + again}
        await self.app(scope, receive, send)


def clashes(root: str, routes) -> bool:
    """Whether a prefix begins as one of the app's own paths do (/v1, /docs)."""
    return root.strip("/").split("/")[0] in {route.path.strip("/").split("/")[0] for route in routes}


def _under(path: str, root: str) -> str | None:
    """The path under `root` ("/" for root itself), or None where it is not under it."""
    if path == root or path.startswith(root + "/"):
        return path[len(root):] or "/"
    return None


class HeldUntilSent(Response):
    """An answer too large to let go of early (an annotated image: a PNG of up to some 100 MB for a
    50-megapixel photo) keeps its request's place among those in flight until it is sent, or for
    `seconds` at most. Given up when the handler returned, each answer a client did not read had
    stayed in memory while the next request took its place, without bound."""

    def __init__(self, content: bytes, media_type: str, release: Callable[[], None], seconds: float):
        super().__init__(content, media_type=media_type)
        self.release, self.seconds = release, seconds

    CHUNK = 256 * 1024  # sent in parts: uvicorn waits for a slow reader only between its writes

    async def __call__(self, scope, receive, send) -> None:
        try:
            with anyio.move_on_after(self.seconds):  # a client that reads nothing: its connection ends
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                body = memoryview(self.body)
                for at in range(0, max(len(body), 1), self.CHUNK):
                    await send({"type": "http.response.body", "body": bytes(body[at:at + self.CHUNK]),
                                "more_body": at + self.CHUNK < len(body)})
        finally:
            self.release()
