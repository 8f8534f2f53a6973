// Fuzzes the binary results reader (eval/results_file.hpp, load_search_outputs).
#include "fuzz_common.hpp"

#include <trident/eval/results_file.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "input.trs", data, size);
  trident::SearchOutputs out;
  if (!trident::fuzz::accepted([&] { out = trident::eval::load_search_outputs(path); })) return 0;
  // What the reader accepted is consistent: the writer's own checks pass on it (a throw here is a finding).
  trident::eval::detail::check_outputs(out, "fuzz");
  return 0;
}
