"""The command line's conventions: completion, grouped help with examples, `ls`, NAME as a folder,
defaults shared by `plan` and `sweep`, `--seeds 1` refused, `results` fitting 100 columns, and
the README's examples and figures matching the code and the space files.

Only the `ls` and `results` tests read a real sweep (the session's finished one, copied); the rest
stop before Ray starts.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from conftest import ROOT
from finished_sweep import finished_sweep
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.space import default_space_file, load_space, parse_space

runner = CliRunner()


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "--install-completion" in result.output


@pytest.mark.parametrize("columns", [80, 100])
def test_sweep_help_groups_its_options_and_shows_three_examples(columns):
    result = runner.invoke(app, ["sweep", "--help"], env={"COLUMNS": str(columns), "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= columns
    panels = [re.sub(r"[─╭╮ ]", "", ln) for ln in lines if ln.startswith("╭─")]
    assert panels == ["Arguments", "Options", "Searchspace", "Budget", "Resources", "Cluster", "Output"]
    examples = [ln.strip() for ln in lines if ln.strip().startswith("dlb-tune sweep ")]
    assert len(examples) == 3 and all(ln.rstrip(" \\") == ln.rstrip(" \\").strip() for ln in examples)
    for option, panel in [("--num-samples", "Budget"), ("--address", "Cluster"), ("--storage", "Output"),
                          ("--gpus-per-trial", "Resources"), ("--set", "Search space")]:
        at = next(i for i, ln in enumerate(lines) if f" {option} " in ln)
        above = [re.sub(r"[─╭╮]", "", ln).strip() for ln in lines[:at] if ln.startswith("╭─")]
        assert above[-1] == panel, (option, above)


@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_plan_and_sweep_give_a_trial_a_gpu_when_the_sweep_has_gpus(command, monkeypatch):
    """`plan --gpus 1` timed on the CPU while `sweep --gpus 1` ran on the GPU: one default rule."""
    import dlb_tune.options
    import dlb_tune.plan
    import dlb_tune.sweep

    seen = []
    monkeypatch.setattr(dlb_tune.options, "local_gpus", lambda: 2)  # sweep checks its request against the machine
    target = (dlb_tune.sweep, "run_sweep") if command == "sweep" else (dlb_tune.plan, "plan_sweep")
    monkeypatch.setattr(*target, lambda opts, **kw: seen.append(opts) or {})
    for gpus, expected in [(["--gpus", "1"], 1.0), ([], 0.0), (["--gpus", "2", "--gpus-per-trial", "0.5"], 0.5)]:
        seen.clear()
        result = runner.invoke(app, [command, "fcn", *gpus])
        assert result.exit_code == 0, result.output
        assert seen[0].gpus_per_trial == expected, (command, gpus)


@pytest.mark.parametrize("args", [["sweep", "fcn", "--seeds", "1"], ["best", "anything", "--seeds", "1"]])
def test_one_seed_is_refused_in_one_line(args, monkeypatch):
    import dlb_tune.sweep

    monkeypatch.setattr(dlb_tune.sweep, "run_sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    line = _one_line_error(runner.invoke(app, args))
    assert "--seeds 1" in line and "--seeds 2" in line


def test_resume_takes_a_folder(tmp_path, monkeypatch):
    """resume_sweep reads sweep.json by name under a storage: a folder becomes both."""
    import dlb_tune.sweep

    seen = []
    monkeypatch.setattr(dlb_tune.sweep, "resume_sweep", lambda *args, **kw: seen.append(args[:2]))
    folder = tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    (folder / "space.yaml").write_text("task: fcn\n")  # what marks an experiment folder; never parsed here
    (folder / "sweep.json").write_text('{"task": "fcn"}')  # what resume looks for before it imports Ray
    result = runner.invoke(app, ["resume", str(folder)])
    assert result.exit_code == 0, result.output
    assert seen == [("mine", str(tmp_path / "runs"))]
    runner.invoke(app, ["resume", "other", "--storage", "s3://b/runs"])
    assert seen[-1] == ("other", "s3://b/runs")  # a name stays a name


@pytest.fixture(scope="module")
def storage(tmp_path_factory, data_dir, ray_local):
    """Several experiments: the finished sweep, a copy without final.json, one just started."""
    done = finished_sweep(tmp_path_factory, data_dir)
    root = done.storage
    shutil.copytree(done.exp, root / "unfinished", ignore=shutil.ignore_patterns("checkpoint_*", "final.json"))
    (root / "started").mkdir()
    shutil.copy(done.exp / "space.yaml", root / "started")
    (root / "not-a-sweep").mkdir()
    return done


def test_ls_lists_every_experiment_with_its_state(storage):
    result = runner.invoke(app, ["ls", "--storage", str(storage.storage)])
    assert result.exit_code == 0, result.output
    head, *rows = result.output.splitlines()
    assert head.split() == ["name", "task", "state", "trials", "best", "test", "date"]
    by_name = {r.split()[0]: r for r in rows}
    assert set(by_name) == {"s", "unfinished", "started"}  # and not not-a-sweep
    final = yaml.safe_load((storage.exp / "final.json").read_text())
    verdict = "met" if final["target_met"] else "NOT met"
    assert re.search(rf"^s +fcn +finished +6 +{final['best']['val_acc']:.4g} +{final['test']['test_acc']:.4g} "
                     rf"{verdict} +20\d\d-\d\d-\d\d \d\d:\d\d$", by_name["s"]), by_name["s"]
    assert re.search(rf"fcn +no final +6 +{final['best']['val_acc']:.4g} +- ", by_name["unfinished"])
    assert re.search(r"fcn +no results +- +- +- ", by_name["started"])
    assert all(len(ln) <= 100 for ln in result.output.splitlines())


def test_results_takes_a_folder_and_shows_the_searched_parameters_in_100_columns(storage):
    by_folder = runner.invoke(app, ["results", str(storage.exp)])
    by_name = runner.invoke(app, ["results", "s", "--storage", str(storage.storage)])
    assert by_folder.exit_code == 0 and by_folder.output == by_name.output, by_folder.output
    assert all(len(ln) <= 100 for ln in by_folder.output.splitlines()), by_folder.output
    table = by_folder.output.split("\n\n==")[0]  # the summary follows the table
    # the table, wrapped into blocks of columns; each block's first line names its columns
    head = [w for block in table.split("\n\n") for w in block.splitlines()[0].split() if w != "\\"]
    names = [w for line in table.splitlines() for w in line.split() if w != "\\" and not w[0].isdigit()]
    assert head[:5] == ["trial_id", "status", "epochs", "best_val_acc", "val_acc"]
    searched = ["activation", "hidden_size", "lr", "momentum", "weight_decay", "shift"]
    assert [n for n in names if n in searched] == searched  # searched only: batch_size is a constant of the space
    assert "batch_size" not in table
    every = runner.invoke(app, ["results", str(storage.exp), "--all"])
    assert every.exit_code == 0 and "batch_size" in every.output and "time_total_s" in every.output


def test_a_folder_that_is_no_experiment_is_one_line(storage):
    line = _one_line_error(runner.invoke(app, ["results", str(storage.storage / "not-a-sweep")]))
    assert "not an experiment folder" in line


# --- the README -------------------------------------------------------------------------------


README = (ROOT / "README.md").read_text()


def _yaml_blocks(section: str) -> list[str]:
    text = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_readme_search_space_example_loads_as_shown():
    example, steering = _yaml_blocks("Search-space files")[:2]
    spec = parse_space({**yaml.safe_load(example), **yaml.safe_load(steering)}, source="README")
    assert spec.task == "fcn" and spec.searched() and spec.initial


def test_readme_figures_match_the_space_files():
    sentence = re.search(r"Run a real sweep \(the hand-written FCN on MNIST, (\d+) trials, at most (\d+) minutes",
                         README)
    assert sentence, "README's 'Run a real sweep' sentence changed; keep its figures tied to fcn.yaml"
    spec = load_space(default_space_file("fcn"))
    assert int(sentence[1]) == spec.num_samples and int(sentence[2]) * 60 == spec.time_budget_s
