"""EmotionRecognizer: detect faces, classify them in one batch, draw the result."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ferkit.choices import DETECTORS
from ferkit.data.preprocess import FACE_MARGIN, crop_face, eye_angle, to_bgr, to_gray, to_model_input
from ferkit.errors import FerkitError, is_real_number, is_whole_number
from ferkit.inference.backends import DEFAULT_MODEL, Backend, load_backend, predict_scores
from ferkit.inference.faces import Detector, Face, clip_box, create_detector
from ferkit.inference.images import is_pil, load_image

if TYPE_CHECKING:
    from ferkit.inference.video import VideoAnalysis

# One BGR colour per emotion, so a label reads at a glance in annotated images and videos.
COLOURS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160),
           "happy": (30, 200, 240), "neutral": (180, 180, 180), "sad": (200, 120, 40),
           "surprise": (40, 160, 250)}
UNKNOWN_COLOUR = (255, 255, 255)  # a class of someone else's model that ferkit has no colour for


class EmotionRecognizer:
    """Faces and their emotions from images, with the bundled model and YuNet by default.

    >>> rec = EmotionRecognizer()
    >>> faces = rec.detect("photo.jpg")
    >>> faces[0].box, faces[0].label, faces[0].scores

    Safe to share between threads, but detection then runs one image at a time; for parallel work
    give each thread its own `EmotionRecognizer(shared.backend)`, which shares the loaded model.
    """

    def __init__(self, model: str | os.PathLike | Backend | None = DEFAULT_MODEL,
                 detector: str | Detector = "yunet", *, margin: float = FACE_MARGIN, align: bool = True,
                 tta: bool = False, threads: int | None = None, max_faces: int | None = None,
                 **detector_options: Any):
        """`max_faces`: only the largest this many faces of an image (the person at the camera, not the
        crowd behind), still left to right. `detector_options` go to the detector (YuNet's
        `score_threshold`, `min_size`, ...)."""
        if max_faces is not None and not is_whole_number(max_faces, 1):
            raise FerkitError(f"max_faces is a whole number of faces, at least 1, got {max_faces!r}")
        if not (is_real_number(margin) and margin >= 0):  # negative: 1-pixel crops
            raise FerkitError(f"margin is the share of a face's box added on each side, 0 or more, got {margin!r}")
        if not isinstance(detector, str) and not callable(getattr(detector, "detect", None)):  # None failed at detect
            raise FerkitError(f"detector is a name ({', '.join(DETECTORS)}) or an object with a detect(image) "
                              f"method, got {detector!r}")
        if detector_options and not isinstance(detector, str):
            raise FerkitError(f"detector options ({', '.join(sorted(detector_options))}) are for a detector ferkit "
                              "creates by name: give them to the detector you pass instead")
        self.backend = _backend(model, threads)
        self.detector = create_detector(detector, **detector_options) if isinstance(detector, str) else detector
        self.margin, self.align, self.tta, self.max_faces = margin, align, tta, max_faces

    @property
    def classes(self) -> tuple[str, ...]:
        return self.backend.info.classes

    def detect(self, image: Any, rgb: bool = False, *, boxes: Sequence[Sequence[float]] | None = None) -> list[Face]:
        """Find every face in `image` (path, http(s) or data URL, bytes, file object, array, PIL
        image), left to right, and classify them in one batch. `boxes` (x, y, width, height each)
        skips detection: faces found by another detector, cropped with the same margin as ferkit's
        own, all of them (`max_faces` limits what the detector finds), in the order given, and
        upright as given (`align` levels the eyes by YuNet's landmarks, which a box has not)."""
        array = load_image(image, rgb)
        faces = given_faces(boxes, array.shape) if boxes is not None else self.detector.detect(array)
        if self.max_faces is not None and boxes is None and len(faces) > self.max_faces:
            largest = sorted(faces, key=lambda face: face.box[2] * face.box[3], reverse=True)[:self.max_faces]
            faces = [face for face in faces if any(face is kept for kept in largest)]
        if not faces:
            return faces
        gray = to_gray(array)
        crops = [crop_face(gray, face.box, self.margin, self._angle(face)) for face in faces]
        for face, scores in zip(faces, self.classify(crops)):
            face.scores = scores
        return faces

    def video(self, source: str | int | os.PathLike, every: int = 1, smooth: int = 1) -> VideoAnalysis:
        """The frames of a video file, camera (0) or stream URL with their faces, each face numbered
        (`track`) from frame to frame; `every` N frames analysed, the faces reused in between;
        `smooth` > 1 averages each face's scores over about that many analysed frames.

        >>> for frame in rec.video("clip.mp4"):
        ...     frame.time, [(face.track, face.label) for face in frame.faces]
        """
        from ferkit.inference.video import VideoAnalysis  # it draws with this module's draw_face

        return VideoAnalysis(self, source, every, smooth)

    def _angle(self, face: Face) -> float:
        """Level the eyes from the detector's landmarks (YuNet) when `align` is on.

        On by default: on 600 FER2013 PublicTest faces framed and turned by known angles
        (benchmarks/bench_crop.py, the single-network int8 model bundled before), it raised accuracy
        from 0.53-0.56 to 0.63-0.66 at +-30 degrees and from 0.652 to 0.654 upright.
        """
        return eye_angle(face.landmarks) if self.align and face.landmarks is not None else 0.0

    def classify(self, crops: Sequence[Any], rgb: bool = False) -> list[dict[str, float]]:
        """Scores for already-cropped faces, each anything `detect` takes (path, bytes, file object,
        array, PIL image; any size, gray or colour, BGR unless `rgb`): one forward pass for all.

        A list, or an N x H x W (x C) array: one image alone would be read row by row as N crops. A
        crop that is not square is made square, as `detect` makes faces square, by repeating its edge
        pixels (it has no pixels around it), not stretched: 6.4-12.5 points more accurate on tall
        crops (benchmarks/bench_crop.py)."""
        if isinstance(crops, np.ndarray) and (crops.ndim == 2 or (crops.ndim == 3 and crops.shape[2] in (1, 3, 4))):
            raise FerkitError(f"classify takes a list of face crops, got one image of shape {crops.shape}: "
                              "pass [crop]")
        if isinstance(crops, (str, bytes, os.PathLike)) or hasattr(crops, "convert") or hasattr(crops, "read"):
            raise FerkitError("classify takes a list of face crops, got one: pass [crop]")
        images = [load_image(crop, rgb) for crop in crops]
        batch = to_model_input(images, self.backend.info.image_size)
        probs = predict_scores(self.backend, batch, self.tta)
        return [dict(zip(self.classes, map(float, row))) for row in probs]

    def annotate(self, image: Any, faces: Sequence[Face | dict], rgb: bool = False) -> np.ndarray:
        """A copy of `image` with each face's box and 'label 87%' drawn over it: BGR, or RGB where
        `rgb` said the image was (a PIL image or a web frame's array is shown as it came). `faces`
        may be dicts as `Face.to_dict()` makes them: a server's or `predict --json`'s answer."""
        canvas = to_bgr(load_image(image, rgb)).copy()  # never draw on the caller's own array
        thickness = max(1, round(max(canvas.shape[:2]) / 400))
        for face in faces:
            draw_face(canvas, face if isinstance(face, Face) else Face.from_dict(face), thickness)
        return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB) if rgb or is_pil(image) else canvas


