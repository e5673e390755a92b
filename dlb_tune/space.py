"""Search-space files: YAML in, a validated ``SweepSpec`` and a Ray Tune ``param_space`` out.

Everything is checked here, before Ray starts: the task exists, every parameter is a field of
the task's config dataclass, distributions are known and obey their own rules, values (both ends
of a range) have the field's type and pass the task's ``validate``, and data-shaping fields are
constants. Each parameter becomes a ``Distribution`` (``Constant`` for a fixed value); the rest
of the package asks it for Tune, Optuna, TensorBoard and plot forms instead of reading the YAML.

Format::

    task: fcn
    metric: val_acc
    mode: max
    target: 0.98          # test split, checked once at the end
    max_epochs: 16
    grace_period: 2       # ASHA: epochs before a trial can be stopped
    max_params: 100000    # configurations whose model is bigger are never trained (optional)
    params:
      activation: {choice: [sigmoid, tanh, relu]}
      lr: {loguniform: [1.0e-3, 0.5]}
      momentum: 0.9       # a constant
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlb_tune.distributions import Choice, Constant, Distribution, SpaceError, distribution_or_constant, is_number
from dlb_tune.objective import MODES, Objective
from dlb_tune.tasks import Task, UnknownTask, check_task_name, get_task, space_file_beside
from dlb_tune.tasks.base import ConfigError, config_fields, counts_params


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-3`` as a number, as YAML 1.2 and people do (PyYAML follows YAML
    1.1, where a float needs a dot: ``1.0e-3``, and ``--set lr=1e-3`` would be the text '1e-3')."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """A space file's YAML (``yaml.safe_load`` but for exponents, ``_Loader``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


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
    "initial": "configs to run first [{param: value, ...}], e.g. the course's own",
    "search": "Optuna sampler settings {sampler: tpe|random, multivariate, group, constant_liar, n_startup_trials}",
    "compare_by": "a categorical parameter whose values get equal shares of the trials, each its own sampler",
    "max_params": "configurations whose model has more parameters are rejected before they train",
}
# Top-level keys that ``--set`` reaches too: a limit set for one run (the sizes have options of their own)
SET_TOP_LEVEL = ("max_params",)
SINGLE_OBJECTIVE = "none"  # --objective none: the sweep metric alone, whatever the file's default
# The ``search:`` section: key -> (type, what it means). Defaults are Optuna's, except that the
# constant liar follows the concurrency (``search_as_run``).
SAMPLERS = ("tpe", "random")
TPE_ONLY = ("multivariate", "group", "constant_liar", "n_startup_trials")
SEARCH_KEYS: dict[str, tuple[type, str]] = {
    "sampler": (str, "tpe (the default) or random (Optuna's RandomSampler; ASHA still stops trials)"),
    "multivariate": (bool, "one joint model of all parameters instead of one per parameter"),
    "group": (bool, "multivariate TPE per group of parameters that appear together"),
    "constant_liar": (bool, "count running trials as bad so concurrent trials spread out"),
    "n_startup_trials": (int, "random trials before TPE takes over"),
}


# --- the sweep spec --------------------------------------------------------------------------------


