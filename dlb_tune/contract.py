"""The contract every task meets, as functions: ``tests/test_tasks.py`` runs them on every
registered task, and ``dlb-tune check-task NAME`` runs them on one (a task of the user's own).

Each check raises ``AssertionError`` with a line saying what the task got wrong. The checks share
one ``Setup``: the task's default space constants plus its ``smoke`` overrides, on 64 real
examples per split.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from dlb_tune.options import SweepOptions
from dlb_tune.space import SweepSpec, default_space_file, load_space
from dlb_tune.tasks import DataError, Task, TrialContext, TrialError, get_task
from dlb_tune.tasks._common import LR_SCHEDULES
from dlb_tune.tasks.base import config_fields

SETUP_LIMIT = 64  # examples per split: enough to train one epoch, fast enough for every task


@dataclass
class Setup:
    """A task built from its default space's constants plus its smoke overrides, on a few real examples."""

    task_cls: type[Task]
    config: Any
    data: Any
    spec: SweepSpec

    @classmethod
    def load(cls, name: str, data_dir: Path) -> Setup:
        task_cls = get_task(name)
        spec = load_space(default_space_file(name))
        config = task_cls.Config(**{**spec.constants(), **task_cls.smoke})
        return cls(task_cls, config, task_cls.load_data(data_dir, config, limit=SETUP_LIMIT), spec)

    def build(self, config: Any = None, seed: int = 0) -> Task:
        return self.task_cls(config or self.config, self.data, TrialContext(max_epochs=2, seed=seed))


# What a task must define itself: Task's own versions only raise NotImplementedError.
REQUIRED_METHODS = ("load_data", "train_epoch", "evaluate", "state_dict", "load_state_dict")


def check_declarations(task_cls: type[Task]) -> None:
    """The contract's methods are defined, class attributes name real config fields, and every
    field has a default that runs and passes the task's own rules."""
    missing = [m for m in REQUIRED_METHODS if inspect.getattr_static(task_cls, m) is inspect.getattr_static(Task, m)]
    assert not missing, f"{task_cls.__name__} does not define {', '.join(missing)}"
    assert dataclasses.is_dataclass(task_cls.Config), "Config is not a dataclass"
    bare = [f.name for f in dataclasses.fields(task_cls.Config)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert not bare, f"{task_cls.Config.__name__} field(s) {', '.join(bare)} have no default (the smoke path needs one)"
    fields = config_fields(task_cls)
    for attr in ("data_fields", "smoke", "allowed_values"):
        unknown = set(getattr(task_cls, attr)) - set(fields)
        assert not unknown, f"{attr} names {sorted(unknown)}, not fields of {task_cls.Config.__name__}"
    task_cls.check_config(task_cls.Config())
    task_cls.check_config(task_cls.Config(**task_cls.smoke))


def check_config_round_trip(task_cls: type[Task]) -> None:
    """A config survives what the sweep does to it: YAML (space.yaml, best.yaml) and back, field by field."""
    for config in (task_cls.Config(), task_cls.Config(**task_cls.smoke)):
        values = dataclasses.asdict(config)
        back = task_cls.Config(**yaml.safe_load(yaml.safe_dump(values)))
        assert back == config, f"{values} comes back from YAML as {dataclasses.asdict(back)}"


def check_one_epoch(setup: Setup) -> None:
    """train_epoch and evaluate report finite numbers, with ``loss`` and the sweep's metric."""
    task = setup.build()
    train, val, test = task.train_epoch(0), task.evaluate("val"), task.evaluate("test")
    for where, metrics in (("train_epoch", train), ("evaluate('val')", val), ("evaluate('test')", test)):
        assert "loss" in metrics, f"{where} returned no 'loss': {sorted(metrics)}"
    assert setup.spec.metric.removeprefix("val_") in val, f"the space's metric {setup.spec.metric} is not reported"
    for name, value in {**train, **val, **task.trial_metrics()}.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{name} is {value!r}, not a finite number"


def check_checkpoint_resume(setup: Setup) -> None:
    """state_dict, saved and loaded the way trial checkpoints are, restores the model and all that
    training needs to go on (optimiser state, step counts): a resumed task's next epoch is the
    uninterrupted one's."""
    a = setup.build(seed=0)
    a.train_epoch(0)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = setup.build(seed=1)
    b.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))  # as trials load them
    _same(a.evaluate("val"), b.evaluate("val"), "val {key}: {a} before the checkpoint, {b} after loading it")
    b.ctx.generator.set_state(a.ctx.generator.get_state())  # the trainable restores both generators too
    after = []
    for task in (a, b):
        torch.manual_seed(1)
        after.append(task.train_epoch(1))
    _same(*after, "train {key} of the next epoch: {a} uninterrupted, {b} resumed from the checkpoint")
    # An epoch's mean loss barely moves when, say, a momentum buffer restarts at zero (two steps
    # on the smoke data); the weights and optimiser state after the epoch show it plainly.
    _same_state(_leaves(a.state_dict()), _leaves(b.state_dict()))


def _same(a: dict[str, float], b: dict[str, float], message: str) -> None:
    for key in a:
        assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-6), message.format(key=key, a=a[key], b=b[key])


