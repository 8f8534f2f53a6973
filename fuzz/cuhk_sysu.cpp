// Fuzzes the cuhk_sysu reader (data/cuhk_sysu.hpp, read_cuhk_sysu, through matio): a valid folder is written once; the
// input's first byte picks the file that the rest of the input replaces (cuhk_sysu_files() in mat_datasets.hpp),
// and the file is restored after the run (fuzz_folder_file in fuzz_common.hpp).
#include "fuzz_common.hpp"
#include "mat_datasets.hpp"

#include <trident/data/cuhk_sysu.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return trident::fuzz::fuzz_folder_file(
      "cuhk_sysu", trident::fuzz::cuhk_sysu_files(), trident::fuzz::write_cuhk_sysu,
      [](const std::string& root) {
        trident::data::CuhkSysuOptions options;
        options.check_images = false;
        options.log = [](const std::string&) {};
        options.gallery_size = 50;
        (void)trident::data::read_cuhk_sysu(root, options);
      },
      data, size);
}
