"""Named training recipes (TOML) shipped here, and users' recipe files: read without Keras, so
that `ferkit train --list-recipes` works in an install without the train extra."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError


class RecipeLoop(FerkitError):
    """A recipe that is, through its bases, its own base: said once, with the whole chain."""


def list_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ferkit.recipes").iterdir()
                  if p.name.endswith(".toml"))


def load_recipe(recipe: str, _seen: tuple[str, ...] = (), *, known: Collection[str] | None = None) -> dict[str, Any]:
    """A shipped recipe by name, or a user's recipe from a .toml path.

    A recipe may name a `base` recipe and change only a few of its fields; that is how one
    technique is switched on or off for an ablation without copying the whole recipe. Given the
    `known` field names, a field no file of the chain should hold is said with the file it is in.
    """
    recipe = os.fspath(recipe)  # a pathlib.Path to a .toml file, from the Python API
    if _identity(recipe) in map(_identity, _seen):  # d/a.toml and d/../d/a.toml are one file
        raise RecipeLoop(f"recipe {recipe} is its own base: {' -> '.join((*_seen, recipe))}")
    if recipe.endswith(".toml"):
        path = Path(recipe)
        if not path.is_file():
            shipped = f" (the shipped one is --recipe {path.stem})" if path.stem in list_recipes() else ""
            raise FerkitError(f"recipe file not found: {recipe}{shipped}")
        try:
            text, name = path.read_text(encoding="utf-8"), path.stem
        except UnicodeDecodeError:
            raise FerkitError(f"recipe {recipe} is not a UTF-8 text file (TOML)") from None
    else:
        shipped = resources.files("ferkit.recipes") / f"{recipe}.toml"
        if recipe not in list_recipes():  # a name only: "../recipes/seed-custom" had put its run in ./recipes
            file = f" (the file {recipe}.toml? name it with its .toml)" if Path(f"{recipe}.toml").is_file() else ""
            raise FerkitError(f"unknown recipe {recipe!r}{file}; choose from {', '.join(list_recipes())}")
        text, name = shipped.read_text(encoding="utf-8"), recipe
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FerkitError(f"recipe {recipe} is not valid TOML: {exc}") from None
    base = values.pop("base", None)
    if base is not None and not (isinstance(base, str) and base):  # "" had been no base at all
        raise FerkitError(f"recipe {recipe}: base must be a recipe name or a .toml path, got {base!r}")
    if "recipe" in values:  # it names the run's folder: "../../x" had put it outside runs/
        raise FerkitError(f"recipe {recipe}: 'recipe' is not a field (a recipe is named by its file, {name!r}): "
                          "remove it")
    if known is not None and set(values) - set(known):  # said here: the merged values name no file
        raise FerkitError(f"recipe {recipe}: {unknown_fields(set(values) - set(known), known)}")
    try:
        inherited = load_recipe(_relative(base, recipe), (*_seen, recipe), known=known) if base else {}
    except RecipeLoop:  # names the whole chain already
        raise
    except FerkitError as exc:  # which line of which file names it: the base's own error said neither
        raise FerkitError(f"recipe {recipe}, base = {base!r}: {exc}") from None
    if inherited and values and "description" not in values:  # the base's words describe the base
        said = inherited.get("description", "")
        values["description"] = with_changes(f"{base}: {said}" if said else str(base), "here", values)
    # A table (`[model_options]`) changes the base's options it names and keeps the rest: `se_ratio`
    # alone must not take the base's `blocks` away with it. Not for another architecture, whose
    # options are its own: the base's were another network's.
    switched = "model" in values and values["model"] != inherited.get("model")
    values = {key: {**inherited[key], **value} if isinstance(value, dict) and isinstance(inherited.get(key), dict)
              and not switched else value for key, value in values.items()}
    return {**without_stale_fallback(inherited, values), "recipe": name, **values}


def unknown_fields(unknown: Collection[str], known: Collection[str]) -> str:
    """What is said of fields a configuration has not: each with the known one it likely misspells."""
    near = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, known, 1)) else name
            for name in sorted(unknown)]
    return f"unknown configuration field(s): {', '.join(near)}"


def with_changes(description: str, where: str, changes: dict[str, Any]) -> str:
    changed = ", ".join(f"{key} = {value!r}" for key, value in changes.items())
    return f"{description.rstrip('. ') + '. ' if description.strip('. ') else ''}Changed {where}: {changed}."


def without_stale_fallback(values: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A fallback lightens the network and shrinks the faces it came with: a recipe or flag that
    changes those, or starts from a weights file (which fits the recipe's own network alone: the
    fallback had failed to load it after the data and the teacher's pass), drops the fallback it
    would otherwise inherit. Another architecture drops the
    recipe's model options too (the default's `blocks` are fernet's), unless it brings its own."""
    changed = {key for key, value in changes.items() if values.get(key) != value}  # not the same value restated
    stale = ({"fallback_model_options", "fallback_image_size"} if {"model", "model_options"} & changed
             else {"fallback_image_size"} if "image_size" in changed else set())
    if "model" in changed and "model_options" not in changes:
        stale.add("model_options")
    if "weights" in changed and str(changes["weights"]).lower() not in ("", "none", "imagenet"):
        stale |= {"fallback_model_options", "fallback_image_size"}  # a file's weights are this network's alone
    return {key: value for key, value in values.items() if key not in stale}


def _relative(base: str, recipe: str) -> str:
    """A base given as a .toml path is relative to the recipe file that names it."""
    if base.endswith(".toml") and recipe.endswith(".toml"):
        return str(Path(recipe).parent / base)
    return base


def _identity(recipe: str) -> str:
    """What a recipe is, whatever the path spelling: a file's resolved path, or a shipped name."""
    return str(Path(recipe).resolve()) if recipe.endswith(".toml") else recipe
