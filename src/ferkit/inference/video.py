"""Videos and cameras: frames in, faces with emotions out, optionally drawn, logged and plotted."""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferkit.data.decoding import opencv_quiet
from ferkit.errors import FerkitError, is_whole_number
from ferkit.inference.faces import Face
from ferkit.inference.recognizer import EmotionRecognizer, draw_face
from ferkit.inference.timeline import Timeline, check_plot_format
from ferkit.inference.tracking import FaceTracks, ScoreSmoother

log = logging.getLogger("ferkit")


def open_capture(source: str | int) -> cv2.VideoCapture:
    """A camera index ('0'), a video file, a device (/dev/video0) or a stream URL, opened or a clear error."""
    # A file that exists wins over the camera of the same number: `ferkit video 7` in a folder with a
    # file 7. An int is a camera whatever the folder holds.
    if isinstance(source, numbers.Integral):  # numpy's ints too
        target: str | int = int(source)
    else:
        source = str(source)
        target = int(source) if source.isdigit() and not Path(source).exists() else source
    if isinstance(target, str) and "://" not in target and not Path(target).exists():
        raise FerkitError(f"video not found: {target}")
    if isinstance(target, str):
        check_opencv_name(target)
    # FFmpeg's own lines ("moov atom not found") are not for ferkit's users: the error below says it
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with opencv_quiet:  # its warnings as it tries each reader ("can't open camera by index"): the error below says it
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()  # a camera OpenCV half-opened stays busy for the next program otherwise
        if isinstance(target, int):
            raise FerkitError(f"cannot open camera {target}: no camera with that number, or another program "
                              "is using it (a video file or a stream URL also works)")
        empty = isinstance(target, str) and Path(target).is_file() and not Path(target).stat().st_size
        raise FerkitError(f"cannot open video source {source!r}{': it is empty (0 bytes)' if empty else ''}")
    return capture


def is_live(source: str | int, frame_count: int | None) -> bool:
    """A camera (by number or device) or a stream, not a file: one that has no end of its own and
    times its frames as they come. A URL is a stream unless it gives a frame count, as a video file
    on a web server does (it had played unpaced in the demo); a local file is never live, even one
    whose header gives no frame count (a browser's WebM)."""
    if isinstance(source, numbers.Integral):
        return True
    source = str(source)
    if "://" in source:
        return frame_count is None
    # a regular file under /dev (a video on the /dev/shm RAM disk) is a file: it had played unpaced in the demo
    return (source.isdigit() and not Path(source).exists()) or (source.startswith("/dev/")
                                                                 and not Path(source).is_file())


def check_opencv_name(path: str) -> None:
    """OpenCV's video reader and writer crash the process (a segfault) on a file name that is not
    UTF-8 (bytes of another encoding, which Python keeps as escapes): a clear error instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise FerkitError(f"OpenCV cannot open video files whose names are not UTF-8: rename "
                          f"{path.encode('utf-8', 'backslashreplace').decode()}") from None


def frames(capture: cv2.VideoCapture, patience: float = 0.0) -> Iterator[tuple[int, np.ndarray]]:
    """The frames read, until reads have failed for `patience` seconds (a file: its first failed
    read). A webcam or stream drops a frame now and then, and that had ended the demo and `ferkit
    video 0`. Seconds, not a count of tries: a stream's failed read can itself take its timeout."""
    index, failing_since = 0, None
    while True:
        asked = time.monotonic()
        ok, frame = capture.read()
        if not ok:
            failing_since = asked if failing_since is None else failing_since  # the failed read's own wait too
            if time.monotonic() - failing_since >= patience:
                return
            time.sleep(0.01)
            continue
        failing_since = None
        yield index, frame
        index += 1


