from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import softmax_reads_float
from ferkit.errors import FerkitError
from ferkit.models import create_model, list_models


def test_registry_lists_every_family():
    assert {"custom", "fernet", "vgg19", "mobilenetv2"} <= set(list_models())


@pytest.mark.parametrize("name", ["custom", "fernet", "vgg19", "mobilenetv2"])
@pytest.mark.parametrize("size, classes", [(48, 7), (64, 6)])
def test_any_size_and_class_count(name, size, classes):
    model = create_model(name, image_size=size, num_classes=classes, weights="none")
    probs = model.predict(np.random.default_rng(0).uniform(0, 255, (3, size, size, 1)), verbose=0)
    assert probs.shape == (3, classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("name", ["vgg19", "mobilenetv2"])
def test_transfer_models_freeze_the_backbone(name):
    model = create_model(name, image_size=48, num_classes=6, weights="none")
    assert not model.get_layer("backbone").trainable_weights
    assert model.get_layer("head").trainable_weights
    unfrozen = create_model(name, image_size=48, num_classes=6, weights="none", freeze=False)
    assert unfrozen.get_layer("backbone").trainable_weights


def test_vgg19_head_is_the_seed_head():
    head = create_model("vgg19", image_size=48, num_classes=6, weights="none").get_layer("head")
    kinds = [type(layer).__name__ for layer in head.layers]
    assert kinds == ["InputLayer", "BatchNormalization", "Dense", "Dense", "Dense"]
    assert [layer.units for layer in head.layers if hasattr(layer, "units")] == [4096, 1024, 6]


def test_local_weights_file_is_loaded(tmp_path):
    first = create_model("custom", image_size=48, num_classes=7)
    path = tmp_path / "w.weights.h5"
    first.save_weights(path)
    second = create_model("custom", image_size=48, num_classes=7, weights=str(path))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_transfer_model_takes_a_runs_own_weights_file(tmp_path, caplog):
    """A run's model.weights.h5 went to keras.applications as the backbone's, and failed with
    "cannot be built with the options (its defaults)" after Keras' line for each of 104 layers."""
    first = create_model("mobilenetv2", image_size=32, num_classes=7, weights="none", freeze=False)
    for suffix, save in ((".weights.h5", first.save_weights), (".keras", first.save)):
        save(tmp_path / f"m{suffix}")
        second = create_model("mobilenetv2", image_size=32, num_classes=7, weights=str(tmp_path / f"m{suffix}"),
                              freeze=False)
        for a, b in zip(first.get_weights(), second.get_weights()):
            np.testing.assert_array_equal(a, b)
    other = create_model("custom", image_size=32, num_classes=7)
    other.save_weights(tmp_path / "custom.weights.h5")
    with pytest.raises(FerkitError, match="holds no weights of this network"):
        create_model("mobilenetv2", image_size=32, num_classes=7, weights=str(tmp_path / "custom.weights.h5"))


def test_a_transfer_models_freeze_must_be_true_or_false():
    with pytest.raises(FerkitError, match="freeze must be true or false, got 'false'"):  # was frozen, silently
        create_model("mobilenetv2", image_size=32, num_classes=7, weights="none", freeze="false")


@pytest.mark.parametrize("name, weights, message", [
    ("resnet9000", "none", "unknown model"),
    ("custom", "imagenet", "no ImageNet weights"),
    ("fernet", "imagenet", "no ImageNet weights"),
    ("vgg19", "/nonexistent/w.h5", "weights file not found"),
])
def test_bad_model_requests(name, weights, message):
    with pytest.raises(FerkitError, match=message):
        create_model(name, image_size=48, num_classes=7, weights=weights)


@pytest.mark.parametrize("suffix", [".pt", ".onnx", ".npz"])
def test_weights_in_a_file_keras_cannot_read_are_refused_as_such(tmp_path, suffix):
    """A PyTorch or ONNX file had been said to hold "no weights of this network", as if the
    architecture were wrong."""
    (tmp_path / f"w{suffix}").write_bytes(b"weights")
    with pytest.raises(FerkitError, match=r"reads weights from a \.keras, \.h5, \.hdf5, \.weights\.json file"):
        create_model("custom", image_size=48, num_classes=7, weights=str(tmp_path / f"w{suffix}"))
    (tmp_path / "legacy.hdf5").write_bytes(b"weights")  # a suffix Keras reads: read, and found damaged
    with pytest.raises(FerkitError, match="cannot read weights from .*legacy.hdf5: damaged"):
        create_model("custom", image_size=48, num_classes=7, weights=str(tmp_path / "legacy.hdf5"))


def _layers_at(model, kind: str, side: int) -> int:
    return sum(type(layer).__name__ == kind and layer.output.shape[1] == side for layer in model.layers)


def test_fernet_stages_follow_blocks():
    model = create_model("fernet", image_size=48, num_classes=7, blocks=(0, 2, 2, 2))
    assert _layers_at(model, "Conv2D", 48) == 1  # the stem only: no block at full resolution
    assert [_layers_at(model, "Add", side) for side in (48, 24, 12, 6)] == [0, 2, 2, 2]
    one = create_model("fernet", image_size=48, num_classes=7)
    assert [_layers_at(one, "Add", side) for side in (48, 24, 12, 6)] == [1, 1, 1, 1]


def test_fernet_squeeze_excite_gates_every_block_and_exports(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models.export import export_onnx

    model = create_model("fernet", image_size=48, num_classes=4, blocks=(0, 2, 2, 2), se_ratio=0.25)
    assert [_layers_at(model, "Multiply", side) for side in (48, 24, 12, 6)] == [0, 2, 2, 2]
    squeezes = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"][:-1:2]
    assert squeezes == [16, 16, 32, 32, 64, 64]  # a quarter of 64, 64, 128, 128, 256, 256 channels
    run = _copy_with_model(tiny_run, tmp_path / "se", model)
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    onnx_scores = load_backend(export_onnx(run)).predict(x)
    np.testing.assert_allclose(onnx_scores, model.predict(x, verbose=0), atol=1e-5)


def test_fernet_crop_sees_the_centre_only_and_exports(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models.export import export_onnx

    model = create_model("fernet", image_size=48, num_classes=4, blocks=(0, 1, 1, 1), crop=4)
    assert model.input.shape[1:] == (48, 48, 1)  # the whole face in: preprocessing unchanged
    assert [_layers_at(model, "Add", side) for side in (40, 20, 10, 5)] == [0, 1, 1, 1]
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    border, centre = x.copy(), x.copy()
    border[:, :4] = border[:, -4:] = border[:, :, :4] = border[:, :, -4:] = 0
    centre[:, 4:44, 4:44] = 0
    scores = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(border, verbose=0), scores, atol=1e-6)
    assert np.abs(model.predict(centre, verbose=0) - scores).max() > 1e-3
    run = _copy_with_model(tiny_run, tmp_path / "crop", model)
    np.testing.assert_allclose(load_backend(export_onnx(run)).predict(x), scores, atol=1e-5)


def test_a_mirror_averaged_model_scores_a_face_as_its_mirror_image_and_exports(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models.export import export_onnx
    from ferkit.models.mirror import mirror_averaged

    core = create_model("fernet", image_size=48, num_classes=4)
    model = mirror_averaged(core)
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    mirrored = x[:, :, ::-1]
    alone, alone_mirrored = core.predict(x, verbose=0), core.predict(mirrored, verbose=0)
    assert np.abs(alone - alone_mirrored).max() > 1e-3  # the network alone tells them apart
    scores = model.predict(x, verbose=0)
    np.testing.assert_allclose(scores, (alone + alone_mirrored) / 2, atol=1e-6)
    np.testing.assert_allclose(model.predict(mirrored, verbose=0), scores, atol=1e-6)
    assert model.count_params() == core.count_params()  # the same weights, not a copy
    run = _copy_with_model(tiny_run, tmp_path / "mirror", model, mirror_average=True)
    for backend in (load_backend(run / "model.keras"), load_backend(export_onnx(run))):  # reloaded, exported
        np.testing.assert_allclose(backend.predict(x), scores, atol=1e-5)
        np.testing.assert_allclose(backend.predict(x[:1]), scores[:1], atol=1e-5)  # one face alone
        assert backend.info.mirror_averaged  # read from config.json, and from the ONNX file's metadata
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-c", "import ferkit.models, keras\n"  # as the README says
                            f"keras.models.load_model({str(run / 'model.keras')!r})"],
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr


def test_tta_leaves_out_the_mirror_view_a_mirror_averaged_model_already_scores(tiny_run, synthetic_folder,
                                                                             tmp_path, monkeypatch):
    from ferkit.evaluation import evaluate
    from ferkit.inference import EmotionRecognizer
    from ferkit.inference.backends import KerasBackend
    from ferkit.inference.tta import VIEWS
    from ferkit.models.mirror import mirror_averaged

    run = _copy_with_model(tiny_run, tmp_path / "mirror", mirror_averaged(create_model("custom", image_size=48,
                                                                                   num_classes=4)),
                           mirror_average=True)
    (run / "model.onnx").unlink()  # tiny_run's export, of another network
    for path, views in ((run, len(VIEWS) - 1), (tiny_run, len(VIEWS))):
        rec = EmotionRecognizer(path, tta=True)
        calls, predict = [], rec.backend.predict
        rec.backend.predict = lambda batch: calls.append(len(batch)) or predict(batch)
        rec.classify([np.full((48, 48), 100, np.uint8)] * 3)
        assert calls == [3 * views]
    sizes, predict = [], KerasBackend.predict
    monkeypatch.setattr(KerasBackend, "predict", lambda self, batch: sizes.append(len(batch)) or predict(self, batch))
    metrics = evaluate(run, synthetic_folder, split="test", tta=True)
    assert sum(sizes) == int(np.sum(metrics["confusion_matrix"])) * (len(VIEWS) - 1)


@pytest.mark.parametrize("options, message", [
    ({"blocks": (1, 1)}, "one width and one block count"),
    ({"blocks": (1, -1, 1, 1)}, "0 or more"),
    ({"se_ratio": 1.5}, "se_ratio"),
    ({"crop": 17}, "crop is the whole number of pixels cut off each side of the 48-px face, 0 to 16 "
                   r"\(at least 16 px left\), got 17"),
    ({"crop": -1}, "got -1"),
    ({"crop": 2.5}, "got 2.5"),
    ({"crop": True}, "got True"),
    ({"crop": "4"}, "got '4'"),
    ({"crop": 9, "widths": (8, 16, 32, 64, 128), "blocks": (1, 1, 1, 1, 1)},
     "0 to 8 .at least 32 px left"),
    ({"blockz": (1, 1, 1, 1)}, "no option 'blockz'; its options: widths, blocks, dropout, se_ratio, crop"),
])
def test_bad_model_options(options, message):
    with pytest.raises(FerkitError, match=message):
        create_model("fernet", image_size=48, num_classes=7, **options)


def _copy_with_model(run, path, model=None, **config_changes):
    """A copy of `run` whose model is `model`, by default a fresh custom network (same interface)."""
    import json
    import shutil

    shutil.copytree(run, path)
    config = json.loads((path / "config.json").read_text())
    (model or create_model("custom", image_size=48, num_classes=4)).save(path / "model.keras")
    (path / "config.json").write_text(json.dumps({**config, **config_changes}))
    return path


def test_ensemble_averages_its_members_and_exports(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models.ensemble import ensemble_run
    from ferkit.models.export import export_onnx
    from ferkit.models.loading import load_keras_model

    other = _copy_with_model(tiny_run, tmp_path / "other")
    run = ensemble_run([tiny_run, other], tmp_path / "ens")
    x = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    members = [load_keras_model(path)[0].predict(x, verbose=0) for path in (tiny_run, other)]
    model, info = load_keras_model(run.path)
    np.testing.assert_allclose(model.predict(x, verbose=0), (members[0] + members[1]) / 2, atol=1e-6)
    assert [m["run"] for m in info.config["members"]] == [str(tiny_run), str(other)] and len(info.classes) == 4
    assert info.config["model"] == "ensemble" and "epochs" not in info.config
    onnx_scores = load_backend(export_onnx(run.path)).predict(x)
    np.testing.assert_allclose(onnx_scores, (members[0] + members[1]) / 2, atol=1e-4)


def test_an_ensemble_of_mirror_averaged_members_says_so_and_tta_does_not_mirror_again(tiny_run, tmp_path,
                                                                                         caplog):
    from ferkit.inference.backends import load_backend
    from ferkit.models.ensemble import ensemble_run
    from ferkit.models.mirror import mirror_averaged

    members = [_copy_with_model(tiny_run, tmp_path / name, mirror_averaged(create_model("custom", image_size=48,
                                                                                         num_classes=4)),
                                mirror_average=True) for name in ("a", "b")]
    run = ensemble_run(members, tmp_path / "ens")
    backend = load_backend(run.path)
    assert backend.info.mirror_averaged and run.read_config()["members"][0]["mirror_average"]
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    seen = []
    original = backend.predict
    backend.predict = lambda batch: seen.append(len(batch)) or original(batch)
    from ferkit.inference.backends import predict_scores
    predict_scores(backend, x, tta=True)
    assert sum(seen) == 5 * 3  # the shifted views alone: the model mirrors each itself
    half = _copy_with_model(tiny_run, tmp_path / "c")  # not mirror-averaged, on a random split
    assert not ensemble_run([members[0], half], tmp_path / "mixed").read_config()["mirror_average"]
    caplog.set_level("WARNING", logger="ferkit")
    ensemble_run([members[0], _copy_with_model(tiny_run, tmp_path / "d", split="random", seed=3)], tmp_path / "e")
    assert "was tested on other faces than" in caplog.text


def test_weights_from_a_mirror_averaged_run_load_and_others_say_what_they_are_not(tmp_path):
    from ferkit.models.mirror import mirror_averaged

    saved = mirror_averaged(create_model("fernet", image_size=48, num_classes=7, blocks=(0, 1, 1, 1)))
    saved.save_weights(tmp_path / "model.weights.h5")  # what the default recipe's runs save
    saved.save(tmp_path / "model.keras")
    for path in (tmp_path / "model.weights.h5", tmp_path / "model.keras"):
        model = create_model("fernet", image_size=48, num_classes=7, blocks=(0, 1, 1, 1), weights=str(path))
        assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved.get_weights(), strict=True))
    with pytest.raises(FerkitError, match=r"holds no weights of this network \(fernet, 4 classes, 48 px\)"):
        create_model("fernet", image_size=48, num_classes=4, blocks=(0, 1, 1, 1), weights=str(path))


@pytest.mark.parametrize("name, options, message", [
    ("fernet", {"dropout": 1.5}, "cannot be built with the options {'dropout': 1.5}: Invalid value"),
    ("fernet", {"widths": 64}, "cannot be built with the options {'widths': 64}"),
    ("fernet", {"widths": (), "blocks": ()}, "one width and one block count"),
    ("fernet", {"se_ratio": "0.5"}, "cannot be built with the options {'se_ratio': '0.5'}"),
    ("custom", {"dense": 0}, "cannot be built with the options {'dense': 0}"),
    ("fernet", {"image_size": 4}, "fernet with 4 stages needs image_size >= 8, got 4"),
    ("fernet", {"image_size": "48"}, "image_size must be a whole number, at least 1, got '48'"),
    ("custom", {"num_classes": 0}, "num_classes must be a whole number, at least 2, got 0"),
])
def test_option_values_a_network_cannot_take_are_one_line_errors(name, options, message):
    """A recipe's [model_options] reach the builders as written: a bad value must not be a traceback."""
    sizes = {"image_size": 48, "num_classes": 7}
    sizes.update({key: options.pop(key) for key in list(options) if key in sizes})
    with pytest.raises(FerkitError, match=re.escape(message)):
        create_model(name, **sizes, **options)
    assert create_model(name, image_size=np.int64(48), num_classes=7).output_shape == (None, 7)  # numpy's ints too


class ResourceExhaustedError(Exception):  # TensorFlow's name for it, as its out-of-memory error is named
    pass


@pytest.mark.parametrize("error", [
    MemoryError(), ResourceExhaustedError("OOM when allocating tensor with shape[3,3,100000,100000]"),
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 360000000000 bytes."),  # JAX's
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),  # PyTorch's
])
def test_a_network_too_large_for_memory_is_a_one_line_error(error, monkeypatch):
    """`widths = [32, 64, 128, 100000]` had ended in TensorFlow's traceback; other failures still raise."""
    from ferkit.models import _registry

    def builder(image_size, num_classes, weights, widths):
        raise error

    monkeypatch.setitem(_registry._BUILDERS, "fernet", builder)
    with pytest.raises(FerkitError, match=r"model 'fernet' with the options \{'widths': \[1\]\} on 48-px faces "
                                          "does not fit in memory: give it fewer or narrower layers"):
        create_model("fernet", image_size=48, num_classes=7, widths=[1])
    error = RuntimeError("a bug")  # not memory: left to raise as it is
    with pytest.raises(RuntimeError, match="a bug"):
        create_model("fernet", image_size=48, num_classes=7, widths=[1])


