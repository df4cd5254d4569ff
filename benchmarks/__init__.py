"""Benchmarks: resourceloop side by side with Pyot's ``pyot.core.resources`` and the floor.

Run ``python -m benchmarks`` (the full run, results in ``benchmarks/results/``) or
``python -m benchmarks --quick`` (every case at small counts, under a minute; what CI runs).
Pyot (``pip install pyot==6.0.9``) and matplotlib are optional: without them the report says
"not installed" and skips the plot. ``nox -s bench`` builds an environment with both.

``--instructions`` also counts instructions with callgrind (cases ``i1``-``i4``; needs valgrind).

Layout: ``_harness`` holds the timing helpers, the sample resource and the run settings;
``_cases`` the six wall-time cases of issue #4 (``CASES``; cases 1-3 are there, 4-6 in
``_case_churn``, ``_case_unmanaged`` and ``_case_scale``, and what several share, the floor
among it, in ``_case_common``); ``_instructions`` the callgrind cases of issue #11
(``INSTRUCTION_CASES``), each measured by ``_callgrind_child`` in a process of its own;
``_pyot_child`` runs Pyot's unmanaged churn in a subprocess, because it deadlocks; ``_report``
writes ``results.md``, ``results.json`` and ``churn.png``; ``__main__`` is the command line.
"""
