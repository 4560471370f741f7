from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import synthetic_faces, without_train_extra, write_folder
from ferkit.cli import COMMANDS, main


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"ferkit {version('ferkit')}\n"


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


@pytest.mark.parametrize("command", ["video", "demo"])
@pytest.mark.parametrize("flag", ["--every", "--smooth"])
def test_frame_options_under_one_are_refused_before_anything_loads(command, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "clip.mp4" if command == "video" else "--source=clip.mp4", flag, "0"])
    assert exit_info.value.code == 2 and "at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("args, named", [
    (["train", ""], "data"), (["train", "data.zip", "--output", ""], "--output"),
    (["train", "--resume", " "], "--resume"), (["train", "data.zip", "--teacher", ""], "--teacher"),
    (["compare", "data.zip", "--output", ""], "--output"), (["evaluate", "default", ""], "data"),
    (["evaluate", "", "data.zip"], "model"), (["export", "run", "--calibration", ""], "--calibration"),
    (["predict", "a.jpg", ""], "PATH"), (["predict", "a.jpg", "--save-annotated", ""], "--save-annotated"),
    (["predict", "a.jpg", "--model", ""], "--model"), (["video", "clip.mp4", "--plot", ""], "--plot"),
    (["demo", "--source", ""], "--source"), (["info", "--model", ""], "--model"), (["serve", "--host", ""], "--host"),
])
def test_an_empty_path_or_name_is_refused_before_anything_loads(args, named, capsys):
    """An unset shell variable ("$DATA") had read as the current folder, or an empty --output as none."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and f"argument {named}: an empty name" in capsys.readouterr().err


def test_the_demo_quits_on_q_esc_or_its_window_closed(monkeypatch):
    """A camera never runs out of frames: each way out ends the loop, and nothing else does."""
    import cv2
    import numpy as np

    from ferkit.cli import demo
    from ferkit.inference.video import VideoFrame

    def frames():
        index = 0
        while index < 100:
            yield VideoFrame(index, index / 25, np.zeros((48, 64, 3), np.uint8), [], True)
            index += 1

    # visible -1: OpenCV's GTK windows cannot tell, which is no reason to quit
    for key, visible, shown in ((ord("q"), 1.0, 1), (27, 1.0, 1), (-1, 0.0, 1), (-1, 1.0, 100), (-1, -1.0, 100)):
        seen = []
        monkeypatch.setattr(cv2, "imshow", lambda name, image: seen.append(name))
        monkeypatch.setattr(cv2, "waitKey", lambda delay: key)
        monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: visible)
        assert demo._show(frames(), paced=False) == (shown, shown < 100)
        assert len(seen) == shown, (key, visible)


def test_the_demo_says_when_its_source_gives_no_frame_or_a_camera_stops(monkeypatch, caplog):
    """Both ended the demo with exit 0 and no word: an empty file, or a camera unplugged mid-stream."""
    import argparse
    import contextlib

    import cv2
    import numpy as np

    from ferkit.cli import demo
    from ferkit.inference.video import VideoFrame, is_live

    class Source(list):
        live = True

    class Recognizer:
        def __init__(self, frames):
            self.frames = frames

        def video(self, source, every, smooth):
            self.frames.live = is_live(source, None)  # a camera, or a file without a frame count
            return contextlib.nullcontext(self.frames)

    image = np.zeros((48, 64, 3), np.uint8)
    monkeypatch.setattr(demo, "_open_window", lambda: None)
    for name, value in (("imshow", lambda *a: None), ("waitKey", lambda delay: -1),
                        ("getWindowProperty", lambda *a: 1.0), ("destroyAllWindows", lambda: None)):
        monkeypatch.setattr(cv2, name, value)
    args = argparse.Namespace(source="0", every=1, smooth=1)
    # A source that gives no frame at all is VideoAnalysis' own error (test_inference_video)
    monkeypatch.setattr(demo, "recognizer", lambda args: Recognizer(Source([VideoFrame(0, 0.0, image, [], True)])))
    assert demo.run(args) == 0
    assert "0 stopped sending frames after 1" in caplog.text
    caplog.clear()
    assert demo.run(argparse.Namespace(source="recording.webm", every=1, smooth=1)) == 0  # no frame count
    assert "stopped sending" not in caplog.text  # a file's end is no news


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
                                      "--mirror-average", "off", "--precise-bn", "off", "--drop-repeats", "off"])
    # a flag left out of OVERRIDES would be parsed and then silently ignored
    assert set(vars(args)) - set(OVERRIDES) == {"command", "quiet", "run", "data", "recipe", "list_recipes",
                                                 "resume", "output"}
    assert (args.teacher_flip, args.augment, args.teacher_weight) == (True, False, None)
    config = TrainConfig.from_recipe("default", **{name: getattr(args, name) for name in OVERRIDES})
    assert config.teacher_flip and not config.augment and config.teacher_weight == 0.5
    assert not config.mirror_average and TrainConfig.from_recipe("default").mirror_average
    assert not config.precise_bn and TrainConfig.from_recipe("default").precise_bn
    assert not config.drop_repeats and TrainConfig.from_recipe("default").drop_repeats


@pytest.mark.parametrize("args, message", [
    (["train", "{tmp}/missing.zip"], "data not found"),
    (["train", "{tmp}/empty.csv"], "data file is empty: "),
    (["train", "{tmp}/wrong.csv"], "missing column"),
    (["train", "{tmp}"], "holds 2 CSV files and no images in emotion folders (empty.csv, wrong.csv)"),
    (["train", "{tmp}/wrong.csv", "--recipe", "nope"], "unknown recipe"),
    (["train", "{tmp}/wrong.csv", "--classes", "angry,contempt"], "unknown class"),
    (["train"], "give the training data"),
    (["train", "{tmp}/wrong.csv", "--resume", "{tmp}", "--epochs", "3"],
     "nothing else but its data, if that has moved (got epochs); to train it further, start a new run from its weights"),
    (["train", "--resume", "{tmp}", "--output", "{tmp}/new"], "give nothing else but its data, if that has moved (got output)"),
    (["train", "--resume", "{tmp}", "--recipe", "seed-custom", "--epochs", "3"], "(got recipe, epochs)"),
    (["train", "--resume", "{tmp}"], "not a ferkit run directory"),
    (["evaluate", "{tmp}/nope", "{tmp}/wrong.csv"], "model not found"),
    # said before the model loads: the model named does not exist, and is never looked for
    (["predict", "{tmp}", "--model", "{tmp}/nope.onnx"], "no images found in"),
    (["video", "{tmp}/clip.mp4", "--model", "{tmp}/nope.onnx"], "nothing to write: give --output, --csv and/or --plot"),
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
    (ModuleNotFoundError("No module named 'fastapi'", name="fastapi"), "pip install 'ferkit[serve]'"),
    (ModuleNotFoundError("No module named 'sklearn'", name="sklearn"), "pip install 'ferkit[train]'"),
    (ModuleNotFoundError("No module named 'numpy'", name="numpy"), "(a broken install?): pip install numpy"),
    # KERAS_BACKEND=jax without jax: the train extra brings TensorFlow, which would not help
    (ModuleNotFoundError("No module named 'jax'", name="jax"), "Keras is set to its jax backend"),
    (ModuleNotFoundError("No module named 'torch'", name="torch"), "pip install torch, or set KERAS_BACKEND"),
    (ModuleNotFoundError("No module named 'jaxlib'", name="jaxlib"), "its jax backend (KERAS_BACKEND"),
    (ImportError("cannot load the backend"), "import failed: cannot load the backend"),
    # a name missing from a module that is there (a version mismatch) is not a package to install
    (ImportError("cannot import name 'x' from 'numpy'", name="numpy"), "import failed: cannot import name 'x'"),
    (ModuleNotFoundError("No module named 'ferkit.gone'", name="ferkit.gone"), "import failed: No module named"),
])
def test_import_errors_say_what_to_install_or_what_failed(monkeypatch, capsys, error, message):
    def fail(args):
        raise error

    monkeypatch.setattr("ferkit.cli.info.run", fail)
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert message in err and "None" not in err


def test_the_python_api_names_the_extra_as_the_cli_does(tmp_path, monkeypatch):
    """A lazy import (ferkit.train, the Keras backend) that lacks a package names its extra; an error
    that names no module, or one of ferkit's own, is Python's own, unchanged."""
    from ferkit.errors import import_naming_extra

    (tmp_path / "lacks_fastapi_probe.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n", encoding="utf-8")
    (tmp_path / "unnamed_failure_probe.py").write_text("raise ModuleNotFoundError('boom')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match=r"^ferkit\.serve: this needs fastapi, .*pip install 'ferkit\[serve\]'$"):
        import_naming_extra("lacks_fastapi_probe", "ferkit.serve: ")
    with pytest.raises(ModuleNotFoundError, match="^boom$"):
        import_naming_extra("unnamed_failure_probe")
    (tmp_path / "lacks_own_module_probe.py").write_text(  # a broken install: no extra brings ferkit's own modules
        "raise ModuleNotFoundError(\"No module named 'ferkit.gone'\", name='ferkit.gone')\n", encoding="utf-8")
    with pytest.raises(ModuleNotFoundError, match="^No module named 'ferkit.gone'$"):
        import_naming_extra("lacks_own_module_probe", "ferkit.train: ")
    assert import_naming_extra("json").dumps([1]) == "[1]"


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
    assert metrics.pop("epochs_trained") == epochs  # runs before it was recorded: history.csv's rows
    (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": True, "best_epoch": 1}))
    assert main(["info", "--model", str(run)]) == 0
    assert f", 1 of {epochs} epochs (interrupted), kept epoch 1 (best val_loss) on " in capsys.readouterr().out
    (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": False, "best_epoch": 1}))
    assert main(["info", "--model", str(run)]) == 0  # finished short, with no time limit to say "at most"
    assert f", 1 of {epochs} epochs, kept epoch 1" in capsys.readouterr().out
    (run / "model.onnx").unlink()  # its export carries the config it was trained with; this run is read from its own
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "time_limit": 30}))
    assert main(["info", "--model", str(run)]) == 0  # a limit ended it: its epochs are the most it trains
    assert f", 1 of at most {epochs} epochs, kept epoch 1" in capsys.readouterr().out
    assert metrics.pop("diverged") == 0
    (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": False, "best_epoch": 1}))
    assert main(["info", "--model", str(run)]) == 0  # metrics from before `diverged`: a NaN may have ended it
    assert f", 1 of {epochs} epochs, kept epoch 1" in capsys.readouterr().out
    (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": True, "diverged": 1, "best_epoch": 1}))
    assert main(["info", "--model", str(run)]) == 0  # Ctrl-C in the epoch that became NaN: both said
    assert f", 1 of {epochs} epochs (interrupted, diverged in epoch 1), kept" in capsys.readouterr().out
    for edited in ("1", 1.0, True):  # a hand-edited file names no epoch ferkit can vouch for
        (run / "metrics.json").write_text(json.dumps({**metrics, "interrupted": False, "diverged": edited}))
        assert main(["info", "--model", str(run)]) == 0
        assert f", 1 of {epochs} epochs (diverged), kept" in capsys.readouterr().out
    assert main(["info", "--model", str(tiny_run)]) == 0
    # which epoch training kept, by the checkpoint's own measure over history.csv
    kept = metrics["best_epoch"]
    losses = [float(row.split(",")[header.split(",").index("val_loss")])
              for row in (tiny_run / "history.csv").read_text().splitlines()[1:]]
    assert kept == 1 + losses.index(min(losses))
    assert f", {epochs} epochs, kept epoch {kept} (best val_loss) on " in capsys.readouterr().out


def test_info_describes_a_run_that_has_no_model_yet(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("model*", "metrics.json"))
    (run / "checkpoints" / "backup").mkdir(parents=True)  # what BackupAndRestore keeps between epochs
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 30}))
    header, *rows = (run / "history.csv").read_text().splitlines()
    losses = [float(row.split(",")[header.split(",").index("val_loss")]) for row in rows]
    assert main(["info", "--model", str(run)]) == 0  # was "holds no model ... did its training finish?"
    out = capsys.readouterr().out
    best = 1 + losses.index(min(losses))
    assert "to train 30 epochs on " in out and "accuracy" not in out.split("training")[-1]
    assert (f"training    no model yet: 2 of 30 epochs so far, best val_loss {min(losses):.4f} at epoch {best}; "
            f"`ferkit train --resume {run}` goes on from epoch 3 unless it is training now") in out
    (run / "history.csv").write_text(header + "\n")  # in its first epoch
    assert main(["info", "--model", str(run), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["training"]["epochs_so_far"] == 0 and described["epochs_trained"] is None
    (run / "history.csv").write_text(f"{header}\n{rows[0][:5]}")  # a row cut short by a kill mid-write
    assert main(["info", "--model", str(run)]) == 0
    out = capsys.readouterr().out
    assert "to train 30 epochs" in out and "no model yet; its history.csv is damaged" in out
    (run / "history.csv").write_text("\n".join([header, *rows]) + "\n")
    (run / "config.json").write_text(json.dumps({**config, "epochs": 2}))  # its last epoch done, not saved
    assert main(["info", "--model", str(run)]) == 0
    assert "2 of 2 epochs so far" in (out := capsys.readouterr().out) and "only saves the model" in out


def test_info_describes_a_finished_run_whose_model_was_packed_away(tiny_run, tmp_path, capsys):
    """As scripts/half_weights.py leaves it: metrics.json and history, no model.keras."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("model*"))
    assert main(["info", "--model", str(run)]) == 0
    out = capsys.readouterr().out  # said "no model yet" beside the run's test accuracy
    assert "no model yet" not in out and "to train" not in out and "accuracy" in out


