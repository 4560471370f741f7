"""What this machine's CPU computes natively, as Linux lists it in /proc/cpuinfo.

Training (bfloat16 or float32) and inference (which int8 kernels are exact) each choose the faster
arithmetic that is right on this CPU. Where no flags can be read (macOS, Windows, containers
without /proc) none are reported, and each falls back to the choice that is right everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def cpu_flags(wanted: Iterable[str], cpuinfo: Path | None = None) -> list[str]:
    """Those of the flags `wanted` that this CPU reports, in the order asked."""
    flags = _first_core(cpuinfo).get("flags", "").split()
    return [flag for flag in wanted if flag in flags]


def cpu_vendor(cpuinfo: Path | None = None) -> str:
    """"GenuineIntel", "AuthenticAMD", ...; "" where not known. The same instructions can cost
    differently on each: AVX-512 BF16 trained slower than float32 on an Intel Xeon, and AMD's Zen 4
    was not timed in float32 (ferkit.training.precision)."""
    return _first_core(cpuinfo).get("vendor_id", "")


def _first_core(cpuinfo: Path | None) -> dict[str, str]:
    """The first core's fields. Read up to the blank line that ends them only: the kernel writes the
    file core by core as it is read, so on a machine with hundreds of cores the rest would be
    generated for nothing."""
    fields: dict[str, str] = {}
    try:
        with (cpuinfo or CPUINFO).open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip() and fields:
                    break
                name, colon, value = line.partition(":")
                if colon:
                    fields.setdefault(name.strip(), value.strip())
    except OSError:
        return {}
    return fields


def most_threads() -> int:
    """The most ONNX Runtime threads ferkit asks for, 4 x the usable cores: more only slow it (100,000
    threads took minutes to start)."""
    return 4 * usable_cores()


def usable_cores() -> int:
    """The cores this process may run on: its affinity (taskset, a container's cpuset), not the
    machine's count, which started two busy ONNX Runtime threads on one allowed core; and no more
    than a cgroup's CPU quota allows (docker --cpus 2, a Kubernetes CPU limit), which leaves the
    affinity at all of the host's cores."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cpu_quota() -> float | None:
    """The fewest CPUs a cgroup's CFS quota allows, or None without one: cgroup v2's cpu.max ("max 100000"
    or "200000 100000"), or v1's cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us."""
    quotas = []
    for folder in _cgroup_folders("cpu"):
        try:
            quota, period = (folder / "cpu.max").read_text(encoding="utf-8").split()[:2]
            if quota != "max":
                quotas.append(int(quota) / int(period))
            continue
        except (OSError, ValueError, ZeroDivisionError):
            pass
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
            period = int((folder / "cpu.cfs_period_us").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            quotas.append(quota / period)
    return min(quotas, default=None)


def free_memory() -> int | None:
    """Bytes that can still be taken: the kernel's MemAvailable, or what a cgroup's limit leaves where
    that is less (docker --memory); None where neither can be read (macOS, Windows). Linux grants
    more than it has and kills the process that touches it: said before, not after."""
    free = None
    try:
        for line in MEMINFO.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    for folder in _cgroup_folders("memory"):
        left = _cgroup_memory_left(folder)
        if left is not None:
            free = left if free is None else min(free, left)
    return free


# Each cgroup version's names for a memory limit, the memory in use, and the droppable cache in memory.stat.
# v1 writes "no limit" as a number near 2**63, which leaves MemAvailable the lesser.
_MEMORY_FILES = (("memory.max", "memory.current", "inactive_file"),                       # v2
                 ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))  # v1


def _cgroup_memory_left(folder: Path) -> int | None:
    """What one cgroup's memory limit leaves: its use less the file cache the kernel drops first
    (inactive_file, as docker and the kubelet count it), since a container that has read a large
    dataset sits near its limit in cache. None where the folder sets no limit."""
    for limit_file, used_file, cache in _MEMORY_FILES:
        try:
            limit = (folder / limit_file).read_text(encoding="utf-8").strip()
            if limit == "max":
                return None
            limit, used = int(limit), int((folder / used_file).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        try:
            stat = dict(line.split()[:2] for line in (folder / "memory.stat").read_text(encoding="utf-8").splitlines()
                        if line.strip())
            used = max(0, used - int(stat.get(cache, 0)))
        except (OSError, ValueError):
            pass
        return max(0, limit - used)
    return None


def _cgroup_folders(controller: str) -> list[Path]:
    """Where the limits that bind this process's `controller` ("cpu", "memory") are written: its own
    cgroup, then each parent up to the root, since a limit on a parent (a systemd slice, a pod) binds
    too. v2 keeps all controllers in one tree at CGROUP, v1 one per controller at CGROUP/<controller>;
    /proc/self/cgroup names the process's place in each. Inside a container's cgroup namespace that
    place reads "/", the root; elsewhere it is a path below it (memory:/process_api/... on our CI)."""
    places = {"": "/", controller: "/"}
    try:
        for line in SELF_CGROUP.read_text(encoding="utf-8").splitlines():
            _, names, place = line.split(":", 2)
            for name in names.split(","):
                if name in places:
                    places[name] = place
    except (OSError, ValueError):
        pass
    folders = []
    for root, place in ((CGROUP, places[""]), (CGROUP / controller, places[controller])):
        parts = [part for part in place.split("/") if part]
        if ".." in parts:  # a place outside this namespace's view: only the root can be read
            parts = []
        folders += [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]
    return folders
