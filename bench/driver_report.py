"""``bench/results/driver_scale.json`` -> ``driver_scale.md`` and ``driver_scale.png``, with the
wall-time model of ``bench/scaling.py`` beside each measurement: as it stood (trials on N slots,
a constant gap, no driver limit) and corrected with ``DriverCost`` fitted from these runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from bench.common import RESULTS, load_json
from bench.scaling import DriverCost, bounded, makespan
from bench.table import fmt, table

MD = RESULTS / "driver_scale.md"
PNG = RESULTS / "driver_scale.png"


def calibration() -> dict[str, float]:
    """The 1-node constants the model was calibrated with (figure 5's last run)."""
    saved = load_json(RESULTS / "quick" / "scaling.json") or {}
    inputs = (saved.get("model") or {}).get("inputs") or {}
    return {k: inputs.get(k, 0.0) for k in ("gap_s", "actor_start_s", "per_epoch_overhead_s")}


def fit_cost(rows: list[dict[str, Any]], calib: dict[str, float]) -> DriverCost:
    """From the smallest N: a report's round trip and a freed slot's wait; from all: seconds of
    driver per result, the inverse of the best sustained throughput seen (with ASHA's steady ratio
    of results to trials, a trial's own driver work is spread over its results)."""
    ref = min(rows, key=lambda r: r["workers"])
    best = max(r["throughput_busiest_per_s"] or r["throughput_per_s"] for r in rows)
    return DriverCost(per_result_s=1.0 / best, gap_s=ref["slot_gap_s"]["p50"],
                      report_s=max(0.0, ref["result_overhead_s"]["p50"] - calib["per_epoch_overhead_s"]))


def trial_epochs(row: dict[str, Any]) -> list[int]:
    if row.get("trial_epochs"):
        return row["trial_epochs"]
    per_epoch = row["scale"] * row["sim_s"] / max(1, row["results"])  # rows written before epochs were kept
    return [round(d / per_epoch) for d in row["trial_s"]]


def predictions(row: dict[str, Any], calib: dict[str, float], cost: DriverCost) -> dict[str, float]:
    """The model's wall for this run's own trials, head and tail: as it stood (the 1-node
    calibration's per-epoch overhead and gap, no driver), and with the measured ``cost``."""
    head, tail, n = row["head_s"] or 0.0, row["tail_s"] or 0.0, row["workers"]
    pairs = list(zip(row["trial_s"], trial_epochs(row)))
    old = makespan([d + e * calib["per_epoch_overhead_s"] for d, e in pairs], n, calib["gap_s"], calib["actor_start_s"])
    new = makespan([d + e * (calib["per_epoch_overhead_s"] + cost.report_s) for d, e in pairs], n, cost.gap_s,
                   calib["actor_start_s"])
    return {"replay_s": row["fit_s"] - head - tail, "model_replay_s": old, "corrected_replay_s": bounded(new, row["results"], cost),
            "model_s": head + old + tail, "corrected_s": head + bounded(new, row["results"], cost) + tail}


def enrich(saved: dict[str, Any]) -> list[dict[str, Any]]:
    calib, out = calibration(), []
    groups: dict[tuple, list] = {}
    for r in saved["rows"]:
        groups.setdefault((r["table_kind"], r["search"]), []).append(r)
    for rows in groups.values():
        cost = fit_cost(rows, calib)
        for r in rows:
            p = predictions(r, calib, cost)
            out.append({**r, **p, "cost": asdict(cost),
                        "replay_throughput": r["results"] / p["replay_s"],
                        "model_throughput": r["results"] / p["model_replay_s"],
                        "corrected_throughput": r["results"] / p["corrected_replay_s"]})
    return sorted(out, key=lambda r: (r["table_kind"], r["search"], r["workers"]))


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ["table", "search", "N", "trials", "results", "fit s", "to first start s", "replay s", "ideal s",
              "model s", "corrected s",
              "results/s (replay)", "busiest results/s", "latency p50/p90 s", "slot gap p50 s", "report overhead p50 s", "driver CPU",
              "searcher s", "peak PSS GiB", "procs", "load"]
    body = [[r["table_kind"], r["search"], r["workers"], r["trials_run"], r["results"], r["fit_s"], r["head_s"],
             r["replay_s"], r["ideal_wall_s"], r["model_replay_s"], r["corrected_replay_s"],
             r["replay_throughput"], r["throughput_busiest_per_s"],
             f"{fmt((r['latency_s'] or {}).get('p50'))}/{fmt((r['latency_s'] or {}).get('p90'))}",
             (r["slot_gap_s"] or {}).get("p50"), (r.get("result_overhead_s") or {}).get("p50"), r["driver_cpu_frac"],
             round(sum(r["searcher_s"].values()), 1),
             (r["peak_tree_pss_mib"] or 0) / 1024, r["peak_processes"],
             "/".join(fmt(x, 1) for x in (r["loadavg_start"] or [])[:1] + (r["loadavg_end"] or [])[:1])]
            for r in rows]
    costs = {(r["table_kind"], r["search"]): r["cost"] for r in rows}  # fitted per table and search
    fitted = "; ".join(f"{kind} table, {search}: {fmt(c.get('per_result_s'), 4)} s per result, a report's extra round "
                       f"trip {fmt(c.get('report_s'), 3)} s, a freed slot's wait {fmt(c.get('gap_s'), 3)} s"
                       for (kind, search), c in costs.items())
    note = f"\nModel and corrected columns: the replay's span after the first trial started. Fitted driver cost: {fitted}.\n"
    return "\n".join(table(header, body)) + "\n" + note


def figure(rows: list[dict[str, Any]]) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["table_kind"], r["search"]), []).append(r)
    for i, ((kind, search), rs) in enumerate(groups.items()):
        n, c = [r["workers"] for r in rs], f"C{i}"  # one colour per table: measured, models, latencies
        kind = "synthetic" if kind == "synthetic" else "recorded fcn"  # a recorded table's kind is its clock
        label = f"{search}, {kind} table"
        a.plot(n, [r["replay_throughput"] for r in rs], "o-", c=c, label=f"measured ({label})")
        a.plot(n, [r["model_throughput"] for r in rs], "s--", c=c, alpha=0.6, label=f"model as it stood ({kind})")
        a.plot(n, [r["corrected_throughput"] for r in rs], "^:", c=c, label=f"model + driver cost ({kind})")
        b.plot(n, [r["latency_s"]["p50"] for r in rs], "o-", c=c, label=f"created -> first result, p50 ({label})")
        b.plot(n, [r["latency_s"]["p90"] for r in rs], "o--", c=c, alpha=0.6, label=f"p90 ({kind})")
        b.plot(n, [r["slot_gap_s"]["p50"] for r in rs], "x:", c=c, label=f"freed slot -> next start, p50 ({kind})")
    a.set(xlabel="concurrent simulated workers N", ylabel="results per second after the first start", xscale="log",
          title="Tune controller throughput")
    b.set(xlabel="concurrent simulated workers N", ylabel="seconds", xscale="log", yscale="log", title="scheduling latency")
    for ax in (a, b):
        ax.set_xticks(sorted({r["workers"] for r in rows}), [str(w) for w in sorted({r["workers"] for r in rows})])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log axis: only the measured N
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PNG, dpi=110)
    plt.close(fig)


def render(saved: dict[str, Any] | None) -> None:
    if not saved or not saved.get("rows"):
        return
    rows = enrich(saved)
    MD.write_text(markdown(rows))
    figure(rows)
    print(MD.read_text())
