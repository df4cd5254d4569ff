"""Writing the results: ``results.md`` (a Markdown table), ``results.json`` and ``churn.png``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ._callgrind_child import ATEXIT, BARE, LOOP_LOCAL, RUNVAR
from ._harness import FLOOR, PYOT, RL, Row
from ._instructions import LIMIT

__all__ = ["draw_churn", "markdown", "write"]

_COLUMNS = (RL, PYOT, FLOOR)


_FORMATS = {
    "ns": "{:,.0f} ns",
    "ms": "{:,.3f} ms",
    "KiB": "{:,.1f} KiB",
    "B": "{:,.0f} B",
    "instr": "{:,.0f}",
    "%": "{:.3f}%",
}


def _number(value: Any, unit: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if unit == "us":
        return f"{value:,.1f} us" if value < 1000 else f"{value:,.0f} us"
    return _FORMATS.get(unit, "{:,.3g}").format(value)


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _holds(row: Row) -> str:
    if row.holds is None:
        return ""
    return "yes" if row.holds else "**no**"


def _commit(env: dict[str, Any]) -> str:
    dirty = env.get("dirty") or []
    if not dirty:
        return f"commit {env['commit']}, no uncommitted changes"
    shown = ", ".join(f"`{path}`" for path in dirty[:8]) + (", ..." if len(dirty) > 8 else "")
    return f"commit {env['commit']} **plus uncommitted changes** to {shown}"


def _table(rows: list[Row], env: dict[str, Any]) -> list[str]:
    lines = [
        f"| case | metric | resourceloop | Pyot {env['pyot']} | floor | rl / floor | rl / Pyot "
        "| target | holds |",
        "|---|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for row in rows:
        cells = [_number(row.values.get(name, ""), row.unit) for name in _COLUMNS]
        lines.append(
            f"| {row.case} | {row.metric} | "
            + " | ".join(cells)
            + f" | {_ratio(row.ratio(FLOOR))} | {_ratio(row.ratio(PYOT))}"
            + f" | {row.target} | {_holds(row)} |"
        )
    return lines


def _phase_table(rows: list[Row], title: str, columns: dict[str, str]) -> list[str]:
    """Phases per lifetime: a column per implementation, and resourceloop minus the floor."""
    lines = [
        f"| {title} | " + " | ".join(columns.values()) + " | rl - floor |",
        "|---|" + "--:|" * (len(columns) + 1),
    ]
    for row in rows:
        values = [row.values.get(name) for name in columns]
        rl, floor = row.values.get(RL), row.values.get(FLOOR)
        diff = f"{rl - floor:+,.0f}" if isinstance(rl, float) and isinstance(floor, float) else ""
        cells = [_number(v, row.unit) if v is not None else "" for v in values]
        lines.append(f"| {row.metric} | " + " | ".join(cells) + f" | {diff} |")
    return lines


def _peer_table(rows: list[Row], env: dict[str, Any]) -> list[str]:
    """Issue #21's table: resourceloop, the floor, each peer and the row's limit design."""
    columns = (RL, FLOOR, ATEXIT, LOOP_LOCAL, RUNVAR, PYOT, LIMIT)
    heads = [
        "resourceloop",
        "floor",
        f"asyncio-atexit {env.get('asyncio_atexit', '')}",
        f"asyncio-loop-local {env.get('asyncio_loop_local', '')}",
        f"anyio {env.get('anyio', '')} `RunVar`",
        f"Pyot {env['pyot']}",
        "limit design",
    ]
    lines = [
        "| SIGINT | job | " + " | ".join(heads) + " | rl / floor | rl / asyncio-atexit "
        "| rl / limit | target | holds |",
        "|---|---|" + "--:|" * (len(columns) + 3) + "---|---|",
    ]
    for row in rows:
        cells = [_number(row.values.get(name, ""), row.unit) for name in columns]
        ratios = [_ratio(row.ratio(name)) for name in (FLOOR, ATEXIT, LIMIT)]
        state = row.case.removeprefix("I5. SIGINT ")
        lines.append(
            f"| {state} | {row.metric} | "
            + " | ".join(cells + ratios)
            + f" | {row.target} | {_holds(row)} |"
        )
    return lines


