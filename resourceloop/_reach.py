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

Every error in the counting errs towards "reachable": a reference the collector cannot see
(held by C code that does not traverse it) only adds to a reference count; a graph larger
than ``LIMIT`` members, or a loop class without the usual traversal, is reported reachable.
A reachable loop is left alone: it is its owner's, who may run it again.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterable
from typing import Final

from ._compat import ARGUMENTS_STAY_ON_THE_CALLERS_STACK

__all__ = ["LIMIT", "only_we_reach"]

#: Members past which the answer is "reachable" (the test then costs too much to be worth it).
LIMIT: Final = 50_000

_SHARED: Final = (type, types.ModuleType, types.FunctionType, types.CodeType, types.FrameType)

_getrefcount: Final = sys.getrefcount
_referents: Final = gc.get_referents
_tracked: Final = gc.is_tracked


def only_we_reach(root: object, ours: Iterable[tuple[object, int]]) -> bool:
    """True if nothing but ``ours`` reaches ``root``.

    ``ours`` lists objects that resourceloop holds and how many references it holds to each
    (the references of ``ours`` itself are counted here). The caller must hold ``root`` by
    exactly one reference of its own besides this call's argument: the local variable it
    passes (see ``_reaper``).
    """
    members: dict[int, object] = {id(root): root}
    stack = [root]
    while stack:
        for ref in _referents(stack.pop()):
            if id(ref) in members or not _tracked(ref) or isinstance(ref, _SHARED):
                continue
            members[id(ref)] = ref
            stack.append(ref)
            if len(members) > LIMIT:
                return False
    inside: dict[int, int] = dict.fromkeys(members, 0)
    for member in members.values():
        for ref in _referents(member):
            key = id(ref)
            if key in inside:
                inside[key] += 1
    del member
    for obj, count in ours:
        key = id(obj)
        if key in inside:
            inside[key] += count + 1  # and the reference ``ours`` itself holds (its tuple)
    del obj
    # The references this function and its caller hold: ``members``' value and the argument
    # of ``getrefcount`` for every member; for the root also ``root`` here, and the caller's.
    inside[id(root)] += 3 if ARGUMENTS_STAY_ON_THE_CALLERS_STACK else 2
    outside = []
    for key in members:  # noqa: PLC0206 - an items() iterator would hold a reference too
        obj = members[key]
        if _getrefcount(obj) - 3 > inside[key]:  # members, getrefcount's argument, ``obj``
            outside.append(obj)
    del obj
    seen: set[int] = set()
    stack = outside
    while stack:
        current = stack.pop()
        key = id(current)
        if key in seen:
            continue
        if current is root:
            return False
        seen.add(key)
        stack.extend(ref for ref in _referents(current) if id(ref) in members)
    return True
