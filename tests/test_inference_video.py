from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.errors import FerkitError
from ferkit.inference import EmotionRecognizer
from ferkit.inference.video import open_capture, process_video


@pytest.fixture
def tiny_video(tmp_path, group_photo):
    """A 12-frame 640x480 clip: the group photo drifting right, then two blank frames."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    image, _ = group_photo
    for i in range(10):
        writer.write(np.roll(image, 3 * i, axis=1))
    for _ in range(2):
        writer.write(np.full_like(image, 90))
    writer.release()
    return path


def test_video_outputs(tiny_run, tiny_video, tmp_path):
    rec = EmotionRecognizer(tiny_run)
    out, table, plot = tmp_path / "out.mp4", tmp_path / "frames.csv", tmp_path / "timeline.png"
    summary = process_video(rec, str(tiny_video), str(out), str(table), every=1, plot=str(plot), progress=False)
    assert summary["frames"] == 12 and summary["faces"] == 30
    capture = cv2.VideoCapture(str(out))
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert frame_count == 12
    with open(table, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32 and set(rec.classes) | {"confidence"} <= set(rows[0])
    assert [r["frame"] for r in rows if r["label"]] == [str(i) for i in range(10) for _ in range(3)]
    # The two blank frames: a row each, empty face columns, so "no face" is told from "not analysed"
    assert [(r["frame"], r["time_s"], r["face"], r["label"]) for r in rows[30:]] == [
        ("10", "1.000", "", ""), ("11", "1.100", "", "")]
    # Each face keeps its number from frame to frame, and has its panel in the plot
    assert {(r["face"], r["track"]) for r in rows if r["label"]} == {("0", "1"), ("1", "2"), ("2", "3")}
    assert all(0 < float(r["detection_score"]) <= 1 for r in rows if r["label"])
    assert plot.stat().st_size > 10_000 and cv2.imread(str(plot)).shape[0] == round((1.3 + 2.4 * 3) * 110)


def test_the_python_api_gives_frames_with_numbered_faces(tiny_run, tiny_video):
    rec = EmotionRecognizer(tiny_run)
    frames = list(rec.video(tiny_video, every=3))  # a path object, as open() takes
    assert [frame.index for frame in frames] == list(range(12))
    assert [frame.analysed for frame in frames] == [i % 3 == 0 for i in range(12)]
    assert [round(frame.time, 3) for frame in frames] == [round(i / 10, 3) for i in range(12)]
    assert all(frame.image.shape == (480, 640, 3) for frame in frames)
    assert [[face.track for face in frame.faces] for frame in frames[:10]] == [[1, 2, 3]] * 10
    assert frames[10].faces is frames[11].faces is frames[9].faces  # reused until frame 12 would be analysed
    assert list(rec.video(tiny_video))[10].faces == []  # the blank frames, analysed: no face
    with rec.video(str(tiny_video)) as video:  # left early: the file is let go
        assert next(iter(video)).index == 0 and video.fps == 10 and video.frame_count == 12
    with pytest.raises(FerkitError, match="read once: call rec.video"):  # not an empty second pass
        list(video)
    plain, smooth = list(rec.video(tiny_video)), list(rec.video(tiny_video, smooth=4))
    assert plain[0].faces[0].scores == smooth[0].faces[0].scores  # nothing to average yet
    later = [(p.faces[0].scores, s.faces[0].scores) for p, s in zip(plain[1:10], smooth[1:10])]
    assert any(p != pytest.approx(s, abs=1e-4) for p, s in later)
    for every in (0, 1.5, True):
        with pytest.raises(FerkitError, match=r"every \(--every\) is a whole number of frames"):
            rec.video(tiny_video, every=every)
    with pytest.raises(FerkitError, match="video not found"):
        rec.video("missing.mp4")  # at once, not at the first frame


def test_the_summary_follows_each_face(tiny_run, tiny_video, capsys):
    from ferkit.cli import main

    rec = EmotionRecognizer(tiny_run)
    tracks = process_video(rec, str(tiny_video), csv_path=None, progress=False)["tracks"]
    assert [(t["track"], t["frames"], t["of_frames"]) for t in tracks] == [(1, 10, 12), (2, 10, 12), (3, 10, 12)]
    for track in tracks:
        assert sum(track["labels"].values()) == pytest.approx(1)
        assert sum(track["mean_scores"].values()) == pytest.approx(1, abs=1e-3)
    assert main(["-q", "video", str(tiny_video), "--csv", str(tiny_video.with_suffix(".csv")),
                 "--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("12 frames, 3 faces followed (30 detections) in") and "face #2: in 10 of 12 frames analysed; " in out


def test_every_nth_frame(tiny_run, tiny_video, tmp_path):
    rec = EmotionRecognizer(tiny_run)
    summary = process_video(rec, str(tiny_video), csv_path=str(tmp_path / "f.csv"), every=4, progress=False)
    assert summary["frames"] == 12 and summary["faces"] == 9  # frames 0, 4, 8


def test_bad_video_inputs(tiny_run, tmp_path):
    rec = EmotionRecognizer(tiny_run)
    with pytest.raises(FerkitError, match="video not found"):
        process_video(rec, str(tmp_path / "missing.mp4"), progress=False)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(FerkitError, match="cannot open"):
        process_video(rec, str(broken), progress=False)
    with pytest.raises(FerkitError, match="every"):
        process_video(rec, str(broken), every=0, progress=False)  # said before the file is opened
    with pytest.raises(FerkitError, match="cannot open video source '/dev/null'"):  # a device, not "not found"
        process_video(rec, "/dev/null", progress=False)
    with pytest.raises(FerkitError, match="cannot open camera 9: no camera with that number"):
        open_capture("9")  # in a folder without a file named 9: the camera, which this machine lacks
    text = tmp_path / "notes.jpg"
    text.write_text("not a video, though OpenCV opens it\n" * 20)
    with pytest.raises(FerkitError, match="no frame of .* could be decoded"):
        process_video(rec, str(text), csv_path=str(tmp_path / "n.csv"), progress=False)
    assert not (tmp_path / "n.csv").exists()
    with pytest.raises(FerkitError, match="no frame of .*notes.jpg could be decoded"):  # Python's loop had ended
        list(rec.video(text))                                                         # at once, without a word


def test_ctrl_c_keeps_the_outputs_of_the_frames_read(tiny_run, tiny_video, tmp_path, caplog):
    rec = EmotionRecognizer(tiny_run)
    detect, calls = rec.detect, []

    def detect_until_ctrl_c(frame):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return detect(frame)

    rec.detect = detect_until_ctrl_c
    out, table, plot = tmp_path / "out.mp4", tmp_path / "frames.csv", tmp_path / "timeline.png"
    summary = process_video(rec, str(tiny_video), str(out), str(table), plot=str(plot), progress=False)
    assert summary["interrupted"] and summary["frames"] == 4
    with open(table, encoding="utf-8") as handle:
        assert {r["frame"] for r in csv.DictReader(handle)} == {"0", "1", "2", "3"}
    assert plot.stat().st_size > 10_000 and "the outputs hold the first 4 frames" in caplog.text
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()


def test_a_truncated_video_is_reported(tiny_run, group_photo, tmp_path, caplog):
    path = tmp_path / "clip.avi"  # AVI's header declares its frame count up front
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(8):
        writer.write(np.roll(group_photo[0], 3 * i, axis=1))
    writer.release()
    rec = EmotionRecognizer(tiny_run)
    assert process_video(rec, str(path), csv_path=str(tmp_path / "f.csv"), progress=False)["frames"] == 8
    assert "stopped at" not in caplog.text  # the whole file: nothing to say
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    summary = process_video(rec, str(path), csv_path=str(tmp_path / "f.csv"), progress=False)
    assert 0 < summary["frames"] < 7 and not summary["interrupted"]
    assert f"(frame {summary['frames']}) of the 0.8 s its header declares" in caplog.text


def test_unwritable_video_output(tiny_run, tiny_video, tmp_path):
    with pytest.raises(FerkitError, match="cannot write video .*: check the folder exists"):
        process_video(EmotionRecognizer(tiny_run), str(tiny_video), str(tmp_path / "no" / "out.mp4"),
                      progress=False)


def test_a_video_too_narrow_to_write_says_why(tiny_run, tmp_path):
    """OpenCV reads 1-pixel-wide video but cannot write it as mp4v: the folder is not the problem."""
    path = tmp_path / "strip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1, 8))
    for i in range(3):
        writer.write(np.full((8, 1, 3), 40 * i, np.uint8))
    writer.release()
    with pytest.raises(FerkitError, match="its frames are 1x8 pixels, and an annotated copy needs at least 2x2"):
        process_video(EmotionRecognizer(tiny_run), str(path), str(tmp_path / "out.mp4"), progress=False)


def test_video_outputs_are_checked_before_the_video_is_read(tiny_run, tiny_video, tmp_path, capsys, monkeypatch):
    from ferkit.cli import main

    monkeypatch.setattr("ferkit.inference.video.open_capture", lambda *args: pytest.fail("the video was opened first"))
    size = tiny_video.stat().st_size
    for flag, target, message in (("--output", tiny_video, "is one of the inputs"),
                                  ("--csv", tiny_video / "f.csv", "is a file, not a folder"),
                                  ("--plot", tmp_path / "timeline.txt", "cannot plot to"),
                                  ("--plot", tmp_path / "timeline", "name it .png")):
        assert main(["video", str(tiny_video), flag, str(target), "--model", str(tiny_run)]) == 2
        assert message in capsys.readouterr().err
    assert main(["video", str(tiny_video), "--output", str(tmp_path / "same.mp4"), "--csv",
                 str(tmp_path / "." / "same.mp4"), "--model", str(tiny_run)]) == 2
    assert "each need a file of their own" in capsys.readouterr().err
    assert tiny_video.stat().st_size == size and not (tmp_path / "same.mp4").exists()


def test_a_plot_that_cannot_be_saved_says_the_other_outputs_are_written(tiny_run, tiny_video, tmp_path,
                                                                      monkeypatch):
    """The plot is written last: its failure (a full disk, LaTeX) had read as if the whole video were lost."""
    from ferkit.inference.timeline import Timeline

    def full_disk(self, path, duration):
        raise FerkitError(f"cannot write the plot {path}: No space left on device")

    monkeypatch.setattr(Timeline, "plot", full_disk)
    csv_path, plot = tmp_path / "faces.csv", tmp_path / "timeline.png"
    with pytest.raises(FerkitError, match=r"cannot write the plot .*timeline.png: No space left on device "
                                          r"\(.*faces.csv written\)$"):
        process_video(EmotionRecognizer(tiny_run), str(tiny_video), csv_path=str(csv_path), plot=str(plot),
                      progress=False)
    assert len(csv_path.read_text().splitlines()) > 1


def test_a_video_output_opencv_cannot_write_is_refused_before_the_model_loads(tiny_run, tiny_video, tmp_path,
                                                                               capsys):
    from ferkit.cli import main

    for name in ("a.txt", "a.webm", "a"):
        assert main(["video", str(tiny_video), "--output", str(tmp_path / name), "--model", "missing.onnx"]) == 2
        assert "a video's name ends in .mp4, .avi, .mkv, .mov" in capsys.readouterr().err


def test_a_video_file_named_like_a_camera_is_the_file(tiny_video, tmp_path, monkeypatch):
    from ferkit.inference.video import open_capture

    (tmp_path / "7").write_bytes(tiny_video.read_bytes())
    monkeypatch.chdir(tmp_path)
    capture = open_capture("7")
    try:
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    finally:
        capture.release()
    with pytest.raises(FerkitError, match="cannot open camera 7"):
        open_capture(7)  # from the Python API an int is the camera, whatever the folder holds
    with pytest.raises(FerkitError, match="cannot open camera 7"):
        open_capture(np.int64(7))


@pytest.mark.parametrize("fps, count", [(0.0, -1.0), (float("nan"), float("nan")), (90000.0, -9.2e18)])
def test_what_opencv_says_of_an_unknown_rate_and_length_is_not_taken_as_such(tiny_run, tiny_video, monkeypatch,
                                                                              fps, count):
    """Cameras say -1 frames, some streams 0 or NaN frames per second, or absurd numbers."""
    from ferkit.inference import video as video_module

    real = cv2.VideoCapture

    class Capture:  # a wrapper: a subclass of OpenCV's class crashes the interpreter at exit
        def __init__(self, *args):
            self.capture = real(*args)

        def get(self, prop):
            return {cv2.CAP_PROP_FPS: fps, cv2.CAP_PROP_FRAME_COUNT: count}.get(prop, self.capture.get(prop))

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(video_module.cv2, "VideoCapture", Capture)
    with EmotionRecognizer(tiny_run).video(str(tiny_video)) as video:
        assert (video.fps, video.frame_count) == (25.0, None)


def test_demo_without_gui_build_says_how_to_get_it(tiny_run, tiny_video):
    if cv2.getBuildInformation().count("GUI:") and "NONE" not in cv2.getBuildInformation().split("GUI:")[1][:40]:
        pytest.skip("this OpenCV has a GUI build")
    result = subprocess.run([sys.executable, "-m", "ferkit", "demo", "--source", str(tiny_video),
                             "--model", str(tiny_run)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "headless: pip install --force-reinstall --no-deps 'opencv-python" in result.stderr


@pytest.mark.parametrize("display", [{}, {"WAYLAND_DISPLAY": "wayland-0"}, {"QT_QPA_PLATFORM": "wayland"}])
def test_demo_without_a_display_it_can_use_says_so_instead_of_aborting(tiny_run, tiny_video, display):
    """OpenCV's pip wheel draws through X11 alone (Qt's xcb plugin): on Wayland without XWayland, or
    with QT_QPA_PLATFORM=wayland, Qt aborted the process (SIGABRT, no error to catch)."""
    env = _gui_cv2_env()
    if env is None:
        pytest.skip("needs OpenCV's GUI build (pip install 'ferkit[gui]', or FERKIT_GUI_SITE)")
    env = {key: value for key, value in env.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "ferkit", "demo", "--source", str(tiny_video),
                             "--model", str(tiny_run)], capture_output=True, text=True, timeout=120,
                            env={**env, **display})
    said = ("the demo window needs", "QT_QPA_PLATFORM=wayland, but")
    assert result.returncode == 2 and any(words in result.stderr for words in said), result.stderr


def test_the_demo_plays_a_file_at_its_own_pace_and_a_camera_as_it_comes(monkeypatch):
    """A file had played as fast as its frames were analysed: a 30 fps clip in a third of its time."""
    import time

    from ferkit.cli import demo
    from ferkit.inference.video import VideoFrame

    waits = []
    monkeypatch.setattr(cv2, "imshow", lambda *a: None)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "waitKey", lambda ms: waits.append(ms) or time.sleep(ms / 1000) or -1)
    video = [VideoFrame(i, i * 0.1, np.zeros((8, 8, 3), np.uint8), [], True) for i in range(5)]
    started = time.perf_counter()
    assert demo._show(video, paced=True) == (5, False)
    assert time.perf_counter() - started >= 0.4 - 0.01 and max(waits) > 50
    waits.clear()
    assert demo._show(video, paced=False) == (5, False)
    assert waits == [1] * 5
    assert demo._wait_ms(10.0, 0.5, 10.7) == 1  # a late frame does not wait


def test_the_demo_knows_which_displays_opencvs_own_qt_can_use(tmp_path, monkeypatch):
    from ferkit.cli import demo

    (tmp_path / "qt" / "plugins" / "platforms").mkdir(parents=True)
    (tmp_path / "qt" / "plugins" / "platforms" / "libqxcb.so").write_bytes(b"")
    assert demo._qt_platforms(str(tmp_path / "__init__.py")) == {"xcb"}
    assert demo._qt_platforms(str(tmp_path / "elsewhere" / "__init__.py")) is None  # no Qt of its own
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(FerkitError, match="XWayland provides one"):
        demo._check_display({"xcb"})
    demo._check_display(None)  # a GTK or distribution build draws on Wayland itself
    monkeypatch.setenv("DISPLAY", ":0")
    demo._check_display({"xcb"})
    monkeypatch.setenv("QT_QPA_PLATFORM", "wayland")
    with pytest.raises(FerkitError, match="has only the xcb display plugin"):
        demo._check_display({"xcb"})
    monkeypatch.setenv("QT_QPA_PLATFORM", "wayland;xcb")  # Qt falls back to xcb, on DISPLAY
    demo._check_display({"xcb"})
    monkeypatch.delenv("DISPLAY")
    for setting in ("wayland;xcb", "xcb"):
        monkeypatch.setenv("QT_QPA_PLATFORM", setting)
        with pytest.raises(FerkitError, match="needs an X11 display"):
            demo._check_display({"xcb"})


def _gui_cv2_env() -> dict | None:
    """An environment whose cv2 has a GUI: this one, or FERKIT_GUI_SITE (a folder holding
    opencv-python, installed there by .ci/run) put first on PYTHONPATH."""
    if "NONE" not in cv2.getBuildInformation().split("GUI:")[1][:40]:
        return dict(os.environ)
    site = os.environ.get("FERKIT_GUI_SITE")
    if site and os.path.isdir(os.path.join(site, "cv2")):
        return {**os.environ, "PYTHONPATH": os.pathsep.join([site, os.environ.get("PYTHONPATH", "")])}
    return None


@pytest.mark.skipif(not shutil.which("Xvfb"), reason="Xvfb not installed (apt-get install xvfb)")
def test_demo_runs_under_xvfb(tiny_run, tiny_video):
    """The real window on a virtual display, a video file as the camera, until the video ends."""
    env = _gui_cv2_env()
    if env is None:
        pytest.skip("needs OpenCV's GUI build (pip install 'ferkit[gui]', or FERKIT_GUI_SITE)")
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1024x768x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = subprocess.run([sys.executable, "-m", "ferkit", "demo", "--source", str(tiny_video),
                                 "--model", str(tiny_run)], capture_output=True, text=True, timeout=120,
                                env={**env, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"})
    finally:
        xvfb.terminate()
    assert result.returncode == 0, result.stderr


class _Recorder:
    """Stands in for cv2.VideoWriter: the frames written, in order."""

    def __init__(self):
        self.frames = []

    def write(self, frame):
        self.frames.append(int(frame[0, 0, 0]))

    def release(self):
        pass


def test_a_variable_frame_rate_keeps_its_times_in_the_annotated_copy():
    """Frames at 0, 0.1, 0.4 and 0.42 s into a 10 fps writer: the late one is preceded by copies of
    the last, the early one (faster than the rate) is left out, so the copy lasts as the source does."""
    from ferkit.inference.video import TimedWriter

    recorder = _Recorder()
    writer = TimedWriter("v.mp4", 10, np.zeros((2, 2, 3), np.uint8), open_writer=lambda *_: recorder)
    for value, t in ((0, 0.0), (1, 0.1), (2, 0.4), (3, 0.42), (4, 0.5)):
        writer.write(np.full((2, 2, 3), value, np.uint8), t)
    writer.release()
    assert recorder.frames == [0, 1, 1, 1, 2, 4]
    assert writer.fps == 10  # its median interval, 0.1 s, is the header's rate


def test_a_clip_with_a_pause_keeps_every_frame_of_its_moving_stretches():
    """30 fps frames, 15 before and 15 after a 10 s pause: the header's rate (the frames over the
    duration) is 2.9 fps, at which 25 of the 30 pictures were dropped. The first frames' rate is used."""
    from ferkit.inference.video import TimedWriter

    opened = []

    def open_writer(path, fps, first):
        opened.append((fps, _Recorder()))
        return opened[-1][1]

    stamps = [i / 30 for i in range(15)] + [10 + i / 30 for i in range(15)]
    writer = TimedWriter("v.mp4", 30 / 10.5, np.zeros((2, 2, 3), np.uint8), open_writer=open_writer)
    for value, t in enumerate(stamps):
        writer.write(np.full((2, 2, 3), value, np.uint8), t)
    writer.release()
    fps, recorder = opened[-1]
    assert fps == pytest.approx(30)
    assert sorted(set(recorder.frames)) == list(range(30))  # every picture, the pause held on the 15th
    assert len(recorder.frames) == round(stamps[-1] * 30) + 1


