"""Training: configuration and recipes, techniques, and the `train` entry point (imports Keras)."""

from ferkit.recipes import list_recipes, load_recipe
from ferkit.training.config import TrainConfig
from ferkit.training.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "list_recipes", "load_recipe", "train"]
