"""The experiment folder: where a sweep's files live, reading and writing them, and reading it back.

``<storage>/<name>/`` holds Ray's trial folders (``trial_<id>/``: ``progress.csv``, TensorBoard
events, checkpoints) and ours: ``space.yaml`` and ``sweep.json`` (what ran, for ``resume``),
``results.parquet`` (one row per trial), ``final.json`` (the winner and its one test-split
evaluation), ``dlb-tune.log`` (Ray's own log lines), ``live.json`` (the sweep's process, start
and concurrency, for ``status``), ``optuna.journal`` (Optuna's study), and, when asked for,
``plan.json``, ``seeds.json`` and ``report.md``.

While a sweep runs there is no ``results.parquet`` yet: ``load_experiment`` then builds the
trial table from what Ray has written so far (``read_live_trials``: the newest
``experiment_state-*.json`` for each trial's state, each trial's ``params.json`` and
``progress.csv`` for its config and epochs), so ``status``, ``report`` and ``tensorboard`` work on
a running sweep.

Storage is a local folder or a URI (s3://, gs://, ``dlb_tune.storage``); every file goes through
pyarrow's filesystems, which open both. Reading a finished sweep back (``Experiment``) needs a
local folder, since the reports read Ray's per-trial files and write figures beside them: a stored
sweep is first copied into a local cache folder (``fetch_stored_experiment``).

Experiment folders are shared, so reading one runs nothing from it: its files are data (JSON,
YAML through ``safe_load``, Parquet), its space is read without importing the task recorded in
``sweep.json``, and a file that does not parse stops the reader with one line naming it. Files
are written whole or not at all (a temporary name, then a rename), and one process at a time
owns an experiment (``claimed``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from dlb_tune import places
from dlb_tune import storage as stores
from dlb_tune.distributions import SpaceError
from dlb_tune.objective import Objective, TrialStatus
from dlb_tune.options import SweepOptions
from dlb_tune.space import SweepSpec, load_yaml, parse_space
from dlb_tune.storage import (DamagedFile, ReportError, atomic, exists, filesystem, is_uri, read_bytes, read_json,
                              read_text, resolve_storage, to_jsonable, write_json, write_text)

if TYPE_CHECKING:  # a DataFrame only where trials are read: naming a sweep or listing one needs no pandas
    import pandas as pd

SPACE_FILE = "space.yaml"
SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.parquet"
FINAL_FILE = "final.json"
PLAN_FILE = "plan.json"
SEEDS_FILE = "seeds.json"
REPORT_FILE = "report.md"
LOG_FILE = "dlb-tune.log"  # Ray's own log lines and unexpected tracebacks (dlb_tune.logs)
LIVE_FILE = "live.json"
JOURNAL_FILE = "optuna.journal"  # Optuna's JournalStorage: `optuna-dashboard <exp>/optuna.journal`
REPORT_DIR = "report"  # the report's figures
TEST_REPORT_DIR = "test_report"  # the task's figures from the one test-split evaluation
PARETO_REPORT_DIR = f"{TEST_REPORT_DIR}/pareto"  # a multi-objective sweep's chosen Pareto model's figures
LOCK_FILE = ".lock"  # held by the one process that runs the sweep (``claimed``)
SPACE_SHA256 = "space_sha256"  # sweep.json's record of space.yaml, so resume can tell an edited one
# A folder name on every file system and in every URI: no separators, no "..", no leading dot or dash
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ExperimentError(ValueError):
    """An experiment name that cannot be used now: malformed, taken, in use, or its space edited."""


# --- where ------------------------------------------------------------------------------------


def check_name(name: str) -> None:
    """``--name`` becomes a folder under the storage (Ray's too): one plain folder name."""
    if not NAME_PATTERN.fullmatch(name):
        raise ExperimentError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or "
                              f"digit (it names one folder under --storage)")


def experiment_dir(name: str, storage: str | None) -> str:
    """The folder of sweep ``name``: a local path or a URI (its endpoint query kept at the end)."""
    root = resolve_storage(storage)
    return stores.join(root, name) if is_uri(root) else f"{root.rstrip('/')}/{name}"


def experiment_log(exp_dir: str) -> Path | None:
    """The experiment's log file; None for a remote folder (logs are written locally, as they come)."""
    if is_uri(exp_dir):
        return None
    Path(exp_dir).mkdir(parents=True, exist_ok=True)
    return Path(exp_dir) / LOG_FILE