def timed_frames(capture: cv2.VideoCapture, fps: float, clock: Callable[[], float] | None = None,
                 patience: float = 0.0) -> Iterator[tuple[int, float, np.ndarray]]:
    """Frames with their time in seconds from the first: the container's timestamps, so that a
    phone's variable frame rate keeps its real times (index / fps put frame 16 of such a clip at
    1.25 s instead of 0.53). Where a source gives none, or the same again: the `clock` (a camera's,
    whose frames come as fast as they are read: macOS' backend stamps none, and one frame period
    each ran a 30 frames/s camera read at 8 frames/s at a quarter of real time), or else one step
    on, the last gap between two stamped frames, at most a period of the header's rate (a pause's
    gap, or that rate's own period, is too long). Times only ever grow, and go back to the
    stamps as soon as these pass them."""
    first = previous = started = None
    last, step, stamped = 0.0, 1 / fps, False  # stamped: the frame before had a stamp of its own
    for index, frame in frames(capture, patience):
        stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        if first is None:
            first = previous = stamp
            started, t, stamped = clock() if clock else 0.0, 0.0, True
        elif stamp > previous:
            step = min(stamp - previous, 1 / fps) if stamped else step  # not a gap of two frames
            t, previous, stamped = max(stamp - first, last + 1e-6), stamp, True
        else:
            t, stamped = max(clock() - started, last + 1e-6) if clock else last + step, False
        last = t
        yield index, t, frame


@dataclass
class FrameTracker:
    """Runs detection + classification every `every` frames and reuses the faces in between; each
    face carries its `track` number from frame to frame."""

    recognizer: EmotionRecognizer
    every: int = 1
    smooth: int = 1  # average each face's scores over about this many analysed frames (1: off)
    faces: list[Face] = field(default_factory=list)
    tracks: FaceTracks = field(default_factory=FaceTracks)

    def __post_init__(self) -> None:
        if not is_whole_number(self.every, 1):
            raise FerkitError(f"every (--every) is a whole number of frames, at least 1, got {self.every!r}")
        self._smoother = ScoreSmoother(self.smooth)

    def update(self, index: int, frame: np.ndarray, time: float) -> tuple[list[Face], bool]:
        fresh = index % self.every == 0
        if fresh:
            self.faces = self.recognizer.detect(frame)
            self.tracks.assign(self.faces, time)
            self._smoother.smooth(self.faces, self.tracks.numbers)
        return self.faces, fresh


@dataclass
class VideoFrame:
    """One frame of a video and its faces (`analysed`: found in this frame, not reused from an earlier one)."""

    index: int
    time: float  # seconds from the first frame, from the container's timestamps
    image: np.ndarray  # BGR
    faces: list[Face]
    analysed: bool


