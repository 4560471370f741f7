"""Whether to train in bfloat16: only where the hardware computes it natively, and faster.

bfloat16 halves the memory traffic of every activation, so where a GPU or an AMX CPU does the
arithmetic it trains faster (fernet: 190 against 155 faces/s on the 2-core CPU the default was
tuned on). Where the CPU lacks those instructions every bfloat16 op is emulated through
float32 conversions: on an AVX2-only 2-core AMD EPYC an epoch of the default took 1,002 s in
bfloat16 against 393-465 s in float32, and its time limit planned 3 epochs instead of 7. And an
Intel CPU with AVX-512 BF16 but no AMX listed (a 2-core Xeon of family 6, model 207, under a
hypervisor) trained the default's network at 122 faces/s in bfloat16 against 214 in float32
(`benchmarks/bench_training.py`).
Hence "auto", the default recipe's choice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from ferkit.hardware import cpu_flags, cpu_vendor

log = logging.getLogger("ferkit")

# CPU flags (as Linux names them in /proc/cpuinfo) of native bfloat16 matrix arithmetic.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def use_bfloat16(setting: str) -> bool:
    """The recipe's `mixed_precision` ("on", "off" or "auto") resolved for this machine, and said."""
    if setting != "auto":
        return setting == "on"
    where = accelerator()
    capability = gpu_compute_capability() if where.startswith(("gpu", "cuda")) else None
    if capability is not None and capability < (8, 0):
        log.info("bfloat16 compute: off (%s, compute capability %d.%d, has no native bfloat16: float32 is "
                 "faster here)", where, *capability)
        return False
    if where:
        log.info("bfloat16 compute: on (%s)", where)
        return True
    flags = cpu_bfloat16_flags()
    if flags and onednn_off():
        log.info("bfloat16 compute: off (this CPU has %s, but TensorFlow's oneDNN kernels are off, and its "
                 "own emulate bfloat16: float32 is faster here; TF_ENABLE_ONEDNN_OPTS=1 turns them on)",
                 ", ".join(flags))
        return False
    if flags and bfloat16_slower_on_intel(flags):
        log.info("bfloat16 compute: off (this Intel CPU has %s but not amx_bf16: bfloat16 is no faster "
                 "there, and its conversions make it slower: float32 is faster here)", ", ".join(flags))
        return False
    if flags:
        log.info("bfloat16 compute: on (this CPU has %s)", ", ".join(flags))
        return True
    log.info("bfloat16 compute: off (this CPU has neither %s: float32 is faster here)",
             " nor ".join(BFLOAT16_CPU_FLAGS))
    return False


def accelerator() -> str:
    """The GPU or TPU Keras trains on, or "" on a CPU."""
    if keras.backend.backend() == "torch":  # Keras has no device listing for torch
        import torch

        return "cuda" if torch.cuda.is_available() else ""
    try:
        devices = keras.distribution.list_devices()
    except (AttributeError, NotImplementedError):  # a backend without keras.distribution
        return ""
    return "" if not devices or devices[0].startswith("cpu") else devices[0]


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first NVIDIA GPU's compute capability, or None where it is not known. Below 8.0 (Ampere)
    a GPU has no native bfloat16 arithmetic (T4 7.5, V100 7.0, P100 6.0)."""
    try:
        if keras.backend.backend() == "torch":
            import torch

            return tuple(torch.cuda.get_device_capability(0))[:2]
        if keras.backend.backend() == "jax":
            import jax

            said = getattr(jax.devices()[0], "compute_capability", None)  # "7.5" on CUDA
            return tuple(int(part) for part in str(said).split(".")[:2]) if said else None
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        said = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") if gpus else None
        return tuple(said)[:2] if said else None
    except Exception:  # ROCm, a backend or version without these calls: unknown, as before
        return None


def onednn_off() -> bool:
    """TensorFlow on the CPU without its oneDNN kernels (TF_ENABLE_ONEDNN_OPTS=0, or a build without
    them): only oneDNN computes bfloat16 natively, and TensorFlow's own kernels emulate it. On a 2-core
    AMX Xeon a step of the default's network took 21.8 s in bfloat16 against 2.1 s in float32 that
    way, its fallback's 10.9 s against 0.57 s (a review's timing)."""
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from tensorflow.python.util._pywrap_util_port import IsMklEnabled
    except ImportError:  # a TensorFlow without that probe: nothing known
        return False
    return not IsMklEnabled()


def cpu_bfloat16_flags(cpuinfo: Path | None = None) -> list[str]:
    """The native-bfloat16 flags this CPU reports; none where /proc/cpuinfo is absent (not Linux)."""
    return cpu_flags(BFLOAT16_CPU_FLAGS, cpuinfo)


def bfloat16_slower_on_intel(flags: list[str], cpuinfo: Path | None = None) -> bool:
    """AVX-512 BF16 without AMX on an Intel CPU: oneDNN's convolutions there took 1.8 times as long in
    bfloat16 as in float32, forward and backward, and the default's network trained 1.75 times
    faster in float32 (benchmarks/ablations/README.md, "An Intel Xeon without AMX"). Presumably
    Intel's bfloat16 dot product does no more multiply-adds per cycle than its float32 FMAs, and
    the conversions come on top. AMD's Zen 4, the other CPU measured with AVX-512 BF16 and no AMX,
    fitted all 22 epochs the default then had in bfloat16 (sessions 23-24) and keeps it: it was not
    timed in float32."""
    return "amx_bf16" not in flags and cpu_vendor(cpuinfo) == "GenuineIntel"


def warn_if_onednn_missed() -> None:
    """Say when TensorFlow was imported before ferkit and so never saw ferkit ask for its oneDNN
    kernels: on an AVX2-only 2-core EPYC the default's fallback network trained at 98 faces/s
    without them and 141 with them (benchmarks/ablations/README.md), and nothing else says why."""
    import ferkit

    if ferkit._TENSORFLOW_FIRST and onednn_off():
        log.warning("TensorFlow was imported before ferkit, with its oneDNN kernels off: on this CPU "
                    "training may take 1.4 times as long. Import ferkit before keras and tensorflow, "
                    "or set TF_ENABLE_ONEDNN_OPTS=1 before Python starts")