def test_a_rate_seen_in_whole_milliseconds_is_one_the_codec_takes(tmp_path):
    """Frames 15 ms apart: mp4v refused 66.667 fps, and the run ended at the 8th frame."""
    from ferkit.inference.video import TimedWriter

    out = tmp_path / "v.mp4"
    writer = TimedWriter(str(out), 30, np.zeros((16, 16, 3), np.uint8))
    for i in range(20):
        writer.write(np.full((16, 16, 3), 10 * i, np.uint8), i * 0.015)
    writer.release()
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(66.67, abs=0.01)
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 20
    capture.release()


@pytest.mark.parametrize("fps", [66.667, 119.43123, 29.97002997])
def test_a_headers_rate_the_codec_cannot_hold_exactly_is_rounded_not_refused(tmp_path, fps):
    """A high-frame-rate phone's header averages to rates such as 66.667: mp4v refused them, and
    `ferkit video --output` wrote nothing, blaming the folder. NTSC's 29.97... is kept as it is."""
    from ferkit.inference.video import TimedWriter

    out = tmp_path / "v.mp4"
    writer = TimedWriter(str(out), fps, np.zeros((16, 16, 3), np.uint8))
    for i in range(10):
        writer.write(np.full((16, 16, 3), 10 * i, np.uint8), i / fps)
    writer.release()
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, abs=0.006)
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    capture.release()
    assert writer.fps == (fps if fps < 65 else round(fps, 2))


