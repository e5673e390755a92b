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
    params:
      activation: {choice: [sigmoid, tanh, relu]}
      lr: {loguniform: [1.0e-3, 0.5]}
      momentum: 0.9       # a constant
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import yaml

from dlb_tune.tasks import Task, UnknownTask, get_task, space_file_beside
from dlb_tune.tasks.base import ConfigError, config_fields


class SpaceError(ValueError):
    """A search-space file or a ``--set`` override is malformed. One line, for the user."""


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads ``1e-3`` as a number, as YAML 1.2 and people do (PyYAML follows YAML
    1.1, where a float needs a dot: ``1.0e-3``, and ``--set lr=1e-3`` would be the text '1e-3')."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """A space file's YAML (``yaml.safe_load`` but for exponents, ``_Loader``)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


SCALARS = (type(None), bool, int, float, str)
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
}
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


# --- distributions -------------------------------------------------------------------------------


class Distribution:
    """One parameter of a space file: a ``Constant``, or a ``{kind: args}`` mapping Tune samples.

    Consumers ask the distribution for what they need (a Tune domain, an Optuna distribution, a
    TensorBoard HParams domain, the values at its ends, a plot axis) instead of reading the YAML.
    """

    kind: ClassVar[str]
    draws_floats: ClassVar[bool] = False  # Tune samples floats, whatever the bounds' type

    def to_yaml(self) -> Any:
        raise NotImplementedError

    def candidates(self) -> list[Any]:
        """The values the field's type and the task's ``validate`` must accept: every value a
        finite set holds, the two ends of a range."""
        return self.extremes()

    def to_tune(self) -> Any:
        raise NotImplementedError

    def to_optuna(self) -> Any:
        raise NotImplementedError

    def hparams_domain(self) -> Any:
        raise NotImplementedError

    def extremes(self) -> list[Any]:
        """The values at the ends (every value, for a choice of text)."""
        raise NotImplementedError

    def contains(self, value: Any) -> bool:
        """Whether the distribution can give ``value`` (an ``initial:`` point must lie inside)."""
        raise NotImplementedError

    def middle(self) -> Any:
        """A representative value, for a parameter held fixed while others vary."""
        raise NotImplementedError

    def axis_scale(self) -> tuple[Callable[[Any], float], list[tuple[float, str]]]:
        """Where a value sits on a [0, 1] plot axis, and the axis's (position, label) ticks."""
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.kind} {self.to_yaml()[self.kind]}"


@dataclass(frozen=True)
class Choice(Distribution):
    values: tuple

    kind: ClassVar[str] = "choice"

    @classmethod
    def from_args(cls, args: list, where: str) -> Choice:
        if not args:
            raise SpaceError(f"{where}: choice needs at least one value")
        for v in args:
            if not isinstance(v, SCALARS):  # Optuna's rule, and Tune's choice would hand out lists
                raise SpaceError(f"{where}: choices must be scalars (write lists as strings, e.g. \"10,10\"), got {v!r}")
        keys = [(isinstance(v, bool), v) for v in args]  # True == 1 in Python, not in a space file
        repeated = [v for i, v in enumerate(args) if keys[i] in keys[:i]]
        if repeated:
            raise SpaceError(f"{where}: choice lists {repeated[0]!r} more than once")
        return cls(tuple(args))

    def to_yaml(self) -> dict[str, list]:
        return {"choice": list(self.values)}

    def candidates(self) -> list[Any]:
        return list(self.values)

    def to_tune(self) -> Any:
        from ray import tune

        return tune.choice(list(self.values))

    def to_optuna(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(self.values))

    def hparams_domain(self) -> Any:
        from tensorboard.plugins.hparams import summary_v2 as hp

        # TensorBoard stores numbers as float64; Ray writes ints as numbers too, so they match.
        return hp.Discrete([float(v) if _is_number(v) else v for v in self.values])

    def extremes(self) -> list[Any]:
        if all(_is_number(v) for v in self.values):
            return sorted({min(self.values), max(self.values)})
        return list(self.values)

    def middle(self) -> Any:
        return self.values[len(self.values) // 2]

    def contains(self, value: Any) -> bool:
        return (isinstance(value, bool), value) in [(isinstance(v, bool), v) for v in self.values]

    def axis_scale(self) -> tuple[Callable[[Any], float], list[tuple[float, str]]]:
        n = len(self.values) - 1

        def position(v: Any) -> float:
            return next((i for i, c in enumerate(self.values) if c == v), 0) / n if n else 0.5

        return position, [(position(c), str(c)) for c in self.values]


@dataclass(frozen=True)
class Constant(Distribution):
    """A fixed value: Tune passes it through as it is; elsewhere, a choice of one."""

    value: Any

    kind: ClassVar[str] = "constant"

    def to_yaml(self) -> Any:
        return self.value

    def _as_choice(self) -> Choice:
        return Choice((self.value,))

    def to_tune(self) -> Any:
        return self.value

    def to_optuna(self) -> Any:
        return self._as_choice().to_optuna()

    def hparams_domain(self) -> Any:
        return self._as_choice().hparams_domain()

    def extremes(self) -> list[Any]:
        return [self.value]

    def contains(self, value: Any) -> bool:
        return self._as_choice().contains(value)

    def middle(self) -> Any:
        return self.value

    def axis_scale(self) -> tuple[Callable[[Any], float], list[tuple[float, str]]]:
        return self._as_choice().axis_scale()

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Uniform(Distribution):
    low: float
    high: float

    kind: ClassVar[str] = "uniform"
    draws_floats: ClassVar[bool] = True

    @classmethod
    def from_args(cls, args: list, where: str) -> Uniform:
        names = [f.name for f in dataclasses.fields(cls)]
        if len(args) != len(names) or not all(_is_number(a) for a in args):
            raise SpaceError(f"{where}: {cls.kind} takes [{', '.join(names)}] numbers, got {args}")
        if not all(math.isfinite(a) for a in args):
            raise SpaceError(f"{where}: {cls.kind} takes finite numbers, got {args}")
        dist = cls(*args)
        if not dist.low < dist.high:
            raise SpaceError(f"{where}: {cls.kind} needs low < high, got [{dist.low}, {dist.high}]")
        dist._check(where)
        return dist

    def _check(self, where: str) -> None:
        """The kind's own rules, beyond two finite numbers with low < high."""

    def to_yaml(self) -> dict[str, list]:
        return {self.kind: [getattr(self, f.name) for f in dataclasses.fields(self)]}

    def to_tune(self) -> Any:
        from ray import tune

        return tune.uniform(self.low, self.high)

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high))

    def hparams_domain(self) -> Any:
        from tensorboard.plugins.hparams import summary_v2 as hp

        return hp.RealInterval(float(self.low), float(self.high))

    def extremes(self) -> list[Any]:
        return [self.low, self.high]

    def middle(self) -> Any:
        return (self.low + self.high) / 2

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= value <= self.high

    def _unit(self, v: float) -> float:
        return (v - self.low) / (self.high - self.low)

    def axis_scale(self) -> tuple[Callable[[Any], float], list[tuple[float, str]]]:
        return (lambda v: self._unit(float(v))), [(0.0, f"{self.low:.3g}"), (1.0, f"{self.high:.3g}")]


