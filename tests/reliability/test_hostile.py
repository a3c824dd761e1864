"""Hostile and malformed input: every bad spec or override is answered with a located
error and exit code 2, never a traceback, and nothing is written — no `.modelspec/`, no
`specs/*.lock` — by `modelspec build` or `modelspec plan`.

A Hypothesis fuzz test drives the loader (`parse_document` on arbitrary bytes, `load_spec`
on mutated versions of a valid spec) and checks that the only exceptions it raises are
modelspec's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import Repo
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from modelspec.errors import ModelspecError
from modelspec.spec.load import load_spec
from modelspec.spec.yamlsource import MAX_BYTES, MAX_DEPTH, parse_document

SPEC = """\
modelspec: 1
name: x
version: "1.0"
description: a valid spec that each case spoils in one way
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
config: {dir: conf}
hermetic: strict
stages:
  a:
    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}; echo ${config.a.v} >> ${outputs.out}'
    code: [src]
    inputs: [raw]
    params: [a]
    outputs: {out: a.txt}
  b:
    cmd: sh -c 'cat ${inputs.a.out} > ${outputs.out}'
    inputs: [a.out]
    outputs: {out: b.txt}
artifacts: [b.out]
"""
SPEC_FILE = "specs/x.yaml"


def base_files(repo: Repo) -> None:
    repo.write("data/raw.txt", "raw\n")
    repo.write("conf/config.yaml", "a: {v: 1}\n")
    repo.write("src/a.sh", "# code of stage a\n")


def replaced(old: str, new: str) -> str:
    assert old in SPEC, old
    return SPEC.replace(old, new, 1)


def alias_bomb() -> str:
    """Nine levels of nine aliases: 9**9 strings if anything expanded it."""
    lines = ['l0: &l0 "lol"']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return SPEC.replace("description:", "\n".join(lines) + "\ndescription:", 1)


def code_symlink_out(repo: Repo) -> None:
    os.symlink("/etc/passwd", repo.path / "src" / "passwd")


def data_dir_with_symlink_out(repo: Repo) -> None:
    repo.write("data/dir/rows.csv", "1,2\n")
    os.symlink("/etc/passwd", repo.path / "data" / "dir" / "passwd")


def data_path_is_symlink_out(repo: Repo) -> None:
    os.symlink("/etc/passwd", repo.path / "data" / "link.txt")


def spec_y_depending_on_x(repo: Repo) -> None:
    repo.write(
        "specs/y.yaml",
        SPEC.replace("name: x", "name: y").replace(
            "  raw: {path: data/raw.txt}", "  raw: {path: data/raw.txt}\n  back: {spec: x, output: b.out}"
        ),
        dedent=False,
    )


@dataclass(frozen=True)
class Case:
    """A spoiled spec: the error must be on the line holding `at` (line 1 when empty), or
    on the command line when `at` names a command-line override, and say `message`.
    `loaded` cases pass the loader and are rejected at resolution."""

    spec: str | bytes
    at: str
    message: str
    args: tuple[str, ...] = ()
    setup: Callable[[Repo], None] | None = None
    loaded: bool = False

    def line(self) -> int:
        if not self.at:
            return 1
        text = self.spec.decode("utf-8", "replace") if isinstance(self.spec, bytes) else self.spec
        return next(i for i, line in enumerate(text.splitlines(), 1) if self.at in line)


NOT_RELATIVE = "must be a relative path inside the repository"
CASES = {
    "alias-bomb": Case(alias_bomb(), "&l0", "anchors and aliases are not allowed"),
    "huge-document": Case(replaced("a valid spec", "x" * (MAX_BYTES + 1)), "", f"a spec may be at most {MAX_BYTES}"),
    "deep-nesting": Case(
        replaced("description: a valid spec that each case spoils in one way", f"description: {'[' * 40}{']' * 40}"),
        "description:",
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    "duplicate-key": Case(
        replaced("    outputs: {out: b.txt}", "    outputs: {out: b.txt}\n    cmd: true"), "cmd: true", "duplicate key"
    ),
    "non-utf8": Case(replaced("a valid spec", "caf\xe9").encode("latin-1"), "description:", "not valid UTF-8"),
    "dotdot-data": Case(replaced("data/raw.txt", "../outside.txt"), "raw: {path", NOT_RELATIVE),
    "dotdot-code": Case(replaced("code: [src]", "code: [src/../../outside]"), "code: [src", NOT_RELATIVE),
    "dotdot-output": Case(replaced("{out: a.txt}", "{out: ../a.txt}"), "{out: ../a.txt}", NOT_RELATIVE),
    "dotdot-config": Case(replaced("config: {dir: conf}", "config: {dir: conf/../..}"), "config:", NOT_RELATIVE),
    "absolute-data": Case(replaced("data/raw.txt", "/etc/passwd"), "raw: {path", NOT_RELATIVE),
    "absolute-code": Case(replaced("code: [src]", "code: [/etc]"), "code: [/etc]", NOT_RELATIVE),
    "absolute-output": Case(replaced("{out: a.txt}", "{out: /tmp/a.txt}"), "{out: /tmp/a.txt}", NOT_RELATIVE),
    "output-paths-collide": Case(
        replaced("{out: a.txt}", "{out: a.txt, again: ./a.txt}"), "again: ./a.txt", "collides with output"
    ),
    "output-dir-holds-output": Case(
        replaced("{out: a.txt}", "{out: d, inner: d/a.txt}"), "inner: d/a.txt", "collides with output"
    ),
    "duplicate-output-name": Case(replaced("{out: a.txt}", "{out: a.txt, out: b.txt}"), "out: b.txt", "duplicate key"),
    "spec-references-itself": Case(
        replaced("  raw: {path: data/raw.txt}", "  raw: {path: data/raw.txt}\n  me: {spec: x, output: b.out}"),
        "me: {spec: x",
        "cannot depend on itself",
    ),
    # Accepted by the loader, rejected while resolving the spec into its lock:
    "code-symlink-out": Case(
        SPEC, "code: {repo", "symlink points out of the repository", setup=code_symlink_out, loaded=True
    ),
    "data-dir-symlink": Case(
        replaced("data/raw.txt", "data/dir"),
        "raw: {path",
        "symlinks are not allowed",
        setup=data_dir_with_symlink_out,
        loaded=True,
    ),
    "data-path-symlink-out": Case(
        replaced("data/raw.txt", "data/link.txt"),
        "raw: {path",
        "leads out of the repository",
        setup=data_path_is_symlink_out,
        loaded=True,
    ),
    "override-now": Case(
        SPEC,
        "command-line override 1 'a.v=${now:%s}':",
        "resolver 'now' is not deterministic",
        args=("a.v=${now:%s}",),
        loaded=True,
    ),
    "override-oc-env": Case(
        SPEC,
        "command-line override 1 'a.v=${oc.env:HOME}':",
        "resolver 'oc.env' is not deterministic",
        args=("a.v=${oc.env:HOME}",),
        loaded=True,
    ),
    "specs-reference-each-other": Case(
        replaced("  raw: {path: data/raw.txt}", "  raw: {path: data/raw.txt}\n  up: {spec: y, output: b.out}"),
        "up: {spec: y",
        "specs depend on each other in a cycle",
        setup=spec_y_depending_on_x,
        loaded=True,
    ),
}


class StoreCreatedForARejectedSpec(AssertionError):
    """A rejected spec left `.modelspec/` behind (the only failure the `loaded` cases expect)."""


def run_rejected(repo: Repo, command: str, case: Case) -> bool:
    """Run `modelspec COMMAND` on the spoiled spec; check the answer; say whether `.modelspec/` appeared."""
    result = repo.modelspec(command, SPEC_FILE, *case.args, timeout=60)  # an expanded alias bomb would hang
    output = result.stdout + result.stderr
    assert result.returncode == 2, f"{command} exited {result.returncode}:\n{output}"
    assert "Traceback" not in output, output
    where = case.at if case.at.startswith("command-line override") else f"{SPEC_FILE}:{case.line()}:"
    located = [line for line in result.stderr.splitlines() if line.startswith(where)]
    assert any(case.message in line for line in located), f"expected {case.message!r} at {where}:\n{output}"
    assert not list((repo.path / "specs").glob("*.lock")), "a lock was written for a rejected spec"
    home = repo.path / ".modelspec"
    for kept in ("objects", "ac", "registry.db", "builds", "logs"):
        assert not (home / kept).exists(), f"{command} wrote {kept} for a rejected spec"
    created = home.exists()
    shutil.rmtree(home, ignore_errors=True)
    return created


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_spec_gets_a_located_error_and_writes_nothing(repo: Repo, name: str) -> None:
    case = CASES[name]
    base_files(repo)
    repo.write(SPEC_FILE, case.spec, dedent=False)
    if case.setup:
        case.setup(repo)
    repo.commit(name)
    # `validate` must reject whatever `plan` and `build` reject, hashing no data.
    created = [command for command in ("validate", "plan", "build") if run_rejected(repo, command, case)]
    if created:
        raise StoreCreatedForARejectedSpec(f"{' and '.join(created)} created .modelspec/ for a rejected spec")


def test_a_config_dir_symlink_out_of_the_repository_is_refused(repo: Repo, tmp_path: Path) -> None:
    outside = tmp_path / "outside-conf"
    outside.mkdir()
    (outside / "config.yaml").write_text("a: {v: from-outside}\n")
    base_files(repo)
    shutil.rmtree(repo.path / "conf")
    os.symlink(outside, repo.path / "conf")
    repo.write(SPEC_FILE, SPEC, dedent=False)
    repo.commit()
    result = repo.modelspec("plan", SPEC_FILE)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stdout
    assert "out of the repository" in result.stderr


def test_an_output_path_cannot_leave_the_output_directory_through_a_newline(repo: Repo, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("a host file no stage may touch\n")
    escape = "x\n/" + "../" * 40 + str(victim).lstrip("/")
    make_x_dir = "cat ${inputs.raw} > ${outputs.out}; mkdir -p '/ms/out/x\n'"
    spec = replaced(
        "    cmd: sh -c 'cat ${inputs.raw} > ${outputs.out}; echo ${config.a.v} >> ${outputs.out}'",
        f"    cmd: {json.dumps(['sh', '-c', make_x_dir])}",
    )
    spec = spec.replace("    outputs: {out: a.txt}", f"    outputs: {{out: a.txt, leak: {json.dumps(escape)}}}")
    base_files(repo)
    repo.write(SPEC_FILE, spec, dedent=False)
    repo.commit()
    build = repo.modelspec("build", SPEC_FILE)
    assert victim.exists(), "the build moved a host file outside the output directory into the store"
    assert build.returncode == 2, build.stdout + build.stderr
    assert NOT_RELATIVE in build.stderr


@pytest.mark.parametrize(
    "scalar",
    [
        pytest.param("0x_", id="plain-hex-int-without-digits"),
        pytest.param("2024-02-30", id="plain-date-out-of-range"),
        pytest.param("!!timestamp soon", id="tagged-timestamp"),
        pytest.param("!!int many", id="tagged-int"),
        pytest.param("ok\x01", id="control-character"),
    ],
)
def test_scalars_yaml_cannot_construct_are_located_errors(repo: Repo, scalar: str) -> None:
    base_files(repo)
    repo.write(
        SPEC_FILE,
        replaced("description: a valid spec that each case spoils in one way", f"description: {scalar}"),
        dedent=False,
    )
    repo.commit()
    result = repo.modelspec("build", SPEC_FILE)
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.returncode == 2
    assert re.search(rf"^{SPEC_FILE}:4:\d+: ", result.stderr, re.M), result.stderr
    assert not (repo.path / ".modelspec").exists()


SYMLINK_OUTPUTS = """\
modelspec: 1
name: links
version: "1.0"
code: {repo: ..}
data:
  raw: {path: data/raw.txt}