def test_a_rate_the_source_did_not_give_is_the_frames_own():
    """A header with no rate (0) made the writer 25 fps, and a 30 fps source lost a frame in six:
    only a rate 1.5 times faster replaced it. A header's own 25 stays where 30 fps frames come."""
    from ferkit.inference.video import TimedWriter

    for guessed, expected in ((True, 30), (False, 25)):
        opened = []
        writer = TimedWriter("v.mp4", 25, np.zeros((2, 2, 3), np.uint8), guessed=guessed,
                             open_writer=lambda path, fps, first: opened.append(fps) or _Recorder())
        for value in range(30):
            writer.write(np.full((2, 2, 3), value, np.uint8), value / 30)
        writer.release()
        assert writer.fps == expected and opened[-1] == expected


def test_frames_of_another_size_are_resized_to_the_first(tmp_path):
    """A stream that changes resolution: OpenCV's writer drops frames of another size without a word,
    and the copy froze at the change."""
    from ferkit.inference.video import TimedWriter

    out = tmp_path / "v.mp4"
    writer = TimedWriter(str(out), 10, np.zeros((32, 48, 3), np.uint8))
    for i in range(10):
        side = (32, 48) if i < 5 else (64, 96)
        writer.write(np.full((*side, 3), 20 * i, np.uint8), i / 10)
    writer.release()
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert len(frames) == 10 and frames[-1].shape == (32, 48, 3) and abs(int(frames[-1].mean()) - 180) <= 4


