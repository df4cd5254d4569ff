#!/usr/bin/env bash
# The sdist and the wheel pass `twine check --strict` (metadata, README rendering on the package
# index), and the sdist installs in a clean venv and its own tests pass from the unpacked archive.
#
# Which tests: every module is collected (so each imports, and finds the files it reads, from the
# archive alone), and the modules that read files beyond the package run in full: test_docs
# (docs/, mkdocs.yml, examples/quickstart.py), test_examples (examples/, README.md), test_config
# (docs/resources.md) and test_plugin (the pytest11 entry point of the installed metadata). The
# whole suite already runs from the checkout on every Python; running it a fifth time here would
# cost minutes of CI's budget to test the same code again.
#
# Usage: bash .ci/sdist-check.sh [python]   (default python3.11; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3.11}
work=.ci-sdist
rm -rf "$work"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q build twine
"$work/tools/bin/python" -m build -q --outdir "$work/dist" .  # the sdist, then a wheel from it
"$work/tools/bin/python" -m twine check --strict "$work"/dist/*
sdist=$(ls "$work"/dist/resourceloop-*.tar.gz)
tar -xzf "$sdist" -C "$work"
unpacked=$(ls -d "$work"/resourceloop-*/)
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$sdist[test]"
cd "$unpacked"
# -P: import resourceloop from the installed sdist, not from the unpacked sources beside it.
../venv/bin/python -P -c 'import resourceloop, sys; assert "site-packages" in resourceloop.__file__, resourceloop.__file__'
../venv/bin/python -P -m pytest -q -p no:cacheprovider --collect-only tests | tail -n 1
# -m "not engine": the Celery and Dramatiq recipes start real workers (seconds each) and read no
# file the other tests of test_docs do not read.
../venv/bin/python -P -m pytest -q -p no:cacheprovider -m "not engine" \
  tests/test_docs.py tests/test_examples.py tests/test_config.py tests/test_plugin.py
