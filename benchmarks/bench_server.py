"""Bounded load test of `ferkit serve` on loopback: requests/s, p50/p99 latency, error counts.

    python benchmarks/bench_server.py [--requests 2000] [--concurrency 8] [--model default] [--side 7000]

Starts its own server on 127.0.0.1 (a free port), sends one-face JPEGs (scikit-image's bundled
public-domain astronaut portrait), and stops the server when done; with `--side`, a PNG of that
many pixels a side instead (the portrait on a plain ground: a small file of many pixels, the case
that costs the server memory). Prints the server's peak memory (Linux). Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter

import cv2
import httpx
import numpy as np


def one_face_image(side: int | None) -> tuple[bytes, str, str]:
    """The upload, its content type, and what it is in words."""
    from skimage import data as skdata

    portrait = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:360]
    canvas = np.full((side or 480, side or 640, 3), 90, np.uint8)
    top, left = (canvas.shape[0] - 300) // 2, (canvas.shape[1] - 260) // 2
    canvas[top:top + 300, left:left + 260] = portrait
    if side:
        body = cv2.imencode(".png", canvas)[1].tobytes()
        return body, "image/png", f"one {side}x{side} PNG ({len(body) // 1024} KB"
    body = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    return body, "image/jpeg", f"one 640x480 JPEG ({len(body) // 1024} KB"


def peak_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB; NaN where /proc has none."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return float("nan")


async def load(url: str, body: bytes, kind: str, total: int, concurrency: int):
    latencies, statuses, queue = [], Counter(), iter(range(total))
    async with httpx.AsyncClient(timeout=60) as client:
        async def worker():
            for _ in queue:
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers={"content-type": kind})
                    statuses[response.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, np.array(latencies) * 1000, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model", default="default")
    parser.add_argument("--side", type=int, help="send a PNG this many pixels a side instead of the 640x480 JPEG")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    args = parser.parse_args()
    if args.side is not None and args.side < 300:
        parser.error(f"--side: at least 300 (the portrait's height), got {args.side}")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--port", str(port),
                               "--model", args.model, "--workers", str(args.workers), "--max-upload-mb", "100"],
                              stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        idle = peak_mb(server.pid)
        body, kind, what = one_face_image(args.side)
        first = httpx.post(base + "/v1/predict", content=body, headers={"content-type": kind}, timeout=120)
        faces, one = len(first.json()["faces"]), peak_mb(server.pid)
        elapsed, ms, statuses = asyncio.run(load(base + "/v1/predict", body, kind, args.requests, args.concurrency))
        loaded = peak_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    errors = sum(n for code, n in statuses.items() if not (isinstance(code, int) and code < 500))
    print(f"{args.requests} requests, {args.concurrency} concurrent, {what}, {faces} face) against {base} "
          f"(--workers {args.workers})")
    print(f"  {args.requests / elapsed:.1f} requests/s   p50 {np.percentile(ms, 50):.1f} ms   "
          f"p99 {np.percentile(ms, 99):.1f} ms   max {ms.max():.1f} ms")
    print(f"  status codes: {dict(statuses)}   5xx/transport errors: {errors}")
    print(f"  server peak memory: {idle:.0f} MB started, {one:.0f} MB after one request, {loaded:.0f} MB after all")


if __name__ == "__main__":
    main()
