"""A local autoscaling Ray cluster: Ray's fake multi-node provider, started and stopped by us.

The head has no CPUs (like ``cluster.yaml``'s), so every trial waits for a worker node that the
autoscaler launches as real local Ray processes. Node types may declare ``GPU: 1`` without a GPU:
Ray then only reserves the resource, and the trial falls back to the CPU.

Everything runs under one short ``--temp-dir`` and its own ports, and every process it starts
lives in the session of the ``ray start`` we launched, so ``stop`` kills exactly these
processes (never ``ray stop``, which would kill every Ray instance on the machine, other
people's test runs included).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID, FAKE_HEAD_NODE_TYPE

START_ATTEMPTS = 3
# the node type the fake provider gives the head it did not launch (node id FAKE_HEAD_NODE_ID)
HEAD_TYPE = FAKE_HEAD_NODE_TYPE
# up to 3 nodes of one CPU and one reserved GPU: a 2-trial sweep, and a node to replace a killed one
GPU_WORKER = {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_config(gcs_address: str, worker_types: dict[str, dict[str, Any]], idle_timeout_minutes: float) -> dict[str, Any]:
    """An autoscaling config for the fake_multinode provider (the wheel lacks Ray's example)."""
    # The provider tags the head it did not launch with this type name; under any other name the
    # autoscaler keeps launching a head-type node and terminating it again.
    node_types = {HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}, **worker_types}
    return {
        "cluster_name": "dlb-tune-fake",
        "max_workers": sum(t["max_workers"] for t in worker_types.values()),
        "upscaling_speed": 10.0,  # launch every node a request needs at once
        "idle_timeout_minutes": idle_timeout_minutes,
        # launch_multiple: start every node asked for at once, not one per request.
        # foreground_node_launch: launch within the autoscaler's update, so a node still starting
        # counts as pending and the autoscaler does not ask for one more.
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "launch_multiple": True, "foreground_node_launch": True,
                     "gcs_address": gcs_address},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


