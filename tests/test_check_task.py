"""`dlb-tune check-task` and `dlb-tune new-task` as the user runs them (issue 13): the module
`new-task` writes passes with a readable report, and each rule of the contract, broken in a copy
of that module, fails in one line naming what is wrong, with a non-zero exit and no traceback.
The smoke-sweep check is left to tests/test_own_task.py, which sweeps the same template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlb_tune import contract
from dlb_tune.cli import app
from dlb_tune.new_task import write_task
from dlb_tune.space import default_space_file, load_space
from dlb_tune.tasks import get_task, load_task_module

runner = CliRunner()
REPORT_LINE = re.compile(r"^(ok|FAIL|skip)  [a-z ]+(: .+)?$")

# A rule broken the way a user would break it: (file, text in the template, replacement,
# the check that must fail, what its line must say).
BROKEN = {
    "missing_method": ("py", "    @torch.no_grad()\n    def evaluate", "    @torch.no_grad()\n    def _evaluate",
                       "declarations", "does not define evaluate"),
    "field_without_default": ("py", "    lr: float = 1e-3 ", "    lr: float ",
                              "declarations", "field(s) lr have no default"),
    "smoke_names_no_field": ("py", 'smoke = {"channels": 4', 'smoke = {"channel": 4',
                             "declarations", "smoke names ['channel']"),
    "yaml_key_is_no_argument": ("yaml", "  channels:", "  chanels:",
                                "load data", "'chanels' is not a parameter of task"),
    "config_not_yaml_safe": ("py", "    batch_size: int = 128 ", "    kernel: tuple = (3, 3)\n    batch_size: int = 128 ",
                             "config round trip", "comes back from YAML as"),
    "data_error_not_raised": ("py", "except (RuntimeError, OSError) as e:", "except OSError as e:",
                              "data errors", "raised RuntimeError, not DataError"),
    "metric_not_reported": ("py", 'return {{"loss": loss / len(y), "acc"', 'return {{"loss": loss / len(y), "accuracy"',
                            "one epoch", "the space's metric val_acc is not reported"),
    "optimiser_not_restored": ("py", '        self.opt.load_state_dict(state["opt"])\n', "",
                               "checkpoint resume", "resumed from the checkpoint"),
    "schedule_misnamed": ("py", "    batch_size: int = 128 ", '    scheduler: str = "none"\n    batch_size: int = 128 ',
                          "lr schedule", "field ['scheduler']: call it lr_schedule"),
}


def check_task(module: Path, data_dir: Path):
    return runner.invoke(app, ["check-task", module.stem, "--task-module", str(module), "--data-dir", str(data_dir),
                               "--no-sweep"])


def test_new_task_then_check_task_passes(tmp_path, data_dir):
    made = runner.invoke(app, ["new-task", "goodtask", "--dir", str(tmp_path)])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "goodtask.py").is_file() and (tmp_path / "goodtask.yaml").is_file()
    assert f"next: dlb-tune check-task goodtask --task-module {tmp_path / 'goodtask.py'}" in made.output
    result = check_task(tmp_path / "goodtask.py", data_dir)
    assert result.exit_code == 0, result.output
    *lines, summary = result.output.strip().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["ok"] * 7, result.output
    assert summary == "goodtask: all checks passed"


def _broken_copy(kind: str, folder: Path) -> Path:
    """The template as `new-task` writes it, with one rule broken."""
    where, old, new, _, _ = BROKEN[kind]
    old, new = old.replace("{{", "{"), new.replace("{{", "{")
    name = f"broken_{kind}"
    module, space = write_task(name, folder)
    path = module if where == "py" else space
    text = path.read_text()
    assert text.count(old) == 1, f"the template changed: {old!r} is not in {path.name} once"
    path.write_text(text.replace(old, new))
    return module


@pytest.mark.parametrize("kind", ["missing_method", "field_without_default", "yaml_key_is_no_argument"])
def test_a_broken_rule_fails_in_one_line(kind, tmp_path, data_dir):
    _, _, _, label, says = BROKEN[kind]
    result = check_task(_broken_copy(kind, tmp_path), data_dir)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    *lines, summary = result.output.strip().splitlines()
    assert all(REPORT_LINE.match(line) for line in lines), result.output
    failed = [line for line in lines if line.startswith(f"FAIL  {label}:")]
    assert len(failed) == 1 and says in failed[0], result.output
    assert re.fullmatch(rf"broken_{kind}: \d check\(s\) failed", summary), summary


@pytest.fixture(scope="module")
def template_data(tmp_path_factory, data_dir):
    """The template's data, loaded once: every broken copy reads the same data set."""
    module, _ = write_task("datatask", tmp_path_factory.mktemp("template"))
    load_task_module(str(module))
    return contract.Setup.load("datatask", data_dir).data


CHECKS = {
    "declarations": lambda cls, setup: contract.check_declarations(cls),
    "config round trip": lambda cls, setup: contract.check_config_round_trip(cls),
    "data errors": lambda cls, setup: contract.check_data_errors(cls),
    "one epoch": lambda cls, setup: contract.check_one_epoch(setup()),
    "checkpoint resume": lambda cls, setup: contract.check_checkpoint_resume(setup()),
    "lr schedule": lambda cls, setup: contract.check_lr_schedule(setup()),
}


@pytest.mark.parametrize("kind", [k for k in BROKEN if BROKEN[k][3] in CHECKS])
def test_each_check_catches_its_rule(kind, tmp_path, template_data):
    """Each check, alone, on a copy that breaks only its rule (the template's data, loaded once)."""
    _, _, _, label, says = BROKEN[kind]
    load_task_module(str(_broken_copy(kind, tmp_path)))
    cls = get_task(f"broken_{kind}")

    def setup() -> contract.Setup:
        spec = load_space(default_space_file(cls.name))
        return contract.Setup(cls, cls.Config(**{**spec.constants(), **cls.smoke}), template_data, spec)

    with pytest.raises(AssertionError, match=re.escape(says)):
        CHECKS[label](cls, setup)


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("    channels: int = 16 ", "    depth: int\n    channels: int = 16 "),
    lambda text: text + "\nraise ValueError('no such layer')\n",
], ids=["field_without_default_after_defaults", "raises_on_import"])
def test_a_module_that_does_not_import_is_one_line(edit, tmp_path, data_dir):
    module, _ = write_task("noimport", tmp_path)
    module.write_text(edit(module.read_text()))
    result = check_task(module, data_dir)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    line, = result.output.strip().splitlines()
    assert line.startswith(f"error: cannot import {module.resolve()}: line "), line


@pytest.mark.parametrize("args, says", [
    (["new-task", "my-task"], "task name 'my-task' must be a Python identifier"),
    (["new-task", "t", "--dataset", "imagenet"], "unknown data set 'imagenet'"),
    (["check-task", "nosuchtask"], "unknown task 'nosuchtask'"),
])
def test_bad_names_are_one_line(args, says, tmp_path):
    result = runner.invoke(app, args + ["--dir", str(tmp_path)] if args[0] == "new-task" else args)
    assert result.exit_code == 2, result.output
    assert result.output.strip() == result.output.strip().splitlines()[0] and says in result.output, result.output


def test_new_task_keeps_existing_files(tmp_path):
    write_task("kept", tmp_path)
    (tmp_path / "kept.py").write_text("# the user's work\n")
    result = runner.invoke(app, ["new-task", "kept", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "pass --force to overwrite" in result.output, result.output
    assert (tmp_path / "kept.py").read_text() == "# the user's work\n"
