// Fuzzes the gallery index reader (search/gallery_index.hpp, GalleryIndex::open) and one search over what it
// accepted.
#include "fuzz_common.hpp"

#include <trident/search/gallery_index.hpp>

#include <ATen/ops/ones.h>

#include <optional>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = trident::fuzz::write_input(trident::fuzz::work_dir() / "gallery.tgi", data, size);
  // The checksum is skipped in half the runs so that the fuzzer gets past it to the checks behind it.
  trident::search::OpenOptions options;
  options.verify_checksum = size % 2 == 0;
  std::optional<trident::search::GalleryIndex> opened;
  if (!trident::fuzz::accepted([&] { opened.emplace(trident::search::GalleryIndex::open(path, options)); })) return 0;
  {
    const auto& index = *opened;
    const auto pictures = static_cast<int64_t>(index.pictures().size());
    const auto picture_of = index.picture_of();
    for (int64_t i = 0; i < index.size(); ++i) {
      const int64_t p = picture_of.data_ptr<int64_t>()[i];
      if (p < 0 || p >= pictures) std::abort();
    }
    if (index.size() > 0 && index.dim() > 0 && index.dim() <= 4096) {
      const auto query = at::ones({1, index.dim()}, at::kFloat) / std::sqrt(static_cast<double>(index.dim()));
      trident::search::SearchParams params;
      params.score_threshold = 0;
      (void)trident::search::exact_top_k(index.embeddings(), index.scores(), query, params);
    }
  }
  return 0;
}
