"""Placeholder interpolation: a value is one argument as it is; in a shell script it is an
environment variable the script refers to, never text the shell parses."""

from __future__ import annotations

import subprocess

import pytest

from modelspec.sandbox.layout import Command, interpolate
from modelspec.sandbox.shellvars import script_token, variable_names

HOSTILE = "x; touch /tmp/pwned $(touch /tmp/pwned) `touch /tmp/pwned` ' \" \\"


def run(argv: list[str], shell: bool = False, value: str = HOSTILE) -> Command:
    return interpolate(argv, "/ms", {"raw": "raw.txt"}, {"out": "o.txt"}, {"a": {"v": value}}, shell)


def shell_output(command: Command) -> str:
    """What the script prints when a real sh runs it with the command's variables."""
    return subprocess.run(list(command.argv), env={"PATH": "/usr/bin:/bin", **command.env}, capture_output=True,
                          text=True, check=True).stdout


def test_a_value_is_one_argument_as_it_is() -> None:
    command = run(["echo", "${config.a.v}", "${inputs.raw}"])
    assert command == Command(("echo", HOSTILE, "/ms/in/raw/raw.txt"), {})


def test_a_placeholder_in_a_script_becomes_a_variable() -> None:
    command = run(["/bin/sh", "-c", "echo ${config.a.v} > ${outputs.out}"], shell=True)
    assert command.argv[-1] == 'echo "${MS_CONFIG_A_V}" > "${MS_OUTPUTS_OUT}"'
    assert command.env == {"MS_CONFIG_A_V": HOSTILE, "MS_OUTPUTS_OUT": "/ms/out/o.txt"}


@pytest.mark.parametrize(
    "script",
    [
        "printf %s ${config.a.v}",
        'printf %s "${config.a.v}"',
        "printf %s '${config.a.v}'",
        'printf %s "[$(printf %s "${config.a.v}")]" | tr -d "[]"',
        "printf %s \"`printf %s '${config.a.v}'`\"",
        "# it's a comment\nprintf %s ${config.a.v}",
        "printf %s \\${config.a.v}",
    ],
)
@pytest.mark.parametrize("value", [HOSTILE, "hello world", "*", "-n", ""])
def test_the_value_arrives_intact_in_every_quoting_context(script: str, value: str) -> None:
    assert shell_output(run(["sh", "-c", script], value=value)) == value


def test_a_command_that_is_itself_sh_c_is_treated_as_a_script() -> None:
    command = run(["sh", "-c", "echo ${config.a.v}", "${config.a.v}"])
    assert command.argv[2] == 'echo "${MS_CONFIG_A_V}"'
    assert command.argv[3] == HOSTILE  # a positional argument of the script: passed as it is
    assert run(["bash", "-x", "${config.a.v}"]).argv[2] == HOSTILE  # not `-c`: not a script


@pytest.mark.parametrize(
    ("argv", "index"),
    [
        (["sh", "-c", "s"], 2),
        (["/usr/bin/bash", "-ec", "s"], 2),
        (["bash", "-e", "-o", "pipefail", "-c", "s"], 5),
        (["bash", "--norc", "-c", "s", "x"], 3),
        (["sh", "-c", "--", "s"], 3),
        (["sh", "script.sh", "-c"], None),
        (["python", "-c", "s"], None),
    ],
)
def test_the_script_token_is_found_among_options(argv: list[str], index: int | None) -> None:
    assert script_token(argv, False) == index


def test_variable_names_are_deterministic_and_distinct() -> None:
    names = variable_names(["config.a_b", "config.a.b", "inputs.raw"])
    assert names["inputs.raw"] == "MS_INPUTS_RAW"
    assert names["config.a_b"] != names["config.a.b"]
    assert names == variable_names(["inputs.raw", "config.a.b", "config.a_b"])
