"""Results on object storage, end to end, against a real S3-compatible server on 127.0.0.1.

moto's standalone server (the ``moto[server]`` test extra) listens on a free loopback port with
dummy credentials in the environment; the driver processes inherit them, and Ray's workers get
the endpoint inside the storage filesystem Tune hands them. ``AWS_EC2_METADATA_DISABLED`` keeps
the AWS SDK from asking the network for credentials: nothing leaves 127.0.0.1.

One sweep of two slowed trials runs through the dlb-tune CLI with ``--storage s3://...``; while
it runs, its Ray processes' listening sockets and a client without Ray's token are tried; it is
interrupted with SIGTERM once a checkpoint is in the bucket, and resumed from the bucket alone.
The reading commands then read the finished sweep back from the URI.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
from typer.testing import CliRunner

from dlb_tune import storage as stores
from dlb_tune.cli import app
from dlb_tune.experiment import experiment_dir
from dlb_tune.testing import COUNTED_TASK, read_calls, register_counted_task
from tests.test_interrupts import SPACE, Driver

moto_server = pytest.importorskip("moto.server")

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
S3_ENV = {"AWS_ACCESS_KEY_ID": "dlb-test", "AWS_SECRET_ACCESS_KEY": "dlb-test", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}
BUCKET = "dlb-runs"
EPOCHS = 4  # of SPACE's 0.5 s epochs (--max-epochs)


@dataclass
class S3:
    endpoint: str
    fs: pyarrow.fs.S3FileSystem

    def uri(self, prefix: str, bucket: str = BUCKET) -> str:
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}"

    def files(self, prefix: str) -> list[str]:
        """Every object under ``BUCKET/prefix``, relative to it."""
        root = f"{BUCKET}/{prefix}"
        infos = self.fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
        return sorted(i.path[len(root) + 1:] for i in infos if i.type == pyarrow.fs.FileType.File)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(f"{BUCKET}/{path}") as f:
            return f.read()


@pytest.fixture(scope="module")
def s3():
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
        fs = pyarrow.fs.S3FileSystem(endpoint_override=endpoint, allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield S3(endpoint, fs)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def closed_port() -> int:
    """A loopback port nobody listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the URI and its checks, before anything starts -----------------------------------------------

def test_the_endpoint_query_stays_at_the_end_of_every_path():
    uri = "s3://b/runs?endpoint_override=http://127.0.0.1:9000"
    assert experiment_dir("s", uri) == "s3://b/runs/s?endpoint_override=http://127.0.0.1:9000"
    assert stores.filesystem(stores.join(uri, "s", "results.parquet"))[1] == "b/runs/s/results.parquet"
    assert stores.ray_storage(uri)[0] == "b/runs" and stores.ray_storage("/tmp/runs") == ("/tmp/runs", None)


@pytest.fixture
def no_ray(monkeypatch):
    """Bad storage must be refused before Ray starts: starting it fails the test."""
    import dlb_tune.engine

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(dlb_tune.engine, "start_ray", refuse)


@pytest.mark.parametrize("command", [["sweep", "fcn", "--smoke"], ["resume", "x"], ["results", "x"], ["report", "x"],
                                     ["best", "x"], ["compare", "x", "y"], ["tensorboard", "x"]])
def test_a_missing_bucket_a_dead_endpoint_or_an_unknown_option_is_one_line_before_ray(s3, no_ray, command):
    dead = f"s3://{BUCKET}/runs?endpoint_override=http://127.0.0.1:{closed_port()}"
    cases = {s3.uri("runs", bucket="no-such-bucket"): "bucket 'no-such-bucket' does not exist",
             dead: "is unreachable", s3.uri("runs") + "&regoin=eu": "unknown option(s) regoin"}
    for uri, expected in cases.items():
        result = runner.invoke(app, [*command, "--storage", uri])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (uri, result.output)
        assert expected in lines[0], (uri, lines[0])


# --- a sweep on the bucket: interrupted, resumed from it, read back -------------------------------

def listening_sockets(pid: int) -> set[tuple[str, str]]:
    """(process name, address) of every listening socket of ``pid`` and its descendants."""
    import psutil

    out = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            out |= {(proc.name(), c.laddr.ip) for c in proc.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            continue
    return out


def gcs_calls(pid: int) -> dict[str, str]:
    """One GCS request without Ray's token, with a wrong one, and with the right one: their outcomes."""
    import grpc
    import psutil
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    gcs = next(p for p in psutil.Process(pid).children(recursive=True) if p.name() == "gcs_server")
    port = next(c.laddr.port for c in gcs.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
    token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()
    outcomes = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        for who, metadata in [("none", None), ("wrong", [("authorization", "Bearer not-the-token")]),
                              ("token", [("authorization", f"Bearer {token}")])]:
            try:
                stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), timeout=60, metadata=metadata)
                outcomes[who] = "OK"
            except grpc.RpcError as e:
                outcomes[who] = e.code().name
    return outcomes


