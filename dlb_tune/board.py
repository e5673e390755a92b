"""TensorBoard over an experiment folder: what Ray does not write, and launching it.

Ray's ``TBXLoggerCallback`` already writes, into every ``trial_<id>/``, the per-epoch scalars
(tags ``ray/tune/<metric>``) and, when a trial ends (ASHA-stopped ones included), an HParams
session with the searched parameters and the trial's last metrics. What it leaves out:

* an experiment-level HParams config. Ray writes a one-trial experiment summary into every
  trial, and TensorBoard shows the first it meets: every hparam marked "does not differ", no
  domains, Ray's bookkeeping (``done``, ``should_checkpoint``, ...) among the metrics.
  ``write_board`` writes one into the experiment root (run ``.``): the search space's domains
  and the metrics that matter, the sweep metric and its best first. TensorBoard's Python loader
  (``--load_fast=false``, as ``start_tensorboard`` runs it) meets the root's first;
* the task's figures from the final test evaluation (``<exp>/test_report/*.png``) and the
  report's figures (``<exp>/report/*.png``), written as TensorBoard images in runs
  ``test_report`` and ``report``.

Files written here end in ``.dlb-tune`` and are replaced on every call, so re-running is safe.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from dlb_tune.experiment import REPORT_DIR, TEST_REPORT_DIR, load_experiment
from dlb_tune.storage import is_uri

# TensorBoard's protobufs, torch's event writer and PIL are imported inside the functions that
# write events, to keep start-up fast.

SUFFIX = ".dlb-tune"  # marks our event files, so a rewrite replaces them
IMAGE_RUNS = (TEST_REPORT_DIR, REPORT_DIR)  # sub-folders whose PNGs become TensorBoard images
RAY_PREFIX = "ray/tune/"  # Ray's scalar tag prefix
# Numbers Ray reports with every result that say nothing about the model.
BOOKKEEPING = {
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "done",
    "time_since_restore", "iterations_since_restore", "should_checkpoint", "best_epoch",
    "wall_s", "epochs", "ended_at",
}


class BoardError(RuntimeError):
    """TensorBoard cannot be started or fed. One line, for the user."""


# --- what Ray does not write ---------------------------------------------------------------


def write_board(exp_dir: Path | str) -> dict[str, Any]:
    """Write the experiment-level HParams config and the image runs; returns what was written."""
    exp = load_experiment(exp_dir)
    root = exp.path
    for old in [*root.glob(f"events.out.tfevents.*{SUFFIX}"), *root.glob(f"*/events.out.tfevents.*{SUFFIX}")]:
        old.unlink()
    now = time.time()
    hparams, metrics = hparams_config(exp.spec, exp.trials)
    _write_events(root, now, [_config_summary(hparams, metrics, now)])
    images = {}
    for run in IMAGE_RUNS:
        pngs = sorted((root / run).glob("*.png"))
        if pngs:
            _write_events(root / run, now, [_image_summary(p) for p in pngs])
            images[run] = [p.name for p in pngs]
    return {"hparams": [h.name for h in hparams], "metrics": metrics, "images": images}


def after_sweep(exp_dir: str, echo: Callable[[str], None]) -> None:
    """``write_board`` at the end of a sweep, so that any TensorBoard opened on the folder later
    finds the HParams config and the task's figures. Local folders only (event files on s3://
    would need TensorFlow's file systems)."""
    if is_uri(exp_dir):
        return
    try:
        write_board(exp_dir)
    except Exception as e:  # noqa: BLE001 - extras for TensorBoard must never fail a finished sweep
        echo(f"TensorBoard extras not written ({type(e).__name__}: {e}); `dlb-tune tensorboard` retries")


