from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from conftest import synthetic_faces, write_folder
from ferkit.errors import FerkitError
from ferkit.evaluation import evaluate
from ferkit.evaluation.metrics import classification_metrics, format_metrics
from ferkit.training import train


def test_metrics_on_known_predictions():
    y_true = np.array([0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0]]
    m = classification_metrics(y_true, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["b"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                   "f1": pytest.approx(0.8), "support": 2}
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert "accuracy 0.6000" in format_metrics(m)


def test_a_model_that_gives_every_face_one_label_is_said_to(caplog):
    """A one-epoch seed-custom run called every test face sad (18% accuracy), and nothing said why."""
    from ferkit.evaluation.metrics import warn_if_one_label

    y_true = np.array([0, 1, 2, 2])
    warn_if_one_label(classification_metrics(y_true, np.eye(3)[[2, 2, 2, 2]], ["a", "b", "c"]))
    assert "the model labelled all 4 faces c: it has learnt little yet" in caplog.text
    caplog.clear()
    warn_if_one_label(classification_metrics(y_true, np.eye(3)[[0, 2, 2, 2]], ["a", "b", "c"]))
    warn_if_one_label(classification_metrics(np.array([2, 2]), np.eye(3)[[2, 2]], ["a", "b", "c"]))  # one class
    assert not caplog.text


def test_an_evaluations_figure_names_the_model(tiny_run, tmp_path):
    """Two evaluations' confusion matrices had the same title, naming the data alone."""
    from ferkit.evaluation.evaluate import _model_name

    assert _model_name(None) == _model_name("default") == "default"
    assert _model_name(tiny_run) == _model_name(tiny_run / "model.onnx") == tiny_run.name  # not "model.onnx"
    assert _model_name(tmp_path / "mine.keras") == "mine.keras"


def test_metrics_score_the_faces_that_repeat_no_training_face_apart():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 1, 0, 2, 1]]
    repeats = np.array([True, True, False, False, True, False])  # the memorised ones all right
    m = classification_metrics(y_true, probs, ["a", "b", "c"], repeats=repeats)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["unseen"] == {"faces": 3, "repeats": 3, "accuracy": pytest.approx(1 / 3),
                           "macro_f1": pytest.approx((0.5 + 0) / 2)}  # b: P=R=.5; c: none right; a: no faces
    assert "; on the 3 that repeat no training face (3 do): accuracy 0.3333" in format_metrics(m).splitlines()[0]
    for none_or_all in (None, np.zeros(6, bool), np.ones(6, bool)):  # then it would say nothing new
        m = classification_metrics(y_true, probs, ["a", "b", "c"], repeats=none_or_all)
        assert "unseen" not in m and "repeat" not in format_metrics(m)


def test_macro_f1_leaves_out_classes_the_data_lacks():
    m = classification_metrics(np.array([0, 0, 1]), np.eye(3)[[0, 0, 1]], ["a", "b", "c"])
    assert m["per_class"]["c"]["support"] == 0 and m["macro_f1"] == pytest.approx(1.0)
    assert "  c         no faces scored" in format_metrics(m).splitlines()  # not an F1 of 0.000
    m = classification_metrics(np.array([0, 0, 1]), np.eye(3)[[0, 2, 1]], ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)  # a wrong "c" still costs "a" its recall
    assert "  c         no faces scored; 1 of other classes labelled c" in format_metrics(m).splitlines()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    classes = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(classes, 60)
    write_folder(root / "data", images, labels, "train", "Training")
    images, labels = synthetic_faces(classes, 15, seed=1)
    write_folder(root / "data", images, labels, "test", "PublicTest")
    result = train(root / "data", recipe="seed-custom", classes=",".join(classes), split="official",
                   epochs=4, batch_size=32, learning_rate=0.003, output=root / "run", verbose=0)
    return result, root / "data"