@dataclass(frozen=True)
class LogUniform(Uniform):
    kind: ClassVar[str] = "loguniform"

    def _check(self, where: str) -> None:
        if self.low <= 0:
            raise SpaceError(f"{where}: loguniform needs low > 0, got {self.low}")

    def to_tune(self) -> Any:
        from ray import tune

        return tune.loguniform(self.low, self.high)

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=True)

    def middle(self) -> Any:
        return math.sqrt(self.low * self.high)

    def _unit(self, v: float) -> float:
        return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))


@dataclass(frozen=True)
class RandInt(Uniform):
    """Integers from low to high, both included, as users read ``[low, high]``."""

    kind: ClassVar[str] = "randint"
    draws_floats: ClassVar[bool] = False

    def _check(self, where: str) -> None:
        if not all(float(a).is_integer() for a in (self.low, self.high)):
            raise SpaceError(f"{where}: randint bounds must be integers, got [{self.low}, {self.high}]")

    def to_tune(self) -> Any:
        from ray import tune

        return tune.randint(int(self.low), int(self.high) + 1)  # Tune's upper bound is exclusive

    def to_optuna(self) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(int(self.low), int(self.high))

    def extremes(self) -> list[Any]:
        return [int(self.low), int(self.high)]

    def middle(self) -> Any:
        return int(round((self.low + self.high) / 2))

    def contains(self, value: Any) -> bool:
        return super().contains(value) and float(value).is_integer()


@dataclass(frozen=True)
class QUniform(Uniform):
    """Multiples of ``q`` from low to high; Tune rounds a uniform draw to the nearest one."""

    q: float

    kind: ClassVar[str] = "quniform"

    def _check(self, where: str) -> None:
        if self.q <= 0:
            raise SpaceError(f"{where}: quniform step q must be > 0, got {self.q}")
        if self.q > self.high - self.low:
            raise SpaceError(f"{where}: quniform step q ({self.q}) is larger than the range [{self.low}, {self.high}]")
        for bound in (self.low, self.high):
            # Tune refuses such a bound when it builds the domain, after Ray has started
            if not math.isclose(bound / self.q, round(bound / self.q)):
                raise SpaceError(f"{where}: quniform bounds must be multiples of q ({self.q}), got {bound}")

    def to_tune(self) -> Any:
        from ray import tune

        return tune.quniform(self.low, self.high, self.q)

    def to_optuna(self) -> Any:
        from optuna.distributions import FloatDistribution

        # bounds are multiples of q, so Tune's rounded draws lie on Optuna's grid low + k * q
        return FloatDistribution(float(self.low), float(self.high), step=float(self.q))

    def contains(self, value: Any) -> bool:
        return super().contains(value) and math.isclose(value / self.q, round(value / self.q))

    def middle(self) -> Any:
        return round((self.low + self.high) / 2 / self.q) * self.q


