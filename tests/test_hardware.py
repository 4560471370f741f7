"""CPU flags from /proc/cpuinfo (ferkit.hardware)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ferkit.hardware import cpu_flags, cpu_vendor

CPUINFO = ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\n"
           "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")


def test_the_flags_asked_for_that_the_cpu_reports_in_the_order_asked(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert cpu_flags(("amx_int8", "avx512_vnni", "avx2"), tmp_path / "cpuinfo") == ["avx512_vnni", "avx2"]


def test_a_flag_is_a_whole_word_not_part_of_one(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert cpu_flags(("avx512", "vnni"), tmp_path / "cpuinfo") == []


def test_no_cpuinfo_or_no_flags_line_means_no_flags(tmp_path):
    assert cpu_flags(("avx2",), tmp_path / "absent") == []
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_flags(("fp",), tmp_path / "arm") == []


def test_the_vendor_and_flags_are_the_first_cores(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2\n\n"
                                      "processor\t: 1\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f\n")
    assert cpu_vendor(tmp_path / "cpuinfo") == "GenuineIntel"
    assert cpu_flags(("avx2", "avx512f"), tmp_path / "cpuinfo") == ["avx2"]
    assert cpu_vendor(tmp_path / "absent") == ""
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_vendor(tmp_path / "arm") == ""


def test_only_the_first_core_is_read_after_a_leading_blank_line(tmp_path):
    """The kernel writes the file as it is read: the other cores' fields are not asked for."""
    (tmp_path / "cpuinfo").write_text("\nprocessor\t: 0\nflags\t\t: fpu avx2\n\n"
                                      "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f\n")
    assert cpu_flags(("avx2",), tmp_path / "cpuinfo") == ["avx2"]
    assert cpu_vendor(tmp_path / "cpuinfo") == ""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not shutil.which("taskset"), reason="needs Linux' taskset")
def test_the_cores_are_those_this_process_may_run_on():
    """Under taskset or a container's cpuset the machine has more cores than ferkit may use."""
    code = "from ferkit.hardware import usable_cores; print(usable_cores())"
    core = str(min(os.sched_getaffinity(0)))  # one this process may use: core 0 may not be (a cpuset 2-3)
    one = subprocess.run(["taskset", "-c", core, sys.executable, "-c", code], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    assert one.stdout.strip() == "1"


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "200000 100000\n"}, 2),                                   # v2, --cpus 2
    ({"cpu.max": "150000 100000\n"}, 2),                                   # --cpus 1.5: the next whole core
    ({"cpu.max": "max 100000\n"}, 16),                                     # v2, no quota
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # v1, --cpus 1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 16),     # v1, no quota
    ({}, 16),                                                              # no cgroup files (macOS)
])
def test_usable_cores_honours_a_cgroup_cpu_quota(tmp_path, monkeypatch, files, expected):
    from ferkit import hardware

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(hardware, "CGROUP", tmp_path)
    monkeypatch.setattr(hardware, "SELF_CGROUP", tmp_path / "no-such-file")  # its own cgroup is the root
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert hardware.usable_cores() == expected