def test_evaluate_rebuilds_the_test_split(trained_run, tmp_path):
    result, data = trained_run
    metrics = evaluate(result.run_dir, data, split="test", output=tmp_path / "out")
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    assert sum(m["support"] for m in metrics["per_class"].values()) == 60
    assert (tmp_path / "out" / "metrics.json").is_file() and (tmp_path / "out" / "confusion_matrix.png").is_file()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["split"].startswith("official")
    before = (tmp_path / "out" / "metrics.json").read_bytes()
    with pytest.raises(FerkitError, match=r"already holds an evaluation \(metrics.json, confusion_matrix.png, "
                                          r"predictions.csv, mistakes.png\)"):
        evaluate("default", data, split="all", output=tmp_path / "out")  # another model, same folder
    assert (tmp_path / "out" / "metrics.json").read_bytes() == before


def test_evaluate_writes_each_faces_prediction_and_the_most_confident_mistakes(trained_run, tmp_path):
    """predictions.csv names each face's file, so that a student can open the faces it got wrong."""
    import csv

    result, data = trained_run
    metrics = evaluate(result.run_dir, data, split="test", output=tmp_path / "out")
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and rows[0]["face"] == "test/angry/PublicTest_00000.png"
    assert sorted(row["face"] for row in rows) == sorted(
        path.relative_to(data).as_posix() for path in (data / "test").rglob("*.png"))
    assert [row["true"] for row in rows] == [row["face"].split("/")[1] for row in rows]  # each file's own label
    assert sum(int(row["correct"]) for row in rows) / 60 == pytest.approx(metrics["accuracy"])
    for row in rows:
        probs = {name: float(row[f"p_{name}"]) for name in metrics["classes"]}
        assert row["predicted"] == max(probs, key=probs.get) and float(row["confidence"]) == max(probs.values())
        assert sum(probs.values()) == pytest.approx(1, abs=1e-3) and row["repeats_training"] == "0"
    assert (tmp_path / "out" / "mistakes.png").stat().st_size > 5_000


def test_each_faces_prediction_names_a_csvs_line(trained_run, tmp_path):
    import csv

    from ferkit.data.sources import load_fer

    result, data = trained_run
    faces = load_fer(data)
    lines = [f"{faces.classes[label]},{' '.join(map(str, image.ravel()))}"
             for image, label in zip(faces.images[:12], faces.labels[:12])]
    (tmp_path / "faces.csv").write_text("\n".join(["emotion,pixels", *lines]) + "\n", encoding="utf-8")
    evaluate(result.run_dir, tmp_path / "faces.csv", split="all", output=tmp_path / "out")
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["face"] for row in rows] == [f"line {n}" for n in range(2, 14)]  # the header is line 1
    assert {row["repeats_training"] for row in rows} == {""}  # all faces: no training part to repeat


def test_evaluate_never_writes_over_a_training_runs_own_results(trained_run):
    result, data = trained_run
    before = {name: (result.run_dir / name).read_bytes() for name in ("metrics.json", "confusion_matrix.png")}
    with pytest.raises(FerkitError, match="holds a training run"):
        evaluate(result.run_dir, data, split="val", output=result.run_dir)
    assert {name: (result.run_dir / name).read_bytes() for name in before} == before


@pytest.mark.parametrize("name", ["model.keras", "model.onnx", "model-int8.onnx", "model.json"])
def test_evaluate_never_writes_beside_a_model_that_would_read_it_as_its_own(trained_run, tmp_path, name):
    """A model file named as a run's own reads the metrics.json beside it as its test results: an
    evaluation there on any split (all faces, training ones among them) was shipped in its export."""
    result, data = trained_run
    shutil.copy(result.run_dir / "model.keras", tmp_path / name)
    with pytest.raises(FerkitError, match=f"holds {re.escape(name)}, whose test results"):
        evaluate(result.run_dir, data, split="all", output=tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_scores_the_test_part_of_a_copy_of_it_alone(trained_run, tmp_path):
    """A copy of FER2013's test/ folder alone had been refused as naming no part of FER2013. Which of
    its faces repeat a training face cannot be told there, so no unseen score is given."""
    result, data = trained_run
    alone = shutil.copytree(data / "test", tmp_path / "copy" / "test")
    metrics = evaluate(result.run_dir, alone.parent, split="test")
    assert metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-6)
    assert metrics["split"].startswith("official split: test = PublicTest, in data without Training faces")
    assert "unseen" not in metrics
    with pytest.raises(FerkitError, match=r"holds no Training part of FER2013 .* the model's val split cannot"):
        evaluate(result.run_dir, alone.parent, split="val")  # drawn from Training


