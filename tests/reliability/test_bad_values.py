"""Issue 20 item 15: values that passed `validate` and then crashed `build` with a traceback —
after its stages ran, for a version number SQLite cannot hold. Each is now a located error at
`validate`, `plan` and `build` alike: exit 2, no traceback, nothing run or written.
"""

from __future__ import annotations

import pytest
from conftest import Repo
from test_hostile import SPEC, SPEC_FILE, Case, base_files, replaced, run_rejected

B_CMD = "    cmd: sh -c 'cat ${inputs.a.out} > ${outputs.out}'"
NUL_IN_CMD = replaced(B_CMD, "    cmd: \"sh -c 'cat ${inputs.a.out} > ${outputs.out}\\0x'\"")
NESTED = replaced("echo ${config.a.v}", "echo ${config.a.${inputs.raw}}")
LONG_PATH = "data/" + "d" * 5000 + ".txt"
LONG_NAME = "data/" + "n" * 300 + ".txt"


def nul_in_config(repo: Repo) -> None:
    repo.write("conf/config.yaml", 'a: {v: "one\\0two"}\n')


CASES = {
    "huge-version": Case(replaced('version: "1.0"', 'version: "1.99999999999999999999999"'), "version:", "at most 18"),
    "huge-major": Case(replaced('version: "1.0"', 'version: "9223372036854775808.0.1"'), "version:", "at most 18"),
    "nul-in-cmd": Case(NUL_IN_CMD, "\\0x", "NUL byte"),
    "nul-in-cmd-list": Case(
        replaced(B_CMD, '    cmd: [sh, -c, "cat ${inputs.a.out} > ${outputs.out}", "\\0"]'),
        '"\\0"]',
        "NUL byte",
    ),
    "nul-in-config": Case(SPEC, "config: {dir: conf}", "NUL byte", setup=nul_in_config, loaded=True),
    "nul-in-config-override": Case(
        replaced("config: {dir: conf}", 'config: {dir: conf, overrides: ["a.v=x\\0y"]}'), "config: {dir", "NUL byte"
    ),
    "nested-placeholder": Case(NESTED, "${config.a.${inputs.raw}}", "placeholders cannot nest"),
    "long-data-path": Case(replaced("data/raw.txt", LONG_PATH), "raw: {path", "at most 1024"),
    "long-data-name": Case(replaced("data/raw.txt", LONG_NAME), "raw: {path", "at most 255"),
    "long-name-in-bytes": Case(replaced("data/raw.txt", "data/" + "é" * 200 + ".txt"), "raw: {path", "at most 255"),
    "long-output-path": Case(replaced("{out: a.txt}", "{out: " + "o/" * 600 + "a.txt}"), "{out: o/", "at most 1024"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_value_that_crashed_build_is_a_located_error_everywhere(repo: Repo, name: str) -> None:
    case = CASES[name]
    base_files(repo)
    repo.write(SPEC_FILE, case.spec, dedent=False)
    if case.setup:
        case.setup(repo)
    repo.commit(name)
    for command in ("validate", "plan", "build"):
        run_rejected(repo, command, case)


def test_the_largest_allowed_version_builds_and_registers(repo: Repo) -> None:
    base_files(repo)
    spec = replaced('version: "1.0"', 'version: "999999999999999999.0"').replace("hermetic: strict", "hermetic: off")
    repo.write(SPEC_FILE, spec, dedent=False)
    repo.commit()
    report = repo.build_json(SPEC_FILE)
    assert report["versions"]["x"]["ref"] == "x@999999999999999999.0.0", report["versions"]
