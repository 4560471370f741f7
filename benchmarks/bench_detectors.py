"""Face detectors side by side (YuNet, the default, and the original Haar cascade) on images with
known faces: found, missed and false detections, and milliseconds per 640x480 frame.

    python benchmarks/bench_detectors.py

Images are built here from material that ships with installed packages, all usable offline:
scikit-image's bundled NASA astronaut portrait (public domain) and its `lfw_subset.npy`
(100 tiny face crops from Labeled Faces in the Wild), pasted onto plain or noisy backgrounds.
Not a test: it only prints.
"""

from __future__ import annotations

import os
import statistics
import time

import cv2
import numpy as np
from skimage import data as skdata

from ferkit.inference.faces import create_detector

Box = tuple[int, int, int, int]


def astronaut_face() -> tuple[np.ndarray, Box]:
    """The portrait cropped to head and shoulders, with its face's box in that crop."""
    image = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[0:260, 120:330]
    return image, (58, 63, 90, 113)


def paste(canvas: np.ndarray, patch: np.ndarray, face: Box, x: int, y: int, width: int) -> Box:
    scale = width / patch.shape[1]
    resized = cv2.resize(patch, (width, round(patch.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    canvas[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    fx, fy, fw, fh = face
    return (x + round(fx * scale), y + round(fy * scale), round(fw * scale), round(fh * scale))


def scenes() -> dict[str, tuple[np.ndarray, list[Box]]]:
    portrait, face = astronaut_face()
    rng = np.random.default_rng(0)
    out = {}

    group = np.full((480, 640, 3), 90, np.uint8)
    out["3 portraits, 40-140 px faces"] = (group, [paste(group, portrait, face, x, y, w) for x, y, w in
                                                   ((40, 40, 140), (400, 200, 140), (200, 330, 100))])
    lfw = np.load(os.path.join(os.path.dirname(skdata.__file__), "lfw_subset.npy"))[:100]
    grid = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    boxes = []
    for i in range(12):
        row, col = divmod(i, 4)
        size = int(rng.integers(60, 100))
        tile = cv2.cvtColor((lfw[i * 7] * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        x, y = 20 + col * 155 + int(rng.integers(0, 30)), 20 + row * 155 + int(rng.integers(0, 30))
        boxes.append(paste(grid, tile, (0, 0, 25, 25), x, y, size))
    out["12 LFW faces on noise, 60-100 px"] = (grid, boxes)
    for tilt in (-20, 20):
        canvas = np.full((480, 640, 3), 120, np.uint8)
        box = paste(canvas, portrait, face, 220, 90, 210)
        centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        turned = cv2.warpAffine(canvas, cv2.getRotationMatrix2D(centre, tilt, 1.0), (640, 480),
                                borderMode=cv2.BORDER_REPLICATE)
        out[f"1 portrait tilted {tilt:+d} deg"] = (turned, [box])
    big = np.full((1588, 2280, 3), 100, np.uint8)
    out["big photo 2280x1588, 4 faces 40-330 px"] = (
        big, [paste(big, portrait, face, x, y, w) for x, y, w in
              ((100, 100, 600), (1500, 900, 180), (900, 1200, 100), (1900, 200, 80))])
    out["blank"] = (np.full((480, 640, 3), 128, np.uint8), [])
    out["noise"] = (rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), [])
    return out


def score(found, truth: list[Box]) -> tuple[int, int, int]:
    """A detection matches an unmatched true face when its centre lies inside it."""
    left, hits = list(truth), 0
    for face in found:
        cx, cy = face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2
        match = next((t for t in left if t[0] <= cx <= t[0] + t[2] and t[1] <= cy <= t[1] + t[3]), None)
        if match is not None:
            left.remove(match)
            hits += 1
    return hits, len(truth) - hits, len(found) - hits


def ms_per_frame(detector, image: np.ndarray, repeats: int = 15) -> float:
    detector.detect(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    cv2.setNumThreads(2)
    detectors = {"yunet": create_detector("yunet"), "haar": create_detector("haar"),
                 "yunet (tiny-face pass)": create_detector("yunet", second_pass=True)}
    print(f"{'scene':<40} {'faces':>5} " + " ".join(f"{name:>30}" for name in detectors))
    print(f"{'':<40} {'':>5} " + " ".join(f"{'found/missed/false   ms':>30}" for _ in detectors))
    totals = {name: [0, 0, 0] for name in detectors}
    for name, (image, truth) in scenes().items():
        cells = []
        for label, detector in detectors.items():
            hits, missed, false = score(detector.detect(image), truth)
            for i, v in enumerate((hits, missed, false)):
                totals[label][i] += v
            cells.append(f"{hits:>9}/{missed}/{false}  {ms_per_frame(detector, image):8.1f}")
        print(f"{name:<40} {len(truth):>5} " + " ".join(f"{c:>30}" for c in cells))
    print(f"{'total':<40} {'':>5} " + " ".join(f"{'%d/%d/%d' % tuple(t):>30}" for t in totals.values()))


if __name__ == "__main__":
    main()
