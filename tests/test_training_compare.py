"""`ferkit compare`: several recipes on one split, side by side."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import ctrl_c_after, ctrl_c_once_trained, synthetic_faces, write_folder
from ferkit.errors import FerkitError

CLASSES = "angry,happy,sad,surprise"


def test_compare_writes_table_and_curves(synthetic_folder, tmp_path):
    from ferkit.training.compare import compare

    ablation = tmp_path / "default-noaug.toml"  # a recipe file is named by its stem
    ablation.write_text('base = "default"\naugment = false\n')
    rows = compare(synthetic_folder, ["seed-custom", str(ablation)], tmp_path / "cmp", epochs=1,
                   classes=CLASSES, split="official", verbose=0)
    assert [r["recipe"] for r in rows] == ["seed-custom", "default-noaug"]
    table = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert table.startswith("Test split: official, 60 test faces, classes angry, happy, sad, surprise, seed 0; faces "
                            "drawn at random to hold out that repeat a training face left out. unseen: ")
    assert "| epochs (kept) |" in table and "| F1 angry |" in table and "| 1 (1) |" in table
    assert "| seed-custom | custom |" in table and "| default-noaug | fernet |" in table
    assert [r["epochs"] for r in rows] == [1, 1]
    assert "f1_angry" in (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0]
    assert (tmp_path / "cmp" / "val_curves.png").stat().st_size > 10_000
    for name in ("seed-custom", "default-noaug"):  # both tested on the same faces
        metrics = json.loads((tmp_path / "cmp" / name / "metrics.json").read_text())
        assert metrics["split_sizes"]["test"] == 60 and metrics["classes"] == CLASSES.split(",")


@pytest.mark.parametrize("recipes, files, message", [
    (["seed-custom", "default", "sedd-vgg19"], {}, "unknown recipe 'sedd-vgg19'"),
    (["default", "seed-custom", "default"], {}, "recipe default is given 2 times: give each once"),
    (["a/x.toml", "b/x.toml"], {"a/x.toml": 'base = "default"\n', "b/x.toml": 'base = "seed-custom"\n'},
     r"recipes a/x.toml and b/x.toml have the same name, x: their runs would share .*cmp/x; rename"),
    ([], {}, "no recipes to compare"),
    (["seed-custom", "deep.toml"], {"deep.toml": 'base = "default"\n[model_options]\nblokcs = [1, 1, 1, 1]\n'},
     "has no option 'blokcs'"),
    (["seed-custom", "cropped.toml"], {"cropped.toml": 'base = "default"\n[model_options]\ncrop = 30\n'},
     "crop is the whole number of pixels"),  # a value only the builder knows is wrong
    (["seed-custom", "gated.toml"], {"gated.toml": 'base = "default"\n[fallback_model_options]\nse_ratio = 2\n'},
     r"fallback network \(\[fallback_model_options\].*se_ratio is the squeeze"),  # trains only on a slow machine
    (["seed-custom", "taught.toml"], {"taught.toml": 'base = "default"\nteacher = "no/such/run"\n'}, "model not found"),
    (["seed-custom", "tuned.toml"], {"tuned.toml": 'base = "seed-vgg19"\nweights = "no/such.h5"\n'},
     "weights file not found"),
])
def test_compare_checks_every_recipe_before_training_any(synthetic_folder, tmp_path, monkeypatch, recipes, files,
                                                         message):
    from ferkit.training.compare import compare

    monkeypatch.chdir(tmp_path)  # the recipe files' paths are relative
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(FerkitError, match=message):
        compare(synthetic_folder, recipes, tmp_path / "cmp", epochs=1, classes=CLASSES)
    assert not (tmp_path / "cmp").exists()


def test_compare_checks_a_teachers_classes_before_training_any(synthetic_folder, tiny_run, tmp_path, monkeypatch):
    """tiny_run knows angry, happy, sad and surprise: it cannot teach fear."""
    from ferkit.training import compare as module

    (tmp_path / "taught.toml").write_text(f'base = "seed-custom"\nteacher = "{tiny_run}"\n')
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match="does not know fear"):
        module.compare(synthetic_folder, ["seed-custom", str(tmp_path / "taught.toml")], tmp_path / "cmp",
                       epochs=1, classes="angry,fear,happy")


def test_compare_warns_once_per_recipe_of_a_field_it_never_reads(synthetic_folder, tmp_path, monkeypatch, caplog):
    """The first recipe's configuration was made twice (once for the shared protocol): two warnings."""
    from ferkit.training import compare as module

    class Trained(Exception):
        pass

    monkeypatch.setattr(module, "train", lambda *args, **kwargs: (_ for _ in ()).throw(Trained()))
    with caplog.at_level("WARNING", logger="ferkit"), pytest.raises(Trained):
        module.compare(synthetic_folder, ["seed-custom", "default"], tmp_path / "cmp", epochs=1, classes=CLASSES,
                       warmup_epochs=3)
    said = [record.getMessage() for record in caplog.records if "is not used" in record.getMessage()]
    assert said == ["seed-custom: warmup_epochs = 3 is not used: the constant schedule has no warm-up "
                    "(--schedule cosine has)"]  # the default's cosine schedule reads it


