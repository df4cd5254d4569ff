"""Check that the built site renders completely with no network: ``python docs/_check_offline.py``.

Run after ``mkdocs build`` (``nox -s docs`` does both). Three checks, each failing loudly:

1. **No page refers to another host for what it loads.** Every HTML and CSS file under
   ``site/`` is scanned for ``<script src>``, ``<link href>`` (stylesheets, fonts, preloads,
   icons; not ``rel="canonical"`` and the like, which only name a page), ``@import`` and CSS
   ``url(...)`` that point outside the site.
2. **No page asks another host for anything while it renders.** The site is served on
   127.0.0.1 and each page in ``PAGES`` is opened in headless Chromium (Debian's ``chromium``)
   with every other host unresolvable; Chromium's network log then lists each request the page
   started, and any that is not to 127.0.0.1 fails the check (Chromium's own background
   requests, which no page starts, are not counted).
3. **The Lifecycle page's Mermaid diagram is drawn.** Material draws it into a closed shadow
   root, which ``--dump-dom`` cannot see; the server of this check (never the published site)
   prepends a small script to each page that opens shadow roots and copies each drawn ``<svg>``
   into the light DOM. The dump must then hold an SVG drawn by Mermaid (``aria-roledescription``
   set) with the diagram's labels, and no Mermaid source left undrawn. A screenshot of the page
   is written to ``build/docs-check/lifecycle.png`` for a human to look at.

With ``--screenshots`` (``nox -s docs_check -- --screenshots``) every page is also captured, at
1280 pixels wide, in ``build/docs-check/pages/``: look at them for clipped tables and labels.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
OUT = ROOT / "build" / "docs-check"
PAGES = ("", "lifecycle/", "performance/", "reference/resourceloop/")
DIAGRAM_PAGE = "lifecycle/"
#: Labels of the Lifecycle diagram (docs/lifecycle.md) that the drawn SVG must contain.
DIAGRAM_LABELS = ("resource live on L", "resource_manager() exits", "none: the child forgets")
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=20000",
)

# Prepended to each HTML page by this check's server only.
_HARNESS = b"""<script>
(() => {
  const attach = Element.prototype.attachShadow;
  Element.prototype.attachShadow = function (init) {
    return attach.call(this, Object.assign({}, init, { mode: "open" }));
  };
  setInterval(() => {
    let out = document.getElementById("offline-check");
    if (!out) {
      out = document.createElement("div");
      out.id = "offline-check";
      document.body.appendChild(out);
    }
    out.replaceChildren(...[...document.querySelectorAll("*")]
      .filter((element) => element.shadowRoot)
      .flatMap((element) => [...element.shadowRoot.querySelectorAll("svg")])
      .map((svg) => svg.cloneNode(true)));
  }, 100);
})();
</script>
"""

_REFERENCE = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*["']?([^"'\s>]+)"""
    r"""|@import\s+(?:url\()?\s*["']?([^"')\s;]+)"""
    r"""|url\(\s*["']?([^"')\s]+)""",
    re.IGNORECASE,
)
_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""\b(rel|href)\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
#: ``<link rel=...>`` values that only name a page (``site_url`` makes Material write a canonical
#: link); every other ``rel`` (stylesheet, preload, icon, manifest, ...) loads something.
_NAMING_RELS = frozenset({"canonical", "alternate", "prev", "next", "author", "license"})


def _external(reference: str) -> bool:
    parts = urlsplit(reference)
    return bool(parts.netloc) or parts.scheme not in ("", "data")


def static_references() -> list[str]:
    """``file: reference`` for each load of something outside the site."""
    found = []
    for path in sorted([*SITE.rglob("*.html"), *SITE.rglob("*.css")]):
        text = path.read_text(errors="replace")
        references = [
            next(group for group in match.groups() if group) for match in _REFERENCE.finditer(text)
        ]
        for tag in _LINK.findall(text):
            attributes = {name.lower(): value for name, value in _ATTRIBUTE.findall(tag)}
            rels = set(attributes.get("rel", "").lower().split())
            if "href" in attributes and not (rels and rels <= _NAMING_RELS):
                references.append(attributes["href"])
        found += [f"{path.relative_to(SITE)}: {ref}" for ref in references if _external(ref)]
    return found


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = _HARNESS + path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


