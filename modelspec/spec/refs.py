"""Model references and version numbers; pure functions, no registry access.

fraud@1.3.2      an exact version          fraud@latest      the newest version
fraud@1.3        the latest 1.3.x          fraud@production  an alias
fraud@3f2a9c     a content-id prefix       baseline@^2.0     a range (in spec data)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

_NAME = r"[a-z][a-z0-9_-]{0,63}"
_REF = re.compile(rf"^(?P<name>{_NAME})(@(?P<selector>[A-Za-z0-9_.^~<>=!, -]+))?$")
# At most 18 digits a number: the registry stores each as a 64-bit integer.
_VERSION = re.compile(r"^(0|[1-9]\d{0,17})\.(0|[1-9]\d{0,17})(?:\.(0|[1-9]\d{0,17}))?$")
MIN_PREFIX = 4  # hex digits of a content-id prefix: fewer would match too many versions
_HEX = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},64}}$")
_SHORT_HEX = re.compile(rf"^[0-9a-f]{{1,{MIN_PREFIX - 1}}}$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference. `kind` is one of: version, minor, latest, alias, content."""

    name: str
    kind: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.name}@{self.value or self.kind}"


def parse_version(text: str) -> tuple[int, int, int | None]:
    """`1.3` → (1, 3, None); `1.3.2` → (1, 3, 2)."""
    match = _VERSION.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not a version (MAJOR.MINOR or MAJOR.MINOR.PATCH, each at most 18 digits)")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch) if patch is not None else None


def parse_ref(text: str) -> Ref:
    match = _REF.match(text)
    if match is None:
        raise UsageError(
            f"{text!r} is not a model reference",
            hint="write NAME@VERSION, NAME@1.3, NAME@latest, NAME@ALIAS or NAME@CONTENT-ID-PREFIX",
        )
    name, selector = match.group("name"), match.group("selector") or "latest"
    if selector == "latest":
        return Ref(name, "latest")
    if _VERSION.match(selector):
        patch = parse_version(selector)[2]
        return Ref(name, "version" if patch is not None else "minor", selector)
    if selector.startswith(f"{name}-") and _HEX.match(selector[len(name) + 1 :]):
        return Ref(name, "content", selector[len(name) + 1 :])  # the short form fraud-3f2a9c01be
    if re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", selector) and not _HEX.match(selector):
        return Ref(name, "alias", selector)
    if _HEX.match(selector):
        return Ref(name, "content", selector)  # an alias spelled like hex is looked up first, too
    short = selector.removeprefix(f"{name}-")
    if _SHORT_HEX.match(short):
        raise UsageError(
            f"{text!r}: a content-id prefix has at least {MIN_PREFIX} hex digits, {short!r} has {len(short)}",
            hint=f"give more digits of the content id (`modelspec versions {name}` shows them)",
        )
    raise UsageError(f"{text!r}: {selector!r} is neither a version, an alias nor a content-id prefix")


def too_short_prefix(ref: Ref) -> str:
    """The hex digits of a reference that names nothing but looks like a content-id prefix
    too short to be one (`fraud@abc`, `fraud-3f2`), else ''."""
    if ref.kind == "alias":
        digits = ref.value.removeprefix(f"{ref.name}-")
    elif ref.kind == "latest" and "-" in ref.name:
        digits = ref.name.rpartition("-")[2]
    else:
        return ""
    return digits if _SHORT_HEX.match(digits) else ""


def check_alias_name(name: str, alias: str) -> None:
    """An alias is named like a model (lowercase letters, digits, - and _, starting with a
    letter), and must not read as anything else a reference can say after `@`."""
    if not re.match(rf"^{_NAME}$", alias) or alias == "latest" or parse_ref(f"{name}@{alias}").kind != "alias":
        raise UsageError(
            f"{alias!r} cannot be an alias name",
            hint="use lowercase letters, digits, - and _, starting with a letter and not only hex digits "
            "(latest is taken), e.g. production or staging",
        )


_SHORT_FORM = re.compile(rf"^(?P<name>{_NAME})-(?P<hex>[0-9a-f]{{{MIN_PREFIX},64}})$")


def parse_short_form(text: str) -> Ref | None:
    """`fraud-3f2a9c01be`, as `versions` and `show` print a content id, else None.

    A bare `NAME-HEX` also reads as the model name `NAME-HEX`; the registry prefers a
    registered model of that name (see `Registry.resolve`)."""
    match = _SHORT_FORM.match(text)
    return Ref(match.group("name"), "content", match.group("hex")) if match else None


def short_content_id(name: str, content_id: str) -> str:
    """`fraud-3f2a9c01be`: the name and the first 10 hex digits."""
    return f"{name}-{content_id.removeprefix('blake3:')[:10]}"


def matches_range(version: tuple[int, int, int], spec: str) -> bool:
    """npm-style ranges: `^2.0`, `~1.3`, `1.3` (any 1.3.x), `1.3.2`, `>=1.2,<2.0`, `*`."""
    spec = spec.strip()
    if spec in ("*", "latest", ""):
        return True
    return all(_matches_one(version, part.strip()) for part in re.split(r"[ ,]+", spec) if part.strip())


def _matches_one(version: tuple[int, int, int], part: str) -> bool:
    operator = re.match(r"^(\^|~|>=|<=|>|<|==|=)?", part)
    op = operator.group(1) if operator else None
    text = part[len(op or "") :]
    major, minor, patch = parse_version(text)
    low = (major, minor, patch or 0)
    if op == "^":
        high = (major + 1, 0, 0) if major > 0 else (0, minor + 1, 0)
        return low <= version < high
    if op == "~" or (op in (None, "=", "==") and patch is None):
        return low <= version < (major, minor + 1, 0)
    comparisons = {
        None: version == low,
        "=": version == low,
        "==": version == low,
        ">=": version >= low,
        "<=": version <= low,
        ">": version > low,
        "<": version < low,
    }
    return comparisons[op]


_WHERE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<|=)\s*(-?[0-9.eE+-]+)\s*$")


def parse_where(text: str) -> list[tuple[str, str, float]]:
    """`auc>0.9, f1>=0.5` (or `and`) → [(metric, operator, value)]."""
    clauses = []
    for part in re.split(r",|\band\b", text):
        if not part.strip():
            continue
        match = _WHERE.match(part)
        if match is None:
            raise UsageError(f"cannot read the condition {part.strip()!r}", hint="write METRIC OP NUMBER, e.g. auc>0.9")
        metric, op, value = match.groups()
        try:
            clauses.append((metric, "==" if op == "=" else op, float(value)))
        except ValueError:
            raise UsageError(f"{value!r} in {part.strip()!r} is not a number") from None
    return clauses
