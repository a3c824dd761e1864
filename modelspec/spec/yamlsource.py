"""Safe YAML loading that remembers where every value came from.

Rejects what a plain `yaml.safe_load` silently accepts: duplicate keys, anchors and aliases
(the vehicle of "billion laughs" bombs), non-UTF-8 bytes, and documents too large or too
deep to be a hand-written spec.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ..errors import Location, Problem, SpecError

# Room for a generated spec of 10,000 stages (~2 MiB) and more; still a bound on what is read.
MAX_BYTES = 8 << 20
# LibYAML when installed: the pure-Python parser takes ~10x longer on a 1,000-stage spec.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 32

YamlPath = tuple[str | int, ...]


@dataclass
class Document:
    """A loaded YAML document plus the line and column of each value and mapping key.

    A document read from bytes that already passed every check (`parse_document(checked=True)`)
    keeps its `source` instead, and is located from it only if a problem needs a location."""

    file: str
    data: Any
    values: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    source: bytes | None = field(default=None, repr=False)

    def locate(self, path: YamlPath, *, key: bool = False) -> Location:
        """The location of `path`, or of its nearest located ancestor."""
        if self.source is not None:
            located = parse_document(self.source, self.file)
            self.values, self.keys, self.source = located.values, located.keys, None
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return Location(self.file, *table[probe])
            probe = probe[:-1]
        return Location(self.file, *self.values.get((), (1, 1)))

    def problem(self, path: YamlPath, message: str, *, key: bool = False) -> Problem:
        return Problem(self.locate(path, key=key), dotted(path), message)


def dotted(path: YamlPath) -> str:
    """`("stages", "train", "outputs")` → `stages.train.outputs`; list indices as `[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def load_document(path: Path, shown_as: str) -> Document:
    """Read and parse a YAML file; every problem is a located `SpecError`."""
    return parse_document(read_spec_bytes(path, shown_as), shown_as)


def read_spec_bytes(path: Path, shown_as: str) -> bytes:
    """A spec's or workspace file's bytes, at most `MAX_BYTES` of them."""
    return read_regular_file(path, shown_as, MAX_BYTES, "a spec")


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_regular_file(path: Path, shown_as: str, limit: int, what: str) -> bytes:
    """The bytes of a regular file, at most `limit` of them (more is a located error)."""
    try:
        handle = open_regular(path, shown_as)
    except FileNotFoundError:
        raise SpecError([Problem(Location(shown_as), "", "file not found")]) from None
    with handle:
        try:
            raw = handle.read(limit + 1)
        except OSError as exc:
            raise SpecError([Problem(Location(shown_as), "", f"cannot read: {exc.strerror}")]) from None
        size = max(os.fstat(handle.fileno()).st_size, len(raw))
    if len(raw) > limit:
        raise _fail(shown_as, 1, 1, f"file is {size} bytes; {what} may be at most {limit} bytes ({_size(limit)})")
    return raw


def open_regular(path: Path, shown_as: str) -> BinaryIO:
    """Open a regular file for reading, refusing anything else before reading a byte:
    `/dev/zero` would be read until memory runs out, a FIFO would block forever. O_NONBLOCK
    makes opening a FIFO return at once. A missing file raises FileNotFoundError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SpecError([Problem(Location(shown_as), "", f"cannot read: {exc.strerror}")]) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise SpecError([Problem(Location(shown_as), "", f"is not a regular file ({file_kind(mode)}); name a file")])
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    """What a non-regular file is, for a message."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count % (1 << 20) == 0 else f"{count} bytes"


def parse_document(raw: bytes, shown_as: str, *, checked: bool = False) -> Document:
    """The document in `raw`, every problem a located `SpecError`. `checked`: these exact
    bytes passed every check before (a spec's valid-specs marker says so), so the values are
    read in one pass of LibYAML, and located only if something later asks (about 3x faster
    on a 1,000-stage spec: no event pass, no node tree, no table of locations)."""
    if checked and _FAST_LOADER is not None:
        return Document(shown_as, yaml.load(raw.decode("utf-8"), Loader=_FAST_LOADER), source=raw)
    if len(raw) > MAX_BYTES:
        limit = f"{MAX_BYTES} bytes ({_size(MAX_BYTES)})"
        raise _fail(shown_as, 1, 1, f"file is {len(raw)} bytes; a spec may be at most {limit}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(shown_as, line, column, "not valid UTF-8; save the file as UTF-8") from None
    _check_events(text, shown_as)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _from_yaml_error(exc, shown_as, text) from None
    document = Document(shown_as, None)
    if node is None:
        document.values[()] = (1, 1)
        return document
    document.data = _convert(node, (), document, _Constructor())
    return document


def _check_events(text: str, shown_as: str) -> None:
    """Reject anchors, aliases, multiple documents and excessive nesting before composing."""
    depth = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            mark = event.start_mark
            assert mark is not None  # the parser marks every event
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _fail(
                    shown_as,
                    mark.line + 1,
                    mark.column + 1,
                    "YAML anchors and aliases are not allowed in a spec; write the value out",
                )
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(shown_as, mark.line + 1, mark.column + 1, "only one YAML document is allowed")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _fail(shown_as, mark.line + 1, mark.column + 1, f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        raise _from_yaml_error(exc, shown_as, text) from None


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")  # a collection's tag is ignored


class _Constructor(yaml.constructor.SafeConstructor):
    """Turns scalar nodes into Python values with YAML 1.1 core typing, except that only
    true/false are booleans: `hermetic: off` or a key `on:` stay strings (the Norway problem)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        is_bool = node.tag == "tag:yaml.org,2002:bool"
        if is_bool and str(node.value).lower() not in ("true", "false"):
            return str(node.value)
        return super().construct_object(node, deep)


def _construct_bool(loader: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> bool | str:
    """What `_Constructor` makes of a bool-tagged scalar: only true/false are booleans."""
    if str(node.value).lower() in ("true", "false"):
        return bool(loader.construct_yaml_bool(node))
    return str(node.value)


def _fast_loader() -> type | None:
    """A LibYAML loader that builds the same values as `_convert` (the checks it skips were
    passed already): `_Constructor`'s booleans, and a key that is not a string as its text."""
    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return None

    class FastLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[str, Any]:
            mapping: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=True)
                mapping[key if isinstance(key, str) else str(key_node.value)] = self.construct_object(
                    value_node, deep=True
                )
            return mapping

    FastLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
    return FastLoader


_FAST_LOADER = _fast_loader()


def _convert(node: yaml.Node, path: YamlPath, document: Document, constructor: _Constructor) -> Any:
    document.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise _fail(document.file, *document.values[path], f"the tag {node.tag} is not allowed in a spec")
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(
                    document.file,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    "mapping keys must be plain scalars",
                )
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(
                    document.file,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    "merge keys (<<) are not allowed in a spec",
                )
            key = _construct(key_node, document, constructor)
            key = key if isinstance(key, str) else str(key_node.value)  # `null:` → "null"
            child = (*path, key)
            if key in result:
                first = document.keys[child]
                raise _fail(
                    document.file,
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    f"{dotted(child)}: duplicate key (first defined on line {first[0]})",
                )
            document.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _convert(value_node, child, document, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), document, constructor) for i, item in enumerate(node.value)]
    return _construct(node, document, constructor)


def _construct(node: yaml.Node, document: Document, constructor: _Constructor) -> Any:
    """A scalar's value; one PyYAML cannot build (`2024-02-30`, `0x_`, `!!int many`) is located."""
    try:
        return constructor.construct_object(node)
    except yaml.constructor.ConstructorError as exc:
        raise _from_yaml_error(exc, document.file) from None
    except (ValueError, TypeError, AttributeError, OverflowError):
        mark = node.start_mark
        raise _fail(
            document.file, mark.line + 1, mark.column + 1, f"cannot read {node.value!r} as {node.tag}; quote it"
        ) from None


def _from_yaml_error(exc: yaml.YAMLError, shown_as: str, text: str = "") -> SpecError:
    """A located problem from any PyYAML error (a ReaderError carries a position, not a mark)."""
    if isinstance(exc, yaml.reader.ReaderError):
        position = int(exc.position)
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return _fail(shown_as, line, column, f"invalid YAML: the control character {code:#04x} is not allowed")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    return _fail(shown_as, line, column, f"invalid YAML: {problem}")


def _fail(file: str, line: int, column: int, message: str) -> SpecError:
    return SpecError([Problem(Location(file, line, column), "", message)])