def test_compare_refuses_an_empty_output_name(synthetic_folder, tmp_path, monkeypatch):
    """"" had been read as no --output: the comparison went to runs/ unasked."""
    from ferkit.training import compare as module

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match="the output folder's name is empty: give a folder, or none for "
                                          "runs/compare-<timestamp>"):
        module.compare(synthetic_folder, ["seed-custom"], "", epochs=1, classes=CLASSES)
    assert not (tmp_path / "runs").exists()


def test_compare_refuses_a_later_recipes_folder_of_user_files_before_training_any(synthetic_folder, tmp_path,
                                                                                  monkeypatch):
    from ferkit.training import compare as module

    (tmp_path / "cmp" / "default").mkdir(parents=True)
    (tmp_path / "cmp" / "default" / "metrics.json").write_text("the user's")
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match="already holds metrics.json, which the run would replace"):
        module.compare(synthetic_folder, ["seed-custom", "default"], tmp_path / "cmp", epochs=1, classes=CLASSES)


def test_compare_refuses_a_folder_holding_one_of_its_runs_before_training_any(synthetic_folder, tmp_path,
                                                                              monkeypatch):
    from ferkit.training import compare as module

    (tmp_path / "cmp" / "default" / "checkpoints").mkdir(parents=True)  # a comparison cut short before
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match="cmp/default already holds a run: give compare another --output"):
        module.compare(synthetic_folder, ["seed-custom", "default"], tmp_path / "cmp", epochs=1, classes=CLASSES)


@pytest.mark.parametrize("table", ["compare.md", "compare.csv", "val_curves.png"])
def test_compare_refuses_a_folder_holding_an_earlier_comparison_before_training_any(synthetic_folder, tmp_path,
                                                                                    monkeypatch, table):
    """Its table would hold the new recipes alone: the earlier recipes' rows would be lost."""
    from ferkit.training import compare as module

    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / table).write_text("an earlier comparison's")
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match=f"cmp already holds a comparison \\({table}\\): give compare another"):
        module.compare(synthetic_folder, ["seed-custom"], tmp_path / "cmp", epochs=1, classes=CLASSES)
    assert (tmp_path / "cmp" / table).read_text() == "an earlier comparison's"


def test_compare_stops_at_ctrl_c_and_tabulates_what_it_has(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.cli import main
    from ferkit.training import compare as module

    real = module.train
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: real(*args, callbacks=[ctrl_c_after(0)], **kwargs))
    assert main(["compare", str(synthetic_folder), "--recipes", "seed-custom,default", "--epochs", "2",
                 "--classes", CLASSES, "--split", "official", "--output", str(tmp_path / "cmp")]) == 130
    assert not (tmp_path / "cmp" / "default").exists()  # one Ctrl-C stops the comparison
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| seed-custom (interrupted) | custom |" in table
    with open(tmp_path / "cmp" / "compare.csv", encoding="utf-8") as handle:  # one epoch of two trained
        assert [(r["recipe"], r["interrupted"], r["epochs"]) for r in csv.DictReader(handle)] == [
            ("seed-custom", "True", "1")]


@pytest.mark.parametrize("flag, given", [([], {}), (["--drop-repeats", "off"], {"drop_repeats": False}),
                                         (["--drop-repeats", "on"], {"drop_repeats": True}),
                                         # the Python compare() took these; the CLI had no flag for them
                                         (["--seed", "3", "--fractions", "0.7,0.2,0.1"],
                                          {"seed": 3, "fractions": (0.7, 0.2, 0.1)}),
                                         (["--batch-size", "32", "--time-limit", "0"],
                                          {"batch_size": 32, "time_limit": 0.0}),
                                         (["--train-fraction", "0.1"], {"train_fraction": 0.1})])
