// The fuzzers' findings (fuzz/, docs/reliability.md, "Fuzzing"): every input committed under
// tests/fixtures/fuzz/<harness>/ once crashed its reader, tripped a sanitizer, hung or allocated without bound.
// Each must now be refused with a trident::Error that names the reading function, the file and the field (and
// the value). A committed input without a case here fails the last test.
#include "support/fixtures.hpp"

#include <trident/config.hpp>
#include <trident/io/tensor_file.hpp>
#if defined(TRIDENT_TESTS_WITH_JSON)
#include <trident/eval/results_file.hpp>
#endif
#if defined(TRIDENT_TESTS_WITH_VISION)
#include <trident/data/pictures.hpp>
#endif
#if defined(TRIDENT_TESTS_WITH_MAT)
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/prw.hpp>

#include "../fuzz/mat_datasets.hpp"  // the folder the cuhk_sysu and prw harnesses put their input in
#endif

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Finding {
  std::function<void(const std::string&)> read;  ///< runs the reader on the input at the given path
  std::vector<std::string> fragments;             ///< what the message must say besides the file's path
  std::string file;                               ///< the file the message names, when not the input itself
};

#if defined(TRIDENT_TESTS_WITH_MAT)
/// read_prw over the prw harness's folder (fuzz/mat_datasets.hpp) with `file` replaced by the input at `input`,
/// as the harness ran it.
fs::path prw_root() { return fs::path(TRIDENT_TEST_TMP_DIR) / "fuzz_regressions" / "prw"; }
/// prw_root() holding the valid PRW folder the prw harness starts from.
fs::path fresh_prw() {
  trident::fuzz::write_prw(trident::test::fresh_folder("fuzz_regressions", "prw"));
  return prw_root();
}
void read_prw_with(const std::string& file, const std::string& input) {
  const auto root = fresh_prw();
  fs::copy_file(input, root / file, fs::copy_options::overwrite_existing);
  trident::data::PrwOptions options;
  options.check_images = false;
  (void)trident::data::read_prw(root.string(), options);
}
#endif

/// harness/file -> the reader and the expected message, for the readers this build has.
std::map<std::string, Finding> findings() {
  std::map<std::string, Finding> f;
  // LibTorch 1.13's in-memory adapter behind torch::jit::pickle_load let the zip reader copy past the end of
  // the file's bytes (ASan: heap-buffer-overflow); io::load_tensor_dict now reads through a bounded adapter.
  f["tensor_file/zip_read_past_end.pt"] = {
      [](const std::string& path) { (void)trident::io::load_tensor_dict(path); },
      {"trident::io::load_tensor_dict", "is not a file written by torch.save"},
      ""};
  // A pickle opcode (BINUNICODE) whose 4-byte length says 4 GB in a 1.4 KB file: LibTorch's
  // Unpickler allocated and filled 4 GB (libFuzzer: out-of-memory, 3.6 GB resident). The lengths are now checked
  // against the pickle's size first.
  f["tensor_file/pickle_length_4GB.pt"] = {
      [](const std::string& path) { (void)trident::io::load_tensor_dict(path); },
      {"trident::io::load_tensor_dict", "the pickle (data.pkl) declares", "bytes for opcode", "at offset"},
      ""};
  // A LONG_BINPUT with memo index 1.7e9: the Unpickler grew its memo table to 26 GB (ASan: out of memory).
  f["tensor_file/pickle_memo_index_huge.pt"] = {
      [](const std::string& path) { (void)trident::io::load_tensor_dict(path); },
      {"trident::io::load_tensor_dict", "the pickle (data.pkl) stores memo index", "values were memoized"},
      ""};
#if defined(TRIDENT_TESTS_WITH_JSON)
  const auto results_json = [](const std::string& path) { (void)trident::eval::load_search_outputs(path); };
  // A double beyond int64_t's range was converted to int64_t before the check (UBSan: float-cast-overflow).
  f["results_json/embedding_dim_1e19.json"] = {
      results_json, {"trident::eval::load_search_outputs", "embedding_dim", "[0, 4294967295]", "1e+19"}, ""};
#endif
#if defined(TRIDENT_TESTS_WITH_VISION)
  // A 70-byte BMP declaring 1 x 2000000 pixels (under load_image's pixel limit): OpenCV's imread threw
  // cv::Exception from its own size check (a side over 2^20), which left load_image as a foreign exception
  // (libFuzzer: deadly signal; found in CI's smoke run). OpenCV's exceptions are now reported as trident errors.
  f["picture/bmp_height_2000000.bmp"] = {
      [](const std::string& path) { (void)trident::data::load_image(path); },
      {"trident::data::load_image", "OpenCV refuses the image file", "CV_IO_MAX_IMAGE_HEIGHT"},
      ""};
#endif
#if defined(TRIDENT_TESTS_WITH_MAT)
  // An annotation whose matrix header declares far more elements than the file holds: MatFile::matrix filled a
  // vector of that many doubles (libFuzzer: out-of-memory, 3.4 GB resident). MatFile now refuses such counts.
  f["prw/annotation_declares_too_many_elements.jpg.mat"] = {
      [](const std::string& path) { read_prw_with("annotations/c2s1_000002.jpg.mat", path); },
      {"trident::data::read_prw", "anno_file", "declares", "more than the file can hold"},
      (prw_root() / "annotations/c2s1_000002.jpg.mat").string()};
  // An annotation with a NaN pid: converting it to int64_t before the check was undefined (UBSan).
  f["prw/annotation_pid_nan.jpg.mat"] = {
      [](const std::string& path) { read_prw_with("annotations/c1s1_000001.jpg.mat", path); },
      {"trident::data::read_prw", "box_new row", "the pid", "nan"},
      (prw_root() / "annotations/c1s1_000001.jpg.mat").string()};
#endif
  return f;
}

