#!/usr/bin/env bash
# trident's one-command check on a GPU machine (docs/device-check.md).
#
# 1. Here, on the Debian 12 machine with the project's packages (after cmake/install-deps.sh):
#      benchmarks/device-check.sh --prepare
#    copies the header-only dependencies that a machine with only pip's PyTorch lacks — Boost.Hana (with Boost's
#    config and version headers), fmt, doctest and CLI11 — with their CMake package files into .device/prefix/
#    (git-ignored), then checks that CMake finds all four there and nowhere else.
# 2. On the GPU machine (python3 with torch + torchvision, nvcc, CMake, Ninja, a C++20 compiler; no -dev
#    packages), from the checkout's root with .device/ beside it:
#      bash benchmarks/device-check.sh [--out DIR] [--quick] [--seqnet DIR]
#    configures against that Python's LibTorch with -DTRIDENT_WITH_IO=OFF (no OpenCV, matio or JSON parts) and
#    the prefix, builds trident_tests, trident_cuda_tests (where the checkout has it), bench_network and
#    06_train_generated, then runs: the CUDA tests (ctest -L cuda), the core suite, 06_train_generated training
#    the paper configuration with mixed precision (bfloat16 autocast) on generated scenes (images/s, peak GPU
#    memory, loss curve, a search), and bench_network next to the PyTorch reference
#    (benchmarks/reference/compare.py).
#    Every step logs, runs under a time limit and the script goes on after a failure; all steps together stay
#    within --budget seconds (470 by default: under 8 minutes on a 16-core machine). It ends with a table of
#    step, exit status, seconds and key figures, printed and written to summary.md. Files in the out dir
#    ($OUT, else out/device-check): summary.md, steps.log, build.log, tests.log, compare.md, compare.json,
#    train.csv (06's per-iteration log) and profile.md (the kernel profile).
# Without a GPU (or with --cpu) the same steps run on the CPU at small sizes: a check of the build, of the
# prefix and of this script.
set -u -o pipefail

