"""Search-space files: YAML in, a validated ``SweepSpec`` and a Ray Tune ``param_space`` out.

Everything is checked here, before Ray starts: the task exists, every parameter is a field of
the task's config dataclass, distributions are known and well-formed, values have the field's
type, and data-shaping fields are constants.

Format::

    task: fcn
    metric: val_acc
    mode: max
    target: 0.98          # test split, checked once at the end
    max_epochs: 16
    grace_period: 2       # ASHA: epochs before a trial can be stopped
    params:
      activation: {choice: [sigmoid, tanh, relu]}
      lr: {loguniform: [1.0e-3, 0.5]}
      momentum: 0.9       # a constant
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlb_tune.tasks import Task, UnknownTask, get_task
from dlb_tune.tasks.base import config_fields


class SpaceError(ValueError):
    """A search-space file or a ``--set`` override is malformed. One line, for the user."""


SCALARS = (type(None), bool, int, float, str)
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint", "quniform")
TOP_LEVEL = {
    "task": "task name",
    "description": "free text",
    "metric": "metric to optimise, e.g. val_acc",
    "mode": "max or min",
    "target": "test-split value the best trial should reach",
    "max_epochs": "epochs per trial",
    "grace_period": "ASHA: epochs before the first stop decision",
    "reduction_factor": "ASHA: keep 1/reduction_factor of trials at each rung",
    "num_samples": "trials to sample",
    "time_budget_s": "wall-clock budget of the whole sweep, seconds",
    "objectives": "named multi-objective modes {name: {metric: mode}}",
    "objective": "default objective name from objectives",
    "params": "hyperparameters",
}


@dataclass
class SweepSpec:
    """A validated search space plus the sweep settings that travel with it."""

    task: str
    metric: str
    mode: str
    params: dict[str, Any]  # field name -> constant or {distribution: args}
    target: float | None = None
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: int = 3  # ASHA's default halving rate
    num_samples: int = 8
    time_budget_s: float | None = None
    objectives: dict[str, dict[str, str]] = field(default_factory=dict)
    objective: str | None = None
    description: str = ""
    source: str = ""

    @property
    def task_cls(self) -> type[Task]:
        return get_task(self.task)

    def searched(self) -> list[str]:
        return [k for k, v in self.params.items() if isinstance(v, dict)]

    def param_space(self) -> dict[str, Any]:
        """The Ray Tune ``param_space``: a Tune domain per searched field, constants as they are."""
        return {k: _to_domain(v) for k, v in self.params.items()}

    def base_config(self) -> Any:
        """The task config with the constants applied; what ``load_data`` sees."""
        consts = {k: v for k, v in self.params.items() if not isinstance(v, dict)}
        return self.task_cls.Config(**consts)

    def objective_pairs(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs for the searcher: the named objective, or the single metric."""
        if self.objective:
            return list(self.objectives[self.objective].items())
        return [(self.metric, self.mode)]

    def to_yaml(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("source")
        return yaml.safe_dump({k: v for k, v in d.items() if v not in (None, "", {})}, sort_keys=False)


def builtin_spaces_dir() -> Path:
    """``search_spaces/`` beside the package in a checkout, packaged as ``dlb_tune.search_spaces``."""
    checkout = Path(__file__).resolve().parents[1] / "search_spaces"
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files("dlb_tune.search_spaces")))


def default_space_file(task: str) -> Path:
    path = builtin_spaces_dir() / f"{task}.yaml"
    if not path.exists():
        get_task(task)  # an unknown task says so first
        raise SpaceError(f"task '{task}' has no search-space file {path}")
    return path


