"""Reading a finished real sweep back: report, best config (and its seed re-runs), compare, export."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from finished_sweep import LIMIT, NAME, finished_sweep
from PIL import Image
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.experiment import load_experiment
from dlb_tune.space import load_space

runner = CliRunner()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir, ray_local):
    return finished_sweep(tmp_path_factory, data_dir)


def _png_ok(path):
    assert path.exists() and path.stat().st_size > 2000, path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200


def test_report_writes_markdown_and_figures(sweep):
    result = runner.invoke(app, ["report", NAME, "--storage", str(sweep.storage)])
    assert result.exit_code == 0, result.output
    md = (sweep.exp / "report.md").read_text()
    final = json.loads((sweep.exp / "final.json").read_text())
    first = md.split("\n## ")[0]  # the test result against the target comes first
    target = load_space(sweep.exp / "space.yaml").target  # the shipped fcn space's
    assert f"test_acc = {final['test']['test_acc']:.4f}" in first and f"target >= {target}" in first
    assert ("**met**" if final["target_met"] else "**NOT met**") in first
    for name in ("metric_vs_epoch", "best_so_far", "parallel_coordinates"):
        _png_ok(sweep.exp / "report" / f"{name}.png")
        assert f"(report/{name}.png)" in md
    # 6 trials: no importance figure, and one line says why
    assert not (sweep.exp / "report" / "param_importance.png").exists() and "fANOVA needs at least 10" in md
    assert "pareto_front.png" not in md  # a single-objective sweep has no front
    assert "## Plan against actual" in md  # `plan` ran before the sweep under the same name
    df = pd.read_parquet(sweep.exp / "results.parquet")
    for trial_id in df["trial_id"]:
        assert trial_id in md


def _as_acc_params(sweep, tmp_path) -> Path:
    """A copy of the finished sweep whose space file reads it as accuracy against size."""
    exp_dir = tmp_path / "mo"
    shutil.copytree(sweep.exp, exp_dir, ignore=shutil.ignore_patterns("checkpoint_*"))
    space = yaml.safe_load((exp_dir / "space.yaml").read_text())
    space.update(objectives={"acc-params": {"val_acc": "max", "params": "min"}}, objective="acc-params")
    (exp_dir / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    return exp_dir


def test_pareto_front_of_a_multi_objective_sweep(sweep, tmp_path):
    """The same real trials read as an accuracy-against-size sweep, with the front finish() writes."""
    from dlb_tune.figures import plot_pareto
    from dlb_tune.objective import Objective, pareto_front
    from dlb_tune.report import write_report

    exp_dir = _as_acc_params(sweep, tmp_path)
    df = pd.read_parquet(exp_dir / "results.parquet")
    front = pareto_front(df, [Objective("val_acc", "max"), Objective("params", "min")], ["best_val_acc", "params"])
    final = json.loads((exp_dir / "final.json").read_text())
    final["pareto"] = [{"trial_id": r["trial_id"], "val_acc": r["best_val_acc"], "params": r["params"]}
                       for _, r in front.iterrows()]
    (exp_dir / "final.json").write_text(json.dumps(final))
    exp = load_experiment(exp_dir)
    [line] = [ln for ln in plot_pareto(exp).axes[0].lines if ln.get_label().startswith("Pareto front")]
    assert sorted(line.get_xdata()) == sorted(front["params"])
    md_path, figures = write_report(exp)
    assert exp_dir / "report" / "pareto_front.png" in figures
    _png_ok(exp_dir / "report" / "pareto_front.png")
    assert "(report/pareto_front.png)" in md_path.read_text()


def test_ids_of_neighbouring_pareto_trials_do_not_overlap(sweep, tmp_path):
    from dlb_tune.figures import plot_pareto

    exp_dir = _as_acc_params(sweep, tmp_path)
    ids = pd.read_parquet(exp_dir / "results.parquet")["trial_id"].tolist()[:3]
    final = json.loads((exp_dir / "final.json").read_text())
    # hand-written: three real trials placed closer together than a label is wide and high (the
    # real front's points are far apart), as two vae Pareto trials were
    final["pareto"] = [{"trial_id": t, "val_acc": 0.9 + 1e-4 * i, "params": 10_000 + 10 * i} for i, t in enumerate(ids)]
    (exp_dir / "final.json").write_text(json.dumps(final))
    fig = plot_pareto(load_experiment(exp_dir))
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts if t.get_text() in ids]
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2)), [b.bounds for b in boxes]


def test_report_reads_a_final_json_from_before_it_said_how_trials_ended(sweep, tmp_path):
    """As 5c94e7e wrote it: the initial point and the Pareto figures' model without status and epochs."""
    exp_dir = _as_acc_params(sweep, tmp_path)
    final = json.loads((exp_dir / "final.json").read_text())
    final["course"] = {k: v for k, v in final["course"].items() if k not in ("status", "epochs")}
    trial = final["course"]["trial_id"]
    final["pareto"] = [{"trial_id": trial, "val_acc": final["course"]["val_acc"], "params": 1234}]
    final["pareto_figures"] = {"trial_id": trial, "metric": "params", "value": 1234, "folder": "test_report/pareto"}
    (exp_dir / "final.json").write_text(json.dumps(final))
    result = runner.invoke(app, ["report", exp_dir.name, "--storage", str(exp_dir.parent)])
    assert result.exit_code == 0, result.output
    md = (exp_dir / "report.md").read_text()
    assert f"Trial `{trial}`, val_acc " in md and f"Trial `{trial}`, params 1234, the highest on the Pareto front" in md
    assert "faces" not in md  # an fcn sweep draws none