def test_held_out_parts_alone_name_the_test_part_beside_the_val_one(tmp_path, caplog):
    """A run trained with both test parts (val = PublicTest, test = PrivateTest), its val split rebuilt
    on those two parts alone, had been warned of as data without PrivateTest."""
    from ferkit.data.sources import load_fer
    from ferkit.evaluation.evaluate import _held_out_alone, _warn_if_another_protocol

    for part in ("PublicTest", "PrivateTest"):
        images, labels = synthetic_faces(("fear", "neutral"), 3)
        write_folder(tmp_path, images, labels, part, prefix="face")
    part, description, repeats = _held_out_alone(load_fer(tmp_path), "val", tmp_path)
    assert description.startswith("official split: val = PublicTest, test = PrivateTest, in data without Training")
    assert len(part.images) == len(part.labels) == 6 and repeats is None
    assert all(name.startswith("PublicTest/") for name in part.names)  # its files, for predictions.csv
    _warn_if_another_protocol("official split: train = Training, val = PublicTest, test = PrivateTest",
                              description, "val")
    assert "this data has not" not in caplog.text


def test_evaluate_val_rebuilds_the_validation_split(trained_run):
    result, data = trained_run
    metrics = evaluate(result.run_dir, data, split="val")
    assert sum(m["support"] for m in metrics["per_class"].values()) == result.metrics["split_sizes"]["val"] == 24
    assert metrics["split"].startswith("validation part of official")


def test_evaluate_all_drops_unknown_classes_and_says_so(trained_run, tmp_path, caplog):
    result, shared = trained_run
    data = shutil.copytree(shared, tmp_path / "data")  # the module's own data stays as it is
    images, labels = synthetic_faces(("fear",), 7)
    write_folder(data, images, labels, "test", "PublicTest")  # a class the model never saw
    caplog.set_level("INFO", logger="ferkit")
    metrics = evaluate(result.run_dir / "model.keras", data, split="all")
    assert sum(m["support"] for m in metrics["per_class"].values()) == 300
    assert metrics["skipped"]["other_classes"] == 7
    assert "7 faces of class(es) the model does not know: fear (7)\n" in caplog.text + "\n"  # not disgust, neutral


def test_evaluate_bad_inputs(trained_run, tmp_path):
    result, data = trained_run
    with pytest.raises(FerkitError, match="model not found"):
        evaluate(tmp_path / "nope", data)
    with pytest.raises(FerkitError, match="unknown split"):
        evaluate(result.run_dir, data, split="train")
    with pytest.raises(FerkitError, match="tta must be True or False, got 'no'"):
        evaluate(result.run_dir, data, tta="no")
    with pytest.raises(FerkitError, match="holds no model .* did its training finish"):
        evaluate(tmp_path, data)
    # Faces whose names and folders say no part of FER2013: the hint is evaluate's own flag.
    plain = tmp_path / "plain"
    for i, path in enumerate(sorted((data / "test").rglob("*.png"))):
        (plain / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, plain / path.parent.name / f"face_{i}.png")
    with pytest.raises(FerkitError, match="holds neither a Training nor a test part of FER2013 .*use --split all"):
        evaluate(result.run_dir, plain)
    with pytest.raises(FerkitError, match=r"holds no test part \(PublicTest, PrivateTest or a validation folder\)"):
        evaluate(result.run_dir, data / "train")  # Training faces alone
    # The run's own test split is this folder (official split: test = PublicTest), so the same score.
    assert evaluate(result.run_dir, data / "test", split="all")["accuracy"] == pytest.approx(result.metrics["accuracy"])


