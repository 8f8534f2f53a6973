# One precompiled header for trident's own programs (tests, examples, benchmarks, compile-fail checks); never for
# trident::trident's interface, so a project that links trident compiles exactly what it includes.
#
# Why: every CI leg builds about fifty TUs that include LibTorch's headers. On the 2-core development machine the
# header takes tests/test_model.cpp's front end from 34.5 s to 22.3 s (docs/toolchains.md, "Build time"): it is
# parsed once per build and loaded by every program's TUs.
#
# What stays honest without it: trident's headers still include narrowly and each is checked on its own terms by
# targets that do not use the precompiled header: layering_core_headers (every core header, OpenCV/matio/JSON
# poisoned), the consumer projects (find_package, add_subdirectory, core-only) and the fuzzers' Clang build.
#
# -DTRIDENT_PRECOMPILED_HEADERS=OFF compiles every TU from its own includes (ON by default; CMake needs the same
# compiler flags for all programs that share it, which this project's programs have: only macros that LibTorch's
# headers never read differ, and GCC refuses a header built with other flags with -Winvalid-pch, an error under
# TRIDENT_WERROR).
include_guard(GLOBAL)
option(TRIDENT_PRECOMPILED_HEADERS "Share one precompiled header (LibTorch, Boost.Hana, fmt) among trident's own programs" ON)

# The shared header's target, created here (the top-level directory, after cmake/sanitizers.cmake and
# cmake/TridentWarnings.cmake) so that it has the same directory-level flags as every program.
if(TRIDENT_PRECOMPILED_HEADERS AND NOT TARGET trident_pch)
  set(_trident_pch_anchor "${PROJECT_BINARY_DIR}/trident_pch.cpp")
  file(CONFIGURE OUTPUT "${_trident_pch_anchor}"
       CONTENT "// The anchor of trident's shared precompiled header (cmake/TridentPrecompiledHeaders.cmake).\n")
  add_library(trident_pch OBJECT "${_trident_pch_anchor}")
  target_link_libraries(trident_pch PRIVATE trident::trident)
  trident_warnings(trident_pch)
  # The heavy third-party headers that nearly every program reaches; none of trident's own (a TU still includes
  # what it uses, and editing a trident header does not rebuild the precompiled header).
  target_precompile_headers(trident_pch PRIVATE <torch/torch.h> <boost/hana.hpp> <fmt/format.h> <fmt/ranges.h>)
endif()

# Unity builds of the test programs (TRIDENT_UNITY_TESTS, ON by default): CMake compiles a test program's files in
# batches of TRIDENT_UNITY_BATCH_SIZE per TU. The suite's files instantiate the same networks and trainers, which
# a batch compiles once instead of once per file (docs/toolchains.md, "Build time"). A test file keeps its helpers
# to itself by name (anonymous namespaces are shared within a batch), and each file still includes what it uses.
option(TRIDENT_UNITY_TESTS "Compile the test programs' files in batches (unity builds)" ON)
set(TRIDENT_UNITY_BATCH_SIZE 8 CACHE STRING "Test files per unity TU (TRIDENT_UNITY_TESTS)")

# trident_unity_tests(target source...): a unity build of the target; the given sources are compiled on their own
# (a doctest main file, which defines DOCTEST_CONFIG_IMPLEMENT before including doctest; a file whose macros would
# leak into the files after it, such as the CUDA emulation of tests/test_roi_align_kernels.cpp).
function(trident_unity_tests target)
  if(TRIDENT_UNITY_TESTS)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${TRIDENT_UNITY_BATCH_SIZE})
    set_source_files_properties(${ARGN} TARGET_DIRECTORY ${target} PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
    # GCC's object-size warnings are computed after inlining, which a batch changes: GCC 12 raises its known false
    # -Warray-bounds on std::string concatenation (GCC PR 105651, inside <bits/char_traits.h>) in batches whose
    # files compile clean on their own. In unity-built tests they stay warnings, as they are for GCC 13 everywhere
    # (cmake/TridentWarnings.cmake); the examples and benchmarks keep them errors.
    trident_object_size_warnings_not_fatal(${target})
  endif()
endfunction()

# trident_precompiled_headers(target...): the targets reuse the shared header (nothing when the option is OFF).
function(trident_precompiled_headers)
  if(TARGET trident_pch)
    foreach(_t IN LISTS ARGN)
      target_precompile_headers(${_t} REUSE_FROM trident_pch)
    endforeach()
  endif()
endfunction()