class VideoAnalysis:
    """A video file, camera or stream, frame by frame with its faces (see `EmotionRecognizer.video`).

    Opened at once, so a bad source fails here; the capture is released when the frames run out,
    the loop is left early, or the `with` block ends. A live source ends once its reads have failed
    for `DROPPED_SECONDS`, not at its first failure: a webcam drops a frame now and then."""

    DROPPED_SECONDS = 0.5

    def __init__(self, recognizer: EmotionRecognizer, source: str | int | os.PathLike, every: int = 1,
                 smooth: int = 1):
        self.tracker = FrameTracker(recognizer, every, smooth)  # bad numbers fail before the source opens
        self.source = os.fspath(source) if isinstance(source, os.PathLike) else source
        self._capture = open_capture(self.source)
        self._read = False
        fps, count = self._capture.get(cv2.CAP_PROP_FPS), self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        # What OpenCV says when it does not know: 0, -1 (cameras) or NaN, and worse from some streams
        self.rate_known = bool(0 < fps < 1000)
        self.fps = fps if self.rate_known else 25.0
        self.frame_count = int(count) if 0 < count < 2**31 else None  # None: a camera, a stream
        self.live = is_live(self.source, self.frame_count)

    def __iter__(self) -> Iterator[VideoFrame]:
        if self._read:  # a camera or stream cannot go back; a file is opened anew by rec.video
            raise FerkitError("a video's frames are read once: call rec.video(...) again to read them again")
        self._read = True
        try:
            clock, patience = (time.monotonic, self.DROPPED_SECONDS) if self.live else (None, 0.0)
            index = None
            for index, t, image in timed_frames(self._capture, self.fps, clock, patience):
                faces, fresh = self.tracker.update(index, image, t)
                yield VideoFrame(index, t, image, faces, fresh)
            if index is None:  # OpenCV opens some sources that then give nothing: a text file, a camera held
                raise FerkitError(f"no frame of {self.source} could be "  # by another program
                                  + ("read: a camera or stream that sends nothing" if self.live else
                                     "decoded: not a video, or corrupt"))
        finally:
            self.close()

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoAnalysis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def process_video(recognizer: EmotionRecognizer, source: str, output: str | None = None,
                  csv_path: str | None = None, every: int = 1, plot: str | None = None,
                  progress: bool = True, smooth: int = 1) -> dict:
    """Annotate a video file; write the per-frame CSV (as it goes) and the emotion timeline.
    Returns a summary, with each face's (`Timeline.summary`)."""
    from tqdm import tqdm

    if plot:
        check_plot_format(plot)  # now, not after the whole video
    video = VideoAnalysis(recognizer, source, every, smooth)
    fps, total = video.fps, video.frame_count
    timeline = Timeline(recognizer.classes, csv_path)
    writer, started, count, interrupted, t = None, time.perf_counter(), 0, False, 0.0
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else str(source)  # a camera: its number
    with contextlib.ExitStack() as closing:  # each closed whatever another's closing raises
        closing.callback(video.close)
        closing.callback(timeline.close)
        try:
            for frame in tqdm(video, total=total, unit="frame", disable=None if progress else True, desc=name):
                t, faces = frame.time, frame.faces
                if output and writer is None:  # first: a video it cannot write must not cost an old CSV
                    writer = TimedWriter(output, fps, frame.image, guessed=not video.rate_known)
                    closing.callback(writer.release)
                if frame.analysed:
                    timeline.add(frame.index, t, faces)
                if writer is not None:
                    for face in faces:
                        draw_face(frame.image, face)
                    writer.write(frame.image, t)
                count = frame.index + 1
        except KeyboardInterrupt:  # Ctrl-C ends the video, not its results: the frames read are written below
            interrupted = True
    elapsed = time.perf_counter() - started
    if count == 0:  # Ctrl-C before the first frame (no frame at all is the frames' own error)
        raise KeyboardInterrupt
    _say_if_cut_short(source, count, t, (total or 0) / fps if video.rate_known else 0, fps, interrupted)
    if plot:
        try:
            timeline.plot(plot, t + 1 / fps)
        except FerkitError as exc:  # the last output: the others are whole, and said so
            written = " and ".join(str(path) for path in (output, csv_path) if path)
            raise FerkitError(f"{exc} ({written} written)" if written else str(exc)) from None
    return {"frames": count, "seconds": elapsed, "fps": count / elapsed if elapsed else 0.0,
            "faces": timeline.faces, "interrupted": interrupted, "tracks": timeline.summary()}


def _say_if_cut_short(source: str, count: int, last: float, declared: float, fps: float,
                      interrupted: bool) -> None:
    """A truncated file reads like a short one: say so. Judged by time, not frames: the header's
    frame count is the duration times the mean frame rate, which a variable frame rate's frames do
    not add up to. The last frame of a whole file starts one period before the end, and one more
    period short is not worth a warning (the header's figure can be rounded)."""
    if interrupted:
        log.warning("interrupted: the outputs hold the first %d frames of %s", count, source)
    elif declared and last < declared - 2 / fps - 1e-3:
        log.warning("%s: stopped at %.1f s (frame %d) of the %.1f s its header declares: the rest could not "
                    "be decoded (a truncated or damaged file?)", source, last, count, declared)


VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")  # the containers OpenCV writes mp4v video into


def writable_rate(fps: float) -> float:
    """The frame rate to write at: OpenCV gives the codec the rate to within 0.001 as ticks per
    second over a power of ten, and mp4v takes at most 65535 ticks, so a rate over 65.535 with a
    third decimal (66.667, the average a high-frame-rate phone's header gives) is refused. Rounded
    to the decimals that fit; a rate that needs none is kept as it is."""
    decimals = min(3, max(0, math.floor(math.log10(65535 / fps)))) if fps > 0 else 3
    return round(fps, decimals) if decimals < 3 else fps


