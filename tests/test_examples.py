"""Smoke tests for ``examples/``: each script runs as ``python examples/X.py`` and exits 0.

Each example checks its own outcome (answers, sessions released, nothing live) and exits 1
otherwise; here it also runs with ``ResourceWarning`` turned into errors, and must print
nothing on stderr: no warning, no "Unclosed ..." message, no traceback.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests._env import child_env

pytest.importorskip("aiohttp", reason="the examples need the aiohttp extra")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = [
    ("quickstart.py", None, "released gracefully by the close hook: 8"),
    ("readme_usage.py", None, "released gracefully: 3"),
    ("seed_example.py", None, "still live: 0"),
    ("threadpool_fanout.py", None, "released gracefully by the close hook: 16"),
    ("flask_async_view.py", "flask", "released gracefully by the close hook: 20"),
    ("celery_style_task.py", None, "released gracefully by the manager: 10"),
]


@pytest.mark.parametrize(("script", "needs", "expected"), CASES)
def test_example_runs_clean(script: str, needs: str | None, expected: str) -> None:
    """The example exits 0, reports every session released, and prints nothing on stderr."""
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{script} needs {needs}")
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert expected in result.stdout
    assert "forcefully: 0" in result.stdout


def test_readme_usage_is_the_example() -> None:
    """The README's usage snippet is, character for character, what readme_usage.py runs."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    shown = readme.split("## Usage", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    example = (EXAMPLES / "readme_usage.py").read_text()
    ran = example.split("# --8<-- [start:usage]\n", 1)[1].split("\n\n# --8<-- [end:usage]", 1)[0]
    assert shown.rstrip("\n") == ran.rstrip("\n")
    assert "127.0.0.1:8080" not in readme  # no server the reader does not have


def test_every_example_is_tested() -> None:
    """A new example must be added to ``CASES``."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(c[0] for c in CASES)
