// The sanitizers' default run-time options for trident's sanitizer builds (cmake/sanitizers.cmake links this
// into every program of the project when TRIDENT_SANITIZE is set). Baked into the program, they hold wherever
// it runs: under CTest, in doctest_discover_tests' listing at build time, by hand. ASAN_OPTIONS, UBSAN_OPTIONS,
// LSAN_OPTIONS and TSAN_OPTIONS in the environment are read after these and win. Each option and each
// suppression is explained in cmake/sanitizer-suppressions/README.md.
#ifndef TRIDENT_SANITIZER_SUPPRESSIONS
#error "cmake/sanitizers.cmake defines TRIDENT_SANITIZER_SUPPRESSIONS (the folder of the suppression files)"
#endif

#define TRIDENT_SANITIZER_HOOK extern "C" __attribute__((visibility("default"), used))

TRIDENT_SANITIZER_HOOK const char* __asan_default_options() {
  return "detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1"
         ":strict_string_checks=1:print_summary=1";
}

TRIDENT_SANITIZER_HOOK const char* __lsan_default_options() {
  return "suppressions=" TRIDENT_SANITIZER_SUPPRESSIONS "/lsan.supp:print_suppressions=1";
}

TRIDENT_SANITIZER_HOOK const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}

TRIDENT_SANITIZER_HOOK const char* __tsan_default_options() {
  return "suppressions=" TRIDENT_SANITIZER_SUPPRESSIONS "/tsan.supp:second_deadlock_stack=1:history_size=4";
}
