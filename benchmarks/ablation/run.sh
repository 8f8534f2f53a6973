#!/usr/bin/env bash
# The ablation study of the paper's Tables 1 and 2 on the synthetic benchmark: every row trained with the main
# job's recipe (train::small_recipe) over several seeds, each evaluated with the CUHK-SYSU protocol (gallery 50),
# then one table of means, spreads and paired differences against the full method (benchmarks/ablation/table.py).
#
#   benchmarks/ablation/run.sh [--build build] [--out out/ablation] [--seeds "0 1 2"] [--rows "small ..."]
#                              [--threads N]
#
# Rows (02_train --list-configs): small (the full method), small-without-part, small-without-agwf,
# small-without-agwf-and-part, small-without-bin-and-un. The dataset is the main job's (cmake/run-main.sh: the
# same 01_synthetic_dataset options), written to OUT/synthetic when missing. A run whose OUT/<row>/seed<S>/
# evaluation.json exists is not repeated, so an interrupted study continues where it stopped. On the 2-core
# machine each run takes about 5.5 minutes (docs/ablation.md). Build first:
#   cmake --build build --target 01_synthetic_dataset 02_train 03_evaluate
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build out=out/ablation seeds="0 1 2" threads=0
rows="small small-without-part small-without-agwf small-without-agwf-and-part small-without-bin-and-un"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "ablation/run.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
  esac
done
ex="$build/examples"
for program in 01_synthetic_dataset 02_train 03_evaluate; do
  [ -x "$ex/$program" ] || { echo "ablation/run.sh: $ex/$program is not built (see --help)" >&2; exit 1; }
done
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
data="$out/synthetic"
if [ ! -f "$data/annotation/Images.mat" ]; then
  "$ex"/01_synthetic_dataset --out "$data" --overwrite \
    --clutter 0.2 --train-identities 100 --min-train-appearances 4 --max-train-appearances 8 \
    --min-person-height 90 --max-person-height 170 --max-people 4
fi
start=$(date +%s)
for seed in $seeds; do
  for row in $rows; do
    run="$out/$row/seed$seed"
    if [ -f "$run/evaluation.json" ]; then echo "== $row seed $seed: done before"; continue; fi
    echo "== $row seed $seed ($(( $(date +%s) - start )) s)"
    rm -rf "$run"
    mkdir -p "$run"
    "$ex"/02_train --config-file cmake/main-job.toml --config "$row" --seed "$seed" --threads "$threads" \
      --root "$data" --out "$run/train" > "$run/train.txt" 2>&1
    tail -1 "$run/train.txt"
    "$ex"/03_evaluate --dataset cuhk-sysu --root "$data" --gallery-sizes 50 --subsets none \
      --checkpoint "$run/train/checkpoint.pt" --seed "$seed" --threads "$threads" \
      --json "$run/evaluation.json.partial" > "$run/evaluate.txt" 2>&1
    mv "$run/evaluation.json.partial" "$run/evaluation.json"
  done
done
echo "== all runs done ($(( $(date +%s) - start )) s)"
python3 benchmarks/ablation/table.py --out "$out" --rows "$rows" --seeds "$seeds" | tee "$out/ablation.md"
