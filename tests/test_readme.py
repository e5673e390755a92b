"""The README as an executable specification (``tests/readme.py`` says how blocks are marked).

Its walks run as written, in a fresh working folder, with the data folder and the storage folder
given through the environment (``DLB_TUNE_DATA``, ``DLB_TUNE_RESULTS``); every ``dlb-tune``
command it shows, runnable or not, names only commands, options and choices the CLI has.
"""

from __future__ import annotations

import shlex

import pytest
import typer
from typer.testing import CliRunner

from dlb_tune.cli import app
from readme import blocks, dlb_tune_calls, inline_commands

runner = CliRunner()
CLI = typer.main.get_command(app)
WALKS = [b for b in blocks() if b.kind == "run"]


def test_every_shell_block_runs_or_says_why_not():
    for block in blocks():
        if block.kind == "not run":
            assert block.reason and block.reason.strip(), f"README line {block.line}: not run, but no reason given"
        if block.kind == "run":  # a walk is dlb-tune commands only: each runs in-process here
            assert all(c.startswith("dlb-tune ") for c in block.commands), (block.line, block.commands)


def _command(words: list[str]):
    """The CLI command the words name (``data list`` included), and the words after its name.
    (Typer carries its own copy of click: a group is a command with ``commands``.)"""
    cmd, rest = CLI, list(words)
    while hasattr(cmd, "commands"):
        global_options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        while rest and rest[0].split("=")[0] in global_options:
            rest.pop(0)
        if not rest or rest[0].startswith("-") or rest[0].isupper():  # --help, or a placeholder (COMMAND)
            return cmd, rest
        name = rest.pop(0)
        assert name in cmd.commands, f"`{name}` is not a command of `{cmd.name}` (known: {', '.join(cmd.commands)})"
        cmd = cmd.commands[name]
    return cmd, rest


def check_against_cli(words: list[str]) -> None:
    """The command exists, each option is one of its own, each listed choice (``a|b``) is taken."""
    cmd, rest = _command(words)
    params = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    params["--help"] = None
    for i, word in enumerate(rest):
        word = word.strip("[]").removesuffix("...")
        if not word.startswith("-") or word == "-":
            continue
        name = word.split("=")[0]
        assert name in params, f"`dlb-tune {' '.join(words)}`: {name} is not an option of `{cmd.name}`"
        param = params[name]
        value = word.split("=", 1)[1] if "=" in word else (rest[i + 1].strip("[]") if i + 1 < len(rest) else "")
        choices = getattr(getattr(param, "type", None), "choices", None)
        if choices and value and not value.isupper():
            for choice in value.split("|"):
                assert choice in choices, f"`{' '.join(words)}`: {name} takes no '{choice}'"


def _all_calls() -> list[list[str]]:
    calls = [call for b in blocks() for c in b.commands for call in dlb_tune_calls(c)]
    return calls + [shlex.split(c)[1:] for c in inline_commands()]


def test_every_command_in_the_readme_is_one_the_cli_has():
    calls = _all_calls()
    assert len(calls) > 30  # the parser found the README's commands
    for words in calls:
        check_against_cli(words)


@pytest.mark.parametrize("block", WALKS, ids=[f"line{b.line}" for b in WALKS])
def test_readme_walk_runs_as_written(block, tmp_path, monkeypatch, data_dir, ray_local):
    monkeypatch.chdir(tmp_path)
    env = {"DLB_TUNE_DATA": str(data_dir), "DLB_TUNE_RESULTS": str(tmp_path / "runs")}
    for command in block.commands:
        result = runner.invoke(app, shlex.split(command)[1:], env=env)
        assert result.exit_code == 0, f"README line {block.line}: `{command}` exited {result.exit_code}\n{result.output}"
