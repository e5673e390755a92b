"""``bench/results/driver_scale.json`` -> ``driver_scale.md`` and ``driver_scale.png``, with the
wall-time model of ``bench/scaling.py`` beside each measurement: as it stood (trials on N slots,
a constant gap, no driver limit) and corrected with ``DriverCost`` fitted from these runs."""

from __future__ import annotations

from typing import Any

from bench.common import RESULTS, load_json
from bench.scaling import DriverCost, makespan
from bench.table import fmt, table

MD = RESULTS / "driver_scale.md"
PNG = RESULTS / "driver_scale.png"


def calibration() -> dict[str, float]:
    """The 1-node constants the model was calibrated with (figure 5's last run)."""
    saved = load_json(RESULTS / "quick" / "scaling.json") or {}
    inputs = (saved.get("model") or {}).get("inputs") or {}
    return {"gap_s": inputs.get("gap_s", 0.0), "actor_start_s": inputs.get("actor_start_s", 0.0)}


def fit_cost(rows: list[dict[str, Any]]) -> DriverCost:
    """Seconds of driver per result: the inverse of the best sustained throughput seen. With
    ASHA's fixed ratio of results to trials, a trial's own driver work (suggest, actor reset,
    tell) is spread over its results."""
    best = max(r["throughput_busiest_per_s"] or r["throughput_per_s"] for r in rows)
    return DriverCost(per_result_s=1.0 / best)


def predictions(row: dict[str, Any], calib: dict[str, float], cost: DriverCost) -> dict[str, float]:
    """The model's wall for this run's own trial durations, head and tail, without and with the driver."""
    head, tail = row["head_s"] or 0.0, row["tail_s"] or 0.0
    span = makespan(row["trial_s"], row["workers"], calib["gap_s"], calib["actor_start_s"])
    return {"model_s": head + span + tail,
            "corrected_s": head + max(span, cost.busy_s(row["results"])) + tail}


def enrich(saved: dict[str, Any]) -> list[dict[str, Any]]:
    calib, out = calibration(), []
    groups: dict[tuple, list] = {}
    for r in saved["rows"]:
        groups.setdefault((r["table_kind"], r["search"]), []).append(r)
    for rows in groups.values():
        cost = fit_cost(rows)
        for r in rows:
            p = predictions(r, calib, cost)
            out.append({**r, **p, "per_result_s": cost.per_result_s,
                        "model_throughput": r["results"] / p["model_s"],
                        "corrected_throughput": r["results"] / p["corrected_s"]})
    return sorted(out, key=lambda r: (r["table_kind"], r["search"], r["workers"]))


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ["table", "search", "N", "trials", "results", "fit s", "ideal s", "model s", "corrected s",
              "results/s", "busiest results/s", "latency p50/p90 s", "slot gap p50 s", "report overhead p50 s", "driver CPU",
              "searcher s", "peak PSS GiB", "procs", "load"]
    body = [[r["table_kind"], r["search"], r["workers"], r["trials_run"], r["results"], r["fit_s"], r["ideal_wall_s"],
             r["model_s"], r["corrected_s"], r["throughput_per_s"], r["throughput_busiest_per_s"],
             f"{fmt((r['latency_s'] or {}).get('p50'))}/{fmt((r['latency_s'] or {}).get('p90'))}",
             (r["slot_gap_s"] or {}).get("p50"), (r.get("result_overhead_s") or {}).get("p50"), r["driver_cpu_frac"], round(sum(r["searcher_s"].values()), 1),
             (r["peak_tree_pss_mib"] or 0) / 1024, r["peak_processes"],
             "/".join(fmt(x, 1) for x in (r["loadavg_start"] or [])[:1] + (r["loadavg_end"] or [])[:1])]
            for r in rows]
    return "\n".join(table(header, body)) + "\n"


def figure(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["table_kind"], r["search"]), []).append(r)
    for (kind, search), rs in groups.items():
        n = [r["workers"] for r in rs]
        label = f"{search}, {kind} table"
        a.plot(n, [r["throughput_per_s"] for r in rs], "o-", label=f"measured ({label})")
        a.plot(n, [r["model_throughput"] for r in rs], "s--", label="model as it stood")
        a.plot(n, [r["corrected_throughput"] for r in rs], "^:", label="model + driver cost")
        b.plot(n, [r["latency_s"]["p50"] for r in rs], "o-", label=f"created -> first result, p50 ({label})")
        b.plot(n, [r["latency_s"]["p90"] for r in rs], "o--", label="p90")
        b.plot(n, [r["slot_gap_s"]["p50"] for r in rs], "x:", label="freed slot -> next start, p50")
    a.set(xlabel="concurrent simulated workers N", ylabel="results handled per second", xscale="log", title="Tune controller throughput")
    b.set(xlabel="concurrent simulated workers N", ylabel="seconds", xscale="log", yscale="log", title="scheduling latency")
    for ax in (a, b):
        ax.set_xticks(sorted({r["workers"] for r in rows}), [str(w) for w in sorted({r["workers"] for r in rows})])
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
