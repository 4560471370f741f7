"""The run directory itself: where each of its files lives, how a run is created, resumed and
repaired after a kill, its config.json read and checked, and the whole-or-nothing writes
(`replacing`) that ferkit's own files go through (Keras writes its history and checkpoints itself)."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError

log = logging.getLogger("ferkit")


@dataclass(frozen=True)
class RunDir:
    path: Path

    config = property(lambda self: self.path / "config.json")
    keras_model = property(lambda self: self.path / "model.keras")
    onnx_model = property(lambda self: self.path / "model.onnx")
    onnx_int8_model = property(lambda self: self.path / "model-int8.onnx")
    model_json = property(lambda self: self.path / "model.json")
    weights = property(lambda self: self.path / "model.weights.h5")
    metrics = property(lambda self: self.path / "metrics.json")
    history = property(lambda self: self.path / "history.csv")
    loss_plot = property(lambda self: self.path / "loss.png")
    accuracy_plot = property(lambda self: self.path / "accuracy.png")
    confusion_plot = property(lambda self: self.path / "confusion_matrix.png")
    predictions = property(lambda self: self.path / "predictions.csv")
    mistakes_plot = property(lambda self: self.path / "mistakes.png")
    best_weights = property(lambda self: self.path / "checkpoints" / "best.weights.h5")
    backup = property(lambda self: self.path / "checkpoints" / "backup")
    teacher_targets = property(lambda self: self.path / "checkpoints" / "teacher.npy")
    split_fingerprint = property(lambda self: self.path / "checkpoints" / "split.json")
    # `ferkit export`'s files, then every file that holds the network, in the order inference loads
    # them: ONNX first (faster, and no TensorFlow); model.json is its architecture alone
    exports = property(lambda self: (self.onnx_model, self.onnx_int8_model))
    model_files = property(lambda self: (*self.exports, self.keras_model, self.model_json))

    @classmethod
    def create(cls, output: str | Path | None, recipe: str) -> RunDir:
        """`output` itself, or runs/<recipe>-<timestamp>/ when none is given; never an existing run,
        whose checkpoints would otherwise leak into the new one."""
        run = cls(output_folder(output, recipe))
        run.check_free()
        (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        return run

    def files(self) -> tuple[Path, ...]:
        """Every file a run writes at its top level (its checkpoints/ count as a run's own)."""
        return (self.config, self.keras_model, self.onnx_model, self.onnx_int8_model, self.model_json, self.weights,
                self.metrics, self.history, self.loss_plot, self.accuracy_plot, self.confusion_plot, self.predictions,
                self.mistakes_plot)

    def holds_run(self) -> bool:
        """A training run (finished or not) was started here: what is written over it mixes two results."""
        return self.config.exists() or (self.path / "checkpoints").exists()

    def check_free(self) -> None:
        """A new run never replaces a user's files: training writes model.onnx, metrics.json and more,
        so a folder holding any of those names is refused, before any work."""
        if self.holds_run():
            raise FerkitError(self._taken())
        self.check_writable("a run")
        clashing = sorted(path.name for path in self.files() if path.exists())
        if clashing:
            raise FerkitError(f"{self.path} already holds {', '.join(clashing)}, which the run would replace: "
                              "give a new folder as --output")

    def check_writable(self, what: str) -> None:
        """The folder is one, or can be made one, and written to: said before the work, not after it."""
        if self.path.exists() and not self.path.is_dir():
            raise FerkitError(f"cannot write {what} to {self.path}: it is a file")
        folder = next(p for p in (self.path, *self.path.parents) if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise FerkitError(f"cannot write {what} to {self.path}: {folder} is not a writable folder")

    def _taken(self) -> str:
        """What a run already here is, and so what to do: a run stopped before its first epoch ended
        has nothing to resume, and --resume would only say so."""
        if self.backup.exists():  # kept until the last epoch ends
            return f"{self.path} already holds an interrupted run: --resume it, or give another --output"
        if self.keras_model.exists():
            return f"{self.path} already holds a finished run: give another --output"
        return (f"{self.path} already holds a run stopped before its first epoch ended, with nothing to "
                "resume: delete it, or give another --output")

    def history_rows(self) -> int | None:
        """Epochs in history.csv so far: what training has done, a resume's included, an epoch
        trained again after a kill counted once (`read_history`)."""
        if not self.history.is_file():
            return None
        try:
            lines = self.history.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        return len({line.split(",", 1)[0] for line in lines[1:]})

    def resume_point(self) -> tuple[int, Path | None]:
        """Where Keras' BackupAndRestore resumes: the first epoch (from 0) it trains, and the weights it
        loads, those of the epoch before; epoch 0 and no weights where no backup was ever whole. A
        latest backup that a kill cut, its weights or the record of its epoch that Keras writes just
        after them, is replaced by the one before: Keras does so itself for cut weights only, and a
        cut record had ended every later --resume in a JSONDecodeError."""
        latest, record = self.backup / "latest.weights.h5", self.backup / "training_metadata.json"
        before, before_record = Path(f"{latest}.bkp"), Path(f"{record}.bkp")
        for weights, said in ((latest, record), (before, before_record)):
            epoch = _recorded_epoch(said) if _opens(weights) else None
            if epoch is None:
                continue
            if weights == before:  # put back as the latest, which is what Keras loads
                for source, target in ((before, latest), (before_record, record)):
                    with replacing(target) as part:
                        shutil.copyfile(source, part)
            return epoch, latest
        if latest.exists() or before.exists():
            raise FerkitError(f"{self.path} cannot be resumed: both of its backups were cut by a kill while they "
                              "were written; train it again")
        return 0, None

    def best_from_backup(self, monitor: str, weights: Path) -> None:
        """A kill after an epoch's backup but before, or while, its best weights were written: that
        epoch is history.csv's last and best, and the backup's `weights` are its own. A best file
        written after the backup, and whole, is that epoch's already and stays."""
        epoch, _ = self.best_epoch(monitor)
        best = self.best_weights
        if epoch is None or epoch != self.history_rows():
            return
        if best.is_file() and best.stat().st_mtime >= weights.stat().st_mtime and _opens(best):
            return
        with replacing(best) as part:
            shutil.copyfile(weights, part)

    def repair_history(self, first_retrained: int) -> None:
        """history.csv without a row a kill cut short, ending in a line break, before a resume
        appends to it: a cut row had ended the resume in a traceback, and the next epoch's row
        would have been glued onto it. The epoch it was for is trained again from the backup.
        Whole rows of epochs from `first_retrained` on, which the backup predates, go too: kept,
        they stood beside the rows the resume writes for the same epochs, and the best of them had
        set the value the checkpoint must beat though no weights of it were kept."""
        if not self.history.is_file():
            return
        text = self.history.read_bytes().decode("utf-8", errors="replace")  # its own line ends, \r\n kept
        lines = text.splitlines()
        if not lines:
            return
        width = len(lines[0].split(","))
        rows = lines[1:] if text.endswith("\n") else lines[1:-1]  # a last line with no line break was cut
        whole = [lines[0], *(line for line in rows if _is_whole_row(line, width)
                             and float(line.split(",", 1)[0]) < first_retrained)]
        if whole != lines or not text.endswith("\n"):
            if len(whole) < len(lines):
                log.warning("%s: left out %d row(s) cut short or ahead of the backup (a kill while they were "
                            "written)", self.history, len(lines) - len(whole))
            end = "\r\n" if "\r\n" in text else "\n"  # Keras' CSVLogger writes csv's \r\n
            with replacing(self.history) as part:
                part.write_bytes(end.join([*whole, ""]).encode("utf-8"))

    def best_epoch(self, monitor: str) -> tuple[int | None, float | None]:
        """The best epoch (from 1) by `monitor` in history.csv, and its value: the epoch whose weights
        the checkpoint kept, and, before a resume, the value a new checkpoint has to beat."""
        values = read_history(self.history).get(monitor, []) if self.history.is_file() else []
        scored = [(value, epoch) for epoch, value in enumerate(values, 1) if not math.isnan(value)]
        if not scored:
            return None, None
        value, epoch = (max if monitor.endswith("accuracy") else min)(scored, key=lambda pair: pair[0])
        return epoch, value

    def progress(self, monitor: str) -> dict[str, Any]:
        """How far training has gone, from history.csv: for a run that has no model yet, or whose
        resume has gone past the model it saved before. `epochs_so_far` is None where history.csv is
        damaged (cut mid-row by a kill, or edited)."""
        try:
            (epoch, value), done = self.best_epoch(monitor), self.history_rows() or 0
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            (epoch, value), done = (None, None), None
        return {"epochs_so_far": done, "best_epoch": epoch, "monitor": monitor, "best": value,
                "resumable": self.backup.exists()}

    def why_no_model(self) -> str:
        """What to do about a run folder without its model: finish it, where a backup says it was cut short."""
        if self.backup.exists():
            return f"its training was cut short; `ferkit train --resume {self.path}` finishes it"
        return "is it a run directory, and did its training finish?"

    def check_resumable(self) -> None:
        if not self.backup.exists():
            raise FerkitError(f"{self.path} has nothing to resume: it finished, or never completed an epoch")

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise FerkitError(f"{self.path} is not a ferkit run directory (no config.json)")
        try:
            config = json.loads(self.config.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # cut short, hand-edited, unreadable
            raise FerkitError(f"{self.config} is damaged or unreadable ({exc})") from None
        return checked_config(config, self.config)

    def recorded_split(self) -> dict[str, Any] | None:
        """The split's fingerprint as the run recorded it when it started (`Splits.fingerprint`), or None
        for a run from before the record. Read by a resume, `evaluate` and `compare` alike."""
        if not self.split_fingerprint.is_file():
            return None
        try:
            then = json.loads(self.split_fingerprint.read_text(encoding="utf-8"))
            then["sizes"].values(), then["sha256"], then.get("parts", {}).get("test")  # "parts" came later
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise FerkitError(f"{self.split_fingerprint} is damaged: the faces this run started with cannot be "
                              "checked") from None
        return then

    def check_same_faces(self, fingerprint: dict[str, Any], moved: bool) -> None:
        """A resumed run goes on with the faces it started with (`Splits.fingerprint`): faces added to
        its data, or another copy, would move faces between its training and test parts mid-run."""
        try:
            then = self.recorded_split()
        except FerkitError as exc:
            raise FerkitError(f"{exc}; delete it to resume without the check") from None
        if then is None:  # a run from before the check
            if moved:
                log.warning("%s cannot check that this data splits into the faces it started with: make sure "
                            "it is the same", self.path)
            return
        if (then["sizes"], then.get("sha256")) != (fingerprint["sizes"], fingerprint["sha256"]):  # "parts" came later
            sizes = ["/".join(map(str, part["sizes"].values())) for part in (then, fingerprint)]
            raise FerkitError(f"this data does not split into the faces {self.path} started with (train/val/test "
                              f"{sizes[0]} then, {sizes[1]} now): a resumed run must train on the same faces; "
                              "start a new run on this data instead")


def read_history(path: Path) -> dict[str, list[float]]:
    """history.csv (Keras' CSVLogger) as columns of floats, a value per epoch."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "epoch" in rows[0]:
        # A kill after an epoch's row but before its backup was whole: the resume trains that epoch
        # again from the backup before it, and its second row is the one the run went on from
        rows = list({row["epoch"]: row for row in rows}.values())
    # NA: CSVLogger's word for a value it did not log, which is no epoch's best
    return {key: [math.nan if r[key] == "NA" else float(r[key]) for r in rows] for key in (rows[0] if rows else {})}


def _recorded_epoch(record: Path) -> int | None:
    """The epoch BackupAndRestore's record says it resumes at, or None where it is missing or cut."""
    try:
        epoch = json.loads(record.read_text(encoding="utf-8"))["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch >= 0 else None


def _opens(weights: Path) -> bool:
    """An HDF5 weights file that is whole enough to open: a kill while Keras wrote it cuts it."""
    import h5py  # Keras' own dependency: only a resume asks

    try:
        h5py.File(weights, "r").close()
    except OSError:
        return False
    return True


def _is_whole_row(line: str, width: int) -> bool:
    cells = line.split(",")
    try:
        float(cells[0])  # the epoch, always logged
        [float(cell) for cell in cells if cell != "NA"]  # NA: CSVLogger's word for a value not logged
    except ValueError:
        return False
    return len(cells) == width


def checked_config(config: Any, where: str | Path) -> dict[str, Any]:
    """A model's settings (a run's config.json, an .onnx file's metadata) that later code can read
    without tracebacks: a dict whose classes, where given, are names and whose members are dicts.
    Damaged or another tool's, it is one clear error; `"classes": "angry"` had read as five classes."""
    if not isinstance(config, dict):
        raise FerkitError(f"{where} is damaged: it holds no run's settings")
    classes, members = config.get("classes", []), config.get("members", [])
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise FerkitError(f"{where} is damaged: its classes are not a list of names")
    if not (isinstance(members, list) and all(isinstance(m, dict) for m in members)):
        raise FerkitError(f"{where} is damaged: its ensemble members are not a list of settings")
    return config


def default_path(name: str) -> Path:
    """Where a run (or a comparison) goes without --output: runs/<name>-<timestamp>."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def output_folder(output: str | Path | None, name: str) -> Path:
    """`output`, or default_path(name) when none is given. An empty name is refused: one check had
    read it as the current folder and the run then wrote to runs/ as if none were given."""
    if output is None:
        return default_path(name)
    if not str(output).strip():
        raise FerkitError(f"the output folder's name is empty: give a folder, or none for runs/{name}-<timestamp>")
    return Path(output)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    with replacing(path) as part:
        part.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A file beside `path` to write instead, put in its place only once written whole. A full disk or
    Ctrl-C mid-write then leaves the earlier file (or none), not a cut-short one that every later
    load of the run would fail on."""
    # two writers at once: one part each; the name's own ending kept, as Keras asks of .keras and
    # .weights.h5 files
    part = path.with_name(f".{os.getpid()}.part.{path.name}")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