def test_evaluate_checks_its_output_before_evaluating(trained_run, tmp_path, capsys, monkeypatch):
    import importlib

    from ferkit.cli import main

    result, data = trained_run
    (tmp_path / "taken").write_text("a file")
    module = importlib.import_module("ferkit.evaluation.evaluate")  # the package's `evaluate` is the function
    monkeypatch.setattr(module, "_predict", lambda *args, **kwargs: pytest.fail("predicted before checking --output"))
    assert main(["evaluate", str(result.run_dir), str(data), "--output", str(tmp_path / "taken")]) == 2
    captured = capsys.readouterr()
    assert "is a file" in captured.err and "accuracy" not in captured.out


def test_a_failed_command_leaves_no_empty_folder_behind(trained_run, tmp_path, capsys):
    """The output folders a command makes before its work are removed again when that work fails at
    once (data or model not found), and folders that were there before stay."""
    from ferkit.cli import main

    result, data = trained_run
    (tmp_path / "kept").mkdir()
    (tmp_path / "no-photos").mkdir()
    for command in (["evaluate", str(result.run_dir), str(tmp_path / "typo.zip"), "--output", "{out}/eval"],
                    ["evaluate", str(tmp_path / "nope"), str(data), "--output", "{out}/eval"],
                    ["export", str(tmp_path / "nope"), "--output", "{out}/m.onnx"],
                    ["predict", str(tmp_path / "no-photos"), "--save-annotated", "{out}/a", "--csv", "{out}/c/f.csv"],
                    ["predict", str(data / "test"), "--model", str(tmp_path / "nope"), "--csv", "{out}/f.csv"],
                    ["video", str(tmp_path / "nope.mp4"), "--csv", "{out}/f.csv", "--plot", "{out}/p/t.png"]):
        for out, stays in ((tmp_path / "new" / "deeper", False), (tmp_path / "kept", True)):
            assert main([part.replace("{out}", str(out)) for part in command]) == 2, command
            assert (out.exists(), (tmp_path / "new").exists()) == (stays, False), command
            assert list((tmp_path / "kept").iterdir()) == [], command
    capsys.readouterr()


def test_evaluate_warns_that_an_ensembles_val_part_is_not_its_members(trained_run, caplog, tmp_path):
    """And gives it no `unseen` score: its members trained on most of those faces (the bundled
    model's had read 87% on "the 2657 that repeat no training face")."""
    _, shared = trained_run
    caplog.set_level("WARNING", logger="ferkit")
    data = shutil.copytree(shared, tmp_path / "data")
    names = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(names, 60)  # the module's train/ faces, each again under another name
    write_folder(data, images, labels, "train", "Training_again")
    metrics = evaluate("default", data, split="val")  # the bundled model is an ensemble
    assert "may include faces they were trained on" in caplog.text
    assert "unseen" not in metrics


def test_an_ensembles_unseen_test_faces_repeat_no_face_its_members_may_have_trained_on(trained_run, tmp_path):
    """Each member held out a validation part of its own, so a test face repeating one of the
    validation faces rebuilt here is no unseen face either."""
    from ferkit.data import load_fer
    from ferkit.data.splits import make_splits, select_classes
    from ferkit.inference.backends import load_backend

    _, shared = trained_run
    data = shutil.copytree(shared, tmp_path / "data")
    cfg = load_backend("default").info.config
    names = ("angry", "happy", "sad", "surprise")
    splits = make_splits(select_classes(load_fer(data), names)[0], cfg["split"], tuple(cfg["fractions"]), cfg["seed"])
    for part, n in ((splits.val, 3), (splits.train, 2)):  # copies of 3 validation and 2 training faces
        write_folder(data, list(part.images[:n]), [names[i] for i in part.labels[:n]], "test", f"PublicTest_{n}")
    metrics = evaluate("default", data, split="test")
    assert (metrics["unseen"]["faces"], metrics["unseen"]["repeats"]) == (60, 5)


