"""Whatever a sweep writes, every reader reads.

The sweep records the space it ran as the experiment's ``space.yaml`` (``sweep.spec_as_run``,
then ``experiment.write_space``), and every reading command parses that file back
(``experiment.read_space``; ``resume`` also against the task's class). Property: for every
shipped space file, any valid ``search:`` section, ``initial:`` points, ``--set`` overrides,
``--enqueue`` point, ``--smoke`` and size flags, and any concurrency, the file read back is the
spec the sweep ran. A user's invalid ``search:`` section is refused by ``prepare_spec``, before
Ray starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlb_tune.distributions import Choice, LogUniform, QUniform, RandInt, SpaceError, Uniform
from dlb_tune.experiment import read_space, write_space
from dlb_tune.options import SweepOptions
from dlb_tune.space import TPE_ONLY, default_space_file, load_space
from dlb_tune.prepare import prepare_spec
from dlb_tune.sweep import spec_as_run
from dlb_tune.tasks import all_tasks, is_builtin

TASKS = [name for name, cls in all_tasks().items() if is_builtin(cls)]
SHIPPED = {task: load_space(default_space_file(task)) for task in TASKS}


def values_of(dist) -> st.SearchStrategy:
    """Values the distribution can give: what an ``initial:`` point or a ``--set`` may name."""
    if isinstance(dist, Choice):
        return st.sampled_from(dist.values)
    if isinstance(dist, RandInt):
        return st.integers(int(dist.low), int(dist.high))
    if isinstance(dist, QUniform):
        lo, hi = math.ceil(dist.low / dist.q - 1e-9), math.floor(dist.high / dist.q + 1e-9)
        return st.integers(lo, hi).map(lambda k: round(k * dist.q, 12)).filter(dist.contains)
    if isinstance(dist, (Uniform, LogUniform)):
        return st.floats(dist.low, dist.high, allow_nan=False, allow_infinity=False)
    raise AssertionError(f"no strategy for {dist!r}")


@st.composite
def search_sections(draw) -> dict | None:
    """Every valid ``search:`` section: the sampler (or none), and for TPE any of its settings."""
    sampler = draw(st.sampled_from([None, "tpe", "random"]))
    section = {} if sampler is None else {"sampler": sampler}
    if sampler != "random":
        for key, values in (("multivariate", st.booleans()), ("group", st.booleans()),
                            ("constant_liar", st.booleans()), ("n_startup_trials", st.integers(0, 20))):
            if draw(st.booleans()):
                section[key] = draw(values)
        if section.get("group") and section.get("multivariate") is False:
            section.pop("group")  # refused, rightly (test_invalid_search_sections_are_refused_before_ray)
    return draw(st.sampled_from([section, None])) if not section else section


@st.composite
def runs(draw):
    """A shipped space file with a drawn ``search:`` and ``initial:``, and the sweep's options."""
    task = draw(st.sampled_from(TASKS))
    shipped = SHIPPED[task]
    searched = shipped.searched()
    raw = yaml.safe_load(default_space_file(task).read_text())
    search = draw(search_sections())
    if search is None:
        raw.pop("search", None)
    else:
        raw["search"] = search
    points = draw(st.lists(st.fixed_dictionaries({k: values_of(shipped.params[k]) for k in searched}), max_size=2))
    if draw(st.booleans()):  # else the shipped file's own points
        raw["initial"] = points or None
    fixed = draw(st.lists(st.sampled_from(searched), unique=True, max_size=3)) if searched else []
    overrides = [f"{k}={json.dumps(draw(values_of(shipped.params[k])))}" for k in fixed]
    enqueue = draw(st.one_of(st.none(), st.fixed_dictionaries({k: values_of(shipped.params[k]) for k in searched})))
    flags = dict(smoke=draw(st.booleans()), num_samples=draw(st.one_of(st.none(), st.integers(1, 50))),
                 max_epochs=draw(st.one_of(st.none(), st.integers(1, 30))),
                 sampler=draw(st.sampled_from([None, "tpe", "random"])))
    return task, raw, overrides, enqueue, flags, draw(st.integers(1, 16))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_the_recorded_space_reads_back_as_the_spec_that_ran(run):
    task, raw, overrides, enqueue, flags, concurrency = run
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(yaml.safe_dump(raw, sort_keys=False))
        best = None
        if enqueue is not None:  # a `dlb-tune best` file: every parameter fixed
            best = Path(tmp) / "best.yaml"
            fixed = {**SHIPPED[task].constants(), **enqueue}
            best.write_text(yaml.safe_dump({"task": task, "metric": raw["metric"], "mode": raw["mode"], "params": fixed}))
        opts = SweepOptions(task=task, space=str(space), overrides=overrides, enqueue=str(best) if best else None,
                            name="x", **flags)
        try:
            spec = prepare_spec(opts)
        except SpaceError as e:  # fewer trials than compared values: refused, rightly (test_cells.py)
            assert "compare_by" in str(e) and flags["num_samples"] < 10, e
            return
        ran = spec_as_run(spec, opts, concurrency)
        exp_dir = Path(tmp) / "exp"
        write_space(str(exp_dir), ran)
        read = read_space(exp_dir)  # as every reader reads it: data, the task not consulted
        resumed = read_space(exp_dir, checked=True)  # as resume reads it: against the task's class
    assert dataclasses.replace(read, source=ran.source) == ran
    assert dataclasses.replace(resumed, source=ran.source) == ran


def test_the_search_settings_that_ran_are_on_record():
    """The constant liar follows the concurrency and is written down; a random sampler has none."""
    opts = SweepOptions(task="emotion", name="x")
    tpe = spec_as_run(prepare_spec(opts), opts, concurrency=2)
    assert tpe.search == {"sampler": "tpe", **SHIPPED["emotion"].search, "constant_liar": True}
    assert spec_as_run(prepare_spec(opts), opts, concurrency=1).search["constant_liar"] is False
    fcn = SweepOptions(task="fcn", name="x")
    assert spec_as_run(prepare_spec(fcn), fcn, concurrency=2).search == {"sampler": "random"}


@pytest.mark.parametrize("section, key", [
    *[({"sampler": "random", key: True if key != "n_startup_trials" else 3}, key) for key in TPE_ONLY],
    ({"group": True, "multivariate": False}, "group"),
    ({"sampler": "cmaes"}, "sampler"),
    ({"n_startup_trials": -1}, "n_startup_trials"),
    ({"constant_liar": "yes"}, "constant_liar"),
])
def test_invalid_search_sections_are_refused_before_ray(tmp_path, section, key):
    raw = yaml.safe_load(default_space_file("fcn").read_text())
    raw["search"] = section
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpaceError, match=rf"search\.{key}"):
        prepare_spec(SweepOptions(task="fcn", space=str(space)))

