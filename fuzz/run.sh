#!/usr/bin/env bash
# Runs trident's fuzzers (fuzz/*.cpp, libFuzzer) for SECONDS each, one after the other, and prints for each the
# executions, the coverage (libFuzzer's cov: edges and ft: features) and any crash, hang or out-of-memory input.
#   fuzz/run.sh SECONDS [harness...]        (default: every harness; names as in fuzz/CMakeLists.txt)
# Installs what is missing (cmake/install-deps.sh --fuzzers: Clang 14, libFuzzer), then configures and builds
# build-fuzz/ with Clang when needed (TRIDENT_FUZZ_BUILD overrides the folder; TRIDENT_FUZZ_TIMEOUT the seconds one
# input may take before it counts as a hang, default 10; extra libFuzzer flags in TRIDENT_FUZZ_FLAGS). Seeds: trident_fuzz_make_corpus's files, the small torch.save test
# fixtures and the committed findings (tests/fixtures/fuzz/<harness>/). New corpus inputs go to
# <build>/fuzz/corpus/<harness>/, findings to <build>/fuzz/findings/<harness>/. Exits 1 when a harness found
# something.
set -euo pipefail
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 SECONDS [harness...]" >&2
  exit 2
fi
seconds=$1
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TRIDENT_FUZZ_BUILD:-$root/build-fuzz}
all=(results_binary results_json dataset_json gallery_index tensor_file cuhk_sysu prw checkpoint picture)
harnesses=("$@")
[[ ${#harnesses[@]} -gt 0 ]] || harnesses=("${all[@]}")

"$root/cmake/install-deps.sh" --fuzzers >/dev/null
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTRIDENT_BUILD_FUZZERS=ON -DTRIDENT_BUILD_TESTS=OFF -DTRIDENT_BUILD_EXAMPLES=OFF \
    -DTRIDENT_BUILD_BENCHMARKS=OFF -DTRIDENT_WITH_FAISS=OFF
fi
targets=(trident_fuzz_make_corpus)
for h in "${harnesses[@]}"; do targets+=("trident_fuzz_$h"); done
cmake --build "$build" --target "${targets[@]}" -- -j"${TRIDENT_FUZZ_JOBS:-2}"

seeds=$build/fuzz/seeds
[[ -d $seeds ]] || "$build/fuzz/trident_fuzz_make_corpus" "$seeds"

# LibTorch, OpenCV and matio are not instrumented. LibTorch allocates once-per-process tables on first use
# (operator registrations, thread pools) that it never frees: leak checking would report them as leaks of the
# first input that reaches them, so it is off; every other ASan check stays on. The limits make a reader that
# allocates from an unchecked count a finding (malloc_limit_mb: one allocation; rss_limit_mb: the process).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

status=0
printf '%-15s %10s %8s %7s %7s %8s  %s\n' harness executions exec/s cov ft corpus findings
for h in "${harnesses[@]}"; do
  corpus=$build/fuzz/corpus/$h
  findings=$build/fuzz/findings/$h
  mkdir -p "$corpus" "$findings"
  dirs=("$corpus" "$seeds/$h")
  [[ -d $root/tests/fixtures/fuzz/$h ]] && dirs+=("$root/tests/fixtures/fuzz/$h")
  if [[ $h == tensor_file ]]; then
    mkdir -p "$build/fuzz/fixture-seeds/$h"
    cp "$root"/tests/fixtures/{boxes,box_coder,nms}.pt "$build/fuzz/fixture-seeds/$h/"
    dirs+=("$build/fuzz/fixture-seeds/$h")
  fi
  log=$build/fuzz/$h.log
  limits=(-rss_limit_mb=2560 -malloc_limit_mb=1024)
  if [[ $h == cuhk_sysu || $h == prw ]]; then
    # matio 1.5.23 allocates from the dimensions a file declares before it reads them (8 GB for a 1.9 KB file:
    # fuzz/known-issues/, docs/reliability.md). On Linux such an allocation is virtual and matio then fails at
    # the end of the file, but under ASan each costs seconds and stops every run at the malloc limit. So the
    # mat harnesses run as on a machine without overcommit: ASan refuses allocations over 1 GB with NULL,
    # which matio checks (trident's own allocations over 1 GB are still reported by ASan: a finding).
    limits=(-rss_limit_mb=2560 -malloc_limit_mb=2048)
    asan=$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=1024
  else
    asan=$ASAN_OPTIONS
  fi
  set +e
  ASAN_OPTIONS=$asan "$build/fuzz/trident_fuzz_$h" -max_total_time="$seconds" -timeout="${TRIDENT_FUZZ_TIMEOUT:-10}" "${limits[@]}" \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" ${TRIDENT_FUZZ_FLAGS:-} "${dirs[@]}" \
    >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1) || true
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1) || true
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*') || true
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*') || true
  units=$(find "$corpus" -type f | wc -l)
  found=$(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/Test unit written to //' | tr '\n' ' ') || true
  printf '%-15s %10s %8s %7s %7s %8s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$units" \
    "${found:-none}"
  if [[ $rc -ne 0 || -n $found ]]; then
    status=1
    echo "  $h: exit $rc; log $log:" >&2
    { grep -E "ERROR|SUMMARY|==[0-9]+==|runtime error|terminate called|what\(\)" "$log" | head -8 | sed "s/^/    /" >&2; } || true
  fi
done
exit $status