hermetic: strict
stages:
  file:
    cmd: sh -c 'ln -s /etc/passwd ${outputs.out}'
    inputs: [raw]
    outputs: {out: passwd.txt}
  inside:
    cmd: sh -c 'mkdir ${outputs.dir} && cp ${inputs.raw} ${outputs.dir}/ok && ln -s /etc/passwd ${outputs.dir}/passwd'
    inputs: [raw]
    outputs: {dir: tree}
  folder:
    cmd: sh -c 'mkdir ${outputs.dir} && ln -s /etc ${outputs.dir}/etc'
    inputs: [raw]
    outputs: {dir: tree}
artifacts: [file.out, inside.dir, folder.dir]
"""


def test_a_stage_that_leaves_a_symlink_in_its_outputs_fails(repo: Repo) -> None:
    repo.write("specs/links.yaml", SYMLINK_OUTPUTS, dedent=False)
    repo.write("data/raw.txt", "raw\n")
    repo.commit()
    report = repo.build_json("specs/links.yaml", "--keep-going", check=False)
    rows = {row["node"]: row for row in report["nodes"]}
    assert rows["links:file"]["state"] == "failed"
    assert "output 'out' (passwd.txt) is a symlink" in rows["links:file"]["reason"]
    for node, link in (("links:inside", "tree/passwd"), ("links:folder", "tree/etc")):
        assert rows[node]["state"] == "failed", rows[node]
        assert link in rows[node]["reason"] and "symlinks are not allowed" in rows[node]["reason"], rows[node]
    home = repo.path / ".modelspec"
    assert not (home / "ac").exists() and not (home / "registry.db").exists()
    host_secret = Path("/etc/passwd").read_bytes()
    stored = [p for p in (home / "objects").rglob("*") if p.is_file() and p.read_bytes() == host_secret]
    assert stored == [], "a host file was ingested through an output symlink"


# -- placeholders carry values, never syntax ----------------------------------------------------

INJECTION = 'x\'; rm -rf /ms/out /ms/code; touch /ms/out/INJECTED; echo "$(id)" `id` && exit 7 # end'
WRITE_ARG1_TO_ARG2 = "python3 -c \"import sys; open(sys.argv[2], 'w').write(sys.argv[1])\""


@pytest.mark.parametrize(
    ("cmd", "shell"),
    [
        pytest.param(f"{WRITE_ARG1_TO_ARG2} ${{config.p.v}} ${{outputs.out}}", False, id="argv"),
        pytest.param("printf %s ${config.p.v} > ${outputs.out}", True, id="shell"),
    ],
)
def test_config_values_with_shell_syntax_are_passed_literally(repo: Repo, cmd: str, shell: bool) -> None:
    repo.write("conf/config.yaml", yaml.safe_dump({"p": {"v": INJECTION}}))
    repo.write("data/raw.txt", "raw\n")
    spec = f"""\
