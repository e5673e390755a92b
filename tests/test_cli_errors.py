"""Errors nobody anticipated are one line too, library noise goes to a log file, and the
dependencies' versions are one flag away (issue 13, parts 4 and 5)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

from dlb_tune import cli, logs, places
from dlb_tune.distributions import SpaceError
from dlb_tune.space import default_space_file, load_space


def run_main(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dlb-tune", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code


@pytest.fixture
def broken_results(tmp_path, monkeypatch):
    """An experiment whose results table fails to read in a way no command expects (a damaged
    file is one line of its own: tests/test_hostile.py)."""
    from dlb_tune import experiment

    def unanticipated(*args, **kwargs):
        raise RuntimeError("nobody anticipated this")

    monkeypatch.setattr(experiment, "read_results", unanticipated)
    monkeypatch.setenv(places.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "results.parquet").write_text("not read")
    (tmp_path / "runs" / "x" / "final.json").write_text("{}")
    (tmp_path / "runs" / "x" / "space.yaml").write_text(default_space_file("fcn").read_text())
    yield ["results", "x", "--storage", str(tmp_path / "runs")]
    logs.set_debug(False)


def test_unexpected_error_is_one_line_naming_the_log(broken_results, monkeypatch, capsys):
    assert run_main(monkeypatch, *broken_results) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: RuntimeError: nobody anticipated this"), err
    log = err.rsplit("(full traceback in ", 1)[1].removesuffix(")")
    assert log.startswith(str(logs.user_log_dir()))
    text = open(log).read()
    assert "Traceback (most recent call last)" in text and "results x --storage" in text


def test_debug_shows_the_traceback(broken_results, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["dlb-tune", "--debug", *broken_results])
    with pytest.raises(RuntimeError, match="nobody anticipated this"):
        cli.main()


def test_non_utf8_space_file_is_a_space_error(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes("task: fcn\nparams: {activation: caf\u00e9}\n".encode("latin-1"))  # a file saved as Latin-1
    with pytest.raises(SpaceError, match=r"not UTF-8 text \(byte 34 is 0xe9\); save it as UTF-8"):
        load_space(path)


def test_ray_log_lines_go_to_the_experiment_log(tmp_path):
    pytest.importorskip("ray")  # importing Ray installs its stream handler on the "ray" logger
    # a terminal of our own beside Ray's: Ray's handler holds whatever stderr was when an earlier
    # test imported Ray, which this test's capture may not see
    terminal = io.StringIO()
    handler = logging.StreamHandler(terminal)
    logging.getLogger("ray").addHandler(handler)
    ray_logger = logging.getLogger("ray.tune.execution.experiment_state")
    log = tmp_path / "dlb-tune.log"
    try:
        with logs.library_logs(log):
            try:
                raise OSError("bucket gone")
            except OSError:
                ray_logger.error("Saving experiment state to storage at 'x' failed with exception: ", exc_info=True)
            assert logs.current_log_file() == log
        ray_logger.error("after the sweep")
    finally:
        logging.getLogger("ray").removeHandler(handler)
    assert "Saving experiment state" not in terminal.getvalue() and "after the sweep" in terminal.getvalue()
    assert "Saving experiment state" in log.read_text() and "OSError: bucket gone" in log.read_text()


def test_version_lists_key_dependencies_without_importing_torch():
    code = ("import sys; sys.argv = ['dlb-tune', '--version']\nfrom dlb_tune import cli\ntry: cli.main()\n"
            "except SystemExit: pass\nprint('torch imported:', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.splitlines()[0].startswith("dlb-tune 0.")
    for name in ("ray", "torch", "optuna", "pyarrow", "tensorboard", "typer", "python"):
        assert any(line.split()[0] == name and line.split()[1][0].isdigit() for line in out.splitlines()[1:]), out
    assert "torch imported: False" in out


def test_event_files_are_what_tensorboard_reads(tmp_path):
    """Written through torch's event writer, read back by TensorBoard's reader (it checks every checksum)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto import summary_pb2

    from dlb_tune.board import _write_events

    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="lr", simple_value=0.5)])
    path = _write_events(tmp_path, 1000.0, [summary, summary])
    events = list(EventFileLoader(str(path)).Load())
    assert [e.wall_time for e in events[1:]] == [1000.0] * 2 and events[0].file_version == "brain.Event:2"
    assert events[2].summary.value[0].tag == "lr"