def _leaves(state: Any, path: str = "") -> dict[str, Any]:
    """A nested state_dict as {"opt/state/0/exp_avg": tensor, ...}."""
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _leaves(value, f"{path}/{key}").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, value in enumerate(state) for k, v in _leaves(value, f"{path}/{i}").items()}
    return {path.lstrip("/"): state}


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    message = "state_dict()[{key}] after the next epoch: uninterrupted and resumed from the checkpoint differ{how}"
    assert a.keys() == b.keys(), message.format(key="...", how=f" in keys: {sorted(a.keys() ^ b.keys())}")
    for key, x in a.items():
        y = b[key]
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            close = x.shape == y.shape and torch.allclose(x, y, rtol=1e-5, atol=1e-6)
            how = f" (largest difference {(x - y).abs().max().item():.3g})" if x.shape == y.shape else ""
        elif isinstance(x, torch.Tensor):
            close, how = torch.equal(x, y), ""
        elif isinstance(x, float):
            close, how = math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-6), f": {x} and {y}"
        else:
            close, how = x == y, f": {x!r} and {y!r}"
        assert close, message.format(key=key, how=how)


def check_lr_schedule(setup: Setup) -> None:
    """A learning-rate schedule is one field, ``lr_schedule``, taking the project's schedule names."""
    fields = config_fields(setup.task_cls)
    clash = {"schedule", "lr_scheduler", "scheduler"} & set(fields)
    assert not clash, f"field {sorted(clash)}: call it lr_schedule"
    if "lr_schedule" not in fields:
        return
    for value in LR_SCHEDULES:
        setup.build(dataclasses.replace(setup.config, lr_schedule=value))
    try:
        setup.build(dataclasses.replace(setup.config, lr_schedule="constant"))
    except TrialError as e:
        assert "lr_schedule: 'constant' is not one of" in str(e), f"unexpected message: {e}"
    else:
        raise AssertionError(f"lr_schedule='constant' accepted; allowed: {', '.join(LR_SCHEDULES)}")


def check_data_errors(task_cls: type[Task]) -> None:
    """An empty data folder raises DataError with one line (no traceback for the user)."""
    with tempfile.TemporaryDirectory() as empty:
        try:
            task_cls.load_data(Path(empty), task_cls.Config(), limit=SETUP_LIMIT)
        except DataError as e:
            assert str(e) and "\n" not in str(e), f"DataError message is not one line: {e!r}"
        except Exception as e:  # noqa: BLE001 - any other exception is what this check reports
            raise AssertionError(f"an empty data folder raised {type(e).__name__}, not DataError: {e}") from e
        else:
            raise AssertionError("an empty data folder loaded without a DataError")


def check_smoke_sweep(run_sweep: Callable[..., dict[str, Any]], name: str, data_dir: Path, storage: Path,
                      task_module: str | None = None) -> dict[str, Any]:
    """A real ``--smoke`` sweep (Ray, Optuna, ASHA, checkpoints, the test evaluation) finishes;
    ``run_sweep`` is ``dlb_tune.sweep.run_sweep``, given by the caller that runs it."""
    opts = SweepOptions(task=name, task_module=task_module, data_dir=str(data_dir), storage=str(storage),
                        name=f"check-{name}", smoke=True, sampler="random")
    final = run_sweep(opts, echo=lambda line: None)
    best = final.get("best") or {}
    assert best.get("trial_id"), f"no best trial: {final.get('trials')}"
    assert final.get("test"), "no test-split evaluation of the best trial"
    return final


def run_checks(name: str, data_dir: Path, echo: Callable[[str], None],
               sweep: Callable[..., dict[str, Any]] | None = None, task_module: str | None = None) -> int:
    """Every check on one task, one line each; returns the number that failed. ``sweep``: the
    sweep runner (``dlb_tune.sweep.run_sweep``) for the last check, a real smoke sweep."""
    task_cls = get_task(name)
    setup: list[Setup] = []

    def with_setup(check: Callable[[Setup], None]) -> Callable[[], None]:
        return lambda: check(setup[0]) if setup else _skip("the data did not load")

    checks: list[tuple[str, Callable[[], Any]]] = [
        ("declarations", lambda: check_declarations(task_cls)),
        ("config round trip", lambda: check_config_round_trip(task_cls)),
        ("data errors", lambda: check_data_errors(task_cls)),
        ("load data", lambda: setup.append(Setup.load(name, data_dir))),
        ("one epoch", with_setup(check_one_epoch)),
        ("checkpoint resume", with_setup(check_checkpoint_resume)),
        ("lr schedule", with_setup(check_lr_schedule)),
    ]
    if sweep is None:
        return _run(checks, echo)
    with tempfile.TemporaryDirectory() as storage:
        smoke = with_setup(lambda _: check_smoke_sweep(sweep, name, data_dir, Path(storage), task_module))
        return _run(checks + [("smoke sweep", smoke)], echo)


class _Skipped(Exception):
    pass


def _skip(reason: str) -> None:
    raise _Skipped(reason)


def _run(checks: list[tuple[str, Callable[[], Any]]], echo: Callable[[str], None]) -> int:
    failed = 0
    for label, check in checks:
        try:
            check()
            echo(f"ok    {label}")
        except _Skipped as e:
            echo(f"skip  {label}: {e}")
        except Exception as e:  # noqa: BLE001 - a broken task may raise anything: that is what is reported
            failed += 1
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            echo(f"FAIL  {label}: {type(e).__name__}{': ' + first if first else ''}")
    return failed
