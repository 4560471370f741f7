"""A video's faces over time (ferkit.inference.timeline): its CSV, summary and plot."""

from __future__ import annotations

import csv
import tracemalloc

import cv2
import numpy as np

from ferkit.inference.faces import Face
from ferkit.inference.timeline import Timeline

CLASSES = ("happy", "sad")


def _face(track: int, happy: float) -> Face:
    return Face((10 * track, 10, 50, 50), scores={"happy": happy, "sad": 1 - happy}, track=track)


def test_a_face_in_one_frame_analysed_is_drawn_in_the_timeline(tmp_path):
    """A point between two gaps (a one-frame video, a face found in every other frame) has no line
    to draw: each point is marked, so the panel is not empty."""
    pngs = []
    for happy in (0.9, 0.1):
        timeline = Timeline(CLASSES)
        timeline.add(0, 0.0, [_face(1, happy)])
        timeline.plot(tmp_path / f"{happy}.png", duration=0.04)
        pngs.append(cv2.imread(str(tmp_path / f"{happy}.png")))
    assert not np.array_equal(*pngs)  # the scores are drawn, so they show


def test_the_csv_is_written_as_the_frames_come_and_the_summary_counts_each_face(tmp_path):
    """Each frame's rows are on disk once it is added, so a killed run keeps them (SIGKILL had
    lost the last 8 KB); a frame without faces has its empty row."""
    timeline = Timeline(CLASSES, tmp_path / "f.csv")
    timeline.add(0, 0.0, [_face(1, 0.9), _face(2, 0.2)])
    timeline.add(3, 0.1, [])
    timeline.add(6, 0.2, [_face(1, 0.7)])
    rows = list(csv.reader(open(tmp_path / "f.csv", encoding="utf-8")))  # what a kill now would leave
    timeline.close()
    assert [row[:4] for row in rows[1:]] == [["0", "0.000", "0", "1"], ["0", "0.000", "1", "2"],
                                             ["3", "0.100", "", ""], ["6", "0.200", "0", "1"]]
    assert rows[0][-2:] == list(CLASSES) and timeline.faces == 3
    first, second = timeline.summary()
    assert (first["track"], first["frames"], first["of_frames"], first["labels"]) == (1, 2, 3, {"happy": 1.0})
    assert abs(first["mean_scores"]["happy"] - 0.8) < 1e-6
    assert (second["track"], second["labels"]) == (2, {"sad": 1.0})


def test_a_long_video_costs_little_memory_per_face():
    """Each face's row was kept as Python objects, about 1 KB: half a GB for two hours of three faces."""
    timeline = Timeline(("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"))
    scores = dict(zip(timeline.classes, np.full(7, 1 / 7)))
    faces = [Face((10 * k, 10, 50, 50), scores=scores, track=k) for k in range(3)]
    tracemalloc.start()
    for i in range(20_000):
        timeline.add(i, i / 30, faces)
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert used / (3 * 20_000) < 100  # bytes per face seen
    assert timeline.summary()[0]["frames"] == 20_000


def test_a_csv_that_cannot_be_written_is_named_in_the_error(tmp_path, monkeypatch):
    """A full disk ended `ferkit video` with "No space left on device" and no file named."""
    import errno
    import os

    import pytest

    from ferkit.errors import FerkitError
    from ferkit.inference import timeline as module

    class Full:  # a file whose rows cannot reach the disk
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        flush = close = lambda self: None

    monkeypatch.setattr(module, "open", lambda *args, **kwargs: Full(), raising=False)
    timeline = Timeline(CLASSES, tmp_path / "frames.csv")
    with pytest.raises(FerkitError, match=f"cannot write {tmp_path / 'frames.csv'}: {os.strerror(errno.ENOSPC)}"):
        timeline.add(0, 0.0, [_face(1, 0.9)])
    timeline.close()


def test_a_plot_format_that_needs_a_missing_program_is_refused_up_front_and_a_failed_save_is_one_line(
        tmp_path, monkeypatch):
    """pgf needs LaTeX: it was accepted, then failed in a traceback after the whole video."""
    import pytest

    from ferkit.errors import FerkitError
    from ferkit.inference import timeline as module

    monkeypatch.setattr(module.shutil, "which", lambda program: None)
    with pytest.raises(FerkitError, match=r"^cannot plot to x.pgf: matplotlib writes pgf with xelatex, which is not "
                                          r"installed$"):
        module.check_plot_format("x.pgf")
    assert "pgf" not in str(pytest.raises(FerkitError, module.check_plot_format, "x.txt").value)
    module.check_plot_format("x.svg")
    monkeypatch.setattr(module.shutil, "which", lambda program: f"/usr/bin/{program}")  # with LaTeX: allowed
    module.check_plot_format("x.pgf")
    timeline = Timeline(CLASSES)
    timeline.add(0, 0.0, [_face(1, 0.9)])
    with pytest.raises(FerkitError, match="cannot write the plot .*x.png: .*No such file or directory"):
        timeline.plot(tmp_path / "gone" / "x.png", duration=0.04)  # its folder removed while the video ran

    class LatexError(Exception):  # matplotlib's, for a LaTeX that lacks the pgf package: no OSError
        pass

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", lambda *args, **kwargs: (_ for _ in ()).throw(
        LatexError("LaTeX errored (probably missing font or error in preamble) while processing the following input")))
    with pytest.raises(FerkitError, match=r"cannot write the plot .*x.pgf: LaTeX errored \(probably missing font"):
        timeline.plot(tmp_path / "x.pgf", duration=0.04)
