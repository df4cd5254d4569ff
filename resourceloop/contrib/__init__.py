"""Ready-made templates for third-party async clients.

Each integration lives in its own module and imports its library only when that module is
imported, so ``import resourceloop`` never needs them: install the matching extra
(``pip install resourceloop[aiohttp]``) and import ``resourceloop.contrib.aiohttp``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

__all__: list[str] = []