usage() {
  cat <<'EOF'
usage: benchmarks/device-check.sh --prepare
       bash benchmarks/device-check.sh [options]
  --prepare          copy Boost.Hana, fmt, doctest and CLI11 with their CMake files into .device/prefix (run here)
  --out DIR          where the logs and tables go (default: $OUT, else out/device-check)
  --quick            a one-round benchmark comparison and 150 training iterations
  --skip STEPS       leave these steps out (comma-separated: cuda-tests, roi-align, core-tests, train, compare,
                     compare-amp, graphs, profile); the build then leaves out the targets only they need
  --seqnet DIR       a SeqNet checkout, timed beside the reference when compare.py can run it
  --cpu              run on the CPU even where there is a GPU (small sizes; also the mode without a GPU)
  --python PY        the Python whose torch provides LibTorch (cmake prefix) and runs the reference (python3)
  --reference-python PY   another Python for the PyTorch reference only (default: --python)
  --build DIR        build folder, kept between runs (default: $BUILD, else /tmp/trident-device-check)
  --clean            remove the build folder first
  --jobs N           parallel compile jobs and threads (default: nproc)
  --budget S         seconds for all steps together (default 470 on a GPU, 3600 on the CPU)
  --iterations N     training iterations of 06_train_generated (default 300; --quick 150; CPU 20)
  --amp-dtype T      06's mixed precision on the GPU: bfloat16 (default) or float16 (with loss scaling)
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
prefix=$root/.device/prefix
multiarch=x86_64-linux-gnu

# ---------------------------------------------------------------------------------------------------------------
# --prepare: the dependencies the GPU machine lacks, from this machine's Debian packages.
# ---------------------------------------------------------------------------------------------------------------
prepare() {
  local lib=/usr/lib/$multiarch boost_config boost_headers fmt_lib
  boost_config=$(ls -d "$lib"/cmake/Boost-[0-9]* 2>/dev/null | sort -V | tail -1)
  boost_headers=$(ls -d "$lib"/cmake/boost_headers-[0-9]* 2>/dev/null | sort -V | tail -1)
  local need=(/usr/include/boost/hana.hpp /usr/include/boost/version.hpp /usr/include/fmt/core.h
              /usr/include/doctest/doctest.h /usr/include/CLI/CLI.hpp "$lib/cmake/fmt/fmt-config.cmake"
              /usr/lib/cmake/doctest/doctestConfig.cmake /usr/share/cmake/CLI11/CLI11Config.cmake)
  local missing=()
  for f in "${need[@]}"; do [ -e "$f" ] || missing+=("$f"); done
  [ -n "$boost_config" ] && [ -n "$boost_headers" ] || missing+=("$lib/cmake/Boost-*, boost_headers-*")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "device-check --prepare: missing ${missing[*]}" >&2
    echo "  install the packages first: cmake/install-deps.sh (libboost-dev libfmt-dev doctest-dev libcli11-dev)" >&2
    return 1
  fi
  rm -rf "$prefix"
  mkdir -p "$prefix/include/boost" "$prefix/lib/$multiarch/cmake" "$prefix/lib/cmake" "$prefix/share/cmake"
  # Boost.Hana needs only itself and Boost's version header; config comes along for Boost's CMake files.
  cp -rp /usr/include/boost/hana /usr/include/boost/hana.hpp /usr/include/boost/version.hpp \
        /usr/include/boost/config /usr/include/boost/config.hpp "$prefix/include/boost/"
  cp -rp /usr/include/fmt /usr/include/doctest /usr/include/CLI "$prefix/include/"
  cp -rp "$lib/cmake/fmt" "$boost_config" "$boost_headers" "$prefix/lib/$multiarch/cmake/"
  # fmt's package file also declares the compiled fmt::fmt and checks that its library exists (trident uses
  # fmt::fmt-header-only): copy the file it names.
  fmt_lib=$(sed -n 's|.*IMPORTED_LOCATION[A-Z_]* "${_IMPORT_PREFIX}/\([^"]*\)".*|\1|p' \
            "$lib"/cmake/fmt/fmt-targets-*.cmake | head -1)
  if [ -n "$fmt_lib" ]; then mkdir -p "$prefix/$(dirname "$fmt_lib")" && cp -Lp "/usr/$fmt_lib" "$prefix/$fmt_lib"; fi
  cp -rp /usr/lib/cmake/doctest "$prefix/lib/cmake/"
  # doctest's package file hard-codes /usr as its prefix: compute it from where the file lies instead.
  local relative='get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)'
  sed -i "s|^set(_IMPORT_PREFIX \"/usr\")\$|$relative|" "$prefix/lib/cmake/doctest/doctestTargets.cmake"
  # CLI11's (Debian puts it in /usr/share/cmake/CLI11) finds its prefix four levels up: share/cmake/CLI11 keeps that.
  cp -rp /usr/share/cmake/CLI11 "$prefix/share/cmake/"
  local fixed='_IMPORT_PREFIX "/usr"\|"/usr/include'  # a prefix or include folder fixed to /usr
  if grep -rqs "$fixed" "$prefix"/lib "$prefix"/share; then
    echo "device-check --prepare: a package file in $prefix still points into /usr:" >&2
    grep -rn "$fixed" "$prefix"/lib "$prefix"/share >&2
    return 1
  fi
  dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Version}\n' 'libboost1.*-dev' libfmt-dev doctest-dev \
    libcli11-dev 2>/dev/null | awk '$1 == "ii" {print $2, $3}' > "$root/.device/manifest.txt"

  # CMake must find each package in the prefix, with include folders inside it.
  local probe
  probe=$(mktemp -d)
  cat > "$probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(device_prefix_probe LANGUAGES CXX)
foreach(package fmt Boost doctest CLI11)
  find_package(${package} CONFIG REQUIRED PATHS "${DEVICE_PREFIX}" NO_DEFAULT_PATH)
endforeach()
foreach(target fmt::fmt-header-only Boost::headers doctest::doctest CLI11::CLI11)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  foreach(dir IN LISTS dirs)
    get_filename_component(dir "${dir}" ABSOLUTE)
    string(FIND "${dir}" "${DEVICE_PREFIX}" at)
    if(NOT at EQUAL 0)
      message(FATAL_ERROR "${target}: include folder ${dir} is outside ${DEVICE_PREFIX}")
    endif()
  endforeach()
  message(STATUS "${target}: ${dirs}")
endforeach()
message(STATUS "found in the prefix: fmt ${fmt_VERSION}, Boost ${Boost_VERSION}, doctest ${doctest_VERSION}, "
               "CLI11 ${CLI11_VERSION}")
EOF
  if ! cmake -S "$probe" -B "$probe/build" -DDEVICE_PREFIX="$prefix" > "$probe/log" 2>&1; then
    cat "$probe/log" >&2
    echo "device-check --prepare: CMake does not find the packages in $prefix (log above)" >&2
    rm -rf "$probe"
    return 1
  fi
  grep -- '-- found in the prefix' "$probe/log" | sed 's/^-- /device-check --prepare: /'
  rm -rf "$probe"
  grep -qx '/.device/' "$root/.gitignore" 2>/dev/null ||
    echo "device-check --prepare: note: /.device/ is not in .gitignore"
  echo "device-check --prepare: wrote $prefix ($(du -sh "$root/.device" | cut -f1)). On the GPU machine, from the" \
       "checkout's root with .device/ beside it (a copy of a git checkout leaves ignored folders out: carry it):" \
       "bash benchmarks/device-check.sh"
}

# ---------------------------------------------------------------------------------------------------------------
# The check. All of it is one function, so that bash has read it whole before it starts (editing the file
# during a run does not change that run).
# ---------------------------------------------------------------------------------------------------------------
main() {
# ---------------------------------------------------------------------------------------------------------------
# Options.
# ---------------------------------------------------------------------------------------------------------------
out_dir=${OUT:-$root/out/device-check}
build=${BUILD:-/tmp/trident-device-check}
python=python3 reference_python= seqnet= budget= iterations= jobs=$(nproc) amp_dtype=bfloat16
quick=0 force_cpu=0 clean=0 skip=,
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) prepare; exit $? ;;
    --out) out_dir=$2; shift ;;
    --quick) quick=1 ;;
    --skip) skip=",$2,"; shift ;;
    --seqnet) seqnet=$2; shift ;;
    --cpu) force_cpu=1 ;;
    --python) python=$2; shift ;;
    --reference-python) reference_python=$2; shift ;;
    --build) build=$2; shift ;;
    --clean) clean=1 ;;
    --jobs) jobs=$2; shift ;;
    --budget) budget=$2; shift ;;
    --iterations) iterations=$2; shift ;;
    --amp-dtype) amp_dtype=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "device-check: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