@dataclass
class SweepSpec:
    """A validated search space plus the sweep settings that travel with it."""

    task: str
    metric: str
    mode: str
    params: dict[str, Distribution]  # field name -> Constant or a distribution to sample
    target: float | None = None
    max_epochs: int = 10
    grace_period: int = 1
    reduction_factor: int = 3  # ASHA's default halving rate
    num_samples: int = 8
    time_budget_s: float | None = None
    objectives: dict[str, dict[str, str]] = field(default_factory=dict)
    objective: str | None = None
    search: dict[str, Any] = field(default_factory=dict)  # Optuna sampler settings (SEARCH_KEYS)
    initial: list[dict[str, Any]] = field(default_factory=list)  # searched field -> value, run first
    compare_by: str | None = None  # a searched choice: equal shares of the trials per value (dlb_tune/cells.py)
    max_params: int | None = None  # model parameters a trained configuration may have (Task.count_params)
    description: str = ""
    source: str = ""

    @property
    def task_cls(self) -> type[Task]:
        return get_task(self.task)

    def searched(self) -> list[str]:
        return [k for k, d in self.params.items() if not isinstance(d, Constant)]

    def constants(self) -> dict[str, Any]:
        return {k: d.value for k, d in self.params.items() if isinstance(d, Constant)}

    def param_space(self) -> dict[str, Any]:
        """The Ray Tune ``param_space``: a Tune domain per searched field, constants as they are."""
        return {k: d.to_tune() for k, d in self.params.items()}

    def base_config(self) -> Any:
        """The task config with the constants applied; what ``load_data`` sees."""
        return self.task_cls.Config(**self.constants())

    @property
    def goal(self) -> Objective:
        """The sweep metric and which of its values is better."""
        return Objective(self.metric, self.mode)

    def goals(self) -> list[Objective]:
        """What the searcher optimises: the named multi-objective mode (``objective``), or the
        sweep metric alone."""
        if self.objective:
            return [Objective(m, mode) for m, mode in self.objectives[self.objective].items()]
        return [self.goal]

    def to_yaml(self) -> str:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        d["params"] = {k: dist.to_yaml() for k, dist in self.params.items()}
        return yaml.safe_dump({k: v for k, v in d.items() if v not in (None, "", {})}, sort_keys=False)


def builtin_spaces_dir() -> Path:
    """``search_spaces/`` beside the package in a checkout, packaged as ``dlb_tune.search_spaces``."""
    checkout = Path(__file__).resolve().parents[1] / "search_spaces"
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files("dlb_tune.search_spaces")))


def default_space_file(task: str) -> Path:
    check_task_name(task)  # an unknown task says so first; a known one is not imported
    path = space_file_beside(task) or builtin_spaces_dir() / f"{task}.yaml"
    if not path.exists():
        raise SpaceError(f"task '{task}' has no search-space file {path}")
    return path


