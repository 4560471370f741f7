"""The maintainers' scripts (scripts/): what they write and what they refuse."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from ferkit.errors import FerkitError
from ferkit.runs import RunDir

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ablation_script(name: str, monkeypatch):
    ablations = SCRIPTS.parent / "benchmarks" / "ablations"
    monkeypatch.syspath_prepend(str(ablations))  # as `python benchmarks/ablations/NAME.py` has it
    spec = importlib.util.spec_from_file_location(name, ablations / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_names_teacher_and_weights_files_without_this_machines_paths():
    shareable = _script("bundle_model").shareable
    config = {"data": "/home/me/fer.zip", "teacher": "/home/me/runs/t", "weights": "/home/me/w.weights.h5",
              "members": [{"run": "/home/me/runs/a", "teacher": "default", "weights": "none"}]}
    assert shareable(config) == {"data": "fer.zip", "teacher": "t", "weights": "w.weights.h5",
                                 "members": [{"run": "a", "teacher": "default", "weights": "none"}]}


def test_the_bundle_script_refuses_a_member_that_is_no_run_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="give a run directory"):  # was FileNotFoundError from copying
        _script("bundle_model").main([str(tmp_path / "nosuchrun")], None, False, None)


def test_the_bundle_script_tests_on_and_tabulates_the_members_own_data(tiny_run, tmp_path, monkeypatch):
    """Without --data, the teacher's table was read from the data's bare name that publish() leaves
    in config.json: a traceback after minutes of export and evaluation, nothing installed."""
    bundle = _script("bundle_model")
    monkeypatch.setattr(bundle, "TARGET", tmp_path / "assets")
    monkeypatch.chdir(tmp_path)  # not where the data is
    bundle.main([str(tiny_run)], None, False, None)
    assert {p.name for p in (tmp_path / "assets").iterdir()} >= {"model.onnx", "config.json", "teacher-targets.npz"}


def test_one_older_int8_member_is_bundled_with_float_scores(tiny_run, tmp_path, monkeypatch):
    """The bundled model re-bundled alone skipped averaging, and so kept its 8-bit scores."""
    from conftest import softmax_reads_float
    from ferkit.models import export

    monkeypatch.setattr(export, "float_scores", lambda model: model)  # as older exports quantized everything
    old = export.export_onnx(tiny_run, tmp_path / "old.onnx", quantize="int8")
    (tmp_path / "stage").mkdir()
    bundled = _script("bundle_model").from_graphs([str(old)], None, False, tmp_path / "stage", None)
    assert softmax_reads_float(bundled) and not softmax_reads_float(old)


def test_half_weights_round_trip_and_keep_what_cannot_be_rebuilt(tiny_run, tmp_path):
    from ferkit.models import create_model
    from ferkit.models.ensemble import ensemble_run
    from ferkit.models.loading import load_keras_model

    half = _script("half_weights")
    run = RunDir(tmp_path / "run")
    shutil.copytree(tiny_run, run.path)
    faces = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    before = np.asarray(load_keras_model(run.path)[0](faces))
    half.pack(run)
    assert not run.keras_model.exists()
    half.unpack(run)
    np.testing.assert_allclose(np.asarray(load_keras_model(run.path)[0](faces)), before, atol=1e-3)

    (tmp_path / "bare").mkdir()
    for name in ("a", "b"):
        create_model("custom", image_size=48, num_classes=7).save(tmp_path / "bare" / f"{name}.keras")
    ensemble = ensemble_run([tmp_path / "bare" / "a.keras", tmp_path / "bare" / "b.keras"], tmp_path / "ens")
    with pytest.raises(FerkitError, match="unknown configuration field"):  # its config.json rebuilds no network
        half.pack(ensemble)
    assert ensemble.keras_model.is_file()  # was deleted, the weights then unloadable


def test_the_gpu_machines_faces_travel_deflated_and_come_back_as_they_were(tmp_path):
    """A call carries 64 MiB in all: the faces as a stored array had put it 0.4 MB over."""
    import zipfile

    import cv2

    from conftest import synthetic_faces

    images, labels = synthetic_faces(("happy", "sad"), 5)
    source = tmp_path / "fer.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for i, (image, label) in enumerate(zip(images, labels)):
            for part in ("train", "test"):
                archive.writestr(f"{part}/{label}/{i}.jpg", cv2.imencode(".jpg", image)[1].tobytes())
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    faces = _script("device_faces")
    faces.pack(source, tmp_path / "fer.npz")
    faces.unpack(tmp_path / "fer.npz", tmp_path / "fer")
    assert all((tmp_path / "fer" / name).read_bytes() == data for name, data in members.items())
    with zipfile.ZipFile(tmp_path / "fer.npz") as packed:  # an .npz is a zip of .npy files
        assert {info.compress_type for info in packed.infolist()} == {zipfile.ZIP_DEFLATED}


FAKE_PYTHON = r"""#!/usr/bin/env bash
# python3 for gpu_train.sh: `-c CODE train ARGS` is a stand-in run that behaves as its name says
[[ "$1" == *half_weights.py ]] && { echo "no Keras models here" >&2; exit 1; }
shift 3
out=""
while (($#)); do case $1 in --output|--resume) out=$2; shift;; esac; shift; done
mkdir -p "$out/checkpoints"
echo '{}' > "$out/config.json"; printf 'epoch,loss\r\n0,1.0\r\n' > "$out/history.csv"
echo state > "$out/checkpoints/backup.bin"
echo "Epoch 1/3"
case ${out##*/} in
  quick) echo '{"interrupted": false}' > "$out/metrics.json"; echo model > "$out/model.keras";;
  stopped) trap 'echo "{\"interrupted\": true}" > "$out/metrics.json"; echo model > "$out/model.keras"; exit 130' INT
      while :; do sleep 0.1; done;;
  stuck) trap '' INT TERM; while :; do sleep 0.1; done;;
