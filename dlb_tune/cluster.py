"""Sweeps on a Ray cluster that grows: what the cluster *can* provide, and trials waiting for nodes.

A cluster launched with ``ray up`` starts as a head with no CPUs and no workers; the autoscaler
adds worker nodes when trials ask for resources. So a request (``--gpus 4 --gpus-per-trial 1``)
is checked against the node types the cluster may launch and their max counts, not against the
nodes up at launch time, and the concurrency follows the request. The node types come from, in
order: the cluster config the GCS holds (KubeRay and autoscaler v2 report one), the autoscaler's
config file (the ``--autoscaling-config`` of the head's monitor process, or ``ray up``'s
``~/ray_bootstrap_config.yaml``), and, with no autoscaler, the nodes that are up.

``WatchState`` decides what the engine's ``NodeWatch`` callback says: when trials wait for nodes,
which nodes join, and when to end the sweep (resumable, like Ctrl-C) because trials have waited
``--node-timeout`` seconds with nothing running and no node joining.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_TIMEOUT_S = 600.0  # default --node-timeout: cloud GPU nodes take minutes to boot
WAIT_NOTICE_S = 5.0  # a trial pending longer than this is waiting for a node, not for its actor
NODE_POLL_S = 2.0  # how often the watch asks the GCS which nodes are up
UNLIMITED_CONCURRENCY = 1000  # node types without a max count: more trials at a time than any sweep here
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where `ray up` leaves the config on the head


class ClusterError(RuntimeError):
    """A request the cluster can never meet, or nodes that never came. One line, for the user."""


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]  # declared per node; {} when detected only once a node starts
    max_count: int  # nodes of this type at most; -1: no limit

    def holds(self, bundle: dict[str, float]) -> bool:
        return all(self.resources.get(k, 0.0) >= v for k, v in bundle.items() if v > 0)

    def describe(self) -> str:
        res = ", ".join(f"{k}: {v:g}" for k, v in self.resources.items()) or "resources undeclared"
        count = "unlimited" if self.max_count < 0 else f"x{self.max_count}"
        return f"{self.name} {{{res}}} {count}"


@dataclass
class Capacity:
    """The node types a cluster can have, and where that knowledge came from."""

    types: list[NodeType]
    source: str  # for messages: "autoscaler config /path", "nodes up now", ...
    autoscaling: bool = True

    def total(self, key: str) -> float:
        """The most of a resource the cluster can ever have (inf: no limit)."""
        total = 0.0
        for t in self.types:
            amount = t.resources.get(key, 0.0)
            if amount and t.max_count < 0:
                return math.inf
            total += amount * max(t.max_count, 0)
        return total

    def undeclared(self) -> list[NodeType]:
        """Node types a config launches without saying what they hold (a node that is up and
        shows no resources holds none)."""
        return [t for t in self.types if not t.resources and t.max_count != 0] if self.autoscaling else []

    def describe(self) -> str:
        return "; ".join(t.describe() for t in self.types) + f" (from {self.source})"


def fmt_bundle(bundle: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in bundle.items() if v > 0) or "nothing"


# --- where the node types come from ------------------------------------------------------------


def types_from_config(config: dict[str, Any]) -> list[NodeType]:
    """Node types of a cluster-launcher / autoscaler config (``cluster.yaml``'s schema)."""
    head = config.get("head_node_type")
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        count = 1 if name == head else int(spec.get("max_workers", config.get("max_workers", 0)))
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        types.append(NodeType(name, resources, count))
    return types


def types_from_gcs() -> list[NodeType] | None:
    from ray._private.state import state

    config = state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    return [NodeType(g.name, {k: float(v) for k, v in g.resources.items()}, g.max_count)
            for g in config.node_group_configs]


def types_from_nodes() -> list[NodeType]:
    import ray

    return [NodeType(n["NodeID"][-12:], plain_resources(n["Resources"]), 1) for n in ray.nodes() if n.get("Alive")]


def autoscaling_config_path(gcs_address: str) -> Path | None:
    """The config file the autoscaler of this cluster reads, when it runs on this machine."""
    import psutil  # Ray's bundled copy: importing ray first puts it on sys.path
    import ray  # noqa: F401

    port = gcs_address.rsplit(":", 1)[-1]
    for proc in psutil.process_iter(["cmdline"]):
        try:
            args = proc.info["cmdline"] or []
        except psutil.Error:
            continue
        if not any(a.endswith("monitor.py") for a in args):
            continue
        opts = dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if opts.get("--gcs-address", "").rsplit(":", 1)[-1] == port and opts.get("--autoscaling-config"):
            return Path(opts["--autoscaling-config"]).expanduser()
    bootstrap = Path(BOOTSTRAP_CONFIG).expanduser()
    return bootstrap if bootstrap.is_file() else None


def cluster_capacity() -> Capacity:
    """What the connected cluster can provide (Ray must be initialised)."""
    import ray
    import yaml

    types = types_from_gcs()
    if types:
        return Capacity(types, "the cluster config in the GCS")
    path = autoscaling_config_path(ray.get_runtime_context().gcs_address)
    if path is not None and path.is_file():
        config = yaml.safe_load(path.read_text()) or {}
        return Capacity(types_from_config(config), f"autoscaler config {path}")
    return Capacity(types_from_nodes(), "the nodes up now: no autoscaler found", autoscaling=False)


# --- the request against it --------------------------------------------------------------------


def trial_bundle(cpus_per_trial: float, gpus_per_trial: float) -> dict[str, float]:
    """What one trial (or one data-parallel worker) needs on a single node."""
    return {"CPU": cpus_per_trial, "GPU": gpus_per_trial}


def plan_concurrency(capacity: Capacity, bundle: dict[str, float], workers: int, *, cpus: float | None,
                     gpus: float | None) -> int:
    """Trials at a time the request asks for, or a ClusterError if the cluster can never meet it."""
    if not any(t.holds(bundle) for t in capacity.types) and not capacity.undeclared():
        raise ClusterError(f"no node type can hold one trial ({fmt_bundle(bundle)} on one node): "
                           f"{capacity.describe()}")
    limits = {"CPU": cpus, "GPU": gpus}
    unknown = bool(capacity.undeclared())  # a node type's resources are only known once one boots
    concurrency = float(UNLIMITED_CONCURRENCY)
    for key, need in bundle.items():
        if need <= 0:
            continue
        most = math.inf if unknown else capacity.total(key)
        wanted = limits[key]
        if wanted is not None and wanted > most:
            raise ClusterError(f"--{key.lower()}s {wanted:g} asked for, but the cluster can have at most "
                               f"{most:g} {key}: {capacity.describe()}")
        usable = most if wanted is None else wanted
        if usable < need * workers:
            raise ClusterError(f"a trial needs {need * workers:g} {key} but the sweep may use {usable:g}: "
                               f"{capacity.describe()}")
        if not math.isinf(usable):
            concurrency = min(concurrency, math.floor(usable / (need * workers) + 1e-9))
    return max(1, int(concurrency))


# --- while the sweep runs ----------------------------------------------------------------------


@dataclass
class WatchState:
    """What NodeWatch has seen; ``timed_out`` holds the one-line reason once the sweep is ended."""

    timeout_s: float
    bundle: dict[str, float]
    last_progress: float = field(default_factory=time.monotonic)
    pending_since: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, dict[str, float]] | None = None  # node id -> CPU/GPU; None before the first poll
    waiting_shown: int = 0
    timed_out: str | None = None

    def step(self, now: float, pending: list[str], running: bool, nodes: dict[str, dict[str, float]] | None) -> list[str]:
        """One controller step: ``nodes`` when polled this step. Returns the lines to print."""
        lines = []
        if nodes is not None:
            joined = sorted(nodes.keys() - (self.nodes or {}).keys())
            if self.nodes is not None:  # the first poll finds nodes that were already up
                lines += [f"node joined: {n[-12:]} ({fmt_bundle(nodes[n])})" for n in joined]
            if joined:
                self.last_progress = now
            self.nodes = nodes
        if running:
            self.last_progress = now
        waiting = self.waiting(pending, now)
        if waiting and waiting != self.waiting_shown:
            lines.append(f"waiting for nodes: {waiting} trial(s) pending, each needs {fmt_bundle(self.bundle)}; "
                         f"{len(self.nodes or {})} node(s) up")
        self.waiting_shown = waiting
        if waiting and now - self.last_progress > self.timeout_s and not self.timed_out:  # running is progress
            self.timed_out = (f"no node joined in {self.timeout_s:g}s while {waiting} trial(s) waited; never "
                              f"appeared: a node with {self.missing()} (see `ray status`); finished trials are kept")
            lines.append(self.timed_out)
        return lines

    def waiting(self, pending: list[str], now: float) -> int:
        self.pending_since = {t: self.pending_since.get(t, now) for t in pending}
        return sum(now - since >= WAIT_NOTICE_S for since in self.pending_since.values())

    def missing(self) -> str:
        """The resources of one trial that no node up now has."""
        gone = {k: v for k, v in self.bundle.items()
                if v > 0 and not any(res.get(k, 0.0) >= v for res in (self.nodes or {}).values())}
        return fmt_bundle(gone or self.bundle)


def plain_resources(resources: dict[str, float]) -> dict[str, float]:
    """CPU and GPU only, in that order: Ray's memory and node-id resources would drown the message."""
    return {k: float(resources[k]) for k in ("CPU", "GPU") if k in resources}