def test_a_keras_file_beside_another_models_config_is_refused_not_fed_wrong(tiny_run, tmp_path):
    import shutil

    from ferkit.inference.backends import load_backend

    shutil.copy(tiny_run / "config.json", tmp_path)  # tiny_run's: 48-px faces, 4 classes
    create_model("custom", image_size=40, num_classes=4).save(tmp_path / "other.keras")
    with pytest.raises(FerkitError, match=r"takes 40-px faces and scores 4 classes, but the config.json beside it "
                                          r"says 48 px and 4: that config.json is another model's"):
        load_backend(tmp_path / "other.keras")


def test_member_selection_adds_only_what_helps_on_validation():
    from ferkit.models.ensemble import select_members

    labels = np.array([0, 0, 1, 1, 2, 2])
    right, wrong = np.eye(3)[labels], np.eye(3)[(labels + 1) % 3]
    unsure_wrong = 0.6 * wrong + 0.4 * right
    first = np.r_[right[:4], unsure_wrong[4:]]  # 4 of 6 right: the best alone
    second = np.r_[0.55 * wrong[:3] + 0.45 * right[:3], right[3:]]  # 3 of 6, but right where first fails
    probs = {"first": first, "second": second, "copy": first.copy(), "bad": wrong}
    steps = select_members(probs, labels, max_members=4)
    assert [name for name, _ in steps] == ["first", "second"]
    assert steps[0][1] == pytest.approx(4 / 6) and steps[1][1] == 1.0
    assert len(select_members(probs, labels, max_members=1)) == 1


