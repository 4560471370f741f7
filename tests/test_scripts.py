"""The maintainers' scripts (scripts/): what they write and what they refuse."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from ferkit.errors import FerkitError
from ferkit.runs import RunDir

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_names_teacher_and_weights_files_without_this_machines_paths():
    shareable = _script("bundle_model").shareable
    config = {"data": "/home/me/fer.zip", "teacher": "/home/me/runs/t", "weights": "/home/me/w.weights.h5",
              "members": [{"run": "/home/me/runs/a", "teacher": "default", "weights": "none"}]}
    assert shareable(config) == {"data": "fer.zip", "teacher": "t", "weights": "w.weights.h5",
                                 "members": [{"run": "a", "teacher": "default", "weights": "none"}]}


def test_the_bundle_script_refuses_a_member_that_is_no_run_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="give a run directory"):  # was FileNotFoundError from copying
        _script("bundle_model").main([str(tmp_path / "nosuchrun")], None, False, None)


def test_the_bundle_script_tests_on_and_tabulates_the_members_own_data(tiny_run, tmp_path, monkeypatch):
    """Without --data, the teacher's table was read from the data's bare name that publish() leaves
    in config.json: a traceback after minutes of export and evaluation, nothing installed."""
    bundle = _script("bundle_model")
    monkeypatch.setattr(bundle, "TARGET", tmp_path / "assets")
    monkeypatch.chdir(tmp_path)  # not where the data is
    bundle.main([str(tiny_run)], None, False, None)
    assert {p.name for p in (tmp_path / "assets").iterdir()} >= {"model.onnx", "config.json", "teacher-targets.npz"}


def test_one_older_int8_member_is_bundled_with_float_scores(tiny_run, tmp_path, monkeypatch):
    """The bundled model re-bundled alone skipped averaging, and so kept its 8-bit scores."""
    from conftest import softmax_reads_float
    from ferkit.models import export

    monkeypatch.setattr(export, "float_scores", lambda model: model)  # as older exports quantized everything
    old = export.export_onnx(tiny_run, tmp_path / "old.onnx", quantize="int8")
    (tmp_path / "stage").mkdir()
    bundled = _script("bundle_model").from_graphs([str(old)], None, False, tmp_path / "stage", None)
    assert softmax_reads_float(bundled) and not softmax_reads_float(old)


def test_half_weights_round_trip_and_keep_what_cannot_be_rebuilt(tiny_run, tmp_path):
    from ferkit.models import create_model
    from ferkit.models.ensemble import ensemble_run
    from ferkit.runs import load_keras_model

    half = _script("half_weights")
    run = RunDir(tmp_path / "run")
    shutil.copytree(tiny_run, run.path)
    faces = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    before = np.asarray(load_keras_model(run.path)[0](faces))
    half.pack(run)
    assert not run.keras_model.exists()
    half.unpack(run)
    np.testing.assert_allclose(np.asarray(load_keras_model(run.path)[0](faces)), before, atol=1e-3)

    (tmp_path / "bare").mkdir()
    for name in ("a", "b"):
        create_model("custom", image_size=48, num_classes=7).save(tmp_path / "bare" / f"{name}.keras")
    ensemble = ensemble_run([tmp_path / "bare" / "a.keras", tmp_path / "bare" / "b.keras"], tmp_path / "ens")
    with pytest.raises(FerkitError, match="unknown configuration field"):  # its config.json rebuilds no network
        half.pack(ensemble)
    assert ensemble.keras_model.is_file()  # was deleted, the weights then unloadable


def test_the_gpu_machines_faces_travel_deflated_and_come_back_as_they_were(tmp_path):
    """A call carries 64 MiB in all: the faces as a stored array had put it 0.4 MB over."""
    import zipfile

    import cv2

    from conftest import synthetic_faces

    images, labels = synthetic_faces(("happy", "sad"), 5)
    source = tmp_path / "fer.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for i, (image, label) in enumerate(zip(images, labels)):
            for part in ("train", "test"):
                archive.writestr(f"{part}/{label}/{i}.jpg", cv2.imencode(".jpg", image)[1].tobytes())
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    faces = _script("device_faces")
    faces.pack(source, tmp_path / "fer.npz")
    faces.unpack(tmp_path / "fer.npz", tmp_path / "fer")
    assert all((tmp_path / "fer" / name).read_bytes() == data for name, data in members.items())
    with zipfile.ZipFile(tmp_path / "fer.npz") as packed:  # an .npz is a zip of .npy files
        assert {info.compress_type for info in packed.infolist()} == {zipfile.ZIP_DEFLATED}
