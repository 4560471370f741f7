from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import without_train_extra
from ferkit.cli import COMMANDS, main


def test_help_for_every_command(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: ferkit" in capsys.readouterr().out


def test_list_recipes(capsys):
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    assert "seed-vgg19" in out and "default" in out
    listed = without_train_extra("from ferkit.cli import main\nsys.exit(main(['train', '--list-recipes']))")
    assert listed.returncode == 0 and "seed-vgg19" in listed.stdout, listed.stderr  # a shipped file, no Keras


def test_a_reader_that_stops_early_is_no_error():
    """`ferkit train --list-recipes | head -1`: the pipe closes before ferkit has printed."""
    child = subprocess.Popen([sys.executable, "-m", "ferkit", "train", "--list-recipes"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # before the child's first line: its writes hit a closed pipe
    assert child.wait(timeout=120) == 141
    assert child.stderr.read() == b""


def test_every_train_flag_overrides_a_recipe_field():
    import dataclasses

    from ferkit.cli import build_parser
    from ferkit.cli.train import OVERRIDES
    from ferkit.training.config import TrainConfig

    assert set(OVERRIDES) <= {f.name for f in dataclasses.fields(TrainConfig)}
    args = build_parser().parse_args(["train", "data.zip", "--teacher-flip", "on", "--augment", "off",
                                      "--mirror-average", "off"])
    # a flag left out of OVERRIDES would be parsed and then silently ignored
    assert set(vars(args)) - set(OVERRIDES) == {"command", "quiet", "run", "data", "recipe", "list_recipes",
                                                 "resume", "output"}
    assert (args.teacher_flip, args.augment, args.teacher_weight) == (True, False, None)
    config = TrainConfig.from_recipe("default", **{name: getattr(args, name) for name in OVERRIDES})
    assert config.teacher_flip and not config.augment and config.teacher_weight == 0.5
    assert not config.mirror_average and TrainConfig.from_recipe("default").mirror_average


@pytest.mark.parametrize("args, message", [
    (["train", "{tmp}/missing.zip"], "data not found"),
    (["train", "{tmp}/empty.csv"], "empty"),
    (["train", "{tmp}/wrong.csv"], "missing column"),
    (["train", "{tmp}"], "no images found"),
    (["train", "{tmp}/wrong.csv", "--recipe", "nope"], "unknown recipe"),
    (["train", "{tmp}/wrong.csv", "--classes", "angry,contempt"], "unknown class"),
    (["train"], "give the training data"),
    (["train", "{tmp}/wrong.csv", "--resume", "{tmp}"], "give nothing else (got data)"),
    (["train", "--resume", "{tmp}", "--output", "{tmp}/new"], "give nothing else (got output)"),
    (["train", "--resume", "{tmp}", "--recipe", "seed-custom", "--epochs", "3"], "(got recipe, epochs)"),
    (["train", "--resume", "{tmp}"], "not a ferkit run directory"),
    (["evaluate", "{tmp}/nope", "{tmp}/wrong.csv"], "model not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "wrong.csv").write_text("label,image\n1,2\n")
    code = main([a.format(tmp=tmp_path) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ferkit: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("error, message", [
    (ImportError("No module named 'fastapi'", name="fastapi"), "pip install 'ferkit[serve]'"),
    (ImportError("No module named 'onnxruntime'", name="onnxruntime"), "pip install 'ferkit[train]'"),
    (ImportError("cannot load the backend"), "import failed: cannot load the backend"),
])
def test_import_errors_say_what_to_install_or_what_failed(monkeypatch, capsys, error, message):
    def fail(args):
        raise error

    monkeypatch.setattr("ferkit.cli.info.run", fail)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert message in err and "None" not in err


def test_train_and_evaluate_from_the_console_script(synthetic_folder, tmp_path):
    """The installed `ferkit` command end to end, as a user runs it."""
    run = tmp_path / "run"
    train = subprocess.run(
        [sys.executable, "-m", "ferkit", "train", str(synthetic_folder), "--recipe", "seed-custom",
         "--classes", "angry,happy,sad,surprise", "--split", "official", "--epochs", "2",
         "--output", str(run)], capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert "run directory" in train.stdout and (run / "model.keras").is_file()
    evaluate = subprocess.run([sys.executable, "-m", "ferkit", "evaluate", str(run), str(synthetic_folder)],
                              capture_output=True, text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stdout.startswith("accuracy ")


def test_predict_lines_json_csv_and_failures(tiny_run, group_photo, tmp_path, capsys):
    import json

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "group.jpg"), group_photo[0])
    cv2.imwrite(str(photos / "sub" / "blank.png"), np.full((100, 100, 3), 255, np.uint8))
    (photos / "sub" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    (photos / "._group.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata, not a photo
    args = ["predict", str(photos), "--model", str(tiny_run)]

    assert main(args + ["--csv", str(tmp_path / "faces.csv"), "--save-annotated", str(tmp_path / "ann")]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert sum("group.jpg" in line for line in lines) == 3
    assert any("blank.png" in line and "no face found" in line for line in lines)
    assert "corrupt.jpg" in err and "Traceback" not in err and "._group" not in out + err
    with open(tmp_path / "faces.csv", encoding="utf-8", newline="") as handle:
        rows = {(row["file"].split("/")[-1], row["face"]): row for row in csv.DictReader(handle)}
    assert len(rows) == 3 + 2  # three faces, and one row each for the file without a face and the corrupt one
    assert rows["blank.png", ""]["error"] == "no face found" and rows["blank.png", ""]["label"] == ""
    assert "not an image or corrupt" in rows["corrupt.jpg", ""]["error"]
    assert rows["group.jpg", "0"]["error"] == "" and rows["group.jpg", "0"]["label"]
    assert (tmp_path / "ann" / "group_annotated.png").is_file()

    assert main(args + ["--json", "--csv", str(tmp_path / "both.csv")]) == 1  # a document and a table, one run
    report = json.loads(capsys.readouterr().out)
    by_file = {r["file"].split("/")[-1]: r for r in report["results"]}
    assert len(by_file["group.jpg"]["faces"]) == 3 and "error" in by_file["corrupt.jpg"]
    tables = [[row[:-1] for row in csv.reader((tmp_path / name).read_text(encoding="utf-8").splitlines())]
              for name in ("faces.csv", "both.csv")]
    assert tables[0] == tables[1] and len(tables[1]) == 1 + 5  # the same, but for the annotated copies


def test_predict_jsonl_gives_each_image_its_line(tiny_run, group_photo, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.jpg"), group_photo[0])
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((80, 80, 3), 255, np.uint8))
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--jsonl"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["file"]).name for line in lines] == ["a.jpg", "b.jpg", "c.png"]  # in order, one each
    assert len(lines[0]["faces"]) == 3 and "error" in lines[1] and lines[2]["faces"] == []
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path), "--json", "--jsonl"])


def test_predict_max_faces_and_detection_scores(tiny_run, group_photo, tmp_path):
    import json

    photo = tmp_path / "g.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    args = ["predict", str(photo), "--model", str(tiny_run)]
    every = json.loads(_json(args))
    assert [face["box"][0] for face in every] == [80, 223, 439]  # left to right
    assert all(0.7 <= face["detection_score"] <= 1 for face in every)
    two = json.loads(_json(args + ["--max-faces", "2"]))
    assert [face["box"] for face in two] == [every[0]["box"], every[2]["box"]]  # the small middle one left out
    threshold = sorted(face["detection_score"] for face in every)[1]  # the least sure one falls below it
    assert main(args + ["--csv", str(tmp_path / "f.csv"), "--min-detection-score", str(threshold)]) == 0
    with open(tmp_path / "f.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(float(row["detection_score"]) >= threshold for row in rows)


def _json(args) -> str:
    import contextlib
    import io
    import json

    with contextlib.redirect_stdout(io.StringIO()) as out:
        main(args + ["--json"])
    return json.dumps(json.loads(out.getvalue())["results"][0]["faces"])


@pytest.mark.parametrize("flag, value, message", [("--max-faces", "0", "at least 1"), ("--max-faces", "two", "whole number"),
                                                  ("--min-detection-score", "1.5", "above 0, at most 1"),
                                                  ("--min-detection-score", "0", "above 0, at most 1, got 0"),
                                                  ("--min-detection-score", "high", "above 0, at most 1")])
def test_face_filters_out_of_range_are_refused(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "x.jpg", flag, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_predict_finds_every_format_opencv_reads_and_names_empty_folders(tiny_run, astronaut, tmp_path,
                                                                          capsys, caplog):
    photos, empty = tmp_path / "mixed", tmp_path / "empty"
    photos.mkdir(), empty.mkdir()
    cv2.imwrite(str(photos / "a.GIF"), astronaut)
    cv2.imwrite(str(photos / "b.jpg"), astronaut)
    (photos / "b.jpg").rename(photos / "c.jfif")
    assert main(["predict", str(photos), str(empty), "--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "a.GIF" in out and "c.jfif" in out and "no face found" not in out
    assert f"no image files in {empty}" in caplog.text


def test_predict_output_problems_are_one_line_and_come_first(tiny_run, group_photo, tmp_path, capsys):
    photo = tmp_path / "g.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    for extra, message in ((["--csv", str(photo / "f.csv")], f"{photo} is a file, not a folder"),
                           (["--csv", str(tmp_path)], "it is a folder"),
                           (["--save-annotated", str(photo / "ann")], "is a file, not a folder"),
                           (["--csv", str(photo)], "is one of the inputs"),
                           (["--detector", "haar", "--tiny-faces"], "--tiny-faces works with"),
                           (["--detector", "haar", "--min-detection-score", "0.5"], "--min-detection-score works")):
        assert main(["predict", str(photo), "--model", str(tiny_run), *extra]) == 2
        out, err = capsys.readouterr()
        assert message in err and len(err.strip().splitlines()) == 1
        assert out == ""  # said before any image was worked on
    csv_path = tmp_path / "new" / "folder" / "f.csv"
    assert main(["predict", str(photo), "--model", str(tiny_run), "--csv", str(csv_path)]) == 0
    assert len(csv_path.read_text().splitlines()) == 1 + 3


def test_predict_goes_on_past_files_it_cannot_read_or_write(tiny_run, group_photo, tmp_path, capsys,
                                                            monkeypatch):
    """A file that cannot be opened (permissions: tests run as root here, so simulated) or an
    annotated copy that cannot be written costs that image, not the rest of the folder."""
    from pathlib import Path

    for name in ("a.jpg", "locked.jpg", "z.jpg"):
        cv2.imwrite(str(tmp_path / name), group_photo[0])
    read_bytes = Path.read_bytes

    def locked(path):
        if path.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", locked)
    table = tmp_path / "out" / "faces.csv"
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--csv", str(table)]) == 1
    out, err = capsys.readouterr()
    assert "locked.jpg: Permission denied" in err and "Traceback" not in err
    assert out.count("z.jpg") == 3 and len(table.read_text().splitlines()) == 1 + 6 + 1  # + locked.jpg's row

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert main(["predict", str(tmp_path / "a.jpg"), str(tmp_path / "z.jpg"), "--model", str(tiny_run),
                 "--save-annotated", str(tmp_path / "ann"), "--csv", str(table)]) == 1
    assert capsys.readouterr().err.count("No space left on device") == 2
    lines = table.read_text().splitlines()
    assert len(lines) == 1 + 6 and all("cannot write" in line for line in lines[1:])


def test_annotated_copies_of_same_named_photos_do_not_overwrite(tiny_run, group_photo, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.jpg"), group_photo[0])
    main(["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(tiny_run),
          "--save-annotated", str(tmp_path / "out"), "--json"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_annotated-2.png", "x_annotated.png"]


def test_annotated_copies_never_overwrite_an_input(tiny_run, group_photo, tmp_path):
    """Copies written into the folder being read: x.jpg's copy must not replace x_annotated.png."""
    cv2.imwrite(str(tmp_path / "x.jpg"), group_photo[0])
    cv2.imwrite(str(tmp_path / "x_annotated.png"), group_photo[0])
    before = (tmp_path / "x_annotated.png").read_bytes()
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--save-annotated", str(tmp_path),
                 "--json"]) == 0
    assert (tmp_path / "x_annotated.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "x.jpg", "x_annotated-2.png", "x_annotated.png", "x_annotated_annotated.png"]


def test_predict_no_detect_classifies_whole_crops(tiny_run, tmp_path, capsys):
    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.full((48, 48), 120, np.uint8))
    assert main(["predict", str(crop), "--no-detect", "--model", str(tiny_run)]) == 0
    _, box, label, confidence = capsys.readouterr().out.strip().split("\t")
    classes = json.loads((tiny_run / "config.json").read_text())["classes"]
    assert box == "0,0,48,48" and label in classes and 1 / len(classes) <= float(confidence) <= 1


def test_info_reports_classes_and_accuracy(tiny_run, capsys):
    assert main(["info", "--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "angry, happy, sad, surprise" in out and "accuracy" in out and "int8" not in out


def test_info_on_a_run_not_exported_reads_its_files_without_keras(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*.onnx"))
    result = without_train_extra(f"from ferkit.cli import main\nsys.exit(main(['info', '--model', {str(run)!r}]))")
    assert result.returncode == 0, result.stderr
    assert "classes     angry, happy, sad, surprise" in result.stdout and "accuracy" in result.stdout


def test_info_says_how_many_epochs_a_cut_short_run_trained(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    epochs = json.loads((run / "config.json").read_text())["epochs"]
    header, first, *_ = (run / "history.csv").read_text().splitlines()
    (run / "history.csv").write_text(f"{header}\n{first}\n")  # as Ctrl-C after the first epoch leaves it
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": True, "best_epoch": 1}))
    assert main(["info", "--model", str(run)]) == 0
    assert f", 1 of {epochs} epochs (interrupted), kept epoch 1 (best val_loss) on " in capsys.readouterr().out
    assert main(["info", "--model", str(tiny_run)]) == 0
    # which epoch training kept, by the checkpoint's own measure over history.csv
    kept = metrics["best_epoch"]
    losses = [float(row.split(",")[header.split(",").index("val_loss")])
              for row in (tiny_run / "history.csv").read_text().splitlines()[1:]]
    assert kept == 1 + losses.index(min(losses))
    assert f", {epochs} epochs, kept epoch {kept} (best val_loss) on " in capsys.readouterr().out


def test_info_says_an_int8_models_accuracy_is_the_float_models(tiny_run, tmp_path, capsys):
    import shutil

    from ferkit.models.export import export_onnx

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.json"):
        shutil.copy(tiny_run / name, run)
    export_onnx(tiny_run, run / "model-int8.onnx", quantize="int8")
    assert main(["info", "--model", str(run)]) == 0
    assert "the float model before int8 quantization" in capsys.readouterr().out
    assert main(["info"]) == 0  # the bundled int8 file's metrics are its own
    assert "test        accuracy" in (out := capsys.readouterr().out) and "float model" not in out


def test_info_counts_the_networks_inside_a_nested_ensemble(tiny_run, tmp_path, capsys):
    from ferkit.models import onnx_graph

    model = onnx_graph.load(tiny_run / "model.onnx")
    pair = onnx_graph.save(onnx_graph.averaged([model, model]), tmp_path / "pair.onnx")
    assert main(["info", "--model", str(pair)]) == 0
    assert "ensemble of 2 models on" in capsys.readouterr().out
    nested = onnx_graph.averaged([onnx_graph.load(pair), model], weights=[2, 1])
    assert main(["info", "--model", str(onnx_graph.save(nested, tmp_path / "nested.onnx"))]) == 0
    assert "ensemble of 2 models (3 networks: some are ensembles themselves) on" in capsys.readouterr().out


def test_export_makes_its_output_folder_and_refuses_an_impossible_one(tiny_run, tmp_path, capsys):
    out = tmp_path / "exports" / "m.onnx"
    assert main(["export", str(tiny_run), "--output", str(out)]) == 0
    assert out.stat().st_size > 10_000 and str(out) in capsys.readouterr().out
    assert main(["export", str(tiny_run), "--output", str(out / "x.onnx")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("threads, message", [("0", "1 to"), ("100000", "(4 x this machine's cores), got 100000"),
                                              ("many", "(4 x this machine's cores), got 'many'")])
def test_threads_beyond_reason_are_refused(threads, message, capsys):
    """100,000 ONNX Runtime threads took minutes to start, at full CPU."""
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "photo.jpg", "--threads", threads])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --threads: " in err and message in err


def test_compare_on_missing_data_leaves_no_folder_and_fractions_say_their_form(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "missing.zip"), "--recipes", "seed-custom", "--output", str(out)]) == 2
    assert "data not found" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data.zip", "--fractions", "0.8,0.1,0.1,"])
    assert exit_info.value.code == 2 and "three numbers such as 0.8,0.1,0.1, got '0.8,0.1,0.1,'" in capsys.readouterr().err


def test_int8_export_without_its_calibration_data_says_so_before_converting(tiny_run, tmp_path, monkeypatch,
                                                                             capsys):
    import shutil

    import keras

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": str(tmp_path / "moved.zip")}))
    monkeypatch.setattr(keras.Model, "export", lambda *args, **kwargs: pytest.fail("converted first"))
    assert main(["export", str(run), "--quantize", "int8"]) == 2
    assert "which is not there any more: give --calibration DATA" in capsys.readouterr().err


def test_export_never_writes_over_the_model_it_reads(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {name: (run / name).read_bytes() for name in ("model.keras", "config.json")}
    for target in ("model.keras", "config.json", "model"):
        assert main(["export", str(run), "--output", str(run / target)]) == 2
        assert "an ONNX file's name ends in .onnx" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before


def test_ctrl_c_in_predict_keeps_the_results_so_far(tiny_run, group_photo, tmp_path, monkeypatch, capsys):
    from ferkit.inference import EmotionRecognizer

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        cv2.imwrite(str(folder / name), group_photo[0])
    calls, detect = [], EmotionRecognizer.detect

    def ctrl_c_on_the_second(self, image, rgb=False):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return detect(self, image, rgb)

    monkeypatch.setattr(EmotionRecognizer, "detect", ctrl_c_on_the_second)
    out = tmp_path / "faces.csv"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(out)]) == 130
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and {row["file"] for row in rows} == {str(folder / "a.jpg")}
    assert "the results hold the first 1 of 3 images" in capsys.readouterr().err
    calls.clear()
    assert main(["predict", str(folder), "--model", str(tiny_run), "--json"]) == 130
    printed = json.loads(capsys.readouterr().out)
    assert printed["interrupted"] and len(printed["results"]) == 1


@pytest.mark.parametrize("metrics", ['{"note": "of another model"}', "{broken", "[1, 2]"])
def test_info_passes_over_a_metrics_file_that_is_not_the_models(tiny_run, tmp_path, capsys, metrics):
    import shutil

    shutil.copy(tiny_run / "model.onnx", tmp_path)
    (tmp_path / "metrics.json").write_text(metrics)
    assert main(["info", "--model", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "classes     angry, happy, sad, surprise" in out and "accuracy" not in out


@pytest.mark.parametrize("per_class", ['[1, 2]', '{"angry": 0.5}', '{"angry": {"f1": "high"}}'])
def test_info_leaves_out_per_class_figures_it_cannot_read(tiny_run, tmp_path, capsys, per_class):
    import shutil

    shutil.copy(tiny_run / "model.onnx", tmp_path)
    (tmp_path / "metrics.json").write_text(f'{{"accuracy": 0.5, "per_class": {per_class}}}')
    assert main(["info", "--model", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.5000" in out and " f1 " not in out


def test_a_json_that_is_not_a_keras_model_is_a_clear_error(tiny_run, tmp_path, capsys):
    import shutil

    (tmp_path / "broken.json").write_text("{broken")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tiny_run / "model.json", lone)
    for model, message in ((tiny_run / "config.json", "is not a Keras model.json"),
                           (tmp_path / "broken.json", "is not a Keras model.json"),
                           (lone / "model.json", "needs its weights beside it")):
        assert main(["info", "--model", str(model)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["info", "--model", str(tiny_run / "model.json")]) == 0  # the original project's pair


def test_predict_takes_file_names_that_are_not_utf8(tiny_run, group_photo, tmp_path, capsys):
    """Bytes of another encoding in a name (a Latin-1 'café.jpg'): OpenCV's imwrite crashed the
    process on its annotated copy, and the CSV ended the run with a UnicodeEncodeError."""
    import os

    folder = tmp_path / "photos"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.jpg")
    try:
        cv2.imwrite(str(tmp_path / "g.jpg"), group_photo[0])
        os.rename(tmp_path / "g.jpg", folder / name)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    table, copies = tmp_path / "faces.csv", tmp_path / "ann"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(table),
                 "--save-annotated", str(copies)]) == 0
    assert capsys.readouterr().out.count("caf\\udce9.jpg") == 3  # printed escaped
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 3 and rows[0]["file"].endswith("caf\\udce9.jpg")
    assert [p.name for p in copies.iterdir()] == [os.fsdecode(b"caf\xe9_annotated.png")]


def test_predict_says_what_it_leaves_out_and_follows_linked_folders(tiny_run, group_photo, tmp_path, caplog):
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), group_photo[0])
    cv2.imwrite(str(elsewhere / "b.png"), group_photo[0])
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "scan").write_bytes(b"\xff\xd8 no suffix")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # read once, not forever
    table = tmp_path / "faces.csv"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(table)]) == 0
    files = {row["file"].split("/")[-1] for row in csv.DictReader(table.read_text(encoding="utf-8").splitlines())}
    assert files == {"a.jpg", "b.png"}
    assert "left out 2 files not named as images (.heic, no suffix)" in caplog.text


def test_predict_rerun_into_its_own_input_folder_reads_no_earlier_copies(tiny_run, group_photo, tmp_path,
                                                                          capsys):
    """`--save-annotated photos/annotated` twice: the second run's inputs are the photos alone, and
    each result names its copy (img.bmp and img.webp cannot both be img_annotated.png)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for suffix in (".bmp", ".webp"):
        cv2.imwrite(str(folder / f"img{suffix}"), group_photo[0])
    args = ["predict", str(folder), "--model", str(tiny_run), "--save-annotated", str(folder / "annotated"),
            "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["file"].split("/")[-1] for r in results] == ["img.bmp", "img.webp"]
    assert [r["annotated"].split("/")[-1] for r in results] == ["img_annotated.png", "img_annotated-2.png"]
    assert sorted(p.name for p in (folder / "annotated").iterdir()) == ["img_annotated-2.png", "img_annotated.png"]


def test_an_existing_output_file_that_cannot_be_written_is_refused_first(tiny_run, group_photo, tmp_path,
                                                                         monkeypatch, capsys):
    """A read-only (or, for root, immutable) faces.csv: said before the first image, not after all."""
    from pathlib import Path

    photo, table = tmp_path / "g.jpg", tmp_path / "faces.csv"
    cv2.imwrite(str(photo), group_photo[0])
    table.write_text("earlier results\n", encoding="utf-8")
    open_ = Path.open

    def read_only(path, mode="r", *args, **kwargs):
        if path == table and mode != "r":
            raise PermissionError(1, "Operation not permitted", str(path))
        return open_(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    assert main(["predict", str(photo), "--model", str(tiny_run), "--csv", str(table)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"cannot write {table}: Operation not permitted" in err
    assert table.read_text(encoding="utf-8") == "earlier results\n"


def test_an_onnx_in_another_runs_folder_is_not_described_by_that_run(tiny_run, tmp_path, capsys):
    """info read the folder's metrics.json and history.csv for any .onnx placed in it; and export
    could write a model.onnx into another run, which then stood for that run's network."""
    import shutil

    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_run, other)
    shutil.copy(tiny_run / "model.onnx", other / "stranger.onnx")
    assert main(["info", "--model", str(other / "stranger.onnx")]) == 0
    out = capsys.readouterr().out
    assert "macro-F1" not in out and "of 2 epochs" not in out
    assert main(["info", "--model", str(other / "model.onnx")]) == 0
    assert "macro-F1" in capsys.readouterr().out  # the run's own export is still the run's
    assert main(["export", str(run), "--output", str(other / "model.onnx")]) == 2
    assert f"{other} is another run's directory" in capsys.readouterr().err
    assert main(["export", str(run), "--output", str(run / "again.onnx")]) == 0  # its own folder: fine