reference_python=${reference_python:-$python}
# SeqNet's code, where a checkout was copied beside the prefix (docs/seqnet-timing.md); --seqnet overrides it.
if [ -z "$seqnet" ] && [ -f "$root/.device/seqnet/models/seqnet.py" ]; then seqnet=$root/.device/seqnet; fi
mkdir -p "$out_dir" && out_dir=$(cd "$out_dir" && pwd)
rm -f "$out_dir"/{summary.md,steps.log,build.log,tests.log,compare.md,compare.json,train.csv}
steps_log=$out_dir/steps.log build_log=$out_dir/build.log tests_log=$out_dir/tests.log
export OMP_WAIT_POLICY=PASSIVE  # LibTorch's OpenMP threads otherwise spin between parallel regions
cd "$root" || exit 2

started=$(date +%s)
now() { date +%s; }
skipped() { [[ "$skip" == *",$1,"* ]]; }  # skipped STEP: whether --skip names it
say() { echo "$*" | tee -a "$steps_log"; }

# The summary: one row per step.
step_names=() step_rcs=() step_seconds=() step_keys=()
record() {  # record NAME RC SECONDS KEY
  step_names+=("$1"); step_rcs+=("$2"); step_seconds+=("$3"); step_keys+=("$4")
  say "== $1: rc $2, $3 s${4:+: $4}"
}
# limit CAP RESERVE: the seconds a step may take: CAP, or less so that RESERVE seconds of the budget remain for
# the steps after it (0: none left).
limit() {
  local left=$((deadline - $(now) - $2))
  [ "$left" -gt "$1" ] && left=$1
  [ "$left" -lt 0 ] && left=0
  echo "$left"
}
# run LOG SECONDS COMMAND...: the command under `timeout`, its output appended to LOG; sets rc and took (rc 999:
# not run, the budget is spent).
rc=0 took=0
run() {
  local log=$1 seconds=$2 t
  shift 2
  if [ "$seconds" -lt 5 ]; then
    echo "(not run: the time budget is spent) $*" >> "$log"
    rc=999 took=0
    return 0
  fi
  t=$(now)
  echo "\$ $*" >> "$log"
  timeout -k 10 "$seconds" "$@" >> "$log" 2>&1
  rc=$?
  took=$(($(now) - t))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "(stopped: over its time limit of $seconds s)" >> "$log"; fi
  return 0
}
status() {  # the rc column: 0, a number, "timeout" or "no time"
  case $1 in 124|137) echo timeout ;; 999) echo "no time" ;; *) echo "$1" ;; esac
}
cap() {  # cap GPU_SECONDS CPU_SECONDS: a step's own limit (the CPU mode builds and runs on a small machine)
  if [ "$gpu" -eq 1 ]; then echo "$1"; else echo "$2"; fi
}

# ---------------------------------------------------------------------------------------------------------------
# Step 1 — the machine.
# ---------------------------------------------------------------------------------------------------------------
t=$(now)
# One question to the Python: CUDA available, torch's version, its CUDA, its CMake prefix, torchvision's version.
mapfile -t torch_info < <(timeout 120 "$python" - 2>/dev/null <<'EOF'
import torch
print(int(torch.cuda.is_available()), torch.__version__, torch.version.cuda or "none", sep="\n")
print(torch.utils.cmake_prefix_path)
try:
    import torchvision
    print(torchvision.__version__)
except Exception:
    print("none")
EOF
)
torch_version=${torch_info[1]:-} torch_cuda=${torch_info[2]:-} torch_prefix=${torch_info[3]:-}
torchvision_version=${torch_info[4]:-none}
if [ "$reference_python" != "$python" ]; then
  torchvision_version=$(timeout 120 "$reference_python" -c 'import torchvision; print(torchvision.__version__)' \
                        2>/dev/null || echo none)
fi
gpu=0
if [ "$force_cpu" -eq 0 ] && [ "${torch_info[0]:-0}" = 1 ] && nvidia-smi -L > /dev/null 2>&1; then gpu=1; fi
mode=$([ "$gpu" -eq 1 ] && echo cuda || echo cpu)
[ -z "$budget" ] && budget=$([ "$gpu" -eq 1 ] && echo 470 || echo 3600)
[ -z "$iterations" ] && iterations=$([ "$gpu" -eq 0 ] && echo 20 || { [ "$quick" -eq 1 ] && echo 150 || echo 300; })
deadline=$((started + budget))
# A copy of a working tree may carry a stale .git (the device tool copies the files, not the history): the commit
# is best given by the side that made the copy, TRIDENT_COMMIT=<rev> (docs/device-check.md).
if [ -n "${TRIDENT_COMMIT:-}" ]; then
  commit="$TRIDENT_COMMIT (given)"
  changed="-"
