"""Mutation testing of the custody core: does the suite notice when the code is wrong?

Each mutant is one small change to one module, made on its syntax tree: a comparison or
boolean operator swapped, ``not`` dropped, a constant changed, an arithmetic operator swapped,
a ``return`` made to return ``None``, ``break`` and ``continue`` swapped, or one statement
deleted. Text that only words a log record or a warning (string constants, f-strings,
arguments of ``logger.*(...)`` and ``warn(...)``), a ``logger.debug`` call, docstrings,
annotations and lines marked ``pragma: no cover`` are not mutated: changing them changes no
behaviour this suite could promise.

A mutant is applied to a private copy of the package and tests (never to the working tree),
and the module's test files (``TESTS``) run against it with ``pytest -x -q -p
no:cacheprovider`` and a timeout. To keep a run affordable, the unmutated tests first run once
under coverage with one context per test (lines run by any thread count for the test running
then), and each mutant gets only the tests that run one of its lines; a mutant on a line no
test runs in-process (import time, a fork child) gets every test of its files, and one in a
function named for forking (``forget_after_fork``) gets the tests named for it as well, since
coverage does not follow a fork child, where that code runs. A mutant is
*killed* when the tests fail (or time out), *survived* when they pass. Mutants listed in
``EQUIVALENT`` were reviewed: they change no observable behaviour, or only a warning's
wording; they are reported, but left out of the score.

Mutants are sampled per module with a fixed seed, so two runs test the same mutants::

    python tools/mutants.py                       # 60 per module, the four modules
    python tools/mutants.py --module _reaper --sample 20
    python tools/mutants.py --list --module _registry
    python tools/mutants.py --only _reaper:41,_registry:7
    python tools/mutants.py --tests-ref HEAD~3            # the same mutants, older tests

Exit status: 0 when every module reaches ``--threshold`` (default 90%) of its scored mutants
killed, 1 otherwise. Not part of CI (``nox -s mutants``): a full run takes tens of minutes.

Last measured, every core module in one run (2026-12-07, CPython 3.11.7, on 2 quiet cores),
tests and source of 3115c57, 1,026 s for 120 mutants (coverage map included)::

    python tools/mutants.py --sample 15 --seed 8 --jobs 2 --deselect \
        tests/test_lifecycle.py::test_forks_while_eight_threads_acquire_reap_and_read_stats_never_hang

    module      killed/scored  score   equivalent   after reviewing its survivors
    _state          13/15      86.7%       0        13/13 (both survivors equivalent)
    _lifecycle      12/14      85.7%       1        12/13  92.3% (73 ``and -> or`` equivalent)
    _registry       13/13     100.0%       2
    _release        12/12     100.0%       3
    _force          12/12     100.0%       3
    _loop_run       12/13      92.3%       2
    _closehook      12/12     100.0%       3
    _reaper         14/14     100.0%       1

The reviewed survivors are in ``EQUIVALENT_LATER``; left: ``_lifecycle`` 73 ``IsNot -> Is``
and ``_loop_run`` 123 (both below). The runs before it, on the way there:

Measured (2026-12-07, CPython 3.11.7, ``--jobs 1``, on 2 cores shared with two other
workers' test runs, load average 5 to 7, so the times are loaded ones; killed includes
timeouts). Every run passed ``--deselect
tests/test_lifecycle.py::test_forks_while_eight_threads_acquire_reap_and_read_stats_never_hang``:
on that load its 500 forks ran past the coverage map's 120 s per-test timeout and failed the
map. Source at f05b541 except where said::

    python tools/mutants.py --module _loop_run --module _release --sample 20 --seed 8
    (1) tests of 70251c4, source f05b541                1801 s
    (2) tests of fd61cf1, source with the fix ca8b762   2485 s
    python tools/mutants.py --module _state --module _lifecycle --module _registry \
        --module _force --module _closehook --module _reaper --sample 12 --seed 8
    (3) tests of fd61cf1, source with the fix ca8b762   stopped by hand after 39 of the 72
        mutants (1924 s, coverage map 103 s): _force 3 of 12, _closehook and _reaper not run

    module      killed/scored  score   equivalent
    _loop_run       16/18      88.9%       2      (1)
    _release        14/18      77.8%       2      (1)
    _loop_run       17/18      94.4%       2      (2)
    _release        16/17      94.1%       3      (2)
    _state          11/12      91.7%       0      (3)
    _lifecycle       8/12      66.7%       0      (3)
    _registry        7/11      63.6%       1      (3)
    _force           2/3         -         0      (3), 3 of its 12 mutants run

Followed up after (3), on the same sampled mutants: ``_lifecycle`` 68 and 217 and
``_registry`` 531 and 311 met new tests, each run killed with ``--only ... --no-coverage
--tests`` the new test (231 s for the four); ``_state`` 193, ``_lifecycle`` 159, ``_registry``
364 and ``_force`` 238 were reviewed equivalent (below). Counted that way: ``_state`` 11/11,
``_lifecycle`` 10/11, ``_registry`` 9/10, ``_force`` 2/2 of 3; not one sampled run.

Survivors, left as they are: ``_release`` 359 (the cancellation that reaches the relayed wait's
proxy in the very iteration its future completes, kept to be thrown once the future is done, as
``Task`` does: no test makes both land in one iteration yet), ``_loop_run`` 123 (``1 -> 2`` in
the ``fd == -1`` guard of ``wake_on_signals``: a loop without a self-pipe then calls
``set_wakeup_fd(-1)`` and puts the program's own fd back at once; off the main thread that
raises ValueError, caught; uvloop, the usual such loop, sets the program's fd back itself
around its run. What is left is the instant between the two calls, and ``warn_on_full_buffer``
of a program's own fd reset to True, which the self-pipe path already does: no deterministic
test), ``_lifecycle`` 73 (``take_over`` from a loop-less ``end_loop``, the async-generator
watcher finalized off its loop, racing an end in progress on another thread: not made
deterministic), ``_registry`` 339 (``drain_collected`` then skips the states whose loop is gone
while still tracked, which only an interrupt cutting the weak-reference callback short leaves:
no deterministic test written).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import difflib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "resourceloop"

#: Where the map from each module to its tests lives (a table, most specific test first).
TEST_MAP = ROOT / "tests" / "README.md"
#: The modules this tool mutates by default: the custody core.
CORE = (
    "_state",
    "_lifecycle",
    "_registry",
    "_release",
    "_force",
    "_loop_run",
    "_closehook",
    "_reaper",
)


def read_test_map(path: Path = TEST_MAP) -> dict[str, list[str]]:
    """The tests of each module, from the table of ``tests/README.md``.

    A row whose first cell names one module (`` `resourceloop/_reaper.py` ``) maps that module
    to the test files of its second cell, in order (``-x`` stops at the first failure, so a
    mutant that a fast, targeted test kills costs little). Rows naming several modules, or
    none, are for readers and are skipped.
    """
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        match = re.fullmatch(r"\| `resourceloop/(\w+)\.py` \| ([^|]+) \|", line.strip())
        if match:
            names = [n.strip() for n in match.group(2).split(",")]
            found[match.group(1)] = [f"tests/{name}" for name in names if name]
    missing = [module for module in CORE if module not in found]
    if missing:
        raise SystemExit(f"{path}: no row for {', '.join(missing)} in its module/tests table")
    return found


#: The tests each module is checked against, most specific first (from ``tests/README.md``).
TESTS: dict[str, list[str]] = read_test_map()

#: The commit whose line numbers the keys of ``EQUIVALENT`` use. The tool carries each key to
#: the current code through a line diff of the module since then; an entry whose line changed
#: (or went) is dropped and its mutant scored again, to be reviewed anew. Reviewing against a
#: newer commit: update the keys to its lines, and this to it.
EQUIVALENT_AT = "f05b541"

#: Reviewed mutants that change no observable behaviour, or only the wording of a warning, by
#: ``module:line:change`` (the key printed for each survivor), with the reason. Not scored.
#: Re-keyed at f05b541: the entries reviewed at ca6802b whose lines the diff carried were read
#: again against the code they now land on, and kept only where the reason still holds (the
#: line diff matches equal text, so a ``return False`` can land in another function).
EQUIVALENT: dict[str, str] = {
    # -- _registry (reviewed at ca6802b, checked again at f05b541) --
    **dict.fromkeys(
        [f"_registry:{line}:0 -> 1" for line in range(84, 90)],
        "Counters is always built from every counter (dict.fromkeys of its fields)",
    ),
    "_registry:102:0 -> 1": "template keys start at 2 instead of 1: same order",
    "_registry:172:1 -> 2": "template keys step by 2: still unique, insertion order kept",
    "_registry:172:Add -> Sub": "template keys count down: still unique, insertion order kept",
    "_registry:127:0 -> 1": "serials start at 2 instead of 1: only their order is used",
    "_registry:207:1 -> 2": "serials step by 2: still increasing, only their order is used",
    "_registry:236:delete statement": (
        "_last_thread only skips recomputing the multithreaded flag for the thread that last "
        "computed it, when the result cannot have changed: recomputing gives the same flag"
    ),
    "_registry:318:0 -> 1": (
        "the default is unreachable: add() records every state's thread, which the state keeps "
        "alive"
    ),
    "_registry:383:return None": ("None is falsy too; both callers use the answer as a condition"),
    "_registry:364:return None": (
        "None is falsy too; the one caller that reads set_managed()'s answer negates it"
    ),
    # -- _release --
    "_release:83:return None": "None is falsy too; both callers use the answer as a condition",
    "_release:165:delete statement": "_Suspended without __slots__: memory only",
    "_release:215:delete statement": (
        "the failed release's finished coroutine stays referenced by its item, settled just "
        "below: nothing reads it again (memory)"
    ),
    "_release:311:delete statement": "the finished release coroutine stays referenced: memory",
    "_release:479:False -> True": "Python 3.10 only (no Task.uncancel)",
    "_release:479:return None": "Python 3.10 only (no Task.uncancel); None is falsy too",
    "_release:488:delete statement": (
        "a deadline is cancelled once, in _finish_release's finally, and a cancelled timer "
        "handle kept is memory only"
    ),
    "_release:206:delete statement": (
        "the release raised CancelledError out of its first step, so its coroutine is over: "
        "closing it again (stop_release, on the path that re-raises) does nothing, and on the "
        "failure path the settled item's is never read again (memory)"
    ),
    **dict.fromkeys(
        ["_release:216:Sub -> Add", "_release:220:Sub -> Add"],
        "warn_if_blocking() is then called after every release function, and makes the same "
        "test itself (time since started > release_timeout) before it warns: one more call",
    ),
    "_release:405:delete statement": (
        "_Deadline without __slots__: memory only (every attribute is set in __init__)"
    ),
    # -- _loop_run --
    "_loop_run:154:delete statement": (
        "Runner without __slots__: memory only (stop() reads task with getattr either way)"
    ),
    "_loop_run:138:1 -> 2": (
        "reached only in the main thread, with our fd set: if the wakeup fd is -1 already, "
        "setting -1 again changes nothing (no fd to write to; the next set_wakeup_fd() sets "
        "warn_on_full_buffer anew)"
    ),
    # -- _state --
    "_state:193:False -> True": (
        "Items are only iterated, never compared, hashed or put in a set: eq=True (and the "
        "__hash__ = None it brings) changes nothing"
    ),
    "_state:193:True -> False": "slots=False on Item: memory only",
    # -- _force --
    **dict.fromkeys(
        ["_force:238:and -> or", "_force:238:or -> and"],
        "chooses the wording of the forced-release warning (whether it advises "
        "force_release_func=)",
    ),
    # -- _lifecycle --
    **dict.fromkeys(
        ["_lifecycle:159:True -> False", "_lifecycle:159:return None"],
        "_Token.done() is never called: take_over() returns first for a token, whose "
        "get_loop() is None, never the loop being closed",
    ),
    # -- _closehook and _reaper (reviewed at ca6802b, checked again at f05b541) --
    "_closehook:53:delete statement": "_closehook never uses its logger",
    "_reaper:291:or -> and": (
        "double-checked start: under the start lock, alive (true while _running is) and the "
        "stop flag are tested again, and decide"
    ),
    "_reaper:330:break -> continue": "the while condition checks the same stop flag next",
}

#: Reviewed after ``EQUIVALENT_AT``, on code that changed since: keyed by the lines of
#: ``EQUIVALENT_LATER_AT`` and carried to the current code the same way. Fold them into
#: ``EQUIVALENT`` when it is next re-keyed.
EQUIVALENT_LATER_AT = "04168d5"
EQUIVALENT_LATER: dict[str, str] = {
    "_reaper:173:delete statement": (
        "_collected is set at the start of every pass, and read only within one"
    ),
    "_registry:233:delete statement": (
        "the hot dict of a loop without an instance __dict__ is never read (acquire finds no "
        "attribute); discard pops STORE_KEY from it anyway, so refcounting still frees the store"
    ),
    "_closehook:192:Lt -> GtE": (
        "on the 3.11 the tool runs, 26 or 24 asyncio names both leave the wrapped loop below the "
        "30 inline names, so the wrapper is installed either way; test_shutdown_release checks "
        "the count against a real loop on each Python"
    ),
    "_closehook:192:13 -> 14": (
        "picks the figure for 3.13 only: on the 3.11 the tool runs, 24 either way"
    ),
    "_state:289:delete statement": "a class-level annotation without a value: typing only",
    "_state:123:True -> False": "slots=False on Spec: memory only (no attribute is added later)",
    "_lifecycle:73:and -> or": (
        "the calls it adds are take_over(None, ...) or take_over with our own token as ender: "
        "take_over returns at once for both (a token's get_loop() is None, never the loop)"
    ),
    "_force:325:return None": (
        "asyncio's Task drives an Abandonable through send() and throw(); nothing calls iter() "
        "on it (__await__'s result need only have __next__)"
    ),
}

SEED = 8  # issue 8
#: ``--deselect`` node ids: tests known to fail on the unmutated code (a bug reported, not fixed).
DESELECT: list[str] = []
_NEGATED_COMPARE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SWAPPED_BINOP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
}
_DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.Delete)


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # position in the module's full, deterministic list
    node: int  # position of the mutated node in ast.walk order
    kind: str
    line: int
    end_line: int
    change: str
    function: str = ""  # the enclosing function's name, "" at module or class level

    @property
    def key(self) -> str:
        return f"{self.module}:{self.line}:{self.change}"

    @property
    def ident(self) -> str:
        return f"{self.module}:{self.index}"


def _source(module: str) -> str:
    return (ROOT / PACKAGE / f"{module}.py").read_text()


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _is_wording_call(node: ast.AST) -> bool:
    """A call whose arguments only word a log record or a warning."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id == "logger" or (func.value.id == "warnings" and func.attr == "warn")
    return isinstance(func, ast.Name) and func.id in ("warn", "_warn_forced", "_failed")


