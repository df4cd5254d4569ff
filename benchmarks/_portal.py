"""Case ``portal``: sync callers on fresh loops, on resourceloop's portal, on anyio's portal.

The seed's workload (issue #13): ``threads`` threads make ``calls`` blocking calls, each one
summoner + one match history + 5 matches (through ``resourceloop.queue.Queue``) against the
demo server's API on 127.0.0.1 with 2 ms latency, over plain HTTP and over HTTPS (a
self-signed certificate made here, with ``cryptography`` or the ``openssl`` command).

``per-call loops``
    ``@async_to_sync`` (a fresh loop per call), ``async with resource_manager(), Queue()``:
    each call's loop gets its own ``ClientSession``, released when the loop closes.
``resourceloop portal``
    The same function with ``@async_to_sync(portal=...)``: one loop in a daemon thread,
    the session made once and reused by every call; released when the portal closes.
``anyio portal``
    ``anyio.from_thread.start_blocking_portal()`` with one long-lived ``ClientSession`` made
    and closed by hand, what an experienced user writes instead (no resource_manager).

Measured: wall-clock time per call (all calls, all threads, divided by the number of calls;
the portal's start and close are outside the timing) and TCP connections the server accepted
(distinct client addresses seen by its handlers). Median over six rounds that run the three
modes in every order once, each run starting after the server closed the previous run's
connections and a ``gc.collect()``.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import math
import shutil
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

import resourceloop
from resourceloop import resource_manager
from resourceloop.contrib.aiohttp import client_session_template
from resourceloop.demo.server import DemoServer, expected_average_duration_millis
from resourceloop.queue import Queue
from resourceloop.sync import Portal, async_to_sync

from ._harness import Row, Settings, environment

__all__ = ["case_portal"]

PER_CALL = "per-call loops"
PORTAL = "resourceloop portal"
ANYIO = "anyio portal"
MODES = (PER_CALL, PORTAL, ANYIO)

THREADS = 8
MATCHES = 5
LATENCY = 0.002
CONNECTION_LIMIT = 100  # aiohttp's TCPConnector default: the pool's limit in every mode


# -- the server: the demo's API (it counts connections), over HTTP or HTTPS ---------------------


def _self_signed(directory: Path) -> tuple[Path, Path, str]:
    """A certificate and key for 127.0.0.1 in ``directory``; returns what made them."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError(
                "HTTPS needs the cryptography package or the openssl command"
            ) from None
        command = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        command += ["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
        command += ["-addext", "subjectAltName=IP:127.0.0.1"]
        command += ["-keyout", str(key), "-out", str(cert)]
        subprocess.run(command, check=True, capture_output=True)
        return cert, key, "openssl"
    import ipaddress

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key, "cryptography"


# -- the seed's body ------------------------------------------------------------------------------


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def _average(session: aiohttp.ClientSession, base: str, name: str) -> float:
    """One summoner, its history, its first 5 matches through a Queue: the seed's example."""
    async with Queue() as queue:
        summoner = await _get_json(session, f"{base}/lol/summoner/v4/summoners/by-name/{name}")
        ids = await _get_json(
            session, f"{base}/lol/match/v5/matches/by-puuid/{summoner['puuid']}/ids?count=20"
        )
        for match_id in ids[:MATCHES]:
            await queue.put(_get_json(session, f"{base}/lol/match/v5/matches/{match_id}"))
        matches = await queue.join()
    return float(statistics.mean([m["info"]["gameDuration"] * 1000 for m in matches] or [0]))


class Workload:
    """The three ways to run the seed's function from ``THREADS`` sync threads."""

    def __init__(self, server: DemoServer, client_ssl: ssl.SSLContext | None) -> None:
        self.server = server
        self.base = server.url
        connector: Callable[[], aiohttp.BaseConnector] = (
            (lambda: aiohttp.TCPConnector(ssl=client_ssl, limit=CONNECTION_LIMIT))
            if client_ssl is not None
            else (lambda: aiohttp.TCPConnector(limit=CONNECTION_LIMIT))
        )
        self.connector = connector
        self.session = client_session_template(
            name=f"bench-{'https' if client_ssl else 'http'}",
            lazy=True,
            connector_factory=connector,
        )

    async def seed_function(self, name: str) -> float:
        async with resource_manager():
            session = await self.session.acquire()
            return await _average(session, self.base, name)

    def run(self, mode: str, names: list[str]) -> tuple[float, int]:
        """Seconds per call and connections accepted, for one pass over ``names``."""
        self._settle()
        self.server.peers.clear()
        if mode == PER_CALL:
            seconds = _timed(async_to_sync(self.seed_function), names)
        elif mode == PORTAL:
            with Portal(name="bench-portal") as portal:
                portal.start()
                seconds = _timed(async_to_sync(self.seed_function, portal=portal), names)
        else:
            seconds = self._run_anyio(names)
        return seconds / len(names), len(self.server.peers)

    def _settle(self) -> None:
        """Start from a quiet process: garbage collected, and the server done closing the last
        run's connections (2,000 TLS shutdowns after per-call loops would slow the next mode)."""
        gc.collect()
        deadline = time.monotonic() + 10.0
        while self.server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)  # a benchmark, not a test: bounded polling of the server's count

    def _run_anyio(self, names: list[str]) -> float:
        from anyio.from_thread import start_blocking_portal

        async def open_session() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(connector=self.connector())

        with start_blocking_portal() as portal:
            session = portal.call(open_session)
            try:

                def call(name: str) -> float:
                    return portal.call(_average, session, self.base, name)

                seconds = _timed(call, names)
            finally:
                portal.call(session.close)
        return seconds


