"""What a cluster can provide, planned from its node types (cluster.yaml's), without a Ray cluster."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from dlb_tune.cluster import (WAIT_NOTICE_S, Capacity, ClusterError, NodeType, WatchState, plain_resources,
                              plan_concurrency, trial_bundle, types_from_config)
from dlb_tune.engine import make_searcher
from dlb_tune.options import SweepOptions
from dlb_tune.prepare import prepare_spec

ROOT = Path(__file__).resolve().parents[1]


def shipped_capacity() -> Capacity:
    return Capacity(types_from_config(yaml.safe_load((ROOT / "cluster.yaml").read_text())), "cluster.yaml")


def test_cluster_yaml_declares_what_the_autoscaler_plans_with():
    types = {t.name: t for t in shipped_capacity().types}
    assert types["head"].resources == {"CPU": 0} and types["head"].max_count == 1
    assert types["gpu_worker"].resources["GPU"] == 1 and types["gpu_worker"].resources["CPU"] >= 1
    assert types["gpu_worker"].max_count == 4


def test_the_request_not_the_empty_cluster_sets_concurrency():
    capacity = shipped_capacity()  # nothing is up: a head with 0 CPUs
    assert plan_concurrency(capacity, trial_bundle(1, 1), 1, cpus=None, gpus=4) == 4
    assert plan_concurrency(capacity, trial_bundle(1, 1), 1, cpus=None, gpus=2) == 2
    assert plan_concurrency(capacity, trial_bundle(1, 0.25), 1, cpus=None, gpus=4) == 16
    assert plan_concurrency(capacity, trial_bundle(1, 0), 1, cpus=None, gpus=None) == 16  # 4 nodes x 4 CPUs


def test_a_sweep_with_nothing_searched_keeps_to_the_planned_concurrency(tmp_path):
    """Tune ignores ``max_concurrent_trials`` for a BasicVariantGenerator (what runs when every
    parameter is fixed), so the searcher itself must hold back: else an autoscaler launches a node
    for every sample at once."""
    import json

    from ray.tune.experiment import Experiment

    fixed = [f"{k}={json.dumps(v)}" for k, v in prepare_spec(SweepOptions(task="fcn", smoke=True)).initial[0].items()]
    opts = SweepOptions(task="fcn", smoke=True, overrides=fixed, num_samples=4, storage=str(tmp_path), name="c")
    spec = prepare_spec(opts)
    searcher = make_searcher(spec, opts, concurrency=2)
    searcher.add_configurations([Experiment("c", lambda config: None, config=spec.param_space(),
                                            num_samples=spec.num_samples, storage_path=str(tmp_path))])
    first = [searcher.next_trial() for _ in range(3)]
    assert first[0] and first[1] and first[2] is None
    searcher.on_trial_complete(first[0].trial_id)
    assert searcher.next_trial() is not None  # a finished trial frees its place


def test_a_trial_no_node_type_can_hold_fails_naming_the_types():
    with pytest.raises(ClusterError) as e:
        plan_concurrency(shipped_capacity(), trial_bundle(1, 2), 1, cpus=None, gpus=4)
    line = str(e.value)
    assert "\n" not in line and "no node type can hold one trial (1 CPU + 2 GPU" in line
    assert "head {CPU: 0} x1" in line and "gpu_worker {CPU: 4, GPU: 1} x4" in line


def test_more_gpus_than_the_cluster_can_grow_to_fails():
    with pytest.raises(ClusterError, match="--gpus 8 asked for, but the cluster can have at most 4 GPU"):
        plan_concurrency(shipped_capacity(), trial_bundle(1, 1), 1, cpus=None, gpus=8)


def test_data_parallel_workers_count_each_worker():
    assert plan_concurrency(shipped_capacity(), trial_bundle(1, 1), 2, cpus=None, gpus=4) == 2
    with pytest.raises(ClusterError, match="a trial needs 6 GPU but the sweep may use 4"):
        plan_concurrency(shipped_capacity(), trial_bundle(1, 1), 6, cpus=None, gpus=None)


def test_undeclared_node_resources_are_not_judged():
    """A node type whose resources are detected at boot cannot be planned: the sweep goes on."""
    capacity = Capacity([NodeType("head", {"CPU": 0}, 1), NodeType("gpu_worker", {}, 4)], "old cluster.yaml")
    assert plan_concurrency(capacity, trial_bundle(1, 1), 1, cpus=None, gpus=4) == 4


def test_unlimited_node_types():
    capacity = Capacity([NodeType("cpu", {"CPU": 2}, -1)], "GCS")
    assert capacity.total("CPU") == math.inf
    assert plan_concurrency(capacity, trial_bundle(1, 0), 1, cpus=6, gpus=None) == 6


def test_watch_counts_trials_pending_past_the_notice_and_names_missing_resources():
    state = WatchState(timeout_s=60, bundle=trial_bundle(1, 1))
    assert state.waiting(["a", "b"], now=100.0) == 0  # just created: starting, not waiting
    assert state.waiting(["a", "b", "c"], now=100.0 + WAIT_NOTICE_S) == 2
    assert state.waiting(["c"], now=200.0) == 1  # a and b started: forgotten
    state.nodes = {"head": {"CPU": 0.0}, "w1": {"CPU": 1.0}}
    assert state.missing() == "1 GPU"


def test_watch_says_when_trials_wait_announces_nodes_and_times_out():
    head = {"head": {"CPU": 0.0}}
    state = WatchState(timeout_s=60, bundle=trial_bundle(1, 1), last_progress=0.0)
    assert state.step(0.0, ["a", "b"], False, head) == []  # the nodes already up are not news
    assert state.step(10.0, ["a", "b"], False, None) == [
        "waiting for nodes: 2 trial(s) pending, each needs 1 CPU + 1 GPU; 1 node(s) up"]
    assert state.step(11.0, ["a", "b"], False, None) == []  # said once, not every step
    gpu_node = plain_resources({"GPU": 1, "memory": 9, "CPU": 1})
    joined = state.step(50.0, ["a", "b"], False, {**head, "f" * 51 + "00001": gpu_node})
    assert joined == ["node joined: fffffff00001 (1 CPU + 1 GPU)"]
    assert state.step(100.0, ["b"], True, None) == ["waiting for nodes: 1 trial(s) pending, each needs 1 CPU + 1 GPU; 2 node(s) up"]
    assert state.step(150.0, ["b"], False, None) == [] and not state.timed_out  # 50 s since a trial ran
    lines = state.step(161.0, ["b"], False, None)
    assert state.timed_out and lines == [state.timed_out]
    assert "no node joined in 60s while 1 trial(s) waited; never appeared: a node with 1 CPU + 1 GPU" in lines[0]
    assert state.step(300.0, ["b"], False, None) == []  # ends the sweep once


def readme_cluster_commands() -> list[list[str]]:
    """Every ``dlb-tune ...`` command line the README's cluster section shows, as argv."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Running on a cluster"):]
    section = section[:section.index("\n### ", 1)]
    lines = [ln for ln in section.splitlines() if ln.lstrip("`").startswith("ray ")]  # commands, not prose
    return [shlex.split(m.group(1)) for ln in lines for m in re.finditer(r"dlb-tune ([a-z][^\"`]*)", ln)]


