"""Soak: the demo workflow rerun three times in a row, each time killed (SIGKILL to the Snakemake
process group) at a random moment of a random stage, then recovered with `snakemake --unlock`
+ `snakemake --rerun-incomplete maps`: every time, right after the kill nothing half-written sits
at a final output path, and after the recovery every output equals the uninterrupted run's.

Each round forces a random stage to rerun (``--forcerun``: the features, the training or the
prediction, and everything downstream) and kills the run a random 1-6 s after it started;
some rounds kill the recovery run too. The randomness is seeded (``RELIABILITY_SOAK_SEED``,
default 2026) and printed, so a failure can be replayed; the kill moments are wall-clock, so the
stage hit depends on the machine's speed - the test logs which jobs were running at each kill.
A kill in the first second or two of a round lands while Snakemake deletes the forced job's old
outputs (a non-atomic rmtree): the half-deleted store must fail its completion manifest and be
rebuilt by the recovery (pipeline.raster.zarr_io) - the failure this soak once found.
The rounds run on a copy of the session's demo run (tests/conftest.py ``demo_run``), which the
other workflow tests read.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest
from conftest import copy_run
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


def kill_after(proc, seconds: float) -> bool:
    """Kill the run ``seconds`` after it started, if it is still going; whether it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    kill_group(proc)
    return not group_alive(proc.pid)


@pytest.mark.soak  # runs by default; `-m 'not soak'` leaves it out
@pytest.mark.workflow
def test_three_rounds_of_random_kills_end_with_identical_outputs(demo_run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    origin, ref = reference(demo_run)
    workdir = copy_run(origin, tmp_path / "run")
    ORIGINS[workdir] = [origin]  # the copied outputs name the shared run's folder
    assert_same(snapshot(workdir), ref, complete=True)
    dry = run(workdir, "-n", "maps")  # the copy is up to date: modification times and metadata kept
    assert "Nothing to be done" in dry.stdout + dry.stderr
    rng = random.Random(SEED)
    kills: list[str] = []
    with capsys.disabled():
        print(f"\nsoak seed {SEED}")
    for round_ in range(ROUNDS):
        rule, when = rng.choice(FORCED), rng.uniform(1.0, 6.0)
        command = ("--forcerun", rule, "maps")
        proc = start(workdir, *command)
        assert kill_after(proc, when), f"round {round_}: the forced rerun of {rule} ended before {when:.1f} s"
        kills.append(f"round {round_}: --forcerun {rule}, killed at {when:.1f} s during {running_jobs(workdir)}")
        assert_no_partial_outputs(workdir, ref)
        if rule in ("train_model", "predict_map") and rng.random() < 0.5:  # kill the recovery run as well
            assert run(workdir, "--unlock").returncode == 0
            proc = start(workdir, "--rerun-incomplete", *command)
            when = rng.uniform(1.0, 4.0)
            if kill_after(proc, when):
                kills.append(f"round {round_}: its recovery killed at {when:.1f} s during {running_jobs(workdir)}")
                assert_no_partial_outputs(workdir, ref)
        # the interrupted command, repeated: `maps` alone would find the maps up to date and leave
        # the outputs that the forced rerun had already removed missing
        done = recover(workdir, *command)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert_same(snapshot(workdir), ref, complete=True)
        assert not list((workdir / "results").rglob(".tmp-*"))
    with capsys.disabled():
        print("\n".join(kills))
    assert len(kills) >= ROUNDS
