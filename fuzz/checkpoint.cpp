// Fuzzes checkpoint loading (train/checkpoint.hpp, load_model) into a small module with a parameter and a buffer.
#include "fuzz_common.hpp"
#include "small_model.hpp"

#include <trident/train/checkpoint.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static trident::fuzz::SmallModel model;
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "checkpoint.pt", data, size);
  if (trident::fuzz::accepted([&] { trident::train::load_model(path, model); }))
    (void)model.weight.sum().item<double>();
  return 0;
}
