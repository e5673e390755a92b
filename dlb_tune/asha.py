"""ASHA simulated: how many trial-epochs and seconds a sweep takes, before it runs (``plan``) and
while it runs (the time left shown by ``status`` and the sweep's progress).

Trials start as slots free up (``concurrency`` at a time), each at its own epoch speed, and ASHA
stops them by Ray's own rule (at each rung, a trial below the (1 - 1/reduction_factor) quantile
of the values recorded there so far stops). Trial quality is random and keeps its rank from rung
to rung. Pure Python and numpy: the sweep's driver imports it without torch.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

SIMULATIONS = 400  # Monte Carlo repeats of the ASHA simulation
QUICK_SIMULATIONS = 40  # for the time left, recomputed while the sweep's driver waits (~0.1 s per 10)



def rungs(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """Ray's ASHA milestones: grace_period * rf**k, k < int(log(max/grace) / log(rf) + 1)."""
    n = int(np.log(max_epochs / grace_period) / np.log(reduction_factor) + 1)  # np.log as Ray, to the last bit
    return [grace_period * reduction_factor**k for k in range(n)]


def simulate(quality: list[float], epoch_s: list[float], *, max_epochs: int, concurrency: int,
             milestones: list[int] | None, reduction_factor: float, start_s: float = 0.0,
             budget_s: float | None = None, running: list[int] = (),
             recorded: dict[int, list[float]] | None = None) -> tuple[int, float, list[int]]:
    """One sweep: trials in order, ``concurrency`` at a time; returns (trial-epochs, seconds, epochs run).

    ``milestones=None`` is FIFO (every trial runs ``max_epochs``). ASHA decisions follow Ray's
    ``_Bracket.on_result``: at a milestone, stop if below the quantile of those recorded there.
    The rest of a running sweep: the first trials are ``running``, each this many epochs in and
    holding a slot; ``recorded`` holds the values the trials already seen left at each milestone.
    """
    recorded = {m: list((recorded or {}).get(m, [])) for m in milestones or []}
    events: list[tuple[float, int, int]] = []  # (time the epoch ends, trial, epoch)
    epochs = [0] * len(quality)
    waiting = iter(range(len(running), len(quality)))
    clock = 0.0

    def launch(t: float) -> None:
        i = next(waiting, None)
        if i is not None:
            heapq.heappush(events, (t + start_s + epoch_s[i], i, 1))

    for i, done in enumerate(running):
        heapq.heappush(events, (epoch_s[i], i, done + 1))
    for _ in range(concurrency - len(running)):
        launch(0.0)
    while events:
        t, i, epoch = heapq.heappop(events)
        if budget_s is not None and t > budget_s:
            clock = budget_s
            break
        clock, epochs[i] = t, epoch
        stop = epoch >= max_epochs
        if not stop and epoch in recorded:
            seen = recorded[epoch]
            stop = bool(seen) and quality[i] < np.percentile(seen, (1 - 1 / reduction_factor) * 100)
            seen.append(quality[i])
        if stop:
            launch(t)
        else:
            heapq.heappush(events, (t + epoch_s[i], i, epoch + 1))
    return sum(epochs), clock, epochs


def estimate(epoch_times: list[float], *, num_samples: int, max_epochs: int, concurrency: int,
             scheduler: str, grace_period: int, reduction_factor: int, start_s: float,
             budget_s: float | None, seed: int = 0, simulations: int = SIMULATIONS) -> dict[str, float]:
    """Monte Carlo over trial qualities, arrival order and which corner each trial resembles."""
    rng = np.random.default_rng(seed)
    milestones = rungs(max_epochs, grace_period, reduction_factor) if scheduler == "asha" else None
    runs = []
    for _ in range(simulations):
        quality = rng.random(num_samples).tolist()
        speed = [epoch_times[j] for j in rng.integers(len(epoch_times), size=num_samples)]
        total, wall, _ = simulate(quality, speed, max_epochs=max_epochs, concurrency=concurrency,
                                  milestones=milestones, reduction_factor=reduction_factor,
                                  start_s=start_s, budget_s=budget_s)
        runs.append((total, wall))
    te, wall = np.array(runs).T
    return {"trial_epochs": float(te.mean()), "trial_epochs_p10": float(np.percentile(te, 10)),
            "trial_epochs_p90": float(np.percentile(te, 90)), "trial_s": float(wall.mean()),
            "trial_s_p10": float(np.percentile(wall, 10)), "trial_s_p90": float(np.percentile(wall, 90))}


@dataclass
class SweepState:
    """Where a running sweep stands: epochs run by each finished and each running trial, and the
    trials not started yet. The time left is the rest of this sweep, not a share of a fresh one."""

    finished: list[int]
    running: list[int]
    pending: int


def time_left(epoch_s: list[float], state: SweepState, *, elapsed_s: float, max_epochs: int, concurrency: int,
              scheduler: str, grace_period: int, reduction_factor: int, budget_s: float | None,
              seed: int = 0, simulations: int = QUICK_SIMULATIONS) -> float:
    """Seconds a running sweep still needs: its running trials go on from their epochs, the
    pending ones start as slots free up, and ASHA judges them against the values every trial
    seen so far left at the rungs (trial qualities random, as in ``estimate``); never past the
    time budget."""
    if not epoch_s:
        return math.nan
    rng = np.random.default_rng(seed)
    milestones = rungs(max_epochs, grace_period, reduction_factor) if scheduler == "asha" else None
    running = [e for e in state.running if e < max_epochs]
    finished = state.finished + [e for e in state.running if e >= max_epochs]  # reported its last epoch
    n = len(running) + state.pending
    walls = []
    for _ in range(simulations):
        seen = rng.random(len(finished) + n)
        recorded = {m: [q for q, e in zip(seen, finished + running) if e >= m] for m in milestones or []}
        speed = [epoch_s[j] for j in rng.integers(len(epoch_s), size=n)]
        _, wall, _ = simulate(seen[len(finished):].tolist(), speed, max_epochs=max_epochs,
                              concurrency=max(concurrency, len(running)), milestones=milestones,
                              reduction_factor=reduction_factor, running=running, recorded=recorded)
        walls.append(wall)
    left = float(np.mean(walls))
    if budget_s:
        left = min(left, max(0.0, budget_s - elapsed_s))
    return left
