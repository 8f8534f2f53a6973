#!/usr/bin/env bash
# trident's main job on a fresh Debian 12 machine, end to end on the CPU:
#   1. install the dependencies (apt) and build the example programs;
#   2. render the synthetic person-search benchmark in the CUHK-SYSU layout      (examples/01_synthetic_dataset)
#   3. train the small configuration on it                                      (examples/02_train)
#   4. evaluate the trained model and, beside it, the untrained one: CUHK-SYSU protocol, gallery 50
#                                                                               (examples/03_evaluate)
#   5. search the gallery of a query and draw the top matches                   (examples/05_search)
#
#   cmake/run-main.sh [build-dir]          everything goes to out/main/ (override with TRIDENT_MAIN_OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${TRIDENT_MAIN_OUT:-out/main}
start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

cmake/install-deps.sh
stamp "dependencies installed"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)" --target 01_synthetic_dataset 02_train 03_evaluate 05_search
stamp "built"

export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # see README: LibTorch's OpenMP threads otherwise spin
ex="$build/examples"
"$ex"/01_synthetic_dataset --out "$out/synthetic" --overwrite --preview "$out/synthetic-preview.png" \
  --clutter 0.2 --train-identities 100 --min-train-appearances 4 --max-train-appearances 8 \
  --min-person-height 90 --max-person-height 170 --max-people 4
stamp "dataset written"
rm -rf "$out/train"
"$ex"/02_train --config-file cmake/main-job.toml --root "$out/synthetic" --out "$out/train"
stamp "trained"
"$ex"/03_evaluate --dataset cuhk-sysu --root "$out/synthetic" --gallery-sizes 50 \
  --checkpoint "$out/train/checkpoint.pt" --compare-untrained \
  --results "$out/results.trs" --json "$out/evaluation.json"
stamp "evaluated"
"$ex"/05_search --checkpoint "$out/train/checkpoint.pt" --dataset cuhk-sysu --root "$out/synthetic" \
  --query 1 --top-k 5 --out "$out/search.png"
stamp "done: $out/evaluation.json, $out/search.png, $out/train/curves.png"