def test_an_ensembles_validation_folder_is_no_face_its_members_trained_on(trained_run, tmp_path):
    """A validation folder beside the test part validates every member alike: a test face repeating
    one of its faces is unseen, one repeating a Training face is not."""
    _, shared = trained_run
    data = shutil.copytree(shared, tmp_path / "data")
    names = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(names, 3, seed=7)
    write_folder(data, images, labels, "validation", "Validation")
    train_images, train_labels = synthetic_faces(names, 60)  # the module's train/ faces
    write_folder(data, images[:4] + train_images[:2], labels[:4] + train_labels[:2], "test", "PublicTest_copy")
    metrics = evaluate("default", data, split="test")
    assert "val = the validation folder" in metrics["split"]
    assert (metrics["unseen"]["faces"], metrics["unseen"]["repeats"]) == (64, 2)


def test_evaluate_warns_when_faces_it_trained_on_may_be_scored(trained_run, tmp_path, caplog):
    """A run trained where the data had PrivateTest (its val PublicTest) rebuilt on data without it:
    its "val" is then part of Training. The other way round its faces are unseen: nothing said."""
    result, data = trained_run
    caplog.set_level("WARNING", logger="ferkit")
    with_private = shutil.copytree(data, tmp_path / "with-private")
    images, labels = synthetic_faces(("angry", "happy", "sad", "surprise"), 5, seed=2)
    write_folder(with_private, images, labels, "PrivateTest", "PrivateTest")
    evaluate(result.run_dir, with_private, split="test")
    evaluate("default", with_private, split="test")  # learnt without PrivateTest, and never saw it
    assert "this data has not" not in caplog.text
    run = shutil.copytree(result.run_dir, tmp_path / "run")  # as if trained with PrivateTest
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["split"] = "official split: train = Training, val = PublicTest, test = PrivateTest"
    (run / "metrics.json").write_text(json.dumps(metrics))
    evaluate(run, data, split="val")
    assert "the model's run had FER2013's PrivateTest" in caplog.text and "its val faces here include" in caplog.text


def test_evaluate_on_data_without_the_models_classes_is_a_clear_error(trained_run, tmp_path):
    result, _ = trained_run
    images, labels = synthetic_faces(("fear", "neutral"), 4)
    with pytest.raises(FerkitError, match="has no faces of the model's classes"):
        evaluate(result.run_dir, write_folder(tmp_path, images, labels, split=None), split="all")


def test_load_split_gives_the_faces_evaluate_scores(trained_run):
    from ferkit.evaluation.evaluate import load_split, predict_split
    from ferkit.inference.backends import load_backend

    result, data = trained_run
    backend = load_backend(result.run_dir)
    faces = load_split(backend, result.run_dir, data, "test")
    assert faces.batch.shape == (60, 48, 48, 1) and faces.classes == ("angry", "happy", "sad", "surprise")
    probs, labels = predict_split(result.run_dir, data, "test")
    np.testing.assert_array_equal(faces.labels, labels)
    np.testing.assert_allclose(backend.predict(faces.batch), probs, atol=1e-5)
    assert len(load_split(backend, result.run_dir, data, "val").labels) == 24
    with pytest.raises(FerkitError, match="unknown split"):
        load_split(backend, result.run_dir, data, "train")


def test_one_epochs_curves_sit_on_whole_epochs():
    """matplotlib would spread 0.95 ... 1.05 around a single point: no epoch is 0.95."""
    import matplotlib.pyplot as plt

    from ferkit.evaluation.plots import _epoch_axis

    fig, ax = plt.subplots()
    ax.plot([1], [0.5], marker="o", label="val")
    _epoch_axis(ax, "one epoch")
    assert ax.get_xlim() == (0, 2) and all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
    fig, ax = plt.subplots()  # two epochs are left as matplotlib frames them: no empty epoch 3
    ax.plot([1, 2], [0.5, 0.6], marker="o", label="val")
    _epoch_axis(ax, "two epochs")
    assert 0.9 < ax.get_xlim()[0] < 1 and 2 < ax.get_xlim()[1] < 2.1
    plt.close(fig)


