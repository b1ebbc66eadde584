#!/usr/bin/env bash
# Times the README / .ci/run test install on a fresh clone in a fresh venv and prints the figures:
#   pip install torch==2.13.0 -e ".[test]"
# (.ci/run does not upgrade pip, so neither does this script: the venv's bundled pip resolves.)
#
# Usage: bench/bench_install.sh [extra pip options, e.g. --no-cache-dir or --dry-run]
#   PYTHON=python3.11 (default) the interpreter that makes the venv
#   BENCH_INSTALL_LOG=path      keep pip's output there (else it is deleted with the clone)
# Clones the committed HEAD (uncommitted changes are not measured) into a temporary folder and
# deletes it, venv included, at the end. Not run by the tests: it takes minutes and the network.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3.11}"
work="$(mktemp -d /tmp/bench-install.XXXXXX)"
trap 'rm -rf "$work"' EXIT

git clone -q "$repo" "$work/clone"
"$python" -m venv "$work/venv"
pip="$work/venv/bin/pip"
cache_dir="$("$pip" cache dir 2>/dev/null || true)"
cache_size="$(du -sh "$cache_dir" 2>/dev/null | cut -f1 || true)"
log="$work/pip.log"

cd "$work/clone"
start=$(date +%s.%N)
status=0
"$pip" install torch==2.13.0 -e ".[test]" "$@" >"$log" 2>&1 || status=$?
end=$(date +%s.%N)
[ -n "${BENCH_INSTALL_LOG:-}" ] && cp "$log" "$BENCH_INSTALL_LOG"

echo "commit:       $(git -C "$repo" rev-parse --short HEAD)"
echo "machine:      $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "python:       $("$work/venv/bin/python" -V 2>&1)"
echo "pip:          $("$pip" -V | cut -d' ' -f1-2)"
echo "pip options:  ${*:-(none)}"
echo "pip cache:    ${cache_dir:-none} (${cache_size:-empty} before the run)"
echo "exit status:  $status"
awk -v s="$start" -v e="$end" 'BEGIN { printf "wall time:    %.0f s (%.1f min)\n", e - s, (e - s) / 60 }'
echo "backtracking: $(grep -c '^INFO: pip is .*looking at multiple versions' "$log" || true) resolver notices;" \
    "$(grep -cE '^ +Downloading (aiobotocore|boto3|botocore|s3fs)-' "$log" || true) aiobotocore/boto3/botocore/s3fs files fetched"
grep '^INFO: pip is looking at multiple versions' "$log" | sed 's/^INFO: pip is looking at multiple versions of \([^ ]*\).*/  backtracked:  \1/' || true
if [ "$status" -eq 0 ]; then
    if [[ " $* " == *" --dry-run "* ]]; then
        resolved="$(grep '^Would install' "$log" | tr ' ' '\n')"
    else
        resolved="$("$pip" list --format=freeze 2>/dev/null | sed 's/==/-/')"
    fi
    echo "resolved:"
    echo "$resolved" | grep -iE '^(torch|moto|boto3|botocore|aiobotocore|s3fs|fsspec|snakemake|snakemake-interface-common|packaging)-[0-9]' \
        | sed 's/^/  /'
else
    tail -20 "$log"
fi
exit "$status"
