"""`modelspec init`: the workspace file with every setting's default, commented, and the
`.gitignore` lines for what modelspec writes into a repository.

The settings below are every key of `workspace.schema.json` (a test checks that), with the
default the code applies, or an example where there is none. Each is written commented
out, so the file changes nothing until a line is uncommented; uncommented, every line is
valid, so the file doubles as the reference of the workspace settings.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .retention.schedule import DEFAULT_SCHEDULE
from .sandbox.limits import DEFAULTS as LIMIT_DEFAULTS
from .spec.schema import WORKSPACE_FILE
from .store.workspace import CHECKOUT_DIR, STORE_DIR

GITIGNORE = ".gitignore"
_COMMENT_COLUMN = 36


@dataclass(frozen=True)
class Setting:
    """One line of the workspace file: a dotted key, its value, and what it means.
    `value` None makes a section header (`retention:`)."""

    key: str
    value: Any
    note: str


SETTINGS = (
    Setting("store", STORE_DIR, "the store, relative to this file (MODELSPEC_HOME overrides it)"),
    Setting(
        "registry",
        "postgresql+psycopg://modelspec@db.internal:5432/modelspec",
        "example: a team registry (pip install 'modelspec[postgres]'); default: SQLite in the store",
    ),
    Setting("remote", None, "example; default: none. A team's shared store and action cache"),
    Setting("remote.url", "s3://team-models/modelspec", "or file:///shared/dir; AWS_* variables give credentials"),
    Setting("remote.endpoint", "https://s3.example.com", "example; an S3-compatible service other than AWS"),
    Setting("remote.region", "us-east-1", "example; default: AWS_REGION, else us-east-1"),
    Setting("remote.profile", "team", "example; an AWS profile (~/.aws/credentials); default: AWS_PROFILE"),
    Setting(
        "executor",
        "dask://scheduler.internal:8786",
        "example: stages run on a Dask cluster (pip install 'modelspec[dask]'; needs a remote); default: local",
    ),
    Setting("retention", None, "defaults for every spec; a spec's own rules win, rule by rule"),
    Setting("retention.keep_last", 10, "example; no default (nothing is retired without a rule)"),
    Setting("retention.keep_best", {"metric": "auc", "count": 2, "direction": "max"}, "example; no default"),
    Setting("retention.max_age", "90d", "example; no default (s, m, h, d or w)"),
    Setting("retention.keep_aliased", True, "keep every alias's previous target (for rollback)"),
    Setting("retention.min_keep", 0, "keep at least the M newest, whatever else happens"),
    Setting("retention.schedule", DEFAULT_SCHEDULE, "cron: when the installed timer or `modelspec daemon` runs gc"),
    Setting("retention.grace", "1h", "objects younger than this are never swept"),
    Setting("trusted_keys", {}, "public keys whose signatures verify accepts (`modelspec keys trust` adds them)"),
    Setting("limits", None, "defaults for every stage; a stage's own timeout and limits win"),
    Setting("limits.timeout", LIMIT_DEFAULTS["timeout"], "wall time of a stage"),
    Setting("limits.memory", "16G", "example; no default (no memory limit)"),
    Setting("limits.processes", LIMIT_DEFAULTS["processes"], "processes a stage may run at once"),
    Setting("limits.tmp", LIMIT_DEFAULTS["tmp"], "size of the sandbox's /tmp (memory)"),
)

HEADER = """\
# The modelspec workspace file, written by `modelspec init`. Commit it.
#
# Every setting is optional. Each commented line below shows a setting with its default,
# or an example where it has none: uncomment a line (and its section) to change it.
# Check the file with `modelspec validate modelspec.yaml`.
"""


def workspace_text() -> str:
    """The workspace file `init` writes: every setting, commented out."""
    lines = [HEADER.rstrip("\n")]
    for setting in SETTINGS:
        depth = setting.key.count(".")
        name = setting.key.rsplit(".", 1)[-1]
        body = "  " * depth + (f"{name}:" if setting.value is None else f"{name}: {_yaml_value(setting.value)}")
        if depth == 0:
            lines.append("")
        setting_line = f"# {body}"
        lines.append(setting_line.ljust(max(_COMMENT_COLUMN, len(setting_line) + 2)) + f"# {setting.note}")
    return "\n".join(lines) + "\n"


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    plain = isinstance(value, int) or all(c.isalnum() or c in "._/-" for c in text)
    return text if plain else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class InitReport:
    root: Path
    workspace_file: Path
    gitignore: Path
    ignored: tuple[str, ...]  # the lines .gitignore now has for modelspec
    added: tuple[str, ...]  # of those, the ones this run appended
    overwritten: bool

    @property
    def to_commit(self) -> list[Path]:
        return [self.workspace_file, self.gitignore]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "workspace_file": str(self.workspace_file),
            "overwritten": self.overwritten,
            "gitignore": str(self.gitignore),
            "ignored": list(self.ignored),
            "added": list(self.added),
            "commit": [str(p) for p in self.to_commit],
        }


def init_root(start: Path) -> Path:
    """Where `init` writes: the nearest directory, from `start` up, that is a workspace
    (holds modelspec.yaml or .modelspec/) or the top of a git repository. Outside every git
    repository there is nothing a workspace could build (specs name code at a commit): refused."""
    start = Path(os.path.abspath(start))
    if not any((candidate / ".git").exists() for candidate in (start, *start.parents)):
        raise UsageError(
            f"not in a git repository: {start}",
            hint="a workspace is a git repository (specs name their code at a commit): run `git init` first, "
            "or run `modelspec init` inside your repository",
        )
    for candidate in (start, *start.parents):
        if any((candidate / marker).exists() for marker in (WORKSPACE_FILE, STORE_DIR, ".git")):
            return candidate
    return start


def init_workspace(root: Path, *, force: bool = False) -> InitReport:
    """Write `root/modelspec.yaml` and add modelspec's lines to `root/.gitignore`."""
    target = root / WORKSPACE_FILE
    existed = target.exists()
    if existed and not force:
        raise UsageError(
            f"{target} already exists",
            hint="keep it (`modelspec validate modelspec.yaml` checks it), or run `modelspec init --force` "
            "to replace it with the commented defaults",
        )
    ignored = gitignore_lines(root)
    gitignore = root / GITIGNORE
    current = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    present = {_normal(line) for line in current.splitlines()}
    added = tuple(line for line in ignored if _normal(line) not in present)
    _write(target, workspace_text().encode())
    if added:
        text = current + ("\n" if current and not current.endswith("\n") else "")
        text += ("\n" if current.strip() else "") + "# modelspec: the store, checkouts and generated spec locks\n"
        _write(gitignore, (text + "\n".join(added) + "\n").encode())
    return InitReport(root, target, gitignore, ignored, added, existed)