else
  commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "unknown (no git)") (the copy's git: may be stale)"
  changed=$(git -C "$root" status --porcelain 2>/dev/null | wc -l)
fi
gpu_name=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
{
  echo "# trident device check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'):" \
       "mode $mode$([ "$quick" -eq 1 ] && echo ', quick'), budget $budget s"
  echo "checkout $root at $commit ($changed files changed or new); build folder $build; out $out_dir"
  uname -srm
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi: none"
  echo "$python: torch ${torch_version:-NOT FOUND} (CUDA ${torch_cuda:--}, available: ${torch_info[0]:-?})," \
       "cmake prefix ${torch_prefix:--}"
  echo "$reference_python: torchvision $torchvision_version"
  g++ --version 2>&1 | head -1; cmake --version 2>&1 | head -1
  echo "ninja $(ninja --version 2>&1 || echo none)"; nvcc --version 2>&1 | tail -1
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory"
  if [ -d "$prefix" ]; then echo "prefix: $prefix"; cat "$root/.device/manifest.txt" 2>/dev/null
  else echo "prefix: MISSING $prefix (run benchmarks/device-check.sh --prepare where the packages are)"; fi
} >> "$steps_log" 2>&1
record machine 0 $(($(now) - t)) "$([ "$gpu" -eq 1 ] && echo "$gpu_name" || echo "no GPU used");\
 torch ${torch_version:-not found in $python} (CUDA ${torch_cuda:--}), torchvision $torchvision_version;\
 g++ $(g++ -dumpfullversion 2>/dev/null); $(cmake --version 2>/dev/null | head -1 | sed 's/ version//'); $(nproc) cores"

# ---------------------------------------------------------------------------------------------------------------
# Step 2 — configure against the Python's LibTorch and the prefix, without the OpenCV / matio / JSON parts.
# ---------------------------------------------------------------------------------------------------------------
t=$(now)
fmt_dir=$(ls -d "$prefix"/lib/*/cmake/fmt 2>/dev/null | head -1)
boost_dir=$(ls -d "$prefix"/lib/*/cmake/Boost-[0-9]* 2>/dev/null | sort -V | tail -1)
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
[ "$clean" -eq 1 ] && rm -rf "$build"
if [ -f "$build/CMakeCache.txt" ] &&
   ! grep -q "^CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" "$build/CMakeCache.txt"; then
  rm -rf "$build"  # made with another generator
fi
if [ -z "$torch_prefix" ]; then
  echo "$python has no torch: nothing to configure against" >> "$build_log"
  record configure 1 $(($(now) - t)) "no LibTorch: $python cannot import torch"
else
  run "$build_log" "$(limit "$(cap 120 600)" 300)" cmake -S "$root" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "-DCMAKE_PREFIX_PATH=$torch_prefix;$prefix" \
    -Dfmt_DIR="$fmt_dir" -DBoost_DIR="$boost_dir" -Ddoctest_DIR="$prefix/lib/cmake/doctest" \
    -DCLI11_DIR="$prefix/share/cmake/CLI11" -DTRIDENT_WITH_IO=OFF -DTRIDENT_BUILD_TESTS=ON \
    -DTRIDENT_BUILD_EXAMPLES=ON -DTRIDENT_BUILD_BENCHMARKS=ON -DTRIDENT_WERROR=OFF ${EXTRA_CMAKE:-}
  if [ "$rc" = 999 ]; then
    record configure "$(status $rc)" 0 "not run"
  else
    # Where each package came from: all four from the prefix, or name the ones that did not.
    from_prefix=() elsewhere=()
    for package in fmt Boost doctest CLI11; do
      dir=$(sed -n "s|^${package}_DIR:[A-Z]*=||p" "$build/CMakeCache.txt" 2>/dev/null)
      case $dir in "$prefix"/*) from_prefix+=("$package") ;; *) elsewhere+=("$package=${dir:-not found}") ;; esac
    done
    cuda_build="no c10_cuda"
    grep -rqs TRIDENT_EXAMPLE_WITH_CUDA "$build/build.ninja" \
      "$build/examples/CMakeFiles/06_train_generated.dir/flags.make" && cuda_build="CUDA build"
    record configure "$(status $rc)" "$took" "LibTorch $torch_version ($cuda_build);\
 from .device/prefix: ${from_prefix[*]:-none}${elsewhere:+; NOT from it: ${elsewhere[*]}}"
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 3 — build what needs no OpenCV: the core suite, the CUDA tests, bench_network, 06_train_generated.
# ---------------------------------------------------------------------------------------------------------------
t=$(now)
wanted=()
skipped core-tests || wanted+=(trident_tests)
skipped cuda-tests || wanted+=(trident_cuda_tests)
skipped roi-align || wanted+=(bench_roi_align)
{ skipped compare && skipped compare-amp && skipped graphs; } || wanted+=(bench_network)
skipped train || wanted+=(06_train_generated)
present=() absent=() built=() failed=()
has_target() {
  if [ -f "$build/build.ninja" ]; then ninja -C "$build" -t targets all 2>/dev/null | grep "^$1:" > /dev/null
  else make -C "$build" help 2>/dev/null | grep "\.\.\. $1$" > /dev/null; fi
}
executable() {  # the executable a target makes, if it exists
  find "$build" -name "$1" -type f -perm -u+x 2>/dev/null | head -1
}
# built TARGET: whether the build made (or found up to date) the target's executable: it exists, no compile or
# link step of the target failed, and, where the build was stopped by its time limit, it is newer than the build.
built_ok() {
  local exe
  [ "$rc" != 999 ] || return 1  # the build did not run
  exe=$(executable "$1")
  [ -n "$exe" ] || return 1
  grep -E "^FAILED: (.*[ /])?$1(\.dir/|[[:space:]]|\$)" "$build_log" > /dev/null && return 1
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then [ "$exe" -nt "$build/.device-check-build" ] || return 1; fi
  return 0
}
if [ -f "$build/CMakeCache.txt" ]; then
  for target in "${wanted[@]}"; do
    if has_target "$target"; then present+=("$target"); else absent+=("$target"); fi
  done
fi
if [ ${#present[@]} -eq 0 ]; then
  record build - 0 "skipped: nothing configured"
else
  keep_going=(-k 0); [ -f "$build/build.ninja" ] || keep_going=(-k)
  touch "$build/.device-check-build"
  run "$build_log" "$(limit "$(cap 300 2400)" 220)" \
    cmake --build "$build" -j "$jobs" --target "${present[@]}" -- "${keep_going[@]}"
  for target in "${present[@]}"; do
    if built_ok "$target"; then built+=("$target"); else failed+=("$target"); fi
  done
  warnings=$(grep -c 'warning:' "$build_log")
  # With Ninja, the compiler's dependency lists show where every header came from.
  if [ -f "$build/build.ninja" ]; then
    system_headers=$(ninja -C "$build" -t deps 2>/dev/null |
                     grep -cE '^ +/usr/(local/)?include/(boost|fmt|doctest|CLI)/')
  else
    system_headers="? (not Ninja)"
  fi
  record build "$(status $rc)" "$took" "built: ${built[*]:-none}${failed:+; FAILED: ${failed[*]}}\
${absent:+; no such target: ${absent[*]}}; $warnings warnings;\
 headers from /usr/include/{boost,fmt,doctest,CLI}: $system_headers"
fi
binary() {  # the built executable of a target, if it was built
  local target=$1 b
  for b in "${built[@]:-}"; do
    [ "$b" = "$target" ] && { executable "$target"; return; }
  done
}
# ready STEP [TARGET]: whether STEP runs: not left out by --skip, and TARGET (if named) built; else records why.
ready() {
  if skipped "$1"; then record "$1" - 0 "skipped (--skip)"; return 1; fi
  if [ -n "${2:-}" ] && [ -z "$(binary "$2")" ]; then record "$1" - 0 "skipped: $2 was not built"; return 1; fi
  return 0
}
# gpu_ready STEP WHY NAME OPTION COMMAND...: ready STEP bench_network, on a GPU (else "skipped: WHY"), and
# `COMMAND --help` lists OPTION (else NAME has no such option: an older checkout); otherwise records why.
gpu_ready() {
  local step=$1 why=$2 name=$3 option=$4
  shift 4
  ready "$step" bench_network || return 1
  if [ "$gpu" -eq 0 ]; then record "$step" - 0 "skipped: $why"; return 1; fi
  if ! "$@" --help 2>/dev/null | grep -- "$option" > /dev/null; then
    record "$step" - 0 "skipped: $name has no $option option"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------------------------
# Step 4 — the CUDA tests (label `cuda`).
# ---------------------------------------------------------------------------------------------------------------
if skipped cuda-tests; then
  record cuda-tests - 0 "skipped (--skip)"
elif [ -z "$(binary trident_cuda_tests)" ]; then
  why="was not built"
  [[ " ${absent[*]:-} " == *" trident_cuda_tests "* ]] && why="is not in this checkout"
  record cuda-tests - 0 "skipped: trident_cuda_tests $why"
else
  # Without a GPU every test prints its skip marker and CTest counts it as skipped: the plumbing still runs.
  seconds=$(limit "$(cap 150 600)" 200)
  echo "== ctest -L cuda" >> "$tests_log"
  run "$tests_log" "$seconds" ctest --test-dir "$build" -L cuda -j "$(cap 6 2)" --output-on-failure --timeout "$seconds"
  key=$(sed -n '/^== ctest -L cuda$/,$p' "$tests_log" | grep -E 'tests passed|No tests were found' | tail -1)
  skipped=$(sed -n '/^== ctest -L cuda$/,$p' "$tests_log" | grep -c '(Skipped)$')
  record cuda-tests "$(status $rc)" "$took" "${key:-no result line}${key:+; $skipped skipped}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 4b — RoIAlign's formulations at the paper's sizes (bench_roi_align; docs/design.md).
# ---------------------------------------------------------------------------------------------------------------
roi_bench=$(binary bench_roi_align)
if ready roi-align bench_roi_align; then
  echo "== bench_roi_align" >> "$steps_log"
  roi_args=(--device "$mode" --repeat 10 --warmup 3 --threads "$jobs")
  [ "$gpu" -eq 0 ] && roi_args=(--device cpu --repeat 1 --warmup 0 --batches 1 --rois 16 --threads "$jobs")
  run "$steps_log" "$(limit "$(cap 45 300)" 150)" "$roi_bench" "${roi_args[@]}"
  roi_rc=$rc roi_took=$took
  if [ "$gpu" -eq 1 ] && [ "$roi_rc" -eq 0 ]; then
    run "$steps_log" "$(limit 30 150)" "$roi_bench" "${roi_args[@]}" --dtype bfloat16 --batches 1 --rois 300
    roi_took=$((roi_took + took))
  fi
  key=$(sed -n '/^== bench_roi_align$/,$p' "$steps_log" |
        awk -F'|' '/^# bench_roi_align/ {dtype = $0; sub(/.*features /, "", dtype); sub(/ .*/, "", dtype)}
                   $2 ~ /sampled|gather|kernel/ && $3 + 0 == 1 && ($4 + 0 == 300 || cpu) {gsub(/ /, "", $2);
                   gsub(/ /, "", $5); gsub(/ /, "", $6); printf "%s%s %s %d RoIs: fwd %s ms, fwd+bwd %s ms", sep,
                   $2, dtype, $4, $5, $6; sep = "; "}' cpu=$((1 - gpu)))
  record roi-align "$(status $roi_rc)" "$roi_took" "${key:-no table (see steps.log)}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 5 — the core suite (doctest, without the OpenCV / matio / JSON parts).
