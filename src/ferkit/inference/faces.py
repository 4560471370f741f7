"""Face detection: one interface, two detectors (YuNet, the default, and the original Haar cascade).

Both return boxes in the original image's pixels. Detection always runs on a copy downscaled to
`max_side` (YuNet finds faces of ~10-300 px and misses large ones at full size; Haar is several
times faster on fewer pixels), and the boxes are mapped back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

import cv2
import numpy as np

from ferkit.data.preprocess import to_gray
from ferkit.errors import FerkitError

YUNET_MODEL = "face_detection_yunet_2026may.onnx"


@dataclass
class Face:
    """One detected face: where it is and, once classified, what it shows."""

    box: tuple[int, int, int, int]  # x, y, width, height in the original image's pixels
    detection_score: float = 1.0
    landmarks: np.ndarray | None = None  # 5 x 2: right eye, left eye, nose tip, mouth corners
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return max(self.scores, key=self.scores.get) if self.scores else ""

    @property
    def confidence(self) -> float:
        return self.scores.get(self.label, 0.0)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 4),
                "scores": {k: round(v, 4) for k, v in self.scores.items()}}


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]: ...


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image, scale


def _clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.shape[2] == 4 else image


class YuNetDetector:
    """OpenCV's YuNet (bundled, MIT licence): fast, finds turned and small faces, gives landmarks."""

    def __init__(self, score_threshold: float = 0.7, nms_threshold: float = 0.3, min_size: int = 12,
                 max_side: int = 640, model_path: str | None = None):
        path = model_path or str(resources.files("ferkit.assets") / YUNET_MODEL)
        self._net = cv2.FaceDetectorYN.create(path, "", (320, 320), score_threshold, nms_threshold, 5000)
        self.min_size, self.max_side = min_size, max_side

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscaled(_bgr(image), self.max_side)
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, rows = self._net.detect(small)
        faces = []
        for row in rows if rows is not None else []:
            x, y, w, h = row[:4] / scale
            box = _clip_box(x, y, w, h, image.shape[1], image.shape[0])
            if min(box[2:]) >= self.min_size:
                faces.append(Face(box, float(row[14]), (row[4:14] / scale).reshape(5, 2)))
        return faces


class HaarDetector:
    """The original project's OpenCV Haar cascade (OpenCV 4 only: the 5.x wheels dropped it)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30,
                 max_side: int = 640):
        data = getattr(cv2, "data", None)
        if not hasattr(cv2, "CascadeClassifier") or data is None:
            raise FerkitError(
                f"the haar detector needs OpenCV 4 with its cascade files (this is OpenCV {cv2.__version__}): "
                "pip install 'opencv-python-headless<5', or use --detector yunet"
            )
        self._cascade = cv2.CascadeClassifier(data.haarcascades + "haarcascade_frontalface_default.xml")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side = min_size, max_side

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscaled(to_gray(image), self.max_side)
        min_px = max(1, int(self.min_size * scale))
        rects = self._cascade.detectMultiScale(small, self.scale_factor, self.min_neighbors,
                                               minSize=(min_px, min_px))
        return [Face(_clip_box(*(np.asarray(r) / scale), image.shape[1], image.shape[0]))
                for r in (rects if len(rects) else [])]


DETECTORS = {"yunet": YuNetDetector, "haar": HaarDetector}


def create_detector(name: str = "yunet", **options) -> Detector:
    if name not in DETECTORS:
        raise FerkitError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    return DETECTORS[name](**options)
