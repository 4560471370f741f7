"""Numbering faces across a video's frames, so that each row of its CSV and each curve of its plot
follows one person instead of whoever is leftmost in that frame."""

from __future__ import annotations

from collections.abc import Sequence

from ferkit.inference.faces import Face

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x, y, width, height boxes."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - w * h
    return w * h / union if union > 0 else 0.0


class FaceTracks:
    """Gives each face the number of the face it overlaps most in the frames analysed before.

    Greedy matching on box overlap (IoU, the simplest of the SORT family of trackers): enough for
    faces, which move little between frames and seldom cross. A face missing from a few frames (a
    turned head the detector misses) keeps its number when it comes back within `patience`
    analysed frames; after that it is a new face.
    """

    def __init__(self, min_iou: float = 0.2, patience: int = 10):
        self.min_iou, self.patience = min_iou, patience
        self._last: dict[int, tuple[Box, int]] = {}  # track -> its latest box, the step it was seen
        self._step, self._next = 0, 1

    def assign(self, faces: Sequence[Face]) -> None:
        """Set `track` on each of one frame's faces."""
        self._step += 1
        pairs = sorted(((iou(face.box, box), i, track) for i, face in enumerate(faces)
                        for track, (box, _) in self._last.items()), reverse=True)
        taken_faces: set[int] = set()
        for overlap, i, track in pairs:
            if overlap < self.min_iou:
                break
            if i in taken_faces or faces[i].track is not None or self._seen_now(track):
                continue
            faces[i].track = track
            taken_faces.add(i)
            self._last[track] = (faces[i].box, self._step)
        for face in faces:
            if face.track is None:
                face.track, self._next = self._next, self._next + 1
                self._last[face.track] = (face.box, self._step)
        self._last = {t: seen for t, seen in self._last.items() if self._step - seen[1] < self.patience}

    def _seen_now(self, track: int) -> bool:
        return self._last[track][1] == self._step
