# Warnings for trident's own programs (tests, examples, benchmarks); never applied to trident::trident or
# trident::io, so a project that links them gets no flags from trident. Dependencies come in through imported
# targets, so their headers are system headers and their front-end warnings do not show.
#
# Policy (docs/toolchains.md):
#   -Wall -Wextra always. -Werror only with TRIDENT_WERROR=ON, which is the project's CI (cmake/run-tests.sh);
#   the option is OFF by default, so a user's build never fails on a warning.
#   Under -Werror, GCC 13 and newer keep a few middle-end warnings visible but not fatal. These are computed
#   after inlining, from value ranges, and GCC reports them at the inlined dependency code (LibTorch, the
#   standard library) whenever the inlining chain starts in our code: the system-header exemption does not help.
#   They fire on paths that cannot execute. Known case: with GCC 13, instantiating RoiAlignCpuFunction
#   (include/trident/ops/roi_align.hpp) raises -Warray-bounds inside LibTorch 2.11's
#   torch/csrc/autograd/custom_function.h, from the autograd::Function machinery that packs the forward's
#   outputs; other projects report -Warray-bounds and -Wstringop-overflow from the same machinery with GCC 13.
#   Nothing at trident's call site could avoid them. The set is the family of GCC's object-size and access checks:
#     array-bounds, stringop-overflow, stringop-overread  out-of-bounds accesses on value ranges no run reaches
#     restrict                                            overlapping copies in inlined std::string code
#   GCC 12 (Debian 12, the CI compiler) builds everything clean with them fatal, so there they stay errors.
include_guard(GLOBAL)
# trident_object_size_warnings_not_fatal(target): under TRIDENT_WERROR, GCC's object-size and access checks stay
# warnings (the set above; also used by cmake/TridentPrecompiledHeaders.cmake for unity-built tests with GCC 12).
function(trident_object_size_warnings_not_fatal target)
  if(TRIDENT_WERROR AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-error=array-bounds -Wno-error=stringop-overflow
                                             -Wno-error=stringop-overread -Wno-error=restrict)
  endif()
endfunction()

function(trident_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(TRIDENT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
    if(CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13)
      trident_object_size_warnings_not_fatal(${target})
    endif()
  endif()
endfunction()
