"""MkDocs hooks for the resourceloop docs (listed under ``hooks:`` in ``mkdocs.yml``).

The Performance page shows what the benchmark runner wrote to ``benchmarks/results/``: the
Markdown table is included with ``pymdownx.snippets`` (``check_paths`` makes a missing file a
build error), and the plot is copied into the site here. A missing plot fails the build too:
a Performance page without its numbers must never be published silently.

The Markdown table comes in through the line ``--8<-- "benchmarks/results/results.md"``, which
this hook expands itself (a missing file is a build error, as with ``pymdownx.snippets``'
``check_paths``) so that it can escape list items that start with a case number: the runner
writes notes as ``- 4. threaded churn ...``, which Markdown would turn into a nested numbered
list and lose the ``4``. Included files also bring their own top-level title; every ``<h1>``
after a page's first is demoted to ``<h2>`` so each page keeps one title and a sane outline.

The site loads nothing from other hosts: the Mermaid script that ``docs/_vendor.py`` fetched
from the npm registry into ``build/docs-vendor/`` is published here as
``assets/vendor/mermaid.min.js`` (``extra_javascript`` in ``mkdocs.yml``); a missing one fails
the build, since Material would otherwise fetch Mermaid from a CDN at reading time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Files from ``benchmarks/results/`` published under ``assets/benchmarks/`` in the site.
PUBLISHED = ("churn.png",)
VENDOR = ROOT / "build" / "docs-vendor"
#: Files from ``build/docs-vendor/`` (see ``docs/_vendor.py``) published under ``assets/vendor/``.
VENDORED = ("mermaid.min.js", "mermaid.LICENSE")


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    for name in PUBLISHED:
        source = RESULTS / name
        if not source.is_file():
            raise PluginError(
                f"{source.relative_to(ROOT)} is missing: run `python -m benchmarks` (or "
                "`nox -s bench-3.11`) to produce the benchmark results the Performance page shows"
            )
        files.append(File.generated(config, f"assets/benchmarks/{name}", abs_src_path=str(source)))
    for name in VENDORED:
        source = VENDOR / name
        if not source.is_file():
            raise PluginError(
                f"{source.relative_to(ROOT)} is missing: run `python docs/_vendor.py` (`nox -s "
                "docs` does) to fetch the Mermaid script the site serves itself"
            )
        files.append(File.generated(config, f"assets/vendor/{name}", abs_src_path=str(source)))
    return files


#: The include line the Performance page uses, expanded by ``on_page_markdown`` below.
RESULTS_INCLUDE = '--8<-- "benchmarks/results/results.md"'
_NUMBERED_ITEM = re.compile(r"^(\s*[-*+] )(\d+)\. ", re.MULTILINE)
_ISSUE_REF = re.compile(r" \(#\d+\)|, #\d+(?=\))")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if RESULTS_INCLUDE not in markdown:
        return markdown
    source = RESULTS / "results.md"
    if not source.is_file():
        raise PluginError(
            f"{source.relative_to(ROOT)} is missing: run `python -m benchmarks` (or "
            "`nox -s bench-3.11`) to produce the benchmark results the Performance page shows"
        )
    table = _NUMBERED_ITEM.sub(r"\1\2\\. ", source.read_text())
    # The runner names the tracker issue behind each target ("(#11)"); readers of the site
    # have no use for the project's issue numbers.
    table = _ISSUE_REF.sub("", table)
    return markdown.replace(RESULTS_INCLUDE, table)


_H1 = re.compile(r"<h1(\b[^>]*)>(.*?)</h1>", re.DOTALL)
_TABLE = re.compile(r"<table>.*?</table>", re.DOTALL)
_PLAIN_CODE = re.compile(r"<code>([^<]*)</code>")
_BREAK_AFTER = re.compile(r"(\.|\()(?=[^\s.)])")


def _breakable_code(table: re.Match[str]) -> str:
    """Offer a line break after each ``.`` and ``(`` of inline code in a table (never before
    a closing ``)``).

    The stylesheet never splits a name inside a word (``UngracefulLoopWarning`` stays whole),
    so a long dotted path or signature (``pyot.core.resources.ResourceTemplate(...)``) was one
    unbreakable word that pushed the table's last columns out of the content column. A
    ``<wbr>`` there lets it wrap where a reader would: between the parts of a path.
    """

    def breakable(code: re.Match[str]) -> str:
        return "<code>" + _BREAK_AFTER.sub(r"\1<wbr>", code.group(1)) + "</code>"

    return _PLAIN_CODE.sub(breakable, table.group(0))


def on_page_content(html: str, **kwargs: Any) -> str:
    seen = False

    def demote(match: re.Match[str]) -> str:
        nonlocal seen
        if not seen:
            seen = True
            return match.group(0)
        return f"<h2{match.group(1)}>{match.group(2)}</h2>"

    return _TABLE.sub(_breakable_code, _H1.sub(demote, html))
