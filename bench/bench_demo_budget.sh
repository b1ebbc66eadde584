#!/usr/bin/env bash
# Demo training budgets (issue #17 item 4): the demo's stages up to features and labels once, then
# `maps` per budget (epochs x windows per epoch) on a copy, each timed and scored by
# bench/bench_demo.py (per-rule times, the spatial test's OA).
#
#   bash bench/bench_demo_budget.sh [WORKDIR] ["EPOCHS WINDOWS" ...]
#
# Defaults: WORKDIR /tmp/bench-demo-budget; budgets "12 48" "12 24" "6 48" "8 24" "5 40".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/tmp/bench-demo-budget}
shift || true
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=("12 48" "12 24" "6 48" "8 24" "5 40")
mkdir -p "$root/base" && cp "$repo/config.yaml" "$root/base/"
(cd "$root/base" && snakemake --snakefile "$repo/Snakefile" --cores 8 results/demo/features.zarr \
  results/demo/labels.zarr > base.log 2>&1)
for budget in "${budgets[@]}"; do
  read -r epochs windows <<< "$budget"
  dir="$root/e${epochs}w${windows}"
  rm -rf "$dir" && cp -r "$root/base" "$dir"
  printf 'train:\n  epochs: %s\n  max_windows_per_epoch: %s\n' "$epochs" "$windows" > "$dir/budget.yaml"
  start=$(date +%s)
  (cd "$dir" && snakemake --snakefile "$repo/Snakefile" --cores 8 maps --configfile config.yaml budget.yaml \
    > run.log 2>&1)
  echo "== $epochs epochs x $windows windows: maps after the features took $(( $(date +%s) - start )) s"
  python "$repo/bench/bench_demo.py" "$dir" | grep -v "^build_\|^generate_\|^search_\|^composite_"
done
