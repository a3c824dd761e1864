"""Issue 20 item 8: composition is confined to the config dir. `hydra.searchpath=[file:///…]`
(in `config.overrides`, on the command line, or in a config file), a config name or group
choice given as a path (`../../x`, `/abs`, `file://`) and a symlink leading out of the config
dir used to compose YAML from anywhere into the lock — and the compose cache ignored later
changes to those files. Each is a located error at `validate`, `plan`, `build` and `lock`;
the cache key holds every file a composition can read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import Repo

SPEC = """\
modelspec: 1
name: x
version: "1.0"
code: {{repo: ..}}
config:
  dir: conf
  name: {name}
  overrides:
    - a.v=2
    - {override}
hermetic: off
stages:
  a:
    cmd: sh -c 'echo ${{config.a.v}} ${{config.model.kind}} > ${{outputs.out}}'
    params: [a, model]
    outputs: {{out: a.txt}}
artifacts: [a.out]
"""
SPEC_FILE = "specs/x.yaml"
COMMANDS = ("validate", "plan", "build", "lock")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """YAML outside the repository, which no composition may read."""
    place = tmp_path / "outside"
    place.mkdir()
    (place / "evil.yaml").write_text("a: {v: from-outside}\nmodel: {kind: from-outside}\n")
    (place / "model").mkdir()
    (place / "model" / "evil.yaml").write_text("kind: from-outside\n")
    return place


def prepared(repo: Repo, *, name: str = "config", override: str = "a.v=3") -> None:
    repo.write("conf/config.yaml", "defaults:\n  - model: resnet\n  - _self_\na: {v: 1}\n")
    repo.write("conf/model/resnet.yaml", "kind: resnet\n")
    repo.write("conf/model/vit.yaml", "kind: vit\n")
    repo.write(SPEC_FILE, SPEC.format(name=name, override=json.dumps(override)), dedent=False)
    repo.commit()


def assert_refused(repo: Repo, args: tuple[str, ...], where: str, message: str) -> None:
    for command in COMMANDS:
        result = repo.modelspec(command, SPEC_FILE, *args, timeout=120)
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output[-2000:]
        assert result.returncode == 2, f"{command} exited {result.returncode}:\n{output[-2000:]}"
        located = [line for line in result.stderr.splitlines() if line.startswith(where)]
        assert any(message in line for line in located), f"{command}: expected {message!r} at {where}:\n{output}"
        assert "from-outside" not in output
        assert not (repo.path / "specs" / "x.lock").exists(), f"{command} wrote a lock"


def line_of(repo: Repo, text: str) -> int:
    lines = (repo.path / SPEC_FILE).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


HYDRA_SETTINGS = "may not change Hydra's own settings"


@pytest.mark.parametrize(
    "override",
    [
        "hydra.searchpath=[file://{outside}]",
        "+hydra.searchpath=[file://{outside}]",
        "++hydra.searchpath=[file://{outside}]",
        "hydra/job_logging=disabled",
        "~hydra",
    ],
)
def test_a_spec_override_of_hydras_settings_is_refused_at_its_line(repo: Repo, outside: Path, override: str) -> None:
    text = override.format(outside=outside)
    prepared(repo, override=text)
    line = line_of(repo, json.dumps(text))
    assert_refused(repo, (), f"{SPEC_FILE}:{line}:", HYDRA_SETTINGS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.searchpath=[file://{outside}]", HYDRA_SETTINGS),
        ("x:+hydra.searchpath=[file://{outside}]", HYDRA_SETTINGS),
        ("+db@hydra.foo=1", HYDRA_SETTINGS),
        ("model=../../../outside/model/evil", "is a path"),
        ("model={outside}/model/evil", "is a path"),
        ("model=file://{outside}/model/evil", "is a path"),
        ("model=pkg://hydra.conf", "is a path"),
    ],
)
def test_a_command_line_override_leaving_the_config_dir_is_refused(
    repo: Repo, outside: Path, override: str, message: str
) -> None:
    prepared(repo)
    text = override.format(outside=outside)
    assert_refused(repo, (text,), f"command-line override 1 {text!r}", message)


@pytest.mark.parametrize("override", ["k" * 5000 + "=1", "model=" + "m" * 5000])
def test_an_override_too_long_for_a_file_name_is_a_located_error(repo: Repo, override: str) -> None:
    """Hydra looks for a config file named after the key or group choice: ENAMETOOLONG."""
    prepared(repo)
    result = repo.modelspec("validate", SPEC_FILE, override)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert any(line.startswith("command-line override 1") for line in result.stderr.splitlines()), result.stderr[:400]


def test_group_choices_and_values_that_stay_inside_are_fine(repo: Repo) -> None:
    prepared(repo, override="model=vit")
    repo.modelspec("lock", SPEC_FILE, "a.v=/etc/passwd", check=True)
    config = json.loads((repo.path / "specs" / "x.lock").read_text())["config"]
    assert config == {"a": {"v": "/etc/passwd"}, "model": {"kind": "vit"}}


@pytest.mark.parametrize("name", ["../../outside/evil", "/tmp/evil", "file:///tmp/evil"])
def test_a_config_name_leading_out_of_the_config_dir_is_refused(repo: Repo, name: str) -> None:
    prepared(repo, name=json.dumps(name))
    assert_refused(repo, (), f"{SPEC_FILE}:{line_of(repo, 'name: ' + json.dumps(name))}:", "inside the config dir")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hydra:\n  searchpath: [file://{outside}]\na: {{v: 1}}\n", "sets hydra.searchpath"),
        ("defaults:\n  - ../../../outside/evil\n  - _self_\na: {{v: 1}}\n", "a path out of the config dir"),
        ("defaults:\n  - model: ../../../outside/model/evil\n  - _self_\na: {{v: 1}}\n", "out of the config dir"),
        ("defaults:\n  - file://{outside}/evil\n  - _self_\na: {{v: 1}}\n", "out of the config dir"),
    ],
)
def test_a_config_file_reaching_out_of_the_config_dir_is_refused(
    repo: Repo, outside: Path, content: str, message: str
) -> None:
    prepared(repo)
    repo.write("conf/config.yaml", content.format(outside=outside))
    repo.commit()
    assert_refused(repo, (), f"{SPEC_FILE}:{line_of(repo, 'dir: conf')}:", message)


def test_a_symlink_out_of_the_config_dir_is_refused_even_inside_the_repository(repo: Repo) -> None:
    """Its target would escape the compose cache's key: an edit there went unseen."""
    prepared(repo)
    repo.write("shared/model/resnet.yaml", "kind: shared\n")
    os.symlink("../../shared/model/resnet.yaml", repo.path / "conf" / "model" / "shared.yaml")
    os.symlink("../shared", repo.path / "conf" / "elsewhere")
    repo.commit()
    assert_refused(repo, (), f"{SPEC_FILE}:{line_of(repo, 'dir: conf')}:", "symlink leading out of the config dir")


