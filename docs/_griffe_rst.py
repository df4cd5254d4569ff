"""Griffe extension for the docs build: render the reST bits of our docstrings as Markdown.

The docstrings follow the project's style (Google sections plus reST roles such as
``:class:`Stats``` and ``.. versionadded:: 0.1.0``) so they read well in ``help()``. The API
reference renders Markdown, so this rewrites, at load time and only for the docs:

* ``:role:`resourceloop.x``` into a cross-reference link, ``:role:`x``` into inline code;
* ``.. versionadded:: V`` / ``.. versionchanged:: V`` into an italic line;
* the ``::`` that introduces a literal block into ``:`` (the indented block already renders as
  code).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj):`~?([^`]+)`")
_VERSION = re.compile(r"^(\s*)\.\. version(added|changed)::\s*(\S+)\s*$", re.MULTILINE)
_LITERAL = re.compile(r"(\S)::(\n\s*\n)")
_LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*\n(?=[ \t]*\n)", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group(1).strip()
    shown = target.rsplit(".", 1)[-1] if match.group(0).count("~") else target
    if target.startswith("resourceloop.") or target == "resourceloop":
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


def _version(match: re.Match[str]) -> str:
    indent, kind, version = match.groups()
    word = "Added" if kind == "added" else "Changed"
    return f"{indent}*{word} in version {version}.*"


def rewrite(text: str) -> str:
    """Return ``text`` with reST roles and version directives turned into Markdown."""
    text = _VERSION.sub(_version, _ROLE.sub(_role, text))
    return _LONE_LITERAL.sub("", _LITERAL.sub(r"\1:\2", text))


class RstToMarkdown(griffe.Extension):
    """Rewrite each docstring once, when its object is created."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
