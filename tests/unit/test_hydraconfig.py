"""Composing Hydra configs: groups, overrides, errors, and refusing non-deterministic values."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelspec.resolve import hydraconfig
from modelspec.resolve.hydraconfig import ConfigError, compose, select_params, subtree
from modelspec.resolve.plainconfig import plain_config

CONFIG = """\
defaults:
  - model: gbt
  - _self_
train:
  lr: 0.1
  epochs: 3
  tag: run-${train.epochs}
features:
  window: 7
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    return write(
        tmp_path / "conf",
        {
            "config.yaml": CONFIG,
            "model/gbt.yaml": "kind: gbt\ndepth: 4\n",
            "model/logreg.yaml": "kind: logreg\nc: 1.0\n",
        },
    )


def test_compose_defaults_and_resolves_interpolations(conf: Path) -> None:
    assert compose(conf, "config", []) == {
        "model": {"kind": "gbt", "depth": 4},
        "train": {"lr": 0.1, "epochs": 3, "tag": "run-3"},
        "features": {"window": 7},
    }


def test_overrides_pick_a_group_option_and_set_values(conf: Path) -> None:
    config = compose(conf, "config", ["model=logreg", "train.epochs=5", "+extra.seed=1"])
    assert config["model"] == {"kind": "logreg", "c": 1.0}
    assert config["train"] == {"lr": 0.1, "epochs": 5, "tag": "run-5"}
    assert config["extra"] == {"seed": 1}


def test_a_later_override_wins(conf: Path) -> None:
    assert compose(conf, "config", ["train.lr=0.5", "train.lr=0.05"])["train"]["lr"] == 0.05


def test_missing_mandatory_value(conf: Path) -> None:
    write(conf, {"config.yaml": CONFIG.replace("epochs: 3", "epochs: ???")})
    with pytest.raises(ConfigError, match="Missing mandatory value") as raised:
        compose(conf, "config", [])
    assert raised.value.key == "train.epochs"
    assert compose(conf, "config", ["train.epochs=2"])["train"]["tag"] == "run-2"


def test_dangling_interpolation(conf: Path) -> None:
    write(conf, {"config.yaml": CONFIG.replace("${train.epochs}", "${train.steps}")})
    with pytest.raises(ConfigError, match=re.escape("train.steps")) as raised:
        compose(conf, "config", [])
    assert raised.value.key == "train.tag"


@pytest.mark.parametrize(
    ("value", "resolver"),
    [
        ("${now:%Y-%m-%d}", "now"),
        ("${oc.env:HOME}", "oc.env"),
        ("${ oc.env:HOME}", "oc.env"),
        ("run-${now:%H}", "now"),
        ("${hydra:runtime.cwd}", "hydra"),
        ("${oc.select:${oc.env:HOME},x}", "oc.env"),
    ],
)
def test_non_deterministic_resolvers_in_files_are_refused(conf: Path, value: str, resolver: str) -> None:
    write(conf, {"config.yaml": CONFIG.replace("run-${train.epochs}", f"'{value}'")})
    with pytest.raises(ConfigError, match=f"resolver '{resolver}' in train.tag is not determ"):
        compose(conf, "config", [])


@pytest.mark.parametrize("override", ["train.tag=${now:%Y}", "+home=${oc.env:HOME}"])
def test_non_deterministic_resolvers_in_overrides_are_refused(conf: Path, override: str) -> None:
    with pytest.raises(ConfigError, match="is not deterministic"):
        compose(conf, "config", [override])


def test_resolver_in_a_group_file_is_refused(conf: Path) -> None:
    write(conf, {"model/gbt.yaml": "kind: gbt\ndepth: ${now:%S}\n"})
    with pytest.raises(ConfigError, match=re.escape("resolver 'now' in model.depth")):
        compose(conf, "config", [])


