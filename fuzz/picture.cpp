// Fuzzes picture loading (data/pictures.hpp, load_image) through OpenCV's decoders.
#include "fuzz_common.hpp"

#include <trident/data/pictures.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The extension does not matter: OpenCV picks the decoder by the first bytes.
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "picture.jpg", data, size);
  at::Tensor t;
  if (!trident::fuzz::accepted([&] { t = trident::data::load_image(path); })) return 0;
  if (t.dim() != 3 || t.size(0) != 3) std::abort();
  return 0;
}
