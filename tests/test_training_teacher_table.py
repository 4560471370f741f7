"""The teacher's table: answers shipped beside a model, used for the faces it holds, never for another model."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import onnx
import pytest

from ferkit.data.preprocess import to_model_input
from ferkit.inference.backends import OnnxBackend, bundled_model_dir, load_backend
from ferkit.training import TrainConfig, distill, teacher_table


@pytest.fixture
def teacher(tiny_run, tmp_path):
    """tiny_run's ONNX file alone in a folder of its own, where its table goes."""
    path = tmp_path / "teacher" / "model.onnx"
    path.parent.mkdir()
    shutil.copy2(tiny_run / "model.onnx", path)
    return path


def faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (count, 48, 48), dtype=np.uint8)


def test_the_table_answers_for_the_faces_it_holds_and_the_teacher_for_the_rest(teacher, monkeypatch, caplog):
    backend = load_backend(teacher)
    asked = faces(6)
    written = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]  # not what the network says: which answer came from where shows
    teacher_table.write(teacher, asked[:4], written)
    batches = []
    predict = OnnxBackend.predict
    monkeypatch.setattr(OnnxBackend, "predict", lambda self, batch: batches.append(len(batch)) or predict(self, batch))
    caplog.set_level(logging.INFO, logger="ferkit")
    probs = distill.teacher_probabilities(TrainConfig(classes=backend.info.classes, teacher=str(teacher)), asked)
    np.testing.assert_allclose(probs[:4], written, atol=1e-6)
    np.testing.assert_allclose(probs[4:], predict(backend, to_model_input(asked[4:], 48)), atol=1e-6)
    assert batches == [2]  # only the two faces the table lacks went through the network
    assert f"4 of them from its {teacher_table.TABLE_NAME}" in caplog.text


def test_a_face_seen_twice_is_one_entry_and_a_near_copy_is_not_found(teacher):
    face = faces(1)
    teacher_table.write(teacher, np.concatenate([face, face]), np.full((2, 4), 0.25, np.float32))
    assert len(np.load(teacher_table.table_path(teacher))["keys"]) == 1
    nudged = face.copy()
    nudged[0, 0, 0] ^= 1  # one pixel one level off: a JPEG re-encoding changes more
    probs, found = teacher_table.lookup(teacher, np.concatenate([face, nudged, face]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(probs, [[0.25] * 4, [0] * 4, [0.25] * 4])


def test_a_table_made_for_another_model_is_not_used(teacher, caplog):
    teacher_table.write(teacher, faces(3), np.full((3, 4), 0.25, np.float32))
    model = onnx.load(teacher)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "retrained": "yes"})
    onnx.save(model, teacher)  # the same name, another model: a bundle replaced without its table
    assert teacher_table.lookup(teacher, faces(3)) is None
    assert "made for another model" in caplog.text


@pytest.mark.parametrize("cut", [10, 0.5, "no model", "flipped"])
def test_a_damaged_table_is_passed_over_with_a_warning(teacher, caplog, cut):
    """A table cut short (an interrupted copy) or missing its model's hash ended training with a
    traceback from numpy: the teacher can answer instead."""
    path = teacher_table.write(teacher, faces(3), np.full((3, 4), 0.25, np.float32))
    if cut == "no model":
        np.savez_compressed(path, keys=np.zeros(1, np.uint64), probs=np.zeros((1, 4), np.float16))
    elif cut == "flipped":  # whole, but bytes inside a compressed member damaged: zlib's own error
        np.savez_compressed(path, keys=np.arange(5000, dtype=np.uint64), probs=np.zeros((5000, 4), np.float16),
                            model=np.array(teacher_table.model_digest(teacher)))
        raw = bytearray(path.read_bytes())
        at = raw.find(b"keys.npy") + 60  # into its deflate stream: "invalid bit length repeat"
        raw[at:at + 64] = b"\xff" * 64
        path.write_bytes(bytes(raw))
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[:cut if isinstance(cut, int) else int(len(raw) * cut)])
    assert teacher_table.lookup(teacher, faces(3)) is None
    assert "cannot be read" in caplog.text and "the teacher is asked instead" in caplog.text


def test_no_table_for_a_flipping_teacher_whose_table_holds_plain_answers(teacher, monkeypatch):
    asked = faces(3)
    teacher_table.write(teacher, asked, np.full((3, 4), 0.25, np.float32))
    backend = load_backend(teacher)
    flipped = distill.teacher_probabilities(
        TrainConfig(classes=backend.info.classes, teacher=str(teacher), teacher_flip=True), asked)
    x = to_model_input(asked, 48)
    np.testing.assert_allclose(flipped, (backend.predict(x) + backend.predict(x[:, :, ::-1])) / 2, atol=1e-5)


def test_no_table_no_file_and_an_empty_table_are_all_asked_of_the_teacher(teacher, tiny_run):
    assert teacher_table.lookup(teacher, faces(2)) is None
    assert teacher_table.lookup(tiny_run, faces(2)) is None  # a Keras run directory: no ONNX file to belong to
    teacher_table.write(teacher, faces(0), np.zeros((0, 4), np.float32))
    assert teacher_table.lookup(teacher, faces(2)) is None


def test_the_shipped_table_belongs_to_the_shipped_model():
    model = bundled_model_dir() / "model.onnx"
    with np.load(teacher_table.table_path(model)) as table:
        assert str(table["model"]) == teacher_table.model_digest(model)
        assert len(table["keys"]) > 27_000 and table["probs"].shape == (len(table["keys"]), 7)


def test_the_shipped_table_says_what_the_bundled_model_says_for_real_training_faces(real_zip):
    from ferkit.data.sources import load_fer

    data = load_fer(real_zip)
    train = data.images[data.usage == "train"]
    model = bundled_model_dir() / "model.onnx"
    probs, found = teacher_table.lookup(model, train)
    assert found.all(), f"{(~found).sum()} of {len(train)} Training faces missing"
    live = OnnxBackend(model).predict(to_model_input(train, 48))
    np.testing.assert_allclose(probs, live, atol=1e-3)


def test_the_warning_of_a_teacher_that_saw_the_test_faces_is_for_fer2013_alone(real_zip, caplog):
    """On a random split of one's own faces, none of which the bundled model learnt from, it had
    advised --split official, which such data cannot follow."""
    from ferkit.data.sources import load_fer

    data = load_fer(real_zip)
    config = TrainConfig(teacher="default", split="random")
    caplog.set_level(logging.WARNING, logger="ferkit")
    distill.teacher_probabilities(config, faces(8))  # one's own faces
    assert "learnt from 90% of FER2013's Training part" not in caplog.text
    distill.teacher_probabilities(config, data.images[data.usage == "train"][:8])  # FER2013's
    assert "on a random split of FER2013, whose val and test parts share those faces" in caplog.text