def hparams_config(spec, trials) -> tuple[list, list[str]]:
    """HParamInfos of the searched parameters (domains from the space) and the metric names."""
    from tensorboard.plugins.hparams import api_pb2

    infos = []
    for name in spec.searched():
        dist = spec.params[name]
        col = f"config/{name}"
        # "differs" decides which columns TensorBoard shows first; Ray's summaries leave it unset.
        differs = col in trials and trials[col].astype(str).nunique() > 1
        info = api_pb2.HParamInfo(name=name, description=str(dist), differs=differs)
        dist.hparams_domain().update_hparam_info(info)
        infos.append(info)
    return infos, _metric_names(spec, trials)


def _metric_names(spec, trials) -> list[str]:
    """The sweep metric and its best first, then the other objectives, val_*, train_*, the rest."""
    numeric = [c for c in trials.columns
               if not c.startswith("config/") and c not in BOOKKEEPING and trials[c].dtype.kind in "if"]
    first = [spec.metric, f"best_{spec.metric}"] + [g.metric for g in spec.goals()]

    def order(name: str) -> tuple[int, str]:
        if name in first:
            return first.index(name), ""
        return len(first) + (0 if name.startswith("val_") else 1 if name.startswith("train_") else 2), name

    return sorted(dict.fromkeys(c for c in first + numeric if c in numeric), key=order)


def _config_summary(hparam_infos: list, metric_names: list[str], created: float):
    """The experiment summary (what ``hparams_config_pb`` builds, plus ``differs``)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=RAY_PREFIX + m), display_name=_display(m))
               for m in metric_names]
    experiment = api_pb2.Experiment(hparam_infos=hparam_infos, metric_infos=metrics, time_created_secs=created)
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment))
    summary = summary_pb2.Summary()
    summary.value.add(tag=metadata.EXPERIMENT_TAG, metadata=content, tensor=metadata.NULL_TENSOR)
    return summary


def _display(metric: str) -> str:
    if metric == "epoch":
        return "epochs trained (fewer: stopped by ASHA)"
    return metric


def _image_summary(png: Path):
    """A PNG as a TensorBoard image summary, bytes as they are (no re-encoding)."""
    from PIL import Image
    from tensorboard.compat.proto import summary_pb2

    data = png.read_bytes()
    with Image.open(png) as im:
        width, height = im.size
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(im.mode, 3)
    image = summary_pb2.Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=data)
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=png.stem, image=image)])


def _write_events(folder: Path, wall_time: float, summaries: list) -> Path:
    """One event file of ``summaries`` at ``wall_time``, through TensorBoard's writer as torch
    ships it (the file name ends in ``SUFFIX``, so a rewrite finds and replaces it); its path."""
    from torch.utils.tensorboard.writer import FileWriter

    before = set(folder.glob(f"events.out.tfevents.*{SUFFIX}"))
    writer = FileWriter(str(folder), filename_suffix=SUFFIX)
    try:
        for summary in summaries:
            writer.add_summary(summary, global_step=0, walltime=wall_time)
    finally:
        writer.close()
    [path] = set(folder.glob(f"events.out.tfevents.*{SUFFIX}")) - before
    return path


# --- launching ---------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tensorboard_command(logdir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """TensorBoard in this interpreter, bound to ``host`` only (127.0.0.1: not the network).

    ``--load_fast=false``: TensorBoard shows the first experiment summary it finds. The Python
    loader finds the experiment root's (ours) first; the Rust data server returns runs in an
    order that changes from process to process, so it would pick one of Ray's per-trial ones
    at random (no domains, Ray's bookkeeping as metrics).
    """
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
            "--port", str(port), "--reload_interval", "5", "--load_fast", "false"]


def start_tensorboard(logdir: Path, port: int | None = None, host: str = "127.0.0.1",
                      timeout_s: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start TensorBoard (its own chatter silenced) and wait until it answers; process and URL."""
    port = port or free_port(host)
    proc = subprocess.Popen(tensorboard_command(logdir, port, host), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}/"
    try:
        wait_until_ready(url, proc, timeout_s)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def wait_until_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BoardError(f"TensorBoard exited with code {proc.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(url + "data/runs", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise BoardError(f"TensorBoard did not answer on {url} within {timeout_s:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- reading back through TensorBoard's HTTP API (what its frontend calls) -----------------------
