"""`ferkit export`: a trained model as a self-describing ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.choices import QUANTIZE


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a trained model to ONNX")
    p.add_argument("model", help="a run directory or a .keras file")
    p.add_argument("--output", metavar="FILE", help="default: model.onnx (model-int8.onnx) in the run directory")
    p.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="int8: static quantization, ~2.5x faster on CPUs, calibrated on 256 faces of the run's data "
                        "(FER2013's Training part where it says which)")
    p.add_argument("--calibration", metavar="DATA", help="faces for int8 calibration (default: the run's data)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.cli._common import output_path
    from ferkit.errors import FerkitError
    from ferkit.models.export import export_onnx

    # ferkit reads ONNX by its suffix, and so no run file (model.keras, config.json) is written over.
    if args.output and Path(args.output).suffix.lower() != ".onnx":
        raise FerkitError(f"--output {args.output}: an ONNX file's name ends in .onnx")
    output_path(args.output, inputs=[args.model])  # its folder made, or a clear error, before the export's work
    print(export_onnx(args.model, args.output, args.quantize, args.calibration))
    return 0
