"""Every command's ``--help``: it describes every argument and option, and shows their defaults.

The command tree is walked from the real Typer app, so a command added later is checked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gpuyard.cli.main import app

ROOT = typer.main.get_command(app)


def _commands(command: Any = ROOT, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(command, "list_commands"):
        ctx = command.context_class(command)
        for name in command.list_commands(ctx):
            yield from _commands(command.get_command(ctx, name), (*path, name))
    else:
        yield path


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.get_command(command.context_class(command), name)
    return command


COMMANDS = sorted(_commands())


def _described(text: str, param: Any) -> str:
    """The part of the help text about ``param``: from its name to the next option's."""
    if param.param_type_name == "argument":
        head = text.lower().index("arguments")
        return text[head : text.index("Options", head)]
    start = text.index(f" {param.opts[0]} ", text.index("Options"))
    end = text.find(" --", start + len(param.opts[0]) + 2)  # the next option (--help at least)
    return text[start:end]


def test_the_walk_finds_the_commands_a_newcomer_is_told_about() -> None:
    for path in [("up",), ("vms", "logs"), ("clusters", "list"), ("clusters", "create")]:
        assert path in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_describes_every_argument_and_shows_defaults(path: tuple[str, ...]) -> None:
    command = _command(path)
    assert command.help, f"`gpuyard {' '.join(path)}` has no description"
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"})
    assert done.exit_code == 0, done.output
    text = re.sub(r"[ │]+", " ", done.output)  # one line per option at this width
    for param in command.params:
        if param.name == "help":
            continue
        what = f"`gpuyard {' '.join(path)}` {param.name}"
        assert getattr(param, "help", None), f"{what} is not described"
        shown = param.show_default
        has_default = param.default not in (None, False, "", ()) and not param.is_flag
        own = _described(text, param)
        if isinstance(shown, str):
            assert f"[default: ({shown})]" in own, f"{what}: default not shown\n{done.output}"
        elif has_default:
            assert "[default: " in own, f"{what}: default not shown\n{done.output}"
        if param.param_type_name == "argument":
            name = (param.metavar or param.name).lower()
            assert name in done.output.lower(), f"{what}: {name} missing from the help"
        else:
            for name in param.opts:
                assert name in done.output, f"{what}: {name} missing from the help"
