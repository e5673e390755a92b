"""The wall-time model with the driver's limit (bench/scaling.py), and the driver-scale figures
derived from a run's events (bench/driver_scale.py). Pure arithmetic: no Ray."""

from __future__ import annotations

import pytest

from bench.driver_scale import busiest_rate, slot_gaps
from bench.scaling import DriverCost, predict

CALIB = {"trial_walls": [4.0] * 64, "epochs": 16, "head_s": 2.0, "tail_s": 0.5, "gap_s": 0.0, "actor_start_s": 0.0}


def test_the_driver_bounds_the_wall_only_past_saturation():
    driver = DriverCost(per_result_s=0.01)  # 100 results/s; a trial reports every 4/16 s
    assert driver.saturation_slots(4.0 / 16) == pytest.approx(25)
    # 8 slots: 8 waves of 4 s; the driver needs 64 * 16 * 0.01 = 10.24 s < 32 s, so no change.
    assert predict(CALIB, 8, None, driver) == pytest.approx(predict(CALIB, 8, None)) == pytest.approx(2 + 32 + 0.5)
    # 64 slots: one wave of 4 s, but the driver's 10.24 s set the wall.
    assert predict(CALIB, 64, None) == pytest.approx(2 + 4 + 0.5)
    assert predict(CALIB, 64, None, driver) == pytest.approx(2 + 10.24 + 0.5)


def test_measured_round_trips_and_slot_gaps_lengthen_each_trial():
    driver = DriverCost(report_s=0.1, gap_s=0.5)  # no bound: only the per-trial costs
    # 64 trials of 4 s + 16 round trips of 0.1 s, each after a 0.5 s wait: 8 waves of 6.1 s on 8 slots.
    assert predict(CALIB, 8, None, driver) == pytest.approx(2 + 8 * 6.1 + 0.5)


class Events:
    """A run's driver-side timestamps, as DriverProbe keeps them."""

    def __init__(self, started, ended):
        self.started, self.ended = started, ended


def test_a_freed_slot_waits_until_the_next_trial_starts():
    # 2 slots: a and b start at once; c takes the slot a freed at 3.0, d the one b freed at 4.0.
    events = Events(started={"a": 0.0, "b": 0.1, "c": 3.5, "d": 4.2}, ended={"a": 3.0, "b": 4.0, "c": 7, "d": 8})
    assert slot_gaps(events, 2) == pytest.approx([0.5, 0.2])


def test_busiest_rate_leaves_out_ramp_and_tail():
    times = [0.0, 5.0] + [10 + 0.1 * i for i in range(12)] + [30.0, 40.0]  # 16 results, 10/s in the middle
    assert busiest_rate(times) == pytest.approx(8 / 0.8)
