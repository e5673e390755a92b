"""The distributions a search-space file may give a parameter: a constant, or one ``{kind: args}``.

Each checks its own rules when read (``parse_distribution``) and answers for every consumer in
that consumer's terms: a Tune domain, an Optuna distribution, a TensorBoard HParams domain, the
values at its ends, a plot axis. The rest of the package asks them instead of reading YAML.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar


class SpaceError(ValueError):
    """A search-space file or a ``--set`` override is malformed. One line, for the user."""


SCALARS = (type(None), bool, int, float, str)



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
        return hp.Discrete([float(v) if is_number(v) else v for v in self.values])

    def extremes(self) -> list[Any]:
        if all(is_number(v) for v in self.values):
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
        if len(args) != len(names) or not all(is_number(a) for a in args):
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
        return is_number(value) and self.low <= value <= self.high

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


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def distribution_or_constant(raw: Any, where: str) -> Distribution:
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
