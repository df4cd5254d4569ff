#!/usr/bin/env bash
# The checks of CI beside the test suite (.ci/run runs this beside the test sessions, with the
# environment and PATH it set up): typecheck, the wheel and sdist checks, the strict docs build
# and its offline browser check, and the quick benchmarks. Each step fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

nox -s typecheck

# The wheel builds, installs in a clean venv without any extra, and imports without aiohttp.
python -m pip install -q build
rm -rf .ci-dist .ci-wheel
python -m build -q --wheel --outdir .ci-dist
python3.11 -m venv .ci-wheel
.ci-wheel/bin/python -m pip install -q .ci-dist/*.whl
.ci-wheel/bin/python -c "import sys, resourceloop; assert 'aiohttp' not in sys.modules; print('wheel ok', resourceloop.__version__)"
# The sdist and wheel pass twine check; the sdist's own tests pass from the unpacked archive.
bash .ci/sdist-check.sh
# The documentation builds strictly (broken links and references fail), and every benchmark
# case still runs (small counts; it reports, it does not gate on numbers).
# The docs session fetches Mermaid from the npm registry and opens the built site in Debian's
# Chromium with no network (docs/_check_offline.py): install them where they are missing.
# Only what is missing: a machine whose npm came with NodeSource's nodejs (which conflicts with
# Debian's npm package) keeps its npm.
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
nox -s docs docs_check
nox -s bench-3.11 -- --quick

