"""Real engines with worker processes: Celery's prefork pool on a redis broker.

Each test starts the engine as users run it (its own command line, real worker processes,
recycled by ``--max-tasks-per-child``, stopped with SIGTERM), puts load through it, and counts
what the servers see: the upstream's accepted and still-open connections, and each worker
child's own log of acquisitions and releases and its open file descriptors. Every process a
test starts dies with it (``tests/engines.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from .engines import ROOT, running_upstream, wait_until, worker_process
from .servers import require

TASKS = 24
PER_CHILD = 6

DRIVER = """
import json, sys
from celery import group
import celery_app
task = getattr(celery_app, sys.argv[1])
results = group(task.s() for _ in range(int(sys.argv[2])))().get(timeout=60)
print(json.dumps(results))
"""


@pytest.mark.parametrize("mode", ["on_portal", "per_call"])
def test_celery_prefork_releases_every_session(mode: str, redis_url: str, tmp_path: Path) -> None:
    """Prefork children recycled every few tasks, then SIGTERM: every session released once.

    On the portal, each child opens one session (one upstream connection) for all its tasks
    and releases it as billiard ends the child (``worker_process_shutdown``); per call, each
    task opens and releases its own. The non-lazy template no task names is never acquired.
    """
    require("celery")
    require("billiard")
    log = tmp_path / "log"
    queue = f"rl-{uuid.uuid4().hex[:8]}"
    with running_upstream() as upstream:
        env = {
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "engine_apps"), str(ROOT)]),
            "RL_BROKER": redis_url,
            "RL_UPSTREAM": upstream.url,
            "RL_LOG": str(log),
            "RL_QUEUE": queue,
            "C_FORCE_ROOT": "1",
            "PYTHONWARNINGS": "ignore",
        }
        argv = [
            *(sys.executable, "-m", "celery", "-A", "celery_app", "worker"),
            *("-P", "prefork", "-c", "2", "--max-tasks-per-child", str(PER_CHILD)),
            *("-n", f"{queue}@%h", "--without-heartbeat", "--without-gossip"),
            *("--without-mingle", "--loglevel", "INFO"),
        ]
        with worker_process(argv, cwd=tmp_path, env=env, ready=" ready.") as worker:
            driven = subprocess.run(
                [sys.executable, "-c", DRIVER, mode, str(TASKS)],
                cwd=tmp_path,
                env={**env, "PATH": os.environ.get("PATH", "")},
                capture_output=True,
                text=True,
                timeout=120,  # a guard only
                check=False,
            )
            assert driven.returncode == 0, driven.stderr
            results = json.loads(driven.stdout)
            worker.send_signal(signal.SIGTERM)  # a warm shutdown: children end with os._exit
            assert worker.wait(60) == 0, "".join(worker.lines)  # type: ignore[attr-defined]
        wait_until(lambda: upstream.open == 0, f"upstream connections left open: {upstream.open}")
        accepted = upstream.accepted

    lines = log.read_text().splitlines()
    acquired = Counter(ln.split()[-1] for ln in lines if ln.startswith("acquire session"))
    released = Counter(ln.split()[-1] for ln in lines if ln.startswith("release session"))
    assert len(results) == TASKS
    assert released == acquired, lines
    unused = Counter(ln.split()[-1] for ln in lines if ln.startswith("acquire unused"))
    assert unused == Counter(ln.split()[-1] for ln in lines if ln.startswith("release unused"))
    fds: dict[int, list[int]] = defaultdict(list)
    for pid, count in results:
        fds[pid].append(count)
    children = len(fds)
    assert children >= TASKS // PER_CHILD, fds  # recycled: at least this many children
    if mode == "on_portal":
        assert set(acquired.values()) == {1}, lines  # one session per child, reused
        # The portal's own manager acquires the non-lazy templates once when it starts (as
        # documented for Portal); templates=[...] chooses what each task's manager acquires.
        assert set(unused.values()) <= {1}, lines
        assert accepted == children, (accepted, fds)  # one upstream connection per child
        for counts in fds.values():  # no fd grows with the tasks a child runs
            assert len(set(counts[2:])) <= 1, fds
    else:
        assert sum(acquired.values()) == TASKS, lines
        assert not unused, lines  # templates=[sessions]: the unused template is never acquired
        assert accepted == TASKS
        for counts in fds.values():
            assert len(set(counts[2:])) <= 1, fds
    print(f"\n{mode}: {TASKS} tasks, {children} children, {accepted} upstream connections")
