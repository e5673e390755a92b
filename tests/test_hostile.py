"""Experiment folders, archives, names and URIs written by someone else (issue 25), one test per case.

Reading an experiment runs nothing from it; fetched data is checked and stays in its folder; a
name, a URI or a damaged file is one line (``error: ...``, exit 2) before Ray starts. Every case
goes through the dlb-tune CLI as a user meets it: a real finished sweep (``finished_sweep``), the
local data mirror (``dlb_tune/testing/data_mirror.py``), the local S3 server (``tests/test_storage.py``), and
one real sweep in its own process for the lock.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlb_tune import logs, places
from dlb_tune import storage as stores
from dlb_tune.cli import app
from dlb_tune.datasets import DOWNLOADS, UNPACK_RATIO
from dlb_tune.tasks._common import MNIST_DATA
from dlb_tune.experiment import SPACE_FILE, SWEEP_FILE
from dlb_tune.tasks import TrialError
from finished_sweep import NAME, finished_sweep
from dlb_tune.testing import COUNTED_TASK, data_mirror, register_counted_task
from tests.test_datasets import one_error_line
from tests.test_interrupts import SPACE as COUNTED_SPACE, Driver, reported_epochs
from tests.test_storage import BUCKET, no_ray, s3  # noqa: F401 - fixtures: Ray refused; the local S3 server

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    return finished_sweep(tmp_path_factory, data_dir)


def copy_of(finished, tmp_path: Path, *names: str) -> Path:
    """The finished experiment under each of ``names`` in a new storage folder; the folder."""
    storage = tmp_path / "runs"
    for name in names or (NAME,):
        shutil.copytree(finished.exp, storage / name)
    return storage


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# --- 1. reading runs no code from the experiment ---------------------------------------------------

class StoppedBoard:
    """TensorBoard started and at once stopped: the command's own reading is under test."""

    def wait(self):
        return 0


READERS = {
    "ls": ["ls"], "status": ["status", NAME], "results": ["results", NAME], "report": ["report", NAME],
    "best": ["best", NAME], "compare": ["compare", NAME, NAME], "tensorboard": ["tensorboard", NAME, "--port", "0"],
}


@pytest.mark.parametrize("reader", READERS)
def test_a_task_module_named_in_sweep_json_is_never_imported_by_a_reader(reader, finished, tmp_path, monkeypatch):
    from dlb_tune import board

    monkeypatch.setattr(board, "start_tensorboard", lambda *a, **k: (StoppedBoard(), "http://127.0.0.1:0/"))
    storage = copy_of(finished, tmp_path)
    marker, payload = tmp_path / "code-ran", tmp_path / f"payload_{reader}.py"
    payload.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    edit_json(storage / NAME / SWEEP_FILE, task_module=str(payload))
    result = runner.invoke(app, [*READERS[reader], "--storage", str(storage)])
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_resume_imports_a_recorded_task_module_only_when_given_again(finished, tmp_path, no_ray):
    storage = copy_of(finished, tmp_path)
    marker, payload = tmp_path / "code-ran", tmp_path / "payload_resume.py"
    payload.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    edit_json(storage / NAME / SWEEP_FILE, task="ghost", task_module=str(payload))
    edit_json(storage / NAME / "final.json", interrupted=True)  # a finished sweep has nothing to resume
    result = runner.invoke(app, ["resume", NAME, "--storage", str(storage)])
    assert result.exit_code == 2 and one_error_line(result) == (
        f"error: task 'ghost' of '{NAME}' comes from {payload} (sweep.json); resuming runs it: "
        f"add --task-module {payload} if you trust that file")
    assert not marker.exists()


# --- 2. archives stay in their folder; object-store keys stay in the cache -------------------------

GROCERY_TOP = data_mirror.GROCERY_ZIP.removesuffix(".zip")


@pytest.fixture
def serve(tmp_path):
    """A mirror serving the files given (``{"<data set>/<file>": bytes}``); yields a function that
    serves them and runs ``data fetch TARGET`` from it into ``tmp_path/dest``."""
    servers = []

    def fetch(files: dict[str, bytes], target: str, *extra: str):
        root = tmp_path / f"mirror{len(servers)}"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        servers.append(data_mirror.start(root))
        return runner.invoke(app, ["data", "fetch", target, "--data-dir", str(tmp_path / "dest"), "--mirror",
                                   servers[-1].url, *extra])

    yield fetch
    for server in servers:
        server.shutdown()


def zipped(write) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        write(z)
    return out.getvalue()


