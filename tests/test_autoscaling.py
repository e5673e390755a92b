"""Sweeps on a cluster that starts empty and grows: Ray's fake multi-node autoscaler on this machine.

One autoscaling cluster for the module (``dlb_tune.testing.AutoscalingCluster``), separate from the
session's local Ray: a head with 0 CPUs and up to 3 worker nodes of ``{CPU: 1, GPU: 1}`` whose GPU is only
reserved (no CUDA here: trials fall back to the CPU). Each test that runs trials waits until the
autoscaler has released the previous test's nodes, so its sweep starts from zero workers. Sweeps
run as ``dlb-tune sweep ... --address`` subprocesses, as a user runs them on a cluster's head.

2-3 minutes of node launches, worker start-ups and sweeps alone on this machine: ``make test`` runs
them as its second stage, in a process of their own after the other tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from dlb_tune.testing import AutoscalingCluster, epochs_around, history, wait_for_victim, wait_until

# One cell (the shipped space compares cells; here the question is where trials run, not which wins).
SWEEP = ["--smoke", "--limit", "400", "--sampler", "random", "--scheduler", "fifo", "--num-samples", "2",
         "--set", "embedding=random", "--set", "cell=gru"]

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("DLB_TUNE_MUTATION"):
        pytest.skip("mutation run: Ray workers would run the unmutated code")
    # idle nodes go after 15 s: soon enough for the next test to start from zero workers, late
    # enough that a node is not released while a trial is still starting on it (slow on 2 busy CPUs)
    # a killed node is declared dead after 2 failed health checks 1 s apart, not 5 3 s apart (as in
    # bench autoscale)
    c = AutoscalingCluster(idle_timeout_minutes=0.25, lost_node_checks=2)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def empty(cluster):
    """The cluster with no worker node up (the previous test's nodes idled out)."""
    assert wait_until(lambda: not cluster.worker_nodes(), ceiling_s=300), "worker nodes never idled out"
    return cluster


def sweep(cluster, data_dir, storage, name, *args, background=False):
    cmd = [sys.executable, "-m", "dlb_tune.cli", "sweep", "emotion", "--data-dir", str(data_dir),
           "--address", cluster.address, "--storage", str(storage), "--name", name, *SWEEP, *args]
    log = storage.parent / f"{name}.log"
    if background:
        return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=cluster.env())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=cluster.env())
    log.write_text(proc.stdout + proc.stderr)  # kept beside the experiment, as the background sweep's
    return proc