def test_bunched_timestamps_keep_the_headers_rate():
    """Frames stamped 1 ms apart are a glitch, not a 1000 fps video: written at 1000 fps, each frame
    of the 25 fps clip would have been copied 40 times."""
    from ferkit.inference.video import TimedWriter

    opened = []
    writer = TimedWriter("v.mp4", 25, np.zeros((2, 2, 3), np.uint8),
                         open_writer=lambda path, fps, first: opened.append(fps) or _Recorder())
    for value in range(10):
        writer.write(np.full((2, 2, 3), value, np.uint8), value / 1000)
    writer.release()
    assert opened == [25]


def test_a_clip_shorter_than_the_probe_is_written_whole():
    from ferkit.inference.video import TimedWriter

    recorder = _Recorder()
    writer = TimedWriter("v.mp4", 25, np.zeros((2, 2, 3), np.uint8), open_writer=lambda *_: recorder)
    for value in range(3):
        writer.write(np.full((2, 2, 3), value, np.uint8), value / 25)
    writer.release()
    assert recorder.frames == [0, 1, 2]


class _FakeCapture:
    def __init__(self, stamps_ms):
        self.stamps, self.i = stamps_ms, -1

    def read(self):
        self.i += 1
        return (self.i < len(self.stamps)), np.zeros((4, 4, 3), np.uint8)

    def get(self, prop):
        return self.stamps[self.i]


