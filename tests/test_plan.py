"""`dlb-tune plan`: corners, calibration on real data, and the ASHA simulation against Ray's own."""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest
from finished_sweep import NAME, finished_sweep
from typer.testing import CliRunner

from dlb_tune.asha import SweepState, estimate, rungs, simulate, time_left
from dlb_tune.cli import app
from dlb_tune.distributions import SpaceError
from dlb_tune.plan import CalibrationContext, corners, size_params
from dlb_tune.space import parse_space

runner = CliRunner()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir, ray_local):
    return finished_sweep(tmp_path_factory, data_dir)


def _spec(params, **top):
    return parse_space({"task": "fcn", "metric": "val_acc", "mode": "max", "params": params, **top})


# --- corners -----------------------------------------------------------------------------------


def test_corners_are_the_extremes_of_size_like_params():
    spec = _spec({"hidden_size": {"choice": [256, 64, 128]}, "num_layers": {"randint": [1, 3]},
                  "lr": {"loguniform": [1e-3, 1e-1]}, "activation": {"choice": ["relu", "tanh"]}})
    vary = size_params(spec)
    assert vary == ["hidden_size", "num_layers"]  # lr and activation do not set the cost
    cs = corners(spec, vary, max_corners=4)
    assert [(c["hidden_size"], c["num_layers"]) for c in cs[:2]] == [(64, 1), (256, 3)]  # all-low, all-high
    assert sorted((c["hidden_size"], c["num_layers"]) for c in cs) == [(64, 1), (64, 3), (256, 1), (256, 3)]
    assert all(c["lr"] == pytest.approx(1e-2) and c["activation"] == "tanh" for c in cs)  # mid-range
    assert len(corners(spec, vary, max_corners=3)) == 3


def test_vary_must_name_a_searched_parameter():
    spec = _spec({"hidden_size": {"choice": [64, 128]}, "lr": 0.1})
    with pytest.raises(SpaceError, match="--vary lr: not searched"):
        size_params(spec, ["lr"])


# --- the ASHA simulation ------------------------------------------------------------------------


def _ray_asha_epochs(quality, max_epochs, grace, rf):
    """Trials one after another through Ray's own ASHA scheduler: epochs each one ran."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class T:  # the two attributes the scheduler reads
        def __init__(self, i):
            self.trial_id = str(i)

    sched = ASHAScheduler(metric="q", mode="max", max_t=max_epochs, grace_period=grace, reduction_factor=rf,
                          time_attr="epoch")
    out = []
    for i, q in enumerate(quality):
        trial = T(i)
        sched.on_trial_add(None, trial)
        for epoch in range(1, max_epochs + 1):
            if sched.on_trial_result(None, trial, {"epoch": epoch, "q": q}) == TrialScheduler.STOP:
                break
        out.append(epoch)
    return out


@pytest.mark.parametrize("max_epochs,grace,rf", [(12, 2, 3), (3, 1, 2), (27, 1, 3)])
def test_simulation_stops_trials_where_ray_asha_does(max_epochs, grace, rf):
    rnd = random.Random(max_epochs)
    quality = [rnd.random() for _ in range(40)]
    _, _, epochs = simulate(quality, [1.0] * 40, max_epochs=max_epochs, concurrency=1,
                            milestones=rungs(max_epochs, grace, rf), reduction_factor=rf)
    assert epochs == _ray_asha_epochs(quality, max_epochs, grace, rf)
    assert min(epochs) == grace and max(epochs) == max_epochs


def test_simulation_fifo_and_concurrency():
    # FIFO, 5 trials of 4 epochs at 2 s/epoch, 2 at a time: 3 waves of 8 s; 1 s start each
    total, wall, epochs = simulate([0.5] * 5, [2.0] * 5, max_epochs=4, concurrency=2, milestones=None,
                                   reduction_factor=3, start_s=1.0)
    assert total == 20 and epochs == [4] * 5 and wall == pytest.approx(3 * 9.0)
    total, wall, _ = simulate([0.5] * 5, [2.0] * 5, max_epochs=4, concurrency=2, milestones=None,
                              reduction_factor=3, budget_s=9.0)
    assert wall == 9.0 and total == 8  # the budget ends the sweep inside the second wave


def test_time_left_is_the_rest_of_this_sweep():
    """By hand, 10 s an epoch, 2 slots. FIFO, 4 trials of 3 epochs: one finished, one 1 epoch in
    (ends at 20 s), two pending: the first starts now (ends at 30 s), the second at 20 s (ends
    at 50 s). A share of a fresh sweep's trial-epochs said (12 - 4) * 10 / 2 = 40 s."""
    kw = dict(elapsed_s=100.0, concurrency=2, grace_period=1, reduction_factor=3, budget_s=None)
    fifo = SweepState(finished=[3], running=[1], pending=2)
    assert time_left([10.0], fifo, max_epochs=3, scheduler="fifo", **kw) == pytest.approx(50.0)
    # ASHA, rungs 1, 3, 9: five trials finished, four of them stopped at epoch 1; the last one, 3
    # epochs in, has no rung left before its last epoch: 6 epochs, whatever the qualities.
    asha = SweepState(finished=[1, 1, 1, 1, 9], running=[3], pending=0)
    assert time_left([10.0], asha, max_epochs=9, scheduler="asha", **kw) == pytest.approx(60.0)
    # A trial that reported its last epoch is finishing: nothing left; the budget caps the rest.
    assert time_left([10.0], SweepState([3], [3], 0), max_epochs=3, scheduler="fifo", **kw) == 0.0
    assert time_left([10.0], fifo, max_epochs=3, scheduler="fifo", **{**kw, "budget_s": 130.0}) == 30.0


