"""The benches' CPU budget: what one unit of work cost the whole stack, and what that allows on
this machine (no I/O beyond the process's own CPU affinity)."""

from __future__ import annotations

import os

import pytest

from bench._harness import cpu_budget


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def test_ceiling_and_cores_needed_follow_from_the_cpu_per_unit() -> None:
    cpu = {
        "worker_process": {"cpu_s": 6.0, "cores": 0.8},
        "twins": {"cpu_s": 3.0, "cores": 0.4},
        "temporal_dev_server": {"cpu_s": 1.0, "cores": 0.1},
    }
    budget = cpu_budget(cpu, 10_000, rate=100.0)

    assert budget["ms_per_unit"] == {
        "worker_process": 0.6,
        "twins": 0.3,
        "temporal_dev_server": 0.1,
    }
    assert budget["ms_per_unit_total"] == pytest.approx(1.0)
    cpus = _cpus()
    assert budget["cpus_usable"] == cpus
    # 1 ms of CPU an entry: at best 1,000 entries a second per CPU
    assert budget["ceiling_per_s"] == pytest.approx(1000.0 * cpus)
    assert budget["cores_needed"] == pytest.approx(0.1)
    assert budget["saturated"] is False


def test_a_rate_that_needs_more_cores_than_the_machine_has_is_saturated() -> None:
    cpu = {"worker_process": {"cpu_s": 30.0, "cores": 1.0}}
    cpus = _cpus()
    budget = cpu_budget(cpu, 1000, rate=100.0 * cpus)  # 30 ms a unit at 100/s per CPU: 3 a CPU
    assert budget["cores_needed"] == pytest.approx(3.0 * cpus)
    assert budget["saturated"] is True
    assert cpu_budget(cpu, 0) == {}  # nothing done: nothing to say
