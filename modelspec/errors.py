"""The one error hierarchy of modelspec; each error carries an exit code and a next step.

ModelspecError                 exit 1
├── SpecError                  exit 2  (one or more located problems in a spec)
├── UsageError                 exit 2  (a bad command-line argument or reference)
├── GitError                   exit 2  (a ref that does not resolve, a dirty tree)
├── EnvironmentBuildError      exit 1  (uv / nix could not materialize an environment)
├── SandboxUnavailableError    exit 1  (hermetic: strict without bubblewrap)
└── StoreError                 exit 1  (a missing or corrupt object, a full disk)
    └── CorruptObjectError     exit 1  (an object whose bytes no longer match; quarantined)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .text import plural


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file a problem is: path as shown to the user, 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True, slots=True)
class Problem:
    """One located mistake: `specs/fraud.yaml:14:5: stages.train.outputs: message`."""

    location: Location
    yaml_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.yaml_path}: " if self.yaml_path else ""
        return f"{self.location}: {where}{self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "path": self.yaml_path,
            "message": self.message,
        }


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest of `choices`, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(set(choices)), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class ModelspecError(Exception):
    """Base class. `hint` says what to do next; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint}


class SpecError(ModelspecError):
    """Every problem found in one or more spec files, reported together."""

    exit_code = 2

    def __init__(self, problems: list[Problem], hint: str = "") -> None:
        self.problems = sorted(problems, key=lambda p: (p.location.file, p.location.line, p.location.column))
        count = len(self.problems)
        head = f"{plural(count, 'problem')} found"
        super().__init__("\n".join([head, *map(str, self.problems)]), hint)

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "problems": [p.to_dict() for p in self.problems]}


class UsageError(ModelspecError):
    exit_code = 2


class GitError(ModelspecError):
    exit_code = 2


class EnvironmentBuildError(ModelspecError):
    pass


class SandboxUnavailableError(ModelspecError):
    pass


class StoreError(ModelspecError):
    pass


class CorruptObjectError(StoreError):
    """An object whose bytes no longer match its digest; it has been quarantined."""