modelspec: 1
name: inj
version: "1.0"
code: {{repo: ..}}
data:
  raw: {{path: data/raw.txt}}
config: {{dir: conf}}
hermetic: strict
stages:
  s:
    cmd: {json.dumps(cmd)}
    shell: {str(shell).lower()}
    inputs: [raw]
    params: [p]
    outputs: {{out: out.txt}}
artifacts: [s.out]
"""
    repo.write("specs/inj.yaml", spec, dedent=False)
    repo.commit()
    report = repo.build_json("specs/inj.yaml")
    assert report["ok"], report["nodes"]
    repo.modelspec("checkout", "specs/inj.yaml", "--out", "o", check=True)
    assert (repo.path / "o" / "s" / "out.txt").read_text() == INJECTION


def test_a_failed_stage_is_named_verbatim_on_the_console(repo: Repo) -> None:
    base_files(repo)
    repo.write(SPEC_FILE, SPEC.replace("cat ${inputs.raw}", "exit 3; cat ${inputs.raw}"), dedent=False)
    repo.commit()
    result = repo.modelspec("build", SPEC_FILE)
    assert result.returncode == 1
    assert "x:a: command exited with status 3" in result.stdout, result.stdout


# -- fuzzing the loader -------------------------------------------------------------------------


def assert_only_modelspec_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(ModelspecError):
        call()


# Lines the mutator splices in: hostile YAML, wrong types, paths that leave, odd scalars.
FRAGMENTS = [
    *SPEC.splitlines(),
    *"""&a x
