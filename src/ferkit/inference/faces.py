"""Face detection: one interface, two detectors (YuNet, the default, and the original Haar cascade).

Both return boxes in the original image's pixels. Detection always runs on a copy downscaled to
`max_side` (YuNet finds faces of ~10-300 px and misses large ones at full size; Haar is several
times faster on fewer pixels), and the boxes are mapped back.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

import cv2
import numpy as np

from ferkit.choices import DETECTORS
from ferkit.data.preprocess import to_bgr, to_gray
from ferkit.errors import FerkitError, is_real_number, is_whole_number

YUNET_MODEL = "face_detection_yunet_2026may.onnx"


# YuNet's five points, in its order; "right" is the person's own right, on the image's left
LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass
class Face:
    """One detected face: where it is and, once classified, what it shows."""

    box: tuple[int, int, int, int]  # x, y, width, height in the original image's pixels
    detection_score: float | None = None  # YuNet's confidence that this is a face; Haar gives none
    # 5 x 2: right eye, left eye, nose tip, mouth corners. Not compared: an array's == is no truth
    # value, and made `face in faces` and `faces.remove(face)` raise for YuNet's faces.
    landmarks: np.ndarray | None = field(default=None, compare=False)
    scores: dict[str, float] = field(default_factory=dict)
    track: int | None = None  # in a video: the same number for the same face from frame to frame

    def __post_init__(self) -> None:
        """Whole pixels: a box of floats (a tracker's, another detector's) had reached OpenCV's
        drawing as a raw overload error, and numpy's ints had failed JSON."""
        try:
            x, y, w, h = (round(float(v)) for v in self.box)
        except (TypeError, ValueError, OverflowError):
            raise FerkitError(f"a face box is four numbers, x, y, width, height; got {self.box!r}") from None
        self.box = (x, y, w, h)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float32).reshape(len(LANDMARKS), 2)

    @classmethod
    def from_dict(cls, face: dict) -> Face:
        """A face back from its `to_dict()` (`predict --json`, the server's answer): to draw it with
        `annotate`, or to keep working on it. `label` and `confidence` follow from the scores."""
        points = face.get("landmarks")
        return cls(face["box"], face.get("detection_score"),
                   None if points is None else np.array([points[name] for name in LANDMARKS], np.float32),
                   dict(face.get("scores") or {}), face.get("track"))

    @property
    def label(self) -> str:
        return max(self.scores, key=self.scores.get) if self.scores else ""

    @property
    def confidence(self) -> float:
        return self.scores.get(self.label, 0.0)

    def to_dict(self) -> dict:
        """The face as JSON takes it (what `predict --json` and the server answer): `dataclasses.asdict`
        meets the landmarks' array. A video's face keeps its `track`, which had been dropped."""
        score = None if self.detection_score is None else round(self.detection_score, 4)
        points = None if self.landmarks is None else {
            name: [round(float(x), 1), round(float(y), 1)] for name, (x, y) in zip(LANDMARKS, self.landmarks)}
        followed = {} if self.track is None else {"track": self.track}
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 4),
                "scores": {k: round(v, 4) for k, v in self.scores.items()}, "detection_score": score,
                "landmarks": points, **followed}


# A face's columns in the CSVs of predict and video, before one column per class
FACE_COLUMNS = ("x", "y", "w", "h", "detection_score", "label", "confidence")


def face_cells(face: dict, classes: tuple[str, ...]) -> list:
    """A face's CSV cells, from its `to_dict()`: FACE_COLUMNS, then each class's score."""
    score = face["detection_score"]
    return [*face["box"], "" if score is None else score, face["label"], face["confidence"],
            *(face["scores"][name] for name in classes)]


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]:
        """The faces in `image`, left to right: `faces[0]` means the same face on every call."""
        ...


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:  # at least one pixel a side: a 2000x1 strip would otherwise shrink to nothing
        size = tuple(max(1, round(side * scale)) for side in image.shape[1::-1])
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


def clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Same face: they share over half of the smaller box (a tile can cut a face into a part)."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return smaller > 0 and w * h / smaller > 0.5


def _larger_kept(found: list[Face], face: Face) -> list[Face]:
    """`found` with `face` added, unless it is one of them already, in which case the larger box is
    kept: tiles overlap, and the one that cuts a face through finds only a part of it."""
    same = [other for other in found if _overlaps(face.box, other.box)]
    if any(other.box[2] * other.box[3] >= face.box[2] * face.box[3] for other in same):
        return found
    return [other for other in found if not any(other is s for s in same)] + [face]