# ---------------------------------------------------------------------------------------------------------------
suite=$(binary trident_tests)
if ready core-tests trident_tests; then
  echo "== trident_tests" >> "$tests_log"
  run "$tests_log" "$(limit "$(cap 120 1800)" 150)" bash -c 'cd "$(dirname "$1")" && exec "$1"' core-tests "$suite"
  key=$(grep -E '^\[doctest\] test cases:' "$tests_log" | tail -1 | sed 's/^\[doctest\] //')
  record core-tests "$(status "$rc")" "$took" "${key:-no doctest summary (see tests.log)}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 6 — train with trident::trident alone: the paper configuration, mixed precision (CPU: small).
# ---------------------------------------------------------------------------------------------------------------
trainer=$(binary 06_train_generated)
if ready train 06_train_generated; then
  run_dir=$build/run-06
  rm -rf "$run_dir"
  if [ "$gpu" -eq 1 ]; then
    train_args=(--config paper --device cuda --amp --amp-dtype "$amp_dtype" --batch-size 4
                --iterations "$iterations" --threads "$jobs")
  else
    train_args=(--config small --device cpu --batch-size 2 --iterations "$iterations" --gallery 4 --threads "$jobs")
  fi
  echo "== 06_train_generated" >> "$steps_log"
  line_buffered=(); command -v stdbuf > /dev/null && line_buffered=(stdbuf -oL)  # keep its output if stopped
  run "$steps_log" "$(limit "$(cap "$([ "$quick" -eq 1 ] && echo 100 || echo 160)" 600)" 60)" \
    "${line_buffered[@]}" "$trainer" "${train_args[@]}" --out "$run_dir"
  cp "$run_dir/train_log.csv" "$out_dir/train.csv" 2>/dev/null
  section=$(sed -n '/^== 06_train_generated$/,$p' "$steps_log")
  speed=$(grep -oE '[0-9.]+ images/s( \([0-9.]+ after the first tenth\))?' <<< "$section" | tail -1 |
          sed 's/ images\/s/ img\/s/; s/ after the first tenth/ steady/')
  memory=$(grep -oE 'peak GPU memory \(training\): .*' <<< "$section" | tail -1 |
           sed 's/ (training)//; s/peak GPU memory: /peak /')
  curve=$(awk '/^loss per tenth/ {on = 1; getline; next}
               on && /^ +[0-9]+-[0-9]+ / {if (first == "") first = $2; last = $2; next}
               on {on = 0}
               END {if (first != "") printf "loss %s -> %s", first, last}' <<< "$section")
  found=$(grep -oE '[0-9]+ people found' <<< "$section" | tail -1)
  people=$(grep -oE 'gallery: [0-9]+ held-out scenes, [0-9]+ people' <<< "$section" | grep -oE '[0-9]+ people$')
  top=$(grep -oE '[0-9]+ of the top [0-9]+ are the query person|none: no gallery detection scored' <<< "$section" |
        tail -1 | sed 's/are the query person/= query/; s/none: no gallery detection scored/no match/')
  error=$(grep -m1 -E '^(error|training stopped):' <<< "$section" | cut -c1-200)
  record train "$(status $rc)" "$took" "${train_args[1]} x$iterations${error:+; $error}${speed:+; $speed}\
${memory:+; $memory}${curve:+; $curve}${found:+; $found of ${people%% *}}${top:+; $top}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 7 — bench_network next to the PyTorch reference (and SeqNet's model where compare.py can run it).
# ---------------------------------------------------------------------------------------------------------------
compare=$root/benchmarks/reference/compare.py
# compare_key JSON: the key figures of a compare.py run (trident vs the reference, and SeqNet where it ran).
compare_key() {
  "$python" - "$1" <<'EOF' 2>/dev/null
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("no compare.json"); sys.exit()
medians = data.get("medians", {})
t, r = medians.get("trident", {}), medians.get("reference", {})
s = medians.get("seqnet", {})
def ms(v):
    return "-" if v is None else f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
parts = []
for case, figure, label in [("infer-900x1500", "total_ms", "infer 900x1500"),
                            ("infer-b8-900x1500", "images_per_s", "infer b8 img/s"),
                            ("infer-320x480", "total_ms", "infer 320x480"), ("train-b4", "total_ms", "train b4"),
                            ("search-1000000", "total_ms", "search 1e6"), ("resnet50-224", "forward_ms", "resnet50")]:
    a, b = t.get(case, {}).get(figure), r.get(case, {}).get(figure)
    if a is None and b is None:
        continue
    ratio = f" ({a / b:.2f}x)" if a is not None and b else ""
    c = s.get(case, {}).get(figure)
    seq = f", SeqNet {ms(c)}" + (f" ({a / c:.2f}x)" if a is not None and c else "") if c is not None else ""
    unit = "" if figure == "images_per_s" else " ms"
    parts.append(f"{label} {ms(a)} vs {ms(b)}{unit}{ratio}{seq}")
peak = t.get("train-b4", {}).get("cuda_peak_allocated_mb"), r.get("train-b4", {}).get("cuda_peak_allocated_mb")
if peak[0] is not None or peak[1] is not None:
    parts.append(f"train b4 peak {ms(peak[0])} vs {ms(peak[1])} MB")
fs, bs = t.get("train-b4", {}).get("forward_syncs"), t.get("train-b4", {}).get("backward_step_syncs")
if fs is not None:
    parts.append(f"trident train b4 syncs: forward {fs:.0f}, backward + step {bs:.0f}")
ds = t.get("infer-900x1500", {}).get("detect_syncs")
if ds is not None:
    parts.append(f"detect() syncs {ds:.0f}")
missing = [name for name, m in (("trident", t), ("reference", r)) if not any(m.values())]
print("trident vs reference: " + "; ".join(parts) + ("; NO RESULTS from " + ", ".join(missing) if missing else ""))
EOF
}
seqnet_args=()
if [ -n "$seqnet" ]; then
  if "$python" "$compare" --help 2>/dev/null | grep -- '--seqnet' > /dev/null; then seqnet_args=(--seqnet "$seqnet"); fi
fi
bench=$(binary bench_network)
if ready compare bench_network; then
  seconds=$(limit "$(cap "$([ "$quick" -eq 1 ] && echo 90 || echo 200)" 900)" 5)
  if [ "$gpu" -eq 0 ]; then
    compare_args=(--device cpu --rounds 1 --repeat 1 --warmup 0 --only resnet50,infer,search --sizes 320x480
                  --gallery 10000)
  elif [ "$quick" -eq 1 ] || [ "$seconds" -lt 180 ]; then
    compare_args=(--device cuda --rounds 1 --repeat 5 --warmup 2 --only infer,train,search --sizes 900x1500
                  --batches 4 --gallery 1000000)
  else
    compare_args=(--device cuda --rounds 2 --repeat 10 --warmup 3 --only infer,train,search,resnet50
                  --sizes 900x1500,600x1000 --batches 2,4 --gallery 1000000)
  fi
  echo "== compare.py" >> "$steps_log"
  run "$steps_log" "$seconds" "$python" "$compare" --bench "$bench" --python "$reference_python" --threads "$jobs" \
    "${compare_args[@]}" "${seqnet_args[@]}" --verbose --json "$out_dir/compare.json" --markdown "$out_dir/compare.md"
  key=$(compare_key "$out_dir/compare.json")
  record compare "$(status $rc)" "$took" "${key:-no compare.json}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 8 — the same comparison under bfloat16 autocast with channels-last inputs (GPU only), batched inference.
# ---------------------------------------------------------------------------------------------------------------
if gpu_ready compare-amp "autocast is timed on a GPU only" compare.py --amp "$python" "$compare"; then
  rm -f "$build/compare-amp.json" "$build/compare-amp.md"
  echo "== compare.py --amp bf16" >> "$steps_log"
  amp_repeat=(--repeat 10 --warmup 3)
  [ "$quick" -eq 1 ] && amp_repeat=(--repeat 5 --warmup 2)
  run "$steps_log" "$(limit "$([ "$quick" -eq 1 ] && echo 120 || echo 180)" 60)" "$python" "$compare" --bench "$bench" \
    --python "$reference_python" --threads "$jobs" --device cuda --amp bf16 --channels-last --rounds 1 \
    "${amp_repeat[@]}" --only infer,train --sizes 900x1500 --infer-batches 1,8 --batches 4 "${seqnet_args[@]}" \
    --verbose --json "$build/compare-amp.json" --markdown "$build/compare-amp.md"
  if [ -f "$build/compare-amp.md" ]; then
    { echo; echo "## bfloat16 autocast, channels-last inputs"; echo; cat "$build/compare-amp.md"; } >> "$out_dir/compare.md"
  fi
  key=$(compare_key "$build/compare-amp.json")
  record compare-amp "$(status $rc)" "$took" "${key:-no compare-amp.json}"
fi

# ---------------------------------------------------------------------------------------------------------------
# Step 9 — trident's detect() with its stages replayed as CUDA graphs (bfloat16 autocast, channels-last, cuDNN's
# benchmark mode; GPU): the fastest configuration trident has.
# ---------------------------------------------------------------------------------------------------------------
if gpu_ready graphs "CUDA graphs need a GPU" bench_network --cuda-graphs "$bench"; then
  rm -f "$build/graphs.json" "$build/graphs-fused.json"
  echo "== bench_network --cuda-graphs" >> "$steps_log"
  graph_flags=(--cuda-graphs)
  "$bench" --help 2>/dev/null | grep -- '--cudnn-benchmark' > /dev/null && graph_flags+=(--cudnn-benchmark)
  run "$steps_log" "$(limit 120 5)" "$bench" --device cuda --threads "$jobs" --amp bf16 --channels-last \
    "${graph_flags[@]}" --only infer --sizes 900x1500 --infer-batches 1,8 --repeat 10 --warmup 3 \
    --json "$build/graphs.json"
  graphs_rc=$rc graphs_took=$took
  # The same with cuDNN's fused epilogues (backbone::set_cudnn_epilogue_fusion), where this bench_network has them.
  if "$bench" --help 2>/dev/null | grep -- '--cudnn-fusion' > /dev/null; then
    echo "== bench_network --cuda-graphs --cudnn-fusion" >> "$steps_log"
    run "$steps_log" "$(limit 120 5)" "$bench" --device cuda --threads "$jobs" --amp bf16 --channels-last \
      "${graph_flags[@]}" --cudnn-fusion --only infer --sizes 900x1500 --infer-batches 1,8 --repeat 10 \
      --warmup 3 --json "$build/graphs-fused.json"
    graphs_took=$((graphs_took + took))
  fi
  key=$("$python" - "$build/graphs.json" "$build/graphs-fused.json" <<'EOF' 2>/dev/null
import json, sys
def figures(path):
    try:
        cases = {c["case"]: c for c in json.load(open(path))["cases"]}
    except (OSError, ValueError, KeyError):
        return None, ""
    parts = []
    one = cases.get("infer-900x1500", {}).get("figures", {})
    if one:
        parts.append(f"detect() 900x1500 b1 {one.get('detect_ms', float('nan')):.2f} ms"
                     f" (eager stages {one.get('total_ms', float('nan')):.2f} ms)")
    eight = cases.get("infer-b8-900x1500", {}).get("figures", {})
    if eight:
        parts.append(f"b8 {eight.get('images_per_s', float('nan')):.0f} img/s")
    syncs = one.get("detect_syncs")
    if syncs is not None:
        parts.append(f"{syncs:.0f} syncs per detect()")
    flags = " + cuDNN benchmark" if cases.get("infer-900x1500", {}).get("cudnn_benchmark") == "on" else ""
    return "; ".join(parts) or None, flags
plain, flags = figures(sys.argv[1])
fused, _ = figures(sys.argv[2])
if plain is None:
    print("no graphs.json"); sys.exit()
text = f"bf16 + channels-last + CUDA graphs{flags}: {plain}"
if fused:
    text += f" | + cuDNN fused epilogues: {fused}"
print(text)
EOF
)
  rc=$graphs_rc took=$graphs_took
  record graphs "$(status $rc)" "$took" "${key:-no graphs.json}"
fi
# ---------------------------------------------------------------------------------------------------------------
# Step 10 — where the GPU time goes: a Kineto kernel profile of one detect() of 1 and of 8 images and of one
# training step (bfloat16 autocast, channels-last; GPU), written to profile.md.
# ---------------------------------------------------------------------------------------------------------------
if gpu_ready profile "the kernel profile needs a GPU" bench_network --profile "$bench"; then
  echo "== bench_network --profile" >> "$steps_log"
  run "$out_dir/profile.md" "$(limit 90 5)" "$bench" --device cuda --threads "$jobs" --amp bf16 --channels-last \
    --only infer,train --sizes 900x1500 --infer-batches 1,8 --batches 4 --repeat 3 --warmup 2 --profile
  key=$(grep -E '^### profile:' "$out_dir/profile.md" | sed 's/^### profile: //' | paste -sd ';' -)
  record profile "$(status $rc)" "$took" "${key:-no profile (see profile.md)}"
fi
if [ -n "$seqnet" ]; then
  if [ ${#seqnet_args[@]} -gt 0 ]; then
    record seqnet "$(status $rc)" 0 "timed inside the compare step (--seqnet $seqnet)"
  else
    record seqnet - 0 "not timed: compare.py / bench_reference.py have no SeqNet option (checkout $seqnet)"
  fi
fi

# ---------------------------------------------------------------------------------------------------------------
# The summary.
# ---------------------------------------------------------------------------------------------------------------
failures=0
{
  echo "# trident device check: mode $mode$([ "$quick" -eq 1 ] && echo ', quick')," \
       "$(date -u '+%Y-%m-%d %H:%M UTC'), checkout $commit"
  echo
  echo "| step | rc | seconds | key figures |"
  echo "|---|---:|---:|---|"
  for i in "${!step_names[@]}"; do
    echo "| ${step_names[$i]} | ${step_rcs[$i]} | ${step_seconds[$i]} | ${step_keys[$i]//|/\\|} |"
    case ${step_rcs[$i]} in 0|-) ;; *) failures=$((failures + 1)) ;; esac
  done
  echo "| total | $failures failed | $(($(now) - started)) | budget $budget s |"
  echo
  echo "Logs: steps.log (machine, every step, 06's and compare.py's output), build.log, tests.log;" \
       "compare.md / compare.json (bench_network vs the PyTorch reference), train.csv (06's per-iteration losses)," \
       "profile.md (the kernel profile)."
} > "$out_dir/summary.md"
cat "$out_dir/summary.md"
[ "$failures" -eq 0 ]
}

main "$@"; exit $?
