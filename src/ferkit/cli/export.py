"""`ferkit export`: a trained model as a self-describing ONNX file."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a trained model to ONNX")
    p.add_argument("model", help="a run directory or a .keras file")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--output", metavar="FILE", help="default: model.onnx in the run directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.models.export import export_onnx

    print(export_onnx(args.model, args.output))
    return 0
