"""`ferkit serve`: the REST API and web page on uvicorn."""

from __future__ import annotations

import argparse
import logging
import socket

from ferkit.cli._common import add_model_options, keras_imported_quietly, nonempty, recognizer_options

log = logging.getLogger("ferkit")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="REST API and web page (upload a photo or use the webcam)",
                       description="POST /v1/predict, GET /v1/health, GET /v1/model, the page at /, docs at /docs.")
    p.add_argument("--host", default="127.0.0.1", type=nonempty)
    p.add_argument("--port", type=_port, default=8000)
    add_model_options(p)  # the same faces and scores as `ferkit predict` with the same flags
    p.add_argument("--max-upload-mb", type=float, default=10,
                   help="largest upload accepted, in MB (default 10); larger ones get a 413")
    p.add_argument("--workers", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (https://app.example.com; * for any) call the API "
                        "from the browser; repeat for more")
    p.add_argument("--root-path", type=_root_path, default="", metavar="PREFIX",
                   help="the path a reverse proxy serves ferkit under (/emotions), for /docs' links")
    p.set_defaults(run=run)


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def _root_path(text: str) -> str:
    """/emotions however it is written (emotions, /emotions/): the form ASGI's root_path takes."""
    return "/" + text.strip("/") if text.strip("/") else ""


def run(args: argparse.Namespace) -> int:
    from ferkit.errors import FerkitError

    try:
        import uvicorn

        from ferkit.server import create_app
        from ferkit.server.middleware import clashes
    except ImportError as exc:
        raise FerkitError(f"the server needs its extra ({exc.name} is missing): pip install 'ferkit[serve]'") from None
    options = recognizer_options(args)
    sockets = _bind(args.host, args.port)  # before the model: a port in use is said before seconds of loading
    keras_imported_quietly(args.model)
    app = create_app(args.model, args.detector, args.max_upload_mb, args.workers,
                     cors_origins=args.cors_origin, **options)
    if args.root_path and clashes(args.root_path, app.routes):
        raise FerkitError(f"--root-path {args.root_path} begins as one of ferkit's own paths do (/v1/..., "
                          "/docs): choose another prefix")
    host, port = sockets[0].getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets, as URLs write it
    # With --root-path, the address under the prefix: it works here as well as through the proxy
    print(f"ferkit serving on http://{address}{args.root_path}/  (API docs at {args.root_path}/docs)", flush=True)
    # Stopping (Ctrl-C, SIGTERM) waits 5 s at most for requests in progress: one stalled upload kept
    # it waiting up to two minutes, past the 10 s Docker and systemd give before they kill
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5, root_path=args.root_path)
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def _bind(host: str, port: int) -> list[socket.socket]:
    """The sockets bound before the address is printed: a port in use (or a host this machine does not
    have) is a one-line error instead of a "serving on" line followed by uvicorn's, and `--port 0`
    prints the port the system chose. Every address of a name is bound, as uvicorn does: `localhost`
    is ::1 first on many systems, and bound alone it refused every client that asked 127.0.0.1."""
    from ferkit.errors import FerkitError

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:  # socket.gaierror
        raise FerkitError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    found = list(dict.fromkeys(found))
    # ::1 beside 127.0.0.1, not over it; `--host ::` alone keeps the system's dual stack
    v6_only = any(family == socket.AF_INET for family, *_ in found)
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in found:
        if sockets:  # the port the first one got (--port 0), for every address
            address = (address[0], sockets[0].getsockname()[1], *address[2:])
        try:
            sockets.append(_bound(family, kind, proto, address, v6_only))
        except OSError as exc:
            if not sockets:  # the first address is the one that must work; others are a bonus, said
                raise FerkitError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
            log.warning("%s is also %s, where ferkit cannot listen (%s): serving on %s only", host, address[0],
                        exc.strerror or exc, sockets[0].getsockname()[0])
    return sockets


def _bound(family, kind, proto, address, v6_only: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
        if family == socket.AF_INET6 and v6_only:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
