"""bfloat16 only where the hardware computes it (ferkit.training.precision)."""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys

import keras
import pytest

from ferkit import hardware
from ferkit.training import TrainConfig, precision, train

AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 fma avx avx2\n"
INTEL_BF16 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_fp16\n"
AMD_BF16 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


@pytest.mark.parametrize("cpuinfo, flags", [(AMX, ["amx_bf16", "avx512_bf16"]), (AVX2, [])])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, cpuinfo, flags):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert precision.cpu_bfloat16_flags(tmp_path / "cpuinfo") == flags


def test_no_cpuinfo_means_no_native_bfloat16(tmp_path):
    assert precision.cpu_bfloat16_flags(tmp_path / "absent") == []


@pytest.mark.parametrize("cpuinfo, device, expected, why", [
    (AMX, "", True, "has amx_bf16, avx512_bf16"), (AVX2, "", False, "has neither"),
    (AVX2, "gpu:0", True, "gpu:0"),
    (INTEL_BF16, "", False, "Intel CPU has avx512_bf16 but not amx_bf16"),  # slower there than float32
    (AMD_BF16, "", True, "has avx512_bf16"),
    (AMX.replace("flags", "vendor_id\t: GenuineIntel\nflags"), "", True, "has amx_bf16, avx512_bf16")])
def test_auto_follows_the_hardware_and_says_so(tmp_path, monkeypatch, caplog, cpuinfo, device, expected, why):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(precision, "accelerator", lambda: device)
    monkeypatch.setattr(precision, "onednn_off", lambda: False)  # as ferkit asks on x86-64
    with caplog.at_level(logging.INFO, logger="ferkit"):
        assert precision.use_bfloat16("auto") is expected
    assert f"bfloat16 compute: {'on' if expected else 'off'}" in caplog.text and why in caplog.text
    assert precision.use_bfloat16("on") is True and precision.use_bfloat16("off") is False  # as told


@pytest.mark.parametrize("devices, expected", [(["gpu:0", "gpu:1"], "gpu:0"), (["cpu:0"], ""), ([], "")])
def test_an_accelerator_is_the_first_device_keras_lists_unless_a_cpu(monkeypatch, devices, expected):
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: devices)
    assert precision.accelerator() == expected


def test_older_runs_true_and_false_read_as_on_and_off():
    assert TrainConfig(mixed_precision=True).mixed_precision == "on"
    assert TrainConfig.from_dict({"mixed_precision": False}).mixed_precision == "off"
    assert TrainConfig.from_recipe("default").mixed_precision == "auto"


@pytest.mark.parametrize("flags, policy", [(["amx_bf16"], "mixed_bfloat16"), ([], "float32")])
def test_a_run_trains_in_the_precision_auto_chose(synthetic_folder, tmp_path, monkeypatch, flags, policy):
    """The layers train under the policy `auto` chose; the saved model is float32 either way."""
    monkeypatch.setattr(precision, "accelerator", lambda: "")
    monkeypatch.setattr(precision, "cpu_bfloat16_flags", lambda: flags)
    trained_under, fit = set(), keras.Model.fit

    def recording_fit(model, *args, **kwargs):
        trained_under.update(layer.dtype_policy.name for layer in model.layers if layer.trainable_weights)
        return fit(model, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    run = train(synthetic_folder, recipe="seed-custom", classes="angry,happy,sad,surprise", split="official",
                epochs=1, batch_size=32, mixed_precision="auto", output=tmp_path / "run", verbose=0).run_dir
    assert policy in trained_under and trained_under <= {policy, "float32"}  # the softmax stays float32
    assert json.loads((run / "config.json").read_text())["mixed_precision"] == "auto"
    saved = keras.models.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}


@pytest.mark.parametrize("preset, expected", [(None, "True"), ("0", "False")])
def test_tensorflow_uses_onednn_unless_the_user_says_not(preset, expected):
    """TensorFlow leaves its oneDNN kernels off on AVX2-only CPUs, where they train 40% faster."""
    pytest.importorskip("tensorflow")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("ferkit asks for oneDNN on x86-64 only")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    code = ("import ferkit.training, os; from tensorflow.python.util import _pywrap_util_port as port; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [preset or "1", expected]


@pytest.mark.parametrize("first", ["tensorflow", "ferkit"])
def test_training_says_when_tensorflow_came_first_without_onednn(first):
    """Imported before ferkit, TensorFlow never saw ferkit ask for oneDNN: training warns exactly
    when its kernels are off because of that (on CPUs where TensorFlow turns them on itself, never)."""
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}

    def run(forced_off: bool) -> subprocess.CompletedProcess:
        code = (f"import {first}, ferkit, logging; logging.basicConfig(); "
                "from ferkit.training import precision; "
                "from tensorflow.python.util import _pywrap_util_port as port; "
                f"{'precision.onednn_off = lambda: True; ' if forced_off else ''}"
                "precision.warn_if_onednn_missed(); print('oneDNN', port.IsMklEnabled())")
        return subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                              capture_output=True, text=True, check=True)

    done = run(forced_off=False)
    onednn = done.stdout.split()[-1] == "True"
    warned = "imported before ferkit" in done.stderr
    assert warned == (first == "tensorflow" and not onednn)
    if first == "ferkit" and platform.machine().lower() in ("x86_64", "amd64"):
        assert onednn
    # With the kernels off (as TensorFlow imported first leaves them on an AVX2-only CPU; ferkit first,
    # only a user's TF_ENABLE_ONEDNN_OPTS=0 does), the import order alone decides the warning
    assert ("imported before ferkit" in run(forced_off=True).stderr) == (first == "tensorflow")


def test_auto_leaves_bfloat16_off_where_tensorflow_runs_without_onednn(tmp_path):
    """TF_ENABLE_ONEDNN_OPTS=0 (a user's own value wins, README): TensorFlow's own kernels emulate
    bfloat16, 10-19x slower per step than float32 on an AMX Xeon, whatever the CPU flags say."""
    pytest.importorskip("tensorflow")
    (tmp_path / "cpuinfo").write_text(AMX)
    code = ("import ferkit, pathlib; from ferkit import hardware; from ferkit.training import precision; "
            f"hardware.CPUINFO = pathlib.Path({str(tmp_path / 'cpuinfo')!r}); "
            "precision.accelerator = lambda: ''; "
            "from tensorflow.python.util._pywrap_util_port import IsMklEnabled; "
            "print(IsMklEnabled(), precision.use_bfloat16('auto'))")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["False", "False"]  # oneDNN off, so bfloat16 off


@pytest.mark.parametrize("capability, expected", [((7, 5), False), ((7, 0), False), ((8, 0), True),
                                                  ((9, 0), True), (None, True)])
def test_auto_needs_a_gpu_with_native_bfloat16(monkeypatch, capability, expected):
    """A T4 (7.5) or V100 (7.0) has no bfloat16 arithmetic; Ampere (8.0) and later do; unknown
    (ROCm, a TPU) stays on, as before."""
    from ferkit.training import precision

    monkeypatch.setattr(precision, "accelerator", lambda: "gpu:0")
    monkeypatch.setattr(precision, "gpu_compute_capability", lambda: capability, raising=False)
    assert precision.use_bfloat16("auto") is expected