def _excluded(node: ast.AST, parents: dict[ast.AST, ast.AST], lines: list[str]) -> bool:  # noqa: PLR0911
    child: ast.AST | None = None
    current: ast.AST | None = node
    while current is not None:
        line = getattr(current, "lineno", None)
        if line is not None and "pragma: no cover" in lines[line - 1]:
            return True
        if current is not node and _is_wording_call(current):
            return True  # inside the arguments of a log or warning call
        if isinstance(current, (ast.arg, ast.AnnAssign)) and child is current.annotation:
            return True
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)) and child is (
            current.returns
        ):
            return True
        if isinstance(current, ast.JoinedStr):
            return True
        if isinstance(current, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in current.targets
        ):
            return True
        child, current = current, parents.get(current)
    return False


def _is_docstring(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and isinstance(parent, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and parent.body[0] is node
    )


def _is_debug_log(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "debug"
        and isinstance(func.value, ast.Name)
        and func.value.id == "logger"
    )


def _enclosing_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    current = parents.get(node)
    while current is not None:
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return current.name
        current = parents.get(current)
    return ""


def _changes(node: ast.AST) -> Iterator[tuple[str, str]]:
    """(kind, change) for each mutation this node offers."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op = type(node.ops[0])
        if op in _NEGATED_COMPARE:
            yield "compare", f"{op.__name__} -> {_NEGATED_COMPARE[op].__name__}"
    elif isinstance(node, ast.BoolOp):
        yield "boolop", "and -> or" if isinstance(node.op, ast.And) else "or -> and"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not", "drop not"
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield "constant", f"{value} -> {not value}"
        elif isinstance(value, int):
            yield "constant", f"{value} -> {value + 1}"
        elif isinstance(value, float):
            yield "constant", f"{value} -> {value * 2 if value else 1.0}"
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        arith = type(node.op)
        if arith in _SWAPPED_BINOP:
            yield "arith", f"{arith.__name__} -> {_SWAPPED_BINOP[arith].__name__}"
    elif isinstance(node, (ast.Break, ast.Continue)):
        yield "jump", "break -> continue" if isinstance(node, ast.Break) else "continue -> break"
    returns_none = isinstance(node, ast.Return) and (
        node.value is None or (isinstance(node.value, ast.Constant) and node.value.value is None)
    )
    if isinstance(node, ast.Return) and not returns_none:
        yield "return", "return None"
    if isinstance(node, _DELETABLE):
        yield "delete", "delete statement"


def _replace(parents: dict[ast.AST, ast.AST], old: ast.AST, new: ast.AST) -> None:
    parent = parents[old]
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list) and any(v is old for v in value):
            value[next(i for i, v in enumerate(value) if v is old)] = new
            return
    raise AssertionError(f"{old!r} not found in its parent")


def _apply(tree: ast.Module, node_index: int, kind: str) -> None:
    nodes = list(ast.walk(tree))
    node = nodes[node_index]
    parents = _parents(tree)
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        node.ops = [_NEGATED_COMPARE[type(node.ops[0])]()]
    elif kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind == "not":
        assert isinstance(node, ast.UnaryOp)
        _replace(parents, node, node.operand)
    elif kind == "constant":
        assert isinstance(node, ast.Constant)
        value = node.value
        if isinstance(value, bool):
            node.value = not value
        elif isinstance(value, int):
            node.value = value + 1
        else:
            assert isinstance(value, float)
            node.value = value * 2 if value else 1.0
    elif kind == "arith":
        assert isinstance(node, (ast.BinOp, ast.AugAssign))
        node.op = _SWAPPED_BINOP[type(node.op)]()
    elif kind == "jump":
        _replace(parents, node, ast.Continue() if isinstance(node, ast.Break) else ast.Break())
    elif kind == "return":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(None)
    elif kind == "delete":
        _replace(parents, node, ast.Pass())
    else:  # pragma: no cover
        raise AssertionError(kind)
    ast.fix_missing_locations(tree)


def enumerate_mutants(module: str) -> list[Mutant]:
    """Every mutant of ``module``, in a deterministic order."""
    source = _source(module)
    lines = source.splitlines()
    tree = ast.parse(source)
    parents = _parents(tree)
    found: list[Mutant] = []
    for position, node in enumerate(ast.walk(tree)):
        if _is_docstring(node, parents) or _is_debug_log(node):
            continue
        changes = list(_changes(node))
        if not changes or _excluded(node, parents, lines):
            continue
        for kind, change in changes:
            line = getattr(node, "lineno", 0)
            end = getattr(node, "end_lineno", None) or line
            if isinstance(node, ast.Compare | ast.BoolOp | ast.UnaryOp | ast.Constant):
                end = line  # an operand spread over lines: the operator's line is the one run
            function = _enclosing_function(node, parents)
            found.append(Mutant(module, len(found), position, kind, line, end, change, function))
    return found


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse(_source(mutant.module))
    _apply(tree, mutant.node, mutant.kind)
    return ast.unparse(tree) + "\n"


def sample(module: str, n: int, seed: int = SEED) -> list[Mutant]:
    every = enumerate_mutants(module)
    if n >= len(every):
        return every
    return sorted(random.Random(f"{seed}:{module}").sample(every, n), key=lambda m: m.index)


# -- running --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # "killed", "timeout", "survived", "equivalent"
    seconds: float
    detail: str = ""


def _make_sandbox(tests_ref: str | None = None) -> Path:
    """A private copy of the package and tests (the tests of ``tests_ref``, if given)."""
    sandbox = Path(tempfile.mkdtemp(prefix="resourceloop-mutants-"))
    shutil.copytree(ROOT / PACKAGE, sandbox / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", sandbox / "pyproject.toml")
    if tests_ref is None:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "tests", sandbox / "tests", ignore=ignore)
    else:
        archive = subprocess.run(
            ["git", "archive", tests_ref, "tests"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(sandbox)], input=archive, check=True)
    return sandbox


def _pytest(sandbox: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(sandbox)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "timeout=60",
        *[f"--deselect={n}" for n in DESELECT],
        *[t for t in tests if (sandbox / t.split("::")[0]).exists()],
    ]
    try:
        done = subprocess.run(
            command,
            cwd=sandbox,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"no result after {timeout:.0f}s"
    if done.returncode == 0:
        return "survived", ""
    # pytest's summary lines (a captured log record may start with "ERROR" too).
    lines = done.stdout.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR tests/"))]
    if failed:
        return "killed", failed[0]
    return "killed", lines[-1] if lines else ""


_CONTEXT_PLUGIN = """
import coverage

ORDER = []


def pytest_runtest_setup(item):
    ORDER.append(item.nodeid)
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.switch_context(item.nodeid)


def pytest_sessionfinish(session):
    with open("_mutants_order.txt", "w") as out:
        out.write("\\n".join(ORDER))
"""


@dataclass
class CoverageMap:
    """Which tests run each line of each module, and the order the tests ran in."""

    lines: dict[str, dict[int, set[str]]]
    order: list[str]

    def tests_for(self, mutant: Mutant, files: list[str]) -> list[str]:
        """The tests (of ``files``) that run a line of the mutated node, in file order."""
        wanted: set[str] = set()
        by_line = self.lines.get(mutant.module, {})
        for line in range(mutant.line, mutant.end_line + 1):
            wanted |= by_line.get(line, set())
        if "fork" in mutant.function:
            # Code that runs in a fork child, which coverage does not follow: the fork tests.
            wanted |= {n for n in self.order if "fork" in n.rpartition("::")[2]}
        rank = {name: i for i, name in enumerate(files)}
        chosen = [n for n in self.order if n in wanted and n.split("::")[0] in rank]
        return sorted(chosen, key=lambda n: rank[n.split("::")[0]])


def coverage_map(sandbox: Path, tests: list[str], timeout: float) -> CoverageMap:
    """Run ``tests`` once under coverage, with one coverage context per test (any thread)."""
    import coverage

    (sandbox / "_mutants_ctx.py").write_text(_CONTEXT_PLUGIN)
    data_file = sandbox / ".coverage.mutants"
    env = dict(os.environ, PYTHONPATH=str(sandbox), PYTHONDONTWRITEBYTECODE="1")
    command = [
        sys.executable,
        "-m",
        "coverage",
        "run",
        f"--data-file={data_file}",
        "--concurrency=thread",
        f"--source={PACKAGE}",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "_mutants_ctx",
        "-o",
        "timeout=120",
        *[f"--deselect={n}" for n in DESELECT],
        *[t for t in tests if (sandbox / t).exists()],
    ]
    done = subprocess.run(
        command, cwd=sandbox, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the unmutated tests do not pass:\n{done.stdout[-3000:]}")
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    lines: dict[str, dict[int, set[str]]] = {}
    for filename in data.measured_files():
        path = Path(filename)
        if path.parent.name != PACKAGE:
            continue
        contexts = data.contexts_by_lineno(filename)
        lines[path.stem] = {n: {c for c in ctx if c} for n, ctx in contexts.items()}
    order = (sandbox / "_mutants_order.txt").read_text().split("\n")
    return CoverageMap(lines, order)


def _line_map(module: str, at: str) -> dict[int, int]:
    """Line numbers of ``module`` at commit ``at`` -> the same, unchanged lines now."""
    try:
        then = subprocess.run(
            ["git", "show", f"{at}:{PACKAGE}/{module}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # no git, or no such commit: no carrying
        return {}
    now = _source(module).splitlines()
    mapping: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, then, now, autojunk=False)
    for tag, i1, i2, j1, _ in matcher.get_opcodes():
        if tag == "equal":
            mapping.update({i1 + k + 1: j1 + k + 1 for k in range(i2 - i1)})
    return mapping


def equivalents_now(equivalent: dict[str, str], at: str) -> dict[str, str]:
    """``equivalent``'s entries keyed by the current line numbers; changed lines dropped."""
    maps: dict[str, dict[int, int]] = {}
    carried: dict[str, str] = {}
    for key, reason in equivalent.items():
        module, line, change = key.split(":", 2)
        if module not in maps:
            maps[module] = _line_map(module, at)
        moved = maps[module].get(int(line))
        if moved is not None:
            carried[f"{module}:{moved}:{change}"] = reason
    return carried


def run_one(
    sandbox: Path,
    mutant: Mutant,
    tests: list[str],
    timeout: float,
    cover: CoverageMap | None,
    *,
    equivalent: dict[str, str],
) -> Outcome:
    if mutant.key in equivalent:
        return Outcome(mutant, "equivalent", 0.0, equivalent[mutant.key])
    selected = cover.tests_for(mutant, tests) if cover is not None else []
    target = sandbox / PACKAGE / f"{mutant.module}.py"
    original = target.read_text()
    target.write_text(mutated_source(mutant))
    started = time.monotonic()
    try:
        # No test of the subset runs this line in this process (a fork child, import time, a
        # subprocess): run them all rather than call it a survivor untested.
        status, detail = _pytest(sandbox, selected or tests, timeout)
    finally:
        target.write_text(original)
    detail = f"{len(selected) or 'all'} tests; {detail}"
    return Outcome(mutant, status, time.monotonic() - started, detail)


def _describe(mutant: Mutant) -> str:
    line = _source(mutant.module).splitlines()[mutant.line - 1].strip()
    return f"{mutant.ident:>14}  {mutant.key:<40} | {line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--module", action="append", choices=sorted(TESTS), help="module(s) to mutate"
    )
    parser.add_argument("--sample", type=int, default=60, help="mutants per module (default 60)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", help="comma-separated mutant ids (module:index) to run")
    parser.add_argument("--list", action="store_true", help="list the sampled mutants and stop")
    parser.add_argument("--show", help="print the mutated source of one mutant id and stop")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant")
    parser.add_argument("--threshold", type=float, default=90.0)
    parser.add_argument(
        "--no-coverage",
        action="store_true",
        help="run every test of the module's files for each mutant, not only those that run it",
    )
    parser.add_argument("--tests-ref", help="take the tests from this git revision (before/after)")
    parser.add_argument("--tests", nargs="*", help="override the test files of every module")
    parser.add_argument("--deselect", action="append", default=[], help="a test to leave out")
    args = parser.parse_args(argv)
    DESELECT[:] = args.deselect

    modules = args.module or list(CORE)
    if args.show:
        module, index = args.show.split(":")
        print(mutated_source(enumerate_mutants(module)[int(index)]))
        return 0
    if args.only:
        chosen: list[Mutant] = []
        for ident in args.only.split(","):
            module, index = ident.strip().split(":")
            chosen.append(enumerate_mutants(module)[int(index)])
        modules = sorted({m.module for m in chosen}, key=list(TESTS).index)
    else:
        chosen = [m for module in modules for m in sample(module, args.sample, args.seed)]
    if args.list:
        for mutant in chosen:
            print(_describe(mutant))
        return 0

    carried = equivalents_now(EQUIVALENT, EQUIVALENT_AT)
    print(
        f"{len(carried)} of {len(EQUIVALENT)} reviewed equivalents carried from {EQUIVALENT_AT} "
        "(the others' lines changed since: scored again)"
    )
    later = equivalents_now(EQUIVALENT_LATER, EQUIVALENT_LATER_AT)
    print(f"{len(later)} of {len(EQUIVALENT_LATER)} carried from {EQUIVALENT_LATER_AT}")
    carried.update(later)
    started = time.monotonic()
    sandboxes = [_make_sandbox(args.tests_ref) for _ in range(max(1, args.jobs))]
    free = list(sandboxes)
    outcomes: list[Outcome] = []
    cover: CoverageMap | None = None
    try:
        if not args.no_coverage:
            union = list(dict.fromkeys(t for m in modules for t in args.tests or TESTS[m]))
            cover = coverage_map(sandboxes[0], union, timeout=1800)
            print(f"unmutated tests pass; coverage map in {time.monotonic() - started:.0f}s")
        with concurrent.futures.ThreadPoolExecutor(len(sandboxes)) as pool:

            def task(mutant: Mutant) -> Outcome:
                sandbox = free.pop()
                try:
                    tests = args.tests or TESTS[mutant.module]
                    return run_one(sandbox, mutant, tests, args.timeout, cover, equivalent=carried)
                finally:
                    free.append(sandbox)

            for outcome in pool.map(task, chosen):
                outcomes.append(outcome)
                mark = {"killed": "K", "timeout": "T", "survived": "S", "equivalent": "="}
                print(
                    f"[{mark[outcome.status]}] {outcome.mutant.ident:>14} {outcome.seconds:5.1f}s "
                    f"{outcome.mutant.key}  {outcome.detail}",
                    flush=True,
                )
    finally:
        for sandbox in sandboxes:
            shutil.rmtree(sandbox, ignore_errors=True)

    ok = True
    print(f"\n{'module':<12} {'killed':>7} {'scored':>7} {'score':>7} {'equiv':>6}")
    for module in modules:
        mine = [o for o in outcomes if o.mutant.module == module]
        killed = sum(o.status in ("killed", "timeout") for o in mine)
        scored = sum(o.status != "equivalent" for o in mine)
        equivalent = len(mine) - scored
        score = 100.0 * killed / scored if scored else 100.0
        ok &= score >= args.threshold
        print(f"{module:<12} {killed:>7} {scored:>7} {score:>6.1f}% {equivalent:>6}")
    survivors = [o for o in outcomes if o.status == "survived"]
    if survivors:
        print("\nsurvivors:")
        for outcome in survivors:
            print(_describe(outcome.mutant))
    print(f"\nwall time {time.monotonic() - started:.0f}s for {len(outcomes)} mutants")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
