// Fuzzes the JSON dataset reader (data/custom_json.hpp, read_custom_json), pictures not checked.
#include "fuzz_common.hpp"

#include <trident/data/custom_json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "data.json", data, size);
  trident::data::CustomJsonOptions options;
  options.check_images = false;
  options.log = [](const std::string&) {};
  trident::data::Dataset d;
  if (!trident::fuzz::accepted([&] { d = trident::data::read_custom_json(path, options); })) return 0;
  {
    // Every index the reader hands out points into its images.
    const auto n = static_cast<int64_t>(d.images.size());
    for (const auto i : d.train) if (i < 0 || i >= n) std::abort();
    for (const auto i : d.test) if (i < 0 || i >= n) std::abort();
    for (const auto& q : d.queries) {
      if (q.image < 0 || q.image >= n) std::abort();
      for (const auto& g : q.gallery) if (g.image < 0 || g.image >= n) std::abort();
    }
  }
  return 0;
}
