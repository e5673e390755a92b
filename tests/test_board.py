"""`dlb-tune tensorboard` on a finished real sweep: scalars, HParams and images read back through
TensorBoard's HTTP API, and the HParams page rendered by a real headless browser."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import board_client
import pandas as pd
import pytest
from browser import browser, rendered_text
from finished_sweep import NAME, finished_sweep
from PIL import Image
from typer.testing import CliRunner

from dlb_tune import board
from dlb_tune.cli import app

runner = CliRunner()
SEARCHED = {"activation", "hidden_size", "lr", "momentum", "weight_decay", "shift"}  # the shipped fcn space's


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir, ray_local):
    return finished_sweep(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def tb(sweep):
    """`dlb-tune tensorboard` in its own process, as a user starts it; stopped with Ctrl-C."""
    assert runner.invoke(app, ["report", NAME, "--storage", str(sweep.storage)]).exit_code == 0
    # The FCN task writes no figure at test time; a real PNG in test_report/ stands in for the
    # emotion confusion matrix or the VAE reconstructions, which land there the same way.
    task_dir = sweep.exp / "test_report"
    task_dir.mkdir(exist_ok=True)
    shutil.copy(sweep.exp / "report" / "best_so_far.png", task_dir / "task_figure.png")
    proc = subprocess.Popen([sys.executable, "-m", "dlb_tune.cli", "tensorboard", NAME, "--storage",
                             str(sweep.storage), "--port", "0"], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    url = None
    try:
        deadline = time.monotonic() + 600  # a ceiling for a hang; the URL line ends the wait
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("TensorBoard on "):
                url = line.split()[2]
        assert url, f"no URL printed (exit code {proc.poll()})"
        children = _children(proc.pid)  # TensorBoard itself
        yield url, sweep.exp
    finally:
        proc.send_signal(signal.SIGTERM)  # the command stops TensorBoard on Ctrl-C or kill
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    deadline = time.monotonic() + 120
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [c for c in children if Path(f"/proc/{c}").exists()]
    assert not alive, f"TensorBoard (pid {alive}) outlived the command"


def _children(pid: int) -> list[int]:
    """Child processes, from /proc (Linux): the ones whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_url_is_local_only(tb):
    url, _ = tb
    assert url.startswith("http://127.0.0.1:")


def test_scalars_per_epoch_for_every_trial(tb):
    url, exp = tb
    trials = pd.read_parquet(exp / "results.parquet")
    runs = board_client.get_json(url + "data/runs")
    for row in trials.itertuples():
        run = f"trial_{row.trial_id}"
        assert run in runs
        points = board_client.get_json(f"{url}data/plugin/scalars/scalars?run={run}&tag={quote('ray/tune/val_acc')}")
        progress = pd.read_csv(exp / run / "progress.csv")
        assert [p[1] for p in points] == list(progress["training_iteration"])  # one point per epoch
        assert [p[2] for p in points] == pytest.approx(list(progress["val_acc"]), abs=1e-6)


