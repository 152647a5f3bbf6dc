"""bench.soak's kill timing: a kill aimed at one job lands inside that job however fast the jobs before it ran."""

from __future__ import annotations

from bench.soak import ChildRun, KillPoint


def test_a_kill_in_a_job_is_timed_from_that_jobs_start_in_the_killed_run():
    reference = ChildRun(0, started={"gold_a": 0.0, "gold_b": 100.0}, finished={"gold_a": 100.0, "gold_b": 120.0},
                         output=[])
    point = KillPoint.window(reference, "gold_a", ["gold_b"])
    assert point.reference_length == 20.0
    halfway = KillPoint(point.first_job, point.window_start, point.reference_length, 0.5)
    # The killed run's gold_a took 40 s, not 100: the kill still waits for gold_b, then 10 s into it.
    assert not halfway.due({"gold_a": 0.0}, 60.0)
    assert not halfway.due({"gold_a": 0.0, "gold_b": 40.0}, 49.9)
    assert halfway.due({"gold_a": 0.0, "gold_b": 40.0}, 50.0)