def _open_writer(path: str, fps: float, frame: np.ndarray) -> cv2.VideoWriter:
    """An mp4 writer sized from the first decoded frame (capture properties can disagree with it)."""
    check_opencv_name(path)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
    if not writer.isOpened():
        height, width = frame.shape[:2]
        if min(height, width) < 2:  # mp4v has no 1-pixel-wide pictures: a missing folder is not why
            raise FerkitError(f"cannot write video {path}: its frames are {width}x{height} pixels, and an "
                              "annotated copy needs at least 2x2")
        raise FerkitError(f"cannot write video {path}: check the folder exists and the name ends in "
                          f"{', '.join(VIDEO_SUFFIXES)}")
    return writer


class TimedWriter:
    """An OpenCV writer, which has one frame rate, fed frames at their own times: a frame that
    comes late is preceded by copies of the last one, one that comes early (faster than the rate)
    is left out. A constant frame rate's frames each fall in their own slot, written as they come.

    The rate is the header's unless the first frames come markedly faster. A header's rate is the
    frames over the duration, so a clip with a long pause (cut, or a phone's paused recording)
    declares a fraction of the rate its moving stretches have, and at that rate most of their
    frames were dropped (5 distinct pictures of 30 in a review's clip). A rate the header did not
    give (`guessed`: 25) is always replaced by the first frames' own. Frames of another size than
    the first (a stream that changes resolution) are resized to it: the writer drops them silently."""

    PROBE = 8  # frames held before the rate is settled: a median of their intervals
    PROBE_BYTES = 200 * 2**20  # but no more than this (3 at least): 8 frames of 8K video are 800 MB
    FASTEST = 120.0  # a rate seen above this (and the header's) is taken for bunched timestamps

    def __init__(self, path: str, fps: float, first: np.ndarray, open_writer=None, guessed: bool = False):
        self._open, self.guessed, self.size = open_writer or _open_writer, guessed, (first.shape[1], first.shape[0])
        fps = writable_rate(fps)
        self.path, self.fps, self.written, self.last, self._held = path, fps, 0, None, []
        self.writer = self._open(path, fps, first)  # now: a bad output name fails at the first frame
        self._probe = min(self.PROBE, max(3, self.PROBE_BYTES // max(first.nbytes, 1)))

    def write(self, frame: np.ndarray, t: float) -> None:
        if self._held is None:
            self._put(frame, t)
            return
        self._held.append((frame, t))
        if len(self._held) == self._probe:
            self._settle()

    def _settle(self) -> None:
        held, self._held = self._held, None
        gaps = np.diff([t for _, t in held])
        gaps = gaps[gaps > 0]
        seen = writable_rate(1 / float(np.median(gaps))) if len(gaps) else 0.0
        # markedly faster: a variable rate's median wanders by a tenth or more
        better = 1.5 * self.fps < seen or (self.guessed and seen > 0 and abs(seen - self.fps) > 0.01)
        if better and seen <= max(self.FASTEST, self.fps):
            self._reopen(seen, held[0][0])
        for frame, t in held:
            self._put(frame, t)

    def _reopen(self, fps: float, first: np.ndarray) -> None:
        self.writer.release()
        try:
            self.writer = self._open(self.path, fps, first)
        except FerkitError:  # a rate this codec refuses: the header's, which opened, rather than nothing
            self.writer = self._open(self.path, self.fps, first)
            log.warning("%s: written at %.3g fps (%s), which drops frames where they come faster (%.4g fps, its "
                        "frames' own rate, could not be written)", self.path, self.fps,
                        "a guess: the source gave none" if self.guessed else "its header's", fps)
            return
        log.info("%s: written at %.4g fps, the rate of its first frames; %s", self.path, fps,
                 "the source gave none" if self.guessed else
                 f"the header's {self.fps:.3g} is an average that counts its pauses")
        self.fps = fps

    def _put(self, frame: np.ndarray, t: float) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        slot = round(t * self.fps)
        while self.last is not None and self.written < slot:
            self.writer.write(self.last)
            self.written += 1
        if self.written <= slot:
            self.writer.write(frame)
            self.written += 1
        self.last = frame

    def release(self) -> None:
        if self._held:  # a video shorter than the probe
            self._settle()
        self.writer.release()