def gitignore_lines(root: Path) -> tuple[str, ...]:
    """The store, the checkout directory and the lock file `lock`/`build` write beside each
    spec (`specs/fraud.yaml` → `specs/fraud.lock`). Environment locks (`requirements.lock`)
    are inputs and must stay committed, so a directory holding any `.lock` file that is not
    a spec's lock gets one line per spec instead of a pattern."""
    lines = [f"/{STORE_DIR}/", f"/{CHECKOUT_DIR}/"]
    specs = _spec_files(root)
    folders = sorted({spec.parent for spec in specs} | {root / "specs"})
    for folder in folders:
        prefix = "/" + folder.relative_to(root).as_posix() + "/" if folder != root else "/"
        spec_locks = {spec.with_suffix(".lock").name for spec in specs if spec.parent == folder}
        others = [p for p in folder.glob("*.lock") if p.name not in spec_locks] if folder.is_dir() else []
        if others:
            lines += [prefix + name for name in sorted(spec_locks)]
        else:
            lines.append(prefix + "*.lock")
    return tuple(dict.fromkeys(lines))


def _spec_files(root: Path) -> list[Path]:
    """The spec files of the repository (YAML files with a top-level `modelspec:` key),
    tracked or not; only a git repository is searched (a data directory can be huge)."""
    if not (root / ".git").exists():
        return []
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.yaml", "*.yml"],
        capture_output=True,
    )
    if listed.returncode != 0:
        return []
    specs = []
    for name in filter(None, listed.stdout.decode(errors="replace").split("\0")):
        path = root / name
        if path.name != WORKSPACE_FILE and _is_spec(path):
            specs.append(path)
    return specs


def _is_spec(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return any(line.startswith(b"modelspec:") for line in head.splitlines())


def _normal(line: str) -> str:
    """A .gitignore line as compared for duplicates: `.modelspec/` and `/.modelspec/` are one."""
    return line.strip().lstrip("/")


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all, keeping an existing file's mode (a new one gets the umask's)."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
