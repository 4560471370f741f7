"""Bounded load test of `ferkit serve` on loopback: requests/s, p50/p99 latency, error counts.

    python benchmarks/bench_server.py [--requests 2000] [--concurrency 8] [--model default]

Starts its own server on 127.0.0.1 (a free port), sends one-face JPEGs (scikit-image's bundled
public-domain astronaut portrait), and stops the server when done. Not a test: it only prints.
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


def one_face_jpeg() -> bytes:
    from skimage import data as skdata

    portrait = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:360]
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[90:390, 190:450] = portrait
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


async def load(url: str, body: bytes, total: int, concurrency: int):
    latencies, statuses, queue = [], Counter(), iter(range(total))
    async with httpx.AsyncClient(timeout=60) as client:
        async def worker():
            for _ in queue:
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers={"content-type": "image/jpeg"})
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
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ferkit", "serve", "--port", str(port),
                               "--model", args.model], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = one_face_jpeg()
        faces = len(httpx.post(base + "/v1/predict", content=body, headers={"content-type": "image/jpeg"}).json()["faces"])
        elapsed, ms, statuses = asyncio.run(load(base + "/v1/predict", body, args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)
    errors = sum(n for code, n in statuses.items() if not (isinstance(code, int) and code < 500))
    print(f"{args.requests} requests, {args.concurrency} concurrent, one 640x480 JPEG ({len(body) // 1024} KB, "
          f"{faces} face) against {base}")
    print(f"  {args.requests / elapsed:.1f} requests/s   p50 {np.percentile(ms, 50):.1f} ms   "
          f"p99 {np.percentile(ms, 99):.1f} ms   max {ms.max():.1f} ms")
    print(f"  status codes: {dict(statuses)}   5xx/transport errors: {errors}")


if __name__ == "__main__":
    main()