def load_space(path: Path | str, overrides: list[str] = (), objective: str | None = None,
               with_task: bool = True) -> SweepSpec:
    """Read, override (``--set key=value``) and validate a search-space file. ``with_task=False``:
    checked without the task's class (its module, torch) as ``parse_space(recorded=True)`` does;
    the cheap first look at a sweep's input, and enough to list a task."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"search-space file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}); "
                         f"save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        # a ReaderError (a control character) has no ``problem``, and its text runs over two lines
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_space(raw, source=str(path), overrides=overrides, objective=objective, recorded=not with_task)


def parse_space(raw: Any, source: str = "<space>", overrides=(), objective: str | None = None,
                recorded: bool = False) -> SweepSpec:
    """A space file's content, checked. ``recorded``: an experiment's ``space.yaml``, as its sweep
    wrote it, read as data: without the task's class (a reader imports no task module), so the
    distributions are checked against their own rules only."""
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: expected a mapping at the top level")
    unknown = set(raw) - set(TOP_LEVEL)
    if unknown:
        raise SpaceError(f"{source}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL)}")
    for key in ("task", "metric", "mode"):
        if key not in raw:
            raise SpaceError(f"{source}: missing required key '{key}'")
    task = None if recorded else _task(str(raw["task"]), source)
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise SpaceError(f"{source}: 'params' must be a mapping of field -> value or distribution, got {params!r}")
    params = dict(params)
    from_cli = set()
    raw = dict(raw)
    for item in overrides:
        key, value = _parse_override(item)
        if key in SET_TOP_LEVEL:
            raw[key] = value
        else:
            params[key] = value
        from_cli.add(key)
    # --objective over the file's objective:, and `none` is the sweep metric alone
    chosen = raw.get("objective") if objective is None else objective
    spec = SweepSpec(
        task=str(raw["task"]),
        metric=str(raw["metric"]),
        mode=str(raw["mode"]),
        params=_parse_params(params, task, source, from_cli),
        target=_number(raw, "target", source, None),
        max_epochs=int(_number(raw, "max_epochs", source, 10, minimum=1)),
        grace_period=int(_number(raw, "grace_period", source, 1, minimum=1)),
        reduction_factor=int(_number(raw, "reduction_factor", source, 3, minimum=2)),
        num_samples=int(_number(raw, "num_samples", source, 8, minimum=1)),
        time_budget_s=_number(raw, "time_budget_s", source, None, minimum=1),
        objectives=raw.get("objectives") or {},
        objective=None if chosen == SINGLE_OBJECTIVE else chosen,
        search=_parse_search(raw.get("search"), source),
        compare_by=None if raw.get("compare_by") is None else str(raw["compare_by"]),
        max_params=_max_params(raw.get("max_params"), "--set max_params" if "max_params" in from_cli
                               else f"{source}: max_params"),
        description=str(raw.get("description", "")),
        source=source,
    )
    _validate(spec, source)
    if spec.max_params is not None and task is not None and not counts_params(task):
        raise SpaceError(f"{source}: max_params needs each model's size before it trains, and task '{task.name}' "
                         f"cannot count it (no Task.count_params); remove max_params")
    spec.initial = _parse_initial(raw.get("initial"), spec, task, source)
    return spec


def _task(name: str, source: str) -> type[Task]:
    try:
        return get_task(name)
    except UnknownTask as e:
        raise SpaceError(f"{source}: {e.args[0]}") from None


def _number(raw: dict, key: str, source: str, default, minimum=None):
    if raw.get(key) is None:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{source}: '{key}' must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise SpaceError(f"{source}: '{key}' must be at least {minimum}, got {value}")
    return value


def _max_params(value: Any, where: str) -> int | None:
    """A positive whole number of parameters (``1e5`` and ``100000.0`` are fine), or None."""
    if value is None:
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise SpaceError(f"{where} must be a positive whole number of parameters such as 100000, got {value!r}")
    return int(value)


def _parse_search(raw: Any, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: 'search' must be a mapping such as {{multivariate: true}}, got {raw!r}")
    unknown = set(raw) - set(SEARCH_KEYS)
    if unknown:
        raise SpaceError(f"{source}: unknown search key(s) {sorted(unknown)}; allowed: {sorted(SEARCH_KEYS)}")
    for key, value in raw.items():
        want = SEARCH_KEYS[key][0]
        if type(value) is not want:  # bool is an int: exact type, so `n_startup_trials: true` fails
            raise SpaceError(f"{source}: search.{key} must be a {want.__name__}, got {value!r}")
    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpaceError(f"{source}: search.sampler '{sampler}' is not known; choose one of {', '.join(SAMPLERS)}")
    tpe_only = [k for k in TPE_ONLY if k in raw]
    if sampler != "tpe" and tpe_only:
        raise SpaceError(f"{source}: search.{tpe_only[0]} is a TPE setting; sampler '{sampler}' has none")
    if raw.get("n_startup_trials", 0) < 0:
        raise SpaceError(f"{source}: search.n_startup_trials must be at least 0, got {raw['n_startup_trials']}")
    if raw.get("group") and raw.get("multivariate") is False:
        raise SpaceError(f"{source}: search.group needs multivariate TPE; drop 'multivariate: false'")
    return dict(raw)


def with_sampler(search: dict[str, Any], sampler: str | None) -> dict[str, Any]:
    """The ``search:`` section with ``--sampler`` in place of the file's sampler (None: the file's
    own); a random sampler has no TPE settings, so the file's go."""
    if sampler is None:
        return dict(search)
    kept = {k: v for k, v in search.items() if sampler == "tpe" or k not in TPE_ONLY}
    return {**kept, "sampler": sampler}