def test_info_says_when_a_resume_has_gone_past_the_model(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("*.onnx"))  # an export carries its own config
    (run / "checkpoints" / "backup").mkdir(parents=True, exist_ok=True)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": 30}))
    header, *rows = (run / "history.csv").read_text().splitlines()
    third = f"{len(rows)},{rows[-1].split(',', 1)[1]}"  # a third epoch since
    (run / "history.csv").write_text("\n".join([header, *rows, third]) + "\n")
    assert main(["info", "--model", str(run)]) == 0
    out = capsys.readouterr().out
    assert ", 2 of 30 epochs, kept epoch" in out and "accuracy" in out
    assert "training    resumed after this model's epoch 2: 3 of 30 epochs so far, best val_loss " in out
    assert main(["info", "--model", str(tiny_run)]) == 0  # finished: nothing more to say
    assert "\ntraining " not in capsys.readouterr().out
    assert main(["info"]) == 0  # an ensemble has no history of its own: said "no model yet: 0 of None epochs"
    assert "\ntraining " not in capsys.readouterr().out


def test_a_folder_named_default_is_not_taken_for_the_bundled_model_in_silence(tmp_path, monkeypatch, caplog):
    from ferkit.inference.backends import resolve_model

    monkeypatch.chdir(tmp_path)
    assert resolve_model("default").name == "model.onnx" and not caplog.records
    (tmp_path / "default").mkdir()  # `ferkit train --output default`, say
    with caplog.at_level("WARNING", logger="ferkit"):
        assert resolve_model("default").parent.parent.name == "assets"
        resolve_model("default")  # a command resolves its model more than once: said once
    assert [r.getMessage() for r in caplog.records].count(
        "the model is the bundled one, not the folder default here: give ./default for that") == 1


