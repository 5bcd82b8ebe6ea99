"""The serving benchmark's CPU accounting (the benchmark itself runs alone, never in CI)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts.bench.proc_stats import cpu_by_process, cpu_split


def test_cpu_split_sums_by_name_and_counts_new_processes_from_zero():
    before = {1: ("server", 10.0), 2: ("VLLM::Worker", 5.0), 3: ("VLLM::Worker", 1.0)}
    after = {
        1: ("server", 12.5),
        2: ("VLLM::Worker", 6.0),
        3: ("VLLM::Worker", 1.5),
        4: ("VLLM::EngineCore", 0.75),  # started during the run
    }
    assert cpu_split(before, after) == {
        "server": 2.5,
        "VLLM::Worker": 1.5,
        "VLLM::EngineCore": 0.75,
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil process tree")
def test_cpu_by_process_names_the_root_server_and_sees_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        snap = cpu_by_process(os.getpid())
        assert snap[os.getpid()][0] == "server"
        assert child.pid in snap
        assert all(cpu >= 0 for _, cpu in snap.values())
    finally:
        child.kill()
        child.wait()