def load_space(path: Path | str, overrides: list[str] = (), objective: str | None = None) -> SweepSpec:
    """Read, override (``--set key=value``) and validate a search-space file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"search-space file not found: {path}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SpaceError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return parse_space(raw, source=str(path), overrides=overrides, objective=objective)


def parse_space(raw: Any, source: str = "<space>", overrides=(), objective: str | None = None) -> SweepSpec:
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: expected a mapping at the top level")
    unknown = set(raw) - set(TOP_LEVEL)
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL)}")
    for key in ("task", "metric", "mode"):
        if key not in raw:
            raise SpaceError(f"{source}: missing required key '{key}'")
    try:
        task = get_task(str(raw["task"]))
    except UnknownTask as e:
        raise SpaceError(f"{source}: {e.args[0]}") from None
    params = dict(raw.get("params") or {})
    if not isinstance(params, dict):
        raise SpaceError(f"{source}: 'params' must be a mapping of field -> value or distribution")
    for item in overrides:
        key, value = _parse_override(item)
        params[key] = value
    spec = SweepSpec(
        task=task.name,
        metric=str(raw["metric"]),
        mode=str(raw["mode"]),
        params=params,
        target=_number(raw, "target", source, None),
        max_epochs=int(_number(raw, "max_epochs", source, 10, minimum=1)),
        grace_period=int(_number(raw, "grace_period", source, 1, minimum=1)),
        reduction_factor=int(_number(raw, "reduction_factor", source, 3, minimum=2)),
        num_samples=int(_number(raw, "num_samples", source, 8, minimum=1)),
        time_budget_s=_number(raw, "time_budget_s", source, None, minimum=1),
        objectives=raw.get("objectives") or {},
        objective=objective if objective is not None else raw.get("objective"),
        description=str(raw.get("description", "")),
        source=source,
    )
    _validate(spec, task, source)
    return spec


def _number(raw: dict, key: str, source: str, default, minimum=None):
    if raw.get(key) is None:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{source}: '{key}' must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpaceError(f"{source}: '{key}' must be at least {minimum}, got {value}")
    return value


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpaceError(f"--set expects key=value, got '{item}'")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        raise SpaceError(f"--set {key}: cannot parse value '{value}'") from None
    return key.strip(), parsed


def _validate(spec: SweepSpec, task: type[Task], source: str) -> None:
    if spec.mode not in ("max", "min"):
        raise SpaceError(f"{source}: mode must be 'max' or 'min', got '{spec.mode}'")
    if spec.grace_period > spec.max_epochs:
        raise SpaceError(f"{source}: grace_period ({spec.grace_period}) exceeds max_epochs ({spec.max_epochs})")
    fields = config_fields(task)
    _coerce_str_fields(spec, fields)
    for name, value in spec.params.items():
        if name not in fields:
            hint = _closest(name, fields)
            raise SpaceError(
                f"{source}: '{name}' is not a parameter of task '{task.name}'{hint}; "
                f"parameters: {', '.join(fields)}"
            )
        where = f"{source}: params.{name}"
        if isinstance(value, dict):
            if name in task.data_fields:
                raise SpaceError(f"{where}: shapes the data, which is loaded once per sweep; give a constant")
            _check_distribution(where, value, fields[name])
        else:
            _check_value(where, value, fields[name])
    _validate_objectives(spec, source)


def _check_distribution(where: str, dist: dict, fld: dataclasses.Field) -> None:
    if len(dist) != 1:
        raise SpaceError(f"{where}: a distribution is one key of {DISTRIBUTIONS}, got {sorted(dist)}")
    (kind, args), = dist.items()
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: unknown distribution '{kind}'; known: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list):
        raise SpaceError(f"{where}: {kind} takes a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise SpaceError(f"{where}: choice needs at least one value")
        for v in args:
            if not isinstance(v, SCALARS):
                raise SpaceError(f"{where}: choices must be scalars (write lists as strings, e.g. \"10,10\"), got {v!r}")
            _check_value(where, v, fld)
        return
    want = 3 if kind == "quniform" else 2
    if len(args) != want or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise SpaceError(f"{where}: {kind} takes [{'low, high, q' if want == 3 else 'low, high'}] numbers, got {args}")
    low, high = args[0], args[1]
    if not low < high:
        raise SpaceError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0, got {low}")
    if kind == "randint" and not all(float(a).is_integer() for a in args):
        raise SpaceError(f"{where}: randint bounds must be integers, got {args}")
    if kind == "quniform" and args[2] <= 0:
        raise SpaceError(f"{where}: quniform step q must be > 0, got {args[2]}")
    _check_value(where, high, fld)


def _coerce_str_fields(spec: SweepSpec, fields: dict[str, dataclasses.Field]) -> None:
    """Numbers given for text fields become text: ``--set disc_dims=10`` means "10", not 10."""

    def fix(name, v):
        default = fields[name].default
        if isinstance(default, str) and isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        return v

    for name, value in spec.params.items():
        if name not in fields:
            continue
        if isinstance(value, dict) and "choice" in value and isinstance(value["choice"], list):
            spec.params[name] = {"choice": [fix(name, v) for v in value["choice"]]}
        elif not isinstance(value, dict):
            spec.params[name] = fix(name, value)


def _check_value(where: str, value: Any, fld: dataclasses.Field) -> None:
    """Values must have the type of the field's default (an int is fine for a float)."""
    default = fld.default if fld.default is not dataclasses.MISSING else None
    if default is None:
        return
    want = type(default)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if want is int and isinstance(value, float) and value.is_integer():
        ok = True
    if not ok:
        raise SpaceError(f"{where}: expected {want.__name__}, got {value!r}")


def _validate_objectives(spec: SweepSpec, source: str) -> None:
    if not isinstance(spec.objectives, dict):
        raise SpaceError(f"{source}: objectives must map a name to {{metric: max|min, ...}}")
    for name, pairs in spec.objectives.items():
        if not isinstance(pairs, dict) or len(pairs) < 2 or any(m not in ("max", "min") for m in pairs.values()):
            raise SpaceError(f"{source}: objective '{name}' must map two or more metrics to max|min")
        if list(pairs)[0] != spec.metric:
            raise SpaceError(f"{source}: objective '{name}' must start with the sweep metric '{spec.metric}'")
    if spec.objective is not None and spec.objective not in spec.objectives:
        known = ", ".join(spec.objectives) or "none defined"
        raise SpaceError(f"{source}: unknown objective '{spec.objective}' (known: {known})")


def _closest(name: str, fields) -> str:
    import difflib

    match = difflib.get_close_matches(name, list(fields), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _to_domain(value: Any) -> Any:
    from ray import tune

    if not isinstance(value, dict):
        return value
    (kind, args), = value.items()
    if kind == "choice":
        return tune.choice(args)
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "loguniform":
        return tune.loguniform(*args)
    if kind == "randint":  # inclusive in YAML, as users read [low, high]; Tune's upper is exclusive
        return tune.randint(int(args[0]), int(args[1]) + 1)
    if kind == "quniform":
        return tune.quniform(*args)
    raise AssertionError(kind)


def describe(value: Any) -> str:
    """Short human form of a param value, for `dlb-tune tasks` and summaries."""
    if isinstance(value, dict):
        (kind, args), = value.items()
        return f"{kind}{args}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value)