def test_plots_show_dollar_signs_as_written(tmp_path):
    """matplotlib reads text between two $ as mathematics: a folder or recipe named so failed the
    figure (`d$x_$` is no formula) after the whole evaluation or comparison."""
    from ferkit.evaluation.plots import literal, plot_confusion, plot_overlay

    plot_confusion([[3, 1], [0, 4]], ["a$_$", "happy"], tmp_path / "cm.png", "Confusion matrix, d$x_$, test")
    (tmp_path / "history.csv").write_text("epoch,val_accuracy,val_loss\n0,0.5,1.2\n1,0.6,1.1\n")
    plot_overlay({"my$_$recipe": tmp_path / "history.csv"}, tmp_path / "curves.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000 and (tmp_path / "curves.png").stat().st_size > 1000
    assert literal("d$x_$") == r"d\$x_\$"


def test_a_figure_that_cannot_be_written_is_closed_all_the_same(tmp_path):
    """pyplot holds every open figure: a server or notebook going on after failed saves kept each."""
    import matplotlib.pyplot as plt

    from ferkit.evaluation.plots import plot_confusion

    before = len(plt.get_fignums())
    with pytest.raises(OSError):
        plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "no-such-folder" / "cm.png", "title")
    assert len(plt.get_fignums()) == before


def test_evaluate_warns_when_a_copy_of_the_data_draws_another_random_split(tiny_run, tmp_path, caplog):
    """One face fewer reshuffles a random split: its "test" faces were then mostly training faces,
    and a copy in a folder of the same name had said nothing."""
    caplog.set_level("WARNING", logger="ferkit")
    evaluate(tiny_run, tiny_run.parent / "data", split="test")
    assert "does not split into the faces" not in caplog.text
    copy = shutil.copytree(tiny_run.parent / "data", tmp_path / "data")  # the same folder name
    next(copy.rglob("*.png")).unlink()
    evaluate(tiny_run, copy, split="test")
    assert "does not split into the faces the model's run had" in caplog.text


def test_evaluate_of_a_bare_models_export_needs_split_all(tiny_run, tmp_path):
    """An .onnx exported from a .keras file alone records no split: a KeyError traceback, before."""
    from ferkit.models import create_model
    from ferkit.models.export import export_onnx

    # 7 outputs: a bare file's classes are then all of FER2013's
    create_model("custom", image_size=48, num_classes=7, weights="none", filters=[8]).save(tmp_path / "plain.keras")
    onnx_path = export_onnx(tmp_path / "plain.keras")
    with pytest.raises(FerkitError, match="no training configuration to rebuild its test split: use --split all"):
        evaluate(onnx_path, tiny_run.parent / "data")
    assert evaluate(onnx_path, tiny_run.parent / "data", split="all")["skipped"]["other_classes"] == 0


