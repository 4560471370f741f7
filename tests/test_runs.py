"""The run directory alone (ferkit.runs), without training: resuming after kills that cut its
backups or best weights, and which folders a new run may take. Runs trained end to end, and their
resumes, are in test_training.py."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from ferkit.errors import FerkitError
from ferkit.runs import RunDir


def _h5(path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle["w"] = np.full(3, value)


def test_the_best_weights_come_from_the_backup_only_where_the_checkpoint_missed_its_epoch(tmp_path):
    """The last epoch is the best: best weights written after its backup are its own and stay (a
    kill between the backup's weights and its record would otherwise put the next epoch's in); an
    older or cut best file is replaced by the backup's. No whole backup at all: epoch 0 again."""
    run = RunDir(tmp_path / "run")
    run.backup.mkdir(parents=True)
    run.history.write_text("epoch,val_loss\n0,1.0\n1,0.5\n", encoding="utf-8")
    assert run.resume_point() == (0, None)  # a kill before the first backup was whole
    backup = run.backup / "latest.weights.h5"
    _h5(backup, 1.0)
    (run.backup / "training_metadata.json").write_text('{"epoch": 2}')
    assert run.resume_point() == (2, backup)

    def best_after(state: str) -> float:
        run.best_weights.unlink(missing_ok=True)
        if state == "cut":
            run.best_weights.write_bytes(b"\x89HDF\r\n\x1a\n")
        else:
            _h5(run.best_weights, 2.0)
            stamp = backup.stat().st_mtime + (10 if state == "newer" else -10)
            os.utime(run.best_weights, (stamp, stamp))
        run.best_from_backup("val_loss", backup)
        with h5py.File(run.best_weights, "r") as handle:
            return float(handle["w"][0])

    assert best_after("newer") == 2.0 and best_after("older") == 1.0 and best_after("cut") == 1.0
    run.history.write_text("epoch,val_loss\n0,0.4\n1,0.5\n", encoding="utf-8")  # the last is not the best
    assert best_after("older") == 2.0


def test_values_keras_did_not_log_are_no_epochs_best_and_a_row_without_its_epoch_is_left_out(tmp_path):
    """CSVLogger writes NA for a value it did not log: a resume read it as a number, a traceback."""
    run = RunDir(tmp_path / "run")
    run.history.parent.mkdir(parents=True)
    run.history.write_text("epoch,loss,val_loss\r\n0,1.0,NA\r\n1,0.9,0.8\r\nNA,0.7,0.6\r\n", encoding="utf-8")
    run.repair_history(first_retrained=5)  # the row of no epoch cannot be placed: left out
    assert run.history.read_text(encoding="utf-8").splitlines()[1:] == ["0,1.0,NA", "1,0.9,0.8"]
    assert run.best_epoch("val_loss") == (2, 0.8) and run.best_epoch("loss") == (2, 0.9)


@pytest.mark.parametrize("cut", ["record", "weights"])
def test_a_backup_cut_by_a_kill_gives_way_to_the_one_before(tmp_path, cut):
    """Keras writes the record of the epoch just after the weights, and reads it back unchecked: a
    kill between the two (met here in a loop of random kill -9s) had ended every --resume in a
    JSONDecodeError. The backup before takes the latest's place, as Keras does itself for cut
    weights; both cut, the run cannot be resumed, said in one line."""
    run = RunDir(tmp_path / "run")
    latest, record = run.backup / "latest.weights.h5", run.backup / "training_metadata.json"
    _h5(latest, 8.0)
    record.write_text("" if cut == "record" else '{"epoch": 8, "batch": 0}')
    if cut == "weights":
        latest.write_bytes(latest.read_bytes()[:100])
    _h5(run.backup / "latest.weights.h5.bkp", 7.0)
    (run.backup / "training_metadata.json.bkp").write_text('{"epoch": 7, "batch": 0}')
    assert run.resume_point() == (7, latest)
    with h5py.File(latest, "r") as handle:
        assert float(handle["w"][0]) == 7.0
    assert json.loads(record.read_text())["epoch"] == 7
    (run.backup / "latest.weights.h5.bkp").write_bytes(b"")
    latest.write_bytes(b"")
    with pytest.raises(FerkitError, match="both of its backups were cut"):
        run.resume_point()


def test_a_folder_of_other_names_takes_a_run(tmp_path):
    """Only a run's own file names clash: a folder holding a user's other files takes a new run,
    and keeps them."""
    for name in (".gitkeep", "notes.txt"):
        (tmp_path / name).write_text("mine")
    run = RunDir.create(tmp_path, "seed-custom")
    assert run.path == tmp_path and (tmp_path / "checkpoints").is_dir()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(FerkitError, match="already holds a run"):  # its checkpoints/ make it a run's now
        RunDir.create(tmp_path, "seed-custom")
