#!/usr/bin/env bash
# The ablation study of the paper's Tables 1 and 2 on the synthetic benchmark: every row trained with the main
# job's recipe (train::small_recipe) over several seeds, each evaluated with the CUHK-SYSU protocol (gallery 50),
# then one table of means, spreads and paired differences against the full method (benchmarks/ablation/table.py).
#
#   benchmarks/ablation/run.sh [--build build] [--out out/ablation] [--seeds "0 1 2"] [--rows "small ..."]
#                              [--threads N] [--tag TAG --args "02_train options"] [--reverse]
#
# Rows (02_train --list-configs): small (the full method), small-without-part, small-without-agwf,
# small-without-agwf-and-part, small-without-bin-and-un. The dataset is the main job's (cmake/run-main.sh: the
# same 01_synthetic_dataset options), written to OUT/synthetic when missing. A run whose OUT/<row>/seed<S>/
# evaluation.json exists is not repeated, so an interrupted study continues where it stopped; several invocations
# may share a study (each on its own cores: --threads 1, different --seeds or --reverse), since a run being made is
# claimed first (a folder OUT/<row>/seed<S>.claimed, removed when the run ends; left behind by a killed one). --args adds 02_train
# options to every run (e.g. "--net-option branches.part_loss.scores=probabilities"), whose folders are then
# OUT/<row>-<TAG>/seed<S> (table.py --rows "small small-TAG" compares them). On the 2-core machine each run takes
# about 5.5 minutes (docs/ablation.md). Build first:
#   cmake --build build --target 01_synthetic_dataset 02_train 03_evaluate
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build out=out/ablation seeds="0 1 2" threads=0 tag="" args="" reverse=0
rows="small small-without-part small-without-agwf small-without-agwf-and-part small-without-bin-and-un"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --args) args=$2; shift 2 ;;
    --reverse) reverse=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "ablation/run.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
  esac
done
ex="$build/examples"
for program in 01_synthetic_dataset 02_train 03_evaluate; do
  [ -x "$ex/$program" ] || { echo "ablation/run.sh: $ex/$program is not built (see --help)" >&2; exit 1; }
done
if [ -n "$args" ] && [ -z "$tag" ]; then echo "ablation/run.sh: --args needs --tag (the runs' folder suffix)" >&2; exit 2; fi
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
data="$out/synthetic"
if [ ! -f "$data/annotation/Images.mat" ]; then
  "$ex"/01_synthetic_dataset --out "$data" --overwrite \
    --clutter 0.2 --train-identities 100 --min-train-appearances 4 --max-train-appearances 8 \
    --min-person-height 90 --max-person-height 170 --max-people 4
fi
start=$(date +%s)
order=$rows
if [ "$reverse" = 1 ]; then order=$(printf '%s\n' $rows | tac | tr '\n' ' '); fi
for seed in $seeds; do
  for row in $order; do
    name="$row${tag:+-$tag}"
    run="$out/$name/seed$seed"
    if [ -f "$run/evaluation.json" ]; then echo "== $name seed $seed: done before"; continue; fi
    mkdir -p "$out/$name"
    if ! mkdir "$run.claimed" 2>/dev/null; then echo "== $name seed $seed: claimed by another invocation"; continue; fi
    echo "== $name seed $seed ($(( $(date +%s) - start )) s)"
    rm -rf "$run"
    mkdir -p "$run"
    "$ex"/02_train --config-file cmake/main-job.toml --config "$row" --seed "$seed" --threads "$threads" \
      --root "$data" --out "$run/train" $args > "$run/train.txt" 2>&1
    tail -1 "$run/train.txt"
    "$ex"/03_evaluate --dataset cuhk-sysu --root "$data" --gallery-sizes 50 --subsets none \
      --checkpoint "$run/train/checkpoint.pt" --seed "$seed" --threads "$threads" \
      --json "$run/evaluation.json.partial" > "$run/evaluate.txt" 2>&1
    mv "$run/evaluation.json.partial" "$run/evaluation.json"
    rmdir "$run.claimed"
  done
done
echo "== all runs done ($(( $(date +%s) - start )) s)"
names=""
for row in $rows; do names="$names $row${tag:+-$tag}"; done
python3 benchmarks/ablation/table.py --out "$out" --rows "$names" --seeds "$seeds" --baseline "small${tag:+-$tag}" |
  tee "$out/ablation${tag:+-$tag}.md"
