"""What Optuna is told about each trial, and the space file's ``search:`` section.

Real FCN sweeps on a slice of MNIST, one trial at a time (2 CPUs per trial) so ASHA sees the
seeded proposals in order and which trials it stops does not depend on timing.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from dlb_tune.experiment import read_space
from dlb_tune.space import SpaceError, parse_space
from dlb_tune.sweep import SweepOptions, run_sweep

SPACE = """
task: fcn
metric: val_acc
mode: max
max_epochs: 3
grace_period: 1
reduction_factor: 2
num_samples: 6
search: {multivariate: true, n_startup_trials: 2}
params:
  activation: {choice: [sigmoid, relu]}
  lr: {loguniform: [3.0e-3, 0.2]}
  momentum: {choice: [0.0, 0.9]}
  hidden_size: 32
  batch_size: 64
"""

# lr far beyond stable for relu with momentum: every trial's loss turns non-finite (TrialError).
DIVERGING = """
task: fcn
metric: val_acc
mode: max
max_epochs: 2
num_samples: 2
params:
  activation: relu
  lr: {loguniform: [1.0e+4, 1.0e+5]}
  momentum: 0.9
  hidden_size: 32
  batch_size: 64
"""


def sweep(tmp_path, data_dir, text: str, name: str) -> dict:
    space = tmp_path / f"{name}.yaml"
    space.write_text(text)
    opts = SweepOptions(task="fcn", data_dir=str(data_dir), space=str(space), name=name,
                        storage=str(tmp_path / "runs"), cpus_per_trial=2, seed=3, limit=1500)
    return run_sweep(opts, echo=lambda line: None)


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory, data_dir, ray_local):
    tmp = tmp_path_factory.mktemp("search")
    final = sweep(tmp, data_dir, SPACE, "asha")
    return final, pd.read_parquet(f"{final['experiment_dir']}/results.parquet")


def test_asha_stopped_trials_are_pruned_and_finished_ones_complete(asha_sweep):
    final, df = asha_sweep
    states = final["optuna_states"]
    told = {r.trial_id: states[r.trial_id] for r in df.itertuples()}
    expected = {r.trial_id: {"stopped_early": "PRUNED", "completed": "COMPLETE"}[r.status] for r in df.itertuples()}
    assert told == expected
    assert set(told.values()) == {"PRUNED", "COMPLETE"}  # this sweep exercises both


def test_search_section_is_written_back_for_resume(asha_sweep):
    final, _ = asha_sweep
    spec = read_space(final["experiment_dir"])
    # one trial at a time: no constant liar needed, and that choice is on record
    assert spec.search == {"multivariate": True, "n_startup_trials": 2, "constant_liar": False}


def test_diverging_trials_are_told_as_fail(tmp_path, data_dir, ray_local):
    final = sweep(tmp_path, data_dir, DIVERGING, "diverge")
    assert final["trials"]["errored"] == 2
    assert set(final["optuna_states"].values()) == {"FAIL"}


@pytest.mark.parametrize("search, message", [
    ("{sampler: cmaes}", "the only sampler is tpe"),
    ("{multivariat: true}", "unknown search key(s) ['multivariat']"),
    ("{multivariate: 1}", "search.multivariate must be a bool"),
    ("{n_startup_trials: -1}", "at least 0"),
    ("{group: true, multivariate: false}", "search.group needs multivariate TPE"),
    ("[tpe]", "'search' must be a mapping"),
])
def test_bad_search_section_is_one_line(search, message):
    raw = yaml.safe_load(SPACE)
    raw["search"] = yaml.safe_load(search)
    with pytest.raises(SpaceError) as err:
        parse_space(raw, "s.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)
