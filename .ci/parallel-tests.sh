#!/usr/bin/env bash
# Run groups of nox sessions side by side: each argument is one group, whose sessions run in
# order, or a command when it starts with "bash " (".ci/checks.sh" beside the tests); every
# group logs to its own file, printed whole when it ends. Exits non-zero if any
# group failed; a TERM or INT stops every group.
set -uo pipefail
# Job control: each group runs in a process group of its own, and, unlike a plain background
# job, without SIGINT and SIGQUIT ignored (the Ctrl-C tests need the usual disposition).
set -m
logs=$(mktemp -d)
pids=()
trap 'for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null; done; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM
i=0
for group in "$@"; do
    case $group in
        # shellcheck disable=SC2086 # a command and its arguments, split on spaces
        "bash "*) $group >"$logs/$i.log" 2>&1 & ;;
        # shellcheck disable=SC2086 # a group is a space-separated list of session names
        *) nox --error-on-missing-interpreters -s $group >"$logs/$i.log" 2>&1 & ;;
    esac
    pids+=($!)
    i=$((i + 1))
done
status=0
i=0
for pid in "${pids[@]}"; do
    if wait "$pid"; then result=ok; else result=failed; status=1; fi
    echo "===== group $((i + 1)): $(echo "${@:i+1:1}") ($result) ====="
    cat "$logs/$i.log"
    i=$((i + 1))
done
pids=()
exit $status