class AutoscalingCluster:
    """``ray start --head --num-cpus=0 --autoscaling-config=...`` with the fake provider."""

    def __init__(self, worker_types: dict[str, dict[str, Any]] | None = None, idle_timeout_minutes: float = 5,
                 lost_node_checks: int | None = None):
        self.worker_types = worker_types or {"gpu_worker": GPU_WORKER}
        self.idle_timeout_minutes = idle_timeout_minutes
        # Ray's GCS marks a node dead after this many failed health checks (default 5, 3 s apart;
        # given here, 1 s apart). A busy raylet fails one only after a 10 s timeout: 2 spares it.
        self.lost_node_checks = lost_node_checks
        self._prepare()

    def _prepare(self) -> None:
        """A fresh temp dir, ports and token (a failed start leaves its own behind, removed)."""
        # short: Ray's unix socket paths under it must stay within 107 characters
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dlbas", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.session_id: int | None = None
        # token auth stays on, with a token of this cluster's own (the shared ~/.ray/auth_token
        # may not exist yet on a fresh machine, and other people's clusters use it)
        self.token = self.temp_dir / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)

    def auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}

    def env(self) -> dict[str, str]:
        """For ``dlb-tune`` subprocesses: join this cluster, not any other on the machine."""
        return {**os.environ, **self.auth_env(), "RAY_ADDRESS": self.address, "PYTHONUNBUFFERED": "1"}

    def start(self) -> "AutoscalingCluster":
        """The head, tried again on a fresh temp dir and ports if it fails: Ray gives its raylet a
        fixed 30 s to register, which a busy machine can miss."""
        for attempt in range(1, START_ATTEMPTS + 1):
            proc = self._start_head()
            if proc.returncode == 0:
                return self
            self.stop()
            if attempt < START_ATTEMPTS:
                self._prepare()
        raise RuntimeError(f"ray start failed {START_ATTEMPTS} times; the last:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")

    def _start_head(self) -> subprocess.CompletedProcess:
        config = self.temp_dir / "autoscaling.yaml"
        config.write_text(yaml.safe_dump(fake_config(self.address, self.worker_types, self.idle_timeout_minutes)))
        env = {**os.environ, **self.auth_env(), "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        if self.lost_node_checks is not None:  # and 1 s apart, not 3
            env.update(RAY_health_check_failure_threshold=str(self.lost_node_checks), RAY_health_check_period_ms="1000")
        env.pop("RAY_ADDRESS", None)
        cmd = ["ray", "start", "--head", "--num-cpus=0", "--num-gpus=0", f"--port={self.port}",
               "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}", f"--autoscaling-config={config}",
               "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}", "--include-dashboard=false",
               f"--ray-client-server-port={free_port()}", f"--node-manager-port={free_port()}",
               f"--object-manager-port={free_port()}", "--disable-usage-stats"]
        cmd[0] = str(Path(sys.executable).with_name("ray"))
        # a session of its own: every process Ray starts from here (head, autoscaler, the worker
        # nodes it launches) carries this session id, and ``stop`` signals exactly those
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
        self.session_id = self._session_of_gcs()
        return proc

    def _session_of_gcs(self) -> int | None:
        for pid in self.pids(by_temp_dir=True):
            try:
                return os.getsid(pid)
            except ProcessLookupError:
                continue
        return None

    def pids(self, by_temp_dir: bool = False) -> list[int]:
        """This cluster's processes: our session, or (before it is known) our temp dir in argv."""
        import ray  # noqa: F401
        import psutil  # Ray's bundled copy: importing ray first puts it on sys.path

        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if by_temp_dir or self.session_id is None:
                    if str(self.temp_dir) in " ".join(p.info["cmdline"] or []):
                        found.append(p.pid)
                elif os.getsid(p.pid) == self.session_id:
                    found.append(p.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        return [pid for pid in found if pid != os.getpid()]

    def worker_nodes(self) -> list[dict[str, Any]]:
        """Alive worker nodes, as ``ray list nodes`` shows them (read in a subprocess: the test
        process may be connected to another Ray instance)."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                "print(json.dumps([n for n in ray.nodes() if n['Alive']]))") % self.address
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env=self.env())
        if out.returncode != 0:
            raise RuntimeError(f"cannot list the cluster's nodes:\n{out.stderr[-2000:]}")
        nodes = json.loads(out.stdout.strip().splitlines()[-1])
        return [n for n in nodes if "node:__internal_head__" not in n["Resources"]]

    def worker_node_ids(self) -> list[str]:
        """Ids of this cluster's worker nodes that have a raylet process now."""
        return [n for n, _ in self._worker_node_processes()]

    def _worker_node_processes(self) -> list[tuple[str, list]]:
        """(node id, [its raylet, every process under it]) for each worker node of this cluster."""
        import ray  # noqa: F401
        import psutil  # Ray's bundled copy: importing ray first puts it on sys.path

        ours = set(self.pids())  # another fake cluster on the machine numbers its nodes the same way
        nodes = []
        for p in psutil.process_iter(["pid", "cmdline", "environ"]):
            if p.pid not in ours:
                continue
            # the fake provider hands a node its id through this variable (the head's too)
            node_id = (p.info["environ"] or {}).get("RAY_OVERRIDE_NODE_ID_FOR_TESTING")
            if "raylet" in (p.info["cmdline"] or [""])[0] and node_id and node_id != FAKE_HEAD_NODE_ID:
                try:
                    nodes.append((node_id, [p, *p.children(recursive=True)]))
                except psutil.Error:
                    continue  # the node is gone
        return nodes

    def nodes_launched(self) -> int:
        """Nodes the autoscaler has started so far, alive or not: each leaves its raylet's log
        (raylet.N.out beside the head's raylet.out)."""
        return len(list(self.temp_dir.glob("session_latest/logs/raylet.*.out")))

    def kill_node(self, node_id: str) -> list[int]:
        """Kill one worker node's raylet and its workers, as a lost machine would vanish."""
        import ray  # noqa: F401
        import psutil  # Ray's bundled copy: importing ray first puts it on sys.path

        victims = [p for nid, procs in self._worker_node_processes() if node_id in nid for p in procs]
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        return [p.pid for p in victims]

    def stop(self) -> None:
        """SIGKILL to this cluster's processes only, until none is left (the autoscaler would
        relaunch worker nodes that a gentler signal let go first); then its temp dir."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = set(self.pids() + self.pids(by_temp_dir=True))
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.5)
        subprocess.run(["rm", "-rf", str(self.temp_dir)], check=False)
