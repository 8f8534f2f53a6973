#!/usr/bin/env bash
# trident's test suite: installs what is missing, builds everything (library checks, examples, benchmarks), runs
# the doctest suite and the consumer-project checks through CTest. The project's own programs are built with
# -Werror here (TRIDENT_WERROR=ON: the project's CI policy; a user's build leaves it OFF).
#   cmake/run-tests.sh [build-dir]                     Debian 12's LibTorch 1.13 (CPU), default build dir: build
#   cmake/run-tests.sh --libtorch pip [build-dir]      pip's LibTorch (torch==2.11.0 from PyPI, CUDA 13.0 build,
#                                                      run on the CPU), installed into a venv by cmake/pip-libtorch.sh;
#                                                      default build dir: build-pip
#   cmake/run-tests.sh --libtorch DIR [build-dir]      any other LibTorch: DIR is its CMake prefix (.../share/cmake)
#                                                      or an unpacked libtorch/ folder; default build dir: build-libtorch
# A CUDA-enabled LibTorch needs the CUDA toolkit at configure time (its CMake package looks for nvcc, cudart, ...):
# the script takes $CUDAToolkit_ROOT or $CUDA_HOME, else nvcc from PATH, /usr/local/cuda-<LibTorch's CUDA version>
# or /usr/local/cuda (preferring one of LibTorch's CUDA major version).
#   cmake/run-tests.sh --sanitize address,undefined [build-dir]
#                                                      the doctest suite built with AddressSanitizer + UBSan
#                                                      (cmake/sanitizers.cmake) and run through CTest; default
#                                                      build dir: build-asan. No examples, benchmarks, consumer
#                                                      projects or compile-time checks (the ordinary legs run them)
#   cmake/run-tests.sh --sanitize thread [build-dir]   the loader's tests (tests/test_loader.cpp) built with
#                                                      ThreadSanitizer and run; default build dir: build-tsan
# --sanitize goes with any --libtorch; CI runs it with Debian's (docs/reliability.md, "Sanitizers").
#   --exclude REGEX                                    leaves out the CTest tests whose names match REGEX (CI's
#                                                      asan leg: the one training test that takes 9 minutes there)
#   --optimize LEVEL                                   builds the ordinary (not sanitizer) legs with -O<LEVEL>
#                                                      instead of Release's -O3 (CI's pip leg: -O1, a third less
#                                                      compile time; docs/toolchains.md, "Build time")
set -euo pipefail
cd "$(dirname "$0")/.."

libtorch=debian
sanitize=""
exclude=""
optimize=""
build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --libtorch) [ $# -ge 2 ] || { echo "run-tests.sh: --libtorch needs debian, pip or a directory" >&2; exit 2; }
                libtorch=$2; shift 2 ;;
    --libtorch=*) libtorch=${1#--libtorch=}; shift ;;
    --sanitize) [ $# -ge 2 ] || { echo "run-tests.sh: --sanitize needs address,undefined or thread" >&2; exit 2; }
                sanitize=$2; shift 2 ;;
    --sanitize=*) sanitize=${1#--sanitize=}; shift ;;
    --exclude) [ $# -ge 2 ] || { echo "run-tests.sh: --exclude needs a regular expression" >&2; exit 2; }
               exclude=$2; shift 2 ;;
    --exclude=*) exclude=${1#--exclude=}; shift ;;
    --optimize) [ $# -ge 2 ] || { echo "run-tests.sh: --optimize needs a level (0, 1, 2, 3, s)" >&2; exit 2; }
                optimize=$2; shift 2 ;;
    --optimize=*) optimize=${1#--optimize=}; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "run-tests.sh: unknown option '$1' (known: --libtorch debian|pip|DIR, --sanitize LIST, --exclude REGEX, --optimize LEVEL)" >&2
        exit 2 ;;
    *) [ -z "$build" ] || { echo "run-tests.sh: one build directory only" >&2; exit 2; }
       build=$1; shift ;;
  esac