def _backend(model: Any, threads: int | None) -> Backend:
    """An already-loaded Backend can be shared, e.g. by a server's per-thread recognizers. A Keras
    model has a `predict` too, but not the class names and input size a Backend carries: it is
    refused here rather than at the first face found."""
    if hasattr(model, "predict") and hasattr(model, "info"):
        if threads is not None:  # its sessions already exist: the count cannot change now
            raise FerkitError("threads is for a model ferkit loads: a loaded backend keeps the threads it "
                              "was loaded with (load_backend(path, threads))")
        return model
    if hasattr(model, "predict"):
        raise FerkitError(f"model: give a path (a run directory, a .keras or an .onnx file) or a ferkit "
                          f"backend (ferkit.inference.backends.load_backend), not a {type(model).__name__}")
    return load_backend(model, threads)


def given_faces(boxes: Sequence[Sequence[float]], shape: tuple[int, ...]) -> list[Face]:
    """Faces at the caller's boxes, clipped to the image; a box that is not four numbers, or has no
    pixels inside the image, is an error rather than a face silently dropped or misplaced."""
    height, width = shape[:2]
    faces = []
    for box in boxes:
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError):
            raise FerkitError(f"a face box is four numbers, x, y, width, height; got {box!r}") from None
        clipped = clip_box(x, y, w, h, width, height) if np.isfinite([x, y, w, h]).all() else (0, 0, 0, 0)
        if min(clipped[2:]) <= 0:
            raise FerkitError(f"face box {list(box)} has no pixels inside the {width}x{height} image")
        faces.append(Face(clipped))
    return faces


def draw_face(canvas: np.ndarray, face: Face, thickness: int = 2) -> None:
    x, y, w, h = face.box
    colour = COLOURS.get(face.label, UNKNOWN_COLOUR)
    cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thickness)
    if not face.label:
        return
    text = ("" if face.track is None else f"#{face.track} ") + f"{face.label} {face.confidence:.0%}"
    scale = max(0.45, w / 180)
    weight = max(1, int(scale * 1.6))  # thin strokes for small labels stay legible
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
    height = th + base + 4
    # Above the box; below it where the image's top edge is in the way; inside it where both edges are.
    top = y - height if y - height >= 0 else y + h if y + h + height <= canvas.shape[0] else y
    left = max(0, min(x, canvas.shape[1] - tw - 4))  # a face at the right edge: its label moves left, not off
    cv2.rectangle(canvas, (left, top), (left + tw + 4, top + height), colour, -1)
    cv2.putText(canvas, text, (left + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                weight, cv2.LINE_AA)
