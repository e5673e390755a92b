"""Benchmark: the default ``vae`` sweep (search_spaces/vae.yaml) on 2 CPUs, against the paper.

Runs the default sweep, then the paper's settings (Dupont 2018, CelebA: lr 5e-4, gamma 100,
C_cont 0 -> 50, C_disc 0 -> 10 capped at log 10, one 10-way discrete latent, 32 continuous,
batch 64, temperature 0.67) for the same number of epochs through the same pipeline (one
trial, one CPU, best validation epoch evaluated once on test). Two paper baselines: the
paper's 1e5-step capacity ramp, which barely starts in a short run, and a 1,000-step ramp
that reaches C_cont ~ 36 in 10 epochs here (the issue's reference of ~6,890 nats on
validation after 10 epochs matches that one, not the literal ramp). Writes the best trial's
validation and test negative ELBO, the baselines, wall times and figure paths to
``bench/results/vae.json``; copies the figures to ``bench/results/vae_*.png``.

    nice python bench/vae_sweep.py [--data-dir ../shared/data] [--baselines paper,paper_ramp1000]
                                   [--reuse-sweep /tmp/dlb-tune-bench/vae-bench-...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAPER = {"cont_dim": 32, "disc_dims": "10", "cont_capacity_max": 50.0, "disc_capacity_max": 10.0,
         "gamma": 100.0, "capacity_iters": 100_000, "temperature": 0.67, "lr": 5e-4, "batch_size": 64}
BASELINES = {"paper": PAPER, "paper_ramp1000": {**PAPER, "capacity_iters": 1000}}


def run(opts) -> tuple[dict[str, Any], float]:
    from dlb_tune.sweep import run_sweep

    t0 = time.time()
    final = run_sweep(opts)
    return final, time.time() - t0


def summary(final: dict[str, Any], wall: float, tag: str) -> dict[str, Any]:
    """The numbers of one sweep's winner, with its figures copied next to vae.json."""
    best, test = final.get("best") or {}, final.get("test") or {}
    report = test.get("test_report") or {}
    fig_dir = Path(final["experiment_dir"]) / "test_report"
    figures = {}
    for name, file in (report.get("figures") or {}).items():
        dest = RESULTS / f"vae_{tag}_{file}"
        shutil.copyfile(fig_dir / file, dest)
        figures[name] = str(dest.relative_to(ROOT))
    nmi = report.get("attribute_nmi") or {}
    return {
        "trial_id": best.get("trial_id"), "best_epoch": best.get("epoch"), "val_nelbo": best.get("val_nelbo"),
        **{k: test.get(k) for k in ("test_nelbo", "test_recon", "test_kl_cont", "test_kl_disc", "test_recon_mode")},
        "config": best.get("config"), "wall_s": round(wall, 1), "trials": final.get("trials"),
        "figures": figures, "figure_info": report.get("figure_info"),
        "attribute_nmi_top": nmi.get("top"), "attribute_nmi_images": nmi.get("splits"),
        "experiment_dir": final["experiment_dir"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--storage", default="/tmp/dlb-tune-bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated, from: " + ", ".join(BASELINES))
    p.add_argument("--reuse-sweep", default=None, metavar="EXP_DIR",
                   help="summarise this finished sweep (its final.json) instead of running one")
    args = p.parse_args()

    from dlb_tune.space import default_space_file, load_space
    from dlb_tune.sweep import SweepOptions

    epochs = load_space(default_space_file("vae")).max_epochs
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"command": "nice python bench/vae_sweep.py " + " ".join(sys.argv[1:]), "max_epochs": epochs}
    if args.reuse_sweep:
        final = json.loads((Path(args.reuse_sweep) / "final.json").read_text())
        out["sweep"] = summary(final, final["wall_s"], "best")
    else:
        opts = SweepOptions(task="vae", data_dir=args.data_dir, storage=args.storage, cpus=2, seed=args.seed,
                            name=f"vae-bench-{stamp}")
        out["sweep"] = summary(*run(opts), "best")
    write(out)  # after each stage, so a later failure keeps what finished
    out["baselines"] = {}
    for tag in [b for b in args.baselines.split(",") if b]:
        sets = [f"{k}={json.dumps(v)}" for k, v in BASELINES[tag].items()]
        opts = SweepOptions(task="vae", data_dir=args.data_dir, storage=args.storage, cpus=1, seed=args.seed,
                            name=f"vae-{tag}-{stamp}", overrides=sets, num_samples=1, max_epochs=epochs,
                            scheduler="fifo", search="random")
        out["baselines"][tag] = summary(*run(opts), tag)
        write(out)
    best = out["sweep"]["test_nelbo"]
    out["goal"] = "best trial's test_nelbo below every paper baseline's, same epochs"
    out["goal_met"] = all(best < b["test_nelbo"] for b in out["baselines"].values())
    write(out)
    keys = ("val_nelbo", "test_nelbo", "best_epoch", "wall_s")
    shown = {"sweep": {k: out["sweep"].get(k) for k in (*keys, "config")},
             "baselines": {t: {k: b[k] for k in keys} for t, b in out["baselines"].items()}, "goal_met": out["goal_met"]}
    print(json.dumps(shown, indent=2, default=str))


def write(out: dict[str, Any]) -> None:
    (RESULTS / "vae.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