@contextmanager
def _serve() -> Iterator[str]:
    handler = functools.partial(_Handler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-check-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit(
        "docs/_check_offline.py needs Chromium to open the built pages: "
        "apt-get update && apt-get install -y chromium"
    )


def _open(browser: str, url: str, *extra: str) -> tuple[str, list[str]]:
    """Open ``url`` in a fresh headless Chromium; return its stdout and the URLs it requested
    on behalf of the page."""
    with tempfile.TemporaryDirectory() as scratch:
        net_log = Path(scratch) / "net.json"
        result = subprocess.run(
            [
                browser,
                *BROWSER_FLAGS,
                f"--user-data-dir={Path(scratch) / 'profile'}",
                f"--log-net-log={net_log}",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"chromium failed on {url} ({result.returncode}):\n{result.stderr[-2000:]}")
        log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    origin = url.split("/", 3)[:3]
    origin_text = "/".join(origin)
    requested = sorted(
        {
            event["params"]["url"]
            for event in log["events"]
            if event["type"] == start_job
            and event.get("params", {}).get("initiator") == origin_text
        }
    )
    return result.stdout, requested


def _all_pages() -> list[str]:
    """Every page of the built site, as the path the server answers it at."""
    pages = []
    for index in sorted(SITE.rglob("index.html")):
        relative = index.parent.relative_to(SITE).as_posix()
        if relative in ("search", "404"):
            continue
        pages.append("" if relative == "." else f"{relative}/")
    return pages


def screenshots(browser: str, base: str, width: int = 1280, height: int = 4000) -> list[Path]:
    """A screenshot of every page at ``width`` x ``height`` pixels, for a person to look at
    (clipped tables, overlapping labels, unreadable diagrams): ``build/docs-check/pages/``."""
    out = OUT / "pages"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page in _all_pages():
        name = (page.strip("/").replace("/", "-") or "index") + ".png"
        _open(
            browser,
            base + page,
            f"--screenshot={out / name}",
            f"--window-size={width},{height}",
            "--hide-scrollbars",
        )
        written.append(out / name)
    return written


def main() -> None:
    all_pages = "--screenshots" in sys.argv[1:]
    if not (SITE / "index.html").is_file():
        sys.exit("site/ is not built: run `mkdocs build --strict` first (`nox -s docs`)")
    problems = [f"refers to another host: {ref}" for ref in static_references()]
    browser = _browser()
    OUT.mkdir(parents=True, exist_ok=True)
    with _serve() as base:
        for page in PAGES:
            dom, requested = _open(browser, base + page, "--dump-dom")
            local = [u for u in requested if urlsplit(u).hostname == "127.0.0.1"]
            problems += [f"/{page} requested {u}" for u in requested if u not in local]
            if not local:
                problems.append(f"/{page}: no request seen at all; is the network log working?")
            if page == DIAGRAM_PAGE:
                (OUT / "lifecycle.dom.html").write_text(dom)
                drawn = dom.partition('<div id="offline-check">')[2]
                svgs = re.findall(r"<svg\b[^>]*\baria-roledescription=\"([^\"]+)\"", drawn)
                if not svgs:
                    problems.append(f"/{page}: no diagram drawn by Mermaid in the page")
                for label in DIAGRAM_LABELS:
                    if label not in drawn:
                        problems.append(f"/{page}: the drawn diagram lacks the label {label!r}")
                if re.search(r'<pre class="mermaid"', dom):
                    problems.append(f"/{page}: Mermaid source left undrawn")
                print(f"/{page}: Mermaid drew {len(svgs)} diagram(s): {', '.join(svgs)}")
            print(
                f"/{page}: {len(requested)} requests started by the page, {len(local)} to 127.0.0.1"
            )
        screenshot = OUT / "lifecycle.png"
        _open(
            browser,
            base + DIAGRAM_PAGE,
            f"--screenshot={screenshot}",
            "--window-size=1280,1400",
            "--hide-scrollbars",
        )
        print(f"screenshot: {screenshot.relative_to(ROOT)}")
        if all_pages:
            shots = screenshots(browser, base)
            print(f"{len(shots)} page screenshots in {(OUT / 'pages').relative_to(ROOT)}")
    if problems:
        sys.exit("the site does not render offline:\n  " + "\n  ".join(problems))
    print("docs offline check: ok")


if __name__ == "__main__":
    main()
