"""``python -m resourceloop demo``: the seed page's example, run for real on loopback.

* :mod:`resourceloop.demo.server`: a small aiohttp server on 127.0.0.1 with Riot-like JSON
  endpoints and deterministic fake data.
* :mod:`resourceloop.demo.lol`: a tiny Riot-like client (``Summoner``, ``MatchHistory``,
  ``Match``) whose HTTP session comes from a ``resourceloop`` template, so the seed's example
  reads as written.
* :mod:`resourceloop.demo.modes`: the modes (``managed``, ``decorator``, ``unmanaged``,
  ``portal`` and a ``baseline`` without resourceloop), each the seed's example.
* :mod:`resourceloop.demo.run`: runs the modes and measures them; Ctrl-C.
* :mod:`resourceloop.demo.report`: the measurements' table and JSON.

Nothing in :mod:`resourceloop` imports this package; only ``resourceloop.__main__`` does. It
needs aiohttp (``pip install resourceloop[aiohttp]``).

.. versionadded:: 0.1.0
"""

from __future__ import annotations
