"""Memory and CPU of a process tree (psutil), for benchmarks that start a server.

A child that exits between listing and measuring counts nothing: the figures are of the
processes alive at each look.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any


def _measured(process, measure: Callable[[Any], float], children: bool) -> Iterator:
    """(process, measure(process)) for ``process`` and, with ``children``, its descendants."""
    for p in [process, *(process.children(recursive=True) if children else [])]:
        try:
            yield p, measure(p)
        except Exception:  # noqa: BLE001 - a child that just exited
            continue


def _cpu_s(p) -> float:
    times = p.cpu_times()
    return times.user + times.system


def tree_sum(process, measure: Callable[[Any], float], children: bool = True) -> float:
    """``measure(p)`` summed over a psutil process and, with ``children``, its descendants."""
    return sum(value for _, value in _measured(process, measure, children))


class TreeMemory:
    """Samples the resident memory of a process and its children; keeps the peak (bytes)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        return int(tree_sum(self.process, lambda p: p.memory_info().rss))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._sample())
            except Exception:  # noqa: BLE001 - the server exited
                return
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def own_cpu_s() -> float:
    """User + system CPU seconds of this process (its threads; not its children)."""
    import psutil

    return _cpu_s(psutil.Process())


def cpu_by_process(pid: int) -> dict[int, tuple[str, float]]:
    """{pid: (name, user + system CPU seconds)} for a process and each of its descendants;
    the root itself is named ``server``."""
    import psutil

    return {
        p.pid: ("server" if p.pid == pid else p.name(), cpu)
        for p, cpu in _measured(psutil.Process(pid), _cpu_s, children=True)
    }


def cpu_split(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds used between two :func:`cpu_by_process` snapshots, summed by process name
    (a process started in between counts from zero)."""
    split: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        split[name] = split.get(name, 0.0) + cpu - before.get(pid, (name, 0.0))[1]
    return split
