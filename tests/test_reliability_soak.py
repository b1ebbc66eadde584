"""Soak: the demo workflow rerun three times in a row, each time killed (SIGKILL to the Snakemake
process group) at a random moment of a random stage, then recovered with `snakemake --unlock`
+ `snakemake --rerun-incomplete maps`: every time, right after the kill nothing half-written sits
at a final output path, and after the recovery every output equals the uninterrupted run's.

Each round forces a random stage to rerun (``--forcerun``: the features, the training or the
prediction, and everything downstream) and kills the run a random 0-4 s after its first job
started (Snakemake printed it: the moment is measured from there, not from the start of the run,
whose start-up takes longer on a busy machine); some rounds kill the recovery run too, 0-3 s
into its first job. The randomness is seeded (``RELIABILITY_SOAK_SEED``, default 2026) and
printed, so a failure can be replayed; the kill moments are wall-clock, so the stage hit depends
on the machine's speed - the test logs which jobs were running at each kill.
A kill right after the job is announced lands while Snakemake deletes the forced job's old
outputs (a non-atomic rmtree): the half-deleted store must fail its completion manifest and be
rebuilt by the recovery (pipeline.raster.zarr_io) - the failure this soak once found.
The rounds run on a copy of the session's demo run (tests/conftest.py ``demo_run``), which the
other workflow tests read, in the background as soon as that run is made (tests/conftest.py
``Prefetch``), while other tests run (the kill moments land on a busier machine: the stage hit
varies anyway); the test waits for them and fails with what they raised.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PREFETCH, Prefetch, copy_run, prefetch_entry, prefetched
from test_reliability_kill import (
    ORIGINS,
    assert_no_partial_outputs,
    assert_same,
    group_alive,
    kill_group,
    recover,
    reference,
    run,
    snapshot,
    start,
    stop_runs,
    wait_for,
)

SEED = int(os.environ.get("RELIABILITY_SOAK_SEED", "2026"))
ROUNDS = 3
FORCED = ("build_features", "train_model", "predict_map")  # killing the cube write: test_reliability_kill.py


def running_jobs(workdir: Path) -> list[str]:
    """Rules the last Snakemake run had started and not finished when it was killed (from its output)."""
    out = max(workdir.glob("snakemake-*.out"), key=lambda p: int(p.stem.split("-")[1]))
    text = out.read_text(errors="replace")
    started = re.findall(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", text, flags=re.MULTILINE)
    done = set(re.findall(r"^Finished jobid: (\d+)", text, flags=re.MULTILINE))
    return [rule for rule, jobid in started if jobid not in done]


def first_job_started(workdir: Path) -> Callable[[], bool]:
    """Whether the last Snakemake run started in ``workdir`` has announced a job (its output)."""
    out = max(workdir.glob("snakemake-*.out"), key=lambda p: int(p.stem.split("-")[1]))
    return lambda: re.search(r"^(?:local)?rule \w+:$", out.read_text(errors="replace"), flags=re.MULTILINE) is not None


def kill_after(proc, seconds: float) -> bool:
    """Kill the run ``seconds`` from now, if it is still going; whether it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    kill_group(proc)
    return not group_alive(proc.pid)


def soak(origin: Path, workdir: Path) -> list[str]:
    """The rounds, on a copy at ``workdir`` of the shared run ``origin``: which jobs each kill hit."""
    origin, ref = reference(origin)
    copy_run(origin, workdir)
    ORIGINS[workdir] = [origin]  # the copied outputs name the shared run's folder
    assert_same(snapshot(workdir), ref, complete=True)
    dry = run(workdir, "-n", "maps")  # the copy is up to date: modification times and metadata kept
    assert "Nothing to be done" in dry.stdout + dry.stderr
    rng = random.Random(SEED)
    kills: list[str] = []
    for round_ in range(ROUNDS):
        rule, when = rng.choice(FORCED), rng.uniform(0.0, 4.0)
        command = ("--forcerun", rule, "maps")
        proc = start(workdir, *command)
        assert wait_for(proc, first_job_started(workdir)), f"round {round_}: the forced rerun of {rule} ran no job"
        assert kill_after(proc, when), f"round {round_}: the forced rerun of {rule} ended within {when:.1f} s"
        kills.append(f"round {round_}: --forcerun {rule}, killed {when:.1f} s into its first job, "
                     f"during {running_jobs(workdir)}")
        assert_no_partial_outputs(workdir, ref)
        if rule in ("train_model", "predict_map") and rng.random() < 0.5:  # kill the recovery run as well
            assert run(workdir, "--unlock").returncode == 0
            proc = start(workdir, "--rerun-incomplete", *command)
            when = rng.uniform(0.0, 3.0)
            if wait_for(proc, first_job_started(workdir)) and kill_after(proc, when):
                kills.append(f"round {round_}: its recovery killed {when:.1f} s into its first job, "
                             f"during {running_jobs(workdir)}")
                assert_no_partial_outputs(workdir, ref)
        # the interrupted command, repeated: `maps` alone would find the maps up to date and leave
        # the outputs that the forced rerun had already removed missing
        done = recover(workdir, *command)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert_same(snapshot(workdir), ref, complete=True)
        assert not list((workdir / "results").rglob(".tmp-*"))
    return kills


def _soak_in_the_background(factory: pytest.TempPathFactory) -> Prefetch:
    demo = prefetch_entry("demo_run", factory)
    assert demo is not None
    workdir = factory.mktemp("soak") / "run"
    return Prefetch("soak_rounds", workdir.parent, [lambda: soak(demo.workdir, workdir)], after=demo,
                    on_stop=stop_runs)


PREFETCH["soak_rounds"] = _soak_in_the_background


@pytest.fixture
def soak_rounds(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], list[str]]:
    """Waits for the rounds (:func:`soak`), which start in the background once the shared run is
    made (tests/conftest.py ``Prefetch``); what they raise, it raises in the test."""
    return lambda: prefetched("soak_rounds", tmp_path_factory)[1]


@pytest.mark.soak  # runs by default; `-m 'not soak'` leaves it out
@pytest.mark.workflow
def test_three_rounds_of_random_kills_end_with_identical_outputs(soak_rounds: Callable[[], list[str]],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    kills = soak_rounds()
    with capsys.disabled():
        print(f"\nsoak seed {SEED}")
        print("\n".join(kills))
    assert len(kills) >= ROUNDS