def test_predict_with_a_keras_model_hides_tensorflows_start_up_lines(tiny_run, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "face.png"), np.full((48, 48), 128, np.uint8))
    result = subprocess.run([sys.executable, "-m", "ferkit", "predict", str(tmp_path / "face.png"), "--no-detect",
                             "--model", str(tiny_run / "model.keras")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{tmp_path / 'face.png'}\t0,0,48,48\t")
    assert "absl" not in result.stderr and "oneDNN" not in result.stderr and "I0000" not in result.stderr


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


def test_info_on_an_onnx_file_copied_out_of_its_run_still_says_how_it_was_trained(tiny_run, tmp_path, capsys):
    """A copy said the configured epochs and no test scores; the int8 file did not say it was int8."""
    import shutil

    from ferkit.models import onnx_graph
    from ferkit.models.export import export_onnx

    run = shutil.copytree(tiny_run, tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "epochs_trained": 1}))  # as a time limit cuts
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "time_limit": 30}))  # ... a run that has one
    copy = shutil.copy(export_onnx(run, quantize="int8", calibration=json.loads((run / "config.json").read_text())["data"]),
                       tmp_path / "copy.onnx")
    assert main(["info", "--model", str(copy)]) == 0
    out = capsys.readouterr().out
    # finished short of its epochs, not interrupted: they are the most it trains
    assert f", 1 of at most {json.loads((run / 'config.json').read_text())['epochs']} epochs, kept" in out
    assert f"test        accuracy {metrics['accuracy']:.4f}" in out and "the float model before int8" in out
    assert "weights     int8" in out
    # An ensemble or mirror-averaged copy is another model: its members' scores are not its own
    pair = onnx_graph.save(onnx_graph.averaged([onnx_graph.load(copy)] * 2), tmp_path / "pair.onnx")
    assert main(["info", "--model", str(pair)]) == 0
    assert "test " not in capsys.readouterr().out