def test_info_describes_an_ensemble_by_its_members(tiny_run, tmp_path, capsys):
    from ferkit.cli import main
    from ferkit.models.ensemble import ensemble_run

    run = ensemble_run([tiny_run, tiny_run], tmp_path / "ens")
    assert main(["info", "--model", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2 models on" in out and "seed-custom (custom, 2 epochs) + seed-custom" in out
    nested = ensemble_run([run.path, tiny_run], tmp_path / "nested")  # its member keeps its own members
    assert main(["info", "--model", str(nested.path)]) == 0
    assert "ensemble of 2 models (3 networks: some are ensembles themselves)" in capsys.readouterr().out


def test_an_ensemble_of_bare_keras_files_loads(tmp_path):
    """Its config.json said "classes": null, and loading it was an error."""
    from ferkit.data import EMOTIONS
    from ferkit.models.ensemble import ensemble_run
    from ferkit.models.loading import load_keras_model

    (tmp_path / "bare").mkdir()
    for name in ("a", "b"):
        create_model("custom", image_size=48, num_classes=7).save(tmp_path / "bare" / f"{name}.keras")
    run = ensemble_run([tmp_path / "bare" / "a.keras", tmp_path / "bare" / "b.keras"], tmp_path / "ens")
    model, info = load_keras_model(run.path)
    assert info.classes == EMOTIONS and info.image_size == 48 and model.output_shape == (None, 7)
    assert "a.keras (?, ? epochs) + b.keras" in info.config["description"]


def test_the_old_home_of_load_keras_model_still_loads_and_says_where_it_moved(tiny_run):
    """The README named ferkit.runs.load_keras_model until session 51; ferkit.runs itself stays Keras-free."""
    from ferkit import runs
    from ferkit.models.loading import load_keras_model

    with pytest.warns(DeprecationWarning, match="now ferkit.models.loading.load_keras_model"):
        old = runs.load_keras_model
    assert old is load_keras_model and old(tiny_run)[1].classes == runs.model_info(tiny_run).classes
    with pytest.raises(AttributeError, match="no attribute 'load_model'"):
        runs.load_model


def test_a_bare_mirror_averaged_keras_file_says_so(tmp_path):
    """Without a config.json it read as plain: --tta added the mirror view again (12 passes, not 10)."""
    from ferkit.models.mirror import mirror_averaged
    from ferkit.models.loading import load_keras_model

    mirror_averaged(create_model("custom", image_size=48, num_classes=7)).save(tmp_path / "m.keras")
    create_model("custom", image_size=48, num_classes=7).save(tmp_path / "plain.keras")
    assert load_keras_model(tmp_path / "m.keras")[1].mirror_averaged
    assert not load_keras_model(tmp_path / "plain.keras")[1].mirror_averaged
    # an ensemble's copy: its members' layers are inside them (read as plain, --tta flipped it again)
    from ferkit.models.ensemble import ensemble_run

    mirror_averaged(create_model("custom", image_size=48, num_classes=7)).save(tmp_path / "m2.keras")
    for name, members in (("both", ["m.keras", "m2.keras"]), ("one", ["m.keras", "plain.keras"])):
        run = ensemble_run([tmp_path / m for m in members], tmp_path / name)
        shutil.copy2(run.keras_model, tmp_path / f"{name}.keras")
        assert load_keras_model(tmp_path / f"{name}.keras")[1].mirror_averaged == (name == "both")


@pytest.mark.parametrize("shape", ["feature map", "two inputs"])  # colour input: the export's test below
def test_a_keras_model_that_is_no_face_classifier_is_a_clear_error(tmp_path, shape):
    """A (batch, 48, 48, 7) output passed for 7 classes and failed inside scikit-learn; a second
    input's whole shape became the face size."""
    import keras

    from ferkit.models.loading import load_keras_model

    face = keras.Input((48, 48, 1))
    if shape == "feature map":
        model = keras.Model(face, keras.layers.Conv2D(7, 3, padding="same")(face))
    else:
        extra = keras.Input((3,))
        joined = keras.layers.Concatenate()([keras.layers.Flatten()(face), extra])
        model = keras.Model([face, extra], keras.layers.Dense(7, activation="softmax")(joined))
    model.save(tmp_path / "odd.keras")
    with pytest.raises(FerkitError, match="is no face classifier ferkit can run"):
        load_keras_model(tmp_path / "odd.keras")


def test_a_damaged_weights_file_is_a_clear_error(tmp_path):
    import zipfile

    for name in ("junk.weights.h5", "junk.keras"):
        (tmp_path / name).write_bytes(b"x" * 100)
        with pytest.raises(FerkitError, match=f"cannot read weights from .*{name}: damaged"):
            create_model("custom", image_size=48, num_classes=7, weights=str(tmp_path / name))
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:  # a zip, no model.weights.h5: Keras' KeyError
        archive.writestr("notes.txt", "hello")
    with pytest.raises(FerkitError, match="cannot read weights from .*empty.keras: damaged"):
        create_model("custom", image_size=48, num_classes=7, weights=str(tmp_path / "empty.keras"))
    # A transfer model too: h5py's own message, naming no file, had been the error
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(FerkitError, match="cannot read weights from .*junk.h5: damaged"):
        create_model("mobilenetv2", image_size=48, num_classes=7, weights=str(tmp_path / "junk.h5"))


def test_ensemble_refuses_members_that_cannot_be_averaged(tiny_run, tmp_path):
    from ferkit.models.ensemble import ensemble_run

    with pytest.raises(FerkitError, match="at least two"):
        ensemble_run([tiny_run], tmp_path / "one")
    other = _copy_with_model(tiny_run, tmp_path / "other", create_model("custom", image_size=64, num_classes=4),
                             image_size=64)
    with pytest.raises(FerkitError, match="cannot average"):
        ensemble_run([tiny_run, other], tmp_path / "ens")
    assert not (tmp_path / "ens").exists()


def _faces(n=5, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 48, 48, 1)).astype(np.float32)


def test_onnx_mirror_average_scores_each_face_with_its_mirror_image(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models import onnx_graph

    plain = onnx_graph.load(tiny_run / "model.onnx")
    mirrored = onnx_graph.mirror_averaged(plain)
    backend, original = load_backend(onnx_graph.save(mirrored, tmp_path / "m.onnx")), load_backend(tiny_run)
    x = _faces()
    expected = (original.predict(x) + original.predict(x[:, :, ::-1])) / 2
    np.testing.assert_allclose(backend.predict(x), expected, atol=1e-6)
    np.testing.assert_allclose(backend.predict(x[:1]), expected[:1], atol=1e-6)  # a batch of one too
    assert not np.allclose(original.predict(x), expected, atol=1e-4)  # the mirror image did change them
    assert backend.info.mirror_averaged and not original.info.mirror_averaged
    assert backend.info.config["description"].endswith("each face averaged with its mirror image")
    assert onnx_graph.mirror_averaged(mirrored) is mirrored  # not twice
    said = {p.key: p.value for p in mirrored.metadata_props}["ferkit.output"]  # not the plain export's words
    assert said.endswith("each face is averaged with its mirror image inside the model")


def test_onnx_average_weights_its_members(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    other = export_onnx(_copy_with_model(tiny_run, tmp_path / "other"))
    files = [tiny_run / "model.onnx", other]
    model = onnx_graph.averaged([onnx_graph.load(f) for f in files], weights=[3, 1])
    backend = load_backend(onnx_graph.save(model, tmp_path / "avg.onnx"))
    x = _faces()
    first, second = (load_backend(f).predict(x) for f in files)
    np.testing.assert_allclose(backend.predict(x), 0.75 * first + 0.25 * second, atol=1e-6)
    config = backend.info.config
    assert config["model"] == "ensemble" and [m["weight"] for m in config["members"]] == [0.75, 0.25]
    assert backend.info.classes == load_backend(tiny_run).info.classes
    assert not config["mirror_average"]
    # An averaged model can be averaged again, and mirror-averaged; members that all are make one that is.
    again = onnx_graph.mirror_averaged(onnx_graph.averaged([model, onnx_graph.load(other)]))
    assert onnx_graph.read_config(onnx_graph.averaged([again, again]))["mirror_average"]
    scores = load_backend(onnx_graph.save(again, tmp_path / "again.onnx")).predict(x)
    flipped = lambda f: load_backend(f).predict(x[:, :, ::-1])
    mean = lambda a, b: 0.5 * (0.75 * a + 0.25 * b) + 0.5 * b
    np.testing.assert_allclose(scores, (mean(first, second) + mean(flipped(files[0]), flipped(other))) / 2, atol=1e-5)


def test_an_average_says_the_quantization_of_all_its_members(tiny_run, tmp_path):
    """The first member's alone had been recorded: an int8 member after a float one went unsaid."""
    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    plain = onnx_graph.load(tiny_run / "model.onnx")
    small = onnx_graph.load(export_onnx(tiny_run, tmp_path / "int8.onnx", quantize="int8"))
    said = lambda *models: onnx_graph.read_config(onnx_graph.averaged(list(models))).get("quantize")
    assert (said(plain, plain), said(small, small), said(plain, small), said(small, plain)) == \
        ("none", "int8", "int8 in part", "int8 in part")


def test_an_averages_description_brackets_each_members_own(tiny_run):
    """The bundled model's last member's "Changed for this run: epochs = 96, seed = 5" had read as
    said of the whole ensemble in `ferkit info`."""
    from ferkit.models import onnx_graph

    plain = onnx_graph.load(tiny_run / "model.onnx")
    own = onnx_graph.read_config(plain)["description"]
    said = onnx_graph.read_config(onnx_graph.averaged([plain, plain], [3, 1]))["description"]
    assert said == f"weighted mean of 2 models' probabilities: 0.75 x [{own}] + 0.25 x [{own}]"


def test_an_average_of_bare_exports_loads(tmp_path):
    """Exports of .keras files alone record no split or classes in their settings: the average had
    written `"classes": null` there, and ferkit refused the file as damaged."""
    from ferkit.data.labels import EMOTIONS
    from ferkit.inference.backends import load_backend
    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    create_model("custom", image_size=48, num_classes=7, weights="none", filters=[8]).save(tmp_path / "bare.keras")
    bare = onnx_graph.load(export_onnx(tmp_path / "bare.keras"))
    backend = load_backend(onnx_graph.save(onnx_graph.averaged([bare, bare]), tmp_path / "avg.onnx"))
    assert backend.info.classes == EMOTIONS and "classes" not in backend.info.config
    np.testing.assert_allclose(backend.predict(_faces()), load_backend(tmp_path / "bare.onnx").predict(_faces()),
                               atol=1e-6)


def _normalizing_model(path: Path):
    """VGG19's preprocessing in small: a Normalization given its mean and variance, then a head."""
    import keras

    inputs = keras.Input((48, 48, 1))
    scaled = keras.layers.Normalization(mean=[0.4], variance=[0.09])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(scaled)))
    model.save(path)
    return model


def test_a_normalization_given_its_constants_exports_to_a_file_that_runs(tmp_path):
    """Its mean and variance had become two more inputs of the ONNX file, which ONNX Runtime then
    demanded with every face: every seed-vgg19 run's export failed in whatever read it next."""
    from ferkit.inference.backends import load_backend
    from ferkit.models.export import export_onnx

    model = _normalizing_model(tmp_path / "norm.keras")
    backend = load_backend(export_onnx(tmp_path / "norm.keras"))
    np.testing.assert_allclose(backend.predict(_faces()), np.asarray(model(_faces())), atol=1e-6)


@pytest.mark.parametrize("defect, message", [("inputs", "takes 3 inputs"), ("numbers", "scores faces differently")])
def test_a_conversion_that_takes_other_inputs_or_scores_otherwise_is_not_written(tmp_path, monkeypatch, defect,
                                                                                 message):
    import onnxruntime

    from ferkit.models import export

    _normalizing_model(tmp_path / "norm.keras")
    if defect == "inputs":  # the conversion as it was before its constants were put in the graph
        monkeypatch.setattr(export, "_constants_in_graph", lambda model: None)
    else:
        run = onnxruntime.InferenceSession.run
        monkeypatch.setattr(onnxruntime.InferenceSession, "run", lambda self, *a, **k: [run(self, *a, **k)[0] * 0.5])
    with pytest.raises(FerkitError, match=message):
        export.export_onnx(tmp_path / "norm.keras")
    assert not (tmp_path / "norm.onnx").exists()


def test_an_onnx_file_exported_before_that_fix_is_refused_with_the_way_out(tmp_path, monkeypatch):
    """Such a file loaded, and every prediction then ended in ONNX Runtime's traceback."""
    from ferkit.inference.backends import load_backend
    from ferkit.models import export

    _normalizing_model(tmp_path / "norm.keras")
    monkeypatch.setattr(export, "_constants_in_graph", lambda model: None)
    monkeypatch.setattr(export, "_check_converted", lambda *args: None)
    with pytest.raises(FerkitError, match=r"takes 3 inputs .*: export it again \(ferkit export RUN\)"):
        load_backend(export.export_onnx(tmp_path / "norm.keras"))


def test_an_ensemble_cut_while_saving_leaves_no_model_read_with_guessed_classes(tiny_run, tmp_path, monkeypatch):
    import keras

    from ferkit.models.ensemble import ensemble_run

    other = _copy_with_model(tiny_run, tmp_path / "other")
    def cut(model, path, *args, **kwargs):  # Ctrl-C with the file half-written
        Path(path).write_bytes(b"PK\x03\x04")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", cut)
    with pytest.raises(KeyboardInterrupt):
        ensemble_run([tiny_run, other], tmp_path / "ens")
    assert not list((tmp_path / "ens").glob("*.keras")) and (tmp_path / "ens" / "config.json").is_file()  # none, whole or cut


def test_an_ensemble_of_bare_models_records_no_split_it_lacks(tmp_path):
    from ferkit.models.ensemble import ensemble_run

    for name in ("a", "b"):
        create_model("custom", image_size=48, num_classes=7, weights="none", filters=[8]).save(tmp_path / f"{name}.keras")
    run = ensemble_run([tmp_path / "a.keras", tmp_path / "b.keras"], tmp_path / "ens")
    config = run.read_config()
    assert "split" not in config and len(config["classes"]) == 7  # not "split": null


def test_onnx_average_refuses_what_cannot_be_averaged(tiny_run, tmp_path):
    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    model = onnx_graph.load(tiny_run / "model.onnx")
    with pytest.raises(FerkitError, match="at least two"):
        onnx_graph.averaged([model])
    for weights in ([1], [1, 0], [1, -1], [float("nan"), 1], [float("inf"), 1]):
        with pytest.raises(FerkitError, match="one positive weight per model"):
            onnx_graph.averaged([model, model], weights)
    bigger = create_model("custom", image_size=64, num_classes=4)
    bigger = export_onnx(_copy_with_model(tiny_run, tmp_path / "big", bigger, image_size=64))
    with pytest.raises(FerkitError, match="cannot average"):
        onnx_graph.averaged([model, onnx_graph.load(bigger)])
    bare = onnx_graph.load(tiny_run / "model.onnx")
    del bare.metadata_props[:]
    with pytest.raises(FerkitError, match="no ferkit metadata"):
        onnx_graph.mirror_averaged(bare)


def test_onnx_average_of_an_int8_and_a_newer_opset_float_model(tiny_run, tmp_path):
    """The bundled model's case: int8 (QDQ) members at an older opset than another export,
    converted up to it."""
    from onnx import version_converter

    from ferkit.inference.backends import load_backend
    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    quantized = onnx_graph.load(export_onnx(tiny_run, tmp_path / "int8.onnx", quantize="int8"))
    plain = onnx_graph.load(tiny_run / "model.onnx")
    newer = version_converter.convert_version(plain, onnx_graph._default_opset(quantized) + 3)
    newer.metadata_props.extend(plain.metadata_props)
    model = onnx_graph.averaged([quantized, newer])
    assert onnx_graph._default_opset(model) == onnx_graph._default_opset(quantized) + 3
    x = _faces()
    expected = (load_backend(tmp_path / "int8.onnx").predict(x) + load_backend(tiny_run).predict(x)) / 2
    np.testing.assert_allclose(load_backend(onnx_graph.save(model, tmp_path / "avg.onnx")).predict(x), expected,
                               atol=1e-5)


def test_an_older_int8_exports_quantized_scores_are_made_float_again(tiny_run, tmp_path, monkeypatch):
    """Exports before the fix (the bundled model) quantized the Softmax and the means after it:
    scores in 8-bit steps whose rows did not sum to 1. Averaging takes those pairs off."""
    from ferkit.inference.backends import load_backend
    from ferkit.models import export, onnx_graph

    monkeypatch.setattr(export, "float_scores", lambda model: model)  # as exports were
    old = export.export_onnx(tiny_run, tmp_path / "old.onnx", quantize="int8")
    x = _faces()
    scores = load_backend(old).predict(x)
    assert np.abs(scores.sum(1) - 1).max() > 1e-4
    fixed = onnx_graph.save(onnx_graph.float_scores(onnx_graph.load(old)), tmp_path / "fixed.onnx")
    again = load_backend(fixed).predict(x)
    np.testing.assert_allclose(again.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(again, scores, atol=0.01)  # the same network: only the rounding is gone
    onnx_graph.save(onnx_graph.averaged([onnx_graph.load(old)] * 2), tmp_path / "avg.onnx")
    assert all(softmax_reads_float(path) for path in (fixed, tmp_path / "avg.onnx"))  # the logits too
    assert not softmax_reads_float(old)


def test_onnx_mirror_average_of_a_model_without_a_stored_config(tiny_run, tmp_path):
    from ferkit.inference.backends import load_backend
    from ferkit.models import onnx_graph
    from ferkit.runs import ONNX_META

    model = onnx_graph.load(tiny_run / "model.onnx")
    kept = [p for p in model.metadata_props if p.key != ONNX_META["config"]]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    mirrored = onnx_graph.mirror_averaged(model)
    assert load_backend(onnx_graph.save(mirrored, tmp_path / "m.onnx")).info.mirror_averaged
    assert onnx_graph.mirror_averaged(mirrored) is mirrored


def test_custom_refuses_a_face_its_poolings_would_shrink_to_nothing():
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match="custom with 4 blocks needs image_size >= 16, got 8"):
        create_model("custom", image_size=8, num_classes=7)
    assert create_model("custom", image_size=8, num_classes=7, filters=(16, 32)).output_shape == (None, 7)


def test_an_export_that_fails_mid_write_keeps_the_earlier_file(tiny_run, tmp_path, monkeypatch):
    """A full disk mid-save left a cut-short model.onnx that every later load of the run failed on."""
    import shutil

    import onnx

    from ferkit.errors import FerkitError
    from ferkit.models.export import export_onnx

    run = shutil.copytree(tiny_run, tmp_path / "run")
    before = (run / "model.onnx").read_bytes()

    def full_disk(proto, path):
        with open(path, "wb") as f:
            f.write(b"\x08\x07")  # the start of a model, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    with pytest.raises(FerkitError, match=r"cannot write .*model\.onnx: No space left on device"):
        export_onnx(run)
    assert (run / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if ".part." in p.name) == []


def test_exporting_another_tools_colour_network_is_one_line(tmp_path):
    """A 7-class network on colour faces: Keras' ValueError traceback, from deep inside the call."""
    import keras

    from ferkit.models.export import export_onnx

    net = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Flatten(), keras.layers.Dense(7)])
    net.save(tmp_path / "rgb.keras")
    with pytest.raises(FerkitError, match=r"no face classifier ferkit can run: .* it has \(None, 48, 48, 3\) -> "):
        export_onnx(tmp_path / "rgb.keras")


