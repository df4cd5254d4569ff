"""Running a function in a forked child and reading back what it reported (a JSON dict)."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["fork_warning", "in_child", "needs_fork"]

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns that forking a multi-threaded process (the reaper is a thread) may deadlock.
fork_warning = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)


def in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a forked child and return what it reported through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage does not follow os._exit)
        try:
            os.close(read_end)
            try:
                payload = json.dumps(work())
            except BaseException:
                payload = json.dumps({"error": traceback.format_exc()})
            data = payload.encode()
            while data:
                data = data[os.write(write_end, data) :]
            os.close(write_end)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            # A guard only: a healthy child answers at once; a deadlocked one is killed.
            ready, _, _ = select.select([pipe], [], [], 60)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the fork child did not answer within 60 s (deadlocked?)")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report: dict[str, Any] = json.loads(b"".join(chunks))
    assert "error" not in report, report.get("error")
    return report
