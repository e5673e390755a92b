"""The markdown table: every figure's JSON in ``bench/results/<mode>/`` rendered to ``table.md``.

    python -m bench table [--quick]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bench.common import ROOT, load_json, machine_line, mode_dir

FIGURES = ("sweep_efficiency", "early_stopping", "quality", "data_path", "scaling")


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out


def stamp(rec: dict[str, Any]) -> str:
    return (f"_{rec['started']}, {rec['wall_s']:.0f} s, load average (1/5/15 min) "
            f"{fmt(rec.get('loadavg_start'))} at start, {fmt(rec.get('loadavg_end'))} at end; "
            f"`{rec['command']}`_")


def sweep_efficiency(rec: dict[str, Any]) -> list[str]:
    h, s, legs = rec["headline"], rec["settings"], rec["legs"]
    cpus = s["cpus"]
    rows = [
        ["bare loop, 1 torch thread", h["bare_wall_s"], legs.get("bare_1_thread", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get("bare_1_thread", {}).get("memory", {}).get("peak_processes")],
        [f"ideal: bare / {cpus} CPUs", h["ideal_wall_s"], None, None],
        [f"dlb-tune sweep on {cpus} CPUs (fit)", h["sweep_fit_s"], legs.get("sweep", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get("sweep", {}).get("memory", {}).get("peak_processes")],
        ["  + Ray start-up (once per sweep)", h["ray_start_s"], None, None],
        [f"bare loop, {cpus} torch threads", h["bare_all_threads_wall_s"] if not h.get("bare_all_threads_timed_out")
         else f"> {legs[f'bare_{cpus}_threads']['process_wall_s']:.0f} (stopped)",
         legs.get(f"bare_{cpus}_threads", {}).get("memory", {}).get("peak_pss_mib"),
         legs.get(f"bare_{cpus}_threads", {}).get("memory", {}).get("peak_processes")],
    ]
    lines = [f"{s['configs']} fixed FCN configs x {s['epochs']} epochs, no early stopping, "
             f"{'all' if s['limit'] is None else s['limit']} examples per split.", ""]
    lines += table(["leg", "wall (s)", "peak memory, whole process tree (PSS MiB)", "processes"], rows)
    lines += ["", table_note([
        ("sweep / ideal (1.0 = perfect packing, no overhead)", h["sweep_over_ideal"]),
        ("sweep incl. Ray start-up / ideal", h["sweep_over_ideal_with_ray_start"]),
        (f"sweep / bare loop with {cpus} threads", h["sweep_over_bare_all_threads"]),
        ("epoch time in the sweep / in the bare loop (core contention)", h["epoch_slowdown_in_sweep"]),
        ("per-trial start-up in the sweep, median (s)", h["trial_startup_s_median"]),
        ("per-config set-up in the bare loop, median (s)", h["bare_setup_s_median"]),
        ("per-epoch report + checkpoint overhead, median (s)", h["per_epoch_overhead_s_median"]),
        ("Tune set-up before the first trial starts (s)", h.get("fit_until_first_trial_s")),
        ("Tune wind-down after the last trial ends (s)", h.get("fit_after_last_trial_s")),
    ])]
    if h.get("errors"):
        lines.append(f"\nErrors: {h['errors']}")
    return lines


def table_note(pairs: list[tuple[str, Any]]) -> str:
    return "\n".join(table(["measure", "value"], [[k, v] for k, v in pairs]))


def early_stopping(rec: dict[str, Any]) -> list[str]:
    lines = [f"Median over {rec['settings']['seeds']} seeds; Ray start-up, paid once before all Tune runs, "
             f"took {fmt(rec.get('ray_start_s'), 1)} s and is not in the times."]
    for w in rec["workloads"]:
        wl = w["workload"]
        lines += ["", f"**{wl['task']}**: first {w['metric']} >= {wl['target']}, {wl['num_samples']} trials x up to "
                      f"{wl['max_epochs']} epochs, budget {wl['time_budget_s']:.0f} s per run, "
                      f"{'all' if wl['limit'] is None else wl['limit']} examples per split, "
                      f"ASHA grace {w['grace_period']} / reduction {w['reduction_factor']}.", ""]
        missed = f"> {wl['time_budget_s']:.0f}"
        rows = [[m, v["median_time_to_target_s"] if v["median_time_to_target_s"] is not None else missed,
                 v["reached"], v["median_epochs_run"], v["vs_optuna_asha"], v.get("median_setup_s"),
                 v.get("median_after_setup_s") if v.get("median_after_setup_s") is not None else missed]
                for m, v in w["summary"].items()]
        lines += table(["method", "median time to target (s)", "runs reaching it", "median epochs run",
                        "time / Optuna+ASHA's", "median set-up before 1st trial (s)", "median time to target after it (s)"],
                       rows)
        if w.get("from_run"):
            lines.append(f"\n{wl['task']}: from an earlier run, {stamp(w['from_run'])}")
    for task, why in (rec.get("skipped") or {}).items():
        lines.append(f"\n{task}: not run ({why})")
    return lines


def quality(rec: dict[str, Any]) -> list[str]:
    rows = []
    for task, t in rec["tasks"].items():
        if t["status"] != "ok":
            rows.append([task, "missing", "-", "-", "-", "-", "-", t["why"]])
            continue
        for r in t["rows"]:
            rows.append([task, r["label"], r["metric"], r["value"], r["validation"], r["params"], t["wall_s"],
                         f"{t['written']}: `{t['command']}`"])
    lines = ["Default sweep per task on this machine (2 CPUs), winner chosen on validation, tested once."
             + ("" if rec["settings"]["ran_sweeps"] else " Quick mode reads each task's last `python -m bench sweep`."), ""]
    return lines + table(["task", "trial", "test metric", "value", "validation", "params", "wall (s)", "from"], rows)


def data_path(rec: dict[str, Any]) -> list[str]:
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


def scaling(rec: dict[str, Any]) -> list[str]:
    s, cores = rec["settings"], rec["settings"]["cores"]
    lines = [f"Check: the same {_count(s['grid'])} FCN configs x {s['epochs']} epochs on a simulated cluster of "
             f"1-CPU nodes on this {cores}-core machine; the model is calibrated on the 1-node run.", ""]
    rows = [[c["nodes"], c["measured_fit_s"], c.get("model_real_nodes_s"), c.get(f"model_on_{cores}_cores_s"),
             c.get("model_error"), c.get("speedup_measured"), c.get("measured_until_first_trial_s"),
             "; ".join(c["errors"] or []) or "-"] for c in rec["check"]]
    lines += table(["nodes", "measured fit (s)", "model, real nodes (s)", f"model, {cores} shared cores (s)",
                    "model / measured", "speedup measured", "Tune set-up before 1st trial (s)", "errors"], rows)
    ddp = rec.get("ddp")
    if ddp:
        if "error" in ddp:
            lines.append(f"\nData-parallel trial: not measured ({ddp['error']})")
        else:
            lines.append(f"\nData-parallel trial ({ddp['workers']} Ray Train workers): start-up {fmt(ddp['startup_s'])} s, "
                         f"epoch {fmt(ddp['epoch_s'])} s; the same trial plain: start-up "
                         f"{fmt(ddp['plain_trial']['startup_s'])} s, epoch {fmt(ddp['plain_trial']['epoch_s'])} s."
                         + (f" Errors: {ddp['errors']}" if ddp.get("errors") else ""))
    model = rec.get("model")
    if model:
        inp = model["inputs"]
        shape = inp["default_shape"]
        lines += ["", f"Model (inputs measured above: epoch {fmt(inp['epoch_s'])} s, trial start-up "
                      f"{fmt(inp['startup_s'])} s, per-epoch overhead {fmt(inp['per_epoch_overhead_s'])} s, Tune set-up "
                      f"{fmt(inp['head_s'])} s, trial process start {fmt(inp.get('actor_start_s'))} s, wind-down {fmt(inp['tail_s'])} s, gap {fmt(inp['gap_s'])} s). "
                      f"Default shape: {shape['n']} trials x {shape['epochs']} epochs, ASHA grace {shape['grace']}, "
                      f"reduction {shape['eta']} (epochs per trial {inp['asha_lengths']}).", ""]
        ddp_key = next((k for k in model["rows"][0] if k.startswith("this_workload_ddp")), None)
        header = ["slots (GPUs)", "this workload (s)", "speedup", "default shape, FIFO (s)", "default shape, ASHA (s)",
                  "ASHA speedup"] + ([f"this workload, {ddp_key[len('this_workload_'):-2]} per trial (s)"] if ddp_key else [])
        rows = [[r["slots"], r["this_workload_s"], r["this_workload_speedup"], r["default_shape_fifo_s"],
                 r["default_shape_asha_s"], r["default_asha_speedup"]] + ([r.get(ddp_key)] if ddp_key else [])
                for r in model["rows"]]
        lines += table(header, rows)
    return lines


def _count(grid: dict[str, list]) -> int:
    n = 1
    for v in grid.values():
        n *= len(v)
    return n


RENDER: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "sweep_efficiency": ("1. Sweep efficiency", sweep_efficiency),
    "early_stopping": ("2. Early stopping pays", early_stopping),
    "quality": ("3. Quality per task", quality),
    "data_path": ("4. Data path", data_path),
    "scaling": ("5. Scaling on paper", scaling),
}


def render(quick: bool) -> str:
    folder = mode_dir(quick)
    records = {name: load_json(folder / f"{name}.json") for name in FIGURES}
    present = [r for r in records.values() if r]
    mode = "quick" if quick else "full"
    lines = [f"# dlb-tune benchmarks ({mode})", ""]
    if present:
        lines += [f"Machine: {machine_line(present[0]['machine'])}.", "",
                  "Benchmarks report, they do not judge: compare within one run, as ratios; the load average "
                  "under each figure says how busy the machine was.", ""]
    for name in FIGURES:
        title, fn = RENDER[name]
        rec = records[name]
        lines += [f"## {title}", ""]
        if rec is None:
            lines += [f"not run yet: `python -m bench {name.replace('_', '-')}{' --quick' if quick else ''}`", ""]
            continue
        if "error" in rec:
            lines += [f"failed: {rec['error']}", "", stamp(rec), ""]
            continue
        lines += fn(rec) + ["", stamp(rec), ""]
    return "\n".join(lines)


def write(quick: bool) -> Path:
    """``results/<mode>/table.md``; also the README's copy, between its bench-table markers."""
    path = mode_dir(quick) / "table.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render(quick)
    path.write_text(text)
    update_readme(text, "quick" if quick else "full")
    return path


def update_readme(text: str, mode: str) -> None:
    """Replace the block between ``<!-- bench-table:MODE -->`` and ``<!-- /bench-table:MODE -->``
    in the project README (headings one level down); no markers, no change."""
    readme = ROOT / "README.md"
    begin, end = f"<!-- bench-table:{mode} -->", f"<!-- /bench-table:{mode} -->"
    old = readme.read_text() if readme.is_file() else ""
    if begin not in old or end not in old:
        return
    body = "\n".join("#" + line if line.startswith("#") else line for line in text.strip().splitlines())
    head, rest = old.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")
