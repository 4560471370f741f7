"""Following faces across a video's frames: a number for each, so that each row of its CSV and each
curve of its plot follows one person instead of whoever is leftmost in that frame, and their
scores averaged over time, so that a live label does not flicker."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ferkit.errors import FerkitError, is_whole_number
from ferkit.inference.faces import Face

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x, y, width, height boxes."""
    w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - w * h
    return w * h / union if union > 0 else 0.0


def _centre(box: Box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


@dataclass
class _Track:
    box: Box
    time: float  # when it was last seen, in seconds
    step: int  # the frame analysed it was last seen in
    velocity: tuple[float, float] = (0.0, 0.0)  # its centre's move per second
    history: list[tuple[float, tuple[float, float]]] = field(default_factory=list)  # (time, centre) seen lately

    # The velocity is the move over about this many seconds, not between the last two boxes: a
    # detector's boxes jitter by a few pixels, and a face hidden behind another is followed by its
    # velocity alone. On simulated crossings of two 80-px faces at nine speeds and jitters (boxes off
    # by up to 6 px, the hidden face not detected) the last two boxes numbered 0-8.0% of the frames
    # wrongly, often by two faces swapping numbers for good; the move over 0.3 s, 0.0-4.5%.
    WINDOW = 0.3

    def predicted(self, time: float) -> Box:
        """Where it should be now, had it kept moving as it did."""
        dx, dy = (v * (time - self.time) for v in self.velocity)
        return round(self.box[0] + dx), round(self.box[1] + dy), self.box[2], self.box[3]

    def update(self, box: Box, time: float, step: int) -> None:
        self.history = [*(seen for seen in self.history if seen[0] >= time - self.WINDOW), (time, _centre(box))]
        if len(self.history) == 1:  # the last sighting is older than the window: from it alone
            self.history.insert(0, (self.time, _centre(self.box)))
        (t0, (x0, y0)), (t1, (x1, y1)) = self.history[0], self.history[-1]
        elapsed = max(t1 - t0, 1e-6)
        self.velocity = ((x1 - x0) / elapsed, (y1 - y0) / elapsed)
        self.box, self.time, self.step = box, time, step


class FaceTracks:
    """Gives each face the number of the face it continues in the frames analysed before.

    A face is matched to where each earlier face should be by now, moving as it did (SORT's constant
    velocity, without its Kalman filter), first by box overlap (IoU), then, for faces that moved
    further than their size between the frames analysed (fast motion, `every` > 1), by the nearest
    centre within `reach` face widths and `SPEED` widths a second since it was last seen, among
    faces of about its size (a face far smaller or larger is someone else: a 40 px face 1.25 widths
    of a missed 200 px one away took its number). Greedy, best first. A face missing from a few
    frames (a turned head the detector misses, a face passing behind another) keeps its number when
    it comes back within `patience` seconds, or within `MISSED` frames analysed where those are further apart;
    after that it is a new face. Counted in seconds, not frames, so that a frame rate or `every`
    does not change it: 10 frames were a third of a second at 30 frames/s, and 10 s at `every` 30.
    """

    MISSED = 2
    SIZES = 2.0  # the most two widths of the same face differ by for a match by distance
    # How fast a face is taken to stray from where it should be, at most, in its widths a second
    # (about 1.5 m/s): `reach` is for frames analysed far apart. A face missed for one frame at 30
    # frames/s had lost its number to someone 1.25 widths away (37 widths a second) who came in then.
    SPEED = 10.0

    def __init__(self, min_iou: float = 0.2, reach: float = 1.5, patience: float = 1.0):
        self.min_iou, self.reach, self.patience = min_iou, reach, patience
        self._tracks: dict[int, _Track] = {}
        self._step, self._next = 0, 1

    def assign(self, faces: Sequence[Face], time: float) -> None:
        """Set `track` on each of one frame's faces; `time` is the frame's, in seconds."""
        self._step += 1
        expected = {number: track.predicted(time) for number, track in self._tracks.items()}
        overlaps = [(-iou(face.box, box), i, number) for i, face in enumerate(faces)
                    for number, box in expected.items() if iou(face.box, box) >= self.min_iou]
        reach = {number: min(self.reach, self.SPEED * (time - track.time)) for number, track in self._tracks.items()}
        near = [(self._distance(face.box, box), i, number) for i, face in enumerate(faces)
                for number, box in expected.items()
                if self._distance(face.box, box) <= reach[number] and self._alike(face.box, box)]
        for _, i, number in sorted(overlaps) + sorted(near):
            if faces[i].track is None and self._tracks[number].step < self._step:
                faces[i].track = number
                self._tracks[number].update(faces[i].box, time, self._step)
        for face in faces:
            if face.track is None:
                face.track, self._next = self._next, self._next + 1
                self._tracks[face.track] = _Track(face.box, time, self._step, history=[(time, _centre(face.box))])
        self._tracks = {n: t for n, t in self._tracks.items()
                        if time - t.time <= self.patience or self._step - t.step <= self.MISSED}

    @property
    def numbers(self) -> set[int]:
        """The numbers still kept for a face that may come back."""
        return set(self._tracks)

    @classmethod
    def _alike(cls, a: Box, b: Box) -> bool:
        return max(a[2], b[2]) <= cls.SIZES * max(min(a[2], b[2]), 1)

    @staticmethod
    def _distance(a: Box, b: Box) -> float:
        """Between the centres, in widths of the larger face."""
        (ax, ay), (bx, by) = _centre(a), _centre(b)
        return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 / max(a[2], b[2], 1)


class ScoreSmoother:
    """Each face's scores as an exponential moving average over about `frames` analysed frames of
    its track (weight 2 / (frames + 1) for the newest, as pandas' `ewm(span=frames)`): a face
    between two close emotions otherwise flips its label from frame to frame. 1 is off. A face
    missed for a frame or two keeps its average for as long as `FaceTracks` keeps its number (it
    had started afresh after one missed frame, and a detector that misses one frame in seven
    brought the flicker back); a number given up starts afresh."""

    def __init__(self, frames: int = 1):
        if not is_whole_number(frames, 1):
            raise FerkitError(f"smooth (--smooth) is a whole number of frames, at least 1 (off), got {frames!r}")
        self.weight = 2 / (frames + 1)
        self._last: dict[int, dict[str, float]] = {}  # each kept track's average

    def smooth(self, faces: Sequence[Face], kept: Collection[int]) -> None:
        """Replace the `scores` of one frame's tracked faces by their running averages; `kept`: the
        numbers of the faces that may still come back (`FaceTracks.numbers`)."""
        now = {number: scores for number, scores in self._last.items() if number in kept}
        for face in faces:
            last = now.get(face.track)
            if last is not None:
                face.scores = {name: self.weight * score + (1 - self.weight) * last[name]
                               for name, score in face.scores.items()}
            if face.track is not None:
                now[face.track] = face.scores
        self._last = now
