"""The contract every task must meet (``dlb_tune.contract``, which ``dlb-tune check-task`` runs too),
on every registered task: generated from the registry, no hand-kept task list."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dlb_tune import contract
from dlb_tune.tasks import TrialContext, Trials, TrialSummary, all_tasks

TASKS = list(all_tasks())


@pytest.fixture(scope="module", params=TASKS)
def setup(request, data_dir) -> contract.Setup:
    """A task built from its default space's constants plus its smoke overrides, on 64 real examples."""
    return contract.Setup.load(request.param, data_dir)


@pytest.mark.parametrize("name", TASKS)
def test_declarations_name_real_fields(name):
    assert all_tasks()[name].name == name
    contract.check_declarations(all_tasks()[name])


@pytest.mark.parametrize("name", TASKS)
def test_config_survives_yaml(name):
    contract.check_config_round_trip(all_tasks()[name])


@pytest.mark.parametrize("name", TASKS)
def test_empty_data_folder_is_one_data_error(name):
    contract.check_data_errors(all_tasks()[name])


def test_one_epoch_reports_the_contract_metrics(setup):
    contract.check_one_epoch(setup)


def test_state_dict_restores_the_same_model(setup):
    contract.check_checkpoint_resume(setup)


def test_lr_schedule_is_one_name_with_one_set_of_values(setup):
    contract.check_lr_schedule(setup)


def test_trials_view_of_a_results_table():
    """What ``summarize`` sees: plain Python values, None where a trial never reported a column."""
    table = pd.DataFrame({"trial_id": ["a", "b"], "status": ["completed", "errored"], "epochs": [3, 0],
                          "config/lr": [0.1, 0.01], "best_val_acc": [0.9, None], "best_epoch": [2, None],
                          "val_acc": [0.85, None], "params": [100, None], "wall_s": [1.5, None],
                          "path": ["/runs/a", "/runs/b"], "node_id": ["n", "n"]})
    trials = Trials.from_table(table, "val_acc")
    assert trials.metric == "val_acc" and [t.trial_id for t in trials] == ["a", "b"]
    a, b = trials
    assert a == TrialSummary("a", "completed", {"lr": 0.1}, 0.9, 3, 1.5, {"val_acc": 0.85, "params": 100})
    assert type(a.epochs) is int and type(a.config["lr"]) is float
    assert (b.best, b.wall_s, b.metrics) == (None, None, {})


# --- TrialContext.batches: the shards data parallelism trains on --------------------------------


def test_batches_shuffle_by_default_and_cover_every_example_once():
    shuffled = torch.cat(list(TrialContext(seed=0).batches(10, 3)))
    assert sorted(shuffled.tolist()) == list(range(10)) and shuffled.tolist() != list(range(10))
    assert [b.tolist() for b in TrialContext().batches(7, 3, shuffle=False)] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("n, world, per_rank", [(12, 2, 2), (13, 2, 2), (15, 2, 2), (15, 3, 1)])
def test_batches_shard_disjointly_with_equal_steps_on_every_rank(n, world, per_rank):
    """Batches of 3: ranks take every world-th one of the same permutation; a remainder of
    batches that cannot go to every rank is dropped, so no rank waits on an all-reduce."""
    shards = [[b.tolist() for b in TrialContext(seed=4, rank=r, world_size=world).batches(n, 3)]
              for r in range(world)]
    assert [len(s) for s in shards] == [per_rank] * world
    whole = [b.tolist() for b in TrialContext(seed=4).batches(n, 3)]
    assert [b for r in range(world) for b in shards[r]] == [b for r in range(world) for b in whole[r::world][:per_rank]]
    assert sorted(i for s in shards for b in s for i in b) == sorted(i for b in whole[:per_rank * world] for i in b)
