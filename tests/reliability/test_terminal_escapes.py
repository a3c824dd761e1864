"""User strings never reach the terminal as control sequences (issue 20 item 19).

A tag value, an actor's name (git's author name) and a metric's name are whatever someone
wrote. Printed raw, `ESC ] 0 ; … BEL` retitles the reader's terminal, `ESC [ 2 J` clears it
and U+202E reverses what follows. Text output shows each as a visible escape (`\\x1b`);
JSON output keeps the exact value (JSON escapes it itself).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from conftest import GIT_ENV, Repo

from modelspec.text import printable

SPEC = """\
modelspec: 1
name: esc
version: "1.0"
code: {repo: ..}
config: {dir: conf}
stages:
  s:
    cmd: sh src/s.sh ${config.v} ${outputs.out} ${outputs.m}
    code: [src/s.sh]
    params: [v]
    outputs: {out: out.txt, m: metrics.json}
    metrics: m
artifacts: [s.out]
"""
# The metrics file names one metric with an escape sequence in it: "\u001b[2Jwipe".
S_SH = """\
echo "$1" > "$2"
printf '{"auc": 0.5, "\\\\u001b[2Jwipe": 1}\\n' > "$3"
"""
TITLE = "\x1b]0;pwned\x07"  # OSC: set the terminal's title, ended by BEL
RED = "\x1b[31m"  # CSI: a colour
BIDI = "\u202e"  # right-to-left override
TAG = f"a{TITLE}b{RED}c{BIDI}d"
ACTOR = f"mallory{TITLE}{RED}"
RAW = ("\x1b", "\x07", "\u202e")


def run(repo: Repo, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
    result = repo.modelspec(*args, env={"GIT_AUTHOR_NAME": actor} if actor else None)
    assert result.returncode == 0, f"{args} → {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def assert_no_raw_controls(text: str) -> None:
    found = [f"U+{ord(c):04X}" for c in RAW if c in text]
    assert not found, f"raw control characters {found} in:\n{text!r}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MODELSPEC_HOME", raising=False)
        for key, value in GIT_ENV.items():
            mp.setenv(key, value)
        repo = Repo(tmp_path_factory.mktemp("escapes") / "repo")
        repo.write("specs/esc.yaml", SPEC, dedent=False)
        repo.write("conf/config.yaml", "v: 1\n")
        repo.write("src/s.sh", S_SH, dedent=False)
        repo.commit("esc")
        repo.build_json("specs/esc.yaml")
        run(repo, "tag", "esc@1.0.0", f"note={TAG}")
        run(repo, "promote", "esc@1.0.0", "production", actor=ACTOR)
        yield repo


def test_tag_prints_the_value_escaped(repo: Repo) -> None:
    out = run(repo, "tag", "esc@1.0.0", f"again={TAG}").stdout
    assert_no_raw_controls(out)
    assert "again=a\\x1b]0;pwned\\x07b\\x1b[31mc\\u202ed" in out


def test_show_versions_audit_and_alias_history_print_escapes(repo: Repo) -> None:
    show = run(repo, "show", "esc@1.0.0").stdout
    assert "note=a\\x1b]0;pwned\\x07b\\x1b[31mc\\u202ed" in show
    assert "\\x1b[2Jwipe = 1" in show  # the metric's name
    versions = run(repo, "versions", "esc").stdout
    assert "\\x1b[2Jwipe" in versions
    audit = run(repo, "audit").stdout
    history = run(repo, "alias", "history", "esc", "production").stdout
    for text in (audit, history):
        assert "mallory\\x1b]0;pwned\\x07\\x1b[31m" in text
    for text in (show, versions, audit, history):
        assert_no_raw_controls(text)


def test_json_output_keeps_the_exact_values(repo: Repo) -> None:
    shown = json.loads(run(repo, "show", "esc@1.0.0", "--json").stdout)
    assert shown["tags"]["note"] == TAG
    assert "\x1b[2Jwipe" in shown["metrics"]
    history = json.loads(run(repo, "alias", "history", "esc", "production", "--json").stdout)
    assert history["history"][-1]["actor"] == ACTOR
    events = json.loads(run(repo, "audit", "--json").stdout)["events"]
    assert any(e["actor"] == ACTOR for e in events)


def test_an_error_naming_a_user_string_is_escaped_too(repo: Repo) -> None:
    result = repo.modelspec("alias", "history", "esc", f"never{TITLE}")
    assert result.returncode == 2
    assert_no_raw_controls(result.stderr)
    assert "esc@never\\x1b]0;pwned\\x07 has never been set" in result.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é ü 中", "plain é ü 中"),
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07", "bell\\x07"),
        ("del\x7f c1\x9b", "del\\x7f c1\\x9b"),
        ("\u202aLRE \u202eRLO \u2066LRI \u2069PDI", "\\u202aLRE \\u202eRLO \\u2066LRI \\u2069PDI"),
        ("one\nline\ttab\rcr\x00", "one\\nline\\ttab\\rcr\\x00"),
    ],
)
def test_printable_escapes_control_and_bidi_characters(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_keeps_newlines_and_tabs_where_lines_are_expected() -> None:
    assert printable("a\tb\nc\x1b[0m\r", multiline=True) == "a\tb\nc\\x1b[0m\\r"