def test_an_export_says_how_to_use_it_with_onnx_runtime_alone(tiny_run, group_photo):
    """An app developer fed an export faces scaled to 0-1, the usual convention, and every face came out
    "angry" without an error; its output was "Identity:0" where the bundled model's is "probabilities".
    What its metadata says, done by hand with OpenCV and ONNX Runtime, scores a face as ferkit does."""
    import json

    import cv2
    import onnxruntime as ort

    from ferkit.inference import EmotionRecognizer

    session = ort.InferenceSession(str(tiny_run / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["face"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    meta = session.get_modelmeta().custom_metadata_map
    classes, size = json.loads(meta["ferkit.classes"]), int(meta["ferkit.image_size"])
    said = meta["ferkit.input"]
    assert f"(batch, {size}, {size}, 1)" in said and "BGR2GRAY" in said and "0-255, not scaled" in said
    assert "10% of the box's side beyond each edge" in said and "INTER_AREA" in said
    assert f"({', '.join(classes)})" in meta["ferkit.output"] and "each row summing to 1" in meta["ferkit.output"]
    image = group_photo[0]
    x, y, w, h = 60, 60, 100, 100  # a square box away from the edges: its crop is whole pixels
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    crop = gray[y - 10:y + h + 10, x - 10:x + w + 10]
    face = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)[None, :, :, None]
    (alone,) = session.run(["probabilities"], {"face": face})
    (ferkits,) = EmotionRecognizer(tiny_run).detect(image, boxes=[(x, y, w, h)])
    np.testing.assert_allclose(alone[0], [ferkits.scores[name] for name in classes], atol=1e-4)


def test_loading_a_run_cut_short_says_how_to_finish_it(tmp_path):
    from ferkit.models.loading import load_keras_model

    (tmp_path / "run" / "checkpoints" / "backup").mkdir(parents=True)
    with pytest.raises(FerkitError, match=r"run has no model.keras: its training was cut short; `ferkit train "
                                          r"--resume .*run` finishes it"):
        load_keras_model(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "backup").rmdir()
    with pytest.raises(FerkitError, match="run has no model.keras: is it a run directory, and did its training"):
        load_keras_model(tmp_path / "run")