def test_a_trial_no_node_type_can_hold_fails_at_once(cluster, data_dir, storage):
    launched = cluster.nodes_launched()
    proc = sweep(cluster, data_dir, storage, "big", "--gpus", "2", "--gpus-per-trial", "2")
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no node type can hold one trial (1 CPU + 2 GPU" in err[0] and "gpu_worker {CPU: 1, GPU: 1} x3" in err[0]
    # nothing was asked of the autoscaler: no trial was created, no node started meanwhile
    assert not list((storage / "big").glob("trial_*")) and "waiting for nodes" not in proc.stdout
    assert cluster.nodes_launched() == launched, "the autoscaler launched nodes nothing asked for"


def most_at_once(log: str) -> int:
    """The most trials running at the same time, from the sweep's own start / done lines (a
    trial started again after its node was lost counts once)."""
    running: set[str] = set()
    most = 0
    for trial, event in re.findall(r"\] (\w+)  (start|done|stopped early|error)", log):
        if event == "start":
            running.add(trial)
        else:
            running.discard(trial)
        most = max(most, len(running))
    return most


def test_half_gpu_trials_pack_two_per_node(empty, data_dir, storage):
    proc = sweep(empty, data_dir, storage, "pack", "--gpus", "1", "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 trial(s) at a time, 0.5 CPU / 0.5 GPU each" in proc.stdout and most_at_once(proc.stdout) == 2
    df = pd.read_parquet(storage / "pack" / "results.parquet")
    assert (df.status == "completed").all() and df.node_id.nunique() == 1, df.node_id


def test_sweep_grows_from_zero_workers_and_killed_nodes_are_replaced(empty, data_dir, storage):
    """``--gpus 2`` from zero workers: 2 trials at a time on 2 one-GPU nodes. As soon as one trial
    has a checkpoint, every worker node is killed: the sweep can finish only on nodes the
    autoscaler adds, and the cut trials resume there from the latest checkpoint Tune had registered."""
    # Killing only the victim's node left the other to finish the short trials before a
    # replacement joined, now and then, under load: with no node left, a replacement is certain.
    epochs = 6
    proc = sweep(empty, data_dir, storage, "kill", "--gpus", "2", "--max-failures", "1", "--max-epochs", str(epochs),
                 "--num-samples", "4", "--limit", "6000", "--set", "hidden_size=32", background=True)
    exp, log_file = storage / "kill", storage.parent / "kill.log"
    try:
        # the ceiling only catches a hang: node launches and worker start-ups take minutes under load
        victim = wait_for_victim(exp, epochs, ceiling_s=400, give_up=lambda: proc.poll() is not None)
        assert victim is not None, log_file.read_text()[-3000:]
        trial, node = victim
        joined_before = re.findall(r"node joined: (\w+)", log_file.read_text())
        # a third node Ray's autoscaler now and then starts early (one update counts a placement
        # group both as placed and as pending) goes too: it would take a cut trial
        killed = empty.worker_node_ids()
        assert any(node in k for k in killed), (node, killed)
        for n in killed:
            empty.kill_node(n)
        proc.wait(timeout=500)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_file.read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "2 trial(s) at a time, 1 CPU / 1 GPU each" in log and "waiting for nodes: " in log
    # never more than planned; two at once only if the second node joins before the first node's
    # trials are done, which under load it may not (the nodes used are checked below)
    assert 1 <= most_at_once(log) <= 2, log[-3000:]
    joined = dict(re.findall(r"node joined: (\w+) \(([^)]*)\)", log))  # the sweep's own lines
    assert joined.keys() - set(joined_before), \
        f"no node replaced the killed ones: {joined_before} before the kill, {list(joined)} in all\n{log[-3000:]}"
    df = pd.read_parquet(exp / "results.parquet")
    assert (df.status == "completed").all() and len(df) == 4, df[["trial_id", "status"]]
    hist = history(exp)
    nodes = {t: [n for _, n in h] for t, h in hist.items()}  # trial -> the node of each epoch
    used = {n for ns in nodes.values() for n in ns}
    assert len(used) >= 2 and all(joined.get(n[-12:]) == "1 CPU + 1 GPU" for n in used), (used, joined)
    assert node in nodes[trial] and nodes[trial][-1] != node, (node, nodes[trial])
    assert not any(ns[-1] in k for ns in nodes.values() for k in killed), nodes
    for t, h in hist.items():
        on_killed = {n for _, n in h if any(n in k for k in killed)}
        before, after = epochs_around(h, on_killed.pop()) if on_killed else ([], [e for e, _ in h])
        if not before:  # never ran on a killed node, or cut before its first report: each epoch once
            assert after == list(range(1, epochs + 1)), (t, h)
            continue
        # from its checkpoint: the epoch after the last one it reported, or that last one again. Tune
        # logs a result, then registers the checkpoint that came with it in a second call to the
        # trial's actor (ray/tune/execution/tune_controller.py, _process_trial_result, then
        # _schedule_trial_save); a node lost between the two leaves the epoch before as the latest.
        # A trial cut after its first report may thus start again from epoch 1.
        assert before == list(range(1, before[-1] + 1)) and after[0] in (before[-1], before[-1] + 1) \
            and after == list(range(after[0], epochs + 1)), (t, before, after)