def test_evaluate_refuses_an_output_folder_it_cannot_make_before_predicting(tiny_run, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("ferkit.evaluation.evaluate")  # the package's `evaluate` is the function
    (tmp_path / "afile").write_text("a file")
    monkeypatch.setattr(module, "_predict", lambda *args, **kwargs: pytest.fail("predicted first"))
    with pytest.raises(FerkitError, match="it is a file"):
        evaluate(tiny_run, tiny_run.parent / "data", split="all", output=tmp_path / "afile")
    with pytest.raises(FerkitError, match="afile is not a writable folder"):
        evaluate(tiny_run, tiny_run.parent / "data", split="all", output=tmp_path / "afile" / "sub")


def test_evaluate_judges_the_part_it_rebuilds_not_the_whole_split(trained_run, tmp_path, caplog):
    """The official split's val part is drawn from Training alone: a copy with a test face fewer
    rebuilds the same val faces, and had been warned of as another split."""
    result, data = trained_run
    copy = shutil.copytree(data, tmp_path / "data")
    next((copy / "test").rglob("*.png")).unlink()
    caplog.set_level("WARNING", logger="ferkit")
    evaluate(result.run_dir, copy, split="val")
    assert "does not split into the faces" not in caplog.text
    next((copy / "train").rglob("*.png")).unlink()  # a Training face fewer: another val part
    evaluate(result.run_dir, copy, split="val")
    assert "does not split into the faces the model's run had" in caplog.text
    caplog.clear()  # without split.json (an older run, an .onnx copy) the data's name judges its val part
    run = shutil.copytree(result.run_dir, tmp_path / "run")
    (run / "checkpoints" / "split.json").unlink()
    evaluate(run, data, split="val")
    assert "does not split into the faces" not in caplog.text
    evaluate(run, shutil.copytree(data, tmp_path / "other-copy"), split="val")
    assert "does not split into the faces the model's run had" in caplog.text


def test_a_comparisons_legend_names_a_recipe_whose_name_starts_with_an_underscore(tmp_path, monkeypatch):
    """A recipe file `_noaug.toml` is the run `_noaug`: its curves were drawn but left out of the legend."""
    from ferkit.evaluation import plots

    for name in ("_noaug", "base"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n"
                                                     "0,0.3,1.2,0.4,1.1\n1,0.5,1.0,0.6,0.9\n")
    legends, panel_legends, save = [], [], plots._save

    def seen(fig, path, **kw):
        legends.extend([t.get_text() for t in legend.get_texts()] for legend in fig.legends)
        panel_legends.extend(ax.get_legend() for ax in fig.axes)
        save(fig, path, **kw)

    monkeypatch.setattr(plots, "_save", seen)
    plots.plot_overlay({name: tmp_path / name / "history.csv" for name in ("_noaug", "base")}, tmp_path / "c.png")
    assert legends == [["_noaug", "base"]]
    assert panel_legends == [None, None]  # one legend, below both panels: inside one it covered the curves


def test_a_run_scores_the_test_faces_it_never_trained_on_apart_and_validates_on_none_it_did(tmp_path, capsys):
    """Training faces copied into train/ (FER2013 repeats 1,236 of its own) and into test/ (266 of
    PublicTest's repeat one): validation leaves its repeats out, the test part keeps them whole and
    says how the model did on the rest, in training's metrics.json, `evaluate` and `ferkit info`."""
    from ferkit.cli import main
    from ferkit.data import load_fer
    from ferkit.data.splits import face_keys, make_splits, repeats_training, select_classes

    classes = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(classes, 40)
    write_folder(tmp_path / "data", images + images[:60], labels + labels[:60], "train", "Training")
    test_images, test_labels = synthetic_faces(classes, 10, seed=1)
    write_folder(tmp_path / "data", test_images + images[::20], test_labels + labels[::20], "test", "PublicTest")
    result = train(tmp_path / "data", recipe="seed-custom", classes=",".join(classes), split="official",
                   epochs=1, learning_rate=0.003, output=tmp_path / "run", verbose=0)
    unseen = result.metrics["unseen"]
    splits = make_splits(select_classes(load_fer(tmp_path / "data"), classes)[0], "official", (0.8, 0.1, 0.1),
                         seed=0, drop_repeats=True)
    repeats = repeats_training(splits.test, splits.train).sum()
    assert (unseen["faces"], unseen["repeats"]) == (48 - repeats, repeats) and 5 <= repeats <= 8
    assert "left out as repeats of training faces:" in result.metrics["split"]
    val_sizes = result.metrics["split_sizes"]["val"]
    assert val_sizes < 22  # a tenth of the 220 faces, less the repeats
    again = evaluate(result.run_dir, tmp_path / "data", split="test")
    assert again["unseen"] == pytest.approx(unseen)
    val = evaluate(result.run_dir, tmp_path / "data", split="val")
    assert "unseen" not in val and sum(m["support"] for m in val["per_class"].values()) == val_sizes
    train_keys = set(face_keys(np.array(images)).tolist())
    assert len(set(face_keys(load_fer(tmp_path / "data").images).tolist()) - train_keys) == 40  # data as meant
    assert main(["info", "--model", str(result.run_dir)]) == 0
    assert f"  unseen    accuracy {unseen['accuracy']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, shown", [(0, 0), (3, 3), (40, 24)])