def test_info_on_an_export_of_a_bare_keras_file_says_no_none(tmp_path, capsys):
    """It printed "recipe None, architecture None, None epochs on ?"."""
    from ferkit.models import create_model
    from ferkit.models.export import export_onnx

    (tmp_path / "bare").mkdir()
    create_model("custom", image_size=48, num_classes=7).save(tmp_path / "bare" / "net.keras")
    assert main(["info", "--model", str(export_onnx(tmp_path / "bare" / "net.keras"))]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "trained" not in out and "classes     angry, disgust, fear" in out


@pytest.mark.parametrize("key, value, message", [
    ("ferkit.config", "{", "metadata is damaged"), ("ferkit.config", "[]", "holds no run's settings"),
    ("ferkit.image_size", "forty", "metadata is damaged"), ("ferkit.classes", '"angry"', "not a list of names"),
    ("ferkit.config", '{"members": "ab"}', "members are not a list")])
def test_damaged_onnx_metadata_is_one_line(tiny_run, tmp_path, capsys, key, value, message):
    from ferkit.models import onnx_graph

    model = onnx_graph.load(tiny_run / "model.onnx")
    next(p for p in model.metadata_props if p.key == key).value = value
    assert main(["info", "--model", str(onnx_graph.save(model, tmp_path / "m.onnx"))]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("recorded", ['{"metrics": {"accuracy": "high"}}', '{"metrics": [1]}', "[1]",
                                      '{"metrics": {"accuracy": 0.5, "per_class": [1, 2]}, "epochs_trained": "ten"}',
                                      '{"metrics": {"accuracy": 0.5, "unseen": {"accuracy": 0.4}}}',
                                      '{"metrics": {"accuracy": 0.5, "unseen": [0.4]}}'])
def test_recorded_scores_in_an_onnx_file_that_cannot_be_read_are_passed_over(tiny_run, tmp_path, capsys, recorded):
    from ferkit.models import onnx_graph

    model = onnx_graph.load(tiny_run / "model.onnx")
    next(p for p in model.metadata_props if p.key == "ferkit.recorded").value = recorded
    assert main(["info", "--model", str(onnx_graph.save(model, tmp_path / "m.onnx"))]) == 0
    out = capsys.readouterr().out
    assert ("accuracy 0.5000" in out) == ("0.5" in recorded) and "ten" not in out and "n=" not in out
    assert "unseen" not in out


@pytest.mark.parametrize("change, message", [({"classes": "angry"}, "not a list of names"),
                                             ({"members": [1, 2]}, "members are not a list")])
def test_a_config_json_of_the_wrong_shape_is_one_line(tiny_run, tmp_path, capsys, change, message):
    """`"classes": "angry"` read as five classes, a, n, g, r, y; members as numbers were a traceback."""
    import shutil

    run = shutil.copytree(tiny_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **change}))
    for name in ("model.onnx", "model-int8.onnx"):
        (run / name).unlink(missing_ok=True)
    assert main(["info", "--model", str(run)]) == 2
    assert message in capsys.readouterr().err


