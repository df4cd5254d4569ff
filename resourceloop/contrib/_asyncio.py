"""Closing a client's asyncio transports for real, whatever state its loop is in.

Shared by the contrib modules. Each of them has exactly one function that knows its client's
internals (which transports it holds, which of its own methods close them synchronously) and
hands both to :func:`force_close`, which knows nothing about any client library. What it
knows is asyncio's side:

* a **running** loop is only touched from its own thread: the client's close steps run there
  (scheduled with ``call_soon_threadsafe`` from another thread), and the loop finishes closing
  the transports as usual;
* an **idle** loop (open, not running) runs the steps here, then one iteration of the loop
  delivers the transports' ``connection_lost`` (from a helper thread when this thread runs a
  loop of its own, which could not run another);
* a **closed** loop can run nothing: the real ``socket.socket`` under each transport (under an
  SSL transport, the one it wraps) is closed here and the transport marked closed and lost, so
  that the client's own close steps, run next, find nothing to schedule, and no ``__del__``
  warns later. On uvloop, ``loop.close()`` has closed its transports already.

The asyncio internals touched, all here: ``_SelectorTransport._sock``, ``_closing`` and
``_conn_lost``, and ``_SSLProtocolTransport._ssl_protocol``/``_closed`` with
``SSLProtocol._transport``; checked on CPython 3.10 to 3.13.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["detach", "force_close"]

#: How long a helper thread may take to run one iteration of an idle loop.
_HELPER_JOIN_TIMEOUT = 10.0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def detach(transports: Iterable[Any]) -> None:
    """Close the socket under each transport of a loop that can no longer run, quietly.

    Call it only when the transports' loop is closed (or gone): the socket is closed without
    telling the loop's selector, and the transport is marked closed (``is_closing()`` is
    true, ``close()`` and ``abort()`` return at once, ``__del__`` stays quiet).
    """
    for outer in transports:
        transport = outer
        while transport is not None:
            ssl_protocol = getattr(transport, "_ssl_protocol", None)
            if ssl_protocol is not None:  # an SSL transport: mark it, then its inner transport
                transport._closed = True
                transport = getattr(ssl_protocol, "_transport", None)
                continue
            sock = getattr(transport, "_sock", None)
            if isinstance(sock, socket.socket):
                sock.close()
                transport._sock = None
                transport._closing = True
                if isinstance(getattr(transport, "_conn_lost", None), int):
                    transport._conn_lost += 1
            break


def _run_steps(
    steps: Sequence[Callable[[], object]], loop: asyncio.AbstractEventLoop | None
) -> None:
    """Run every step; on a closed (or gone) loop, a step's "Event loop is closed" is expected.

    Each step is one object's own close, so one that fails never keeps the others from
    running.
    """
    failure: BaseException | None = None
    for step in steps:
        try:
            step()
        except RuntimeError:
            if loop is not None and not loop.is_closed():
                raise
        except Exception as exc:  # keep closing the others; report the first failure
            if failure is None:
                failure = exc
    if failure is not None:
        raise failure


def _iterate_idle(loop: asyncio.AbstractEventLoop) -> None:
    try:
        loop.run_until_complete(asyncio.sleep(0))
    except RuntimeError:  # it started running elsewhere (that run finishes the job) or closed
        pass


def force_close(
    loop: asyncio.AbstractEventLoop | None,
    transports: Sequence[Any],
    steps: Sequence[Callable[[], object]],
) -> None:
    """Run a client's synchronous close ``steps`` so that every socket in ``transports`` closes.

    Args:
        loop: The loop the transports belong to, or ``None`` when there is none (no
            connection was ever made, or the loop was garbage-collected).
        transports: Every asyncio transport the client holds, taken before any step runs.
        steps: The client's own synchronous close, one callable per object (connection,
            pool), each closing its transports through ``transport.close()``/``abort()``
            and marking the object closed.

    Safe to call from any thread; see the module docstring for what happens in each state of
    the loop. Steps scheduled on a loop running in another thread run there; a failure of
    theirs goes to that loop's exception handler.
    """
    running = _running_loop()
    if loop is not None and not loop.is_closed():
        if loop.is_running():
            if running is loop:
                _run_steps(steps, loop)
                return
            try:
                loop.call_soon_threadsafe(_run_steps, steps, loop)
                return
            except RuntimeError:  # it closed in between: close the sockets here
                pass
        else:
            _run_steps(steps, loop)
            if running is None:
                _iterate_idle(loop)
            else:  # this thread runs a loop of its own: iterate the idle one elsewhere
                helper = threading.Thread(
                    target=_iterate_idle, args=(loop,), name="resourceloop-close", daemon=True
                )
                helper.start()
                helper.join(_HELPER_JOIN_TIMEOUT)
            if loop.is_closed():  # closed before its iteration: what is left is ours
                detach(transports)
            return
    detach(transports)
    _run_steps(steps, loop)