def test_time_left_counts_the_rungs_finished_trials_filled():
    """Pending trials meet rungs that finished trials filled: with 30 trials recorded at epoch 1,
    about two thirds of the new ones stop there (rf 3), so the rest takes far less than if each
    ran all 9 epochs."""
    kw = dict(elapsed_s=0.0, concurrency=1, grace_period=1, reduction_factor=3, budget_s=None, max_epochs=9)
    state = SweepState(finished=[1] * 20 + [3] * 7 + [9] * 3, running=[], pending=6)
    left = time_left([1.0], state, scheduler="asha", simulations=200, **kw)
    fifo = time_left([1.0], state, scheduler="fifo", **kw)
    assert fifo == 54.0 and left < 0.5 * fifo


def test_estimate_lies_between_no_stopping_and_all_stopped():
    est = estimate([1.0, 3.0], num_samples=16, max_epochs=12, concurrency=2, scheduler="asha", grace_period=2,
                   reduction_factor=3, start_s=0.0, budget_s=None)
    assert 16 * 2 < est["trial_epochs_p10"] <= est["trial_epochs"] <= est["trial_epochs_p90"] < 16 * 12
    fifo = estimate([2.0], num_samples=4, max_epochs=3, concurrency=2, scheduler="fifo", grace_period=1,
                    reduction_factor=2, start_s=0.0, budget_s=None)
    assert fifo["trial_epochs"] == 12 and fifo["trial_s"] == pytest.approx(12.0)


# --- calibration on real data -------------------------------------------------------------------


def test_calibration_context_cuts_loops_and_knows_their_length(data_dir):
    from dlb_tune.tasks.fcn import FCN, FCNConfig

    cfg = FCNConfig(hidden_size=32, batch_size=50)
    data = FCN.load_data(data_dir, cfg, limit=1000)
    ctx = CalibrationContext(max_epochs=1, max_batches=4)
    task = FCN(cfg, data, ctx)
    task.train_epoch(0)
    [loop] = ctx.loops
    n_train = len(data["train"]["y"])
    assert loop.total == math.ceil(n_train / 50) and len(loop.times) == 4 and loop.end >= loop.times[-1]
    assert ctx.take() > 0 and ctx.loops == []  # the 16 batches not run are accounted for


# --- the command, before a real sweep, and the report after it ----------------------------------


def test_plan_before_the_sweep_and_report_after(sweep):
    out = sweep.plan_output
    assert "timing 2 corner(s) of hidden_size" in out
    assert "hidden_size=32" in out and "hidden_size=128" in out
    assert "expected trial-epochs" in out and "expected wall time" in out
    plan = json.loads((sweep.exp / "plan.json").read_text())
    assert plan["concurrency"] == 1 and plan["rungs"] == [1, 2] and len(plan["corners"]) == 2
    est = plan["estimate"]
    assert 6 * 1 <= est["trial_epochs_p10"] <= est["trial_epochs"] <= est["trial_epochs_p90"] <= 6 * 3
    assert all(c["epoch_s"] > 0 and c["train_s"] > 0 for c in plan["corners"])
    result = runner.invoke(app, ["report", NAME, "--storage", str(sweep.storage)])
    assert result.exit_code == 0, result.output
    md = (sweep.exp / "report.md").read_text()
    section = md.split("## Plan against actual")[1].split("\n## ")[0]
    row = next(ln for ln in section.splitlines() if ln.startswith("| trial-epochs |")).split("|")
    assert row[2].strip().startswith(f"{est['trial_epochs']:.0f} (")
    assert int(row[3]) == pd.read_parquet(sweep.exp / "results.parquet")["epochs"].sum()
    final = json.loads((sweep.exp / "final.json").read_text())
    assert f"| {final['wall_s']:.1f} |" in section


def test_plan_rejects_a_bad_vary(data_dir):
    result = runner.invoke(app, ["plan", "fcn", "--data-dir", str(data_dir), "--vary", "nosuch", "--limit", "500"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --vary nosuch: not searched")
