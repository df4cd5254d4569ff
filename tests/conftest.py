"""Shared fixtures: every test starts and ends with an empty resourceloop runtime."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from resourceloop import _runtime


@pytest.fixture(autouse=True)
def _clean_runtime() -> Iterator[None]:
    # Templates of earlier tests can linger in reference cycles (a logged traceback holds
    # them); a ResourceManager would acquire them too, so collect them first.
    gc.collect()
    _runtime._reset_for_tests()
    yield
    _runtime._reset_for_tests()
    gc.collect()
