"""Distillation: the teacher's probabilities, its mirror images, and targets kept for a resumed run."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from ferkit.data.preprocess import to_model_input
from ferkit.errors import FerkitError
from ferkit.training import TrainConfig

def test_teacher_targets_mix_its_probabilities_over_the_runs_classes(tiny_run, caplog, monkeypatch):
    """tiny_run knows angry, happy, sad and surprise; a two-class run takes its two columns, renormalised."""
    from ferkit.inference.backends import load_backend
    from ferkit.training import distill

    faces = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    config = TrainConfig(classes="happy,sad", teacher=str(tiny_run), teacher_weight=0.25)
    one_hot = keras.utils.to_categorical([0, 1, 0, 1, 1], 2)
    teacher = distill.teacher_probabilities(config, faces)
    backend = load_backend(str(tiny_run))
    own = backend.predict(to_model_input(faces, backend.info.image_size))
    own = own[:, [backend.info.classes.index("happy"), backend.info.classes.index("sad")]]
    np.testing.assert_allclose(teacher, own / own.sum(axis=1, keepdims=True), atol=1e-5)  # those two columns
    np.testing.assert_allclose(distill.soft_targets(config, one_hot, teacher), 0.75 * one_hot + 0.25 * teacher,
                               rtol=1e-5)
    assert distill.teacher_probabilities(TrainConfig(), faces) is None
    assert distill.teacher_probabilities(TrainConfig(teacher="none"), faces) is None  # as `--teacher none`
    assert distill.soft_targets(config, one_hot, None) is one_hot
    with pytest.raises(FerkitError, match="does not know fear"):
        distill.teacher_probabilities(TrainConfig(classes="happy,fear", teacher=str(tiny_run)), faces)
    assert "--split official" not in caplog.text
    bundled = TrainConfig(classes="happy,fear", teacher="default", split="random")
    distill.teacher_probabilities(bundled, faces)
    assert "--split official" not in caplog.text  # faces it never learnt from: one's own data
    from ferkit.training import teacher_table

    monkeypatch.setattr(teacher_table, "lookup", lambda model, asked: (  # FER2013's faces: its table holds them
        np.full((len(asked), 7), 1 / 7, np.float32), np.ones(len(asked), bool)))
    distill.teacher_probabilities(bundled, faces)
    assert "--split official" in caplog.text  # the bundled model has seen a random split's test faces


def test_a_flipping_teacher_averages_each_face_with_its_mirror_image(tiny_run):
    from ferkit.inference.backends import load_backend
    from ferkit.training import distill

    faces = np.random.default_rng(1).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    backend, x = load_backend(str(tiny_run)), to_model_input(faces, 48)
    config = TrainConfig(classes=backend.info.classes, teacher=str(tiny_run), teacher_flip=True)
    flipped = distill.teacher_probabilities(config, faces)
    np.testing.assert_allclose(flipped, (backend.predict(x) + backend.predict(x[:, :, ::-1])) / 2, atol=1e-5)
    plain = distill.teacher_probabilities(TrainConfig(classes=backend.info.classes, teacher=str(tiny_run)), faces)
    assert not np.allclose(flipped, plain, atol=1e-4)


def test_a_mirror_averaging_teacher_is_not_asked_about_the_mirror_images_again(tiny_run, tmp_path, monkeypatch):
    from ferkit.inference.backends import KerasBackend, load_backend
    from ferkit.models.mirror import mirror_averaged
    from ferkit.training import distill

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_run, teacher)
    for export in teacher.glob("*.onnx"):  # else the run's ONNX file, the network alone, would teach
        export.unlink()
    mirror_averaged(keras.models.load_model(teacher / "model.keras")).save(teacher / "model.keras")
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "mirror_average": True}))
    faces = np.random.default_rng(1).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    alone, x = load_backend(str(tiny_run / "model.keras")), to_model_input(faces, 48)
    expected = (alone.predict(x) + alone.predict(x[:, :, ::-1])) / 2
    batches = []
    predict = KerasBackend.predict
    monkeypatch.setattr(KerasBackend, "predict", lambda self, batch: batches.append(batch) or predict(self, batch))
    probs = distill.teacher_probabilities(TrainConfig(classes=config["classes"], teacher=str(teacher),
                                                      teacher_flip=True), faces)
    assert len(batches) == 1  # one pass: the model itself averages each face with its mirror image
    np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.parametrize("kept", ["other_faces", "junk", "pickled"])
def test_kept_targets_that_do_not_fit_the_faces_are_asked_again_and_replaced(tiny_run, tmp_path, caplog, kept):
    """Targets of other faces, and a damaged file, which had ended the resume in numpy's traceback."""
    from ferkit.runs import RunDir
    from ferkit.training import distill

    run = RunDir(tmp_path / "run")
    run.teacher_targets.parent.mkdir(parents=True)
    if kept == "other_faces":
        np.save(run.teacher_targets, np.full((3, 2), 0.5, "float32"))
    elif kept == "junk":
        run.teacher_targets.write_bytes(b"junk")
    else:  # loading one would run its code: refused by numpy
        np.save(run.teacher_targets, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    faces = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    probs = distill.resumed_or_new(TrainConfig(classes="happy,sad", teacher=str(tiny_run)), faces, run)
    assert probs.shape == (5, 2) and "asking the teacher again" in caplog.text
    distill.keep(run, probs)
    np.testing.assert_array_equal(np.load(run.teacher_targets), probs)