std::string fuzz_dir() { return (std::filesystem::path(TRIDENT_FIXTURE_DIR) / "fuzz").string(); }

/// Whether this build has the reader of `harness` (fuzz/CMakeLists.txt names the component each one needs).
bool reader_built(const std::string& harness) {
  bool json = false, mat = false, vision = false;
#if defined(TRIDENT_TESTS_WITH_JSON)
  json = true;
#endif
#if defined(TRIDENT_TESTS_WITH_MAT)
  mat = true;
#endif
#if defined(TRIDENT_TESTS_WITH_VISION)
  vision = true;
#endif
  if (harness == "results_binary" || harness == "results_json" || harness == "dataset_json") return json;
  if (harness == "cuhk_sysu" || harness == "prw") return mat;
  if (harness == "picture") return vision;
  return true;  // gallery_index, tensor_file, checkpoint: trident::trident
}

}  // namespace

TEST_CASE("fuzz findings: each committed crashing input is refused with an error naming the file and the field") {
  for (const auto& [name, finding] : findings()) {
    CAPTURE(name);
    const std::string input = fuzz_dir() + "/" + name;
    REQUIRE(fs::is_regular_file(input));
    std::vector<std::string> parts{finding.file.empty() ? input : finding.file};  // refused, naming the file
    parts.insert(parts.end(), finding.fragments.begin(), finding.fragments.end());
    trident::test::check_error([&] { finding.read(input); }, parts);
  }
}

TEST_CASE("fuzz findings: every committed input has its case (for the readers this build has)") {
  std::set<std::string> listed;
  for (const auto& [name, finding] : findings()) listed.insert(name);
  int seen = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fuzz_dir())) {
    if (!entry.is_regular_file()) continue;
    const auto name = fs::relative(entry.path(), fuzz_dir()).generic_string();
    if (!reader_built(name.substr(0, name.find('/')))) continue;
    ++seen;
    CAPTURE(name);
    CHECK(listed.count(name) == 1);
  }
  CHECK(seen == static_cast<int>(listed.size()));
}

#if defined(TRIDENT_TESTS_WITH_MAT)
// The same undefined float-to-integer conversions, found by reading the code the prw findings pointed to (no
// fuzzer input yet): a NaN box in CUHK-SYSU's Images.mat, a pid of 1e300 in PRW's query_info.txt.
TEST_CASE("fuzz findings: NaN or huge numbers in CUHK-SYSU boxes and PRW query pids are refused by name") {
  using trident::io::MatVariable;
  {
    const auto root = trident::test::fresh_folder("fuzz_regressions", "cuhk_sysu");
    trident::fuzz::write_cuhk_sysu(root);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::vector<MatVariable>> images;
    images.push_back(
        {MatVariable::string("s1.jpg"), MatVariable::scalar(1), MatVariable::matrix(1, 4, {10, 20, 30, 60})});
    images.push_back({MatVariable::string("s2.jpg"), MatVariable::scalar(2),
                      MatVariable::matrix(2, 4, {12, 22, 30, 60, nan, 5, 10, 10})});
    trident::io::write_mat_file(root / "annotation/Images.mat", "Img",
                                MatVariable::struct_array(1, 2, {"imname", "nAppear", "idlocate"}, std::move(images)));
    trident::data::CuhkSysuOptions options;
    options.check_images = false;
    options.gallery_size = 50;
    trident::test::check_error([&] { (void)trident::data::read_cuhk_sysu(root.string(), options); },
                               {"trident::data::read_cuhk_sysu", (root / "annotation/Images.mat").string(),
                                "box 2 of Img(2).idlocate", "[nan, 5, 10, 10]"});
  }
  {
    const auto root = fresh_prw();
    std::ofstream(root / "query_info.txt", std::ios::binary) << "1e300 100 50 30 60 c3s2_000003\n";
    trident::data::PrwOptions options;
    options.check_images = false;
    trident::test::check_error([&] { (void)trident::data::read_prw(root.string(), options); },
                               {"trident::data::read_prw", (root / "query_info.txt").string(),
                                "line 1 must be 'pid x y w h frame'", "1e300"});
  }
}
#endif
