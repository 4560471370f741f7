"""Training configuration: recipes, their bases, overrides, and every bad value a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferkit.errors import FerkitError
from ferkit.training import TrainConfig, list_recipes, load_recipe

def test_recipes_ship_and_resolve():
    assert {"default", "seed-custom", "seed-vgg19", "seed-mobilenetv2"} <= set(list_recipes())
    for name in list_recipes():
        config = TrainConfig.from_recipe(name)
        assert config.recipe == name and config.description
    seed = TrainConfig.from_recipe("seed-vgg19", epochs=3)
    assert seed.epochs == 3 and "disgust" not in seed.classes and seed.split == "random"
    assert load_recipe("seed-custom")["learning_rate"] == 0.001


def test_the_shipped_recipes_drop_repeats_and_a_run_from_before_rebuilds_its_split():
    """A config.json without the field (every run before session 53) holds out as it was trained:
    its resume's check of the faces and `evaluate --split val` rebuild the split it had."""
    assert all(TrainConfig.from_recipe(name).drop_repeats for name in list_recipes())
    before = {k: v for k, v in TrainConfig.from_recipe("default").to_dict().items() if k != "drop_repeats"}
    assert not TrainConfig.from_dict(before).drop_repeats
    assert not TrainConfig().drop_repeats
    with pytest.raises(FerkitError, match="drop_repeats must be true or false, got 'yes'"):
        TrainConfig.from_recipe("default", drop_repeats="yes")


@pytest.mark.parametrize("overrides, message", [
    ({"recipe": "nope"}, "unknown recipe"),
    ({"recipe": "../recipes/seed-custom"}, "unknown recipe"),  # a path without .toml: its run went to ./recipes
    ({"recipe": "./default"}, "unknown recipe"),
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"train_fraction": 0}, "train_fraction is the share of the training faces trained on, above 0 and at most 1, "
                            "got 0.0"),
    ({"train_fraction": 1.5}, "train_fraction is the share of the training faces trained on, .* got 1.5"),
    ({"train_fraction": float("nan")}, "train_fraction must be a finite number, got nan"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"image_size": 0}, "image_size must be a positive integer, got 0"),
    ({"image_size": 24}, "model fernet needs image_size >= 32, got 24"),
    ({"learning_rate": 0}, "learning_rate must be positive, got 0"),
    ({"learning_rate": -0.01}, "learning_rate must be positive, got -0.01"),
    ({"class_weight": "heavy"}, "class_weight must be one of none, balanced, sqrt, got 'heavy'"),
    ({"split": "rnadom"}, "split must be one of random, official"),
    ({"checkpoint_on": "accuracy"}, "checkpoint_on must be one of val_loss, val_accuracy, got 'accuracy'"),
    ({"mixed_precision": "bf16"}, "mixed_precision must be one of auto, on, off"),
    ({"mixed_precision": 1}, "mixed_precision must be a string"),
    ({"teacher": "default", "teacher_weight": 0}, r"teacher_weight must be in \(0, 1\], got 0"),
    ({"teacher": "default", "teacher_weight": 1.5}, r"teacher_weight must be in \(0, 1\], got 1.5"),
    ({"colour": "blue"}, "unknown configuration"),
    ({"learning_rate": "0.01"}, "learning_rate must be a number"),
    ({"epochs": "ten"}, "epochs must be a whole number"),
    ({"epochs": 2.5}, "epochs must be a whole number"),
    ({"augment": "yes"}, "augment must be true or false"),
    ({"early_stopping": -1}, "early_stopping must be >= 0"),
    ({"warmup_epochs": -3}, "warmup_epochs must be >= 0, got -3"),
    ({"weight_decay": -0.1}, "weight_decay must be >= 0, got -0.1"),
    ({"label_smoothing": 1.5}, "label_smoothing must be 0 to 0.99"),
    ({"erasing": -1}, "erasing must be 0 to 1, got -1"),
    ({"fractions": (0.9, 0.0, 0.1), "split": "random"}, "three positive numbers"),
    ({"fractions": (0.9, 0.0, 0.1), "split": "official"}, "a val share between 0 and 1"),
    ({"fractions": (0.0, 1.0, 0.0), "split": "official"}, "a val share between 0 and 1"),
    ({"fractions": (0.5, 0.5)}, "fractions must be three numbers"),
    ({"fractions": 0.8}, "fractions must be three numbers"),
    ({"fractions": ["a", "b", "c"]}, "fractions must be three numbers"),
    ({"model_options": 3}, "model_options must be a table of options"),
    ({"fallback_model_options": [0, 1, 1, 1]}, "fallback_model_options must be a table of options"),
    ({"fallback_image_size": -8}, "fallback_image_size must be >= 0"),
    ({"fallback_below": -1}, "fallback_below must be >= 0, got -1"),
    ({"fallback_below": 1.5}, "fallback_below must be a whole number"),
    ({"fallback_image_size": 24}, "model fernet needs fallback_image_size >= 32, got 24"),
    ({"fallback_image_size": 64}, r"fallback_image_size \(64\) is larger than image_size \(48\)"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"time_limit": float("inf")}, "time_limit must be a finite number"),
    ({"weight_decay": float("nan")}, "weight_decay must be a finite number"),
    ({"classes": [1, 2]}, "classes must be names"),
    ({"seed": -1}, "seed must be 0 to 4294967295"),  # was NumPy's traceback, after the data had loaded
    ({"seed": 2**32}, "seed must be 0 to 4294967295"),
    ({"image_size": 100000}, r"image_size must be at most 1024 px a side \(FER2013's faces are 48\), got 100000"),
    ({"fallback_image_size": 2000}, "^fallback_image_size must be at most 1024"),  # was an OOM traceback
])
def test_bad_configuration(overrides, message):
    with pytest.raises(FerkitError, match=message):
        TrainConfig.from_recipe(overrides.pop("recipe", "default"), **overrides)


