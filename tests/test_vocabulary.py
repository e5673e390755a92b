"""One word for one thing, as a user meets it on the command line.

The sampler is ``--sampler tpe|random`` and ``search: {sampler: ...}``, and what is printed is
what ran; ``--data-dir`` names every data folder; the old flags say their new names in one line.
A ``--set`` typo names the command line; every reader exits 2 on a damaged experiment; a task
without a target shows none. Checked on the real finished sweep and the shipped space files.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from dlb_tune.cli import app
from finished_sweep import NAME, finished_sweep

runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    return finished_sweep(tmp_path_factory, data_dir)


@pytest.fixture
def no_ray(monkeypatch):
    import dlb_tune.engine

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(dlb_tune.engine, "start_ray", refuse)


def copy_of(finished, tmp_path, *names: str):
    storage = tmp_path / "runs"
    for name in names:
        shutil.copytree(finished.exp, storage / name, ignore=shutil.ignore_patterns("checkpoint_*"))
    return storage


def one_line(result, code: int = 2) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == code and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("args, new", [
    (["sweep", "fcn", "--search", "random"], "--sampler tpe|random"),
    (["sweep", "fcn", "--search", "optuna", "--smoke"], "--sampler tpe|random"),
    (["data", "list", "--dest", "/tmp"], "--data-dir"),
    (["data", "fetch", "mnist", "--dest", "/tmp"], "--data-dir"),
])
def test_an_old_flag_names_its_new_name_in_one_line(args, new, no_ray):
    old = next(a for a in args if a in ("--search", "--dest"))
    assert one_line(runner.invoke(app, args)) == f"error: {old} was renamed: use {new}"


def test_the_help_speaks_of_the_sampler_and_data_dir():
    sweep = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": "120"}).output
    assert "--sampler" in sweep and "tpe|random" in sweep and "--search" not in sweep
    assert "Optuna search" not in sweep and "optuna|random" not in sweep
    for command in (["data", "list"], ["data", "fetch"]):
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"}).output
        assert "--data-dir" in text and "--dest" not in text, text


def test_data_list_reads_the_data_dir(data_dir):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(data_dir)])
    assert result.exit_code == 0 and result.output.startswith(f"data folder: {data_dir}"), result.output


def test_a_set_typo_names_the_command_line_not_the_space_file(no_ray):
    line = one_line(runner.invoke(app, ["sweep", "fcn", "--smoke", "--set", "hiden_size=1"]))
    assert line.startswith("error: --set: 'hiden_size' is not a parameter of task 'fcn'"), line
    assert "did you mean 'hidden_size'" in line and "fcn.yaml" not in line
    bad_value = one_line(runner.invoke(app, ["sweep", "fcn", "--smoke", "--set", "hidden_size=abc"]))
    assert bad_value.startswith("error: --set hidden_size: ") and "fcn.yaml" not in bad_value, bad_value


def test_the_sweep_says_the_sampler_that_ran(finished):
    """The shipped fcn space samples at random: the first line says so, as space.yaml records it."""
    assert ", sampler random, scheduler asha," in finished.sweep_output, finished.sweep_output
    assert yaml.safe_load((finished.exp / "space.yaml").read_text())["search"]["sampler"] == "random"
    assert json.loads((finished.exp / "final.json").read_text())["sampler"] == "random"


def test_readers_name_the_sampler_of_new_and_old_experiments(finished, tmp_path):
    storage = copy_of(finished, tmp_path, "new", "old")
    old = storage / "old"  # as a sweep from before --sampler recorded `--search random`
    final = json.loads((old / "final.json").read_text())
    final.pop("sampler")
    (old / "final.json").write_text(json.dumps({**final, "search": "random"}))
    space = yaml.safe_load((old / "space.yaml").read_text())
    space["search"] = {"sampler": "tpe", "constant_liar": False}  # what the old --search random left there
    (old / "space.yaml").write_text(yaml.safe_dump(space))
    rows = json.loads(runner.invoke(app, ["compare", "new", "old", "--storage", str(storage), "--format", "json"]).output)
    assert [r["sampler"] for r in rows] == ["random", "random"]
    report = runner.invoke(app, ["report", "old", "--storage", str(storage)])
    assert report.exit_code == 0, report.output
    assert "- sampler `random`, scheduler `asha`" in (old / "report.md").read_text()


def test_resume_reads_an_old_sweep_json(finished, tmp_path):
    from dlb_tune.sweep import recorded_options

    storage = copy_of(finished, tmp_path, "old")
    sweep = json.loads((storage / "old" / "sweep.json").read_text())
    for search, sampler in (("random", "random"), ("optuna", None)):
        old = {k: v for k, v in sweep.items() if k != "sampler"}
        (storage / "old" / "sweep.json").write_text(json.dumps({**old, "search": search}))
        opts, _ = recorded_options(str(storage / "old"), "old", str(storage))
        assert opts.sampler == sampler


def test_results_parquet_lands_here_as_name_parquet(finished, tmp_path, monkeypatch):
    import pandas as pd

    storage = copy_of(finished, tmp_path, NAME)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["results", NAME, "--storage", str(storage), "--format", "parquet"])
    assert result.exit_code == 0 and result.output == f"wrote {NAME}.parquet\n", result.output
    assert pd.read_parquet(tmp_path / f"{NAME}.parquet").equals(pd.read_parquet(storage / NAME / "results.parquet"))


@pytest.mark.parametrize("damage", [
    lambda final: {"trials": final["trials"]},  # parses, but holds none of what a sweep writes
    lambda final: {**final, "best": {k: v for k, v in final["best"].items() if k != "config"}},
])
def test_every_reader_exits_2_on_a_final_json_that_no_sweep_wrote(damage, finished, tmp_path):
    storage = copy_of(finished, tmp_path, "bad")
    path = storage / "bad" / "final.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    for args in (["results", "bad"], ["status", "bad"], ["best", "bad"], ["compare", "bad", "bad"], ["report", "bad"]):
        line = one_line(runner.invoke(app, [*args, "--storage", str(storage)]))
        assert line.startswith(f"error: {path}: not valid final.json"), (args, line)
    listing = runner.invoke(app, ["ls", "--storage", str(storage)], env={"COLUMNS": "120"})
    assert listing.exit_code == 0 and "damaged final.json" in listing.output, listing.output


def test_a_task_without_a_target_shows_none(finished, tmp_path):
    storage = copy_of(finished, tmp_path, "a", "b")
    for name in ("a", "b"):
        space = yaml.safe_load((storage / name / "space.yaml").read_text())
        space.pop("target")
        (storage / name / "space.yaml").write_text(yaml.safe_dump(space))
        final = json.loads((storage / name / "final.json").read_text())
        final.pop("target_met")
        (storage / name / "final.json").write_text(json.dumps({**final, "target": None}))
    table = runner.invoke(app, ["compare", "a", "b", "--storage", str(storage)])
    assert table.exit_code == 0, table.output
    rows = {ln.split()[0]: ln.split()[1:] for ln in table.output.splitlines() if ln.strip()}
    assert rows["target"] == ["none", "none"] and rows["target_met"] == ["-", "-"], table.output
    assert "NaN" not in table.output and "None" not in table.output and "nan" not in table.output
    listing = runner.invoke(app, ["ls", "--storage", str(storage)])
    test_acc = f"{final['test']['test_acc']:.4g}"
    rows = {ln.split()[0]: ln.split() for ln in listing.output.splitlines()[1:]}
    assert rows["a"][5] == test_acc and "met" not in rows["a"], listing.output  # the value, no verdict
