"""The invalid-spec corpus: every file in tests/invalid_specs/ must fail to load with exactly
the located problems its `# expect: LINE:COL SUBSTRING` header lines announce."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Repo

from modelspec.errors import Problem, SpecError
from modelspec.spec.load import load_spec

CORPUS = Path(__file__).resolve().parent.parent / "invalid_specs"
FILES = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+)$")
FIVE_MISTAKES = "39-five-mistakes.yaml"


@dataclass(frozen=True)
class Expectation:
    line: int
    column: int
    text: str

    def matches(self, problem: Problem) -> bool:
        return (
            problem.location.line == self.line
            and problem.location.column == self.column
            and self.text in str(problem)
        )


def expectations(path: Path) -> list[Expectation]:
    """The `# expect:` lines of the comment header at the top of the file."""
    found = []
    for raw in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if not raw.startswith("#"):
            break
        match = EXPECT.match(raw)
        if match:
            found.append(Expectation(int(match[1]), int(match[2]), match[3]))
    return found


def git_repo_with(tmp_path: Path, spec: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    target = repo / "specs" / spec.name
    shutil.copyfile(spec, target)
    return target


def test_corpus_is_large_and_well_formed() -> None:
    assert len(FILES) >= 32
    for path in FILES:
        assert re.fullmatch(r"\d\d-[a-z0-9-]+\.yaml", path.name), path.name
        assert expectations(path), f"{path.name} has no # expect: line"
    assert len(expectations(CORPUS / FIVE_MISTAKES)) == 5
    # the non-UTF-8 case must really hold a byte that is not UTF-8
    with pytest.raises(UnicodeDecodeError):
        (CORPUS / "15-non-utf8.yaml").read_bytes().decode("utf-8")


@pytest.mark.parametrize("spec", FILES, ids=[p.stem for p in FILES])
def test_invalid_spec_reports_exactly_the_expected_problems(spec: Path, tmp_path: Path) -> None:
    expected = expectations(spec)
    with pytest.raises(SpecError) as raised:
        load_spec(git_repo_with(tmp_path, spec))
    problems = raised.value.problems
    shown = "\n".join(map(str, problems))
    unmatched = list(problems)
    for expectation in expected:
        match = next((p for p in unmatched if expectation.matches(p)), None)
        assert match is not None, f"expected {expectation} among:\n{shown}"
        unmatched.remove(match)
    assert len(problems) == len(expected), f"unexpected extra problems:\n{shown}"
    assert all(p.location.file.endswith(spec.name) for p in problems)


def test_alias_bomb_is_rejected_before_expansion(tmp_path: Path) -> None:
    """9 levels of 9 aliases would be 387 million strings; rejection must not build them."""
    target = git_repo_with(tmp_path, CORPUS / "13-alias-bomb.yaml")
    with pytest.raises(SpecError, match="anchors and aliases"):
        load_spec(target)


def test_validate_cli_reports_five_located_problems(repo: Repo) -> None:
    source = CORPUS / FIVE_MISTAKES
    repo.write(f"specs/{FIVE_MISTAKES}", source.read_bytes())
    result = repo.modelspec("validate", f"specs/{FIVE_MISTAKES}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    located = re.findall(rf"^specs/{re.escape(FIVE_MISTAKES)}:(\d+):(\d+): ", result.stderr, re.M)
    assert len(located) == 5, result.stderr
    expected = {(e.line, e.column) for e in expectations(source)}
    assert {(int(line), int(col)) for line, col in located} == expected


def test_validate_cli_json_lists_the_problems(repo: Repo) -> None:
    import json

    repo.write(f"specs/{FIVE_MISTAKES}", (CORPUS / FIVE_MISTAKES).read_bytes())
    result = repo.modelspec("validate", f"specs/{FIVE_MISTAKES}", "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["error"] == "SpecError"
    assert len(report["problems"]) == 5
    assert all(p["file"] == f"specs/{FIVE_MISTAKES}" and p["line"] > 0 for p in report["problems"])