def test_sigterm_stops_as_ctrl_c_does_then_ends_the_process_by_sigterm():
    """Training's Ctrl-C handler (stop after this batch) gets SIGTERM too; the process still ends by
    the signal, as systemd and docker expect, not with Ctrl-C's exit code 130."""
    import signal

    code = ("import os, signal, sys\n"
            "from ferkit.cli import _sigterm_as_ctrl_c\n"
            "signal.signal(signal.SIGINT, lambda n, f: print('stop after this batch', signal.Signals(n).name, flush=True))\n"
            "with _sigterm_as_ctrl_c(True):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    print('work kept', flush=True)\n"
            "print('not reached', flush=True)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGTERM and result.stdout.split("\n")[:2] == [
        "stop after this batch SIGTERM", "work kept"], (result.stdout, result.stderr)  # named as what it is


def test_main_works_outside_the_main_thread(capsys):
    """Signal handlers can be set from the main thread only: main() from a worker thread raised."""
    import threading

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["info"])))
    worker.start()
    worker.join(timeout=120)
    assert codes == [0]


def test_export_prints_the_file_and_not_tensorflows_start_up_lines(tiny_run, tmp_path):
    """Six lines of absl's oneDNN and CUDA notes and a Keras FutureWarning came with every export."""
    result = subprocess.run([sys.executable, "-m", "ferkit", "export", str(tiny_run), "--output",
                             str(tmp_path / "m.onnx")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == str(tmp_path / "m.onnx"), result.stderr
    assert "absl" not in result.stderr and "FutureWarning" not in result.stderr and "oneDNN" not in result.stderr


def test_native_lines_hidden_during_an_import_are_shown_if_it_fails(capfd):
    import os

    from ferkit.cli._common import native_stderr_hidden

    with native_stderr_hidden():
        os.write(2, b"a note from C++\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), native_stderr_hidden():
        os.write(2, b"libfoo.so: cannot open shared object file\n")
        raise ImportError("libfoo")
    assert "libfoo.so: cannot open shared object file" in capfd.readouterr().err


def test_export_checks_its_arguments_before_loading_keras():
    """`export default` took Keras' seconds of start-up (or asked for the train extra) to refuse."""
    result = without_train_extra("from ferkit.cli import main\nsys.exit(main(['export', 'default']))")
    assert result.returncode == 2 and "the bundled model is an ONNX file already" in result.stderr, result.stderr


def test_ferkits_progress_is_shown_and_other_libraries_info_is_not(capsys):
    """tf2onnx's "Using opset", "After optimization" lines came with every export."""
    import logging

    assert main(["info"]) == 0
    assert logging.getLogger("ferkit").isEnabledFor(logging.INFO)
    assert not logging.getLogger("tf2onnx").isEnabledFor(logging.INFO)
    assert logging.getLogger("tf2onnx").isEnabledFor(logging.WARNING)
    assert main(["-q", "info"]) == 0
    assert not logging.getLogger("ferkit").isEnabledFor(logging.INFO)
    logging.getLogger("ferkit").setLevel(logging.NOTSET)
    assert main(["info", "-q"]) == 0  # after the command too: it was a usage error
    assert not logging.getLogger("ferkit").isEnabledFor(logging.INFO)
    from ferkit.cli import build_parser

    assert build_parser().parse_args(["info"]).quiet is False


def test_export_makes_its_output_folder_and_refuses_an_impossible_one(tiny_run, tmp_path, capsys):
    out = tmp_path / "exports" / "m.onnx"
    assert main(["export", str(tiny_run), "--output", str(out)]) == 0
    assert out.stat().st_size > 10_000 and str(out) in capsys.readouterr().out
    assert main(["export", str(tiny_run), "--output", str(out / "x.onnx")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


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


def test_exporting_another_keras_file_names_the_export_after_it(tiny_run, tmp_path, capsys):
    """A run reads its model.onnx before its model.keras: `export run/old.keras` as model.onnx would
    swap the run's model, so such a file's export takes its own name."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copy(run / "model.keras", run / "happy v2.keras")
    before = (run / "model.onnx").read_bytes()
    assert main(["export", str(run / "happy v2.keras")]) == 0
    assert capsys.readouterr().out.strip() == str(run / "happy v2.onnx")
    assert (run / "model.onnx").read_bytes() == before and (run / "happy v2.onnx").stat().st_size > 10_000
    assert main(["export", str(run / "model.keras")]) == 0  # the run's own network: the run's own file
    assert capsys.readouterr().out.strip() == str(run / "model.onnx")


def test_calibration_flags_say_what_is_wrong_with_them(tiny_run, tmp_path, capsys):
    assert main(["export", "default"]) == 2
    assert "the bundled model is an ONNX file already" in capsys.readouterr().err
    from ferkit.inference.backends import bundled_model_dir

    assert main(["export", str(bundled_model_dir())]) == 2  # had been "has no model.keras: was its training finished?"
    assert "the bundled model is an ONNX file already" in capsys.readouterr().err
    assert main(["export", str(tiny_run / "model.onnx")]) == 2  # had been "unsupported model file"
    assert f"{tiny_run / 'model.onnx'} is an ONNX file already" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--calibration", str(tmp_path / "typo.zip"), "--output",
                 str(tmp_path / "m.onnx")]) == 2  # without int8 it would change nothing
    assert "calibration faces are for int8 quantization: add --quantize int8" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    assert main(["export", str(tiny_run), "--quantize", "int8", "--calibration", str(tmp_path / "typo.zip"),
                 "--output", str(tmp_path / "m.onnx")]) == 2
    assert f"--calibration {tmp_path / 'typo.zip'}: not found" in capsys.readouterr().err


@pytest.mark.parametrize("metrics", ['{"note": "of another model"}', "{broken", "[1, 2]"])
def test_info_passes_over_a_metrics_file_that_is_not_the_models(tiny_run, tmp_path, capsys, metrics):
    import shutil

    shutil.copy(tiny_run / "model.onnx", tmp_path)
    (tmp_path / "metrics.json").write_text(metrics)
    assert main(["info", "--model", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    # the scores the file carries from its own run, not the file beside it
    own = json.loads((tiny_run / "metrics.json").read_text())["accuracy"]
    assert "classes     angry, happy, sad, surprise" in out and f"test        accuracy {own:.4f}" in out


@pytest.mark.parametrize("per_class", ['[1, 2]', '{"angry": 0.5}', '{"angry": {"f1": "high"}}'])
def test_info_leaves_out_per_class_figures_it_cannot_read(tiny_run, tmp_path, capsys, per_class):
    import shutil

    shutil.copy(tiny_run / "model.onnx", tmp_path)
    (tmp_path / "metrics.json").write_text(f'{{"accuracy": 0.5, "per_class": {per_class}}}')
    assert main(["info", "--model", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.5000" in out and " f1 " not in out


@pytest.mark.parametrize("config, message", [('{"classes": ["angry",', "is damaged or unreadable"),
                                             ("[1, 2]", "is damaged: it holds no run's settings"),
                                             ('{"classes": ["angry", "happy"]}', "lacks the model's classes or image_size")])
def test_a_damaged_config_json_is_named_not_a_traceback(tiny_run, tmp_path, capsys, config, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.onnx").unlink()  # an export carries its own classes and size: info then reads config.json
    (run / "config.json").write_text(config)
    for command in (["info", "--model", str(run)], ["export", str(run), "--output", str(tmp_path / "m.onnx")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and str(run / "config.json") in err and "Traceback" not in err


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


def test_an_onnx_in_another_runs_folder_is_not_described_by_that_run(tiny_run, tmp_path, capsys):
    """info read the folder's metrics.json and history.csv for any .onnx placed in it; and export
    could write a model.onnx into another run, which then stood for that run's network."""
    import shutil

    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(tiny_run, run)
    shutil.copytree(tiny_run, other)
    from ferkit.models import onnx_graph

    model = onnx_graph.load(tiny_run / "model.onnx")  # without the scores its run recorded in it
    onnx_graph.save(onnx_graph.with_config(model, onnx_graph.read_config(model)), other / "stranger.onnx")
    assert main(["info", "--model", str(other / "stranger.onnx"), "--json"]) == 0
    stranger = json.loads(capsys.readouterr().out)
    assert (stranger["metrics"], stranger["epochs_trained"], stranger["training"]) == ({}, None, {})
    assert main(["info", "--model", str(other / "model.onnx"), "--json"]) == 0
    own = json.loads(capsys.readouterr().out)  # the run's own export is still the run's
    assert "macro_f1" in own["metrics"] and own["epochs_trained"] == 2
    assert main(["export", str(run), "--output", str(other / "model.onnx")]) == 2
    assert f"{other} is another run's directory" in capsys.readouterr().err
    assert main(["export", str(run), "--output", str(run / "again.onnx")]) == 0  # its own folder: fine
    shutil.copy(run / "model.keras", run / "older.keras")  # another network in the run's own folder
    assert main(["export", str(run / "older.keras"), "--output", str(run / "model.onnx")]) == 2
    assert f"{run} is the folder of a run whose model older.keras is not" in capsys.readouterr().err
    assert main(["export", str(run / "model.keras"), "--output", str(run / "model.onnx")]) == 0
    # A name no run reads for its model: only a run's model.onnx and model-int8.onnx stand for it
    assert main(["export", str(run), "--output", str(other / "from-run.onnx")]) == 0


def test_int8_calibration_on_few_faces_says_so(tiny_run, tmp_path, caplog):
    """Each activation's 8-bit range comes from the calibration faces: one face had quantized silently."""
    images, labels = synthetic_faces(("sad",), 3)
    few = write_folder(tmp_path / "few", images, labels, split=None)
    caplog.set_level("WARNING", logger="ferkit")
    assert main(["export", str(tiny_run), "--quantize", "int8", "--calibration", str(few), "--output",
                 str(tmp_path / "m.onnx")]) == 0
    assert "int8 calibration on only 3 faces" in caplog.text
    caplog.clear()
    assert main(["export", str(tiny_run), "--quantize", "int8", "--output", str(tmp_path / "n.onnx")]) == 0
    assert "int8 calibration on only" not in caplog.text  # the run's own 160 training faces


@pytest.mark.parametrize("csv_written, said", [(True, "(the CSV has them all)"), (False, "(--csv writes them all)")])
def test_the_video_summary_names_the_csv_only_where_one_was_written(csv_written, said, capsys):
    """"the CSV has them all" had been printed with no --csv given."""
    from ferkit.cli.video import _print_tracks

    tracks = [{"track": k, "frames": 10 - k, "of_frames": 10, "labels": {"happy": 1.0}} for k in range(6)]
    _print_tracks(tracks, csv_written)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and out[0] == "  face #0: in 10 of 10 frames analysed; happy 100%"
    assert out[-1] == f"  and 2 more faces {said}"


def test_tensorflow_retracing_notes_are_not_shown_other_warnings_are(caplog, capsys):
    """compare's recipes, each a new model, drew TensorFlow's "triggered tf.function retracing" at the user."""
    import logging

    assert main(["train", "--list-recipes"]) == 0
    logging.getLogger("tensorflow").warning("5 out of the last 10 calls to <function f at 0x1> triggered "
                                            "tf.function retracing. Tracing is expensive")
    logging.getLogger("tensorflow").warning("a warning worth seeing")
    assert "retracing" not in caplog.text and "a warning worth seeing" in caplog.text


@pytest.mark.parametrize("command", ["train", "compare"])
def test_quiet_hides_keras_epoch_lines_too(command, monkeypatch, tmp_path):
    """-q is "only warnings and errors", and Keras' "25/25 - 5s - ... val_accuracy" lines are neither."""
    import ferkit.training
    import ferkit.training.compare

    asked = []

    def record(*args, verbose=None, **kwargs):
        asked.append(verbose)
        raise KeyboardInterrupt  # nothing more of the run is needed

    monkeypatch.setattr(ferkit.training, "train", record)
    monkeypatch.setattr(ferkit.training.compare, "compare", record)
    flags = ["--recipes", "seed-custom"] if command == "compare" else []
    for quiet in ([], ["-q"]):
        assert main([command, str(tmp_path), *flags, *quiet]) == 130  # the exit of a Ctrl-C
    assert asked == [None, 0]


def test_info_wraps_the_recipe_and_says_how_long_training_took(tiny_run, capsys):
    """The bundled model's recipe had been one line of 555 characters; no run said its training time."""
    import re

    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("recipe      weighted mean of 2 models"))
    wrapped = [lines[start], *(line for line in lines[start + 1:] if line.startswith(" " * 12))]
    assert len(wrapped) > 3 and all(len(line) <= 100 for line in wrapped)
    assert main(["info", "--model", str(tiny_run)]) == 0
    assert re.search(r"trained     recipe seed-custom, .* in \d+\.\d min\n", capsys.readouterr().out)