def find_experiment(name: str, storage: str | None = None) -> Path:
    """NAME under the storage folder (as ``sweep --name`` put it), or NAME as a folder path."""
    if is_uri(name):  # a stored experiment's own URI (``sweep --seeds`` reads its sweep back so)
        return fetch_stored_experiment(name)
    direct = Path(name).expanduser()
    if direct.is_dir() and (direct / SPACE_FILE).exists():
        return direct.resolve()
    if direct.is_dir() and ("/" in name or name in (".", "..")):  # meant as a folder, not a name
        raise ReportError(f"{direct}: not an experiment folder (no {SPACE_FILE}); a sweep writes one at its start")
    where = experiment_dir(name, storage)
    if is_uri(where):
        return fetch_stored_experiment(where)
    path = Path(where)
    if not (path / SPACE_FILE).exists():
        raise ReportError(f"no sweep named '{name}' in {path.parent} (is --storage right?)")
    return path


def fetch_stored_experiment(uri: str) -> Path:
    """A sweep on object storage, copied into the local cache folder that the reports read."""
    stores.check_storage(uri)
    if read_json(stores.join(uri, SWEEP_FILE)) is None:
        parent, _, name = stores.split_query(stores.shown(uri))[0].rpartition("/")
        raise ReportError(f"no sweep named '{name}' in {parent} (is --storage right?)")
    return stores.fetch(uri)


def cached_from(path: Path) -> bool:
    """Whether an experiment folder is the local copy of a stored one (``fetch_stored_experiment``)."""
    return stores.cache_folder_root() in path.parents


# --- files, local or remote -------------------------------------------------------------------


def file_in(exp_dir: str | Path, name: str) -> str:
    """A file of the experiment folder: a local path, or a URI with its endpoint query kept last."""
    return stores.join(str(exp_dir), name) if is_uri(exp_dir) else f"{exp_dir}/{name}"


# --- the files of a sweep ---------------------------------------------------------------------


def write_space(exp_dir: str, spec: SweepSpec) -> None:
    write_text(file_in(exp_dir, SPACE_FILE), spec.to_yaml())


def read_space(exp_dir: str | Path, checked: bool = False) -> SweepSpec:
    """``space.yaml`` as the sweep wrote it. Read as data: the task recorded with it is not imported
    (it may be code from wherever the folder came from). ``checked``: also against the task's
    class, which the caller has made importable (``resume``, which runs it)."""
    import yaml

    source = file_in(exp_dir, SPACE_FILE)
    try:
        raw = load_yaml(read_text(source))
    except (yaml.YAMLError, ValueError) as e:
        raise DamagedFile(source, "YAML", e) from None
    return parse_space(raw, source=stores.shown(source), recorded=not checked)


def space_sha256(exp_dir: str | Path) -> str:
    return hashlib.sha256(read_bytes(file_in(exp_dir, SPACE_FILE))).hexdigest()


def write_sweep_options(exp_dir: str, options: Any) -> None:
    """``sweep.json``: the run-level options (a ``SweepOptions``), what ``resume`` starts from, and
    the SHA-256 of the ``space.yaml`` written before it."""
    write_json(file_in(exp_dir, SWEEP_FILE), {**to_jsonable(options), SPACE_SHA256: space_sha256(exp_dir)})


def read_sweep_options(exp_dir: str | Path) -> dict[str, Any]:
    """``sweep.json`` as a dict; FileNotFoundError when there is no sweep here."""
    path = file_in(exp_dir, SWEEP_FILE)
    options = read_json(path)
    if options is None:
        raise FileNotFoundError(path)
    return options


def recorded_options(exp_dir: str, name: str, storage: str | None) -> tuple[SweepOptions, str | None]:
    """``sweep.json``'s options, and the SHA-256 of space.yaml recorded with them."""
    try:
        saved = read_sweep_options(exp_dir)
    except (FileNotFoundError, OSError):
        raise SpaceError(f"no sweep named '{name}' in {stores.shown(resolve_storage(storage))}") from None
    space_sha = saved.pop(SPACE_SHA256, None)
    if "search" in saved:  # sweep.json from before --sampler: Tune restores the searcher it pickled
        saved["sampler"] = "random" if saved.pop("search") == "random" else None
    unknown = sorted(set(saved) - {f.name for f in fields(SweepOptions)})
    if unknown:
        raise ReportError(f"{stores.shown(file_in(exp_dir, SWEEP_FILE))}: unknown option(s) {', '.join(unknown)} "
                          f"(written by another version of dlb-tune?)")
    return SweepOptions(**saved), space_sha