def _timed(function: Callable[[str], float], names: list[str]) -> float:
    with ThreadPoolExecutor(THREADS, thread_name_prefix="bench-caller") as pool:
        start = time.perf_counter()
        results = list(pool.map(function, names))
        seconds = time.perf_counter() - start
    for name, value in zip(names, results, strict=True):
        if not math.isclose(value, expected_average_duration_millis(name, MATCHES)):
            raise AssertionError(f"wrong answer for {name}: {value}")
    return seconds


def _anyio_version() -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version("anyio")
    except Exception:
        return None


@contextlib.contextmanager
def _servers() -> Iterator[dict[str, tuple[DemoServer, ssl.SSLContext | None, str]]]:
    with tempfile.TemporaryDirectory(prefix="resourceloop-bench-tls-") as tmp:
        cert, key, maker = _self_signed(Path(tmp))
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        client_ssl = ssl.create_default_context(cafile=str(cert))
        with DemoServer(LATENCY, None) as http, DemoServer(LATENCY, server_ssl) as https:
            yield {"HTTP": (http, None, "plain"), "HTTPS": (https, client_ssl, maker)}


def case_portal(settings: Settings, data: dict[str, Any]) -> list[Row]:
    """Run the three modes over HTTP and HTTPS; print and record their table."""
    calls = 80 if settings.quick else 400
    # The two portals run in adjacent pairs, alternately first (AB BA AB ...), so a pair sees
    # the same machine and the paired ratio cancels most of the load other jobs put on it;
    # the per-call loops (several times slower, not part of the target) run in three rounds.
    pairs = 1 if settings.quick else 10
    rounds = pairs
    names = [f"summoner-{i:03d}" for i in range(calls)]
    anyio_version = _anyio_version()
    env = environment()
    modes = [m for m in MODES if m != ANYIO or anyio_version is not None]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with _servers() as servers:
        for scheme, (server, client_ssl, maker) in servers.items():
            workload = Workload(server, client_ssl)
            samples: dict[str, list[tuple[float, int]]] = {m: [] for m in modes}
            for mode in modes:  # warm-up: imports, TLS setup, caches
                workload.run(mode, names[: THREADS * 2])
            per_call_at = {0} if settings.quick else {0, pairs // 2, pairs - 1}
            ratios: list[float] = []
            for index in range(pairs):
                if index in per_call_at:
                    samples[PER_CALL].append(workload.run(PER_CALL, names))
                pair = [PORTAL, ANYIO] if index % 2 == 0 else [ANYIO, PORTAL]
                timed = {m: workload.run(m, names) for m in pair if m in samples}
                for mode, sample in timed.items():
                    samples[mode].append(sample)
                if ANYIO in timed:
                    ratios.append(timed[PORTAL][0] / timed[ANYIO][0])
            results[scheme] = {
                mode: {
                    "ms_per_call": statistics.median(s for s, _ in samples[mode]) * 1000,
                    "best_ms_per_call": min(s for s, _ in samples[mode]) * 1000,
                    "connections": max(c for _, c in samples[mode]),
                    "samples_ms": [round(s * 1000, 3) for s, _ in samples[mode]],
                    "connections_per_round": [c for _, c in samples[mode]],
                }
                for mode in modes
            }
            results[scheme]["certificate"] = {"made_with": maker}
            if ratios:
                results[scheme][PORTAL]["paired_ratios"] = [round(r, 3) for r in ratios]
                results[scheme][PORTAL]["paired_ratio"] = statistics.median(ratios)
    stats = resourceloop.stats()
    live = sum(stats.resources_live.values())
    balanced = (
        stats.acquisitions
        == stats.graceful_releases + stats.forced_releases + stats.release_failures + live
    )
    table = markdown(
        results,
        calls=calls,
        rounds=rounds,
        anyio_version=anyio_version,
        balanced=balanced,
        quick=settings.quick,
        env=env,
    )
    data["portal"] = {
        "calls": calls,
        "rounds": rounds,
        "threads": THREADS,
        "latency_ms": LATENCY * 1000,
        "anyio": anyio_version,
        "results": results,
        "books_balanced": balanced,
        "markdown": table,
    }
    print()
    print(table)
    return []


def markdown(
    results: dict[str, dict[str, dict[str, Any]]],
    *,
    calls: int,
    rounds: int,
    anyio_version: str | None,
    balanced: bool,
    quick: bool,
    env: dict[str, Any],
) -> str:
    lines = [
        "# Sync callers: per-call loops, resourceloop's portal, anyio's portal"
        + (" (quick run: small counts, not for quoting)" if quick else ""),
        "",
        f"- date: {env['date']}; {env['python']}; {env['machine']}, {env['cpus']} CPUs (load "
        f"average at start {env['load_average']}); resourceloop {env['resourceloop']} "
        f"(commit {env['commit']})",
        "- command: `python -m benchmarks --cases portal" + (" --quick`" if quick else "`"),
        "",
        f"{THREADS} threads, {calls} calls per run, each one summoner + one history + "
        f"{MATCHES} matches against the demo API on 127.0.0.1 ({LATENCY * 1000:g} ms latency per "
        f"response). The portals ran {rounds} times each in adjacent pairs, alternately first; "
        "the per-call loops 3 times (once in a quick run); every run started after the server "
        "closed the previous run's connections. ms per call: median over the runs; vs anyio: "
        "the median of the paired ratios. Connections: TCP connections the "
        f"server accepted during a run, the most over the rounds (pool limit "
        f"{CONNECTION_LIMIT}). anyio "
        f"{anyio_version or 'not installed'}; books balanced after the runs: {balanced}.",
        "",
        "| transport | mode | ms per call (median) | best run | connections | vs anyio "
        "| target | holds |",
        "|---|---|--:|--:|--:|--:|---|---|",
    ]
    for scheme, modes in results.items():
        anyio = modes.get(ANYIO)
        for mode in MODES:
            row = modes.get(mode)
            if row is None:
                lines.append(f"| {scheme} | {mode} | not installed | | | | | |")
                continue
            ratio = row["ms_per_call"] / anyio["ms_per_call"] if anyio else None
            ratio = row.get("paired_ratio", ratio)
            target = holds = ""
            if mode == PORTAL:
                target = f"<= 1.1x anyio, <= {CONNECTION_LIMIT} connections"
                ok = row["connections"] <= CONNECTION_LIMIT and row["connections"] < calls
                if ratio is not None:
                    ok = ok and ratio <= 1.1
                holds = "yes" if ok else "**no**"
            lines.append(
                f"| {scheme} | {mode} | {row['ms_per_call']:.3f} | {row['best_ms_per_call']:.3f} "
                f"| {row['connections']} | "
                + (f"{ratio:.2f}x" if ratio is not None else "")
                + f" | {target} | {holds} |"
            )
    lines.append("")
    return "\n".join(lines)
