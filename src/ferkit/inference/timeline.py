"""What a video's faces showed over time, kept as its frames are analysed: the per-frame CSV,
written as it goes, and for each face its times and scores in compact arrays, for the summary
and the plot. Each face's row had been kept to the end as Python objects, about 1 KB: half a GB
for a two-hour film of three faces, a camera's grew without end, and a crash lost it all."""

from __future__ import annotations

import contextlib
import csv
import shutil
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError, first_line
from ferkit.inference.faces import FACE_COLUMNS, Face, face_cells

MOST_PLOTTED = 4  # panels of faces; more would each be too small to read


class _Seen:
    """One face followed through the frames analysed: when, its scores then, and its labels."""

    def __init__(self):
        self.times, self.scores, self.labels = array("d"), array("f"), Counter()

    def add(self, t: float, face: Face, classes: tuple[str, ...]) -> None:
        self.times.append(t)
        self.scores.extend(face.scores[name] for name in classes)
        self.labels[face.label] += 1

    def matrix(self, classes: tuple[str, ...]) -> np.ndarray:
        return np.array(self.scores, np.float32).reshape(-1, len(classes))


class Timeline:
    """The frames analysed, added one by one (`add`); `close` ends the CSV.

    Every frame analysed has its CSV rows, one per face or one empty row when it shows none, so
    that "no face" is not mistaken for a frame skipped by `every`. The CSV has the columns of
    `ferkit predict`'s, frame and time instead of file, and `track`, the face's number from frame
    to frame."""

    def __init__(self, classes: tuple[str, ...], csv_path: str | Path | None = None):
        self.classes, self.csv_path = tuple(classes), csv_path
        self.times, self.faces, self.tracks = array("d"), 0, {}
        self._handle = self._rows = None

    def add(self, index: int, t: float, faces: list[Face]) -> None:
        self.times.append(t)
        self.faces += len(faces)
        for face in faces:
            self.tracks.setdefault(face.track, _Seen()).add(t, face, self.classes)
        if self.csv_path is not None:
            self._write(index, t, faces)

    def _write(self, index: int, t: float, faces: list[Face]) -> None:
        try:
            self._write_rows(index, t, faces)
        except OSError as exc:  # a full disk: said with the file's name, which the OSError lacks
            path = self.csv_path
            with contextlib.suppress(OSError):  # its unwritten rows again: the error is said once
                self.close()
            raise FerkitError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _write_rows(self, index: int, t: float, faces: list[Face]) -> None:
        if self._rows is None:  # at the first frame: a source with none leaves no empty CSV
            self._handle = open(self.csv_path, "w", newline="", encoding="utf-8")  # any name, on any OS
            self._rows = csv.writer(self._handle)
            self._rows.writerow(["frame", "time_s", "face", "track", *FACE_COLUMNS, *self.classes])
        empty = [""] * (2 + len(FACE_COLUMNS) + len(self.classes))
        for i, face in enumerate(faces):
            self._rows.writerow([index, f"{t:.3f}", i, face.track, *face_cells(face.to_dict(), self.classes)])
        if not faces:
            self._rows.writerow([index, f"{t:.3f}", *empty])
        # Each frame's rows reach the file at once (a system call a frame, microseconds against the
        # milliseconds of its faces): a killed run (SIGKILL, a power-off aside) had lost its last 8 KB
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle, self._rows = self._handle, None, None
            self.csv_path = None  # frames added after it are summarised, not written over it
            handle.close()

    def summary(self) -> list[dict]:
        """Each face followed through the video, the longest seen first: in how many of the frames
        analysed it was, how often each emotion was its label there, and its mean scores."""
        out = []
        for track, seen in sorted(self.tracks.items(), key=lambda item: -len(item[1].times)):
            count, means = len(seen.times), seen.matrix(self.classes).mean(axis=0, dtype=np.float64)
            out.append({"track": track, "frames": count, "of_frames": len(self.times),
                        "labels": {name: seen.labels[name] / count for name in self.classes if seen.labels[name]},
                        "mean_scores": {name: float(m) for name, m in zip(self.classes, means)}})
        return out

    def plot(self, path: str | Path, duration: float) -> None:
        """Each emotion's score over time, a panel for each face followed from frame to frame (those
        in at least a twentieth of the frames analysed, the four seen longest at most), with a gap
        where that face is not found rather than a line drawn across it."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        times = np.array(self.times)  # a copy: a view would lock the array against later frames
        longest = sorted(self.tracks, key=lambda track: -len(self.tracks[track].times))
        shown = [t for t in longest if len(self.tracks[t].times) >= len(times) / 20][:MOST_PLOTTED] or longest[:1]
        shown.sort(key=lambda track: -1 if track is None else track)
        fig, axes = plt.subplots(max(len(shown), 1), 1, figsize=(9, 1.3 + 2.4 * max(len(shown), 1)), dpi=110,
                                 sharex=True, squeeze=False)
        for ax, track in zip(axes[:, 0], shown or [None]):
            curves = self._curves(track, times)
            for k, name in enumerate(self.classes):
                # a dot on each point: a face seen in one frame analysed between two without it has no line
                ax.plot(times, curves[:, k], label=name, linewidth=1.4, marker=".", markersize=3)
            ax.set(ylabel="score", ylim=(0, 1), xlim=(0, max(duration, 1e-3)))
            if len(self.tracks) > 1 and track in self.tracks:
                share = len(self.tracks[track].times) / len(times)
                ax.set_title(f"face #{track}: in {share:.0%} of the frames analysed", fontsize=9)
            ax.grid(alpha=0.3)
        left_out = f" ({len(shown)} of {len(self.tracks)} faces: those seen longest)" \
            if len(self.tracks) > len(shown) else ""
        fig.suptitle("Emotions over time" + ("" if self.tracks else " (no faces found)") + left_out, fontsize=11)
        # Above the panels, where it hides no curve
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", ncol=len(self.classes), fontsize=8,
                   bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()), frameon=False)
        axes[-1, 0].set_xlabel("time (s)")
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
        try:
            fig.savefig(path)
        except Exception as exc:  # a full disk; LaTeX failing on pgf (its LatexError is no OSError): it only writes
            raise FerkitError(f"cannot write the plot {path}: {first_line(exc)}") from None
        finally:
            plt.close(fig)

    def _curves(self, track, times: np.ndarray) -> np.ndarray:
        """A face's scores at every frame analysed, NaN where it was not found."""
        curves = np.full((len(times), len(self.classes)), np.nan)
        seen = self.tracks.get(track)
        if seen is not None:
            curves[np.searchsorted(times, np.array(seen.times))] = seen.matrix(self.classes)
        return curves


def check_plot_format(path: str) -> None:
    """Matplotlib's formats; pgf only where the LaTeX program that matplotlib runs to write it is
    installed: without it, the plot had failed after the whole video."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats, latex = set(FigureCanvasAgg.get_supported_filetypes()), matplotlib.rcParams["pgf.texsystem"]
    if not shutil.which(latex):
        formats.discard("pgf")
        if Path(path).suffix.lower() == ".pgf":
            raise FerkitError(f"cannot plot to {path}: matplotlib writes pgf with {latex}, which is not installed")
    if Path(path).suffix.lower().lstrip(".") not in formats:
        raise FerkitError(f"cannot plot to {path}: name it .png (or {', '.join(sorted(set(formats) - {'png'}))})")
