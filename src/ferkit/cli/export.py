"""`ferkit export`: a trained model as a self-describing ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.choices import QUANTIZE
from ferkit.cli._common import nonempty


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a trained model to ONNX")
    p.add_argument("model", type=nonempty, help="a run directory or a .keras file")
    p.add_argument("--output", type=nonempty, metavar="FILE",
                   help="default: model.onnx (model-int8.onnx) in the run directory; NAME.onnx (NAME-int8.onnx) "
                        "beside another NAME.keras")
    p.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="int8: static quantization, ~2.5x faster on CPUs, calibrated on 256 faces of the run's data "
                        "(FER2013's Training part where it says which)")
    p.add_argument("--calibration", type=nonempty, metavar="DATA",
                   help="faces for int8 calibration (default: the run's data)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.cli._common import native_stderr_hidden, outputs
    from ferkit.errors import FerkitError
    from ferkit.inference.backends import DEFAULT_MODEL, bundled_model_dir

    given = Path(args.model)
    bundled = (args.model == DEFAULT_MODEL and not given.exists()) or (
        given.is_dir() and given.resolve() == bundled_model_dir().resolve())  # its folder had "no model.keras"
    if bundled or given.suffix.lower() == ".onnx":  # which had been "unsupported model file"
        raise FerkitError(f"{'the bundled model' if bundled else given} is an ONNX file already (ferkit info --model "
                          f"{args.model} says what it is): export takes a run directory or a .keras file")
    # ferkit reads ONNX by its suffix, and so no run file (model.keras, config.json) is written over.
    if args.output and Path(args.output).suffix.lower() != ".onnx":
        raise FerkitError(f"--output {args.output}: an ONNX file's name ends in .onnx")
    with outputs() as output_path:
        output_path(args.output, inputs=[args.model])  # its folder made, or a clear error, before the export's work
        _refuse_another_run(Path(args.model), args.output)
        with native_stderr_hidden():  # Keras' seconds of start-up, after the checks above
            from ferkit.models.export import export_onnx

        print(export_onnx(args.model, args.output, args.quantize, args.calibration))
    return 0


def _refuse_another_run(model: Path, output: str | None) -> None:
    """A run directory reads its model.onnx before its own model.keras: an export written into
    another run's folder would be taken for that run's network by evaluate, predict and info."""
    from ferkit.errors import FerkitError
    from ferkit.runs import RunDir, run_of

    if output is None:
        return
    target = RunDir(Path(output).parent)
    ours = Path(output).name in {export.name for export in target.exports}  # the names a run reads
    if not (ours and target.config.is_file()):
        return
    source = run_of(model)  # the run itself or its own model: not another .keras in its folder
    if source is None or source.path.resolve() != target.path.resolve():
        same_folder = (model if model.is_dir() else model.parent).resolve() == target.path.resolve()
        whose = f"the folder of a run whose model {model.name} is not" if same_folder else "another run's directory"
        raise FerkitError(f"{target.path} is {whose}: {Path(output).name} there would be taken "
                          "for that run's model; export somewhere else")
