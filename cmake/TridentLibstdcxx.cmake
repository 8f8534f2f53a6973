# trident_libstdcxx_first(<target> <INTERFACE|PUBLIC|PRIVATE>): puts the C++ compiler's libstdc++ first among the
# shared libraries of every program that links <target> (Linux, GCC or Clang with libstdc++).
#
# pip's LibTorch 2.x exports copies of libstdc++'s std::filesystem functions (statically linked where the wheel
# was built, pytorch/pytorch#133437). A program whose NEEDED list names libtorch before libstdc++ (or not
# libstdc++ at all: with --as-needed, a program whose std:: symbols libtorch all provides drops it) binds to those
# copies, and fs::remove_all and trident's atomic writes crash in them with a newer compiler's inline code.
# The library is named by its full path (the compiler's -print-file-name), inside --no-as-needed: a bare -lstdc++
# left libstdc++ out of the NEEDED list on Ubuntu 24.04 (GCC 13.3, binutils 2.42, CMake 4; found on the GPU
# machine on 2026-11-26), where Debian 12 (GCC 12, binutils 2.40) kept it. Where the path cannot be found, -lstdc++
# as before. docs/toolchains.md.
function(trident_libstdcxx_first target scope)
  if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux" OR NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang)$")
    return()
  endif()
  execute_process(COMMAND "${CMAKE_CXX_COMPILER}" -print-file-name=libstdc++.so.6
                  OUTPUT_VARIABLE _libstdcxx OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _rc)
  if(_rc EQUAL 0 AND IS_ABSOLUTE "${_libstdcxx}" AND EXISTS "${_libstdcxx}")
    get_filename_component(_libstdcxx "${_libstdcxx}" REALPATH)
    target_link_options(${target} ${scope} "LINKER:--push-state,--no-as-needed,${_libstdcxx},--pop-state")
  else()
    target_link_options(${target} ${scope} "LINKER:--push-state,--no-as-needed,-lstdc++,--pop-state")
  endif()
endfunction()