def search_as_run(search: dict[str, Any], concurrency: int) -> dict[str, Any]:
    """A validated ``search:`` section with the choices dlb-tune makes filled in: the sampler by
    name and, for TPE, the constant liar (on when trials overlap, so concurrent trials do not all
    propose the same point). What the sampler is built from and what the experiment records."""
    out = {"sampler": search.get("sampler", "tpe"), **search}
    if out["sampler"] == "tpe":
        out.setdefault("constant_liar", concurrency > 1)
    return out


def _parse_initial(raw: Any, spec: SweepSpec, task: type[Task] | None, source: str) -> list[dict[str, Any]]:
    """``initial:`` points as Tune's warm start wants them: exactly the searched parameters.

    A value must be one its distribution can give. A constant wins over a point's value (so
    ``--set`` and ``--smoke`` can fix a parameter the points name) and is dropped from it.
    Without the task (a recorded space), the points as the sweep wrote them."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise SpaceError(f"{source}: 'initial' must be a list of {{param: value}} mappings")
    if task is None:
        return [dict(p) for p in raw]
    fields = config_fields(task)
    points = [_parse_point(point, spec, fields, task, f"{source}: initial[{i}]") for i, point in enumerate(raw)]
    return [p for p in points if p]


def enqueued_point(spec: SweepSpec, path: Path | str) -> dict[str, Any]:
    """The parameters of a fixed space file (``dlb-tune best``) as one more ``initial:`` point of
    ``spec``; its values must lie inside ``spec``'s distributions."""
    given = load_space(path)
    if given.task != spec.task:
        raise SpaceError(f"--enqueue {path}: a space for task '{given.task}', not '{spec.task}'")
    point = {k: v for k, v in given.constants().items() if k in spec.params}
    return _parse_point(point, spec, config_fields(spec.task_cls), spec.task_cls, f"--enqueue {path}")


def _parse_point(point: dict, spec: SweepSpec, fields: dict, task: type[Task], where: str) -> dict[str, Any]:
    out = {}
    for name, value in point.items():
        if name not in spec.params:
            raise SpaceError(f"{where}: '{name}' is not a parameter of this space{_closest(str(name), spec.params)}")
        dist = spec.params[name]
        if isinstance(dist, Constant):
            continue
        value = _text_for_text_field(value, fields[name])
        _check_field_type(Constant(value), fields[name], f"{where}.{name}")
        if not dist.contains(value):
            raise SpaceError(f"{where}.{name}: {value!r} lies outside the space's {dist}")
        try:
            task.validate(name, value)
        except ConfigError as e:
            raise SpaceError(f"{where}.{name}: {e}") from None
        out[name] = value
    missing = [k for k in spec.searched() if k not in out]
    if missing:
        raise SpaceError(f"{where}: gives no value for {', '.join(missing)}; a point names every searched parameter")
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SpaceError(f"--set expects key=value, got '{item}'")
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError:
        raise SpaceError(f"--set {key}: cannot parse value '{value}'") from None
    return key.strip(), parsed


def _validate(spec: SweepSpec, source: str) -> None:
    if spec.mode not in MODES:
        raise SpaceError(f"{source}: mode must be 'max' or 'min', got '{spec.mode}'")
    if spec.grace_period > spec.max_epochs:
        raise SpaceError(f"{source}: grace_period ({spec.grace_period}) exceeds max_epochs ({spec.max_epochs})")
    _validate_objectives(spec, source)
    check_compare_by(spec, source)


def check_compare_by(spec: SweepSpec, source: str) -> None:
    """``compare_by`` names a searched categorical parameter, with no more values than trials. A
    parameter fixed by ``--set``, or a sweep that runs only given points (``initial``,
    ``--enqueue``), leaves nothing to compare: the sweep is then an ordinary one."""
    name = spec.compare_by
    if name is None:
        return
    dist = spec.params.get(name)
    if isinstance(dist, Constant) or spec.num_samples <= len(spec.initial):
        spec.compare_by = None
        return
    if not isinstance(dist, Choice):
        what = "not a parameter of the space" if dist is None else f"a {dist.kind}, not a choice"
        raise SpaceError(f"{source}: compare_by '{name}' must name a categorical parameter ({{choice: [...]}}); "
                         f"it is {what}")
    if spec.num_samples < len(dist.values):
        raise SpaceError(f"{source}: compare_by '{name}' has {len(dist.values)} values but the sweep has "
                         f"{spec.num_samples} trials; each value needs at least one (--num-samples "
                         f"{len(dist.values)} or more)")


