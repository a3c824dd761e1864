"""Placeholders in a shell script become environment variables, so no value is ever parsed.

Quoting a value into a script cannot work: the quoting it needs depends on where the
placeholder sits (`"${config.v}"` inside double quotes, `'${config.v}'` inside single ones),
and a value spliced into text the shell parses can always end its quotes and run `$(…)`.
Instead the script refers to a variable (`${config.p.v}` → `MS_CONFIG_P_V`) and the value is
put in the stage's environment; the shell expands a variable without parsing its value.

The reference is written for the quoting context of the placeholder, so that the value
arrives as exactly one word:

    unquoted          ${config.v}      →  "${MS_CONFIG_V}"
    "double quotes"   "a ${config.v}"  →  "a ${MS_CONFIG_V}"
    'single quotes'   'a ${config.v}'  →  'a '"${MS_CONFIG_V}"''

Where the context is misjudged (a here-document, say) the value may arrive with quotes
around it, but it is still only ever expanded, never executed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from ..digest import digest_bytes, hex_of
from ..spec.model import PLACEHOLDER

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"})
_NOT_NAME = re.compile(r"[^A-Za-z0-9]")
_WORD_START = frozenset(" \t\n;&|()")
# How to refer to a variable inside double quotes, inside single quotes, and anywhere else.
_REFERENCE = {"double": "${{{}}}", "single": "'\"${{{}}}\"'"}


def script_token(argv: Sequence[str], shell: bool) -> int | None:
    """The index of the token a shell will parse as a script, if any: `sh -c SCRIPT`,
    also with other options around `-c` (`bash -euo pipefail -c SCRIPT`, `sh -ec SCRIPT`)."""
    if shell:
        return len(argv) - 1
    if not argv or argv[0].rsplit("/", 1)[-1] not in SHELLS:
        return None
    command_string = False
    i = 1
    while i < len(argv):
        token = argv[i]
        if token in ("-o", "+o", "-O", "+O"):  # takes the next token as its argument
            i += 2
            continue
        if token == "--":
            return i + 1 if command_string and i + 1 < len(argv) else None
        if token.startswith("--"):
            i += 1
            continue
        if token[:1] in ("-", "+") and len(token) > 1:
            command_string = command_string or (token[0] == "-" and "c" in token[1:])
            i += 1
            continue
        return i if command_string else None
    return None


def variable_names(placeholders: Iterable[str]) -> dict[str, str]:
    """placeholder (`config.p.v`) → variable name (`MS_CONFIG_P_V`), deterministic. Two
    placeholders that would share a name (`config.a_b`, `config.a.b`) both get a suffix from
    their own digest."""
    names = sorted(set(placeholders))
    plain = {name: "MS_" + _NOT_NAME.sub("_", name).upper() for name in names}
    taken: dict[str, int] = {}
    for variable in plain.values():
        taken[variable] = taken.get(variable, 0) + 1
    return {
        name: variable if taken[variable] == 1 else f"{variable}_{hex_of(digest_bytes(name.encode()))[:8].upper()}"
        for name, variable in plain.items()
    }


# Every character that can open or close a quoting context, start a placeholder or a comment.
_SPECIAL = re.compile(r"[\\$\"'`()#]")


def reference_placeholders(script: str, variable: Callable[[str], str]) -> str:
    """`script` with each placeholder replaced by a reference to `variable(name)`, written for
    the placeholder's quoting context (see the module docstring)."""
    out: list[str] = []
    stack: list[str] = ["plain"]  # plain, paren (`$(…)`), backtick, double, single
    depth: list[int] = [0]  # open parentheses inside each `$(` frame
    i = 0
    while i < len(script):
        plain = _SPECIAL.search(script, i)  # what comes before the next special character is copied as it is
        stop = plain.start() if plain else len(script)
        if stop > i:
            out.append(script[i:stop])
            i = stop
            continue
        context = stack[-1]
        match = PLACEHOLDER.match(script, i)
        if match:
            if out and out[-1] == "\\" and context != "single":
                out.pop()  # `\${…}` is still a placeholder; the escape would only mangle the reference
            name = variable(match.group(1))
            out.append(_REFERENCE.get(context, '"${{{}}}"').format(name))
            i = match.end()
            continue
        char = script[i]
        out.append(char)
        i += 1
        if context == "single":
            if char == "'":
                stack.pop()
        elif char == "\\":
            if i < len(script) and not PLACEHOLDER.match(script, i):
                out.append(script[i])  # an escaped character opens and closes nothing
                i += 1
        elif char == '"':
            if context == "double":
                stack.pop()
            else:
                stack.append("double")
        elif char == "`":
            if context == "backtick":
                stack.pop()
            else:
                stack.append("backtick")
        elif char == "$" and script.startswith("(", i):
            out.append("(")
            i += 1
            stack.append("paren")
            depth.append(0)
        elif context == "double":
            pass
        elif char == "'":
            stack.append("single")
        elif char == "(" and context == "paren":
            depth[-1] += 1
        elif char == ")" and context == "paren":
            if depth[-1]:
                depth[-1] -= 1
            else:
                stack.pop()
                depth.pop()
        elif char == "#" and (i == 1 or script[i - 2] in _WORD_START):
            end = script.find("\n", i)
            end = len(script) if end < 0 else end
            out.append(script[i:end])  # a comment: its quotes open nothing
            i = end
    return "".join(out)