done

# The other dependencies (Boost, fmt, doctest, OpenCV, matio, ...) come from Debian in every leg.
t0=$(date +%s)
if [ "$libtorch" = pip ]; then cmake/install-deps.sh --pip-libtorch; else cmake/install-deps.sh; fi

configure=(-DCMAKE_BUILD_TYPE=Release -DTRIDENT_WERROR=ON)
case "$optimize" in
  "") ;;
  0|1|2|3|s) configure+=("-DCMAKE_CXX_FLAGS_RELEASE=-O$optimize -DNDEBUG") ;;
  *) echo "run-tests.sh: --optimize takes 0, 1, 2, 3 or s, not '$optimize'" >&2; exit 2 ;;
esac
case "$sanitize" in
  "") ;;
  thread) build=${build:-build-tsan} ;;
  address|undefined|address,undefined|undefined,address) build=${build:-build-asan} ;;
  *) echo "run-tests.sh: --sanitize takes address,undefined (or either alone) or thread, not '$sanitize'" >&2
     exit 2 ;;
esac
if [ -n "$sanitize" ] && [ -n "$optimize" ]; then
  echo "run-tests.sh: --optimize is for the ordinary legs; --sanitize builds -O1 -g" >&2; exit 2
fi
if [ -n "$sanitize" ]; then
  # -O1 with debug information: the sanitizers' usual level (readable reports, a fraction of -O0's run time).
  configure=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -DNDEBUG"
             -DTRIDENT_WERROR=ON "-DTRIDENT_SANITIZE=$sanitize"
             -DTRIDENT_BUILD_EXAMPLES=OFF -DTRIDENT_BUILD_BENCHMARKS=OFF)
fi
prefix=""
case "$libtorch" in
  debian) build=${build:-build} ;;
  pip) build=${build:-build-pip}
       prefix=$(cmake/pip-libtorch.sh) ;;
  *) build=${build:-build-libtorch}
     prefix=$(cd "$libtorch" 2>/dev/null && pwd) || { echo "run-tests.sh: no folder '$libtorch'" >&2; exit 2; }
     if [ -d "$prefix/share/cmake/Torch" ]; then prefix="$prefix/share/cmake"; fi
     if [ ! -f "$prefix/Torch/TorchConfig.cmake" ]; then
       echo "run-tests.sh: no Torch/TorchConfig.cmake under $prefix (give LibTorch's share/cmake or root)" >&2
       exit 2
     fi ;;
esac