@pytest.mark.parametrize("text, message", [
    ("base = 1\n", "base must be a recipe name or a .toml path"),
    ('base = ""\n', "base must be a recipe name or a .toml path, got ''"),  # had trained the bare defaults
    ('recipe = "../../elsewhere"\n', r"'recipe' is not a field \(a recipe is named by its file, 'mine'\)"),
    (b"description = '\xff\xfe'\n", "not a UTF-8 text file"),
])
def test_a_malformed_recipe_file_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(FerkitError, match=message):
        TrainConfig.from_recipe(str(path))


@pytest.mark.parametrize("overrides, fewest", [
    ({}, 14),  # the default's 40 epochs at most, its own network where 14 fit
    ({"epochs": 10}, 6),  # a flag's fewer epochs: 60% of them, as before the recipe named 14
    ({"epochs": 22}, 22 * 0.6),  # as the default was until session 50
    ({"recipe": "seed-custom", "epochs": 22}, 22 * 0.6),  # no number named: 60% of the epochs
    ({"recipe": "seed-custom", "epochs": 22, "fallback_below": 5}, 5),
])
def test_the_fallback_trains_below_the_recipes_number_of_epochs_or_60_percent_of_them_if_fewer(overrides, fewest):
    config = TrainConfig.from_recipe(overrides.pop("recipe", "default"), **overrides)
    assert config.fallback_epochs == pytest.approx(fewest)


def test_a_recipe_file_may_be_a_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "seed-custom"\nepochs = 3\n')
    config = TrainConfig.from_recipe(path)
    assert (config.recipe, config.epochs, config.model) == ("mine", 3, "custom")


def test_numpy_numbers_are_numbers():
    config = TrainConfig.from_recipe("default", epochs=np.int64(3), learning_rate=np.float32(0.01))
    assert config.epochs == 3 and config.learning_rate == pytest.approx(0.01)
    assert json.loads(json.dumps(config.to_dict()))["epochs"] == 3  # written to config.json as is
    with pytest.raises(FerkitError, match="augment must be true or false"):
        TrainConfig.from_recipe("default", augment=np.int64(1))


def test_paths_may_name_a_teacher_or_weights(tmp_path):
    config = TrainConfig.from_recipe("default", teacher=tmp_path / "run", weights=tmp_path / "w.h5")
    assert (config.teacher, config.weights) == (str(tmp_path / "run"), str(tmp_path / "w.h5"))


def test_user_recipe_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "custom"\nepochs = 2\n')
    assert TrainConfig.from_recipe(str(path)).recipe == "mine"
    path.write_text("model = [")
    with pytest.raises(FerkitError, match="TOML"):
        TrainConfig.from_recipe(str(path))


