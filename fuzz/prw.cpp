// Fuzzes the prw reader (data/prw.hpp, read_prw, through matio): a valid folder is written once; the
// input's first byte picks the file that the rest of the input replaces (prw_files() in mat_datasets.hpp),
// and the file is restored after the run.
#include "fuzz_common.hpp"
#include "mat_datasets.hpp"

#include <trident/data/prw.hpp>

#include <map>

namespace {
const std::filesystem::path& root() {
  static const std::filesystem::path r = [] {
    const auto d = trident::fuzz::work_dir() / "prw";
    trident::fuzz::write_prw(d);
    return d;
  }();
  return r;
}
std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::map<std::string, std::string> pristine;
  if (size == 0) return 0;
  const auto& files = trident::fuzz::prw_files();
  const auto& file = files[data[0] % files.size()];
  const auto path = root() / file;
  if (!pristine.count(file)) pristine[file] = read_bytes(path);
  trident::fuzz::write_input(path, data + 1, size - 1);
  trident::fuzz::accepted([&] {
    trident::data::PrwOptions options;
    options.check_images = false;
    options.log = [](const std::string&) {};
    
    (void)trident::data::read_prw(root().string(), options);
  });
  const auto& original = pristine[file];
  trident::fuzz::write_input(path, reinterpret_cast<const uint8_t*>(original.data()), original.size());
  return 0;
}