def test_resolver_in_the_defaults_list_is_refused(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults list is not part of the result, so it must be checked in the files."""
    monkeypatch.setenv("MODEL_CHOICE", "logreg")
    defaults = CONFIG.replace("model: gbt", "model: ${oc.env:MODEL_CHOICE,gbt}")
    write(conf, {"config.yaml": defaults})
    expected = "resolver 'oc.env' in the defaults of config.yaml"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        compose(conf, "config", [])


@pytest.mark.parametrize("resolver", ["oc.decode", "oc.create"])
def test_resolvers_that_evaluate_assembled_strings_are_refused(
    conf: Path, monkeypatch: pytest.MonkeyPatch, resolver: str
) -> None:
    """`${oc.decode:${a}${b}}` would evaluate `${oc.env:SECRET}` assembled from two strings."""
    monkeypatch.setenv("SECRET", "from-the-environment")
    extra = 'a: "$"\nb: "{oc.env:SECRET}"\nc: "x: ${a}${b}"\n'
    write(conf, {"config.yaml": CONFIG + extra + f"d: ${{{resolver}:${{c}}}}\n"})
    with pytest.raises(ConfigError, match=f"resolver '{resolver}'"):
        compose(conf, "config", [])


def test_deterministic_resolvers_are_allowed(conf: Path) -> None:
    config = compose(conf, "config", ["+pick=${oc.select:train.missing,5}", "+keys=${oc.dict.keys:train}"])
    assert config["pick"] == 5
    assert config["keys"] == ["lr", "epochs", "tag"]


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        (["train.nope=1"], "Could not override 'train.nope'"),
        (["model=xgboost"], "model/xgboost"),
        (["train.lr=["], "."),
    ],
)
def test_bad_overrides_are_config_errors(conf: Path, overrides: list[str], text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        compose(conf, "config", overrides)


def test_missing_primary_config(conf: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        compose(conf, "nope", [])


def test_invalid_yaml_in_a_config_file_is_a_config_error(conf: Path) -> None:
    write(conf, {"config.yaml": "train: lr: 0.1\n"})
    with pytest.raises(ConfigError, match="invalid YAML"):
        compose(conf, "config", [])


def test_two_config_dirs_in_one_process(conf: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "other", {"config.yaml": "train:\n  lr: 0.7\nonly_here: true\n"})
    first = compose(conf, "config", [])
    second = compose(other, "config", [])
    assert second == {"train": {"lr": 0.7}, "only_here": True}
    assert compose(conf, "config", []) == first
    assert "only_here" not in first


def test_composition_works_after_an_error(conf: Path) -> None:
    with pytest.raises(ConfigError):
        compose(conf, "config", ["model=xgboost"])
    assert compose(conf, "config", [])["model"]["kind"] == "gbt"


def test_subtree() -> None:
    config = {"train": {"lr": 0.1, "opt": {"name": "adam"}}, "x": 1}
    assert subtree(config, "train.opt.name") == (True, "adam")
    assert subtree(config, "train") == (True, config["train"])
    assert subtree(config, "train.nope") == (False, None)
    assert subtree(config, "x.y") == (False, None)


def test_select_params_keeps_each_key_at_its_own_path() -> None:
    config = {
        "train": {"lr": 0.1, "epochs": 3, "opt": {"name": "adam", "beta": 0.9}},
        "model": {"depth": 4},
        "features": {"window": 7},
    }
    assert select_params(config, ["train.lr", "model"]) == {
        "train": {"lr": 0.1},
        "model": {"depth": 4},
    }
    assert select_params(config, ("train.opt.name", "train.epochs")) == {
        "train": {"epochs": 3, "opt": {"name": "adam"}}
    }
    assert select_params(config, []) == {}
    # order of params does not matter, and a key inside a selected subtree changes nothing
    assert select_params(config, ["train.lr", "train"]) == select_params(config, ["train"])
    assert select_params(config, ["train"]) == {"train": config["train"]}


def test_select_params_does_not_modify_the_config() -> None:
    config = {"train": {"lr": 0.1, "epochs": 3}}
    select_params(config, ["train", "train.lr"])
    assert config == {"train": {"lr": 0.1, "epochs": 3}}


# -- a plain config (one file, no defaults, no interpolation) is read without Hydra ------------

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
PLAIN_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(st.characters(codec="utf-8", exclude_characters="\0$"), max_size=8)
    | st.sampled_from(["on", "off", "yes", "1e3", "0x10", "2024-01-02", "~", "null", ".inf", "???", "1_000"]),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(KEYS, kids, max_size=3),
    max_leaves=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(KEYS, PLAIN_VALUES, max_size=4), st.booleans())
def test_a_plain_config_composes_as_hydra_does(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, object], flow: bool
) -> None:
    conf = tmp_path_factory.mktemp("plain")
    (conf / "config.yaml").write_text(yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True))
    plain = plain_config(hydraconfig.config_files(conf), "config")
    try:
        composed = hydraconfig._hydra_compose(conf, "config", [])
    except Exception:  # Hydra refuses it: then the plain path must not have answered for it
        assert plain is None
        return
    from omegaconf import OmegaConf

    expected = OmegaConf.to_container(composed, resolve=True)
    if {"defaults", "hydra"} & set(tree) or "???" in json.dumps(tree):  # a missing value: Hydra's to say
        assert plain is None
    else:
        assert plain == expected


def test_only_a_plain_config_skips_hydra(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("train:\n  lr: 0.1\n  layers: [64, 32]\n")
    files = hydraconfig.config_files(conf)
    assert plain_config(files, "config") == {"train": {"lr": 0.1, "layers": [64, 32]}}
    assert compose(conf, "config", []) == {"train": {"lr": 0.1, "layers": [64, 32]}}
    not_plain = ("defaults:\n  - _self_\na: 1\n", "a: 1\nb: ${a}\n", "# @package foo\na: 1\n", "hydra:\n  job: {}\n")
    for text in not_plain:
        (conf / "config.yaml").write_text(text)
        assert plain_config(hydraconfig.config_files(conf), "config") is None, text
    (conf / "config.yaml").write_text("a: 1\n")
    (conf / "other.yaml").write_text("b: 2\n")  # another file a defaults list could name
    assert plain_config(hydraconfig.config_files(conf), "config") is None


def test_a_plain_config_is_composed_without_importing_hydra(tmp_path: Path) -> None:
    """Hydra's import (0.15-0.2 s) is what the plain path saves; a fresh interpreter shows whether it did."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("train:\n  lr: 0.1\n")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelspec.resolve.hydraconfig import compose\n"
        f"assert compose(Path({str(conf)!r}), 'config', []) == {{'train': {{'lr': 0.1}}}}\n"
        "print(sorted(m for m in sys.modules if m == 'hydra' or m.startswith('hydra.')))\n"
    )
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "[]", plain.stdout
    (conf / "config.yaml").write_text("defaults:\n  - _self_\ntrain:\n  lr: 0.1\n")  # Hydra's to compose
    composed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "'hydra'" in composed.stdout
