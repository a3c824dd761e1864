"""The spec schema: a valid, documented Draft 2020-12 schema, and its located problems."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from modelspec.spec.schema import spec_schema, spec_schema_bytes, validate
from modelspec.spec.yamlsource import Document, load_document, parse_document

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schemas" / "spec.schema.json"

VALID: dict[str, Any] = {
    "modelspec": 1,
    "name": "demo",
    "version": "1.0",
    "data": {"raw": {"path": "data/raw.csv"}},
    "stages": {
        "train": {
            "cmd": "python train.py ${inputs.raw} ${outputs.model}",
            "inputs": ["raw"],
            "outputs": {"model": "model.pkl"},
        }
    },
    "artifacts": ["train.model"],
}


def errors_of(data: Any) -> list[str]:
    return [p.message for p in validate(Document("s.yaml", data))]


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return data


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_bytes())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_packaged_schema_is_the_published_one() -> None:
    assert spec_schema_bytes() == SCHEMA_FILE.read_bytes()
    assert spec_schema() == json.loads(SCHEMA_FILE.read_bytes())


def test_every_field_is_documented() -> None:
    schema = spec_schema()
    defs = schema["$defs"]

    def documented(node: dict[str, Any]) -> bool:
        target = defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else {}
        return "description" in node or "description" in target

    def walk(properties: dict[str, Any], where: str) -> list[str]:
        missing = []
        for name, node in properties.items():
            if not documented(node):
                missing.append(where + name)
            missing += walk(node.get("properties", {}), f"{where}{name}.")
        return missing

    missing = walk(schema["properties"], "")
    for name in ("stage", "dataSource", "retention"):
        missing += walk(defs[name]["properties"], f"$defs.{name}.")
    assert missing == []


def test_example_spec_validates() -> None:
    document = load_document(ROOT / "specs" / "fraud.yaml", "specs/fraud.yaml")
    assert validate(document) == []


def test_minimal_spec_validates() -> None:
    assert errors_of(VALID) == []


def test_hermetic_enum_matches_the_command_line_choices() -> None:
    """`--hermetic` of `build` and `plan` offers exactly the policies a spec may write."""
    import click

    from modelspec.cli import main

    modes = spec_schema()["properties"]["hermetic"]["enum"]
    assert modes == ["strict", "auto", "off"]
    for name in ("build", "plan"):
        command = main.commands[name]
        option = next(p for p in command.params if p.name == "hermetic")
        assert isinstance(option.type, click.Choice)
        assert list(option.type.choices) == modes


@pytest.mark.parametrize("value", ["data/raw.csv", "a", "a/b/c.txt", "..hidden", "x..y", "./a"])
def test_relative_paths_accepted(value: str) -> None:
    assert errors_of(with_value(("data", "raw", "path"), value)) == []


@pytest.mark.parametrize(
    "value", ["/etc/passwd", "..", "../x", "a/../b", "a/..", "a\\b", "", "a\x00b"]
)
def test_relative_paths_refused(value: str) -> None:
    (message,) = errors_of(with_value(("data", "raw", "path"), value))
    assert "must be a relative path inside the repository" in message


@pytest.mark.parametrize("value", ["1.0", "0.1", "1.3.2", "10.20.30", "0.0.0"])
def test_versions_accepted(value: str) -> None:
    assert errors_of(with_value(("version",), value)) == []


@pytest.mark.parametrize("value", ["1", "01.2", "1.02", "1.2.3.4", "v1.2", "1.2-rc1", 1.3, 2])
def test_versions_refused(value: object) -> None:
    (message,) = errors_of(with_value(("version",), value))
    assert 'must be a quoted "MAJOR.MINOR"' in message


@pytest.mark.parametrize("value", ["features", "baseline@^2.0", "baseline@>=1.2, <2", "a-b_c@~1.4"])
def test_spec_references_accepted(value: str) -> None:
    data = with_value(("data", "raw"), {"spec": value, "output": "train.model"})
    assert errors_of(data) == []


@pytest.mark.parametrize(
    "source",
    [
        {"path": "a.csv", "spec": "features", "output": "table"},
        {"spec": "features"},
        {"output": "table"},
        {"path": "a.csv", "output": "table"},
        {},
    ],
)
def test_data_source_is_a_path_or_a_spec_output(source: dict[str, str]) -> None:
    (message,) = errors_of(with_value(("data", "raw"), source))
    assert message.startswith("give either `path`")


@pytest.mark.parametrize(
    ("environment", "ok"),
    [
        ({"python": "3.11", "lock": "requirements.lock"}, True),
        ({"nix": "env.nix"}, True),
        ({"python": "3.11", "lock": "requirements.lock", "nix": "env.nix"}, False),
        ({"lock": "requirements.lock"}, False),
        ({"python": "3.11"}, False),
        ({"python": "3.11", "nix": "env.nix"}, False),
    ],
)
def test_environment_is_a_lock_or_nix(environment: dict[str, str], ok: bool) -> None:
    messages = errors_of(with_value(("environment",), environment))
    assert messages == [] if ok else messages and "give either `python` and `lock`" in messages[0]


@pytest.mark.parametrize(("value", "ok"), [("90d", True), ("12h", True), ("2w", True),
                                           ("90", False), ("3 months", False), ("1y", False)])
def test_retention_max_age(value: str, ok: bool) -> None:
    messages = errors_of(with_value(("retention",), {"max_age": value}))
    assert messages == ([] if ok else [f"{value!r} must be a duration such as 90d, 12h or 2w"])


def test_unknown_keys_suggest_the_closest_allowed_one() -> None:
    document = parse_document(b"modelspec: 1\nname: demo\nversion: '1.0'\nstagse: {}\n"
                              b"artifacts: [a.b]\n", "s.yaml")
    problems = validate(document)
    messages = [p.message for p in problems]
    assert "unknown key 'stagse'; did you mean 'stages'?" in messages
    assert "missing required key 'stages'" in messages
    unknown = next(p for p in problems if "stagse" in p.message)
    assert (unknown.location.line, unknown.location.column) == (4, 1)


def test_unknown_key_without_close_match_lists_allowed_keys() -> None:
    (message,) = errors_of(with_value(("retention",), {"zzz": 1}))
    assert message.startswith("unknown key 'zzz'; allowed: keep_aliased, keep_best, keep_last")


def test_problems_point_at_the_offending_value() -> None:
    document = parse_document(
        b"modelspec: 1\nname: demo\nversion: '1.0'\nhermetic: maybe\nstages:\n  t:\n"
        b"    cmd: x\n    outputs: {m: /abs}\nartifacts: [t.m]\n",
        "s.yaml",
    )
    located = {(p.yaml_path, p.location.line, p.location.column): p.message
               for p in validate(document)}
    assert located == {
        ("hermetic", 4, 11): "'maybe' is not one of: strict, auto, off",
        ("stages.t.outputs.m", 8, 18):
            "'/abs' must be a relative path inside the repository "
            "(no leading '/', no '..', no backslashes or control characters)",
    }


def test_wrong_types_are_named() -> None:
    assert errors_of(with_value(("modelspec",), 2)) == ["must be 1"]
    assert errors_of(with_value(("artifacts",), "train.model")) == [
        "'train.model' is not of type array"
    ]
    assert errors_of(with_value(("stages", "train", "shell"), "yes")) == [
        "'yes' is not of type boolean"
    ]


def test_invalid_names_of_stages_and_data() -> None:
    data = copy.deepcopy(VALID)
    data["stages"]["bad name"] = data["stages"].pop("train")
    (message,) = errors_of(data)
    assert message.startswith("key 'bad name' must be a name of letters")


def test_the_same_problem_is_reported_once() -> None:
    assert len(errors_of(with_value(("data", "raw"), "data/raw.csv"))) == 1