def markdown(rows: list[Row], env: dict[str, Any], quick: bool) -> str:
    wall = [row for row in rows if row.kind == "wall"]
    instructions = [row for row in rows if row.kind == "instructions"]
    phases = [row for row in rows if row.kind == "phases"]
    peers = [row for row in rows if row.kind == "peers"]
    lines = [
        "# resourceloop benchmarks"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}",
        f"- machine: {env['machine']}, {env['cpu']}, {env['cpus']} CPUs"
        f" (load average at start {env['load_average']})",
        f"- Python: {env['python']}",
        f"- resourceloop {env['resourceloop']} ({_commit(env)}), "
        f"Pyot {env['pyot']}, matplotlib {env['matplotlib']}",
    ]
    if "valgrind" in env:
        lines.append(f"- instruction counts: {env['valgrind']} (callgrind)")
    if "asyncio_atexit" in env:
        lines.append(
            f"- peers: asyncio-atexit {env['asyncio_atexit']}, asyncio-loop-local "
            f"{env['asyncio_loop_local']}, anyio {env['anyio']}"
        )
    lines += [
        "- command: `" + f"python -m benchmarks {env['argv']}".strip() + "`",
        "",
    ]
    if wall:
        lines += [
            "### Wall time",
            "",
            "Medians over interleaved rounds (the order of the implementations rotates each "
            "round). Lower is better; ratios are resourceloop's value divided by the other's. "
            "The floor is the hand-written per-loop dict each case names in "
            "`benchmarks/_cases.py` and the `benchmarks/_case_*.py` modules.",
            "",
            *_table(wall, env),
            "",
        ]
    if instructions:
        lines += [
            "### Instructions",
            "",
            "Instructions executed (callgrind's `Ir`, every thread) per operation, counted "
            "between two marks in a child process, so interpreter start-up, imports and "
            "warm-up are left out; the mean of the runs each note lists. These do not move "
            "with the load on the machine. The floor is the hand-written per-loop dict each "
            "workload names in `benchmarks/_callgrind_child.py`.",
            "",
            *_table(instructions, env),
            "",
        ]
    if peers:
        lines += [
            "### Beside the peers and the limit designs (issue #21, I5)",
            "",
            "Instructions per `asyncio.run` lifetime (or per hit), every implementation "
            "counted in the same run, with SIGINT at Python's default handler (as in a "
            "terminal: `asyncio.run` then installs and restores its own) and with SIGINT "
            "ignored (a process started in the background: it does not). The limit designs "
            "are hand-written minimal (`benchmarks/_callgrind_child.py`): (a) an `async with` "
            "that releases in its exit, the managed row's; (b) a close hook that runs the "
            "releases, plus one weak reference per loop, the other rows'. A cell that names "
            "no number says why the peer cannot do that job.",
            "",
            *_peer_table(peers, env),
            "",
        ]
    if any(row.case.startswith("I4") for row in phases):
        lines += [
            "Where I1's instructions go, per lifetime: each phase ends at a mark "
            "(`PHASES` in `benchmarks/_callgrind_child.py`). Every phase includes its mark, "
            "about 2,200 instructions, the same in every column: an empty phase (resourceloop's "
            "releases by hand) shows it. Under the table, differences that split a phase: "
            "3 templates against 1 for `loop.close()`, the first acquisition against a later "
            "one.",
            "",
            *_phase_table(
                [row for row in phases if row.case.startswith("I4")],
                "phase (I1, per lifetime)",
                {RL: "resourceloop", FLOOR: "floor", BARE: "bare `asyncio.run`"},
            ),
            "",
        ]
    if any(row.case.startswith("I6") for row in phases):
        lines += [
            "Where a managed cycle's instructions go, per cycle (I6, `MANAGED_PHASES` in "
            "`benchmarks/_callgrind_child.py`, SIGINT at its default): the floor has no "
            'manager (its releases by hand fall in "manager exit"); limit design (a) is '
            "an `async with` that releases in its exit. Each phase includes its mark, as in I4.",
            "",
            *_phase_table(
                [row for row in phases if row.case.startswith("I6")],
                "phase (managed cycle)",
                {RL: "resourceloop", FLOOR: "floor", LIMIT: "limit (a)"},
            ),
            "",
        ]
    notes = [f"- {row.case}, {row.metric}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    missed: dict[str, list[str]] = {}  # why -> the rows it explains, one paragraph per case
    for row in rows:
        if row.holds is False:
            why = row.why or (
                "no known reason; small counts are noisy, so rerun it without --quick on a "
                "quiet machine before trusting it"
                if quick
                else "no known reason yet: this is a finding to look into"
            )
            missed.setdefault(why, []).append(row.case)
    if missed:
        lines += ["", "Targets that do not hold, and why:", ""]
        for why, cases in missed.items():
            names = sorted(set(cases), key=cases.index)
            lines.append(f"- {', '.join(names)}: {why}.")
    lines.append("")
    return "\n".join(lines)


def _pyot_per_loop_us(result: dict[str, Any]) -> float | None:
    """Pyot's time per ``asyncio.run`` in one churn result, or None if it did not finish."""
    if result.get("deadlock") or result.get("errors") or "error" in result:
        return None
    if "seconds" not in result:
        return None
    return float(result["seconds"]) / max(int(result["loops"]), 1) * 1e6


def draw_churn(axes: Any, churn: dict[str, Any], pyot_version: str) -> None:
    """Case 4 on ``axes``: resourceloop, the floor, and Pyot where it has a time.

    Where Pyot deadlocked (or failed) there is no time to plot: a red cross stands on Pyot's
    own row, a band above every measured line, labelled with what happened, so it can never be
    read as a point of another line.
    """
    threads = churn["threads"]
    axes.plot(threads, churn[RL], "o-", label="resourceloop")
    axes.plot(threads, churn[FLOOR], "s--", label="no library (hand-written dict)")
    results = churn.get(PYOT) or []
    measured = [(r["threads"], _pyot_per_loop_us(r)) for r in results]
    timed = [(t, us) for t, us in measured if us is not None]
    if timed:
        xs, ys = zip(*timed, strict=True)
        axes.plot(xs, ys, "^-.", color="tab:red", label=f"Pyot {pyot_version}".strip())
    stopped = [r for r, (_, us) in zip(results, measured, strict=True) if us is None]
    highest = max([*churn[RL], *churn[FLOOR], *(us for _, us in timed)])
    band = highest * 1.2
    if stopped:
        axes.plot(
            [r["threads"] for r in stopped],
            [band] * len(stopped),
            "x",
            color="tab:red",
            markersize=9,
            label=f"Pyot {pyot_version}: no time, "
            + ("deadlocked" if all(r.get("deadlock") for r in stopped) else "deadlocked or failed"),
        )
        # One label for the row of marks, not one per thread count (they overlapped).
        loops = sorted({r["loops"] for r in stopped if r.get("deadlock")})
        what = f"deadlocked after {loops[0]} loops" if len(loops) == 1 else "deadlocked or failed"
        axes.annotate(
            f"Pyot {pyot_version}: {what} at every thread count".replace("  ", " "),
            (threads[len(threads) // 2], band),
            textcoords="offset points",
            xytext=(0, 10),
            ha="center",
            fontsize=8,
            color="tab:red",
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(threads, [str(t) for t in threads])
    axes.set_xlabel("threads")
    axes.set_ylabel("wall-clock us per asyncio.run (3 templates)")
    axes.set_title("4. threaded churn, unmanaged")
    axes.set_ylim(0, band * 1.3 if stopped else highest * 1.15)
    axes.legend(fontsize=8, loc="lower right")


def draw_retained(axes: Any, unmanaged: dict[str, Any]) -> None:
    """Case 5: what the target is about, memory resourceloop itself keeps after the churn.

    tracemalloc attributes each retained block to the frames that allocated it; the bar is the
    blocks allocated under resourceloop's own frames, after the loops and one reap. The whole
    process's growth also holds what CPython and asyncio keep for themselves (a one-off
    allocator block of about 900 KiB, the first time the heap reaches a new address range),
    which is not resourceloop's to release; the page gives it in the table, not here.
    """
    loops = unmanaged.get("loops", 0)
    ours = unmanaged[RL]["growth_ours_kib"]
    axes.bar([f"after {loops:,} loops\n+ one reap"], [ours], color="tab:blue", width=0.5)
    axes.axhline(64, color="grey", linestyle=":", linewidth=1, label="target: < 64 KiB")
    axes.annotate(
        f"{ours:.1f} KiB",
        (0, ours),
        textcoords="offset points",
        xytext=(0, 4),
        ha="center",
        fontsize=9,
    )
    axes.set_xlim(-1, 1)
    axes.set_ylim(0, 80)
    axes.set_ylabel("KiB kept, allocated by resourceloop's code")
    axes.set_title("5. memory resourceloop keeps", fontsize=11)
    axes.legend(fontsize=8, loc="upper right")


def _plot(data: dict[str, Any], path: Path, pyot_version: str = "") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    churn, unmanaged = data.get("churn"), data.get("unmanaged")
    if churn is None and unmanaged is None:
        return "cases 4 and 5 not run: no plot"
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    if churn is not None:
        draw_churn(left, churn, pyot_version)
    if unmanaged is not None:
        draw_retained(right, unmanaged)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"


def write(
    rows: list[Row], data: dict[str, Any], env: dict[str, Any], out: Path, quick: bool
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, env, quick)
    (out / "results.md").write_text(table)
    payload = {
        "environment": env,
        "quick": quick,
        "rows": [
            {
                **dataclasses.asdict(row),
                "ratio_floor": row.ratio(FLOOR),
                "ratio_pyot": row.ratio(PYOT),
            }
            for row in rows
        ],
        "samples": data,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    portal = [f"wrote {out / 'portal.md'}"] if "portal" in data else []
    if portal:
        (out / "portal.md").write_text(data["portal"]["markdown"])
    for own in ("celery", "celery_soak", "django"):
        if own in data:
            (out / f"{own}.md").write_text(data[own]["markdown"])
            portal.append(f"wrote {out / f'{own}.md'}")
    if "clients" in data:
        (out / "clients.md").write_text(data["clients"]["markdown"])
        raw = {"environment": env, **{k: v for k, v in data["clients"].items() if k != "markdown"}}
        (out / "clients.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
        portal += [f"wrote {out / 'clients.md'}", f"wrote {out / 'clients.json'}"]
    return [
        *portal,
        f"wrote {out / 'results.md'}",
        f"wrote {out / 'results.json'}",
        _plot(data, out / "churn.png", str(env.get("pyot", ""))),
    ]