def check_space_unchanged(exp_dir: str | Path, recorded: str | None) -> None:
    """``resume`` goes on with the searcher and scheduler the sweep started with: an edited
    ``space.yaml`` (another metric, other epochs) would be run against them."""
    if recorded is not None and space_sha256(exp_dir) != recorded:
        raise ExperimentError(f"{stores.shown(file_in(exp_dir, SPACE_FILE))} was edited after the sweep started "
                              f"(its SHA-256 differs from sweep.json's); resume runs only what the sweep started "
                              f"with: put it back, or start a new sweep with --space")


@contextmanager
def claimed(exp_dir: str, name: str, resuming: bool = False) -> Iterator[None]:
    """The experiment for this process alone while the block runs (a sweep or its resume): a
    second one under the same name stops before Ray starts, as does a new sweep under a name
    already swept (it would add its trials to the old study)."""
    from filelock import FileLock, Timeout

    created = not is_uri(exp_dir) and not Path(exp_dir).exists()
    lock = FileLock(_lock_path(exp_dir), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ExperimentError(f"experiment '{name}' is in use: another dlb-tune process runs it (it holds "
                              f"{lock.lock_file}); wait for it to end, or choose another --name") from None
    try:
        if not resuming and exists(file_in(exp_dir, SWEEP_FILE)):
            raise ExperimentError(f"a sweep named '{name}' exists in {stores.shown(str(exp_dir).rpartition('/')[0])}: "
                                  f"resume {name}, or choose another --name")
        yield
    finally:
        lock.release()
        if created and [p.name for p in Path(exp_dir).iterdir()] == [LOCK_FILE]:  # refused before it wrote
            Path(lock.lock_file).unlink(missing_ok=True)
            Path(exp_dir).rmdir()


def _lock_path(exp_dir: str) -> Path:
    """Beside the sweep's files; for a stored experiment, a local file named after its URI (an
    object store has no locks: two machines can still both start one)."""
    if not is_uri(exp_dir):
        Path(exp_dir).mkdir(parents=True, exist_ok=True)
        return Path(exp_dir) / LOCK_FILE
    locks = places.locks_dir()
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{hashlib.sha256(stores.shown(exp_dir).encode()).hexdigest()[:32]}.lock"


def write_results(exp_dir: str, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic(file_in(exp_dir, RESULTS_FILE)) as (fs, p):
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), p, filesystem=fs)


def read_trials(exp_dir: str | Path) -> pd.DataFrame:
    """``results.parquet``; FileNotFoundError before the sweep has written it."""
    return read_trial_table(exp_dir).to_pandas()


def read_trial_table(exp_dir: str | Path):
    """``results.parquet`` as a pyarrow Table, for a reader that needs no pandas (``ls``). Read
    through ``ParquetFile``: ``read_table`` imports pyarrow.dataset and pandas, seconds apart."""
    import pyarrow.parquet as pq

    path = file_in(exp_dir, RESULTS_FILE)
    if not exists(path):
        raise FileNotFoundError(path)
    fs, p = filesystem(path)
    try:
        with fs.open_input_file(p) as f:
            return pq.ParquetFile(f).read()
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, its IO errors OSErrors
        raise DamagedFile(path, "Parquet", e) from None


def write_final(exp_dir: str, final: dict[str, Any]) -> None:
    write_json(file_in(exp_dir, FINAL_FILE), final)


def read_results(exp_dir: str) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """``results.parquet`` and ``final.json`` (None until the sweep has finished)."""
    return read_trials(exp_dir), read_final(exp_dir)


FINAL_KEYS = ("task", "name", "metric", "mode", "trials", "wall_s", "errors")  # every sweep writes these
BEST_KEYS = ("trial_id", "config", "epoch")


