"""Writing the results: ``results.md`` (a Markdown table), ``results.json`` and ``churn.png``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ._harness import FLOOR, PYOT, RL, Row

__all__ = ["markdown", "write"]

_COLUMNS = (RL, PYOT, FLOOR)


_FORMATS = {"ns": "{:,.0f} ns", "ms": "{:,.3f} ms", "KiB": "{:,.1f} KiB"}


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


def markdown(rows: list[Row], env: dict[str, Any], quick: bool) -> str:
    lines = [
        "# resourceloop benchmarks"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}",
        f"- machine: {env['machine']}, {env['cpu']}, {env['cpus']} CPUs"
        f" (load average at start {env['load_average']})",
        f"- Python: {env['python']}",
        f"- resourceloop {env['resourceloop']} (commit {env['commit']}), "
        f"Pyot {env['pyot']}, matplotlib {env['matplotlib']}",
        "- command: `" + f"python -m benchmarks {env['argv']}".strip() + "`",
        "",
        "Medians over interleaved rounds (the order of the implementations rotates each round). "
        "Lower is better; ratios are resourceloop's value divided by the other's. "
        "The floor is the hand-written per-loop dict each case names in `benchmarks/_cases.py`.",
        "",
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
    notes = [f"- {row.case}, {row.metric}: {row.note}" for row in rows if row.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines.append("")
    return "\n".join(lines)


def _plot(data: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    churn, unmanaged = data.get("churn"), data.get("unmanaged")
    if churn is None and unmanaged is None:
        return "cases 4 and 5 not run: no plot"
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if churn is not None:
        threads = churn["threads"]
        left.plot(threads, churn[RL], "o-", label="resourceloop")
        left.plot(threads, churn[FLOOR], "s--", label="no library (hand-written dict)")
        for result in churn.get(PYOT) or []:
            if result.get("deadlock"):
                left.annotate(
                    "Pyot: deadlock",
                    (result["threads"], churn[FLOOR][threads.index(result["threads"])]),
                    textcoords="offset points",
                    xytext=(0, 14),
                    ha="center",
                    fontsize=7,
                    color="tab:red",
                )
        left.set_xscale("log", base=2)
        left.set_xticks(threads, [str(t) for t in threads])
        left.set_xlabel("threads")
        left.set_ylabel("wall-clock us per asyncio.run (3 templates)")
        left.set_title("4. threaded churn, unmanaged")
        left.set_ylim(bottom=0)
        left.legend(fontsize=8)
    if unmanaged is not None:
        for name, style in ((RL, "-"), (FLOOR, "--")):
            xs, ys = zip(*unmanaged[name]["curve"], strict=True)
            label = "resourceloop" if name == RL else "no library (hand-written dict)"
            right.plot(xs, ys, style, label=label)
        pyot = unmanaged.get(PYOT)
        if pyot and pyot.get("deadlock"):
            right.axvline(pyot["loops"], color="tab:red", linestyle=":")
            right.annotate(
                f"Pyot deadlocks after {pyot['loops']} loops",
                (pyot["loops"], 0),
                textcoords="offset points",
                xytext=(6, 30),
                fontsize=8,
                color="tab:red",
            )
        right.axhline(64, color="grey", linestyle=":", linewidth=0.8, label="target: < 64 KiB")
        right.set_xlabel("loops churned (asyncio.run-style, no manager)")
        right.set_ylabel("traced memory growth (KiB)")
        right.set_title("5. unmanaged churn: retained memory")
        right.legend(fontsize=8)
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
    return [
        *portal,
        f"wrote {out / 'results.md'}",
        f"wrote {out / 'results.json'}",
        _plot(data, out / "churn.png"),
    ]
