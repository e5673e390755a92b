"""`dlb-tune data fetch` and `data list` against a real HTTP server on 127.0.0.1.

The server (``dlb_tune/testing/data_mirror.py``) serves archives built from the real data folder in each
publisher's format, trimmed so that the four smoke sweeps stay small. They are not the
publishers' bytes, so the tests hand ``--checksums`` a SHA256SUMS file of their own, as a user of
a repackaging mirror would. While a fetch runs, a guard refuses every connection this process
opens to anything but 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from dlb_tune.cli import app
from dlb_tune.datasets import DOWNLOADS, default_data_dir
from dlb_tune.fetch import Progress, catalog
from dlb_tune.contract import Setup, check_one_epoch
from dlb_tune.options import SweepOptions
from dlb_tune.tasks import DataError, all_tasks
from dlb_tune.testing import data_mirror

runner = CliRunner()
# the package's own tasks: others that tests register (dlb_tune/testing/counting_task.py) read the same data
BUILT_IN = [n for n, t in all_tasks().items() if t.__module__.startswith("dlb_tune.tasks.") and t.data_sets]


_connect = socket.create_connection


def localhost_only(address, *args, **kwargs):
    assert address[0] in ("127.0.0.1", "localhost"), f"a test tried to reach {address}"
    return _connect(address, *args, **kwargs)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("mirror")
    sums = data_mirror.build(data_dir, root, step=10)  # every 10th image: small smoke sweeps
    server = data_mirror.start(root)
    server.sums = sums
    yield server
    server.shutdown()


def fetch(mirror, dest: Path, target: str = "all", *extra: str, url: str | None = None):
    """`dlb-tune data fetch` in this process, where only 127.0.0.1 may be reached."""
    args = ["data", "fetch", target, "--data-dir", str(dest), "--mirror", url or mirror.url]
    args += ["--checksums", str(mirror.sums)] if mirror else []
    with mock.patch.object(socket, "create_connection", localhost_only):
        return runner.invoke(app, args + list(extra))


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


# --- fetch, then every task sweeps on what it fetched ----------------------------------------------


@pytest.fixture(scope="module")
def fetched(mirror, tmp_path_factory):
    """`data fetch all` from the mirror into a new folder: the result, and the folder."""
    dest = tmp_path_factory.mktemp("fetched")
    return fetch(mirror, dest, "all", "--glove-dim", "25"), dest


def test_fetch_all_installs_only_what_the_loaders_read(mirror, fetched):
    result, dest = fetched
    assert result.exit_code == 0, result.output
    assert {p for p, _ in mirror.requests} >= {f"/{d.name}/{f.name}" for d in catalog().values() for f in d.files}
    assert not (dest / DOWNLOADS).exists()  # archives gone once installed
    # no iconic images, no other GloVe size, no archive left over
    assert not list(dest.rglob("iconic*")) and not list(dest.rglob("*.zip"))
    assert [p.name for p in (dest / "glove").iterdir()] == ["glove.twitter.27B.25d.txt"]
    listing = runner.invoke(app, ["data", "list", "--data-dir", str(dest)]).output
    assert sorted(line.split()[0] for line in listing.splitlines() if line.split()[1:2] == ["present"]) == \
        sorted(catalog()), listing


@pytest.mark.slow
def test_every_task_trains_on_what_fetch_all_installed(fetched, tmp_path, monkeypatch):
    """Each loader reads the fetched layout, and its task trains an epoch and evaluates on it (the
    checks of `check-task`); a sweep over loaded data is the golden path's (tests/test_golden_path.py)."""
    monkeypatch.setenv("DLB_TUNE_CACHE", str(tmp_path / "cache"))  # decode the trimmed images afresh
    result, dest = fetched
    assert result.exit_code == 0, result.output
    for task in BUILT_IN:
        check_one_epoch(Setup.load(task, dest))


# --- failures: one line, nothing half-written ------------------------------------------------------


def test_corrupt_archive_fails_its_checksum_and_installs_nothing(mirror, tmp_path):
    mirror.corrupt.add(f"/grocery/{data_mirror.GROCERY_ZIP}")
    try:
        result = fetch(mirror, tmp_path, "cnn")
    finally:
        mirror.corrupt.clear()
    assert result.exit_code == 1
    assert f"grocery/{data_mirror.GROCERY_ZIP} failed its checksum" in one_error_line(result)
    assert not (tmp_path / "grocery").exists()
    assert not list((tmp_path / DOWNLOADS).rglob("*.part"))  # a corrupt file is never resumed
    listing = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)]).output
    assert not any(line.split()[:2] == ["grocery", "partial"] for line in listing.splitlines()), listing


