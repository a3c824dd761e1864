"""Issue 20 item 9: a placeholder value inside a shell script is never executed, and arrives
intact. The script refers to an environment variable (`"${MS_CONFIG_P_V}"`) holding the value,
so neither `$(…)` nor quotes in a value mean anything to the shell, in any quoting context,
in `sh -c '…'` as in `shell: true`, inside the sandbox as without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Repo, states

SPEC = """\
modelspec: 1
name: shellv
version: "1.0"
code: {repo: ..}
config: {dir: conf}
hermetic: strict
stages:
  quoted:
    cmd: sh -c 'printf "%s" "${config.p.v}" > ${outputs.out}'
    params: [p]
    outputs: {out: quoted.txt}
  single:
    cmd: bash -ec 'printf %s '"'"'${config.p.v}'"'"' > ${outputs.out}'
    params: [p]
    outputs: {out: single.txt}
  shell:
    cmd: printf %s ${config.p.v} > ${outputs.out}
    shell: true
    params: [p]
    outputs: {out: shell.txt}
artifacts: [quoted.out, single.out, shell.out]
"""

OUTPUTS = ("quoted/quoted.txt", "single/single.txt", "shell/shell.txt")


def build_with(repo: Repo, value: str, hermetic: str) -> dict[str, str]:
    """Build the spec with `p.v = value` and return what each stage wrote."""
    repo.write("specs/shellv.yaml", SPEC, dedent=False)
    repo.write("conf/config.yaml", f"p: {{v: {json.dumps(value)}}}\n", dedent=False)
    repo.commit()
    result = repo.modelspec("build", "specs/shellv.yaml", "--hermetic", hermetic, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout)
    assert set(states(report).values()) == {"ran"}, result.stdout
    out = repo.path / f"out-{hermetic}"
    repo.modelspec("checkout", "specs/shellv.yaml", "--out", str(out), check=True)
    return {name: (out / name).read_text() for name in OUTPUTS}


@pytest.mark.parametrize("hermetic", ["strict", "off"])
def test_a_command_substitution_in_a_value_is_not_executed(repo: Repo, tmp_path: Path, hermetic: str) -> None:
    marker = tmp_path / "pwned"
    value = f'$(touch {marker}; echo EXECUTED)`touch {marker}`"; touch {marker}; echo "'
    written = build_with(repo, value, hermetic)
    assert written == dict.fromkeys(OUTPUTS, value)
    assert not marker.exists()


@pytest.mark.parametrize("hermetic", ["strict", "off"])
def test_a_value_with_a_space_arrives_intact(repo: Repo, hermetic: str) -> None:
    assert build_with(repo, "hello world", hermetic) == dict.fromkeys(OUTPUTS, "hello world")
