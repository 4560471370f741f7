"""A teacher's answers for faces it has been asked about before, shipped beside the model.

The default recipe distils from the bundled model, whose pass over FER2013's Training faces is the
same every time and costs a slice of the recipe's hour: 96 s on a 2-core Zen 4 EPYC, 114-157 s on
a 2-core AMX Xeon, 318-386 s on an AVX2-only EPYC, time the epochs do not get. So the bundle ships
its answers: `teacher-targets.npz` beside the model holds the probabilities for each face under a
hash of the face's pixels, with the model file's own hash, so that a replaced model never reads
another's table. Faces the table does not hold (other data, a copy of FER2013 re-encoded with
loss) go to the teacher as before.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ferkit.data.splits import face_keys

log = logging.getLogger("ferkit")

TABLE_NAME = "teacher-targets.npz"


def table_path(model_file: Path) -> Path:
    return model_file.with_name(TABLE_NAME)


def model_digest(model_file: Path) -> str:
    return hashlib.sha256(Path(model_file).read_bytes()).hexdigest()


def write(model_file: Path, faces: np.ndarray, probs: np.ndarray) -> Path:
    """The table of `probs` (the model's answers for `faces`, in its class order) beside `model_file`.

    float16 keeps it small (0.56 MB for FER2013's Training part); the rounding moves a soft target
    by at most 1.2e-4 at the default's teacher weight of 0.5."""
    keys, first = np.unique(face_keys(faces), return_index=True)
    path = table_path(model_file)
    np.savez_compressed(path, keys=keys, probs=probs[first].astype(np.float16),
                        model=np.array(model_digest(model_file)))
    return path


def lookup(model_file: Path, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(probabilities, found) for the faces the table beside `model_file` holds (rows of zeros for
    the rest), or None when there is no table or it belongs to another model."""
    path = table_path(model_file)
    if model_file.suffix.lower() != ".onnx" or not path.is_file():
        return None
    try:
        with np.load(path) as table:
            if str(table["model"]) != model_digest(model_file):
                log.warning("%s was made for another model than %s: not used", path, model_file)
                return None
            keys, probs = table["keys"], table["probs"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a cut copy
        log.warning("%s cannot be read (%s): not used, the teacher is asked instead", path, exc)
        return None
    if not len(keys):
        return None
    wanted = face_keys(faces)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found = keys[at] == wanted
    return np.where(found[:, None], probs[at], 0).astype(np.float32), found