def test_readme_cluster_commands_are_accepted_by_the_cli():
    import click
    import typer
    from typer.testing import CliRunner

    from dlb_tune.cli import app

    commands = readme_cluster_commands()
    assert {argv[0] for argv in commands} >= {"sweep", "resume", "results", "plan"}
    assert any("--address" in argv and any(a.startswith("s3://") for a in argv) for argv in commands)
    group = typer.main.get_command(app)
    for argv in commands:
        shown = CliRunner().invoke(app, [argv[0], "--help"], terminal_width=200)
        assert shown.exit_code == 0, shown.output
        for option in (a for a in argv if a.startswith("--")):
            assert option in shown.output, f"`dlb-tune {argv[0]} --help` has no {option}"
        command = group.get_command(click.Context(group), argv[0])
        command.make_context(argv[0], argv[1:])  # parses every value; runs nothing


def test_a_reserved_gpu_without_cuda_trains_on_the_cpu(data_dir, monkeypatch):
    """A node that declares a GPU but has no CUDA (the simulated cluster, a broken driver): the
    trial Ray gave a GPU to still trains, on the CPU."""
    import torch

    from dlb_tune.tasks.fcn import FCN, FCNConfig
    from dlb_tune.trainable import pick_device, start_trial

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # what Ray sets for a trial holding GPU 0
    device = pick_device(True)
    assert device.type == "cpu"
    config = {"hidden_size": 16, "batch_size": 50}
    data = FCN.load_data(data_dir, FCNConfig(**config), limit=200)
    task, _, _ = start_trial("fcn", config, data, seed=0, max_epochs=1, threads=1, device=device)
    assert 0 <= task.train_epoch(0)["acc"] <= 1


def test_without_an_autoscaler_the_nodes_up_are_all_there_is():
    """A head started with --num-cpus=0 shows no CPU at all: it holds nothing, it is not 'unknown'."""
    capacity = Capacity([NodeType("head", {}, 1), NodeType("w1", {"CPU": 2.0}, 1)], "the nodes up now",
                        autoscaling=False)
    assert plan_concurrency(capacity, trial_bundle(1, 0), 1, cpus=None, gpus=None) == 2
    with pytest.raises(ClusterError, match="no node type can hold one trial"):
        plan_concurrency(capacity, trial_bundle(1, 1), 1, cpus=None, gpus=1)