esac
"""


def _gpu_train(tmp_path, jobs: str, **env: str) -> tuple[str, set[str]]:
    """gpu_train.sh over a stand-in python3, 2 s to train: what it printed and what it packed.
    Ctrl-C is given back its default first: a pytest started in the background by a non-interactive
    shell (`nohup ... &`) ignores it, and so did every stand-in, whose bash cannot trap a signal
    ignored on entry, so `stopped` was killed by TERM without saving (CI failed so in sessions 55 and
    56). ferkit itself sets its own handler for training, ignored on entry or not."""
    import contextlib
    import os
    import signal
    import subprocess
    import tarfile

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    (bin_dir / "python3").chmod(0o755)
    (tmp_path / "jobs").write_text(jobs)
    shutil.rmtree(tmp_path / "pack", ignore_errors=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "INT_GRACE": "2",
           "TERM_GRACE": "2", **env}
    try:
        done = subprocess.run(["bash", str(SCRIPTS / "gpu_train.sh"), str(tmp_path / "jobs"), "fer.zip",
                               str(tmp_path / "runs"), "2", str(tmp_path / "pack")],
                              env=env, capture_output=True, text=True, timeout=60,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    finally:  # a script that left a stand-in run behind (each is its own process group) leaves no orphan
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(bin_dir).encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
    assert done.returncode == 0, done.stderr
    archive = b"".join(part.read_bytes() for part in sorted((tmp_path / "pack").glob("runs.tar.gz.part-*")))
    (tmp_path / "runs.tar.gz").write_bytes(archive)
    with tarfile.open(tmp_path / "runs.tar.gz") as packed:
        return done.stdout, set(packed.getnames())


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("tar") is None, reason="needs bash and tar")
def test_the_gpu_script_runs_every_job_stops_the_stuck_and_packs_each_run(tmp_path):
    """The device call's one chance: a job on a last line with no line break is run, a run that
    ignores Ctrl-C and TERM is killed so that packing still happens within the call, and each run
    comes back without its resume backups, unless asked for an interrupted run's to resume later."""
    jobs = "# name flags\n\nquick --epochs 3\nstuck\nstopped --epochs 3"  # no line break at the end
    printed, packed = _gpu_train(tmp_path, jobs)
    for name in ("quick", "stuck", "stopped"):
        assert f"started {name}:" in printed
        assert {f"{name}.log", f"{name}/config.json", f"{name}/history.csv"} <= packed
    assert "started quick: fer.zip --output" in printed and "--epochs 3" in printed
    assert {"quick/model.keras", "quick/metrics.json", "stopped/model.keras"} <= packed  # no f16 weights: as is
    assert not any("backup" in name for name in packed)

    printed, packed = _gpu_train(tmp_path, jobs, PACK_BACKUPS="1")  # the same folder again: resumed
    assert f"started quick: --resume {tmp_path / 'runs' / 'quick'}" in printed
    assert "stopped/checkpoints/backup.bin" in packed  # interrupted: its backups for the next call
    assert "quick/checkpoints/backup.bin" not in packed and "stuck/checkpoints/backup.bin" not in packed