@pytest.mark.parametrize("stamps, times", [
    ([1400, 1433, 1600, 1700], [0.0, 0.033, 0.2, 0.3]),  # a container's own times, from its first frame
    ([0, 0, 0, 0], [0.0, 0.1, 0.2, 0.3]),  # a source without timestamps (a camera): one period each
    ([-1, -1, 100, 50], [0.0, 0.1, 0.101, 0.201]),  # never backwards
    # A repeated stamp is one gap on, the last between stamped frames: not the 0.1 s period of a
    # header's rate that counts a pause (it stretched the frames after it tenfold)
    # and the stamps are taken up again as soon as they pass the times: they had run a step ahead for good
    ([0, 10, 20, 20, 25, 40], [0.0, 0.01, 0.02, 0.03, 0.030001, 0.04]),
])
def test_frame_times_come_from_the_container_where_it_has_them(stamps, times):
    from ferkit.inference.video import timed_frames

    got = [round(t, 6) for _, t, _ in timed_frames(_FakeCapture(stamps), fps=10)]
    assert got == times


def test_a_video_it_cannot_write_leaves_an_old_csv_as_it_was(tiny_run, tiny_video, tmp_path):
    """The CSV, now written as frames come, was opened (emptied) before the video writer failed."""
    old = tmp_path / "keep.csv"
    old.write_text("the user's earlier results\n")
    with pytest.raises(FerkitError, match="cannot write video"):
        process_video(EmotionRecognizer(tiny_run), str(tiny_video), output=str(tmp_path / "no" / "such" / "v.mp4"),
                      csv_path=str(old), progress=False)
    assert old.read_text() == "the user's earlier results\n"


