"""`ferkit video`: an annotated copy of a video, a per-frame CSV and an emotion timeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.cli._common import add_frame_options, add_model_options, nonempty, outputs, recognizer


def add_parser(sub) -> None:
    p = sub.add_parser("video", help="faces and emotions through a video file, stream or camera",
                       description="Writes any of: an annotated video, a per-frame CSV, a timeline plot.")
    p.add_argument("input", type=nonempty,
                   help="a video file, a stream's URL, or a camera's number or device (0, /dev/video2)")
    p.add_argument("--output", type=nonempty, metavar="FILE", help="annotated copy (.mp4, .avi, .mkv or .mov)")
    p.add_argument("--csv", type=nonempty, metavar="FILE", help="frame, time, face, box, label and every class score")
    p.add_argument("--plot", type=nonempty, metavar="FILE", help="emotion scores over time (.png)")
    add_frame_options(p)
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.data.files import real_path
    from ferkit.errors import FerkitError
    from ferkit.inference.video import VIDEO_SUFFIXES, process_video

    files = [out for out in (args.output, args.csv, args.plot) if out]
    if not files:
        raise FerkitError("nothing to write: give --output, --csv and/or --plot")
    if len({real_path(out) for out in files}) < len(files):
        raise FerkitError(f"--output, --csv and --plot each need a file of their own, got {', '.join(files)}")
    if args.output and Path(args.output).suffix.lower() not in VIDEO_SUFFIXES:  # now, not after the first frame
        raise FerkitError(f"--output {args.output}: a video's name ends in {', '.join(VIDEO_SUFFIXES)}")
    with outputs() as output_path:
        for out in files:
            output_path(out, inputs=[args.input])
        summary = process_video(recognizer(args), args.input, args.output, args.csv, args.every, args.plot,
                                progress=not args.quiet, smooth=args.smooth)
    # faces followed, not detections: one person through 300 frames had read "300 faces"
    print(f"{_count(summary['frames'], 'frame')}, {_count(len(summary['tracks']), 'face')} followed "
          f"({_count(summary['faces'], 'detection')}) in {summary['seconds']:.1f} s ({summary['fps']:.1f} frames/s)")
    _print_tracks(summary["tracks"], args.csv is not None)
    return 130 if summary["interrupted"] else 0  # the shell's code for Ctrl-C


def _print_tracks(tracks: list[dict], csv_written: bool, most: int = 4) -> None:
    """The faces seen longest, each with the emotions it showed most: the video at a glance."""
    for track in tracks[:most]:
        shown = sorted(track["labels"].items(), key=lambda item: -item[1])[:3]
        print(f"  face #{track['track']}: in {track['frames']} of {track['of_frames']} frames analysed; "
              + ", ".join(f"{name} {share:.0%}" for name, share in shown))
    if len(tracks) > most:
        more = len(tracks) - most
        print(f"  and {more} more face{'s' * (more > 1)} ({'the CSV has' if csv_written else '--csv writes'} them all)")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"