KINDS: dict[str, type[Distribution]] = {c.kind: c for c in (Choice, Uniform, LogUniform, RandInt, QUniform)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


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

    def objective_pairs(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs for the searcher: the named objective, or the single metric."""
        if self.objective:
            return list(self.objectives[self.objective].items())
        return [(self.metric, self.mode)]

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
    task_cls = get_task(task)  # an unknown task says so first
    path = space_file_beside(task_cls) or builtin_spaces_dir() / f"{task}.yaml"
    if not path.exists():
        raise SpaceError(f"task '{task}' has no search-space file {path}")
    return path


def load_space(path: Path | str, overrides: list[str] = (), objective: str | None = None) -> SweepSpec:
    """Read, override (``--set key=value``) and validate a search-space file."""
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
    return parse_space(raw, source=str(path), overrides=overrides, objective=objective)


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
    for item in overrides:
        key, value = _parse_override(item)
        params[key] = value
    spec = SweepSpec(
        task=str(raw["task"]),
        metric=str(raw["metric"]),
        mode=str(raw["mode"]),
        params=_parse_params(params, task, source),
        target=_number(raw, "target", source, None),
        max_epochs=int(_number(raw, "max_epochs", source, 10, minimum=1)),
        grace_period=int(_number(raw, "grace_period", source, 1, minimum=1)),
        reduction_factor=int(_number(raw, "reduction_factor", source, 3, minimum=2)),
        num_samples=int(_number(raw, "num_samples", source, 8, minimum=1)),
        time_budget_s=_number(raw, "time_budget_s", source, None, minimum=1),
        objectives=raw.get("objectives") or {},
        objective=objective if objective is not None else raw.get("objective"),
        search=_parse_search(raw.get("search"), source),
        description=str(raw.get("description", "")),
        source=source,
    )
    _validate(spec, source)
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
    if spec.mode not in ("max", "min"):
        raise SpaceError(f"{source}: mode must be 'max' or 'min', got '{spec.mode}'")
    if spec.grace_period > spec.max_epochs:
        raise SpaceError(f"{source}: grace_period ({spec.grace_period}) exceeds max_epochs ({spec.max_epochs})")
    _validate_objectives(spec, source)


def _parse_params(params: dict, task: type[Task] | None, source: str) -> dict[str, Distribution]:
    if task is None:
        return {str(name): _distribution_or_constant(raw, f"{source}: params.{name}") for name, raw in params.items()}
    fields = config_fields(task)
    out = {}
    for name, raw in params.items():
        if name not in fields:
            hint = _closest(str(name), fields)
            raise SpaceError(
                f"{source}: '{name}' is not a parameter of task '{task.name}'{hint}; "
                f"parameters: {', '.join(fields)}"
            )
        out[name] = parse_param(raw, fields[name], task, f"{source}: params.{name}")
    return out


def parse_param(raw: Any, fld: dataclasses.Field, task: type[Task], where: str) -> Distribution:
    """A constant or ``{kind: args}`` from YAML, checked against its kind's rules, the field's
    type and the task's own ``validate``; ``where`` (source and ``params.<name>``) starts every error."""
    raw = _text_for_text_field(raw, fld)
    if isinstance(raw, dict) and fld.name in task.data_fields:
        raise SpaceError(f"{where}: shapes the data, which is loaded once per sweep; give a constant")
    dist = _distribution_or_constant(raw, where)
    _check_field_type(dist, fld, where)
    for value in dist.candidates():
        try:
            task.validate(fld.name, value)
        except ConfigError as e:
            raise SpaceError(f"{where}: {e}") from None
    return dist


def _distribution_or_constant(raw: Any, where: str) -> Distribution:
    if isinstance(raw, dict):
        return parse_distribution(raw, where)
    if isinstance(raw, SCALARS):
        return Constant(raw)
    raise SpaceError(f"{where}: give a value or one {{distribution: [args]}} mapping, got {raw!r}")


def parse_distribution(raw: dict, where: str) -> Distribution:
    if len(raw) != 1:
        raise SpaceError(f"{where}: a distribution is one key of {tuple(KINDS)}, got {sorted(map(str, raw))}")
    (kind, args), = raw.items()  # the one place that reads the YAML form
    if kind not in KINDS:
        raise SpaceError(f"{where}: unknown distribution '{kind}'; known: {', '.join(KINDS)}")
    if not isinstance(args, list):
        raise SpaceError(f"{where}: {kind} takes a list, got {args!r}")
    return KINDS[kind].from_args(args, where)


def _text_for_text_field(raw: Any, fld: dataclasses.Field) -> Any:
    """Numbers given for text fields become text: ``--set disc_dims=10`` means "10", not 10."""
    if not isinstance(fld.default, str):
        return raw
    if _is_number(raw):
        return str(raw)
    if isinstance(raw, dict) and isinstance(raw.get("choice"), list) and len(raw) == 1:
        return {"choice": [str(v) if _is_number(v) else v for v in raw["choice"]]}
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
    if want is float and _is_number(value):
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
