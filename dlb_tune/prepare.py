"""What a sweep settles before Ray starts: the spec it will run (the space file with ``--set``,
``--smoke``, the size flags and ``--enqueue`` applied, validated) and its data, loaded once.

Everything a user can get wrong in them fails here, in one line; ``plan`` and the ``--seeds``
re-runs use the same two steps as the sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

from dlb_tune.distributions import SpaceError
from dlb_tune.options import ResourceError, SweepOptions, check_machine
from dlb_tune.param_limit import check_one_config
from dlb_tune.space import SAMPLERS, SweepSpec, check_compare_by, enqueued_point, load_space
from dlb_tune.space_files import space_file
from dlb_tune.tasks import check_task_name, get_task, load_task_module

SMOKE_LIMIT = 512  # examples per split in a --smoke sweep


def check_request(opts: SweepOptions, machine: bool = True) -> None:
    """What can be checked without the task's module (torch) or Ray, so that the commonest
    mistakes fail at once: the experiment name, the task's name, the space file and ``--set`` as
    text and distributions, the machine's CPUs and GPUs. ``prepare_spec`` then checks the rest
    (parameters against the task's config) before Ray starts. ``machine=False``: a plan, which may
    be made for a bigger machine than this one."""
    from dlb_tune.experiment import check_name

    if opts.name:
        check_name(opts.name)
    if opts.task_module:  # named by the user: imported here, as prepare_spec would
        opts.task_module = load_task_module(opts.task_module)
    check_task_name(opts.task)
    path = space_file(opts.task, opts.space)
    spec = load_space(path, opts.overrides, opts.objective, with_task=False)
    if spec.task != opts.task:
        raise SpaceError(f"{path} is a space for task '{spec.task}', not '{opts.task}'")
    if opts.enqueue:
        load_space(opts.enqueue, with_task=False)
    if machine:
        check_machine(opts)


def prepare_spec(opts: SweepOptions) -> SweepSpec:
    """The space file with --set, --smoke and the run-level overrides applied, validated."""
    if opts.task_module:  # recorded as imported, so resume and the reports import it again
        opts.task_module = load_task_module(opts.task_module)
    task_cls = get_task(opts.task)
    if (opts.workers_per_trial > 1 or opts.ray_train) and not task_cls.supports_ddp:
        raise ResourceError(f"task '{opts.task}' does not support --workers-per-trial > 1")
    path = space_file(opts.task, opts.space)
    overrides = list(opts.overrides)
    if opts.smoke:  # the task's tiny config, unless the user fixed those keys themselves
        given = {o.partition("=")[0].strip() for o in overrides}
        overrides = [f"{k}={json.dumps(v)}" for k, v in task_cls.smoke.items() if k not in given] + overrides
    spec = load_space(path, overrides, opts.objective)
    if spec.task != opts.task:
        raise SpaceError(f"{path} is a space for task '{spec.task}', not '{opts.task}'")
    if opts.smoke:  # two trials, or one per compared value
        spec.max_epochs, spec.num_samples = min(spec.max_epochs, 2), min(spec.num_samples, max(2, compared(spec)))
        spec.grace_period = 1
    if opts.max_epochs is not None:
        spec.max_epochs = opts.max_epochs
        spec.grace_period = min(spec.grace_period, opts.max_epochs)
    if opts.num_samples is not None:
        spec.num_samples = opts.num_samples
    if opts.time_budget_s is not None:
        spec.time_budget_s = opts.time_budget_s
    if opts.enqueue:  # first: with --num-samples 1 it is the one config trained
        spec.initial.insert(0, enqueued_point(spec, opts.enqueue))
    if opts.sampler not in (None, *SAMPLERS):
        raise SpaceError(f"unknown sampler '{opts.sampler}' ({', '.join(SAMPLERS)})")
    if opts.scheduler not in ("asha", "fifo"):
        raise SpaceError(f"unknown scheduler '{opts.scheduler}' (asha, fifo)")
    check_compare_by(spec, "the sweep")
    check_one_config(spec)
    return spec


def compared(spec: SweepSpec) -> int:
    """How many values ``compare_by`` compares (0 without it)."""
    dist = spec.params.get(spec.compare_by) if spec.compare_by else None
    return len(getattr(dist, "values", ()))


def load_data(spec: SweepSpec, opts: SweepOptions):
    limit = opts.limit if opts.limit is not None else (SMOKE_LIMIT if opts.smoke else None)
    data = spec.task_cls.load_data(opts.resolved_data_dir(), spec.base_config(), limit)
    spec.task_cls.check_metrics(data, [g.metric for g in spec.goals()])
    return data
