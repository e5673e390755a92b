"""Data-parallel trials: each trial is a Ray Train ``TorchTrainer`` with N workers.

Ray 2.60 runs Train V2, where a trainer is no longer a Tune trainable: the Tune function
trainable below starts ``TorchTrainer.fit()`` itself, and ``TuneReportCallback`` forwards the
rank-0 metrics (and the checkpoint's path) to Tune. Workers run the same ``epoch_loop`` as a
plain trial; the task sees data parallelism only through its ``TrialContext`` (sharded batches,
DDP-wrapped model or all-reduced gradients, summed metric totals).

Checkpoints are Ray Train's: each trial's Train run is named after the trial and stored inside
the trial's folder, so a restarted trial (node lost, ``dlb-tune resume``) finds its latest
checkpoint through ``ray.train.get_checkpoint()`` and continues from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlb_tune.objective import Objective
from dlb_tune.tasks import portable_name
from dlb_tune.trainable import epoch_loop, node_label, pick_device, start_trial, trial_key, trial_seed

# Ray is imported inside the functions that run under it, to keep importing this module fast.

CHECKPOINT_PATH_KEY = "checkpoint_path"  # where TuneReportCallback puts a Train checkpoint's path
PLACEMENT_GROUP_KEY = "train_placement_group"  # the workers' placement group, reported by rank 0
DRIVER_CPU = 0.01  # what the Tune trainable that drives a TorchTrainer reserves (0 is refused)


def ddp_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the whole trial's training loop on this worker's shard."""
    import ray
    import ray.train

    c = loop_config
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # a reserved GPU without CUDA (a simulated or broken node) trains on the CPU, as plain trials do
    device = ray.train.torch.get_device() if c["use_gpu"] and cuda_here() else pick_device(False)
    # The same seed on every worker: identical initial weights and one shared batch order,
    # which ``TrialContext.batches`` splits into disjoint shards.
    task, ctx, start_state = start_trial(
        c["task_name"], c["config"], ray.get(c["data_ref"][0]), seed=c["seed"], max_epochs=c["max_epochs"],
        threads=c["threads"], device=device, checkpoint=ray.train.get_checkpoint(), rank=rank, world_size=world)
    node_id = node_label()
    group = ray.util.get_current_placement_group()
    tags = {"node_id": node_id, PLACEMENT_GROUP_KEY: group.id.hex() if group else None}

    def report(metrics: dict[str, float], ckpt_dir: Path | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None
        ray.train.report({**metrics, **tags}, checkpoint=ckpt)

    epoch_loop(task, ctx, metric=c["metric"], mode=c["mode"], start_state=start_state, report=report,
               is_reporter=rank == 0)


def ddp_trial(config: dict[str, Any], *, data_ref: list, task_name: str, metric: str, mode: str,
              max_epochs: int, seed: int, threads: int, use_gpu: bool, workers: int,
              cpus_per_worker: float, gpus_per_worker: float) -> None:
    """The Tune function trainable of a data-parallel trial: it only drives a TorchTrainer."""
    from ray import train, tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    context = tune.get_context()
    trial_id = context.get_trial_id() or "local"
    # This driving process holds DRIVER_CPU; take it out of the workers' share so a trial asking
    # for N x c CPUs fits in exactly N x c (2 workers x 1 CPU on a 2-core machine).
    resources = {"CPU": max(cpus_per_worker - DRIVER_CPU / workers, DRIVER_CPU)}
    if use_gpu:
        resources["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        ddp_worker,
        train_loop_config={
            "config": config, "data_ref": data_ref, "task_name": portable_name(task_name), "metric": metric,
            "mode": mode, "max_epochs": max_epochs, "seed": trial_seed(seed, trial_key(context)),
            "threads": threads, "use_gpu": use_gpu,
        },
        scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
        # NCCL needs CUDA; this process runs on a node of the workers' kind (the head has no CPUs)
        torch_config=TorchConfig(backend=None if cuda_here() else "gloo"),
        run_config=train.RunConfig(
            name=f"train_{trial_id}",
            storage_path=str(Path(context.get_trial_dir()).parent),
            checkpoint_config=train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=mode),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


def best_train_checkpoint(history, metric: str, mode: str) -> str | None:
    """The checkpoint folder of a data-parallel trial's best epoch, from its metric history."""
    if history is None or CHECKPOINT_PATH_KEY not in history or metric not in history:
        return None
    rows = history.dropna(subset=[metric, CHECKPOINT_PATH_KEY])
    if rows.empty:
        return None
    row = rows.loc[Objective(metric, mode).best_index(rows[metric])]
    path = str(row[CHECKPOINT_PATH_KEY])
    return path if Path(path).exists() else None