def test_hparams_experiment_has_the_space_and_the_metrics(tb):
    url, _ = tb
    exp = board_client.get_json(url + "data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in exp["hparamInfos"]}
    assert set(infos) == SEARCHED
    assert sorted(infos["activation"]["domainDiscrete"]) == ["relu", "sigmoid", "tanh"]
    assert infos["lr"]["domainInterval"] == {"minValue": 0.01, "maxValue": 0.3}
    assert all(infos[k]["differs"] for k in SEARCHED)
    tags = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert tags[:2] == ["ray/tune/val_acc", "ray/tune/best_val_acc"]
    assert "ray/tune/epoch" in tags and "ray/tune/done" not in tags and "ray/tune/should_checkpoint" not in tags


def test_hparams_sessions_for_every_trial_sortable_by_metric(tb):
    url, exp = tb
    trials = pd.read_parquet(exp / "results.parquet").set_index("trial_id")
    final = json.loads((exp / "final.json").read_text())
    groups = board_client.session_groups(url, "ray/tune/best_val_acc", "max")
    assert len(groups) == len(trials)  # ASHA-stopped trials included
    assert groups[0]["name"] == f"trial_{final['best']['trial_id']}"
    values = [board_client.metric_value(g, "ray/tune/best_val_acc") for g in groups]
    assert values == sorted(values, reverse=True)
    for g in groups:
        row = trials.loc[g["name"].removeprefix("trial_")]
        assert g["hparams"]["activation"] == row["config/activation"]
        assert g["hparams"]["lr"] == pytest.approx(row["config/lr"])
        assert g["hparams"]["hidden_size"] == row["config/hidden_size"]
        assert board_client.metric_value(g, "ray/tune/epoch") == row["epochs"]  # fewer where ASHA stopped it
        assert board_client.metric_value(g, "ray/tune/best_val_acc") == pytest.approx(row["best_val_acc"], abs=1e-6)


def _hparams_data(folder: Path) -> dict[str, object]:
    """The HParams plugin's records in ``folder``'s event files, as TensorBoard's loader reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    records = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in events.PluginTagToContent("hparams").values()]
    return {r.WhichOneof("data"): getattr(r, r.WhichOneof("data")) for r in records}


def test_integer_hyperparameters_reach_hparams_as_whole_numbers(sweep):
    """HParams has no integer type (TensorBoard's own IntInterval writes float64 too): an integer
    arrives as a number whose value is whole, never as text or a rounded float, in every trial's
    session and in the experiment's domain."""
    [hidden] = [h for h in _hparams_data(sweep.exp)["experiment"].hparam_infos if h.name == "hidden_size"]
    assert [v.WhichOneof("kind") for v in hidden.domain_discrete.values] == ["number_value"] * 2
    assert [v.number_value for v in hidden.domain_discrete.values] == [32, 128]
    for trial in sorted(sweep.exp.glob("trial_*")):  # Ray writes the searched parameters only
        config = json.loads((trial / "params.json").read_text())
        value = _hparams_data(trial)["session_start_info"].hparams["hidden_size"]
        assert value.WhichOneof("kind") == "number_value", (trial.name, value)
        assert value.number_value.is_integer() and value.number_value == config["hidden_size"]
        assert type(config["hidden_size"]) is int


def test_task_and_report_figures_are_images(tb):
    url, exp = tb
    tags = board_client.get_json(url + "data/plugin/images/tags")
    assert "task_figure" in tags["test_report"]
    assert {"metric_vs_epoch", "best_so_far", "parallel_coordinates"} <= set(tags["report"])
    [entry] = board_client.get_json(f"{url}data/plugin/images/images?run=test_report&tag=task_figure")
    import urllib.request

    with urllib.request.urlopen(f"{url}data/plugin/images/individualImage?{entry['query']}") as r:
        assert r.read() == (exp / "test_report" / "task_figure.png").read_bytes()


def test_write_board_replaces_its_own_files(sweep):
    board.write_board(sweep.exp)
    board.write_board(sweep.exp)
    assert len(list(sweep.exp.glob(f"events.out.tfevents.*{board.SUFFIX}"))) == 1
    assert len(list((sweep.exp / "report").glob(f"events.out.tfevents.*{board.SUFFIX}"))) == 1


# --- a real browser ------------------------------------------------------------------------------

def test_hparams_page_in_headless_chromium(chromium, chromedriver, tb, tmp_path):  # no browser: no sweep
    url, exp = tb
    trial_ids = pd.read_parquet(exp / "results.parquet")["trial_id"].tolist()
    want = [f"trial_{t}" for t in trial_ids] + ["best_val_acc"]
    shot = tmp_path / "hparams.png"
    with browser(chromium, chromedriver, tmp_path / "profile") as driver:
        text = rendered_text(driver, url + "#hparams", want)
        driver.save_screenshot(str(shot))
    missing = [w for w in want if w not in text]
    assert not missing, f"not rendered on the HParams page: {missing}"
    with Image.open(shot) as im:
        width, height = im.size
        header = im.convert("RGB").crop((0, 0, width, 50))
        orange = sum(1 for r, g, b in header.getdata() if r > 200 and 90 < g < 160 and b < 60)
        assert orange > 0.5 * width * 50, "TensorBoard's header bar is missing: the page did not load"
    print(f"screenshot: {shot}")
