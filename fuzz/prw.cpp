// Fuzzes the prw reader (data/prw.hpp, read_prw, through matio): a valid folder is written once; the input's first
// byte picks the file that the rest of the input replaces (prw_files() in mat_datasets.hpp), and the file is
// restored after the run (fuzz_folder_file in fuzz_common.hpp).
#include "fuzz_common.hpp"
#include "mat_datasets.hpp"

#include <trident/data/prw.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return trident::fuzz::fuzz_folder_file(
      "prw", trident::fuzz::prw_files(), trident::fuzz::write_prw,
      [](const std::string& root) {
        trident::data::PrwOptions options;
        options.check_images = false;
        options.log = [](const std::string&) {};
        (void)trident::data::read_prw(root, options);
      },
      data, size);
}