def test_the_description_says_what_a_run_or_a_derived_recipe_changed(tmp_path):
    stock = TrainConfig.from_recipe("seed-custom").description
    assert TrainConfig.from_recipe("seed-custom", epochs=None, seed=0).description == stock  # nothing changed
    assert TrainConfig.from_recipe("seed-custom", epochs=3, seed=0).description == \
        stock.rstrip(".") + ". Changed for this run: epochs = 3."
    (tmp_path / "mine.toml").write_text('base = "seed-custom"\naugment = true\n')
    assert TrainConfig.from_recipe(str(tmp_path / "mine.toml")).description == \
        f"seed-custom: {stock.rstrip('.')}. Changed here: augment = True."
    (tmp_path / "told.toml").write_text('base = "seed-custom"\ndescription = "mine"\naugment = true\n')
    assert TrainConfig.from_recipe(str(tmp_path / "told.toml")).description == "mine"
    # the values as the run has them, and the fallback a change dropped (the words still describe it)
    assert TrainConfig.from_recipe("seed-custom", classes="happy,sad,angry").description.endswith(
        "Changed for this run: classes = ('angry', 'happy', 'sad').")
    assert TrainConfig.from_recipe("default", model="custom").description.endswith(
        "Changed for this run: model = 'custom', model_options = {}, fallback_model_options = {}, "
        "fallback_image_size = 0.")


def test_recipe_with_a_base_changes_only_its_own_fields(tmp_path):
    (tmp_path / "seed-custom+augment.toml").write_text('base = "seed-custom"\ndescription = "x"\naugment = true\n')
    (tmp_path / "two.toml").write_text('base = "seed-custom+augment.toml"\nlabel_smoothing = 0.1\n')
    config = TrainConfig.from_recipe(str(tmp_path / "two.toml"))
    seed = TrainConfig.from_recipe("seed-custom")
    assert config.recipe == "two" and config.augment and config.label_smoothing == 0.1
    assert (config.model, config.classes, config.learning_rate) == (seed.model, seed.classes, seed.learning_rate)
    (tmp_path / "loop.toml").write_text('base = "loop.toml"\n')
    with pytest.raises(FerkitError, match=r"^recipe \S*loop.toml is its own base: "):  # said once, not wrapped
        TrainConfig.from_recipe(str(tmp_path / "loop.toml"))
    (tmp_path / "orphan.toml").write_text('base = "nope"\n')
    with pytest.raises(FerkitError, match="unknown recipe 'nope'"):
        TrainConfig.from_recipe(str(tmp_path / "orphan.toml"))


def test_a_recipe_named_the_other_way_says_which_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FerkitError, match=r"recipe file not found: default.toml \(the shipped one is --recipe default\)"):
        TrainConfig.from_recipe("default.toml")
    (tmp_path / "mine.toml").write_text('base = "default"\nepochs = 3\n')
    with pytest.raises(FerkitError, match=r"unknown recipe 'mine' \(the file mine.toml\? name it with its .toml\)"):
        TrainConfig.from_recipe("mine")


def test_every_benchmark_recipe_loads_and_says_truly_whether_it_falls_back():
    """The recipes the benchmark READMEs train from: a change to how recipes merge (session 41's)
    gave `default-own-14-epochs`, described as without a fallback, the default's fallback again."""
    from pathlib import Path

    from ferkit.training.config import TrainConfig

    files = sorted((Path(__file__).parents[1] / "benchmarks").glob("*/*.toml"))
    assert len(files) > 30
    for path in files:
        config = TrainConfig.from_recipe(str(path))
        if "no fallback" in config.description or "fallback the network itself" in config.description:
            assert not config.has_fallback, path.name


@pytest.mark.parametrize("model", ["custom", "mobilenetv2"])
def test_another_architecture_drops_the_recipes_model_options(model):
    """`ferkit train DATA --model custom` failed: "model 'custom' has no option 'blocks'"."""
    config = TrainConfig.from_recipe("default", model=model)
    assert config.model_options == {} and config.fallback_model_options == {}
    kept = TrainConfig.from_recipe("default", model="fernet", model_options={"blocks": [1, 1, 1, 1]})
    assert kept.model_options == {"blocks": [1, 1, 1, 1]}
    assert TrainConfig.from_recipe("default", model="fernet").model_options == {"blocks": [0, 1, 2, 2]}  # restated


def test_weights_names_are_read_in_any_case():
    """--weights None or IMAGENET had passed the checks that lower-case them and then been looked
    for as a file: "weights file not found"."""
    assert TrainConfig.from_recipe("seed-vgg19", weights="IMAGENET").weights == "imagenet"
    config = TrainConfig.from_recipe("default", weights="None")
    assert config.weights == "none" and config.has_fallback


def test_starting_from_a_weights_file_drops_the_recipes_fallback():
    """The file fits the default's own network alone: on a CPU slow enough for the fallback, the run
    failed to load it into the lighter one after minutes of data loading and the teacher's pass."""
    assert not TrainConfig.from_recipe("default", weights="runs/earlier/model.keras").has_fallback
    assert TrainConfig.from_recipe("default", weights="none").has_fallback  # the recipe's own value restated


