"""The README's promises about a sweep, asserted on real small sweeps of the logging FCN task.

- the test split is never evaluated during a sweep, and once at its end, in the driver, on the
  winner's best checkpoint (also with ``--seeds``, whose re-runs leave it untouched);
- completed, ASHA-stopped, errored and budget-cut trials are each classified as what happened;
- ``--max-failures`` retries a failing trial from its last checkpoint;
- ``compare`` reports each of two different sweeps as its own files say;
- a multi-objective sweep's ``final.json`` holds exactly the Pareto front of its trials.

Interrupted sweeps and resume: ``test_interrupts.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.options import SweepOptions
from dlb_tune.reruns import after_sweep
from dlb_tune.sweep import run_sweep
from dlb_tune.testing import COUNTED_TASK, read_calls, register_counted_task, weights_fingerprint

runner = CliRunner()


def counted_space(record: Path, params: str, **top: object) -> str:
    """A space file for ``fcn_counted`` logging to ``record``; ``top`` sets top-level keys."""
    head = {"metric": "val_acc", "mode": "max", "target": 0.8, "max_epochs": 3, "grace_period": 1,
            "reduction_factor": 2, "num_samples": 4, **top}
    lines = [f"task: {COUNTED_TASK}"] + [f"{k}: {json.dumps(v)}" for k, v in head.items()]
    return "\n".join(lines) + f"\nparams:\n  record: {json.dumps(str(record))}\n  hidden_size: 32\n{params}"


def sweep_in_process(root: Path, name: str, space: str, data_dir: Path, **opts) -> tuple[dict, Path]:
    register_counted_task()
    (root / f"{name}.yaml").write_text(space)
    options = SweepOptions(**{"task": COUNTED_TASK, "data_dir": str(data_dir), "space": str(root / f"{name}.yaml"),
                              "name": name, "storage": str(root / "runs"), "sampler": "random", "limit": 2000, **opts})
    lines: list[str] = []
    final = run_sweep(options, echo=lines.append, after=after_sweep(options, lines.append))  # as `dlb-tune sweep` runs it
    return {**final, "output": "\n".join(lines)}, root / "runs" / name


def trial_histories(exp: Path) -> dict[str, pd.DataFrame]:
    """trial id -> its progress.csv, as Tune wrote it."""
    return {p.parent.name.removeprefix("trial_"): pd.read_csv(p)
            for p in exp.glob("trial_*/progress.csv") if p.stat().st_size}  # empty: errored at once


# --- one sweep with completed, ASHA-stopped and errored trials, then seed re-runs ------------------

# lr 1e6 diverges (errored); 1e-4 barely learns, so ASHA (rung at epoch 1, keep the better half)
# stops it when it follows a 0.05 trial. One trial at a time (2 CPUs each) and seed 35: the
# proposals are, in order, 0.05, 1e-4, 1e6. The last epoch spoils the weights, so the winner's
# best checkpoint (epoch 2) is not its latest.
STATUS_PARAMS = "  lr: {choice: [0.05, 1.0e-4, 1.0e+6]}\n  batch_size: 64\n  spoil_at_epoch: 3\n"


@pytest.fixture(scope="module")
def status_sweep(tmp_path_factory, data_dir, ray_local):
    root = tmp_path_factory.mktemp("status")
    record = root / "calls.jsonl"
    final, exp = sweep_in_process(root, "status", counted_space(record, STATUS_PARAMS, num_samples=3), data_dir,
                                  cpus_per_trial=2, seed=35, seeds=2)
    return final, exp, record


def test_no_trial_reports_a_test_metric(status_sweep):
    _, exp, _ = status_sweep
    histories = trial_histories(exp)
    assert len(list(exp.glob("trial_*"))) == 3 and len(histories) >= 2
    for trial, history in histories.items():
        assert not [c for c in history.columns if c.startswith("test_")], (trial, list(history.columns))
    for result in exp.glob("trial_*/result.json"):
        for line in result.read_text().splitlines():
            assert not [k for k in json.loads(line) if k.startswith("test_")], result


def test_test_split_is_evaluated_once_in_the_driver_on_the_best_checkpoint(status_sweep):
    final, _, record = status_sweep
    calls = read_calls(record)
    tests = [c for c in calls if c["call"] == "evaluate" and c["split"] == "test"]
    assert len(tests) == 1, tests  # also none by the --seeds re-runs, which ran after it
    assert tests[0]["pid"] == os.getpid()  # the driver, not a trial
    assert {c["pid"] for c in calls if c["call"] == "train"} - {os.getpid()}, "trials ran in Ray workers"
    state = torch.load(Path(final["best"]["checkpoint"]) / "state.pt", weights_only=False)
    assert tests[0]["weights"] == weights_fingerprint(state["task"]["params"])
    assert state["epoch"] + 1 == final["best"]["epoch"] == 2  # the winner's best epoch, not its last


def test_each_trial_is_classified_as_what_happened(status_sweep):
    final, exp, _ = status_sweep
    df = pd.read_parquet(exp / "results.parquet").set_index("trial_id")
    histories = trial_histories(exp)
    by_lr = df.groupby("config/lr")["status"].agg(sorted).to_dict()
    assert by_lr == {0.05: ["completed"], 1e-4: ["stopped_early"], 1e6: ["errored"]}, df
    for trial, row in df.iterrows():
        epochs = histories[trial]["epoch"].tolist() if trial in histories else []
        assert row["epochs"] == (epochs[-1] if epochs else 0), (trial, epochs)
    stopped = df[df.status == "stopped_early"]
    assert (stopped["epochs"] == 1).all() and stopped["error"].isna().all()  # at ASHA's first rung
    assert df.loc[df.status == "errored", "error"].str.contains("diverged").all()
    assert final["trials"] == {"total": 3, "completed": 1, "stopped_early": 1, "cut_by_budget": 0,
                               "incomplete": 0, "errored": 1}
    said = " ".join(final["output"].split())  # as printed, wrapped to the terminal
    assert "1 completed, 1 stopped early by ASHA, 0 cut by the time budget, 0 incomplete, 1 errored" in said


def test_seeds_rerun_the_top_configs_for_every_epoch(status_sweep):
    final, exp, _ = status_sweep
    ranking = final["seeds"]["ranking"]
    assert sorted(r["config"]["lr"] for r in ranking) == [1e-4, 0.05]  # distinct, errored left out
    runs = pd.concat([pd.read_csv(d / "progress.csv").assign(trial=d.name, **json.loads((d / "params.json").read_text()))
                      for d in (exp.parent / "status-seeds").glob("trial_*")])
    assert [list(e) for _, e in runs.groupby("trial")["epoch"]] == [[1, 2, 3]] * 4  # no early stopping
    by_sweep_value = [r["trial_id"] for r in sorted(ranking, key=lambda r: -r["sweep_value"])]
    for entry in ranking:  # a run's rank is its config's place by sweep value
        mine = runs[runs["rank"] == by_sweep_value.index(entry["trial_id"])]
        best = mine.groupby("seed")["val_acc"].max().tolist()
        assert entry["values"] == pytest.approx(best) and len(best) == 2
    assert ranking[0]["config"]["lr"] == 0.05 and ranking[0]["mean"] > ranking[1]["mean"]
    assert json.loads((exp / "final.json").read_text())["seeds"]["ranking"][0]["trial_id"] == ranking[0]["trial_id"]


# --- the time budget -----------------------------------------------------------------------------


BUDGET_S = 20


@pytest.fixture(scope="module")
def budget_sweep(tmp_path_factory, data_dir, ray_local):
    """Two trials at a time of 200 slow epochs (0.3 s each, 60 s a trial): the budget cuts both; the
    third sample is never created (random search keeps to 2 at a time)."""
    root = tmp_path_factory.mktemp("budget")
    space = counted_space(root / "calls.jsonl", "  lr: 0.05\n  epoch_sleep_s: 0.3\n", max_epochs=200, num_samples=3)
    final, exp = sweep_in_process(root, "budget", space, data_dir, time_budget_s=BUDGET_S, scheduler="fifo",
                                  cpus_per_trial=1)
    return final, exp, root / "calls.jsonl"


def test_time_budget_cuts_trials_and_still_tests_the_best(budget_sweep):
    final, exp, record = budget_sweep
    df = pd.read_parquet(exp / "results.parquet")
    assert (df["status"] == "cut_by_budget").all(), df[["trial_id", "status", "epochs"]]
    assert len(df) == 2 and final["trials"]["cut_by_budget"] == 2 and final["wall_s"] >= BUDGET_S * 0.98
    assert "2 cut by the time budget" in final["output"] and "interrupted" not in final
    tests = [c for c in read_calls(record) if c["call"] == "evaluate" and c["split"] == "test"]
    assert {c["pid"] for c in tests} <= {os.getpid()}, tests  # never by a trial
    if df["epochs"].max() == 0:  # under heavy load Tune's set-up can eat the budget (bench/results/ci_timing.md)
        pytest.skip(f"no trial reached an epoch within {BUDGET_S} s; cut trials with epochs are unchecked")
    assert df["epochs"].max() < 200
    # A budget end is an end: the winner is tested. On failure the fields say what was there
    # (seen once, cause not established: bench/results/ci_timing.md).
    assert "test_acc" in final.get("test", {}), {k: final.get(k) for k in ("best", "test_error")}


# --- --max-failures: a retried trial continues from its last checkpoint --------------------------


@pytest.fixture(scope="module")
def retry_sweep(tmp_path_factory, data_dir, ray_local):
    """One trial failing once at the start of epoch 3 of 4, with one retry."""
    root = tmp_path_factory.mktemp("retry")
    record = root / "calls.jsonl"
    space = counted_space(record, "  lr: 0.05\n  fail_once_at_epoch: 3\n", max_epochs=4, num_samples=1)
    final, exp = sweep_in_process(root, "retry", space, data_dir, max_failures=1, scheduler="fifo")
    return final, exp, record


def test_max_failures_retries_from_the_last_checkpoint(retry_sweep):
    final, exp, record = retry_sweep
    assert final["trials"]["completed"] == 1 and final["errors"] == []
    [history] = trial_histories(exp).values()
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    trained = [c["epoch"] + 1 for c in read_calls(record) if c["call"] in ("train", "fail")]
    assert trained == [1, 2, 3, 3, 4], trained  # the retry starts at the failed epoch, not at 1


def test_without_retries_the_failing_trial_is_errored(tmp_path, data_dir, ray_local):
    space = counted_space(tmp_path / "calls.jsonl", "  lr: 0.05\n  fail_once_at_epoch: 2\n", max_epochs=2,
                          num_samples=1)
    final, exp = sweep_in_process(tmp_path, "noretry", space, data_dir, scheduler="fifo")
    assert final["trials"]["errored"] == 1 and "planned failure at epoch 2" in final["errors"][0]["error"]
    assert pd.read_parquet(exp / "results.parquet").loc[0, "epochs"] == 1


# --- compare: two different sweeps, each as its own files say --------------------------------------


def test_compare_reports_each_sweep_from_its_own_files(status_sweep, retry_sweep):
    exps = [status_sweep[1], retry_sweep[1]]
    result = runner.invoke(app, ["compare", *map(str, exps), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["status", "retry"]
    for row, exp in zip(rows, exps):
        df = pd.read_parquet(exp / "results.parquet")
        final = json.loads((exp / "final.json").read_text())
        counts = df["status"].value_counts()
        for status in ("completed", "stopped_early", "cut_by_budget", "incomplete", "errored"):
            assert row[status] == counts.get(status, 0), (row["name"], status)
        assert row["best_val"] == pytest.approx(df["best_val_acc"].max())
        assert row["test"] == pytest.approx(final["test"]["test_acc"])
        assert row["trials"] == len(df) and row["trial_epochs"] == df["epochs"].sum()
        assert row["wall_s"] == final["wall_s"] and row["scheduler"] == final["scheduler"]
    assert [r["trials"] for r in rows] == [3, 1] and [r["scheduler"] for r in rows] == ["asha", "fifo"]


# --- a multi-objective sweep: final.json's Pareto front ---------------------------------------------


def test_final_json_holds_the_pareto_front_of_the_trials(tmp_path, data_dir, ray_local):
    objectives = {"acc-params": {"val_acc": "max", "params": "min"}}
    params = "  lr: {loguniform: [1.0e-3, 0.2]}\n  hidden_size: {choice: [8, 32, 128]}\n"
    space = counted_space(tmp_path / "calls.jsonl", params, max_epochs=1, num_samples=5, objectives=objectives)
    final, exp = sweep_in_process(tmp_path, "mo", space, data_dir, objective="acc-params", sampler="tpe",
                                  scheduler="fifo")
    df = pd.read_parquet(exp / "results.parquet")
    points = {r.trial_id: (r.best_val_acc, r.params) for r in df.itertuples()}

    def dominated(a):
        return any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in points.values())

    front = {t for t, p in points.items() if not dominated(p)}
    assert {p["trial_id"] for p in final["pareto"]} == front and len(front) >= 1
    for p in final["pareto"]:
        assert (p["val_acc"], p["params"]) == points[p["trial_id"]]
        assert p["config"]["hidden_size"] == df.set_index("trial_id").loc[p["trial_id"], "config/hidden_size"]
    assert json.loads((exp / "final.json").read_text())["pareto"] == final["pareto"]