def test_best_prints_a_space_file_with_every_parameter_fixed(sweep, tmp_path):
    result = runner.invoke(app, ["best", NAME, "--storage", str(sweep.storage), "-o", str(tmp_path / "best.yaml")])
    assert result.exit_code == 0, result.output
    final = json.loads((sweep.exp / "final.json").read_text())
    text = (tmp_path / "best.yaml").read_text()
    assert text in result.output
    spec = load_space(tmp_path / "best.yaml")
    assert spec.searched() == [] and spec.num_samples == 1
    assert spec.constants() == final["best"]["config"]
    checkpoint = next(ln for ln in text.splitlines() if ln.startswith("# checkpoint: ")).split(": ", 1)[1]
    assert checkpoint == final["best"]["checkpoint"]
    assert (Path(checkpoint) / "state.pt").exists()


def test_best_with_seeds_reruns_the_top_configs(sweep):
    result = runner.invoke(app, ["best", NAME, "--storage", str(sweep.storage), "--seeds", "2", "--top", "2"])
    assert result.exit_code == 0, result.output
    ranking = json.loads((sweep.exp / "seeds.json").read_text())
    assert ranking["seeds"] == 2 and len(ranking["ranking"]) == 2
    assert len(list((sweep.storage / f"{NAME}-seeds").glob("trial_*"))) == 4  # beside the sweep, not in it
    means = [r["mean"] for r in ranking["ranking"]]
    assert means == sorted(means, reverse=True)  # val_acc: best mean first
    for r in ranking["ranking"]:
        assert len(r["values"]) == 2 and all(0.5 < v <= 1 for v in r["values"])
        assert r["std"] == pytest.approx(pd.Series(r["values"]).std())
    df = pd.read_parquet(sweep.exp / "results.parquet")
    top2 = df.nlargest(2, "best_val_acc")["trial_id"].tolist()
    assert sorted(r["trial_id"] for r in ranking["ranking"]) == sorted(top2)
    # stdout is the winner by mean, as a space file (progress and the ranking go to stderr)
    spec = yaml.safe_load(result.stdout)
    assert spec["params"] == ranking["ranking"][0]["config"]
    assert "ranked first of 2 config(s)" in result.stdout
    runner.invoke(app, ["report", NAME, "--storage", str(sweep.storage)])
    assert "re-run with 2 seeds" in (sweep.exp / "report.md").read_text()


def _time_to_best_val(exp_dir):
    """Independently of dlb_tune: first moment since start (by the trials' own clocks, ``ended_at``)
    at which any trial's val_acc was the best."""
    rows = pd.concat([pd.read_csv(p) for p in exp_dir.glob("trial_*/progress.csv")])
    start = (rows["ended_at"] - rows["time_this_iter_s"]).min()
    hit = rows[rows["val_acc"] >= rows["val_acc"].max()]
    return float((hit["ended_at"] - start).min())