@pytest.fixture(scope="module")
def bucket_sweep(s3, tmp_path_factory, data_dir):
    """The sweep, SIGTERM once a trial's second checkpoint is in the bucket, then resumed from it."""
    root = tmp_path_factory.mktemp("s3-sweep")
    record = root / "calls.jsonl"
    (root / "space.yaml").write_text(SPACE.replace("RECORD", json.dumps(str(record))))
    storage = s3.uri("runs")
    sweep = Driver(["sweep", COUNTED_TASK, "--data-dir", str(data_dir), "--space", str(root / "space.yaml"),
                    "--storage", storage, "--name", "i", "--limit", "2000", "--sampler", "random",
                    "--scheduler", "fifo", "--cpus", "2", "--cpus-per-trial", "2", "--max-epochs", str(EPOCHS)],
                   root / "sweep.log")
    try:
        sweep.wait_for(lambda: any(f.endswith("checkpoint_000001/state.pt") for f in s3.files("runs/i")),
                       "a trial's epoch-2 checkpoint in the bucket")
        sockets, auth = listening_sockets(sweep.proc.pid), gcs_calls(sweep.proc.pid)
    finally:
        interrupted = sweep.finish(signal.SIGTERM)  # whatever failed, the driver does not outlive the test
    calls_before = len(read_calls(record))
    resumed = Driver(["resume", "i", "--storage", storage], root / "resume.log")
    return {"s3": s3, "storage": storage, "record": record, "sweep": sweep, "interrupted": interrupted,
            "sockets": sockets, "auth": auth, "calls_before": calls_before, "resumed": resumed,
            "resumed_code": resumed.finish()}


def test_an_interrupted_sweep_resumes_from_the_bucket_alone(bucket_sweep):
    s3 = bucket_sweep["s3"]
    assert bucket_sweep["interrupted"] == 130, bucket_sweep["sweep"].output[-3000:]
    assert bucket_sweep["resumed_code"] == 0, bucket_sweep["resumed"].output[-3000:]
    df = pd.read_parquet(io.BytesIO(s3.read("runs/i/results.parquet")))
    assert (df["status"] == "completed").all() and (df["epochs"] == EPOCHS).all(), df[["status", "epochs"]]
    final = json.loads(s3.read("runs/i/final.json"))
    assert final["test"]["test_acc"] > 0.5 and final["best"]["trial_id"] in set(df["trial_id"])
    assert final["best"]["checkpoint"].startswith(f"s3://{BUCKET}/runs/i/trial_") and "endpoint_override" in final["best"]["checkpoint"]
    # the trial under way at SIGTERM went on from its checkpoint: it never trained epoch 1 again
    calls = read_calls(bucket_sweep["record"])
    before, after = calls[:bucket_sweep["calls_before"]], calls[bucket_sweep["calls_before"]:]
    started = {c["seed"] for c in before if c["call"] == "train"}
    assert len(started) == 1
    resumed_epochs = sorted(c["epoch"] for c in after if c["call"] == "train" and c["seed"] in started)
    assert resumed_epochs and resumed_epochs[0] >= 2 and resumed_epochs[-1] == EPOCHS - 1, resumed_epochs
    assert not list(ROOT.glob("s3:*"))  # nothing written to a local "s3:" folder


def test_a_local_sweep_listens_on_loopback_only(bucket_sweep):
    sockets = bucket_sweep["sockets"]
    assert {name for name, _ in sockets} >= {"gcs_server", "raylet"}  # the sweep's own Ray, seen listening
    # ::ffff:127.0.0.1 is loopback too: gRPC's IPv4 loopback listener on a dual-stack socket
    beyond = {(name, ip) for name, ip in sockets if ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")}
    assert not beyond, beyond
    assert ("python", "127.0.0.1") in sockets  # the dashboard


def test_ray_refuses_a_client_without_its_token(bucket_sweep):
    assert bucket_sweep["auth"] == {"none": "UNAUTHENTICATED", "wrong": "UNAUTHENTICATED", "token": "OK"}


def test_the_reading_commands_read_the_sweep_from_the_bucket(bucket_sweep, monkeypatch, tmp_path):
    register_counted_task()  # the commands below run in this process and read a fcn_counted sweep
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))
    storage, s3 = bucket_sweep["storage"], bucket_sweep["s3"]
    copy = tmp_path / "cache" / "storage" / "s3" / BUCKET / "runs" / "i"
    results = runner.invoke(app, ["results", "i", "--storage", storage, "--format", "json"])
    assert results.exit_code == 0 and len(json.loads(results.output)) == 2, results.output
    with s3.fs.open_output_stream(f"{BUCKET}/runs/i/report/stale.png") as f:  # an earlier report's figure
        f.write(b"old")
    report = runner.invoke(app, ["report", "i", "--storage", storage])
    assert report.exit_code == 0, report.output
    assert f"from its local copy {copy}" in report.output and (copy / "report.md").is_file()
    # the report goes to the bucket too, its figures replacing the earlier report's
    assert s3.read("runs/i/report.md") == (copy / "report.md").read_bytes()
    drawn = sorted(f"report/{p.name}" for p in (copy / "report").glob("*.png"))
    assert drawn and [f for f in s3.files("runs/i") if f.startswith("report/")] == drawn
    task_figs = list((copy / "test_report").glob("*.png"))
    assert f"uploaded {len(drawn) + len(task_figs) + 1} file(s)" in report.output
    assert not [f for f in copy.rglob("*") if "checkpoint_" in str(f)]  # checkpoints stay in the bucket
    best = runner.invoke(app, ["best", "i", "--storage", storage])
    assert best.exit_code == 0 and f"task: {COUNTED_TASK}" in best.stdout, best.output
    compare = runner.invoke(app, ["compare", "i", "i", "--storage", storage, "--format", "json"])
    assert compare.exit_code == 0 and len(json.loads(compare.stdout)) == 2, compare.output

    from dlb_tune import board

    served = {}

    class Stopped:  # TensorBoard started and at once stopped: the command's own part is under test
        def wait(self):
            return 0

    def start(path, port, host):
        served["path"] = Path(path)
        return Stopped(), "http://127.0.0.1:0/"

    monkeypatch.setattr(board, "start_tensorboard", start)
    tb = runner.invoke(app, ["tensorboard", "i", "--storage", storage, "--port", "0"])
    assert tb.exit_code == 0 and served["path"] == copy, tb.output
    assert any(p.name.startswith("events.out.tfevents") for p in copy.rglob("*"))
