"""Shared fixtures: synthetic faces with a learnable signal, and small real FER2013 samples."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ferkit.data.labels import CSV_CODES, EMOTIONS  # noqa: E402

# FER2013 for the tests that read a few dozen real faces: FERKIT_TEST_DATA, else where the
# development machines keep it, beside the repository.
FER_ZIP = Path(os.environ.get("FERKIT_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.zip")


@pytest.fixture(autouse=True)
def _ferkit_logger_as_found():
    """`main(["-q", ...])` sets the ferkit logger's level for the process: not for the next test."""
    import logging

    yield
    logging.getLogger("ferkit").setLevel(logging.NOTSET)


def installed(*packages: str) -> list:
    """pytest params, one per package (a Keras backend), each skipped where it is not installed."""
    return [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                        reason=f"needs {name}")) for name in packages]


def ctrl_c_after(epoch: int):
    """A Keras callback that raises KeyboardInterrupt at the end of `epoch` (0-based), as Ctrl+C
    there would: the run must stop and keep what it has."""
    import keras

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, done, logs=None):
            if done == epoch:
                raise KeyboardInterrupt

    return CtrlC()


def ctrl_c_once_trained(monkeypatch) -> None:
    """A real SIGINT to this process while a run's own model is made, once its training has ended
    (precise BN, before its test faces and its saving): where a deadline's Ctrl-C may land."""
    import signal

    from ferkit.training import trainer

    made = trainer.inference_model

    def pressed_meanwhile(*args, **kwargs):
        if "bn_faces" in kwargs:  # the run's own model; not the time limit's timing of it before fit
            os.kill(os.getpid(), signal.SIGINT)
        return made(*args, **kwargs)

    monkeypatch.setattr(trainer, "inference_model", pressed_meanwhile)


def without_train_extra(code: str):
    """Python `code` run in an interpreter where, as in an install without `ferkit[train]`, the
    import system finds no TensorFlow, Keras, tf2onnx or scikit-learn."""
    import subprocess
    import sys

    blocker = ("import sys\n"
               "class Block:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'sklearn'):\n"
               "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
               "sys.meta_path.insert(0, Block())\n")
    return subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=120)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: enough for a size check that comes before any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def synthetic_faces(classes: tuple[str, ...], per_class: int, seed: int = 0):
    """48x48 noise with a bright block whose position encodes the class: easy to learn, not trivial."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(classes):
        row, col = divmod(EMOTIONS.index(name), 3)
        for _ in range(per_class):
            img = rng.integers(0, 90, (48, 48)).astype(np.uint8)
            dy, dx = rng.integers(-2, 3, 2)
            y, x = 4 + row * 15 + dy, 4 + col * 15 + dx
            img[max(y, 0):y + 12, max(x, 0):x + 12] = 220
            images.append(img)
            labels.append(name)
    return images, labels


def write_folder(root: Path, images, labels, split: str | None = "train", prefix: str = "Training") -> Path:
    for i, (img, name) in enumerate(zip(images, labels)):
        folder = root / split / name if split else root / name
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{prefix}_{i:05d}.png"), img)
    return root


@pytest.fixture
def synthetic_folder(tmp_path) -> Path:
    """train/ and test/ folders of synthetic faces for four classes."""
    classes = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(classes, 60)
    write_folder(tmp_path / "syn", images, labels, "train", "Training")
    images, labels = synthetic_faces(classes, 15, seed=1)
    return write_folder(tmp_path / "syn", images, labels, "test", "PublicTest")


@pytest.fixture(scope="session")
def real_members() -> list[tuple[str, bytes]]:
    """A few real FER2013 images per class and part, read from the shared zip."""
    if not FER_ZIP.is_file():
        pytest.skip(f"FER2013 not available at {FER_ZIP}")
    picked: dict[str, list] = {}
    with zipfile.ZipFile(FER_ZIP) as archive:
        for name in archive.namelist():
            key = "/".join(name.split("/")[:2])
            if name.endswith(".jpg") and len(picked.setdefault(key, [])) < 6:
                picked[key].append((name, archive.read(name)))
    return [m for members in picked.values() for m in members]


@pytest.fixture
def real_zip(tmp_path, real_members) -> Path:
    path = tmp_path / "fer_small.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in real_members:
            archive.writestr(name, data)
    return path


@pytest.fixture
def real_csv(tmp_path, real_members) -> Path:
    """The same faces in fer2013.csv's format (emotion code, pixels, Usage)."""
    codes = {name: code for code, name in CSV_CODES.items()}
    path = tmp_path / "fer_small.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for name, data in real_members:
            gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            usage = "Training" if name.startswith("train/") else "PublicTest"
            writer.writerow([codes[name.split("/")[1]], " ".join(map(str, gray.ravel())), usage])
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's bundled public-domain NASA portrait (one frontal face), as BGR."""
    skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photo")
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def group_photo(astronaut) -> tuple[np.ndarray, int]:
    """A 640x480 composite with three faces of different sizes, and its face count."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    portrait = astronaut[0:260, 120:330]
    for (x, y), width in (((40, 40), 140), ((400, 200), 140), ((200, 350), 80)):
        height = round(width * 260 / 210)
        canvas[y:y + height, x:x + width] = cv2.resize(portrait, (width, height), interpolation=cv2.INTER_AREA)
    return canvas, 3


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A small 4-class model trained for two epochs on synthetic faces, exported to ONNX too."""
    from ferkit.models.export import export_onnx
    from ferkit.training import train

    root = tmp_path_factory.mktemp("tiny")
    classes = ("angry", "happy", "sad", "surprise")
    images, labels = synthetic_faces(classes, 40)
    write_folder(root / "data", images, labels, split=None)
    run = train(root / "data", recipe="seed-custom", classes=",".join(classes), epochs=2,
                learning_rate=0.003, output=root / "run", verbose=0).run_dir
    export_onnx(run)
    return run


@pytest.fixture
def web_folder(tmp_path):
    """`tmp_path` served over HTTP on loopback: (its base URL, the folder)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def jpeg_of_many_scans(scans: int, side: int = 300) -> bytes:
    """A progressive JPEG with its last scan repeated `scans` times: a few KB that decoders take a
    pass over the whole image for each scan of (the decompression bomb of progressive JPEG)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side), 128, np.uint8)).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * scans + data[end:]


def softmax_reads_float(path) -> bool:
    """Whether an ONNX model's Softmax nodes read float logits, not an int8 pair's rounded ones."""
    import onnx

    graph = onnx.load(str(path)).graph
    by_output = {out: node for node in graph.node for out in node.output}
    softmaxes = [node for node in graph.node if node.op_type == "Softmax"]
    return bool(softmaxes) and all(by_output[node.input[0]].op_type != "DequantizeLinear" for node in softmaxes)
