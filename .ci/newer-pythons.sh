#!/usr/bin/env bash
# The test suite on CPython 3.14 and 3.15, from Debian's own packages, in a Debian sid root.
#
#   sudo bash .ci/newer-pythons.sh [--python 3.14] [--python 3.15] [--build-only] [-- PYTEST ARGS]
#
# Why a root: pyenv, uv and python-build-standalone fetch CPython from python.org or GitHub, which
# CI machines cannot reach; the Debian mirror that apt already uses serves python3.14 and
# python3.15 in sid. README.md ("Development") says how nox uses this.
#
# What it does
#   1. Builds the root with debootstrap, once: it lives outside the clone, in
#      $RESOURCELOOP_SID_ROOT (default /var/tmp/resourceloop-sid), so later CI runs on the same
#      machine and developers reuse it. It is built in "$ROOT.partial" and renamed when complete,
#      under a lock, so a half-built root is never reused and two runs never build at once.
#   2. Copies the checkout (HEAD, plus uncommitted changes and untracked files) into a fresh
#      work directory inside the root, makes a venv per Python there, installs '.[test]' and runs
#      the README's test command for one Python (python -m pytest), with a clean environment.
#
# Mounts: /proc and /dev are mounted only inside a private mount namespace (unshare -m) that
# dies with this script, so no mount can outlive it on any exit path, even SIGKILL; a trap
# unmounts them (umount -R for the /dev rbind) on every normal, failing or interrupted exit.
# The host's mount table is never touched.
#
# Environment: RESOURCELOOP_SID_ROOT (where the root lives), RESOURCELOOP_SID_MIRROR (the Debian
# mirror; default the host's apt mirror). Passed into the root: CI, PYTHONWARNINGS, PYTHONDEVMODE,
# PYTEST_ADDOPTS, PYTEST_XDIST_AUTO_NUM_WORKERS, PIP_INDEX_URL and the proxy variables; nothing else.
set -euo pipefail

ROOT=${RESOURCELOOP_SID_ROOT:-/var/tmp/resourceloop-sid}
PACKAGES=python3.14,python3.14-venv,python3.14-dev,python3.15,python3.15-venv,python3.15-dev,build-essential,ca-certificates,git
READY="$ROOT/.resourceloop-sid-ready" # holds $PACKAGES once the root is complete
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'newer-pythons: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

pythons=()
build_only=0
while (($#)); do
    case $1 in
        --python) pythons+=("$2"); shift 2 ;;
        --build-only) build_only=1; shift ;;
        --) shift; break ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (pytest arguments go after --)" ;;
    esac