class YuNetDetector:
    """OpenCV's YuNet (bundled, MIT licence): fast, finds turned and small faces, gives landmarks.

    `second_pass` also searches a big photo in `max_side` tiles at up to `second_side` pixels, for
    group photos whose faces shrink below YuNet's ~10 px once the whole photo is downscaled.

    One OpenCV network, resized for each image, so calls from several threads take turns: shared
    unguarded, three threads crashed the process (a segfault) every time.
    """

    def __init__(self, score_threshold: float = 0.7, nms_threshold: float = 0.3, min_size: int = 12,
                 max_side: int = 640, second_pass: bool = False, second_side: int = 1920,
                 model_path: str | None = None):
        for name, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold)):
            _check_option(name, value, above=0, most=1)
        _check_option("min_size", min_size, whole=0)  # 0: no smallest face
        for name, value in (("max_side", max_side), ("second_side", second_side)):
            _check_option(name, value, whole=1)
        path = model_path or str(resources.files("ferkit.assets") / YUNET_MODEL)
        self._net = cv2.FaceDetectorYN.create(path, "", (320, 320), score_threshold, nms_threshold, 5000)
        self.min_size, self.max_side = min_size, max_side
        self.second_pass, self.second_side = second_pass, second_side
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[Face]:
        bgr = to_bgr(image)
        small, scale = _downscaled(bgr, self.max_side)
        faces = self._detect_at(small, scale, (0, 0), image.shape)
        if self.second_pass and scale < 1.0:
            faces += [f for f in self._tiled(bgr) if not any(_overlaps(f.box, g.box) for g in faces)]
        return sorted(faces, key=lambda face: face.box)  # left to right, as Haar's

    def _tiled(self, bgr: np.ndarray) -> list[Face]:
        large, scale = _downscaled(bgr, self.second_side)
        tile, step = self.max_side, self.max_side * 3 // 4
        found: list[Face] = []
        for y0 in range(0, max(large.shape[0] - tile, 0) + step, step):
            for x0 in range(0, max(large.shape[1] - tile, 0) + step, step):
                crop = large[y0:y0 + tile, x0:x0 + tile]
                if min(crop.shape[:2]) >= 16:
                    for face in self._detect_at(crop, scale, (x0, y0), bgr.shape):
                        found = _larger_kept(found, face)
        return found

    def _detect_at(self, pixels: np.ndarray, scale: float, offset: tuple[int, int], shape) -> list[Face]:
        """Detect in `pixels` (a crop at `offset` of the image scaled by `scale`), boxes in original pixels."""
        with self._lock:
            self._net.setInputSize((pixels.shape[1], pixels.shape[0]))
            _, rows = self._net.detect(pixels)
        shift = np.tile(np.asarray(offset, np.float32), 7)
        shift[2:4] = 0  # width and height do not move with the crop
        faces = []
        for row in rows if rows is not None and min(pixels.shape[:2]) >= 16 else []:
            if not np.isfinite(row).all():  # YuNet returns garbage rows for images of a few pixels
                continue
            coords = (row[:14] + shift) / scale
            box = clip_box(*coords[:4], shape[1], shape[0])
            if min(box[2:]) >= self.min_size:
                faces.append(Face(box, float(row[14]), coords[4:14].reshape(5, 2)))
        return faces


class HaarDetector:
    """The original project's OpenCV Haar cascade (OpenCV 4 only: the 5.x wheels dropped it)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30,
                 max_side: int = 640):
        _check_option("scale_factor", scale_factor, above=1)
        _check_option("min_neighbors", min_neighbors, whole=0)
        _check_option("min_size", min_size, whole=0)
        _check_option("max_side", max_side, whole=1)
        data = getattr(cv2, "data", None)
        if not hasattr(cv2, "CascadeClassifier") or data is None:
            raise FerkitError(
                f"the haar detector needs OpenCV 4 with its cascade files (this is OpenCV {cv2.__version__}): "
                "pip install 'opencv-python-headless<5', or use --detector yunet"
            )
        self._cascade = cv2.CascadeClassifier(data.haarcascades + "haarcascade_frontalface_default.xml")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.max_side = min_size, max_side
        self._lock = threading.Lock()  # OpenCV does not promise a cascade is safe to share between threads

    def detect(self, image: np.ndarray) -> list[Face]:
        small, scale = _downscaled(to_gray(image), self.max_side)
        min_px = max(1, int(self.min_size * scale))
        with self._lock:
            rects = self._cascade.detectMultiScale(small, self.scale_factor, self.min_neighbors,
                                                   minSize=(min_px, min_px))
        # Left to right: the cascade's own order varies with how its worker threads were scheduled.
        return [Face(clip_box(*(np.asarray(r) / scale), image.shape[1], image.shape[0]))
                for r in sorted(map(tuple, rects if len(rects) else []))]


_DETECTOR_TYPES = {"yunet": YuNetDetector, "haar": HaarDetector}  # one per name in DETECTORS


def _check_option(name: str, value: object, above: float | None = None, most: float | None = None,
                  whole: int | None = None) -> None:
    """A detector option given in Python, checked as the CLI's flags are: OpenCV took a
    score_threshold of 2 and found no face, and raised from deep inside detection for -1."""
    if whole is not None:
        if not is_whole_number(value, whole):
            raise FerkitError(f"{name} is a whole number, at least {whole}, got {value!r}")
    elif not (is_real_number(value) and value > above and (most is None or value <= most)):
        raise FerkitError(f"{name} is a number above {above:g}{f', at most {most:g}' if most is not None else ''}, "
                          f"got {value!r}")


def create_detector(name: str = "yunet", **options) -> Detector:
    if name not in DETECTORS:
        raise FerkitError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    kind = _DETECTOR_TYPES[name]
    takes = [p for p in inspect.signature(kind).parameters if p != "self"]
    unknown = sorted(set(options) - set(takes))
    if unknown:  # e.g. YuNet's score_threshold given to Haar
        raise FerkitError(f"the {name} detector has no option {', '.join(unknown)}; it takes {', '.join(takes)}")
    return kind(**options)
