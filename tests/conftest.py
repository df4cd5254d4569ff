"""Shared fixtures: every test starts and ends with an empty resourceloop runtime."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from resourceloop import _runtime


@pytest.fixture(autouse=True)
def _clean_runtime() -> Iterator[None]:
    _runtime._reset_for_tests()
    yield
    _runtime._reset_for_tests()
    gc.collect()
