"""Fetch the browser assets the documentation site serves itself: ``python docs/_vendor.py``.

The site must render completely with no network (an air-gapped reader, a docs tarball, CI), so
nothing is loaded from a CDN. Material for MkDocs loads Mermaid from a CDN unless a global
``mermaid`` is already defined; ``mkdocs.yml`` therefore lists ``assets/vendor/mermaid.min.js``
under ``extra_javascript``, and the build hook (``docs/_hooks.py``) publishes the file this
script puts in ``build/docs-vendor/``. Fonts are the reader's own (``theme.font: false``).

The file comes from the npm registry with ``npm pack`` (npm checks the tarball against the
registry's integrity hash), pinned to one version, and is checked against the SHA-256 recorded
here, so a build never silently picks up different code. To upgrade: change ``VERSION``, run
this script with ``--print-digest``, and record the new digest.

``nox -s docs`` runs it before ``mkdocs build``. It does nothing when the file is already there
with the right digest.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "build" / "docs-vendor"

PACKAGE = "mermaid"
VERSION = "11.12.2"  # Material 9.x integrates Mermaid 11
MEMBERS = {  # file in the npm tarball -> file in VENDOR
    "package/dist/mermaid.min.js": "mermaid.min.js",
    "package/LICENSE": "mermaid.LICENSE",
}
SHA256 = {"mermaid.min.js": "d0830a6c05546e9edb8fe20a8f545f3e0dc7c4c3134d584bad9c13a99d7a71e0"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _present() -> bool:
    return all((VENDOR / name).is_file() for name in MEMBERS.values()) and all(
        _digest(VENDOR / name) == digest for name, digest in SHA256.items()
    )


def fetch(*, check_digest: bool = True) -> None:
    """Download ``PACKAGE@VERSION`` with ``npm pack`` and extract ``MEMBERS`` into ``VENDOR``."""
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("docs/_vendor.py needs npm (Debian: apt-get install -y npm) to fetch mermaid")
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", scratch, "--silent"],
            check=True,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
        )
        (tarball,) = Path(scratch).glob("*.tgz")
        VENDOR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for member, name in MEMBERS.items():
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - a directory, not a file
                    sys.exit(f"{member} is not a file in {tarball.name}")
                (VENDOR / name).write_bytes(source.read())
    if check_digest:
        for name, digest in SHA256.items():
            found = _digest(VENDOR / name)
            if found != digest:
                (VENDOR / name).unlink()
                sys.exit(
                    f"{name} from {PACKAGE}@{VERSION} has SHA-256 {found}, expected {digest}: "
                    "not using it"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--print-digest",
        action="store_true",
        help="fetch without checking, and print the digests to record in SHA256",
    )
    args = parser.parse_args()
    if args.print_digest:
        fetch(check_digest=False)
        for name in SHA256:
            print(name, _digest(VENDOR / name))
        return
    if not _present():
        fetch()
    print(f"docs assets: {PACKAGE}@{VERSION} in {VENDOR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