@pytest.mark.parametrize("source, frame_count, live", [
    (0, None, True), ("2", None, True), ("/dev/video0", None, True), ("rtsp://cam/1", None, True),
    ("http://cam/video.mjpg", None, True), ("https://example.com/clip.mp4", 250, False), ("clip.webm", None, False)])
def test_cameras_and_streams_are_live_and_files_are_not(source, frame_count, live):
    """A WebM without a frame count is a file still: timed by its stamps, not by how fast it is analysed."""
    from ferkit.inference.video import is_live

    assert is_live(source, frame_count) is live


def test_a_video_file_under_dev_is_a_file_not_a_camera(tmp_path):
    """/dev/shm is a RAM disk: a clip there had been taken for a camera by its path alone."""
    import tempfile

    from ferkit.inference.video import is_live

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    with tempfile.NamedTemporaryFile(dir="/dev/shm", suffix=".mp4") as clip:
        assert is_live(clip.name, 20) is False and is_live(clip.name, None) is False
    assert is_live("/dev/null", None) is True  # a device, as a camera's /dev/video0 is


def test_a_video_file_on_a_web_server_is_a_file_not_a_stream(tiny_run, tiny_video, web_folder):
    """Taken for a stream by its URL alone, it played in the demo as fast as it was analysed."""
    url, folder = web_folder
    assert tiny_video.parent == folder
    with EmotionRecognizer(tiny_run).video(f"{url}/{tiny_video.name}") as video:
        assert video.frame_count == 12 and not video.live
        assert [frame.time for frame in video][:3] == pytest.approx([0.0, 0.1, 0.2])  # its own times