def test_compare_passes_the_shared_overrides_only_when_given(synthetic_folder, monkeypatch, capsys, flag, given):
    """The sections of benchmarks/ablations/README.md before session 53 validated with repeats:
    `--drop-repeats off` compares as they did."""
    from ferkit.cli import main
    from ferkit.training import compare as module

    seen = {}

    def fake(data, recipes, output, verbose=None, **overrides):  # verbose: -q's, no recipe field
        seen.update(overrides)
        return [{"recipe": "seed-custom", "accuracy": 0.5, "macro_f1": 0.5, "train_min": 1.0, "interrupted": False}]

    monkeypatch.setattr(module, "compare", fake)
    assert main(["compare", str(synthetic_folder), "--recipes", "seed-custom", "--epochs", "1", *flag]) == 0
    assert seen == {"epochs": 1, **given}


@pytest.mark.parametrize("stop, code", [(KeyboardInterrupt, 130), (FerkitError("out of disk space"), 2)])
def test_compare_tabulates_the_finished_recipes_when_the_next_stops_outside_an_epoch(synthetic_folder, tmp_path,
                                                                                    monkeypatch, stop, code):
    """Ctrl-C while the second recipe loads its data (or a teacher's pass runs): outside `fit`; or
    an error in it."""
    from ferkit.cli import main
    from ferkit.training import compare as module

    real, calls = module.train, []

    def second_stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise stop
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train", second_stopped)
    assert main(["compare", str(synthetic_folder), "--recipes", "seed-custom,default", "--epochs", "1",
                 "--classes", CLASSES, "--split", "official", "--output", str(tmp_path / "cmp")]) == code
    with open(tmp_path / "cmp" / "compare.csv", encoding="utf-8") as handle:
        assert [(r["recipe"], r["interrupted"]) for r in csv.DictReader(handle)] == [("seed-custom", "False")]
    assert (tmp_path / "cmp" / "val_curves.png").is_file()


@pytest.mark.parametrize("folder", ["cmp", "lr 50%"])
def test_ctrl_c_after_a_recipe_trained_says_its_run_is_kept(synthetic_folder, tmp_path, monkeypatch, caplog, folder):
    """Ctrl-C while its row was measured had said the recipe was stopped before it trained an epoch;
    and the folder's name had gone into the log's format string: a '%' lost the warning to a traceback."""
    from ferkit.training import compare as module

    def measured(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "_row", measured)
    with pytest.raises(KeyboardInterrupt):
        module.compare(synthetic_folder, ["seed-custom"], output=tmp_path / folder, epochs=1, classes=CLASSES,
                       split="official", verbose=0)
    assert f"interrupted while seed-custom's row was measured (its run is in {tmp_path / folder / 'seed-custom'})" \
        in caplog.text and "before seed-custom trained an epoch" not in caplog.text
    assert (tmp_path / folder / "seed-custom" / "model.keras").is_file()


def test_compare_notes_a_default_distilled_on_a_random_split():
    from ferkit.training.compare import _check

    configs, notes = _check(["seed-custom", "default"], {}, Path("cmp"))  # seed-custom's random split for both
    assert [(c.recipe, c.split) for c in configs] == [("seed-custom", "random"), ("default", "random")]
    assert len(notes) == 1 and notes[0].startswith("default: distilled from the bundled model")
    assert _check(["seed-custom", "default"], {"split": "official"}, Path("cmp"))[1] == []


def test_compare_gives_weights_only_to_recipes_that_start_from_pretrained_ones(monkeypatch):
    from ferkit.training import compare
    from ferkit.training.compare import _check

    monkeypatch.setattr(compare, "build_model", lambda *args, **kwargs: None)  # no ImageNet download here
    for weights in ("imagenet", "none"):  # custom and fernet have no ImageNet weights to take
        configs, _ = _check(["seed-custom", "seed-vgg19", "default"], {"weights": weights}, Path("cmp"))
        assert [c.weights for c in configs] == ["none", weights, "none"]