def test_a_symlink_out_of_the_repository_is_refused(repo: Repo, outside: Path) -> None:
    prepared(repo)
    os.symlink(outside / "model" / "evil.yaml", repo.path / "conf" / "model" / "evil.yaml")
    assert_refused(repo, ("model=evil",), f"{SPEC_FILE}:{line_of(repo, 'dir: conf')}:", "out of the")


def test_an_edit_through_a_symlink_inside_the_config_dir_recomposes(repo: Repo) -> None:
    """Symlinks inside the config dir are followed (a loop ends), and every file they reach
    is in the compose cache's key: an edit is never answered from the cache."""
    prepared(repo)
    os.symlink("model", repo.path / "conf" / "models")
    os.symlink(".", repo.path / "conf" / "model" / "loop")
    os.symlink("models/vit.yaml", repo.path / "conf" / "current.yaml")
    os.symlink("knot.yaml", repo.path / "conf" / "knot.yaml")  # a symlink to itself
    repo.write("conf/config.yaml", "defaults:\n  - current\n  - model: resnet\n  - _self_\na: {v: 1}\n")
    repo.commit()

    def composed() -> dict[str, object]:
        repo.modelspec("lock", SPEC_FILE, timeout=60, check=True)
        config: dict[str, object] = json.loads((repo.path / "specs" / "x.lock").read_text())["config"]
        return config

    assert composed()["kind"] == "vit"
    (repo.path / "conf" / "model" / "vit.yaml").write_text("kind: vit-edited\n")
    assert composed()["kind"] == "vit-edited"
