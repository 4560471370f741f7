"""`ferkit demo`: the original project's live demo, a window with each face's emotion drawn."""

from __future__ import annotations

import argparse
import time

from ferkit.cli._common import add_model_options, recognizer

WINDOW = "ferkit demo (q quits)"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="live webcam (or video file) window with emotions drawn",
                       description="Needs OpenCV's GUI build: pip install 'ferkit[gui]'. Press q to quit.")
    p.add_argument("--source", default="0", help="camera index, video file, device or stream URL (default 0)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="detect every Nth frame (default 1)")
    add_model_options(p)
    p.set_defaults(run=run)


def _open_window() -> None:
    import cv2

    from ferkit.errors import FerkitError

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise FerkitError(
            "the demo window needs OpenCV's GUI build, but this OpenCV is headless: "
            "pip uninstall -y opencv-python-headless && pip install 'ferkit[gui]'"
        ) from None


def run(args: argparse.Namespace) -> int:
    import cv2

    from ferkit.inference.video import FrameTracker, open_capture

    _open_window()  # a headless OpenCV, the likeliest failure, is said before the slow model load
    try:
        tracker = FrameTracker(recognizer(args), args.every)  # bad options fail before the camera opens
        capture = open_capture(args.source)
        try:
            _show(capture, tracker)
        finally:
            capture.release()
    finally:
        cv2.destroyAllWindows()
    return 0


def _show(capture, tracker) -> None:
    """Frames with faces and a smoothed frame rate drawn, until the video ends or q is pressed."""
    import cv2

    from ferkit.inference.recognizer import draw_face
    from ferkit.inference.video import frames

    last, fps = time.perf_counter(), 0.0
    for index, frame in frames(capture):
        faces, _ = tracker.update(index, frame)
        for face in faces:
            draw_face(frame, face)
        now = time.perf_counter()
        fps = 0.9 * fps + 0.1 / max(now - last, 1e-6) if index else 0.0
        last = now
        cv2.putText(frame, f"{fps:.1f} fps", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
        cv2.imshow(WINDOW, frame)
        if cv2.waitKey(1) & 0xFF == ord("q"):
            return