if [ -n "$prefix" ]; then
  configure+=("-DCMAKE_PREFIX_PATH=$prefix")
  # Another LibTorch than Debian's: without Debian's FAISS, as on the GPU machine (pip's LibTorch brings its own
  # OpenMP and BLAS; Debian's libfaiss would put a second of each into the process).
  configure+=("-DTRIDENT_WITH_FAISS=OFF")
  # Also in the environment: the nested configures that CTest runs (the consumer projects) then find this
  # LibTorch too, ahead of Debian's in /usr.
  export CMAKE_PREFIX_PATH="$prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  torch_lib=$(cd "$prefix/../.." && pwd)/lib
  if compgen -G "$torch_lib/libtorch_cuda*.so" >/dev/null; then
    # A CUDA build of LibTorch: its CMake package enables CUDA and needs the toolkit, and should get the version
    # LibTorch was built with (pip's torch/version.py names it; a libtorch/ folder has build-version).
    cuda_version=$(sed -n "s/^cuda[^=]*= *'\([0-9.]*\)'.*/\1/p" "$torch_lib/../version.py" 2>/dev/null || true)
    if [ -z "$cuda_version" ]; then   # e.g. 2.11.0+cu130 -> 13.0
      cuda_version=$(sed -n 's/.*+cu\([0-9]*\)\([0-9]\)$/\1.\2/p' "$torch_lib/../build-version" 2>/dev/null || true)
    fi
    # The toolkit: $CUDAToolkit_ROOT or $CUDA_HOME if set; else the first of nvcc on PATH,
    # /usr/local/cuda-<version>, /usr/local/cuda whose major version is LibTorch's; else the first that exists.
    major() { "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p'; }
    path_root=$(command -v nvcc >/dev/null && cd "$(dirname "$(command -v nvcc)")/.." && pwd || true)
    cuda_root=""
    for dir in "${CUDAToolkit_ROOT:-}" "${CUDA_HOME:-}"; do
      if [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ]; then cuda_root=$dir; break; fi
    done
    candidates=("$path_root" "${cuda_version:+/usr/local/cuda-$cuda_version}" /usr/local/cuda)
    for pass in match any; do
      for dir in "${candidates[@]}"; do
        if [ -z "$cuda_root" ] && [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ] &&
           { [ $pass = any ] || [ -z "$cuda_version" ] || [ "$(major "$dir")" = "${cuda_version%%.*}" ]; }; then
          cuda_root=$dir
        fi
      done
    done
    if [ -z "$cuda_root" ]; then
      echo "run-tests.sh: $prefix is a CUDA build of LibTorch (CUDA ${cuda_version:-?}); its CMake package" \
           "needs the CUDA toolkit, and no nvcc was found (CUDAToolkit_ROOT, CUDA_HOME, PATH, /usr/local/cuda*)." \
           "Install the toolkit or use a CPU LibTorch" \
           "(TRIDENT_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu with TRIDENT_TORCH_VENV=<another venv>)." >&2
      exit 1
    fi
    export PATH="$cuda_root/bin:$PATH" CUDAToolkit_ROOT="$cuda_root"
    nvcc_version=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    echo "run-tests.sh: CUDA LibTorch (built with CUDA ${cuda_version:-?}); toolkit $cuda_root (CUDA $nvcc_version)"
    if [ -n "$cuda_version" ] && [ "${nvcc_version%%.*}" != "${cuda_version%%.*}" ]; then
      echo "run-tests.sh: warning: the toolkit's major version is not LibTorch's; set CUDAToolkit_ROOT" >&2
    fi
    # No GPU is needed to build: without one LibTorch's package picks its list of common architectures (only used
    # for .cu files, which trident has none of).
  fi
fi

start=$(date +%s)
cmake -S . -B "$build" "${configure[@]}"
rc=0
case "$sanitize" in
  "") cmake --build "$build" -j"$(nproc)"
      built=$(date +%s)
      ctest --test-dir "$build" --output-on-failure -j"$(nproc)" ${exclude:+-E "$exclude"} || rc=$? ;;
  thread)
      # TSan: the loader's tests as their own program (trident_loader_tests), run directly.
      cmake --build "$build" -j"$(nproc)" --target trident_loader_tests
      built=$(date +%s)
      OMP_WAIT_POLICY=PASSIVE "$build/tests/trident_loader_tests" || rc=$? ;;
  *)  # ASan + UBSan: the doctest suite only (the programs' options: cmake/sanitizer-suppressions/).
      cmake --build "$build" -j"$(nproc)" --target trident_tests
      built=$(date +%s)
      # Not the CUDA tests (their program is not built: CTest lists it as trident_cuda_tests_NOT_BUILT).
      ctest --test-dir "$build" --output-on-failure -j"$(nproc)" -LE cuda \
            -E "^(consumer|layering|compile_fail)[.]|_NOT_BUILT${exclude:+|$exclude}" || rc=$? ;;
esac
echo "run-tests.sh ($libtorch LibTorch${sanitize:+, sanitizers $sanitize}, $build): dependencies $(( start - t0 )) s," \
     "configure + build $(( built - start )) s, tests $(( $(date +%s) - built )) s$([ $rc -eq 0 ] || echo ", FAILED")"
exit $rc
