"""Validation of spec documents against `schemas/spec.schema.json`, and of the workspace
file against `schemas/workspace.schema.json`, as located problems."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ..errors import Problem, did_you_mean
from .yamlsource import Document

_MAX_SHOWN = 60  # characters of an offending value quoted in a message

WORKSPACE_FILE = "modelspec.yaml"  # the workspace file at a workspace root, beside .modelspec/


@functools.cache
def spec_schema_bytes() -> bytes:
    return resources.files("modelspec").joinpath("spec.schema.json").read_bytes()


@functools.cache
def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(spec_schema_bytes())
    return schema


@functools.cache
def workspace_schema_bytes() -> bytes:
    return resources.files("modelspec").joinpath("workspace.schema.json").read_bytes()


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(spec_schema())


@functools.cache
def _workspace_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_with_spec_refs(json.loads(workspace_schema_bytes())))


def _with_spec_refs(node: Any) -> Any:
    """The workspace schema with its references into the spec schema (the retention
    rules, shared by both files) replaced by what they point at."""
    prefix = f"{spec_schema()['$id']}#/"
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(prefix):
            target: Any = spec_schema()
            for part in reference.removeprefix(prefix).split("/"):
                target = target[part]
            return target
        return {key: _with_spec_refs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_spec_refs(item) for item in node]
    return node


def validate(document: Document) -> list[Problem]:
    """Every schema violation of the spec, each pointing at the offending line."""
    return _problems(_validator(), document)


def validate_workspace(document: Document) -> list[Problem]:
    """Every schema violation of the workspace file, each pointing at the offending line."""
    return _problems(_workspace_validator(), document)


def _problems(validator: Any, document: Document) -> list[Problem]:
    problems: list[Problem] = []
    for error in validator.iter_errors(document.data):
        problems.extend(p for p in _problems_of(error, document) if p not in problems)
    return problems


def _problems_of(error: Any, document: Document) -> list[Problem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        return [
            document.problem((*path, key), f"unknown key {key!r}{_suggest(key, allowed)}", key=True)
            for key in error.instance
            if key not in allowed
        ]
    if "propertyNames" in error.relative_schema_path:
        key = error.instance
        message = _custom(error) or error.message
        return [document.problem((*path, key), f"key {key!r} {message}", key=True)]
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [document.problem(path, f"missing required key {missing!r}")]
    custom = _custom(error)
    if custom:  # a mapping is not quoted back: the location already shows which one
        shown = "" if isinstance(error.instance, dict) else f"{_shown(error.instance)} "
        return [document.problem(path, f"{shown}{custom}")]
    if kind == "const":
        return [document.problem(path, f"must be {error.validator_value!r}")]
    if kind == "enum":
        choices = ", ".join(map(str, error.validator_value))
        return [document.problem(path, f"{_shown(error.instance)} is not one of: {choices}")]
    if kind == "type":
        return [document.problem(path, f"{_shown(error.instance)} is not of type {error.validator_value}")]
    return [document.problem(path, error.message)]


def _custom(error: Any) -> str:
    """The schema's own wording for a failed pattern or oneOf (`x-error`), if it has one."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    message = schema.get("x-error")
    return str(message) if message else ""


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _suggest(key: str, allowed: set[str]) -> str:
    return did_you_mean(key, allowed) or f"; allowed: {', '.join(sorted(allowed))}"