def _parse_params(params: dict, task: type[Task] | None, source: str, from_cli=frozenset()) -> dict[str, Distribution]:
    """``from_cli``: the names a ``--set`` gave, whose errors name the command line, not the file."""
    def where(name) -> str:
        return f"--set {name}" if name in from_cli else f"{source}: params.{name}"

    if task is None:
        return {str(name): distribution_or_constant(raw, where(name)) for name, raw in params.items()}
    fields = config_fields(task)
    out = {}
    for name, raw in params.items():
        if name not in fields:
            hint = _closest(str(name), fields)
            origin = "--set" if name in from_cli else source
            raise SpaceError(
                f"{origin}: '{name}' is not a parameter of task '{task.name}'{hint}; "
                f"parameters: {', '.join(fields)}"
            )
        out[name] = parse_param(raw, fields[name], task, where(name))
    return out


def parse_param(raw: Any, fld: dataclasses.Field, task: type[Task], where: str) -> Distribution:
    """A constant or ``{kind: args}`` from YAML, checked against its kind's rules, the field's
    type and the task's own ``validate``; ``where`` (source and ``params.<name>``) starts every error."""
    raw = _text_for_text_field(raw, fld)
    if isinstance(raw, dict) and fld.name in task.data_fields:
        raise SpaceError(f"{where}: shapes the data, which is loaded once per sweep; give a constant")
    dist = distribution_or_constant(raw, where)
    _check_field_type(dist, fld, where)
    for value in dist.candidates():
        try:
            task.validate(fld.name, value)
        except ConfigError as e:
            raise SpaceError(f"{where}: {e}") from None
    return dist


def _text_for_text_field(raw: Any, fld: dataclasses.Field) -> Any:
    """Numbers given for text fields become text: ``--set disc_dims=10`` means "10", not 10."""
    if not isinstance(fld.default, str):
        return raw
    if is_number(raw):
        return str(raw)
    if isinstance(raw, dict) and isinstance(raw.get("choice"), list) and len(raw) == 1:
        return {"choice": [str(v) if is_number(v) else v for v in raw["choice"]]}
    return raw


def _check_field_type(dist: Distribution, fld: dataclasses.Field, where: str) -> None:
    default = fld.default if fld.default is not dataclasses.MISSING else None
    if default is None:
        return
    for value in dist.candidates():
        _check_value(where, value, type(default))
    if dist.draws_floats and type(default) is int:
        raise SpaceError(f"{where}: {dist.kind} draws floats for an int field; use randint or choice")


def _check_value(where: str, value: Any, want: type) -> None:
    """Values must have the type of the field's default (an int is fine for a float)."""
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and is_number(value):
        ok = True
    if want is int and isinstance(value, float) and value.is_integer():
        ok = True
    if not ok:
        raise SpaceError(f"{where}: expected {want.__name__}, got {value!r}")


def _validate_objectives(spec: SweepSpec, source: str) -> None:
    if not isinstance(spec.objectives, dict):
        raise SpaceError(f"{source}: objectives must map a name to {{metric: max|min, ...}}")
    for name, pairs in spec.objectives.items():
        if name == SINGLE_OBJECTIVE:
            raise SpaceError(f"{source}: '{SINGLE_OBJECTIVE}' is reserved (--objective none: the sweep metric alone)")
        if not isinstance(pairs, dict) or len(pairs) < 2 or any(m not in MODES for m in pairs.values()):
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