done
((${#pythons[@]})) || pythons=(3.14 3.15)
for version in "${pythons[@]}"; do
    [[ ,$PACKAGES, == *,python$version,* ]] || die "python$version is not in the root (only 3.14 and 3.15)"
done

[[ $(uname -s) == Linux ]] || die "needs Linux (debootstrap, chroot, mount namespaces)"
((EUID == 0)) || die "needs root for debootstrap, chroot and mounts: sudo bash $0 $*"
command -v unshare >/dev/null || die "needs unshare (util-linux)"

seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f s", b - a }'; }

# -- 1. the root, built once ------------------------------------------------------------------

build_root() {
    local mirror partial=$ROOT.partial started
    started=$(seconds)
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    fi
    mirror=${RESOURCELOOP_SID_MIRROR:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
    mirror=${mirror:-http://deb.debian.org/debian}
    say "building the Debian sid root in $ROOT from $mirror (about 1 GB, once)"
    rm -rf "$partial"
    mkdir -p "$partial"
    # In a private mount namespace: whatever debootstrap mounts in the target dies with it.
    unshare --mount --propagation private \
        debootstrap --variant=minbase --include="$PACKAGES" sid "$partial" "$mirror" >"$partial.log" 2>&1 ||
        { tail -n 20 "$partial.log" >&2; die "debootstrap failed (log: $partial.log)"; }
    # The mirror's sid Release files can be past their Valid-Until date.
    echo 'Acquire::Check-Valid-Until "false";' >"$partial/etc/apt/apt.conf.d/99no-valid-until"
    # pip inside the root verifies the package index with the host's extra CAs as well.
    cp /usr/local/share/ca-certificates/*.crt "$partial/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$partial" update-ca-certificates >/dev/null 2>&1
    echo "$PACKAGES" >"$partial/.resourceloop-sid-ready"
    rm -rf "$ROOT" "$partial.log"
    mv "$partial" "$ROOT"
    say "root built in $(elapsed "$started")"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [[ ! -f $READY || $(cat "$READY") != "$PACKAGES" ]]; then
    build_root
else
    say "reusing the root in $ROOT"
fi
flock -u 9
((build_only)) && exit 0

# -- 2. the suite, in a private mount namespace -------------------------------------------------

# Work directories of runs that were killed outright (SIGKILL leaves no trap): a day is plenty.
find "$ROOT/var/tmp" -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
work=$(mktemp -d "$ROOT/var/tmp/run.XXXXXX")
cleanup_work() { rm -rf "$work"; }
trap cleanup_work EXIT

# The checkout as it is: HEAD, then uncommitted changes and untracked files on top, so a
# developer tests what they see and an editable install never writes into their tree.
git clone -q --no-local "$CHECKOUT" "$work/repo"
git -C "$CHECKOUT" diff --binary HEAD | git -C "$work/repo" apply --allow-empty --whitespace=nowarn
(cd "$CHECKOUT" && git ls-files -z --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work/repo"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"

inner_env=(HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=60)
for name in CI RESOURCELOOP_TEST_REDIS_URL RESOURCELOOP_TEST_POSTGRES_DSN PYTHONWARNINGS PYTHONDEVMODE PYTEST_ADDOPTS PYTEST_XDIST_AUTO_NUM_WORKERS PIP_INDEX_URL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [[ -n ${!name:-} ]]; then inner_env+=("$name=${!name}"); fi
done

# Runs inside the new mount namespace: mounts, chroot, and its own trap.
# shellcheck disable=SC2016
inner='
set -euo pipefail
root=$1; shift
unmount() { umount -R "$root/dev" 2>/dev/null || true; umount "$root/proc" 2>/dev/null || true; }
trap unmount EXIT
trap "exit 130" INT
trap "exit 143" TERM
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
chroot "$root" "$@"
'
script='
set -eu
cd "$WORK/repo"
status=0
for version in $PYTHONS; do
    start=$(date +%s)
    echo "newer-pythons: python$version: venv and install" >&2
    "python$version" -m venv "$WORK/venv-$version"
    "$WORK/venv-$version/bin/python" -m pip install -q -e ".[test]"
    echo "newer-pythons: python$version: $("$WORK/venv-$version/bin/python" -VV)" >&2
    "$WORK/venv-$version/bin/python" -m pytest "$@" || status=$?
    echo "newer-pythons: python$version: done in $(( $(date +%s) - start )) s (exit $status)" >&2
done
exit $status
'
started=$(seconds)
status=0
# In the background, in a process group of its own (setsid), so that a TERM or INT sent to this
# script alone reaches every process in the root; the child then unmounts and exits before this
# script removes the work directory.
setsid unshare --mount --propagation private bash -c "$inner" inner "$ROOT" \
    /usr/bin/env -i "${inner_env[@]}" WORK="${work#"$ROOT"}" PYTHONS="${pythons[*]}" \
    sh -c "$script" sh "$@" &
child=$!
trap 'kill -TERM -- "-$child" 2>/dev/null || true' INT TERM
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do wait "$child" || status=$?; done
trap - INT TERM
say "pytest on ${pythons[*]} in the root: exit $status after $(elapsed "$started")"
exit "$status"
