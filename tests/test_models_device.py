"""pipeline.models.device: torch threads capped at the CPUs the process may use."""

from __future__ import annotations

import os

import pytest
import torch

from pipeline.models.device import set_cpu_threads, usable_cpus


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_usable_cpus_is_the_affinity_mask() -> None:
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_threads_are_capped_at_the_usable_cpus(restore_threads: None) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert set_cpu_threads(cpus + 6) == cpus and torch.get_num_threads() == cpus
    assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_cpu_threads(0) == 1  # never zero threads
