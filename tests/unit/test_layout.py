"""Placeholder interpolation: values are single arguments, or shell-quoted in a script."""

from __future__ import annotations

import shlex

from modelspec.layout import interpolate

HOSTILE = "x; touch /tmp/pwned"


def run(argv: list[str], shell: bool = False) -> list[str]:
    return interpolate(argv, "/ms", {"raw": "raw.txt"}, {"out": "o.txt"}, {"a": {"v": HOSTILE}}, shell)


def test_a_value_is_one_argument_as_it_is() -> None:
    assert run(["echo", "${config.a.v}", "${inputs.raw}"]) == ["echo", HOSTILE, "/ms/in/raw/raw.txt"]


def test_a_value_in_a_shell_script_is_quoted() -> None:
    script = run(["/bin/sh", "-c", "echo ${config.a.v} > ${outputs.out}"], shell=True)[-1]
    assert shlex.split(script) == ["echo", HOSTILE, ">", "/ms/out/o.txt"]


def test_a_command_that_is_itself_sh_c_is_treated_as_a_script() -> None:
    argv = run(["sh", "-c", "echo ${config.a.v}", "${config.a.v}"])
    assert shlex.split(argv[2]) == ["echo", HOSTILE]
    assert argv[3] == HOSTILE  # a positional argument of the script: passed as it is
    assert run(["bash", "-x", "${config.a.v}"])[2] == HOSTILE  # not `-c`: not a script
