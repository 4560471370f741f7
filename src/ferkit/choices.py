"""The names a user chooses among, in one place for the library's checks and the CLI's `--help`.

Free of imports, so that the CLI's parsers list them without loading Keras, OpenCV or sklearn.
"""

SPLITS = ("random", "official")  # how a data set is split (ferkit.data.splits)
EVAL_SPLITS = ("test", "val", "all")  # which faces `evaluate` scores (ferkit.evaluation.evaluate)
DETECTORS = ("yunet", "haar")  # ferkit.inference.faces
QUANTIZE = ("none", "int8")  # ONNX export (ferkit.models.export)
# Training fields (ferkit.training.config)
CLASS_WEIGHTS = ("none", "balanced", "sqrt")
SCHEDULES = ("constant", "cosine")
CHECKPOINT_ON = ("val_loss", "val_accuracy")
MIXED_PRECISION = ("auto", "on", "off")  # bfloat16 compute; auto: where the hardware has it, and faster
