"""Where a remote keeps its bytes: named blobs in an S3 bucket (through obstore) or in a
shared directory (`file://`). The remote store and its action cache are written against
`Blobs`, so both kinds of remote keep the same layout and the same promises:

- `create` stores a blob only if its name is free (S3's `If-None-Match: *`; a hard link
  in a directory), all at once: nobody sees half a blob, and nothing is overwritten;
- `replace` is for the few mutable documents (a workspace's roots), written whole;
- a missing blob is `None` (or skipped), never an exception the caller must guess at;
- every other failure is a `StoreError` naming the remote and what to do.

obstore retries 5xx, SlowDown and dropped connections with exponential backoff itself;
what still fails after that is reported, once, with the remote's URL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from ..errors import StoreError, UsageError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    name: str
    size: int
    modified: float  # seconds since the epoch
    tag: str = ""  # which bytes the name holds now: S3's ETag; a file's inode and mtime


class Blobs(Protocol):
    url: str

    def create(self, name: str, data: bytes | Path) -> bool:
        """Store the bytes (or the file's) under `name` if it is free; False if it was taken."""
        ...

    def replace(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes | None: ...

    def get_range(self, name: str, start: int, end: int) -> bytes | None: ...

    def download(self, name: str, dest: Path) -> bool:
        """Write the blob's bytes to `dest` (streamed); False if there is no such blob."""
        ...

    def head(self, name: str) -> BlobInfo | None: ...

    def scan(self, prefix: str) -> Iterator[BlobInfo]:
        """Every blob whose name starts with `prefix` (a folder, ending in '/'), streamed."""
        ...

    def delete(self, names: list[str]) -> None: ...

    def clean_temp(self, older_than: float) -> int:
        """Remove scratch a killed writer left (modified before `older_than`); how many."""
        ...


@dataclass(frozen=True)
class RemoteConfig:
    """The workspace file's `remote:` (a URL, or a mapping with `url` and `endpoint`)."""

    url: str
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None  # an AWS profile of the shared credentials and config files

    @classmethod
    def from_setting(cls, setting: object) -> RemoteConfig | None:
        if setting is None:
            return None
        if isinstance(setting, str):
            return cls(setting)
        assert isinstance(setting, dict)  # the workspace schema allows nothing else
        return cls(str(setting["url"]), setting.get("endpoint"), setting.get("region"), setting.get("profile"))


# Above this many names, one listing costs less than a HEAD request each.
HEAD_AT_MOST = 32


def set_aside(blobs: Blobs, name: str, to: str) -> None:
    """Take blob `name` out of service, its bytes kept at `to` for whoever looks into it."""
    data = blobs.get(name)
    if data is not None:
        blobs.replace(to, data)
    blobs.delete([name])


def open_blobs(config: RemoteConfig) -> Blobs:
    parsed = urlparse(config.url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"remote {config.url}: a file:// URL names a local path (file:///dir)")
        return FileBlobs(Path(parsed.path), config.url)
    if parsed.scheme == "s3":
        return S3Blobs(parsed.netloc, parsed.path.strip("/"), config)
    raise UsageError(
        f"remote {config.url}: unknown kind of remote",
        hint="use s3://bucket/prefix (with endpoint: for a service other than AWS) or file:///shared/dir",
    )


# -- a shared directory ---------------------------------------------------------------


class FileBlobs:
    """Blobs as files under a directory, e.g. on NFS. A blob is written to a temp file in
    `tmp/`, fsynced, then hard-linked to its name: `link` fails if the name is taken, so
    create is atomic and never overwrites, even between machines."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.tmp = root / "tmp"

    def _path(self, name: str) -> Path:
        return self.root / name

    def _temp(self, data: bytes | Path) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        temp = self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}"
        if isinstance(data, Path):
            with open(data, "rb") as src, open(temp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        else:
            with open(temp, "wb") as dst:
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
        os.chmod(temp, 0o444)  # a blob is never changed in place (replace renames a new one in)
        return temp

    def create(self, name: str, data: bytes | Path) -> bool:
        target = self._path(name)
        temp = self._wrap(lambda: self._temp(data))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(temp, target)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error(exc) from None
        finally:
            temp.unlink(missing_ok=True)

    def replace(self, name: str, data: bytes) -> None:
        target = self._path(name)
        temp = self._wrap(lambda: self._temp(data))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise self._error(exc) from None

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._error(exc) from None

    def get_range(self, name: str, start: int, end: int) -> bytes | None:
        try:
            with open(self._path(name), "rb") as f:
                f.seek(start)
                return f.read(end - start)
        except FileNotFoundError:
            return None

    def download(self, name: str, dest: Path) -> bool:
        try:
            with open(self._path(name), "rb") as src, open(dest, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            return True
        except FileNotFoundError:
            return False

    def head(self, name: str) -> BlobInfo | None:
        try:
            info = self._path(name).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(name, info.st_size, info.st_mtime, _file_tag(info))

    def scan(self, prefix: str) -> Iterator[BlobInfo]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for file in sorted(files):
                path = Path(folder) / file
                with contextlib.suppress(FileNotFoundError):
                    info = path.stat()
                    yield BlobInfo(str(path.relative_to(self.root)), info.st_size, info.st_mtime, _file_tag(info))

    def delete(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self._path(name).unlink()

    def clean_temp(self, older_than: float) -> int:
        removed = 0
        for info in self.scan("tmp/"):
            if info.modified < older_than:
                with contextlib.suppress(FileNotFoundError):
                    self._path(info.name).unlink()
                    removed += 1
        return removed

    def _wrap(self, make: Callable[[], T]) -> T:
        try:
            return make()
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> StoreError:
        return StoreError(
            f"remote {self.url}: {exc.strerror or exc}: {exc.filename or ''}",
            hint="check that the shared directory is mounted and writable",
        )


def _file_tag(info: os.stat_result) -> str:
    """A blob file's identity: create and replace link or rename a new file in, so a blob
    written again has another inode or mtime."""
    return f"{info.st_ino}:{info.st_mtime_ns}"


# -- S3 through obstore ---------------------------------------------------------------


def _obstore() -> Any:
    try:
        import obstore
    except ImportError:
        raise UsageError(
            "an s3:// remote needs obstore, which is not installed",
            hint="pip install 'modelspec[s3]'",
        ) from None
    return obstore


class S3Blobs:
    """Blobs in an S3 bucket (any S3-compatible service), credentials from the usual AWS
    variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION) or
    an AWS profile (the remote's `profile:`, AWS_PROFILE, or `default`: awsprofile.py)."""

    def __init__(self, bucket: str, prefix: str, config: RemoteConfig) -> None:
        obstore = _obstore()
        from obstore.store import S3Store

        self.ob = obstore
        self.url = config.url
        # A request that makes no progress for this long is retried (a stalled connection).
        timeout = float(os.environ.get("MODELSPEC_REMOTE_TIMEOUT", "600"))
        options: Any = {"connect_timeout": timedelta(seconds=10), "timeout": timedelta(seconds=timeout)}
        kwargs: dict[str, Any] = {}
        if config.endpoint:
            kwargs["endpoint"] = config.endpoint
            options["allow_http"] = config.endpoint.startswith("http://")
        from .awsprofile import profile_settings  # only an s3:// remote reads AWS's files

        profile = profile_settings(config.profile)
        region = config.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        kwargs["region"] = region or profile.pop("region", None) or "us-east-1"
        profile.pop("region", None)
        kwargs.update(profile)
        retry: Any = {
            "max_retries": int(os.environ.get("MODELSPEC_REMOTE_RETRIES", "8")),
            "retry_timeout": timedelta(seconds=float(os.environ.get("MODELSPEC_REMOTE_RETRY_SECONDS", "120"))),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=10), "base": 2},
        }
        try:
            self.s3 = S3Store(bucket, prefix=prefix or None, client_options=options, retry_config=retry, **kwargs)
        except Exception as exc:
            raise UsageError(f"remote {self.url}: {_first_line(exc)}") from None

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except FileNotFoundError:
            raise
        except self.ob.exceptions.AlreadyExistsError:
            raise
        except self.ob.exceptions.BaseError as exc:
            raise StoreError(
                f"remote {self.url}: {what} failed: {_first_line(exc)}",
                hint="check the endpoint, the bucket and the AWS credentials (AWS_ACCESS_KEY_ID, ...); "
                "the command can be run again: what arrived stays",
            ) from None
        except OSError as exc:  # connection refused, reset, timed out after the retries
            raise StoreError(
                f"remote {self.url}: {what} failed: {_first_line(exc)}",
                hint="is the remote reachable? run the command again: what arrived stays",
            ) from None

    def create(self, name: str, data: bytes | Path) -> bool:
        try:
            self._call(f"uploading {name}", lambda: self.ob.put(self.s3, name, data, mode="create"))
        except (self.ob.exceptions.AlreadyExistsError, self.ob.exceptions.PreconditionError):
            return False
        return True

    def replace(self, name: str, data: bytes) -> None:
        self._call(f"uploading {name}", lambda: self.ob.put(self.s3, name, data, mode="overwrite"))

    def get(self, name: str) -> bytes | None:
        try:
            return bytes(self._call(f"downloading {name}", lambda: self.ob.get(self.s3, name).bytes()))
        except FileNotFoundError:
            return None

    def get_range(self, name: str, start: int, end: int) -> bytes | None:
        try:
            return bytes(
                self._call(f"downloading {name}", lambda: self.ob.get_range(self.s3, name, start=start, end=end))
            )
        except FileNotFoundError:
            return None

    def download(self, name: str, dest: Path) -> bool:
        def stream() -> None:
            result = self.ob.get(self.s3, name)
            with open(dest, "wb") as f:
                for chunk in result.stream(min_chunk_size=1 << 20):
                    f.write(chunk)

        try:
            self._call(f"downloading {name}", stream)
        except FileNotFoundError:
            return False
        return True

    def head(self, name: str) -> BlobInfo | None:
        try:
            meta = self._call(f"looking up {name}", lambda: self.ob.head(self.s3, name))
        except FileNotFoundError:
            return None
        return _info(meta)

    def scan(self, prefix: str) -> Iterator[BlobInfo]:
        stream = self._call(f"listing {prefix}", lambda: self.ob.list(self.s3, prefix.rstrip("/"), chunk_size=1000))
        while True:
            try:
                chunk = self._call(f"listing {prefix}", lambda: next(stream, None))
            except FileNotFoundError:
                return
            if chunk is None:
                return
            for meta in chunk:
                yield _info(meta)

    def delete(self, names: list[str]) -> None:
        for start in range(0, len(names), 1000):  # one request deletes at most 1000 keys
            self._delete(names[start : start + 1000])

    def clean_temp(self, older_than: float) -> int:
        return 0  # a create is one PUT: S3 keeps nothing of one that was cut off

    def _delete(self, batch: list[str]) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("deleting", lambda: self.ob.delete(self.s3, batch))


def _info(meta: Any) -> BlobInfo:
    return BlobInfo(meta["path"], meta["size"], meta["last_modified"].timestamp(), meta.get("e_tag") or "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def now() -> float:
    return time.time()
