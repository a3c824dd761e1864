"""The quality of versions, on top of the catalog: quality gates judged again (`modelspec
gate`), metrics over versions (`modelspec metrics`). Values in, values out; nothing prints."""

from __future__ import annotations

from pathlib import Path

from .catalog import Catalog
from .errors import UsageError
from .registry.gates import GateVerdict
from .spec.gates import Gate


def judge_gates(catalog: Catalog, ref: str, spec_path: Path | None = None) -> GateVerdict:
    """Judge REF's gates again against the baselines' current metrics and record the verdict:
    the gates of `spec_path`, else those REF was last judged by."""
    version = catalog.resolve(ref).version
    if spec_path is not None:
        from .spec.load import load_spec

        spec = load_spec(spec_path)
        if spec.name != version.name:
            raise UsageError(f"{spec.shown} is the spec of {spec.name}, not of {version.name}")
        if not spec.gates:
            raise UsageError(f"{spec.shown} has no gates", hint="add gates: to the spec (see README, Quality gates)")
        return catalog.registry.judge_gates(version, spec.gates, catalog.actor, always=True)
    found = catalog.registry.gate_verdicts([version.id]).get(version.id)
    if found is not None and found["details"].get("results"):
        gates = [Gate.from_dict(r["gate"]) for r in found["details"]["results"]]
        return catalog.registry.judge_gates(version, gates, catalog.actor, always=True)
    raise UsageError(
        f"{version.ref} was never judged by quality gates",
        hint=f"name the spec whose gates to use: modelspec gate {ref} --spec specs/{version.name}.yaml",
    )