def test_interrupted_download_resumes_where_it_stopped(mirror, tmp_path):
    path = "/celeba/img_align_celeba.zip"
    size = (mirror.root / path.lstrip("/")).stat().st_size
    mirror.cut[path] = size // 3
    first = fetch(mirror, tmp_path, "vae")
    assert first.exit_code == 1
    assert "interrupted" in one_error_line(first) and "again to resume" in first.output
    assert not (tmp_path / "celeba").exists()
    status = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path)]).output
    assert any(line.split()[:2] == ["celeba", "partial"] for line in status.splitlines()), status
    mirror.requests.clear()
    second = fetch(mirror, tmp_path, "vae")
    assert second.exit_code == 0, second.output
    assert (path, f"bytes={size // 3}-") in mirror.requests
    assert len(list((tmp_path / "celeba/img_align_celeba").glob("*.jpg"))) == 600


def test_unreachable_mirror_fails_in_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = fetch(None, tmp_path, "fcn", url=f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}/mnist/" in one_error_line(result)
    assert time.monotonic() - t0 < 60  # a generous ceiling: the point is seconds, not Ray's 10-minute retries
    assert not (tmp_path / "MNIST").exists()


def test_unknown_target_names_the_choices(tmp_path):
    result = runner.invoke(app, ["data", "fetch", "mnst", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "known: all, grocery, mnist, emotions, glove, celeba" in one_error_line(result)  # as the tasks declare them


# --- missing data names the command that fetches it ------------------------------------------------


@pytest.mark.parametrize("task", BUILT_IN)
def test_missing_data_message_names_data_fetch(task, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(socket, "create_connection", offline)  # fcn would otherwise try torchvision's download
    task_cls = all_tasks()[task]
    with pytest.raises(DataError, match=f"`dlb-tune data fetch {task}`"):
        task_cls.load_data(tmp_path, task_cls.Config(), limit=8)


def test_default_data_folder_is_per_user_and_named_on_first_use(tmp_path, monkeypatch):
    monkeypatch.delenv("DLB_TUNE_CACHE", raising=False)  # CI points it at an empty folder: the platform's default here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    said = []
    first = default_data_dir(said.append)
    again = default_data_dir(said.append)
    assert first == again == tmp_path / "dlb-tune" / "data" and first.is_dir()
    assert len(said) == 1 and str(first) in said[0]
    monkeypatch.delenv("DLB_TUNE_DATA", raising=False)
    assert SweepOptions(task="fcn").resolved_data_dir() == first


def test_emotion_reads_a_fetched_full_glove_file_before_the_subset(tmp_path):
    from dlb_tune.tasks.emotion import DEFAULT_GLOVE, glove_file

    (tmp_path / "glove").mkdir()
    (tmp_path / DEFAULT_GLOVE).write_text("the 0.1\n")
    assert glove_file(tmp_path, "") == tmp_path / DEFAULT_GLOVE
    for dim in (25, 100):  # 100-d, the course's, wins over any other size
        (tmp_path / f"glove/glove.twitter.27B.{dim}d.txt").write_text("the 0.1\n")
    assert glove_file(tmp_path, "") == tmp_path / "glove/glove.twitter.27B.100d.txt"
    glove = catalog()["glove"]
    assert glove.status(tmp_path, 200) == "missing" and glove.status(tmp_path) == "present"


def test_download_progress_in_a_log_is_a_line_a_quarter():
    lines: list[str] = []
    progress = Progress("train.gz", 4_000_000, 0, lines.append, tty=False)
    for _ in range(40):
        progress.update(100_000)
    progress.done()
    assert [line.split()[1] for line in lines] == ["2%", "25%", "50%", "75%", "100%"]  # from the first chunk on
    assert lines[-1].startswith("train.gz: 100% 4.0 MB of 4.0 MB at ")


def test_download_progress_on_a_terminal_leaves_one_line(capsys):
    lines: list[str] = []
    progress = Progress("train.gz", 4_000_000, 1_000_000, lines.append, tty=True)
    for _ in range(30):
        progress.update(100_000)
    progress.done()
    # the bar redraws on stderr and goes when done; the log keeps where it resumed and how it ended
    assert lines[0] == "train.gz: resuming at 1.0 MB" and lines[1].startswith("train.gz: 100% 4.0 MB of 4.0 MB")
    assert len(lines) == 2 and capsys.readouterr().out == ""