def test_compare_puts_sweeps_side_by_side(sweep, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(sweep.exp, other, ignore=shutil.ignore_patterns("checkpoint_*"))
    result = runner.invoke(app, ["compare", NAME, str(other), "--storage", str(sweep.storage), "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == [NAME, "copy"]
    final = json.loads((sweep.exp / "final.json").read_text())
    df = pd.read_parquet(sweep.exp / "results.parquet")
    for r in rows:
        assert r["best_val"] == pytest.approx(df["best_val_acc"].max())
        assert r["test"] == pytest.approx(final["test"]["test_acc"])
        assert r["trials"] == 6 and r["trial_epochs"] == df["epochs"].sum()
        assert r["wall_s"] == final["wall_s"]
        assert r["time_to_best_val_s"] == pytest.approx(_time_to_best_val(sweep.exp))
        assert "time_to_target_s" not in r  # validation values are never set against the test target
    table = runner.invoke(app, ["compare", NAME, str(other), "--storage", str(sweep.storage)])
    assert table.exit_code == 0, table.output
    rows = [ln.split()[0] for ln in table.output.splitlines() if ln.strip()]
    timing, verdicts = rows.index("time_to_best_val_s"), [rows.index("test"), rows.index("target_met")]
    assert all(abs(timing - v) > 1 for v in verdicts), rows  # never beside the test split's verdict


def test_compare_unknown_sweep_is_one_line(sweep):
    result = runner.invoke(app, ["compare", NAME, "nosuchsweep", "--storage", str(sweep.storage)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: no sweep named 'nosuchsweep'")


# The export's documented columns and their Arrow types (README, "Where results go").
DOCUMENTED = {
    "trial_id": pa.types.is_string, "status": pa.types.is_string, "epochs": pa.types.is_int64,
    "best_val_acc": pa.types.is_float64, "best_epoch": pa.types.is_int64, "wall_s": pa.types.is_float64,
    "path": pa.types.is_string, "val_acc": pa.types.is_float64, "val_loss": pa.types.is_float64,
    "train_loss": pa.types.is_float64, "train_acc": pa.types.is_float64, "epoch_s": pa.types.is_float64,
    "config/activation": pa.types.is_string, "config/lr": pa.types.is_float64,
    "config/momentum": pa.types.is_float64, "config/hidden_size": pa.types.is_int64,
    "config/batch_size": pa.types.is_int64,
}


def _is_str(t):
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def test_parquet_export_round_trips_through_pyarrow(sweep, tmp_path):
    out = tmp_path / "export.parquet"
    result = runner.invoke(app, ["results", NAME, "--storage", str(sweep.storage), "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    schema = {f.name: f.type for f in table.schema}
    for column, check in DOCUMENTED.items():
        assert column in schema, column
        assert (_is_str(schema[column]) if check is pa.types.is_string else check(schema[column])), (column, schema[column])
    # error: text where a trial failed; an all-null column when none did
    assert _is_str(schema["error"]) or pa.types.is_null(schema["error"])
    assert set(table.column("status").to_pylist()) <= {"completed", "stopped_early", "incomplete", "errored"}
    original = pd.read_parquet(sweep.exp / "results.parquet")
    pd.testing.assert_frame_equal(table.to_pandas(), original)
    again = tmp_path / "again.parquet"
    pq.write_table(table, again)
    assert pq.read_table(again).equals(table)


def test_the_readmes_long_run_of_a_chosen_trial(sweep, data_dir, tmp_path):
    """README: `best NAME --trial ID -o long.yaml`, then `sweep TASK --space long.yaml --max-epochs
    100 --scheduler fifo --name long` (here 2 epochs on the sweep's data size)."""
    final = json.loads((sweep.exp / "final.json").read_text())
    other = pd.read_parquet(sweep.exp / "results.parquet").query(f"trial_id != '{final['best']['trial_id']}'").iloc[0]
    space = tmp_path / "long.yaml"
    best = runner.invoke(app, ["best", NAME, "--storage", str(sweep.storage), "--trial", other["trial_id"], "-o", str(space)])
    assert best.exit_code == 0, best.output
    long = runner.invoke(app, ["sweep", "fcn", "--space", str(space), "--max-epochs", "2", "--scheduler", "fifo",
                               "--name", "long", "--storage", str(sweep.storage), "--data-dir", str(data_dir),
                               "--limit", LIMIT, "--cpus-per-trial", "2"])
    assert long.exit_code == 0, long.output
    lr = f"lr={other['config/lr']:.3g}"  # every parameter is fixed: each is what was run, so each is shown
    words = " ".join(long.output.split())  # progress lines wrap at the terminal's width
    assert f"start activation={other['config/activation']}" in words and lr in words, long.output
    status = runner.invoke(app, ["status", "long", "--storage", str(sweep.storage)], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and f"config: activation={other['config/activation']}" in status.output, status.output
    done = json.loads((sweep.storage / "long" / "final.json").read_text())
    assert done["trials"]["completed"] == 1 and done["best"]["config"]["lr"] == other["config/lr"]
    assert "test_acc" in done["test"]  # read once, at the end


def test_best_trial_prints_that_trials_config_not_the_winners(sweep, tmp_path):
    df = pd.read_parquet(sweep.exp / "results.parquet")
    final = json.loads((sweep.exp / "final.json").read_text())
    other = df[df["trial_id"] != final["best"]["trial_id"]].iloc[0]
    out = tmp_path / "other.yaml"
    result = runner.invoke(app, ["best", NAME, "--storage", str(sweep.storage), "--trial", other["trial_id"],
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec = load_space(out)
    assert spec.searched() == [] and spec.num_samples == 1
    assert spec.constants() == {k.removeprefix("config/"): v for k, v in other.items() if k.startswith("config/")}
    assert spec.constants() != final["best"]["config"]
    assert f"not the winner ({final['best']['trial_id']})" in out.read_text()
    missing = runner.invoke(app, ["best", NAME, "--storage", str(sweep.storage), "--trial", "nosuch"])
    assert missing.exit_code != 0 and "no trial 'nosuch'" in missing.output and "Traceback" not in missing.output
