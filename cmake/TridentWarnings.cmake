# Warnings for trident's own programs (tests, examples, benchmarks). Dependencies come in through imported
# targets, so their headers are system headers and do not trip these flags.
include_guard(GLOBAL)
function(trident_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(TRIDENT_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