def test_the_mistakes_figure_shows_the_most_confident_ones_first(tmp_path, monkeypatch, wrong, shown):
    from ferkit.evaluation import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, bottom=0.0: figures.append(fig))
    rng = np.random.default_rng(0)
    labels = np.zeros(50, int)
    probs = np.tile([0.9, 0.1], (50, 1))
    probs[:wrong] = np.column_stack([1 - (conf := rng.uniform(0.5, 1, wrong)), conf])  # wrong: class 1 said
    faces = rng.integers(0, 255, (50, 48, 48, 1)).astype(np.float32)
    plots.plot_mistakes(faces, labels, probs, ("angry", "happy"), None, tmp_path / "m.png", "t")
    titled = [ax.get_title() for ax in figures[0].axes if ax.images]
    assert len(titled) == shown
    said = [float(title.split("\n")[1].rstrip("%")) for title in titled]
    assert said == sorted(said, reverse=True) and all(title.startswith("angry → happy") for title in titled)
    if wrong:
        assert said[0] == round(100 * conf.max())
    said = f"the {shown} most confident of {wrong} mistakes" if wrong else "no mistakes on its 50 faces"
    assert said in figures[0]._suptitle.get_text()


@pytest.mark.parametrize("verbose, label, shown", [(None, "scoring", None), (0, "", None), (1, "scoring", True),
                                                   (2, "scoring", True)])
def test_evaluate_shows_its_progress_as_verbose_says(trained_run, monkeypatch, capsys, verbose, label, shown):
    """1 shows the bar in a notebook, where no terminal is; 0 nowhere; None on a terminal only."""
    import importlib

    from ferkit.inference import backends

    module = importlib.import_module("ferkit.evaluation.evaluate")
    seen, real = [], backends._chunked
    def chunked(*args, **kwargs):  # the backend's own calls (a chunk's batches) say nothing of a bar
        if "shown" in kwargs:
            seen.append((args[3], kwargs["shown"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(backends, "_chunked", chunked)
    monkeypatch.setattr(backends, "CHUNK", 16)  # a bar only over more faces than one chunk
    result, data = trained_run
    module.evaluate(result.run_dir, data, verbose=verbose)
    assert seen == [(label, shown)]  # no label: no bar
    assert ("scoring:" in capsys.readouterr().err) == bool(shown)  # pytest's stderr is no terminal


@pytest.mark.parametrize("verbose", [1.5, "1", -1, 3])
def test_evaluate_refuses_a_verbose_keras_would_not_take(trained_run, verbose):
    result, data = trained_run
    with pytest.raises(FerkitError, match="verbose is 0, 1, 2 or None, got"):
        evaluate(result.run_dir, data, verbose=verbose)


@pytest.mark.parametrize("verbose, told", [(None, True), (0, False)])
def test_evaluate_from_python_gives_its_account_where_no_logging_is_set_up(trained_run, monkeypatch, capsys,
                                                                            verbose, told):
    """As train() does: the split rebuilt and its scores, in a notebook where nobody set logging up."""
    import logging

    monkeypatch.setattr(logging.root, "handlers", [])
    result, data = trained_run
    evaluate(result.run_dir, data, verbose=verbose)
    assert ("official split: train/val" in capsys.readouterr().err) == told
    assert not logging.getLogger("ferkit").handlers



def test_evaluate_of_a_run_on_a_share_of_its_faces_describes_the_split_it_scores(synthetic_folder, tmp_path):
    """The run's cut of its training part is no part of the faces evaluate scores: its description
    says the split alone."""
    run = train(synthetic_folder, recipe="seed-custom", classes="angry,happy,sad,surprise", split="official",
                train_fraction=0.5, epochs=1, output=tmp_path / "run", verbose=0).run_dir
    assert "training part cut to 0.5" in json.loads((run / "metrics.json").read_text(encoding="utf-8"))["split"]
    metrics = evaluate(run, synthetic_folder, verbose=0)
    assert metrics["split"].startswith("official split: train/val") and "cut" not in metrics["split"]


def test_evaluate_of_a_run_cut_short_says_how_to_finish_it(trained_run, tmp_path):
    killed = tmp_path / "killed"
    (killed / "checkpoints" / "backup").mkdir(parents=True)
    shutil.copy(trained_run[0].run_dir / "config.json", killed / "config.json")
    with pytest.raises(FerkitError, match=f"its training was cut short; `ferkit train --resume {killed}` finishes it"):
        evaluate(killed, trained_run[1])
