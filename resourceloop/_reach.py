"""Whether anything but resourceloop still refers to a loop: a local garbage test, no collection.

A worker thread that runs a new loop per task and never closes them leaves each loop with its
resources (which refer to it) and the store resourceloop holds. Left to the garbage collector,
that is one unreachable cycle whose finalizers all run before anything can be rescued (PEP
442), a client's "Unclosed client session" included. So the reaper asks, while the loop is
still alive, whether anyone else can reach it: exactly the test the collector makes, but over
the loop's own object graph only (bounded), and counting resourceloop's own references as
absent.

How
    1. Members: every object reachable from the loop through container objects the collector
       tracks, leaving out the shared world (types, modules, functions, code): a reference
       from there counts as from outside, which can only make the answer "reachable".
    2. For each member, its references from other members (``gc.get_referents``) and from
       resourceloop (``ours``) are subtracted from its reference count; a member with any left
       is held from outside.
    3. Whatever a member held from outside reaches within the members is reachable; the loop
       is unreachable if none of them reaches it.

Our own references, counted the same on every Python
    While counting, this module holds each member by exactly two references: the ``members``
    dict and the value ``members[key]`` passed to ``sys.getrefcount``, a new reference on every
    version. No local variable or argument refers to a member then: from 3.14 the interpreter
    does not count a reference it borrows from a local for an argument or a temporary
    (``LOAD_FAST_BORROW``), and before 3.11 an argument was counted twice, so a count that
    involved either would depend on the version and on how the compiler arranged the code.
    The root comes in as a weak reference for the same reason. Such a borrowed reference only
    exists beside a strong one that outlives it (a local of the frame it came from), so a
    reference from outside is always counted. ``counts_are_exact`` checks all of this once,
    on a graph whose answer is known, and the reaper asks nothing if it fails.

Every error in the counting errs towards "reachable": a reference the collector cannot see
(held by C code that does not traverse it) only adds to a reference count; a graph larger
than ``LIMIT`` members, or a loop class without the usual traversal, is reported reachable.
A reachable loop is left alone: it is its owner's, who may run it again.
"""

from __future__ import annotations

import functools
import gc
import sys
import types
import weakref
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["LIMIT", "counts_are_exact", "only_we_reach"]

#: Members past which the answer is "reachable" (the test then costs too much to be worth it).
LIMIT: Final = 50_000

_SHARED: Final = (type, types.ModuleType, types.FunctionType, types.CodeType, types.FrameType)

#: The references to each member this module holds while it counts (see the docstring).
_OURS_WHILE_COUNTING: Final = 2

_getrefcount: Final = sys.getrefcount
_referents: Final = gc.get_referents
_tracked: Final = gc.is_tracked


def only_we_reach(root: Callable[[], object | None], ours: Iterable[tuple[object, int]]) -> bool:
    """True if nothing but ``ours`` reaches the object ``root`` (a weak reference) refers to.

    ``ours`` lists objects that resourceloop holds and how many references it holds to each
    (the references of ``ours`` itself are counted here). The caller must hold no strong
    reference to the root: it passes the weak reference, and something in ``ours`` (a store
    whose resources refer to the loop) keeps the root alive. False if the root is gone.
    """
    members = _members(root)
    if not members:
        return False
    root_key = next(iter(members))
    inside = _references_inside(members, ours)
    return not _reaches(_held_from_outside(members, inside), root_key, members)


def _members(root: Callable[[], object | None]) -> dict[int, object]:
    """The root first, then every tracked, non-shared object it reaches; {} past ``LIMIT``."""
    stack = [root()]
    if stack[0] is None:
        return {}
    members: dict[int, object] = {id(stack[0]): stack[0]}
    while stack:
        for ref in _referents(stack.pop()):
            if id(ref) in members or not _tracked(ref) or isinstance(ref, _SHARED):
                continue
            members[id(ref)] = ref
            stack.append(ref)
            if len(members) > LIMIT:
                return {}
    return members


def _references_inside(
    members: dict[int, object], ours: Iterable[tuple[object, int]]
) -> dict[int, int]:
    """For each member, the references to it from other members and from ``ours``."""
    inside: dict[int, int] = dict.fromkeys(members, 0)
    for key in members:  # noqa: PLC0206 - no local may hold a member: see the docstring
        for ref in _referents(members[key]):
            ref_key = id(ref)
            if ref_key in inside:
                inside[ref_key] += 1
    for obj, count in ours:
        key = id(obj)
        if key in inside:
            inside[key] += count + 1  # and the reference ``ours`` itself holds (its tuple)
    return inside


def _held_from_outside(members: dict[int, object], inside: dict[int, int]) -> list[int]:
    """The keys of the members with more references than members and ``ours`` account for."""
    return [
        key for key in members if _getrefcount(members[key]) - _OURS_WHILE_COUNTING > inside[key]
    ]


def _reaches(outside: list[int], root_key: int, members: dict[int, object]) -> bool:
    """Whether any member held from outside reaches the root through the members."""
    seen: set[int] = set()
    stack = outside
    while stack:
        key = stack.pop()
        if key == root_key:
            return True
        if key in seen:
            continue
        seen.add(key)
        stack.extend(id(ref) for ref in _referents(members[key]) if id(ref) in members)
    return False


class _Probe:
    """A stand-in for a loop or a resource in ``counts_are_exact``: weakly referable."""

    partner: object = None
    ours: object = None


def _probe(hold: str) -> bool:
    """``only_we_reach`` on a loop-like cycle held by a store of ours, and maybe from outside.

    As for a real loop: the loop and its resource refer to each other, the store of ours holds
    the resource, and the loop refers to the store too (as a loop refers to its state).
    """
    loop = _Probe()
    resource = _Probe()
    store = {"resource": resource}
    loop.partner, loop.ours, resource.partner = resource, store, loop
    root = weakref.ref(loop)
    kept = loop if hold == "loop" else resource if hold == "resource" else None
    del loop, resource
    answer = only_we_reach(root, [(store, 1)])
    del kept
    return answer


@functools.cache
def counts_are_exact() -> bool:
    """Whether this interpreter counts references as ``only_we_reach`` needs (checked once).

    The check runs the real function on a graph whose answer is known: unreachable but for
    ``ours``, then held from outside through the root and through another member. A wrong
    count in either direction fails it.
    """
    return _probe("") and not _probe("loop") and not _probe("resource")