def test_a_camera_without_timestamps_is_timed_by_the_clock():
    """macOS' camera backend stamps no frame: one frame period each put a camera read at a quarter
    of its frame rate at a quarter of real time."""
    from ferkit.inference.video import timed_frames

    ticks = iter([100.0, 100.1, 100.25, 100.5, 100.5])  # at the first frame (not before: a camera's warm-up), then each
    got = [round(t, 6) for _, t, _ in timed_frames(_FakeCapture([0] * 5), fps=30, clock=lambda: next(ticks))]
    assert got == [0.0, 0.1, 0.25, 0.5, 0.500001]  # never the same time twice


def test_a_video_name_opencv_would_crash_on_is_a_clear_error(tiny_run, tiny_video, tmp_path):
    """OpenCV's reader and writer segfaulted on a name that is not UTF-8."""
    name = os.fsdecode(b"v\xe9.mp4")
    try:
        shutil.copy(tiny_video, tmp_path / name)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    rec = EmotionRecognizer(tiny_run)
    with pytest.raises(FerkitError, match=r"names are not UTF-8: rename .*v\\udce9.mp4"):
        process_video(rec, str(tmp_path / name), csv_path=str(tmp_path / "f.csv"), progress=False)
    with pytest.raises(FerkitError, match="names are not UTF-8"):
        process_video(rec, str(tiny_video), output=str(tmp_path / name.replace(".mp4", "-out.mp4")),
                      progress=False)


