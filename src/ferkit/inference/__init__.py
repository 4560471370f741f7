"""Inference: face detection, model backends and the EmotionRecognizer (no training stack needed)."""

from ferkit.inference.faces import Face, create_detector
from ferkit.inference.recognizer import EmotionRecognizer

__all__ = ["EmotionRecognizer", "Face", "create_detector"]