*a
b: &b [*b]
<<: {x: 1}
!!python/object:os.system x
!!binary aGk=
!!set {a}
{
[
- -
? [a]
---
...
%YAML 1.2
'
"
	- x
x: |
  text
x: >-
stages: {}
stages: [a]
data: x
  raw: 5
  raw: {path: 5}
  me: {spec: x, output: b.out}
    cmd: ${inputs.nope}
    cmd: '${}'
    cmd: [1, 2]
    cmd: "a 'b"
    shell: yes
    outputs: {out: ../x}
    outputs: {out: .}
    outputs: [a]
    outputs: {out: 5}
    inputs: [a.out]
    inputs: 5
    params: {}
    metrics: [m]
    code: [/]
artifacts: x
artifacts: [a.nope]
version: 1.0
version: 1.0.0.0
modelspec: 2
name: [x]
null: 1
~: 2
1: 2
true: x
environment: {lock: x, nix: y}
retention: {max_age: forever}
x: 0o777
x: 1_000
x: .inf
x: 12:30:00
x: 2001-12-14t21:59:43.10-05:00
x: 2024-02-30
x: 0b_""".splitlines(),
]


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    """The valid spec with up to four lines deleted, duplicated, replaced, inserted, re-indented or cut."""
    lines = SPEC.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        operation = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "indent", "cut"]))
        if operation == "delete":
            del lines[i]
        elif operation == "duplicate":
            lines.insert(i, lines[i])
        elif operation == "replace":
            lines[i] = draw(st.sampled_from(FRAGMENTS))
        elif operation == "insert":
            lines.insert(i, draw(st.sampled_from(FRAGMENTS) | st.text(max_size=12)))
        elif operation == "indent":
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))] + draw(st.text(max_size=6))
    return "\n".join(lines) + "\n"


# When a Hypothesis test fails, its pytest plugin imports hypothesis.extra._patching, which
# imports libcst, which warns (mypy_extensions.TypedDict); with warnings as errors that turns
# the failure report into an INTERNALERROR. Importing it once, quietly, keeps reports readable.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | mutated_specs().map(str.encode))
def test_fuzz_parse_document_raises_only_modelspec_errors(raw: bytes) -> None:
    assert_only_modelspec_errors(lambda: parse_document(raw, "fuzz.yaml"))


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for relative, content in {"data/raw.txt": "raw\n", "conf/config.yaml": "a: {v: 1}\n", "src/a.sh": "#\n"}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    (root / "specs").mkdir()
    return root / SPEC_FILE


@FUZZ
@given(text=mutated_specs())
def test_fuzz_load_spec_on_mutated_specs_raises_only_modelspec_errors(fuzz_repo: Path, text: str) -> None:
    fuzz_repo.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_only_modelspec_errors(lambda: load_spec(fuzz_repo))


def test_the_fuzzer_reaches_both_valid_and_rejected_specs(fuzz_repo: Path) -> None:
    """A mutator that only ever produced garbage (or only valid specs) would prove little."""

    def loads(text: str) -> bool:
        fuzz_repo.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_spec(fuzz_repo)
        except ModelspecError:
            return False
        return True

    quick = settings(database=None, derandomize=True, max_examples=200)
    assert loads(find(mutated_specs(), lambda text: text != SPEC and loads(text), settings=quick))
    assert not loads(find(mutated_specs(), lambda text: not loads(text), settings=quick))


@pytest.mark.parametrize(
    "option",
    [
        "-r /abs/more-requirements.txt",
        "-c constraints.txt",
        "-e ./src",
        "--index-url https://example.org/simple",
        "--find-links=/wheels",
        "--extra-index-url https://example.org/simple",
    ],
)
def test_an_option_line_in_an_environment_lock_is_a_located_error(repo: Repo, option: str) -> None:
    """What `-r FILE` (or another index) brings in would be installed but not be part of the
    environment's digest: two workspaces could hold different packages under one digest."""
    base_files(repo)
    lock = f"iniconfig==2.0.0 \\\n    --hash=sha256:{'0' * 64}\n    # via -r requirements.in\n{option}\n"
    repo.write("env/requirements.lock", lock, dedent=False)
    repo.write(
        SPEC_FILE,
        replaced("hermetic: strict", 'environment: {python: "3.11", lock: env/requirements.lock}\nhermetic: strict'),
        dedent=False,
    )
    repo.commit()
    for command in ("validate", "plan", "build"):
        result = repo.modelspec(command, SPEC_FILE)
        assert result.returncode == 2, f"{command} exited {result.returncode}: {result.stdout}{result.stderr}"
        assert "Traceback" not in result.stderr
        assert f"env/requirements.lock:4:1: the option line `{option}` is not allowed" in result.stderr, result.stderr
        assert "modelspec env lock" in result.stderr  # what to do instead
        assert not (repo.path / ".modelspec" / "envs").exists()
