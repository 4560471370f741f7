"""`ferkit demo`: the original project's live demo, a window with each face's emotion drawn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ferkit.cli._common import add_frame_options, add_model_options, nonempty, recognizer

log = logging.getLogger("ferkit")

WINDOW = "ferkit demo (q quits)"
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc
# pip puts both OpenCV builds in one cv2 folder, and `ferkit[gui]` keeps the headless one the base
# install needs, so whichever was installed last is the one in place: this puts the GUI build there.
GUI_FIX = "pip install --force-reinstall --no-deps 'opencv-python>=4.8,<5'"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="live webcam (or video file) window with emotions drawn",
                       description=f"Needs OpenCV's GUI build ({GUI_FIX}) and a display. Press q or Esc, "
                                   "or close the window, to quit.")
    p.add_argument("--source", type=nonempty, default="0",
                   help="camera index, video file, device or stream URL (default 0)")
    add_frame_options(p)
    add_model_options(p)
    p.set_defaults(run=run)


def _open_window() -> None:
    import cv2

    from ferkit.errors import FerkitError

    if "NONE" in cv2.getBuildInformation().split("GUI:")[-1][:40]:
        raise FerkitError(f"the demo window needs OpenCV's GUI build, but this OpenCV is headless: {GUI_FIX}")
    if sys.platform.startswith("linux"):
        _check_display(_qt_platforms(cv2.__file__))  # Qt would abort the whole process, with no error to catch
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error as exc:
        raise FerkitError(f"could not open the demo window: {exc}") from None


def _qt_platforms(cv2_file: str) -> set[str] | None:
    """The Qt display plugins that OpenCV's pip wheel ships beside it (xcb, X11's, alone), or None
    where this OpenCV brings no Qt of its own (a GTK build, a distribution's package)."""
    folder = Path(cv2_file).parent / "qt" / "plugins" / "platforms"
    return {plugin.name[4:].split(".")[0] for plugin in folder.glob("libq*.so")} if folder.is_dir() else None


def _check_display(platforms: set[str] | None) -> None:
    from ferkit.errors import FerkitError

    video = "`ferkit video FILE --output annotated.mp4` draws the same labels"
    setting = os.environ.get("QT_QPA_PLATFORM", "")
    asked = [entry.split(":")[0] for entry in setting.split(";") if entry]  # Qt tries each in turn
    usable = [name for name in asked if platforms is None or name in platforms]
    if platforms is not None and asked and not usable:
        raise FerkitError(f"QT_QPA_PLATFORM={setting}, but OpenCV's window has only the "
                          f"{', '.join(sorted(platforms))} display plugin: unset QT_QPA_PLATFORM (on Wayland, "
                          f"XWayland's DISPLAY serves), or {video}")
    if platforms is not None and (usable or ["xcb"])[0] == "xcb" and not os.environ.get("DISPLAY"):
        wayland = " (on Wayland, XWayland provides one)" if os.environ.get("WAYLAND_DISPLAY") else ""
        raise FerkitError(f"the demo window needs an X11 display (DISPLAY), and none is set{wayland}: OpenCV's "
                          f"window draws through X11 only; on a machine without one, {video}")
    if not any(map(os.environ.get, ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))):
        raise FerkitError(f"the demo window needs a display, and none is set (DISPLAY): on a machine without one, "
                          f"{video}")


def run(args: argparse.Namespace) -> int:
    import cv2

    _open_window()  # a headless OpenCV, the likeliest failure, is said before the slow model load
    try:
        # bad options fail before the camera opens
        with recognizer(args).video(args.source, args.every, args.smooth) as video:
            live = video.live
            shown, quit = _show(video, paced=not live)
    finally:
        cv2.destroyAllWindows()
    if not quit and live:  # a camera or stream never ends by itself
        log.warning("%s stopped sending frames after %d (unplugged, or the stream ended)", args.source, shown)
    return 0


def _show(video, paced: bool) -> tuple[int, bool]:
    """Frames with faces and a smoothed frame rate drawn, until the video ends, q or Esc is pressed
    or the window is closed: how many were shown, and whether the user quit. A file is `paced`:
    shown at its own times, where it had played as fast as its frames were analysed."""
    import cv2

    from ferkit.inference.recognizer import draw_face

    started = last = None
    fps, shown = 0.0, 0
    for frame in video:
        if started is None:  # at the first frame: not the model's warm-up, or the first seconds play unpaced
            started = last = time.perf_counter()
        for face in frame.faces:
            draw_face(frame.image, face)
        now = time.perf_counter()
        if frame.index:  # the first interval itself, then a moving average: from 0 it took ~20 frames to settle
            fps = 1 / max(now - last, 1e-6) if fps == 0 else 0.9 * fps + 0.1 / max(now - last, 1e-6)
        last = now
        cv2.putText(frame.image, f"{fps:.1f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        cv2.imshow(WINDOW, frame.image)
        shown += 1
        if cv2.waitKey(_wait_ms(started, frame.time, time.perf_counter()) if paced else 1) & 0xFF in QUIT_KEYS:
            return shown, True
        # Closed with its button: imshow would open it again, and a camera never runs out of frames.
        # -1 is "cannot tell" (OpenCV's GTK windows), not closed: there only the keys quit.
        if 0 <= cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
            return shown, True
    return shown, False


def _wait_ms(started: float, frame_time: float, now: float) -> int:
    """How long to keep a file's frame on screen: until its own time in the file has come (1 ms at
    least, which is how OpenCV's window gets to draw and read keys). Late frames do not wait."""
    return max(1, round((started + frame_time - now) * 1000))