def read_final(exp_dir: str | Path) -> dict[str, Any] | None:
    """``final.json`` (None until the sweep has finished); one that parses but lacks what every
    sweep writes is damaged too: a reader would fail on it somewhere further."""
    path = file_in(exp_dir, FINAL_FILE)
    final = read_json(path)
    if final is None:
        return None
    best = final.get("best")
    missing = [k for k in FINAL_KEYS if k not in final]
    missing += [f"best.{k}" for k in BEST_KEYS if isinstance(best, dict) and k not in best]
    if missing or (best is not None and not isinstance(best, dict)):
        raise stores.DamagedFile(path, "final.json", ValueError(f"missing {', '.join(missing) or 'best'}"))
    return final


def write_plan(exp_dir: str, plan: dict[str, Any]) -> str:
    path = file_in(exp_dir, PLAN_FILE)
    write_json(path, plan)
    return path


def write_seeds(exp_dir: str | Path, ranking: dict[str, Any]) -> None:
    write_json(file_in(exp_dir, SEEDS_FILE), ranking)


def write_live(exp_dir: str, info: dict[str, Any]) -> None:
    """``live.json``: which process runs the sweep, since when, how many trials at a time."""
    write_json(file_in(exp_dir, LIVE_FILE), {"pid": os.getpid(), "host": socket.gethostname(), **info})


def read_live(exp_dir: str | Path) -> dict[str, Any]:
    return read_json(file_in(exp_dir, LIVE_FILE)) or {}


