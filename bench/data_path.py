"""Figure 4, the data path: what a trial pays to get its data, with and without the shared cache.

For the data set of every registered task (MNIST for fcn, Grocery Store images for cnn,
tokenised tweets for emotion, CelebA faces for vae, ...), through the sweep's own ``load_data``:

* raw: ``load_data`` with an empty disk cache (JPEG decoding, tokenising): what every trial
  would pay if each loaded its own data;
* disk cache: ``load_data`` again, now with the decoded-tensor cache the image tasks keep;
* object store: ``ray.put`` once on the driver, then ``ray.get`` in a Ray worker: what each
  trial pays in a sweep (``tune.with_parameters`` hands trials the same object reference).

    python -m bench data-path [--quick]
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from bench.cli import DataDir, Quick, figure
from bench.common import ratio, say, scratch_dir
from bench.table import table

FETCHES = 3  # object-store reads per data set; the median is reported


def nbytes(obj: Any) -> int:
    """Bytes held in tensors (and numpy arrays) anywhere inside ``obj``."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return obj.element_size() * obj.nelement()
    if hasattr(obj, "nbytes") and not isinstance(obj, (str, bytes)):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


def spec_and_opts(task: str, data_dir: str):
    """The sweep's own spec (space-file constants shape the data), or the config defaults."""
    from dlb_tune import SweepOptions, SweepSpec, get_task, prepare_spec

    opts = SweepOptions(task=task, data_dir=data_dir)
    try:
        return prepare_spec(opts), opts
    except Exception:  # noqa: BLE001 - no space file yet: the config's defaults
        get_task(task)
        return SweepSpec(task=task, metric="val_acc", mode="max", params={}), opts


def timed_load(spec, opts, cache: str) -> tuple[Any, float]:
    from dlb_tune import load_data

    previous = os.environ.get("DLB_TUNE_CACHE")
    os.environ["DLB_TUNE_CACHE"] = cache
    try:
        t = time.perf_counter()
        data = load_data(spec, opts)
        return data, time.perf_counter() - t
    finally:
        if previous is None:
            os.environ.pop("DLB_TUNE_CACHE", None)
        else:
            os.environ["DLB_TUNE_CACHE"] = previous


def object_store(data: Any) -> dict[str, float]:
    """ray.put once, then ray.get in a worker, as a trial does; the worker is warmed first."""
    import ray

    @ray.remote(num_cpus=1)
    def fetch(box: list) -> float:  # a list, so Ray does not resolve the reference for us
        t = time.perf_counter()
        ray.get(box[0])
        return time.perf_counter() - t

    t = time.perf_counter()
    ref = ray.put(data)
    put_s = time.perf_counter() - t
    import torch

    ray.get(fetch.remote([ray.put(torch.zeros(1))]))  # start the worker, import torch: not data costs
    gets = [ray.get(fetch.remote([ref])) for _ in range(FETCHES)]
    del ref
    return {"put_s": put_s, "get_s_median": statistics.median(gets), "get_s": gets}


def measure_task(task: str, data_dir: str) -> dict[str, Any]:
    spec, opts = spec_and_opts(task, data_dir)
    with scratch_dir("fig4-cache") as cache:
        data, raw_s = timed_load(spec, opts, str(cache))
        cached_files = sorted(p.name for p in cache.iterdir())
        data, disk_s = timed_load(spec, opts, str(cache))
    store = object_store(data)
    out = {
        "task": task, "bytes": nbytes(data),
        "raw_load_s": raw_s,
        "disk_cache_load_s": disk_s if cached_files else None,
        "has_disk_cache": bool(cached_files),
        "object_store_put_s": store["put_s"],
        "object_store_get_s": store["get_s_median"],
        "object_store_get_s_all": store["get_s"],
    }
    per_trial_with = store["get_s_median"]
    out["per_trial_without_cache_s"] = raw_s
    out["per_trial_with_cache_s"] = per_trial_with
    out["speedup_raw_over_object_store"] = ratio(raw_s, per_trial_with)
    out["speedup_disk_over_object_store"] = ratio(out["disk_cache_load_s"], per_trial_with)
    return out


def render(rec: dict[str, Any]) -> list[str]:
    rows = [[r["task"], r["bytes"] / 2**20, r["raw_load_s"], r["disk_cache_load_s"], r["object_store_put_s"],
             r["object_store_get_s"], r["speedup_raw_over_object_store"], r["speedup_disk_over_object_store"]]
            for r in rec["datasets"]]
    lines = ["Per-trial data set-up: loading from the raw files (every trial on its own) versus reading the "
             "sweep's one copy from Ray's object store.", ""]
    lines += table(["task", "MiB", "raw files (s)", "disk cache (s)", "object store put, once (s)",
                    "object store get, per trial (s)", "raw / get", "disk cache / get"], rows)
    for name, why in (rec.get("skipped") or {}).items():
        lines.append(f"\n{name}: not measured ({why})")
    return lines


@figure(4, "data-path", "Data path", render)
def measure(quick: Quick = False, data_dir: DataDir = None) -> dict[str, Any]:
    """Per-trial data set-up: raw files, the disk cache, Ray's object store."""
    import ray

    from dlb_tune import SweepOptions, all_tasks, start_ray

    rows, skipped = [], {}
    start_ray(SweepOptions(task="fcn", cpus=2))
    try:
        for task in all_tasks():
            say(f"figure 4: {task}")
            try:
                rows.append(measure_task(task, data_dir))
            except Exception as e:  # noqa: BLE001 - a missing data set is a note, not a crash
                skipped[task] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                continue
            r = rows[-1]
            say(f"figure 4: {task}: raw {r['raw_load_s']:.2f}s, disk cache {r['disk_cache_load_s']}, "
                f"object store get {r['object_store_get_s']:.3f}s ({r['bytes'] / 2**20:.0f} MiB)")
    finally:
        ray.shutdown()
    return {"settings": {"fetches": FETCHES, "note": "the same measurements in quick and full mode"},
            "datasets": rows, "skipped": skipped or None}
