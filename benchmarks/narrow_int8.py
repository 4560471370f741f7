"""Re-quantize an int8 ONNX model's weights to 7 bits, for ONNX Runtime's fast kernels on CPUs
without VNNI: a measurement behind benchmarks/ablations/README.md ("Seven-bit weights for a faster
teacher", session 21), not adopted.

    python benchmarks/narrow_int8.py MODEL.onnx OUTPUT.onnx [--bound 64]

On x86 CPUs without VNNI (AVX2 alone) ONNX Runtime's fast u8s8 kernels add pairs of uint8 x int8
products in 16 bits, which overflow when weights use all 8 bits, so ferkit asks for the exact but
slower u8u8 kernels (`session.x64quantprecision`, ferkit.inference.backends). With weights within
+-64 the pairs cannot overflow, and ONNX Runtime keeps the fast kernels under that option too. On
the bundled ensemble (AMD EPYC, AVX2 alone): 208-217 faces/s against 145-171, but PublicTest
accuracy 0.6846 (`--bound 64`, ONNX Runtime's own reduce_range grid) or 0.6879 (`--bound 63`)
against 0.6877: rounding a quantized model again moves it by up to a third of a point either way,
and the bundle's accuracy is what the project is judged on.

Each Conv/Gemm weight (per-channel, symmetric, zero point 0) is rounded onto the coarser grid,
its scales grown to match, and its int32 bias (whose scale is input scale x weight scale) moved
with it, so that ONNX Runtime still fuses the QDQ pairs into its integer kernels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def narrow(model: onnx.ModelProto, bound: int) -> int:
    """Narrows `model`'s int8 weights in place to -bound..bound; returns how many it changed."""
    factor = bound / 127
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1

    def rescale(dequantize: onnx.NodeProto | None, grid: np.dtype, clip: int | None) -> None:
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or any(
                name not in initializers or readers[name] != 1 for name in dequantize.input):
            raise SystemExit(f"{getattr(dequantize, 'name', 'a weight')}: expected a DequantizeLinear of "
                             "constants that only one layer reads (ONNX Runtime's quantize_static, QDQ format)")
        values, scale = (numpy_helper.to_array(initializers[name]) for name in dequantize.input[:2])
        zero = numpy_helper.to_array(initializers[dequantize.input[2]]) if len(dequantize.input) > 2 else 0
        if values.dtype != grid or np.any(zero != 0):
            raise SystemExit(f"{dequantize.name}: expected symmetric {grid} values (zero point 0)")
        narrowed = np.round(values.astype(np.float64) * factor)
        if clip is not None:
            narrowed = np.clip(narrowed, -clip, clip)
        for name, value in zip(dequantize.input[:2], (narrowed.astype(grid), (scale / factor).astype(scale.dtype))):
            initializers[name].CopyFrom(numpy_helper.from_array(value, name))

    layers = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    for node in layers:
        rescale(producer.get(node.input[1]), np.dtype(np.int8), bound)
        if len(node.input) > 2 and node.input[2]:
            rescale(producer.get(node.input[2]), np.dtype(np.int32), clip=None)
    left = [tensor.name for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8
            and np.abs(numpy_helper.to_array(tensor).astype(np.int16)).max(initial=0) > bound]
    if left:  # int8 weights of layers other than Conv and Gemm (MatMul, ...)
        raise SystemExit(f"weights of other layers left full-range: {', '.join(left[:5])}")
    return len(layers)


def main(source: Path, output: Path, bound: int) -> None:
    model = onnx.load(str(source))
    count = narrow(model, bound)
    onnx.save(model, str(output))
    print(f"{output}: {count} weights narrowed to -{bound}..{bound}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--bound", type=int, choices=range(1, 65), default=64, metavar="1-64",
                        help="largest weight after narrowing (default 64, ONNX Runtime's reduce_range)")
    args = parser.parse_args()
    main(args.model, args.output, args.bound)
