"""What the registry tells retention about a version, and how a retired version comes back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionFacts:
    """What retention looks at for one version."""

    id: int
    ref: str
    created: float
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # aliases pointing at it now
    previous_aliases: tuple[str, ...] = ()  # aliases that pointed at it before their last move
    pinned: bool = False


def revival_hint(ref: str, commit: str, spec: str) -> str:
    """What brings back the artifacts of a retired version: a build of the same inputs
    registers the same content id, which revives it (`reproduce` refuses retired versions)."""
    return (
        f"promote an active version instead (`modelspec versions {ref.split('@')[0]}` lists them), or rebuild "
        f"{ref}: check out its commit ({commit[:12]}) and run `modelspec build {spec or 'SPEC'}` with the params "
        f"`modelspec show {ref}` lists; a build of the same inputs revives the version"
    )
