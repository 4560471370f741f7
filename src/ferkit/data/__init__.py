"""FER2013 in, arrays out: class names, readers, splits and the shared face preprocessing."""

from ferkit.data.labels import EMOTIONS, SEED_CLASSES, parse_classes
from ferkit.data.sources import FerDataset, describe_skipped, load_fer

__all__ = ["EMOTIONS", "SEED_CLASSES", "FerDataset", "describe_skipped", "load_fer", "parse_classes"]