@pytest.mark.parametrize("files, expected", [
    ({"meminfo": "MemTotal: 8000 kB\nMemAvailable:    4000 kB\n"}, 4000 * 1024),
    ({"meminfo": "MemAvailable: 4000 kB\n", "memory.max": "1048576\n", "memory.current": "24576\n"}, 2 ** 20 - 24576),
    ({"meminfo": "MemAvailable: 4 kB\n", "memory.max": "1048576\n", "memory.current": "0\n"}, 4096),  # the least
    ({"meminfo": "MemAvailable: 4000 kB\n", "memory.max": "max\n"}, 4000 * 1024),       # a cgroup with no limit
    ({"memory.max": "1048576\n", "memory.current": "2000000\n"}, 0),                       # over it, no meminfo
    ({"memory.max": "1048576\n", "memory.current": "1000000\n",
      "memory.stat": "anon 200000\nfile 800000\ninactive_file 700000\n"}, 1048576 - 300000),  # its cache dropped
    ({"memory.max": "1048576\n", "memory.current": "1000000\n", "memory.stat": "garbled\n"}, 48576),
    ({"meminfo": "MemTotal: 8000 kB\n"}, None),                                            # kernels before 3.14
    ({}, None),                                                                            # macOS, Windows
])
def test_free_memory_is_the_least_of_the_kernels_and_a_cgroups(tmp_path, monkeypatch, files, expected):
    from ferkit import hardware

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(hardware, "CGROUP", tmp_path)
    monkeypatch.setattr(hardware, "SELF_CGROUP", tmp_path / "no-such-file")
    monkeypatch.setattr(hardware, "MEMINFO", tmp_path / "meminfo")
    assert hardware.free_memory() == expected


# Where the process sits in each hierarchy (/proc/self/cgroup), and the limit files of that tree.
_V1_HOST = "9:cpu,cpuacct:/jobs/a\n4:memory:/jobs/a\n0::/\n"  # v1 below the root, as on a host: CI's machine
_V2_SLICE = "0::/slice/app\n"
_V1_UNLIMITED = str(9223372036854771712)


@pytest.mark.parametrize("own, files, memory, cores", [
    (_V1_HOST, {"memory/jobs/a/memory.limit_in_bytes": "1048576", "memory/jobs/a/memory.usage_in_bytes": "24576",
                "memory/memory.limit_in_bytes": _V1_UNLIMITED, "memory/memory.usage_in_bytes": "9999999",
                "cpu/jobs/a/cpu.cfs_quota_us": "100000", "cpu/jobs/a/cpu.cfs_period_us": "100000"},
     2 ** 20 - 24576, 1),                                                    # v1 limits on its own cgroup
    (_V1_HOST, {"memory/jobs/memory.limit_in_bytes": "1048576", "memory/jobs/memory.usage_in_bytes": "1000000",
                "memory/jobs/memory.stat": "cache 900000\ntotal_inactive_file 700000\n",
                "memory/jobs/a/memory.limit_in_bytes": _V1_UNLIMITED, "memory/jobs/a/memory.usage_in_bytes": "1",
                "cpu/jobs/cpu.cfs_quota_us": "300000", "cpu/jobs/cpu.cfs_period_us": "100000"},
     1048576 - 300000, 3),                                                   # v1 limits on a parent
    (_V1_HOST, {"memory/jobs/a/memory.limit_in_bytes": _V1_UNLIMITED, "memory/jobs/a/memory.usage_in_bytes": "1"},
     4000 * 1024, 16),                                                       # v1 with no limit: MemAvailable
    (_V2_SLICE, {"slice/memory.max": "1048576", "slice/memory.current": "24576", "slice/app/memory.max": "max",
                 "slice/cpu.max": "400000 100000", "slice/app/cpu.max": "200000 100000"},
     2 ** 20 - 24576, 2),                                                    # v2: the least of own and parents
    ("0::/../elsewhere\n", {"memory.max": "1048576", "memory.current": "0",
                            "../elsewhere/memory.max": "1", "../elsewhere/memory.current": "0"},
     2 ** 20, 16),                                                           # a place outside the view: the root
])
def test_cgroup_limits_are_read_where_this_process_sits_and_above(tmp_path, monkeypatch, own, files, memory, cores):
    from ferkit import hardware

    root = tmp_path / "cgroup"
    for name, text in {"../self-cgroup": own, "../meminfo": "MemAvailable: 4000 kB\n", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(hardware, "CGROUP", root)
    monkeypatch.setattr(hardware, "SELF_CGROUP", tmp_path / "self-cgroup")
    monkeypatch.setattr(hardware, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert hardware.free_memory() == memory
    assert hardware.usable_cores() == cores