def link_member(z: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16  # as `zip --symlinks` writes it
    z.writestr(info, target)


@pytest.mark.parametrize("member, why", [
    (f"{GROCERY_TOP}/dataset/../../../../escaped.txt", "points outside the folder it unpacks into"),
    ("/tmp/dlb-tune-escaped.txt", "points outside the folder it unpacks into"),
    (f"{GROCERY_TOP}/dataset/train.txt", "is a symbolic link, not a plain file"),
])
def test_an_archive_member_that_leaves_the_data_folder_refuses_the_archive(member, why, serve, tmp_path):
    """Grocery's archive has no hash (GitHub builds it on request): its members are what is checked."""
    def write(z):
        z.writestr(f"{GROCERY_TOP}/dataset/classes.csv", "a,b\n")
        if why.startswith("is a symbolic link"):
            link_member(z, member, "../../../../../etc/passwd")
        else:
            z.writestr(member, "outside")

    result = serve({f"grocery/{data_mirror.GROCERY_ZIP}": zipped(write)}, "grocery")
    assert result.exit_code == 1 and one_error_line(result) == (
        f"error: {data_mirror.GROCERY_ZIP}: member {member!r} {why}; refused, nothing installed")
    dest = tmp_path / "dest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "mirror0"]  # nothing beside --dest
    assert not Path("/tmp/dlb-tune-escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))
    assert not (dest / "grocery").exists() and not (dest / DOWNLOADS / "grocery").exists()  # download deleted


BOMB = b"\0" * (200 * 2**20)  # ~200 KB compressed, 1000 times that unpacked


@pytest.mark.parametrize("kind", ["zip", "gzip"])
def test_a_bomb_stops_at_ten_times_its_download_and_installs_nothing(kind, serve, tmp_path):
    """A zip is refused on the sizes its headers declare (zipfile itself stops at them); a gzip
    declares none, so its bytes are counted as they are written, even when its hash was vouched for."""
    if kind == "zip":
        result = serve({f"grocery/{data_mirror.GROCERY_ZIP}":
                        zipped(lambda z: z.writestr(f"{GROCERY_TOP}/dataset/train.txt", BOMB))}, "grocery")
    else:
        files = {f"mnist/{f.name}": gzip.compress(BOMB if f.name.startswith("train-images") else b"idx")
                 for f in MNIST_DATA.files}
        sums = tmp_path / "SHA256SUMS"
        sums.write_text("".join(f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in files.items()))
        result = serve(files, "mnist", "--checksums", str(sums))
    line = one_error_line(result)
    assert result.exit_code == 1 and line.startswith(f"error: {'grocery' if kind == 'zip' else 'mnist'}: unpacking: "
                                                     f"more than "), line
    assert line.endswith(f"({UNPACK_RATIO} x the download's size); stopped, nothing installed"), line
    dest = tmp_path / "dest"
    assert [p.name for p in dest.iterdir()] == []  # no data set, no staging folder, no download kept
    assert sum(f.stat().st_size for f in dest.parent.rglob("*") if f.is_file()) < 2 * 2**20


def test_a_key_with_dotdot_on_the_store_is_skipped_by_the_local_copy(s3, finished, tmp_path, monkeypatch):
    import boto3

    cache = tmp_path / "a" / "b" / "c" / "cache"
    monkeypatch.setenv("DLB_TUNE_CACHE", str(cache))
    stores.upload(finished.exp, s3.uri("hostile/e"))
    evil = "hostile/e/trial_x/" + "../" * 9 + "escaped/x.txt"  # from the local copy, up past the cache
    boto3.client("s3", endpoint_url=s3.endpoint).put_object(Bucket=BUCKET, Key=evil, Body=b"outside")
    assert evil.removeprefix("hostile/e/") in s3.files("hostile/e")  # the store keeps such a key as it is
    result = runner.invoke(app, ["best", "e", "--storage", s3.uri("hostile")])
    assert not list(tmp_path.rglob("escaped*"))  # neither the file nor its folder
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr and "skipped 1 object(s) whose key would leave the local copy" in result.stderr
    assert (cache / "storage" / "s3" / BUCKET / "hostile" / "e" / SWEEP_FILE).is_file()  # the rest was copied


# --- 3. names and URIs -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "ABS", "a/b", ".hidden"])
def test_a_name_that_is_not_one_folder_exits_2_before_ray(name, tmp_path, no_ray):
    name = str(tmp_path / "abs") if name == "ABS" else name
    result = runner.invoke(app, ["sweep", "fcn", "--smoke", "--name", name, "--storage", str(tmp_path / "runs")])
    assert result.exit_code == 2 and one_error_line(result) == (
        f"error: --name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit "
        f"(it names one folder under --storage)")
    assert list(tmp_path.iterdir()) == []  # neither the storage folder nor anything beside it


@pytest.mark.parametrize("command", [["sweep", "fcn", "--smoke", "--name", "c"], ["resume", "c"], ["results", "c"],
                                     ["ls"], ["report", "c"], ["best", "c"]])
def test_credentials_in_a_storage_uri_exit_2_and_reach_no_file(command, s3, tmp_path, monkeypatch, no_ray):
    monkeypatch.chdir(tmp_path)  # the default storage, ./dlb-tune-runs, would be here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the crash logs' folder
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"  # a secret may hold '/'
    uri = f"s3://AKIAIOSFODNN7EXAMPLE:{secret}@{BUCKET}/creds?endpoint_override={s3.endpoint}"
    result = runner.invoke(app, [*command, "--storage", uri])
    assert result.exit_code == 2 and one_error_line(result) == (
        f"error: s3://{BUCKET}/creds?endpoint_override={s3.endpoint}: the storage URI holds user info (KEY:SECRET@); "
        f"put credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or ~/.aws, never in the URI")
    assert "AKIAIOSFODNN7EXAMPLE" not in result.output and secret not in result.output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if b"AKIAIOSFODNN7EXAMPLE" in p.read_bytes()]
    assert not s3.files("creds")


def test_a_crash_log_is_private_and_names_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv(places.CACHE_ENV, str(tmp_path / "xdg"))
    logs.user_log_dir().mkdir(parents=True, mode=0o755)  # made earlier, with the umask's mode
    path = logs.record_crash(RuntimeError("boom"), ["sweep", "fcn", "--storage", "s3://KEY:SECRET@b/runs"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "--storage s3://b/runs" in text and "SECRET" not in text and "RuntimeError: boom" in text


# --- 4. damaged files: one line naming the file; ls lists the others ------------------------------

@pytest.mark.parametrize("damaged, readers", [
    ("results.parquet", ["results", "status", "best", "compare"]),
    ("final.json", ["results", "status", "best", "compare"]),
    ("sweep.json", ["status", "best", "compare", "resume"]),
    ("space.yaml", ["results", "status", "best", "compare", "resume"]),
])
def test_a_damaged_experiment_file_is_one_line_naming_it(damaged, readers, finished, tmp_path, no_ray):
    storage = copy_of(finished, tmp_path, "good", "bad")
    path = storage / "bad" / damaged
    data = path.read_bytes()  # cut as a crash in mid-write cut it, before this fix; YAML mid-key
    path.write_bytes(data[: data.index(b"max_epochs") + 5 if damaged == SPACE_FILE else len(data) // 2])
    for reader in readers:
        args = [reader, "bad", "bad"] if reader == "compare" else [reader, "bad"]
        result = runner.invoke(app, [*args, "--storage", str(storage)])
        assert result.exit_code == 2 and one_error_line(result).startswith(f"error: {path}"), (reader, result.output)
    listing = runner.invoke(app, ["ls", "--storage", str(storage)])
    assert listing.exit_code == 0, listing.output
    rows = {line.split()[0]: line for line in listing.output.splitlines()[1:]}
    assert "finished" in rows["good"]
    if damaged != SWEEP_FILE:  # ls reads space.yaml, final.json and results.parquet only
        assert f"damaged {damaged}" in rows["bad"], listing.output


def test_watching_a_damaged_experiment_stops_at_once_while_its_sweep_runs(finished, tmp_path, no_ray):
    """A live sweep (this process, by live.json) with a damaged file: one line, not "waiting"."""
    storage = copy_of(finished, tmp_path, "live")
    edit_json(storage / "live" / "live.json", pid=os.getpid(), ended=None)
    (storage / "live" / "results.parquet").write_bytes(b"PAR1 cut short")
    try:  # its own process, so a watch that waits for ever fails at the ceiling instead of hanging
        done = subprocess.run([sys.executable, "-m", "dlb_tune.cli", "status", "live", "--watch", "--every", "1",
                               "--storage", str(storage)], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"status --watch waited on a damaged experiment: {e.stdout}")
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "results.parquet: not valid Parquet" in lines[0], done


def test_a_damaged_checkpoint_is_one_line(finished, tmp_path):
    from ray.tune import Checkpoint

    from dlb_tune.trainable import STATE_FILE, restored_state

    ckpt = tmp_path / "checkpoint"
    shutil.copytree(next(finished.exp.glob("trial_*/checkpoint_*")), ckpt)
    state = ckpt / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(TrialError) as refused:
        restored_state(Checkpoint.from_directory(str(ckpt)))  # what a resumed trial starts from
    assert str(refused.value) == (f"{state}: not a checkpoint, damaged or cut short (PytorchStreamReader failed "
                                  f"reading zip archive: failed finding central directory)")


def test_an_experiment_file_is_whole_or_the_previous_one(finished, tmp_path, monkeypatch):
    import pandas as pd
    import pyarrow.parquet as pq

    from dlb_tune.experiment import write_results

    storage = copy_of(finished, tmp_path)
    path = storage / NAME / "results.parquet"
    before = path.read_bytes()
    write_table = pq.write_table

    def crash_midway(table, where, **kwargs):
        write_table(table, where, **kwargs)
        Path(where).write_bytes(Path(where).read_bytes()[:100])  # half a file on disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(pq, "write_table", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        write_results(str(storage / NAME), pd.read_parquet(path))
    assert path.read_bytes() == before and sorted(os.listdir(storage / NAME)) == sorted(os.listdir(finished.exp))


# --- 5. one sweep per name; resume runs what the sweep started with -------------------------------

@pytest.fixture(scope="module")
def held(tmp_path_factory, data_dir):
    """A real sweep in its own process, under way: (storage, the sweep's arguments, its driver)."""
    register_counted_task()
    root = tmp_path_factory.mktemp("held")
    (root / "space.yaml").write_text(COUNTED_SPACE.replace("RECORD", json.dumps(str(root / "calls.jsonl"))))
    storage = root / "runs"
    args = ["sweep", COUNTED_TASK, "--data-dir", str(data_dir), "--space", str(root / "space.yaml"), "--storage",
            str(storage), "--name", "i", "--limit", "2000", "--sampler", "random", "--scheduler", "fifo",
            "--cpus", "2", "--cpus-per-trial", "2"]
    driver = Driver(args, root / "sweep.log")
    try:
        driver.wait_for(lambda: max(reported_epochs(storage / "i").values(), default=0) >= 1, "a trial's first epoch")
        yield storage, args, driver
    finally:
        driver.finish(signal.SIGTERM)


def test_one_sweep_per_name_and_resume_refuses_an_edited_space(held, no_ray, data_dir):
    storage, args, driver = held
    for command in (args, ["resume", "i", "--storage", str(storage)]):
        result = runner.invoke(app, command)  # while the first sweep runs
        assert result.exit_code == 2 and one_error_line(result) == (
            f"error: experiment 'i' is in use: another dlb-tune process runs it (it holds {storage}/i/.lock); "
            f"wait for it to end, or choose another --name"), result.output
    assert driver.finish(signal.SIGTERM) == 130, driver.output[-3000:]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and one_error_line(again) == (
        f"error: a sweep named 'i' exists in {storage}: resume i, or choose another --name")
    space = storage / "i" / SPACE_FILE
    original = space.read_text()
    space.write_text(original.replace("max_epochs: 8", "max_epochs: 4"))  # another budget, same searcher
    resumed = runner.invoke(app, ["resume", "i", "--storage", str(storage)])
    assert resumed.exit_code == 2 and one_error_line(resumed) == (
        f"error: {space} was edited after the sweep started (its SHA-256 differs from sweep.json's); resume runs "
        f"only what the sweep started with: put it back, or start a new sweep with --space")
    # what sweep.json says to use is shown before it is used (here Ray is refused where it would start)
    space.write_text(original)
    edit_json(storage / "i" / SWEEP_FILE, address="ray://10.9.9.9:10001")
    shown = runner.invoke(app, ["resume", "i", "--storage", str(storage)])
    assert str(shown.exception) == "Ray was started", shown.output
    assert f"resuming {storage}/i: task {COUNTED_TASK}, data folder {data_dir}, Ray ray://10.9.9.9:10001 (from " \
           f"sweep.json; --data-dir replaces the folder)" in shown.output.splitlines()


# --- 6. the smaller ones ---------------------------------------------------------------------------

def test_a_line_break_in_final_json_stays_inside_bests_comment(finished, tmp_path):
    storage = copy_of(finished, tmp_path)
    final = json.loads((storage / NAME / "final.json").read_text())
    final["best"]["checkpoint"] = "/ckpt\nnum_samples: 999\ninjected: true"
    (storage / NAME / "final.json").write_text(json.dumps(final))
    result = runner.invoke(app, ["best", NAME, "--storage", str(storage)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert "injected" not in doc and doc["num_samples"] == 1
    assert "# checkpoint: /ckpt\\nnum_samples: 999\\ninjected: true" in result.stdout.splitlines()


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_tensorboard_on_a_reachable_address_warns_in_one_line(host, warned, finished, tmp_path, monkeypatch):
    from dlb_tune import board

    monkeypatch.setattr(board, "start_tensorboard", lambda *a, **k: (StoppedBoard(), f"http://{host}:6006/"))
    storage = copy_of(finished, tmp_path)
    result = runner.invoke(app, ["tensorboard", NAME, "--storage", str(storage), "--host", host])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ([f"warning: TensorBoard has no authentication: on --host {host} anyone who can reach this "
                         f"machine reads the experiment (127.0.0.1 and an SSH tunnel keep it private)"] if warned else [])


def test_cluster_yaml_starts_every_node_with_the_heads_token():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(json.loads(json.dumps(cfg))))
    token = f"/home/{cfg['auth']['ssh_user']}/.ray/auth_token"
    assert token in cfg["cluster_synced_files"]  # the head's token, copied to each worker it launches
    head_setup = cfg["head_setup_commands"]
    assert any(c.startswith("ray get-auth-token --generate") for c in head_setup)
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[key] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts), starts
    assert any("export RAY_AUTH_MODE=token" in c for c in cfg["setup_commands"])  # drivers on every node too
    assert "disabled" not in (ROOT / "cluster.yaml").read_text()


def test_no_checkpoint_is_loaded_with_weights_only_false():
    found = subprocess.run(["grep", "-rn", "weights_only=False", str(ROOT / "dlb_tune")], capture_output=True, text=True)
    assert found.stdout == ""


# --- 7. every source's files checked against pinned hashes -----------------------------------------

def test_fetched_files_are_checked_against_the_pinned_hashes(data_dir, tmp_path):
    root = tmp_path / "mirror"
    for name in ("grocery", "emotions", "glove"):
        (root / name).mkdir(parents=True)
        data_mirror.BUILDERS[name](data_dir, root / name, 10)
    server = data_mirror.start(root)
    dest = tmp_path / "dest"
    try:
        def fetch(target: str, *extra: str):
            return runner.invoke(app, ["data", "fetch", target, "--data-dir", str(dest), "--mirror", server.url, *extra])

        emotions = fetch("emotions")  # the publisher's bytes: the pinned hashes match
        assert emotions.exit_code == 0 and (dest / "emotions" / "trainEmotions.csv").is_file(), emotions.output
        glove = fetch("glove", "--glove-dim", "25")  # a stand-in zip, not Stanford's: refused without a --checksums
        assert glove.exit_code == 1 and "glove/glove.twitter.27B.zip failed its checksum" in one_error_line(glove)
        grocery = fetch("grocery")  # downscaled, trimmed images: the unpacked files are not the commit's
        assert grocery.exit_code == 1 and one_error_line(grocery).startswith(
            "error: grocery: unpacked files do not match checksums/grocery.sha256 (")
    finally:
        server.shutdown()
    assert sorted(p.name for p in dest.iterdir()) == ["emotions"]  # nothing else installed, no download kept


def test_data_list_verify_checks_installed_files(data_dir, tmp_path):
    dest = tmp_path / "data"
    shutil.copytree(data_dir / "emotions", dest / "emotions")
    verify = lambda: runner.invoke(app, ["data", "list", "--data-dir", str(dest), "--verify"])  # noqa: E731
    ok = verify()
    assert ok.exit_code == 0 and "  emotions  2 match" in ok.output.splitlines(), ok.output
    shutil.copytree(data_dir / "grocery", dest / "grocery")  # images downscaled for the tests: not the originals
    train = dest / "emotions" / "trainEmotions.csv"
    train.chmod(0o644)
    train.write_bytes(train.read_bytes().replace(b"happiness", b"sadness", 1))
    bad = verify()
    lines = bad.output.splitlines()
    assert bad.exit_code == 1 and "  emotions  1 match, 1 DIFFER (first: emotions/trainEmotions.csv)" in lines
    grocery = next(line for line in lines if line.startswith("  grocery"))
    assert grocery.startswith("  grocery   4 match, 5421 DIFFER"), grocery  # the four index files are the originals