def test_a_recipe_that_is_its_own_base_by_another_path_is_a_clear_error(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.toml").write_text('base = "../d/a.toml"\n')  # was OSError: File name too long
    with pytest.raises(FerkitError, match="is its own base"):
        TrainConfig.from_recipe(str(tmp_path / "d" / "a.toml"))


def test_a_derived_recipe_of_another_architecture_takes_its_own_options_alone(tmp_path):
    (tmp_path / "c.toml").write_text('base = "default"\nmodel = "custom"\n[model_options]\ndropout = 0.3\n')
    config = TrainConfig.from_recipe(str(tmp_path / "c.toml"))  # had fernet's blocks too, and failed to build
    assert config.model == "custom" and config.model_options == {"dropout": 0.3}


@pytest.mark.parametrize("recipe, overrides, unread", [
    ("seed-custom", {"warmup_epochs": 3}, ["warmup_epochs = 3 is not used: the constant schedule has no warm-up"]),
    ("default", {"teacher": "none", "teacher_weight": 0.3, "teacher_flip": True},
     ["teacher_weight = 0.3 is not used: there is no teacher", "teacher_flip = True is not used: there is no teacher"]),
    ("seed-custom", {"teacher_weight": 0.3}, ["teacher_weight = 0.3 is not used: there is no teacher"]),
    ("seed-custom", {"warmup_epochs": 3, "schedule": "cosine"}, []),  # each read where it is
    ("seed-custom", {"warmup_epochs": 0, "teacher_flip": False}, []),  # nothing to use
    ("default", {"teacher_weight": 0.3, "teacher_flip": True}, []),
])
def test_a_given_field_the_run_never_reads_is_said(recipe, overrides, unread, caplog):
    """Quietly ignored, a flag reads as tried: `--warmup-epochs 5` with a constant rate trained as without it."""
    from ferkit.training import trainer

    with caplog.at_level("WARNING", logger="ferkit"):
        trainer._resolve("data.zip", None, None, None, {"recipe": recipe, **overrides})
        assert len(caplog.records) == len(unread)  # as a config changed by the same fields (the Python API):
        trainer._resolve("data.zip", TrainConfig.from_recipe(recipe), None, None, overrides)
    said = [record.getMessage() for record in caplog.records][:len(unread)]
    assert [record.getMessage() for record in caplog.records][len(unread):] == said
    assert len(said) == len(unread)
    for message, words in zip(said, unread):
        assert message.startswith(f"{recipe}: {words}")


def test_fractions_are_taken_as_text_too_as_classes_are():
    """TrainConfig took classes="angry,happy" as the CLI does, but refused fractions="0.6,0.2,0.2"."""
    assert TrainConfig.from_recipe("seed-custom", fractions="0.6, 0.2,0.2").fractions == (0.6, 0.2, 0.2)
    with pytest.raises(FerkitError, match="fractions must be three numbers"):
        TrainConfig.from_recipe("seed-custom", fractions="0.6;0.2;0.2")


def test_a_recipe_files_mistakes_name_the_file_and_the_line(tmp_path):
    """"unknown configuration field(s): learing_rate" and "unknown recipe 'seed_custom'" named neither
    the file nor, for the second, that it was the base line."""
    (tmp_path / "typo.toml").write_text('base = "seed-custom"\nlearing_rate = 0.01\n')
    with pytest.raises(FerkitError, match=r"^recipe .*typo.toml: unknown configuration field\(s\): learing_rate "
                                          r"\(did you mean learning_rate\?\)$"):
        TrainConfig.from_recipe(str(tmp_path / "typo.toml"))
    (tmp_path / "base.toml").write_text('base = "seed_custom"\n')
    with pytest.raises(FerkitError, match=r"^recipe .*base.toml, base = 'seed_custom': unknown recipe 'seed_custom'"):
        TrainConfig.from_recipe(str(tmp_path / "base.toml"))
    with pytest.raises(FerkitError, match=r"^unknown configuration field\(s\): epoch \(did you mean epochs\?\)$"):
        TrainConfig.from_recipe("seed-custom", epoch=3)  # a keyword of the Python API: no file to name
    (tmp_path / "child.toml").write_text('base = "typo.toml"\nepochs = 3\n')  # the base's typo: the base named
    with pytest.raises(FerkitError, match=r"^recipe .*child.toml, base = 'typo.toml': recipe .*typo.toml: unknown "
                                          r"configuration field\(s\): learing_rate"):
        TrainConfig.from_recipe(str(tmp_path / "child.toml"))