def test_the_precise_bn_benchmark_copies_a_run_with_the_statistics_the_trainer_would_have_saved(
        tiny_run, tmp_path, monkeypatch, capsys):
    """`tiny_run` trained without precise BN; the same training with it saves what the script's copy holds."""
    import sys

    import keras

    from ferkit.training import batchnorm, train

    script = _ablation_script("precise_bn", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["precise_bn.py", str(tiny_run.parent / "data"), str(tiny_run),
                                      "--keep", str(tmp_path)])
    script.main()
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [row.split(" | ")[:2] for row in table[2:]] == [[f"| {tiny_run.name}", split] for split in ("val", "test")]
    assert RunDir(tmp_path / "run-precise-bn").read_config()["precise_bn"]
    trained = train(tiny_run.parent / "data", recipe="seed-custom", classes="angry,happy,sad,surprise", epochs=2,
                    learning_rate=0.003, precise_bn=True, output=tmp_path / "trained", verbose=0).run_dir
    saved, copy, with_it = (keras.models.load_model(path / "model.keras")
                            for path in (tiny_run, tmp_path / "run-precise-bn", trained))
    variances = [[norm.moving_variance.numpy() for norm in batchnorm.trainable_batchnorms(model)]
                 for model in (saved, copy, with_it)]
    assert [len(v) for v in variances] == [4, 4, 4]
    assert not any(np.allclose(a, b) for a, b in zip(variances[0], variances[1], strict=True))
    for a, b in zip(variances[1], variances[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4)


def test_the_tail_average_benchmark_keeps_each_epochs_network_and_scores_it_as_the_run_saved_it(
        tiny_run, tmp_path, monkeypatch, capsys):
    """The kept epoch's file, rebuilt by the script with its statistics recomputed, is the model the
    run saved; every average is scored, and a K past the run's epochs left out."""
    import sys

    import keras

    from ferkit.data.preprocess import to_model_input

    script = _ablation_script("tail_average", monkeypatch)
    data, run, epochs = tiny_run.parent / "data", tmp_path / "run", tmp_path / "epochs"
    script.train_keeping_epochs(data, run, epochs, recipe="seed-custom", classes="angry,happy,sad,surprise",
                                epochs=3, learning_rate=0.003, augment=True, precise_bn=True, verbose=0)
    kept = script.read_epochs(epochs)
    assert len(kept) == 3
    best = RunDir(run).best_epoch("val_loss")[0]
    saved = keras.models.load_model(run / "model.keras").get_weights()
    config, splits = script.run_splits(run, str(data))
    rebuilt = script.saved_as(config, kept[best - 1], to_model_input(splits.train.images, config.image_size))
    rebuilt = rebuilt.get_weights()
    assert len(saved) == len(rebuilt) == len(kept[best - 1])
    for saved_weight, weight in zip(saved, rebuilt):  # the statistics too, recomputed alike
        np.testing.assert_allclose(saved_weight, weight, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(sys, "argv", ["tail_average.py", str(data), str(run), str(epochs), "--last", "1,3,9",
                                      "--decay", "0.5"])
    script.main()
    rows = [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["| last 1", "| last 3", "| decay 0.5"]  # 9 epochs are more than it trained
    monkeypatch.setattr(sys, "argv", ["tail_average.py", str(data), str(tmp_path / "new"), str(epochs)])
    with pytest.raises(SystemExit):  # a new run into a folder of another's epochs
        script.main()
    assert "is not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="trains the head of a frozen backbone"):  # before any training
        script.train_keeping_epochs(data, tmp_path / "frozen", tmp_path / "frozen-epochs", recipe="seed-mobilenetv2")
    assert not (tmp_path / "frozen").exists() and not (tmp_path / "frozen-epochs").exists()


def test_the_tail_averages_are_the_mean_of_the_last_epochs_and_an_exponential_average(monkeypatch):
    averages = _ablation_script("tail_average", monkeypatch).averages
    epochs = [[np.full(2, value, "float32"), np.full((1, 1), -value, "float32")] for value in (1.0, 2.0, 4.0)]
    variants = averages(epochs, last=[1, 2, 4], decays=[0.5])
    assert list(variants) == ["last 1", "last 2", "decay 0.5"]
    np.testing.assert_array_equal(variants["last 1"][0], [4, 4])
    np.testing.assert_array_equal(variants["last 2"][1], [[-3]])
    np.testing.assert_allclose(variants["decay 0.5"][0], [0.25 * 1 + 0.25 * 2 + 0.5 * 4] * 2)


def test_select_ensemble_leaves_out_a_run_that_has_no_model(tiny_run, tmp_path, monkeypatch, capsys):
    """A GPU call's run that a deadline cut before it was saved is matched by `dist-*/` too: the
    selection had ended in a traceback there instead of choosing among the others."""
    import sys

    (tmp_path / "cut").mkdir()
    monkeypatch.setattr(sys, "argv", ["select_ensemble.py", str(tiny_run.parent / "data"), str(tmp_path / "cut"),
                                      str(tiny_run)])
    _script("select_ensemble").main()
    out = capsys.readouterr().out
    assert f"{tmp_path / 'cut'}: left out: " in out and "holds no model" in out
    assert out.strip().endswith(f"chosen: {tiny_run}")
