"""ONNX Runtime's two x86 int8 kernel families on this CPU: the fast u8s8 ones (its default) and the
exact u8u8 ones that `session.x64quantprecision` asks for (ferkit.inference.backends), timed on
an int8 model over PublicTest, alternated, with the accuracy and labels each gives.

    python benchmarks/bench_int8_kernels.py [--model default|MODEL.onnx] [--data ../shared/data/fer2013.zip]
                                            [--rounds 3]

Without VNNI (AVX2 alone) the u8s8 kernels add pairs of products in 16 bits, which saturate with
weights that use all 8 bits, so their labels differ; with VNNI (AVX-512 VNNI, AVX-VNNI) they
accumulate in 32 bits and should match the u8u8 ones. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import onnxruntime as ort

from ferkit.data import load_fer
from ferkit.data.preprocess import to_model_input
from ferkit.hardware import cpu_flags
from ferkit.inference.backends import CHUNK, VNNI_CPU_FLAGS, load_backend


def session(path: str, exact: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = min(os.cpu_count() or 1, 4), 1
    if exact:
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def scores(sess: ort.InferenceSession, batch: np.ndarray) -> tuple[np.ndarray, float]:
    name = sess.get_inputs()[0].name
    start = time.perf_counter()
    probs = np.concatenate([sess.run(None, {name: batch[i:i + CHUNK]})[0] for i in range(0, len(batch), CHUNK)])
    return probs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="../shared/data/fer2013.zip")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend = load_backend(args.model)  # resolves `default` and reads the classes and input size
    data = load_fer(args.data)
    public = data.usage == "public"
    batch = to_model_input(data.images[public], backend.info.image_size).astype(np.float32)
    truth = data.labels[public]  # indices into EMOTIONS, also a 7-class model's order
    print(f"CPU VNNI flags: {', '.join(cpu_flags(VNNI_CPU_FLAGS)) or 'none'}; "
          f"{len(batch)} faces of {backend.name}; onnxruntime {ort.__version__}")
    kinds = {"u8s8 (default)": session(backend.name, exact=False),
             "u8u8 (x64quantprecision)": session(backend.name, exact=True)}
    outputs, rates = {}, {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind, sess in kinds.items():
            probs, seconds = scores(sess, batch)
            outputs[kind] = probs
            rates[kind].append(len(batch) / seconds)
    for kind in kinds:
        accuracy = (outputs[kind].argmax(1) == truth).mean()
        print(f"  {kind:<26} {min(rates[kind]):6.0f}-{max(rates[kind]):6.0f} faces/s   accuracy {accuracy:.4f}")
    fast, exact = outputs.values()
    print(f"  same label from both: {(fast.argmax(1) == exact.argmax(1)).mean():.4f} of faces; "
          f"largest probability difference {np.abs(fast - exact).max():.1e}")


if __name__ == "__main__":
    main()
