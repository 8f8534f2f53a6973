# Sanitizer builds of trident's own programs (docs/reliability.md, "Sanitizers"; CI: cmake/run-tests.sh --sanitize).
#   -DTRIDENT_SANITIZE=address,undefined   AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included)
#   -DTRIDENT_SANITIZE=thread              ThreadSanitizer; also defines trident_loader_tests: the loader's tests
#                                          (tests/test_loader.cpp) alone, the part of the suite that has threads
#                                          of its own
# Empty (the default): nothing changes. The flags go to every target of this project defined after the include
# (tests, examples, benchmarks), never into trident::trident's interface: a project that links trident gets none.
# LibTorch, OpenCV, OpenBLAS, libgomp etc. stay uninstrumented (Debian's builds); the run-time options that keep
# their code from raising false reports are in cmake/sanitizer-suppressions/ (README there), and
# cmake/run-tests.sh --sanitize sets them. UBSan findings are fatal (-fno-sanitize-recover): a finding fails its
# test instead of printing a line nobody reads.
include_guard(GLOBAL)
set(TRIDENT_SANITIZE "" CACHE STRING
    "Sanitizers for trident's own programs: empty, address,undefined (or either alone), or thread")
if(TRIDENT_SANITIZE STREQUAL "")
  return()
endif()
string(REPLACE "," ";" _trident_sanitizers "${TRIDENT_SANITIZE}")
foreach(_s IN LISTS _trident_sanitizers)
  if(NOT _s MATCHES "^(address|undefined|thread)$")
    message(FATAL_ERROR "TRIDENT_SANITIZE: unknown sanitizer '${_s}' in '${TRIDENT_SANITIZE}' "
                        "(known: address, undefined, thread)")
  endif()
endforeach()
if("thread" IN_LIST _trident_sanitizers AND ("address" IN_LIST _trident_sanitizers))
  message(FATAL_ERROR "TRIDENT_SANITIZE: thread cannot be combined with address (one build each)")
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang)$")
  message(FATAL_ERROR "TRIDENT_SANITIZE needs GCC or Clang, not ${CMAKE_CXX_COMPILER_ID}")
endif()

set(_trident_sanitize_flags -fsanitize=${TRIDENT_SANITIZE} -fno-omit-frame-pointer -g)
if("undefined" IN_LIST _trident_sanitizers)
  # Every UBSan finding aborts the program (a failed test), as ASan's and TSan's do.
  list(APPEND _trident_sanitize_flags -fno-sanitize-recover=undefined)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC computes -Wmaybe-uninitialized after inlining, and the instrumentation changes what it sees: with
  # -fsanitize=address at -O1 it fires inside LibTorch's own headers (c10::optional<at::Generator>'s copy in
  # at::Tensor::uniform_, c10/util/intrusive_ptr.h) on code the Release build compiles clean; GCC's manual warns
  # that sanitizers cause spurious warnings. Kept visible, not fatal, in sanitizer builds only (TRIDENT_WERROR
  # stays on for everything else; the ordinary legs keep it fatal).
  list(APPEND _trident_sanitize_flags -Wno-error=maybe-uninitialized)
endif()
add_compile_options(${_trident_sanitize_flags})
add_link_options(-fsanitize=${TRIDENT_SANITIZE})
message(STATUS "trident: sanitizers ${TRIDENT_SANITIZE} for the project's own programs: ${_trident_sanitize_flags}")

# ThreadSanitizer: the loader's tests as their own program. The whole suite under TSan would cost another full
# instrumented build (the ASan one: about 30 CPU-minutes) for no thread of trident's own outside the loader (the
# rest is LibTorch's OpenMP, uninstrumented); the target takes the suite's definitions and libraries once
# tests/ has defined them.
function(_trident_sanitize_loader_target)
  if(NOT TARGET trident_tests)
    return()
  endif()
  find_package(doctest REQUIRED)  # its imported target is local to tests/
  get_target_property(_defs trident_tests COMPILE_DEFINITIONS)
  get_target_property(_libs trident_tests LINK_LIBRARIES)
  get_target_property(_opts trident_tests COMPILE_OPTIONS)
  add_executable(trident_loader_tests ${PROJECT_SOURCE_DIR}/tests/test_main.cpp
                                      ${PROJECT_SOURCE_DIR}/tests/test_loader.cpp)
  target_compile_definitions(trident_loader_tests PRIVATE ${_defs})
  target_link_libraries(trident_loader_tests PRIVATE ${_libs})
  if(_opts)
    target_compile_options(trident_loader_tests PRIVATE ${_opts})
  endif()
  set_target_properties(trident_loader_tests PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
endfunction()
if("thread" IN_LIST _trident_sanitizers)
  cmake_language(DEFER CALL _trident_sanitize_loader_target)
endif()

# The run-time options and suppression files (cmake/sanitizer-suppressions/default_options.cpp), linked into
# every executable of the project once all directories are read: the programs carry their own settings.
add_library(trident_sanitizer_options OBJECT ${CMAKE_CURRENT_LIST_DIR}/sanitizer-suppressions/default_options.cpp)
target_compile_definitions(trident_sanitizer_options PRIVATE
  TRIDENT_SANITIZER_SUPPRESSIONS="${CMAKE_CURRENT_LIST_DIR}/sanitizer-suppressions")
function(_trident_sanitize_link_options dir)
  get_property(_targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_t IN LISTS _targets)
    get_target_property(_type ${_t} TYPE)
    if(_type STREQUAL "EXECUTABLE")
      target_link_libraries(${_t} PRIVATE trident_sanitizer_options)
    endif()
  endforeach()
  get_property(_subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(_d IN LISTS _subdirs)
    _trident_sanitize_link_options(${_d})
  endforeach()
endfunction()
cmake_language(DEFER CALL _trident_sanitize_link_options ${CMAKE_CURRENT_SOURCE_DIR})
