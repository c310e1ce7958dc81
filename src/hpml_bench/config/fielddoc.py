"""A config field's one-line description, read from the comment beside or above it in the source.

The descriptions live once, in the config dataclasses: the comment at the end of a field's
line, or else the comment lines directly above it. `hpml train --help` and the generated
reference (docs_reference.py) both read them from here.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any


@functools.lru_cache(maxsize=None)
def own_comments(cls: type) -> dict[str, str]:
    """field name -> comment, for the fields `cls` itself declares (not its bases)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # built dynamically: no source to read
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        trailing = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        above, n = [], node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):  # comment-only lines directly above
            above.insert(0, comments[n])
            n -= 1
        text = " ".join(trailing or above).strip()
        if text:
            found[node.target.id] = text
    return found


def describe(cls: type, name: str) -> str:
    """The field's description: the most derived class in the MRO that comments it; '' if none."""
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            text = own_comments(klass).get(name)
            if text:
                return text
    return ""


def type_name(cls: type, field: dataclasses.Field) -> str:
    """A short readable type: int, float, str, bool, list[int], int | null, any."""
    try:
        hint = typing.get_type_hints(cls)[field.name]
    except Exception:  # a forward reference that does not resolve: show the annotation's text
        return str(field.type)
    return _hint_name(hint)


def _hint_name(hint: Any) -> str:
    if hint is Any:
        return "any"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        names = [_hint_name(a) for a in args if a is not type(None)]
        return " | ".join(names) + (" | null" if type(None) in args else "")
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_hint_name(a) for a in args)}]" if args else base
    return getattr(hint, "__name__", str(hint))


def default_of(field: dataclasses.Field) -> Any:
    """The field's default (default_factory called); '???' when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "???"