def sweep_alive(live: dict[str, Any]) -> bool | None:
    """Whether the sweep's process still runs: None when it runs on another host (cannot tell)."""
    if not live or live.get("ended"):
        return False
    if live.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(live["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return False
    return True


# --- a running sweep, from what Ray has written so far --------------------------------------


def read_tune_states(path: Path) -> dict[str, dict[str, Any]]:
    """Per trial id, from Ray's newest ``experiment_state-*.json``: its status and config."""
    files = sorted(path.glob("experiment_state-*.json"), key=lambda f: f.stat().st_mtime)
    try:
        trial_data = json.loads(files[-1].read_text())["trial_data"] if files else []
    except (OSError, ValueError, KeyError):  # rewritten under us: the trial folders still tell
        return {}
    states = {}
    for trial_json, _runtime in trial_data:
        t = json.loads(trial_json)
        states[t["trial_id"]] = {"status": t.get("status"), "config": t.get("config") or {}}
    return states


def read_live_trials(path: Path, spec: SweepSpec) -> pd.DataFrame:
    """One row per trial started so far, with results.parquet's columns (status, epochs,
    config/<key>, last metrics, best_<metric>, best_epoch, path)."""
    import pandas as pd

    states = read_tune_states(path)
    ids = set(states) | {d.name.removeprefix("trial_") for d in path.glob("trial_*") if d.is_dir()}
    rows = [_live_row(path / f"trial_{tid}", tid, states.get(tid, {}), spec) for tid in sorted(ids)]
    return pd.DataFrame(rows, columns=None if rows else ["trial_id", "status", "epochs"])


def _live_row(folder: Path, trial_id: str, state: dict[str, Any], spec: SweepSpec) -> dict[str, Any]:
    try:
        config = read_json(folder / "params.json") or state.get("config", {})
    except DamagedFile:  # Ray's, being written right now: its experiment state has the config too
        config = state.get("config", {})
    row: dict[str, Any] = {"trial_id": trial_id, **{f"config/{k}": v for k, v in config.items()}}
    hist = _progress(folder / "progress.csv")
    epochs = int(hist["epoch"].max()) if "epoch" in hist and len(hist) else 0
    row.update(status=live_status(state.get("status"), epochs, spec.max_epochs), epochs=epochs, path=str(folder))
    if len(hist):
        row.update({k: v for k, v in hist.iloc[-1].items() if isinstance(v, (int, float)) and k not in row})
    if spec.metric in hist and hist[spec.metric].notna().any():
        series = hist[spec.metric]
        best = spec.goal.best_index(series)
        row[f"best_{spec.metric}"], row["best_epoch"] = float(series[best]), int(hist.loc[best, "epoch"])
    return row


def _progress(csv: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(csv)
    except (OSError, ValueError):  # not written yet, or empty
        return pd.DataFrame()


def live_status(ray_status: str | None, epochs: int, max_epochs: int) -> TrialStatus:
    """A trial's status from Ray's word for it; a folder Ray's state does not list yet belongs to a
    trial that has just started (running)."""
    return TrialStatus.classify(epochs=epochs, max_epochs=max_epochs, errored=ray_status == "ERROR",
                                ended=ray_status in ("TERMINATED", "ERROR"), queued=ray_status in ("PENDING", "PAUSED"))


# --- a sweep read back ------------------------------------------------------------------------


@dataclass
class Experiment:
    """A finished (or interrupted) sweep, read from its folder."""

    path: Path
    spec: SweepSpec
    trials: pd.DataFrame  # results.parquet: one row per trial
    final: dict[str, Any] | None  # final.json (None while a sweep has not finished)
    sweep: dict[str, Any]  # sweep.json: the run-level options
    in_progress: bool = False  # no results.parquet yet: ``trials`` is what Ray has written so far
    _history: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def goal(self) -> Objective:
        return self.spec.goal

    def history(self) -> pd.DataFrame:
        """Every epoch of every trial: progress.csv rows plus ``trial_id``, ``status``, ``t_s``."""
        if self._history is None:
            self._history = _read_history(self)
        return self._history

    def checkpoint(self, trial_id: str | None) -> str | None:
        """The kept checkpoint of a trial's best epoch (Ray keeps the best one and the latest)."""
        hist = self.history()
        if trial_id is None or hist.empty or "checkpoint_dir_name" not in hist:
            return None
        h = hist[hist["trial_id"] == trial_id].dropna(subset=[self.metric, "checkpoint_dir_name"])
        h = self.goal.sort(h, self.metric)
        for name in h["checkpoint_dir_name"]:
            path = self.path / f"trial_{trial_id}" / name
            if path.is_dir():
                return str(path)
        return None

    def finished_trials(self) -> int:
        return int(self.trials["status"].map(lambda s: TrialStatus(s).ended).sum()) if len(self.trials) else 0

    def progress_line(self) -> str | None:
        """"running: N of M trials finished" for a sweep still under way (None once it has ended)."""
        if not self.in_progress:
            return None
        alive = sweep_alive(read_live(self.path))
        state = "running" if alive is not False else "stopped before its end (`dlb-tune resume` continues it)"
        return f"{state}: {self.finished_trials()} of {self.spec.num_samples} trials finished"

    def plan(self) -> dict[str, Any] | None:
        return read_json(self.path / PLAN_FILE)

    def seed_runs_dir(self) -> Path:
        """``--seeds`` runs: beside the sweep, so TensorBoard does not mix them into its HParams."""
        return self.path.parent / f"{self.name}-seeds"

    def seeds(self) -> dict[str, Any] | None:
        return read_json(self.path / SEEDS_FILE)


def load_experiment(exp: Path | str, storage: str | None = None) -> Experiment:
    """A sweep by name under ``storage``, or by its folder."""
    path = find_experiment(str(exp), storage)
    spec = read_space(path)
    sweep = read_json(path / SWEEP_FILE) or {}
    if (path / RESULTS_FILE).exists():
        return Experiment(path=path, spec=spec, trials=read_trials(path), final=read_final(path),
                          sweep=sweep)
    trials = read_live_trials(path, spec)  # a running sweep: what its trials wrote so far
    if trials.empty:
        raise ReportError(f"{path}: no trial has started yet" if sweep_alive(read_live(path)) is not False else
                          f"{path}: the sweep stopped before any trial started")
    return Experiment(path=path, spec=spec, trials=trials, final=None, sweep=sweep, in_progress=True)


def _read_history(exp: Experiment) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for row in exp.trials.itertuples():
        csv = exp.path / f"trial_{row.trial_id}" / "progress.csv"
        if not csv.exists() and isinstance(getattr(row, "path", None), str):
            csv = exp.path / Path(row.path).name / "progress.csv"
        if not csv.exists() or csv.stat().st_size == 0:
            continue
        h = pd.read_csv(csv)
        h["trial_id"], h["status"] = str(row.trial_id), row.status
        frames.append(h)
    if not frames:
        return pd.DataFrame(columns=["trial_id", "status", "epoch", "t_s", exp.metric])
    hist = pd.concat(frames, ignore_index=True)
    # the trials' own clocks (ended_at); sweeps written before trials reported it have Ray's whole seconds
    end = hist["ended_at"].fillna(hist["timestamp"]) if "ended_at" in hist else hist["timestamp"]
    start = (end - hist["time_this_iter_s"]).min()
    hist["t_s"] = end - start  # seconds since the sweep's first trial started
    return hist.sort_values(["t_s", "trial_id", "epoch"], ignore_index=True)