def test_ffmpegs_own_lines_stay_out_of_the_output(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "ferkit", "video", str(empty), "--csv", str(tmp_path / "f.csv")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        f"ferkit: error: cannot open video source '{empty}': it is empty (0 bytes)"  # as predict says it
    assert "moov atom" not in done.stderr


def test_opencvs_warnings_stay_out_of_a_missing_cameras_error_from_python_too(capfd):
    """The CLI sets OPENCV_LOG_LEVEL; a program calling rec.video(99) had OpenCV's lines on its stderr."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(FerkitError, match="cannot open camera 99"):
        open_capture(99)
    assert "WARN" not in capfd.readouterr().err
    assert cv2.utils.logging.getLogLevel() == level  # the program's own setting kept


def test_opencvs_warnings_stay_out_of_a_missing_cameras_error(tmp_path):
    """`import ferkit` loads cv2 before main() sets OPENCV_LOG_LEVEL, which cv2 reads at import."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "ferkit", "video", "99", "--csv", str(tmp_path / "f.csv")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2
    assert "cannot open camera 99" in done.stderr and "WARN" not in done.stderr


class _DroppingCamera:
    """A camera of `count` frames whose reads number `drop` fail (a dropped frame), then none once out."""

    def __init__(self, count, drop=()):
        self.count, self.drop, self.reads = count, set(drop), 0

    def isOpened(self):
        return True

    def read(self):
        self.reads += 1
        if self.reads - 1 in self.drop or self.reads - len(self.drop) > self.count:
            return False, None
        return True, np.zeros((8, 8, 3), np.uint8)

    def get(self, prop):
        return 0.0  # no rate, count or timestamps, as a webcam

    def release(self):
        pass


@pytest.mark.parametrize("source, live", [(0, True), ("rtsp://cam/1", True), ("clip.mp4", False)])
def test_a_dropped_frame_does_not_end_a_camera(monkeypatch, source, live):
    """One failed read ended the demo (and `ferkit video 0`) with "stopped sending frames
    (unplugged, or the stream ended)": webcams and streams drop a frame now and then. A file ends
    at its first unreadable frame, and a camera that sends nothing more still ends."""
    import time

    from ferkit.cli import demo
    from ferkit.inference import video as video_module
    from ferkit.inference.faces import Face
    from ferkit.inference.video import VideoAnalysis

    class Recognizer:
        classes = ("happy", "sad")

        def detect(self, frame):
            return [Face((1, 1, 4, 4), scores={"happy": 0.9, "sad": 0.1})]

    monkeypatch.setattr(video_module, "open_capture", lambda source: _DroppingCamera(20, drop=(3, 10, 11)))
    monkeypatch.setattr(cv2, "imshow", lambda *a: None)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "waitKey", lambda ms: -1)
    started = time.perf_counter()
    with VideoAnalysis(Recognizer(), source) as video:
        assert video.live is live
        shown, quit = demo._show(video, paced=not live)
    assert (shown, quit) == ((20, False) if live else (3, False))
    assert time.perf_counter() - started < 5  # the camera's end is not waited on for long


def test_a_streams_slow_failed_read_counts_towards_its_patience(monkeypatch):
    """A read that fails after waiting (a stream's timeout) is time the source sent nothing: the
    clock had started after it, so such a stream ended a whole read later than said."""
    from ferkit.inference import video as video_module

    now = [0.0]

    class Clock:
        monotonic = staticmethod(lambda: now[0])
        sleep = staticmethod(lambda seconds: now.__setitem__(0, now[0] + seconds))

    class SlowFailing:
        reads = 0

        def read(self):
            self.reads += 1
            now[0] += 0.3  # each read waits 0.3 s, then fails
            return False, None

    monkeypatch.setattr(video_module, "time", Clock)
    capture = SlowFailing()
    assert list(video_module.frames(capture, patience=0.5)) == []
    assert capture.reads == 2  # failing since 0 s: given up at 0.61 s, not after a third read at 0.92


def test_the_summary_counts_one_of_a_thing_in_the_singular():
    """"1 faces followed (1 detections)" in the summary of a short clip."""
    from ferkit.cli.video import _count

    assert (_count(1, "face"), _count(0, "face"), _count(12, "frame")) == ("1 face", "0 faces", "12 frames")


def test_a_camera_that_sends_nothing_is_said_to_as_the_demo_said_it(tiny_run, monkeypatch):
    """The demo had its own words for it ("a camera that sends nothing"); once the frames' own
    error came first, a held camera had read as a corrupt video file."""
    from ferkit.inference import video as module

    class Silent:
        def read(self):
            return False, None

        def get(self, prop):
            return 0.0

        def release(self):
            pass

    monkeypatch.setattr(module, "open_capture", lambda source: Silent())
    monkeypatch.setattr(module.VideoAnalysis, "DROPPED_SECONDS", 0.05)
    with pytest.raises(FerkitError, match="^no frame of 0 could be read: a camera or stream that sends nothing$"):
        list(EmotionRecognizer(tiny_run).video(0))
