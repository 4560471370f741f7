"""Metrics, figures and the `evaluate` entry point."""

from ferkit.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