def test_compare_says_which_recipe_trained_its_fallback(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.training import budget
    from ferkit.training.compare import compare

    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1000.0)  # its own network: too slow
    (tmp_path / "slow.toml").write_text('base = "seed-custom"\ntime_limit = 30\nfallback_image_size = 32\n'
                                        '[fallback_model_options]\nfilters = [8, 16]\n')
    rows = compare(synthetic_folder, ["seed-custom", str(tmp_path / "slow.toml")], tmp_path / "cmp", epochs=1,
                   classes=CLASSES, verbose=0)
    assert [row["fallback"] for row in rows] == ["", '{"filters": [8, 16]} on 32-px faces']  # seed-custom: no limit
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| seed-custom | custom |" in table and "| slow | custom (fallback) |" in table
    assert 'slow: trained its lighter fallback network {"filters": [8, 16]} on 32-px faces' in table


def test_a_class_without_test_faces_has_no_f1_in_the_table(tmp_path):
    from ferkit.training.compare import write_table
    from ferkit.training.config import TrainConfig

    row = {"recipe": "r", "model": "custom", "fallback": None, "interrupted": False, "params": 10,
           "accuracy": 0.5, "unseen_accuracy": None, "macro_f1": 0.5, "f1_angry": 0.5, "f1_disgust": None,
           "train_min": 1.0, "ms_per_face": 0.1, "epochs": 1}
    write_table(tmp_path, [row], [TrainConfig.from_recipe("seed-custom").to_dict()])
    assert "| 0.5000 | – | 0.5000 | 0.500 | – |" in (tmp_path / "compare.md").read_text(encoding="utf-8")
    with open(tmp_path / "compare.csv", encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["f1_disgust"] == ""


def test_compare_offline_says_before_training_that_imagenet_weights_cannot_be_had(synthetic_folder, tmp_path,
                                                                                 monkeypatch):
    """The download of a later recipe's weights fails before the first recipe trains, in one line."""
    from keras.src.utils import file_utils

    from ferkit.training.compare import compare

    def offline(*args, **kwargs):  # what Keras raises without a network
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(FerkitError, match="could not download the ImageNet weights of VGG19 .*--weights none"):
        compare(synthetic_folder, ["seed-custom", "seed-vgg19"], tmp_path / "cmp", epochs=1, classes=CLASSES)
    assert not (tmp_path / "cmp").exists()


def test_the_finished_recipes_table_is_on_disk_while_the_next_trains(synthetic_folder, tmp_path, monkeypatch):
    """A kill while a later recipe trains (the OOM killer, kill -9, a machine shut down) runs no
    handler: the rows of the recipes before it must already be written, since a rerun into the same
    --output is refused for the runs they left."""
    from ferkit.training import compare as module

    real, seen = module.train, []

    def second_looks(*args, **kwargs):
        if kwargs["output"].name == "default":  # what a kill here would leave on disk
            table = tmp_path / "cmp" / "compare.csv"
            if table.is_file():
                with open(table, encoding="utf-8") as handle:
                    seen.append([(r["recipe"], r["interrupted"]) for r in csv.DictReader(handle)])
            else:
                seen.append(None)
            raise FerkitError("stand-in for the kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train", second_looks)
    with pytest.raises(FerkitError, match="stand-in"):
        module.compare(synthetic_folder, ["seed-custom", "default"], tmp_path / "cmp", epochs=1, classes=CLASSES,
                       split="official", verbose=0)
    assert seen == [[("seed-custom", "False")]]
    assert (tmp_path / "cmp" / "compare.md").is_file() and (tmp_path / "cmp" / "val_curves.png").is_file()


def test_ctrl_c_while_a_trained_recipe_is_saved_does_not_say_it_trained_no_epoch(synthetic_folder, tmp_path,
                                                                                 monkeypatch, caplog):
    """After fit, training's own Ctrl-C handler is gone: Ctrl-C while the model is saved or the test faces
    scored leaves a run with every epoch trained and a backup to resume, not one stopped before an epoch."""
    from ferkit.training import compare as module, trainer

    def saving(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save", saving)
    with pytest.raises(KeyboardInterrupt):
        module.compare(synthetic_folder, ["seed-custom"], output=tmp_path / "cmp", epochs=1, classes=CLASSES,
                       split="official", verbose=0)
    assert "before seed-custom trained an epoch" not in caplog.text
    assert f"interrupted after seed-custom trained, before its run was finished (`ferkit train --resume " \
           f"{tmp_path / 'cmp' / 'seed-custom'}` finishes it)" in caplog.text
    assert (tmp_path / "cmp" / "seed-custom" / "checkpoints" / "backup").is_dir()


def test_ctrl_c_while_a_trained_recipe_is_finished_keeps_it_whole_and_stops_the_comparison(synthetic_folder, tmp_path,
                                                                                          monkeypatch, caplog):
    """A first Ctrl-C (or a deadline's SIGTERM) then waits for the run to be saved: it had been
    absorbed and forgotten, and the comparison went on to train the next recipe."""
    from ferkit.cli import main

    ctrl_c_once_trained(monkeypatch)
    assert main(["compare", str(synthetic_folder), "--recipes", "seed-custom,default", "--epochs", "1",
                 "--classes", CLASSES, "--split", "official", "--output", str(tmp_path / "cmp")]) == 130
    assert (tmp_path / "cmp" / "seed-custom" / "model.keras").is_file()
    assert not (tmp_path / "cmp" / "default").exists()
    assert "interrupted: seed-custom is tabulated as trained to the end; not trained: default" in caplog.text
    assert "| seed-custom | custom |" in (tmp_path / "cmp" / "compare.md").read_text()  # not "(interrupted)"


def test_a_first_recipe_that_fails_on_the_data_leaves_no_empty_comparison_folder(tmp_path, capsys):
    """--split official on a folder of Training faces alone fails in the first recipe's data loading."""
    from ferkit.cli import main

    images, labels = synthetic_faces(tuple(CLASSES.split(",")), 5)
    flat = write_folder(tmp_path / "flat", images, labels, split=None)
    assert main(["compare", str(flat), "--recipes", "seed-custom", "--epochs", "1", "--classes", CLASSES,
                 "--split", "official", "--output", str(tmp_path / "out" / "cmp")]) == 2
    assert "holds 20 Training faces but none held out to test on" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_table_that_cannot_be_written_is_said_so_not_blamed_on_the_recipe(synthetic_folder, tmp_path,
                                                                           monkeypatch, caplog):
    """The table is written after each recipe: a full disk there had been reported as the recipe's failure."""
    from ferkit.training import compare as module

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "_write", full)
    with pytest.raises(OSError, match="No space"):
        module.compare(synthetic_folder, ["seed-custom"], output=tmp_path / "cmp", epochs=1, classes=CLASSES,
                       split="official", verbose=0)
    assert "the table could not be written after seed-custom" in caplog.text
    assert "seed-custom failed" not in caplog.text


def test_compare_takes_its_recipes_as_one_comma_separated_string_too(synthetic_folder, tmp_path):
    """As --recipes takes them: the string had been read one character at a time ("unknown recipe 's'")."""
    from ferkit.training.compare import compare

    with pytest.raises(FerkitError, match="unknown recipe 'nope'"):
        compare(synthetic_folder, "seed-custom, nope", tmp_path / "cmp", verbose=0)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """Runs of seed-custom trained apart, as a student's would be: two seeds tested on the same faces
    (FER2013's own test part), one on a random split and one on three of the classes, tested on others."""
    from ferkit.training import train

    root = tmp_path_factory.mktemp("trained")
    classes = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(classes, 60)
    write_folder(root / "syn", images, labels, "train", "Training")
    images, labels = synthetic_faces(classes, 15, seed=1)
    data = write_folder(root / "syn", images, labels, "test", "PublicTest")
    settings = {"seed0": {"seed": 0}, "seed1": {"seed": 1}, "random": {"split": "random"},
                "three": {"classes": "angry,happy,sad"}}
    return {name: train(data, recipe="seed-custom", epochs=1, verbose=0, output=root / name,
                        **{"classes": CLASSES, "split": "official", **options}).run_dir
            for name, options in settings.items()}


def test_compare_runs_tabulates_runs_already_trained(trained_runs, tmp_path):
    from ferkit.training.compare import compare_runs

    rows = compare_runs(f"{trained_runs['seed0']},{trained_runs['seed1']}", tmp_path / "cmp")
    assert [row["run"] for row in rows] == ["seed0", "seed1"]  # named by their folders
    assert [row["recipe"] for row in rows] == ["seed-custom", "seed-custom"]  # and what trained them
    assert [row["run_dir"] for row in rows] == [str(trained_runs["seed0"]), str(trained_runs["seed1"])]
    for row, name in zip(rows, ("seed0", "seed1")):  # each run's own figures, as it recorded them
        metrics = json.loads((trained_runs[name] / "metrics.json").read_text(encoding="utf-8"))
        assert (row["accuracy"], row["train_min"], row["epochs"]) == (metrics["accuracy"], metrics["train_minutes"], 1)
        assert row["train_faces"] == metrics["split_sizes"]["train"] == 216
        assert row["params"] > 0 and row["ms_per_face"] > 0
    table = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert table.startswith("Test split: official, 60 test faces, classes angry, happy, sad, surprise, seeds 0, 1;")
    assert "| run | recipe | model | params | epochs (kept) | train faces |" in table
    assert "| seed0 | seed-custom | custom |" in table and "| seed1 | seed-custom | custom |" in table
    assert "| 1 (1) | 216 |" in table
    assert "the runs validated on different faces (each seed drew its own from Training)" in table
    assert (tmp_path / "cmp" / "val_curves.png").stat().st_size > 10_000


@pytest.mark.parametrize("other", ["random", "three"])
def test_compare_runs_refuses_runs_tested_on_different_faces(trained_runs, tmp_path, other):
    from ferkit.training.compare import compare_runs

    with pytest.raises(FerkitError, match=r"these runs were tested on different faces, so their scores do not "
                                          r"compare: .*seed0 \(60 test faces of 4 classes, official split\), .*"
                                          + other):
        compare_runs([trained_runs["seed0"], trained_runs[other]], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()


def test_compare_runs_says_which_runs_it_could_not_check(trained_runs, tmp_path, caplog):
    """A run from before runs recorded their test faces is compared by their count, and the table says so."""
    import shutil

    from ferkit.training.compare import compare_runs

    old = tmp_path / "old"
    shutil.copytree(trained_runs["seed1"], old)
    (old / "checkpoints" / "split.json").unlink()
    compare_runs([trained_runs["seed0"], old], tmp_path / "cmp")
    said = f"{old}: from before runs recorded their test faces; as many test faces of the same classes, but not"
    assert said in caplog.text and said in (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")


def test_compare_runs_names_runs_of_one_folder_name_by_their_paths(trained_runs, tmp_path):
    import shutil

    from ferkit.training.compare import compare_runs

    for parent in ("a", "b"):
        shutil.copytree(trained_runs["seed0"], tmp_path / parent / "run")
    rows = compare_runs([str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")], tmp_path / "cmp")
    assert [row["run"] for row in rows] == [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]


def test_compare_runs_refuses_what_is_no_finished_run(trained_runs, tiny_run, tmp_path):
    import shutil

    from ferkit.training.compare import compare_runs

    seed0 = trained_runs["seed0"]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(seed0, unfinished)
    (unfinished / "metrics.json").unlink()
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    (ensemble / "config.json").write_text(json.dumps({"classes": ["angry"], "members": [{}]}), encoding="utf-8")
    cases = {"": "no runs to compare: give --runs RUN,RUN", f"{seed0},{seed0}": "is given twice",
             f"{seed0},{tmp_path / 'nothing'}": "run not found: .*nothing",
             f"{seed0},{seed0 / 'model.keras'}": "model.keras is not a run directory",
             f"{seed0},{tmp_path}": "is not a ferkit run directory \\(no config.json\\)",
             f"{seed0},{unfinished}": "unfinished has no model.keras and test metrics: is it a run directory, and "
                                      "did its training finish",
             f"{seed0},{seed0}/": "is given twice",
             f"{seed0},{ensemble}": "ensemble is an ensemble of runs: compare tabulates training runs"}
    for runs, message in cases.items():
        with pytest.raises(FerkitError, match=message):
            compare_runs(runs, tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.md").write_text("an earlier comparison", encoding="utf-8")
    with pytest.raises(FerkitError, match="cmp already holds a comparison \\(compare.md\\)"):
        compare_runs([seed0], tmp_path / "cmp")


def test_compare_cli_tabulates_runs_and_refuses_training_flags_beside_them(trained_runs, tmp_path, capsys):
    from ferkit.cli import main

    runs = f"{trained_runs['seed0']},{trained_runs['seed1']}"
    assert main(["compare", "--runs", runs, "--output", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["seed0", "seed1"] and " min" in printed[0]
    for extra in (["data"], ["--recipes", "default"], ["--epochs", "3"], ["--seed", "1"]):
        assert main(["compare", *extra, "--runs", runs, "--output", str(tmp_path / "other")]) == 2
        assert "--runs tabulates runs already trained: give it without DATA" in capsys.readouterr().err
    assert main(["compare"]) == 2
    assert "give DATA to train the recipes on, or --runs RUN,RUN" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_compare_runs_refuses_as_many_test_faces_that_are_other_ones(trained_runs, tmp_path):
    """Of the same count and classes (another copy of the data, another seed of a random split): told
    apart by the digest of the test faces that each run recorded."""
    import shutil

    from ferkit.training.compare import compare_runs

    other = tmp_path / "other"
    shutil.copytree(trained_runs["seed1"], other)
    recorded = json.loads((other / "checkpoints" / "split.json").read_text(encoding="utf-8"))
    recorded["parts"]["test"] = "0" * 64
    (other / "checkpoints" / "split.json").write_text(json.dumps(recorded), encoding="utf-8")
    with pytest.raises(FerkitError, match="these runs were tested on different faces"):
        compare_runs([trained_runs["seed0"], other], tmp_path / "cmp")



def test_compare_runs_tells_random_splits_apart_by_their_seeds_without_a_record(trained_runs, tmp_path):
    """Two runs from before the record, of one random split's shares but two seeds: as many test faces
    of the same classes, yet other faces, which their configurations say."""
    import shutil

    from ferkit.training.compare import compare_runs

    runs = []
    for seed in (0, 1):
        run = tmp_path / f"old{seed}"
        shutil.copytree(trained_runs["random"], run)
        (run / "checkpoints" / "split.json").unlink()
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        (run / "config.json").write_text(json.dumps({**config, "seed": seed}), encoding="utf-8")
        runs.append(run)
    with pytest.raises(FerkitError, match=r"old0 \(30 test faces of 4 classes, random split 0.8/0.1/0.1, seed 0\), "
                                          r".*old1 \(30 test faces of 4 classes, random split 0.8/0.1/0.1, seed 1\)"):
        compare_runs(runs, tmp_path / "cmp")



def test_compare_runs_takes_runs_of_older_versions_a_damaged_record_and_a_run_without_history(trained_runs,
                                                                                              tmp_path, caplog):
    """Runs from before drop_repeats, a split.json cut short and a run copied without its history.csv:
    tabulated, each said, not a KeyError or a traceback after compare.csv was written."""
    import shutil

    from ferkit.training.compare import compare_runs

    old, damaged, bare = tmp_path / "old", tmp_path / "damaged", tmp_path / "bare"
    for run in (old, damaged, bare):
        shutil.copytree(trained_runs["seed1"], run)
    config = json.loads((old / "config.json").read_text(encoding="utf-8"))
    del config["drop_repeats"], config["train_fraction"]
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (damaged / "checkpoints" / "split.json").write_text("{cut", encoding="utf-8")
    (bare / "history.csv").unlink()
    rows = compare_runs([trained_runs["seed0"], old, damaged, bare], tmp_path / "cmp")
    assert [row["run"] for row in rows] == ["seed0", "old", "damaged", "bare"]
    table = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "faces drawn at random to hold out" not in table  # not every run dropped them
    assert f"{damaged}: from before runs recorded their test faces" in table
    assert "bare: no history.csv, so no validation curves" in table
    assert (tmp_path / "cmp" / "val_curves.png").is_file()


def test_compare_runs_says_how_to_finish_a_run_cut_short(trained_runs, tmp_path):
    import shutil

    from ferkit.training.compare import compare_runs

    cut = tmp_path / "cut"
    shutil.copytree(trained_runs["seed1"], cut)
    (cut / "model.keras").unlink()
    (cut / "checkpoints" / "backup").mkdir()
    with pytest.raises(FerkitError, match=f"its training was cut short; `ferkit train --resume {cut}` finishes it"):
        compare_runs([trained_runs["seed0"], cut], tmp_path / "cmp")


def test_compare_refuses_empty_recipes_as_an_unset_variable_gives_them(synthetic_folder, tmp_path, capsys):
    from ferkit.cli import main

    assert main(["compare", str(synthetic_folder), "--recipes", "", "--output", str(tmp_path / "cmp")]) == 2
    assert "no recipes to compare" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()
